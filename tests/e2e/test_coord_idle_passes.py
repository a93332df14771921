"""The cluster's periodic work is proportional to what changed, not to what exists (on etcd and S3).

With many idle collections, the coord's planners (``vecdb.coord.planner``) used to re-plan every collection
every second, the garbage collector (``vecdb.coord.gc``) to list the whole object store and read every
segment's metadata every 10 s, and a data node's index scheduler (``vecdb.datanode.index_scheduler``) to
look at every channel it owns every 30 s; and the assignment planner encoded every loaded collection's
assignment on each pass (several for each collection loaded). These tests count passes, parsed records,
encoded assignments and store calls: an idle cluster runs no pass, and a change makes a pass over the one
collection it concerns."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import server_settings, wait_until
from vecdb.catalog_model import CollectionInfo, IndexInfo, PartitionInfo, coll_key
from vecdb.coord import assignment
from vecdb.coord.assignment import AssignmentManager
from vecdb.coord.client import SESSION_KEY
from vecdb.coord.datanode_assignment import DataNodeAssigner
from vecdb.coord.gc import GarbageCollector
from vecdb.datanode.index_scheduler import IndexScheduler
from vecdb.datanode.indexer import SegmentIndexer
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.backends import open_backends

COLLECTIONS = 120
PID = 100
GLOBAL_PREFIXES = ("snapshot/", "snapshot_pin/", "session/")  # read whole by every garbage collection pass


@pytest.fixture
def backends(tmp_path, remote_storage):
    b = open_backends(server_settings(tmp_path / "b", None, remote_storage()).storage)
    yield b
    b.close()


def _info(cid: int, loaded: bool = False, indexed: bool = False) -> CollectionInfo:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=4)])
    return CollectionInfo(cid, "default", f"c{cid}", schema, 1, 0, 1, partitions=[PartitionInfo(PID, "_default", 1)],
                          indexes=[IndexInfo(cid, "v", "v", "FLAT", "L2", {})] if indexed else [], loaded=loaded)


class Counted:
    """A store whose reads (``scan``, ``get``, ``list``) are recorded as (method, first argument)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in ("scan", "get", "list"):
            return attr

        def counted(*args, **kwargs):
            self.calls.append((name, args[0] if args else None))
            return attr(*args, **kwargs)
        return counted


def _quiet(*planners) -> None:
    """Until the planners are settled and ran no pass for 0.5 s: a planner's own writes come back through its
    mirror a moment after its pass (a pass then, which plans nothing, is not an idle planner passing)."""
    def quiet() -> bool:
        before = [p.passes for p in planners]
        if not all(p.settled() for p in planners):
            return False
        time.sleep(0.5)
        return all(p.settled() for p in planners) and [p.passes for p in planners] == before
    wait_until(quiet, 30, "the planners settle")


def test_idle_planners_pass_no_more_and_a_change_parses_only_its_collection(backends, monkeypatch):
    monkeypatch.setattr(assignment, "REBALANCE_COOLDOWN", 0.2)  # (settled sooner: the test waits less)
    meta = backends.meta
    fence = {SESSION_KEY: b"this-coord"}
    meta.put(SESSION_KEY, b"this-coord")
    for node in ("session/querynode/qn1", "session/querynode/qn2", "session/datanode/dn1"):
        meta.put(node, b"{}")
    loaded = {cid for cid in range(1, COLLECTIONS + 1) if cid % 5 == 0}
    for cid in range(1, COLLECTIONS + 1):
        meta.put(coll_key(cid), _info(cid, loaded=cid in loaded).to_json())
    queries, data = AssignmentManager(meta, fence), DataNodeAssigner(meta, fence)
    try:
        wait_until(lambda: len(meta.scan("assign/")) == len(loaded) and len(meta.scan("dnassign/")) == COLLECTIONS,
                   30, "every collection is assigned")
        # every cool-down over, nothing asked for: the planners wait for a change
        _quiet(queries, data)
        assert queries.loaded_states.parses == COLLECTIONS and data.channels.parses == COLLECTIONS
        passes = (queries.passes, data.passes)
        time.sleep(2.5)  # the planners passed every second before
        assert (queries.passes, data.passes) == passes, "idle planners passed"

        # a collection created (not loaded) wakes the planner, which has nothing to plan
        plans, encodes, stored = queries.plans, queries.encodes, dict(meta.scan("assign/"))
        meta.put(coll_key(COLLECTIONS + 1), _info(COLLECTIONS + 1).to_json())
        wait_until(lambda: queries.loaded_states.parses == COLLECTIONS + 1, 30, "the planner sees the new record")
        _quiet(queries)
        assert queries.plans == plans and queries.encodes == encodes

        meta.put(coll_key(7), _info(7, loaded=True).to_json())  # one collection loaded
        wait_until(lambda: meta.get("assign/7") is not None, 30, "the loaded collection is assigned")
        _quiet(queries)
        # its record alone was parsed again, by each planner
        assert queries.loaded_states.parses == COLLECTIONS + 2
        # its assignment alone was encoded (the others' stored bytes kept); planned only when the plan's
        # inputs changed: the load, then its cool-down (a collection cooling down starts no hand-over) and
        # the cool-down's end; its own write coming back through the mirror is no change
        assert queries.encodes == encodes + 1
        assert {k: v for k, v in meta.scan("assign/") if k != "assign/7"} == stored
        assert queries.plans - plans <= 3
        wait_until(lambda: data.passes > passes[1], 30, "the data node planner passes")
        assert data.channels.parses == COLLECTIONS + 2
        assert json.loads(meta.get("dnassign/7")) == {"c7-s0": "dn1"}

        # a node that joins is balanced onto as before: one replica node per collection is the new one's
        meta.put("session/querynode/qn3", b"{}")
        wait_until(lambda: all("qn3" in json.loads(raw)["replicas"][0]["nodes"] for _, raw in meta.scan("assign/")),
                   30, "the joining node is in every replica")
        assert queries.loaded_states.parses == COLLECTIONS + 2  # no catalog record parsed again for it
    finally:
        queries.close()
        data.close()


def _segment(meta, objects, cid: int, position: int, register: bool = True) -> str:
    ch = f"c{cid}-s0"
    prefix = f"segments/{cid}/{ch}/{position:020d}-{PID}/"
    for name in ("100.npy", "101.npy"):
        objects.put(prefix + name, b"x")
    if register:
        meta.put(f"seg/{cid}/{ch}/{position:020d}-{PID}",
                 json.dumps({"segment_id": position, "partition_id": PID, "num_rows": 1, "prefix": prefix,
                             "position": position}).encode())
    return prefix


def test_garbage_collection_passes_over_what_changed_and_skips_when_nothing_did(backends):
    meta, objects = backends.meta, backends.objects
    kept = []
    for cid in range(1, 31):
        meta.put(coll_key(cid), _info(cid).to_json())
        kept.append(_segment(meta, objects, cid, 10))
        meta.put(f"ckpt/{cid}/c{cid}-s0", b"20")
    clock = [1000.0]
    gc = GarbageCollector(Counted(meta), Counted(objects), interval=3600, grace=0, clock=lambda: clock[0],
                          full_interval=3600).watch_changes()
    try:
        assert gc.run_due() == {} and gc.passes["full"] == 1  # the first pass: over everything
        gc.meta.calls.clear()
        gc.objects.calls.clear()
        assert gc.run_due() is None, "a pass with nothing changed"
        assert gc.meta.calls == [] and gc.objects.calls == []

        # crashes leave files no key names (an upload never committed), in two collections; then a
        # persist in collection 3 moves its checkpoint
        orphans = {cid: _segment(meta, objects, cid, 15, register=False) for cid in (3, 4)}
        meta.put("ckpt/3/c3-s0", b"30")
        deleted = None
        deadline = time.monotonic() + 30
        while deleted is None:  # once the watch delivered the change
            assert time.monotonic() < deadline, "the change was not seen"
            deleted = gc.run_due()
            time.sleep(0.02)
        assert deleted == {"orphan_segment": 2}  # (two files)
        assert gc.passes["scoped"] == 1
        assert sorted(arg for _, arg in gc.objects.calls) == ["deltas/3/", "segments/3/"]
        assert all(arg.startswith(GLOBAL_PREFIXES) or "/3/" in arg or arg == coll_key(3)
                   for _, arg in gc.meta.calls), gc.meta.calls
        assert not objects.list(orphans[3]) and objects.list(orphans[4])  # collection 4 was not judged
        assert all(objects.list(p) for p in kept)

        # the full pass (every full_interval) finds what no metadata change announced
        clock[0] += 3600
        assert gc.run_due() == {"orphan_segment": 2} and gc.passes["full"] == 2
        assert not objects.list(orphans[4]) and all(objects.list(p) for p in kept)
    finally:
        gc.close()


def test_an_idle_index_scheduler_looks_at_no_channel(backends):
    meta, objects = backends.meta, backends.objects
    for cid in range(1, 41):
        meta.put(coll_key(cid), _info(cid, indexed=True).to_json())
        meta.put(f"dnassign/{cid}", json.dumps({f"c{cid}-s0": "dn1"}).encode())
    indexer = SegmentIndexer(meta, objects)
    scheduler = IndexScheduler(indexer, meta, "dn1", retry_seconds=0.1)
    try:
        wait_until(lambda: scheduler.looks >= 40 and not scheduler._todo, 30, "every owned channel is looked at")
        time.sleep(0.5)
        looks = scheduler.looks
        time.sleep(1.0)  # every owned channel was looked at again every retry_seconds (the sweep) before
        assert scheduler.looks == looks
        _segment(meta, objects, 7, 10)  # (too small to index: looked at, nothing built)
        wait_until(lambda: scheduler.looks == looks + 1, 30, "the channel with a new segment is looked at")
        time.sleep(0.5)
        assert scheduler.looks == looks + 1
    finally:
        scheduler.close()
        indexer.close()

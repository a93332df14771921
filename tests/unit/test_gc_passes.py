"""The garbage collector (vecdb.coord.gc) on the memory and local stores: each kind of garbage made
by hand is deleted, after its grace (or its record's ``after``), and nothing that metadata references
or a live writer's intent protects is."""

from __future__ import annotations

import json
import time

import pytest

from vecdb import metrics
from vecdb.catalog_model import CollectionInfo, IndexInfo, PartitionInfo
from vecdb.coord.gc import GarbageCollector, intent_key
from vecdb.coord.session import INCARNATION, Session, describe_process
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.local_objects import LocalObjectStore
from vecdb.storage.memory import MemoryMetaStore, MemoryObjectStore

CID, CH = 7, "c7-s0"
PID, PID2 = 100, 101
INDEX = 300


@pytest.fixture(params=["memory", "local"])
def stores(request, tmp_path):
    if request.param == "memory":
        meta, objects = MemoryMetaStore(), MemoryObjectStore()
    else:
        meta, objects = LocalMetaStore(str(tmp_path / "meta")), LocalObjectStore(str(tmp_path / "objects"))
    yield meta, objects
    meta.close()
    objects.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _collection(meta, cid: int = CID, partitions=(PID, PID2), indexes=(INDEX,)) -> None:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=4)])
    info = CollectionInfo(cid, "default", f"c{cid}", schema, 1, 0, 1,
                          partitions=[PartitionInfo(p, f"p{p}", 1) for p in partitions],
                          indexes=[IndexInfo(i, f"i{i}", "v", "FLAT", "L2", {}) for i in indexes])
    meta.put(f"coll/{cid}", info.to_json())


def _segment(objects, meta, position: int, pid: int = PID, cid: int = CID, register: bool = True,
             suffix: str = "", index: int | None = INDEX) -> str:
    """A segment's files (two columns, timestamps, an index file) and, with ``register``, its seg key."""
    prefix = f"segments/{cid}/c{cid}-s0/{position:020d}-{pid}{suffix}/"
    for name in ("100.npy", "101.npy", "_ts.npy") + ((f"index-101-{index}.bin",) if index else ()):
        objects.put(prefix + name, b"x" * 10)
    if register:
        key = f"seg/{cid}/c{cid}-s0/{position:020d}-{pid}{suffix}"
        meta.put(key, json.dumps({"segment_id": position, "partition_id": pid, "num_rows": 1, "prefix": prefix,
                                  "position": position}).encode())
    return prefix


def _delta(objects, meta, position: int, cid: int = CID, register: bool = True) -> str:
    key = f"deltas/{cid}/c{cid}-s0/{position:020d}.vcol"
    objects.put(key, b"d")
    if register:
        meta.put(f"delta/{cid}/c{cid}-s0/{position:020d}", key.encode())
    return key


def _gc(meta, objects, grace: float = 0.0, **kw):
    clock, wall = Clock(), Clock()
    return GarbageCollector(meta, objects, interval=3600, grace=grace, clock=clock, wall=wall, **kw), clock, wall


def test_referenced_objects_are_kept_and_orphans_go(stores):
    meta, objects = stores
    _collection(meta)
    kept = [_segment(objects, meta, 10), _segment(objects, meta, 20, PID2)]
    kept_delta = _delta(objects, meta, 20)
    meta.put(f"ckpt/{CID}/{CH}", b"30")
    orphan = _segment(objects, meta, 30, register=False)  # a crash between upload and commit
    orphan_delta = _delta(objects, meta, 30, register=False)
    future = _segment(objects, meta, 40, register=False)  # above the checkpoint: a persist may be writing it
    future_delta = _delta(objects, meta, 40, register=False)
    gc, _, _ = _gc(meta, objects)
    before = metrics.GC_OBJECT_COUNT.labels("standalone", "orphan_segment")._value.get()
    done = gc.run_once()
    assert done == {"orphan_segment": 4, "orphan_delta": 1}
    left = objects.list("")
    assert not [k for k in left if k.startswith(orphan)] and orphan_delta not in left
    for prefix in kept + [future]:
        assert len(objects.list(prefix)) == 4, prefix
    assert kept_delta in left and future_delta in left
    assert metrics.GC_OBJECT_COUNT.labels("standalone", "orphan_segment")._value.get() == before + 4
    assert gc.run_once() == {}  # nothing more


def test_grace_is_respected_and_restarts_when_an_object_is_needed_again(stores):
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"30")
    orphan = _segment(objects, meta, 30, register=False)
    gc, clock, _ = _gc(meta, objects, grace=60)
    assert gc.run_once() == {} and gc.pending() == 1
    clock.now += 59
    assert gc.run_once() == {}
    # registered meanwhile (a persist's commit seen late): the clock starts over
    key = f"seg/{CID}/{CH}/{30:020d}-{PID}"
    meta.put(key, json.dumps({"segment_id": 1, "partition_id": PID, "num_rows": 1, "prefix": orphan,
                              "position": 30}).encode())
    clock.now += 5
    assert gc.run_once() == {} and gc.pending() == 0
    meta.delete(key)
    clock.now += 5
    assert gc.run_once() == {}
    clock.now += 59
    assert gc.run_once() == {}
    clock.now += 1
    assert gc.run_once() == {"orphan_segment": 4}
    assert objects.list(orphan) == []


def test_a_live_intent_protects_its_prefix_and_a_dead_one_does_not(stores):
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"50")
    session = Session(meta, "session/datanode/dn0", describe_process(role="datanode"), ttl=5)
    try:
        writing = _segment(objects, meta, 30, register=False, suffix="-c900")
        meta.put(intent_key(writing), json.dumps({"incarnation": INCARNATION}).encode())
        dead = _segment(objects, meta, 40, register=False, suffix="-c901")
        meta.put(intent_key(dead), json.dumps({"incarnation": "gone-process"}).encode())
        dead_empty = f"segments/{CID}/{CH}/{45:020d}-{PID}-c902/"  # died before writing anything
        meta.put(intent_key(dead_empty), json.dumps({"incarnation": "gone-process"}).encode())
        gc, _, _ = _gc(meta, objects)
        assert gc.run_once() == {"orphan_segment": 4}
        assert len(objects.list(writing)) == 4 and objects.list(dead) == []
        assert meta.get(intent_key(writing)) is not None
        assert meta.get(intent_key(dead)) is None and meta.get(intent_key(dead_empty)) is None
    finally:
        session.close()
    # its writer gone (no session holds its incarnation): an orphan now
    gc, _, _ = _gc(meta, objects)
    assert gc.run_once() == {"orphan_segment": 4}
    assert objects.list("segments/") == [] and meta.scan("gcintent/") == []


def test_gc_records_after_their_time_with_their_compacted_records(stores):
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"50")
    sources = [_segment(objects, meta, 10, register=False), _segment(objects, meta, 20, register=False)]
    new = _segment(objects, meta, 20, suffix="-c900")
    obsolete = _delta(objects, meta, 15, register=False)
    meta.put(f"gc/{CID}/abc", json.dumps({"prefixes": sources, "keys": [obsolete], "after": 2000.0}).encode())
    meta.put(f"compacted/{CID}/{CH}/900", json.dumps({"from": sources, "to": new, "position": 50,
                                                     "at": 1000}).encode())
    meta.put(f"compacted/{CID}/{CH}/901", json.dumps({"from": ["segments/other/"], "to": None, "position": 50,
                                                     "at": 1000}).encode())
    gc, clock, wall = _gc(meta, objects)
    clock.now += 10_000  # the orphan grace does not apply: the record's "after" does
    wall.now = 1999.0
    assert gc.run_once() == {}
    assert all(len(objects.list(p)) == 4 for p in sources) and obsolete in objects.list("")
    wall.now = 2000.0
    assert gc.run_once() == {"compacted": 9}
    assert [p for p in sources if objects.list(p)] == [] and obsolete not in objects.list("")
    assert len(objects.list(new)) == 4
    assert meta.scan("gc/") == []
    assert [k for k, _ in meta.scan("compacted/")] == [f"compacted/{CID}/{CH}/901"]


def test_a_record_naming_a_registered_segment_does_not_delete_it(stores):
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"50")
    live = _segment(objects, meta, 10)
    meta.put(f"gc/{CID}/bad", json.dumps({"prefixes": [live], "keys": [], "after": 0}).encode())
    gc, _, _ = _gc(meta, objects)
    assert gc.run_once() == {}
    assert len(objects.list(live)) == 4


def test_dropped_partition_index_and_collection(stores):
    meta, objects = stores
    _collection(meta, partitions=(PID,), indexes=(INDEX + 1,))
    meta.put(f"ckpt/{CID}/{CH}", b"50")
    kept = _segment(objects, meta, 10, index=INDEX + 1)
    old_index = _segment(objects, meta, 20) + f"index-101-{INDEX}.bin"  # an index since dropped
    dropped_part = _segment(objects, meta, 30, PID2, index=None)
    meta.put(f"idxbuild/{CID}/{INDEX}/{CH}/{20:020d}-{PID}/x", b'{"state": "failed"}')
    meta.put(f"idxbuild/{CID}/{INDEX + 1}/{CH}/{10:020d}-{PID}/x", b'{"state": "failed"}')
    # a collection dropped by a drop that crashed half-way: objects and metadata left behind
    gone = 8
    _segment(objects, meta, 10, cid=gone)
    _delta(objects, meta, 10, cid=gone)
    for key in (f"ckpt/{gone}/c{gone}-s0", f"idxbuild/{gone}/1/c{gone}-s0/x/y", f"gc/{gone}/r",
                f"compacted/{gone}/c{gone}-s0/1", f"gcintent/segments/{gone}/c{gone}-s0/x/", f"compaction/{gone}/5"):
        meta.put(key, b"{}")
    meta.put("coll/9", b"not json")  # unreadable: left alone, not taken for dropped
    unreadable = _segment(objects, meta, 10, cid=9, register=False)

    gc, _, _ = _gc(meta, objects)
    done = gc.run_once()
    assert done == {"dropped_index": 1, "dropped_partition": 3, "dropped_collection": 5}, done
    assert len(objects.list(kept)) == 4
    assert old_index not in objects.list("") and len(objects.list(old_index.rsplit("/", 1)[0])) == 3
    assert objects.list(dropped_part) == [] and meta.scan(f"seg/{CID}/{CH}/{30:020d}") == []
    assert [k for k, _ in meta.scan("idxbuild/")] == [f"idxbuild/{CID}/{INDEX + 1}/{CH}/{10:020d}-{PID}/x"]
    assert objects.list(f"segments/{gone}/") == [] and objects.list(f"deltas/{gone}/") == []
    assert [k for k, _ in meta.scan("") if f"/{gone}/" in k] == []
    assert len(objects.list(unreadable)) == 4


def test_one_listing_per_pass(stores):
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"1000")
    for pos in range(1, 41):
        _segment(objects, meta, pos)
    calls = []
    real = objects.list
    objects.list = lambda prefix: calls.append(prefix) or real(prefix)
    gc, _, _ = _gc(meta, objects)
    assert gc.run_once() == {}
    assert calls == [""]


def test_a_fenced_collector_deletes_no_metadata(stores):
    meta, objects = stores
    meta.put("session/coord", b"me")
    _segment(objects, meta, 10, cid=8)
    gc, _, _ = _gc(meta, objects, fence={"session/coord": b"me"})
    meta.put("session/coord", b"another coord")
    with pytest.raises(Exception, match="no longer active"):
        gc.run_once()
    assert len(objects.list("segments/8/")) == 4 and meta.scan("seg/8/") != []


def test_the_thread_runs_passes(stores):
    meta, objects = stores
    _segment(objects, meta, 10, cid=8)
    gc = GarbageCollector(meta, objects, interval=0.05, grace=0).start()
    try:
        import time

        deadline = time.monotonic() + 10
        while (objects.list("") or meta.scan("seg/")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert objects.list("") == [] and meta.scan("seg/") == []
    finally:
        gc.close()


def test_build_records_of_segments_gone(stores):
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"50")
    _segment(objects, meta, 10)
    source = _segment(objects, meta, 20, register=False)  # compacted away, its record pending
    meta.put(f"gc/{CID}/r", json.dumps({"prefixes": [source], "keys": [], "after": 5000.0}).encode())
    for pos in (10, 20, 30):  # 30: compacted away and collected earlier
        meta.put(f"idxbuild/{CID}/{INDEX}/{CH}/{pos:020d}-{PID}/inc", b'{"state": "finished"}')
    gc, _, wall = _gc(meta, objects)
    assert gc.run_once() == {}
    assert [k.split("/")[4] for k, _ in meta.scan("idxbuild/")] == [f"{10:020d}-{PID}", f"{20:020d}-{PID}"]
    wall.now = 5000.0
    assert gc.run_once() == {"compacted": 4}
    gc.run_once()
    assert [k.split("/")[4] for k, _ in meta.scan("idxbuild/")] == [f"{10:020d}-{PID}"]


def test_the_active_coord_collects_and_a_standby_does_not():
    from tests.conftest import wait_until
    from vecdb.config import GcSettings
    from vecdb.coord.server import Coord

    meta, objects = MemoryMetaStore(), MemoryObjectStore()
    settings = GcSettings(interval=0.05, grace=0)
    first = Coord(meta, session_ttl=2, objects=objects, gc=settings)
    second = Coord(meta, session_ttl=2, objects=objects, gc=settings)
    try:
        assert first.active and not second.active
        _segment(objects, meta, 10, cid=8)  # a dropped collection's leftovers
        wait_until(lambda: objects.list("") == [] and meta.scan("seg/") == [], 10, "the active coord collects")
        runs = metrics.GC_RUN_COUNT.labels(second.address)._value.get()
        assert runs == 0  # a standby runs no pass
        first.stop()  # its term ends, its collector with it; the standby takes over and collects
        assert second.wait_active(10)
        _segment(objects, meta, 10, cid=9)
        wait_until(lambda: objects.list("") == [], 10, "the new active coord collects")
        assert metrics.GC_RUN_COUNT.labels(second.address)._value.get() > 0
    finally:
        first.stop()
        second.stop()
        meta.close()


def test_what_it_cannot_read_protects(stores):
    """An intent without a readable incarnation protects its prefix; a seg key it cannot read keeps
    every unregistered prefix of its channel; a segment without a partition id is not a dropped
    partition's."""
    meta, objects = stores
    _collection(meta)
    meta.put(f"ckpt/{CID}/{CH}", b"50")
    guarded = _segment(objects, meta, 20, register=False, suffix="-c900")
    meta.put(intent_key(guarded), b"not json")
    no_pid = _segment(objects, meta, 10)
    key = f"seg/{CID}/{CH}/{10:020d}-{PID}"
    meta.put(key, json.dumps({"prefix": no_pid, "position": 10}).encode())
    gc, _, _ = _gc(meta, objects)
    assert gc.run_once() == {}
    assert len(objects.list(guarded)) == 4 and meta.get(key) is not None
    meta.delete(intent_key(guarded))
    meta.put(f"seg/{CID}/{CH}/{30:020d}-{PID}", b"{broken")
    assert gc.run_once() == {}
    assert len(objects.list(guarded)) == 4
    meta.delete(f"seg/{CID}/{CH}/{30:020d}-{PID}")
    assert gc.run_once() == {"orphan_segment": 4}


def test_a_pass_over_everything_deletes_the_log_channels_of_dropped_collections(stores, tmp_path):
    """A drop deletes its catalog record, then its channels: a proxy that died between the two left the
    channels, and with no data node following them nothing else deletes them. Given the log, a pass over
    everything does; a live collection's channels and names of another form stay; a scoped pass does
    not list the log."""
    from vecdb.storage.wal import WalLog

    meta, objects = stores
    _collection(meta)
    wal = WalLog(str(tmp_path / "wal"))
    try:
        for ch in (CH, "c8-s0", "c8-s1", "not-a-channel"):
            wal.append(ch, b"r")
        gc, _, _ = _gc(meta, objects, wal=wal)
        assert gc.run_once() == {"log_channel": 2}
        assert wal.channels() == sorted([CH, "not-a-channel"]) and wal.last_position(CH) == 1
        gc.watch_changes()
        assert not gc.run_due()  # (the first pass after is one over everything)
        meta.delete(f"coll/{CID}")  # dropped: a scoped pass judges its data, not its channels
        deadline = time.monotonic() + 10
        while (done := gc.run_due()) is None:  # (until its watch saw the change)
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert gc.passes["scoped"] == 1 and "log_channel" not in done and CH in wal.channels()
        assert gc.run_once()["log_channel"] == 1 and wal.channels() == ["not-a-channel"]
    finally:
        gc.close()  # (its watches, before the stores close)
        wal.close()

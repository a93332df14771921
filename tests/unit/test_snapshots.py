"""Collection snapshots (vecdb.coord.snapshots) on the memory backends: create, describe, list, drop;
a restore equals the source at the snapshot after more inserts, deletes and a compaction of the
source; the garbage collector and drops keep what a snapshot names and free it after drop_snapshot;
the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vecdb import errors
from vecdb.coord.catalog import Catalog
from vecdb.coord.ddl import DdlManager
from vecdb.coord.gc import GarbageCollector
from vecdb.coord.snapshots import COMPLETED, SnapshotManager, delete_unpinned, pinned_files
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryMetaStore, MemoryObjectStore


@pytest.fixture
def env():
    meta, objects = MemoryMetaStore(), MemoryObjectStore()
    catalog = Catalog(meta)
    ids, tso = IdAllocator(meta), TimestampOracle(meta)
    ddl = DdlManager(catalog, ids, tso)
    schema = CollectionSchema("src", [FieldSchema("id", DataType.INT64, is_primary=True, field_id=100),
                                      FieldSchema("v", DataType.FLOAT_VECTOR, dim=4, field_id=101)])
    ddl.create_collection("default", "src", schema, 1, 0, {}, 0)
    ddl.create_partition("default", "src", "p1")
    ddl.create_index("default", "src", "v", "idx", "FLAT", "L2", {})
    yield meta, objects, catalog, ddl, SnapshotManager(meta, objects, catalog, ddl, ids, tso)
    catalog.close()


def _persist(meta, objects, catalog, position: int, ids, partition: str = "_default", deletes=()) -> str:
    """What a data node's persist leaves: a segment (and a delta) at ``position``, the checkpoint moved."""
    info = catalog.get("default", "src")
    ch, pid = info.channels[0], info.partition(partition).id
    prefix = sf.segment_prefix(info.id, ch, position, pid)
    ids = np.asarray(ids, np.int64)
    ts = np.full(len(ids), position, np.uint64)
    sf.write_segment(objects, prefix, info.schema, {"id": ids, "v": np.ones((len(ids), 4), np.float32) * ids[:, None]},
                     ts)
    puts = {f"seg/{info.id}/{ch}/{position:020d}-{pid}": json.dumps(
        {"segment_id": position, "partition_id": pid, "num_rows": len(ids), "prefix": prefix,
         "position": position}).encode(), f"ckpt/{info.id}/{ch}": str(position).encode()}
    if len(deletes):
        key = f"deltas/{info.id}/{ch}/{position:020d}.vcol"
        sf.write_delta(objects, key, np.asarray(deletes, np.int64), np.full(len(deletes), position + 1, np.uint64))
        puts[f"delta/{info.id}/{ch}/{position:020d}"] = key.encode()
    meta.txn(puts=puts)
    return prefix


def _live_ids(meta, objects, catalog, name: str) -> list[int]:
    """The collection's live primary keys, as a query node resolves them at load."""
    info = catalog.get("default", name)
    rows: dict[int, int] = {}
    dels: list[tuple[int, int]] = []
    for ch in info.channels:
        for seg in sf.list_segments(meta, info.id, ch):
            cols, ts = sf.read_segment(objects, seg["prefix"], info.schema)
            for pk, t in zip(cols["id"].tolist(), ts.tolist()):
                rows[pk] = max(rows.get(pk, 0), t)
        for key in sf.list_deltas(meta, info.id, ch):
            pks, ts = sf.read_delta(objects, key)
            dels += zip(pks.tolist(), ts.tolist())
    for pk, t in dels:
        if pk in rows and rows[pk] < t:
            del rows[pk]
    return sorted(rows)


def test_create_describe_list_drop(env):
    meta, objects, catalog, ddl, snaps = env
    _persist(meta, objects, catalog, 5, range(10))
    snap = snaps.create("", "src", "s1", "first")
    snaps.create("default", "src", "s2")
    assert snaps.names("default", "src") == ["s1", "s2"] == snaps.names("default")
    got = snaps.get("default", "src", "s1")
    assert (got.name, got.description, got.collection_id) == ("s1", "first", snap.collection_id)
    assert [p["name"] for p in got.info["partitions"]] == ["_default", "p1"]
    assert len(got.channels[0]["segments"]) == 1
    snaps.drop("default", "src", "s1")
    snaps.drop("default", "src", "s1")  # idempotent
    assert snaps.names("default", "src") == ["s2"]


def test_errors(env):
    meta, objects, catalog, ddl, snaps = env
    snaps.create("default", "src", "s1")
    with pytest.raises(errors.InvalidParameter, match="already exists"):
        snaps.create("default", "src", "s1")
    with pytest.raises(errors.InvalidParameter, match="snapshot not found"):
        snaps.get("default", "src", "nope")
    with pytest.raises(errors.CollectionNotFound):
        snaps.create("default", "missing", "s")
    with pytest.raises(errors.CollectionNotFound):
        snaps.names("default", "missing")
    with pytest.raises(errors.InvalidParameter, match="snapshot name should not be empty"):
        snaps.create("default", "src", "")
    with pytest.raises(errors.InvalidParameter, match="collection already exists"):
        snaps.restore("s1", "default", "src", "default", "src")
    with pytest.raises(errors.InvalidParameter, match="job not found"):
        snaps.job(123)


def test_restore_equals_the_source_at_the_snapshot(env):
    meta, objects, catalog, ddl, snaps = env
    first = _persist(meta, objects, catalog, 5, range(10))
    _persist(meta, objects, catalog, 8, range(10, 15), partition="p1", deletes=[0, 1])
    snaps.create("default", "src", "s1")
    at_snapshot = _live_ids(meta, objects, catalog, "src")
    assert at_snapshot == list(range(2, 15))
    # later: more rows, deletes, and a compaction that replaced the first segment
    _persist(meta, objects, catalog, 12, range(100, 105), deletes=[5, 6])
    info = catalog.get("default", "src")
    ch = info.channels[0]
    meta.txn(deletes=[f"seg/{info.id}/{ch}/{5:020d}-{info.partition('_default').id}"],
             puts={f"gc/{info.id}/x": json.dumps({"prefixes": [first], "keys": [], "after": 0}).encode()})
    assert _live_ids(meta, objects, catalog, "src") != at_snapshot

    job = snaps.restore("s1", "default", "src", "default", "dst", wait=True)
    assert (job.state, job.progress) == (COMPLETED, 100), job.reason
    dst = catalog.get("default", "dst")
    assert dst.id != info.id and [p.name for p in dst.partitions] == ["_default", "p1"]
    assert [(i.index_name, i.index_type) for i in dst.indexes] == [("idx", "FLAT")]
    assert not dst.loaded
    assert _live_ids(meta, objects, catalog, "dst") == at_snapshot
    segs = sf.list_segments(meta, dst.id, dst.channels[0])
    assert {s["partition_id"] for s in segs} == {p.id for p in dst.partitions}
    assert all(s["prefix"].startswith(f"segments/{dst.id}/") and s["deltas_upto"] == -1 for s in segs)
    assert [j.id for j in snaps.jobs("default", "dst")] == [job.id]


def test_gc_and_drops_keep_what_a_snapshot_names(env):
    meta, objects, catalog, ddl, snaps = env
    first = _persist(meta, objects, catalog, 5, range(10), deletes=[3])
    delta = f"deltas/{catalog.get('default', 'src').id}/{catalog.get('default', 'src').channels[0]}/{5:020d}.vcol"
    snaps.create("default", "src", "s1")
    assert pinned_files(meta) == ({first}, {delta})
    info = catalog.get("default", "src")
    # a compaction's record names the first segment, then the whole collection is dropped
    meta.txn(deletes=[k for k, _ in meta.scan(f"seg/{info.id}/")] + [k for k, _ in meta.scan(f"delta/{info.id}/")],
             puts={f"gc/{info.id}/x": json.dumps({"prefixes": [first], "keys": [delta], "after": 0}).encode()})
    gc = GarbageCollector(meta, objects, grace=0)
    gc.run_once()
    assert objects.exists(first + "_ts.npy") and objects.exists(delta)
    ddl.drop_collection("default", "src")
    delete_unpinned(meta, objects, f"segments/{info.id}/")  # a data node's drop
    gc.run_once()
    gc.run_once()
    assert objects.exists(first + "_ts.npy") and objects.exists(delta)
    # the snapshot outlives its collection: a restore still works
    job = snaps.restore("s1", "default", "src", "default", "back", wait=True)
    assert job.state == COMPLETED, job.reason
    assert _live_ids(meta, objects, catalog, "back") == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    pin = snaps.pin("default", "src", "s1", ttl_seconds=60)
    snaps.drop("default", "src", "s1")
    gc.run_once()
    assert objects.exists(first + "_ts.npy")  # pinned
    snaps.unpin(pin)
    gc.run_once()
    gc.run_once()
    assert not objects.list(first) and not objects.exists(delta)
    assert objects.list(f"segments/{catalog.get('default', 'back').id}/")  # the restored copy stays

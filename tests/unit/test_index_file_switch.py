"""Index builds once per segment (vecdb.datanode.index_scheduler, vecdb.querynode.node): a query node
that does not build (a cluster's) serves a sealed segment with what it has until the finished build
record of its index file appears, then loads the file and switches the segment to it, with the same
answers before, during and after; the build records say each segment was built once."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from vecdb.catalog_model import CollectionInfo, IndexInfo, PartitionInfo
from vecdb.coord import index_builds
from vecdb.datanode.node import DataNode
from vecdb.index import new_index
from vecdb.log_records import InsertRecord, SealRecord, encode
from vecdb.querynode import executor
from vecdb.querynode.node import QueryNode
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

CH = "c5-s0"
ROWS = 3000
DIM = 8


class _Ids:
    def __init__(self):
        self.n = 0

    def allocate(self, count: int = 1) -> int:
        self.n += count
        return self.n


def _info() -> CollectionInfo:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=DIM)])
    return CollectionInfo(id=5, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(0, "_default", 1)],
                          indexes=[IndexInfo(7, "v", "v", "IVF_FLAT", "L2", {"nlist": 16}, 1)])


def _insert(vecs: np.ndarray, lo: int, ts: int) -> bytes:
    n = len(vecs)
    return encode(InsertRecord(5, 0, ts, n, {"id": np.arange(lo, lo + n, dtype=np.int64), "v": vecs}))


def _search(qn: QueryNode, info: CollectionInfo, queries: np.ndarray):
    spec = executor.SearchSpec(field=info.schema.field("v"), queries=queries, limit=10, offset=0, metric="L2",
                               params={"nprobe": 16}, index_type="IVF_FLAT", ts=2**62)
    hits = qn.search(info, spec, None, [])
    return hits.pks.tolist(), hits.scores


def _segments(qn: QueryNode):
    return [s for shard in qn.collections[5].shards for s in shard.segments.values() if s.sealed]


def _wait(cond, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.01)


def test_a_query_node_that_does_not_build_switches_to_the_data_nodes_file_without_a_gap():
    info = _info()
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    vecs = np.random.default_rng(0).random((2 * ROWS, DIM), dtype=np.float32)
    log.append_batch(CH, [_insert(vecs[:ROWS], 0, 1), encode(SealRecord(5, 2))])
    dn = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn0")
    dn.persist(info, CH, 2)
    qn = QueryNode(log, meta, objects, build_indexes=False)
    stop = threading.Event()
    answers: list = []
    try:
        qn.load(info)  # one persisted segment, no index file yet
        # a second segment sealed on the node from the log (as a tailing node does), persisted after
        records = [InsertRecord(5, 0, 3, ROWS, {"id": np.arange(ROWS, 2 * ROWS, dtype=np.int64), "v": vecs[ROWS:]}),
                   SealRecord(5, 4)]
        pos = log.append_batch(CH, [encode(r) for r in records])
        for p, rec in zip(pos, records):
            qn.deliver(CH, p, rec)
        dn.persist(info, CH, pos[-1])
        segs = _segments(qn)
        assert len(segs) == 2 and all(not s.indexes for s in segs)
        time.sleep(0.3)
        assert all(not s.indexes for s in segs), "a query node that does not build built an index"
        queries = vecs[::500] + 0.01
        before = _search(qn, info, queries)
        assert [r["index_id"] for r in qn.segment_infos(info)] == [0, 0]

        def read():  # reads all along the switch: every answer the same
            while not stop.is_set():
                answers.append(_search(qn, info, queries)[0])
        reader = threading.Thread(target=read)
        reader.start()
        dn.indexer.schedule(info)  # the data node builds both; the query node learns it from the records
        _wait(lambda: all("v" in s.indexes for s in segs))
        stop.set()
        reader.join()
        after = _search(qn, info, queries)
        assert after[0] == before[0]
        np.testing.assert_allclose(after[1], before[1], rtol=1e-5)
        assert answers and all(a == before[0] for a in answers)
        infos = qn.segment_infos(info)
        assert [r["index_id"] for r in infos] == [7, 7] and all(r["segment_id"] for r in infos)
        # built once each, by dn0, and recorded finished
        recs = [json.loads(v) for _, v in meta.scan(index_builds.index_prefix(5, 7))]
        assert sorted((r["state"], r["by"], r["rows"]) for r in recs) == [("finished", "dn0", ROWS)] * 2
        assert dn.indexer.state(info, "v") == (2 * ROWS, 2 * ROWS)
        assert index_builds.failures(meta, 5, 7) == []
        # asking again builds nothing: the records say the files are there
        dn.indexer.schedule(info)
        assert len(meta.scan(index_builds.index_prefix(5, 7))) == 2
    finally:
        stop.set()
        qn.close()
        dn.close()


def test_a_file_that_does_not_fit_its_segment_is_not_served():
    info = _info()
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    vecs = np.random.default_rng(1).random((ROWS, DIM), dtype=np.float32)
    log.append_batch(CH, [_insert(vecs, 0, 1), encode(SealRecord(5, 2))])
    dn = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn0")
    seg = dn.persist(info, CH, 2)[0]
    qn = QueryNode(log, meta, objects, build_indexes=False)
    try:
        qn.load(info)
        key = sf.index_key(seg["prefix"], 101, 7)
        sf.save_index(objects, new_index(info.indexes[0], info.schema.field("v"), vecs[:2000]), key)  # too few rows
        dn.indexer.builds.finish(5, 7, seg["prefix"], ROWS, key, "dn0")
        time.sleep(0.5)
        assert not _segments(qn)[0].indexes
        assert _search(qn, info, vecs[:1])[0][0] == 0  # still answered exactly
    finally:
        qn.close()
        dn.close()


def test_the_owning_data_node_builds_flushed_compacted_and_new_index_segments_once():
    """IndexScheduler (a data node process's): segments of the channels this node owns get their index
    whether flushed or made by a compaction (a ``-c<segment id>`` prefix, as vecdb.datanode.compactor
    names them), and a new index on the collection builds every segment; a channel owned by another
    node is left to it."""
    from vecdb.catalog_model import coll_key
    from vecdb.coord.datanode_assignment import dn_assign_key
    from vecdb.datanode.index_scheduler import IndexScheduler

    info = _info()
    info.indexes = []
    info.shards_num = 2
    other = "c5-s1"
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    meta.put(coll_key(5), info.to_json())
    meta.put(dn_assign_key(5), json.dumps({CH: "dn0", other: "dn1"}).encode())
    vecs = np.random.default_rng(2).random((ROWS, DIM), dtype=np.float32)
    for ch in (CH, other):
        log.append_batch(ch, [_insert(vecs, 0, 1), encode(SealRecord(5, 2))])
    dn = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn0")
    scheduler = IndexScheduler(dn.indexer, meta, "dn0")

    def finished() -> list[str]:
        return sorted(seg for (_, seg) in index_builds.finished(meta, 5))
    try:
        for ch in (CH, other):
            dn.persist(info, ch, 2)  # no index yet: nothing to build
        time.sleep(0.3)
        assert finished() == []
        info.indexes = _info().indexes  # CreateIndex: the catalog changes
        meta.put(coll_key(5), info.to_json())
        flushed = sf.segment_prefix(5, CH, 2, 0)
        _wait(lambda: finished() == [flushed])  # this node's channel only
        # a compaction's segment: objects under its own prefix, then its seg key (the contract's layout)
        compacted = f"segments/5/{CH}/{2:020d}-0-c99/"
        sf.write_segment(objects, compacted, info.schema, {"id": np.arange(ROWS, dtype=np.int64), "v": vecs},
                         np.ones(ROWS, np.uint64))
        meta.put(f"seg/5/{CH}/{2:020d}-0-c99", json.dumps({"segment_id": 99, "partition_id": 0, "num_rows": ROWS,
                                                           "prefix": compacted, "position": 2, "from": [flushed],
                                                           "deltas_upto": 2}).encode())
        _wait(lambda: finished() == sorted([flushed, compacted]))
        recs = [json.loads(v) for _, v in meta.scan(index_builds.collection_prefix(5))]
        assert sorted((r["state"], r["by"], r.get("segment_id")) for r in recs) == [("finished", "dn0", 1),
                                                                                    ("finished", "dn0", 99)]
        assert objects.exists(sf.index_key(compacted, 101, 7))
        # the other channel becomes this node's (dn1 died): its segment is built on the take-over
        meta.put(dn_assign_key(5), json.dumps({CH: "dn0", other: "dn0"}).encode())
        _wait(lambda: len(finished()) == 3)
    finally:
        scheduler.close()
        dn.close()


@pytest.mark.parametrize("where", ["collection", "index"])
def test_with_mmap_on_the_switched_index_is_memory_mapped(tmp_path, where):
    """The collection's ``mmap.enabled``, or the index's own (alter_index_properties)."""
    from vecdb.storage.local_objects import LocalObjectStore

    info = _info()
    if where == "collection":
        info.properties = {"mmap.enabled": "true"}
    else:
        info.indexes[0].properties = {"mmap.enabled": "True"}
    log, meta, objects = MemoryLog(), MemoryMetaStore(), LocalObjectStore(str(tmp_path))
    vecs = np.random.default_rng(3).random((ROWS, DIM), dtype=np.float32)
    log.append_batch(CH, [_insert(vecs, 0, 1), encode(SealRecord(5, 2))])
    dn = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn0")
    dn.persist(info, CH, 2)
    qn = QueryNode(log, meta, objects, build_indexes=False)
    try:
        qn.load(info)
        seg = _segments(qn)[0]
        before = _search(qn, info, vecs[:3])
        dn.indexer.schedule(info)
        _wait(lambda: "v" in seg.indexes)
        assert seg.indexes["v"]._read_only  # loaded with mmap (read-only), not read into memory
        assert _search(qn, info, vecs[:3])[0] == before[0]
    finally:
        qn.close()
        dn.close()


def test_with_no_data_node_alive_the_proxy_that_persists_builds_else_it_leaves_builds_to_them():
    from vecdb.coord.datanode_assignment import DATANODE_SESSIONS
    from vecdb.datanode.remote import ClusterDataNode

    info = _info()
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    vecs = np.random.default_rng(4).random((ROWS, DIM), dtype=np.float32)
    log.append_batch(CH, [_insert(vecs, 0, 1), encode(SealRecord(5, 2)), _insert(vecs, ROWS, 3),
                          encode(SealRecord(5, 4))])
    proxy = ClusterDataNode(DataNode(log, meta, objects, _Ids(), truncate=False), meta)
    try:
        meta.put(f"{DATANODE_SESSIONS}dn0", b"{}")  # a data node lives: builds are its business
        proxy.local.persist(info, CH, 2)  # (as that data node would)
        proxy.indexer.schedule(info)
        time.sleep(0.3)
        assert index_builds.finished(meta, 5) == {}
        assert proxy.indexer.state(info, "v") == (0, ROWS)
        meta.delete(f"{DATANODE_SESSIONS}dn0")  # none left: the proxy persists, and builds what the channel lacks
        segs = proxy.persist(info, CH, 4)
        assert [s["position"] for s in segs] == [4]
        _wait(lambda: sorted(p for _, p in index_builds.finished(meta, 5)) == [sf.segment_prefix(5, CH, 2, 0),
                                                                               segs[0]["prefix"]])
        assert proxy.indexer.state(info, "v") == (2 * ROWS, 2 * ROWS)
    finally:
        proxy.close()


def test_a_standalone_query_node_builds_itself_and_records_the_finished_file():
    info = _info()
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    vecs = np.random.default_rng(5).random((ROWS, DIM), dtype=np.float32)
    qn = QueryNode(log, meta, objects)  # standalone: builds
    try:
        qn.load(info)
        records = [InsertRecord(5, 0, 1, ROWS, {"id": np.arange(ROWS, dtype=np.int64), "v": vecs}), SealRecord(5, 2)]
        for p, rec in zip(log.append_batch(CH, [encode(r) for r in records]), records):
            qn.deliver(CH, p, rec)
        seg = _segments(qn)[0]
        _wait(lambda: "v" in seg.indexes)
        prefix = sf.segment_prefix(5, CH, 2, 0)
        assert index_builds.finished(meta, 5) == {(7, prefix): sf.index_key(prefix, 101, 7)}
        assert objects.exists(sf.index_key(prefix, 101, 7))
    finally:
        qn.close()


def test_a_data_nodes_build_cut_short_by_its_death_runs_once_more_then_counts_as_a_crash():
    """``IndexBuilds(retry_after_crash=True)`` (a data node's): a running record of a dead process
    marked ``retry`` is built again (and reported pending meanwhile, not failed); a second death
    in the same build makes it failed, as in standalone after the first."""
    meta = MemoryMetaStore()
    builds = index_builds.IndexBuilds(meta, retry_after_crash=True)
    prefix = sf.segment_prefix(5, CH, 2, 0)
    key = index_builds.segment_records_prefix(5, 7, prefix) + "dead-incarnation"
    dead = {"state": "running", "incarnation": "dead-incarnation", "pid": 1, "host": "h", "since": "s", "rows": 9}
    meta.put(key, json.dumps({**dead, "retry": True}).encode())
    assert index_builds.failures(meta, 5, 7) == []  # to be built again: pending, not failed
    seen = []

    def build():
        seen.extend(json.loads(v) for _, v in meta.scan(index_builds.segment_records_prefix(5, 7, prefix)))
        return "index"
    assert builds.run(5, 7, prefix, 9, build) == "index"
    assert [(r["state"], r.get("retry")) for r in seen] == [("running", None)]  # the retry carries no mark
    meta.put(key, json.dumps(dead).encode())  # ... and the retry's process died too
    try:
        builds.run(5, 7, prefix, 9, build)
        raise AssertionError("a build that died twice ran a third time")
    except index_builds.BuildRefused as e:
        assert "stopped while building" in e.reason
    assert [f["rows"] for f in index_builds.failures(meta, 5, 7)] == [9]
    builds.close()


def test_a_compacted_segment_is_indexed_by_the_owning_data_node_and_the_query_node_swaps_to_its_file():
    """The real pieces together (memory stores): the data node (vecdb.datanode.compactor) merges two
    indexed segments, dropping deleted rows; its IndexScheduler builds the new segment's index once;
    a cluster's query node (tail=True) swaps the sources for the new segment (vecdb.querynode.compaction)
    and serves it from that file; answers the exact ones throughout."""
    from vecdb.catalog_model import coll_key
    from vecdb.coord.datanode_assignment import dn_assign_key
    from vecdb.datanode.index_scheduler import IndexScheduler
    from vecdb.log_records import DeleteRecord

    info = _info()
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    meta.put(coll_key(5), info.to_json())
    meta.put(dn_assign_key(5), json.dumps({CH: "dn0"}).encode())
    vecs = np.random.default_rng(6).random((2 * ROWS, DIM), dtype=np.float32)
    dn = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn0")
    scheduler = IndexScheduler(dn.indexer, meta, "dn0")
    qn = QueryNode(log, meta, objects, tail=True)
    try:
        qn.load(info)
        for lo, ts in ((0, 1), (ROWS, 3)):
            pos = log.append_batch(CH, [_insert(vecs[lo:lo + ROWS], lo, ts), encode(SealRecord(5, ts + 1))])
            dn.persist(info, CH, pos[-1])
        _wait(lambda: len(_segments(qn)) == 2 and all("v" in s.indexes for s in _segments(qn)))
        dead = np.arange(0, 2 * ROWS, 7, dtype=np.int64)
        pos = log.append_batch(CH, [encode(DeleteRecord(5, 10, dead)), encode(SealRecord(5, 11))])
        dn.persist(info, CH, pos[-1])
        alive = np.setdiff1d(np.arange(2 * ROWS), dead)
        queries = vecs[1::401] + 0.01
        expected = alive[np.argsort(((queries[:, None, :] - vecs[alive][None]) ** 2).sum(-1), axis=1)[:, :10]]
        _wait(lambda: qn._by_channel[CH].applied_position >= pos[-1])
        assert _search(qn, info, queries)[0] == expected.ravel().tolist()

        plans = dn.compactor.compact_channel(info, CH, manual=True)
        assert [len(p.sources) for p in plans] == [2]
        new = [s for s in sf.list_segments(meta, 5, CH) if "from" in s]
        assert len(new) == 1 and new[0]["num_rows"] == len(alive)
        _wait(lambda: [s.prefix for s in _segments(qn)] == [new[0]["prefix"]] and "v" in _segments(qn)[0].indexes)
        assert _segments(qn)[0].indexes["v"].ntotal == len(alive)
        assert _search(qn, info, queries)[0] == expected.ravel().tolist()
        new_dir = f"/{new[0]['prefix'].split('/')[3]}/"  # <position>-<partition>-c<segment id>
        recs = [json.loads(v) for k, v in meta.scan(index_builds.collection_prefix(5)) if new_dir in k]
        assert [(r["state"], r["by"], r["segment_id"]) for r in recs] == [("finished", "dn0", new[0]["segment_id"])]
    finally:
        qn.close()
        scheduler.close()
        dn.close()


def test_an_indexer_does_not_build_a_segment_another_process_finished_after_it_was_queued(monkeypatch):
    from vecdb.datanode import indexer as indexer_mod

    info = _info()
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    vecs = np.random.default_rng(7).random((ROWS, DIM), dtype=np.float32)
    log.append_batch(CH, [_insert(vecs, 0, 1), encode(SealRecord(5, 2))])
    first = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn0")
    late = DataNode(log, meta, objects, _Ids(), truncate=False, node_id="dn1")
    built = []
    real = indexer_mod.new_index
    monkeypatch.setattr(indexer_mod, "new_index", lambda *a: built.append(1) or real(*a))
    try:
        seg = first.persist(info, CH, 2)[0]
        first.indexer.schedule(info)
        _wait(lambda: index_builds.finished(meta, 5) != {})
        idx, field = info.indexes[0], info.schema.field("v")
        late.indexer._build(info, idx, field, CH, seg, sf.index_key(seg["prefix"], 101, 7))  # queued before
        assert built == [1]
        assert [json.loads(v)["by"] for _, v in meta.scan(index_builds.collection_prefix(5))] == ["dn0"]
    finally:
        first.close()
        late.close()

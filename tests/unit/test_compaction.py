"""Compaction planner and executor (vecdb.datanode.compactor) on the memory stores.

Each test writes records to the log, persists them with the real DataNode, compacts, and checks
what a query node loading the channel afresh sees (key -> ts and vector): the same before and
after, with fewer segments and rows on disk, and the metadata the shared contract names."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from vecdb.catalog_model import CollectionInfo, PartitionInfo, coll_key
from vecdb.config import CompactionSettings
from vecdb.datanode.compactor import compaction_state, request_compaction, request_key
from vecdb.datanode.node import DataNode
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, encode
from vecdb.querynode.node import QueryNode
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

CID = 7
CH = f"c{CID}-s0"


class _Ids:
    def __init__(self, first: int = 1000) -> None:
        self._next = itertools.count(first)

    def allocate(self, count: int = 1) -> int:
        first = next(self._next)
        for _ in range(count - 1):
            next(self._next)
        return first


def _info(varchar: bool = False, partitions: int = 1) -> CollectionInfo:
    pk = (FieldSchema("id", DataType.VARCHAR, field_id=100, is_primary=True, max_length=64) if varchar
          else FieldSchema("id", DataType.INT64, field_id=100, is_primary=True))
    schema = CollectionSchema("c", [pk, FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2),
                                    FieldSchema("tag", DataType.VARCHAR, field_id=102, max_length=16)])
    return CollectionInfo(id=CID, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(p, f"p{p}", 1) for p in range(partitions)])


class Env:
    def __init__(self, varchar: bool = False, partitions: int = 1, **settings) -> None:
        self.info = _info(varchar, partitions)
        self.varchar = varchar
        self.log, self.meta, self.objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
        self.dn = DataNode(self.log, self.meta, self.objects, _Ids(), truncate=False,
                           compaction=CompactionSettings(**{"small_rows": 100, "max_rows": 1000, "gc_grace": 5,
                                                            **settings}))
        self.ts = itertools.count(10)
        self.meta.put(coll_key(CID), self.info.to_json())  # the catalog's record, as the compactor reads it

    def keys(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        return np.array([f"k{i}" for i in ids], dtype=object) if self.varchar else ids

    def insert(self, ids, partition: int = 0) -> int:
        ts = next(self.ts)
        ids = np.asarray(ids, np.int64)
        cols = {"id": self.keys(ids), "v": np.stack([ids, np.full(len(ids), ts)], 1).astype(np.float32),
                "tag": np.array([f"t{ts}"] * len(ids), dtype=object)}
        self.log.append(CH, encode(InsertRecord(CID, partition, ts, len(ids), cols)))
        return ts

    def delete(self, ids) -> None:
        self.log.append(CH, encode(DeleteRecord(CID, next(self.ts), self.keys(ids))))

    def flush(self) -> None:
        pos = self.log.append(CH, encode(SealRecord(CID, next(self.ts))))
        self.dn.persist(self.info, CH, pos)

    def visible(self) -> dict:
        """key -> (ts, vector) as a query node that loads the channel now sees it."""
        qn = QueryNode(self.log, self.meta, self.objects)
        try:
            qn.load(self.info)
            shard = qn.collections[CID].shards[0]
            out = {}
            for key, loc in shard.pk_index.items():
                seg = shard.segments[loc >> 32]
                off = loc & 0xFFFFFFFF
                out[key] = (int(seg.ts()[off]), tuple(seg.column("v")[off].tolist()), seg.column("tag")[off])
            return out
        finally:
            qn.close()

    def segments(self) -> list[dict]:
        return sf.list_segments(self.meta, CID, CH)

    def close(self) -> None:
        self.dn.close()


@pytest.fixture(params=[False, True], ids=["int64", "varchar"])
def env(request):
    e = Env(varchar=request.param)
    yield e
    e.close()


def test_small_segments_of_a_partition_merge_into_one(env):
    for lo in range(0, 50, 10):
        env.insert(range(lo, lo + 10))
        env.flush()
    before = env.visible()
    sources = env.segments()
    assert len(sources) == 5 and len(before) == 50
    plans = env.dn.compactor.compact_channel(env.info, CH)
    assert [p.kind for p in plans] == ["merge"]
    segs = env.segments()
    assert len(segs) == 1
    new = segs[0]
    assert new["num_rows"] == 50 and new["position"] == max(s["position"] for s in sources)
    assert new["from"] == [s["prefix"] for s in sources] and new["deltas_upto"] == sf.checkpoint(env.meta, CID, CH)
    assert new["prefix"] == f"segments/{CID}/{CH}/{new['position']:020d}-0-c{new['segment_id']}/"
    assert env.visible() == before  # same keys, timestamps and values
    compacted = json.loads(env.meta.get(f"compacted/{CID}/{CH}/{new['segment_id']}"))
    assert compacted["from"] == new["from"] and compacted["to"] == new["prefix"]
    assert compacted["position"] == new["deltas_upto"]
    (gc_key, gc_raw), = env.meta.scan(f"gc/{CID}/")
    gc = json.loads(gc_raw)
    assert gc["prefixes"] == new["from"] and gc["keys"] == [] and gc["after"] > compacted["at"]
    assert env.meta.scan("gcintent/") == []
    # the sources' objects stay for readers until GC (after the grace)
    assert all(env.objects.list(p) for p in new["from"])
    assert env.dn.compactor.compact_channel(env.info, CH) == []  # nothing left to do


def test_rewrite_drops_deleted_and_superseded_rows_and_folds_the_deltas(env):
    env.insert(range(200))  # one big segment (above small_rows)
    env.flush()
    env.delete(range(0, 30))  # 30 deleted
    env.insert(range(30, 50))  # 20 upserted: the old versions superseded
    env.insert(range(500, 520))
    env.flush()
    env.delete([35] + list(range(500, 510)))  # 10 of the second segment's 40 rows die: rewritten too
    env.flush()
    before = env.visible()
    assert len(before) == 200 - 30 + 20 - 11
    deltas_before = sf.list_deltas(env.meta, CID, CH)
    assert len(deltas_before) == 2
    plans = env.dn.compactor.compact_channel(env.info, CH)
    assert sorted((p.kind, p.live_rows) for p in plans) == [("rewrite", 29), ("rewrite", 150)]
    assert env.visible() == before
    segs = env.segments()
    assert sum(s["num_rows"] for s in segs) == len(before)  # no dead row left on disk
    assert all(s["deltas_upto"] == sf.checkpoint(env.meta, CID, CH) for s in segs)
    # every segment folded every delta: none is needed any more, and GC is told to delete their objects
    assert sf.list_deltas(env.meta, CID, CH) == []
    gc = [json.loads(v) for _, v in env.meta.scan(f"gc/{CID}/")]
    assert sorted(k for g in gc for k in g["keys"]) == sorted(deltas_before)


def test_a_delta_stays_while_a_segment_that_may_need_it_was_not_compacted(env):
    env.insert(range(300))  # big: not merged; 10 deleted is below the 0.2 share: not rewritten
    env.flush()
    env.insert(range(1000, 1010))
    env.flush()
    env.insert(range(1010, 1020))
    env.delete(list(range(10)) + [1000])
    env.flush()
    before = env.visible()
    plans = env.dn.compactor.compact_channel(env.info, CH)
    assert [p.kind for p in plans] == ["merge"] and plans[0].live_rows == 19
    assert env.visible() == before
    # the big segment still needs the delta that deletes 0..9 (at the position of the last persist)
    assert len(sf.list_deltas(env.meta, CID, CH)) == 1
    assert env.meta.scan(f"gc/{CID}/") and all(json.loads(v)["keys"] == [] for _, v in env.meta.scan(f"gc/{CID}/"))


def test_a_delta_stays_for_the_segment_written_at_its_own_position(env):
    """A persist writes a segment and the delta of the same records at one position: a delete there
    can hit a row of that very segment, so the delta stays while that segment did not fold it."""
    env.insert(range(1000, 1010))
    env.flush()
    env.insert(range(1010, 1020))
    env.flush()
    env.insert(range(300))  # big, and 1 of 300 dead: neither merged nor rewritten
    env.delete([7])
    env.flush()
    before = env.visible()
    assert env.keys([7]).tolist()[0] not in before
    plans = env.dn.compactor.compact_channel(env.info, CH)
    assert [(p.kind, p.live_rows) for p in plans] == [("merge", 20)]
    assert len(sf.list_deltas(env.meta, CID, CH)) == 1  # the big segment at the delta's position needs it
    assert env.visible() == before


def test_a_segment_whose_rows_all_died_goes_without_a_new_one(env):
    env.insert(range(150))
    env.flush()
    env.delete(range(150))
    env.flush()
    assert env.visible() == {}
    plans = env.dn.compactor.compact_channel(env.info, CH)
    assert len(plans) == 1 and plans[0].target is None
    assert env.segments() == [] and sf.list_deltas(env.meta, CID, CH) == []
    (key, raw), = env.meta.scan(f"compacted/{CID}/{CH}/")
    assert json.loads(raw)["to"] is None
    assert env.visible() == {}
    env.insert([1, 2])  # and the channel goes on
    env.flush()
    assert set(env.visible()) == set(env.keys([1, 2]).tolist())


def test_a_persist_that_commits_meanwhile_makes_it_plan_again(env, monkeypatch):
    for lo in range(0, 30, 10):
        env.insert(range(lo, lo + 10))
        env.flush()
    real = env.meta.txn
    raced = []
    other = DataNode(env.log, env.meta, env.objects, _Ids(5000), truncate=False)  # another process's

    def racing_txn(*args, **kwargs):
        if kwargs.get("puts") and any(k.startswith("compacted/") for k in kwargs["puts"]) and not raced:
            raced.append(1)
            env.insert(range(100, 110))  # a persist commits between the compaction's reads and its commit
            other.persist(env.info, CH, env.log.append(CH, encode(SealRecord(CID, next(env.ts)))))
        return real(*args, **kwargs)
    monkeypatch.setattr(env.meta, "txn", racing_txn)
    plans = env.dn.compactor.compact_channel(env.info, CH)
    assert raced and len(plans) == 1 and len(plans[0].sources) == 4  # planned again with the new segment
    segs = env.segments()
    assert len(segs) == 1 and segs[0]["num_rows"] == 40
    assert len(env.visible()) == 40
    # the first attempt's objects and intent are gone: only the sources and the new segment remain
    prefixes = {k.rsplit("/", 1)[0] + "/" for k in env.objects.list(f"segments/{CID}/")}
    assert prefixes == set(segs[0]["from"]) | {segs[0]["prefix"]}
    assert env.meta.scan("gcintent/") == []
    other.close()


def test_a_source_changed_by_another_process_fails_the_commit(env):
    for lo in range(0, 20, 10):
        env.insert(range(lo, lo + 10))
        env.flush()
    c = env.dn.compactor
    state = c.read_state(CID, CH)
    plans = c.plan(env.info, state)
    victim = plans[0].seg_keys[0]
    env.meta.delete(victim)  # e.g. another data node compacted it away
    assert c._execute(env.info, CH, state, plans) is False
    assert env.meta.get(victim) is None and len(env.segments()) == 1  # nothing of ours committed
    assert env.meta.scan("compacted/") == [] and env.meta.scan("gcintent/") == []


def test_dead_share_threshold_and_manual_compaction():
    e = Env(small_rows=10)
    try:
        e.insert(range(100))
        e.flush()
        e.delete(range(15))  # 15% dead: below 0.2
        e.flush()
        assert e.dn.compactor.compact_channel(e.info, CH) == []
        e.delete(range(15, 25))  # 25%
        e.flush()
        before = e.visible()
        plans = e.dn.compactor.compact_channel(e.info, CH)
        assert [p.kind for p in plans] == ["rewrite"] and e.segments()[0]["num_rows"] == 75
        assert e.visible() == before
        e.delete([50])  # 1 dead of 75: only a manual compaction rewrites it
        e.flush()
        assert e.dn.compactor.compact_channel(e.info, CH) == []
        cid = e.dn.compact(e.info)
        state = _wait_state(e.dn, cid)
        assert state["channels"][CH]["state"] == "completed"
        (plan,) = state["channels"][CH]["plans"]
        assert e.segments()[0]["segment_id"] == plan["target"] and e.segments()[0]["num_rows"] == 74
        assert compaction_state(e.meta, 123456) is None
        # a request of a collection dropped meanwhile goes with the next request
        e.meta.put(request_key(99, 5), json.dumps({"collection_id": 99, "at": 0, "channels": {
            "c99-s0": {"state": "pending", "plans": []}}}).encode())
        request_compaction(e.meta, 77, e.info)
        assert compaction_state(e.meta, 5) is None and compaction_state(e.meta, cid) is not None
    finally:
        e.close()


def test_partitions_are_merged_apart():
    e = Env(partitions=2)
    try:
        for lo in range(0, 40, 10):
            e.insert(range(lo, lo + 10), partition=(lo // 10) % 2)
            e.flush()
        before = e.visible()
        plans = e.dn.compactor.compact_channel(e.info, CH)
        assert sorted((p.partition_id, len(p.sources)) for p in plans) == [(0, 2), (1, 2)]
        assert sorted(s["partition_id"] for s in e.segments()) == [0, 1]
        assert e.visible() == before
    finally:
        e.close()


def test_duplicate_keys_in_one_batch_keep_the_last():
    e = Env()
    try:
        e.insert([1, 2, 1, 3])  # key 1 twice in one batch: the last occurrence wins
        e.flush()
        e.insert([4])
        e.flush()
        before = e.visible()
        e.dn.compactor.compact_channel(e.info, CH)
        assert e.segments()[0]["num_rows"] == 4 and e.visible() == before
    finally:
        e.close()


def test_the_automatic_check_runs_after_persists():
    e = Env(interval=60)
    e.dn.compactor.start(lambda: {CH: CID}, watch_requests=False)
    try:
        for lo in range(0, 30, 10):
            e.insert(range(lo, lo + 10))
            e.flush()
        _wait(lambda: len(e.segments()) == 1)
        assert e.segments()[0]["num_rows"] == 30
    finally:
        e.close()


def _wait(cond, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _wait_state(dn, compaction_id: int) -> dict:
    _wait(lambda: all(c["state"] == "completed" for c in dn.compaction(compaction_id)["channels"].values()))
    return dn.compaction(compaction_id)


def test_rows_older_than_the_ttl_are_dropped_and_a_ttl_channel_is_checked_again_unchanged(monkeypatch):
    """collection.ttl.seconds: compaction drops what reads no longer see (vecdb.querynode.segment masks it)."""
    from vecdb.datanode import compactor
    from vecdb.timestamp import compose, now_ms

    e = Env()
    try:
        e.info.properties["collection.ttl.seconds"] = "3600"
        e.meta.put(coll_key(CID), e.info.to_json())
        now = now_ms()
        e.ts = iter([compose(now - 7_200_000), compose(now - 60_000), compose(now - 30_000), compose(now)])
        e.insert(range(0, 150))  # two hours old: expired
        e.insert(range(150, 300))  # a minute old: alive
        e.flush()
        assert len(e.visible()) == 300  # a load keeps them (reads mask by their own snapshot: test_segment_ttl)
        plans = e.dn.compactor.maybe_compact(e.info, CH)
        assert [p.kind for p in plans] == ["rewrite"] and sorted(e.visible()) == list(range(150, 300))
        assert sum(s["num_rows"] for s in e.segments()) == 150
        assert e.dn.compactor.maybe_compact(e.info, CH) == []  # checked in this period: nothing new
        monkeypatch.setattr(compactor, "now_ms", lambda: now + 2 * 3_600_000)  # time passes, nothing written
        assert [p.target for p in e.dn.compactor.maybe_compact(e.info, CH)] == [None]
        assert e.visible() == {} and e.segments() == []
    finally:
        e.close()


def test_the_automatic_check_merges_a_segment_once_its_index_is_built(monkeypatch):
    """As Milvus's dataCoord.compaction.indexBasedCompaction: a segment big enough for an index file joins an
    automatic merge once its build is over (finished or failed), not while it runs; a manual compaction
    takes it at once. A build that ends makes the next automatic check plan again, unchanged segments or not."""
    from vecdb.catalog_model import IndexInfo
    from vecdb.coord.index_builds import IndexBuilds

    monkeypatch.setattr(sf, "MIN_ROWS_FOR_INDEX", 10)
    e = Env()
    e.dn.indexer.schedule = lambda *a, **k: None  # type: ignore[method-assign]  # the builds are the test's
    try:
        e.info.indexes.append(IndexInfo(1, "v_idx", "v", "HNSW", "L2", {"M": 8, "efConstruction": 16}))
        e.meta.put(coll_key(CID), e.info.to_json())
        for lo in (0, 20, 40):
            e.insert(range(lo, lo + (20 if lo < 40 else 5)))  # two segments of 20 rows, one of 5 (no index file)
            e.flush()
        big = [s for s in e.segments() if s["num_rows"] >= 10]
        assert len(big) == 2 and len(e.segments()) == 3
        assert e.dn.compactor.maybe_compact(e.info, CH) == []  # both wait for their builds
        assert e.dn.compactor.maybe_compact(e.info, CH) == []  # checked: nothing changed
        builds = IndexBuilds(e.meta)
        builds.finish(CID, 1, big[0]["prefix"], 20, "somewhere")
        plans = e.dn.compactor.maybe_compact(e.info, CH)  # one build over: that segment and the small one
        assert [sorted(s["num_rows"] for s in p.sources) for p in plans] == [[5, 20]]
        e.meta.put(f"idxbuild/{CID}/1/{big[1]['prefix'].split('/', 2)[2]}x", json.dumps({"state": "failed"}).encode())
        assert e.dn.compactor.maybe_compact(e.info, CH) == []  # the merge's own segment waits for its build
        merged, = [s for s in e.segments() if s["num_rows"] == 25]
        builds.finish(CID, 1, merged["prefix"], 25, "somewhere")
        plans = e.dn.compactor.maybe_compact(e.info, CH)  # a failed build is over too (never tried again)
        assert len(plans) == 1 and sorted(s["num_rows"] for s in plans[0].sources) == [20, 25]
        # (a query node loading the channel builds index files of its own: only now)
        assert sorted(e.visible()) == [*range(45)]
    finally:
        e.close()

    m = Env()
    m.dn.indexer.schedule = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        m.info.indexes.append(IndexInfo(1, "v_idx", "v", "HNSW", "L2", {"M": 8, "efConstruction": 16}))
        m.meta.put(coll_key(CID), m.info.to_json())
        for lo in (0, 20):
            m.insert(range(lo, lo + 20))
            m.flush()
        assert m.dn.compactor.compact_channel(m.info, CH) == []
        plans = m.dn.compactor.compact_channel(m.info, CH, manual=True)
        assert [p.kind for p in plans] == ["merge"] and len(m.segments()) == 1
    finally:
        m.close()

"""A manual compaction's options (vecdb.datanode.compactor.CompactionOptions): a force merge by size
(client.compact(target_size=), client.optimize), an L0 compaction, and one narrowed to some segments,
a partition or a channel; on the memory stores with the real DataNode and a query node that loads the
channel afresh (test_compaction's Env)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.test_compaction import CH, CID, Env, _wait_state
from vecdb.catalog_model import coll_key
from vecdb.datanode import compactor, segment_listing
from vecdb.datanode.compactor import CompactionOptions, _size_parts, request_compaction, request_key
from vecdb.datanode.seal import fixed_row_bytes
from vecdb.schema import CollectionSchema, DataType, FieldSchema


@pytest.fixture(params=[False, True], ids=["int64", "varchar"])
def env(request):
    e = Env(varchar=request.param, partitions=2)
    yield e
    e.close()


def _flushes(env: Env, batches: int, rows: int, partition: int = 0, first: int = 0) -> None:
    for b in range(batches):
        lo = first + b * rows
        env.insert(range(lo, lo + rows), partition)
        env.flush()


def test_force_merge_writes_as_few_segments_as_the_target_size_allows(env, monkeypatch):
    _flushes(env, 6, 50)
    _flushes(env, 2, 50, partition=1, first=1000)
    env.delete(range(0, 300, 7))  # dead rows: dropped by the merge
    env.insert(range(40, 60))  # superseded ones too (an upsert is a plain insert)
    env.flush()
    before = env.visible()
    sources = env.segments()
    monkeypatch.setattr(compactor, "safe_bytes", lambda floor=0: 2000)  # what a 1 MB target is capped at here
    plans = env.dn.compactor.compact_channel(env.info, CH, manual=True, options=CompactionOptions(target_mb=1))
    assert {p.kind for p in plans} == {"force"} and {p.limit_bytes for p in plans} == {2000}
    assert env.visible() == before  # same keys, timestamps and values
    segs = env.segments()
    p0 = [s for s in segs if s["partition_id"] == 0]
    assert {s["segment_id"] for s in p0}.isdisjoint(s["segment_id"] for s in sources)  # every source merged
    assert sum(s["num_rows"] for s in p0) == sum(1 for k in before if (int(k[1:]) if env.varchar else k) < 1000)
    assert all(0 < s["bytes"] <= 2000 for s in p0)
    # as few as the size allows, but for a plan's remainder (a plan takes up to three sizes of sources)
    assert len(p0) <= -(-sum(s["bytes"] for s in p0) // 2000) + len(plans) - 1 and len(p0) < 7
    # partition 1: two clean segments of about 1,750 bytes would come out as two again: left as they are
    assert {s["segment_id"] for s in segs if s["partition_id"] == 1} == {
        s["segment_id"] for s in sources if s["partition_id"] == 1}
    assert len(segs) < len(sources)
    # a second force merge finds the segments within the size: nothing to do
    assert env.dn.compactor.compact_channel(env.info, CH, manual=True,
                                            options=CompactionOptions(target_mb=1)) == []


def test_force_merge_leaves_a_lone_clean_segment_and_rewrites_one_with_dead_rows(env):
    _flushes(env, 1, 40)
    opts = CompactionOptions(target_mb=512)
    assert env.dn.compactor.compact_channel(env.info, CH, manual=True, options=opts) == []
    env.delete([3])
    env.flush()
    (plan,) = env.dn.compactor.compact_channel(env.info, CH, manual=True, options=opts)
    assert plan.kind == "force" and plan.live_rows == 39 and [s["num_rows"] for s in env.segments()] == [39]


def test_force_merge_leaves_clustered_segments_out(env):
    _flushes(env, 3, 10)
    key = sorted(env.meta.scan(f"seg/{CID}/{CH}/"))[0][0]
    seg = json.loads(env.meta.get(key))
    seg["cluster"] = {"field": "id", "min": 0, "max": 9}  # as a clustering compaction marks its segments
    env.meta.put(key, json.dumps(seg).encode())
    (plan,) = env.dn.compactor.compact_channel(env.info, CH, manual=True, options=CompactionOptions(target_mb=512))
    assert seg["segment_id"] not in [s["segment_id"] for s in plan.sources] and len(plan.sources) == 2


def test_size_parts_cut_rows_within_the_limit_as_evenly_as_may_be():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("s", DataType.VARCHAR, field_id=101, max_length=5000)])
    fixed = fixed_row_bytes(schema)
    texts = np.array(["x" * 10] * 100 + ["y" * 3000] + ["z" * 10] * 100, dtype=object)
    cols = {"id": np.arange(len(texts), dtype=np.int64), "s": texts}
    ts = np.arange(len(texts), dtype=np.uint64)
    limit = 1500
    parts, sizes = _size_parts(schema, cols, ts, limit)
    assert [len(t) for _, t in parts] == [len(c["id"]) for c, _ in parts]
    assert np.concatenate([c["id"] for c, _ in parts]).tolist() == list(range(201))  # in order, each row once
    row = fixed + 10
    for (c, t), size in zip(parts, sizes):
        assert size == len(t) * row + (3000 - 10 if 100 in c["id"] else 0)
        assert size <= limit or len(t) == 1  # the 3000-byte row alone
    total = 200 * row
    small = [s for s in sizes if s <= limit]
    assert len(small) <= -(-total // limit) + 1  # near the fewest: the wide row splits the run in two
    assert max(small) - min(small) <= 2 * limit // 3  # even shares, not full parts and a remainder
    assert _size_parts(schema, {"id": cols["id"][:0], "s": texts[:0]}, ts[:0], limit) == ([], [])


def test_named_segments_only_are_merged(env):
    _flushes(env, 4, 10)
    ids = [s["segment_id"] for s in sorted(env.segments(), key=lambda s: s["position"])]
    before = env.visible()
    (plan,) = env.dn.compactor.compact_channel(env.info, CH, manual=True,
                                               options=CompactionOptions(segment_ids=(ids[0], ids[2])))
    assert plan.kind == "merge" and [s["segment_id"] for s in plan.sources] == [ids[0], ids[2]]
    after = {s["segment_id"] for s in env.segments()}
    assert {ids[1], ids[3]} <= after and not {ids[0], ids[2]} & after and env.visible() == before
    # one named clean segment: nothing to gain; with a dead row: rewritten alone
    assert env.dn.compactor.compact_channel(env.info, CH, manual=True,
                                            options=CompactionOptions(segment_ids=(ids[1],))) == []
    env.delete([15])
    env.flush()
    (plan,) = env.dn.compactor.compact_channel(env.info, CH, manual=True,
                                               options=CompactionOptions(segment_ids=(ids[1],)))
    assert plan.kind == "rewrite" and plan.live_rows == 9


def test_a_partition_only(env):
    _flushes(env, 3, 10)
    _flushes(env, 3, 10, partition=1, first=100)
    p0 = {s["segment_id"] for s in env.segments() if s["partition_id"] == 0}
    (plan,) = env.dn.compactor.compact_channel(env.info, CH, manual=True, options=CompactionOptions(partition_id=1))
    assert plan.partition_id == 1 and len(plan.sources) == 3
    assert {s["segment_id"] for s in env.segments() if s["partition_id"] == 0} == p0


def test_l0_rewrites_the_segments_deletes_hit_alone(env):
    _flushes(env, 3, 10)  # small segments: a default manual compaction would merge them
    env.delete([1, 2])
    env.insert([25])  # supersedes key 25 of the third segment
    env.flush()
    before = env.visible()
    by_pos = sorted(env.segments(), key=lambda s: s["position"])
    plans = env.dn.compactor.compact_channel(env.info, CH, manual=True, options=CompactionOptions(l0=True))
    assert sorted(([s["segment_id"] for s in p.sources], p.kind, p.live_rows) for p in plans) == sorted([
        ([by_pos[0]["segment_id"]], "rewrite", 8), ([by_pos[2]["segment_id"]], "rewrite", 9)])
    assert env.visible() == before
    assert len(env.segments()) == 4  # nothing merged


def test_request_record_keeps_the_options_and_only_the_channel_asked():
    e = Env()
    try:
        e.info.shards_num = 2
        e.meta.put(coll_key(CID), e.info.to_json())
        opts = CompactionOptions(target_mb=2048, segment_ids=(5, 6), partition_id=3, channel=f"c{CID}-s1")
        request_compaction(e.meta, 90, e.info, options=opts)
        req = json.loads(e.meta.get(request_key(CID, 90)))
        assert list(req["channels"]) == [f"c{CID}-s1"] and CompactionOptions.from_record(req) == opts
        request_compaction(e.meta, 91, e.info)
        req = json.loads(e.meta.get(request_key(CID, 91)))
        assert "options" not in req and CompactionOptions.from_record(req) == CompactionOptions()
        assert list(req["channels"]) == e.info.channels
    finally:
        e.close()


def test_requests_carried_out_and_their_plans_typed():
    e = Env()
    try:
        _flushes(e, 3, 10)
        e.delete([0])
        e.flush()
        l0 = e.dn.compact(e.info, options=CompactionOptions(l0=True))
        state = _wait_state(e.dn, l0)
        (plan,) = segment_listing.request_plans(state)
        assert plan["type"] == segment_listing.L0_DELETE and len(plan["sources"]) == 1
        merge = e.dn.compact(e.info, options=CompactionOptions(target_mb=1024))
        state = _wait_state(e.dn, merge)
        (plan,) = segment_listing.request_plans(state)
        assert plan["type"] == segment_listing.MIX and len(plan["sources"]) == 3
        assert [s["segment_id"] for s in e.segments()] == [plan["target"]] and e.segments()[0]["num_rows"] == 29
    finally:
        e.close()


def test_the_target_is_capped_by_memory():
    assert CompactionOptions(target_mb=(1 << 63) - 1).target_bytes(5 << 30) == 5 << 30
    assert CompactionOptions(target_mb=512).target_bytes(5 << 30) == 512 << 20
    assert CompactionOptions().target_bytes(5 << 30) == 0
    assert compactor.safe_bytes(1 << 60) == 1 << 60 and compactor.safe_bytes() > 0

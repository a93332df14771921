"""client.optimize (pymilvus 3.0) and client.compact's options (target_size, is_l0; segment_ids,
partition_id and channel in a raw ManualCompactionRequest) on every deployment: a force merge of a
loaded, indexed collection into fewer, larger segments with the same answers, and Milvus's errors for
what it refuses (vecdb.proxy.rpc_compaction, vecdb.datanode.compactor.CompactionOptions)."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException
from pymilvus.client.types import CompactionType
from pymilvus.exceptions import ParamError
from pymilvus.grpc_gen import milvus_pb2

from tests.conftest import wait_until
from tests.e2e._helpers import reader_view

DIM = 8


def _persisted(c: MilvusClient, name: str) -> list:
    return c.list_persistent_segments(name)


def _write(c: MilvusClient, name: str, vecs: np.ndarray, batches: int = 4) -> None:
    """``batches`` flushed segments a channel, with deletes and upserts among them."""
    for lo in range(0, batches * 100, 100):
        c.insert(name, [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(lo, lo + 100)])
        c.flush(name)
    c.delete(name, ids=list(range(0, 100, 4)))
    c.upsert(name, [{"id": i, "vector": vecs[i + 500], "tag": f"v2-{i}"} for i in range(150, 170)])
    c.flush(name)


def _create(c: MilvusClient, name: str) -> np.ndarray:
    c.create_collection(name, dimension=DIM, metric_type="L2", num_shards=2)  # indexed (AUTOINDEX) and loaded
    return np.random.default_rng(5).random((800, DIM), dtype=np.float32)


def _raw_compact(c: MilvusClient, **fields) -> milvus_pb2.ManualCompactionResponse:
    """A ManualCompactionRequest with fields pymilvus's compact does not send."""
    return c._get_connection()._stub.ManualCompaction(milvus_pb2.ManualCompactionRequest(**fields))


def test_optimize_merges_a_loaded_indexed_collection_with_the_same_answers(client, name):
    c = client
    vecs = _create(c, name)
    _write(c, name, vecs)
    before = reader_view(c, name, vecs)
    sources = _persisted(c, name)
    assert before[0] == 375 and len(sources) == 10  # five flushes of two channels
    result = c.optimize(name, timeout=120)
    assert result.status == "success" and result.collection_name == name and result.target_size is None
    assert result.progress[-1] == "refreshing load" and "waiting for compaction" in result.progress
    assert c.get_compaction_state(result.compaction_id) == "Completed"
    plans = c.get_compaction_plans(result.compaction_id).plans
    assert {s for p in plans for s in p.sources} == {s.segment_id for s in sources}  # every source merged
    assert {p.compaction_type for p in plans} == {CompactionType.MixCompaction}
    segs = _persisted(c, name)
    assert len(segs) == 2 and sum(s.num_rows for s in segs) == 375  # one a channel, no dead row
    assert {s.segment_id for s in segs} == {p.target for p in plans}
    listed = c.list_segments(name)  # the sources as Dropped until garbage collection
    assert {s.segment_id for s in listed if s.state_name == "Flushed"} == {s.segment_id for s in segs}
    assert {s.segment_id for s in listed if s.state_name == "Dropped"} == {s.segment_id for s in sources}
    assert reader_view(c, name, vecs) == before
    c.release_collection(name)
    c.load_collection(name)
    assert reader_view(c, name, vecs) == before


def test_optimize_without_waiting_and_compact_with_a_target_size(client, name):
    c = client
    vecs = _create(c, name)
    _write(c, name, vecs, batches=2)
    before = reader_view(c, name, vecs)
    task = c.optimize(name, target_size="1GB", wait=False)
    result = task.result(timeout=120)
    assert task.done() and result.status == "success" and result.target_size == "1GB"
    assert len(_persisted(c, name)) == 2 and reader_view(c, name, vecs) == before
    # a force merge of segments within the size and without a dead row: nothing to do
    again = c.compact(name, target_size=1024)
    wait_until(lambda: c.get_compaction_state(again) == "Completed", 60, "compaction completed")
    assert c.get_compaction_plans(again).plans == [] and len(_persisted(c, name)) == 2
    # a target size takes precedence over is_clustering (no clustering key here: that alone would be -1)
    forced = c.compact(name, is_clustering=True, target_size=1024)
    assert forced > 0
    wait_until(lambda: c.get_compaction_state(forced) == "Completed", 60, "compaction completed")


def test_target_size_below_the_seal_size_is_refused(client, name):
    c = client
    c.create_collection(name, dimension=DIM)
    with pytest.raises(MilvusException) as e:
        c.compact(name, target_size=1)  # the servers seal at 128 MB (datanode.seal_bytes)
    assert e.value.code == 1100
    assert "targetSize 1 MB should be greater than or equal to configMaxSize 128 MB" in e.value.message
    with pytest.raises(ParamError):  # pymilvus refuses a negative size itself
        c.compact(name, target_size=-5)
    resp = _raw_compact(c, collection_name=name, target_size=-5)
    assert resp.status.code == 1100 and "targetSize -5 MB" in resp.status.reason
    with pytest.raises(MilvusException) as e:
        c.compact("no_such_collection_x", target_size=2048)
    assert e.value.code == 100


def test_l0_compaction_rewrites_the_segments_deletes_hit(client, name):
    c = client
    vecs = _create(c, name)
    _write(c, name, vecs)
    before = reader_view(c, name, vecs)
    sources = {s.segment_id: s for s in _persisted(c, name)}
    compaction_id = c.compact(name, is_l0=True)
    wait_until(lambda: c.get_compaction_state(compaction_id) == "Completed", 60, "compaction completed")
    plans = c.get_compaction_plans(compaction_id).plans
    assert plans and all(len(p.sources) == 1 for p in plans)  # rewritten alone, nothing merged
    assert {p.compaction_type for p in plans} == {CompactionType.Level0DeleteCompaction}
    hit = {p.sources[0] for p in plans}
    after = {s.segment_id for s in _persisted(c, name)}
    assert set(sources) - hit <= after and not hit & after and len(after) == len(sources)
    assert sum(s.num_rows for s in _persisted(c, name)) == 375
    assert reader_view(c, name, vecs) == before


def test_segment_ids_partition_and_channel(client, name):
    c = client
    vecs = _create(c, name)
    _write(c, name, vecs, batches=3)
    before = reader_view(c, name, vecs)
    segs = _persisted(c, name)
    channel = segs[0].insert_channel
    mine = sorted(s.segment_id for s in segs if s.insert_channel == channel)
    resp = _raw_compact(c, collection_name=name, segment_ids=mine[:2])
    assert resp.status.code == 0 and resp.compactionID > 0
    wait_until(lambda: c.get_compaction_state(resp.compactionID) == "Completed", 60, "compaction completed")
    (plan,) = c.get_compaction_plans(resp.compactionID).plans
    assert sorted(plan.sources) == mine[:2] and plan.channel == channel
    after = {s.segment_id for s in _persisted(c, name)}
    assert set(mine[2:]) <= after and plan.target in after and reader_view(c, name, vecs) == before
    # a segment that is not (any more) one of the collection's: Milvus's 5
    for bad in ([mine[0]], [mine[2], 123456789]):
        resp = _raw_compact(c, collection_name=name, segment_ids=bad)
        assert resp.status.code == 5 and "not all segment ids provided could be compacted" in resp.status.reason
    other = next(s.insert_channel for s in segs if s.insert_channel != channel)
    resp = _raw_compact(c, collection_name=name, segment_ids=[mine[2]], channel=other)
    assert resp.status.code == 5
    # a partition or a channel the collection does not have selects nothing: id -1, no plan
    for fields in ({"partition_id": 424242}, {"channel": "no-such-channel"}):
        resp = _raw_compact(c, collection_name=name, **fields)
        assert resp.status.code == 0 and resp.compactionID == -1 and resp.compactionPlanCount == 0
    # one channel only: the other's segments stay
    untouched = {s.segment_id for s in _persisted(c, name) if s.insert_channel == other}
    resp = _raw_compact(c, collection_name=name, channel=channel)
    assert resp.status.code == 0 and resp.compactionPlanCount == 1
    wait_until(lambda: c.get_compaction_state(resp.compactionID) == "Completed", 60, "compaction completed")
    assert {p.channel for p in c.get_compaction_plans(resp.compactionID).plans} == {channel}
    assert {s.segment_id for s in _persisted(c, name) if s.insert_channel == other} == untouched
    assert len([s for s in _persisted(c, name) if s.insert_channel == channel]) == 1
    assert reader_view(c, name, vecs) == before

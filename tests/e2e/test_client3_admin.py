"""pymilvus 3.0's smaller admin calls on every deployment: ``list_segments`` (states, levels,
channels, lineage: compacted-away segments Dropped until collected), ``list_compaction_tasks`` and
``get_compaction_plans`` after ``compact()``, ``ComputePhraseMatchSlop`` (no client method in 3.0.2:
its stub) against ``phrase_match``, and ``session()`` (its cluster id rides in the read's params)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client.types import CompactionTaskState, CompactionType, SegmentState
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from tests.conftest import wait_until

DIM = 4


def _persistent(c: MilvusClient, name: str) -> dict[int, int]:
    return {s.segmentID: s.num_rows for s in c._get_connection().get_persistent_segment_infos(name)}


def _fill(c: MilvusClient, name: str) -> None:
    c.create_collection(name, dimension=DIM, metric_type="L2", num_shards=2)
    vecs = np.random.default_rng(5).random((300, DIM), dtype=np.float32)
    for lo in range(0, 300, 100):
        c.insert(name, [{"id": i, "vector": vecs[i].tolist()} for i in range(lo, lo + 100)])
        c.flush(name)


def test_list_segments_states_and_lineage_across_a_compaction(client, name):
    c = client
    _fill(c, name)
    before = c.list_segments(name)
    assert {s.segment_id: s.num_rows for s in before} == _persistent(c, name)
    assert sum(s.num_rows for s in before) == 300 and len(before) == 6  # three flushes of two channels
    assert {s.state for s in before} == {SegmentState.Flushed} and {s.level for s in before} == {common_pb2.L1}
    assert len({s.insert_channel for s in before}) == 2 and all(s.insert_channel for s in before)
    assert {s.collection_name for s in before} == {name}
    assert {s.collection_id for s in before} == {c.describe_collection(name)["collection_id"]}
    assert c.list_segments(name, states=[SegmentState.Growing]) == []  # unflushed rows are in the log
    old = {s.segment_id: s for s in before}

    job = c.compact(name)
    wait_until(lambda: c.get_compaction_state(job) == "Completed", 60, "compaction completed")
    live = c.list_segments(name, states=[SegmentState.Flushed])
    assert {s.segment_id: s.num_rows for s in live} == _persistent(c, name)  # the legacy default: live ones
    assert len(live) == 2 and sum(s.num_rows for s in live) == 300
    assert sorted(x for s in live for x in s.compaction_from) == sorted(old)
    for s in live:  # each merged its own channel's segments
        assert {old[x].insert_channel for x in s.compaction_from} == {s.insert_channel}
    dropped = c.list_segments(name, states=[SegmentState.Dropped])
    assert {s.segment_id: s.num_rows for s in dropped} == {i: s.num_rows for i, s in old.items()}
    assert {s.state for s in dropped} == {SegmentState.Dropped}
    assert {s.segment_id for s in c.list_segments(name)} == set(old) | {s.segment_id for s in live}
    assert c.query(name, "id >= 0", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 300


def test_compaction_plans_and_tasks(client, name):
    c = client
    _fill(c, name)
    assert c.list_compaction_tasks(name).plans == []  # nothing asked yet
    cid = c.describe_collection(name)["collection_id"]
    channels = {s.segment_id: s.insert_channel for s in c.list_segments(name)}
    job = c.compact(name)
    wait_until(lambda: c.get_compaction_state(job) == "Completed", 60, "compaction completed")
    plans = c.get_compaction_plans(job)
    assert plans.state.name == "Completed" and len(plans.plans) == 2  # one merge per channel
    live = {s.segment_id: s for s in c.list_segments(name, states=[SegmentState.Flushed])}
    for p in plans.plans:
        assert p.target in live and sorted(p.sources) == sorted(live[p.target].compaction_from)
        assert {channels[s] for s in p.sources} == {p.channel} == {live[p.target].insert_channel}
        assert (p.trigger_id, p.collection_id, p.partition_id) == (job, cid, live[p.target].partition_id)
        assert p.compaction_type == CompactionType.MixCompaction and p.state == CompactionTaskState.Completed
    second = c.compact(name)  # nothing left to merge: a completed request with no plan
    wait_until(lambda: c.get_compaction_state(second) == "Completed", 60, "compaction completed")
    tasks = c.list_compaction_tasks(name)
    assert tasks.state.name == "Completed" and tasks.collection_name == name
    assert sorted((p.trigger_id, p.target) for p in tasks.plans) == sorted((job, p.target) for p in plans.plans)
    with pytest.raises(MilvusException):
        c.list_compaction_tasks(name + "_missing")


def _slops(c: MilvusClient, query: str, texts: list[str], params: dict | None = None) -> list[int | None]:
    """Each text's slop; ``params`` None: the standard analyzer (a field's default: lowercased)."""
    reply = c._get_connection()._stub.ComputePhraseMatchSlop(milvus_pb2.ComputePhraseMatchSlopRequest(
        analyzer_params=json.dumps(params) if params else "", query_text=query, data_texts=texts))
    assert reply.status.code == 0 and len(reply.is_match) == len(reply.slops) == len(texts)
    return [s if m else None for m, s in zip(reply.is_match, reply.slops, strict=True)]


def test_compute_phrase_match_slop_agrees_with_phrase_match(client, name):
    c = client
    rng = random.Random(11)
    words = ["alpha", "bravo", "charlie", "delta", "echo"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(120)]
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=500, enable_analyzer=True, enable_match=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    idx = c.prepare_index_params()
    idx.add_index("vector", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=schema, index_params=idx)
    c.insert(name, [{"id": i, "text": t, "vector": [0.0] * DIM} for i, t in enumerate(texts)])
    for phrase in ("alpha bravo", "charlie alpha delta", "Echo echo"):
        need = _slops(c, phrase, texts)
        for slop in range(4):
            got = c.query(name, f"phrase_match(text, '{phrase}', {slop})", output_fields=["id"], limit=1000,
                          consistency_level="Strong")
            assert {r["id"] for r in got} == {i for i, s in enumerate(need) if s is not None and s <= slop}
    assert _slops(c, "data privacy", ["Ensure data privacy now.", "Ensure data user privacy now.",
                                      "Ensure privacy data now.", "Ensure privacy user data now.",
                                      "Data is important."], {"tokenizer": "standard"}) == [0, 1, 2, 3, None]
    # (Milvus's example; a bare standard tokenizer does not lowercase: "Echo" is not "echo")
    assert _slops(c, "Echo echo", ["echo echo"], {"tokenizer": "standard"}) == [None]
    empty = c._get_connection()._stub.ComputePhraseMatchSlop(
        milvus_pb2.ComputePhraseMatchSlopRequest(query_text="", data_texts=["a"]))
    assert empty.status.code == 0 and list(empty.slops) == []


def test_session_reads_as_the_client(client, name):
    c = client
    c.create_collection(name, dimension=DIM, metric_type="L2")
    c.insert(name, [{"id": i, "vector": [float(i)] * DIM} for i in range(10)])
    s = c.session("cluster-a")
    try:
        hits = s.search(name, [[0.0] * DIM], limit=3, consistency_level="Strong")[0]
        assert [h["id"] for h in hits] == [0, 1, 2]
        assert sorted(r["id"] for r in s.query(name, "id < 3", consistency_level="Strong")) == [0, 1, 2]
        assert [r["id"] for r in s.get(name, ids=[4])] == [4]
    finally:
        s.close()
    with pytest.raises(MilvusException, match="closed"):
        s.query(name, "id < 3")

"""The pure logic behind pymilvus 3.0's smaller admin calls: the slop a phrase needs
(``vecdb.phrase_slop``, Milvus's ComputePhraseMatchSlop) and the segment and compaction listings
(``vecdb.datanode.segment_listing``: list_segments, list_compaction_tasks) over a memory store."""

from __future__ import annotations

import json
import random

import pytest
from pymilvus.grpc_gen import common_pb2

from vecdb.analyzer import parse_params, phrase_within
from vecdb.datanode import segment_listing as sl
from vecdb.phrase_slop import min_phrase_slop
from vecdb.storage.memory import MemoryMetaStore


def _slop(query: str, text: str, params: dict | None = None) -> int | None:
    a = parse_params(json.dumps(params) if params else None)
    return min_phrase_slop([(t, p) for t, _, _, p, _ in a.spans(query)], [(t, p) for t, _, _, p, _ in a.spans(text)])


@pytest.mark.parametrize(("query", "text", "want"), [
    # Milvus's own cases (its tantivy binding's phrase_match_slop tests, and its example script)
    ("hello world", "hello world", 0),
    ("hello world", "hello there", None),
    ("A B", "A C D E B F G A B", 0),
    ("A B A", "A B A", 0),
    ("A C", "A B C", 1),
    ("I like swimming and skiing", "x " * 10 + "Skiing and swimming are sports that I like the most.", 10),
    ("data privacy", "Ensure data privacy now.", 0),
    ("data privacy", "Ensure data user privacy now.", 1),
    ("data privacy", "Ensure privacy data now.", 2),
    ("data privacy", "Ensure privacy user data now.", 3),
    ("data privacy", "Data is important.", None),
    ("!!!", "anything", 0),  # a phrase of no token
])
def test_slop_of_milvus_examples(query, text, want):
    assert _slop(query, text) == want


def test_slop_agrees_with_phrase_match_at_every_slop():
    """A text matches ``phrase_match(.., slop)`` exactly when its slop is at most ``slop``."""
    rng = random.Random(7)
    words = "abcde"
    for _ in range(400):
        text = [rng.choice(words) for _ in range(rng.randint(0, 12))]
        phrase = [rng.choice(words) for _ in range(rng.randint(1, 4))]
        need = min_phrase_slop(list(zip(phrase, range(len(phrase)))), list(zip(text, range(len(text)))))
        for slop in range(0, 8):
            assert phrase_within(text, phrase, slop) == (need is not None and need <= slop), (text, phrase, slop)


def _seg(sid: int, rows: int, **extra) -> bytes:
    return json.dumps({"segment_id": sid, "partition_id": 7, "num_rows": rows, "prefix": f"segments/1/ch0/{sid}/",
                       "position": sid, **extra}).encode()


@pytest.fixture
def meta():
    m = MemoryMetaStore()
    m.put("seg/1/ch0/a", _seg(30, 150, from_ids=[10, 20]))
    m.put("seg/1/ch1/b", _seg(40, 5, cluster={"field": "k"}, from_ids=[41]))
    m.put("seg/2/ch0/c", _seg(99, 1))  # another collection
    sources = [{"segment_id": 10, "partition_id": 7, "num_rows": 100},
               {"segment_id": 20, "partition_id": 7, "num_rows": 60}]
    m.put("compacted/1/ch0/30", json.dumps({"from": ["p10", "p20"], "to": "p30", "position": 3, "at": 0,
                                            "sources": sources}).encode())
    # a record older than "sources": no dropped segment to show
    m.put("compacted/1/ch1/40", json.dumps({"from": ["p41"], "to": "p40", "position": 3, "at": 0}).encode())
    m.put("compacted/1/ch1/bad", b"{not json")
    return m


def test_default_states_are_the_live_segments(meta):
    got = sl.list_segments(meta, 1, ["ch0", "ch1"])
    assert [(s["segment_id"], s["state"], s["level"], s["channel"], s["compaction_from"]) for s in got] == [
        (30, common_pb2.Flushed, common_pb2.L1, "ch0", [10, 20]),
        (40, common_pb2.Flushed, common_pb2.L2, "ch1", [41])]


def test_dropped_segments_are_the_sources_of_kept_compaction_records(meta):
    got = sl.list_segments(meta, 1, ["ch0", "ch1"], [common_pb2.Dropped])
    assert [(s["segment_id"], s["num_rows"], s["state"], s["channel"]) for s in got] == [
        (10, 100, common_pb2.Dropped, "ch0"), (20, 60, common_pb2.Dropped, "ch0")]
    assert sl.list_segments(meta, 1, ["ch0", "ch1"], [common_pb2.Growing]) == []
    every = sl.list_segments(meta, 1, ["ch0", "ch1"], [common_pb2.Flushed, common_pb2.Dropped])
    assert sorted(s["segment_id"] for s in every) == [10, 20, 30, 40]


def test_a_source_still_registered_is_not_dropped():
    m = MemoryMetaStore()
    m.put("seg/1/ch0/a", _seg(10, 5))
    m.put("compacted/1/ch0/30", json.dumps({"sources": [{"segment_id": 10, "partition_id": 7,
                                                         "num_rows": 5}]}).encode())
    assert [s["state"] for s in sl.list_segments(m, 1, ["ch0"], [common_pb2.Flushed, common_pb2.Dropped])] == [
        common_pb2.Flushed]


def test_request_plans_and_state():
    rec = {"collection_id": 1, "compaction_id": 5, "clustering": True, "channels": {
        "ch1": {"state": "completed", "plans": [{"sources": [1, 2], "target": 8, "plan": 8, "partition_id": 7},
                                                {"sources": [1, 2], "target": 9, "plan": 8, "partition_id": 7}]},
        "ch0": {"state": "completed", "plans": [{"sources": [3], "target": 4}]},  # an older record's plan
        "ch2": {"state": "executing", "plans": []}}}
    plans = sl.request_plans(rec)
    assert [(p["channel"], p["sources"], p["target"], p["plan_id"], p["partition_id"]) for p in plans] == [
        ("ch0", [3], 4, 4, 0), ("ch1", [1, 2], 8, 8, 7), ("ch1", [1, 2], 9, 8, 7)]
    assert {(p["type"], p["trigger_id"], p["collection_id"], p["state"]) for p in plans} == {
        (common_pb2.CompactionTypeClustering, 5, 1, common_pb2.CompactionTaskStateCompleted)}
    assert sl.executing(rec) == 1 and sl.executing(None) == 0
    rec.pop("clustering")
    assert {p["type"] for p in sl.request_plans(rec)} == {common_pb2.CompactionTypeMix}


def test_collection_requests_are_its_own_oldest_first():
    m = MemoryMetaStore()
    for cid, comp in ((1, 12), (1, 3), (2, 5)):
        m.put(f"compaction/{cid}/{comp}", json.dumps({"collection_id": cid, "compaction_id": comp,
                                                      "channels": {}}).encode())
    m.put("compacted/1/ch0/4", b"{}")  # a compacted/ record is no request
    assert [r["compaction_id"] for r in sl.collection_requests(m, 1)] == [3, 12]

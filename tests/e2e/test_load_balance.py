"""``utility.load_balance`` (Milvus's LoadBalance): sealed segments moved by hand from one query node
to others of its replica, on every deployment. Standalone has one node, so a valid request moves
nothing (as Milvus's standalone answers); the cluster's three query nodes move the segments for
real, and the call returns once the new nodes serve them. Bad requests get Milvus's codes."""

from __future__ import annotations

import time
import uuid

import pytest
from pymilvus import Collection, MilvusException, utility

from tests.e2e._helpers import count, float_schema, float_vectors, make_collection, orm  # noqa: F401 - fixture

DIM, BATCH, BATCHES = 4, 100, 3
SEALED = 3  # SegmentState.Sealed in get_query_segment_info, as Milvus (growing: 2)


def _sealed_nodes(name: str, alias: str) -> dict[int, list[int]]:
    """segment id -> the nodes serving it, once every sealed row is served by one node (a cluster's
    channel may be handed over between query nodes for balance: both serve it for a moment)."""
    deadline = time.monotonic() + 30
    while True:  # segment info is not a read with a consistency level: the nodes answer as they are
        segments = [s for s in utility.get_query_segment_info(name, using=alias) if s.state == SEALED]
        if (sum(s.num_rows for s in segments) == BATCH * BATCHES and all(len(s.nodeIds) == 1 for s in segments)
                or time.monotonic() > deadline):
            return {s.segmentID: sorted(s.nodeIds) for s in segments}
        time.sleep(0.05)


def _refused(code: int, match: str, *args, alias: str) -> None:
    with pytest.raises(MilvusException, match=match) as e:
        utility.load_balance(*args, using=alias)
    assert e.value.code == code


def test_load_balance_moves_sealed_segments_within_a_replica(client, name, orm):  # noqa: F811
    make_collection(client, name, float_schema(DIM), num_shards=1)
    vecs = float_vectors(BATCH * BATCHES, DIM)
    for lo in range(0, len(vecs), BATCH):  # one sealed segment per flush
        client.insert(name, [{"id": i, "vec": vecs[i].tolist()} for i in range(lo, lo + BATCH)])
        client.flush(name)
    assert count(client, name, consistency_level="Strong") == len(vecs)
    nodes = list(Collection(name, using=orm).get_replicas().groups[0].group_nodes)
    placed = _sealed_nodes(name, orm)  # the e2e cluster spreads every channel (spread_min_rows 0)
    assert len(placed) == BATCHES and all(len(v) == 1 for v in placed.values()), placed
    # the ids the data nodes gave them (a standalone node learns them from the segments' records)
    assert set(placed) == {s.segment_id for s in client.list_persistent_segments(name)}
    first = min(placed)
    source = placed[first][0]

    _refused(901, r"source node not found in any replica of collection \d+: node not found\[node=999999\]",
             name, 999999, [], [], alias=orm)
    _refused(901, r"destination node not found in the same replica: node not found\[node=999999\]",
             name, source, [999999], [], alias=orm)
    _refused(600, f"segment 12345 not found in source node {source}", name, source, [], [12345], alias=orm)
    _refused(100, "collection", "nope_" + uuid.uuid4().hex[:8], source, [], [], alias=orm)

    target = next((n for n in nodes if n != source), None)
    utility.load_balance(name, source, [target or source], [first], using=orm)
    after = _sealed_nodes(name, orm)
    # standalone: one node, nothing moves; a cluster: served by its new node alone when the call returns
    assert after == placed if target is None else after[first] == [target]
    assert count(client, name, consistency_level="Strong") == len(vecs)
    hits = client.search(name, data=vecs[[5, 150, 250]].tolist(), limit=1, consistency_level="Strong")
    assert [h[0]["id"] for h in hits] == [5, 150, 250]

    # no targets and no segments: every sealed segment the source serves goes to the replica's other nodes
    on_source = [s for s, v in after.items() if v == [source]]
    utility.load_balance(name, source, [], [], using=orm)
    after = _sealed_nodes(name, orm)
    moved = {s: after[s] for s in [first, *on_source]}
    assert all(v != [source] for v in moved.values()) if target else after == placed
    time.sleep(2)  # a manual move is not undone by the automatic balance (the other segments may move)
    assert {s: v for s, v in _sealed_nodes(name, orm).items() if s in moved} == moved
    client.delete(name, ids=list(range(0, len(vecs), 2)))
    assert count(client, name, consistency_level="Strong") == len(vecs) // 2

    client.release_collection(name)
    _refused(101, "collection not loaded", name, source, [], [], alias=orm)

"""Manual segment moves (LoadBalance): the request's checks and each segment's node
(vecdb.coord.segment_moves.choose_moves), and the pins they become in the coord's placement
(vecdb.coord.assignment ``Replica.pinned``): kept where the automatic balance would move them,
dropped with their node or their segment."""

from __future__ import annotations

import pytest

from vecdb import errors
from vecdb.coord.assignment import plan
from vecdb.coord.segment_moves import choose_moves

REPLICAS = [[1, 2, 3], [4, 5]]
HELD = {1: {10: 500, 11: 300, 12: 100}, 2: {13: 50}, 3: {}, 4: {10: 500, 11: 300, 12: 100, 13: 50}}


def test_a_named_segment_goes_to_the_named_node():
    assert choose_moves(7, REPLICAS, HELD, 1, [3], [11]) == {11: 3}


def test_no_targets_means_the_replicas_other_nodes_and_each_segment_goes_to_the_lightest():
    # biggest first: 10 (500) to node 3 (0 rows), then 11 (300) to node 2 (50), then 12 (100) to node 2 (350)
    # against node 3 (500)
    assert choose_moves(7, REPLICAS, HELD, 1, [], []) == {10: 3, 11: 2, 12: 2}


def test_the_source_among_the_targets_or_alone_moves_nothing():
    assert choose_moves(7, REPLICAS, HELD, 1, [1], [10]) == {}
    assert choose_moves(7, [[1]], {1: {10: 5}}, 1, [], []) == {}
    assert choose_moves(7, REPLICAS, HELD, 1, [1, 2, 2], [10]) == {10: 2}


def test_milvus_errors_for_a_node_or_segment_the_request_gets_wrong():
    with pytest.raises(errors.NodeNotFound, match=r"source node not found in any replica of collection 7: "
                                                  r"node not found\[node=9\]") as e:
        choose_moves(7, REPLICAS, HELD, 9, [], [])
    assert e.value.code == 901
    with pytest.raises(errors.NodeNotFound, match=r"destination node not found in the same replica: "
                                                  r"node not found\[node=4\]"):
        choose_moves(7, REPLICAS, HELD, 1, [4], [])  # a node of another replica
    with pytest.raises(errors.SegmentNotFound, match="segment 13 not found in source node 1") as s:
        choose_moves(7, REPLICAS, HELD, 1, [2], [10, 13])  # held by node 2, not by the source
    assert s.value.code == 600


SEALED = {1: {"c1-s0": {"p0": 1000, "p1": 1000, "p2": 1000, "p3": 1000}}}


def _placed(a, cid=1):
    return a[cid].replicas[0].segments.get("c1-s0", {})


def test_a_pinned_segment_of_an_unspread_channel_is_placed_alone_and_its_pin_outlives_the_balance():
    a = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], {}, {}, sealed=SEALED, spread_min_rows=10_000)
    assert _placed(a) == {} and a[1].replicas[0].channels == {"c1-s0": "n0"}  # the leader holds all four
    a[1].replicas[0].pinned = {"c1-s0": {"p2": "n1"}}
    b = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], a, {}, sealed=SEALED, spread_min_rows=10_000)
    assert _placed(b) == {"p2": "n1"}  # the others stay with the leader
    assert b[1].replicas[0].pinned == {"c1-s0": {"p2": "n1"}}


def test_the_balance_moves_the_other_segments_around_a_pinned_one():
    # spread channel: all four on n0 by pins would be 4000/0; the balance may move only the unpinned
    a = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], {}, {}, sealed=SEALED)
    a[1].replicas[0].pinned = {"c1-s0": {p: "n1" for p in ("p0", "p1", "p2")}}
    for _ in range(4):
        a = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], a, {}, sealed=SEALED)
    assert _placed(a) == {"p0": "n1", "p1": "n1", "p2": "n1", "p3": "n0"}  # 3000 / 1000, pins held


def test_a_pin_goes_with_its_node_or_its_segment():
    a = plan({1: (["c1-s0"], 1)}, ["n0", "n1", "n2"], {}, {}, sealed=SEALED, spread_min_rows=10_000)
    a[1].replicas[0].pinned = {"c1-s0": {"p1": "n1", "p2": "n2"}}
    b = plan({1: (["c1-s0"], 1)}, ["n0", "n1", "n2"], a, {}, sealed=SEALED, spread_min_rows=10_000)
    assert _placed(b) == {"p1": "n1", "p2": "n2"}
    c = plan({1: (["c1-s0"], 1)}, ["n0", "n2"], b, {}, sealed=SEALED, spread_min_rows=10_000)  # n1 is gone
    assert c[1].replicas[0].pinned == {"c1-s0": {"p2": "n2"}} and _placed(c) == {"p2": "n2"}
    compacted = {1: {"c1-s0": {"p0": 1000, "p9": 3000}}}  # p2 compacted away
    d = plan({1: (["c1-s0"], 1)}, ["n0", "n2"], c, {}, sealed=compacted, spread_min_rows=10_000)
    assert d[1].replicas[0].pinned == {} and _placed(d) == {}
    # one node left in the replica: nothing to pin to
    e = plan({1: (["c1-s0"], 1)}, ["n0"], b, {}, sealed=SEALED, spread_min_rows=10_000)
    assert e[1].replicas[0].pinned == {}


def test_assignments_stay_readable_across_versions():
    """Pins are written only when a replica has some (an earlier version's processes read the rest),
    and keys a later version adds are left out when read."""
    import json

    from vecdb.coord.assignment import Assignment, Replica

    plain = Assignment(1, [Replica(1, ["n0", "n1"], {"c1-s0": "n0"})])
    assert "pinned" not in json.loads(plain.to_json())["replicas"][0]
    pinned = Assignment(1, [Replica(1, ["n0", "n1"], {"c1-s0": "n0"}, pinned={"c1-s0": {"p1": "n1"}})])
    assert Assignment.from_json(pinned.to_json()) == pinned and Assignment.from_json(plain.to_json()) == plain
    later = json.loads(pinned.to_json())
    later["replicas"][0]["weights"] = {"n0": 2}
    assert Assignment.from_json(json.dumps(later).encode()) == pinned

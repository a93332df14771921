"""The coord's placement rules (vecdb.coord.assignment.plan): replicas on disjoint nodes, one owner
per channel, balance by reported rows, hand-over only once the new node serves, failover at once."""

from __future__ import annotations

from vecdb.coord.assignment import Assignment, plan

CHS = ["c1-s0", "c1-s1", "c1-s2", "c1-s3"]


def owners(a: Assignment, replica: int = 0) -> dict[str, str | None]:
    return a.replicas[replica].channels


def per_node(a: Assignment, replica: int = 0) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in owners(a, replica).values():
        assert n is not None
        out[n] = out.get(n, 0) + 1
    return out


def served_as(a: Assignment, rows: dict[str, int] | None = None) -> dict:
    """What the nodes report once they hold what ``a`` gives them (owned and incoming channels)."""
    out: dict = {}
    for r in a.replicas:
        for n in r.nodes:
            for ch in r.node_channels(n):
                out.setdefault(n, {}).setdefault(1, {})[ch] = (rows or {}).get(ch, 0)
    return out


def settle(loaded, nodes, current, rows=None, rounds=10):
    """Plan, let the nodes load what they are given, plan again, until nothing changes."""
    for _ in range(rounds):
        new = plan(loaded, nodes, current, served_as(current[1], rows) if 1 in current else {})
        if new == current:
            return new
        current = new
    return current


def test_one_replica_spreads_channels_over_the_nodes():
    a = plan({1: (CHS, 1)}, ["n0", "n1"], {}, {})[1]
    assert len(a.replicas) == 1 and a.replicas[0].nodes == ["n0", "n1"]
    assert per_node(a) == {"n0": 2, "n1": 2}


def test_replicas_are_disjoint_and_each_holds_every_channel():
    a = plan({1: (CHS, 2)}, ["n0", "n1", "n2"], {}, {})[1]
    assert [len(r.nodes) for r in a.replicas] == [2, 1]
    assert not set(a.replicas[0].nodes) & set(a.replicas[1].nodes)
    for r in a.replicas:
        assert set(r.channels) == set(CHS) and all(n in r.nodes for n in r.channels.values())
    assert len(plan({1: (CHS, 3)}, ["n0"], {}, {})[1].replicas) == 1  # no more replicas than nodes


def test_a_gone_node_has_its_channels_owned_by_the_others_at_once():
    a = plan({1: (CHS, 1)}, ["n0", "n1"], {}, {})
    b = plan({1: (CHS, 1)}, ["n1"], a, served_as(a[1]))[1]
    assert b.replicas[0].nodes == ["n1"] and set(owners(b).values()) == {"n1"} and not b.replicas[0].moving
    none = plan({1: (CHS, 1)}, [], {1: b}, {})[1]
    assert none.replicas == [] or all(o is None for o in owners(none).values())


def test_a_joining_node_takes_channels_by_hand_over():
    a = plan({1: (CHS, 1)}, ["n0"], {}, {})
    b = plan({1: (CHS, 1)}, ["n0", "n1"], a, served_as(a[1]))[1]
    r = b.replicas[0]
    assert r.nodes == ["n0", "n1"] and set(r.channels.values()) == {"n0"}  # n0 still serves all
    assert list(r.moving.values()) == ["n1"]  # one channel is being handed over
    ch = next(iter(r.moving))
    c = plan({1: (CHS, 1)}, ["n0", "n1"], {1: b}, served_as(a[1]))[1]
    assert c.replicas[0].channels[ch] == "n0" and c.replicas[0].moving == {ch: "n1"}  # not served yet: waits
    d = plan({1: (CHS, 1)}, ["n0", "n1"], {1: c}, served_as(c))[1]
    assert d.replicas[0].channels[ch] == "n1"  # n1 reports it: ownership passes
    final = settle({1: (CHS, 1)}, ["n0", "n1"], {1: d})[1]
    assert per_node(final) == {"n0": 2, "n1": 2} and not final.replicas[0].moving


def test_balance_follows_reported_rows_not_channel_counts():
    rows = {"c1-s0": 9000, "c1-s1": 1000, "c1-s2": 1000, "c1-s3": 1000}
    final = settle({1: (CHS, 1)}, ["n0", "n1"], {}, rows)[1]
    big = owners(final)["c1-s0"]
    assert [ch for ch, n in owners(final).items() if n == big] == ["c1-s0"]  # alone on its node


def test_released_collections_lose_their_assignment_and_loads_across_collections_balance():
    a = plan({1: (CHS, 1), 2: (["c2-s0", "c2-s1"], 1)}, ["n0", "n1", "n2"], {}, {})
    assert set(a) == {1, 2}
    counts: dict[str, int] = {}
    for x in a.values():
        for n in x.replicas[0].channels.values():
            counts[n] = counts.get(n, 0) + 1
    assert sorted(counts.values()) == [2, 2, 2]
    assert set(plan({2: (["c2-s0", "c2-s1"], 1)}, ["n0", "n1", "n2"], a, {})) == {2}


def test_hand_overs_wait_for_settled_collections_and_a_real_gain():
    a = plan({1: (CHS, 1)}, ["n0"], {}, {})
    b = plan({1: (CHS, 1)}, ["n0", "n1"], a, served_as(a[1]), settled=set())[1]
    assert not b.replicas[0].moving  # just changed: the nodes' reports catch up first
    c = plan({1: (CHS, 1)}, ["n0", "n1"], {1: b}, served_as(a[1]), settled={1})[1]
    assert list(c.replicas[0].moving.values()) == ["n1"]
    rows = {"c1-s0": 1000, "c1-s1": 1000, "c1-s2": 1000, "c1-s3": 1050}
    final = settle({1: (CHS, 1)}, ["n0", "n1"], {}, rows)[1]
    assert per_node(final) == {"n0": 2, "n1": 2}  # 2050 vs 2000: no hand-over gains 10%


def _segment_rows(a: Assignment, sealed: dict, replica: int = 0) -> dict[str, int]:
    out: dict[str, int] = {}
    for ch, segs in a.replicas[replica].segments.items():
        for prefix, node in segs.items():
            out[node] = out.get(node, 0) + sealed[ch][prefix]
    return out


def test_sealed_segments_of_one_channel_spread_over_a_replica_and_stay_where_they_are():
    sealed = {"c1-s0": {f"p{i}": 1000 for i in range(6)}}
    a = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], {}, {}, sealed={1: sealed})
    assert _segment_rows(a[1], sealed) == {"n0": 3000, "n1": 3000}
    assert set(a[1].replicas[0].segments["c1-s0"]) == set(sealed["c1-s0"])
    # a new segment goes to the node with the fewest placed rows; the others stay put
    more = {"c1-s0": {**sealed["c1-s0"], "p6": 500}}
    b = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], a, {}, sealed={1: more})
    old, new = a[1].replicas[0].segments["c1-s0"], b[1].replicas[0].segments["c1-s0"]
    assert {p: new[p] for p in old} == old and set(new) == set(more["c1-s0"])
    # one node alone, or replicas of one node each: nothing to spread
    assert plan({1: (["c1-s0"], 1)}, ["n0"], {}, {}, sealed={1: sealed})[1].replicas[0].segments == {}
    two = plan({1: (["c1-s0"], 2)}, ["n0", "n1"], {}, {}, sealed={1: sealed})[1]
    assert all(r.segments == {} for r in two.replicas)


def test_segments_of_a_gone_node_are_placed_again_and_a_joining_node_takes_some_one_move_at_a_time():
    sealed = {1: {"c1-s0": {f"p{i}": 1000 for i in range(6)}}}
    a = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], {}, {}, sealed=sealed)
    b = plan({1: (["c1-s0"], 1)}, ["n0"], a, {}, sealed=sealed)
    assert b[1].replicas[0].segments == {}  # one node left: it leads and holds everything
    c = plan({1: (["c1-s0"], 1)}, ["n0", "n1", "n2"], a, {}, sealed=sealed)
    before, after = _segment_rows(a[1], sealed[1]), _segment_rows(c[1], sealed[1])
    assert after.get("n2") == 1000 and sum(after.values()) == 6000  # one segment moved to the new node
    assert sum(abs(before.get(n, 0) - after.get(n, 0)) for n in ("n0", "n1")) == 1000
    for _ in range(5):  # later passes go on until moving one more would not lower the busiest node's rows
        c = plan({1: (["c1-s0"], 1)}, ["n0", "n1", "n2"], c, {}, sealed=sealed)
    assert sorted(_segment_rows(c[1], sealed[1]).values()) == [2000, 2000, 2000]
    # a compacted-away segment leaves the placement; not settled: no moves, new segments still placed
    fewer = {1: {"c1-s0": {"p0": 1000, "p9": 3000}}}
    d = plan({1: (["c1-s0"], 1)}, ["n0", "n1", "n2"], c, {}, settled=set(), sealed=fewer)
    assert set(d[1].replicas[0].segments["c1-s0"]) == {"p0", "p9"}
    assert d[1].replicas[0].segments["c1-s0"]["p0"] == c[1].replicas[0].segments["c1-s0"]["p0"]


def test_a_new_segment_stays_with_its_channels_leader_when_the_loads_are_about_even():
    sealed = {1: {ch: {f"{ch}-p": 1000 + i} for i, ch in enumerate(CHS)}}
    a = plan({1: (CHS, 1)}, ["n0", "n1"], {}, {}, sealed=sealed)[1].replicas[0]
    assert {ch: a.segments[ch][f"{ch}-p"] for ch in CHS} == a.channels  # nothing to move: every leader keeps its own


def test_a_channel_is_spread_only_once_its_sealed_rows_reach_the_threshold():
    small = {1: {"c1-s0": {"p0": 600, "p1": 600}}}
    a = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], {}, {}, sealed=small, spread_min_rows=1500)
    assert a[1].replicas[0].segments == {}  # the leader holds them all; no other node follows the channel
    grown = {1: {"c1-s0": {"p0": 600, "p1": 600, "p2": 600}}}
    b = plan({1: (["c1-s0"], 1)}, ["n0", "n1"], a, {}, sealed=grown, spread_min_rows=1500)[1]
    assert sorted(b.replicas[0].segments["c1-s0"].values()).count("n1") >= 1

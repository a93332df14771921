"""``querynode.replica_per_node`` in the coord's placement (vecdb.coord.assignment.plan with
per_node): a replica of every loaded collection on each live query node, the client's
replica_number the floor; a node that joins gets a new replica and the others keep theirs; a gone
node's replica goes (not a live node's); a replica of several nodes placed before the setting
splits into one per node; resource groups each get one per member."""

from __future__ import annotations

from vecdb.coord.assignment import Assignment, plan

CHS = ["c1-s0", "c1-s1"]


def served_as(assignments: dict[int, Assignment]) -> dict:
    """What the nodes report once they hold what they are given."""
    out: dict = {}
    for cid, a in assignments.items():
        for r in a.replicas:
            for n in r.nodes:
                for ch in r.node_channels(n):
                    out.setdefault(n, {}).setdefault(cid, {})[ch] = 0
    return out


def settle(loaded, nodes, current, groups=None, rounds=10):
    for _ in range(rounds):
        new = plan(loaded, nodes, current, served_as(current), groups, per_node=True)
        if new == current:
            return new
        current = new
    raise AssertionError(f"no stable plan: {current}")


def whole_on(a: Assignment) -> dict[str, int]:
    """node -> the id of the replica it holds entirely (every channel owned by it, nothing moving)."""
    out = {}
    for r in a.replicas:
        assert len(r.nodes) == 1, r
        (n,) = r.nodes
        assert set(r.channels) == set(CHS) and set(r.channels.values()) == {n} and not r.moving, r
        out[n] = r.id
    return out


def test_a_replica_per_live_node_and_replica_number_is_the_floor():
    a = settle({1: (CHS, 1)}, ["n0", "n1", "n2"], {})
    assert sorted(whole_on(a[1])) == ["n0", "n1", "n2"]
    # without the setting: one replica over the three nodes, as before
    assert len(plan({1: (CHS, 1)}, ["n0", "n1", "n2"], {}, {})[1].replicas) == 1
    # the floor: replica_number 2 on one node is one replica (no more replicas than nodes), as without it
    assert len(settle({1: (CHS, 2)}, ["n0"], {})[1].replicas) == 1
    # every loaded collection
    both = settle({1: (CHS, 1), 2: (["c2-s0"], 1)}, ["n0", "n1"], {})
    assert [len(both[c].replicas) for c in (1, 2)] == [2, 2]


def test_a_joining_node_gets_a_replica_and_the_others_keep_theirs():
    a = settle({1: (CHS, 1)}, ["n0", "n1"], {})
    before = whole_on(a[1])
    b = settle({1: (CHS, 1)}, ["n0", "n1", "n2"], a)
    after = whole_on(b[1])
    assert {n: after[n] for n in before} == before and "n2" in after and after["n2"] not in before.values()
    # the new node's replica exists (not served yet) at the first pass, the others untouched meanwhile
    first = plan({1: (CHS, 1)}, ["n0", "n1", "n2"], a, served_as(a), per_node=True)[1]
    assert [r for r in first.replicas if r.id in before.values()] == a[1].replicas


def test_a_gone_nodes_replica_goes_and_the_live_ones_stay():
    a = settle({1: (CHS, 1)}, ["n0", "n1", "n2"], {})
    ids = whole_on(a[1])
    for gone in ("n0", "n1", "n2"):  # the first replica's node too: not a live node's replica dropped
        live = [n for n in ("n0", "n1", "n2") if n != gone]
        b = plan({1: (CHS, 1)}, live, a, served_as(a), per_node=True)[1]
        assert whole_on(b) == {n: ids[n] for n in live}
    # down to one node, then a restarted one under a new id: a replica of its own
    c = settle({1: (CHS, 1)}, ["n2"], a)
    assert whole_on(c[1]) == {"n2": ids["n2"]}
    d = settle({1: (CHS, 1)}, ["n2", "n0.1"], c)
    assert sorted(whole_on(d[1])) == ["n0.1", "n2"]


def test_a_replica_of_several_nodes_splits_into_one_per_node():
    shared = plan({1: (CHS, 1)}, ["n0", "n1"], {}, {})  # placed before the setting: one replica of two nodes
    assert shared[1].replicas[0].nodes == ["n0", "n1"]
    a = settle({1: (CHS, 1)}, ["n0", "n1"], shared)
    assert sorted(whole_on(a[1])) == ["n0", "n1"]
    assert shared[1].replicas[0].id in whole_on(a[1]).values()  # the old replica kept its id


def test_resource_groups_each_get_a_replica_per_member():
    groups = {"n0": "rg1", "n1": "rg1", "n2": "rg2"}
    a = settle({1: (CHS, 2, ["rg1", "rg2"])}, ["n0", "n1", "n2"], {}, groups)
    assert sorted(whole_on(a[1])) == ["n0", "n1", "n2"]
    assert sorted(r.resource_group for r in a[1].replicas) == ["rg1", "rg1", "rg2"]
    # a group the collection has no replica in gets none
    b = settle({1: (CHS, 1, ["rg1"])}, ["n0", "n1", "n2"], {}, groups)
    assert sorted(whole_on(b[1])) == ["n0", "n1"]

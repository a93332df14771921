"""Resource groups (vecdb.coord.resource_groups) and replica placement in them
(vecdb.coord.assignment.plan): Milvus 2.4's rules for members (requests, limits, transfers),
replica groups at load, TransferNode and TransferReplica, and the store's compare-and-set."""

from __future__ import annotations

import pytest

from vecdb import errors
from vecdb.coord.assignment import Assignment, plan
from vecdb.coord.resource_groups import DEFAULT_RESOURCE_GROUP as DEFAULT
from vecdb.coord.resource_groups import (
    Group,
    GroupConfig,
    ResourceGroups,
    parse_groups,
    recover,
    replica_groups,
    transfer_node_configs,
    transfer_replicas,
    validate_name,
)
from vecdb.storage.memory import MemoryMetaStore

CHS = ["c1-s0", "c1-s1", "c1-s2", "c1-s3"]
LIVE = ["n0", "n1", "n2"]


def groups(**named: tuple[int, int, list[str]]) -> dict[str, Group]:
    out = {name: Group(name, GroupConfig(req, lim), nodes) for name, (req, lim, nodes) in named.items()}
    return out


def members(gs: dict[str, Group]) -> dict[str, list[str]]:
    return {name: g.nodes for name, g in sorted(gs.items())}


# --- members -----------------------------------------------------------------------------
def test_nodes_in_no_group_are_in_the_default_group():
    gs = parse_groups({"rg1": Group("rg1", GroupConfig(), ["n1"]).to_json()}, LIVE)
    assert members(gs) == {DEFAULT: ["n0", "n2"], "rg1": ["n1"]}
    assert gs[DEFAULT].config == GroupConfig(0, 1_000_000) and gs[DEFAULT].capacity == 1_000_000


def test_a_group_missing_nodes_takes_them_and_a_new_node_fills_requests_first():
    out = recover(groups(rg1=(2, 2, [])), LIVE)
    assert len(out["rg1"].nodes) == 2 and len(out[DEFAULT].nodes) == 1
    # a group with requests 0 takes nothing; one whose limits are 0 gives everything back
    assert members(recover(groups(rg1=(0, 0, [])), LIVE)) == {DEFAULT: LIVE, "rg1": []}
    assert members(recover(groups(rg1=(0, 0, ["n1"])), LIVE)) == {DEFAULT: LIVE, "rg1": []}
    # a node that joins goes to the group that lacks nodes
    out = recover(groups(rg1=(2, 2, ["n0"])), ["n0", "n9"])
    assert members(out) == {DEFAULT: [], "rg1": ["n0", "n9"]}


def test_a_dead_node_leaves_its_group_and_others_stay_where_they_are():
    out = recover(groups(rg1=(1, 1, ["n1"])), ["n0", "n2"])
    assert len(out["rg1"].nodes) == 1 and out["rg1"].nodes[0] in ("n0", "n2")
    stable = recover(groups(rg1=(1, 2, ["n1"])), LIVE)
    assert recover(stable, LIVE)["rg1"].nodes == ["n1"]  # nothing moves once the configs are met


def test_missing_nodes_come_from_redundant_groups_then_oversized_ones_transfer_from_first():
    gs = {**groups(a=(0, 0, ["n0"]), b=(1, 3, ["n1", "n2"]), c=(1, 1, [])), DEFAULT: Group(DEFAULT, GroupConfig(0, 9))}
    out = recover(gs, LIVE)
    assert out["c"].nodes == ["n0"]  # a is redundant (over its limits): it gives first
    gs = groups(b=(0, 5, ["n1"]), d=(0, 5, ["n2"]), c=(1, 1, []))
    gs["c"].config.transfer_from = ["d"]
    assert recover(gs, ["n1", "n2"])["c"].nodes == ["n2"]


def test_names_and_configs_are_checked_as_milvus_does():
    for bad in ("", "1abc", "a-b", "x" * 256):
        with pytest.raises(errors.InvalidParameter):
            validate_name(bad)
    validate_name("_rg_1")


# --- TransferNode / TransferReplica / load ---------------------------------------------------
def test_transfer_node_is_a_config_change_and_the_rules_move_the_nodes():
    gs = parse_groups({"rg1": Group("rg1", GroupConfig()).to_json()}, LIVE)
    cfgs = transfer_node_configs(gs, DEFAULT, "rg1", 2)
    assert cfgs[DEFAULT] == GroupConfig(0, 1_000_000)  # the default group keeps its limits
    assert cfgs["rg1"] == GroupConfig(2, 2)
    gs["rg1"].config = cfgs["rg1"]
    out = recover(gs, LIVE)
    assert len(out["rg1"].nodes) == 2 and len(out[DEFAULT].nodes) == 1
    back = transfer_node_configs(out, "rg1", DEFAULT, 1)
    assert back["rg1"] == GroupConfig(1, 1) and back[DEFAULT] == GroupConfig(1, 1_000_000)
    with pytest.raises(errors.ResourceGroupNodeNotEnough):
        transfer_node_configs(out, "rg1", DEFAULT, 3)
    with pytest.raises(errors.ResourceGroupNotFound):
        transfer_node_configs(out, "nope", DEFAULT, 1)
    with pytest.raises(errors.InvalidParameter):
        transfer_node_configs(out, "rg1", "rg1", 1)
    with pytest.raises(errors.InvalidParameter):
        transfer_node_configs(out, DEFAULT, "rg1", 0)


def test_replica_groups_at_load():
    gs = recover(groups(rg1=(1, 1, []), rg2=(1, 1, [])), LIVE)
    assert replica_groups([], 1, gs) == [DEFAULT]
    with pytest.raises(errors.ResourceGroupNodeNotEnough):
        replica_groups([], 2, gs)  # the default group has one node left
    assert replica_groups(["rg1"], 1, gs) == ["rg1"]
    assert replica_groups(["rg1", "rg2"], 2, gs) == ["rg1", "rg2"]
    with pytest.raises(errors.InvalidParameter, match="0, 1 or same as replica number"):
        replica_groups(["rg1", "rg2"], 3, gs)
    with pytest.raises(errors.ResourceGroupNodeNotEnough):
        replica_groups(["rg1"], 2, gs)
    with pytest.raises(errors.ResourceGroupNotFound):
        replica_groups(["nope"], 1, gs)


def test_transfer_replica_moves_that_many_replicas():
    assert transfer_replicas([DEFAULT, DEFAULT], DEFAULT, "rg1", 1) == [DEFAULT, "rg1"]
    with pytest.raises(errors.InvalidParameter, match="only found"):
        transfer_replicas([DEFAULT], "rg1", DEFAULT, 1)
    with pytest.raises(errors.InvalidParameter):
        transfer_replicas([DEFAULT], DEFAULT, DEFAULT, 1)


# --- placement -----------------------------------------------------------------------------
def served_as(a: Assignment) -> dict:
    out: dict = {}
    for r in a.replicas:
        for n in {*r.nodes, *r.channels.values(), *r.moving.values()}:
            if n is None:
                continue
            for ch in r.node_channels(n):
                out.setdefault(n, {}).setdefault(1, {})[ch] = 0
    return out


def test_a_replica_takes_its_nodes_from_its_group_only():
    in_rg = {"n2": "rg1"}
    a = plan({1: (CHS, 1, ["rg1"])}, LIVE, {}, {}, in_rg)[1]
    assert [(r.resource_group, r.nodes) for r in a.replicas] == [("rg1", ["n2"])]
    assert set(a.replicas[0].channels.values()) == {"n2"}
    two = plan({1: (CHS, 2, [DEFAULT, "rg1"])}, LIVE, {}, {}, in_rg)[1]
    placed = sorted((r.resource_group, tuple(r.nodes)) for r in two.replicas)
    assert placed == [(DEFAULT, ("n0", "n1")), ("rg1", ("n2",))]
    # no groups given: everything in the default group, as before
    assert plan({1: (CHS, 1)}, LIVE, {}, {})[1].replicas[0].resource_group == DEFAULT
    # a group without nodes gets no new replica
    assert plan({1: (CHS, 1, ["rg2"])}, LIVE, {}, {}, in_rg)[1].replicas == []


def test_transfer_replica_keeps_the_replica_and_hands_its_channels_to_the_new_group():
    in_rg = {"n2": "rg1"}
    cur = plan({1: (CHS, 1, [DEFAULT])}, LIVE, {}, {}, in_rg)
    rid = cur[1].replicas[0].id
    old_owners = dict(cur[1].replicas[0].channels)
    moved = plan({1: (CHS, 1, ["rg1"])}, LIVE, cur, served_as(cur[1]), in_rg)[1]
    r = moved.replicas[0]
    assert (r.id, r.resource_group, r.nodes) == (rid, "rg1", ["n2"])
    # the old owners still serve until n2 does: a hand-over, not a gap
    assert r.channels == old_owners and set(r.moving.values()) == {"n2"}
    done = plan({1: (CHS, 1, ["rg1"])}, LIVE, {1: moved}, served_as(moved), in_rg)[1]
    assert set(done.replicas[0].channels.values()) == {"n2"} and not done.replicas[0].moving
    assert done.node_channels("n0") == [] and done.node_channels("n2") == CHS


def test_a_node_moved_to_another_group_hands_its_channels_over():
    cur = plan({1: (CHS, 1)}, ["n0", "n1"], {}, {})
    n1_channels = cur[1].node_channels("n1")
    after = plan({1: (CHS, 1)}, ["n0", "n1"], cur, served_as(cur[1]), {"n1": "rg1"})[1]
    r = after.replicas[0]
    assert r.nodes == ["n0"]
    assert all(r.channels[ch] == "n1" and r.moving[ch] == "n0" for ch in n1_channels)
    assert after.node_channels("n1") == n1_channels  # n1 keeps serving them meanwhile
    done = plan({1: (CHS, 1)}, ["n0", "n1"], {1: after}, served_as(after), {"n1": "rg1"})[1]
    assert set(done.replicas[0].channels.values()) == {"n0"} and done.node_channels("n1") == []


# --- the store -----------------------------------------------------------------------------
def test_the_store_creates_updates_transfers_and_drops_by_compare_and_set():
    meta = MemoryMetaStore()
    a = ResourceGroups(meta, lambda: {n: f"{n}:1" for n in LIVE})
    b = ResourceGroups(meta, lambda: {n: f"{n}:1" for n in LIVE})  # another proxy on the same store
    a.create("rg1", None)
    a.create("rg1", None)  # the same config again: fine
    with pytest.raises(errors.ResourceGroupAlreadyExist):
        b.create("rg1", GroupConfig(1, 1))
    assert sorted(b.snapshot()) == [DEFAULT, "rg1"]
    b.transfer_node(DEFAULT, "rg1", 2)
    snap = a.snapshot()
    assert len(snap["rg1"].nodes) == 2 and snap["rg1"].config == GroupConfig(2, 2)
    with pytest.raises(errors.InvalidParameter, match="limits node num is not 0"):
        a.drop("rg1", lambda name: None)
    a.update({"rg1": GroupConfig(0, 0)})
    assert a.snapshot()["rg1"].nodes == []  # limits 0: its nodes went back to the default group
    with pytest.raises(errors.InvalidParameter, match="release it first"):
        a.drop("rg1", lambda name: "docs")
    a.drop("rg1", lambda name: None)
    a.drop("rg1", lambda name: None)  # gone already: fine, as in Milvus
    assert list(b.snapshot()) == [DEFAULT] and b.snapshot()[DEFAULT].nodes == LIVE
    with pytest.raises(errors.InvalidParameter, match="not deletable"):
        a.drop(DEFAULT, lambda name: None)
    with pytest.raises(errors.ResourceGroupNotFound):
        a.update({"nope": GroupConfig(0, 0)})
    with pytest.raises(errors.ResourceGroupIllegalConfig):
        a.create("rg2", GroupConfig(2, 1))
    with pytest.raises(errors.ResourceGroupIllegalConfig):
        a.create("rg2", GroupConfig(0, 0, transfer_from=["nope"]))

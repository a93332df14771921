"""Resource groups through pymilvus (vecdb.coord.resource_groups, Milvus 2.4's semantics).

On the shared server (standalone and the cluster): create, list, describe, update and drop, with
Milvus's error codes (300 unknown group, 301 exists with another config, 303 illegal config, 304
not enough nodes, 1100 for the rest); loads name their groups; GetReplicas says each replica's
group. As separate processes (coord, two query nodes, a proxy): a node transferred into a new
group holds everything of a collection loaded there; TransferReplica moves the replica (and so
the data) to the other node, and TransferNode takes a node holding channels out of a loaded
replica, answers staying complete under a steady read load during both. Standalone's one node
(id 1) changes group as in Milvus.
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from pymilvus import Collection, DataType, MilvusClient, MilvusException, utility
from pymilvus.client.types import ResourceGroupConfig

from tests.conftest import start_cluster, wait_until
from tests.e2e._helpers import float_schema, make_collection, orm  # noqa: F401 - fixture

DEFAULT = "__default_resource_group"
DIM = 4


def _code(call) -> int:
    with pytest.raises(MilvusException) as err:
        call()
    return err.value.code


def _cfg(requests: int, limits: int, **kw) -> ResourceGroupConfig:
    return ResourceGroupConfig(requests={"node_num": requests}, limits={"node_num": limits}, **kw)


@pytest.fixture
def rg(client):
    """A fresh resource group name, its group dropped afterwards (limits back to 0 first)."""
    n = "rg_" + uuid.uuid4().hex[:10]
    yield n
    if n in client.list_resource_groups():
        client.update_resource_groups({n: _cfg(0, 0)})
        client.drop_resource_group(n)


def test_create_list_describe_update_drop(server, client, rg):
    default = client.describe_resource_group(DEFAULT)
    nodes = {n.node_id for n in default.nodes}
    assert default.name == DEFAULT and default.capacity == 1_000_000
    assert default.num_available_node == len(nodes) >= 1  # standalone: its one node (id 1)
    assert default.config.limits.node_num == 1_000_000 and default.config.requests.node_num == 0

    client.create_resource_group(rg)
    client.create_resource_group(rg)  # idempotent with the same config
    assert {DEFAULT, rg} <= set(client.list_resource_groups())
    info = client.describe_resource_group(rg)
    assert (info.name, info.capacity, info.num_available_node, list(info.nodes)) == (rg, 0, 0, [])
    assert (info.config.requests.node_num, info.config.limits.node_num) == (0, 0)

    # limits above requests 0: no node has to move, but the group is no longer empty by config
    client.update_resource_groups({rg: _cfg(0, 2, transfer_from=[{"resource_group": DEFAULT}])})
    info = client.describe_resource_group(rg)
    assert info.config.limits.node_num == 2 and [t.resource_group for t in info.config.transfer_from] == [DEFAULT]
    assert info.num_available_node == 0
    assert _code(lambda: client.drop_resource_group(rg)) == 1100  # limits not 0
    client.update_resource_groups({rg: _cfg(0, 0)})
    client.drop_resource_group(rg)
    assert rg not in client.list_resource_groups()
    client.drop_resource_group(rg)  # gone already: fine, as in Milvus
    assert {n.node_id for n in client.describe_resource_group(DEFAULT).nodes} == nodes


def test_errors_carry_milvus_codes(server, client, rg, orm):  # noqa: F811
    assert _code(lambda: client.describe_resource_group("no_such_group")) == 300
    client.create_resource_group(rg)
    assert _code(lambda: utility.create_resource_group(rg, using=orm, config=_cfg(1, 1))) == 301
    assert _code(lambda: client.update_resource_groups({rg: _cfg(2, 1)})) == 303
    assert _code(lambda: client.update_resource_groups({"no_such_group": _cfg(0, 0)})) == 300
    assert _code(lambda: client.create_resource_group("1bad")) == 1100
    assert _code(lambda: client.create_resource_group("bad-name")) == 1100
    assert _code(lambda: client.drop_resource_group(DEFAULT)) == 1100
    assert _code(lambda: utility.transfer_node("no_such_group", rg, 1, using=orm)) == 300
    assert _code(lambda: utility.transfer_node(DEFAULT, "no_such_group", 1, using=orm)) == 300
    assert _code(lambda: utility.transfer_node(rg, DEFAULT, 1, using=orm)) == 304  # rg has no node
    assert _code(lambda: utility.transfer_node(DEFAULT, DEFAULT, 1, using=orm)) == 1100
    assert _code(lambda: utility.transfer_node(DEFAULT, rg, 0, using=orm)) == 1100
    assert _code(lambda: client.transfer_replica("no_such_group", DEFAULT, "whatever", 1)) == 300


def test_loads_name_their_groups_and_replicas_say_theirs(server, client, name, rg, orm):  # noqa: F811
    make_collection(client, name, float_schema(DIM), load=False)
    client.insert(name, [{"id": i, "vec": [float(i)] * DIM} for i in range(10)])
    client.create_resource_group(rg)
    assert _code(lambda: client.load_collection(name, resource_groups=["no_such_group"])) == 300
    assert _code(lambda: client.load_collection(name, resource_groups=[rg])) == 304  # no node in it
    assert _code(lambda: client.load_collection(name, replica_number=1, resource_groups=[DEFAULT, rg])) == 1100
    assert client.get_load_state(name)["state"].name == "NotLoad"  # the refused loads left nothing behind

    client.load_collection(name, resource_groups=[DEFAULT])
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 10
    groups = Collection(name, using=orm).get_replicas().groups
    assert [g.resource_group for g in groups] == [DEFAULT]
    assert [r.resource_group for r in client.describe_replica(name)] == [DEFAULT]
    assert client.describe_resource_group(DEFAULT).num_loaded_replica.get(name) == 1
    # its replica is in the default group: moving it needs one there, and a group with a loaded
    # replica cannot be dropped
    assert _code(lambda: client.transfer_replica(rg, DEFAULT, name, 1)) == 1100
    assert _code(lambda: client.transfer_replica(DEFAULT, rg, name, 2)) == 1100
    client.release_collection(name)
    assert _code(lambda: client.transfer_replica(DEFAULT, rg, name, 1)) == 1100  # not loaded


def test_standalone_s_node_can_change_group_as_in_milvus(server, client, name, rg, orm):  # noqa: F811
    if hasattr(server, "check"):
        pytest.skip("a cluster's nodes move in the process test below")
    make_collection(client, name, float_schema(DIM), load=False)
    client.insert(name, [{"id": i, "vec": [float(i)] * DIM} for i in range(10)])
    client.create_resource_group(rg)
    utility.transfer_node(DEFAULT, rg, 1, using=orm)
    try:
        assert [n.node_id for n in client.describe_resource_group(rg).nodes] == [1]
        assert client.describe_resource_group(DEFAULT).num_available_node == 0
        assert _code(lambda: client.load_collection(name)) == 304  # the default group has no node now
        client.load_collection(name, resource_groups=[rg])
        assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 10
        assert [g.resource_group for g in Collection(name, using=orm).get_replicas().groups] == [rg]
        client.transfer_replica(rg, DEFAULT, name, 1)
        assert [g.resource_group for g in Collection(name, using=orm).get_replicas().groups] == [DEFAULT]
        client.release_collection(name)
    finally:
        utility.transfer_node(rg, DEFAULT, 1, using=orm)
    assert [n.node_id for n in client.describe_resource_group(DEFAULT).nodes] == [1]


# --- separate processes ------------------------------------------------------------------------
ROWS, SHARDS = 2000, 2


def _holders(alias: str, name: str) -> dict[int, int]:
    held: dict[int, int] = {}
    for s in utility.get_query_segment_info(name, using=alias):
        for n in s.nodeIds:
            held[n] = held.get(n, 0) + s.num_rows
    return held


def test_a_group_s_node_holds_what_is_loaded_there_and_transfer_replica_moves_it(tmp_path, remote_storage):
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path, querynodes=("qn0", "qn1"),
                       datanodes=()) as cluster:
        uri, c = cluster.uri(), cluster.client()
        cluster.connect("rgs")
        wait_until(lambda: c.describe_resource_group(DEFAULT).num_available_node == 2, 30, "two query nodes")

        c.create_resource_group("rg1")
        utility.transfer_node(DEFAULT, "rg1", 1, using="rgs")
        rg1 = c.describe_resource_group("rg1")
        assert rg1.num_available_node == 1 and (rg1.config.requests.node_num, rg1.config.limits.node_num) == (1, 1)
        mine = rg1.nodes[0].node_id
        other = {n.node_id for n in c.describe_resource_group(DEFAULT).nodes}
        assert len(other) == 1 and mine not in other
        (theirs,) = other

        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        index = c.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        c.create_collection("docs", schema=schema, index_params=index, num_shards=SHARDS)
        c.release_collection("docs")
        data = np.random.default_rng(0).random((ROWS, DIM), dtype=np.float32)
        c.insert("docs", [{"id": i, "vec": data[i]} for i in range(ROWS)])
        c.flush("docs")

        def count() -> int:
            return c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]

        Collection("docs", using="rgs").load(_resource_groups=["rg1"])
        assert count() == ROWS
        held = _holders("rgs", "docs")
        print(f"loaded in rg1: rows per node {held}")
        assert held == {mine: ROWS}
        (group,) = Collection("docs", using="rgs").get_replicas().groups
        assert group.resource_group == "rg1" and list(group.group_nodes) == [mine]
        assert c.describe_resource_group("rg1").num_loaded_replica == {"docs": 1}
        assert _code(lambda: c.drop_resource_group("rg1")) == 1100  # a replica is loaded there

        # TransferReplica: the replica, and the rows, go to the default group's node; reads meanwhile
        # stay complete (the old node serves until the new one does)
        def reading_while(what: str, change, done) -> None:
            """``change()`` under a steady count(*) load, then waits for ``done()``: every answer complete."""
            answers: list[int | str] = []
            stop = threading.Event()

            def reader():
                reads = MilvusClient(uri=uri)
                while not stop.is_set():
                    try:
                        answers.append(reads.query("docs", "", output_fields=["count(*)"])[0]["count(*)"])
                    except Exception as e:  # noqa: BLE001 (counted as a failed read)
                        answers.append(repr(e))
                reads.close()
            t = threading.Thread(target=reader)
            t.start()
            try:
                start = time.monotonic()
                change()
                wait_until(done, 30, f"{what}: not done")
                print(f"{what}: done {time.monotonic() - start:.2f} s later")
                time.sleep(2.5)  # past the old node's release
            finally:
                stop.set()
                t.join(30)
            print(f"{what}: {len(answers)} reads meanwhile")
            assert answers and all(a == ROWS for a in answers), [a for a in answers if a != ROWS][:3]

        reading_while("transfer_replica to the default group", lambda: c.transfer_replica("rg1", DEFAULT, "docs", 1),
                      lambda: _holders("rgs", "docs") == {theirs: ROWS})
        assert count() == ROWS
        (group,) = Collection("docs", using="rgs").get_replicas().groups
        assert group.resource_group == DEFAULT and list(group.group_nodes) == [theirs]

        # the node goes back: the default group's replica spreads over both nodes
        utility.transfer_node("rg1", DEFAULT, 1, using="rgs")
        assert c.describe_resource_group(DEFAULT).num_available_node == 2
        wait_until(lambda: set(_holders("rgs", "docs")) == {mine, theirs}, 30, "no balance over both nodes")
        # a node that holds channels leaves the replica's group: it hands them over, reads stay complete
        reading_while("transfer_node out of a loaded replica", lambda: utility.transfer_node(DEFAULT, "rg1", 1,
                                                                                             using="rgs"),
                      lambda: len(_holders("rgs", "docs")) == 1 and sum(_holders("rgs", "docs").values()) == ROWS)
        utility.transfer_node("rg1", DEFAULT, 1, using="rgs")
        c.update_resource_groups({"rg1": _cfg(0, 0)})
        c.drop_resource_group("rg1")
        assert c.list_resource_groups() == [DEFAULT]
        assert count() == ROWS

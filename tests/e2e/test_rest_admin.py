"""The REST API v2's Milvus 2.5 admin endpoints (vecdb.proxy.rest) on every deployment: index,
collection, field and database properties, flush and compaction, privilege groups and
grant_privilege_v2, resource groups; each checked against what the gRPC API (pymilvus) or another
REST call then sees, with an error case per family carrying Milvus's code."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pymilvus import Collection, utility

from tests.conftest import free_port, server_settings, wait_until
from tests.e2e._helpers import float_schema, make_collection, orm  # noqa: F401 - fixture
from tests.e2e.test_rest import ok, post
from vecdb.standalone import Standalone

DIM = 4
DEFAULT_RG = "__default_resource_group"


def code(reply: tuple[int, dict]) -> int:
    status, body = reply
    assert status == 200 and body["code"] != 0, body
    return body["code"]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create(port: int, name: str, load: bool = True) -> None:
    """A collection over REST: id, a float vector with index ``vec_idx``, a VarChar ``tag``; 50 rows."""
    ok(post(port, "collections/create", {
        "collectionName": name,
        "schema": {"fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "vec", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}},
            {"fieldName": "tag", "dataType": "VarChar", "elementTypeParams": {"max_length": 16}}]},
        "indexParams": [{"fieldName": "vec", "indexName": "vec_idx", "metricType": "L2", "indexType": "FLAT"}]}))
    vecs = np.random.default_rng(1).random((50, DIM)).round(4)
    rows = [{"id": i, "vec": vecs[i].tolist(), "tag": f"t{i}"} for i in range(50)]
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": rows}))["insertCount"] == 50
    if not load:
        ok(post(port, "collections/release", {"collectionName": name}))


def test_index_properties(server, client, name):
    port = server.http_ports[0]
    create(port, name)
    body = {"collectionName": name, "indexName": "vec_idx", "properties": {"mmap.enabled": True}}
    assert code(post(port, "indexes/alter_properties", body)) == 104  # loaded: release it first
    ok(post(port, "collections/release", {"collectionName": name}))
    ok(post(port, "indexes/alter_properties", body))
    assert client.describe_index(name, "vec_idx")["mmap.enabled"] == "true"
    assert code(post(port, "indexes/alter_properties", {**body, "properties": {"nlist": 8}})) == 1100
    assert code(post(port, "indexes/alter_properties", {**body, "indexName": "nope"})) == 700
    assert code(post(port, "indexes/alter_properties", {"collectionName": name, "properties": {}})) == 1802
    ok(post(port, "indexes/drop_properties", {"collectionName": name, "indexName": "vec_idx",
                                              "propertyKeys": ["mmap.enabled"]}))
    assert "mmap.enabled" not in client.describe_index(name, "vec_idx")


def test_collection_and_field_properties(server, client, name):
    port = server.http_ports[0]
    create(port, name, load=False)
    ok(post(port, "collections/alter_properties", {"collectionName": name,
                                                   "properties": {"collection.ttl.seconds": 3600}}))
    props = ok(post(port, "collections/describe", {"collectionName": name}))["properties"]
    assert {"key": "collection.ttl.seconds", "value": "3600"} in props
    assert client.describe_collection(name)["properties"]["collection.ttl.seconds"] == "3600"
    ok(post(port, "collections/drop_properties", {"collectionName": name,
                                                  "propertyKeys": ["collection.ttl.seconds"]}))
    assert "collection.ttl.seconds" not in client.describe_collection(name)["properties"]
    assert code(post(port, "collections/alter_properties", {"collectionName": "no_such_coll_ra",
                                                            "properties": {"a": 1}})) == 100

    ok(post(port, "collections/fields/alter_properties", {"collectionName": name, "fieldName": "tag",
                                                          "fieldParams": {"max_length": 64}}))
    tag = next(f for f in client.describe_collection(name)["fields"] if f["name"] == "tag")
    assert tag["params"]["max_length"] == 64
    fields = ok(post(port, "collections/describe", {"collectionName": name}))["fields"]
    assert {"key": "max_length", "value": "64"} in next(f for f in fields if f["name"] == "tag")["params"]
    assert code(post(port, "collections/fields/alter_properties", {
        "collectionName": name, "fieldName": "nope", "fieldParams": {"max_length": 8}})) == 1700
    assert code(post(port, "collections/fields/alter_properties", {
        "collectionName": name, "fieldName": "vec", "fieldParams": {"dim": 8}})) == 1100
    assert code(post(port, "collections/fields/alter_properties", {"collectionName": name})) == 1802


def test_flush_and_compaction(server, client, name):
    port = server.http_ports[0]
    create(port, name)
    ok(post(port, "collections/flush", {"collectionName": name}))
    assert client.get_collection_stats(name)["row_count"] == 50
    ok(post(port, "entities/delete", {"collectionName": name, "filter": "id < 10"}))
    ok(post(port, "collections/flush", {"collectionName": name}))
    job = ok(post(port, "collections/compact", {"collectionName": name}))["compactionID"]
    assert isinstance(job, int) and job > 0

    def state() -> dict:
        return ok(post(port, "collections/get_compaction_state", {"jobID": job}))

    wait_until(lambda: state()["state"] == "Completed", 60, "the compaction did not complete")
    done = state()
    assert done["compactionID"] == job and done["executingPlanNumber"] == 0
    assert set(done) == {"compactionID", "state", "executingPlanNumber", "timeoutPlanNumber", "completedPlanNumber"}
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 40
    # no clustering key: nothing to cluster, as Milvus answers it (job id -1, no plan)
    assert ok(post(port, "collections/compact", {"collectionName": name, "isClustering": True})) == {
        "compactionID": -1}
    assert code(post(port, "collections/flush", {"collectionName": "no_such_coll_rf"})) == 100
    assert code(post(port, "collections/get_compaction_state", {})) == 1802


def test_database_alter(server, client):
    port = server.http_ports[0]
    db = unique("rdb")
    ok(post(port, "databases/create", {"dbName": db}))
    try:
        ok(post(port, "databases/alter", {"dbName": db, "properties": {"database.max.collections": 10}}))
        ok(post(port, "databases/alter_properties", {"dbName": db, "properties": {"mmap.enabled": True}}))
        props = ok(post(port, "databases/describe", {"dbName": db}))["properties"]
        assert {"key": "database.max.collections", "value": "10"} in props
        assert {"key": "mmap.enabled", "value": "true"} in props
        assert client.describe_database(db)["database.max.collections"] == "10"
        ok(post(port, "databases/drop_properties", {"dbName": db, "propertyKeys": ["mmap.enabled"]}))
        props = ok(post(port, "databases/describe", {"dbName": db}))["properties"]
        assert {"key": "database.max.collections", "value": "10"} in props
        assert not any(p["key"] == "mmap.enabled" for p in props)
        assert code(post(port, "databases/alter", {"dbName": unique("nodb"), "properties": {"a": 1}})) == 800
        assert code(post(port, "databases/alter", {"properties": {"a": 1}})) == 1802
    finally:
        ok(post(port, "databases/drop", {"dbName": db}))


def test_privilege_groups_and_grant_v2(server):
    port = server.http_ports[0]
    group, role = unique("pg"), unique("role")
    ok(post(port, "privilege_groups/create", {"privilegeGroupName": group}))
    ok(post(port, "roles/create", {"roleName": role}))
    try:
        assert code(post(port, "privilege_groups/create", {"privilegeGroupName": group})) == 1100
        ok(post(port, "privilege_groups/add_privileges_to_group", {"privilegeGroupName": group,
                                                                   "privileges": ["Query", "Search"]}))
        listed = {g["privilegeGroupName"]: g["privileges"]
                  for g in ok(post(port, "privilege_groups/list", {}))["privilegeGroups"]}
        assert set(listed[group].split(",")) == {"Query", "Search"}
        ok(post(port, "privilege_groups/remove_privileges_from_group", {"privilegeGroupName": group,
                                                                        "privileges": ["Search"]}))
        listed = {g["privilegeGroupName"]: g["privileges"]
                  for g in ok(post(port, "privilege_groups/list", {}))["privilegeGroups"]}
        assert listed[group] == "Query"
        assert code(post(port, "privilege_groups/add_privileges_to_group", {
            "privilegeGroupName": group, "privileges": ["NoSuchPrivilege"]})) == 1100
        assert code(post(port, "privilege_groups/drop", {})) == 1802

        ok(post(port, "roles/grant_privilege_v2", {"roleName": role, "privilege": group, "dbName": "default",
                                                   "collectionName": "*"}))
        ok(post(port, "roles/grant_privilege_v2", {"roleName": role, "privilege": "Search",
                                                   "collectionName": "books"}))
        grants = ok(post(port, "roles/describe", {"roleName": role}))
        assert {(g["objectType"], g["objectName"], g["privilege"], g["dbName"]) for g in grants} == {
            ("Collection", "*", group, "default"), ("Collection", "books", "Search", "default")}
        assert code(post(port, "privilege_groups/drop", {"privilegeGroupName": group})) == 1100  # in use
        assert code(post(port, "roles/grant_privilege_v2", {"roleName": unique("norole"),
                                                            "privilege": "Search"})) == 1100
        assert code(post(port, "roles/grant_privilege_v2", {"roleName": role})) == 1802
        ok(post(port, "roles/revoke_privilege_v2", {"roleName": role, "privilege": group, "dbName": "default",
                                                    "collectionName": "*"}))
        ok(post(port, "roles/revoke_privilege_v2", {"roleName": role, "privilege": "Search",
                                                    "collectionName": "books"}))
        assert ok(post(port, "roles/describe", {"roleName": role})) == []
    finally:
        ok(post(port, "roles/drop", {"roleName": role}))
        ok(post(port, "privilege_groups/drop", {"privilegeGroupName": group}))
    names = [g["privilegeGroupName"] for g in ok(post(port, "privilege_groups/list", {}))["privilegeGroups"]]
    assert group not in names


def test_a_privilege_group_granted_over_rest_lets_its_user_in(tmp_path):
    settings = server_settings(tmp_path)
    settings.http.port = free_port()
    settings.security.authorization_enabled = True
    srv = Standalone(settings).start()
    port, root = settings.http.port, "root:Milvus"
    try:
        create_body = {"collectionName": "books", "dimension": DIM}
        ok(post(port, "collections/create", create_body, token=root))
        ok(post(port, "entities/insert", {"collectionName": "books", "data": [{"id": 1, "vector": [0.1] * DIM}]},
                token=root))
        ok(post(port, "users/create", {"userName": "reader", "password": "readerpass1"}, token=root))
        status, body = post(port, "privilege_groups/create", {"privilegeGroupName": "readers"},
                            token="reader:readerpass1")
        assert status == 403 and body["code"] == 1401
        query = {"collectionName": "books", "filter": "id >= 0", "consistencyLevel": "Strong"}
        assert post(port, "entities/query", query, token="reader:readerpass1")[0] == 403
        ok(post(port, "privilege_groups/create", {"privilegeGroupName": "readers"}, token=root))
        ok(post(port, "privilege_groups/add_privileges_to_group", {"privilegeGroupName": "readers",
                                                                   "privileges": ["Query"]}, token=root))
        ok(post(port, "roles/create", {"roleName": "reading"}, token=root))
        ok(post(port, "roles/grant_privilege_v2", {"roleName": "reading", "privilege": "readers",
                                                   "dbName": "default", "collectionName": "books"}, token=root))
        ok(post(port, "users/grant_role", {"userName": "reader", "roleName": "reading"}, token=root))
        assert [r["id"] for r in ok(post(port, "entities/query", query, token="reader:readerpass1"))] == [1]
        ok(post(port, "roles/revoke_privilege_v2", {"roleName": "reading", "privilege": "readers",
                                                    "dbName": "default", "collectionName": "books"}, token=root))
        assert post(port, "entities/query", query, token="reader:readerpass1")[0] == 403
    finally:
        srv.stop()


@pytest.fixture
def rg(client):
    """A fresh resource group name, its group dropped afterwards (limits back to 0 first)."""
    n = unique("rg")
    yield n
    if n in client.list_resource_groups():
        client.update_resource_groups({n: {"requests": {"node_num": 0}, "limits": {"node_num": 0}}})
        client.drop_resource_group(n)


def _limits(requests: int, limits: int, **kw) -> dict:
    return {"requests": {"node_num": requests}, "limits": {"node_num": limits}, **kw}


def test_resource_groups(server, client, rg):
    port = server.http_ports[0]
    ok(post(port, "resource_groups/create", {"name": rg, "config": _limits(0, 0)}))
    assert {DEFAULT_RG, rg} <= set(ok(post(port, "resource_groups/list", {})))
    assert rg in client.list_resource_groups()
    status, reply = post(port, "resource_groups/describe", {"name": rg})
    assert status == 200 and reply["code"] == 0 and reply["resource_group"] == reply["data"]["resource_group"]
    got = reply["resource_group"]
    assert (got["name"], got["capacity"], got["num_available_node"], got["nodes"]) == (rg, 0, 0, [])
    assert got["config"]["requests"] == {"node_num": 0} and got["config"]["limits"] == {"node_num": 0}
    default = ok(post(port, "resource_groups/describe", {"name": DEFAULT_RG}))["resource_group"]
    want = client.describe_resource_group(DEFAULT_RG)
    assert sorted(n["node_id"] for n in default["nodes"]) == sorted(n.node_id for n in want.nodes)
    assert default["num_available_node"] == want.num_available_node >= 1

    ok(post(port, "resource_groups/alter", {"resource_groups": {
        rg: _limits(0, 2, transfer_from=[{"resource_group": DEFAULT_RG}])}}))
    info = client.describe_resource_group(rg)
    assert info.config.limits.node_num == 2 and [t.resource_group for t in info.config.transfer_from] == [DEFAULT_RG]
    assert code(post(port, "resource_groups/drop", {"name": rg})) == 1100  # limits not 0
    assert code(post(port, "resource_groups/alter", {"resource_groups": {rg: _limits(2, 1)}})) == 303
    assert code(post(port, "resource_groups/describe", {"name": "no_such_group"})) == 300
    assert code(post(port, "resource_groups/create", {"name": unique("rg"), "config": {"requests": {}}})) == 1802
    assert code(post(port, "resource_groups/alter", {"resource_groups": [rg]})) == 1802
    ok(post(port, "resource_groups/alter", {"resource_groups": {rg: _limits(0, 0)}}))
    ok(post(port, "resource_groups/drop", {"name": rg}))
    assert rg not in ok(post(port, "resource_groups/list", {}))


def test_transfer_replica(server, client, name, rg, orm):  # noqa: F811
    port = server.http_ports[0]
    make_collection(client, name, float_schema(DIM), load=False)
    client.insert(name, [{"id": i, "vec": [float(i)] * DIM} for i in range(10)])
    client.create_resource_group(rg)
    body = {"sourceRgName": DEFAULT_RG, "targetRgName": rg, "collectionName": name, "replicaNum": 1}
    assert code(post(port, "resource_groups/transfer_replica", {**body, "sourceRgName": "no_such_group"})) == 300
    assert code(post(port, "resource_groups/transfer_replica", body)) == 1100  # not loaded
    assert code(post(port, "resource_groups/transfer_replica", {**body, "replicaNum": None})) == 1802
    if hasattr(server, "check"):
        return  # a cluster's nodes move in tests/e2e/test_resource_groups.py's process test
    utility.transfer_node(DEFAULT_RG, rg, 1, using=orm)  # standalone's one node, as in Milvus
    try:
        client.load_collection(name, resource_groups=[rg])
        ok(post(port, "resource_groups/transfer_replica", {**body, "sourceRgName": rg, "targetRgName": DEFAULT_RG}))
        assert [g.resource_group for g in Collection(name, using=orm).get_replicas().groups] == [DEFAULT_RG]
        client.release_collection(name)
    finally:
        utility.transfer_node(rg, DEFAULT_RG, 1, using=orm)

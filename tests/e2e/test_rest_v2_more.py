"""Milvus's newer RESTful API v2 endpoints (vecdb.proxy.rest_more) over HTTP against a standalone server:
collections truncate / refresh_load / functions / fields add & drop / struct_fields add, snapshots and their
restore jobs, external collection refresh jobs, file resources, run_analyzer, roles/alter; their replies
(checked against the gRPC API through pymilvus where it has the same data), Milvus's error codes and the
privileges they need."""

from __future__ import annotations

import time

import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, server_settings
from tests.e2e.test_rest import post
from vecdb.standalone import Standalone

DIM = 4


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = server_settings(tmp_path_factory.mktemp("rest_more"))
    settings.http.port = free_port()
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield settings.http.port, client, srv
    client.close()
    srv.stop()


def ok(reply: tuple[int, dict]):
    status, body = reply
    assert status == 200 and body.get("code") == 0, body
    return body["data"]


def err(reply: tuple[int, dict], code: int, text: str = "") -> str:
    status, body = reply
    assert status == 200 and body.get("code") == code, body
    assert text in body["message"], body
    return body["message"]


def quick(port: int, name: str, n: int = 10) -> None:
    ok(post(port, "collections/create", {"collectionName": name, "dimension": DIM, "metricType": "L2"}))
    data = [{"id": i, "vector": [float(i), 0.0, 0.0, 1.0]} for i in range(n)]
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": data}))["insertCount"] == n


def count(port: int, name: str) -> int:
    rows = ok(post(port, "entities/query", {"collectionName": name, "filter": "", "outputFields": ["count(*)"],
                                            "consistencyLevel": "Strong"}))
    return rows[0]["count(*)"]


def test_truncate_and_refresh_load(api):
    port, client, _ = api
    quick(port, "trunc")
    assert count(port, "trunc") == 10
    assert ok(post(port, "collections/truncate", {"collectionName": "trunc"})) == {}
    assert count(port, "trunc") == 0
    assert client.query("trunc", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 0
    assert ok(post(port, "collections/refresh_load", {"collectionName": "trunc"})) == {}
    assert ok(post(port, "collections/get_load_state", {"collectionName": "trunc"}))["loadState"] == \
        "LoadStateLoaded"
    err(post(port, "collections/truncate", {"collectionName": "no_such"}), 100)
    err(post(port, "collections/refresh_load", {}), 1802, "collectionName")


def test_fields_add_and_drop(api):
    port, client, _ = api
    quick(port, "fields", 3)
    ok(post(port, "collections/fields/add", {"collectionName": "fields", "schema": {
        "fieldName": "extra", "dataType": "Int64", "nullable": True, "defaultValue": 7}}))
    fields = {f["name"]: f for f in ok(post(port, "collections/describe", {"collectionName": "fields"}))["fields"]}
    assert fields["extra"]["type"] == "Int64"
    assert "extra" in {f["name"] for f in client.describe_collection("fields")["fields"]}
    rows = ok(post(port, "entities/query", {"collectionName": "fields", "filter": "id == 1",
                                            "outputFields": ["extra"], "consistencyLevel": "Strong"}))
    assert rows == [{"id": 1, "extra": 7}]
    ok(post(port, "collections/fields/add", {"collectionName": "fields", "schema": {
        "fieldName": "tag", "dataType": "VarChar", "nullable": True, "elementTypeParams": {"max_length": 16}}}))
    ok(post(port, "collections/fields/drop", {"collectionName": "fields", "fieldName": "extra"}))
    names = {f["name"] for f in ok(post(port, "collections/describe", {"collectionName": "fields"}))["fields"]}
    assert "extra" not in names and "tag" in names
    # refusals, as Milvus's
    err(post(port, "collections/fields/drop", {"collectionName": "fields"}), 1100, "exactly one")
    err(post(port, "collections/fields/drop", {"collectionName": "fields", "fieldName": "tag", "fieldId": 5}),
        1100, "exactly one")
    err(post(port, "collections/fields/drop", {"collectionName": "fields", "fieldId": 0}), 1100, "greater than 0")
    err(post(port, "collections/fields/add", {"collectionName": "fields"}), 1802, "schema")
    err(post(port, "collections/fields/add", {"collectionName": "fields", "schema": {
        "fieldName": "x", "dataType": "int64", "nullable": True}}), 1100, "case sensitive")
    err(post(port, "collections/fields/add", {"collectionName": "fields", "schema": {
        "fieldName": "s", "dataType": "ArrayOfStruct", "fields": []}}), 1100, "struct_fields/add")
    status, body = post(port, "collections/fields/add", {"collectionName": "fields", "schema": {
        "fieldName": "y", "dataType": "Int64"}})  # not nullable, no default: Milvus refuses it
    assert body["code"] != 0


def test_struct_fields_add(api):
    port, client, _ = api
    quick(port, "structs", 2)
    ok(post(port, "collections/struct_fields/add", {"collectionName": "structs", "schema": {
        "fieldName": "chunks", "dataType": "ArrayOfStruct", "nullable": True,
        "typeParams": {"max_capacity": 4},
        "fields": [{"fieldName": "text", "dataType": "Array", "elementDataType": "VarChar",
                    "elementTypeParams": {"max_length": 32}}]}}))
    d = ok(post(port, "collections/describe", {"collectionName": "structs"}))
    assert [s["name"] for s in d["structArrayFields"]] == ["chunks"]
    assert [f["name"] for f in d["structArrayFields"][0]["fields"]] == ["text"]
    struct = d["structFields"][0]  # Milvus 3.0's key and shape
    assert (struct["name"], struct["type"], struct["nullable"]) == ("chunks", "ArrayOfStruct", True)
    assert [(f["name"], f["type"], f["elementType"]) for f in struct["fields"]] == [("text", "Array", "VarChar")]
    assert d["externalSource"] == "" and d["externalSpec"] == ""
    err(post(port, "collections/struct_fields/add", {"collectionName": "structs", "schema": {
        "fieldName": "c2", "dataType": "Int64"}}), 1100, "ArrayOfStruct")
    err(post(port, "collections/struct_fields/add", {"collectionName": "structs", "schema": {
        "fieldName": "c3", "dataType": "ArrayOfStruct", "fields": []}}), 1100, "at least one sub-field")


def test_function_endpoints(api):
    port, client, _ = api
    ok(post(port, "collections/create", {"collectionName": "fn", "schema": {"fields": [
        {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
        {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}},
        {"fieldName": "text", "dataType": "VarChar",
         "elementTypeParams": {"max_length": 200, "enable_analyzer": True}}]},
        "indexParams": [{"fieldName": "v", "indexName": "v", "metricType": "L2", "indexType": "FLAT"}]}))
    bm25 = {"name": "bm25", "type": "BM25", "inputFieldNames": ["text"], "outputFieldNames": ["sparse"]}
    ok(post(port, "collections/add_function_field", {
        "collectionName": "fn", "function": bm25,
        "outputField": {"fieldName": "sparse", "dataType": "SparseFloatVector"},
        "indexParams": {"fieldName": "sparse", "indexName": "sparse_idx", "metricType": "BM25",
                        "indexType": "SPARSE_INVERTED_INDEX"}}))
    d = ok(post(port, "collections/describe", {"collectionName": "fn"}))
    assert [(f["name"], f["type"], f["inputFieldNames"], f["outputFieldNames"]) for f in d["functions"]] == \
        [("bm25", "BM25", ["text"], ["sparse"])]
    assert "sparse" in {f["name"] for f in d["fields"]}
    assert [f["name"] for f in client.describe_collection("fn")["functions"]] == ["bm25"]
    # a function is coupled to its output field: adding or detaching one alone is refused, as in Milvus
    err(post(port, "collections/add_function", {"collectionName": "fn", "function": {**bm25, "name": "b2"}}),
        1100, "adding")
    err(post(port, "collections/drop_function", {"collectionName": "fn", "FunctionName": "bm25"}), 1100)
    err(post(port, "collections/alter_function", {"collectionName": "fn", "functionName": "bm25",
                                                  "function": bm25}), 1100)
    err(post(port, "collections/add_function", {"collectionName": "fn", "function": {"name": "x"}}), 1802,
        "function.type")
    err(post(port, "collections/add_function_field", {
        "collectionName": "fn", "function": {**bm25, "name": "b3"},
        "outputField": {"fieldName": "sp2", "dataType": "SparseFloatVector"},
        "indexParams": {"fieldName": "other", "metricType": "BM25"}}), 1100, "must match")
    ok(post(port, "collections/drop_function_field", {"collectionName": "fn", "functionName": "bm25"}))
    d = ok(post(port, "collections/describe", {"collectionName": "fn"}))
    assert d["functions"] == [] and "sparse" not in {f["name"] for f in d["fields"]}
    err(post(port, "collections/drop_function_field", {"collectionName": "fn"}), 1802, "functionName")


def test_snapshots_and_restore_jobs(api):
    port, client, _ = api
    quick(port, "snap_src", 6)
    ok(post(port, "collections/flush", {"collectionName": "snap_src"}))
    assert ok(post(port, "snapshots/create", {"collectionName": "snap_src", "snapshotName": "s1",
                                              "description": "first", "compactionProtectionSeconds": 60})) == {}
    assert ok(post(port, "snapshots/list", {"collectionName": "snap_src"})) == ["s1"]
    assert client.list_snapshots(collection_name="snap_src") == ["s1"]
    d = ok(post(port, "snapshots/describe", {"collectionName": "snap_src", "snapshotName": "s1"}))
    assert d["snapshotName"] == "s1" and d["description"] == "first" and d["collectionName"] == "snap_src"
    assert d["partitionNames"] == ["_default"] and d["createTs"] > 0 and d["s3Location"]
    pin = ok(post(port, "snapshots/pin", {"collectionName": "snap_src", "snapshotName": "s1", "ttlSeconds": 60}))
    assert pin["pinId"] > 0
    assert ok(post(port, "snapshots/unpin", {"pinId": str(pin["pinId"])})) == {}
    job = ok(post(port, "snapshots/restore", {"sourceCollectionName": "snap_src", "snapshotName": "s1",
                                              "targetCollectionName": "snap_dst"}))["jobId"]
    deadline = time.monotonic() + 60
    while True:
        info = ok(post(port, "jobs/snapshot/describe", {"jobId": str(job)}))
        if info["state"] in ("RestoreSnapshotCompleted", "RestoreSnapshotFailed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert info["state"] == "RestoreSnapshotCompleted", info
    assert info["jobId"] == job and info["snapshotName"] == "s1" and info["progress"] == 100
    records = ok(post(port, "jobs/snapshot/list", {"collectionName": "snap_dst"}))["records"]
    assert job in [j["jobId"] for j in records]
    ok(post(port, "collections/load", {"collectionName": "snap_dst"}))
    assert count(port, "snap_dst") == 6
    assert ok(post(port, "snapshots/drop", {"collectionName": "snap_src", "snapshotName": "s1"})) == {}
    assert ok(post(port, "snapshots/list", {"collectionName": "snap_src"})) == []
    # refusals
    status, body = post(port, "snapshots/describe", {"collectionName": "snap_src", "snapshotName": "s1"})
    assert body["code"] != 0 and "s1" in body["message"]
    err(post(port, "snapshots/create", {"collectionName": "snap_src"}), 1802, "snapshotName")
    err(post(port, "snapshots/create", {"collectionName": "snap_src", "snapshotName": "s2",
                                        "compactionProtectionSeconds": -1}), 1802)
    err(post(port, "snapshots/create", {"collectionName": "no_such", "snapshotName": "s2"}), 100)
    err(post(port, "snapshots/unpin", {"pinId": "abc"}), 1100, "positive decimal int64")
    err(post(port, "snapshots/unpin", {}), 1802, "pinId")
    err(post(port, "snapshots/restore", {"sourceCollectionName": "snap_src", "snapshotName": "s1"}), 1802,
        "targetCollectionName")
    err(post(port, "jobs/snapshot/describe", {"jobId": "x1"}), 1100, "jobId")
    status, body = post(port, "jobs/snapshot/describe", {"jobId": "987654321"})
    assert body["code"] != 0


def test_file_resources(api):
    port, client, srv = api
    srv.objects.put("rest_more/words.txt", b"the\nof\n")
    assert ok(post(port, "file_resources/add", {"name": "stop_words", "path": "rest_more/words.txt"})) == {}
    listed = ok(post(port, "file_resources/list", {}))
    assert [(r["name"], r["path"]) for r in listed] == [("stop_words", "rest_more/words.txt")]
    assert listed[0]["id"] > 0
    assert [r.name for r in client.list_file_resources()] == ["stop_words"]
    tokens = ok(post(port, "common/run_analyzer", {
        "text": ["the art of war"], "analyzerParams": {"tokenizer": "standard", "filter": [
            {"type": "stop", "stop_words_file": {"type": "remote", "resource_name": "stop_words",
                                                 "file_name": "words.txt"}}]}}))["results"][0]["tokens"]
    assert [t["token"] for t in tokens] == ["art", "war"]
    assert ok(post(port, "file_resources/remove", {"name": "stop_words"})) == {}
    assert ok(post(port, "file_resources/list", {})) == []
    err(post(port, "file_resources/add", {"name": "x"}), 1802, "path")
    err(post(port, "file_resources/remove", {}), 1802, "name")
    status, body = post(port, "file_resources/add", {"name": "y", "path": "rest_more/missing.txt"})
    assert body["code"] != 0


def test_run_analyzer(api):
    port, _, _ = api
    data = ok(post(port, "common/run_analyzer", {"text": ["Hello World", "a b"], "withDetail": True,
                                                 "withHash": True,
                                                 "analyzerParams": '{"tokenizer": "standard"}'}))
    first = data["results"][0]["tokens"]
    assert [t["token"] for t in first] == ["Hello", "World"]
    assert first[1]["startOffset"] == 6 and first[1]["endOffset"] == 11 and first[1]["position"] == 1
    assert "hash" in first[0] and "positionLength" in first[0]
    plain = ok(post(port, "common/run_analyzer", {"text": ["x y"]}))["results"][0]["tokens"]
    assert plain == [{"token": "x"}, {"token": "y"}]
    err(post(port, "common/run_analyzer", {}), 1802, "text")
    status, body = post(port, "common/run_analyzer", {"text": ["x"], "analyzerParams": "{not json"})
    assert body["code"] != 0


def test_external_collection_jobs(api):
    port, _, _ = api
    quick(port, "not_external", 1)
    assert ok(post(port, "jobs/external_collection/list", {})) == {"records": []}
    status, body = post(port, "jobs/external_collection/refresh", {"collectionName": "not_external"})
    assert body["code"] != 0 and "external" in body["message"]
    err(post(port, "jobs/external_collection/describe", {"jobId": 424242}), 1100, "not found")
    err(post(port, "jobs/external_collection/describe", {}), 1802, "jobId")
    err(post(port, "jobs/external_collection/refresh", {}), 1802, "collectionName")


def test_privileges_and_roles_alter(tmp_path):
    settings = server_settings(tmp_path)
    settings.http.port = free_port()
    settings.security.authorization_enabled = True
    srv = Standalone(settings).start()
    port, root = settings.http.port, "root:Milvus"
    try:
        ok(post(port, "roles/create", {"roleName": "reader"}, token=root))
        assert ok(post(port, "roles/alter", {"roleName": "reader", "description": "reads things"},
                       token=root)) == {}
        err(post(port, "roles/alter", {"description": "x"}, token=root), 1802, "roleName")
        ok(post(port, "users/create", {"userName": "bob", "password": "bobpass123"}, token=root))
        bob = "bob:bobpass123"
        ok(post(port, "collections/create", {"collectionName": "guarded", "dimension": DIM}, token=root))
        for path, body in [("snapshots/create", {"collectionName": "guarded", "snapshotName": "s"}),
                           ("collections/truncate", {"collectionName": "guarded"}),
                           ("collections/fields/add", {"collectionName": "guarded", "schema": {
                               "fieldName": "z", "dataType": "Int64", "nullable": True}}),
                           ("file_resources/add", {"name": "r", "path": "p"}),
                           ("roles/alter", {"roleName": "reader", "description": "y"})]:
            status, reply = post(port, path, body, token=bob)
            assert status == 403 and reply["code"] == 1401, (path, reply)
        assert post(port, "snapshots/list", {"collectionName": "guarded"})[0] == 401
        ok(post(port, "snapshots/create", {"collectionName": "guarded", "snapshotName": "s"}, token=root))
        assert ok(post(port, "snapshots/list", {"collectionName": "guarded"}, token=root)) == ["s"]
    finally:
        srv.stop()


def test_advanced_search_is_hybrid_search(api):
    port, _, _ = api
    quick(port, "adv", 8)
    body = {"collectionName": "adv", "search": [{"data": [[3.0, 0.0, 0.0, 1.0]], "annsField": "vector", "limit": 3}],
            "rerank": {"strategy": "rrf", "params": {"k": 60}}, "limit": 3, "consistencyLevel": "Strong"}
    hits = ok(post(port, "entities/advanced_search", body))
    assert hits == ok(post(port, "entities/hybrid_search", body))
    assert [h["id"] for h in hits][0] == 3 and len(hits) == 3
    err(post(port, "entities/advanced_search", {"collectionName": "adv"}), 1802)


def test_search_function_score_equals_grpc_ranker(api):
    from pymilvus import Function, FunctionType

    port, client, _ = api
    ok(post(port, "collections/create", {"collectionName": "scored", "schema": {"fields": [
        {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
        {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}},
        {"fieldName": "n", "dataType": "Int64"}]},
        "indexParams": [{"fieldName": "vector", "indexName": "vector", "metricType": "L2", "indexType": "FLAT"}]}))
    data = [{"id": i, "vector": [float(i % 5), 1.0, 0.0, 0.0], "n": i} for i in range(20)]
    ok(post(port, "entities/insert", {"collectionName": "scored", "data": data}))
    params = {"reranker": "decay", "function": "gauss", "origin": 10, "scale": 4, "offset": 0, "decay": 0.5}
    body = {"collectionName": "scored", "data": [[2.0, 1.0, 0.0, 0.0]], "annsField": "vector", "limit": 5,
            "consistencyLevel": "Strong", "outputFields": ["n"],
            "functionScore": {"functions": [{"name": "near_10", "type": "Rerank", "inputFieldNames": ["n"],
                                             "params": params}]}}
    hits = ok(post(port, "entities/search", body))
    plain = ok(post(port, "entities/search", {k: v for k, v in body.items() if k != "functionScore"}))
    ranker = Function(name="near_10", input_field_names=["n"], function_type=FunctionType.RERANK, params=params)
    grpc = client.search("scored", [[2.0, 1.0, 0.0, 0.0]], anns_field="vector", limit=5, output_fields=["n"],
                         ranker=ranker, consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == [h["id"] for h in grpc]
    assert [h["id"] for h in hits] != [h["id"] for h in plain]  # the decay moved hits near n = 10 up
    assert hits[0]["distance"] == pytest.approx(grpc[0]["distance"], rel=1e-5)
    # hybrid search takes it too
    hybrid = ok(post(port, "entities/hybrid_search", {
        "collectionName": "scored", "search": [{"data": [[2.0, 1.0, 0.0, 0.0]], "annsField": "vector",
                                                "limit": 5}],
        "rerank": {"strategy": "rrf", "params": {"k": 60}}, "limit": 5, "consistencyLevel": "Strong",
        "functionScore": body["functionScore"]}))
    assert len(hybrid) == 5
    # refusals
    err(post(port, "entities/search", {**body, "functionScore": {"functions": [{"name": "x", "type": "Nope"}]}}),
        1100, "Nope")
    err(post(port, "entities/search", {**body, "functionChains": [{"stage": "L2Rerank", "ops": []}]}), 1100,
        "functionChains")
    err(post(port, "entities/hybrid_search", {
        "collectionName": "scored", "search": [{"data": [[2.0, 1.0, 0.0, 0.0]], "annsField": "vector",
                                                "searchAggregation": {"fields": ["n"]}}]}), 1100,
        "searchAggregation is not supported for hybrid search")


def test_restore_from_another_database_needs_the_privilege_there(tmp_path):
    """snapshots/restore is authorized in the database it restores FROM (the request's sourceDbName), as the
    gRPC RestoreSnapshot is: a privilege in the call's own database does not open another database's snapshots."""
    settings = server_settings(tmp_path)
    settings.http.port = free_port()
    settings.security.authorization_enabled = True
    srv = Standalone(settings).start()
    port, root = settings.http.port, "root:Milvus"
    try:
        ok(post(port, "databases/create", {"dbName": "secret"}, token=root))
        ok(post(port, "collections/create", {"dbName": "secret", "collectionName": "c", "dimension": DIM},
                token=root))
        ok(post(port, "snapshots/create", {"dbName": "secret", "collectionName": "c", "snapshotName": "s"},
                token=root))
        ok(post(port, "roles/create", {"roleName": "restorer"}, token=root))
        ok(post(port, "roles/grant_privilege", {"roleName": "restorer", "objectType": "Collection",
                                                "objectName": "*", "privilege": "RestoreSnapshot"}, token=root))
        ok(post(port, "users/create", {"userName": "eve", "password": "evepass123"}, token=root))
        ok(post(port, "users/grant_role", {"userName": "eve", "roleName": "restorer"}, token=root))
        body = {"sourceDbName": "secret", "sourceCollectionName": "c", "snapshotName": "s",
                "targetCollectionName": "stolen"}
        status, reply = post(port, "snapshots/restore", body, token="eve:evepass123")
        assert status == 403 and reply["code"] == 1401, reply
        assert "stolen" not in ok(post(port, "collections/list", {}, token=root))
        # with the privilege in the source's database: a restore into that database; into another one (the
        # call's own, default) it needs the privilege on every database, as Milvus's proxy checks it (db "*")
        ok(post(port, "roles/grant_privilege", {"dbName": "secret", "roleName": "restorer", "objectType": "Collection",
                                                "objectName": "*", "privilege": "RestoreSnapshot"}, token=root))
        status, reply = post(port, "snapshots/restore", body, token="eve:evepass123")
        assert status == 403 and "in the `*` database" in reply["message"], reply
        assert ok(post(port, "snapshots/restore", {**body, "targetDbName": "secret"},
                       token="eve:evepass123"))["jobId"] > 0
        ok(post(port, "roles/grant_privilege", {"dbName": "*", "roleName": "restorer", "objectType": "Collection",
                                                "objectName": "*", "privilege": "RestoreSnapshot"}, token=root))
        assert ok(post(port, "snapshots/restore", body, token="eve:evepass123"))["jobId"] > 0
    finally:
        srv.stop()

"""Milvus's RESTful API v2 (vecdb.proxy.rest) on the HTTP port: every endpoint, answers equal to the
gRPC API's through pymilvus on the same data, Milvus's error codes, and authentication."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker

from tests.conftest import free_port, server_settings
from vecdb.standalone import Standalone

DIM = 4


def post(port: int, path: str, body: dict | bytes, token: str | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    settings = server_settings(tmp_path_factory.mktemp("rest"))
    settings.http.port = free_port()
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield settings.http.port, client
    client.close()
    srv.stop()


def ok(reply: tuple[int, dict]):
    status, body = reply
    assert status == 200 and body.get("code") == 0, body
    return body["data"]


def f32(row: dict) -> dict:
    """A row with its float vector as float32 (REST writes 0.3 where pymilvus gives 0.30000001192...)."""
    return {**row, "vector": np.float32(row["vector"]).tolist()}


def rows(n: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(start)
    return [{"id": start + i, "vector": rng.random(DIM).round(4).tolist(), "color": f"c{(start + i) % 3}",
             "n": start + i} for i in range(n)]


@pytest.fixture
def deployed(server, client):
    """The shared server of the e2e suite (standalone embedded, standalone remote, a cluster: through its
    first proxy's HTTP port) and a pymilvus client of it; the collection names are this test's own."""
    return server.http_ports[0], client


def test_quick_collection_round_trip_equals_grpc(deployed):
    port, client = deployed
    for name in ("quick", "quick2"):
        if client.has_collection(name):
            client.drop_collection(name)
    ok(post(port, "collections/create", {"collectionName": "quick", "dimension": DIM, "metricType": "L2"}))
    assert ok(post(port, "collections/has", {"collectionName": "quick"})) == {"has": True}
    assert "quick" in ok(post(port, "collections/list", {}))
    d = ok(post(port, "collections/describe", {"collectionName": "quick"}))
    assert d["collectionName"] == "quick" and d["load"] == "LoadStateLoaded" and d["enableDynamicField"]
    assert [f["name"] for f in d["fields"]] == ["id", "vector"] and d["fields"][0]["primaryKey"]
    assert d["fields"][1]["type"] == "FloatVector" and {"key": "dim", "value": str(DIM)} in d["fields"][1]["params"]
    assert d["indexes"] == [{"fieldName": "vector", "indexName": "vector", "metricType": "L2"}]

    data = rows(50)
    inserted = ok(post(port, "entities/insert", {"collectionName": "quick", "data": data}))
    assert inserted == {"insertCount": 50, "insertIds": list(range(50))}

    got = ok(post(port, "entities/query", {"collectionName": "quick", "filter": "n < 5", "outputFields": ["*"],
                                           "consistencyLevel": "Strong"}))
    want = client.query("quick", "n < 5", output_fields=["*"], consistency_level="Strong")
    assert sorted(map(f32, got), key=lambda r: r["id"]) == sorted(map(f32, want), key=lambda r: r["id"])
    assert {r["color"] for r in got} == {"c0", "c1", "c2"}  # dynamic keys come back as the row's own

    q = data[7]["vector"]
    hits = ok(post(port, "entities/search", {"collectionName": "quick", "data": [q], "limit": 5,
                                             "outputFields": ["color"], "consistencyLevel": "Strong"}))
    want = client.search("quick", [q], limit=5, output_fields=["color"], consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == [h["id"] for h in want] and hits[0]["id"] == 7
    assert np.allclose([h["distance"] for h in hits], [h["distance"] for h in want])
    assert [h["color"] for h in hits] == [h["entity"]["color"] for h in want]

    assert ok(post(port, "entities/get", {"collectionName": "quick", "id": [3, 4], "outputFields": ["n"]})) \
        == [{"id": 3, "n": 3}, {"id": 4, "n": 4}]
    assert ok(post(port, "entities/upsert", {"collectionName": "quick", "data": [{**data[3], "n": 333}]})) \
        == {"upsertCount": 1, "upsertIds": [3]}
    ok(post(port, "entities/delete", {"collectionName": "quick", "filter": "id in [4, 5]"}))
    ok(post(port, "entities/delete", {"collectionName": "quick", "id": 6}))
    left = ok(post(port, "entities/query", {"collectionName": "quick", "filter": "id in [3, 4, 5, 6]",
                                            "outputFields": ["n"], "consistencyLevel": "Strong"}))
    assert left == [{"id": 3, "n": 333}]
    assert ok(post(port, "collections/get_stats", {"collectionName": "quick"})) == {
        "rowCount": client.get_collection_stats("quick")["row_count"]}
    assert ok(post(port, "collections/get_load_state", {"collectionName": "quick"})) == {
        "loadState": "LoadStateLoaded", "loadProgress": 100}
    ok(post(port, "collections/release", {"collectionName": "quick"}))
    assert ok(post(port, "collections/get_load_state", {"collectionName": "quick"})) == {
        "loadState": "LoadStateNotLoad"}
    ok(post(port, "collections/load", {"collectionName": "quick"}))
    ok(post(port, "collections/rename", {"collectionName": "quick", "newCollectionName": "quick2"}))
    assert client.has_collection("quick2") and not client.has_collection("quick")
    ok(post(port, "collections/drop", {"collectionName": "quick2"}))
    assert not client.has_collection("quick2")


def test_template_values_search_by_ids_and_grouping_equal_grpc(deployed):
    """exprParams (the filter's template values), search by primary keys (ids) and groupSize /
    strictGroupSize, on search and hybrid search: the answers pymilvus gets for the same request."""
    port, client = deployed
    name = "rest_params"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("grp", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=index)
    data = rows(60)
    for r in data:
        r["grp"] = r["id"] % 4
    ok(post(port, "entities/insert", {"collectionName": name, "data": data}))
    params = {"low": 10, "colors": ["c0", "c2"], "f": 1.5, "yes": True}
    expr = "n >= {low} and color in {colors} and n * 1.0 > {f} and {yes}"
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": expr, "exprParams": params,
                                           "outputFields": ["n"], "limit": 100, "consistencyLevel": "Strong"}))
    want = client.query(name, expr, filter_params=params, output_fields=["n"], limit=100, consistency_level="Strong")
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in want) and len(got) == 33
    q = data[9]["vector"]
    body = {"collectionName": name, "data": [q], "limit": 3, "groupingField": "grp", "groupSize": 2,
            "strictGroupSize": True, "filter": "n > {low}", "exprParams": params, "consistencyLevel": "Strong"}
    hits = ok(post(port, "entities/search", body))
    want = client.search(name, [q], limit=3, group_by_field="grp", group_size=2, strict_group_size=True,
                         filter="n > {low}", filter_params=params, consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == [h["id"] for h in want] and len(hits) == 6
    by_ids = ok(post(port, "entities/search", {"collectionName": name, "ids": [9, 20], "limit": 4,
                                               "consistencyLevel": "Strong"}))
    want = client.search(name, ids=[9, 20], limit=4, consistency_level="Strong")
    assert [h["id"] for h in by_ids] == [h["id"] for hits in want for h in hits] and by_ids[0]["id"] == 9
    hybrid = ok(post(port, "entities/hybrid_search", {
        "collectionName": name, "search": [{"data": [q], "annsField": "vector", "limit": 3}], "limit": 2,
        "groupingField": "grp", "groupSize": 2, "consistencyLevel": "Strong"}))
    assert len(hybrid) == 4 and len({data[h["id"]]["grp"] for h in hybrid}) == 2
    status, bad = post(port, "entities/query", {"collectionName": name, "filter": "n > {low}",
                                                "exprParams": {"low": {"a": 1}}, "limit": 3})
    assert bad["code"] == 1100 and "neither a number" in bad["message"]
    ok(post(port, "collections/drop", {"collectionName": name}))


def test_schema_indexes_partitions_aliases_and_hybrid_search(rest):
    port, client = rest
    ok(post(port, "collections/create", {
        "collectionName": "full",
        "schema": {"autoId": False, "enableDynamicField": False, "fields": [
            {"fieldName": "pk", "dataType": "VarChar", "isPrimary": True, "elementTypeParams": {"max_length": 16}},
            {"fieldName": "a", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}},
            {"fieldName": "b", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}},
            {"fieldName": "tags", "dataType": "Array", "elementDataType": "Int64",
             "elementTypeParams": {"max_capacity": 4}},
            {"fieldName": "meta", "dataType": "JSON"}]},
        "indexParams": [{"fieldName": "a", "indexName": "ia", "metricType": "L2", "indexType": "HNSW",
                         "params": {"M": 8, "efConstruction": 64}},
                        {"fieldName": "b", "indexName": "ib", "metricType": "IP", "indexType": "FLAT"}]}))
    rng = np.random.default_rng(3)
    data = [{"pk": f"k{i}", "a": rng.random(DIM).tolist(), "b": rng.random(DIM).tolist(), "tags": [i, i + 1],
             "meta": {"i": i}} for i in range(40)]
    ok(post(port, "partitions/create", {"collectionName": "full", "partitionName": "p1"}))
    assert ok(post(port, "entities/insert", {"collectionName": "full", "data": data[:30]}))["insertIds"][0] == "k0"
    ok(post(port, "entities/insert", {"collectionName": "full", "data": data[30:], "partitionName": "p1"}))
    assert ok(post(port, "partitions/list", {"collectionName": "full"})) == ["_default", "p1"]
    assert ok(post(port, "partitions/has", {"collectionName": "full", "partitionName": "p1"})) == {"has": True}
    assert ok(post(port, "partitions/get_stats", {"collectionName": "full", "partitionName": "p1"})) == {
        "rowCount": 10}
    got = ok(post(port, "entities/query", {"collectionName": "full", "filter": "array_contains(tags, 31)",
                                           "outputFields": ["tags", "meta"], "consistencyLevel": "Strong"}))
    assert sorted(got, key=lambda r: r["pk"]) == [{"pk": "k30", "tags": [30, 31], "meta": {"i": 30}},
                                                  {"pk": "k31", "tags": [31, 32], "meta": {"i": 31}}]

    assert ok(post(port, "indexes/list", {"collectionName": "full"})) == ["ia", "ib"]
    desc = ok(post(port, "indexes/describe", {"collectionName": "full", "indexName": "ia"}))
    assert desc[0]["indexType"] == "HNSW" and desc[0]["metricType"] == "L2" and desc[0]["fieldName"] == "a"

    qa, qb = data[5]["a"], data[5]["b"]
    hits = ok(post(port, "entities/hybrid_search", {
        "collectionName": "full", "limit": 5, "outputFields": ["meta"], "consistencyLevel": "Strong",
        "search": [{"data": [qa], "annsField": "a", "limit": 10}, {"data": [qb], "annsField": "b", "limit": 10}],
        "rerank": {"strategy": "rrf", "params": {"k": 10}}}))
    want = client.hybrid_search("full", [AnnSearchRequest([qa], "a", {}, 10), AnnSearchRequest([qb], "b", {}, 10)],
                                RRFRanker(10), limit=5, output_fields=["meta"], consistency_level="Strong")[0]
    assert [h["pk"] for h in hits] == [h["pk"] for h in want]
    assert np.allclose([h["distance"] for h in hits], [h["distance"] for h in want])

    ok(post(port, "partitions/release", {"collectionName": "full", "partitionNames": ["p1"]}))
    ok(post(port, "partitions/load", {"collectionName": "full", "partitionNames": ["p1"]}))

    ok(post(port, "aliases/create", {"collectionName": "full", "aliasName": "al"}))
    assert ok(post(port, "aliases/list", {})) == ["al"]
    assert ok(post(port, "aliases/describe", {"aliasName": "al"})) == {
        "dbName": "default", "collectionName": "full", "aliasName": "al"}
    ok(post(port, "collections/create", {"collectionName": "other", "dimension": DIM}))
    ok(post(port, "aliases/alter", {"collectionName": "other", "aliasName": "al"}))
    assert ok(post(port, "aliases/describe", {"aliasName": "al"}))["collectionName"] == "other"
    ok(post(port, "aliases/drop", {"aliasName": "al"}))
    assert ok(post(port, "aliases/list", {})) == []

    ok(post(port, "collections/release", {"collectionName": "full"}))
    ok(post(port, "indexes/drop", {"collectionName": "full", "indexName": "ib"}))
    assert ok(post(port, "indexes/list", {"collectionName": "full"})) == ["ia"]
    ok(post(port, "indexes/create", {"collectionName": "full", "indexParams": [
        {"fieldName": "b", "indexName": "ib2", "metricType": "COSINE", "indexType": "FLAT"}]}))
    assert ok(post(port, "indexes/list", {"collectionName": "full"})) == ["ia", "ib2"]
    ok(post(port, "partitions/drop", {"collectionName": "full", "partitionName": "p1"}))

    ok(post(port, "databases/create", {"dbName": "restdb"}))
    assert "restdb" in ok(post(port, "databases/list", {}))
    ok(post(port, "collections/create", {"dbName": "restdb", "collectionName": "indb", "dimension": DIM}))
    assert ok(post(port, "collections/list", {"dbName": "restdb"})) == ["indb"]
    assert ok(post(port, "databases/describe", {"dbName": "restdb"}))["dbName"] == "restdb"
    ok(post(port, "collections/drop", {"dbName": "restdb", "collectionName": "indb"}))
    ok(post(port, "databases/drop", {"dbName": "restdb"}))
    assert "restdb" not in ok(post(port, "databases/list", {}))


def test_errors_carry_milvus_codes(rest):
    port, client = rest
    status, body = post(port, "collections/describe", {"collectionName": "missing"})
    assert status == 200 and body["code"] == 100 and "missing" in body["message"]
    status, body = post(port, "entities/query", b"{not json")
    assert status == 200 and body["code"] == 1801
    status, body = post(port, "collections/describe", {})
    assert status == 200 and body["code"] == 1802
    status, body = post(port, "nothing/here", {})
    assert status == 404
    ok(post(port, "collections/create", {"collectionName": "errs", "dimension": DIM}))
    status, body = post(port, "entities/insert", {"collectionName": "errs", "data": [{"id": 1}]})
    assert body["code"] == 1804 and "vector" in body["message"]
    status, body = post(port, "entities/insert", {"collectionName": "errs", "data": [{"id": 1, "vector": [0.0] * 3}]})
    assert body["code"] != 0 and client.query("errs", "id >= 0", output_fields=["count(*)"],
                                              consistency_level="Strong")[0]["count(*)"] == 0
    status, body = post(port, "entities/search", {"collectionName": "errs", "data": [[0.1] * DIM], "filter": "id >"})
    assert body["code"] == 1100


def test_authentication_and_privileges(tmp_path):
    settings = server_settings(tmp_path)
    settings.http.port = free_port()
    settings.security.authorization_enabled = True
    srv = Standalone(settings).start()
    port = settings.http.port
    try:
        status, body = post(port, "collections/list", {})
        assert status == 401 and body["code"] == 1800
        status, body = post(port, "collections/list", {}, token="root:wrong")
        assert status == 401 and body["code"] == 1800
        assert ok(post(port, "collections/list", {}, token="root:Milvus")) == []
        ok(post(port, "users/create", {"userName": "alice", "password": "alicepass1"}, token="root:Milvus"))
        assert "alice" in ok(post(port, "users/list", {}, token="root:Milvus"))
        status, body = post(port, "collections/create", {"collectionName": "nope", "dimension": DIM},
                            token="alice:alicepass1")
        assert status == 403 and body["code"] == 1401
        ok(post(port, "roles/create", {"roleName": "maker"}, token="root:Milvus"))
        ok(post(port, "roles/grant_privilege", {"roleName": "maker", "objectType": "Global", "objectName": "*",
                                                "privilege": "CreateCollection"}, token="root:Milvus"))
        ok(post(port, "users/grant_role", {"userName": "alice", "roleName": "maker"}, token="root:Milvus"))
        assert ok(post(port, "users/describe", {"userName": "alice"}, token="root:Milvus")) == ["maker"]
        assert any(g["privilege"] == "CreateCollection"
                   for g in ok(post(port, "roles/describe", {"roleName": "maker"}, token="root:Milvus")))
        # a schema without indexParams: no CreateIndex / Load, which alice may not do
        ok(post(port, "collections/create", {"collectionName": "yes", "schema": {"fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}}]}},
            token="alice:alicepass1"))
        status, body = post(port, "collections/create", {"collectionName": "quick", "dimension": DIM},
                            token="alice:alicepass1")  # quick setup creates an index too
        assert status == 403 and "CreateIndex" in body["message"]
        ok(post(port, "users/update_password", {"userName": "alice", "password": "alicepass1",
                                                "newPassword": "alicepass2"}, token="root:Milvus"))
        assert post(port, "collections/list", {}, token="alice:alicepass1")[0] == 401
        ok(post(port, "users/revoke_role", {"userName": "alice", "roleName": "maker"}, token="root:Milvus"))
        ok(post(port, "users/drop", {"userName": "alice"}, token="root:Milvus"))
        status, body = post(port, "roles/drop", {"roleName": "maker"}, token="root:Milvus")
        assert body["code"] == 1100 and "Use REVOKE API" in body["message"]  # it holds a grant (Milvus 2.4+)
        ok(post(port, "roles/revoke_privilege", {"roleName": "maker", "objectType": "Global", "objectName": "*",
                                                 "privilege": "CreateCollection"}, token="root:Milvus"))
        ok(post(port, "roles/drop", {"roleName": "maker"}, token="root:Milvus"))
    finally:
        srv.stop()


def test_the_readme_curl_example_runs(rest):
    import re
    import subprocess
    from pathlib import Path

    port, client = rest
    readme = Path(__file__).resolve().parents[2] / "README.md"
    block = re.search(r"<!-- rest-example -->\n```bash\n(.*?)```", readme.read_text(), re.S).group(1)
    expected = json.loads(block.strip().splitlines()[-1].lstrip("# "))
    out = subprocess.run(["bash", "-c", block.replace("127.0.0.1:9091", f"127.0.0.1:{port}")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    replies = [json.loads(line) for line in out.replace("}{", "}\n{").splitlines() if line.strip()]
    assert [r["code"] for r in replies] == [0, 0, 0], replies
    assert replies[-1] == expected
    assert client.get("rest_docs", ids=[2])[0]["tag"] == "b"


def test_the_openapi_document_lists_every_endpoint_and_is_current():
    from pathlib import Path

    from vecdb.proxy.rest import ENDPOINTS, PARAMETERS, openapi

    doc = openapi()
    routes = {f"{c}/{a}" for c, actions in ENDPOINTS.items() for a in actions}
    assert set(PARAMETERS) == routes
    assert {p.removeprefix("/v2/vectordb/") for p in doc["paths"]} == routes
    committed = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "rest-v2.json"
    assert json.loads(committed.read_text()) == doc, "run: python -m vecdb.proxy.rest > docs/openapi/rest-v2.json"

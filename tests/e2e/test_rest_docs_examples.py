"""Milvus's REST v2 examples as milvus.io's reference and user guides write them, run unchanged
(vecdb.proxy.rest): search and hybrid_search answer Milvus's ``cost`` and ``topks`` (the hits of each query
vector, so several query vectors' hits can be told apart), insert, upsert, query and get its ``cost``; a
hybrid search's sub-search takes its search parameters as Milvus's ``params`` object (``{"params":
{"radius": ...}}`` nested, or one layer), a search's ``searchParams`` one layer too (Milvus 2.5.2+); the
fields of collections/describe carry Milvus's ``id`` and ``nullable``."""

from __future__ import annotations

import pytest

from tests.e2e.test_rest_headers import error, ok, post

Q = [0.1, 0.9, 0.5]


@pytest.fixture
def port(server):
    return server.http_ports[0]


def _collection(port: int, name: str) -> None:
    """The "Hybrid Search" guide's shape: a dense and a sparse vector field, indexed in collections/create."""
    if name in ok(post(port, "collections/list", {})):
        ok(post(port, "collections/drop", {"collectionName": name}))
    ok(post(port, "collections/create", {"collectionName": name, "schema": {
        "autoId": False, "enabledDynamicField": False, "fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "color", "dataType": "VarChar", "elementTypeParams": {"max_length": 32}},
            {"fieldName": "dense", "dataType": "FloatVector", "elementTypeParams": {"dim": "3"}},
            {"fieldName": "sparse", "dataType": "SparseFloatVector"},
            {"fieldName": "age", "dataType": "Int32", "nullable": True}]},
        "indexParams": [{"fieldName": "dense", "indexName": "dense_index", "metricType": "IP"},
                        {"fieldName": "sparse", "indexName": "sparse_index", "metricType": "IP",
                         "indexType": "SPARSE_INVERTED_INDEX", "params": {"drop_ratio_build": 0.2}}]}))
    rows = [{"id": i, "color": ["red", "blue", "green"][i % 3], "dense": [i * 0.1, 1 - i * 0.1, 0.5],
             "sparse": {str(i): 0.5 + i, "100": 1.0}} for i in range(9)]
    status, body = post(port, "entities/insert", {"collectionName": name, "data": rows})
    assert status == 200 and body == {"code": 0, "cost": 0, "data": {"insertCount": 9, "insertIds": list(range(9))}}
    ok(post(port, "collections/flush", {"collectionName": name}))


def test_search_answers_cost_and_topks(port):
    _collection(port, "docs_topks")
    base = {"collectionName": "docs_topks", "annsField": "dense", "consistencyLevel": "Strong"}
    status, body = post(port, "entities/search", {**base, "data": [Q, [0.8, 0.2, 0.5]], "limit": 2,
                                                  "outputFields": ["color"]})
    assert status == 200 and body["code"] == 0 and body["cost"] == 0 and body["topks"] == [2, 2], body
    assert [h["id"] for h in body["data"]] == [0, 1, 8, 7]  # query 0's hits, then query 1's
    # a filter that leaves one query fewer hits: topks tells where the next query's hits begin
    status, body = post(port, "entities/search", {**base, "data": [Q, [0.8, 0.2, 0.5]], "limit": 3,
                                                  "filter": "id in [0, 8]"})
    assert body["topks"] == [2, 2] and [h["id"] for h in body["data"]] == [0, 8, 8, 0], body
    # grouped: every hit of the groups is counted
    status, body = post(port, "entities/search", {**base, "data": [Q], "limit": 2, "groupingField": "color",
                                                  "groupSize": 2, "strictGroupSize": True})
    assert body["topks"] == [4] and len(body["data"]) == 4, body
    # no hit at all: data [] and no topks (Milvus's answer to a result of top-k 0)
    status, body = post(port, "entities/search", {**base, "data": [Q], "filter": "color == \"none\""})
    assert status == 200 and body == {"code": 0, "cost": 0, "data": []}
    status, body = post(port, "entities/hybrid_search", {
        "collectionName": "docs_topks", "consistencyLevel": "Strong", "limit": 2, "search": [
            {"data": [Q, [0.2, 0.8, 0.5]], "annsField": "dense", "limit": 2},
            {"data": [{"1": 0.3}, {"2": 0.3}], "annsField": "sparse", "limit": 2}],
        "rerank": {"strategy": "weighted", "params": {"weights": [0.8, 0.2]}}})
    assert body["code"] == 0 and body["cost"] == 0 and body["topks"] == [2, 2] and len(body["data"]) == 4, body
    for path, req in (("entities/query", {"filter": "id < 2"}), ("entities/get", {"id": [1]})):
        status, body = post(port, path, {"collectionName": "docs_topks", "consistencyLevel": "Strong", **req})
        assert body["code"] == 0 and body["cost"] == 0 and "topks" not in body, body
    status, body = post(port, "entities/upsert", {"collectionName": "docs_topks", "data": [
        {"id": 1, "color": "blue", "dense": [0.1, 0.9, 0.5], "sparse": {"1": 1.5, "100": 1.0}}]})
    assert body == {"code": 0, "cost": 0, "data": {"upsertCount": 1, "upsertIds": [1]}}
    status, body = post(port, "entities/delete", {"collectionName": "docs_topks", "filter": "id == 8"})
    assert body == {"code": 0, "data": {"deleteCount": 1}}  # (Milvus's delete answers no cost)


def test_hybrid_sub_search_params_as_milvus_reads_them(port):
    _collection(port, "docs_params")
    in_range = [0, 1, 2]  # IP scores 1.15, 1.07, 0.99: the only ones in [0.95, 2.0]
    for params in ({"params": {"radius": 0.95, "range_filter": 2.0}}, {"radius": 0.95, "range_filter": 2.0},
                   {"metricType": "IP", "params": {"radius": 0.95}, "range_filter": 2.0}):
        status, body = post(port, "entities/hybrid_search", {
            "collectionName": "docs_params", "consistencyLevel": "Strong", "limit": 5,
            "search": [{"data": [Q], "annsField": "dense", "params": params, "limit": 5}],
            "rerank": {"strategy": "rrf", "params": {"k": 10}}})
        assert body["code"] == 0 and sorted(h["id"] for h in body["data"]) == in_range, (params, body)
    base = {"collectionName": "docs_params", "data": [Q], "annsField": "dense", "limit": 5,
            "consistencyLevel": "Strong"}
    for sp in ({"params": {"radius": 0.95, "range_filter": 2.0}}, {"radius": 0.95, "range_filter": 2.0},
               {"metricType": "IP", "radius": 0.95, "params": {"range_filter": 2.0}}):
        hits = ok(post(port, "entities/search", {**base, "searchParams": sp}))
        assert sorted(h["id"] for h in hits) == in_range, (sp, hits)
    # the sub-search's params.metricType is read (a metric the index has not: Milvus's refusal)
    code, message = error(post(port, "entities/hybrid_search", {
        "collectionName": "docs_params", "limit": 5, "rerank": {"strategy": "rrf", "params": {"k": 10}},
        "search": [{"data": [Q], "annsField": "dense", "params": {"metricType": "L2"}, "limit": 5}]}))
    assert code == 1100 and "metric type not match" in message, message
    # ignoreGrowing (one layer): the sealed segments only
    ok(post(port, "entities/insert", {"collectionName": "docs_params", "data": [
        {"id": 100, "color": "red", "dense": Q, "sparse": {"1": 1.0}}]}))
    hits = ok(post(port, "entities/search", {**base, "searchParams": {"ignoreGrowing": True}}))
    assert 100 not in [h["id"] for h in hits] and len(hits) == 5, hits
    hits = ok(post(port, "entities/search", {**base, "searchParams": {"ignoreGrowing": False}}))
    assert 100 in [h["id"] for h in hits], hits
    code, message = error(post(port, "entities/search", {**base, "searchParams": {"ef": 10, "params": {"ef": 20}}}))
    assert (code, message) == (1100, "ambiguous parameter: ef, in search_param: 10, in search_param.params: 20")
    code, message = error(post(port, "entities/search", {**base, "searchParams": {"params": "x"}}))
    assert (code, message) == (1100, "searchParams.params must be a dict")


def test_describe_fields_carry_id_and_nullable(port):
    _collection(port, "docs_describe")
    d = ok(post(port, "collections/describe", {"collectionName": "docs_describe"}))
    fields = {f["name"]: f for f in d["fields"]}
    assert [(f["id"], f["nullable"]) for f in d["fields"]] == [
        (100, False), (101, False), (102, False), (103, False), (104, True)]
    assert fields["dense"]["type"] == "FloatVector" and "isFunctionOutput" not in fields["dense"]

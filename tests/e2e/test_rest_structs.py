"""Array-of-struct fields (Milvus 2.6) over the REST API v2 on every deployment: a collection made
with Milvus's REST schema (``structArrayFields``), rows whose struct field is a list of objects,
query answers shaped as pymilvus's, EmbeddingList (MAX_SIM) search against a numpy reference and
against pymilvus over the same collection, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType
from pymilvus.client.embedding_list import EmbeddingList

from tests.e2e.test_rest import ok, post
from tests.e2e.test_struct_arrays import CAP, DIM, assert_same_structs, make, reference, rows


def rest_schema(capacity=CAP, emb: dict | None = None) -> dict:
    """The test_struct_arrays schema in Milvus's REST shape (its "Array of Structs" page)."""
    return {"autoID": False, "enableDynamicField": False, "fields": [
        {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
        {"fieldName": "vec", "dataType": "FloatVector", "elementTypeParams": {"dim": str(DIM)}}],
        "structArrayFields": [{"name": "chunks", "description": "clips",
                               "elementTypeParams": {"max_capacity": capacity},
                               "fields": [{"fieldName": "text", "dataType": "VarChar",
                                           "elementTypeParams": {"max_length": "64"}},
                                          {"fieldName": "score", "dataType": "Float"},
                                          {"fieldName": "emb", "dataType": "FloatVector",
                                           "elementTypeParams": {"dim": str(DIM)}, **(emb or {})}]}]}


INDEXES = [{"fieldName": "vec", "indexName": "vec", "metricType": "L2", "indexType": "FLAT"},
           {"fieldName": "chunks[emb]", "indexName": "chunks_emb", "metricType": "MAX_SIM_IP", "indexType": "HNSW",
            "params": {"M": 16, "efConstruction": 64}}]


def embedding_list(q: np.ndarray) -> EmbeddingList:
    el = EmbeddingList()
    for v in q:
        el.add(v)
    return el


def test_rest_struct_fields_create_insert_query_search(server, client, name):
    port = server.http_ports[0]
    ok(post(port, "collections/create", {"collectionName": name, "schema": rest_schema(), "indexParams": INDEXES}))
    desc = ok(post(port, "collections/describe", {"collectionName": name}))
    assert desc["load"] == "LoadStateLoaded"  # every vector field indexed, the struct's too: loaded
    (st,) = desc["structArrayFields"]
    assert st["name"] == "chunks" and st["elementTypeParams"]["max_capacity"] == str(CAP)
    assert [(f["name"], f["type"]) for f in st["fields"]] == [("text", "VarChar"), ("score", "Float"),
                                                             ("emb", "FloatVector")]
    grpc_desc = next(f for f in client.describe_collection(name)["fields"] if f["name"] == "chunks")
    assert grpc_desc["element_type"] == DataType.STRUCT and int(grpc_desc["params"]["max_capacity"]) == CAP

    data = rows(0, 30)
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": data[:20]}))["insertCount"] == 20
    ok(post(port, "collections/flush", {"collectionName": name}))  # a sealed segment and a growing one
    client.insert(name, data[20:])  # pymilvus and REST write the same field
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": "id in [3, 25]",
                                           "outputFields": ["chunks"], "consistencyLevel": "Strong"}))
    want = {r["id"]: r for r in client.query(name, filter="id in [3, 25]", output_fields=["chunks"],
                                             consistency_level="Strong")}  # (REST may have gone to another proxy)
    assert sorted(r["id"] for r in got) == [3, 25]
    for r in got:  # the shape pymilvus's query gives: a list of {sub-field: value}
        assert [set(c) for c in r["chunks"]] == [set(c) for c in want[r["id"]]["chunks"]]
        assert_same_structs(r["chunks"], data[r["id"]]["chunks"])
    star = ok(post(port, "entities/get", {"collectionName": name, "id": [7], "outputFields": ["*"]}))
    assert_same_structs(star[0]["chunks"], data[7]["chunks"])

    rng = np.random.default_rng(11)
    queries = [rng.standard_normal((m, DIM)).astype(np.float32) for m in (1, 3)]
    hits = ok(post(port, "entities/search", {
        "collectionName": name, "data": [q.tolist() for q in queries], "annsField": "chunks[emb]", "limit": 4,
        "searchParams": {"metric_type": "MAX_SIM_IP"}, "outputFields": ["chunks[text]"],
        "consistencyLevel": "Strong"}))
    grpc = client.search(name, data=[embedding_list(q) for q in queries], anns_field="chunks[emb]", limit=4,
                         search_params={"metric_type": "MAX_SIM_IP"}, output_fields=["chunks[text]"],
                         consistency_level="Strong")
    assert len(hits) == 8  # the hits of each embedding list in turn
    for i, q in enumerate(queries):
        ids, scores = reference(data, q, "MAX_SIM_IP", 4)
        page = hits[4 * i:4 * i + 4]
        assert [h["id"] for h in page] == ids == [h["id"] for h in grpc[i]]
        np.testing.assert_allclose([h["distance"] for h in page], scores, rtol=1e-4, atol=1e-4)
        for h, g in zip(page, grpc[i]):
            assert h["chunks"] == g["entity"]["chunks"] == [{"text": c["text"]} for c in data[h["id"]]["chunks"]]
    one = ok(post(port, "entities/search", {  # one embedding list sent bare (a list of vectors); chunks.emb
        "collectionName": name, "data": queries[1].tolist(), "annsField": "chunks.emb", "limit": 4,
        "searchParams": {"metricType": "MAX_SIM_IP"}, "filter": "id >= 10"}))
    assert [h["id"] for h in one] == reference([r for r in data if r["id"] >= 10], queries[1], "MAX_SIM_IP", 4)[0]

    new = rows(100, 1)[0] | {"id": 3}
    assert ok(post(port, "entities/upsert", {"collectionName": name, "data": [new]}))["upsertCount"] == 1
    got = ok(post(port, "entities/get", {"collectionName": name, "id": 3, "outputFields": ["chunks"],
                                         "consistencyLevel": "Strong"}))
    assert_same_structs(got[0]["chunks"], new["chunks"])
    mine = client.get(name, ids=[3], output_fields=["chunks"], consistency_level="Strong")
    assert_same_structs(mine[0]["chunks"], new["chunks"])


def test_rest_insert_into_a_pymilvus_struct_collection(server, client):
    port = server.http_ports[0]
    name = make(client, "MAX_SIM_COSINE")
    data = rows(0, 12, seed=5) + [{"id": 12, "vec": [0.5] * DIM, "chunks": []}]  # no struct: never matches
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": data}))["insertIds"] == list(range(13))
    q = np.asarray([data[4]["chunks"][0]["emb"]], np.float32)
    hits = client.search(name, data=[embedding_list(q)], anns_field="chunks[emb]", limit=13,
                         search_params={"metric_type": "MAX_SIM_COSINE"}, consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == reference(data[:12], q, "MAX_SIM_COSINE", 13)[0]
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": "id == 12", "outputFields": ["chunks"],
                                           "consistencyLevel": "Strong"}))
    assert got == [{"id": 12, "chunks": []}]
    client.drop_collection(name)


def test_rest_struct_refusals(server, name):
    port = server.http_ports[0]

    def create(schema: dict) -> dict:
        return post(port, "collections/create", {"collectionName": name, "schema": schema})[1]

    body = create(rest_schema(emb={"defaultValue": 1}))
    assert body["code"] == 1100 and "default value is not supported for struct field" in body["message"]
    body = create(rest_schema(emb={"nullable": True}))
    assert body["code"] == 1100 and "cannot be nullable" in body["message"]
    schema = rest_schema()
    del schema["structArrayFields"][0]["elementTypeParams"]
    body = create(schema)
    assert body["code"] == 1100 and "max_capacity" in body["message"]
    ok(post(port, "collections/create", {"collectionName": name, "schema": rest_schema(), "indexParams": INDEXES}))

    def insert(chunks) -> dict:
        return post(port, "entities/insert", {"collectionName": name, "data": [
            {"id": 1, "vec": [0.1] * DIM, "chunks": chunks}]})[1]

    good = {"text": "a", "score": 1.0, "emb": [0.1] * DIM}
    for bad, words in (({"text": "a", "score": 1.0}, "missing sub-field emb"),
                       ({**good, "emb": [0.1] * (DIM - 1)}, "dim mismatch"),
                       ({**good, "emb": ["x"] * DIM}, "list of numbers")):
        body = insert([good, bad])
        assert body["code"] == 1804 and words in body["message"], body
    body = insert({"text": "a"})
    assert body["code"] == 1804 and "JSON array of objects" in body["message"]
    body = insert([good] * (CAP + 1))
    assert body["code"] == 1100 and "exceeds max capacity" in body["message"]
    body = post(port, "entities/insert", {"collectionName": name, "data": [{"id": 1, "vec": [0.1] * DIM}]})[1]
    assert body["code"] == 1804 and "chunks" in body["message"]
    ok(post(port, "entities/insert", {"collectionName": name, "data": [{"id": 1, "vec": [0.1] * DIM,
                                                                        "chunks": [good]}]}))

    def search(data, metric="MAX_SIM_IP") -> dict:
        return post(port, "entities/search", {"collectionName": name, "data": data, "annsField": "chunks[emb]",
                                              "limit": 3, "searchParams": {"metricType": metric}})[1]

    for bad in ([[]], [[[0.1] * (DIM - 1)]]):
        body = search(bad)
        assert body["code"] == 1100 and "embedding list" in body["message"], body
    body = search([[[0.1] * DIM]], metric="L2")
    assert body["code"] == 1100 and "MAX_SIM" in body["message"]


@pytest.mark.parametrize("key", ["structFields"])
def test_rest_struct_fields_other_schema_key(server, name, key):
    """``schema.structFields``: the key Milvus's newer REST handler reads, taken as structArrayFields."""
    port = server.http_ports[0]
    schema = rest_schema()
    schema[key] = schema.pop("structArrayFields")
    ok(post(port, "collections/create", {"collectionName": name, "schema": schema, "indexParams": INDEXES}))
    desc = ok(post(port, "collections/describe", {"collectionName": name}))
    assert [f["name"] for f in desc["structArrayFields"][0]["fields"]] == ["text", "score", "emb"]

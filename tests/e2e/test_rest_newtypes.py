"""The REST API v2 with INT8_VECTOR and TIMESTAMPTZ fields (Milvus 2.6) on every deployment: a
collection made over REST, rows inserted as JSON (int8 lists, ISO strings), search and query answers
equal to pymilvus's over the same collection."""

from __future__ import annotations

import numpy as np

from tests.e2e.test_rest import ok, post

DIM = 8


def test_rest_int8_vector_and_timestamptz_equal_grpc(server, client, name):
    port = server.http_ports[0]
    ok(post(port, "collections/create", {
        "collectionName": name,
        "schema": {"autoId": False, "enableDynamicField": False, "fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "v", "dataType": "Int8Vector", "elementTypeParams": {"dim": DIM}},
            {"fieldName": "tsz", "dataType": "Timestamptz", "nullable": True}]},
        "indexParams": [{"fieldName": "v", "indexName": "iv", "metricType": "L2", "indexType": "HNSW",
                         "params": {"M": 8, "efConstruction": 64}}]}))
    rng = np.random.default_rng(4)
    vecs = rng.integers(-128, 128, (30, DIM)).astype(np.int8)
    data = [{"id": i, "v": vecs[i].tolist(), "tsz": None if i % 7 == 0 else f"2025-03-{1 + i % 28:02d}T12:00:00+02:00"}
            for i in range(30)]
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": data}))["insertCount"] == 30
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": "tsz > ISO '2025-03-20T00:00:00Z'",
                                           "outputFields": ["v", "tsz"], "consistencyLevel": "Strong"}))
    want = client.query(name, filter="tsz > ISO '2025-03-20T00:00:00Z'", output_fields=["tsz"])
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in want) == [
        i for i in range(30) if i % 7 and 1 + i % 28 >= 20]
    for r in got:
        assert r["v"] == vecs[r["id"]].tolist() and r["tsz"] == f"2025-03-{1 + r['id'] % 28:02d}T10:00:00Z"
    hits = ok(post(port, "entities/search", {"collectionName": name, "data": [vecs[3].tolist()], "limit": 5,
                                             "annsField": "v", "outputFields": ["tsz"],
                                             "searchParams": {"params": {"ef": 64}}}))
    grpc = client.search(name, [vecs[3]], limit=5, anns_field="v", search_params={"params": {"ef": 64}},
                         output_fields=["tsz"])[0]
    assert [h["id"] for h in hits] == [h["id"] for h in grpc] and hits[0]["id"] == 3
    assert [h["tsz"] for h in hits] == [h["entity"]["tsz"] for h in grpc]
    status, body = post(port, "entities/insert", {"collectionName": name, "data": [{"id": 99, "v": [300] * DIM}]})
    assert body["code"] == 1100 and "int8 vector" in body["message"]

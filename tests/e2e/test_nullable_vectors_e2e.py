"""Nullable vector fields (Milvus 3.0) through pymilvus 3.0.2, on every deployment: a required and a
nullable FLOAT_VECTOR (and a nullable SPARSE and BINARY vector) with None vectors at insert and
upsert; a search on a nullable field never returns a null row (growing and sealed, indexed or
not); query returns None for them; hybrid search over both fields; add_collection_field of a
nullable vector to a collection with data; the refusals (a non-nullable added vector, a default
value on a vector, ``is null`` on a vector field, a load without an index on the added field).
"""

from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, RRFRanker

N = 200
DIM = 4


def _vec(i: int) -> list[float]:
    return [float(i % 7) + 1.0, float(i % 5), float(i % 3), 1.0]


def _null(i: int) -> bool:
    return i % 3 == 0


def _schema():
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("nv", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    s.add_field("sp", DataType.SPARSE_FLOAT_VECTOR, nullable=True)
    s.add_field("bv", DataType.BINARY_VECTOR, dim=16, nullable=True)
    s.add_field("tag", DataType.INT64)
    return s


def _rows(lo: int, hi: int) -> list[dict]:
    out = []
    for i in range(lo, hi):
        r: dict = {"id": i, "v": _vec(i), "tag": i % 4}
        if _null(i):
            r["nv"] = None  # (explicit None on even rows, left out on odd ones)
            if i % 2:
                del r["nv"]
            r["sp"] = None
            r["bv"] = None
        else:
            r["nv"] = _vec(i + 1)
            r["sp"] = {i % 11: 1.0 + i % 4, 20 + i % 3: 0.5}
            r["bv"] = bytes([i % 256, (i * 7) % 256])
        out.append(r)
    return out


def _create(client, name, index_type="HNSW"):
    client.create_collection(name, schema=_schema())
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    params = {"M": 8, "efConstruction": 64} if index_type == "HNSW" else {}
    idx.add_index(field_name="nv", index_type=index_type, metric_type="COSINE", params=params)
    idx.add_index(field_name="sp", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    idx.add_index(field_name="bv", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_index(name, idx)
    client.load_collection(name)


def _ids(hits) -> list[int]:
    return [h["id"] for h in hits]


def _check_search(client, name, n):
    valid = {i for i in range(n) if not _null(i)}
    res = client.search(name, data=[_vec(1)], anns_field="nv", limit=n, output_fields=["nv", "tag"],
                        consistency_level="Strong")
    got = _ids(res[0])
    assert set(got) == valid and len(got) == len(valid)
    for h in res[0]:
        assert np.allclose(h["entity"]["nv"], _vec(h["id"] + 1))
    res = client.search(name, data=[{3: 1.0, 21: 1.0}], anns_field="sp", limit=n, consistency_level="Strong")
    assert set(_ids(res[0])) <= valid and res[0]
    res = client.search(name, data=[bytes([1, 7])], anns_field="bv", limit=n, consistency_level="Strong",
                        search_params={"metric_type": "HAMMING"})
    assert set(_ids(res[0])) == valid
    # search by primary keys: a row with a vector is a query; one whose vector is null is refused
    first_valid, first_null = min(valid), next(i for i in range(n) if _null(i))
    assert _ids(client.search(name, ids=[first_valid], anns_field="nv", limit=1, consistency_level="Strong")[0]) \
        == [first_valid]
    with pytest.raises(MilvusException, match="is null"):
        client.search(name, ids=[first_null], anns_field="nv", limit=1, consistency_level="Strong")
    # the required field still finds every row
    res = client.search(name, data=[_vec(1)], anns_field="v", limit=n, output_fields=["nv", "sp", "bv"],
                        consistency_level="Strong")
    assert len(res[0]) == n
    for h in res[0]:
        e = h["entity"]
        if _null(h["id"]):
            assert e["nv"] is None and e["sp"] is None and e["bv"] is None
        else:
            assert np.allclose(e["nv"], _vec(h["id"] + 1))
            assert e["bv"] == [bytes([h["id"] % 256, (h["id"] * 7) % 256])] or \
                e["bv"] == bytes([h["id"] % 256, (h["id"] * 7) % 256])
            assert e["sp"] is not None


def _check_query(client, name, n):
    rows = client.query(name, filter="id >= 0", output_fields=["nv", "sp", "bv"], limit=n,
                        consistency_level="Strong")
    assert len(rows) == n
    for r in sorted(rows, key=lambda r: r["id"]):
        if _null(r["id"]):
            assert r["nv"] is None and r["sp"] is None and r["bv"] is None, r
        else:
            assert np.allclose(r["nv"], _vec(r["id"] + 1))
            assert r["sp"] is not None and r["bv"] is not None


@pytest.mark.parametrize("index_type", ["HNSW", "FLAT"])
def test_nullable_vectors_growing_and_sealed(client, name, index_type):
    _create(client, name, index_type)
    client.insert(name, _rows(0, N // 2))
    _check_search(client, name, N // 2)
    _check_query(client, name, N // 2)
    client.flush(name)
    client.insert(name, _rows(N // 2, N))  # sealed and growing together
    _check_search(client, name, N)
    _check_query(client, name, N)
    client.release_collection(name)
    client.load_collection(name)
    _check_search(client, name, N)
    _check_query(client, name, N)


def test_nullable_vector_column_insert(client, name):
    """pymilvus's column-based insert (a Collection-style list of columns) sends the same compact
    payload; every row null sends no vectors at all."""
    _create(client, name, "FLAT")
    rows = [{"id": i, "v": _vec(i), "tag": 0, "nv": None, "sp": None, "bv": None} for i in range(5)]
    client.insert(name, rows)
    res = client.search(name, data=[_vec(1)], anns_field="nv", limit=10, consistency_level="Strong")
    assert len(res[0]) == 0
    got = client.query(name, filter="id < 5", output_fields=["nv", "sp", "bv"], consistency_level="Strong")
    assert len(got) == 5 and all(r["nv"] is None and r["sp"] is None and r["bv"] is None for r in got)


def test_nullable_vector_upsert_to_value_and_back(client, name):
    _create(client, name)
    client.insert(name, _rows(0, 30))
    client.upsert(name, [{"id": 3, "v": _vec(3), "tag": 0, "nv": [9.0, 9.0, 9.0, 9.0], "sp": {1: 2.0},
                          "bv": bytes([255, 255])}])
    r = client.get(name, ids=[3], output_fields=["nv", "sp", "bv"])
    assert np.allclose(r[0]["nv"], [9.0] * 4) and r[0]["sp"] is not None
    res = client.search(name, data=[[9.0, 9.0, 9.0, 9.0]], anns_field="nv", limit=1, consistency_level="Strong")
    assert _ids(res[0]) == [3]
    client.upsert(name, [{"id": 3, "v": _vec(3), "tag": 0, "nv": None, "sp": None, "bv": None}])
    r = client.get(name, ids=[3], output_fields=["nv", "sp", "bv"])
    assert r[0]["nv"] is None and r[0]["sp"] is None and r[0]["bv"] is None
    client.flush(name)
    res = client.search(name, data=[[9.0, 9.0, 9.0, 9.0]], anns_field="nv", limit=30, consistency_level="Strong")
    assert 3 not in _ids(res[0])
    # a partial upsert that leaves the nullable vector out keeps it
    client.upsert(name, [{"id": 4, "tag": 7}], partial_update=True)
    r = client.get(name, ids=[4], output_fields=["nv", "tag"])
    assert r[0]["tag"] == 7 and np.allclose(r[0]["nv"], _vec(5))


def test_nullable_vector_hybrid_search(client, name):
    _create(client, name)
    client.insert(name, _rows(0, 60))
    reqs = [AnnSearchRequest([_vec(2)], "v", {"metric_type": "L2"}, limit=60),
            AnnSearchRequest([_vec(2)], "nv", {"metric_type": "COSINE"}, limit=60)]
    res = client.hybrid_search(name, reqs, RRFRanker(), limit=60, output_fields=["nv"])
    assert len(res[0]) == 60  # every row through "v"; the null ones only through it
    for h in res[0]:
        assert (h["entity"]["nv"] is None) == _null(h["id"])
    only_nv = client.hybrid_search(name, reqs[1:], RRFRanker(), limit=60)
    assert set(_ids(only_nv[0])) == {i for i in range(60) if not _null(i)}


@pytest.mark.parametrize("loaded", [True, False])
def test_add_nullable_vector_field(client, name, loaded):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(name, schema=s)
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": i, "v": _vec(i)} for i in range(1100, 2300)])  # (a sealed segment big
    client.insert(name, [{"id": i, "v": _vec(i)} for i in range(20)])  # enough for an index of its own)
    client.flush(name)
    client.insert(name, [{"id": i, "v": _vec(i)} for i in range(20, 30)])  # growing
    if not loaded:
        client.release_collection(name)
    with pytest.raises(MilvusException, match="nullable"):  # (pymilvus 3.0.2 refuses it first)
        client.add_collection_field(name, "bad", DataType.FLOAT_VECTOR, dim=DIM)
    client.add_collection_field(name, "nv", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert fields["nv"].get("nullable") is True and fields["nv"]["params"]["dim"] == DIM
    if not loaded:
        with pytest.raises(MilvusException, match="there is no vector index on field"):
            client.load_collection(name)
    idx = client.prepare_index_params()
    idx.add_index(field_name="nv", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 32})
    client.create_index(name, idx)
    if loaded:
        client.release_collection(name)
    for _ in range(100):  # the sealed segment's index over its null rows (read as placeholders)
        d = client.describe_index(name, "nv")
        if d.get("state") == "Finished" and d.get("indexed_rows") == d.get("total_rows"):
            break
        time.sleep(0.1)
    assert d.get("state") == "Finished", d
    client.load_collection(name)
    res = client.search(name, data=[_vec(1)], anns_field="nv", limit=50, consistency_level="Strong")
    assert len(res[0]) == 0  # the rows before it are null: never returned
    assert client.query(name, filter="", output_fields=["count(*)"],
                        consistency_level="Strong")[0]["count(*)"] == 1230
    client.insert(name, [{"id": i, "v": _vec(i), "nv": _vec(i)} for i in range(30, 40)]
                  + [{"id": 40, "v": _vec(40)}])
    res = client.search(name, data=[_vec(31)], anns_field="nv", limit=50, consistency_level="Strong",
                        output_fields=["nv"])
    assert set(_ids(res[0])) == set(range(30, 40))
    client.flush(name)
    res = client.search(name, data=[_vec(31)], anns_field="nv", limit=50, consistency_level="Strong")
    assert set(_ids(res[0])) == set(range(30, 40))
    rows = client.query(name, filter="id in [1, 25, 33, 40]", output_fields=["nv"], consistency_level="Strong")
    got = {r["id"]: r["nv"] for r in rows}
    assert got[1] is None and got[25] is None and got[40] is None and np.allclose(got[33], _vec(33))


def test_nullable_vector_refusals(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    client.create_collection(name, schema=s)  # the only vector may be nullable (Milvus 3.0)
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": 1, "v": None}, {"id": 2, "v": _vec(2)}])
    with pytest.raises(MilvusException, match="not supported on vector fields"):
        client.query(name, filter="v is null")
    with pytest.raises(MilvusException, match="not supported on vector fields"):
        client.query(name, filter="v is not null")
    assert _ids(client.search(name, data=[_vec(2)], anns_field="v", limit=5, consistency_level="Strong")[0]) == [2]
    with pytest.raises(MilvusException, match="primary field not support null"):
        bad = MilvusClient.create_schema()
        bad.add_field("id", DataType.INT64, is_primary=True, nullable=True)
        bad.add_field("v", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
        client.create_collection(name + "_pk", schema=bad)


def test_null_for_required_vector_refused(client, name):
    _create(client, name, "FLAT")
    with pytest.raises(MilvusException):
        client.insert(name, [{"id": 1, "v": None, "tag": 0}])


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_rest_nullable_vector(server, client, name):
    """The RESTful API: null and left-out vectors at insert, JSON null back, a search that skips them."""
    port = server.http_ports[0]
    fields = [{"fieldName": "id", "dataType": "Int64", "isPrimary": True},
              {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}},
              {"fieldName": "nv", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}, "nullable": True},
              {"fieldName": "sp", "dataType": "SparseFloatVector", "nullable": True}]
    indexes = [{"fieldName": "v", "metricType": "L2", "indexType": "FLAT"},
               {"fieldName": "nv", "metricType": "L2", "indexType": "FLAT"},
               {"fieldName": "sp", "metricType": "IP", "indexType": "SPARSE_INVERTED_INDEX"}]
    body = _post(port, "collections/create", {"collectionName": name, "schema": {"fields": fields},
                                              "indexParams": indexes})
    assert body["code"] == 0, body
    data = [{"id": 1, "v": [0.0, 1.0], "nv": [1.0, 1.0], "sp": {"3": 1.0}},
            {"id": 2, "v": [0.0, 2.0], "nv": None, "sp": None},
            {"id": 3, "v": [0.0, 3.0]}]
    body = _post(port, "entities/insert", {"collectionName": name, "data": data})
    assert body["code"] == 0 and body["data"]["insertCount"] == 3, body
    got = _post(port, "entities/query", {"collectionName": name, "filter": "id > 0", "outputFields": ["nv"]})
    assert sorted(got["data"], key=lambda r: r["id"]) == [
        {"id": 1, "nv": [1.0, 1.0]}, {"id": 2, "nv": None}, {"id": 3, "nv": None}], got
    hits = _post(port, "entities/search", {"collectionName": name, "data": [[1.0, 1.0]], "annsField": "nv",
                                           "limit": 10})
    assert [h["id"] for h in hits["data"]] == [1], hits
    grpc = client.search(name, data=[{3: 1.0}], anns_field="sp", limit=10, consistency_level="Strong")
    assert [h["id"] for h in grpc[0]] == [1]

"""INT8_VECTOR fields (Milvus 2.6, data type 105) through pymilvus on every deployment: inserted as
int8, searched with FLAT and HNSW under L2, IP and COSINE over sealed and growing rows (results
against an exact reference over the same int8 values), returned as output fields; other index types
refused as Milvus refuses them."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e._helpers import reference_topk

N, DIM = 400, 16


def _collection(client, name, index_type, metric, **params):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.INT8_VECTOR, dim=DIM)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type=index_type, metric_type=metric, params=params)
    client.create_index(name, idx)
    vecs = np.random.default_rng(11).integers(-128, 128, (N, DIM)).astype(np.int8)
    vecs[0] = vecs[1]  # a duplicate: ties go to the smaller primary key
    client.insert(name, [{"id": i, "v": vecs[i]} for i in range(300)])
    client.flush(name)  # sealed rows, then growing ones
    client.insert(name, [{"id": i, "v": vecs[i]} for i in range(300, N)])
    client.load_collection(name)
    return vecs


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
@pytest.mark.parametrize("index_type", ["FLAT", "HNSW"])
def test_int8_search_equals_reference(client, name, index_type, metric):
    params = {"M": 16, "efConstruction": 200} if index_type == "HNSW" else {}
    vecs = _collection(client, name, index_type, metric, **params)
    queries = np.random.default_rng(12).integers(-128, 128, (5, DIM)).astype(np.int8)
    pos, dist = reference_topk(vecs, queries, metric, 10)
    res = client.search(name, list(queries), limit=10, output_fields=["v"],
                        search_params={"metric_type": metric, "params": {"ef": 400}})
    for q in range(len(queries)):
        got = [h["id"] for h in res[q]]
        assert got == pos[q].tolist(), (q, got, pos[q].tolist())
        np.testing.assert_allclose([h["distance"] for h in res[q]], dist[q], rtol=1e-4, atol=1e-2)
        for h in res[q]:
            assert np.frombuffer(h["entity"]["v"], np.int8).tolist() == vecs[h["id"]].tolist()
    row = client.query(name, filter="id in [7, 350]", output_fields=["v"])
    assert {r["id"]: np.frombuffer(r["v"][0], np.int8).tolist() for r in row} == {
        7: vecs[7].tolist(), 350: vecs[350].tolist()}


def test_int8_refused_index_types_and_query_type(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.INT8_VECTOR, dim=DIM)
    client.create_collection(name, schema=schema)
    for itype in ("IVF_FLAT", "IVF_SQ8"):
        idx = client.prepare_index_params()
        idx.add_index("v", index_type=itype, metric_type="L2", params={"nlist": 4})
        with pytest.raises(MilvusException) as e:
            client.create_index(name, idx)
        assert e.value.code == 1100 and f"data type Int8Vector can't build with this index {itype}" in e.value.message
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_index(name, idx)
    client.insert(name, [{"id": 1, "v": np.arange(DIM, dtype=np.int8)}])
    client.load_collection(name)
    with pytest.raises(MilvusException) as e:  # float32 query vectors on an int8 field
        client.search(name, [np.ones(DIM, np.float32).tolist()], limit=1)
    assert e.value.code == 1100
    hit = client.search(name, [np.arange(DIM, dtype=np.int8)], limit=1)[0][0]
    assert hit["id"] == 1 and hit["distance"] == pytest.approx(1.0, abs=1e-5)

"""Array-of-struct fields (Milvus 2.6) through pymilvus's MilvusClient on every deployment: schema,
inserts, output of the field, EmbeddingList (MAX_SIM) search against a numpy reference, refusals."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pymilvus import DataType, MilvusException
from pymilvus.client.embedding_list import EmbeddingList

from tests.e2e._helpers import serving

DIM = 8
CAP = 6


def struct_schema(client):
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    st = client.create_struct_field_schema()
    st.add_field("text", DataType.VARCHAR, max_length=64)
    st.add_field("score", DataType.FLOAT)
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=st, max_capacity=CAP)
    return schema


def make(client, metric: str = "MAX_SIM_COSINE") -> str:
    name = f"structs_{uuid.uuid4().hex[:8]}"
    index = client.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    index.add_index("chunks[emb]", index_type="HNSW", metric_type=metric, params={"M": 16, "efConstruction": 64})
    client.create_collection(name, schema=struct_schema(client), index_params=index)
    return name


def rows(start: int, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed + start)
    out = []
    for i in range(start, start + n):
        k = int(rng.integers(1, CAP + 1))
        embs = rng.standard_normal((k, DIM)).astype(np.float32)
        out.append({"id": i, "vec": rng.standard_normal(DIM).astype(np.float32).tolist(),
                    "chunks": [{"text": f"r{i}c{j}", "score": float(j) / 2, "emb": embs[j].tolist()}
                               for j in range(k)]})
    return out


def reference(data: list[dict], query: np.ndarray, metric: str, k: int):
    """(ids, scores) of the ``k`` best rows for the embedding list ``query`` (numpy, row by row)."""
    scored = []
    for r in data:
        e = np.array([c["emb"] for c in r["chunks"]], np.float32)
        if metric in ("MAX_SIM_COSINE", "MAX_SIM"):
            qn = query / np.linalg.norm(query, axis=1, keepdims=True)
            en = e / np.linalg.norm(e, axis=1, keepdims=True)
            s = float((qn @ en.T).max(axis=1).sum())
        elif metric == "MAX_SIM_IP":
            s = float((query @ e.T).max(axis=1).sum())
        else:
            d = ((query[:, None, :] - e[None, :, :]) ** 2).sum(-1)
            s = float(d.min(axis=1).sum())
        scored.append((r["id"], s))
    scored.sort(key=lambda t: (t[1], t[0]) if metric == "MAX_SIM_L2" else (-t[1], t[0]))
    return [t[0] for t in scored[:k]], [t[1] for t in scored[:k]]


def assert_same_structs(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["text"] == w["text"]
        assert g["score"] == pytest.approx(w["score"])
        np.testing.assert_allclose(np.asarray(g["emb"], np.float32), np.asarray(w["emb"], np.float32), rtol=1e-6)


def test_describe_shows_the_struct_field(client):
    name = make(client)
    desc = client.describe_collection(name)
    chunks = next(f for f in desc["fields"] if f["name"] == "chunks")
    assert chunks["type"] == DataType.ARRAY and chunks["element_type"] == DataType.STRUCT
    assert int(chunks["params"]["max_capacity"]) == CAP
    subs = {f["name"]: f["type"] for f in chunks["struct_fields"]}
    assert subs == {"text": DataType.VARCHAR, "score": DataType.FLOAT, "emb": DataType.FLOAT_VECTOR}
    client.drop_collection(name)


@pytest.mark.parametrize("metric", ["MAX_SIM_COSINE", "MAX_SIM_IP", "MAX_SIM_L2"])
def test_insert_query_and_max_sim_search(client, metric):
    name = make(client, metric)
    data = rows(0, 40)
    client.insert(name, data[:25])
    client.flush(name)  # a sealed segment and a growing one
    client.insert(name, data[25:])
    got = client.query(name, filter="id in [3, 30]", output_fields=["chunks"])
    by_id = {r["id"]: r for r in got}
    assert_same_structs(by_id[3]["chunks"], data[3]["chunks"])
    assert_same_structs(by_id[30]["chunks"], data[30]["chunks"])
    rng = np.random.default_rng(7)
    queries = [rng.standard_normal((m, DIM)).astype(np.float32) for m in (1, 3)]
    lists = []
    for q in queries:
        el = EmbeddingList()
        for v in q:
            el.add(v)
        lists.append(el)
    res = client.search(name, data=lists, anns_field="chunks[emb]", search_params={"metric_type": metric},
                        limit=5, output_fields=["chunks[text]"])
    for q, hits in zip(queries, res):
        ids, scores = reference(data, q, metric, 5)
        assert [h["id"] for h in hits] == ids
        np.testing.assert_allclose([h["distance"] for h in hits], scores, rtol=1e-4, atol=1e-4)
        for h in hits:  # only the sub-field asked for
            assert h["entity"]["chunks"] == [{"text": c["text"]} for c in data[h["id"]]["chunks"]]
    filtered = client.search(name, data=lists[:1], anns_field="chunks[emb]", limit=3, filter="id >= 20",
                             search_params={"metric_type": metric})
    sub = [r for r in data if r["id"] >= 20]
    assert [h["id"] for h in filtered[0]] == reference(sub, queries[0], metric, 3)[0]
    client.drop_collection(name)


def test_refusals(client):
    name = make(client)
    bad = rows(0, 1)
    bad[0]["chunks"] = bad[0]["chunks"] * (CAP + 1)
    with pytest.raises(MilvusException) as e:
        client.insert(name, bad)
    assert e.value.code == 1100 and "exceeds max capacity" in e.value.message
    bad = rows(0, 1)
    bad[0]["chunks"][0]["emb"] = [0.0] * (DIM - 1) + [float("nan")]
    with pytest.raises(MilvusException) as e:
        client.insert(name, bad)
    assert e.value.code == 1100
    client.insert(name, rows(0, 3))
    q = np.ones(DIM, np.float32)
    with pytest.raises(MilvusException) as e:  # plain vectors: element-level search, not on a MAX_SIM index
        client.search(name, data=[q.tolist()], anns_field="chunks[emb]", limit=3)
    assert e.value.code == 1100
    el = EmbeddingList()
    el.add(q)
    with pytest.raises(MilvusException) as e:
        client.search(name, data=[el], anns_field="chunks[emb]", limit=3, search_params={"metric_type": "L2"})
    assert e.value.code == 1100
    with pytest.raises(MilvusException) as e:
        client.search(name, data=[el], anns_field="chunks[emb]", limit=3,
                      search_params={"metric_type": "MAX_SIM_COSINE", "params": {"radius": 0.1}})
    assert e.value.code == 1100
    client.drop_collection(name)


def test_schema_refusals(client):
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    st = client.create_struct_field_schema()
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    st.add_field("bad", DataType.JSON)
    schema.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=st, max_capacity=CAP)
    with pytest.raises(MilvusException) as e:
        client.create_collection(f"bad_{uuid.uuid4().hex[:8]}", schema=schema)
    assert e.value.code == 1100 and "element type JSON is not supported" in e.value.message
    name = make(client)
    client.release_collection(name)
    client.drop_index(name, "chunks[emb]")
    with pytest.raises(MilvusException) as e:  # no index on the struct's vector sub-field: no load
        client.load_collection(name)
    assert "no vector index" in e.value.message
    client.drop_collection(name)


def test_standalone_restart_keeps_structs(tmp_path):
    data = rows(0, 12)
    with serving(tmp_path) as (_, c):
        name = make(c)
        c.insert(name, data[:8])
        c.flush(name)
        c.insert(name, data[8:])  # growing: replayed from the log
    with serving(tmp_path) as (_, c):
        c.load_collection(name)
        got = {r["id"]: r for r in c.query(name, filter="id >= 0", output_fields=["*"])}
        assert sorted(got) == list(range(12))
        for r in data:
            assert_same_structs(got[r["id"]]["chunks"], r["chunks"])
        el = EmbeddingList()
        el.add(np.asarray(data[9]["chunks"][0]["emb"], np.float32))
        hits = c.search(name, data=[el], anns_field="chunks[emb]", limit=1,
                        search_params={"metric_type": "MAX_SIM_COSINE"})
        assert hits[0][0]["id"] == 9

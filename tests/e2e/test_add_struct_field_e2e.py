"""``add_collection_struct_field`` (Milvus 3.0, AddCollectionStructField) through pymilvus 3.0 on every
deployment: a nullable array-of-struct field added to a loaded collection with sealed and growing
rows; rows written before (and new rows that leave it out) hold no struct (an empty list); new rows
carry it; query and search output it; EmbeddingList (MAX_SIM) search on its vector sub-field after an
index is made on it; Milvus's refusals."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pymilvus import DataType, MilvusException
from pymilvus.client.embedding_list import EmbeddingList

DIM = 4
CAP = 3


def _make(client) -> str:
    name = f"addstruct_{uuid.uuid4().hex[:8]}"
    s = client.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    return name


def _struct(client, vector: bool = True):
    st = client.create_struct_field_schema()
    st.add_field("text", DataType.VARCHAR, max_length=32)
    if vector:
        st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    return st


def _vec(i: int) -> list[float]:
    return [float(i % 5), float(i % 3), 1.0, float(i % 2)]


def _chunks(i: int) -> list[dict]:
    rng = np.random.default_rng(i)
    return [{"text": f"r{i}c{j}", "emb": rng.standard_normal(DIM).astype(np.float32).tolist()}
            for j in range(1 + i % CAP)]


def test_add_struct_field_to_loaded_collection(client):
    name = _make(client)
    client.insert(name, [{"id": i, "v": _vec(i)} for i in range(10)])
    client.flush(name)  # sealed
    client.insert(name, [{"id": i, "v": _vec(i)} for i in range(10, 20)])  # growing
    client.add_collection_struct_field(name, "chunks", _struct(client), max_capacity=CAP)

    desc = client.describe_collection(name)
    chunks = next(f for f in desc["fields"] if f["name"] == "chunks")
    assert chunks["type"] == DataType.ARRAY and chunks["element_type"] == DataType.STRUCT
    assert int(chunks["params"]["max_capacity"]) == CAP
    assert {f["name"]: f["type"] for f in chunks["struct_fields"]} == {"text": DataType.VARCHAR,
                                                                       "emb": DataType.FLOAT_VECTOR}

    new = [{"id": i, "v": _vec(i), "chunks": _chunks(i)} for i in range(20, 30)]
    client.insert(name, new)
    client.insert(name, [{"id": 30, "v": _vec(30)}])  # leaves the struct out
    got = {r["id"]: r for r in client.query(name, "id >= 0", output_fields=["chunks"], limit=100,
                                            consistency_level="Strong")}
    assert len(got) == 31
    for i in [*range(20), 30]:  # as Milvus 3.0 reads a null struct (pymilvus: valid_data False)
        assert got[i]["chunks"] is None, got[i]
    for i in range(20, 30):
        assert [c["text"] for c in got[i]["chunks"]] == [c["text"] for c in _chunks(i)]
        np.testing.assert_allclose(np.asarray([c["emb"] for c in got[i]["chunks"]], np.float32),
                                   np.asarray([c["emb"] for c in _chunks(i)], np.float32), rtol=1e-6)
    one = client.query(name, "id == 21", output_fields=["chunks[text]"], consistency_level="Strong")
    assert one[0]["chunks"] == [{"text": c["text"]} for c in _chunks(21)]

    # a plain search outputs it; an EmbeddingList search on its vector sub-field after indexing it
    res = client.search(name, [_vec(22)], anns_field="v", limit=40, output_fields=["chunks[text]"],
                        consistency_level="Strong")
    assert {h["id"] for h in res[0]} == set(range(31))
    idx = client.prepare_index_params()
    idx.add_index("chunks[emb]", index_type="HNSW", metric_type="MAX_SIM_IP", params={"M": 8, "efConstruction": 32})
    client.create_index(name, idx)
    q = np.asarray([c["emb"] for c in _chunks(25)], np.float32)
    el = EmbeddingList()
    for row in q:
        el.add(row)
    res = client.search(name, data=[el], anns_field="chunks[emb]", search_params={"metric_type": "MAX_SIM_IP"},
                        limit=5, output_fields=["chunks[text]"], consistency_level="Strong")
    scores = {i: float((q @ np.asarray([c["emb"] for c in _chunks(i)], np.float32).T).max(axis=1).sum())
              for i in range(20, 30)}
    want = sorted(scores, key=lambda i: (-scores[i], i))[:5]
    assert [h["id"] for h in res[0]] == want  # rows with no struct never match
    np.testing.assert_allclose([h["distance"] for h in res[0]], [scores[i] for i in want], rtol=1e-4, atol=1e-4)

    # sealed afterwards, released and loaded again: the same answers
    client.flush(name)
    client.release_collection(name)
    client.load_collection(name)
    again = {r["id"]: r for r in client.query(name, "id >= 0", output_fields=["chunks"], limit=100,
                                              consistency_level="Strong")}
    assert {i: [c["text"] for c in r["chunks"] or []] for i, r in again.items()} == \
        {i: [c["text"] for c in r["chunks"] or []] for i, r in got.items()}
    client.drop_collection(name)


def test_add_struct_field_refusals(client):
    name = _make(client)
    client.insert(name, [{"id": 1, "v": _vec(1)}])
    with pytest.raises(MilvusException) as e:  # pymilvus refuses it itself; the server would too
        client.add_collection_struct_field(name, "chunks", _struct(client), max_capacity=CAP, nullable=False)
    assert "nullable" in str(e.value)
    with pytest.raises(MilvusException) as e:
        client.add_collection_struct_field(name, "v", _struct(client), max_capacity=CAP)
    assert e.value.code == 1100 and "duplicate field name" in e.value.message
    bad = client.create_struct_field_schema()
    bad.add_field("js", DataType.JSON)
    with pytest.raises(MilvusException) as e:
        client.add_collection_struct_field(name, "chunks", bad, max_capacity=CAP)
    assert e.value.code == 1100
    big = client.create_struct_field_schema()
    big.add_field("text", DataType.VARCHAR, max_length=8)
    with pytest.raises(MilvusException) as e:
        client.add_collection_struct_field(name, "chunks", big, max_capacity=0)
    with pytest.raises(MilvusException) as e:
        client.add_collection_struct_field(name, "chunks", big, max_capacity=100000)
    assert e.value.code == 1100
    client.add_collection_struct_field(name, "chunks", _struct(client, vector=False), max_capacity=CAP)
    with pytest.raises(MilvusException) as e:  # the name is taken now
        client.add_collection_struct_field(name, "chunks", _struct(client, vector=False), max_capacity=CAP)
    assert e.value.code == 1100
    client.drop_collection(name)

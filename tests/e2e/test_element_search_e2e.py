"""Milvus 3.0's element-level search (a plain vector query on a struct's vector sub-field indexed with a plain
metric) through pymilvus on every deployment, grouped on the primary key (one hit per entity, its best
element: the hits themselves are elements, tests/e2e/test_element_level_more_e2e.py): hits and their
element offsets, with a row filter, with ``element_filter`` restricting the elements, after a delete,
against a numpy reference; refusals with 1100."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusException, RRFRanker
from pymilvus.client.embedding_list import EmbeddingList

DIM = 6
CAP = 5


def make(client, metric: str) -> str:
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    st = client.create_struct_field_schema()
    st.add_field("text", DataType.VARCHAR, max_length=32)
    st.add_field("page", DataType.INT32)
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=st, max_capacity=CAP)
    index = client.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    index.add_index("chunks[emb]", index_type="HNSW", metric_type=metric, params={"M": 16, "efConstruction": 64})
    name = f"element_search_{uuid.uuid4().hex[:8]}"
    client.create_collection(name, schema=schema, index_params=index)
    return name


def rows(n: int, seed: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, CAP + 1))  # some rows have no struct at all
        out.append({"id": i, "vec": rng.standard_normal(DIM).astype(np.float32).tolist(),
                    "chunks": [{"text": f"r{i}c{j}", "page": int(rng.integers(0, 8)),
                                "emb": rng.standard_normal(DIM).astype(np.float32).tolist()} for j in range(k)]})
    return out


def reference(data, q: np.ndarray, metric: str, k: int, keep_row=lambda r: True, keep_elem=lambda c: True):
    """(ids, scores, element offsets) of the ``k`` best rows, each scored by its best allowed element."""
    scored = []
    for r in data:
        if not keep_row(r):
            continue
        best = None
        for j, c in enumerate(r["chunks"]):
            if not keep_elem(c):
                continue
            e = np.asarray(c["emb"], np.float64)
            if metric == "COSINE":
                s = float(q @ e / (np.linalg.norm(q) * np.linalg.norm(e)))
            elif metric == "IP":
                s = float(q @ e)
            else:
                s = float(((q - e) ** 2).sum())
            if best is None or (s < best[0] if metric == "L2" else s > best[0]):
                best = (s, j)
        if best is not None:
            scored.append((r["id"], best[0], best[1]))
    scored.sort(key=lambda t: (t[1], t[0]) if metric == "L2" else (-t[1], t[0]))
    top = scored[:k]
    return [t[0] for t in top], [t[1] for t in top], [t[2] for t in top]


def check(res, data, queries, metric, k, **keep):
    for q, hits in zip(queries, res):
        ids, scores, offsets = reference(data, q.astype(np.float64), metric, k, **keep)
        assert [h["id"] for h in hits] == ids
        np.testing.assert_allclose([h["distance"] for h in hits], scores, rtol=1e-4, atol=1e-4)
        assert [h["offset"] for h in hits] == offsets


@pytest.mark.parametrize("metric", ["COSINE", "IP", "L2"])
def test_element_level_search(client, metric):
    name = make(client, metric)
    data = rows(60)
    client.insert(name, data[:35])
    client.flush(name)  # a sealed segment and a growing one
    client.insert(name, data[35:])
    rng = np.random.default_rng(11)
    queries = rng.standard_normal((2, DIM)).astype(np.float32)
    res = client.search(name, data=queries.tolist(), anns_field="chunks[emb]", group_by_field="id", limit=7,
                        output_fields=["chunks[text]"])
    check(res, data, queries, metric, 7)
    hit = res[0][0]
    assert hit["entity"]["chunks"][hit["offset"]]["text"] == f"r{hit['id']}c{hit['offset']}"
    # element_filter restricts the elements that take part; a row-level conjunct before it filters rows
    res = client.search(name, data=queries.tolist(), anns_field="chunks[emb]", group_by_field="id", limit=6,
                        filter="element_filter(chunks, $[page] > 3)")
    check(res, data, queries, metric, 6, keep_elem=lambda c: c["page"] > 3)
    res = client.search(name, data=queries.tolist(), anns_field="chunks[emb]", group_by_field="id", limit=6,
                        filter="id >= 20 and element_filter(chunks, $[page] <= 2)")
    check(res, data, queries, metric, 6, keep_row=lambda r: r["id"] >= 20, keep_elem=lambda c: c["page"] <= 2)
    # MATCH_ANY filters rows only: every element of a kept row takes part
    res = client.search(name, data=queries.tolist(), anns_field="chunks[emb]", group_by_field="id", limit=6,
                        filter="MATCH_ANY(chunks, $[page] > 3)")
    check(res, data, queries, metric, 6, keep_row=lambda r: any(c["page"] > 3 for c in r["chunks"]))
    # deletes apply; offset pages through the ranking
    gone = [h["id"] for h in client.search(name, data=queries[:1].tolist(), anns_field="chunks[emb]",
                                           group_by_field="id", limit=2)[0]]
    client.delete(name, ids=gone)
    res = client.search(name, data=queries[:1].tolist(), anns_field="chunks[emb]", group_by_field="id", limit=5,
                        offset=1)
    ids, _, offsets = reference([r for r in data if r["id"] not in gone], queries[0].astype(np.float64), metric, 6)
    assert [h["id"] for h in res[0]] == ids[1:]
    assert [h["offset"] for h in res[0]] == offsets[1:]
    client.drop_collection(name)


def test_refusals(client):
    name = make(client, "COSINE")
    client.insert(name, rows(10))
    q = np.ones(DIM, np.float32)
    el = EmbeddingList()
    el.add(q)
    with pytest.raises(MilvusException) as e:  # an element-level index serves plain vectors only
        client.search(name, data=[el], anns_field="chunks[emb]", limit=3)
    assert e.value.code == 1100
    with pytest.raises(MilvusException) as e:  # the index's metric
        client.search(name, data=[q.tolist()], anns_field="chunks[emb]", limit=3, search_params={"metric_type": "IP"})
    assert e.value.code == 1100
    with pytest.raises(MilvusException) as e:
        client.search(name, data=[q.tolist()], anns_field="chunks[emb]", limit=3, order_by_fields=[{"field": "id"}])
    assert e.value.code == 1100
    reqs = [AnnSearchRequest([q.tolist()], "chunks[emb]", {}, limit=3), AnnSearchRequest([q.tolist()], "vec", {}, 3)]
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, reqs, RRFRanker(), limit=3)
    assert e.value.code == 1100
    client.drop_collection(name)

"""Milvus 3.0's element-level results through pymilvus 3.0.2 on every deployment: an element-level search's
hits are struct elements (several of one entity possible), ``group_by_field`` on the primary key keeps one
per entity, a range search keeps the elements in range; a query whose filter ends in ``element_filter``
returns each entity's matching element offsets (``QueryResults.element_indices``: pymilvus returns one row
per offset), with ``limit`` / ``offset`` counting elements; ``MATCH_*`` and ``count(*)`` stay row-level; a
hybrid search of element-level requests on one struct fuses (pk, element) hits and returns their offsets."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusException, RRFRanker, WeightedRanker

DIM = 5
CAP = 6


def make(client, name: str, metric: str = "IP") -> None:
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
    client.create_collection(name, schema=schema, index_params=index)


def rows(n: int, seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, CAP + 1))
        out.append({"id": i, "vec": rng.standard_normal(DIM).astype(np.float32).tolist(),
                    "chunks": [{"text": f"r{i}c{j}", "page": int(rng.integers(0, 6)),
                                "emb": rng.standard_normal(DIM).astype(np.float32).tolist()} for j in range(k)]})
    return out


def score(metric: str, q: np.ndarray, e) -> float:
    e = np.asarray(e, np.float64)
    if metric == "COSINE":
        return float(q @ e / (np.linalg.norm(q) * np.linalg.norm(e)))
    if metric == "IP":
        return float(q @ e)
    return float(((q - e) ** 2).sum())


def elements(data, q: np.ndarray, metric: str, keep_row=lambda r: True, keep_elem=lambda c: True):
    """Every allowed (id, offset, score), best first (ties by id, then offset)."""
    out = [(r["id"], j, score(metric, q, c["emb"])) for r in data if keep_row(r)
           for j, c in enumerate(r["chunks"]) if keep_elem(c)]
    out.sort(key=lambda t: (t[2], t[0], t[1]) if metric == "L2" else (-t[2], t[0], t[1]))
    return out


def check_hits(hits, expected):
    assert [(h["id"], h["offset"]) for h in hits] == [(i, j) for i, j, _ in expected]
    np.testing.assert_allclose([h["distance"] for h in hits], [s for _, _, s in expected], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["IP", "L2"])
def test_search_hits_are_elements(client, name, metric):
    make(client, name, metric)
    data = rows(50)
    client.insert(name, data[:30])
    client.flush(name)  # a sealed segment and a growing one
    client.insert(name, data[30:])
    q = np.random.default_rng(7).standard_normal((2, DIM)).astype(np.float32)
    res = client.search(name, data=q.tolist(), anns_field="chunks[emb]", limit=12, output_fields=["chunks[text]"])
    for qi, hits in enumerate(res):
        expected = elements(data, q[qi].astype(np.float64), metric)[:12]
        check_hits(hits, expected)
        for h in hits:  # the offset names the element of the entity's struct array
            assert h["entity"]["chunks"][h["offset"]]["text"] == f"r{h['id']}c{h['offset']}"
    ids = [h["id"] for hits in res for h in hits]
    assert len(ids) > len(set(ids)), "the ranking should hold several elements of one entity"
    # offset pages through the element ranking; element_filter limits the elements that take part
    res = client.search(name, data=q[:1].tolist(), anns_field="chunks[emb]", limit=5, offset=4,
                        filter="id >= 5 and element_filter(chunks, $[page] <= 2)")
    expected = elements(data, q[0].astype(np.float64), metric, keep_row=lambda r: r["id"] >= 5,
                        keep_elem=lambda c: c["page"] <= 2)[4:9]
    check_hits(res[0], expected)


def test_group_by_primary_key(client, name):
    make(client, name, "COSINE")
    data = rows(40, seed=9)
    client.insert(name, data)
    q = np.random.default_rng(2).standard_normal(DIM).astype(np.float32)
    ranking = elements(data, q.astype(np.float64), "COSINE")
    best: dict = {}
    for i, j, s in ranking:  # each entity's best element, entities by that score
        best.setdefault(i, (i, j, s))
    res = client.search(name, data=[q.tolist()], anns_field="chunks[emb]", limit=6, group_by_field="id")
    check_hits(res[0], list(best.values())[:6])
    # group_size 2: each entity's two best elements, the entities in order of their best
    res = client.search(name, data=[q.tolist()], anns_field="chunks[emb]", limit=3, group_by_field="id",
                        group_size=2)
    top = list(best)[:3]
    expected = [t for i in top for t in [u for u in ranking if u[0] == i][:2]]
    check_hits(res[0], expected)


def test_range_search_keeps_elements_in_range(client, name):
    make(client, name, "IP")
    data = rows(40, seed=4)
    client.insert(name, data)
    q = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    ranking = elements(data, q.astype(np.float64), "IP")
    res = client.search(name, data=[q.tolist()], anns_field="chunks[emb]", limit=100,
                        search_params={"params": {"radius": 0.5, "range_filter": 2.0}})
    check_hits(res[0], [t for t in ranking if 0.5 < t[2] <= 2.0][:100])


def test_element_level_query(client, name):
    make(client, name)
    data = rows(40, seed=8)
    client.insert(name, data[:25])
    client.flush(name)
    client.insert(name, data[25:])
    by_id = {r["id"]: r for r in data}

    def expected(keep_row=lambda r: True, keep_elem=lambda c: True):
        return [(r["id"], j) for r in sorted(data, key=lambda r: r["id"]) if keep_row(r)
                for j, c in enumerate(r["chunks"]) if keep_elem(c)]

    flt = "id >= 3 and element_filter(chunks, $[page] >= 3)"
    want = expected(lambda r: r["id"] >= 3 and any(c["page"] >= 3 for c in r["chunks"]), lambda c: c["page"] >= 3)
    res = client.query(name, filter=flt, output_fields=["chunks"])
    assert sorted((r["id"], r["offset"]) for r in res) == want
    for r in res:  # one row per matching element, the entity's fields on each
        assert r["chunks"][r["offset"]]["page"] >= 3
        assert len(r["chunks"]) == len(by_id[r["id"]]["chunks"])
    # limit / offset count elements; an entity cut by the offset keeps its later elements, the last one is whole
    for limit, offset in [(4, 0), (5, 3), (7, 6), (100, 2)]:
        page = client.query(name, filter=flt, output_fields=["id"], limit=limit, offset=offset)
        got = [(r["id"], r["offset"]) for r in page]
        rest = want[offset:]
        n = 0
        take = []
        for k, pair in enumerate(rest):  # whole entities while fewer than `limit` elements are taken
            if n >= limit and pair[0] != rest[k - 1][0]:
                break
            take.append(pair)
            n += 1
        assert got == take, (limit, offset)
    # MATCH_* filter rows only: no offsets; count(*) counts entities
    res = client.query(name, filter="MATCH_ANY(chunks, $[page] >= 3)", output_fields=["id"])
    assert all("offset" not in r for r in res)
    assert sorted(r["id"] for r in res) == [r["id"] for r in data if any(c["page"] >= 3 for c in r["chunks"])]
    n = client.query(name, filter=flt, output_fields=["count(*)"])[0]["count(*)"]
    assert n == len({i for i, _ in want})
    # a query iterator walks the elements: pymilvus 3.0 sends its element cursor with its `id >= last`
    # filter, and every (entity, element) comes once, in order, whatever the batch cuts
    for batch in (1, 2, 5):
        it = client.query_iterator(name, filter=flt, output_fields=["id"], batch_size=batch)
        seen: list = []
        while page := it.next():
            seen += [(r["id"], r["offset"]) for r in page]
        it.close()
        assert seen == want, batch


def test_hybrid_search_fuses_elements(client, name):
    make(client, name, "IP")
    data = rows(40, seed=6)
    client.insert(name, data[:20])
    client.flush(name)
    client.insert(name, data[20:])
    rng = np.random.default_rng(12)
    q1, q2 = rng.standard_normal((2, DIM)).astype(np.float32)
    r1 = AnnSearchRequest([q1.tolist()], "chunks[emb]", {}, limit=8)
    r2 = AnnSearchRequest([q2.tolist()], "chunks[emb]", {}, limit=8, expr="element_filter(chunks, $[page] >= 2)")
    res = client.hybrid_search(name, [r1, r2], RRFRanker(60), limit=10, output_fields=["chunks[text]"])
    fused: dict = {}
    lists = [elements(data, q1.astype(np.float64), "IP")[:8],
             elements(data, q2.astype(np.float64), "IP", keep_elem=lambda c: c["page"] >= 2)[:8]]
    for hits in lists:  # RRF over (pk, element) keys
        for rank, (i, j, _) in enumerate(hits, start=1):
            fused[(i, j)] = fused.get((i, j), 0.0) + 1.0 / (60 + rank)
    want = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    got = [(h["id"], h["offset"]) for h in res[0]]
    assert got == [k for k, _ in want]
    np.testing.assert_allclose([h["distance"] for h in res[0]], [v for _, v in want], rtol=1e-5)
    for h in res[0]:
        assert h["entity"]["chunks"][h["offset"]]["text"] == f"r{h['id']}c{h['offset']}"
    # grouped on the primary key: one hit per entity, the best fused element of each
    res = client.hybrid_search(name, [r1, r2], WeightedRanker(0.5, 0.5), limit=4, group_by_field="id")
    ids = [h["id"] for h in res[0]]
    assert len(ids) == len(set(ids)) == 4
    assert all(0 <= h["offset"] < len(data[h["id"]]["chunks"]) for h in res[0])
    # element hits and entity hits cannot be fused
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, [r1, AnnSearchRequest([q1.tolist()], "vec", {}, limit=3)], RRFRanker(), limit=3)
    assert e.value.code == 1100

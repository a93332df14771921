"""Milvus 3.0's StructArray operators (``element_filter``, ``MATCH_ANY/ALL/LEAST/MOST/EXACT``) through
pymilvus on every deployment: query, count(*), search filters, iterators and delete by filter over a
sealed and a growing segment, against a plain-Python reference; refusals with 1100."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
from pymilvus import DataType, MilvusException

DIM = 4
CAP = 5
WORDS = ("Red apple", "red wine", "Blue sky", "Redwood", "green")


def make(client) -> str:
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    st = client.create_struct_field_schema()
    st.add_field("text", DataType.VARCHAR, max_length=32)
    st.add_field("n", DataType.INT32)
    st.add_field("score", DataType.FLOAT)
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=st, max_capacity=CAP)
    index = client.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    index.add_index("chunks[emb]", index_type="HNSW", metric_type="MAX_SIM_COSINE",
                    params={"M": 16, "efConstruction": 64})
    name = f"struct_filters_{uuid.uuid4().hex[:8]}"
    client.create_collection(name, schema=schema, index_params=index)
    return name


def rows(n: int, seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, CAP + 1))  # some rows have no struct at all
        out.append({"id": i, "vec": rng.standard_normal(DIM).astype(np.float32).tolist(),
                    "chunks": [{"text": WORDS[int(rng.integers(len(WORDS)))], "n": int(rng.integers(0, 10)),
                                "score": float(rng.integers(0, 8)) / 2,
                                "emb": rng.standard_normal(DIM).astype(np.float32).tolist()} for _ in range(k)]})
    return out


# expression -> (quantifier, element predicate) for the reference
CASES = {
    'element_filter(chunks, $[text] like "Red%")': ("any", lambda c: c["text"].startswith("Red")),
    "MATCH_ANY(chunks, $[n] > 6 && $[score] <= 2)": ("any", lambda c: c["n"] > 6 and c["score"] <= 2),
    "MATCH_ALL(chunks, $[n] >= 2)": ("all", lambda c: c["n"] >= 2),
    'MATCH_LEAST(chunks, $[text] in ["green", "Blue sky"], threshold=2)': (
        ("least", 2), lambda c: c["text"] in ("green", "Blue sky")),
    "MATCH_MOST(chunks, 2 <= $[n] < 7, threshold=1)": (("most", 1), lambda c: 2 <= c["n"] < 7),
    "match_exact(chunks, $[n] % 2 == 0, threshold=0)": (("exact", 0), lambda c: c["n"] % 2 == 0),
    "MATCH_EXACT(chunks, not ($[score] * 2 > 3), threshold=2)": (("exact", 2), lambda c: not c["score"] * 2 > 3),
}


def reference(data: list[dict], quant, pred) -> set[int]:
    out = set()
    for r in data:
        hits = sum(bool(pred(c)) for c in r["chunks"])
        mode, k = quant if isinstance(quant, tuple) else (quant, 1)
        ok = {"any": hits >= 1, "all": hits == len(r["chunks"]), "least": hits >= k, "most": hits <= k,
              "exact": hits == k}[mode]
        if ok:
            out.add(r["id"])
    return out


@pytest.fixture
def loaded(client):
    name = make(client)
    data = rows(60)
    client.insert(name, data[:35])
    client.flush(name)  # a sealed segment and a growing one
    client.insert(name, data[35:])
    yield name, data
    client.drop_collection(name)


def test_query_and_count_match_the_reference(client, loaded):
    name, data = loaded
    for expr, (quant, pred) in CASES.items():
        want = reference(data, quant, pred)
        got = client.query(name, filter=expr, output_fields=["id"], limit=100)
        assert {r["id"] for r in got} == want, expr
        (cnt,) = client.query(name, filter=expr, output_fields=["count(*)"])
        assert cnt["count(*)"] == len(want), expr
    # a row-level conjunct before element_filter (where Milvus takes it) and MATCH_* anywhere
    want = {i for i in reference(data, *CASES['element_filter(chunks, $[text] like "Red%")']) if i >= 30}
    got = client.query(name, filter='id >= 30 and element_filter(chunks, $[text] like "Red%")', limit=100)
    assert {r["id"] for r in got} == want
    got = client.query(name, filter="not MATCH_ALL(chunks, $[n] >= 2) or id < 3", limit=100)
    assert {r["id"] for r in got} == (set(range(60)) - reference(data, *CASES["MATCH_ALL(chunks, $[n] >= 2)"])) | {
        0, 1, 2}


def test_search_filters_and_iterators(client, loaded):
    name, data = loaded
    vecs = np.array([r["vec"] for r in data], np.float32)
    q = np.ones(DIM, np.float32)
    for expr in ('element_filter(chunks, $[text] like "Red%")', "MATCH_LEAST(chunks, $[n] > 3, threshold=2)"):
        quant, pred = CASES.get(expr, (("least", 2), lambda c: c["n"] > 3))
        want = sorted(reference(data, quant, pred), key=lambda i: (float(((vecs[i] - q) ** 2).sum()), i))[:5]
        hits = client.search(name, data=[q.tolist()], anns_field="vec", limit=5, filter=expr)[0]
        assert [h["id"] for h in hits] == want, expr
    expr = "MATCH_ANY(chunks, $[score] >= 3)"
    want = reference(data, "any", lambda c: c["score"] >= 3)
    it = client.query_iterator(name, batch_size=7, filter=expr, output_fields=["id"])
    seen: list[int] = []
    while batch := it.next():
        seen += [r["id"] for r in batch]
    it.close()
    assert sorted(seen) == sorted(want)
    it = client.search_iterator(name, data=[q.tolist()], anns_field="vec", batch_size=4, filter=expr, limit=20,
                                search_params={"metric_type": "L2"})
    found: list[int] = []
    while page := it.next():
        found += [h["id"] for h in page]
    it.close()
    assert len(found) == len(set(found)) == min(20, len(want)) and set(found) <= want


def test_delete_by_filter(client, loaded):
    name, data = loaded
    expr = "MATCH_EXACT(chunks, $[n] % 2 == 0, threshold=0)"  # also every row without structs
    gone = reference(data, ("exact", 0), lambda c: c["n"] % 2 == 0)
    assert gone and any(not r["chunks"] for r in data if r["id"] in gone)
    client.delete(name, filter=expr)
    left = {r["id"] for r in client.query(name, filter="id >= 0", output_fields=["id"], limit=100)}
    assert left == set(range(60)) - gone
    assert client.query(name, filter=expr, output_fields=["count(*)"])[0]["count(*)"] == 0


@pytest.mark.parametrize(("expr", "message"), [
    ("MATCH_ANY(chunks, $[nope] > 1)", "array field not found: chunks[nope]"),
    ("$[n] > 1", "$[n] syntax can only be used inside ElementFilter or MATCH_*"),
    ("MATCH_ANY(chunks, id > 1)", "row-level field references are not supported"),
    ("MATCH_ANY(chunks, $[emb] > 1)", "vector sub-field chunks[emb]"),
    ("MATCH_LEAST(chunks, $[n] > 1, threshold=0)", "count in MATCH_LEAST must be positive, got: 0"),
    ("MATCH_ANY(nope, $[n] > 1)", "field nope not exist"),
    ("element_filter(chunks, $[n] > 1) and id > 0",
     "element filter expression can only be the last expression in the logical and expression"),
])
def test_refusals(client, loaded, expr, message):
    name, _ = loaded
    with pytest.raises(MilvusException) as e:
        client.query(name, filter=expr, limit=10)
    assert e.value.code == 1100 and re.search(re.escape(message), e.value.message)

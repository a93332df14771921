"""Element-level search on a struct's vector sub-field (vecdb.element_search): the best elements (several of a
row possible), with their offsets, the row mask, ``element_filter`` and a range applied, against a
plain-Python reference; the filter's element predicate found where Milvus places it; the query kinds each
metric takes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vecdb import element_search, emb_list
from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.schema import CollectionSchema, DataType, FieldSchema, StructArrayField

CAP = 5
DIM = 3


def schema() -> CollectionSchema:
    fields = [FieldSchema("id", DataType.INT64, 100, is_primary=True),
              FieldSchema("chunks[page]", DataType.ARRAY, 102, element_type=DataType.INT32, max_capacity=CAP,
                          struct_name="chunks"),
              FieldSchema("chunks[emb]", DataType.ARRAY_OF_VECTOR, 103, element_type=DataType.FLOAT_VECTOR, dim=DIM,
                          max_capacity=CAP, struct_name="chunks")]
    return CollectionSchema("c", fields, struct_fields=[StructArrayField("chunks", 101, max_capacity=CAP)])


class FakeSegment:
    sealed = False

    def __init__(self, cols: dict[str, np.ndarray]):
        self.cols = cols

    def column(self, name: str, n: int) -> np.ndarray:
        return self.cols[name][:n]

    def column_names(self):
        return list(self.cols)


def random_rows(n: int, seed: int) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[{"page": int(rng.integers(0, 8)), "emb": rng.standard_normal(DIM).astype(np.float32)}
             for _ in range(int(rng.integers(0, CAP + 1)))] for _ in range(n)]


def view_of(structs: list[list[dict]]):
    pages = np.empty(len(structs), object)
    pages[:] = [np.array([c["page"] for c in row], np.int32) for row in structs]
    embs = np.empty(len(structs), object)
    embs[:] = [np.array([c["emb"] for c in row], np.float32).reshape(-1, DIM) for row in structs]
    cols = {"id": np.arange(len(structs), dtype=np.int64), "chunks[page]": pages, "chunks[emb]": embs}
    return SimpleNamespace(segment=FakeSegment(cols), n=len(structs))


def sim(metric: str, q: np.ndarray, e: np.ndarray) -> float:
    q64, e64 = q.astype(np.float64), e.astype(np.float64)
    if metric == "COSINE":
        return float(q64 @ e64 / (np.linalg.norm(q64) * np.linalg.norm(e64)))
    if metric == "IP":
        return float(q64 @ e64)
    return float(((q64 - e64) ** 2).sum())


def reference(structs, q, metric, k, row_ok, elem_ok):
    """[(row, score, element offset)] of the ``k`` best elements (several of a row possible), in plain
    Python; equal scores in element order."""
    scored = [(i, sim(metric, q, c["emb"]), j) for i, row in enumerate(structs) if row_ok[i]
              for j, c in enumerate(row) if elem_ok(c)]
    scored.sort(key=lambda t: (t[1], t[0], t[2]) if metric == "L2" else (-t[1], t[0], t[2]))
    return scored[:k]


@pytest.mark.parametrize("metric", ["COSINE", "IP", "L2"])
@pytest.mark.parametrize("expr", [None, "element_filter(chunks, $[page] > 3)",
                                  "id >= 10 and element_filter(chunks, $[page] % 2 == 0)",
                                  "MATCH_ANY(chunks, $[page] > 3)"])
def test_segment_search_matches_reference(metric, expr):
    structs = random_rows(80, seed=1)
    view = view_of(structs)
    field = schema().field("chunks[emb]")
    flt = compile_filter(expr, schema()) if expr else None
    row_ok = np.ones(len(structs), bool) if flt is None else np.asarray(flt.evaluate(view.segment.cols, view.n))
    row_ok[[3, 4]] = False  # deleted rows: the mask
    if expr and expr.startswith("element_filter"):
        elem_ok = lambda c: c["page"] > 3  # noqa: E731
    elif expr and "element_filter" in expr:
        elem_ok = lambda c: c["page"] % 2 == 0  # noqa: E731
    else:
        elem_ok = lambda c: True  # noqa: E731 - MATCH_ANY filters rows only
    queries = np.random.default_rng(2).standard_normal((3, DIM)).astype(np.float32)
    spec = SimpleNamespace(queries=queries, metric=metric, field=field, flt=flt, radius=None, range_filter=None)
    k = 9
    d, o, e = element_search.segment_search(view, spec, k, row_ok)
    for qi, q in enumerate(queries):
        want = reference(structs, q, metric, k, row_ok, elem_ok)
        got = [(int(r), float(s), int(x)) for r, s, x in zip(o[qi], d[qi], e[qi]) if r >= 0]
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[2] for g in got] == [w[2] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-4, atol=1e-5)
        assert (o[qi, len(got):] == -1).all() and (e[qi, len(got):] == -1).all()


def test_segment_search_chunks_ties_and_range():
    def el(page, *v):
        return {"page": page, "emb": np.array(v, np.float32)}

    structs = [[el(0, 1, 0, 0), el(1, 1, 0, 0)], [el(2, 0, 1, 0)], [el(3, 2, 0, 0), el(4, 0, 0, 3)]]
    view = view_of(structs)
    field = schema().field("chunks[emb]")
    q = np.array([[1, 0, 0]], np.float32)
    spec = SimpleNamespace(queries=q, metric="IP", field=field, flt=None, radius=None, range_filter=None)
    d, o, e = element_search.segment_search(view, spec, 4, None)
    # several elements of one row; a tie (rows 0's two elements) in element order
    assert o.tolist() == [[2, 0, 0, 1]] and e.tolist() == [[0, 0, 1, 0]] and d.tolist() == [[2, 1, 1, 0]]
    old = emb_list._CHUNK  # (the chunk walk element-level search shares: emb_list.row_chunks)
    try:  # tiny chunks: every row scored on its own, the chunks' best merged
        emb_list._CHUNK = 1
        again = element_search.segment_search(view, spec, 4, None)
    finally:
        emb_list._CHUNK = old
    assert [x.tolist() for x in again] == [d.tolist(), o.tolist(), e.tolist()]
    # a range search keeps the elements in range only; the row mask drops a row's elements
    spec.radius, spec.range_filter = 0.5, 1.5
    d, o, e = element_search.segment_search(view, spec, 4, np.array([False, True, True]))
    assert o.tolist() == [[-1] * 4] and e.tolist() == [[-1] * 4]
    d, o, e = element_search.segment_search(view, spec, 4, None)
    assert o.tolist() == [[0, 0, -1, -1]] and e.tolist() == [[0, 1, -1, -1]]
    spec.metric, spec.radius, spec.range_filter = "L2", 2.0, None  # L2: squared distances below the radius
    d, o, e = element_search.segment_search(view, spec, 4, None)
    assert o.tolist() == [[0, 0, 2, -1]] and e.tolist() == [[0, 1, 0, -1]]  # row 1's element: at 2.0, out
    np.testing.assert_allclose(d[0, :3], [0, 0, 1], atol=1e-6)


def test_element_predicate_placement():
    s = schema()
    assert element_search.element_predicate(compile_filter("element_filter(chunks, $[page] > 1)", s),
                                            "chunks") is not None
    assert element_search.element_predicate(compile_filter("id > 0 and element_filter(chunks, $[page] > 1)", s),
                                            "chunks") is not None
    assert element_search.element_predicate(compile_filter("MATCH_ANY(chunks, $[page] > 1)", s), "chunks") is None
    assert element_search.element_predicate(compile_filter("id > 0", s), "chunks") is None
    assert element_search.element_predicate(None, "chunks") is None
    assert element_search.element_predicate(compile_filter("element_filter(chunks, $[page] > 1)", s),
                                            "other") is None


def test_query_kinds():
    field = schema().field("chunks[emb]")
    plain = np.zeros((2, DIM), np.float32)
    lists = np.empty(1, object)
    lists[0] = plain
    element_search.check_queries(plain, field, "COSINE")
    element_search.check_queries(lists, field, "MAX_SIM_COSINE")
    with pytest.raises(InvalidParameter):
        element_search.check_queries(lists, field, "L2")
    with pytest.raises(InvalidParameter):
        element_search.check_queries(plain, field, "MAX_SIM_IP")

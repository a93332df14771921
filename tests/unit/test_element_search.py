"""Element-level search on a struct's vector sub-field (vecdb.element_search): each row scored by its best
element, with that element's offset, the row mask and ``element_filter`` applied, against a plain-Python
reference; the filter's element predicate found where Milvus places it; the query kinds each metric takes."""

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
    """[(row, score, element offset)] of the ``k`` best rows, row by row in plain Python."""
    scored = []
    for i, row in enumerate(structs):
        if not row_ok[i]:
            continue
        best = None
        for j, c in enumerate(row):
            if not elem_ok(c):
                continue
            s = sim(metric, q, c["emb"])
            if best is None or (s < best[0] if metric == "L2" else s > best[0]):
                best = (s, j)
        if best is not None:
            scored.append((i, best[0], best[1]))
    scored.sort(key=lambda t: (t[1], t[0]) if metric == "L2" else (-t[1], t[0]))
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
    spec = SimpleNamespace(queries=queries, metric=metric, field=field, flt=flt)
    k = 9
    d, o, e = element_search.segment_search(view, spec, k, row_ok)
    for qi, q in enumerate(queries):
        want = reference(structs, q, metric, k, row_ok, elem_ok)
        got = [(int(r), float(s), int(x)) for r, s, x in zip(o[qi], d[qi], e[qi]) if r >= 0]
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[2] for g in got] == [w[2] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-4, atol=1e-5)
        assert (o[qi, len(got):] == -1).all() and (e[qi, len(got):] == -1).all()


def test_best_elements_chunks_and_ties():
    block = np.array([[1, 0], [1, 0], [0, 1], [2, 0], [0, 3]], np.float32)
    starts = np.array([0, 2, 3])
    q = np.array([[1, 0]], np.float32)
    scores, offs = element_search.best_elements(q, block, starts, "IP")
    assert scores.tolist() == [[1.0, 0.0, 2.0]] and offs.tolist() == [[0, 0, 0]]  # a tie: the first element
    allowed = np.array([True, True, True, False, True])
    scores, offs = element_search.best_elements(q, block, starts, "IP", allowed)
    assert scores.tolist() == [[1.0, 0.0, 0.0]] and offs.tolist() == [[0, 0, 1]]
    allowed = np.array([False, False, True, True, True])
    scores, offs = element_search.best_elements(q, block, starts, "L2", allowed)
    assert np.isinf(scores[0, 0]) and offs.tolist() == [[-1, 0, 0]]
    old = emb_list._CHUNK  # (the chunk walk element-level search shares: emb_list.row_chunks)
    try:  # tiny chunks: every row scored on its own
        emb_list._CHUNK = 1
        again = element_search.best_elements(q, block, starts, "L2", allowed)
    finally:
        emb_list._CHUNK = old
    assert np.array_equal(again[1], offs) and np.array_equal(again[0], scores)


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

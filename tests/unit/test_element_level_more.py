"""Element-level query results (vecdb.element_search.matched_elements / page_elements): each entity's matching
element offsets, vectorised, against plain Python; the page Milvus's proxy reduce makes (``offset`` and
``limit`` count elements, an entity cut by the offset keeps its later elements, the last one is whole)."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import element_search
from vecdb.expr import compile_filter
from vecdb.schema import CollectionSchema, DataType, FieldSchema, StructArrayField

CAP = 5


def schema() -> CollectionSchema:
    fields = [FieldSchema("id", DataType.INT64, 100, is_primary=True),
              FieldSchema("chunks[page]", DataType.ARRAY, 102, element_type=DataType.INT32, max_capacity=CAP,
                          struct_name="chunks"),
              FieldSchema("chunks[tag]", DataType.ARRAY, 103, element_type=DataType.VARCHAR, max_capacity=CAP,
                          max_length=8, struct_name="chunks")]
    return CollectionSchema("c", fields, struct_fields=[StructArrayField("chunks", 101, max_capacity=CAP)])


def columns(structs: list[list[tuple[int, str]]]) -> dict[str, np.ndarray]:
    pages = np.empty(len(structs), object)
    pages[:] = [np.array([p for p, _ in row], np.int32) for row in structs]
    tags = np.empty(len(structs), object)
    tags[:] = [np.array([t for _, t in row], object) for row in structs]
    return {"id": np.arange(len(structs), dtype=np.int64), "chunks[page]": pages, "chunks[tag]": tags}


@pytest.mark.parametrize("expr, ok", [
    ("element_filter(chunks, $[page] > 2)", lambda p, t: p > 2),
    ('id > 3 and element_filter(chunks, $[page] % 2 == 0 and $[tag] != "b")', lambda p, t: p % 2 == 0 and t != "b"),
])
def test_matched_elements(expr, ok):
    rng = np.random.default_rng(4)
    structs = [[(int(rng.integers(0, 6)), "abc"[int(rng.integers(0, 3))]) for _ in range(int(rng.integers(0, CAP + 1)))]
               for _ in range(40)]
    match = element_search.element_predicate(compile_filter(expr, schema()), None)
    assert match is not None
    positions, counts = element_search.matched_elements(columns(structs), len(structs), match)
    want = [[j for j, (p, t) in enumerate(row) if ok(p, t)] for row in structs]
    assert counts.tolist() == [len(w) for w in want]
    assert positions.tolist() == [j for w in want for j in w]


def test_matched_elements_without_elements():
    match = element_search.element_predicate(compile_filter("element_filter(chunks, $[page] > 2)", schema()), None)
    positions, counts = element_search.matched_elements(columns([[], []]), 2, match)
    assert positions.tolist() == [] and counts.tolist() == [0, 0]


def test_element_predicate_any_struct():
    s = schema()
    assert element_search.element_predicate(compile_filter("MATCH_ANY(chunks, $[page] > 2)", s), None) is None
    assert element_search.element_predicate(compile_filter("id > 2", s), None) is None
    assert element_search.element_predicate(
        compile_filter("id > 2 and element_filter(chunks, $[page] > 2)", s), None).struct == "chunks"


def reference_page(counts: list[int], limit: int | None, offset: int) -> list[tuple[int, int]]:
    """(entity, element index within its matches) of the page, Milvus's reduceRetrieveResults in plain Python."""
    pairs = [(i, j) for i, c in enumerate(counts) for j in range(c)][offset:]
    if limit is None:
        return pairs
    out: list[tuple[int, int]] = []
    for k, pair in enumerate(pairs):
        if len(out) >= limit and (k == 0 or pair[0] != pairs[k - 1][0]):
            break
        out.append(pair)
    return out


@pytest.mark.parametrize("limit", [None, 0, 1, 3, 4, 7, 50])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5, 9, 30])
def test_page_elements(limit, offset):
    counts = np.array([2, 1, 3, 2, 1, 4], np.int64)
    first, stop, skip, start = element_search.page_elements(counts, limit, offset)
    got = [(i, j) for i in range(first, stop) for j in range(skip if i == first else 0, int(counts[i]))]
    assert got == reference_page(counts.tolist(), limit, offset)
    assert start == int(counts[:first].sum()) + skip


def test_page_elements_empty():
    assert element_search.page_elements(np.zeros(0, np.int64), 5, 0) == (0, 0, 0, 0)
    assert element_search.page_elements(np.zeros(0, np.int64), None, 3) == (0, 0, 0, 0)


@pytest.mark.parametrize("strings", [False, True])
def test_hybrid_element_keys(strings):
    from vecdb.proxy.rpc_hybrid import _ElementKeys
    from vecdb.querynode.executor import Hits

    def hits(pks, elems):
        arr = np.array([f"k{p}" for p in pks], object) if strings else np.array(pks, np.int64)
        return Hits([len(pks)], arr, np.zeros(len(pks), np.float32),
                    {element_search.ELEMENT_COLUMN: np.array(elems, np.int64)})

    keys = _ElementKeys([hits([5, 2, 5], [1, 0, 0]), hits([2, 5, 7], [0, 1, 3])])
    a, b = keys.codes
    assert a[0] == b[1] and a[1] == b[0]  # the same (pk, element): one key
    assert len({*a.tolist(), *b.tolist()}) == 4
    order = np.argsort(np.concatenate([a, b]), kind="stable")  # codes order as the pairs do
    pks, elems = keys.decode(np.concatenate([a, b])[order])
    pairs = list(zip(pks.tolist(), elems.tolist()))
    want = [(2, 0), (2, 0), (5, 0), (5, 1), (5, 1), (7, 3)]
    assert pairs == [(f"k{p}" if strings else p, e) for p, e in want]

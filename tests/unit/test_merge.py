"""vecdb.proxy.merge: merging per-node answers equals one executor run over every segment.

Random segments (sealed with and without a FLAT index, growing, some rows deleted, some empty)
are split into contiguous groups, as query nodes would hold disjoint shards; each group is searched
or queried the way the proxy asks a node (offset 0, ``limit + offset``), the answers are merged,
and the result must equal executor.search / executor.query over all segments at once.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.index import create_index
from vecdb.proxy.merge import merge_hits, merge_query
from vecdb.querynode import executor
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.timestamp import MAX_TIMESTAMP

DIM = 4
SNAPSHOT = 10
RANGES = {"L2": (3.5, 0.5), "IP": (0.5, 3.0), "COSINE": (0.3, 0.99)}  # (radius, range_filter)


def _schema(pk_type: DataType) -> CollectionSchema:
    return CollectionSchema("c", [
        FieldSchema("pk", pk_type, 100, is_primary=True, max_length=32),
        FieldSchema("vec", DataType.FLOAT_VECTOR, 101, dim=DIM),
        FieldSchema("tag", DataType.VARCHAR, 102, max_length=32),
        FieldSchema("num", DataType.INT64, 103),
    ])


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Few distinct vectors (small integers, never zero): many exact distance ties."""
    v = rng.integers(-1, 2, size=(n, DIM)).astype(np.float32)
    v[:, 0] = 1.0
    return v


def _segments(rng: np.random.Generator, pk_type: DataType, metric: str) -> list[SegmentView]:
    schema = _schema(pk_type)
    sizes = [int(s) for s in rng.integers(0, 30, size=int(rng.integers(3, 7)))]
    ids = rng.permutation(sum(sizes) * 3)[: sum(sizes)]  # unique keys, not in insertion order
    views, start = [], 0
    for slot, n in enumerate(sizes):
        pk_ids = ids[start:start + n]
        start += n
        cols = {
            "pk": pk_ids.astype(np.int64) if pk_type == DataType.INT64
            else np.array([f"k{i:04d}" for i in pk_ids], dtype=object),
            "vec": _vectors(rng, n),
            "tag": np.array([f"t{i % 5}-{i}" for i in pk_ids], dtype=object),
            "num": (pk_ids * 7).astype(np.int64),
        }
        kind = slot % 3
        if kind == 2:  # growing
            seg = Segment(slot, 1, schema)
            if n:
                seg.append(cols, n, 1)
        else:  # sealed, every other one with a FLAT index
            seg = Segment.from_columns(slot, 1, schema, cols, np.ones(n, np.uint64),
                                       np.full(n, MAX_TIMESTAMP, np.uint64))
            if kind == 1 and n:
                index = create_index("FLAT", metric, DIM, {}, DataType.FLOAT_VECTOR)
                index.build(cols["vec"])
                seg.indexes["vec"] = index
        if n and rng.random() < 0.5:  # some rows deleted before the snapshot
            seg.mark_deleted(np.flatnonzero(rng.random(n) < 0.3), 5)
        if n:  # as Shard.snapshot: no views of empty segments (executor.search fails on those alone)
            views.append(SegmentView(seg, n))
    return views


def _groups(rng: np.random.Generator, views: list[SegmentView]) -> list[list[SegmentView]]:
    """2 or 3 contiguous groups (a group may be empty)."""
    k = int(rng.integers(2, 4))
    cuts = np.sort(rng.integers(0, len(views) + 1, size=k - 1))
    bounds = [0, *cuts.tolist(), len(views)]
    return [views[bounds[i]:bounds[i + 1]] for i in range(k)]


def _assert_hits_equal(got: Hits, want: Hits) -> None:
    assert got.topks == want.topks
    assert all(type(t) is int for t in got.topks)
    assert got.pks.dtype == want.pks.dtype
    np.testing.assert_array_equal(got.pks, want.pks)
    assert got.scores.dtype == want.scores.dtype == np.float32
    np.testing.assert_array_equal(got.scores, want.scores)
    assert got.columns.keys() == want.columns.keys()
    for name, col in want.columns.items():
        assert got.columns[name].dtype == col.dtype, name
        assert got.columns[name].shape == col.shape, name
        np.testing.assert_array_equal(got.columns[name], col)


def _assert_columns_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, col in want.items():
        assert got[name].dtype == col.dtype, name
        assert got[name].shape == col.shape, name
        np.testing.assert_array_equal(got[name], col)


CASES = [(pk, metric, seed) for pk in (DataType.INT64, DataType.VARCHAR)
         for metric in ("L2", "IP", "COSINE") for seed in range(4)]


@pytest.mark.parametrize("ranged", [False, True], ids=["knn", "range"])
@pytest.mark.parametrize("pk_type,metric,seed", CASES)
def test_merge_hits_equals_one_search(pk_type, metric, seed, ranged):
    rng = np.random.default_rng(1000 * seed + 7 * int(pk_type) + len(metric) + ranged)
    views = _segments(rng, pk_type, metric)
    groups = _groups(rng, views)
    field = _schema(pk_type).field("vec")
    assert field is not None
    nq = int(rng.integers(1, 4))
    queries = _vectors(rng, nq)
    radius, range_filter = RANGES[metric] if ranged else (None, None)
    total = sum(v.n for v in views)
    for limit, offset in [(1, 0), (5, 0), (4, 3), (10, 7), (total + 5, 0), (3, total + 2), (total + 5, 2)]:
        if limit + offset == 0:
            continue
        outputs = ["vec", "tag", "num"] if offset % 2 == 0 else ["tag"]

        rf = range_filter if limit % 2 else None

        def spec(lim: int, off: int, rf: float | None = rf) -> SearchSpec:
            return SearchSpec(field, queries, lim, off, metric, {}, radius=radius, range_filter=rf,
                              ts=SNAPSHOT)

        want = executor.search(views, spec(limit, offset), "pk", outputs)
        parts = [executor.search(g, spec(limit + offset, 0), "pk", outputs) for g in groups]
        got = merge_hits(parts, nq, limit, offset, metric)
        _assert_hits_equal(got, want)
        # one part (the whole collection on one node) still gets offset and limit applied
        whole = executor.search(views, spec(limit + offset, 0), "pk", outputs)
        _assert_hits_equal(merge_hits([whole], nq, limit, offset, metric), want)


def test_merge_hits_ties_are_broken_by_primary_key():
    cols = {"tag": np.array(["a", "b", "c", "d"], dtype=object),
            "vec": np.arange(8, dtype=np.float32).reshape(4, 2)}
    a = Hits([2], np.array([9, 3], np.int64), np.array([1.0, 2.0], np.float32),
             {"tag": cols["tag"][:2], "vec": cols["vec"][:2]})
    b = Hits([2], np.array([1, 5], np.int64), np.array([1.0, 2.0], np.float32),
             {"tag": cols["tag"][2:], "vec": cols["vec"][2:]})
    got = merge_hits([a, b], 1, 3, 0, "L2")
    assert got.pks.tolist() == [1, 9, 3]
    assert got.columns["tag"].tolist() == ["c", "a", "b"]
    np.testing.assert_array_equal(got.columns["vec"], cols["vec"][[2, 0, 1]])
    got = merge_hits([a, b], 1, 3, 1, "IP")  # similarity: larger first
    assert got.pks.tolist() == [5, 1, 9] and got.scores.tolist() == [2.0, 1.0, 1.0]


def test_merge_hits_empty_parts():
    empty = Hits([0, 0], np.empty(0, np.int64), np.empty(0, np.float32))
    got = merge_hits([empty, empty], 2, 5, 1, "L2")
    assert got.topks == [0, 0] and len(got.pks) == 0 and got.columns == {}
    assert merge_hits([], 2, 5, 0, "L2").topks == [0, 0]
    one = Hits([1, 0], np.array(["x"], dtype=object), np.array([0.5], np.float32),
               {"tag": np.array(["t"], dtype=object)})
    got = merge_hits([empty, one, empty], 2, 5, 0, "COSINE")
    assert got.topks == [1, 0] and got.pks.tolist() == ["x"] and got.columns["tag"].tolist() == ["t"]
    assert got.pks.dtype == object


@pytest.mark.parametrize("pk_type", [DataType.INT64, DataType.VARCHAR])
@pytest.mark.parametrize("seed", range(6))
def test_merge_query_equals_one_query(pk_type, seed):
    rng = np.random.default_rng(seed + 50 * int(pk_type))
    views = _segments(rng, pk_type, "L2")
    groups = _groups(rng, views)
    total = sum(v.n for v in views)
    cases = [(None, 0), (3, 0), (5, 4), (None, 6), (total + 3, 0), (4, total + 1), (0, 2)]
    for limit, offset in cases:
        for outputs in (["pk", "vec", "tag"], ["tag", "vec", "num"], []):
            want = executor.query(views, SNAPSHOT, None, outputs, "pk", limit, offset)
            sorting = limit is not None or offset
            asked = outputs + (["pk"] if sorting and "pk" not in outputs else [])
            node_limit = None if limit is None else limit + offset
            parts = [executor.query(g, SNAPSHOT, None, asked, "pk", node_limit, 0) for g in groups]
            got = merge_query(parts, "pk", limit, offset, outputs)
            _assert_columns_equal(got, want)


def test_merge_query_no_parts_and_empty_parts():
    assert merge_query([], "pk", 3, 1, []) == {}
    with pytest.raises(ValueError):
        merge_query([], "pk", None, 0, ["pk"])
    untyped = {"pk": np.empty(0), "vec": np.empty(0)}  # an executor with no segments at all
    typed = {"pk": np.array([4, 2], np.int64), "vec": np.ones((2, 3), np.float32)}
    got = merge_query([untyped, typed, untyped], "pk", 1, 1, ["vec"])
    assert list(got) == ["vec"] and got["vec"].shape == (1, 3) and got["vec"].dtype == np.float32
    got = merge_query([untyped, typed], "pk", None, 0, ["pk", "vec"])
    assert got["pk"].tolist() == [4, 2] and got["pk"].dtype == np.int64
    empty_typed = {"pk": np.empty(0, object), "vec": np.empty((0, 3), np.float32)}
    got = merge_query([empty_typed, empty_typed], "pk", 2, 0, ["pk", "vec"])
    assert got["pk"].dtype == object and got["vec"].shape == (0, 3)


@pytest.mark.parametrize("pk_type,metric,seed", CASES[::2])
def test_a_segment_held_by_two_parts_counts_once(pk_type, metric, seed):
    """A segment caught mid-move is answered by two nodes: the merge is still the one search's or
    query's result (each key once, its best copy)."""
    rng = np.random.default_rng(seed + 300 * int(pk_type) + len(metric))
    views = _segments(rng, pk_type, metric)
    groups = _groups(rng, views)
    moving = views[int(rng.integers(len(views)))]
    groups = [g if moving in g else [*g, moving] for g in groups]  # every part holds it
    field = _schema(pk_type).field("vec")
    assert field is not None
    nq = 2
    queries = _vectors(rng, nq)
    total = sum(v.n for v in views)
    for limit, offset in [(1, 0), (5, 0), (4, 3), (total + 5, 0), (3, 2)]:
        def spec(lim: int, off: int) -> SearchSpec:
            return SearchSpec(field, queries, lim, off, metric, {}, ts=SNAPSHOT)

        want = executor.search(views, spec(limit, offset), "pk", ["tag"])
        parts = [executor.search(g, spec(limit + offset, 0), "pk", ["tag"]) for g in groups]
        _assert_hits_equal(merge_hits(parts, nq, limit, offset, metric), want)

        for lim, off in [(limit, offset), (None, 0)]:
            want_rows = executor.query(views, SNAPSHOT, None, ["pk", "tag"], "pk", lim, off)
            node_limit = None if lim is None else lim + off
            parts_q = [executor.query(g, SNAPSHOT, None, ["pk", "tag"], "pk", node_limit, 0) for g in groups]
            got = merge_query(parts_q, "pk", lim, off, ["pk", "tag"])
            if lim is None:  # unsorted: the same rows, each once
                order = np.argsort(got["pk"], kind="stable")
                got = {name: col[order] for name, col in got.items()}
                order = np.argsort(want_rows["pk"], kind="stable")
                want_rows = {name: col[order] for name, col in want_rows.items()}
            _assert_columns_equal(got, want_rows)


def test_element_hits_of_one_entity_are_not_merged_away():
    """Element-level hits (struct arrays) repeat a key with different element offsets: kept."""
    from vecdb.element_search import ELEMENT_COLUMN
    a = Hits([2], np.array([7, 7], np.int64), np.array([0.1, 0.2], np.float32),
             {ELEMENT_COLUMN: np.array([0, 3], np.int64)})
    b = Hits([2], np.array([7, 8], np.int64), np.array([0.1, 0.3], np.float32),
             {ELEMENT_COLUMN: np.array([0, 1], np.int64)})
    got = merge_hits([a, b], 1, 5, 0, "L2")
    assert got.pks.tolist() == [7, 7, 8] and got.columns[ELEMENT_COLUMN].tolist() == [0, 3, 1]
    assert got.topks == [3]

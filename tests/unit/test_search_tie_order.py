"""vecdb.querynode.executor: search pages (``offset``) over rows with equal distances.

An index cuts a tie group at its k-th hit by segment offset; the executor now takes each segment's
whole group at the cut, so the (distance, primary key) order decides for every k and the pages of a
search concatenate to the search with the larger limit (tests/e2e/test_paging_and_ties.py end to end).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_merge import _schema
from vecdb.index import create_index
from vecdb.querynode import executor
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.timestamp import MAX_TIMESTAMP


def _views(index_type: str, metric: str, seed: int,
           pk_type: DataType = DataType.INT64) -> tuple[list[SegmentView], np.ndarray, np.ndarray]:
    """Two sealed segments (indexed) and a growing one; 12 distinct vectors over 3,000 rows, primary
    keys shuffled (not in offset order)."""
    rng = np.random.default_rng(seed)
    palette = rng.random((12, 4), dtype=np.float32)
    pks = rng.permutation(3_000).astype(np.int64)
    vecs = palette[pks % 12]
    schema = _schema(pk_type)
    keys = pks if pk_type == DataType.INT64 else np.array([f"k{i:05d}" for i in pks], dtype=object)
    views = []
    for slot, (lo, hi) in enumerate(((0, 1_200), (1_200, 2_200), (2_200, 3_000))):
        n = hi - lo
        cols = {"pk": keys[lo:hi], "vec": vecs[lo:hi], "tag": np.array(["t"] * n, dtype=object),
                "num": pks[lo:hi] * 3}
        if slot < 2:
            seg = Segment.from_columns(slot, 1, schema, cols, np.ones(n, np.uint64),
                                       np.full(n, MAX_TIMESTAMP, np.uint64))
            params = {"HNSW": {"M": 8, "efConstruction": 40}, "IVF_FLAT": {"nlist": 4}}.get(index_type, {})
            index = create_index(index_type, metric, 4, params, DataType.FLOAT_VECTOR)
            index.build(cols["vec"])
            seg.indexes["vec"] = index
        else:
            seg = Segment(slot, 1, schema)
            seg.append(cols, n, 1)
        views.append(SegmentView(seg, n))
    return views, pks, vecs


@pytest.mark.parametrize(("index_type", "metric"), [("FLAT", "L2"), ("HNSW", "COSINE"), ("IVF_FLAT", "IP")])
@pytest.mark.parametrize("pk_type", [DataType.INT64, DataType.VARCHAR])
@pytest.mark.parametrize("seed", [0, 1])
def test_search_pages_concatenate_over_ties(index_type, metric, pk_type, seed):
    views, pks, vecs = _views(index_type, metric, seed, pk_type)
    field = views[0].segment.schema.field("vec")
    query = (vecs[0] + 0.01)[None, :]
    sp = {"ef": 1_500} if index_type == "HNSW" else {"nprobe": 4} if index_type == "IVF_FLAT" else {}

    def search(limit: int, offset: int = 0) -> list[tuple[float, int]]:
        spec = SearchSpec(field=field, queries=query, limit=limit, offset=offset, metric=metric, params=sp,
                          index_type=index_type, ts=10)
        hits = executor.search(views, spec, "pk", [])
        keys = hits.pks.tolist() if pk_type == DataType.INT64 else [int(k[1:]) for k in hits.pks.tolist()]
        return list(zip(hits.scores.tolist(), keys, strict=True))

    full = search(1_500)
    pages = [hit for off in range(0, 1_500, 100) for hit in search(100, off)]
    assert pages == full
    assert len({pk for _, pk in full}) == 1_500
    # every tie group in primary key order, and each group but the last whole (250 rows a vector)
    groups: dict[float, list[int]] = {}
    for d, pk in full:
        groups.setdefault(d, []).append(pk)
    assert all(members == sorted(members) for members in groups.values())
    assert [len(m) for m in groups.values()][:-1] == [250] * (len(groups) - 1)
    # the first group: every key of the best vector (row i holds palette[pk % 12])
    nearest = pks[(pks % 12) == (full[0][1] % 12)]
    assert list(groups.values())[0] == sorted(nearest.tolist())


def test_hamming_ties_widen_past_the_margin():
    """BIN_FLAT: a group at the cut larger than the scan's 64 extra hits is widened until whole."""
    rng = np.random.default_rng(5)
    n = 4_000
    codes = rng.integers(0, 256, (n, 2), dtype=np.uint8)  # 16 bits: groups of hundreds per distance
    pks = rng.permutation(n).astype(np.int64)
    schema = CollectionSchema("b", [FieldSchema("pk", DataType.INT64, 100, is_primary=True),
                                    FieldSchema("vec", DataType.BINARY_VECTOR, 101, dim=16)])
    cols = {"pk": pks, "vec": codes}
    seg = Segment.from_columns(0, 1, schema, cols, np.ones(n, np.uint64), np.full(n, MAX_TIMESTAMP, np.uint64))
    index = create_index("BIN_FLAT", "HAMMING", 16, {}, DataType.BINARY_VECTOR)
    index.build(codes)
    seg.indexes["vec"] = index
    views = [SegmentView(seg, n)]
    field = schema.field("vec")
    q = codes[:1]

    def search(limit: int, offset: int = 0) -> list[tuple[float, int]]:
        spec = SearchSpec(field=field, queries=q, limit=limit, offset=offset, metric="HAMMING", params={},
                          index_type="BIN_FLAT", ts=10)
        hits = executor.search(views, spec, "pk", [])
        return list(zip(hits.scores.tolist(), hits.pks.tolist(), strict=True))

    dist = np.unpackbits(codes ^ codes[0], axis=1).sum(axis=1)
    want = sorted(zip(dist.astype(float).tolist(), pks.tolist()))
    for limit, offset in ((10, 0), (10, 5), (300, 0), (200, 700)):
        assert search(limit, offset) == want[offset:offset + limit]


@pytest.mark.parametrize("index_type", ["FLAT", "HNSW", "IVF_FLAT"])
def test_a_tie_group_larger_than_any_top_k_is_searched_within_the_limits(index_type):
    """20,000 identical vectors in one segment: a search of 10 (its tie group goes on past every
    widening) and one of limit + offset = 16,384 (the largest a search takes) answer, never asking an
    index for more hits than it takes (16,385 was refused: "topk [16385] is invalid")."""
    n = 20_000
    schema = _schema(DataType.INT64)
    pks = np.random.default_rng(3).permutation(n).astype(np.int64)
    vecs = np.ones((n, 4), np.float32)
    cols = {"pk": pks, "vec": vecs, "tag": np.array(["t"] * n, dtype=object), "num": pks}
    seg = Segment.from_columns(0, 1, schema, cols, np.ones(n, np.uint64), np.full(n, MAX_TIMESTAMP, np.uint64))
    params = {"HNSW": {"M": 8, "efConstruction": 40}, "IVF_FLAT": {"nlist": 4}}.get(index_type, {})
    index = create_index(index_type, "L2", 4, params, DataType.FLOAT_VECTOR)
    index.build(vecs)
    seg.indexes["vec"] = index
    views = [SegmentView(seg, n)]
    sp = {"ef": 64} if index_type == "HNSW" else {"nprobe": 4} if index_type == "IVF_FLAT" else {}
    for limit, offset in ((10, 0), (16_000, 384)):
        spec = SearchSpec(field=schema.field("vec"), queries=vecs[:1], limit=limit, offset=offset, metric="L2",
                          params={**sp, "ef": limit + offset} if index_type == "HNSW" and offset else sp,
                          index_type=index_type, ts=10)
        hits = executor.search(views, spec, "pk", [])
        assert hits.topks == [limit] and len(set(hits.pks.tolist())) == limit
        assert np.all(hits.scores == 0)

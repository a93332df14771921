"""Filtered HNSW search keeps the recall of the unfiltered search (vecdb.index.faiss_index,
``FILTER_EF_POWER``): FAISS keeps every visited row in its ef-wide beam but returns only the rows
the mask keeps, so the index widens ef for a mask; and the widened beam counts when the index
decides to scan the kept rows exactly instead."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecdb.index import brute_force_range, brute_force_search, create_index, faiss_index
from vecdb.index.faiss_index import FaissIndex
from vecdb.schema import DataType

N, DIM, K, EF = 20000, 32, 10, 10


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth)) / truth.size


@pytest.fixture(scope="module")
def clustered():
    """20k x 32 around 100 centres, an HNSW graph over them, 200 queries from the same model."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((100, DIM)).astype(np.float32)
    x = (centers[rng.integers(0, 100, N)] + 0.5 * rng.standard_normal((N, DIM))).astype(np.float32)
    q = (centers[rng.integers(0, 100, 200)] + 0.5 * rng.standard_normal((200, DIM))).astype(np.float32)
    index = create_index("HNSW", "L2", DIM, {"M": 16, "efConstruction": 100}, DataType.FLOAT_VECTOR)
    index.build(x)
    return x, q, index


@pytest.fixture
def graph_only(monkeypatch):
    """Keep filtered searches on the graph: at 20k x 32 every mask is a scan cheaper than the
    graph (SMALL_SCAN_WORK), which would hide what the beam finds. Returns the list of
    (exhaustive, number of queries) of each FAISS search."""
    monkeypatch.setattr(faiss_index, "SMALL_SCAN_WORK", 0)
    monkeypatch.setattr(faiss_index, "BEAM_SCAN_RATIO", 1)
    calls: list[tuple[bool, int]] = []
    run = FaissIndex._run_search

    def counting(self, q, k, sp, sel, mask, exhaustive, nvalid):
        calls.append((exhaustive, len(q)))
        return run(self, q, k, sp, sel, mask, exhaustive, nvalid)

    monkeypatch.setattr(FaissIndex, "_run_search", counting)
    return calls


def _graph_answered(calls: list[tuple[bool, int]], nq: int) -> bool:
    """The graph answered: the first search was not a scan, and the queries it left short of
    k hits (rescanned exactly) are few."""
    return not calls[0][0] and sum(n for exhaustive, n in calls[1:] if exhaustive) <= nq // 20


@pytest.mark.parametrize("kept", [0.1, 0.3])
def test_filtered_search_reaches_unfiltered_recall(clustered, graph_only, monkeypatch, kept):
    x, q, index = clustered
    valid = np.random.default_rng(int(kept * 100)).random(N) < kept
    _, found = index.search(q, K, {"ef": EF})
    unfiltered = _recall(found, brute_force_search(x, q, K, "L2")[1])
    truth = brute_force_search(x, q, K, "L2", valid=valid)[1]

    d, found = index.search(q, K, {"ef": EF}, valid=valid)
    assert _graph_answered(graph_only, len(q))
    assert valid[found].all() and (found >= 0).all()
    assert np.all(np.diff(d, axis=1) >= 0)
    filtered = _recall(found, truth)
    assert filtered >= unfiltered - 0.02, (filtered, unfiltered)

    # the same search with the beam as asked loses what the widening wins back (the test discriminates)
    monkeypatch.setattr(faiss_index, "FILTER_EF_POWER", 0.0)
    _, narrow = index.search(q, K, {"ef": EF}, valid=valid)
    assert _recall(narrow, truth) < filtered - 0.05


def test_filtered_nq1_matches_the_batch(clustered, graph_only):
    x, q, index = clustered
    valid = np.random.default_rng(3).random(N) < 0.2
    d, found = index.search(q[:20], K, {"ef": EF}, valid=valid)
    for j in range(20):
        dj, fj = index.search(q[j:j + 1], K, {"ef": EF}, valid=valid)
        np.testing.assert_array_equal(fj[0], found[j])
        np.testing.assert_allclose(dj[0], d[j], rtol=1e-5)


def test_filtered_range_search_finds_the_kept_rows_in_range(clustered, graph_only, monkeypatch):
    x, q, index = clustered
    modes = []
    filter_mode = FaissIndex._filter_mode

    def recording(self, *a):
        out = filter_mode(self, *a)
        modes.append((out[2], out[3]["ef"]))
        return out

    monkeypatch.setattr(FaissIndex, "_filter_mode", recording)
    valid = np.random.default_rng(5).random(N) < 0.2
    radius = float(np.quantile(brute_force_search(x, q, 50, "L2")[0][:, -1], 0.5))
    got = index.range_search(q, radius, None, {"ef": EF}, valid=valid)
    want = brute_force_range(x, q, radius, None, "L2", valid=valid)
    assert modes == [(False, math.ceil(EF / math.sqrt(valid.mean())))]  # the graph, its beam widened
    found = sum(len(np.intersect1d(g[1], w[1])) for g, w in zip(got, want))
    total = sum(len(w[1]) for w in want)
    assert total > 0 and found >= 0.9 * total, (found, total)
    for dist, ids in got:
        assert valid[ids].all() and (dist < radius).all()


def test_widened_beam_decides_the_scan():
    """With the real constants: 100k x 50 rows, ef=64 (GloVe's bench). 20% kept searches the graph
    with ef = ceil(64 / sqrt(0.2)); at 10% a batch's widened beam (203) x BEAM_SCAN_RATIO covers
    the 10,000 kept rows, so a batch scans them exactly (BLAS), while one query keeps the graph."""
    index = FaissIndex("HNSW", "L2", 50, {"M": 16, "efConstruction": 200})
    n = 100_000
    sp = {"ef": 64}
    for nq in (1, 100):
        mask, nvalid, exhaustive, wide = index._filter_mode(np.arange(n) % 10 < 2, K, n, sp, nq)
        assert (nvalid, exhaustive, wide["ef"]) == (20_000, False, math.ceil(64 / math.sqrt(0.2)))
    assert sp == {"ef": 64}  # the caller's (shared, memoised) parameters are not changed
    tenth = np.arange(n) % 10 < 1
    assert index._filter_mode(tenth, K, n, sp, 100)[2] is True
    one = index._filter_mode(tenth, K, n, sp, 1)
    assert one[2] is False and one[3]["ef"] == math.ceil(64 * math.sqrt(10))
    # a large top-k widens from k, the larger of the two
    assert index._filter_mode(np.arange(n) % 2 < 1, 500, n, sp, 1)[3]["ef"] == math.ceil(500 * math.sqrt(2))
    # unfiltered (no mask, or a mask keeping every row): the parameters pass through untouched
    for m in (None, np.ones(n, bool)):
        out = index._filter_mode(m, K, n, sp, 1)
        assert out[0] is None and out[1] == n and out[2] is False and out[3] is sp

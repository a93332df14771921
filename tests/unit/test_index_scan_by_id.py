"""A filtered exact scan of a few queries over a flat store reads the kept rows by id (FAISS's knn_*_by_idx):
the same hits and distances as the exact search among the kept rows, for every float metric and store, with
no gathered copy of the rows (a copy is a fresh mapping page-faulted on every search in a server)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vecdb.index import brute_force_search, create_index, faiss_index
from vecdb.schema import DataType

N, DIM, K = 4000, 24, 10


def _refuse_gather(*a, **kw):
    raise AssertionError("a gathered copy of the kept rows")


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
@pytest.mark.parametrize("index_type", ["FLAT", "HNSW"])
def test_few_queries_scan_the_kept_rows_by_id(index_type, metric, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    q = rng.standard_normal((5, DIM)).astype(np.float32)
    idx = create_index(index_type, metric, DIM, {"M": 16, "efConstruction": 64} if index_type == "HNSW" else {},
                       DataType.FLOAT_VECTOR)
    idx.build(x)
    kept = (np.arange(N) % 100) < 5  # 5%: HNSW scans (EXHAUSTIVE_VALID_FRACTION), in runs as a range filter keeps
    truth = {nq: brute_force_search(x, q[:nq], K, metric, valid=kept) for nq in (1, 5)}
    monkeypatch.setattr(faiss, "knn", _refuse_gather)
    for nq, (td, ti) in truth.items():
        d, i = idx.search(q[:nq], K, {"ef": 32}, valid=kept)
        np.testing.assert_array_equal(i, ti)
        np.testing.assert_allclose(d, td, rtol=1e-4, atol=1e-4)
    # fewer kept rows than k: the rest padded (-1, the metric's worst distance)
    few = np.zeros(N, bool)
    few[[7, 1999, 3998]] = True
    d, i = idx.search(q[:2], K, {"ef": 32}, valid=few)
    assert (np.sort(i[:, :3], axis=1) == [7, 1999, 3998]).all() and (i[:, 3:] == -1).all()
    assert np.isinf(d[:, 3:]).all()


def test_a_mask_keeping_most_rows_uses_the_selector(monkeypatch):
    """Above SUBSET_SCAN_FRACTION (and SMALL_GATHER_WORK) FAISS's selector scan is as fast: no by-id scan."""
    monkeypatch.setattr(faiss_index, "SMALL_GATHER_WORK", 0)
    calls = []
    monkeypatch.setattr(faiss_index.FaissIndex, "_scan_by_id", lambda *a: calls.append(a))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    idx = create_index("FLAT", "L2", DIM, {}, DataType.FLOAT_VECTOR)
    idx.build(x)
    half = rng.random(N) < 0.5
    d, i = idx.search(x[:3], K, {}, valid=half)
    assert not calls
    np.testing.assert_array_equal(i, brute_force_search(x, x[:3], K, "L2", valid=half)[1])

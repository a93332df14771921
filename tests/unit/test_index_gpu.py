"""GPU indexes (vecdb/index/gpu*.py) against the exact NumPy reference.

Every behaviour test runs twice: on CuPy (marked ``gpu``, skipped without a
CUDA device) and on NumPy standing in for CuPy (same algorithms, small data,
runs everywhere). Tests that need no array module at all (the
IndexNotSupported message, the memory refusal) run everywhere too.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from vecdb.errors import IndexNotSupported, MemoryLimitExceeded
from vecdb.index import gpu as gpu_mod
from vecdb.index import gpu_base
from vecdb.index.bruteforce import brute_force_range, brute_force_search
from vecdb.index.factory import create_index
from vecdb.index.gpu_cagra import reverse_edge_graph
from vecdb.index.gpu_ops import assemble_range, select_topk
from vecdb.index.index_file import read_index_file
from vecdb.index.params import validate_index_params
from vecdb.schema import DataType

N, DIM, NQ, K = 4000, 32, 40, 10
BUILD = {
    "GPU_BRUTE_FORCE": {},
    "GPU_IVF_FLAT": {"nlist": 32},
    "GPU_IVF_PQ": {"nlist": 32, "m": 16, "nbits": 8},
    "GPU_CAGRA": {"intermediate_graph_degree": 32, "graph_degree": 16},
}
SEARCH = {"GPU_BRUTE_FORCE": {}, "GPU_IVF_FLAT": {"nprobe": 8}, "GPU_IVF_PQ": {"nprobe": 8}, "GPU_CAGRA": {}}
EXACT_SEARCH = {"GPU_BRUTE_FORCE": {}, "GPU_IVF_FLAT": {"nprobe": 32}}  # nprobe = nlist is exact
MIN_RECALL = {"GPU_BRUTE_FORCE": 1.0, "GPU_IVF_FLAT": 0.9, "GPU_IVF_PQ": 0.5, "GPU_CAGRA": 0.9}
TYPES = list(BUILD)
METRICS = ["L2", "IP"]


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    if request.param == "numpy":
        return np
    cupy = pytest.importorskip("cupy")
    if not gpu_mod.gpu_available():
        pytest.skip("needs a CUDA device")
    return cupy


@pytest.fixture(scope="module")
def data():
    """Clustered rows (low intrinsic dimension, like real embeddings) and queries near them."""
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(64, DIM)).astype(np.float32) * 2
    x = centers[rng.integers(0, 64, N)] + rng.normal(size=(N, DIM)).astype(np.float32)
    q = centers[rng.integers(0, 64, NQ)] + rng.normal(size=(NQ, DIM)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32)


_BUILT: dict = {}


def built(xp, index_type, metric, data):
    """One built index per (backend, type, metric), shared by the read-only tests."""
    key = (xp.__name__, index_type, metric)
    if key not in _BUILT:
        idx = make(xp, index_type, metric)
        idx.build(data[0])
        _BUILT[key] = idx
    return _BUILT[key]


def make(xp, index_type, metric, dim=DIM, **overrides):
    p = validate_index_params(index_type, metric, DataType.FLOAT_VECTOR, dim, {**BUILD[index_type], **overrides},
                              require_gpu=False)
    p.pop("index_type"), p.pop("metric_type")
    return gpu_mod.create_gpu_index(index_type, metric, dim, p, DataType.FLOAT_VECTOR, xp=xp)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    hits = sum(len(set(g[g >= 0]) & set(w[w >= 0])) for g, w in zip(got, want))
    return hits / max(1, int((want >= 0).sum()))


# --- no GPU ---------------------------------------------------------------------
def test_create_without_gpu_raises_index_not_supported(monkeypatch):
    monkeypatch.setattr(gpu_mod, "gpu_available", lambda: False)
    for index_type in TYPES:
        with pytest.raises(IndexNotSupported, match=f"GPU index {index_type} needs a GPU; none is available"):
            create_index(index_type, "L2", DIM, BUILD[index_type], DataType.FLOAT_VECTOR)


def test_memory_refusal_quotes_need_and_free(monkeypatch):
    monkeypatch.setattr(gpu_base, "gpu_free_bytes", lambda: int(7.9 * (1 << 30)))
    params = validate_index_params("GPU_IVF_FLAT", "L2", DataType.FLOAT_VECTOR, 128, {"nlist": 1024},
                                   require_gpu=False)
    need = gpu_mod.estimate_gpu_bytes("GPU_IVF_FLAT", 50_000_000, 128, params)
    assert need > 25 * (1 << 30)  # 50M x 128 float32 alone is 23.8 GiB
    with pytest.raises(MemoryLimitExceeded) as e:
        gpu_mod.check_gpu_fits("GPU_IVF_FLAT", 50_000_000, 128, params)
    m = re.fullmatch(r"GPU_IVF_FLAT needs ~([\d.]+) GiB of GPU memory, 7\.9 GiB is free", e.value.message)
    assert m and abs(float(m.group(1)) - need / (1 << 30)) < 0.1
    gpu_mod.check_gpu_fits("GPU_IVF_FLAT", 100_000, 128, params)  # ~0.6 GiB fits


@pytest.mark.parametrize("index_type", TYPES)
def test_estimates_grow_with_rows(index_type):
    p = validate_index_params(index_type, "L2", DataType.FLOAT_VECTOR, 128, {**BUILD[index_type], "m": 16},
                              require_gpu=False)
    small, big = (gpu_mod.estimate_gpu_bytes(index_type, n, 128, p) for n in (10_000, 1_000_000))
    assert big > small > gpu_mod.WORKSPACE_BYTES
    held = gpu_mod.estimate_gpu_bytes(index_type, 1_000_000, 128, p, building=False)
    assert gpu_mod.WORKSPACE_BYTES < held <= big


# --- kernels --------------------------------------------------------------------
def test_select_topk_matches_stable_sort_on_wide_rows_with_ties():
    rng = np.random.default_rng(3)
    key = rng.integers(0, 50, size=(6, 5000)).astype(np.float32)  # many ties, wide rows (selection path)
    key[2, :] = np.inf
    key[2, 17] = 1.0
    cols, vals = select_topk(np, key, 20)
    want = np.argsort(key, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(vals, np.take_along_axis(key, want, 1))
    np.testing.assert_array_equal(cols, want)


def test_assemble_range_sorts_per_query_and_cuts_to_limit():
    rows = np.array([1, 0, 1, 1, 0])
    d = np.array([0.5, 0.2, 0.1, 0.5, 0.3], np.float32)
    ids = np.array([9, 4, 3, 2, 8])
    out = assemble_range(3, rows, d, ids, similarity=False, limit=2)
    assert [o[1].tolist() for o in out] == [[4, 8], [3, 2], []]
    out = assemble_range(3, rows, d, ids, similarity=True, limit=None)
    assert [o[1].tolist() for o in out] == [[8, 4], [2, 9, 3], []]


def test_reverse_edge_graph_makes_an_isolated_row_reachable():
    # 1-D points 0, 1, 2, 3, 10: nobody lists row 4 among its 2 nearest.
    knn = np.array([[1, 2, 3], [0, 2, 3], [1, 3, 0], [2, 1, 0], [3, 2, 1]], np.int32)
    g = reverse_edge_graph(np, knn, 2)
    assert g.tolist() == [[1, 2], [0, 2], [1, 3], [2, 4], [3, 2]]


# --- behaviour, on both backends ---------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index_type", TYPES)
def test_recall_against_brute_force(xp, data, index_type, metric):
    x, q = data
    idx = built(xp, index_type, metric, data)
    want_d, want_i = brute_force_search(x, q, K, metric)
    d, i = idx.search(q, K, SEARCH[index_type])
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == i.shape == (NQ, K)
    assert recall(i, want_i) >= MIN_RECALL[index_type]
    order = d if metric == "L2" else -d
    assert (np.diff(order, axis=1) >= 0).all()  # best first
    if index_type in EXACT_SEARCH:
        d, i = idx.search(q, K, EXACT_SEARCH[index_type])
        assert recall(i, want_i) == 1.0
        np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-3)
    if index_type != "GPU_IVF_PQ":  # exact distances for what is returned
        exact = np.where(i >= 0, _exact_distance(x, q, i, metric), d)
        np.testing.assert_allclose(d, exact, rtol=1e-4, atol=1e-3)


def _exact_distance(x, q, ids, metric):
    rows = x[np.maximum(ids, 0)]
    if metric == "L2":
        return ((rows - q[:, None, :]) ** 2).sum(axis=2)
    return (rows * q[:, None, :]).sum(axis=2)


@pytest.mark.parametrize("fraction", [0.01, 0.5])
@pytest.mark.parametrize("index_type", TYPES)
def test_filtered_search(xp, data, index_type, fraction):
    x, q = data
    idx = built(xp, index_type, "L2", data)
    valid = np.random.default_rng(11).random(N) < fraction
    _, want_i = brute_force_search(x, q, K, "L2", valid)
    _, i = idx.search(q, K, SEARCH[index_type], valid=valid)
    assert valid[i[i >= 0]].all()
    assert ((i >= 0).sum(axis=1) == min(K, int(valid.sum()))).all()  # never short
    floor = 1.0 if fraction == 0.01 and index_type != "GPU_IVF_PQ" else MIN_RECALL[index_type]
    assert recall(i, want_i) >= floor


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index_type", TYPES)
def test_range_search(xp, data, index_type, metric):
    x, q = data
    idx = built(xp, index_type, metric, data)
    exact_d, _ = brute_force_search(x, q, 50, metric)
    radius = float(np.median(exact_d[:, 20]))
    rf = float(np.median(exact_d[:, 2]))
    params = {"nprobe": 32} if "IVF" in index_type else {}
    got = idx.range_search(q, radius, rf, params, limit=15)
    assert len(got) == NQ
    for gd, gi in got:
        assert len(gd) == len(gi) <= 15
        inside = (gd < radius) & (gd >= rf) if metric == "L2" else (gd > radius) & (gd <= rf)
        assert inside.all()
        assert (np.diff(gd if metric == "L2" else -gd) >= 0).all()
    if index_type == "GPU_IVF_PQ":
        return
    eps = 1e-3 * max(1.0, abs(radius))
    lo = brute_force_range(x, q, radius - eps if metric == "L2" else radius + eps, rf, metric)
    hi = brute_force_range(x, q, radius + eps if metric == "L2" else radius - eps, rf, metric)
    unlimited = idx.range_search(q, radius, rf, params)
    for r, ((gd, gi), (_, li), (_, hi_i)) in enumerate(zip(unlimited, lo, hi)):
        assert set(li) <= set(gi) <= set(hi_i)
        np.testing.assert_allclose(gd, _exact_distance(x, q[r:r + 1], gi[None], metric)[0], rtol=1e-4, atol=1e-3)
    assert sum(len(g[1]) for g in unlimited) > NQ  # the radius admits something


@pytest.mark.parametrize("index_type", TYPES)
def test_padding_and_filtered_range(xp, data, index_type):
    x, q = data
    idx = make(xp, index_type, "IP")
    idx.build(x[:30])
    d, i = idx.search(q[:3], 40, {})
    assert (i[:, :30] >= 0).all() and (i[:, 30:] == -1).all() and np.isneginf(d[:, 30:]).all()
    valid = np.zeros(30, bool)
    valid[[3, 7]] = True
    d, i = idx.search(q[:3], 5, {}, valid=valid)
    assert set(i[:, :2].ravel()) == {3, 7} and (i[:, 2:] == -1).all() and np.isneginf(d[:, 2:]).all()
    got = idx.range_search(q[:3], -1e9, None, {}, valid=valid)
    assert [sorted(g[1].tolist()) for g in got] == [[3, 7]] * 3
    empty = make(xp, index_type, "L2")
    d, i = empty.search(q[:2], 3, {})
    assert (i == -1).all() and np.isposinf(d).all()


@pytest.mark.parametrize("index_type", TYPES)
def test_add_continues_offsets(xp, data, index_type):
    x, q = data
    idx = make(xp, index_type, "L2")
    idx.build(x[:3000])
    idx.add(x[3000:])
    assert idx.ntotal == N
    _, want_i = brute_force_search(x, q, K, "L2")
    _, i = idx.search(q, K, EXACT_SEARCH.get(index_type, SEARCH[index_type]))
    assert recall(i, want_i) >= MIN_RECALL[index_type]
    assert (i >= 3000).any()


@pytest.mark.parametrize("index_type", TYPES)
def test_save_load_round_trip(xp, data, tmp_path, index_type):
    _, q = data
    idx = built(xp, index_type, "L2", data)
    path = str(tmp_path / "idx.bin")
    idx.save(path)
    meta, _, _ = read_index_file(path)
    assert meta["kind"] == "gpu" and meta["index_type"] == index_type and meta["ntotal"] == N
    loaded = gpu_mod.load_gpu_index(path, xp=xp if xp is np else None)
    assert type(loaded) is type(idx) and loaded.ntotal == N
    for a, b in zip(idx.search(q, K, SEARCH[index_type]), loaded.search(q, K, SEARCH[index_type])):
        np.testing.assert_array_equal(a, b)


def test_memory_refusal_leaves_index_unchanged(xp, data, monkeypatch):
    x, q = data
    idx = make(xp, "GPU_IVF_FLAT", "L2")
    idx.build(x[:1000])
    idx.check_memory = True
    if xp is np:
        monkeypatch.setattr(gpu_base, "gpu_free_bytes", lambda: 64 << 20)
    else:
        xp.get_default_memory_pool().free_all_blocks()
        monkeypatch.setattr(xp.cuda.runtime, "memGetInfo", lambda: (64 << 20, 80 << 30))
    with pytest.raises(MemoryLimitExceeded, match=r"GPU_IVF_FLAT needs ~[\d.]+ GiB of GPU memory, [\d.]+ GiB is free"):
        idx.add(x[1000:])
    assert idx.ntotal == 1000
    with pytest.raises(MemoryLimitExceeded):
        idx.build(x)
    assert idx.ntotal == 1000 and (idx.search(q, K, {"nprobe": 32})[1] >= 0).all()

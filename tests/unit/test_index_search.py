"""Every CPU index against the brute-force reference: recall, distances, filters, range, persistence."""

import threading

import numpy as np
import pytest

from vecdb.errors import InvalidParameter, OperationNotSupported
from vecdb.index import brute_force_range, brute_force_search, create_index, faiss_index, is_similarity, load_index
from vecdb.schema import DataType

F, BIN = DataType.FLOAT_VECTOR, DataType.BINARY_VECTOR
N, DIM, NQ, K = 5000, 32, 50, 10


@pytest.fixture(autouse=True, scope="module")
def _single_omp_thread():
    """One OpenMP thread: these small searches gain nothing from more, and on a
    shared machine OpenMP's spin-waiting threads make timings erratic."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _clustered(rng, n, centers):
    return (centers[rng.integers(0, len(centers), n)] + rng.standard_normal((n, DIM))).astype(np.float32)


_rng = np.random.default_rng(42)
_centers = _rng.standard_normal((50, DIM)) * 3
X = _clustered(_rng, N, _centers)
Q = _clustered(_rng, NQ, _centers)
_bcenters = _rng.integers(0, 256, (40, 16), dtype=np.uint8)


def _noisy_bits(rng, n):
    bits = np.unpackbits(_bcenters[rng.integers(0, 40, n)], axis=1) ^ (rng.random((n, 128)) < 0.1)
    return np.packbits(bits, axis=1)


XB = _noisy_bits(_rng, 3000)
QB = _noisy_bits(_rng, 30)

# (index_type, build params, search params, recall floor per metric); exact=True: distances are exact
FLOAT_CASES = {
    "FLAT": ({}, {}, {"L2": 1.0, "IP": 1.0, "COSINE": 1.0}),
    "IVF_FLAT": ({"nlist": 32}, {"nprobe": 32}, {"L2": 1.0, "IP": 1.0, "COSINE": 1.0}),
    "IVF_SQ8": ({"nlist": 32}, {"nprobe": 8}, {"L2": 0.9, "IP": 0.85, "COSINE": 0.85}),
    "IVF_PQ": ({"nlist": 32, "m": 16}, {"nprobe": 8}, {"L2": 0.7, "IP": 0.5, "COSINE": 0.55}),
    "HNSW": ({"M": 16, "efConstruction": 100}, {"ef": 64}, {"L2": 0.95, "IP": 0.95, "COSINE": 0.95}),
    "SCANN": ({"nlist": 32}, {"nprobe": 8, "reorder_k": 100}, {"L2": 0.95, "IP": 0.95, "COSINE": 0.95}),
}
EXACT_DISTANCES = {"FLAT", "IVF_FLAT", "HNSW", "SCANN"}
METRICS = ["L2", "IP", "COSINE"]
_cache: dict = {}


def built(index_type, metric, build_params=None):
    key = (index_type, metric, repr(build_params))
    if key not in _cache:
        bp = FLOAT_CASES[index_type][0] if build_params is None else build_params
        idx = create_index(index_type, metric, DIM, bp, F)
        idx.build(X)
        _cache[key] = idx
    return _cache[key]


def built_binary(index_type, metric):
    key = (index_type, metric)
    if key not in _cache:
        idx = create_index(index_type, metric, 128, {"nlist": 16} if "IVF" in index_type else {}, BIN)
        idx.build(XB)
        _cache[key] = idx
    return _cache[key]


def recall(found, truth):
    return np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, np.sum(b >= 0)) for a, b in zip(found, truth)])


def assert_sorted(d, metric):
    diffs = np.diff(np.where(np.isfinite(d), d, np.nan), axis=1)
    diffs = diffs[~np.isnan(diffs)]
    assert np.all(diffs <= 1e-6) if is_similarity(metric) else np.all(diffs >= -1e-6)


# --- recall and distances ---------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index_type", list(FLOAT_CASES))
def test_recall_and_distances(index_type, metric):
    _, sp, floors = FLOAT_CASES[index_type]
    idx = built(index_type, metric)
    assert idx.ntotal == N
    d, i = idx.search(Q, K, sp)
    assert d.shape == (NQ, K) and d.dtype == np.float32 and i.dtype == np.int64
    d_ref, i_ref = brute_force_search(X, Q, K, metric)
    r = recall(i, i_ref)
    assert r >= floors[metric], f"{index_type}/{metric} recall {r:.3f}"
    assert_sorted(d, metric)
    if index_type in EXACT_DISTANCES:  # reported distances are the true ones for the returned rows
        full_d, full_i = brute_force_search(X, Q, N, metric)
        lookup = np.empty_like(full_d)
        np.put_along_axis(lookup, full_i, full_d, axis=1)
        np.testing.assert_allclose(d, np.take_along_axis(lookup, i, axis=1), rtol=1e-3, atol=1e-3)


def test_scann_without_raw_data_and_default_reorder():
    idx = built("SCANN", "L2", {"nlist": 32, "with_raw_data": False})
    d, i = idx.search(Q, K, {"nprobe": 32})
    assert recall(i, brute_force_search(X, Q, K, "L2")[1]) >= 0.2
    assert_sorted(d, "L2")
    with_raw = built("SCANN", "L2")
    assert recall(with_raw.search(Q, K, {"nprobe": 32})[1], brute_force_search(X, Q, K, "L2")[1]) >= 0.2


@pytest.mark.parametrize("metric", ["HAMMING", "JACCARD"])
@pytest.mark.parametrize("index_type", ["BIN_FLAT", "BIN_IVF_FLAT"])
def test_binary_indexes(index_type, metric):
    idx = built_binary(index_type, metric)
    d_ref, i_ref = brute_force_search(XB, QB, K, metric)
    d, i = idx.search(QB, K, {"nprobe": 16})  # nprobe = nlist: exhaustive
    np.testing.assert_allclose(d, d_ref, atol=1e-6)  # ties in binary distances: compare distances
    ref_all = brute_force_search(XB, QB, len(XB), metric)
    lookup = np.empty_like(ref_all[0])
    np.put_along_axis(lookup, ref_all[1], ref_all[0], axis=1)
    np.testing.assert_allclose(np.take_along_axis(lookup, i, axis=1), d, atol=1e-6)
    if index_type == "BIN_IVF_FLAT":
        d2, i2 = idx.search(QB, K, {"nprobe": 4})
        assert np.mean(np.isclose(d2, d_ref)) >= 0.8
        assert_sorted(d2, metric)


# --- padding --------------------------------------------------------------
@pytest.mark.parametrize("index_type", list(FLOAT_CASES) + ["BIN_FLAT", "BIN_IVF_FLAT"])
def test_padding_with_fewer_rows_than_k(index_type):
    binary = index_type.startswith("BIN")
    metric = "HAMMING" if binary else "IP"
    bp = {"m": 4} if index_type == "IVF_PQ" else {}
    idx = create_index(index_type, metric, 128 if binary else DIM, bp, BIN if binary else F)
    data = XB[:5] if binary else X[:5]
    idx.build(data)
    sp = {"ef": 20} if index_type == "HNSW" else {"reorder_k": 20} if index_type == "SCANN" else {}
    d, i = idx.search(QB[:3] if binary else Q[:3], 20, sp)
    assert d.shape == (3, 20)
    assert np.all(np.sort(i[:, :5], axis=1) == np.arange(5))
    assert np.all(i[:, 5:] == -1)
    assert np.all(d[:, 5:] == (np.inf if binary else -np.inf))
    empty = create_index(index_type, metric, 128 if binary else DIM, bp, BIN if binary else F)
    d, i = empty.search(QB[:2] if binary else Q[:2], 3, sp)
    assert np.all(i == -1) and empty.ntotal == 0


# --- filtering --------------------------------------------------------------
def _exact_among(mask, metric, k=K, x=X, q=Q):
    return brute_force_search(x, q, k, metric, valid=mask)


@pytest.mark.parametrize("index_type", list(FLOAT_CASES))
def test_filtered_search_half_and_one_percent(index_type):
    metric = "COSINE" if index_type in ("HNSW", "IVF_SQ8") else "L2"
    _, sp, floors = FLOAT_CASES[index_type]
    idx = built(index_type, metric)
    rng = np.random.default_rng(1)
    half = rng.random(N) < 0.5
    d, i = idx.search(Q, K, sp, valid=half)
    assert np.all(half[i[i >= 0]]) and np.all(i >= 0)
    assert recall(i, _exact_among(half, metric)[1]) >= floors[metric] - 0.1
    one = np.zeros(N, bool)
    one[rng.choice(N, 50, replace=False)] = True
    d, i = idx.search(Q, K, sp, valid=one)
    d_ref, i_ref = _exact_among(one, metric)
    assert np.all(one[i])
    if index_type in EXACT_DISTANCES:
        np.testing.assert_array_equal(np.sort(i, axis=1), np.sort(i_ref, axis=1))
    else:
        assert recall(i, i_ref) >= 0.5


@pytest.mark.parametrize("index_type", ["FLAT", "HNSW"])
@pytest.mark.parametrize("gather_work", [0, None])
def test_filtered_batch_and_single_queries_agree(index_type, gather_work, monkeypatch):
    # batches of >= 20 queries gather the valid rows for BLAS; small ones use FAISS's selector (gather_work
    # 0), or gather too when the valid rows are few (the default SMALL_GATHER_WORK)
    from vecdb.index import faiss_index

    if gather_work is not None:
        monkeypatch.setattr(faiss_index, "SMALL_GATHER_WORK", gather_work)
    idx = built(index_type, "L2")
    mask = np.random.default_rng(8).random(N) < (0.5 if index_type == "FLAT" else 0.03)
    d_batch, i_batch = idx.search(Q, K, {"ef": 64}, valid=mask)
    d_one, i_one = idx.search(Q[:5], K, {"ef": 64}, valid=mask)
    np.testing.assert_array_equal(i_batch[:5], i_one)
    np.testing.assert_allclose(d_batch[:5], d_one, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(i_batch, _exact_among(mask, "L2")[1])
    # one valid row fewer than k: the rest padded, as the selector's scan pads them
    few = np.zeros(N, bool)
    few[[3, 17, 400]] = True
    d, i = idx.search(Q[:2], K, {"ef": 64}, valid=few)
    assert sorted(i[0][:3]) == [3, 17, 400] and (i[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()


def test_configure_threads_and_small_searches_run_on_one_openmp_thread():
    import faiss

    from vecdb.index import configure_threads
    from vecdb.index.threads import SMALL_BATCH

    before = faiss.omp_get_max_threads()
    idx = built("FLAT", "L2")
    try:
        configure_threads(1)
        assert faiss.omp_get_max_threads() == 1
        configure_threads(2)
        idx.search(Q[:1], K, {})  # nq=1: one thread, the concurrency is across callers
        assert faiss.omp_get_max_threads() == 1
        big = np.repeat(Q, -(-SMALL_BATCH // len(Q)), axis=0)[:SMALL_BATCH]
        d, i = idx.search(big, K, {})  # a batch: every configured thread
        assert faiss.omp_get_max_threads() == 2
        np.testing.assert_array_equal(i[0], idx.search(Q[:1], K, {})[1][0])
        seen = []
        t = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
        t.start()
        t.join()
        assert seen == [2]  # the setting is per calling thread: other threads keep the maximum
    finally:
        configure_threads(before)


def test_a_thread_sets_its_openmp_team_only_when_it_changes(monkeypatch):
    import faiss

    from vecdb.index import configure_threads, threads

    before = faiss.omp_get_max_threads()
    calls = []
    real = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (calls.append(n), real(n)))
    try:
        configure_threads(2)
        for nq in (1, 1, 5, threads.SMALL_BATCH, threads.SMALL_BATCH + 1, 1, 1):
            threads.threads_for_queries(nq)
        assert calls == [2, 1, 2, 1]  # one FAISS call (and GIL hand-off) per change, none per search
        assert faiss.omp_get_max_threads() == 1
        configure_threads(3)  # a new maximum reaches the next batch search of a thread that had the old one
        threads.threads_for_queries(threads.SMALL_BATCH)
        assert faiss.omp_get_max_threads() == 3
    finally:
        configure_threads(before)


def test_hnsw_uses_the_graph_with_a_selector_and_stays_valid(monkeypatch):
    monkeypatch.setattr(faiss_index, "SMALL_SCAN_WORK", 0)
    idx = built("HNSW", "L2")
    mask = np.random.default_rng(3).random(N) < 0.3
    d, i = idx.search(Q, K, {"ef": 64}, valid=mask)
    assert np.all(mask[i]) and recall(i, _exact_among(mask, "L2")[1]) >= 0.9


def test_hnsw_scans_every_row_once_its_beam_is_a_large_share_of_them():
    """A beam of 1/64 of the rows (ef, or k when larger) costs more than a scan of them all: the
    answer is then exact (a sparse graph's beam would miss some)."""
    idx = built("HNSW", "L2", {"M": 4, "efConstruction": 8})
    narrow = idx.search(Q, 40, {"ef": 40})[1]  # 40 x 64 < 5,000 rows: the graph
    assert recall(narrow, _exact_among(None, "L2", k=40)[1]) < 1.0
    wide_ef = N // faiss_index.BEAM_SCAN_RATIO + 1
    for k, ef in ((40, wide_ef), (wide_ef, wide_ef)):
        d, i = idx.search(Q, k, {"ef": ef})
        want_d, want_i = _exact_among(None, "L2", k=k)
        assert recall(i, want_i) == 1.0
        np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-4)
    mask = np.random.default_rng(5).random(N) < 0.5  # filtered: a share of the valid rows
    i = idx.search(Q, 40, {"ef": N // 2 // faiss_index.BEAM_SCAN_RATIO + 1}, valid=mask)[1]
    assert recall(i, _exact_among(mask, "L2", k=40)[1]) == 1.0
    radius, _ = _range_args("L2", X, Q[:10])
    got = idx.range_search(Q[:10], radius, None, {"ef": 40}, limit=N)  # the limit widens the beam
    want = brute_force_range(X, Q[:10], radius, None, "L2")
    assert all(set(g[1]) == set(w[1]) for g, w in zip(got, want))


def test_filter_edge_cases():
    idx = built("IVF_FLAT", "L2")
    d, i = idx.search(Q, K, {"nprobe": 1}, valid=np.zeros(N, bool))
    assert np.all(i == -1) and np.all(d == np.inf)
    three = np.zeros(N, bool)
    three[[5, 77, 4999]] = True
    d, i = idx.search(Q, K, {"nprobe": 1}, valid=three)
    assert np.all(np.sort(i[:, :3], axis=1) == [5, 77, 4999]) and np.all(i[:, 3:] == -1)
    d, i = idx.search(Q, K, {"nprobe": 32}, valid=np.ones(100, bool))  # snapshot mask: the tail is invalid
    assert i.max() < 100
    with pytest.raises(InvalidParameter):
        idx.search(Q, K, {}, valid=np.ones(N + 1, bool))


@pytest.mark.parametrize("nq", [len(Q), 1])  # 1: the one-query test of the last slot
def test_short_ivf_results_are_completed_exhaustively(nq):
    idx = built("IVF_FLAT", "L2")
    q = Q[:nq]
    d, i = idx.search(q, 1000, {"nprobe": 1})  # a list holds ~150 rows: too few for k=1000
    assert np.all(i >= 0) and all(len(set(row)) == 1000 for row in i)
    assert_sorted(d, "L2")
    # the completed queries are the exact top-k (over IVF_FLAT's exact distances)
    np.testing.assert_allclose(d, brute_force_search(X, q, 1000, "L2")[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["HAMMING", "JACCARD"])
@pytest.mark.parametrize("index_type", ["BIN_FLAT", "BIN_IVF_FLAT"])
def test_binary_filtered(index_type, metric):
    idx = built_binary(index_type, metric)
    rng = np.random.default_rng(5)
    for frac in (0.5, 0.01):
        mask = rng.random(len(XB)) < frac
        d, i = idx.search(QB, K, {"nprobe": 4}, valid=mask)
        assert np.all(mask[i[i >= 0]])
        d_ref, _ = _exact_among(mask, metric, x=XB, q=QB)
        if frac < 0.05 or index_type == "BIN_FLAT":
            np.testing.assert_allclose(d, d_ref, atol=1e-6)


# --- range search -----------------------------------------------------------
def _gap_radius(d_all, fraction):
    u = np.unique(d_all)
    j = int(fraction * (len(u) - 2))
    return float((u[j] + u[j + 1]) / 2)


def _range_args(metric, x, q):
    ref = brute_force_search(x, q, 200, metric)[0].ravel()
    if is_similarity(metric):
        return _gap_radius(ref, 0.5), _gap_radius(ref, 0.95)
    return _gap_radius(ref, 0.5), _gap_radius(ref, 0.05)


def _check_range(result, metric, radius, range_filter, valid=None):
    for d, i in result:
        if is_similarity(metric):
            assert np.all(d > radius) and (range_filter is None or np.all(d <= range_filter))
        else:
            assert np.all(d < radius) and (range_filter is None or np.all(d >= range_filter))
        assert valid is None or np.all(valid[i])
        assert_sorted(d[None, :], metric)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index_type", list(FLOAT_CASES))
def test_range_search(index_type, metric):
    idx = built(index_type, metric)
    radius, range_filter = _range_args(metric, X, Q[:10])
    mask = np.random.default_rng(2).random(N) < 0.5
    sp = {"nprobe": 32} if index_type.startswith("IVF") else {}
    for rf, valid in ((None, None), (range_filter, None), (range_filter, mask)):
        got = idx.range_search(Q[:10], radius, rf, sp, valid=valid)
        want = brute_force_range(X, Q[:10], radius, rf, metric, valid=valid)
        _check_range(got, metric, radius, rf, valid)
        hits = sum(len(w[1]) for w in want)
        assert hits > 0
        found = sum(len(set(g[1]) & set(w[1])) for g, w in zip(got, want))
        if index_type in ("FLAT", "IVF_FLAT"):
            for g, w in zip(got, want):
                assert set(g[1]) == set(w[1])
                np.testing.assert_allclose(g[0], w[0], rtol=1e-4, atol=1e-4)
        else:
            assert found / hits >= 0.5, f"{index_type}/{metric} range recall {found / hits:.2f}"
    limited = idx.range_search(Q[:10], radius, None, sp, limit=2)
    assert all(len(i) <= 2 for _, i in limited)


@pytest.mark.parametrize("metric", ["HAMMING", "JACCARD"])
@pytest.mark.parametrize("index_type", ["BIN_FLAT", "BIN_IVF_FLAT"])
def test_binary_range_search(index_type, metric):
    idx = built_binary(index_type, metric)
    radius, range_filter = _range_args(metric, XB, QB)
    mask = np.random.default_rng(4).random(len(XB)) < 0.5
    for rf, valid in ((None, None), (range_filter, mask)):
        got = idx.range_search(QB, radius, rf, {"nprobe": 16}, valid=valid)
        want = brute_force_range(XB, QB, radius, rf, metric, valid=valid)
        _check_range(got, metric, radius, rf, valid)
        assert sum(len(w[1]) for w in want) > 0
        for g, w in zip(got, want):
            assert set(g[1]) == set(w[1])


@pytest.mark.parametrize("index_type,metric,radius,rf", [
    ("FLAT", "L2", 1.0, 2.0), ("HNSW", "COSINE", 0.5, 0.4), ("BIN_FLAT", "HAMMING", 5, 5),
])
def test_range_search_rejects_inverted_bounds(index_type, metric, radius, rf):
    idx = built_binary(index_type, metric) if index_type.startswith("BIN") else built(index_type, metric)
    with pytest.raises(InvalidParameter, match="range_filter must be"):
        idx.range_search(QB[:1] if index_type.startswith("BIN") else Q[:1], radius, rf, {})


# --- persistence ------------------------------------------------------------
@pytest.mark.parametrize("index_type", list(FLOAT_CASES) + ["BIN_FLAT", "BIN_IVF_FLAT"])
def test_save_load_round_trip(index_type, tmp_path):
    binary = index_type.startswith("BIN")
    idx = built_binary(index_type, "JACCARD") if binary else built(index_type, "COSINE")
    q = QB if binary else Q
    sp = {"nprobe": 4} if binary else FLOAT_CASES[index_type][1]
    mask = np.random.default_rng(9).random(idx.ntotal) < 0.3
    path = str(tmp_path / "index.bin")
    idx.save(path)
    for mmap in (False, True):
        loaded = load_index(path, mmap=mmap)
        assert (loaded.index_type, loaded.metric_type, loaded.dim, loaded.ntotal) == (
            idx.index_type, idx.metric_type, idx.dim, idx.ntotal)
        for valid in (None, mask):
            for a, b in zip(idx.search(q, K, sp, valid=valid), loaded.search(q, K, sp, valid=valid)):
                np.testing.assert_array_equal(a, b)
        if mmap:
            with pytest.raises(OperationNotSupported):
                loaded.add(q[:1])
    loaded = load_index(path)
    loaded.add(q[:2])
    assert loaded.ntotal == idx.ntotal + 2


def test_load_rejects_foreign_files(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(b"not an index at all")
    with pytest.raises(Exception, match="not a vecdb index file"):
        load_index(str(p))


# --- growing data -----------------------------------------------------------
@pytest.mark.parametrize("index_type", ["FLAT", "IVF_FLAT", "HNSW", "SCANN", "BIN_IVF_FLAT"])
def test_add_after_build_continues_offsets(index_type):
    binary = index_type.startswith("BIN")
    data = XB if binary else X
    bp = {"nlist": 8} if "IVF" in index_type or index_type == "SCANN" else {}
    if index_type == "HNSW":
        bp = {"M": 16, "efConstruction": 64}
    idx = create_index(index_type, "HAMMING" if binary else "L2", 128 if binary else DIM, bp, BIN if binary else F)
    idx.build(data[:1000])
    idx.add(data[1000:1500])
    idx.add(data[1500:1500])
    assert idx.ntotal == 1500
    sp = {"nprobe": 8} if index_type != "HNSW" else {}
    if index_type == "SCANN":
        sp["reorder_k"] = 50
    d, i = idx.search(data[1200:1210], 1, sp)
    if binary:
        assert np.all(d[:, 0] == 0)
    else:
        np.testing.assert_array_equal(i[:, 0], np.arange(1200, 1210))


@pytest.mark.parametrize("index_type", ["IVF_FLAT", "IVF_PQ", "SCANN", "BIN_IVF_FLAT"])
def test_empty_build_then_growth_trains_when_enough_rows(index_type):
    binary = index_type == "BIN_IVF_FLAT"
    data = XB if binary else X
    bp = {"nlist": 4} if index_type != "IVF_PQ" else {"nlist": 4, "m": 8, "nbits": 3}
    idx = create_index(index_type, "JACCARD" if binary else "IP", 128 if binary else DIM, bp, BIN if binary else F)
    idx.build(data[:0])
    idx.add(data[:100])
    assert not idx.is_trained and idx.ntotal == 100
    q = QB if binary else Q
    d, i = idx.search(q, K, {"nprobe": 1})
    d_ref, i_ref = brute_force_search(data[:100], q, K, "JACCARD" if binary else "IP")
    np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-5)  # exact before training
    idx.add(data[100:700])  # SCANN needs 16 codes * 39 rows
    assert idx.is_trained and idx.ntotal == 700
    d, i = idx.search(q, K, {"nprobe": 4, "reorder_k": 40} if index_type == "SCANN" else {"nprobe": 4})
    assert np.all(i >= 0) and i.max() < 700


def test_ivf_with_fewer_rows_than_nlist_still_builds():
    idx = create_index("IVF_PQ", "L2", DIM, {"nlist": 1024, "m": 8, "nbits": 8}, F)
    idx.build(X[:100])
    assert idx.is_trained and idx.ntotal == 100
    d, i = idx.search(Q, 5, {"nprobe": 1024})
    assert np.all(i >= 0) and recall(i, brute_force_search(X[:100], Q, 5, "L2")[1]) >= 0.5
    small = create_index("IVF_FLAT", "L2", DIM, {"nlist": 1024}, F)
    small.build(X[:3])
    d, i = small.search(Q[:2], 3, {"nprobe": 16})
    assert np.all(np.sort(i, axis=1) == [0, 1, 2])


# --- inputs -----------------------------------------------------------------
def test_half_precision_vector_types():
    f16 = X[:500].astype(np.float16)
    idx = create_index("FLAT", "L2", DIM, {}, DataType.FLOAT16_VECTOR)
    idx.build(f16)
    d, i = idx.search(Q[:5].astype(np.float16), K, {})
    d_ref, i_ref = brute_force_search(f16.astype(np.float32), Q[:5].astype(np.float16).astype(np.float32), K, "L2")
    np.testing.assert_array_equal(i, i_ref)
    bf16 = (X[:500].view(np.uint32) >> 16).astype(np.uint16)
    idx = create_index("HNSW", "IP", DIM, {"M": 8, "efConstruction": 40}, DataType.BFLOAT16_VECTOR)
    idx.build(bf16)
    as_f32 = (bf16.astype(np.uint32) << 16).view(np.float32)
    d, i = idx.search(as_f32[:3], 1, {"ef": 32})
    np.testing.assert_allclose(d[:, 0], brute_force_search(as_f32, as_f32[:3], 1, "IP")[0][:, 0], rtol=1e-5)


def test_cosine_does_not_mutate_inputs_and_handles_zero_vectors():
    x = X[:200].copy()
    x[7] = 0
    before = x.copy()
    idx = create_index("HNSW", "COSINE", DIM, {"M": 8, "efConstruction": 40}, F)
    idx.build(x)
    q = np.zeros((2, DIM), np.float32)
    q[1] = x[3]
    qb = q.copy()
    d, i = idx.search(q, 5, {})
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(q, qb)
    assert not np.isnan(d).any() and np.allclose(d[0], 0) and i[1, 0] == 3 and d[1, 0] == pytest.approx(1.0, abs=1e-5)


def test_indexes_satisfy_the_protocol():
    from vecdb.index import VectorIndex

    assert isinstance(built("HNSW", "L2"), VectorIndex)
    assert isinstance(built_binary("BIN_FLAT", "HAMMING"), VectorIndex)


def test_wrong_dim_is_rejected():
    idx = create_index("FLAT", "L2", DIM, {}, F)
    with pytest.raises(InvalidParameter, match="dim"):
        idx.build(X[:, :16])
    with pytest.raises(InvalidParameter, match="dim"):
        built("FLAT", "L2").search(Q[:, :16], K, {})


def test_binary_index_rejects_unpacked_float_queries():
    """A (n, dim) float32 array has the shape of unpacked bits, not packed uint8 codes: refused."""
    idx = built_binary("BIN_FLAT", "HAMMING")
    unpacked = np.unpackbits(QB, axis=1).astype(np.float32)
    assert unpacked.shape[1] == idx.dim
    with pytest.raises(InvalidParameter, match="packed uint8"):
        idx.search(unpacked, K, {})
    d, i = idx.search(QB, K, {})  # the packed codes themselves take the fast path
    assert (i[:, 0] >= 0).all() and (np.diff(d, axis=1) >= 0).all()


def test_concurrent_search_and_add():
    idx = create_index("IVF_FLAT", "L2", DIM, {"nlist": 16}, F)
    idx.build(X[:2000])
    errors = []

    def searcher():
        try:
            for _ in range(30):
                d, i = idx.search(Q[:5], K, {"nprobe": 4})
                assert np.all(i >= 0)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for lo in range(2000, N, 500):
        idx.add(X[lo:lo + 500])
    for t in threads:
        t.join()
    assert not errors and idx.ntotal == N


@pytest.mark.parametrize("index_type", ["HNSW", "IVF_FLAT", "BIN_FLAT"])
def test_frozen_index_searches_the_same_and_refuses_writes(index_type):
    binary = index_type.startswith("BIN")
    data, queries, metric = (XB, QB, "HAMMING") if binary else (X[:2000], Q, "L2")
    idx = create_index(index_type, metric, 128 if binary else DIM,
                       {} if binary else ({"M": 8, "efConstruction": 40} if index_type == "HNSW" else {"nlist": 16}),
                       BIN if binary else F)
    idx.build(data)
    params = {} if binary else ({"ef": 32} if index_type == "HNSW" else {"nprobe": 4})
    before = idx.search(queries, K, params)
    idx.freeze()
    after = idx.search(queries, K, params)
    np.testing.assert_array_equal(before[1], after[1])
    with pytest.raises(OperationNotSupported, match="frozen"):
        idx.add(data[:10])
    with pytest.raises(OperationNotSupported, match="frozen"):
        idx.build(data)
    assert idx.ntotal == len(data)


def test_freeze_waits_for_a_running_writer():
    from vecdb.index.base import RWLock

    lock, order = RWLock(), []
    lock.acquire_write()
    t = threading.Thread(target=lambda: (lock.freeze(), order.append("frozen")))
    t.start()
    t.join(0.2)
    assert t.is_alive() and not order  # freeze waits for the writer
    order.append("written")
    lock.release_write()
    t.join(5)
    assert order == ["written", "frozen"]
    with lock.read():  # lock-free now
        pass
    with pytest.raises(OperationNotSupported):
        lock.acquire_write()


@pytest.mark.parametrize("index_type,metric,shared", [
    ("FLAT", "L2", True), ("HNSW", "IP", True), ("SCANN", "L2", True),
    ("HNSW", "COSINE", False), ("IVF_FLAT", "L2", False), ("BIN_FLAT", "HAMMING", False),
])
def test_raw_vectors_are_a_zero_copy_view_that_keeps_the_index_alive(index_type, metric, shared, tmp_path):
    binary = index_type.startswith("BIN")
    params = {"nlist": 16, "with_raw_data": True} if index_type == "SCANN" else FLOAT_CASES.get(index_type, ({},))[0]
    idx = create_index(index_type, metric, 128 if binary else DIM, params, BIN if binary else F)
    data = XB if binary else X
    idx.build(data)
    view = idx.raw_vectors()
    if not shared:
        assert view is None
        return
    assert view.shape == data.shape and view.dtype == np.float32 and not view.flags.writeable
    np.testing.assert_array_equal(view, data)
    idx.save(str(tmp_path / "ix"))
    for mmap in (False, True):
        np.testing.assert_array_equal(load_index(str(tmp_path / "ix"), mmap=mmap).raw_vectors(), data)
    del idx  # the view alone keeps the FAISS index (and so its memory) alive
    import gc
    gc.collect()
    for _ in range(3):  # fresh allocations that would reuse freed memory
        create_index(index_type, metric, DIM, params, F).build(X[::-1].copy())
    np.testing.assert_array_equal(view, data)

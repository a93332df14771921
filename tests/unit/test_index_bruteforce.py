"""The brute-force reference against naive per-pair numpy, and the shared rules (padding, range, inputs)."""

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.index import brute_force_range, brute_force_search, bruteforce, check_range_params, is_similarity
from vecdb.index.base import as_binary, as_float32

RNG = np.random.default_rng(7)
X = RNG.standard_normal((300, 12)).astype(np.float32)
Q = RNG.standard_normal((7, 12)).astype(np.float32)
B = RNG.integers(0, 256, (300, 4), dtype=np.uint8)
BQ = RNG.integers(0, 256, (7, 4), dtype=np.uint8)


def naive_float(x, q, metric):
    out = np.empty((len(q), len(x)), dtype=np.float64)
    for a in range(len(q)):
        for b in range(len(x)):
            u, v = q[a].astype(np.float64), x[b].astype(np.float64)
            if metric == "L2":
                out[a, b] = np.sum((u - v) ** 2)
            elif metric == "IP":
                out[a, b] = np.dot(u, v)
            else:
                nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                out[a, b] = 0.0 if nu == 0 or nv == 0 else np.dot(u, v) / (nu * nv)
    return out


def naive_binary(x, q, metric):
    xb, qb = np.unpackbits(x, axis=1).astype(bool), np.unpackbits(q, axis=1).astype(bool)
    out = np.empty((len(q), len(x)))
    for a in range(len(q)):
        for b in range(len(x)):
            if metric == "HAMMING":
                out[a, b] = np.sum(qb[a] != xb[b])
            else:
                union = np.sum(qb[a] | xb[b])
                out[a, b] = 0.0 if union == 0 else 1.0 - np.sum(qb[a] & xb[b]) / union
    return out


def gap_point(values, fraction):
    """A threshold between two distinct distances near the given quantile (no float ties)."""
    u = np.unique(values)
    j = min(int(fraction * len(u)), len(u) - 2)
    return float((u[j] + u[j + 1]) / 2)


def naive_topk(dist, k, metric):
    order = np.argsort(-dist if is_similarity(metric) else dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), order


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_float_metrics_match_naive(metric):
    ref = naive_float(X, Q, metric)
    d_ref, i_ref = naive_topk(ref, 10, metric)
    d, i = brute_force_search(X, Q, 10, metric)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == (7, 10)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["HAMMING", "JACCARD"])
def test_binary_metrics_match_naive(metric):
    ref = naive_binary(B, BQ, metric)
    d, i = brute_force_search(B, BQ, 10, metric)
    d_ref, _ = naive_topk(ref, 10, metric)
    np.testing.assert_allclose(d, d_ref, rtol=1e-6, atol=1e-6)
    # every returned offset really has the reported distance; ties broken by smaller offset
    np.testing.assert_allclose(np.take_along_axis(ref, i, axis=1), d, atol=1e-6)
    for row_d, row_i in zip(d, i):
        for a in range(9):
            if row_d[a] == row_d[a + 1]:
                assert row_i[a] < row_i[a + 1]


def test_jaccard_of_zero_vectors_is_zero_distance():
    z = np.zeros((3, 2), dtype=np.uint8)
    d, i = brute_force_search(z, z[:1], 3, "JACCARD")
    assert np.all(d == 0.0) and not np.isnan(d).any()


def test_cosine_zero_vectors_give_no_nan_and_inputs_are_not_mutated():
    x = X.copy()
    x[5] = 0.0
    before = x.copy()
    q = np.zeros((1, 12), np.float32)
    d, i = brute_force_search(x, q, 5, "COSINE")
    assert not np.isnan(d).any() and np.all(d == 0.0)
    d, i = brute_force_search(x, x[5:6], 300, "COSINE")
    assert not np.isnan(d).any()
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("metric,pad", [("L2", np.inf), ("IP", -np.inf), ("COSINE", -np.inf), ("HAMMING", np.inf)])
def test_padding_when_fewer_rows_than_k(metric, pad):
    x, q = (B[:3], BQ[:2]) if metric == "HAMMING" else (X[:3], Q[:2])
    d, i = brute_force_search(x, q, 5, metric)
    assert d.shape == (2, 5)
    assert np.all(i[:, 3:] == -1) and np.all(d[:, 3:] == pad)
    assert set(i[0, :3]) == {0, 1, 2}
    valid = np.array([False, True, False])
    d, i = brute_force_search(x, q, 5, metric, valid=valid)
    assert np.all(i[:, 0] == 1) and np.all(i[:, 1:] == -1) and np.all(d[:, 1:] == pad)


def test_valid_mask_restricts_results_and_short_mask_means_tail_invalid():
    valid = np.zeros(300, bool)
    valid[::10] = True
    d, i = brute_force_search(X, Q, 10, "L2", valid=valid)
    assert np.all(i % 10 == 0)
    ref = naive_float(X, Q, "L2")
    ref[:, ~valid] = np.inf
    np.testing.assert_array_equal(i, naive_topk(ref, 10, "L2")[1])
    d, i = brute_force_search(X, Q, 10, "L2", valid=np.ones(100, bool))
    assert i.max() < 100
    with pytest.raises(InvalidParameter):
        brute_force_search(X, Q, 10, "L2", valid=np.ones(301, bool))


def test_blocked_computation_merges_like_one_block(monkeypatch):
    full = brute_force_search(X, Q, 20, "IP")
    monkeypatch.setattr(bruteforce, "_BLOCK_ELEMENTS", 1)  # 1024-row blocks
    x = np.vstack([X] * 8)  # 2400 rows, ties between copies broken by offset
    d, i = brute_force_search(x, Q, 20, "IP")
    d_ref, i_ref = naive_topk(np.tile(naive_float(X, Q, "IP"), 8), 20, "IP")
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-4)
    assert np.all(i[:, 0] == full[1][:, 0])


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE", "HAMMING", "JACCARD"])
def test_range_matches_naive_and_respects_direction(metric):
    binary = metric in ("HAMMING", "JACCARD")
    x, q = (B, BQ) if binary else (X, Q)
    ref = (naive_binary if binary else naive_float)(x, q, metric)
    lo, hi = (gap_point(ref, f) for f in ((0.05, 0.3) if not is_similarity(metric) else (0.7, 0.95)))
    radius, range_filter = (hi, lo) if not is_similarity(metric) else (lo, hi)
    res = brute_force_range(x, q, radius, range_filter, metric)
    for qi, (d, i) in enumerate(res):
        r = ref[qi]
        if is_similarity(metric):
            want = np.flatnonzero((r > radius) & (r <= range_filter))
            assert np.all(np.diff(d) <= 0)
        else:
            want = np.flatnonzero((r < radius) & (r >= range_filter))
            assert np.all(np.diff(d) >= 0)
        assert set(i.tolist()) == set(want.tolist())
    limited = brute_force_range(x, q, radius, None, metric, limit=3)
    full = brute_force_range(x, q, radius, None, metric)
    for (dl, il), (df, i_f) in zip(limited, full):
        assert len(il) == min(3, len(i_f))
        np.testing.assert_array_equal(dl, df[: len(dl)])


@pytest.mark.parametrize(
    "metric,radius,range_filter",
    [("L2", 1.0, 1.0), ("L2", 1.0, 2.0), ("HAMMING", 5, 6), ("JACCARD", 0.3, 0.5), ("IP", 1.0, 0.5),
     ("COSINE", 0.5, 0.5)],
)
def test_invalid_range_combinations_raise(metric, radius, range_filter):
    with pytest.raises(InvalidParameter, match="range_filter must be"):
        check_range_params(metric, radius, range_filter)


def test_range_filter_optional_and_valid_combos_pass():
    check_range_params("L2", 2.0, None)
    check_range_params("L2", 2.0, 1.0)
    check_range_params("IP", 0.1, 0.9)


def test_half_precision_inputs_convert_to_float32():
    f16 = X[:4].astype(np.float16)
    np.testing.assert_array_equal(as_float32(f16, 12), f16.astype(np.float32))
    bf16_bits = (X[:4].view(np.uint32) >> 16).astype(np.uint16)
    conv = as_float32(bf16_bits, 12)
    np.testing.assert_allclose(conv, X[:4], rtol=1e-2)
    assert conv.dtype == np.float32
    with pytest.raises(InvalidParameter, match="dim"):
        as_float32(X[:, :5], 12)
    with pytest.raises(InvalidParameter, match="dim"):
        as_binary(B, 64)


def test_is_similarity():
    assert is_similarity("IP") and is_similarity("cosine")
    assert not any(is_similarity(m) for m in ("L2", "HAMMING", "JACCARD"))

"""brute_force_search / brute_force_range read a BFLOAT16_VECTOR column (uint16 raw bits) as the values
the bits encode, as every index does (``vecdb.index.base.as_float32``): they cast the bits to floats as
integers (0x3F80, 1.0, read as 16256.0), so exact scans of growing BFLOAT16 rows answered wrong distances."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.index import brute_force_range, brute_force_search


def _bits(values: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _widen(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_bfloat16_bits_search_as_their_values(metric):
    rng = np.random.default_rng(3)
    xb, qb = _bits(rng.standard_normal((300, 16))), _bits(rng.standard_normal((5, 16)))
    d, i = brute_force_search(xb, qb, 10, metric)
    want_d, want_i = brute_force_search(_widen(xb), _widen(qb), 10, metric)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(d, want_d, rtol=1e-6)
    # the queries may come as float32 (pymilvus float lists), the column as bits
    d2, i2 = brute_force_search(xb, _widen(qb), 10, metric)
    np.testing.assert_array_equal(i2, want_i)
    np.testing.assert_allclose(d2, want_d, rtol=1e-6)


def test_bfloat16_bits_range_search():
    xb = _bits(np.array([[1.0] * 4, [2.0] * 4, [4.0] * 4]))
    [(d, i)] = brute_force_range(xb, _bits(np.array([[1.0] * 4])), 10.0, None, "L2")
    assert i.tolist() == [0, 1] and d.tolist() == [0.0, 4.0]

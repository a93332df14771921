"""vecdb/index/gpu_cuvs.py without a GPU: the backend choice, and the exact re-scoring of the hits cuVS
returns (run on NumPy, the stand-in the GPU index tests use). cuVS itself runs on the device bench
(bench/gpu_bench.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.errors import IndexNotSupported
from vecdb.index import gpu_cuvs
from vecdb.index.gpu import create_gpu_index
from vecdb.index.gpu_ops import row_norms
from vecdb.schema import DataType


def test_numpy_stand_in_never_uses_cuvs(monkeypatch):
    monkeypatch.setenv(gpu_cuvs.BACKEND_ENV, "cuvs")
    assert gpu_cuvs.use_cuvs(np) is False
    assert gpu_cuvs.backend_name(np) == "numpy"


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv(gpu_cuvs.BACKEND_ENV, "opencl")
    with pytest.raises(IndexNotSupported, match="VECDB_GPU_BACKEND"):
        gpu_cuvs.use_cuvs(object())


@pytest.mark.skipif(gpu_cuvs.cuvs_modules() is not None, reason="cuVS is installed here")
def test_cuvs_asked_for_but_missing_is_a_clear_error(monkeypatch):
    device_module = object()  # anything but NumPy stands for a device array module here
    monkeypatch.setenv(gpu_cuvs.BACKEND_ENV, "cuvs")
    with pytest.raises(IndexNotSupported, match="cuVS does not import"):
        gpu_cuvs.use_cuvs(device_module)
    monkeypatch.setenv(gpu_cuvs.BACKEND_ENV, "auto")
    assert gpu_cuvs.use_cuvs(device_module) is False  # auto: the CuPy path serves


@pytest.mark.parametrize("metric", ["L2", "IP"])
def test_rescore_gives_the_exact_answer_for_the_hits_found(metric):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((6, 16)).astype(np.float32)
    k = 10
    exact = create_gpu_index("GPU_BRUTE_FORCE", metric, 16, {}, DataType.FLOAT_VECTOR, xp=np)
    exact.build(x)
    want_d, want_i = exact.search(q, k, {})
    # cuVS hands back the right rows in its own order and with its own distances: shuffle, and drop
    # query 0's worst hit (a short answer: -1, padded as the CuPy path pads)
    found = np.array([rng.permutation(row) for row in want_i])
    found[0][found[0] == want_i[0, -1]] = -1
    d, i = gpu_cuvs.rescore(np, q, x, row_norms(np, x), found, k, metric)
    np.testing.assert_array_equal(i[1:], want_i[1:])
    np.testing.assert_allclose(d[1:], want_d[1:], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(i[0, :-1], want_i[0, :-1])
    assert i[0, -1] == -1
    assert d[0, -1] == (np.inf if metric == "L2" else -np.inf)

"""GPU indexes on CuPy: GPU_BRUTE_FORCE, GPU_IVF_FLAT, GPU_IVF_PQ, GPU_CAGRA.

==================  ==========================================================
GPU_BRUTE_FORCE     rows on the device; one GEMM + top-k selection per query
                    block; exact (this module)
GPU_IVF_FLAT        k-means lists stored contiguously; exact distances on
                    the probed lists (gpu_ivf.py)
GPU_IVF_PQ          IVF + product quantisation of residuals, ADC lookup
                    tables; PQ distances, no raw vectors kept (gpu_ivf.py)
GPU_CAGRA           kNN graph from blocked brute force plus reverse edges;
                    batched beam search, exact distances (gpu_cagra.py)
==================  ==========================================================

Parameters are validated like any other index (params.py). CuPy (the
optional extra ``cupy-cuda12x``) is imported only when a GPU index is made or
loaded; without CuPy or without a CUDA device, creating one raises
IndexNotSupported. The common rules (filtering, fallbacks, memory checks,
persistence) are in gpu_base.py; the array kernels in gpu_ops.py.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from vecdb.errors import IndexNotSupported, IoFailed
from vecdb.index.gpu_base import GpuIndex, check_gpu_memory
from vecdb.index.gpu_cagra import GpuCagra
from vecdb.index.gpu_cuvs import CuvsSearcher, brute_force_search, log_fallback, use_cuvs
from vecdb.index.gpu_ivf import GpuIvfFlat
from vecdb.index.gpu_ivf_pq import GpuIvfPq
from vecdb.index.gpu_ops import WORKSPACE_BYTES, row_norms
from vecdb.schema import DataType


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy  # optional dependency

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - ImportError, CUDARuntimeError, missing driver...
        return False


def require_gpu(index_type: str) -> None:
    """Raise IndexNotSupported unless a GPU is usable (create_index checks it, via params.py)."""
    if not gpu_available():
        raise IndexNotSupported(
            f"GPU index {index_type} needs a GPU; none is available on this server "
            "(no CUDA device, or CuPy is not installed)"
        )


class GpuBruteForce(GpuIndex):
    """GPU_BRUTE_FORCE: exact search, rows and their norms on the device."""

    approximate = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cuvs = CuvsSearcher()

    @classmethod
    def estimate_bytes(cls, n: int, dim: int, params: dict, building: bool = True) -> int:
        return n * (dim * 4 + 4) + WORKSPACE_BYTES

    def _build(self, x: np.ndarray) -> None:
        v = self.xp.asarray(x)
        self._cuvs.reset()
        self._dev = {"vectors": v, "norms": row_norms(self.xp, v)}
        self._n = len(x)

    def _add(self, x: np.ndarray) -> None:
        xp = self.xp
        v = xp.asarray(x)
        self._cuvs.reset()
        self._dev = {
            "vectors": xp.concatenate([self._dev["vectors"], v]),
            "norms": xp.concatenate([self._dev["norms"], row_norms(xp, v)]),
        }
        self._n += len(x)

    def _search_exact(self, q, k: int, mask):
        if mask is None and use_cuvs(self.xp):
            try:
                return brute_force_search(self.xp, self._cuvs, self._dev, self._n, self._metric, q, k)
            except Exception as e:  # noqa: BLE001 - any cuVS failure: CuPy's GEMM + top-k answers
                log_fallback("brute-force search", e)
        return self._exact_rows(q, k, self._dev["vectors"], self._dev["norms"], mask)

    def _range(self, q, radius: float, range_filter, sp: dict, mask, exhaustive: bool):
        return self._range_rows(q, radius, range_filter, self._dev["vectors"], self._dev["norms"], mask)


GPU_INDEX_CLASSES: dict[str, type[GpuIndex]] = {
    "GPU_BRUTE_FORCE": GpuBruteForce,
    "GPU_IVF_FLAT": GpuIvfFlat,
    "GPU_IVF_PQ": GpuIvfPq,
    "GPU_CAGRA": GpuCagra,
}


def _index_class(index_type: str) -> type[GpuIndex]:
    cls = GPU_INDEX_CLASSES.get(str(index_type).upper())
    if cls is None:
        raise IndexNotSupported(f"invalid GPU index type: {index_type}")
    return cls


def create_gpu_index(index_type: str, metric_type: str, dim: int, params: dict,
                     vector_type: DataType, xp: Any = None) -> GpuIndex:
    """An empty GPU index from validated build params (factory.create_index calls this).

    ``xp`` is for tests only: NumPy runs the same algorithms on the CPU.
    """
    cls = _index_class(index_type)
    if xp is None:
        require_gpu(index_type)
    return cls(index_type, metric_type, dim, params, vector_type, xp=xp)


def estimate_gpu_bytes(index_type: str, n: int, dim: int, params: dict, building: bool = True) -> int:
    """Device bytes a GPU index of ``n`` rows needs (build temporaries included when ``building``)."""
    return _index_class(index_type).estimate_bytes(n, dim, params, building)


def check_gpu_fits(index_type: str, n: int, dim: int, params: dict, building: bool = True) -> None:
    """Raise MemoryLimitExceeded if such an index would not fit the free GPU memory."""
    check_gpu_memory(index_type, estimate_gpu_bytes(index_type, n, dim, params, building))


def gpu_index_from_saved(meta: dict, arrays: dict[str, np.ndarray], xp: Any = None) -> GpuIndex:
    """Rebuild a saved GPU index on the device (factory.load_index: ``meta["kind"] == "gpu"``)."""
    if meta.get("kind") != "gpu":
        raise IoFailed(f"not a GPU index file (kind {meta.get('kind')!r})")
    cls = _index_class(meta["index_type"])
    if xp is None:
        require_gpu(meta["index_type"])
    return cls.from_saved(meta, arrays, xp=xp)


def load_gpu_index(path: str, xp: Any = None) -> GpuIndex:
    """Load a GPU index written by ``save`` (the arrays are read once, then uploaded)."""
    from vecdb.index.index_file import read_index_file  # index_file imports FAISS

    meta, _, arrays = read_index_file(path, mmap=True)
    if "valid_rows" in meta:  # built over a nullable field's valid rows: vecdb.index.load_index wraps it
        raise IoFailed(f"{path} holds an index over valid rows only: load it with load_index")
    return gpu_index_from_saved(meta, arrays, xp=xp)

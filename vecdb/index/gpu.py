"""GPU indexes (GPU_IVF_FLAT, GPU_IVF_PQ, GPU_CAGRA, GPU_BRUTE_FORCE): a stub.

Parameters are validated like any other index (``params.py``). Creating one
needs a CUDA device visible through CuPy; without one this raises
IndexNotSupported with a clear message instead of failing later. The GPU
implementations themselves are not written yet.
"""

from __future__ import annotations

import functools

from vecdb.errors import IndexNotSupported
from vecdb.schema import DataType


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, missing driver...
        return False


def require_gpu(index_type: str) -> None:
    if not gpu_available():
        raise IndexNotSupported(f"GPU index {index_type} needs a GPU; none is available on this server")


def create_gpu_index(index_type: str, metric_type: str, dim: int, params: dict, vector_type: DataType):
    require_gpu(index_type)
    raise IndexNotSupported(f"GPU index {index_type} is not implemented yet on this server")

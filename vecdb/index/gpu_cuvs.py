"""cuVS behind the GPU indexes: NVIDIA's vector search library, the one Milvus's GPU indexes use.

- GPU_CAGRA builds its graph with cuVS's CAGRA (an IVF-PQ or NN-descent kNN graph, then CAGRA's
  rank-based pruning) and answers unfiltered searches with cuVS's CAGRA search over that graph.
- GPU_BRUTE_FORCE answers unfiltered searches with cuVS's brute force (fused distance + top-k).

The arrays each index keeps are the CuPy path's (vectors, norms, an int32 graph), so persistence,
range search, filtered searches (CuPy's masked beam search / exact search over the valid rows) and
the exact fallbacks stay one implementation (gpu_base.py, gpu_cagra.py). The hits cuVS returns are
re-scored exactly against the stored rows (one gather + one batched product per query block), so
distances and tie order are the CuPy path's whatever cuVS's own distance conventions are.

Which backend: ``VECDB_GPU_BACKEND`` = ``auto`` (cuVS when it imports, else CuPy; the default),
``cuvs`` (refuse GPU indexes when cuVS does not import) or ``cupy``. cuVS comes from the extra
``vecdb[gpu]`` (``cuvs-cu12``); the NumPy stand-in of the tests always runs the CuPy path.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

import numpy as np

from vecdb.errors import IndexNotSupported
from vecdb.index.gpu_ops import finish_topk

log = logging.getLogger(__name__)

BACKEND_ENV = "VECDB_GPU_BACKEND"
BACKENDS = ("auto", "cuvs", "cupy")
# Below this many rows a graph is built exactly (CuPy): small, and cuVS's IVF-PQ build wants lists to train.
CUVS_MIN_GRAPH_ROWS = 4096
_METRICS = {"L2": "sqeuclidean", "IP": "inner_product"}
_import_error: list[str] = []


@functools.lru_cache(maxsize=1)
def cuvs_modules() -> dict[str, Any] | None:
    """cuVS's ``cagra`` and ``brute_force`` modules, or None when cuVS does not import."""
    try:
        from cuvs.common import Resources  # optional dependency (vecdb[gpu])
        from cuvs.neighbors import brute_force, cagra
    except Exception as e:  # noqa: BLE001 - ImportError, a missing CUDA library (OSError)...
        _import_error.append(f"{type(e).__name__}: {e}")
        return None
    return {"cagra": cagra, "brute_force": brute_force, "Resources": Resources}


_local = threading.local()


def _resources() -> Any:
    """This thread's cuVS handle (its stream, cuBLAS handle, workspace): made once per thread, not per call."""
    res = getattr(_local, "res", None)
    if res is None:
        res = _local.res = cuvs_modules()["Resources"]()  # type: ignore[index]
    return res


def backend_choice() -> str:
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise IndexNotSupported(f"{BACKEND_ENV}={choice!r}: expected one of {', '.join(BACKENDS)}")
    return choice


def use_cuvs(xp: Any) -> bool:
    """True when the GPU indexes on array module ``xp`` run on cuVS (never for the NumPy stand-in)."""
    if xp is np:
        return False
    choice = backend_choice()
    if choice == "cupy":
        return False
    if cuvs_modules() is None:
        if choice == "cuvs":
            raise IndexNotSupported(f"{BACKEND_ENV}=cuvs, but cuVS does not import: {_import_error[-1]}")
        return False
    return True


def backend_name(xp: Any) -> str:
    return "cuvs" if use_cuvs(xp) else ("numpy" if xp is np else "cupy")


def _sync(xp: Any) -> None:
    """cuVS runs on its own stream: the query upload on CuPy's must be complete first."""
    xp.cuda.get_current_stream().synchronize()


def cagra_graph(xp: Any, v: Any, metric: str, ideg: int, deg: int, build_algo: str) -> Any:
    """CAGRA's (n, deg) int32 graph of rows ``v`` (a device array) built by cuVS."""
    cagra = cuvs_modules()["cagra"]  # type: ignore[index]
    algo = "nn_descent" if str(build_algo).upper() == "NN_DESCENT" else "ivf_pq"
    params = cagra.IndexParams(metric=_METRICS[metric], intermediate_graph_degree=int(ideg),
                               graph_degree=int(deg), build_algo=algo)
    _sync(xp)
    res = _resources()
    index = cagra.build(params, v, resources=res)
    res.sync()
    graph = xp.asarray(index.graph).astype(xp.int32)  # a copy: the view dies with ``index``
    del index
    return graph


def rescore(xp: Any, q: Any, vectors: Any, norms: Any, ids: Any, k: int, metric: str):
    """(distances, offsets) of hits ``ids`` (nq, kk; -1 = none) scored exactly against the stored rows,
    best first, ties by offset, padded to ``k`` columns (the CuPy path's conventions)."""
    ok = ids >= 0
    r = xp.where(ok, ids, 0)
    ip = xp.matmul(vectors[r], q[:, :, None])[:, :, 0]
    if metric == "L2":
        qn = (q * q).sum(axis=1)
        key = norms[r] - 2 * ip + qn[:, None]
    else:
        key = -ip
    key = xp.where(ok, key, np.float32(np.inf)).astype(xp.float32)
    return finish_topk(xp, xp.where(ok, ids, -1), key, k, metric, None, sort_ids=True)


def _valid_ids(xp: Any, raw: Any, n: int) -> Any:
    ids = xp.asarray(raw).astype(xp.int64)
    return xp.where((ids >= 0) & (ids < n), ids, -1)


class CuvsSearcher:
    """A cuVS search index over an index's stored device arrays, made on first use (thread-safe)
    and dropped when the arrays change (``reset``)."""

    def __init__(self) -> None:
        self._obj: Any = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._obj = None

    def get(self, make):
        obj = self._obj
        if obj is None:
            with self._lock:
                if self._obj is None:
                    self._obj = make()
                obj = self._obj
        return obj


def cagra_search(xp: Any, searcher: CuvsSearcher, dev: dict, n: int, metric: str, q: Any, k: int,
                 itopk: int, width: int, min_iter: int, max_iter: int):
    """Unfiltered CAGRA search by cuVS over ``dev``'s graph and vectors."""
    cagra = cuvs_modules()["cagra"]  # type: ignore[index]

    def make():
        # cuVS's index views the graph and the rows without copying them: the uint32 graph lives with it
        graph = dev["graph"].astype(xp.uint32)
        _sync(xp)
        res = _resources()
        index = cagra.from_graph(graph, dev["vectors"], metric=_METRICS[metric], resources=res)
        res.sync()
        return index, graph

    index, _graph = searcher.get(make)
    sp = cagra.SearchParams(itopk_size=int(itopk), search_width=int(width), min_iterations=int(min_iter),
                            max_iterations=int(max_iter))
    _sync(xp)
    res = _resources()
    _d, raw = cagra.search(sp, index, q, int(k), resources=res)
    res.sync()
    return rescore(xp, q, dev["vectors"], dev["norms"], _valid_ids(xp, raw, n), k, metric)


def brute_force_search(xp: Any, searcher: CuvsSearcher, dev: dict, n: int, metric: str, q: Any, k: int):
    """Exact unfiltered search by cuVS's brute force over ``dev``'s vectors."""
    bf = cuvs_modules()["brute_force"]  # type: ignore[index]

    def make():
        _sync(xp)
        res = _resources()
        index = bf.build(dev["vectors"], metric=_METRICS[metric], resources=res)
        res.sync()
        return index

    index = searcher.get(make)
    _sync(xp)
    res = _resources()
    _d, raw = bf.search(index, q, int(min(k, n)), resources=res)
    res.sync()
    return rescore(xp, q, dev["vectors"], dev["norms"], _valid_ids(xp, raw, n), k, metric)


def log_fallback(what: str, err: BaseException) -> None:
    log.warning("cuVS %s failed (%s: %s); the CuPy path serves instead", what, type(err).__name__, err)

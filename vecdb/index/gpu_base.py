"""What every GPU index shares: the VectorIndex rules, filtering, fallbacks,
GPU memory checks and the one-file persistence.

A GPU index keeps its state as named device arrays (``_dev``) plus a small
JSON-able dict (``_info``, e.g. the effective nlist); ``save`` writes host
copies of exactly those, ``from_saved`` uploads them again.

Rules (on top of VectorIndex, base.py):

- **Metrics.** params.py admits L2 and IP for GPU indexes (as Milvus/RAFT).
  COSINE would work too (rows are normalised on the way in, then IP).
- **Filtering.** The ``valid`` mask goes to the device and turns excluded
  rows' keys into +inf. When fewer than ``EXHAUSTIVE_VALID_FRACTION`` of the
  rows (or at most k) are valid, or an approximate search comes back with
  fewer than min(k, valid rows) hits for a query, that query is answered by
  the index's exhaustive search over the valid rows (exact for FLAT / IVF_FLAT
  / CAGRA, every list with PQ distances for IVF_PQ).
- **Memory.** Before a build, add or load puts anything on the device, the
  index estimates the GPU memory it needs (its arrays, the build's
  temporaries, the search workspace) and raises MemoryLimitExceeded when that
  is more than ``GPU_MEMORY_HEADROOM`` of the free memory (CUDA's free memory
  plus what CuPy's pool holds unused); the index is left as it was.
- **Threads.** Searches share a read lock, build/add take the write lock.
- **Batching.** Concurrent small unfiltered searches with the same k and
  search params are coalesced into one device search (gpu_batch.py): a
  request with fewer than ``BATCH_MAX_NQ`` queries and no filter mask (or an
  all-valid one) goes through the index's QueryBatcher, which runs it at once
  when no other such search is in flight, else stacks it with its companions.
  The batch runs under one read lock, so it sees one state of the index.
  ``batches_run`` / ``queries_batched`` count what was coalesced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecdb.errors import MemoryLimitExceeded
from vecdb.index.base import (
    LockedIndex,
    as_float32,
    check_indexable,
    check_range_params,
    empty_result,
    is_similarity,
    normalize_rows,
    prepare_mask,
)
from vecdb.index.gpu_batch import BATCH_MAX_NQ, QueryBatcher
from vecdb.index.gpu_ops import assemble_range, knn_exact, range_exact, to_host
from vecdb.index.params import validate_search_params
from vecdb.schema import DataType

EXHAUSTIVE_VALID_FRACTION = 0.07
GPU_MEMORY_HEADROOM = 0.9
GIB = float(1 << 30)
_INF = np.float32(np.inf)


def cupy_module():
    import cupy  # optional dependency, imported only when a GPU index is made

    return cupy


def gpu_free_bytes() -> int:
    """Free device memory: CUDA's free bytes plus the blocks CuPy's pool holds unused."""
    cupy = cupy_module()
    free, _total = cupy.cuda.runtime.memGetInfo()
    return int(free) + int(cupy.get_default_memory_pool().free_bytes())


def check_gpu_memory(index_type: str, need_bytes: int) -> None:
    """Raise MemoryLimitExceeded when ``need_bytes`` will not fit the free GPU memory."""
    if need_bytes <= 0:
        return
    free = gpu_free_bytes()
    if need_bytes > free * GPU_MEMORY_HEADROOM:
        raise MemoryLimitExceeded(
            f"{index_type} needs ~{need_bytes / GIB:.1f} GiB of GPU memory, {free / GIB:.1f} GiB is free"
        )


class GpuIndex(LockedIndex):
    """Base of the GPU indexes; subclasses fill in the ``_build``/``_add``/``_search_*``/``_range`` hooks."""

    approximate = True  # False: every search is exact (GPU_BRUTE_FORCE)

    def __init__(self, index_type: str, metric_type: str, dim: int, params: dict,
                 vector_type: DataType = DataType.FLOAT_VECTOR, xp: Any = None) -> None:
        self._init_index(index_type, metric_type, dim, params, vector_type)
        self.xp = xp if xp is not None else cupy_module()
        self.check_memory = self.xp is not np  # the NumPy stand-in (tests) has no device to check
        self._metric = "L2" if metric_type == "L2" else "IP"
        self._cosine = metric_type == "COSINE"
        self._dev: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._n = 0
        self._batcher = QueryBatcher()

    # --- hooks -------------------------------------------------------------
    @classmethod
    def estimate_bytes(cls, n: int, dim: int, params: dict, building: bool = True) -> int:
        """Device bytes needed to hold ``n`` rows (plus the build's temporaries when ``building``)."""
        raise NotImplementedError

    def _build(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _add(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _search_approx(self, q, k: int, sp: dict, mask):
        return self._search_exact(q, k, mask)

    def _search_exact(self, q, k: int, mask):
        raise NotImplementedError

    def _range(self, q, radius: float, range_filter, sp: dict, mask, exhaustive: bool):
        raise NotImplementedError

    # --- state ----------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self._n

    def held_bytes(self) -> int:
        return int(sum(a.nbytes for a in self._dev.values()))

    def _ensure_memory(self, n: int, building: bool = True, replacing: bool = True) -> None:
        """Refuse before touching the device; ``replacing``: the arrays held now are freed first
        (build, load), else they stay alive while the new ones are made (add merges copies)."""
        if self.check_memory:
            need = self.estimate_bytes(n, self.dim, self.params, building)
            check_gpu_memory(self.index_type, need - (self.held_bytes() if replacing else 0))

    def _prepare(self, x: np.ndarray, stored: bool = False) -> np.ndarray:
        """Vectors as the index takes them; ``stored`` rows (build/add) are checked first."""
        a = as_float32(x, self.dim)
        if stored:
            check_indexable(a)
        return normalize_rows(a) if self._cosine else a

    def raw_vectors(self) -> None:
        """GPU indexes keep their vectors on the device: nothing to share."""
        return None

    def build(self, vectors: np.ndarray) -> None:
        """Replace the content with rows 0..n-1 (training where the type needs it)."""
        x = self._prepare(vectors, stored=True)
        with self._lock.write():
            self._ensure_memory(len(x))
            self._dev, self._info, self._n = {}, {}, 0
            if len(x):
                self._build(x)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; offsets continue from ntotal. An empty index builds on them."""
        x = self._prepare(vectors, stored=True)
        if not len(x):
            return
        with self._lock.write():
            self._ensure_memory(self._n + len(x), replacing=False)
            if self._n == 0:
                self._dev, self._info = {}, {}
                self._build(x)
            else:
                self._add(x)

    # --- search -------------------------------------------------------------------
    def _mask(self, valid):
        """(device mask or None, number of valid rows)."""
        mask = prepare_mask(valid, self._n)
        if mask is None:
            return None, self._n
        nvalid = int(np.count_nonzero(mask))
        if nvalid == self._n:
            return None, nvalid
        return self.xp.asarray(mask), nvalid

    @property
    def batches_run(self) -> int:
        """Device searches that served more than one concurrent request."""
        return self._batcher.batches_run

    @property
    def queries_batched(self) -> int:
        """Queries answered by those searches."""
        return self._batcher.queries_batched

    def search(
        self, queries: np.ndarray, k: int, params: dict, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = self._prepare(queries)
        sp = validate_search_params(self.index_type, self.metric_type, params, k)
        key = self._batch_key(q, k, sp, valid)
        if key is None:
            with self._lock.read():
                return self._search_locked(q, k, sp, valid)
        return self._batcher.run(key, q, self._search_batch, k, sp, key[2])

    @staticmethod
    def _batch_key(q: np.ndarray, k: int, sp: dict, valid) -> tuple[int, tuple, int | None] | None:
        """What a search may share a batch on: (k, params, mask length or None); None: not batchable
        (no queries, many queries, or a mask that excludes rows). The validated params are
        scalars in a fixed order, so their items are the key as they come."""
        if not 0 < len(q) < BATCH_MAX_NQ:
            return None
        if valid is None:
            return k, tuple(sp.items()), None
        v = np.asarray(valid)
        if v.ndim != 1 or not v.all():
            return None
        return k, tuple(sp.items()), len(v)  # all valid: rows added after this snapshot stay excluded

    def _search_batch(self, qs: np.ndarray, k: int, sp: dict, rows: int | None):
        with self._lock.read():
            valid = None if rows is None or rows == self._n else np.ones(rows, dtype=np.bool_)
            return self._search_locked(qs, k, sp, valid)

    def _search_locked(self, q: np.ndarray, k: int, sp: dict, valid) -> tuple[np.ndarray, np.ndarray]:
        """One search over prepared queries; the caller holds the read lock."""
        mask, nvalid = self._mask(valid)
        if nvalid == 0 or not len(q):
            return empty_result(len(q), k, self.metric_type)
        xp = self.xp
        qd = xp.asarray(q)
        exhaustive = not self.approximate or (
            mask is not None and (nvalid <= k or nvalid < EXHAUSTIVE_VALID_FRACTION * self._n)
        )
        if exhaustive:
            d, i = self._search_exact(qd, k, mask)
        else:
            d, i = self._search_approx(qd, k, sp, mask)
            short = xp.flatnonzero((i >= 0).sum(axis=1) < min(k, nvalid))
            if short.size:
                d[short], i[short] = self._search_exact(qd[short], k, mask)
        return to_host(d), to_host(i)

    def range_search(
        self,
        queries: np.ndarray,
        radius: float,
        range_filter: float | None,
        params: dict,
        valid: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        check_range_params(self.metric_type, radius, range_filter)
        q = self._prepare(queries)
        sp = validate_search_params(self.index_type, self.metric_type, params, 1, range_search=True)
        rf = None if range_filter is None else float(range_filter)
        with self._lock.read():
            mask, nvalid = self._mask(valid)
            if nvalid == 0 or not len(q):
                return [(np.empty(0, np.float32), np.empty(0, np.int64)) for _ in range(len(q))]
            exhaustive = not self.approximate or (
                mask is not None and nvalid < EXHAUSTIVE_VALID_FRACTION * self._n
            )
            rows, d, ids = self._range(self.xp.asarray(q), float(radius), rf, sp, mask, exhaustive)
        return assemble_range(len(q), rows, d, ids, is_similarity(self.metric_type), limit)

    # --- exact helpers over stored rows ------------------------------------------
    def _rows_subset(self, x, xnorm, mask, ids):
        """Restrict rows to the valid ones when that saves work.

        Returns (x, xnorm, ids, bias, ids_sorted): either the gathered valid
        rows (offsets ascending) or all rows with a +inf bias on invalid ones.
        """
        xp = self.xp
        if mask is None:
            return x, xnorm, ids, None, ids is None
        nvalid = int(mask.sum())
        if 2 * nvalid < len(x):
            sel = xp.flatnonzero(mask)
            if ids is not None:
                sub = ids[sel]
                order = xp.argsort(sub)
                sel, sub = sel[order], sub[order]
            else:
                sub = sel
            return x[sel], xnorm[sel], sub, None, True
        bias = xp.where(mask, np.float32(0), _INF).astype(xp.float32)
        return x, xnorm, ids, bias, ids is None

    def _exact_rows(self, q, k: int, x, xnorm, mask, ids=None):
        """Exact top-k over rows ``x`` (``mask`` and ``ids`` in the same row order)."""
        xs, ns, sub, bias, in_order = self._rows_subset(x, xnorm, mask, ids)
        return knn_exact(self.xp, q, xs, ns, k, self._metric, ids=sub, bias=bias, sort_ids=not in_order)

    def _range_rows(self, q, radius: float, range_filter, x, xnorm, mask, ids=None):
        xs, ns, sub, bias, _ = self._rows_subset(x, xnorm, mask, ids)
        return range_exact(self.xp, q, xs, ns, self._metric, radius, range_filter, ids=sub, bias=bias)

    # --- persistence ------------------------------------------------------------------
    def save(self, path: str) -> None:
        """One file (storage.py layout): JSON meta + host copies of the device arrays."""
        from vecdb.index.index_file import write_index_file  # index_file imports FAISS

        with self._lock.read():
            meta = self._file_meta("gpu", ntotal=self._n, info=self._info)
            write_index_file(path, meta, arrays={name: to_host(a) for name, a in self._dev.items()})

    @classmethod
    def from_saved(cls, meta: dict, arrays: dict[str, np.ndarray], xp: Any = None) -> GpuIndex:
        """Upload a saved index (refused with MemoryLimitExceeded when it will not fit)."""
        self = cls(meta["index_type"], meta["metric_type"], meta["dim"], meta["params"],
                   meta["vector_type"], xp=xp)
        n = int(meta["ntotal"])
        self._ensure_memory(n, building=False)
        self._dev = {name: self.xp.asarray(np.asarray(a)) for name, a in arrays.items()}
        self._info = dict(meta.get("info") or {})
        self._n = n
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.index_type}, {self.metric_type}, dim={self.dim}, ntotal={self.ntotal})"

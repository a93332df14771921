"""Binary-vector indexes: BIN_FLAT and BIN_IVF_FLAT (HAMMING, JACCARD).

Codes are packed uint8 rows (dim / 8 bytes). FAISS's binary indexes only know
Hamming, and IndexBinaryIVF takes no IDSelector, so:

- BIN_FLAT keeps its codes in a FAISS IndexBinaryFlat. HAMMING top-k and
  range search run in FAISS (with the filter bitmap); JACCARD runs the numpy
  kernel of ``bruteforce`` over a zero-copy view of the same codes.
- BIN_IVF_FLAT is our own inverted file: centroids trained by FAISS's binary
  k-means (nlist clamped like knowhere's MatchNlist), every row's list id, and
  rows grouped by list (``order``/``bounds``). A query scores the rows of its
  ``nprobe`` nearest lists exactly with either metric. Rows added before the
  index could train (an empty build) are searched exhaustively until there
  are nlist * 39 of them.

Filtering follows the float indexes: few valid rows, or a query that comes
back short, and the valid rows are scanned exhaustively.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from vecdb.index.base import (
    LockedIndex,
    as_binary,
    check_range_params,
    empty_result,
    fix_padding,
    prepare_mask,
    split_range_result,
)
from vecdb.index.bruteforce import binary_distances, knn_exact, popcounts, range_exact, topk_from_distances
from vecdb.index.faiss_index import (
    EXHAUSTIVE_VALID_FRACTION,
    MIN_POINTS_PER_CENTROID,
    SMALL_SCAN_WORK,
    faiss_search_params,
    match_nlist,
)
from vecdb.index.index_file import write_index_file
from vecdb.index.params import validate_search_params
from vecdb.index.threads import threads_for_queries
from vecdb.schema import DataType

_EMPTY = (np.empty(0, np.float32), np.empty(0, np.int64))
_SMALL_ASSIGN = 1 << 16  # queries x centroids below which list assignment stays in one thread


class _Rows:
    """An append-only array with amortised growth; ``data`` is the live prefix."""

    def __init__(self, width: int | None, dtype: Any, initial: np.ndarray | None = None) -> None:
        shape = (0,) if width is None else (0, width)
        self._buf = np.empty(shape, dtype=dtype) if initial is None else initial
        self._n = len(self._buf)

    @property
    def data(self) -> np.ndarray:
        return self._buf[: self._n]

    def append(self, rows: np.ndarray) -> None:
        need = self._n + len(rows)
        if need > len(self._buf) or not self._buf.flags.writeable:
            grown = np.empty((max(need, 2 * len(self._buf), 1024),) + self._buf.shape[1:], dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n:need] = rows
        self._n = need


class BinaryIndex(LockedIndex):
    """BIN_FLAT / BIN_IVF_FLAT; see the module docstring and VectorIndex for the rules."""

    def __init__(self, index_type: str, metric_type: str, dim: int, params: dict,
                 vector_type: DataType = DataType.BINARY_VECTOR) -> None:
        self._init_index(index_type, metric_type, dim, params, vector_type)
        self._ivf = index_type == "BIN_IVF_FLAT"
        self._nbytes = dim // 8
        self._reset()

    def _reset(self) -> None:
        self._flat = None if self._ivf else faiss.IndexBinaryFlat(self.dim)
        self._codes = _Rows(self._nbytes, np.uint8)  # IVF only
        self._pops = _Rows(None, np.int32)  # JACCARD only
        self._assign = _Rows(None, np.int32)  # IVF only, once trained
        self._centroids: np.ndarray | None = None
        self._quantizer: Any = None
        self._order = np.empty(0, np.int64)
        self._bounds = np.zeros(1, np.int64)

    # --- state ----------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._flat.ntotal) if self._flat is not None else len(self._codes.data)

    @property
    def is_trained(self) -> bool:
        return not self._ivf or self._centroids is not None

    def codes(self) -> np.ndarray:
        """All codes in offset order (a view, not a copy)."""
        if self._flat is None:
            return self._codes.data
        n = self._flat.ntotal
        if n == 0:
            return np.empty((0, self._nbytes), np.uint8)
        xb = self._flat.xb  # type: ignore[attr-defined]  # faiss stubs lack IndexBinaryFlat.xb
        return faiss.rev_swig_ptr(xb.data(), n * self._nbytes).reshape(n, self._nbytes)

    def _pops_view(self) -> np.ndarray | None:
        return self._pops.data if self.metric_type == "JACCARD" else None

    # --- build / add ----------------------------------------------------
    def build(self, vectors: np.ndarray) -> None:
        x = as_binary(vectors, self.dim)
        with self._lock.write():
            self._check_writable()
            self._reset()
            self._append(x)
            if self._ivf and len(x):
                self._train(match_nlist(len(x), self.params["nlist"]))

    def add(self, vectors: np.ndarray) -> None:
        x = as_binary(vectors, self.dim)
        if not len(x):
            return
        with self._lock.write():
            self._check_writable()
            self._append(x)
            if not self._ivf:
                return
            if self._centroids is not None:
                self._assign.append(self._nearest_lists(x, 1)[:, 0])
                self._regroup()
            elif self.ntotal >= self.params["nlist"] * MIN_POINTS_PER_CENTROID:
                self._train(self.params["nlist"])

    def _append(self, x: np.ndarray) -> None:
        if self._flat is not None:
            self._flat.add(x)
        else:
            self._codes.append(x)
        if self.metric_type == "JACCARD":
            self._pops.append(popcounts(x))

    def _train(self, nlist: int) -> None:
        codes = np.ascontiguousarray(self.codes())
        trainer = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(self.dim), self.dim, nlist)
        trainer.cp.min_points_per_centroid = 1
        trainer.train(codes)
        quantizer = faiss.downcast_IndexBinary(trainer.quantizer)
        n = quantizer.ntotal
        xb = quantizer.xb  # type: ignore[attr-defined]  # faiss stubs lack IndexBinaryFlat.xb
        self._set_centroids(faiss.rev_swig_ptr(xb.data(), n * self._nbytes).reshape(n, self._nbytes).copy())
        self._assign = _Rows(None, np.int32)
        self._assign.append(self._nearest_lists(codes, 1)[:, 0])
        self._regroup()

    def _set_centroids(self, centroids: np.ndarray) -> None:
        self._centroids = centroids
        self._quantizer = faiss.IndexBinaryFlat(self.dim)
        self._quantizer.add(np.ascontiguousarray(centroids))

    def _nearest_lists(self, x: np.ndarray, nprobe: int) -> np.ndarray:
        centroids = self._centroids
        assert centroids is not None, "only a trained IVF index has lists"
        nprobe = min(nprobe, len(centroids))
        if len(x) * len(centroids) <= _SMALL_ASSIGN:
            # FAISS's binary flat search spreads even one query over OpenMP threads,
            # which costs a scheduler tick on a busy machine; a tiny scan is faster alone.
            d = binary_distances(centroids, x, "HAMMING")
            return topk_from_distances(d, nprobe, "HAMMING")[1]
        return self._quantizer.search(np.ascontiguousarray(x), nprobe)[1]

    def _regroup(self) -> None:
        assert self._centroids is not None, "only a trained IVF index has lists"
        assign = self._assign.data
        self._order = np.argsort(assign, kind="stable").astype(np.int64)
        self._bounds = np.searchsorted(assign[self._order], np.arange(len(self._centroids) + 1)).astype(np.int64)

    def raw_vectors(self) -> None:
        """Binary codes stay in their own buffers: nothing to share."""
        return None

    # --- search ---------------------------------------------------------
    def _filter_mode(self, mask: np.ndarray | None, k: int) -> tuple[np.ndarray | None, int, bool]:
        n = self.ntotal
        exhaustive = not self._ivf or not self.is_trained
        if mask is None:
            return None, n, exhaustive
        nvalid = int(np.count_nonzero(mask))
        if nvalid == n:
            return None, n, exhaustive
        exhaustive = exhaustive or (
            nvalid <= k or nvalid < EXHAUSTIVE_VALID_FRACTION * n or nvalid * self.dim / 32 <= SMALL_SCAN_WORK
        )
        return mask, nvalid, exhaustive

    def _candidates(self, lists: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        parts = [self._order[self._bounds[l]:self._bounds[l + 1]] for l in lists if l >= 0]
        cand = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return cand[mask[cand]] if mask is not None else cand

    def search(
        self, queries: np.ndarray, k: int, params: dict, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = as_binary(queries, self.dim)
        threads_for_queries(len(q))
        sp = validate_search_params(self.index_type, self.metric_type, params, k)
        with self._lock.read():
            mask, nvalid, exhaustive = self._filter_mode(prepare_mask(valid, self.ntotal), k)
            if nvalid == 0 or not len(q):
                return empty_result(len(q), k, self.metric_type)
            ids = None if mask is None else np.flatnonzero(mask)
            if self._flat is not None and self.metric_type == "HAMMING":
                return self._faiss_knn(q, k, mask)
            if exhaustive:
                return knn_exact(self.codes(), q, k, self.metric_type, ids, self._pops_view())
            d, i = empty_result(len(q), k, self.metric_type)
            lists = self._nearest_lists(q, sp["nprobe"])
            for qi in range(len(q)):
                cand = self._candidates(lists[qi], mask)
                d[qi:qi + 1], i[qi:qi + 1] = knn_exact(
                    self.codes(), q[qi:qi + 1], k, self.metric_type, cand, self._pops_view()
                )
            short = np.flatnonzero((i >= 0).sum(axis=1) < min(k, nvalid))
            if len(short):
                d[short], i[short] = knn_exact(self.codes(), q[short], k, self.metric_type, ids, self._pops_view())
            return d, i

    def _faiss_knn(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        assert self._flat is not None, "BIN_FLAT only"
        params, packed = self._faiss_params(mask)
        d, i = self._flat.search(q, k, params=params)
        del packed
        return fix_padding(d.astype(np.float32), i, self.metric_type)

    @staticmethod
    def _faiss_params(mask: np.ndarray | None) -> tuple[Any, Any]:
        if mask is None:
            return None, None
        packed = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed))
        return faiss_search_params(faiss.SearchParameters, sel=sel), packed

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
        q = as_binary(queries, self.dim)
        threads_for_queries(len(q))
        sp = validate_search_params(self.index_type, self.metric_type, params, 1, range_search=True)
        with self._lock.read():
            mask, nvalid, exhaustive = self._filter_mode(prepare_mask(valid, self.ntotal), 0)
            if nvalid == 0 or not len(q):
                return [_EMPTY for _ in range(len(q))]
            ids = None if mask is None else np.flatnonzero(mask)
            if self._flat is not None and self.metric_type == "HAMMING":
                fp, packed = self._faiss_params(mask)
                # Integer distances: d < radius  <=>  d < ceil(radius).
                lims, d, i = self._flat.range_search(q, int(np.ceil(radius)), params=fp)
                del packed
                return split_range_result(lims, d.astype(np.float32), i, self.metric_type, radius, range_filter, limit)
            if exhaustive:
                return range_exact(self.codes(), q, radius, range_filter, self.metric_type, ids,
                                   self._pops_view(), limit)
            lists = self._nearest_lists(q, sp["nprobe"])
            return [
                range_exact(self.codes(), q[qi:qi + 1], radius, range_filter, self.metric_type,
                            self._candidates(lists[qi], mask), self._pops_view(), limit)[0]
                for qi in range(len(q))
            ]

    # --- persistence ----------------------------------------------------
    def save(self, path: str) -> None:
        with self._lock.read():
            meta = self._file_meta("binary")
            arrays = {"pops": self._pops.data}
            if self._ivf:
                arrays["codes"] = self._codes.data
                if self._centroids is not None:
                    arrays.update(centroids=self._centroids, assign=self._assign.data,
                                  order=self._order, bounds=self._bounds)
            write_index_file(path, meta, self._flat, binary=True, arrays=arrays)

    @classmethod
    def from_saved(cls, meta: dict, index: Any, arrays: dict, mmap: bool) -> BinaryIndex:
        self = cls(meta["index_type"], meta["metric_type"], meta["dim"], meta["params"], meta["vector_type"])
        self._flat = index
        self._pops = _Rows(None, np.int32, arrays["pops"])
        if self._ivf:
            self._codes = _Rows(self._nbytes, np.uint8, arrays["codes"])
            if "centroids" in arrays:
                self._set_centroids(np.asarray(arrays["centroids"]))
                self._assign = _Rows(None, np.int32, arrays["assign"])
                self._order, self._bounds = arrays["order"], arrays["bounds"]
        self._read_only = mmap
        return self

    def __repr__(self) -> str:
        return f"BinaryIndex({self.index_type}, {self.metric_type}, dim={self.dim}, ntotal={self.ntotal})"


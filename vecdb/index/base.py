"""The index protocol, its rules, and the small helpers every index shares.

Offsets: a segment's rows are numbered 0..n-1 in insertion order; every index
works in that offset space. ``add`` continues the numbering.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import numpy as np

from vecdb.errors import InvalidParameter, OperationNotSupported
from vecdb.schema import DataType
from vecdb.vectors_check import MAX_SQUARED_NORM, invalid_rows

FLOAT_METRICS = ("L2", "IP", "COSINE")
BINARY_METRICS = ("HAMMING", "JACCARD")
MINHASH_METRIC = "MHJACCARD"  # MinHash signatures in BINARY_VECTOR fields (vecdb.index.minhash)
SIMILARITY_METRICS = frozenset({"IP", "COSINE", "BM25",  # BM25: sparse full text (vecdb.bm25)
                                MINHASH_METRIC,
                                "MAX_SIM", "MAX_SIM_COSINE", "MAX_SIM_IP"})  # embedding lists (vecdb.emb_list)

@runtime_checkable
class VectorIndex(Protocol):
    """One vector index over the rows of one segment.

    Rules every implementation follows (and ``brute_force_search`` defines):

    - **Offsets.** Rows are numbered 0..ntotal-1 in the order they were given
      to ``build`` then ``add``; results are offsets (int64), never primary keys.
    - **Distances** are reported the way Milvus reports them: L2 = squared
      euclidean; IP = inner product; COSINE = cosine similarity (vectors are
      normalised on the way in, caller arrays are never mutated, a zero vector
      has similarity 0 to everything, never NaN); HAMMING = differing bit
      count; JACCARD = 1 - |a & b| / |a | b| (0 for two all-zero vectors);
      MHJACCARD = the share of equal MinHash elements, an estimate of the sets'
      Jaccard similarity in [0, 1] (``vecdb.index.minhash``).
    - **Order.** Best first: ascending for L2/HAMMING/JACCARD, descending for
      IP/COSINE/MHJACCARD (``is_similarity``).
    - **Padding.** When fewer than k rows qualify, a result row is padded with
      offset -1 and distance +inf (L2-like) or -inf (IP/COSINE).
    - **Filter.** ``valid`` is an optional bool mask over offsets (rows that
      pass the filter and are not deleted). Rows with valid[i] False are never
      returned. A mask shorter than ntotal treats the missing tail as invalid
      (a snapshot taken before later ``add`` calls). When few rows are valid,
      or an approximate index comes back short, the index searches the valid
      rows exhaustively so recall does not collapse.
    - **Range search** (Milvus 2.3): L2/HAMMING/JACCARD keep
      ``range_filter <= d < radius``; IP/COSINE keep ``radius < d <= range_filter``;
      ``range_filter`` is optional; a combination the other way round raises
      InvalidParameter. Each query's hits come back best first, cut to
      ``limit`` when given.
    - **Inputs.** FLOAT_VECTOR: float32 (n, dim); FLOAT16_VECTOR: float16 and
      BFLOAT16_VECTOR: uint16 raw bits, both converted to float32; float64 is
      accepted and converted. BINARY_VECTOR: uint8 (n, dim // 8).
    - **Threads.** search/range_search may run concurrently with each other
      and with ``add`` (an internal reader/writer lock); FAISS releases the
      GIL while it works. ``freeze()`` ends writes for good (sealed segments):
      later ``build``/``add`` raise and searches run without the lock.
    - **Raw vectors.** ``raw_vectors()`` returns a read-only, zero-copy (ntotal, dim)
      view of the vectors exactly as given, in offset order, when the index
      keeps them that way (FLAT, HNSW, SCANN with raw data; not COSINE, which
      stores them normalised), else None. The view keeps the index alive; a
      sealed segment drops its own copy of the column for it.
    - **Persistence.** ``save`` writes one file; ``load_index(path, mmap=True)``
      maps what FAISS can map. An mmap-loaded index is read-only.
    """

    index_type: str
    metric_type: str
    dim: int

    @property
    def ntotal(self) -> int: ...

    def build(self, vectors: np.ndarray) -> None: ...

    def add(self, vectors: np.ndarray) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, params: dict, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def range_search(
        self,
        queries: np.ndarray,
        radius: float,
        range_filter: float | None,
        params: dict,
        valid: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]: ...

    def save(self, path: str) -> None: ...

    def freeze(self) -> None: ...

    def raw_vectors(self) -> np.ndarray | None: ...


class _ForeignMemory:
    """Exposes C memory owned by ``owner`` to numpy; arrays made from it keep ``owner`` alive."""

    def __init__(self, address: int, shape: tuple[int, ...], typestr: str, owner: object) -> None:
        self.owner = owner
        self.__array_interface__ = {"data": (address, True), "shape": shape, "typestr": typestr, "version": 3}


def owned_view(address: int, shape: tuple[int, ...], dtype, owner: object) -> np.ndarray:
    """A read-only numpy view of ``address`` that holds a reference to ``owner`` (the C object
    that owns the memory), so the memory outlives every view of it."""
    if not np.prod(shape):
        return np.empty(shape, dtype)
    return np.asarray(_ForeignMemory(address, tuple(shape), np.dtype(dtype).str, owner))


def is_similarity(metric_type: str) -> bool:
    """True for IP/COSINE, where a bigger value is closer."""
    return metric_type.upper() in SIMILARITY_METRICS


def pad_value(metric_type: str) -> float:
    """Distance used for padding slots: the worst possible value."""
    return float("-inf") if is_similarity(metric_type) else float("inf")


def empty_result(nq: int, k: int, metric_type: str) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.full((nq, k), pad_value(metric_type), dtype=np.float32),
        np.full((nq, k), -1, dtype=np.int64),
    )


def fix_padding(distances: np.ndarray, offsets: np.ndarray, metric_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Coerce FAISS output to our dtypes and padding convention (in place where possible)."""
    d = np.ascontiguousarray(distances, dtype=np.float32)
    i = np.ascontiguousarray(offsets, dtype=np.int64)
    missing = i < 0
    if missing.any():
        d[missing] = pad_value(metric_type)
        i[missing] = -1
    return d, i


# --- input conversion --------------------------------------------------------
def as_float32(x: np.ndarray, dim: int) -> np.ndarray:
    """Return a C-contiguous float32 (n, dim) view or copy of float-like vectors.

    float16 (FLOAT16_VECTOR) is widened; uint16 is read as raw bfloat16 bits
    (the BFLOAT16_VECTOR column type) and shifted into the high half of a
    float32; other numeric types are cast.
    """
    a = np.asarray(x)
    if a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == dim and a.flags.c_contiguous:
        return a  # already what FAISS takes (the usual search query)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise InvalidParameter(f"vectors must be a 2-D array, got {a.ndim} dimensions")
    if a.dtype == np.uint16:
        a = (a.astype(np.uint32) << 16).view(np.float32)
    elif a.dtype != np.float32:
        if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise InvalidParameter(f"float vectors must be numeric, got {a.dtype}")
        a = a.astype(np.float32)
    if a.shape[1] != dim:
        raise InvalidParameter(f"the dim ({a.shape[1]}) of vectors is not equal to the index dim ({dim})")
    return np.ascontiguousarray(a)


def as_binary(x: np.ndarray, dim: int) -> np.ndarray:
    """Return C-contiguous uint8 (n, dim // 8) packed binary vectors."""
    a = np.asarray(x)
    if a.dtype == np.uint8 and a.ndim == 2 and a.shape[1] * 8 == dim and a.flags.c_contiguous:
        return a  # already what FAISS takes (the usual search query)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise InvalidParameter(f"vectors must be a 2-D array, got {a.ndim} dimensions")
    if a.dtype != np.uint8:
        if a.dtype.itemsize == 1:
            a = a.view(np.uint8)
        else:
            raise InvalidParameter(f"binary vectors must be packed uint8, got {a.dtype}")
    if a.shape[1] * 8 != dim:
        raise InvalidParameter(f"the dim ({a.shape[1] * 8}) of binary vectors is not equal to the index dim ({dim})")
    return np.ascontiguousarray(a)


def check_indexable(x: np.ndarray) -> None:
    """Refuse rows that native index code cannot take safely (``vecdb.vectors_check``): inserts
    refuse them now, but a segment stored before that check may still hold one, and FAISS's
    k-means aborts the whole process on a vector of 1e20. Raised inside a build, the error is
    recorded as the build's failure and the segment is searched exactly."""
    bad = invalid_rows(x)
    if len(bad):
        raise InvalidParameter(
            f"{len(bad)} of the {len(x)} vectors to index (the first at offset {bad[0]}) hold NaN or infinity "
            f"or have a squared L2 norm above {MAX_SQUARED_NORM:.0e}, beyond which distances overflow float32")


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows into a new array; zero rows stay zero (no NaN)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return (x / norms).astype(np.float32, copy=False)


def prepare_mask(valid: np.ndarray | None, ntotal: int) -> np.ndarray | None:
    """Validate a filter mask; returns a bool array of length ntotal, or None for "all rows".

    A shorter mask is padded with False (rows added after the snapshot).
    """
    if valid is None:
        return None
    v = np.asarray(valid)
    if v.dtype != np.bool_:
        v = v.astype(np.bool_)
    if v.ndim != 1:
        raise InvalidParameter("valid mask must be 1-D")
    if len(v) > ntotal:
        raise InvalidParameter(f"valid mask has {len(v)} rows but the index holds {ntotal}")
    if len(v) < ntotal:
        v = np.concatenate([v, np.zeros(ntotal - len(v), dtype=np.bool_)])
    return v


# --- range search ------------------------------------------------------------
def check_range_params(metric_type: str, radius: float, range_filter: float | None) -> None:
    """Milvus 2.3 rule: range_filter must lie on the "closer" side of radius."""
    if range_filter is None:
        return
    if is_similarity(metric_type):
        if radius >= range_filter:
            raise InvalidParameter(
                f"range_filter must be greater than radius for IP/COSINE, "
                f"range_filter:{range_filter:f}, radius:{radius:f}"
            )
    elif radius <= range_filter:
        raise InvalidParameter(
            f"range_filter must be less than radius for L2/HAMMING/JACCARD, "
            f"range_filter:{range_filter:f}, radius:{radius:f}"
        )


def in_range_mask(d: np.ndarray, metric_type: str, radius: float, range_filter: float | None) -> np.ndarray:
    """Rows of ``d`` within the Milvus range (see check_range_params)."""
    if is_similarity(metric_type):
        m = d > radius
        if range_filter is not None:
            m &= d <= range_filter
    else:
        m = d < radius
        if range_filter is not None:
            m &= d >= range_filter
    return m


def finish_range(
    d: np.ndarray, i: np.ndarray, metric_type: str, radius: float, range_filter: float | None, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep one query's hits inside the range, sort best first, cut to ``limit``."""
    d = np.asarray(d, dtype=np.float32)
    i = np.asarray(i, dtype=np.int64)
    keep = in_range_mask(d, metric_type, radius, range_filter) & (i >= 0)
    d, i = d[keep], i[keep]
    key = -d if is_similarity(metric_type) else d
    order = np.lexsort((i, key))
    if limit is not None and limit >= 0:
        order = order[:limit]
    return d[order], i[order]


def split_range_result(
    lims: np.ndarray, d: np.ndarray, i: np.ndarray, metric_type: str, radius: float,
    range_filter: float | None, limit: int | None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Turn FAISS (lims, D, I) range output into per-query sorted results."""
    return [
        finish_range(d[lims[q]:lims[q + 1]], i[lims[q]:lims[q + 1]], metric_type, radius, range_filter, limit)
        for q in range(len(lims) - 1)
    ]


# --- locking -----------------------------------------------------------------
class RWLock:
    """Many readers (searches) or one writer (add). Writers are not starved:
    a waiting writer blocks new readers. Once ``freeze`` has run (no writer will
    ever come again: a sealed segment's index), readers take no lock at all."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._frozen = False

    def freeze(self) -> None:
        """Wait for the current writer, then make every later write fail and reads lock-free."""
        self.acquire_write()
        self._frozen = True
        self.release_write()

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        if self._frozen:
            raise OperationNotSupported("the index is frozen (sealed) and read-only")
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            if self._frozen:
                self._cond.notify_all()
                raise OperationNotSupported("the index is frozen (sealed) and read-only")
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    def read(self) -> _Guard:
        return _UNLOCKED if self._frozen else _Guard(self.acquire_read, self.release_read)

    def write(self) -> _Guard:
        return _Guard(self.acquire_write, self.release_write)


class LockedIndex:
    """What the in-memory indexes share: what they are (``_init_index``: type, metric, dim, build
    params, vector type; ``_file_meta``: the same in a saved index's metadata), a reader-writer lock
    (``_lock``) that ``freeze`` makes lock-free for a sealed segment's index, and ``_read_only`` for
    one loaded with mmap."""

    index_type: str
    metric_type: str
    dim: int
    params: dict
    vector_type: DataType
    _lock: RWLock
    _read_only: bool

    def _init_index(self, index_type: str, metric_type: str, dim: int, params: dict, vector_type) -> None:
        self.index_type = index_type
        self.metric_type = metric_type
        self.dim = dim
        self.params = dict(params)  # validated build params (validate_index_params output)
        self.vector_type = DataType(vector_type)
        self._lock = RWLock()
        self._read_only = False

    def _file_meta(self, kind: str, **extra) -> dict:
        """A saved index's metadata: its kind (the loader's switch), what it is, and ``extra``."""
        return {"kind": kind, "index_type": self.index_type, "metric_type": self.metric_type, "dim": self.dim,
                "vector_type": int(self.vector_type), "params": self.params, **extra}

    def _check_writable(self) -> None:
        if self._read_only:
            raise OperationNotSupported("index was loaded with mmap and is read-only")

    def freeze(self) -> None:
        """No more writes (a sealed segment's index): searches stop taking the lock."""
        self._lock.freeze()


class _Guard:
    __slots__ = ("_enter", "_exit")

    def __init__(self, enter, exit_) -> None:
        self._enter, self._exit = enter, exit_

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc) -> None:
        self._exit()


_UNLOCKED = _Guard(lambda: None, lambda: None)

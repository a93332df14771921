"""An index over the valid rows of a nullable vector field (Milvus 3.0), as Milvus builds it.

A null row of a nullable vector field holds a placeholder in the segment's column (zeros; the
field's validity mask says it is null). Indexing the placeholders as if they were vectors hurts:
measured with ``bench/nullable_vectors.py`` (40k x 96, half the rows null), an L2 HNSW graph
over the duplicate zero rows left 199 of 200 searches short of k hits, each then rescanned
exhaustively (recall kept, speed lost: 24 ms for the 200 queries against 3.5 ms over the valid
rows only), and IVF spends a centroid on the zeros. Milvus leaves null rows out of its index
(knowhere's offset mapping); so does ``ValidRowsIndex``:

- the inner index (any ``VectorIndex``: FAISS, binary, MinHash, GPU) holds the valid rows only,
  its labels 0..nvalid-1;
- ``rows`` maps an inner label to its segment offset (ascending: rows are appended in order),
  so results come back as segment offsets; a segment mask becomes a label mask with
  ``mask[rows]`` (the reverse map, one gather);
- ``ntotal`` is the segment rows covered, nulls included, so callers see the offset space of
  ``VectorIndex`` unchanged (``index.ntotal == segment rows`` checks keep working).
- a search whose mask keeps every valid row reaches the inner index unfiltered: a segment with
  nulls searches like a segment of its valid rows alone. (Over placeholders, the validity mask
  made the search a filtered one, and a filtered search over few rows scans them exactly: a
  BIN_IVF_FLAT segment half null answered exactly before, and now at its nprobe's recall.)

Files. ``save`` writes the inner index's file and adds the validity bitmap (``valid_rows``,
packed little-endian bits over the ``n`` segment rows) with ``{"valid_rows": {"n", "nvalid"}}`` in
its metadata. ``load_index`` wraps a file that has it; a file without it (every index written before
this, placeholders included) loads as the plain index it is, searched with the segment's validity
in the mask as before. An index over rows none of which is null is saved as its plain inner file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vecdb.index.base import LockedIndex, VectorIndex, empty_result, prepare_mask
from vecdb.index.index_file import append_to_index_file
from vecdb.schema import DataType

VALID_ROWS_ARRAY = "valid_rows"  # the packed validity bitmap in an index file
VALID_ROWS_META = "valid_rows"


def valid_array(valid: Any, n: int) -> np.ndarray | None:
    """A validity mask as a bool array of ``n`` rows, or None when ``valid`` is None."""
    if valid is None:
        return None
    v = np.asarray(valid)
    if v.dtype != np.bool_:
        v = v.astype(np.bool_)
    if v.shape != (n,):
        raise ValueError(f"validity mask of shape {v.shape} for {n} rows")
    return v


class ValidRowsIndex(LockedIndex):
    """``inner`` over the valid rows of a segment; see the module docstring."""

    def __init__(self, inner: VectorIndex, rows: np.ndarray | None = None, n: int = 0) -> None:
        self.inner = inner
        self._init_index(inner.index_type, inner.metric_type, inner.dim, getattr(inner, "params", {}),
                         getattr(inner, "vector_type", DataType.FLOAT_VECTOR))
        self._rows = np.empty(0, np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
        self._n = int(n)
        self._nrows = len(self._rows)

    # --- what it is ----------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Segment rows covered, null rows included (the offset space of VectorIndex)."""
        return self._n

    @property
    def nvalid(self) -> int:
        return self._nrows

    @property
    def rows(self) -> np.ndarray:
        """Segment offset of each inner label (read-only)."""
        r = self._rows[: self._nrows]
        r.flags.writeable = False
        return r

    def __getattr__(self, name: str) -> Any:  # anything else an index type offers (is_trained, held_bytes, ...)
        if name == "inner":  # not set yet (during unpickling, a failed __init__)
            raise AttributeError(name)
        return getattr(self.inner, name)

    # --- build / add ---------------------------------------------------------------------
    def build(self, vectors: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Index the rows of ``vectors`` whose ``valid`` is True (every row when None)."""
        v = valid_array(valid, len(vectors))
        with self._lock.write():
            self._check_writable()
            rows = np.arange(len(vectors), dtype=np.int64) if v is None else np.flatnonzero(v).astype(np.int64)
            self.inner.build(vectors if v is None or len(rows) == len(vectors) else vectors[rows])
            self._rows, self._nrows, self._n = rows, len(rows), len(vectors)

    def add(self, vectors: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Append segment rows ntotal.. (their valid ones to the inner index)."""
        v = valid_array(valid, len(vectors))
        if not len(vectors):
            return
        with self._lock.write():
            self._check_writable()
            new = np.arange(len(vectors), dtype=np.int64) if v is None else np.flatnonzero(v).astype(np.int64)
            if len(new):
                self.inner.add(vectors if len(new) == len(vectors) else vectors[new])
                need = self._nrows + len(new)
                if need > len(self._rows) or not self._rows.flags.writeable:
                    grown = np.empty(max(need, 2 * len(self._rows), 1024), np.int64)
                    grown[: self._nrows] = self._rows[: self._nrows]
                    self._rows = grown
                self._rows[self._nrows:need] = new + self._n
                self._nrows = need
            self._n += len(vectors)

    def freeze(self) -> None:
        self.inner.freeze()
        super().freeze()

    def raw_vectors(self) -> np.ndarray | None:
        """The inner index's raw rows when they are the segment's (no row is null), else None."""
        return self.inner.raw_vectors() if self._nrows == self._n else None

    # --- search --------------------------------------------------------------------------
    def _label_mask(self, valid: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray, bool]:
        """(inner mask or None for every label, label -> row map, any label searchable)."""
        rows = self._rows[: self._nrows]
        mask = prepare_mask(valid, self._n)
        if mask is None:
            return None, rows, self._nrows > 0
        inner = mask[rows]
        if inner.all():
            return None, rows, self._nrows > 0
        return inner, rows, bool(inner.any())

    @staticmethod
    def _to_rows(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, np.int64)
        return np.where(labels >= 0, rows[np.maximum(labels, 0)] if len(rows) else -1, -1)

    def search(
        self, queries: np.ndarray, k: int, params: dict, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        with self._lock.read():
            mask, rows, any_row = self._label_mask(valid)
            if not any_row:
                return empty_result(len(np.atleast_2d(queries)), k, self.metric_type)
            d, i = self.inner.search(queries, k, params, valid=mask)
            return d, self._to_rows(i, rows)

    def range_search(
        self,
        queries: np.ndarray,
        radius: float,
        range_filter: float | None,
        params: dict,
        valid: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        with self._lock.read():
            mask, rows, any_row = self._label_mask(valid)
            if not any_row:
                mask = np.zeros(self.inner.ntotal, bool)  # the inner index still checks the parameters
            per_query = self.inner.range_search(queries, radius, range_filter, params, valid=mask, limit=limit)
            return [(d, self._to_rows(i, rows)) for d, i in per_query]

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: str) -> None:
        with self._lock.read():
            if self._nrows == self._n:  # nothing null: the plain file says the same
                self.inner.save(path)
                return
            valid = np.zeros(self._n, bool)
            valid[self._rows[: self._nrows]] = True
            part = f"{path}.part{os.getpid()}"
            try:
                self.inner.save(part)
                append_to_index_file(part, {VALID_ROWS_META: {"n": self._n, "nvalid": self._nrows}},
                                     {VALID_ROWS_ARRAY: np.packbits(valid, bitorder="little")})
                os.replace(part, path)
            finally:
                if os.path.exists(part):
                    os.unlink(part)

    def __repr__(self) -> str:
        return f"ValidRowsIndex({self.inner!r}, nvalid={self._nrows}, ntotal={self._n})"


def split_saved(meta: dict, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray | None, int]:
    """(label -> row map, segment rows) of a saved ValidRowsIndex, taking its bitmap out of ``arrays``
    (the inner loader never sees it); (None, 0) for a plain index file."""
    info = meta.get(VALID_ROWS_META)
    bitmap = arrays.pop(VALID_ROWS_ARRAY, None)
    if info is None or bitmap is None:
        return None, 0
    n = int(info["n"])
    valid = np.unpackbits(np.asarray(bitmap), count=n, bitorder="little").view(bool)
    rows = np.flatnonzero(valid).astype(np.int64)
    if len(rows) != int(info["nvalid"]):
        from vecdb.errors import IoFailed  # noqa: PLC0415

        raise IoFailed(f"index file's valid rows ({len(rows)}) disagree with its metadata ({info['nvalid']})")
    return rows, n


def wrap_saved(inner: VectorIndex, rows: np.ndarray | None, n: int, mmap: bool) -> VectorIndex:
    """The loaded ``inner`` as it was saved: wrapped when its file had valid rows."""
    if rows is None:
        return inner
    out = ValidRowsIndex(inner, rows, n)
    out._read_only = mmap
    return out


def index_valid_rows(inner: VectorIndex, vectors: np.ndarray, valid: np.ndarray | None,
                     always: bool = False) -> VectorIndex:
    """Build ``inner`` over ``vectors``: over the valid rows only (wrapped) when some row is null,
    or when ``always`` (a growing index, whose later rows may be null); plainly otherwise."""
    v = valid_array(valid, len(vectors))
    if not always and (v is None or v.all()):
        inner.build(vectors)
        return inner
    out = ValidRowsIndex(inner)
    out.build(vectors, v)
    return out

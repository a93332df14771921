"""SPARSE_FLOAT_VECTOR: the column form, validation, and exact / inverted-index search.

Column form (see vecdb.schema): an object array with one ``bytes`` value per row, the
Milvus wire format itself: ``nnz`` little-endian pairs of (uint32 index, float32 value),
indices strictly increasing. Memory is proportional to the non-zeros (8 bytes each plus
one bytes object per row). Object arrays slice, take and concatenate like every other
column, so segments, compaction and gathers need nothing special; the log records, segment
files and internal RPCs carry the rows as one blob plus row lengths (see ``pack``).

Search is inner product (the only metric Milvus has for sparse vectors without BM25). A
segment's rows are turned into postings (CSR sorted by dimension: for every dimension the
rows holding it and their values) once per sealed segment and per growing prefix; a query
then gathers the postings of its own dimensions and sums ``q_value * x_value`` per row with
``np.bincount``: no per-row Python work. As in knowhere, a row that shares no dimension with
the query is not a hit (its score, 0, is never computed).

SPARSE_INVERTED_INDEX and SPARSE_WAND are the same postings (``drop_ratio_build``: the
smallest values, that fraction of all the segment's values, are left out at build time);
``drop_ratio_search`` leaves out the smallest fraction of each query's values. With both at 0
the result is exact, which is what WAND's pruning guarantees in knowhere too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vecdb.errors import InvalidParameter

PAIR = np.dtype([("i", "<u4"), ("v", "<f4")])
MAX_INDEX = 2**32 - 1  # exclusive: Milvus refuses index 2^32-1
SPARSE_INDEX_TYPES = ("SPARSE_INVERTED_INDEX", "SPARSE_WAND")
SPARSE_METRICS = ("IP",)


def column(rows: Sequence[bytes]) -> np.ndarray:
    """An object column over ``rows`` (bytes values, no copy of the payloads)."""
    out = np.empty(len(rows), object)
    out[:] = list(rows)
    return out


def lengths(col: np.ndarray) -> np.ndarray:
    """Non-zeros per row."""
    return np.fromiter(map(len, col), np.int64, len(col)) // 8


def pack(col: np.ndarray) -> tuple[np.ndarray, bytes]:
    """``(nnz per row as uint32, all pairs as one blob)``: the stored form of a column."""
    return lengths(col).astype(np.uint32), b"".join(col.tolist())


def unpack(nnz: np.ndarray, blob: bytes | memoryview) -> np.ndarray:
    """Inverse of ``pack``."""
    ends = np.cumsum(np.asarray(nnz, np.int64) * 8).tolist()
    raw = bytes(blob)
    starts = [0] + ends[:-1]
    return column([raw[a:b] for a, b in zip(starts, ends, strict=True)])


def is_sparse_column(arr: np.ndarray) -> bool:
    return arr.dtype == object and len(arr) > 0 and isinstance(arr[0], bytes)


@dataclass
class Csr:
    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # uint32 (nnz,)
    values: np.ndarray  # float32 (nnz,)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1


def to_csr(col: np.ndarray) -> Csr:
    nnz = lengths(col)
    indptr = np.zeros(len(col) + 1, np.int64)
    np.cumsum(nnz, out=indptr[1:])
    pairs = np.frombuffer(b"".join(col.tolist()), PAIR)
    return Csr(indptr, pairs["i"].copy(), pairs["v"].copy())


def from_csr(csr: Csr) -> np.ndarray:
    pairs = np.empty(len(csr.indices), PAIR)
    pairs["i"], pairs["v"] = csr.indices, csr.values
    return unpack(np.diff(csr.indptr), pairs.tobytes())


def validate_rows(rows: Sequence[bytes], name: str, what: str = "sparse float vector") -> np.ndarray:
    """Check rows as Milvus does (typeutil.ValidateSparseFloatRows) and return the column.

    Each row: a multiple of 8 bytes, indices < 2^32-1 and strictly increasing (pymilvus sorts
    them; a repeated index is refused), values finite and not negative (-0.0 passes, as in Milvus).
    Empty rows are allowed (Milvus 2.5+ and pymilvus take them; they match no query)."""
    col = column(rows)
    nnz_bytes = np.fromiter(map(len, rows), np.int64, len(rows))
    bad = np.flatnonzero(nnz_bytes % 8)
    if len(bad):
        raise InvalidParameter(
            f"invalid data length in {what} of field ({name}): row {int(bad[0])} has "
            f"{int(nnz_bytes[bad[0]])} bytes, not a multiple of 8 (uint32 index + float32 value pairs)")
    csr = to_csr(col)
    if len(csr.indices):
        over = np.flatnonzero(csr.indices == np.uint32(MAX_INDEX))
        if len(over):
            raise InvalidParameter(
                f"invalid index in {what} of field ({name}): row {_row_of(csr, over[0])} "
                f"has index {MAX_INDEX}, must be less than 2^32-1")
        finite = np.isfinite(csr.values)
        if not finite.all():
            at = int(np.flatnonzero(~finite)[0])
            raise InvalidParameter(
                f"the {_row_of(csr, at)}th {what} of field ({name}) contains NaN or infinity: "
                f"value '{csr.values[at]}' is not a number or infinity")
        negative = np.flatnonzero(csr.values < 0)
        if len(negative):  # Milvus: typeutil.ValidateSparseFloatRows (insert), segcore's check (search)
            at = int(negative[0])
            raise InvalidParameter(
                f"negative value in {what} of field ({name}): row {_row_of(csr, at)} has "
                f"value {csr.values[at]!s} at index {int(csr.indices[at])}")
        step = np.diff(csr.indices.astype(np.int64)) <= 0
        starts = csr.indptr[1:-1]
        step[starts[(starts > 0) & (starts < len(csr.indices))] - 1] = False  # pairs across rows
        if step.any():
            at = int(np.flatnonzero(step)[0])
            raise InvalidParameter(
                f"unsorted or same indices in {what} of field ({name}): row {_row_of(csr, at)}")
    return col


def _row_of(csr: Csr, pos) -> int:
    return int(np.searchsorted(csr.indptr, int(pos), side="right")) - 1


def query_pairs(q: bytes, drop_ratio: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One query's (indices, values), the smallest ``drop_ratio`` of its |values| left out."""
    p = np.frombuffer(q, PAIR)
    idx, val = p["i"], p["v"]
    if drop_ratio > 0 and len(val) > 1:
        keep = len(val) - int(len(val) * drop_ratio)
        order = np.argsort(-np.abs(val), kind="stable")[:max(keep, 1)]
        idx, val = idx[order], val[order]
    return idx, val


class Postings:
    """A segment's rows by dimension (the inverted index); ``drop_ratio`` leaves out that
    fraction of the smallest |values| (SPARSE_INVERTED_INDEX / SPARSE_WAND ``drop_ratio_build``)."""

    def __init__(self, col: np.ndarray, drop_ratio: float = 0.0):
        csr = to_csr(col)
        self.ntotal = csr.n
        rows = np.repeat(np.arange(csr.n, dtype=np.int64), np.diff(csr.indptr))
        idx, val = csr.indices, csr.values
        if drop_ratio > 0 and len(val):
            cut = np.quantile(np.abs(val), drop_ratio)
            keep = np.abs(val) >= cut if drop_ratio < 1 else np.zeros(len(val), bool)
            rows, idx, val = rows[keep], idx[keep], val[keep]
        order = np.argsort(idx, kind="stable")
        self.rows = rows[order]
        self.values = val[order]
        sorted_idx = idx[order]
        self.dims, starts = np.unique(sorted_idx, return_index=True)
        self.starts = np.append(starts, len(sorted_idx)).astype(np.int64)

    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.values.nbytes + self.dims.nbytes + self.starts.nbytes)

    def scores(self, q: bytes, drop_ratio: float = 0.0, weigh=None) -> tuple[np.ndarray, np.ndarray]:
        """(rows touched by the query, their inner products), rows ascending. ``weigh(rows, values)``
        replaces the rows' values first (BM25's saturated term frequencies: vecdb.bm25)."""
        qi, qv = query_pairs(q, drop_ratio)
        if not len(qi) or not len(self.dims):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        pos = np.searchsorted(self.dims, qi)
        pos = np.minimum(pos, len(self.dims) - 1)
        hit = self.dims[pos] == qi
        pos, qv = pos[hit], qv[hit]
        if not len(pos):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        a, b = self.starts[pos], self.starts[pos + 1]
        counts = b - a
        # positions a[j] .. b[j]-1 for every query term j, without a Python loop
        offs = np.repeat(a - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        rows = self.rows[offs]
        x = self.values[offs].astype(np.float64) if weigh is None else weigh(rows, self.values[offs])
        w = x * np.repeat(qv.astype(np.float64), counts)
        acc = np.bincount(rows, weights=w, minlength=self.ntotal)  # O(rows + postings), no sort
        hit = np.zeros(self.ntotal, bool)
        hit[rows] = True
        touched = np.flatnonzero(hit)
        return touched, acc[touched].astype(np.float32)


def search(post: Postings, queries: np.ndarray, k: int, valid: np.ndarray | None,
           drop_ratio: float = 0.0, n: int | None = None, tail: Tail | None = None,
           weigh=None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` rows by inner product per query: (nq, k) scores and offsets, padded with
    -inf / -1; ties by offset. Rows at or past ``n`` (a growing segment's view) are not seen."""
    nq = len(queries)
    D = np.full((nq, k), -np.inf, np.float32)
    O = np.full((nq, k), -1, np.int64)
    for qi, q in enumerate(queries.tolist()):  # one pass per query (nq), never per row
        rows, s = _candidates(post, q, valid, drop_ratio, n, tail, weigh)
        if not len(rows):
            continue
        m = min(k, len(rows))
        if len(rows) > 4 * k:  # keep the k best and everything tied with the k-th, then sort those
            kth = np.partition(s, len(s) - m)[len(s) - m]
            keep = s >= kth
            rows, s = rows[keep], s[keep]
        order = np.lexsort((rows, -s))[:m]
        D[qi, :m], O[qi, :m] = s[order], rows[order]
    return D, O


def range_search(post: Postings, queries: np.ndarray, radius: float, range_filter: float | None,
                 valid: np.ndarray | None, limit: int | None, drop_ratio: float = 0.0,
                 n: int | None = None, tail: Tail | None = None, weigh=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: hits with ``radius < score <= range_filter``, best first (ties by offset)."""
    out = []
    for q in queries.tolist():
        rows, s = _candidates(post, q, valid, drop_ratio, n, tail, weigh)
        keep = s > radius
        if range_filter is not None:
            keep &= s <= range_filter
        rows, s = rows[keep], s[keep]
        order = np.lexsort((rows, -s))
        if limit is not None and limit >= 0:
            order = order[:limit]
        out.append((s[order], rows[order]))
    return out


class Tail:
    """Rows ``[start, start + len(col))`` of a growing segment that its postings do not cover yet,
    scored directly from their CSR (the query's dimensions looked up with a binary search)."""

    def __init__(self, col: np.ndarray, start: int):
        self.csr = to_csr(col)
        self.start = start
        self.row_of = np.repeat(np.arange(self.csr.n, dtype=np.int64), np.diff(self.csr.indptr))

    def scores(self, q: bytes, drop_ratio: float = 0.0, weigh=None) -> tuple[np.ndarray, np.ndarray]:
        qi, qv = query_pairs(q, drop_ratio)
        idx = self.csr.indices
        if not len(qi) or not len(idx):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        order = np.argsort(qi)
        qi, qv = qi[order], qv[order].astype(np.float64)
        p = np.minimum(np.searchsorted(qi, idx), len(qi) - 1)
        m = qi[p] == idx
        r = self.row_of[m]
        x = self.csr.values[m] if weigh is None else weigh(r + self.start, self.csr.values[m])
        acc = np.bincount(r, weights=x * qv[p[m]], minlength=self.csr.n)
        hit = np.zeros(self.csr.n, bool)
        hit[r] = True
        touched = np.flatnonzero(hit)
        return touched + self.start, acc[touched].astype(np.float32)


def _candidates(post: Postings, q: bytes, valid, drop_ratio: float, n: int | None, tail: Tail | None = None,
                weigh=None):
    rows, s = post.scores(q, drop_ratio, weigh)
    if n is not None and n < post.ntotal:
        keep = rows < n
        rows, s = rows[keep], s[keep]
    if tail is not None:  # its rows all come after the postings' rows: still ascending
        t_rows, t_s = tail.scores(q, drop_ratio, weigh)
        rows, s = np.concatenate([rows, t_rows]), np.concatenate([s, t_s])
    if valid is not None:
        keep = valid[rows]
        rows, s = rows[keep], s[keep]
    return rows, s


def brute_force(col: np.ndarray, queries: np.ndarray, k: int, valid: np.ndarray | None = None):
    """Exact top ``k`` over a column (reference; builds postings for the call)."""
    return search(Postings(col), queries, k, valid)


# --- the query node's per-segment search (vecdb.querynode.executor) ----------------------------
def segment_postings(seg, name: str, n: int, drop_ratio_build: float) -> tuple[Postings, Tail | None]:
    """The postings of a segment's column, kept on the segment, and the rows they do not cover.

    Sealed: built once over every row (with the index's ``drop_ratio_build`` when it has one).
    Growing: over a prefix of the rows, rebuilt once the rows after it (scored directly as a
    ``Tail``) exceed a quarter of it, so the building costs O(non-zeros) overall as it grows."""
    cache = seg.__dict__.setdefault("_sparse_postings", {})
    hit = cache.get(name)
    if hit is not None and hit[1] == drop_ratio_build:
        m, post = hit[0], hit[2]
        if m >= n:  # (an older snapshot of a growing segment: search() leaves out rows past n)
            return post, None
        if not seg.sealed and n - m <= max(GROWING_TAIL_ROWS, m // 4):
            return post, Tail(seg.column(name, n)[m:n], m)
    post = Postings(seg.column(name, n), drop_ratio_build)
    cache[name] = (n, drop_ratio_build, post)
    return post, None


GROWING_TAIL_ROWS = 4096


def segment_search(view, spec, k: int, mask: np.ndarray | None):
    """Top-k (or range) search of one segment view for a sparse field: SPARSE_INVERTED_INDEX /
    SPARSE_WAND on a sealed segment (their build drop ratio applies), exact otherwise."""
    seg = view.segment
    params = spec.params or {}
    indexed = seg.sealed and spec.index_type in SPARSE_INDEX_TYPES
    build_drop = float(params.get("drop_ratio_build", 0.0)) if indexed else 0.0
    post, tail = segment_postings(seg, spec.field.name, view.n, build_drop)
    search_drop = float(params.get("drop_ratio_search", 0.0))
    weigh = None
    if spec.metric == "BM25":  # query rows come IDF-weighted (vecdb.bm25.prepare); rows' tf saturate here
        from vecdb import bm25  # noqa: PLC0415 - vecdb.bm25 imports this module

        weigh = bm25.weight_fn(seg, spec.field.name, max(view.n, post.ntotal), params)
    if spec.radius is not None:
        if spec.range_filter is not None and spec.radius >= spec.range_filter:  # (index.base's rule for
            raise InvalidParameter(  # IP; not imported: vecdb.column_codec imports this module, FAISS stays out)
                f"range_filter must be greater than radius for IP/COSINE, "
                f"range_filter:{spec.range_filter:f}, radius:{spec.radius:f}")
        per_query = range_search(post, spec.queries, spec.radius, spec.range_filter, mask, k, search_drop,
                                 view.n, tail, weigh)
        D = np.full((len(per_query), k), -np.inf, np.float32)
        O = np.full((len(per_query), k), -1, np.int64)
        for i, (d, o) in enumerate(per_query):
            D[i, :len(o)], O[i, :len(o)] = d, o
        return D, O
    return search(post, spec.queries, k, mask, search_drop, view.n, tail, weigh)

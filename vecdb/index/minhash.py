"""MinHash signatures in BINARY_VECTOR fields: the MHJACCARD metric and the MINHASH_LSH index (Milvus 2.6).

A row is a MinHash signature of dim / mh_element_bit_width elements, each a whole number of bytes
(datasketch's uint64 hash values: mh_element_bit_width 64). As knowhere scores it:

- **MHJACCARD** = the share of elements equal in both signatures, an estimate of the Jaccard
  similarity of the two sets, in [0, 1]; larger is closer (Milvus's ``PositivelyRelated``). A row
  whose estimate is 0 is never a hit (knowhere's result heap only takes a larger value than 0).
- **LSH.** The signature is split into ``mh_lsh_band`` bands of equal length; each band is hashed
  to 64 bits. A row is a *candidate* of a query when at least one band hashes the same in both.
  With ``mh_search_with_jaccard`` the candidates are scored exactly (needs ``with_raw_data``, as in
  knowhere); without, every candidate scores 1.0, knowhere's "hit" flag. Candidates that share more
  bands come first there (knowhere: the first found), ties by offset.

The index keeps, per band, the rows' keys sorted (``sorted``) with their offsets (``order``): a
query's bucket is a binary search per band, for all queries at once. knowhere stops collecting at
``refine_k`` (or k) candidates; we score every candidate, so ``refine_k`` only has its range
checked and results are at least as close. Few candidates mean few hits: a result shorter than k
is not filled up with an exhaustive scan (rows sharing no band are no match for LSH, as in Milvus),
and a filter only removes candidates. No range search (knowhere has none for this metric).

BIN_FLAT with MHJACCARD, and any segment without its index (growing data), search exactly:
every row scored (with ``mh_search_with_jaccard``) or every row sharing a band (without), with the
element width and band count of the search parameters (knowhere's defaults 8 and 1; the proxy
passes a MINHASH_LSH index's own, so growing and sealed segments agree).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecdb.errors import InvalidParameter
from vecdb.index.base import (
    MINHASH_METRIC,
    LockedIndex,
    as_binary,
    empty_result,
    prepare_mask,
)
from vecdb.index.index_file import write_index_file
from vecdb.index.params import check_minhash_layout, minhash_search_params, validate_search_params
from vecdb.schema import DataType

_BLOCK_ELEMENTS = 1 << 22  # bound on the (queries x rows x elements) comparisons made at once
_QUERY_CHUNK = 256  # queries whose bucket lookups are gathered at once
_SEED = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


# --- kernels -----------------------------------------------------------------
def elements(codes: np.ndarray, width: int) -> np.ndarray:
    """Packed signatures (n, nbytes) as (n, nbytes // width) elements of ``width`` bytes; widths
    other than 1, 2, 4, 8 as (n, length, width) bytes."""
    x = np.ascontiguousarray(codes, dtype=np.uint8)
    if width in (1, 2, 4, 8):
        return x.view(f"u{width}")
    return x.reshape(len(x), -1, width)


def _equal_counts(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(nq, n) int32 equal elements between element rows ``q`` and ``x`` (from ``elements``)."""
    eq = q[:, None] == x[None, :]
    if eq.ndim == 4:  # odd widths: an element is equal when all its bytes are
        eq = eq.all(axis=3)
    return eq.sum(axis=2, dtype=np.int32)


def similarities(codes: np.ndarray, queries: np.ndarray, width: int) -> np.ndarray:
    """(nq, n) float32 MHJACCARD between packed signatures, element ``width`` in bytes."""
    x, q = elements(codes, width), elements(queries, width)
    length = x.shape[1] if x.ndim > 1 else 0
    out = np.empty((len(q), len(x)), np.float32)
    step = max(1, _BLOCK_ELEMENTS // max(1, len(q) * max(length, 1)))
    for lo in range(0, len(x), step):
        out[:, lo:lo + step] = _equal_counts(x[lo:lo + step], q)
    return out / np.float32(max(length, 1))


def band_keys(codes: np.ndarray, band: int) -> np.ndarray:
    """(n, band) uint64: each band of each packed signature hashed (its bytes as 64-bit words,
    folded with the splitmix64 mixer). Equal bands hash equal; unequal ones collide with p ~ 2^-64."""
    x = np.ascontiguousarray(codes, dtype=np.uint8)
    n, nbytes = x.shape
    per = nbytes // band
    words = -(-per // 8)
    b = x.reshape(n, band, per)
    if per % 8:
        padded = np.zeros((n, band, words * 8), np.uint8)
        padded[:, :, :per] = b
        b = padded
    w = np.ascontiguousarray(b).view(np.uint64)  # (n, band, words)
    h = np.full((n, band), _SEED, np.uint64)
    for j in range(words):  # a loop over a band's words, each step over every row at once
        h ^= w[:, :, j]
        h *= _MUL1
        h ^= h >> np.uint64(31)
    h *= _MUL2
    h ^= h >> np.uint64(29)
    return h


def _layout(nbytes: int, width: int, band: int) -> None:
    check_minhash_layout(nbytes * 8, width * 8, band)


def _pack_topk(qidx: np.ndarray, ids: np.ndarray, key: np.ndarray, dist: np.ndarray,
               nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query top k of (query, offset, key) triples, larger key first, ties by smaller offset;
    ``dist`` is what each reports. Padded as VectorIndex says (offset -1, distance -inf)."""
    d, i = empty_result(nq, k, MINHASH_METRIC)
    if not len(qidx):
        return d, i
    order = np.lexsort((ids, -key, qidx))
    qidx, ids, dist = qidx[order], ids[order], dist[order]
    rank = np.arange(len(qidx)) - np.searchsorted(qidx, qidx)
    keep = rank < k
    d[qidx[keep], rank[keep]] = dist[keep]
    i[qidx[keep], rank[keep]] = ids[keep]
    return d, i


def _block_best(scores: np.ndarray, ids: np.ndarray, k: int):
    """The best k (query, offset, score) of a dense (nq, m) block of scores of rows ``ids``; a row
    scoring 0 is no hit."""
    qidx, col = np.nonzero(scores > 0)
    key = scores[qidx, col].astype(np.float32)
    d, i = _pack_topk(qidx, ids[col], key, key, len(scores), k)
    qidx, col = np.nonzero(i >= 0)
    return qidx, i[qidx, col], d[qidx, col]


def exact_search(codes: np.ndarray, queries: np.ndarray, k: int, width: int, band: int, with_jaccard: bool,
                 ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MHJACCARD top k over rows ``ids`` of ``codes`` (all when None), every row looked at: knowhere's
    brute force (MinHashVecSearch). With ``with_jaccard`` the best similarities; without, the rows
    sharing a band with the query, scored 1.0, the ones sharing more bands first."""
    x = np.asarray(codes)
    q = np.asarray(queries)
    _layout(q.shape[1], width, band)
    rows = np.arange(len(x), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    nq = len(q)
    if not len(rows) or not nq:
        return empty_result(nq, k, MINHASH_METRIC)
    qkeys = band_keys(q, band)
    length = x.shape[1] // width
    step = max(1024, _BLOCK_ELEMENTS // max(1, nq * (length if with_jaccard else band)))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lo in range(0, len(rows), step):
        sub = rows[lo:lo + step]
        block = x[sub] if ids is not None else x[lo:lo + step]
        if with_jaccard:
            scores = similarities(block, q, width)
        else:
            scores = (band_keys(block, band)[None, :, :] == qkeys[:, None, :]).sum(axis=2)
        found.append(_block_best(scores, sub, k))
    qidx, offs, key = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return _pack_topk(qidx, offs, key, key if with_jaccard else np.ones(len(key), np.float32), nq, k)


def brute_force_mhjaccard(vectors: np.ndarray, queries: np.ndarray, k: int, params: dict | None,
                          valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``brute_force_search`` for MHJACCARD: packed uint8 signatures, the search ``params`` (typed or raw)."""
    x, q = np.asarray(vectors), np.asarray(queries)
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if x.dtype != np.uint8 or q.dtype != np.uint8 or x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise InvalidParameter(f"{MINHASH_METRIC} needs packed uint8 binary vectors of one dim")
    sp = minhash_search_params(params or {})
    mask = prepare_mask(valid, len(x))
    return exact_search(x, q, k, sp["mh_element_bit_width"] // 8, sp["mh_lsh_band"], sp["mh_search_with_jaccard"],
                        None if mask is None else np.flatnonzero(mask))


# --- the index ---------------------------------------------------------------
class MinHashIndex(LockedIndex):
    """MINHASH_LSH, and BIN_FLAT with MHJACCARD (exact); see the module docstring and VectorIndex."""

    def __init__(self, index_type: str, metric_type: str, dim: int, params: dict,
                 vector_type: DataType = DataType.BINARY_VECTOR) -> None:
        self._init_index(index_type, metric_type, dim, params, vector_type)
        self._lsh = index_type == "MINHASH_LSH"
        self._nbytes = dim // 8
        self._width = self.params.get("mh_element_bit_width", 8) // 8
        self._band = int(self.params.get("mh_lsh_band", 1))
        self._raw = not self._lsh or bool(self.params.get("with_raw_data", False))
        if self._lsh:
            _layout(self._nbytes, self._width, self._band)
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._codes = np.empty((0, self._nbytes), np.uint8)  # with raw data only
        self._keys = np.empty((0, self._band), np.uint64)  # LSH only: each row's band keys
        self._sorted = np.empty((self._band, 0), np.uint64)  # per band, the keys sorted
        self._order = np.empty((self._band, 0), np.int64)  # per band, the offsets in that order

    @property
    def ntotal(self) -> int:
        return self._n

    # --- build / add ----------------------------------------------------
    def build(self, vectors: np.ndarray) -> None:
        x = as_binary(vectors, self.dim)
        with self._lock.write():
            self._check_writable()
            self._reset()
            self._append(x)

    def add(self, vectors: np.ndarray) -> None:
        x = as_binary(vectors, self.dim)
        if not len(x):
            return
        with self._lock.write():
            self._check_writable()
            self._append(x)

    def _append(self, x: np.ndarray) -> None:
        if self._raw:
            self._codes = np.concatenate([self._codes, x]) if self._n else x.copy()
        if self._lsh:
            keys = band_keys(x, self._band)
            self._keys = np.concatenate([self._keys, keys]) if self._n else keys
            self._order = np.argsort(self._keys.T, axis=1, kind="stable").astype(np.int64)
            self._sorted = np.take_along_axis(self._keys.T, self._order, axis=1)
        self._n += len(x)

    def raw_vectors(self) -> np.ndarray | None:
        """The signatures as given (read-only, zero-copy) when the index keeps them (with_raw_data)."""
        if not self._raw:
            return None
        view = self._codes[: self._n].view()
        view.flags.writeable = False
        return view

    # --- search ---------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, params: dict, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = as_binary(queries, self.dim)
        sp = validate_search_params(self.index_type, self.metric_type, params, k)
        jaccard = bool(sp["mh_search_with_jaccard"])
        if jaccard and not self._raw:  # knowhere: invalid_args
            raise InvalidParameter("fail to search with jaccard distance without raw data: build the "
                                   "MINHASH_LSH index with with_raw_data=true")
        with self._lock.read():
            mask = prepare_mask(valid, self._n)
            if not len(q) or not self._n or (mask is not None and not mask.any()):
                return empty_result(len(q), k, MINHASH_METRIC)
            if not self._lsh:
                ids = None if mask is None else np.flatnonzero(mask)
                return exact_search(self._codes[: self._n], q, k, sp["mh_element_bit_width"] // 8,
                                    sp["mh_lsh_band"], jaccard, ids)
            parts = [self._lsh_search(q[lo:lo + _QUERY_CHUNK], k, jaccard, mask)
                     for lo in range(0, len(q), _QUERY_CHUNK)]
            if len(parts) == 1:
                return parts[0]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _candidates(self, qkeys: np.ndarray, mask: np.ndarray | None):
        """(query, offset, bands shared) for every row in a bucket of a query, each pair once."""
        nq = len(qkeys)
        found_q, found_i = [], []
        for b in range(self._band):  # a loop over bands, each a binary search for every query at once
            lo = np.searchsorted(self._sorted[b], qkeys[:, b], "left")
            hi = np.searchsorted(self._sorted[b], qkeys[:, b], "right")
            lens = hi - lo
            total = int(lens.sum())
            if not total:
                continue
            starts = np.repeat(lo - (np.cumsum(lens) - lens), lens)
            found_q.append(np.repeat(np.arange(nq, dtype=np.int64), lens))
            found_i.append(self._order[b][np.arange(total) + starts])
        if not found_q:
            empty = np.empty(0, np.int64)
            return empty, empty, empty
        qidx, ids = np.concatenate(found_q), np.concatenate(found_i)
        if mask is not None:
            keep = mask[ids]
            qidx, ids = qidx[keep], ids[keep]
        pairs, shared = np.unique(qidx * self._n + ids, return_counts=True)
        return pairs // self._n, pairs % self._n, shared

    def _lsh_search(self, q: np.ndarray, k: int, jaccard: bool, mask: np.ndarray | None):
        qidx, ids, shared = self._candidates(band_keys(q, self._band), mask)
        if not jaccard:
            return _pack_topk(qidx, ids, shared, np.ones(len(ids), np.float32), len(q), k)
        sims = np.empty(len(ids), np.float32)
        x, qe = elements(self._codes, self._width), elements(q, self._width)
        length = x.shape[1]
        step = max(1, _BLOCK_ELEMENTS // max(1, length))
        for lo in range(0, len(ids), step):
            eq = x[ids[lo:lo + step]] == qe[qidx[lo:lo + step]]
            if eq.ndim == 3:
                eq = eq.all(axis=2)
            sims[lo:lo + step] = eq.sum(axis=1) / np.float32(length)
        return _pack_topk(qidx, ids, sims, sims, len(q), k)

    def range_search(
        self,
        queries: np.ndarray,
        radius: float,
        range_filter: float | None,
        params: dict,
        valid: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        raise InvalidParameter(f"range search is not supported for metric type {MINHASH_METRIC}")

    # --- persistence ----------------------------------------------------
    def save(self, path: str) -> None:
        with self._lock.read():
            meta = self._file_meta("minhash", ntotal=self._n)
            arrays: dict[str, np.ndarray] = {}
            if self._raw:
                arrays["codes"] = self._codes[: self._n]
            if self._lsh:
                arrays.update(keys=self._keys, sorted=self._sorted, order=self._order)
            write_index_file(path, meta, None, arrays=arrays)

    @classmethod
    def from_saved(cls, meta: dict, arrays: dict[str, Any], mmap: bool) -> MinHashIndex:
        self = cls(meta["index_type"], meta["metric_type"], meta["dim"], meta["params"], meta["vector_type"])
        self._n = int(meta["ntotal"])
        if self._raw:
            self._codes = arrays["codes"]
        if self._lsh:
            self._keys, self._sorted, self._order = arrays["keys"], arrays["sorted"], arrays["order"]
        self._read_only = mmap
        return self

    def __repr__(self) -> str:
        return f"MinHashIndex({self.index_type}, {self.metric_type}, dim={self.dim}, ntotal={self.ntotal})"

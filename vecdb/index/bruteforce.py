"""Exact search with numpy: the reference every index is tested against.

Also the distance kernels the binary indexes use for JACCARD (FAISS has no
binary Jaccard). Float distances use the BLAS expansion
``|q|^2 - 2 q.x + |x|^2`` (as FAISS does), clipped at 0.
"""

from __future__ import annotations

import faiss
import numpy as np

from vecdb.errors import InvalidParameter
from vecdb.index.base import (
    BINARY_METRICS,
    FLOAT_METRICS,
    MINHASH_METRIC,
    check_range_params,
    empty_result,
    finish_range,
    in_range_mask,
    is_similarity,
    normalize_rows,
    pad_value,
    prepare_mask,
)
from vecdb.index.minhash import brute_force_mhjaccard
from vecdb.index.threads import threads_for_queries

# Bound on the (nq, rows) distance block computed at once (elements).
_BLOCK_ELEMENTS = 1 << 22


def _floats(a: np.ndarray) -> np.ndarray:
    """float32 vectors of a float, float16 or BFLOAT16 (uint16 raw bits: widened, not cast as integers) array."""
    a = np.asarray(a)
    return (a.astype(np.uint32) << 16).view(np.float32) if a.dtype == np.uint16 else np.asarray(a, np.float32)


def float_distances(vectors: np.ndarray, queries: np.ndarray, metric_type: str) -> np.ndarray:
    """(nq, n) float32 distances for L2 / IP / COSINE (COSINE normalises both sides)."""
    x, q = _floats(vectors), _floats(queries)
    if metric_type == "COSINE":
        x, q = normalize_rows(x), normalize_rows(q)
    ip = q @ x.T
    if metric_type in ("IP", "COSINE"):
        return ip.astype(np.float32, copy=False)
    d = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * ip + np.einsum("ij,ij->i", x, x)[None, :]
    np.maximum(d, 0.0, out=d)
    return d.astype(np.float32, copy=False)


def popcounts(codes: np.ndarray) -> np.ndarray:
    """Set bits per row of packed uint8 codes (int32)."""
    return np.bitwise_count(codes).sum(axis=1, dtype=np.int32)


def binary_distances(
    codes: np.ndarray, queries: np.ndarray, metric_type: str, code_popcounts: np.ndarray | None = None
) -> np.ndarray:
    """(nq, n) float32 HAMMING or JACCARD distances between packed uint8 codes.

    Hamming via FAISS's popcount kernel; Jaccard derived from it:
    ``|a & b| = (|a| + |b| - ham) / 2``, distance ``1 - |a & b| / |a | b|``,
    0 when both vectors are all zeros.
    """
    x = np.ascontiguousarray(codes, dtype=np.uint8)
    q = np.ascontiguousarray(queries, dtype=np.uint8)
    nq, n = len(q), len(x)
    ham = np.empty((nq, n), dtype=np.int32)
    if nq and n:
        # faiss stubs lack hammings (utils/hamming.h, exported by the SWIG module)
        faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(x), nq, n, x.shape[1], faiss.swig_ptr(ham))  # type: ignore[attr-defined]
    if metric_type == "HAMMING":
        return ham.astype(np.float32)
    px = popcounts(x) if code_popcounts is None else code_popcounts
    pq = popcounts(q)
    total = (pq[:, None] + px[None, :]).astype(np.float32)
    inter = (total - ham) * 0.5
    union = total - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 - inter / union
    d[union == 0] = 0.0
    return d.astype(np.float32, copy=False)


def topk_from_distances(
    d: np.ndarray, k: int, metric_type: str, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Best k per row of a (nq, m) distance block; ties broken by smaller id.

    ``ids`` maps block columns to offsets (default: the column number).
    Rows with fewer than k columns are padded (-1, worst distance).
    """
    nq, m = d.shape
    out_d, out_i = empty_result(nq, k, metric_type)
    if m == 0 or k <= 0:
        return out_d, out_i
    key = -d if is_similarity(metric_type) else d
    kk = min(k, m)
    if kk < m:
        cols = np.argpartition(key, kk - 1, axis=1)[:, :kk]
    else:
        cols = np.broadcast_to(np.arange(m), (nq, m))
    cand_ids = cols if ids is None else np.asarray(ids, dtype=np.int64)[cols]
    cand_key = np.take_along_axis(key, cols, axis=1)
    order = np.lexsort((cand_ids, cand_key), axis=1)
    out_i[:, :kk] = np.take_along_axis(cand_ids, order, axis=1)
    out_d[:, :kk] = np.take_along_axis(d, np.take_along_axis(cols, order, axis=1), axis=1)
    return out_d, out_i


def merge_topk(
    parts: list[tuple[np.ndarray, np.ndarray]], k: int, metric_type: str
) -> tuple[np.ndarray, np.ndarray]:
    """Merge several padded (nq, k_i) results into one (nq, k) result."""
    d = np.concatenate([p[0] for p in parts], axis=1)
    i = np.concatenate([p[1] for p in parts], axis=1)
    d = np.where(i < 0, pad_value(metric_type), d).astype(np.float32)
    key = -d if is_similarity(metric_type) else d
    # Padding slots sort last (worst key), then by id (-1 < real ids only among pads).
    order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), key), axis=1)[:, :k]
    out_d = np.take_along_axis(d, order, axis=1)
    out_i = np.take_along_axis(i, order, axis=1)
    if out_d.shape[1] < k:
        pd, pi = empty_result(len(d), k - out_d.shape[1], metric_type)
        out_d, out_i = np.hstack([out_d, pd]), np.hstack([out_i, pi])
    return np.ascontiguousarray(out_d), np.ascontiguousarray(out_i)


def _block_distances(x: np.ndarray, q: np.ndarray, metric: str, pops: np.ndarray | None) -> np.ndarray:
    if metric in BINARY_METRICS:
        return binary_distances(x, q, metric, pops)
    return float_distances(x, q, metric)


_FAISS_METRICS = {"L2": faiss.METRIC_L2, "IP": faiss.METRIC_INNER_PRODUCT}


def _faiss_topk(xb: np.ndarray, q: np.ndarray, k: int, metric: str, block_ids: np.ndarray):
    """Float top-k with FAISS's flat kernels (the ones IndexFlat uses, so an exact search over a
    growing segment and a FLAT index over a sealed one give the same distance for the same pair),
    then ties ordered by id."""
    out_d, out_i = empty_result(len(q), k, metric)
    kk = min(k, len(xb))
    if kk <= 0:
        return out_d, out_i
    d, i = faiss.knn(np.ascontiguousarray(q), np.ascontiguousarray(xb), kk, metric=_FAISS_METRICS[metric])
    cand = np.asarray(block_ids, np.int64)[i]
    order = np.lexsort((cand, -d if is_similarity(metric) else d), axis=1)
    out_d[:, :kk] = np.take_along_axis(d, order, axis=1)
    out_i[:, :kk] = np.take_along_axis(cand, order, axis=1)
    return out_d, out_i


def _blocks(n: int, nq: int):
    step = max(1024, _BLOCK_ELEMENTS // max(nq, 1))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _gather(x: np.ndarray, pops: np.ndarray | None, ids: np.ndarray | None, lo: int, hi: int):
    if ids is None:
        return x[lo:hi], None if pops is None else pops[lo:hi], np.arange(lo, hi)
    sub = ids[lo:hi]
    return x[sub], None if pops is None else pops[sub], sub


def knn_exact(
    x: np.ndarray, q: np.ndarray, k: int, metric: str,
    ids: np.ndarray | None = None, pops: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over rows ``ids`` of ``x`` (all rows when None), in blocks.

    ``metric`` is L2, IP, HAMMING or JACCARD: COSINE callers pass vectors
    normalised already and "IP". ``pops`` caches binary popcounts per row.
    """
    n = len(x) if ids is None else len(ids)
    threads_for_queries(len(q))
    parts = []
    for lo, hi in _blocks(n, len(q)):
        xb, pb, block_ids = _gather(x, pops, ids, lo, hi)
        if metric in _FAISS_METRICS:
            parts.append(_faiss_topk(xb, q, k, metric, block_ids))
        else:
            parts.append(topk_from_distances(_block_distances(xb, q, metric, pb), k, metric, block_ids))
    if not parts:
        return empty_result(len(q), k, metric)
    return parts[0] if len(parts) == 1 else merge_topk(parts, k, metric)


def range_exact(
    x: np.ndarray, q: np.ndarray, radius: float, range_filter: float | None, metric: str,
    ids: np.ndarray | None = None, pops: np.ndarray | None = None, limit: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact range search over rows ``ids`` of ``x``; same metric convention as knn_exact."""
    n = len(x) if ids is None else len(ids)
    hits_d: list[list[np.ndarray]] = [[] for _ in range(len(q))]
    hits_i: list[list[np.ndarray]] = [[] for _ in range(len(q))]
    for lo, hi in _blocks(n, len(q)):
        xb, pb, block_ids = _gather(x, pops, ids, lo, hi)
        d = _block_distances(xb, q, metric, pb)
        rows, cols = np.nonzero(in_range_mask(d, metric, radius, range_filter))
        bounds = np.searchsorted(rows, np.arange(len(q) + 1))
        for qi in range(len(q)):
            c = cols[bounds[qi]:bounds[qi + 1]]
            hits_d[qi].append(d[qi, c])
            hits_i[qi].append(block_ids[c])
    out = []
    for qi in range(len(q)):
        d = np.concatenate(hits_d[qi]) if hits_d[qi] else np.empty(0, np.float32)
        i = np.concatenate(hits_i[qi]) if hits_i[qi] else np.empty(0, np.int64)
        out.append(finish_range(d, i, metric, radius, range_filter, limit))
    return out


def _prepare(vectors: np.ndarray, queries: np.ndarray, metric_type: str) -> tuple[np.ndarray, np.ndarray, str]:
    metric = metric_type.upper()
    if metric not in BINARY_METRICS and metric not in FLOAT_METRICS:
        raise InvalidParameter(f"metric type {metric_type} not found or not supported")
    x, q = np.asarray(vectors), np.asarray(queries)
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if metric in BINARY_METRICS:
        if x.dtype != np.uint8 or q.dtype != np.uint8:
            raise InvalidParameter(f"{metric} needs packed uint8 binary vectors")
    else:
        x, q = _floats(x), _floats(q)
        if metric == "COSINE":  # normalise once, then it is inner product
            x, q, metric = normalize_rows(x), normalize_rows(q), "IP"
    if x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise InvalidParameter(f"query dim {q.shape[-1]} does not match vector dim {x.shape[-1]}")
    return x, q, metric


def brute_force_search(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric_type: str,
    valid: np.ndarray | None = None,
    params: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k: ((nq, k) float32 distances, (nq, k) int64 offsets), best first.

    ``vectors`` are float (n, dim) for L2/IP/COSINE or packed uint8 (n, dim/8)
    for HAMMING/JACCARD/MHJACCARD; ``valid`` masks rows (see VectorIndex rules).
    ``params`` (the search parameters) matter to MHJACCARD only: vecdb.index.minhash.
    """
    if metric_type.upper() == MINHASH_METRIC:
        return brute_force_mhjaccard(vectors, queries, k, params, valid)
    x, q, metric = _prepare(vectors, queries, metric_type)
    mask = prepare_mask(valid, len(x))
    return knn_exact(x, q, k, metric, ids=None if mask is None else np.flatnonzero(mask))


def brute_force_range(
    vectors: np.ndarray,
    queries: np.ndarray,
    radius: float,
    range_filter: float | None,
    metric_type: str,
    valid: np.ndarray | None = None,
    limit: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact range search with the Milvus 2.3 rules; per query (distances, offsets) best first."""
    if metric_type.upper() == MINHASH_METRIC:
        raise InvalidParameter(f"range search is not supported for metric type {MINHASH_METRIC}")
    check_range_params(metric_type.upper(), radius, range_filter)
    x, q, metric = _prepare(vectors, queries, metric_type)
    mask = prepare_mask(valid, len(x))
    ids = None if mask is None else np.flatnonzero(mask)
    return range_exact(x, q, radius, range_filter, metric, ids=ids, limit=limit)

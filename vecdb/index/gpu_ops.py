"""Array kernels shared by the GPU indexes, written against an array module ``xp``.

``xp`` is CuPy on a GPU. NumPy runs the same code on the CPU, which is how the
unit tests check the algorithms on machines without a device; nothing here
imports CuPy.

Rules a reader needs:

- A **key** is "smaller is closer": L2 keys are ``|x|^2 - 2 q.x`` (the query's
  own norm is added back only for the rows kept, ``finish_topk``), IP keys are
  ``-q.x``. Rows that must not be returned get key ``+inf``.
- **Metrics** here are "L2" and "IP"; COSINE callers normalise and pass "IP".
- **Results** are padded like every index: offset -1 and distance +inf (L2)
  or -inf (IP). Ties are broken by the smaller offset among the k kept.
- **Memory**: temporaries are bounded by ``WORKSPACE_BYTES`` by blocking over
  queries (or rows); the indexes count that workspace in their estimates.
"""

from __future__ import annotations

import numpy as np

from vecdb.index.base import in_range_mask

WORKSPACE_BYTES = 512 << 20
# Bytes per element of a (queries x rows) key block: the key, partition's copy,
# the selection mask and slack for small temporaries.
KEY_BLOCK_BYTES = 16
SORT_ALL_COLUMNS = 2048  # rows this narrow are simply argsorted
SMALL_SORT = 64  # rows this narrow are ordered by ranks (order_small)
_FLOAT_INF = np.float32(np.inf)


# --- backend helpers -----------------------------------------------------------
def to_host(a) -> np.ndarray:
    """A NumPy copy (CuPy) or the array itself (NumPy)."""
    return a if isinstance(a, np.ndarray) else a.get()


def argsort_stable(xp, a, axis: int = -1):
    """Stable argsort (CuPy's argsort is always stable and takes no ``kind``)."""
    if xp is np:
        return np.argsort(a, axis=axis, kind="stable")
    return xp.argsort(a, axis=axis)


def scatter_add(xp, target, index, values) -> None:
    """``target[index] += values`` with repeated indices summed (np.add.at)."""
    at = getattr(xp.add, "at", None)
    if at is not None:  # NumPy; CuPy >= 13 (atomicAdd)
        at(target, index, values)
        return
    import cupyx  # older CuPy

    cupyx.scatter_add(target, index, values)


def row_norms(xp, x):
    """Squared L2 norm of each row, float32."""
    return (x * x).sum(axis=1, dtype=xp.float32)


def block_rows(total_elements_per_row: int, budget_bytes: int = WORKSPACE_BYTES,
               bytes_per_element: int = KEY_BLOCK_BYTES) -> int:
    """How many rows of ``total_elements_per_row`` elements fit the workspace (at least 1)."""
    return max(1, budget_bytes // max(1, total_elements_per_row * bytes_per_element))


# --- top-k ----------------------------------------------------------------------
def order_small(xp, vals, ties=None):
    """Per-row argsort of a narrow (nq, w <= SMALL_SORT) block by (vals, ties, column).

    Ranks come from one (nq, w, w) comparison instead of a device sort,
    which for a few dozen columns is much cheaper than CuPy's segmented sort.
    ``vals`` must hold no NaN.
    """
    nq, w = vals.shape
    col = xp.arange(w)
    a, b = vals[:, :, None], vals[:, None, :]
    first = (col[None, :] < col[:, None])[None]
    if ties is not None:
        ta, tb = ties[:, :, None], ties[:, None, :]
        first = (tb < ta) | ((tb == ta) & first)
    rank = ((b < a) | ((b == a) & first)).sum(axis=2)
    order = xp.empty((nq, w), dtype=xp.int64)
    order[xp.arange(nq)[:, None], rank] = col[None, :]
    return order


def _order(xp, vals, ties=None):
    if vals.shape[1] <= SMALL_SORT:
        return order_small(xp, vals, ties)
    if ties is None:
        return argsort_stable(xp, vals, 1)
    by_tie = argsort_stable(xp, ties, 1)
    return xp.take_along_axis(by_tie, argsort_stable(xp, xp.take_along_axis(vals, by_tie, 1), 1), 1)


def select_topk(xp, key, k: int):
    """Columns of the ``k`` smallest keys per row, best first; ties by column.

    Returns ``(cols, vals)``, both (nq, min(k, C)). Wide rows use a selection
    (``partition`` gives the k-th key, one comparison pass keeps what is not
    larger) instead of sorting the whole row.
    """
    nq, c = key.shape
    kk = min(k, c)
    if kk <= 0:
        return xp.empty((nq, 0), dtype=xp.int64), xp.empty((nq, 0), dtype=key.dtype)
    if c <= SORT_ALL_COLUMNS or 4 * kk >= c:
        cols = argsort_stable(xp, key, 1)[:, :kk]
        return cols, xp.take_along_axis(key, cols, 1)
    thr = xp.partition(key, kk - 1, axis=1)[:, kk - 1:kk]
    take = key <= thr
    over = take.sum(axis=1) != kk
    if bool(over.any()):  # ties at the threshold (or NaN): keep the first columns only
        rows = xp.flatnonzero(over)
        sub, t = key[rows], thr[rows]
        lt = sub < t
        eq = sub == t
        need = kk - lt.sum(axis=1, keepdims=True)
        take[rows] = lt | (eq & (xp.cumsum(eq, axis=1, dtype=xp.int32) <= need))
    cols = xp.nonzero(take)[1]
    if cols.size != nq * kk:  # NaN keys: sort them last and fall back to a full sort
        clean = xp.where(xp.isnan(key), _FLOAT_INF, key)
        cols = argsort_stable(xp, clean, 1)[:, :kk]
        return cols, xp.take_along_axis(clean, cols, 1)
    cols = cols.reshape(nq, kk)
    vals = xp.take_along_axis(key, cols, 1)
    order = _order(xp, vals)
    return xp.take_along_axis(cols, order, 1), xp.take_along_axis(vals, order, 1)


def finish_topk(xp, ids, vals, k: int, metric: str, qnorm=None, sort_ids: bool = False):
    """Turn selected keys into (distances, offsets), padded to ``k`` columns.

    ``ids`` (nq, kk) are the offsets of the selected keys ``vals``; ``qnorm``
    (L2 only) is added to recover the squared distance (None when ``vals``
    already are distances). ``sort_ids`` re-sorts ties by offset when the
    columns were not in offset order.
    """
    nq, kk = vals.shape
    finite = xp.isfinite(vals)
    ids = xp.where(finite, ids, -1)
    if sort_ids and kk > 1:
        order = _order(xp, vals, xp.where(finite, ids, np.iinfo(np.int64).max))
        ids, vals = xp.take_along_axis(ids, order, 1), xp.take_along_axis(vals, order, 1)
        finite = xp.isfinite(vals)
    if metric == "L2":
        d = vals if qnorm is None else vals + qnorm[:, None]
        d = xp.maximum(d, 0)
        pad = _FLOAT_INF
    else:
        d = -vals
        pad = -_FLOAT_INF
    d = xp.where(finite, d, pad).astype(xp.float32)
    out_d = xp.full((nq, k), pad, dtype=xp.float32)
    out_i = xp.full((nq, k), -1, dtype=xp.int64)
    out_d[:, :kk] = d
    out_i[:, :kk] = ids
    return out_d, out_i


# --- exact distances ------------------------------------------------------------
def metric_keys(xp, q, x, xnorm_bias, metric: str, bias=None):
    """(nq, n) keys of queries ``q`` against rows ``x``.

    L2 takes ``xnorm_bias`` = |x|^2 (+ bias already folded in); IP adds ``bias``.
    """
    if metric == "L2":
        key = (q * np.float32(-2.0)) @ x.T
        key += xnorm_bias[None, :]
        return key
    key = q @ x.T
    if bias is None:
        return xp.negative(key, out=key)
    return xp.subtract(bias[None, :], key, out=key)


def key_to_distance(xp, key, metric: str, qnorm):
    """Exact distances from keys (L2: add the query norm, clip at 0)."""
    if metric == "L2":
        return xp.maximum(key + qnorm[:, None], 0)
    return -key


def knn_exact(xp, q, x, xnorm, k: int, metric: str, *, ids=None, bias=None, sort_ids: bool = False):
    """Exact top-k of queries ``q`` over rows ``x`` (device arrays), blocked over queries.

    ``ids`` maps rows to offsets (default: row number); ``bias`` is added to
    each row's key (+inf excludes the row). Returns device (distances, offsets).
    """
    nq, n = len(q), len(x)
    out_d = xp.empty((nq, k), dtype=xp.float32)
    out_i = xp.empty((nq, k), dtype=xp.int64)
    xb = xnorm if bias is None or metric != "L2" else xnorm + bias
    qnorm = row_norms(xp, q) if metric == "L2" else None
    step = block_rows(n)
    for lo in range(0, nq, step):
        hi = min(nq, lo + step)
        key = metric_keys(xp, q[lo:hi], x, xb, metric, bias)
        cols, vals = select_topk(xp, key, k)
        sel = cols if ids is None else ids[cols]
        out_d[lo:hi], out_i[lo:hi] = finish_topk(
            xp, sel, vals, k, metric, None if qnorm is None else qnorm[lo:hi], sort_ids)
    return out_d, out_i


def range_exact(xp, q, x, xnorm, metric: str, radius: float, range_filter, *, ids=None, bias=None):
    """All (query, row) pairs within the range, exact. Returns host (query rows, distances, offsets)."""
    nq, n = len(q), len(x)
    xb = xnorm if bias is None or metric != "L2" else xnorm + bias
    qnorm = row_norms(xp, q) if metric == "L2" else None
    parts = []
    step = block_rows(n)
    for lo in range(0, nq, step):
        hi = min(nq, lo + step)
        key = metric_keys(xp, q[lo:hi], x, xb, metric, bias)
        d = key_to_distance(xp, key, metric, None if qnorm is None else qnorm[lo:hi])
        parts.append(range_hits(xp, d, metric, radius, range_filter, lo, ids))
    return concat_hits(parts)


def range_hits(xp, d, metric: str, radius: float, range_filter, row0: int, ids=None, ok=None):
    """Host (query rows, distances, offsets) of the entries of ``d`` within the range.

    ``ids`` maps columns (1-D) or entries (2-D) to offsets; ``ok`` masks entries.
    Excluded rows carry +inf (L2) / -inf (IP), which no finite radius admits.
    """
    m = in_range_mask(d, metric, radius, range_filter)
    m &= xp.isfinite(d)
    if ok is not None:
        m &= ok
    r, c = xp.nonzero(m)
    dist = d[r, c]
    if ids is None:
        off = c
    elif ids.ndim == 1:
        off = ids[c]
    else:
        off = ids[r, c]
    return to_host(r) + row0, to_host(dist).astype(np.float32), to_host(off).astype(np.int64)


def concat_hits(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64)
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def assemble_range(nq: int, rows: np.ndarray, d: np.ndarray, ids: np.ndarray, similarity: bool,
                   limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-query (distances, offsets), best first (ties by offset), cut to ``limit``; on the host."""
    key = -d if similarity else d
    order = np.lexsort((ids, key, rows))
    rows, d, ids = rows[order], d[order], ids[order]
    bounds = np.searchsorted(rows, np.arange(nq + 1))
    if limit is not None and limit >= 0 and len(rows):
        rank = np.arange(len(rows)) - bounds[rows]
        keep = rank < limit
        rows, d, ids = rows[keep], d[keep], ids[keep]
        bounds = np.searchsorted(rows, np.arange(nq + 1))
    return [(d[bounds[i]:bounds[i + 1]], ids[bounds[i]:bounds[i + 1]]) for i in range(nq)]


# --- k-means ----------------------------------------------------------------------
def assign_batched(xp, data, centroids):
    """Nearest centroid (L2) of every point, for B independent problems.

    ``data`` (B, n, ds), ``centroids`` (B, K, ds) -> labels (B, n) int64.
    """
    b, n, _ = data.shape
    kc = centroids.shape[1]
    cnorm = (centroids * centroids).sum(axis=2)
    ct = centroids.transpose(0, 2, 1) * np.float32(-2.0)
    labels = xp.empty((b, n), dtype=xp.int64)
    step = block_rows(b * kc, bytes_per_element=8)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        key = xp.matmul(data[:, lo:hi], ct)
        key += cnorm[:, None, :]
        labels[:, lo:hi] = key.argmin(axis=2)
    return labels


def kmeans(xp, data, k: int, iters: int, seed: int = 1234):
    """Batched Lloyd k-means (L2): ``data`` (B, n, ds) float32 -> centroids (B, k, ds).

    Seeded: the initial centroids are the same ``k`` sample rows (chosen on the
    host) in every problem; with fewer points than ``k`` some start duplicated.
    An empty cluster keeps its previous centroid.
    """
    b, n, ds = data.shape
    rng = np.random.default_rng(seed)
    init = np.sort(rng.choice(n, size=k, replace=n < k))
    cent = xp.ascontiguousarray(data[:, xp.asarray(init)])
    base = (xp.arange(b, dtype=xp.int64) * k)[:, None]
    flat_data = data.reshape(b * n, ds)
    for _ in range(iters):
        labels = assign_batched(xp, data, cent)
        flat = (labels + base).ravel()
        sums = xp.zeros((b * k, ds), dtype=xp.float32)
        scatter_add(xp, sums, flat, flat_data)
        counts = xp.bincount(flat, minlength=b * k)
        new = sums / xp.maximum(counts, 1)[:, None].astype(xp.float32)
        cent = xp.where((counts > 0)[:, None], new, cent.reshape(b * k, ds)).reshape(b, k, ds)
    return xp.ascontiguousarray(cent.astype(xp.float32))

"""GPU_CAGRA on CuPy: a fixed-degree kNN graph and a batched beam search.

Build (``intermediate_graph_degree`` = I, ``graph_degree`` = G; both clamped
to n - 1). Every row's I nearest neighbours (in the index's metric, self
excluded) come from a blocked brute force on the device: one GEMM and a
top-I selection per block of rows. Pruning is simple, not CAGRA's rank-based detour count: a row keeps
its G nearest, and its last G/2 slots are handed to reverse edges (rows that
list it among their G/2 nearest, closest first) that it does not have yet, so
every row can be reached from its neighbours. ``build_algo`` is accepted and
ignored (the kNN graph is exact). ``add`` rebuilds the graph: GPU indexes
serve sealed segments.

Search (``itopk_size`` = L, default max(64, k); ``search_width`` = w,
default 4; ``min_iterations``; ``max_iterations``, default 2 * L / w + 32),
for all queries of a block at once: a buffer of the L best rows seen, sorted,
starts from the 2L rows closest to the query among 4 sqrt(n) entry rows
spread evenly over the offsets (one small GEMM); each iteration expands the best w unexpanded
entries, computes exact distances to their unseen graph neighbours (per-query visited stamps, which also drop
repeats without a sort) and keeps the L best of buffer + new. A query is done when its buffer has no unexpanded
entry; the loop stops when all are done. Distances are exact (raw vectors on
the device). The graph is built in the index's metric: for IP, neighbours
by inner product walk to high inner products far better than L2 neighbours.

Filter: excluded rows are still walked (they connect the graph) but never
returned; the buffer grows to about 2k * n / valid rows (at most
``MAX_ITOPK``), and queries left short fall back to an exact search over
the valid rows (gpu_base). Range search is exact over the valid rows: a graph
has no cheap radius bound, and with the vectors on the device one GEMM per
query block answers it.
"""

from __future__ import annotations

import math

import numpy as np

from vecdb.index.gpu_base import GpuIndex
from vecdb.index.gpu_cuvs import CUVS_MIN_GRAPH_ROWS, CuvsSearcher, cagra_graph, cagra_search, log_fallback, use_cuvs
from vecdb.index.gpu_ops import (
    WORKSPACE_BYTES,
    argsort_stable,
    block_rows,
    finish_topk,
    metric_keys,
    row_norms,
    select_topk,
)

DEFAULT_ITOPK = 64
DEFAULT_SEARCH_WIDTH = 4
MAX_ITOPK = 1024
CHECK_EVERY = 4
MIN_ENTRY_POINTS, MAX_ENTRY_POINTS = 256, 4096
_INF = np.float32(np.inf)


def reverse_edge_graph(xp, knn, degree: int):
    """Prune a kNN list (n, I) sorted nearest first to (n, degree) with reverse edges.

    Row t keeps knn[t, :degree - r_t] and gets r_t <= degree // 2 reverse
    edges: rows s that have t among their degree // 2 nearest and are not in
    knn[t, :degree], closest (by s's rank of t) first.
    """
    n = knn.shape[0]
    graph = xp.ascontiguousarray(knn[:, :degree])
    half = degree // 2
    if half == 0 or n < 2:
        return graph
    src = xp.repeat(xp.arange(n, dtype=xp.int64), half)
    dst = knn[:, :half].astype(xp.int64).ravel()
    rank = xp.tile(xp.arange(half, dtype=xp.int64), n)
    # Skip s -> t when t already has s among its kept forward edges.
    fwd = xp.sort((xp.arange(n, dtype=xp.int64)[:, None] * n + graph.astype(xp.int64)).ravel())
    key = dst * n + src
    at = xp.minimum(xp.searchsorted(fwd, key), len(fwd) - 1)
    new = fwd[at] != key
    src, dst, rank = src[new], dst[new], rank[new]
    order = argsort_stable(xp, rank)
    order = order[argsort_stable(xp, dst[order])]
    src, dst = src[order], dst[order]
    counts = xp.bincount(dst, minlength=n)
    start = xp.cumsum(counts) - counts
    slot = xp.arange(len(dst), dtype=xp.int64) - start[dst]
    keep = slot < half
    src, dst, slot = src[keep], dst[keep], slot[keep]
    r = xp.minimum(counts, half)
    graph[dst, degree - r[dst] + slot] = src.astype(graph.dtype)
    return graph


class GpuCagra(GpuIndex):
    """GPU_CAGRA: kNN graph + batched beam search, exact distances; see the module docstring.
    With cuVS (gpu_cuvs.py) the graph is cuVS's CAGRA graph and unfiltered searches are cuVS's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cuvs = CuvsSearcher()

    @classmethod
    def estimate_bytes(cls, n: int, dim: int, params: dict, building: bool = True) -> int:
        ideg = min(params.get("intermediate_graph_degree", 128), max(n - 1, 1))
        deg = min(params.get("graph_degree", 64), ideg)
        held = n * (dim * 4 + 4 + deg * 4)
        extra = n * (ideg * 4 + deg * 48) if building else 0  # kNN lists, reverse-edge temporaries
        return held + extra + WORKSPACE_BYTES

    # --- build -------------------------------------------------------------------
    def _build(self, x: np.ndarray) -> None:
        xp = self.xp
        v = xp.asarray(x)
        self._set_rows(v)

    def _add(self, x: np.ndarray) -> None:
        xp = self.xp
        self._set_rows(xp.concatenate([self._dev["vectors"], xp.asarray(x)]))

    def _set_rows(self, v) -> None:
        xp = self.xp
        n = len(v)
        norms = row_norms(xp, v)
        ideg = min(self.params.get("intermediate_graph_degree", 128), n - 1)
        deg = min(self.params.get("graph_degree", 64), ideg)
        graph = None
        if n >= CUVS_MIN_GRAPH_ROWS and use_cuvs(xp):
            try:
                graph = cagra_graph(xp, v, self._metric, ideg, deg, self.params.get("build_algo", "NN_DESCENT"))
            except Exception as e:  # noqa: BLE001 - any cuVS failure: the exact graph still builds
                log_fallback("CAGRA build", e)
        if graph is None:
            knn = self._knn_graph(v, norms, ideg)
            graph = reverse_edge_graph(xp, knn, deg).astype(xp.int32)
        self._cuvs.reset()
        self._dev = {"vectors": v, "norms": norms, "graph": graph}
        self._info = {"graph_degree": int(deg)}
        self._n = n

    def _knn_graph(self, v, norms, ideg: int):
        """(n, ideg) nearest rows of every row (index metric, self excluded), nearest first."""
        xp = self.xp
        n = len(v)
        knn = xp.empty((n, max(ideg, 0)), dtype=xp.int32)
        if ideg <= 0:
            return knn
        step = block_rows(n)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            key = metric_keys(xp, v[lo:hi], v, norms, self._metric)
            key[xp.arange(hi - lo), xp.arange(lo, hi)] = _INF
            cols, _ = select_topk(xp, key, ideg)
            knn[lo:hi] = cols
        return knn

    # --- search -------------------------------------------------------------------
    def _search_exact(self, q, k: int, mask):
        return self._exact_rows(q, k, self._dev["vectors"], self._dev["norms"], mask)

    def _range(self, q, radius: float, range_filter, sp: dict, mask, exhaustive: bool):
        return self._range_rows(q, radius, range_filter, self._dev["vectors"], self._dev["norms"], mask)

    def _search_approx(self, q, k: int, sp: dict, mask):
        xp = self.xp
        n = self._n
        width = int(sp.get("search_width") or DEFAULT_SEARCH_WIDTH)
        itopk = max(int(sp.get("itopk_size") or DEFAULT_ITOPK), k)
        if mask is not None:
            nvalid = int(mask.sum())
            itopk = max(itopk, min(MAX_ITOPK, math.ceil(2 * k * n / max(nvalid, 1))))
        itopk = min(itopk, n)
        if itopk >= n or self._info.get("graph_degree", 0) == 0:
            return self._search_exact(q, k, mask)
        if mask is None and use_cuvs(xp):
            try:
                return cagra_search(xp, self._cuvs, self._dev, n, self._metric, q, k, itopk,
                                    int(sp.get("search_width") or 1), int(sp.get("min_iterations") or 0),
                                    int(sp.get("max_iterations") or 0))
            except Exception as e:  # noqa: BLE001 - any cuVS failure: the CuPy beam search answers
                log_fallback("CAGRA search", e)
        max_iter = int(sp.get("max_iterations") or 0) or 2 * math.ceil(itopk / width) + 32
        min_iter = int(sp.get("min_iterations") or 0)
        out_d = xp.empty((len(q), k), dtype=xp.float32)
        out_i = xp.empty((len(q), k), dtype=xp.int64)
        # per query: visited stamps (2-4 bytes per row) + the gathered candidate vectors
        cand = width * self._dev["graph"].shape[1]
        per_query = n * self._stamp_dtype(cand).itemsize + cand * (self.dim * 4 + 48)
        step = block_rows(1, WORKSPACE_BYTES, per_query)
        for lo in range(0, len(q), step):
            hi = min(len(q), lo + step)
            key, ids = self._beam(q[lo:hi], itopk, width, min_iter, max_iter)
            if mask is not None:
                key = xp.where(mask[xp.maximum(ids, 0)] & (ids >= 0), key, _INF)
            cols, vals = select_topk(xp, key, k)
            qn = row_norms(xp, q[lo:hi]) if self._metric == "L2" else None
            sel = xp.take_along_axis(ids, cols, 1)
            out_d[lo:hi], out_i[lo:hi] = finish_topk(xp, sel, vals, k, self._metric, qn, sort_ids=True)
        return out_d, out_i

    def _keys(self, q, rows, ok):
        """Keys of each query (nb, d) against its candidate rows (nb, W); +inf where not ok."""
        xp = self.xp
        r = xp.where(ok, rows, 0)
        ip = xp.matmul(self._dev["vectors"][r], q[:, :, None])[:, :, 0]
        key = self._dev["norms"][r] - 2 * ip if self._metric == "L2" else -ip
        return xp.where(ok, key, _INF)

    def _stamp_dtype(self, candidates: int):
        return np.dtype(np.int16 if max(candidates, 2 * MAX_ITOPK) < 2**15 else np.int32)

    def _claim(self, rows, ok, stamp, n: int):
        """Keep the candidates seen for the first time: not visited before, one of each repeat.

        ``stamp`` (nb * n + 1 int16/int32, -1 = unvisited) records for each (query,
        row) the candidate slot that claimed it; masked slots write to the
        extra last element. No sort and no host sync.
        """
        xp = self.xp
        nb, w = rows.shape
        dummy = nb * n
        ok = ok & (rows >= 0)
        flat = xp.where(ok, xp.arange(nb, dtype=xp.int64)[:, None] * n + rows, dummy)
        ok &= stamp[flat] < 0
        flat = xp.where(ok, flat, dummy)
        slot = xp.broadcast_to(xp.arange(w, dtype=stamp.dtype)[None, :], (nb, w))
        stamp[flat] = slot
        ok &= stamp[flat] == slot
        return ok

    def _seeds(self, q, count: int):
        """The ``count`` entry points closest to each query (nb, count).

        Entry points are 4 sqrt(n) rows (256..4096) spread evenly over the
        offsets; starting from the closest of them lands a query in its own
        region even when the graph falls apart into clusters.
        """
        xp = self.xp
        n = self._n
        e = min(n, max(MIN_ENTRY_POINTS, min(MAX_ENTRY_POINTS, 4 * math.isqrt(n))))
        entries = (xp.arange(e, dtype=xp.int64) * n) // e
        key = metric_keys(xp, q, self._dev["vectors"][entries], self._dev["norms"][entries], self._metric)
        cols, _ = select_topk(xp, key, min(e, count))
        return entries[cols]

    def _beam(self, q, itopk: int, width: int, min_iter: int, max_iter: int):
        """Beam search for one block of queries; returns the sorted buffer (keys, rows)."""
        xp = self.xp
        n = self._n
        graph = self._dev["graph"]
        deg = graph.shape[1]
        nb = len(q)
        stamp = xp.full(nb * n + 1, -1, dtype=self._stamp_dtype(width * deg))
        seeds = self._seeds(q, min(n, 2 * itopk))
        ok = self._claim(seeds, xp.ones(seeds.shape, dtype=bool), stamp, n)
        key = self._keys(q, seeds, ok)
        order = argsort_stable(xp, key, 1)[:, :itopk]
        bkey = xp.take_along_axis(key, order, 1)
        bids = xp.where(xp.isfinite(bkey), xp.take_along_axis(seeds, order, 1), -1)
        bexp = xp.zeros(bkey.shape, dtype=bool)
        rows_w = xp.arange(nb, dtype=xp.int64)[:, None] * width
        cols_l = xp.broadcast_to(xp.arange(itopk, dtype=xp.int64)[None, :], (nb, itopk))
        for it in range(max_iter):
            todo = ~bexp & (bids >= 0)
            # a host sync drains the launch queue: check for the end every few iterations only
            if it >= min_iter and it % CHECK_EVERY == 0 and not bool(todo.any()):
                break
            # the best `width` unexpanded entries (the buffer is sorted): a scatter, no sort
            rank = xp.cumsum(todo, axis=1, dtype=xp.int64)
            sel = todo & (rank <= width)
            pick = xp.full(nb * width + 1, itopk, dtype=xp.int64)
            pick[xp.where(sel, rows_w + rank - 1, nb * width)] = cols_l
            pick = pick[:-1].reshape(nb, width)
            par_ok = pick < itopk
            parents = xp.take_along_axis(bids, xp.minimum(pick, itopk - 1), 1)
            bexp |= sel
            nbrs = graph[xp.where(par_ok, parents, 0)].reshape(nb, width * deg).astype(xp.int64)
            nok = self._claim(nbrs, xp.repeat(par_ok, deg, axis=1), stamp, n)
            nkey = self._keys(q, nbrs, nok)
            allk = xp.concatenate([bkey, nkey], axis=1)
            order = argsort_stable(xp, allk, 1)[:, :itopk]
            bkey = xp.take_along_axis(allk, order, 1)
            bids = xp.take_along_axis(xp.concatenate([bids, xp.where(nok, nbrs, -1)], axis=1), order, 1)
            bexp = xp.take_along_axis(xp.concatenate([bexp, xp.zeros(nok.shape, dtype=bool)], axis=1), order, 1)
        return bkey, bids

"""GPU_IVF_FLAT on CuPy, and the IVF machinery GPU_IVF_PQ (gpu_ivf_pq.py) shares.

Layout (device arrays): ``centroids`` (nlist, dim); ``offsets`` (nlist+1):
list l holds list positions offsets[l]..offsets[l+1]-1; ``ids`` (n,) the
offset of the row at each list position. IVF_FLAT adds ``vectors`` and
``norms`` in list order.

Build. Coarse k-means (L2, ``KMEANS_ITERS`` Lloyd iterations, seeded) on at
most 256 rows per centroid; nlist shrinks on small inputs as in knowhere
(n // 39 rule, faiss_index.match_nlist). Rows go to their nearest centroid
in L2 for both metrics (balanced lists); for IP the probes are the
centroids with the largest q.c. Rows are assigned in chunks and uploaded
once, already in list order. ``add`` assigns new rows with the trained
centroids and merges them into the lists (a stable re-sort on the device).

Search. Query -> centroid distances -> nprobe lists -> candidates laid out
per query (one padded row of list positions, vectorised over queries) ->
distances -> top-k. IVF_FLAT distances are exact; nprobe = nlist, the
filter fallback and a short result use an exact GEMM over the (valid) rows.
Range search uses the same candidates and exact distances.
"""

from __future__ import annotations

import numpy as np

from vecdb.index.faiss_index import match_nlist
from vecdb.index.gpu_base import GpuIndex
from vecdb.index.gpu_ops import (
    WORKSPACE_BYTES,
    argsort_stable,
    assign_batched,
    block_rows,
    concat_hits,
    finish_topk,
    kmeans,
    range_hits,
    row_norms,
    select_topk,
    to_host,
)

KMEANS_ITERS = 20
MAX_POINTS_PER_CENTROID = 256
ENCODE_CHUNK_ROWS = 1 << 16
SEED = 1234
CAND_INDEX_BYTES = 64  # per candidate: positions, list ids, masks, keys
_INF = np.float32(np.inf)


class _GpuIvf(GpuIndex):
    """Shared IVF machinery: coarse quantiser, list layout, probing, candidates."""

    _keys_are_distances = False  # PQ keys already include |q|^2

    # --- build ------------------------------------------------------------------
    def _sample(self, x: np.ndarray, npts: int) -> np.ndarray:
        if len(x) <= npts:
            return x
        rng = np.random.default_rng(SEED)
        return x[np.sort(rng.choice(len(x), size=npts, replace=False))]

    def _train_coarse(self, sample_dev, nlist: int):
        return kmeans(self.xp, sample_dev[None], nlist, KMEANS_ITERS, SEED)[0]

    def _assign(self, xd, centroids=None):
        cent = self._dev["centroids"] if centroids is None else centroids
        return assign_batched(self.xp, xd[None], cent[None])[0]

    def _list_of_positions(self, pos):
        return self.xp.searchsorted(self._dev["offsets"], pos, side="right") - 1

    def _offsets(self, labels_sorted, nlist: int):
        xp = self.xp
        return xp.searchsorted(labels_sorted, xp.arange(nlist + 1, dtype=xp.int64)).astype(xp.int64)

    def _merge(self, labels_new, arrays_new: dict) -> None:
        """Merge rows (offsets n..n+m-1, already encoded) into the lists, keeping list order stable."""
        xp = self.xp
        n0, m = self._n, len(labels_new)
        old_labels = self._list_of_positions(xp.arange(n0, dtype=xp.int64))
        order = argsort_stable(xp, xp.concatenate([old_labels, labels_new]))
        ids = xp.concatenate([self._dev["ids"], xp.arange(n0, n0 + m, dtype=xp.int64)])
        for name, new in arrays_new.items():
            self._dev[name] = xp.concatenate([self._dev[name], new])[order]
        self._dev["ids"] = ids[order]
        nlist = self._info["nlist"]
        self._dev["offsets"] = self._offsets(xp.concatenate([old_labels, labels_new])[order], nlist)
        self._n = n0 + m

    # --- search -------------------------------------------------------------------
    def _nprobe(self, sp: dict) -> int:
        return min(int(sp.get("nprobe", 8)), self._info["nlist"])

    def _coarse(self, q):
        """(nq, nlist) keys of queries against centroids (smaller = closer) and the query norms."""
        xp = self.xp
        cent = self._dev["centroids"]
        ip = q @ cent.T
        if self._metric == "L2":
            qn = row_norms(xp, q)
            return row_norms(xp, cent)[None, :] - 2 * ip + qn[:, None], qn
        return -ip, None

    def _candidates(self, probes, c: int | None = None):
        """Per query, the list positions of its probed lists, laid out in one padded row.

        Returns (pos, lst, ok), each (nq, C): list position, its list, and
        whether the slot is real (False for padding; pos/lst are 0 there).
        ``c``, when known, is the largest candidate count (saves a host sync).
        """
        xp = self.xp
        off = self._dev["offsets"]
        nq, p = probes.shape
        sizes = off[probes + 1] - off[probes]
        cum = xp.cumsum(sizes, axis=1)
        tot = cum[:, -1]
        if c is None:
            c = int(tot.max()) if nq else 0
        if c == 0:
            z = xp.zeros((nq, 0), dtype=xp.int64)
            return z, z, xp.zeros((nq, 0), dtype=bool)
        base = xp.arange(nq, dtype=xp.int64)[:, None]
        j = xp.arange(c, dtype=xp.int64)[None, :]
        which = xp.searchsorted((cum + base * c).ravel(), base * c + j, side="right") - base * p
        ok = j < tot[:, None]
        which = xp.where(ok, which, 0)
        local = j - xp.take_along_axis(cum - sizes, which, 1)
        lst = xp.take_along_axis(probes, which, 1)
        pos = xp.where(ok, off[lst] + local, 0)
        return pos, lst, ok

    def _query_blocks(self, probes, per_candidate: int):
        """Query ranges whose candidate blocks fit the workspace, with the largest
        candidate count when there is one block (else None)."""
        off = self._dev["offsets"]
        tot = (off[probes + 1] - off[probes]).sum(axis=1)
        cmax = int(tot.max()) if len(probes) else 0
        step = block_rows(max(cmax, 1), WORKSPACE_BYTES, per_candidate)
        if step >= len(probes):
            return [(0, len(probes), cmax)]
        return [(lo, min(len(probes), lo + step), None) for lo in range(0, len(probes), step)]

    def _probe_blocks(self, q, nprobe: int):
        coarse, qn = self._coarse(q)
        probes, _ = select_topk(self.xp, coarse, nprobe)
        return coarse, qn, probes

    def _per_candidate_bytes(self) -> int:
        raise NotImplementedError

    def _cand_keys(self, q, qn, coarse, pos, lst):
        raise NotImplementedError

    def _search_approx(self, q, k: int, sp: dict, mask):
        nprobe = self._nprobe(sp)
        if nprobe >= self._info["nlist"]:
            return self._search_exact(q, k, mask)
        xp = self.xp
        out_d = xp.empty((len(q), k), dtype=xp.float32)
        out_i = xp.empty((len(q), k), dtype=xp.int64)
        for lo, hi, qnb, pos, ok, key in self._candidate_blocks(q, nprobe, mask):
            key = xp.where(ok, key, _INF)
            cols, vals = select_topk(xp, key, k)
            ids = self._dev["ids"][xp.take_along_axis(pos, cols, 1)]
            add = None if self._keys_are_distances else qnb
            out_d[lo:hi], out_i[lo:hi] = finish_topk(xp, ids, vals, k, self._metric, add, sort_ids=True)
        return out_d, out_i

    def _candidate_blocks(self, q, nprobe: int, mask):
        """Per block of queries: (lo, hi, query norms, candidate positions, valid flags, keys) over
        the probed lists, with filtered-out rows already flagged invalid."""
        coarse, qn, probes = self._probe_blocks(q, nprobe)
        vmask = None if mask is None else mask[self._dev["ids"]]
        for lo, hi, cmax in self._query_blocks(probes, self._per_candidate_bytes()):
            qnb = None if qn is None else qn[lo:hi]
            pos, lst, ok = self._candidates(probes[lo:hi], cmax)
            key = self._cand_keys(q[lo:hi], qnb, coarse[lo:hi], pos, lst)
            if vmask is not None:
                ok &= vmask[pos]
            yield lo, hi, qnb, pos, ok, key

    def _range_lists(self, q, radius: float, range_filter, nprobe: int, mask):
        xp = self.xp
        parts = []
        for lo, _hi, qnb, pos, ok, key in self._candidate_blocks(q, nprobe, mask):
            if self._metric == "L2":
                d = xp.maximum(key if self._keys_are_distances else key + qnb[:, None], 0)
            else:
                d = -key
            parts.append(range_hits(xp, d, self._metric, radius, range_filter, lo, self._dev["ids"][pos], ok))
        return concat_hits(parts)


class GpuIvfFlat(_GpuIvf):
    """GPU_IVF_FLAT: inverted lists of raw vectors, exact distances on the probed lists."""

    @classmethod
    def estimate_bytes(cls, n: int, dim: int, params: dict, building: bool = True) -> int:
        nlist = match_nlist(n, params.get("nlist", 128)) if n else 1
        held = n * (dim * 4 + 4 + 8) + nlist * dim * 4 + (nlist + 1) * 8
        extra = 0
        if building:  # training sample, one upload chunk, labels and their order
            sample = min(n, nlist * MAX_POINTS_PER_CENTROID)
            extra = sample * dim * 4 + min(n, ENCODE_CHUNK_ROWS) * dim * 4 + n * 16
        return held + extra + WORKSPACE_BYTES

    def _per_candidate_bytes(self) -> int:
        return self.dim * 4 + CAND_INDEX_BYTES

    def _build(self, x: np.ndarray) -> None:
        xp = self.xp
        n = len(x)
        nlist = match_nlist(n, self.params["nlist"])
        cent = self._train_coarse(xp.asarray(self._sample(x, nlist * MAX_POINTS_PER_CENTROID)), nlist)
        labels = xp.concatenate([
            self._assign(xp.asarray(x[lo:lo + ENCODE_CHUNK_ROWS]), cent) for lo in range(0, n, ENCODE_CHUNK_ROWS)
        ])
        order = argsort_stable(xp, labels)
        vectors = xp.asarray(x[to_host(order)])
        self._info = {"nlist": nlist}
        self._dev = {
            "centroids": cent,
            "offsets": self._offsets(labels[order], nlist),
            "ids": order.astype(xp.int64),
            "vectors": vectors,
            "norms": row_norms(xp, vectors),
        }
        self._n = n

    def _add(self, x: np.ndarray) -> None:
        xp = self.xp
        v = xp.asarray(x)
        self._merge(self._assign(v), {"vectors": v, "norms": row_norms(xp, v)})

    def _cand_keys(self, q, qn, coarse, pos, lst):
        xp = self.xp
        ip = xp.matmul(self._dev["vectors"][pos], q[:, :, None])[:, :, 0]
        if self._metric == "L2":
            return self._dev["norms"][pos] - 2 * ip
        return -ip

    def _search_exact(self, q, k: int, mask):
        vmask = None if mask is None else mask[self._dev["ids"]]
        return self._exact_rows(q, k, self._dev["vectors"], self._dev["norms"], vmask, self._dev["ids"])

    def _range(self, q, radius: float, range_filter, sp: dict, mask, exhaustive: bool):
        nprobe = self._nprobe(sp)
        if exhaustive or nprobe >= self._info["nlist"]:
            vmask = None if mask is None else mask[self._dev["ids"]]
            return self._range_rows(q, radius, range_filter, self._dev["vectors"], self._dev["norms"],
                                    vmask, self._dev["ids"])
        return self._range_lists(q, radius, range_filter, nprobe, mask)

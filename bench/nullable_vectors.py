"""Recall of each CPU index over a nullable vector field with null rows (placeholders).

A null row of a nullable vector field (Milvus 3.0) holds a placeholder: zeros (FLOAT, BINARY) or an
empty row (SPARSE). This builds every CPU index type the factory makes over a segment with 0%, 50%
and 90% null rows and searches it the way the query node does (``vecdb.querynode.executor``: the
field's validity ANDed into the mask), through the same ``create_index``/``new_index`` calls the
builders use, then reports recall@k of the valid rows against exact search over the valid rows
only, and whether any distance came back NaN/inf or any null row came back.

    .venv/bin/python -m bench.nullable_vectors [--n 40000] [--dim 96] [--nq 200] [--quick] [--placeholders]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vecdb.index import create_index
from vecdb.index import faiss_index as _fi
from vecdb.index.bruteforce import brute_force_search, float_distances
from vecdb.index.nullable import index_valid_rows
from vecdb.schema import DataType

FLOAT_INDEXES: list[tuple[str, dict, dict]] = [
    ("FLAT", {}, {}),
    ("IVF_FLAT", {"nlist": 128}, {"nprobe": 8}),
    ("IVF_SQ8", {"nlist": 128}, {"nprobe": 8}),
    ("IVF_PQ", {"nlist": 128, "m": 16, "nbits": 8}, {"nprobe": 8}),
    ("HNSW", {"M": 16, "efConstruction": 100}, {"ef": 64}),
    ("HNSW", {"M": 16, "efConstruction": 100}, {"ef": 16}),
    ("SCANN", {"nlist": 128, "with_raw_data": True}, {"nprobe": 8}),
]
BINARY_INDEXES: list[tuple[str, dict, dict]] = [
    ("BIN_FLAT", {}, {}),
    ("BIN_IVF_FLAT", {"nlist": 128}, {"nprobe": 8}),
]


_EXHAUSTIVE = [0]  # queries a FAISS index answered by scanning every valid row (its own fallback)
_run_search = _fi.FaissIndex._run_search


def _counting_run_search(self, q, k, sp, sel, mask, exhaustive, nvalid):
    if exhaustive:
        _EXHAUSTIVE[0] += len(q)
    return _run_search(self, q, k, sp, sel, mask, exhaustive, nvalid)


_fi.FaissIndex._run_search = _counting_run_search  # type: ignore[method-assign]


def clustered(rng: np.random.Generator, n: int, dim: int, centers: int = 200) -> np.ndarray:
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    return (c[rng.integers(0, centers, n)] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def with_nulls(x: np.ndarray, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(column with placeholders, validity): the column as a segment stores it."""
    valid = rng.random(len(x)) >= frac
    col = x.copy()
    col[~valid] = 0
    return col, valid


def recall(found: np.ndarray, truth_d: np.ndarray, exact: np.ndarray, metric: str) -> float:
    """Share of the true top-k found, ties counted: a hit is right when its exact distance is at
    least as good as the k-th true one (Hamming distances tie a lot)."""
    kth = truth_d[:, -1:]
    d = np.take_along_axis(exact, np.maximum(found, 0), axis=1)
    good = (d >= kth - 1e-4) if metric in ("IP", "COSINE") else (d <= kth + 1e-4)
    return float((good & (found >= 0)).sum()) / found.size


def measure(itype, build, sp, metric, vtype, col, valid, queries, k, placeholders: bool) -> dict:
    t = time.perf_counter()
    index = create_index(itype, metric, col.shape[1] * (8 if vtype == DataType.BINARY_VECTOR else 1), build, vtype)
    if placeholders:  # the way before vecdb.index.nullable: every row indexed, nulls masked at search
        index.build(col)
    else:  # what the builders do now (vecdb.index.new_index)
        index = index_valid_rows(index, col, valid)
    t_build = time.perf_counter() - t
    mask = None if valid.all() else valid.copy()
    _EXHAUSTIVE[0] = 0
    t = time.perf_counter()
    d, o = index.search(queries, k, sp, valid=mask)
    t_search = time.perf_counter() - t
    scanned = _EXHAUSTIVE[0]
    td, to = brute_force_search(col, queries, k, metric, valid=mask)
    if vtype == DataType.BINARY_VECTOR:
        from vecdb.index.bruteforce import binary_distances  # noqa: PLC0415

        exact = binary_distances(col, queries, metric)
    else:
        exact = float_distances(col, queries, metric)
    null_hits = int((~valid[o[o >= 0]]).sum())
    bad = int((~np.isfinite(d[o >= 0])).sum())
    return {"recall": recall(o, td, exact, metric), "null_hits": null_hits, "bad_dist": bad, "build_s": t_build,
            "search_ms": 1000 * t_search, "ntotal": index.ntotal, "scanned": scanned}


def _row(itype: str, sp: dict, metric: str, frac: float, r: dict) -> None:
    print(f"{itype:10} {str(sp):12} {metric:7} {int(frac * 100):>5} {r['recall']:7.3f} {r['null_hits']:>9} "
          f"{r['bad_dist']:>8} {r['build_s']:7.2f} {r['search_ms']:9.1f} {r['scanned']:>7}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--nq", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="HNSW and IVF_FLAT only")
    ap.add_argument("--placeholders", action="store_true",
                    help="index every row, null placeholders included (the old way), nulls masked at search")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    base = clustered(rng, args.n, args.dim)
    queries = clustered(np.random.default_rng(8), args.nq, args.dim)
    # queries near the data: perturbed rows
    queries = base[rng.integers(0, args.n, args.nq)] + 0.2 * rng.standard_normal((args.nq, args.dim)).astype(np.float32)
    kinds = [x for x in FLOAT_INDEXES if not args.quick or x[0] in ("HNSW", "IVF_FLAT")]
    print(f"n={args.n} dim={args.dim} nq={args.nq} k={args.k}")
    print(f"{'index':10} {'search':12} {'metric':7} {'null%':>5} {'recall':>7} {'null_hits':>9} {'bad_dist':>8} "
          f"{'build_s':>7} {'search_ms':>9} {'scanned':>7}")
    for frac in (0.0, 0.5, 0.9):
        col, valid = with_nulls(base, frac, np.random.default_rng(int(frac * 100)))
        for metric in ("L2", "IP", "COSINE"):
            for itype, build, sp in kinds:
                r = measure(itype, build, sp, metric, DataType.FLOAT_VECTOR, col, valid, queries, args.k,
                            args.placeholders)
                _row(itype, sp, metric, frac, r)
    bits = 256
    codes = np.packbits(rng.random((args.n, bits)) < 0.5, axis=1)
    bq = np.packbits(rng.random((args.nq, bits)) < 0.5, axis=1)
    for frac in (0.0, 0.5, 0.9):
        bvalid = np.random.default_rng(int(frac * 100) + 1).random(args.n) >= frac
        bcol = codes.copy()
        bcol[~bvalid] = 0
        for metric in ("HAMMING", "JACCARD"):
            for itype, build, sp in BINARY_INDEXES:
                r = measure(itype, build, sp, metric, DataType.BINARY_VECTOR, bcol, bvalid, bq, args.k,
                            args.placeholders)
                _row(itype, sp, metric, frac, r)
    # SPARSE_FLOAT_VECTOR: SPARSE_INVERTED_INDEX / SPARSE_WAND are the segment's postings (vecdb.sparse);
    # a null row's placeholder is an empty row, which has no postings at all
    from vecdb import sparse  # noqa: PLC0415

    nnz = 16
    idx = rng.integers(0, 1000, (args.n, nnz)).astype("<u4")
    val = rng.random((args.n, nnz)).astype("<f4")
    qrows = [np.sort(np.unique(rng.integers(0, 1000, 8))).astype("<u4") for _ in range(args.nq)]
    queries_sp = sparse.column([np.rec.fromarrays([i, np.ones(len(i), "<f4")], dtype=sparse.PAIR).tobytes()
                                for i in qrows])
    dense = np.zeros((args.n, 1000), np.float32)
    np.add.at(dense, (np.repeat(np.arange(args.n), nnz), idx.ravel()), val.ravel())
    dq = np.zeros((args.nq, 1000), np.float32)
    for qi, i in enumerate(qrows):
        dq[qi, i] = 1.0
    for frac in (0.0, 0.5, 0.9):
        svalid = np.random.default_rng(int(frac * 100) + 2).random(args.n) >= frac
        rows = [b"" if not svalid[r] else
                np.rec.fromarrays([np.unique(idx[r]), np.zeros(len(np.unique(idx[r])), "<f4")],
                                  dtype=sparse.PAIR).tobytes() for r in range(args.n)]
        for r in np.flatnonzero(svalid):  # the values of the unique indices, summed like ``dense``
            u = np.unique(idx[r])
            rec = np.rec.fromarrays([u, dense[r, u]], dtype=sparse.PAIR)
            rows[r] = rec.tobytes()
        col = sparse.column(rows)
        post = sparse.Postings(col)
        t = time.perf_counter()
        d, o = sparse.search(post, queries_sp, args.k, svalid.copy() if not svalid.all() else None)
        t_search = time.perf_counter() - t
        exact = dq @ np.where(svalid[:, None], dense, 0).T
        exact[:, ~svalid] = -np.inf
        td = -np.sort(-exact, axis=1)[:, : args.k]
        null_hits = int((~svalid[o[o >= 0]]).sum())
        print(f"{'SPARSE_INVERTED_INDEX':10} {'{}':12} {'IP':7} {int(frac * 100):>5} "
              f"{recall(o, td, exact, 'IP'):7.3f} {null_hits:>9} {int((~np.isfinite(d[o >= 0])).sum()):>8} "
              f"{0.0:7.2f} {1000 * t_search:9.1f} {'-':>7}", flush=True)


if __name__ == "__main__":
    main()

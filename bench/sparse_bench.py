"""Sparse vector search in process: exact brute force vs SPARSE_INVERTED_INDEX / SPARSE_WAND postings.

Data (fixed seed): ``--rows`` rows over ``--dims`` dimensions, nnz per row Poisson(``--nnz``) (at
least 1), dimensions drawn with Zipf-like frequencies p(d) ~ 1 / (d + 1)^``--zipf`` (so a few
dimensions are in most rows, as terms are in text), values uniform in (0, 1]; queries the same
with Poisson(``--qnnz``) non-zeros. Exact top-``k`` ground truth by a CSR x query brute force
(the query densified, ``np.add.reduceat`` over every stored value). Each configuration runs
nq=1 queries one after another in this process (one core) and reports QPS and recall@k.

    python -m bench.sparse_bench [--rows 100000 --dims 30000 --nnz 100 --qnnz 50 --queries 200]
        [--server] [--out bench/results/<date>-sparse.json]

``--server`` also runs the same data through pymilvus against a vecdb standalone server (its own
process): insert (5,000-row batches of {index: value} dicts), flush, SPARSE_INVERTED_INDEX, load,
then nq=1 searches one after another from one client thread: QPS, recall@k, server peak RSS.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vecdb import sparse


def generate(n: int, dims: int, nnz: float, zipf: float, seed: int) -> sparse.Csr:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, dims + 1) ** zipf
    p /= p.sum()
    counts = np.maximum(rng.poisson(nnz, n), 1)
    draws = int(counts.sum() * 1.3) + 1000  # extra draws: duplicates within a row are removed
    row = np.repeat(np.arange(n), np.maximum((counts * 1.3).astype(np.int64), 1))[:draws]
    dim = rng.choice(dims, len(row), p=p)
    key = np.unique(row.astype(np.int64) * dims + dim)  # sorted by row, then dimension; deduplicated
    r, d = key // dims, (key % dims).astype(np.uint32)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    values = rng.uniform(0.0, 1.0, len(d)).astype(np.float32) + np.float32(1e-3)
    return sparse.Csr(indptr, d, values)


def brute_force(csr: sparse.Csr, q: bytes, dims: int, k: int) -> np.ndarray:
    pairs = np.frombuffer(q, sparse.PAIR)
    dense = np.zeros(dims, np.float32)
    dense[pairs["i"]] = pairs["v"]
    prod = csr.values * dense[csr.indices]
    nonempty = np.diff(csr.indptr) > 0
    scores = np.zeros(csr.n, np.float32)
    scores[nonempty] = np.add.reduceat(prod, csr.indptr[:-1][nonempty])
    top = np.argpartition(-scores, k)[:k]
    return top[np.lexsort((top, -scores[top]))]


def through_server(csr: sparse.Csr, queries: list, truth: list, k: int) -> dict:
    from pymilvus import DataType, MilvusClient  # noqa: PLC0415 - only for --server

    from bench.servers import VecdbServer  # noqa: PLC0415

    def as_dict(row: bytes) -> dict:
        p = np.frombuffer(row, sparse.PAIR)
        return dict(zip(p["i"].tolist(), p["v"].tolist(), strict=True))

    with VecdbServer() as srv:
        c = MilvusClient(uri=srv.uri)
        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
        c.create_collection("sparse_bench", schema=schema)
        rows = sparse.from_csr(csr).tolist()
        t = time.perf_counter()
        for lo in range(0, len(rows), 5000):
            c.insert("sparse_bench", [{"id": i, "sp": as_dict(rows[i])} for i in range(lo, min(lo + 5000, len(rows)))])
        insert_s = time.perf_counter() - t
        c.flush("sparse_bench")
        idx = c.prepare_index_params()
        idx.add_index(field_name="sp", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        c.create_index("sparse_bench", idx)
        c.load_collection("sparse_bench")
        qd = [as_dict(q) for q in queries]

        def one(q):
            hits = c.search("sparse_bench", [q], anns_field="sp", limit=k, search_params={"metric_type": "IP"})
            return np.array([h["id"] for h in hits[0]])

        qps, got = timed_qps(one, qd)
        recall = float(np.mean([len(set(g.tolist()) & set(w.tolist())) / k for g, w in zip(got, truth, strict=True)]))
        rss = srv.peak_rss_mb()
        c.close()
    print(f"{'vecdb server, pymilvus, SPARSE_INVERTED_INDEX':48s} QPS {qps:8.1f}  recall@{k} {recall:.3f}  "
          f"insert {len(rows) / insert_s:,.0f} rows/s  server peak RSS {rss:.0f} MB")
    return {"config": "vecdb server via pymilvus, SPARSE_INVERTED_INDEX", "qps": qps, "recall": recall,
            "insert_rows_per_s": len(rows) / insert_s, "server_peak_rss_mb": rss}


def timed_qps(fn, queries) -> tuple[float, list]:
    fn(queries[0])  # warm-up
    t = time.perf_counter()
    out = [fn(q) for q in queries]
    return len(queries) / (time.perf_counter() - t), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=30_000)
    ap.add_argument("--nnz", type=float, default=100)
    ap.add_argument("--qnnz", type=float, default=50)
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--server", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    t = time.perf_counter()
    csr = generate(a.rows, a.dims, a.nnz, a.zipf, a.seed)
    col = sparse.from_csr(csr)
    qcsr = generate(a.queries, a.dims, a.qnnz, a.zipf, a.seed + 1)
    queries = sparse.from_csr(qcsr).tolist()
    gen_s = time.perf_counter() - t
    col_bytes = int(sum(len(r) for r in col.tolist()))
    print(f"data: {a.rows} rows x {a.dims} dims, {len(csr.indices)} non-zeros "
          f"({len(csr.indices) / a.rows:.1f}/row), queries {len(qcsr.indices) / a.queries:.1f} nnz; "
          f"generated in {gen_s:.1f} s")
    bf_qps, truth = timed_qps(lambda q: brute_force(csr, q, a.dims, a.k), queries)
    results = [{"config": "brute force (CSR x dense query)", "qps": bf_qps, "recall": 1.0}]
    print(f"{'brute force (CSR x dense query)':48s} QPS {bf_qps:8.1f}  recall@{a.k} 1.000")
    for itype, build, search in [("SPARSE_INVERTED_INDEX", 0.0, 0.0), ("SPARSE_WAND", 0.0, 0.0),
                                 ("SPARSE_INVERTED_INDEX", 0.2, 0.0), ("SPARSE_INVERTED_INDEX", 0.0, 0.2),
                                 ("SPARSE_WAND", 0.2, 0.2), ("SPARSE_INVERTED_INDEX", 0.5, 0.5)]:
        t = time.perf_counter()
        post = sparse.Postings(col, drop_ratio=build)
        build_s = time.perf_counter() - t
        qcol = np.empty(1, object)

        def one(q, post=post, search=search, qcol=qcol):
            qcol[0] = q
            return sparse.search(post, qcol, a.k, None, search)[1][0]

        qps, got = timed_qps(one, queries)
        recall = float(np.mean([len(set(g.tolist()) & set(w.tolist())) / a.k for g, w in zip(got, truth, strict=True)]))
        name = f"{itype} build={build} search={search}"
        print(f"{name:48s} QPS {qps:8.1f}  recall@{a.k} {recall:.3f}  build {build_s:.2f} s  "
              f"postings {post.nbytes() / 2**20:.0f} MiB")
        results.append({"config": name, "qps": qps, "recall": recall, "build_s": build_s,
                        "postings_mib": post.nbytes() / 2**20})
    print(f"column: {col_bytes / 2**20:.0f} MiB of pairs in {a.rows} bytes objects")
    if a.server:
        results.append(through_server(csr, queries, truth, a.k))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "nnz": int(len(csr.indices)), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

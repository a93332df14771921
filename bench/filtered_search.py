"""Filtered vector search against Milvus 2.3.5: QPS, server CPU per query and recall@10 of an HNSW
search with a scalar filter at several selectivities, each system a fresh server on the same data.

    python -m bench.filtered_search [--n 100000] [--systems vecdb,milvus] [--out bench/results/x.json]

Data: ``--n`` GloVe-6B-50d rows (synthetic clustered 128-d where GloVe is not installed) with an
INT64 ``cat`` = primary key mod 1000, so ``cat < X`` keeps X/1000 of the rows, spread over the whole
collection; 1,000 held-out queries. Ground truth: the exact L2 top-10 among the rows the filter keeps.
Index HNSW M=16 efConstruction=200, searched at ef=64 (Milvus: the same params). Loads: nq=1 from 8
client threads and nq=100 from 2, ``--duration`` seconds each after a warm-up; server CPU per query
from /proc (the server's whole process tree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time

import numpy as np

from bench.datasets import exact_topk, load_dataset, recall_at_k
from bench.servers import MilvusStandalone, VecdbServer, read_cpu_seconds

SELECTIVITY = [1000, 500, 100, 10, 1]  # cat < X: X/1000 of the rows kept
EF = 64


def build(uri: str, base: np.ndarray, batch: int = 5000) -> None:
    from pymilvus import DataType, MilvusClient

    c = MilvusClient(uri=uri)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=int(base.shape[1]))
    schema.add_field("cat", DataType.INT64)
    c.create_collection("f", schema=schema, consistency_level="Bounded")
    for lo in range(0, len(base), batch):
        rows = base[lo:lo + batch]
        c.insert("f", [{"id": lo + i, "vec": rows[i], "cat": (lo + i) % 1000} for i in range(len(rows))])
    c.flush("f")
    ip = c.prepare_index_params()
    ip.add_index(field_name="vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 200})
    c.create_index("f", ip)
    c.load_collection("f")
    while True:  # every row indexed (vecdb builds at load)
        d = c.describe_index("f", "vec") or {}
        if d.get("state") == "Finished" and int(d.get("indexed_rows", 0)) >= len(base):
            break
        time.sleep(0.2)
    c.close()


def load(uri: str, queries: np.ndarray, flt: str, nq: int, threads: int, duration: float) -> dict:
    """A closed loop of ``threads`` threads sharing one client; the hits of the first pass over the
    queries kept for recall."""
    from pymilvus import MilvusClient

    c = MilvusClient(uri=uri)
    batches = [queries[i:i + nq] for i in range(0, len(queries) - nq + 1, nq)]
    found: dict[int, list[list[int]]] = {}
    params = {"metric_type": "L2", "params": {"ef": EF}}

    def one(j: int) -> None:
        res = c.search("f", data=batches[j % len(batches)], limit=10, filter=flt, search_params=params,
                       anns_field="vec")
        if j < len(batches):
            found[j] = [[h["id"] for h in hits] for hits in res]

    for j in range(min(len(batches), 20)):  # warm-up
        one(j)
    count = [0] * threads
    stop = time.perf_counter() + duration
    nxt = iter(range(10**9))
    lock = threading.Lock()

    def worker(w: int) -> None:
        while time.perf_counter() < stop:
            with lock:
                j = next(nxt)
            one(j)
            count[w] += 1

    began = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - began
    c.close()
    got = np.full((len(batches) * nq, 10), -1, np.int64)
    for j, rows in found.items():
        for i, ids in enumerate(rows):
            got[j * nq + i, :len(ids)] = ids
    requests = sum(count)
    return {"qps": requests * nq / wall, "requests": requests, "found": got, "covered": len(found) * nq}


def run_system(name: str, ds, args) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"bench-filter-{name}-")
    server = MilvusStandalone(workdir) if name == "milvus" else VecdbServer(workdir)
    server.start()
    out: dict = {"system": name, "rows": []}
    try:
        t0 = time.perf_counter()
        build(server.uri, ds.base)
        out["build_s"] = time.perf_counter() - t0
        for x in SELECTIVITY:
            flt = f"cat < {x}" if x < 1000 else ""
            keep = np.flatnonzero(np.arange(len(ds.base)) % 1000 < x)
            gt = keep[exact_topk(ds.base[keep], ds.queries, 10, "L2")]
            row: dict = {"kept": x / 1000, "filter": flt}
            for nq, threads in ((1, 8), (100, 2)):
                cpu0 = read_cpu_seconds(server.pid) or 0.0
                r = load(server.uri, ds.queries, flt, nq, threads, args.duration)
                cpu = (read_cpu_seconds(server.pid) or 0.0) - cpu0
                n = r["covered"]
                row[f"nq{nq}"] = {"qps": round(r["qps"], 1), "recall": round(recall_at_k(r["found"][:n], gt[:n]), 4),
                                  "server_cpu_ms_q": round(1000 * cpu / max(1, r["requests"] * nq), 3)}
            out["rows"].append(row)
            print(name, json.dumps(row), flush=True)
    finally:
        server.stop()
    return out


def render(results: list[dict]) -> str:
    by = {r["system"]: r for r in results}
    lines = ["| kept | recall@10 nq=1 vecdb / Milvus | QPS nq=1 8t vecdb / Milvus | ratio | q/s nq=100 vecdb / Milvus "
             "| ratio | server CPU ms/q nq=1 vecdb / Milvus |", "|---|---|---|---|---|---|---|"]
    v, m = by.get("vecdb"), by.get("milvus")
    if v is None or m is None:
        return json.dumps(results, indent=1)
    for a, b in zip(v["rows"], m["rows"]):
        a1, b1, a100, b100 = a["nq1"], b["nq1"], a["nq100"], b["nq100"]
        lines.append(f"| {a['kept']:.1%} | {a1['recall']:.3f} / {b1['recall']:.3f} "
                     f"| {a1['qps']:,.0f} / {b1['qps']:,.0f} | {a1['qps'] / b1['qps']:.2f}x "
                     f"| {a100['qps']:,.0f} / {b100['qps']:,.0f} | {a100['qps'] / b100['qps']:.2f}x "
                     f"| {a1['server_cpu_ms_q']:.3f} / {b1['server_cpu_ms_q']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--systems", default="vecdb,milvus")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each system, interleaved (medians reported)")
    ap.add_argument("--out")
    args = ap.parse_args()
    ds = load_dataset(args.n, 1000)
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        for name in args.systems.split(","):
            runs.setdefault(name, []).append(run_system(name, ds, args))
    results = []
    for name, rs in runs.items():  # the median of each number over the repeats
        med = {"system": name, "build_s": statistics.median(r["build_s"] for r in rs), "rows": []}
        for i, row in enumerate(rs[0]["rows"]):
            m = {"kept": row["kept"], "filter": row["filter"]}
            for key in ("nq1", "nq100"):
                m[key] = {k: statistics.median(r["rows"][i][key][k] for r in rs) for k in row[key]}
            med["rows"].append(m)
        results.append(med)
    print(render(results))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"dataset": ds.name, "n": args.n, "ef": EF, "runs": runs, "medians": results}, f, indent=1)


if __name__ == "__main__":
    main()

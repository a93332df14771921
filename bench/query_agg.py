"""Query aggregation (``group_by_fields`` and ``count/sum/avg/min/max`` in ``output_fields``) through
pymilvus on a vecdb standalone server and, with ``--cluster``, a local cluster (``VecdbCluster``: two
query nodes, one proxy): the median of ``--repeat`` runs of each query, and the peak resident memory
of the server while the query runs (VmHWM, reset before each query through /proc/<pid>/clear_refs;
for a cluster the sum over its vecdb processes' peaks).

    python -m bench.query_agg --rows 1000000 [--cluster] [--out bench/results/x.json]

The collection: ``id`` INT64 primary key, a 2-d vector, ``g10`` INT64 (10 values), ``g100`` VARCHAR
(100 values), ``g1000`` INT64 (1000 values), ``price`` DOUBLE, ``qty`` INT64 (0..999), ``w`` FLOAT;
flushed (sealed segments) and loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from pymilvus import DataType, MilvusClient

from bench.servers import VecdbCluster, VecdbServer, read_vmhwm_mb

AGGS = ["count(*)", "sum(price)", "avg(price)", "min(qty)", "max(qty)", "sum(qty)", "max(g100)"]
FILTER = "qty > 499"
QUERIES = [  # (label, group_by_fields)
    ("global", []),
    ("by g10", ["g10"]),
    ("by g100 (VARCHAR)", ["g100"]),
    ("by g1000", ["g1000"]),
    ("by g10, g1000", ["g10", "g1000"]),
]


def load(c: MilvusClient, n: int, batch: int = 50_000) -> float:
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("g10", DataType.INT64)
    schema.add_field("g100", DataType.VARCHAR, max_length=16)
    schema.add_field("g1000", DataType.INT64)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("qty", DataType.INT64)
    schema.add_field("w", DataType.FLOAT)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection("agg", schema=schema, index_params=idx)
    rng = np.random.default_rng(0)
    names = [f"name{i:03d}" for i in range(100)]
    began = time.perf_counter()
    for lo in range(0, n, batch):
        m = min(n, lo + batch) - lo
        vec = rng.random((m, 2), dtype=np.float32).tolist()
        g10, g100, g1000 = rng.integers(0, 10, m), rng.integers(0, 100, m), rng.integers(0, 1000, m)
        price, qty, w = rng.random(m) * 100, rng.integers(0, 1000, m), rng.random(m, dtype=np.float32)
        c.insert("agg", [{"id": lo + i, "vec": vec[i], "g10": int(g10[i]), "g100": names[g100[i]],
                          "g1000": int(g1000[i]), "price": float(price[i]), "qty": int(qty[i]), "w": float(w[i])}
                         for i in range(m)])
    c.flush("agg")
    c.release_collection("agg")
    c.load_collection("agg")
    return time.perf_counter() - began


def _reset_peaks(pids: list[int]) -> None:
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


def _peak(pids: list[int]) -> float:
    return sum(read_vmhwm_mb(p) or 0.0 for p in pids)


def run(c: MilvusClient, pids: list[int], repeat: int) -> list[dict]:
    c.query("agg", filter="", output_fields=AGGS)  # warm up: every column read once
    out = []
    for label, group in QUERIES:
        for flt in ("", FILTER):
            fields = group + AGGS
            times, peaks = [], []
            for _ in range(repeat):
                _reset_peaks(pids)
                base = _peak(pids)
                began = time.perf_counter()
                rows = c.query("agg", filter=flt, output_fields=fields, **({"group_by_fields": group} if group else {}))
                times.append(time.perf_counter() - began)
                peaks.append(_peak(pids) - base)
            out.append({"query": label, "filter": flt, "groups": len(rows), "median_s": statistics.median(times),
                        "peak_rss_growth_mb": max(peaks)})
            print(f"{label:20s} {flt or '-':10s} groups={len(rows):5d} {statistics.median(times) * 1000:9.1f} ms"
                  f"  peak +{max(peaks):7.1f} MiB", flush=True)
    return out


def main(queries=None) -> None:
    """Load the rows, then time ``queries(client, server pids, repeat)`` (default: the aggregations)."""
    queries = queries or run
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cluster", action="store_true", help="a local cluster (2 query nodes) instead of standalone")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    server = VecdbCluster() if a.cluster else VecdbServer()
    with server:
        c = MilvusClient(uri=server.uri)
        took = load(c, a.rows)
        print(f"loaded {a.rows} rows in {took:.1f} s", flush=True)
        pids = list(server.vecdb_pids().values()) if a.cluster else [server.pid]
        results = queries(c, pids, a.repeat)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rows": a.rows, "deployment": "cluster" if a.cluster else "standalone",
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

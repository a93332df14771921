"""A plain query's ORDER BY with a limit (``order_by_fields``, pushed down to the query nodes:
vecdb/top_rows.py) through pymilvus on a vecdb standalone server and, with ``--cluster``, a local
cluster (``VecdbCluster``: two query nodes, one proxy): the median of ``--repeat`` runs of each query
and the peak resident memory of the server while it runs (as bench/query_agg.py measures it), on
bench/query_agg.py's collection (``id``, ``g10``, ``g100`` VARCHAR, ``g1000``, ``price`` DOUBLE,
``qty``, ``w``; flushed and loaded).

    python -m bench.query_order --rows 1000000 [--cluster] [--out bench/results/x.json]

Run from a checkout of the code before the push-down (the same file copied there) for the before
numbers: the server runs the checkout the bench file sits in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pymilvus import MilvusClient

from bench.query_agg import FILTER, _peak, _reset_peaks, load
from bench.servers import VecdbCluster, VecdbServer

OUTPUT = ["id", "price", "g100"]
QUERIES = [  # (label, order_by_fields, limit, offset)
    ("price desc, top 10", [("price", "desc")], 10, 0),
    ("price asc, offset 1000", [("price", "asc")], 10, 1000),
    ("qty desc, top 1000", [("qty", "desc")], 1000, 0),
    ("g100 (VARCHAR) desc, price", [("g100", "desc"), ("price", "asc")], 10, 0),
    ("g10, qty desc, w", [("g10", "asc"), ("qty", "desc"), ("w", "asc")], 100, 0),
]


def run(c: MilvusClient, pids: list[int], repeat: int) -> list[dict]:
    c.query("agg", filter="", output_fields=OUTPUT + ["g10", "qty", "w"], limit=10)  # warm up
    out = []
    for label, order, limit, offset in QUERIES:
        by = [{"field": f, "order": o} for f, o in order]
        for flt in ("", FILTER):
            times, peaks = [], []
            for _ in range(repeat):
                _reset_peaks(pids)
                base = _peak(pids)
                began = time.perf_counter()
                rows = c.query("agg", filter=flt, output_fields=OUTPUT, order_by_fields=by, limit=limit,
                               offset=offset)
                times.append(time.perf_counter() - began)
                peaks.append(_peak(pids) - base)
            out.append({"query": label, "filter": flt, "rows": len(rows), "first": rows[0]["id"] if rows else None,
                        "median_s": statistics.median(times), "peak_rss_growth_mb": max(peaks)})
            print(f"{label:28s} {flt or '-':10s} rows={len(rows):5d} first={out[-1]['first']} "
                  f"{statistics.median(times) * 1000:9.1f} ms  peak +{max(peaks):7.1f} MiB", flush=True)
    return out


def main() -> None:
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
        results = run(c, pids, a.repeat)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rows": a.rows, "deployment": "cluster" if a.cluster else "standalone",
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

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

import statistics
import time

from pymilvus import MilvusClient

from bench.query_agg import FILTER, _peak, _reset_peaks, main

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


if __name__ == "__main__":
    main(run)  # bench.query_agg's: the same data, these queries

"""FAISS in-process: the same index and loads with no server and no transport.

``measure`` runs in a process of its own (see ``client.isolated``) that only
loads the data, builds the index and searches, so its VmHWM is the memory
floor for "the data plus the index". Loads mirror ``client.search_load``:
nq=1 from 1 and from ``threads`` Python threads (FAISS releases the GIL), and
batches of ``nq`` queries from one caller (FAISS spreads a batch over its
OpenMP threads). ``add_rows_s`` is rows / time of ``index.add`` (for HNSW
that is the graph build; for IVF the training is in ``build_s`` only).
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np

from bench.datasets import recall_at_k
from bench.indexes import build_faiss, faiss_search_params
from bench.servers import read_vmhwm_mb


def _load(index, params, queries, gt, *, threads: int, nq: int, duration: float,
          warmup: float, k: int) -> dict:
    nbatch = max(1, len(queries) // nq)
    batches = [np.ascontiguousarray(queries[i * nq:(i + 1) * nq]) for i in range(nbatch)]
    stop_warm = time.perf_counter() + warmup
    j = 0
    while time.perf_counter() < stop_warm:
        index.search(batches[j % nbatch], k, params=params)
        j += 1
    found = np.full((nbatch * nq, k), -1, dtype=np.int64)
    counter = itertools.count()
    lat = [[] for _ in range(threads)]
    ends = [0.0] * threads
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + duration

    def worker(w: int):
        mine = lat[w]
        while True:
            j = next(counter)
            if j >= nbatch and time.perf_counter() >= deadline:
                break
            t = time.perf_counter()
            _, labels = index.search(batches[j % nbatch], k, params=params)
            mine.append(time.perf_counter() - t)
            if j < nbatch:
                found[j * nq:(j + 1) * nq] = labels
        ends[w] = time.perf_counter()

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu = time.process_time() - cpu0
    elapsed = max(ends) - start
    ms = np.concatenate([np.asarray(x) for x in lat]) * 1000.0
    return {"threads": threads, "nq": nq, "requests": len(ms), "seconds": elapsed,
            "server_cpu_ms_per_query": cpu * 1000.0 / (len(ms) * nq),
            "qps": len(ms) * nq / elapsed, "rps": len(ms) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "recall": recall_at_k(found, gt[:nbatch * nq], k)}


def measure(data_dir: str, index_type: str, build_params: dict, metric: str, values: list,
            headline, *, threads: int = 8, big_nq: int = 100, duration: float = 5.0,
            warmup: float = 0.5, k: int = 10) -> dict:
    """Build once, then for each knob value: nq=1 with ``threads`` threads (all
    values) and, at ``headline``, nq=1 with 1 thread and nq=``big_nq``."""
    import faiss

    base = np.load(os.path.join(data_dir, "base.npy"))
    queries = np.load(os.path.join(data_dir, "queries.npy"))
    gt = np.load(os.path.join(data_dir, "gt.npy"))
    t0 = time.perf_counter()
    index = build_faiss(index_type, build_params, metric, base)
    build_s = time.perf_counter() - t0
    add_s = build_s  # HNSW/FLAT: add is the whole build
    if index_type.startswith("IVF"):  # build_s includes training: time add alone
        t = time.perf_counter()
        index.reset()
        index.add(base)
        add_s = time.perf_counter() - t
    runs = []
    for value in values:
        params = faiss_search_params(index_type, value)
        run = {"value": value,
               "nq1_t8": _load(index, params, queries, gt, threads=threads, nq=1,
                               duration=duration, warmup=warmup, k=k)}
        if value == headline:
            run["nq1_t1"] = _load(index, params, queries, gt, threads=1, nq=1,
                                  duration=duration, warmup=warmup, k=k)
            run[f"nq{big_nq}"] = _load(index, params, queries, gt, threads=1, nq=big_nq,
                                       duration=duration, warmup=warmup, k=k)
        runs.append(run)
    return {"build": {"rows": int(len(base)), "build_s": build_s, "add_rows_s": len(base) / add_s,
                      "faiss_threads": faiss.omp_get_max_threads()},
            "runs": runs, "peak_rss_mb": read_vmhwm_mb(os.getpid())}

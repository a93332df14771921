"""GPU indexes at 1M x 128 (issue 16): build time, QPS at nq=1 and nq=100, recall@10, next to CPU HNSW.

Runs the index layer in-process (vecdb.index.factory.create_index, the objects a segment holds), on the
generated clustered set of bench/datasets.py (fixed seed, exact L2 ground truth), for:

- HNSW on the CPU (FAISS through vecdb, M=16 efConstruction=200, ef=64): the anchor;
- GPU_CAGRA on cuVS (intermediate_graph_degree=128 graph_degree=64, itopk_size=64; the graph by
  NN-descent, vecdb's default, and by IVF-PQ, knowhere's), and on vecdb's
  own CuPy kernels at ``--cupy-cagra-n`` rows (its exact kNN graph is O(n^2): not run at 1M);
- GPU_BRUTE_FORCE on cuVS and on CuPy; GPU_IVF_FLAT (nlist=1024, nprobe=16) and GPU_IVF_PQ
  (nlist=1024, m=32, nbits=8, nprobe=16) on CuPy;
- faiss-gpu where it imports (GpuIndexCagra / GpuIndexFlatL2), else the reason it did not.

Per index: build seconds; nq=1 QPS from one caller (latency p50) and from ``--threads`` callers at once
(the GPU indexes coalesce concurrent nq=1 searches: gpu_base.py); nq=100 QPS from one caller; recall@10
against the exact answer. The backend is chosen per index by VECDB_GPU_BACKEND (gpu_cuvs.py). The JSON
(--out) is rewritten after every index, so a run stopped from outside keeps what it measured; ``--budget``
skips what would not fit.

    python -m bench.gpu_bench --n 1000000 --out bench/results/DATE-gpu-1m.json --budget 240
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import traceback

import numpy as np

from bench.datasets import Dataset, clustered_1m, recall_at_k

K = 10
CONFIGS = [
    # label, index type, backend, build params, search params, rows (None: all), seconds it may need at 1M
    ("GPU_CAGRA cuvs", "GPU_CAGRA", "cuvs", {"intermediate_graph_degree": 128, "graph_degree": 64},
     {"itopk_size": 64}, None, 40),
    ("GPU_CAGRA cuvs IVF_PQ graph", "GPU_CAGRA", "cuvs",
     {"intermediate_graph_degree": 128, "graph_degree": 64, "build_algo": "IVF_PQ"}, {"itopk_size": 64}, None, 40),
    ("HNSW cpu", "HNSW", None, {"M": 16, "efConstruction": 200}, {"ef": 64}, None, 90),
    ("GPU_BRUTE_FORCE cuvs", "GPU_BRUTE_FORCE", "cuvs", {}, {}, None, 15),
    ("GPU_BRUTE_FORCE cupy", "GPU_BRUTE_FORCE", "cupy", {}, {}, None, 15),
    ("GPU_IVF_FLAT cupy", "GPU_IVF_FLAT", "cupy", {"nlist": 1024}, {"nprobe": 16}, None, 30),
    ("GPU_IVF_PQ cupy", "GPU_IVF_PQ", "cupy", {"nlist": 1024, "m": 32, "nbits": 8}, {"nprobe": 16}, None, 40),
    ("GPU_CAGRA cupy", "GPU_CAGRA", "cupy", {"intermediate_graph_degree": 128, "graph_degree": 64},
     {"itopk_size": 64}, "cupy_cagra_n", 60),
]


def _sync() -> None:
    try:
        import cupy

        cupy.cuda.runtime.deviceSynchronize()
    except Exception:  # noqa: BLE001 - no GPU: nothing to wait for
        pass


def _free_gpu() -> None:
    """The last index's device memory back (CuPy's pool keeps freed blocks)."""
    import gc

    gc.collect()
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    except Exception:  # noqa: BLE001
        pass


def _gpu_used_mib() -> float | None:
    try:
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        return (total - free) / 2**20
    except Exception:  # noqa: BLE001
        return None


def _loads(search, queries: np.ndarray, gt: np.ndarray, threads: int, seconds: float) -> dict:
    """nq=1 from one caller and from ``threads``; nq=100 from one caller; recall from the nq=100 answers."""
    out: dict = {}
    for _ in range(3):  # warm: kernels compiled, pools filled
        search(queries[:1])
        search(queries[:100])
    lat = []
    t_end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < t_end or i < 20:
        t = time.perf_counter()
        search(queries[i % len(queries):i % len(queries) + 1])
        lat.append(time.perf_counter() - t)
        i += 1
    out["nq1_qps_1thread"] = len(lat) / sum(lat)
    out["nq1_p50_ms"] = float(np.median(lat) * 1000)
    counts = [0] * threads
    stop = threading.Event()

    def caller(j: int) -> None:
        m = j
        while not stop.is_set():
            search(queries[m % len(queries):m % len(queries) + 1])
            counts[j] += 1
            m += threads

    pool = [threading.Thread(target=caller, args=(j,)) for j in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    out[f"nq1_qps_{threads}threads"] = sum(counts) / (time.perf_counter() - t0)
    ids = []
    t0 = time.perf_counter()
    for s in range(0, len(queries), 100):
        ids.append(search(queries[s:s + 100]))
    out["nq100_qps"] = len(queries) / (time.perf_counter() - t0)
    out["recall_at_10"] = float(recall_at_k(np.concatenate(ids), gt, K))
    return out


def measure(label: str, index_type: str, backend: str | None, build: dict, sp: dict, base: np.ndarray,
            ds: Dataset, threads: int, seconds: float) -> dict:
    from vecdb.index.factory import create_index
    from vecdb.schema import DataType

    if backend:
        os.environ["VECDB_GPU_BACKEND"] = backend
    index = create_index(index_type, "L2", base.shape[1], dict(build), DataType.FLOAT_VECTOR)
    gt = ds.gt if len(base) == len(ds.base) else _exact(base, ds.queries)
    t0 = time.perf_counter()
    index.build(base)
    _sync()
    r: dict = {"label": label, "index_type": index_type, "backend": backend or "faiss-cpu", "rows": len(base),
               "build_s": time.perf_counter() - t0, "build": build, "search": sp, "gpu_used_mib": _gpu_used_mib()}

    def search(q: np.ndarray) -> np.ndarray:
        return index.search(q, K, sp)[1]

    r.update(_loads(search, ds.queries, gt, threads, seconds))
    for attr in ("batches_run", "queries_batched"):
        if hasattr(index, attr):
            r[attr] = getattr(index, attr)
    return r


def _exact(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from bench.datasets import exact_topk_l2_blocked

    return exact_topk_l2_blocked(base, queries, K)


def faiss_gpu(base: np.ndarray, ds: Dataset, threads: int, seconds: float) -> list[dict]:
    """faiss-gpu's CAGRA (cuVS inside) and flat index, where a faiss with GPUs imports."""
    try:
        import faiss

        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            return [{"label": "faiss-gpu", "error": "the faiss here has no GPU support (faiss-gpu not installed)"}]
    except Exception as e:  # noqa: BLE001
        return [{"label": "faiss-gpu", "error": f"{type(e).__name__}: {e}"}]
    res = faiss.StandardGpuResources()
    out = []
    for label, make in (("faiss-gpu GpuIndexFlatL2", lambda: faiss.GpuIndexFlatL2(res, base.shape[1])),):
        idx = make()
        t0 = time.perf_counter()
        idx.add(base)
        r = {"label": label, "rows": len(base), "build_s": time.perf_counter() - t0}
        r.update(_loads(lambda q, idx=idx: idx.search(q, K)[1], ds.queries, ds.gt, threads, seconds))
        out.append(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=32, help="concurrent nq=1 callers")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per nq=1 load")
    ap.add_argument("--cupy-cagra-n", type=int, default=100_000, help="rows for CuPy's O(n^2) CAGRA graph")
    ap.add_argument("--only", default="", help="comma-separated labels to run (default: all)")
    ap.add_argument("--budget", type=float, default=0.0, help="seconds for the whole run (0: no limit)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    ds = Dataset.open(clustered_1m(args.n, args.nq), mmap=False)
    base = np.ascontiguousarray(ds.base, dtype=np.float32)
    print(f"data: {len(base):,} x {base.shape[1]} ({time.perf_counter() - t_start:.1f} s), "
          f"{os.cpu_count()} CPUs", flush=True)
    from vecdb.index.gpu_cuvs import _import_error, cuvs_modules

    meta = {"cuvs": cuvs_modules() is not None, "cuvs_error": _import_error[-1] if _import_error else None,
            "cpus": os.cpu_count(), "args": vars(args)}
    try:
        import cupy

        meta["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as e:  # noqa: BLE001
        meta["gpu"] = f"none ({type(e).__name__}: {e})"
    print(f"GPU: {meta['gpu']}; cuVS: {meta['cuvs']} {meta['cuvs_error'] or ''}", flush=True)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    results: list[dict] = []

    def save() -> None:
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"meta": meta, "results": results}, f, indent=1)

    for label, itype, backend, build, sp, rows_arg, need in CONFIGS:
        if only and label not in only:
            continue
        left = args.budget - (time.perf_counter() - t_start) if args.budget else None
        rows = getattr(args, rows_arg) if isinstance(rows_arg, str) else len(base)
        scaled = need * rows / 1_000_000 + 4 * args.seconds
        if left is not None and left < scaled:
            results.append({"label": label, "skipped": f"{left:.0f} s left, ~{scaled:.0f} s needed"})
            print(f"{label}: skipped ({left:.0f} s left)", flush=True)
            continue
        try:
            r = measure(label, itype, backend, build, sp, base[:rows], ds, args.threads, args.seconds)
        except Exception as e:  # noqa: BLE001 - one index failing must not lose the others
            r = {"label": label, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        results.append(r)
        _free_gpu()
        save()
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                          if k != "trace"}), flush=True)
    if not only or "faiss-gpu" in only:
        results.extend(faiss_gpu(base, ds, args.threads, args.seconds))
        save()
    print(f"\n{'index':<24} {'rows':>9} {'build s':>8} {'nq1 qps':>9} {'p50 ms':>7} "
          f"{'nq1 qps @' + str(args.threads):>12} {'nq100 qps':>10} {'recall':>7}")
    for r in results:
        if "build_s" not in r:
            print(f"{r['label']:<24} {r.get('error') or r.get('skipped')}")
            continue
        print(f"{r['label']:<24} {r['rows']:>9,} {r['build_s']:>8.1f} {r['nq1_qps_1thread']:>9,.0f} "
              f"{r['nq1_p50_ms']:>7.2f} {r[f'nq1_qps_{args.threads}threads']:>12,.0f} {r['nq100_qps']:>10,.0f} "
              f"{r['recall_at_10']:>7.3f}")
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

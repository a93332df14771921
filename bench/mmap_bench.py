"""mmap on vs off: resident memory of a vecdb server and the search QPS ratio.

    python -m bench.mmap_bench [--rows 200000] [--dim 128] [--index IVF_FLAT]

For each setting, a fresh vecdb standalone server (its own process) gets the
same collection (``mmap.enabled`` true or false), the data is flushed and
indexed, the server is restarted so the sealed segments and index files are
loaded from disk (mapped or read), and then:
- RSS after load and after the searches (VmRSS, split into RssAnon: memory of
  its own, and RssFile: mapped file pages, which the kernel can drop and re-read
  under memory pressure) and peak (VmHWM) of the server process,
- QPS at nq=1 from one client thread, recall@10 against exact ground truth.
Everything goes through pymilvus.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from pymilvus import DataType, MilvusClient


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data_dir: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "vecdb", "--log-level", "WARNING", "standalone",
                             "--data-dir", data_dir, "--port", str(port), "--http-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if "ready" in line:
            return proc
    raise RuntimeError("server did not start")


def _mem(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) / 1024
    return out


def _wait_indexed(client: MilvusClient, name: str, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.describe_index(name, "vec")
        if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) == info.get("total_rows", -1):
            return
        time.sleep(0.5)
    raise TimeoutError("index build did not finish")


def run_one(mmap: bool, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, index: str,
            params: dict, search: dict, seconds: float) -> dict:
    data_dir = tempfile.mkdtemp(prefix=f"vecdb-mmap-{mmap}-")
    port = _free_port()
    proc = _start(data_dir, port)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=base.shape[1])
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type=index, metric_type="L2", params=params)
        client.create_collection("m", schema=schema, index_params=idx,
                                 properties={"mmap.enabled": "true" if mmap else "false"})
        for s in range(0, len(base), 5000):
            client.insert("m", [{"id": i, "vec": base[i]} for i in range(s, min(s + 5000, len(base)))])
        client.flush("m")
        _wait_indexed(client, "m")
        client.close()
    finally:
        proc.terminate()
        proc.wait()
    proc = _start(data_dir, port)  # reload from files: mapped or read
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        _wait_indexed(client, "m")
        after_load = _mem(proc.pid)
        hits = client.search("m", data=queries.tolist(), limit=10, search_params={"params": search})
        recall = np.mean([len({h["id"] for h in r} & set(truth[i].tolist())) / 10 for i, r in enumerate(hits)])
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            client.search("m", data=[queries[n % len(queries)].tolist()], limit=10, search_params={"params": search})
            n += 1
        qps = n / (time.perf_counter() - t0)
        mem = _mem(proc.pid)
        client.close()
        return {"mmap": mmap, "rss_after_load_mib": round(after_load["VmRSS"], 1),
                "anon_after_load_mib": round(after_load["RssAnon"], 1),
                "file_after_load_mib": round(after_load["RssFile"], 1),
                "rss_after_search_mib": round(mem["VmRSS"], 1),
                "anon_after_search_mib": round(mem["RssAnon"], 1), "peak_rss_mib": round(mem["VmHWM"], 1),
                "qps_nq1": round(qps, 1), "recall@10": round(float(recall), 3)}
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--index", default="IVF_FLAT")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    centers = rng.random((64, args.dim), dtype=np.float32)
    noise = 0.1 * rng.standard_normal((args.rows, args.dim))
    base = (centers[rng.integers(0, 64, args.rows)] + noise).astype(np.float32)
    queries = base[rng.choice(args.rows, args.queries, replace=False)] + 0.01
    d = (queries ** 2).sum(1)[:, None] - 2 * queries @ base.T + (base ** 2).sum(1)[None, :]
    truth = np.argsort(d, axis=1)[:, :10]
    params, search = ({"nlist": 1024}, {"nprobe": 32}) if args.index.startswith("IVF") else \
        ({"M": 16, "efConstruction": 200}, {"ef": 64})
    results = [run_one(m, base, queries, truth, args.index, params, search, args.seconds) for m in (False, True)]
    off, on = results
    summary = {
        "rows": args.rows, "dim": args.dim, "index": args.index, "results": results,
        "rss_ratio_on_over_off": round(on["rss_after_load_mib"] / off["rss_after_load_mib"], 3),
        "qps_ratio_on_over_off": round(on["qps_nq1"] / off["qps_nq1"], 3),
        "raw_vectors_mib": round(base.nbytes / 2**20, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()

"""``vecdb standalone --workers N``: QPS and server CPU per query at nq=1, N = 1 against N = 2 (issue 16).

Builds one HNSW collection (GloVe-50d subset, L2) on a one-process standalone, then measures each server
setting in turn, interleaved (``--rounds`` rounds of every setting), on the same data directory: a
standalone of N workers is the primary process (storage, coord, data node) plus N worker processes
(vecdb.primary), all counted. The clients are ``--clients`` processes of their own (``--threads`` threads
in all, one pymilvus connection each: the kernel spreads connections over the workers; ``--pin``: client i
on worker i % N's own port, ``proxy.worker_port``), started together behind a barrier; the server's CPU
(user + system from /proc, every process of it) is read over the loads' common window only, so it is CPU
per query whatever else shares the cores. Memory: each process's Pss (a page shared by k processes
counted 1/k in each) at the end of each load, summed.

``--profile SECONDS``: afterwards, each setting once more under the same load with py-spy on the serving
process (the one-process server, or worker 0), printing where its busy samples go (bench.profile).

    python -m bench.standalone_workers [--n 20000] [--workers 1,2] [--clients 4] [--threads 8] [--rounds 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import client  # noqa: E402
from bench.datasets import load_dataset  # noqa: E402
from bench.indexes import INDEXES  # noqa: E402
from bench.servers import REPO, SERVER_ENV, _children, _stop_pid, free_port, read_cpu_seconds  # noqa: E402


class WorkersServer:
    """``python -m vecdb standalone --workers N`` on ``data_dir``; ``cpu()``: each process's CPU seconds
    (``primary``, ``w0``, ``w1``...; with one worker, ``standalone``)."""

    def __init__(self, data_dir: str, workers: int, worker_port: int = 0):
        self.data_dir, self.workers, self.worker_port = data_dir, workers, worker_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"server-w{workers}.log")

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> WorkersServer:
        env = dict(os.environ, **SERVER_ENV)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        if self.worker_port:
            env["VECDB_PROXY__WORKER_PORT"] = str(self.worker_port)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "vecdb", "--log-level", "WARNING", "standalone",
                                      "--data-dir", self.data_dir, "--port", str(self.port), "--http-port", "0",
                                      "--workers", str(self.workers)],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=REPO)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path) as f:
                if "standalone ready on" in f.read():
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout:.0f} s: {self.tail()}")

    def tail(self, n: int = 30) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def pids(self) -> dict[str, int]:
        assert self.proc is not None
        if self.workers == 1:
            return {"standalone": self.proc.pid}
        return {"primary": self.proc.pid, **{f"w{i}": pid for i, pid in enumerate(_children(self.proc.pid))}}

    def cpu(self) -> dict[str, float | None]:
        return {name: read_cpu_seconds(pid) for name, pid in self.pids().items()}

    def memory(self) -> dict[str, dict[str, float]]:
        """Each process's resident and proportional set size in MiB (smaps_rollup: Pss counts a page
        shared by k processes as 1/k in each, so the Pss sum is the server's memory)."""
        out = {}
        for name, pid in self.pids().items():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    fields = dict(line.split()[:2] for line in f if line.startswith(("Rss:", "Pss:")))
            except OSError:
                continue
            out[name] = {k.rstrip(":").lower() + "_mib": int(v) / 1024 for k, v in fields.items()}
        return out

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc, grace=60.0)
            self._log.close()
            self.proc = None


def _load(srv: WorkersServer, args, data_dir: str, coll: str, sp: dict) -> dict:
    """``args.clients`` client processes, ``args.threads`` threads in all (``client.spread_load``); the
    server's CPU and memory read under load."""
    uris = [srv.uri if not srv.worker_port else f"http://127.0.0.1:{srv.worker_port + i % srv.workers}"
            for i in range(args.clients)]
    load, (c0, _), (c1, memory), secs = client.spread_load(
        uris, args.threads, data_dir, coll, sp, duration=args.duration, sample=lambda: (srv.cpu(), srv.memory()))
    qps = load["qps"]
    per = {k: (c1[k] - c0[k]) * 1000.0 / (qps * secs) for k in c0
           if c0.get(k) is not None and c1.get(k) is not None}
    return {"qps": qps, "recall": load["recall"],
            "server_cpu_ms_per_query": sum(per.values()), "cpu_ms_per_query": per,
            "client_cpu_ms_per_query": load["client_cpu_ms_per_query"],
            "per_client_qps": load["per_client_qps"], "memory": memory,
            "pss_mib": sum(m["pss_mib"] for m in memory.values())}


def _profile(data_dir: str, vectors_dir: str, workers: int, args, coll: str, sp: dict) -> str:
    """py-spy's summary of the serving process (worker 0 with several) under the load of ``_load``."""
    from bench.profile import format_summary, record, summarize

    srv = WorkersServer(data_dir, workers).start()
    try:
        client.isolated(client.count_latency, srv.uri, coll, reps=5)
        pid = srv.pids()["w0" if workers > 1 else "standalone"]
        raw = os.path.join(os.path.dirname(data_dir), f"profile-w{workers}.txt")
        spy = record(pid, args.profile, raw)
        time.sleep(1.0)
        _load(srv, argparse.Namespace(**{**vars(args), "duration": args.profile}), vectors_dir, coll, sp)
        spy.communicate(timeout=args.profile + 60)
        return format_summary(summarize(raw, top=25))
    finally:
        srv.stop()


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="base vectors (GloVe-50d subset)")
    ap.add_argument("--nq", type=int, default=500, help="held-out queries")
    ap.add_argument("--workers", default="1,2", help="server settings to compare, comma-separated")
    ap.add_argument("--clients", type=int, default=4, help="client processes the threads are split over")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    ap.add_argument("--rounds", type=int, default=3, help="loads measured per setting, interleaved")
    ap.add_argument("--pin", action="store_true", help="client i on worker i %% N's own port (proxy.worker_port)")
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy one serving process for SECONDS (0: no)")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    settings = [int(w) for w in args.workers.split(",")]

    spec = INDEXES["HNSW"]
    work = tempfile.mkdtemp(prefix="standalone-workers-")
    vectors_dir, data_dir = os.path.join(work, "vectors"), os.path.join(work, "data")
    load_dataset(args.n, args.nq).save(vectors_dir)
    sp = spec.search_params("L2", spec.headline)
    coll = "workers_hnsw"
    srv = WorkersServer(data_dir, 1).start()
    try:
        client.isolated(client.build, srv.uri, vectors_dir, coll, spec.milvus_index_params("L2"), 5000, 1)
    finally:
        srv.stop()
    results: dict[int, list[dict]] = {w: [] for w in settings}
    for _ in range(args.rounds):
        for w in settings:
            wport = free_port() + 1000 if args.pin and w > 1 else 0
            srv = WorkersServer(data_dir, w, wport).start()
            try:
                # warm: every worker's query node has loaded the collection (a Strong count through each)
                client.isolated(client.count_latency, srv.uri, coll, reps=5)
                r = _load(srv, args, vectors_dir, coll, sp)
            finally:
                srv.stop()
            results[w].append(r)
            print(f"workers {w}: qps {r['qps']:,.0f} recall {r['recall']:.3f} server CPU ms/query "
                  f"{r['server_cpu_ms_per_query']:.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                      r["cpu_ms_per_query"].items())
                  + f") client {r['client_cpu_ms_per_query']:.3f}, per client qps "
                  + ", ".join(f"{q:,.0f}" for q in r["per_client_qps"])
                  + f"; memory (Pss) {r['pss_mib']:.0f} MiB (" + ", ".join(
                      f"{k} {m['pss_mib']:.0f}" for k, m in r["memory"].items()) + ")", flush=True)
    profiles = {}
    for w in settings if args.profile else []:
        profiles[w] = _profile(data_dir, vectors_dir, w, args, coll, sp)
        print(f"--- workers {w}: {'worker 0' if w > 1 else 'the server'} under load\n" + profiles[w], flush=True)
    summary = {}
    for w, rs in results.items():
        summary[w] = {key: _median([r[key] for r in rs])
                      for key in ("qps", "server_cpu_ms_per_query", "recall", "pss_mib")}
        print(f"median workers {w}: qps {summary[w]['qps']:,.0f}, server CPU ms/query "
              f"{summary[w]['server_cpu_ms_per_query']:.3f}, recall {summary[w]['recall']:.3f}, "
              f"memory (Pss) {summary[w]['pss_mib']:.0f} MiB")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "cpus": os.cpu_count(), "results": results, "median": summary,
                       "profiles": profiles}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

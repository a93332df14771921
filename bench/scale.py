"""Scale benchmark (issue 16): vecdb next to Milvus 2.3.5 at 400k GloVe and 1M x 128.

    python -m bench.scale --dataset glove --n 50000                  # validation, ~5 min
    python -m bench.scale --dataset glove --n 400000 --out bench/results/DATE-scale-glove400k.json
    python -m bench.scale --dataset clustered --n 1000000 --out bench/results/DATE-scale-1m.json
    python -m bench.scale --render bench/results/A.json [B.json ...]   # the markdown tables

Per index type (HNSW M=16 efConstruction=200 ef=64; IVF_FLAT nlist=1024 nprobe=16) and
system (``vecdb``: standalone; ``vecdb-mmap``: the same with the collection property
``mmap.enabled=true``; ``milvus``: Milvus 2.3.5 standalone from PyPI), each a fresh server:

- insert rows/s (bench.client.build: 5,000-row batches of row dicts, time inside insert);
- index build: create_index (pymilvus waits for state Finished) -> loaded (100%) -> every row
  counted as indexed by DescribeIndex: ``index_s + load_s + index_wait_s`` of bench.client.build;
- time to searchable: insert start -> flush, index built, loaded -> the first search answered;
- peak RSS of the server's whole process tree: the summed VmRSS of the server and every
  descendant (Milvus's ``milvus run standalone`` and anything it starts; vecdb's workers, if
  any), sampled every 0.2 s from /proc for the server's whole life; also the sum of each
  process's VmHWM (an upper bound: the processes peak at different times) and the RSS after
  start (before any data);
- QPS and recall@10 at nq=1 with 8 client threads and at nq=100 with 2 (bench.client.search_load,
  every load in a client process of its own), with the server's CPU per query;
- the 1-minute load average before and after each row and its mean over the row (2 shared cores).

A 10M-row projection (an estimate, labelled so) comes from each row's measured memory per row
((peak - RSS after start) / n) and build time per row; HNSW construction grows as n log n, so
the linear build projection is multiplied by log(10M)/log(n) as well.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS/OpenMP anywhere (see bench/run.py)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench import client  # noqa: E402
from bench.datasets import clustered_1m, glove_all  # noqa: E402
from bench.indexes import INDEXES  # noqa: E402
from bench.run import _interrupt_on_sigterm, _measured_load, _short_error, machine_meta, say  # noqa: E402
from bench.servers import SERVERS, read_cpu_seconds  # noqa: E402

SYSTEMS = {"vecdb": ("vecdb", None), "vecdb-mmap": ("vecdb", {"mmap.enabled": "true"}),
           "milvus": ("milvus", None)}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_ROWS = 10_000_000


def _status_kib(pid: int, keys: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in keys:
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (every thread's children lists, /proc)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants."""
    return sum(read_cpu_seconds(pid) or 0.0 for pid in process_tree(root))


class TreeSampler(threading.Thread):
    """Samples a process tree's summed VmRSS and RssAnon every ``period`` seconds, and the load
    average; ``mark()`` reads the peaks so far (a phase's), ``stop()`` ends the sampling."""

    def __init__(self, root: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.period = root, period
        self.peak_kib = self.peak_anon_kib = 0
        self.pids: set[int] = set()
        self.hwm_kib: dict[int, int] = {}  # each process's last-seen VmHWM (a process may exit early)
        self.load: list[float] = []
        self._halt = threading.Event()

    def sample(self) -> tuple[int, int]:
        rss = anon = 0
        for pid in process_tree(self.root):
            st = _status_kib(pid, ("VmRSS", "RssAnon", "VmHWM"))
            rss += st.get("VmRSS", 0)
            anon += st.get("RssAnon", 0)
            if "VmHWM" in st:
                self.hwm_kib[pid] = st["VmHWM"]
                self.pids.add(pid)
        self.peak_kib = max(self.peak_kib, rss)
        self.peak_anon_kib = max(self.peak_anon_kib, anon)
        return rss, anon

    def run(self) -> None:
        last_load = 0.0
        while not self._halt.is_set():
            self.sample()
            if time.time() - last_load >= 1.0:
                self.load.append(os.getloadavg()[0])
                last_load = time.time()
            self._halt.wait(self.period)

    def mark(self) -> dict:
        return {"peak_rss_mb": self.peak_kib / 1024, "peak_anon_mb": self.peak_anon_kib / 1024,
                "sum_vmhwm_mb": sum(self.hwm_kib.values()) / 1024, "processes": len(self.pids)}

    def stop(self) -> dict:
        self._halt.set()
        self.join(5)
        self.sample()
        return self.mark()


def build_and_first_search(uri: str, data_dir: str, collection: str, index_params: dict, search_params: dict,
                           batch: int, properties: dict | None) -> dict:
    """bench.client.build, then one nq=1 search at once: time to searchable = build_s + that search."""
    b = client.build(uri, data_dir, collection, index_params, batch, 1, properties)
    q = np.load(os.path.join(data_dir, "queries.npy"))[:1]
    c = client._client(uri)
    t = time.perf_counter()
    hits = c.search(collection, data=q, limit=10, search_params=search_params, anns_field=client.VEC)
    b["first_search_s"] = time.perf_counter() - t
    c.close()
    if len(hits[0]) != 10:
        raise RuntimeError(f"first search answered {len(hits[0])} hits, not 10")
    b["searchable_s"] = b["build_s"] + b["first_search_s"]
    b["index_build_s"] = b["index_s"] + b["load_s"] + b["index_wait_s"]
    return b


def projection(res: dict, n: int, index_type: str) -> dict:
    """10M rows from this row's measurements (an estimate: linear per-row memory; build per row,
    times log(10M)/log(n) for HNSW's n log n)."""
    mem = res["rss"]
    per_row = (mem["peak_rss_mb"] - res["rss_after_start_mb"]) * 2**20 / n
    grow = PROJECT_ROWS / n
    build_factor = grow * (math.log(PROJECT_ROWS) / math.log(n) if index_type == "HNSW" else 1.0)
    return {"bytes_per_row": per_row,
            "peak_rss_gib": (res["rss_after_start_mb"] * 2**20 + per_row * PROJECT_ROWS) / 2**30,
            "index_build_s": res["build"]["index_build_s"] * build_factor,
            "searchable_s": res["build"]["insert_s"] * grow + (res["build"]["searchable_s"]
                                                               - res["build"]["insert_s"]) * build_factor}


def _start(kind: str, tries: int = 3):
    """A started server of ``kind``; a start that fails (Milvus's bind check on a port another
    process took since it was picked: "set index_coord_port=..., but bind failed") is retried on
    fresh ports."""
    for attempt in range(tries):
        srv = SERVERS[kind]()
        try:
            return srv.start()
        except Exception as e:
            srv.stop()
            if attempt == tries - 1:
                raise
            say(f"{kind} did not start ({_short_error(e)}); again on fresh ports")
    raise AssertionError("unreachable")


def run_row(system: str, spec, args, data_dir: str, n: int) -> dict:
    kind, props = SYSTEMS[system]
    res: dict = {"system": system, "index": spec.name, "error": None, "runs": {}}
    srv = None
    coll = f"scale_{spec.name.lower()}"
    sp = spec.search_params("L2", spec.headline)
    sampler = None
    load0 = os.getloadavg()[0]
    try:
        srv = _start(kind)
        sampler = TreeSampler(srv.pid)
        time.sleep(1.0)
        res["rss_after_start_mb"] = sampler.sample()[0] / 1024
        sampler.start()
        say(f"{system} up on {srv.uri} (pid {srv.pid}), RSS after start {res['rss_after_start_mb']:.0f} MiB")
        cpu0 = tree_cpu_seconds(srv.pid)
        b = client.isolated(build_and_first_search, srv.uri, data_dir, coll, spec.milvus_index_params("L2"), sp,
                            args.batch, props, timeout=args.build_timeout)
        b["server_cpu_s"] = tree_cpu_seconds(srv.pid) - cpu0  # insert start -> searchable, less shared-core noise
        res["build"] = b
        res["rss_build"] = sampler.mark()
        say(f"{system} {spec.name}: insert {b['insert_s']:.1f} s ({b['insert_rows_s']:,.0f} rows/s), flush "
            f"{b['flush_s']:.1f}, index build {b['index_build_s']:.1f} (create_index {b['index_s']:.1f} + load "
            f"{b['load_s']:.1f} + wait {b['index_wait_s']:.1f}), searchable {b['searchable_s']:.1f} s, server CPU "
            f"{b['server_cpu_s']:.1f} s; "
            f"peak RSS so far {res['rss_build']['peak_rss_mb']:.0f} MiB")
        loads = {"duration": args.duration, "warmup": args.warmup}
        target = (srv.uri, data_dir, coll)
        for key, threads, nq in (("nq1_t8", args.threads, 1), (f"nq{args.big_nq}", args.big_threads, args.big_nq)):
            run = _measured_load(srv, target, sp, threads=threads, nq=nq, **loads)
            res["runs"][key] = run
            say(f"  {key}: {run['qps']:,.0f} q/s, recall {run['recall']:.3f}, p50 {run['p50_ms']:.2f} ms, "
                f"server CPU {run.get('server_cpu_ms_per_query', float('nan')):.3f} ms/q")
        for value in args.sweep if spec.search_key else []:  # other ef/nprobe: recall against QPS
            run = _measured_load(srv, target, spec.search_params("L2", value), threads=args.threads, nq=1, **loads)
            res["runs"][f"nq1_t8_{spec.search_key}{value}"] = run
            say(f"  nq1_t8 {spec.search_key}={value}: {run['qps']:,.0f} q/s, recall {run['recall']:.3f}, "
                f"server CPU {run.get('server_cpu_ms_per_query', float('nan')):.3f} ms/q")
    except Exception as e:  # one system failing must not lose the others' numbers
        res["error"] = _short_error(e)
        res["error_detail"] = f"{type(e).__name__}: {e}\n--- server log tail ---\n{srv.tail() if srv else ''}"
        say(f"{system} {spec.name} FAILED: {res['error_detail']}")
    finally:
        if sampler is not None and sampler.is_alive():
            res["rss"] = sampler.stop()
            res["loadavg_mean"] = float(np.mean(sampler.load)) if sampler.load else None
        if srv is not None:
            srv.stop()
    res["loadavg"] = [load0, os.getloadavg()[0]]
    if res.get("rss") and res.get("build") and not res["error"]:
        res["projection_10m"] = projection(res, n, spec.name)
        say(f"  peak RSS {res['rss']['peak_rss_mb']:.0f} MiB over {res['rss']['processes']} process(es) "
            f"(sum of VmHWM {res['rss']['sum_vmhwm_mb']:.0f}); 10M estimate "
            f"{res['projection_10m']['peak_rss_gib']:.1f} GiB, build {res['projection_10m']['index_build_s']:.0f} s")
    return res


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- rendering ---------------------------------------------------------------------------------

def _f(v, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(doc: dict) -> str:
    """The tables of one results file: one row per index type and system, then the projection."""
    m = doc["meta"]
    big = f"nq{m['big_nq']}"
    head = (f"**{m['dataset']}, {m['n']:,} x {m['dim']}** ({m['nq']:,} held-out queries, exact L2 top-10; "
            f"started {m['started']}, vecdb at {m['git_head']})\n\n"
            "| index | system | insert rows/s | index build s | searchable s | server CPU s to searchable | "
            "peak RSS MiB (tree) | "
            "of it anon | sum VmHWM | recall nq=1 | QPS nq=1 8t | server CPU ms/q | "
            f"q/s nq={m['big_nq']} | recall nq={m['big_nq']} | load avg before/mean/after |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows, proj = [], []
    for r in doc["results"]:
        label = INDEXES[r["index"]]
        knob = f"{r['index']} {label.search_key}={label.headline}"
        la = r.get("loadavg") or [None, None]
        load = f"{_f(la[0], '{:.1f}')} / {_f(r.get('loadavg_mean'), '{:.1f}')} / {_f(la[1], '{:.1f}')}"
        if r.get("error"):
            rows.append(f"| {knob} | {r['system']} | failed: {r['error'][:120]} ||||||||||||| {load} |")
            continue
        b, mem, n1, nb = r["build"], r["rss"], r["runs"].get("nq1_t8", {}), r["runs"].get(big, {})
        rows.append(f"| {knob} | {r['system']} | {_f(b['insert_rows_s'])} | {_f(b['index_build_s'], '{:.1f}')} | "
                    f"{_f(b['searchable_s'], '{:.1f}')} | {_f(b.get('server_cpu_s'), '{:.0f}')} | "
                    f"{_f(mem['peak_rss_mb'])} | {_f(mem['peak_anon_mb'])} | "
                    f"{_f(mem['sum_vmhwm_mb'])} | {_f(n1.get('recall'), '{:.3f}')} | {_f(n1.get('qps'))} | "
                    f"{_f(n1.get('server_cpu_ms_per_query'), '{:.3f}')} | {_f(nb.get('qps'))} | "
                    f"{_f(nb.get('recall'), '{:.3f}')} | {load} |")
        p = r["projection_10m"]
        proj.append(f"| {knob} | {r['system']} | {_f(p['bytes_per_row'])} | {_f(p['peak_rss_gib'], '{:.1f}')} | "
                    f"{_f(p['index_build_s'] / 60, '{:.0f}')} | {_f(p['searchable_s'] / 60, '{:.0f}')} |")
    out = head + "\n".join(rows)
    sweep = [f"| {r['index']} | {r['system']} | {k[len('nq1_t8_'):]} | {_f(v.get('recall'), '{:.3f}')} | "
             f"{_f(v.get('qps'))} | {_f(v.get('server_cpu_ms_per_query'), '{:.3f}')} |"
             for r in doc["results"] if not r.get("error") for k, v in r["runs"].items() if k.startswith("nq1_t8_")]
    if sweep:
        out += ("\n\nOther search parameters, nq=1 with 8 client threads:\n\n"
                "| index | system | parameter | recall@10 | QPS | server CPU ms/q |\n|---|---|---|---|---|---|\n"
                + "\n".join(sweep))
    if proj:
        out += ("\n\n10M-row projection (**an estimate**, not measured: per-row memory from (peak - RSS after "
                "start) / n; build times scaled by 10M/n, times log(10M)/log(n) for HNSW):\n\n"
                "| index | system | bytes per row | est. peak RSS GiB at 10M | est. index build min | "
                "est. searchable min |\n|---|---|---|---|---|---|\n" + "\n".join(proj))
    return out + "\n"


# --- main --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[1:]))
    ap.add_argument("--dataset", choices=["glove", "clustered"], default="glove",
                    help="glove: GloVe-6B-50d (400,000 rows in all); clustered: the generated 128-d set "
                         "(bench.datasets.clustered_1m)")
    ap.add_argument("--n", type=int, default=400_000, help="base rows (glove: at most 400,000 - nq)")
    ap.add_argument("--nq", type=int, default=1000, help="held-out queries")
    ap.add_argument("--systems", default="vecdb,milvus,vecdb-mmap", help=f"comma list from {','.join(SYSTEMS)}")
    ap.add_argument("--index", default="HNSW,IVF_FLAT", help=f"comma list from {','.join(INDEXES)}")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=8, help="client threads of the nq=1 load")
    ap.add_argument("--big-nq", type=int, default=100)
    ap.add_argument("--big-threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=5000, help="rows per insert call")
    ap.add_argument("--sweep", default="", help="comma list of other ef/nprobe values: an nq=1 load each")
    ap.add_argument("--build-timeout", type=float, default=5400.0, help="seconds a system may take to build")
    ap.add_argument("--out", help="results JSON (default bench/results/<date>-scale-<dataset>-<n>.json)")
    ap.add_argument("--render", nargs="+", metavar="JSON", help="print the markdown tables of results files")
    args = ap.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.indexes = [s.strip().upper() for s in args.index.split(",") if s.strip()]
    args.sweep = [int(v) for v in args.sweep.split(",") if v.strip()]
    bad = [s for s in args.systems if s not in SYSTEMS] + [s for s in args.indexes if s not in INDEXES]
    if bad:
        ap.error(f"unknown system(s) or index type(s): {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        for path in args.render:
            with open(path) as f:
                print(markdown(json.load(f)))
        return 0
    now = datetime.datetime.now()
    say(f"data: {args.dataset}, {args.n:,} rows + {args.nq:,} queries (cached under bench/.cache)")
    if args.dataset == "glove":
        data_dir, n = glove_all(args.n, args.nq)
    else:
        data_dir, n = clustered_1m(args.n, args.nq), args.n
    with open(os.path.join(data_dir, "meta.txt")) as f:
        name = f.read().split()[0]
    dim = int(np.load(os.path.join(data_dir, "queries.npy"), mmap_mode="r").shape[1])
    say(f"data ready: {data_dir} ({name}, {n:,} x {dim})")
    meta = dict(machine_meta(), started=now.isoformat(timespec="seconds"), git_head=_git_head(),
                dataset=name, n=n, n_asked=args.n, nq=args.nq, dim=dim, systems=args.systems,
                indexes=args.indexes, duration=args.duration, warmup=args.warmup, threads=args.threads,
                big_nq=args.big_nq, big_threads=args.big_threads, batch=args.batch,
                index_specs={i: {"build_params": INDEXES[i].build_params, "search_key": INDEXES[i].search_key,
                                 "headline": INDEXES[i].headline} for i in args.indexes})
    out = args.out or os.path.join(REPO, "bench", "results", f"{now:%Y-%m-%d}-scale-{args.dataset}-{n}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    doc = {"meta": meta, "results": []}
    for index in args.indexes:
        for system in args.systems:
            say(f"--- {system} / {index}; load average {os.getloadavg()[0]:.2f} ---")
            doc["results"].append(run_row(system, INDEXES[index], args, data_dir, n))
            with open(out, "w") as f:  # after every row: a late failure keeps the rows measured
                json.dump(doc, f, indent=1)
    print(markdown(doc), flush=True)
    say(f"results: {out}")
    return 0


if __name__ == "__main__":
    _interrupt_on_sigterm()
    sys.exit(main())

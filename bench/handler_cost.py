"""Per-call CPU of the Search handler itself, vecdb vs the bare servicer, no gRPC.

Both servers are loaded through pymilvus as in the benchmark (vecdb standalone
in this process, the bare servicer on a local gRPC port), then the same
``SearchRequest`` objects (built by pymilvus's own ``Prepare``) are passed
straight to each servicer's ``Search`` method in one thread. What is left is
the handler's own cost: request parsing, validation, the search, the result
message; no transport, no thread pool, no GIL contention. The cProfile table
ranks vecdb's functions by their own time (``--top``) with file:line, which is
where to look when the nq=1 QPS targets fail.

    python -m bench.handler_cost [--n 100000] [--index HNSW] [--calls 1000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from concurrent import futures


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


def _cost(fn, reqs, warm: int = 200, threads: int = 1) -> float:
    """Process CPU ms per call, ``threads`` threads sharing the calls (all threads' CPU counts)."""
    for r in reqs[:warm]:
        fn(r)

    def run(part):
        for r in part:
            fn(r)

    c = time.process_time()
    if threads == 1:
        run(reqs)
    else:
        with futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, [reqs[i::threads] for i in range(threads)]))
    return (time.process_time() - c) * 1000.0 / len(reqs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.handler_cost", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="base vectors (GloVe-50d or synthetic)")
    ap.add_argument("--calls", type=int, default=1000, help="nq=1 Search calls per measurement")
    ap.add_argument("--index", default="HNSW", help="index type (default HNSW)")
    ap.add_argument("--knob", type=int, default=None, help="ef / nprobe (default: the headline value)")
    ap.add_argument("--top", type=int, default=25, help="rows of the cProfile table")
    ap.add_argument("--threads", type=int, default=1, help="threads calling the handler at once")
    args = ap.parse_args(argv)

    import grpc
    from pymilvus.client.prepare import Prepare
    from pymilvus.grpc_gen import milvus_pb2_grpc

    from bench import client as bench_client
    from bench.bare_server import BareServicer
    from bench.datasets import load_dataset
    from bench.indexes import INDEXES
    from vecdb.config import Settings
    from vecdb.proxy.milvus_service import MilvusService
    from vecdb.standalone import Standalone

    ds = load_dataset(args.n, max(args.calls, 200))
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
        reqs = []
        for i in range(args.calls):
            r = Prepare.search_requests_with_expr("bench", "vec", dict(sp), 10, data=ds.queries[i:i + 1])
            reqs.append(r[0] if isinstance(r, list) else r)
        ctx = _Context()
        handlers = {"vecdb": lambda r: vecdb.Search(r, ctx), "bare": lambda r: bare.Search(r, ctx)}
        for name, fn in handlers.items():
            res = fn(reqs[0])
            if res.status.code != 0:
                raise RuntimeError(f"{name} Search failed: {res.status.reason}")
        costs = {name: _cost(fn, reqs, threads=args.threads) for name, fn in handlers.items()}
        print(f"{ds.name} {args.n:,} x {ds.dim}, {spec.name} {spec.search_key}={knob}, nq=1, "
              f"{args.threads} thread(s), no gRPC:")
        for name, ms in costs.items():
            print(f"  {name:6} Search handler: {ms * 1000:6.1f} us CPU per call")
        prof = cProfile.Profile()
        prof.enable()
        for r in reqs:
            handlers["vecdb"](r)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print("\nvecdb Search under cProfile (its overhead inflates every Python call), by own time:")
        print(out.getvalue().split("\n\n", 1)[-1].rstrip())
    finally:
        bare_server.stop(0)
        node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

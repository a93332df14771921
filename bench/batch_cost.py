"""Server CPU per batch Search request over real gRPC: vecdb standalone next to the bare servicer.

Both servers run as their own processes (``bench.servers``) with the same data and index
(``bench.client.build``). The client sends prebuilt ``SearchRequest`` messages (pymilvus's own
``Prepare``, ``--nq`` queries each) on a raw gRPC stub, so it costs little CPU of the 2 cores
it shares with the server, from 1 and from 2 threads; rounds interleave the systems. Printed:
server-process CPU ms per request (user + system from /proc: what the server spent, transport
included, whatever else loads the machine) and wall ms per request. Where
``python -m bench.handler_cost --nq 100`` shows the handler without gRPC, this adds the transport.

    python -m bench.batch_cost [--n 100000] [--nq 100] [--calls 300] [--rounds 3] [--systems vecdb,bare]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.batch_cost", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="base vectors (GloVe-50d or synthetic)")
    ap.add_argument("--nq", type=int, default=100, help="queries per Search request")
    ap.add_argument("--calls", type=int, default=300, help="requests per load")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians printed)")
    ap.add_argument("--index", default="HNSW", help="index type (default HNSW)")
    ap.add_argument("--knob", type=int, default=None, help="ef / nprobe (default: the headline value)")
    ap.add_argument("--systems", default="vecdb,bare", help="vecdb and/or bare")
    args = ap.parse_args(argv)

    import grpc
    from pymilvus.client.prepare import Prepare
    from pymilvus.grpc_gen import milvus_pb2_grpc

    from bench import client as bench_client
    from bench.datasets import load_dataset
    from bench.indexes import INDEXES
    from bench.servers import BareServer, VecdbServer

    ds = load_dataset(args.n, max(1000, args.nq))
    data = tempfile.mkdtemp(prefix="batch-cost-")
    ds.save(data)
    spec = INDEXES[args.index.upper()]
    knob = spec.headline if args.knob is None else args.knob
    sp = spec.search_params(ds.metric, knob)
    reqs = []
    for i in range(len(ds.queries) // args.nq):
        r = Prepare.search_requests_with_expr("bench", "vec", dict(sp), 10,
                                              data=ds.queries[i * args.nq:(i + 1) * args.nq])
        reqs.append(r[0] if isinstance(r, list) else r)
    makers = {"vecdb": VecdbServer, "bare": BareServer}
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    servers = {}
    try:
        for name in names:
            servers[name] = makers[name]().start()
            bench_client.build(servers[name].uri, data, "bench", spec.milvus_index_params(ds.metric))
        stubs = {name: milvus_pb2_grpc.MilvusServiceStub(grpc.insecure_channel(f"127.0.0.1:{s.port}"))
                 for name, s in servers.items()}

        def load(name: str, threads: int, calls: int) -> tuple[float, float]:
            stub, server = stubs[name], servers[name]

            def run(first: int) -> None:
                for j in range(first, calls, threads):
                    res = stub.Search(reqs[j % len(reqs)])
                    if res.status.code != 0:
                        raise RuntimeError(f"{name} Search failed: {res.status.reason}")

            pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
            cpu, wall = server.cpu_seconds(), time.perf_counter()
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            wall, cpu = time.perf_counter() - wall, server.cpu_seconds() - cpu
            return cpu * 1000.0 / calls, wall * 1000.0 / calls

        for name in names:
            load(name, 1, 50)  # warm-up
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for threads in (1, 2):
                for name in names:
                    results.setdefault((name, threads), []).append(load(name, threads, args.calls))
        print(f"{ds.name} {args.n:,} x {ds.dim}, {spec.name} {spec.search_key}={knob}, nq={args.nq}, "
              f"over gRPC, {args.rounds} interleaved rounds of {args.calls} requests:")
        for (name, threads), runs in results.items():
            cpus = [c for c, _ in runs]
            print(f"  {name:6} {threads} client thread(s): server CPU {statistics.median(cpus):6.2f} ms per request "
                  f"(rounds {' '.join(f'{c:.2f}' for c in cpus)}), "
                  f"wall {statistics.median(w for _, w in runs):6.2f} ms per request")
    finally:
        for server in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU per query of each cluster process at nq=1 (where the cluster's read cost goes).

Starts ``VecdbCluster`` (coord, query nodes, one proxy on NATS, etcd and S3 on loopback), builds
an HNSW collection on a GloVe subset (``replica_number`` = query nodes, as bench.run does), then
runs ``--rounds`` nq=1 loads of ``--threads`` pymilvus threads and prints each process's CPU
milliseconds per query (user + system from /proc, so a shared machine's other load does not
count), with the client's own. CPU per query, unlike QPS, holds still when other processes share
the cores. ``--profile SECONDS`` also py-spies the proxy and the first query node under one more
load and prints where their time goes (bench.profile).

``--workers N`` runs the proxy as N worker processes (``vecdb proxy --workers``; each counted as
``proxy.w<i>``, ``proxy`` being their parent) and ``--clients C`` splits the threads over C client
processes (one pymilvus connection each: the kernel spreads connections, not calls, over the
workers), started together; the CPU is then read over the loads' common window only. ``--pin``:
client i connects to worker i % N's own port (``--worker-port``) instead of the shared one, so the
connections are spread evenly (the kernel's hash may put most of a few on one worker).

    python -m bench.cluster_cost [--n 20000] [--rounds 3] [--duration 5] [--profile 10]
    python -m bench.cluster_cost --workers 2 --clients 4 --threads 8 [--pin]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import client  # noqa: E402
from bench.datasets import load_dataset  # noqa: E402
from bench.indexes import INDEXES  # noqa: E402
from bench.profile import format_summary, record, summarize  # noqa: E402
from bench.servers import VecdbCluster, free_port  # noqa: E402

METRIC = "L2"


def cost_args(description: str, rounds: str) -> argparse.ArgumentParser:
    """The flags of this module and bench.node_cost: the data set and the nq=1 loads (``rounds``: the
    help of --rounds)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--n", type=int, default=20000, help="base vectors (GloVe-50d subset)")
    ap.add_argument("--nq", type=int, default=500, help="held-out queries")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    ap.add_argument("--rounds", type=int, default=3, help=rounds)
    return ap


def hnsw_data(args, prefix: str):
    """The HNSW spec, a fresh data directory holding --n base vectors and --nq queries, and the search
    params at bench.run's headline ef."""
    spec = INDEXES["HNSW"]
    data_dir = tempfile.mkdtemp(prefix=prefix)
    load_dataset(args.n, args.nq).save(data_dir)
    return spec, data_dir, spec.search_params(METRIC, spec.headline)


def cpu_per_query(b0: dict, b1: dict, seen: int) -> dict[str, float]:
    """Each process's CPU milliseconds per query between two ``cpu_breakdown`` samples."""
    return {k: (b1[k] - b0[k]) * 1000.0 / seen for k in b0 if b0.get(k) is not None and b1.get(k) is not None}


def measured_load(srv, args, data_dir: str, coll: str, sp) -> tuple[dict, dict[str, float]]:
    """One nq=1 load of --threads pymilvus threads on ``srv`` for --duration seconds, and each of its
    processes' CPU ms per query over it (warm-up included)."""
    b0 = srv.cpu_breakdown()
    load = client.isolated(client.search_load, srv.uri, data_dir, coll, sp, threads=args.threads, nq=1,
                           duration=args.duration, warmup=0.5, timeout=args.duration + 300)
    b1 = srv.cpu_breakdown()
    return load, cpu_per_query(b0, b1, load["requests"] + load["warmup_requests"])


def main(argv=None) -> int:
    ap = cost_args(__doc__.split("\n")[0], rounds="loads measured")
    ap.add_argument("--querynodes", type=int, default=2)
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy proxy and qn0 for SECONDS (0: no)")
    ap.add_argument("--workers", type=int, default=1, help="proxy worker processes (vecdb proxy --workers)")
    ap.add_argument("--clients", type=int, default=1, help="client processes the threads are split over")
    ap.add_argument("--pin", action="store_true", help="client i on worker i %% N's own port (--worker-port)")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args(argv)

    spec, data_dir, sp = hnsw_data(args, "cluster-cost-data-")
    coll = "cost_hnsw"
    rounds = []
    worker_port = free_port() + 1000 if args.pin and args.workers > 1 else 0
    with VecdbCluster(querynodes=args.querynodes, proxy_workers=args.workers, worker_port=worker_port) as srv:
        client.isolated(client.build, srv.uri, data_dir, coll, spec.milvus_index_params(METRIC), 5000,
                        srv.replicas)
        for _ in range(args.rounds):
            if args.clients == 1:
                load, per = measured_load(srv, args, data_dir, coll, sp)
            else:
                uris = [srv.uri if not srv.worker_port else f"http://127.0.0.1:{srv.worker_port + i % args.workers}"
                        for i in range(args.clients)]
                load, b0, b1, _ = client.spread_load(uris, args.threads, data_dir, coll, sp, duration=args.duration,
                                                     sample=srv.cpu_breakdown)
                per = cpu_per_query(b0, b1, load["requests"])
            if args.workers > 1:
                per["proxy+workers"] = sum(v for k, v in per.items() if k.startswith("proxy"))
            per["client"] = load["client_cpu_ms_per_query"]
            qns = sum(v for k, v in per.items() if k.startswith("qn"))
            rounds.append({"qps": load["qps"], "recall": load["recall"], "cpu_ms_per_query": per,
                           "query_nodes_ms": qns})
            print(f"qps {load['qps']:,.0f} recall {load['recall']:.3f}  CPU ms/query: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in per.items()) + f"  (query nodes together {qns:.3f})",
                  flush=True)
        if args.profile:
            pids = {name: pid for name, pid in srv.vecdb_pids().items() if name in ("proxy", "qn0")}
            raws = {name: os.path.join(data_dir, f"{name}.txt") for name in pids}
            spies = {name: record(pid, args.profile, raws[name]) for name, pid in pids.items()}
            time.sleep(1.0)
            client.isolated(client.search_load, srv.uri, data_dir, coll, sp, threads=args.threads, nq=1,
                            duration=args.profile, warmup=0.5, timeout=args.profile + 300)
            for name, spy in spies.items():
                spy.communicate(timeout=args.profile + 60)
                print(f"--- {name} under load\n" + format_summary(summarize(raws[name], top=25)), flush=True)
    keys = rounds[0]["cpu_ms_per_query"].keys() if rounds else []
    median = {k: sorted(r["cpu_ms_per_query"][k] for r in rounds)[len(rounds) // 2] for k in keys}
    print("median CPU ms/query: " + ", ".join(f"{k} {v:.3f}" for k, v in median.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rounds": rounds, "median": median}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""nq=1 QPS and server CPU per query through a ``vecdb node`` (proxy and query node in one process,
reads in-process) against a separate ``vecdb proxy`` + ``vecdb querynode`` (reads over internal RPC).

Both clusters run at once, each on NATS, etcd and S3 servers of its own, each with a coord: "split"
is ``bench.servers.VecdbCluster`` with one query node and one proxy, "node" one ``vecdb node`` on a
coord with ``querynode.replica_per_node``. Each gets the same HNSW collection (GloVe-50d subset,
bench.run's headline ef); then ``--rounds`` rounds, each an nq=1 load of ``--threads`` pymilvus
threads on one and then on the other (interleaved, so the shared machine's drift hits both). CPU per
query: user + system of each vecdb process from /proc over the load (bench.cluster_cost's method),
"server" their sum (coord included; the backends listed apart).

``--nodes K``: the node cluster has K ``vecdb node``s (a replica each), the load going to the first.

    python -m bench.node_cost [--n 20000] [--rounds 3] [--duration 5] [--threads 8] [--nodes K] [--out FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import time  # noqa: E402

from bench import client  # noqa: E402
from bench.cluster_cost import METRIC, cost_args, hnsw_data, measured_load  # noqa: E402
from bench.servers import REPO, SERVER_ENV, VecdbCluster  # noqa: E402

BACKENDS = ("nats", "etcd", "s3")


class VecdbNodeCluster(VecdbCluster):
    """A coord (``querynode.replica_per_node``) and one ``vecdb node`` (named "proxy": the process the
    client talks to), on backends of its own."""

    name = "vecdb-node"

    def __init__(self, workdir: str | None = None, log_level: str = "WARNING", nodes: int = 1):
        super().__init__(workdir, querynodes=1, log_level=log_level)
        self.nodes = nodes  # node0 ("proxy") takes the load; the others hold replicas of their own

    def start(self, timeout: float = 120.0) -> VecdbNodeCluster:
        from vecdb.storage import servers

        deadline = time.time() + timeout
        try:
            for kind in BACKENDS:
                self.backends.append(getattr(servers, f"start_{kind}")(os.path.join(self.workdir, kind)))
            env = dict(os.environ, **SERVER_ENV, **self.storage_env(), VECDB_QUERYNODE__REPLICA_PER_NODE="true")
            env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
            self._spawn("coord", ["coord", "--port", "0"], env)
            self._wait_ready(["coord"], deadline)
            self._spawn("proxy", ["node", "--port", str(self.port), "--node-id", "node0"], env)
            for i in range(1, self.nodes):
                self._spawn(f"node{i}", ["node", "--port", "0", "--node-id", f"node{i}"], env)
            self._wait_ready(["proxy", *(f"node{i}" for i in range(1, self.nodes))], deadline)
        except BaseException:
            self.stop()
            raise
        return self


def main(argv=None) -> int:
    ap = cost_args(__doc__.split("\n")[0], rounds="loads measured on each")
    ap.add_argument("--nodes", type=int, default=1, help="vecdb nodes in the node cluster (the load goes to the "
                    "first; each holds a replica)")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args(argv)

    spec, data_dir, sp = hnsw_data(args, "node-cost-data-")
    coll = "cost_hnsw"
    results: dict[str, list[dict]] = {"split": [], "node": []}
    with VecdbCluster(querynodes=1) as split, VecdbNodeCluster(nodes=args.nodes) as node:
        servers = {"split": split, "node": node}
        for srv in servers.values():
            client.isolated(client.build, srv.uri, data_dir, coll, spec.milvus_index_params(METRIC), 5000, 1)
        for _ in range(args.rounds):
            for name, srv in servers.items():
                load, per = measured_load(srv, args, data_dir, coll, sp)
                per["server"] = sum(v for k, v in per.items() if k not in BACKENDS)
                per["client"] = load["client_cpu_ms_per_query"]
                results[name].append({"qps": load["qps"], "p50_ms": load["p50_ms"], "recall": load["recall"],
                                      "cpu_ms_per_query": per})
                print(f"{name:5s} qps {load['qps']:,.0f} p50 {load['p50_ms']:.2f} ms recall {load['recall']:.3f}  "
                      "CPU ms/query: " + ", ".join(f"{k} {v:.3f}" for k, v in per.items()), flush=True)
    summary = {}
    for name, rounds in results.items():
        keys = rounds[0]["cpu_ms_per_query"].keys()
        summary[name] = {"qps": sorted(r["qps"] for r in rounds)[len(rounds) // 2],
                         "cpu_ms_per_query": {k: sorted(r["cpu_ms_per_query"][k] for r in rounds)[len(rounds) // 2]
                                              for k in keys}}
        print(f"median {name}: qps {summary[name]['qps']:,.0f}, server CPU "
              f"{summary[name]['cpu_ms_per_query']['server']:.3f} ms/query")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "loadavg_end": os.getloadavg(), "rounds": results, "median": summary},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

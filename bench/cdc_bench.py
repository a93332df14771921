"""CDC throughput and lag (docs/benchmarks.md, "CDC").

A source standalone on NATS/etcd/S3 (started here on loopback) and a target standalone on the
embedded backends, both in this process, and one CDC task (``vecdb.cdc.replicator.Replicator``):

1. backlog: ``--backlog`` rows (dim ``--dim``, batches of ``--batch``) written to the source first,
   then the task started with ``start=earliest``: rows/s until the target has them all (the
   replication throughput, source log -> target upserts).
2. steady load: ``--rate`` rows/s inserted for ``--seconds`` while the task runs: the task's lag
   (seconds, records) sampled every 0.25 s (median, p95, max), and the time to drain after the load stops.

    .venv/bin/python bench/cdc_bench.py [--backlog 50000] [--rate 2000] [--seconds 20] [--dim 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymilvus import MilvusClient  # noqa: E402

from vecdb.cdc.replicator import Replicator  # noqa: E402
from vecdb.cdc.task import Task, TaskSpec, TaskStore, new_task_id  # noqa: E402
from vecdb.config import Settings  # noqa: E402
from vecdb.standalone import Standalone  # noqa: E402
from vecdb.storage import servers  # noqa: E402
from vecdb.storage.memory import MemoryMetaStore  # noqa: E402


def _standalone(data_dir: str, storage: dict | None = None) -> Standalone:
    s = Settings()
    s.storage.data_dir = data_dir
    for k, v in (storage or {}).items():
        setattr(s.storage, k, v)
    s.proxy.port = servers.free_port()
    s.http.port = 0
    s.compaction.enabled = False
    return Standalone(s).start()


def _count(c: MilvusClient) -> int:
    return c.query("b", filter="", output_fields=["count(*)"])[0]["count(*)"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=50_000)
    ap.add_argument("--rate", type=int, default=2_000, help="rows/s of the steady load")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cdc-bench-")
    procs = [servers.start_nats(f"{work}/nats"), servers.start_etcd(f"{work}/etcd"), servers.start_s3(f"{work}/s3")]
    nats, etcd, s3 = procs
    storage = {"log": nats.url, "meta": "etcd://" + etcd.url.split("://", 1)[1], "objects": "s3://cdc-bench",
               "namespace": "cdcbench", "s3_endpoint": s3.url, "s3_access_key": "test", "s3_secret_key": "test"}
    source = _standalone(f"{work}/src", storage)
    target = _standalone(f"{work}/dst")
    su, tu = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"
    rep = None
    out: dict = {"backlog_rows": args.backlog, "dim": args.dim, "batch": args.batch, "rate": args.rate}
    try:
        c, t = MilvusClient(uri=su), MilvusClient(uri=tu)
        c.create_collection("b", dimension=args.dim, auto_id=False, num_shards=2)
        rng = np.random.default_rng(0)
        nxt = 0

        def write(n: int) -> None:
            nonlocal nxt
            vecs = rng.random((n, args.dim), dtype=np.float32)
            c.insert("b", [{"id": nxt + i, "vector": vecs[i]} for i in range(n)])
            nxt += n

        for _ in range(args.backlog // args.batch):
            write(args.batch)
        store = TaskStore(MemoryMetaStore())
        task = Task(new_task_id(), TaskSpec(source=storage, target={"uri": tu}, start="earliest"))
        store.put(task)
        t0 = time.perf_counter()
        rep = Replicator(task, store).start()
        while not (t.has_collection("b") and rep.progress.lag_records == 0 and rep.progress.applied_rows >= nxt):
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        out["backlog_seconds"] = round(dt, 2)
        out["backlog_rows_per_s"] = round(nxt / dt)
        # steady load
        stop = threading.Event()
        lag_s: list[float] = []
        lag_r: list[int] = []

        def sample() -> None:
            while not stop.is_set():
                lag_s.append(rep.progress.lag_seconds)
                lag_r.append(rep.progress.lag_records)
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        per = max(1, args.rate // 10)
        end = time.monotonic() + args.seconds
        tick = time.monotonic()
        written0 = nxt
        while time.monotonic() < end:
            write(per)
            tick += per / args.rate
            time.sleep(max(0.0, tick - time.monotonic()))
        load_s = args.seconds
        t1 = time.perf_counter()
        while rep.progress.lag_records or rep.progress.applied_rows < nxt:
            time.sleep(0.05)
        out["drain_after_load_s"] = round(time.perf_counter() - t1, 2)
        stop.set()
        sampler.join()
        out["steady_rows_written"] = nxt - written0
        out["steady_rows_per_s_offered"] = round((nxt - written0) / load_s)
        qs = sorted(lag_s)
        out["lag_seconds_median"] = round(statistics.median(qs), 3)
        out["lag_seconds_p95"] = round(qs[int(0.95 * (len(qs) - 1))], 3)
        out["lag_seconds_max"] = round(qs[-1], 3)
        out["lag_records_max"] = max(lag_r)
        out["target_rows"] = _count(t)
        out["source_rows"] = _count(c)
    finally:
        if rep is not None:
            rep.stop()
        source.stop()
        target.stop()
        for p in procs:
            p.stop()
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

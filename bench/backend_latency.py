"""Per-call latency of the embedded backends served over loopback (``vecdb://``, issue 16's
worker processes) next to the same calls in process.

    .venv/bin/python -m bench.backend_latency [--n 2000] [--dir /tmp/x] [--ends 2x16]

A server process opens a LocalMetaStore and a WalLog in a temporary directory and serves them
(``backend_server.serve_backends``); this process calls it through ``RemoteMetaStore`` /
``RemoteLog``, then opens the same kinds of stores in process for the baseline. Prints the median
and 99th percentile of each call in microseconds: get, scan of 100 keys, put (one fsync'd journal
record), append of one 100-byte record, append_batch of 100 x 1 KB, read of 100 records, a follow
poll that finds a record waiting, and the wake-up latencies: append -> a follower blocked in poll
has it, put -> a watcher blocked in poll has it (both long polls on the server).

``--ends PxT``: then P client processes of T threads each call ``last_position`` for 4 s (what
every Strong read of a worker asks): calls per second and the server's CPU per call (concurrent
calls of one client share RPCs: ``remote._Ends``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np

_SERVER = """
import sys, time, resource
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.wal import WalLog
from vecdb.storage.backend_server import serve_backends
meta, log = LocalMetaStore(sys.argv[1] + "/meta"), WalLog(sys.argv[1] + "/wal")
server, port = serve_backends(meta, log)
print(port, flush=True)
for line in sys.stdin:  # "cpu": this process's CPU seconds so far
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(r.ru_utime + r.ru_stime, flush=True)
server.stop(0)
meta.close()
log.close()
"""


def _timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def _wake(n: int, poll, trigger) -> list[float]:
    """Seconds from ``trigger(i)`` starting to a ``poll()`` blocked in another thread returning it."""
    out: list[float] = []
    ready, got = threading.Event(), threading.Event()

    def waiter():
        for _ in range(n):
            ready.set()
            while not poll():
                pass
            got.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    for i in range(n):
        ready.wait()
        ready.clear()
        time.sleep(0.002)  # the poll is blocked on the server by now
        t0 = time.perf_counter()
        trigger(i)
        got.wait()
        out.append(time.perf_counter() - t0)
        got.clear()
    t.join()
    return out


_ENDS_CLIENT = """
import sys, threading, time
from vecdb.storage.remote import RemoteLog
log = RemoteLog(sys.argv[1])
log.last_position("ends")
counts = []
end = time.monotonic() + float(sys.argv[3])
def run():
    c = 0
    while time.monotonic() < end:
        log.last_position("ends")
        c += 1
    counts.append(c)
threads = [threading.Thread(target=run) for _ in range(int(sys.argv[2]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(counts))
"""


def ends_throughput(server: subprocess.Popen, url: str, procs: int, threads: int, seconds: float = 4.0):
    """(last_position calls per second, server CPU microseconds per call)."""
    assert server.stdin is not None and server.stdout is not None

    def cpu() -> float:
        server.stdin.write("cpu\n")
        server.stdin.flush()
        return float(server.stdout.readline())

    before = cpu()
    clients = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_ENDS_CLIENT), url, str(threads), str(seconds)],
                                stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    calls = sum(int(c.communicate()[0]) for c in clients)
    return calls / seconds, (cpu() - before) / max(calls, 1) * 1e6


def measure(meta, log, n: int) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    meta.txn(puts={f"s/{i:03d}": b"v" * 100 for i in range(100)})
    res["get"] = _timed(lambda i: meta.get("s/050"), n)
    res["scan 100 keys"] = _timed(lambda i: meta.scan("s/"), max(n // 4, 10))
    res["put (fsync)"] = _timed(lambda i: meta.put(f"p/{i % 50}", b"x" * 100), n)
    res["append 100 B (fsync)"] = _timed(lambda i: log.append("a", b"x" * 100), n)
    batch = [b"y" * 1024] * 100
    res["append_batch 100 x 1 KB"] = _timed(lambda i: log.append_batch("b", batch), max(n // 4, 10))
    res["read 100 records"] = _timed(lambda i: list(log.read("b", 1, 100)), max(n // 4, 10))
    f = log.follow("a")
    f.poll(1.0, 1 << 30)  # to the end
    log.append("a", b"waiting")

    def ready_poll(i):
        assert f.poll(1.0)
        log.append("a", b"waiting")  # not timed apart: subtract the append's median below

    res["follow poll, record waiting (+ an append)"] = _timed(ready_poll, n // 2)
    f.close()
    f = log.follow("w", log.last_position("w") + 1)
    res["wake: append -> blocked follower"] = _wake(n // 4, lambda: f.poll(5.0), lambda i: log.append("w", b"z"))
    f.close()
    w = meta.watch("wk/")
    res["wake: put -> blocked watcher"] = _wake(n // 4, lambda: w.poll(5.0), lambda i: meta.put(f"wk/{i}", b"z"))
    w.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where the stores live (default: a temporary directory)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--ends", default=None, metavar="PxT", help="also last_position from P processes x T threads")
    args = ap.parse_args(argv)
    from vecdb.storage.local_meta import LocalMetaStore
    from vecdb.storage.remote import RemoteLog, RemoteMetaStore
    from vecdb.storage.wal import WalLog

    root = args.dir or tempfile.mkdtemp(prefix="backend-latency-")
    os.makedirs(os.path.join(root, "served"), exist_ok=True)
    server = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_SERVER), os.path.join(root, "served")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"vecdb://127.0.0.1:{server.stdout.readline().strip()}"
        rmeta, rlog = RemoteMetaStore(url), RemoteLog(url)
        remote = measure(rmeta, rlog, args.n)
        rmeta.close()
        rlog.close()
        ends = None
        if args.ends:
            procs, threads = (int(x) for x in args.ends.split("x"))
            rate, cpu_us = ends_throughput(server, url, procs, threads)
            ends = {"procs": procs, "threads": threads, "calls_per_s": rate, "server_cpu_us_per_call": cpu_us}
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)
    lmeta, llog = LocalMetaStore(os.path.join(root, "inproc", "meta")), WalLog(os.path.join(root, "inproc", "wal"))
    local = measure(lmeta, llog, args.n)
    lmeta.close()
    llog.close()

    def us(xs, q):
        return float(np.percentile(np.asarray(xs) * 1e6, q))

    rows = []
    print(f"{'call':44s} {'remote p50':>11s} {'p99':>9s} {'in-process p50':>15s} {'p99':>9s}   (microseconds)")
    for name in remote:
        row = {"call": name, "remote_p50_us": us(remote[name], 50), "remote_p99_us": us(remote[name], 99),
               "local_p50_us": us(local[name], 50), "local_p99_us": us(local[name], 99), "n": len(remote[name])}
        rows.append(row)
        print(f"{name:44s} {row['remote_p50_us']:11.0f} {row['remote_p99_us']:9.0f} "
              f"{row['local_p50_us']:15.0f} {row['local_p99_us']:9.0f}")
    if ends:
        print(f"last_position from {ends['procs']} processes x {ends['threads']} threads: "
              f"{ends['calls_per_s']:.0f} calls/s, server CPU {ends['server_cpu_us_per_call']:.0f} us per call")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "rows": rows, "ends": ends, "load": os.getloadavg()}, fh, indent=1)
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

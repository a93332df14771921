"""Idle cost of RemoteLog followers: a primary-like backend server (a WalLog, N channels of one
record each) in one process, a RemoteLog with N followers (a thread each, poll(timeout=0.5) in a
loop) in another. Reports the CPU of both processes over an idle window, the server's Follow /
FollowMany calls in it, and append -> delivery latency of one channel while the others idle.

    .venv/bin/python bench/remote_follow.py [--channels 1000] [--idle 30] [--appends 50] [--hot 100]

Then a hot window: a third process appends to one channel ``--hot`` times a second for 10 s (the
other channels idle): CPU of the client and server processes and the server's calls meanwhile.
VECDB_ROOT=<dir> runs another copy of vecdb (e.g. ``git archive HEAD vecdb | tar -x -C <dir>``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.environ.get("VECDB_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def server(channels: int) -> None:
    from vecdb.storage import backend_server
    from vecdb.storage.backend_server import serve_backends
    from vecdb.storage.wal import WalLog

    counts = {"Follow": 0, "FollowMany": 0}
    lock = threading.Lock()
    for name in counts:
        real = getattr(backend_server.StorageService, name, None)
        if real is None:
            continue

        def counted(self, request, context, _real=real, _name=name):
            with lock:
                counts[_name] += 1
            return _real(self, request, context)

        setattr(backend_server.StorageService, name, counted)
    tmp = tempfile.mkdtemp(prefix="remotefollow-")
    wal = WalLog(os.path.join(tmp, "wal"))
    for i in range(channels):
        wal.append(f"ch{i}", b"first")
    srv, port = serve_backends(None, wal, secret="", tls=None)
    print(json.dumps({"port": port}), flush=True)
    for line in sys.stdin:
        if line.strip() == "counts":
            with lock:
                print(json.dumps(counts), flush=True)
        else:
            break
    srv.stop(0)
    wal.close()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


def client(port: int, channels: int, appends: int) -> None:
    from vecdb.storage.remote import RemoteLog

    url = f"vecdb://127.0.0.1:{port}"
    log = RemoteLog(url, secret="", tls=None)
    writer = RemoteLog(url, secret="", tls=None)
    stop = threading.Event()
    got: dict[int, list[tuple[float, int]]] = {}
    first = threading.Semaphore(0)
    cond = threading.Condition()

    def follow(i: int) -> None:
        f = log.follow(f"ch{i}")
        seen = False
        while not stop.is_set():
            try:
                records = f.poll(timeout=0.5)
            except Exception as e:  # noqa: BLE001
                print(json.dumps({"error": repr(e)}), file=sys.stderr, flush=True)
                time.sleep(0.5)
                continue
            if records:
                now = time.monotonic()
                if not seen:
                    seen = True
                    first.release()
                    records = records[1:]
                if records:
                    with cond:
                        got.setdefault(i, []).extend((now, p) for p, _ in records)
                        cond.notify_all()
        f.close()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(channels)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for _ in range(channels):
        first.acquire()
    print(json.dumps({"ready": round(time.monotonic() - t0, 2)}), flush=True)
    sys.stdin.readline()  # the idle window is measured by the parent meanwhile
    lat = []
    for k in range(appends):
        t = time.monotonic()
        pos = writer.append("ch0", b"x%d" % k)
        with cond:
            while not any(p == pos for _, p in got.get(0, [])):
                if not cond.wait(5):
                    break
            when = next((w for w, p in got.get(0, []) if p == pos), None)
        lat.append(None if when is None else (when - t) * 1000)
        time.sleep(0.1)
    ok = [x for x in lat if x is not None]
    # (the parent's hot window runs after this report; "stop" ends the client)
    others = sum(len(v) for i, v in got.items() if i != 0)
    print(json.dumps({"latency_ms": {"median": round(statistics.median(ok), 2),
                                     "p90": round(sorted(ok)[int(len(ok) * 0.9) - 1], 2),
                                     "max": round(max(ok), 2)},
                      "lost": len(lat) - len(ok), "records_of_other_channels": others}), flush=True)
    sys.stdin.readline()
    stop.set()
    for t in threads:
        t.join(5)
    log.close()
    writer.close()


def writer(port: int, rate: float, seconds: float) -> None:
    from vecdb.storage.remote import RemoteLog

    w = RemoteLog(f"vecdb://127.0.0.1:{port}", secret="", tls=None)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        w.append("ch0", b"hot%d" % n)
        n += 1
        time.sleep(max(t0 + n / rate - time.monotonic(), 0))
    print(json.dumps({"appended": n}), flush=True)
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", nargs="?", default="run")
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--appends", type=int, default=50)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hot", type=float, default=100.0)
    a = ap.parse_args()
    if a.role == "server":
        return server(a.channels)
    if a.role == "client":
        return client(a.port, a.channels, a.appends)
    if a.role == "writer":
        return writer(a.port, a.hot, 10.0)
    me = os.path.abspath(__file__)
    srv = subprocess.Popen([sys.executable, me, "server", "--channels", str(a.channels)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    cli = None
    try:
        port = json.loads(srv.stdout.readline())["port"]
        cli = subprocess.Popen([sys.executable, me, "client", "--port", str(port), "--channels", str(a.channels),
                                "--appends", str(a.appends)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(cli.stdout.readline())
        time.sleep(3.0)  # settle
        srv.stdin.write("counts\n")
        srv.stdin.flush()
        c0 = json.loads(srv.stdout.readline())
        s0, k0, t0 = cpu_seconds(srv.pid), cpu_seconds(cli.pid), time.monotonic()
        time.sleep(a.idle)
        s1, k1, t1 = cpu_seconds(srv.pid), cpu_seconds(cli.pid), time.monotonic()
        srv.stdin.write("counts\n")
        srv.stdin.flush()
        c1 = json.loads(srv.stdout.readline())
        span = t1 - t0
        cli.stdin.write("go\n")
        cli.stdin.flush()
        lat = json.loads(cli.stdout.readline())
        print(json.dumps({
            "channels": a.channels, "followers_ready_s": ready["ready"], "idle_s": round(span, 1),
            "client_cpu_pct": round(100 * (k1 - k0) / span, 1), "server_cpu_pct": round(100 * (s1 - s0) / span, 1),
            "server_calls_per_s": {k: round((c1[k] - c0[k]) / span, 1) for k in c1}, **lat}, indent=1))
        srv.stdin.write("counts\n")
        srv.stdin.flush()
        c0 = json.loads(srv.stdout.readline())
        s0, k0, t0 = cpu_seconds(srv.pid), cpu_seconds(cli.pid), time.monotonic()
        wr = subprocess.run([sys.executable, me, "writer", "--port", str(port), "--hot", str(a.hot)],
                            capture_output=True, text=True, timeout=60)
        s1, k1, t1 = cpu_seconds(srv.pid), cpu_seconds(cli.pid), time.monotonic()
        srv.stdin.write("counts\n")
        srv.stdin.flush()
        c1 = json.loads(srv.stdout.readline())
        span = t1 - t0
        print(json.dumps({"hot_appends_per_s": a.hot, **json.loads(wr.stdout), "hot_s": round(span, 1),
                          "client_cpu_pct": round(100 * (k1 - k0) / span, 1),
                          "server_cpu_pct": round(100 * (s1 - s0) / span, 1),
                          "server_calls_per_s": {k: round((c1[k] - c0[k]) / span, 1) for k in c1}}, indent=1))
        cli.stdin.write("stop\n")
        cli.stdin.flush()
        cli.wait(30)
    finally:
        for p in (cli, srv):
            if p is not None and p.poll() is None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        for p in (cli, srv):
            if p is not None:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    main()

"""The parent of a proxy's workers (``vecdb.proxy.workers.Supervisor``) with stand-in workers: small
Python scripts that print the worker's up line and then wait (or crash, or fail to start), so the
restart, back-off, stop and parent-death rules run in a second, without a cluster.
``tests/e2e/test_proxy_workers.py`` runs real proxy workers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vecdb.proxy import workers
from vecdb.proxy.workers import Supervisor

FAKE = textwrap.dedent("""
    import os, signal, sys, time
    args = sys.argv[1:]
    index, node_id = args[args.index("--worker-index") + 1], args[args.index("--node-id") + 1]
    if os.environ.get("FAKE_FAIL_WORKER") == index:
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{WORKER_UP} {index} {node_id} 127.0.0.1:1", flush=True)
    print(f"worker {index} says hello {' '.join(args[:2])}", flush=True)
    crash = os.environ.get("FAKE_CRASH_FILE", "")
    while True:
        if crash and index == "0" and os.path.exists(crash):
            os._exit(1)
        time.sleep(0.01)
""").replace("{WORKER_UP}", workers.WORKER_UP)


def wait_for(cond, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE)
    return [sys.executable, str(script)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_restarts_with_backoff_and_stops(fake, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(workers, "BACKOFF", (0.05, 0.2))
    crash = tmp_path / "crash"
    monkeypatch.setenv("FAKE_CRASH_FILE", str(crash))
    sup = Supervisor(["proxy", "--port"], 2, "px", ["--port", "1"], command=fake)
    assert sup.start() == 0
    assert [w.node_id for w in sup.workers] == ["px-w0", "px-w1"]
    out = capsys.readouterr().out
    assert "vecdb proxy worker 0 (px-w0) serving on 127.0.0.1:1" in out  # the up line, reworded
    assert "worker 1 says hello proxy --port" in out  # other lines passed on as they are
    assert workers.WORKER_UP not in out
    first = sup.workers[1].proc.pid
    runner = threading.Thread(target=sup.run, daemon=True)
    caplog.set_level(logging.ERROR, logger="vecdb.proxy.workers")
    runner.start()
    crash.touch()  # worker 0 dies at once, every time it starts: the waits double up to the cap
    wait_for(lambda: sup.workers[0].restarts >= 5)
    crash.unlink()
    wait_for(lambda: sup.workers[0].up.is_set() and sup.workers[0].proc.poll() is None)
    delays = [float(r.getMessage().rsplit(" in ", 1)[1].split()[0]) for r in caplog.records
              if "proxy worker 0" in r.getMessage()]
    assert delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    w0 = sup.workers[0]
    assert w0.node_id == f"px-w0.{w0.restarts}"  # a new id each time
    assert sup.workers[1].proc.pid == first and sup.workers[1].restarts == 0  # the other one untouched
    pids = [w.proc.pid for w in sup.workers]
    assert sup.stop() is True  # SIGTERM: both exit 0
    runner.join(5)
    assert not runner.is_alive() and not any(alive(p) for p in pids)


def test_a_worker_that_fails_before_up_ends_the_proxy(fake, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_WORKER", "1")
    sup = Supervisor([], 2, "px", command=fake)
    assert sup.start() == 3
    assert sup.workers[0].proc.poll() is not None  # the other one was stopped
    assert sup.workers[1].restarts == 0


def test_workers_end_with_their_parent(fake, tmp_path):
    """kill -9 of the parent: each worker gets SIGTERM (PR_SET_PDEATHSIG)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from vecdb.proxy.workers import Supervisor
            sup = Supervisor([], 2, "px", command={fake!r})
            assert sup.start() == 0
            print("PIDS", *(w.proc.pid for w in sup.workers), flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        pids = []
        for line in parent.stdout:
            if line.startswith("PIDS"):
                pids = [int(p) for p in line.split()[1:]]
                break
        assert len(pids) == 2 and all(alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not any(alive(p) for p in pids), 10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()

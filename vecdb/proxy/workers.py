"""``vecdb proxy --workers N``: one proxy as N worker processes on one port.

One process runs its Python (gRPC handlers, request decoding, result building) under one GIL, and
a proxy is the cluster role that costs the most CPU per query. It holds no state of its own but
caches the coord keeps coherent (a DDL call answers once every live proxy has applied it:
``vecdb.coord.catalog_sync``), so several proxy processes can serve one port:

- the parent (``supervise``, this module) starts N workers, each ``python -m vecdb proxy`` with
  the same flags plus ``--worker-index i`` and ``--node-id <id>-w<i>``: a whole proxy with a node
  id of its own (its own session, so the coord's DDL fan-out waits for it, ``node_id`` labels in
  its metrics, a node of its own in GetMetrics). It opens no storage itself.
- every worker listens on the Milvus API port with SO_REUSEPORT (``start_server(reuse_port=True)``),
  which the parent asked is free before it started any (``shared_port``: another server's SO_REUSEPORT
  socket would not refuse the workers): the kernel spreads new connections over the workers (a
  client's connection, and every call on it, stays with one worker). With ``proxy.worker_port``
  (``--worker-port``) worker i also listens on ``worker_port + i`` alone, to reach that worker.
- the HTTP port (``--http-port P``: /healthz, /metrics, the REST API) is not shared: worker i
  serves it on ``P + i``, so a Prometheus scrape of one port always sees the same process.
- a worker that exits while the proxy is not stopping is started again with a new id
  (``<id>-w<i>.<n>``: the dead one's session may outlive it by up to its ttl, and an id is held
  by one session at a time) after a back-off (0.25 s doubling to 30 s while it keeps dying within
  ``STABLE`` s of its start). A worker that fails before the proxy was first ready ends it (a bad
  flag or a port in use is not retried).
- SIGTERM or SIGINT to the parent: SIGTERM to every worker (each stops as a lone proxy does),
  then the parent exits, 0 if all stopped cleanly. Each worker gets SIGTERM if the parent dies.

The parent prints ``vecdb proxy <id> ready on <address> (<n> workers)`` once every worker
answers; a worker's own line (``WORKER_UP``) is read by the parent, not passed on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from vecdb import signals, startup

log = logging.getLogger(__name__)

WORKER_UP = "vecdb-proxy-worker-up"  # a worker's first stdout line: "<WORKER_UP> <index> <node id> <address>"
STABLE = 30.0  # seconds a worker must have lived for its next restart to come without back-off
BACKOFF = (0.25, 30.0)  # first and longest wait before a restart
STOP_GRACE = 30.0  # seconds each worker gets to stop on SIGTERM before SIGKILL


# A worker starts through this trampoline: it asks Linux for SIGTERM when its parent dies
# (PR_SET_PDEATHSIG, kept across exec), leaves at once if the parent is already gone, then becomes the
# worker. Done in the child's own interpreter rather than in a preexec_fn: Python code between fork
# and exec in a process with threads can deadlock or abort (seen: a worker killed by SIGABRT at start).
_TRAMPOLINE = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


@dataclass
class Worker:
    index: int
    node_id: str = ""
    proc: subprocess.Popen | None = None
    started: float = 0.0
    up: threading.Event = field(default_factory=threading.Event)
    address: str = ""
    restarts: int = 0
    failures: int = 0  # deaths in a row, each within STABLE s of its start
    restart_at: float | None = None


class Supervisor:
    """The parent of a proxy's workers (see the module's doc). ``argv``: the command line as given
    (after ``python -m vecdb``); each worker gets it with ``extra`` and its own flags appended."""

    def __init__(self, argv: list[str], workers: int, node_id: str, extra: list[str] | None = None,
                 command: list[str] | None = None, label: str = "proxy", env: dict[str, str] | None = None):
        """``command``: what runs a worker, before ``argv`` (default ``python -m vecdb``). ``label``: what the
        workers are in the lines printed and logged ("proxy": "vecdb proxy worker 0 (...) serving on ...";
        "standalone" for a standalone primary's, ``vecdb.primary``). ``env``: set in each worker's environment,
        over this process's."""
        self.env = dict(env or {})
        self.argv, self.node_id, self.extra, self.label = list(argv), node_id, list(extra or ()), label
        self.command = list(command or (sys.executable, "-m", "vecdb"))
        self.workers = [Worker(i) for i in range(workers)]
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def _spawn(self, w: Worker) -> None:
        w.node_id = f"{self.node_id}-w{w.index}" + (f".{w.restarts}" if w.restarts else "")
        w.up.clear()
        cmd = [*self.command, *self.argv, *self.extra,
               "--worker-index", str(w.index), "--node-id", w.node_id]
        w.proc = subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *cmd],
                                  stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                  env={**os.environ, **self.env} if self.env else None)
        w.started = time.monotonic()
        threading.Thread(target=self._read, args=(w, w.proc), name=f"worker-{w.index}-out", daemon=True).start()

    def _read(self, w: Worker, proc: subprocess.Popen) -> None:
        """Passes the worker's stdout on, but for its WORKER_UP line, which marks it up."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(WORKER_UP):
                _, _, node_id, address = line.split()
                w.address = address
                print(f"vecdb {self.label} worker {w.index} ({node_id}) serving on {address}", flush=True)
                w.up.set()
            else:
                sys.stdout.write(line)
                sys.stdout.flush()

    def start(self) -> int:
        """Starts every worker and waits until each is up; 0, or the exit code of one that ended first
        (the others are then stopped)."""
        for w in self.workers:
            self._spawn(w)
        while not all(w.up.is_set() for w in self.workers):
            for w in self.workers:
                assert w.proc is not None
                code = w.proc.poll()
                if code is not None and not w.up.is_set():
                    log.error("%s worker %d (%s) exited with code %s before it was up: stopping", self.label, w.index,
                              w.node_id, code)
                    self.stop()
                    return code or 1
            if self.stopping.wait(0.05):
                return 0
        return 0

    def run(self) -> None:
        """Restarts workers that die until ``stopping`` is set."""
        while not self.stopping.wait(0.1):
            now = time.monotonic()
            for w in self.workers:
                assert w.proc is not None
                if w.restart_at is None:
                    code = w.proc.poll()
                    if code is None:
                        continue
                    w.failures = w.failures + 1 if now - w.started < STABLE else 1
                    delay = min(BACKOFF[1], BACKOFF[0] * 2 ** (w.failures - 1))
                    log.error("%s worker %d (%s) exited with code %s: starting it again in %.2f s", self.label, w.index,
                              w.node_id, code, delay)
                    w.restart_at = now + delay
                elif now >= w.restart_at:
                    w.restart_at = None
                    w.restarts += 1
                    with self._lock:
                        if self.stopping.is_set():
                            return
                        self._spawn(w)

    def stop(self) -> bool:
        """SIGTERM to every worker, SIGKILL to one still running after STOP_GRACE s; True if all
        stopped cleanly."""
        with self._lock:
            self.stopping.set()
        procs = [w.proc for w in self.workers if w.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + STOP_GRACE
        for proc in procs:
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            clean = clean and code in (0, -signal.SIGTERM)
        return clean


def free_port(host: str) -> int:
    """A port free on ``host`` now; ``StartupFailed`` when ``host`` cannot be listened on at all."""
    try:
        with socket.socket(startup.address_family(host)) as s:
            s.bind((host.strip("[]"), 0))
            return s.getsockname()[1]
    except OSError as e:  # a name that does not resolve, an address not this machine's
        raise startup.cannot_listen(host, 0, startup.GRPC, e) from e


def shared_port(host: str, port: int) -> int:
    """The port the workers share: ``port``, asked once here before any worker starts, or a free one for 0.
    The workers bind it with SO_REUSEPORT and so do not ask (their siblings hold it); a port another
    server's SO_REUSEPORT socket holds would not refuse them, but refuses this plain bind: ``StartupFailed``
    (one line, exit 1; no worker started, so none says it again)."""
    if not port:
        return free_port(host)
    startup.check_free(host, port, startup.GRPC)
    return port


def supervise(argv: list[str], workers: int, node_id: str | None, host: str, port: int) -> int:
    """``vecdb proxy --workers N`` (N > 1): runs the workers until SIGTERM or SIGINT. ``port`` 0
    picks a free port for all of them."""
    node_id = node_id or uuid.uuid4().hex[:12]
    extra = ["--port", str(shared_port(host, port))]
    sup = Supervisor(argv, workers, node_id, extra)
    signals.on_stop_signal(sup.stopping.set)
    code = sup.start()
    if code or sup.stopping.is_set():
        return code if code else (0 if sup.stop() else 1)
    address = sup.workers[0].address
    print(f"vecdb proxy {node_id} ready on {address} ({workers} workers)", flush=True)
    sup.run()
    return 0 if sup.stop() else 1

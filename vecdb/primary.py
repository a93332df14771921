"""``vecdb standalone --workers N`` (N > 1): one server as a primary process and N worker processes.

One process runs its Python (gRPC handlers, request decoding, result building) under one GIL. With
``--workers N`` (setting ``standalone.workers``) a standalone server serves the Milvus API from N
worker processes on one port (SO_REUSEPORT), over the same data directory as a one-process
standalone: stop it and start it again with 1 or N workers, it finds everything.

- The **primary** (``Primary``, this module) owns the embedded backends (``LocalMetaStore`` and
  ``WalLog`` take one process at a time; the local object store is plain files every process
  reads). It holds ``session/standalone`` (a second server on the same storage is refused, as for
  a one-process standalone) and runs, in this one process:

  - the backends' server (``vecdb.storage.backend_server``): the metadata store and the log over
    loopback gRPC, ``vecdb://host:port``, for the workers;
  - the coord (``vecdb.coord.server.Coord``): timestamps, ids, DDL, catalog sync, the assignment of
    channels to query nodes and data nodes, flushes, garbage collection of the object store;
  - a data node (``vecdb.datanode.process.DataNodeProcess`` on the primary's backends, not its own):
    persists every channel into segments, applies the seal policy, builds indexes, compacts, and
    truncates the log below what every worker's query node applied;
  - ``/healthz`` and ``/metrics`` on ``http.port`` (healthy once every worker is up; "OK (1 of 2 workers
    restarting: [0])" while the others serve), and Milvus's REST API there too, each call passed on to a
    worker's HTTP port (``RestForwarder``; without TLS), so REST clients keep their address.

  A backend that is not embedded (``etcd://``, ``nats://``, ``s3://``) is not served: the workers
  open it themselves.
- N **workers**, each ``vecdb node`` (a proxy and a query node in one process; reads are served by
  its own query node) on ``vecdb://<primary>`` for metadata and the log and the primary's object
  store (the same directory for ``local``), all accepting on the Milvus port. With
  ``proxy.worker_port`` set, worker i also serves the Milvus API on ``worker_port + i`` alone. The
  coord gives every worker's query node a replica of each loaded collection
  (``replica_per_node``), so a worker's reads do not leave its process. With ``http.port`` P,
  worker i serves its own ``/healthz``, ``/metrics`` and the REST API on P + 1 + i.
- The primary supervises them (``vecdb.proxy.workers.Supervisor``): each starts through a trampoline
  that ends it when the primary dies (PR_SET_PDEATHSIG), one that exits is started again with a
  new node id after a back-off, one that fails before the first ready ends the server. The ready
  line ``vecdb standalone ready on <host>:<port> (data: <dir>, <n> workers)`` comes once every
  worker answers. SIGTERM or SIGINT: the workers stop first (each as a lone node does), then the
  data node, the coord, the backends' server, the session, the backends.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import signal
import sys
import threading
import urllib.error
import urllib.request
import uuid
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

from pydantic import SecretStr

from vecdb import limits, logs, signals, startup
from vecdb.config import Settings
from vecdb.coord.server import Coord
from vecdb.coord.session import Session, describe_process
from vecdb.datanode.process import DataNodeProcess
from vecdb.errors import ServiceUnavailable
from vecdb.proxy.workers import Supervisor, shared_port
from vecdb.rpc.transport import use_cluster_secret, use_internal_tls
from vecdb.security.tls import enabled as tls_enabled
from vecdb.storage.backends import open_backends

if TYPE_CHECKING:
    from vecdb.storage.backend_server import BackendServer

log = logging.getLogger(__name__)

SESSION_KEY = "session/standalone"  # as a one-process standalone's (vecdb.standalone): one server per storage


_HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade"}
REST_TIMEOUT = 600.0  # seconds a REST call passed on to a worker may take (a load or flush waits)


class RestForwarder:
    """Milvus's REST API on the primary's HTTP port: each POST is passed on to a worker's HTTP port (the
    next one in turn that answers), so REST clients keep the address they had with one process. The
    workers' own ports serve it directly. Plain HTTP only: with TLS (``tls.mode`` 1 or 2) the primary
    serves no REST API (the workers' ports do)."""

    def __init__(self, host: str, ports: list[int]):
        self.host = "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host
        self.ports = ports
        self._next = itertools.count()

    def handle_bytes(self, path: str, body: bytes, headers) -> tuple[int, bytes]:
        status, reply, _ = self._forward("POST", path, body, headers)
        return status, reply

    def handle_get(self, path: str, headers) -> tuple[int, bytes, dict[str, str]]:
        """The admin web UI (``vecdb.webui``), a worker's: its status, body and headers."""
        return self._forward("GET", path, None, headers)

    def _forward(self, method: str, path: str, body: bytes | None, headers) -> tuple[int, bytes, dict[str, str]]:
        first = next(self._next)
        sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}
        for i in range(len(self.ports)):
            port = self.ports[(first + i) % len(self.ports)]
            request = urllib.request.Request(f"http://{startup.host_port(self.host, port)}{path}", data=body,
                                             method=method,
                                             headers=sent)
            try:
                with urllib.request.urlopen(request, timeout=REST_TIMEOUT) as reply:
                    return reply.status, reply.read(), _kept(reply.headers)
            except urllib.error.HTTPError as e:  # the worker's answer, an error status included
                return e.code, e.read(), _kept(e.headers)
            except (urllib.error.URLError, ConnectionError):  # that worker is down: the next one
                continue
        return 503, json.dumps({"code": 503, "message": "no worker of this server answers (restarting?)"}).encode(), \
            {"Content-Type": "application/json"}


def _kept(headers) -> dict[str, str]:
    """The headers of a worker's reply passed back to the client (its type, an auth challenge)."""
    return {k: v for k, v in (headers or {}).items() if k.lower() in ("content-type", "www-authenticate")}


class Primary:
    """The primary's own parts (see the module's doc); the workers are ``run_primary``'s."""

    def __init__(self, settings: Settings, workers: int, node_id: str | None = None):
        self.settings = settings
        self.node_id = node_id or uuid.uuid4().hex[:12]
        limits.configure(settings.limits)
        storage = settings.storage
        with startup.data_dir(storage.data_dir):  # held by another server: one line (vecdb.startup)
            self.backends = open_backends(storage)
        self._stopped = threading.Event()
        self.session: Session | None = None
        self.backend_server: BackendServer | None = None
        self.coord: Coord | None = None
        self.datanode: DataNodeProcess | None = None
        self.http: ThreadingHTTPServer | None = None
        self.workers_up = False  # every worker answered once (the ready line)
        self.supervisor: Supervisor | None = None  # the workers' (run_primary)
        self.backend_address = ""
        try:
            host = settings.proxy.host
            try:
                self.session = Session(self.backends.meta, SESSION_KEY,
                                       describe_process(role="standalone", primary=self.node_id),
                                       ttl=storage.session_ttl, on_lost=self._session_lost)
            except ServiceUnavailable as e:  # held by another server (vecdb.standalone): its message says by whom
                raise startup.StartupFailed(str(e)) from e
            # internal RPC (the backends' server, the coord) served with the cluster secret and internal TLS
            # when set, as the workers call it
            use_cluster_secret(settings.security.cluster_secret_value())
            use_internal_tls(settings.tls)
            if storage.meta == "local" or storage.log == "wal":
                from vecdb.storage.backend_server import serve_backends

                self.backend_server, port = serve_backends(self.backends.meta if storage.meta == "local" else None,
                                                           self.backends.log if storage.log == "wal" else None,
                                                           "127.0.0.1", 0)
                self.backend_address = f"vecdb://127.0.0.1:{port}"
            if settings.http.port:
                from vecdb.http import start_http

                rest = None if tls_enabled(settings.tls) else RestForwarder(
                    host, [settings.http.port + 1 + i for i in range(workers)])
                self.http = start_http(host, settings.http.port, self.health, "standalone", self.node_id,
                                       settings.tls, rest=lambda: rest)
            self.coord = Coord(self.backends.meta, "127.0.0.1", 0, storage.session_ttl, self.backends.objects,
                               settings.gc, self.backends.log, spread_min_rows=settings.querynode.spread_min_rows,
                               replica_per_node=True)  # each worker's reads stay in its process
            dn_settings = settings.model_copy(deep=True)
            dn_settings.http.port = 0  # the primary's HTTP port is this process's
            self.datanode = DataNodeProcess(dn_settings, "127.0.0.1", 0, f"{self.node_id}-dn", self.backends)
            logs.set_node("standalone", self.node_id)
        except BaseException:
            self.stop()
            raise

    def worker_storage(self) -> list[str]:
        """The storage flags of a worker: the served backends' address for the embedded ones, the
        others' URLs as given; the object store and data directory the primary's."""
        s = self.settings.storage
        return ["--data-dir", os.path.abspath(s.data_dir),
                "--meta-store", self.backend_address if s.meta == "local" else s.meta,
                "--log-store", self.backend_address if s.log == "wal" else s.log,
                "--object-store", s.objects]

    def _session_lost(self) -> None:
        log.error("the storage session was lost; stopping so that no two servers write the same data")
        os.kill(os.getpid(), signal.SIGTERM)  # run_primary's handler stops the workers, then this

    def health(self) -> tuple[bool, str]:
        """For /healthz: ready once every worker answered, the coord is active and the data node's and the
        primary's sessions hold; else why not."""
        if self._stopped.is_set():
            return False, "stopping"
        if self.datanode is None or self.coord is None or self.session is None:
            return False, "starting"
        trouble = self.session.trouble()
        if trouble:
            return False, trouble
        if not self.coord.active:
            return False, "the coord is not active"
        ok, why = self.datanode.health()
        if not ok:
            return False, f"data node: {why}"
        if not self.workers_up:
            return False, "starting the workers"
        workers = self.supervisor.workers if self.supervisor is not None else []
        down = [w.index for w in workers if not w.up.is_set() or w.proc is None or w.proc.poll() is not None]
        if down:  # the others serve meanwhile: still healthy
            return True, f"OK ({len(down)} of {len(workers)} workers restarting: {down})"
        return True, "OK"

    def stop(self) -> None:
        """The primary's parts in reverse order of their start (the workers are stopped before this)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.datanode is not None:
            self.datanode.stop()
        if self.coord is not None:
            self.coord.stop()
        if self.backend_server is not None:
            self.backend_server.stop(1.0)
        if self.session is not None:
            self.session.close()
        self.backends.close()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()


def worker_flags(args) -> list[str]:
    """The ``vecdb standalone`` flags a worker (``vecdb node``) takes as they were given: the config file,
    authentication and TLS (the environment's VECDB_* settings reach it by inheritance)."""
    out: list[str] = []
    if getattr(args, "config", None):
        out += ["--config", os.path.abspath(args.config)]
    if getattr(args, "auth", False):
        out.append("--auth")
    for flag in ("tls_mode", "tls_cert", "tls_key", "tls_ca"):
        value = getattr(args, flag, None)
        if value is not None:
            out += ["--" + flag.replace("_", "-"), str(value)]
    return out


def run_primary(settings: Settings, workers: int, flags: list[str], log_level: str | None = None) -> int:
    """``vecdb standalone --workers N``: the primary and its N workers until SIGTERM or SIGINT; the exit
    code (0 when everything stopped cleanly)."""
    stopping = threading.Event()
    sup: Supervisor | None = None

    def on_signal(*_) -> None:
        stopping.set()
        if sup is not None:
            sup.stopping.set()

    signals.on_stop_signal(on_signal)  # before "ready": a stop sent right after it is handled
    env: dict[str, str] = {}
    if not settings.security.cluster_secret_value():
        # the backends' server and the coord listen on loopback: without a secret any local process could
        # read and write the metadata store (users, grants: make itself admin). A random one, as `vecdb
        # cluster up` makes, reaches the workers in their environment only.
        settings.security.cluster_secret = SecretStr(secrets.token_urlsafe(32))
        env["VECDB_SECURITY__CLUSTER_SECRET"] = settings.security.cluster_secret.get_secret_value()
    primary = Primary(settings, workers)
    try:
        # the Milvus API port, asked once here: every worker binds it with SO_REUSEPORT, which another server's
        # SO_REUSEPORT socket on it would not refuse (the kernel would split connections between two databases)
        host, port = settings.proxy.host, shared_port(settings.proxy.host, settings.proxy.port)
        command = [sys.executable, "-m", "vecdb"] + (["--log-level", log_level] if log_level else [])
        # worker i's own HTTP port (/healthz, /metrics, the REST API): http.port + 1 + i, or none
        http = settings.http.port + 1 if settings.http.port else 0
        argv = ["node", "--host", host, "--http-port", str(http), *primary.worker_storage(), *flags]
        # the workers map sealed segments (querynode.mmap_sealed), so the files they all read are one copy in the
        # page cache, unless the environment says otherwise
        if "VECDB_QUERYNODE__MMAP_SEALED" not in os.environ:
            env["VECDB_QUERYNODE__MMAP_SEALED"] = "true"
        sup = primary.supervisor = Supervisor(argv, workers, primary.node_id, ["--port", str(port)], command=command,
                                              label="standalone", env=env)
        if stopping.is_set():
            return 0
        code = sup.start()
        if code or sup.stopping.is_set():
            return code if code else (0 if sup.stop() else 1)
        primary.workers_up = True
        print(f"vecdb standalone ready on {startup.host_port(host, port)} (data: {settings.storage.data_dir}, "
              f"{workers} workers)", flush=True)
        sup.run()
        return 0 if sup.stop() else 1
    finally:
        if sup is not None and not all(w.proc is None or w.proc.poll() is not None for w in sup.workers):
            sup.stop()
        primary.stop()

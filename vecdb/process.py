"""``NodeProcess``: what every cluster process shares (``vecdb querynode``, ``vecdb proxy``):
the storage backends, a gRPC server, and the session ``session/<role>/<node id>`` holding its
address, which is how the other processes find it (``vecdb.discovery``). A subclass builds its
parts in ``_start`` and lists what to close in ``_closers``; a failed start closes whatever had
been opened. The session is registered last, once the server answers, so a node is never found
before it can serve, and ended first by ``stop``, so the others stop sending it calls at once
(not when its lease would run out) while the server's grace lets the calls in flight finish.
Before its parts are built, one authenticated call to the coord (``check_cluster_credential``): a
cluster secret the coord refuses, like a node id a live process holds (``register_session``), is a
``StartupFailed`` (one line, exit 1), never a process that says ready and fails every call.

With ``http.port`` set (``--http-port``; 0 = off), ``/healthz`` and ``/metrics`` (``vecdb.http``)
start first, so a probe sees "starting" while the role loads, and stop last, so it sees
"stopping" during the grace. Healthy (200 "OK") only between: started, session registered and
surely held (not lost, not ended, renewed within its ttl: ``Session.trouble``) and the log reachable
(a JetStream log's NATS connection up).

Metrics and logs name the node by its id (``vecdb.metrics``): the number Milvus clients see for it
(``node_number``) maps back to the id, the role's engine (``self.node``, when it has
``metrics_node_id``) takes it, and so do the process's log lines (``vecdb.logs``).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

from vecdb import logs, metrics, signals, startup
from vecdb.config import Settings
from vecdb.coord.client import SESSION_KEY, CoordClient, active_coord_address
from vecdb.coord.session import Session, register_node
from vecdb.discovery import node_number
from vecdb.errors import CredentialRefused, IoFailed, ServiceNotReady, ServiceUnavailable
from vecdb.rpc.gen import coord_pb2
from vecdb.rpc.transport import use_cluster_secret, use_internal_tls
from vecdb.storage.backends import Backends, open_backends
from vecdb.storage.base import MetaStore

if TYPE_CHECKING:
    from vecdb.proxy.rest import RestApi

log = logging.getLogger(__name__)

LOST_POLL = 0.25  # seconds between looks at a serving process's sessions (serve_until_stopped)
METADATA_WAIT_S = 60.0  # how long a starting process waits for its metadata store to answer
CREDENTIAL_CHECK_S = 2.0  # how long the start waits for a coord to check its credential against


def advertised_address(host: str, port: int) -> str:
    """The address others reach a server at: a wildcard listen address names no host, so the
    machine's name stands for it."""
    return startup.host_port(socket.gethostname() if host in ('', '0.0.0.0', '::', '[::]') else host, port)


def serve_until_stopped(process, ready: str) -> int:
    """Print ``ready``, serve until SIGTERM or SIGINT (then stop, exit 0) or until a session of the process is
    lost (its ``lost_session``, where it has one: then stop, exit 1). A session is lost when its lease
    expired (a stall or an unreachable store longer than its ttl): the cluster then counts the process gone
    (the coord drops its replicas and channels, DDL no longer waits for its proxy), and one that went on
    serving would do so from a stale view, never to register again (found by the chaos hunt: query nodes
    stopped past their ttl stayed up unhealthy, and no replica was served). Milvus's nodes exit so too; the
    supervisor (``--workers``, the standalone primary, compose's restart policy, Kubernetes) starts it again."""
    stopped = signals.stop_event()  # before "ready": a stop sent right after it is handled
    print(ready, flush=True)
    lost_session = getattr(process, "lost_session", None)
    lost = None
    while not stopped.wait(LOST_POLL):
        lost = lost_session() if lost_session is not None else None
        if lost is not None:
            log.error("%s %s: its session %s was lost: stopping (exit 1)", getattr(process, "role", "process"),
                      getattr(process, "node_id", ""), lost)
            break
    with logs.stacks_if_slow():  # a stop that hangs prints where to the process's log
        process.stop()
    return 1 if lost is not None else 0


def wait_for_metadata(meta: MetaStore, budget: float = METADATA_WAIT_S) -> None:
    """Return once the metadata store answers a read, waiting up to ``budget`` seconds for it (then its
    error is raised): a process starting while its store is briefly out of reach (a standalone primary's
    worker on a loaded machine: "connection attempt timed out before receiving SETTINGS frame") waits for it
    rather than exiting, which ended a whole ``--workers`` server."""
    deadline = time.monotonic() + budget
    said = False
    while True:
        try:
            meta.get(SESSION_KEY)
            return
        except (IoFailed, ServiceUnavailable) as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if not said:
                log.warning("the metadata store does not answer yet (%s): waiting up to %.0f s", e, left)
                said = True
            time.sleep(min(0.5, left))


def check_cluster_credential(meta: MetaStore, address: str | None) -> None:
    """One authenticated call to the coord before a process says it is ready: a cluster secret the coord
    refuses (``security.cluster_secret`` not the cluster's, or none) is a ``StartupFailed`` saying so,
    not a proxy or node that answers (or is called) with the refusal ever after. No coord yet (or none
    reachable within ``CREDENTIAL_CHECK_S``): nothing to check, the process's calls wait for one as before."""
    if address is None:
        try:
            address = active_coord_address(meta)
        except ServiceNotReady:
            return
    probe = CoordClient(meta, address, timeout=CREDENTIAL_CHECK_S)
    try:
        probe.invoke("AllocTimestamp", coord_pb2.AllocRequest(count=1))
    except CredentialRefused as e:
        raise startup.StartupFailed(
            f"the coord at {probe.address} refused this process's cluster credential: start it with the "
            f"cluster's secret (VECDB_SECURITY__CLUSTER_SECRET or --cluster-secret-file, the same in every "
            f"process of the cluster)") from e
    except (ServiceNotReady, ServiceUnavailable):
        pass
    finally:
        probe.close()


def register_session(meta: MetaStore, role: str, node_id: str, address: str, ttl: float) -> Session:
    """``register_node``, a node id that another live process holds in the cluster (its session not
    gone within about two ``ttl``) a ``StartupFailed`` naming the holder. Any other ServiceUnavailable (the
    metadata store does not answer) is raised as it is: the key is not known to be held."""
    try:
        return register_node(meta, role, node_id, address, ttl)
    except ServiceUnavailable as e:
        key = f"session/{role}/{node_id}"
        try:
            raw = meta.get(key)
        except Exception:  # noqa: BLE001 - the store's own failure: the first error says more
            raw = None
        if raw is None:  # not held (or not readable): not an id in use
            raise
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = {}
        holder = holder if isinstance(holder, dict) else {}
        who = ", ".join(f"{k} {holder[k]}" for k in ("address", "host", "pid") if k in holder)
        raise startup.StartupFailed(
            f"node id {node_id} is in use: {key} is held by another process{f' ({who})' if who else ''}; "
            f"stop it, or start this one with another --node-id") from e


def _log_trouble(log) -> str | None:
    """Why the log cannot be reached now, if it cannot: a JetStream log's NATS connection is down
    (it reconnects by itself; the node is healthy again once it has). The metadata store's
    reachability shows in the session (not renewed within its ttl)."""
    nc = getattr(log, "_nc", None)
    if nc is not None and not nc.is_connected:
        return "the log (NATS) is unreachable: reconnecting"
    return None


class NodeProcess:
    role = "node"
    serves_rest = False  # Milvus's REST API and the web UI on the HTTP port (a proxy's), else /healthz and /metrics
    _coord_address: str | None = None  # the coord's address given at start (a proxy's --coord), else its session's

    def __init__(self, settings: Settings, host: str, node_id: str | None = None, backends: Backends | None = None):
        """``backends``: storage opened by the caller, which also closes it (a standalone primary's data node,
        ``vecdb.primary``); None: opened from ``settings.storage`` here and closed by ``stop``."""
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._own_backends = backends is None
        if backends is None:
            with startup.data_dir(settings.storage.data_dir):
                backends = open_backends(settings.storage)
        self.backends = backends
        self.server = self.session = None
        self.http: ThreadingHTTPServer | None = None
        self._stopping = False
        self._closers: list[Callable[[], None]] = []
        metrics.name_node(node_number(self.node_id), self.node_id)
        logs.set_node(self.role, self.node_id)
        self._tls = settings.tls
        self.rest_api: RestApi | None = None  # Milvus's REST API on the HTTP port, where the role serves one
        try:
            # internal RPC served and called with the cluster secret, if set (vecdb.rpc.transport)
            use_cluster_secret(settings.security.cluster_secret_value())
            use_internal_tls(settings.tls)  # and over mutual TLS with tls.internal
            self._start_http(host, settings.http.port)
            wait_for_metadata(self.backends.meta)
            check_cluster_credential(self.backends.meta, self._coord_address)
            self.server, self.port = self._start(settings)
            engine = getattr(self, "node", None)
            if engine is not None and hasattr(engine, "metrics_node_id"):
                engine.metrics_node_id = self.node_id
            self.address = advertised_address(host, self.port)
            self.session = register_session(self.backends.meta, self.role, self.node_id, self.address,
                                         settings.storage.session_ttl)
        except BaseException:
            self.stop()
            raise

    def lost_session(self) -> str | None:
        """The key of this process's session if it was lost (``serve_until_stopped``)."""
        session = self.session
        return session.key if session is not None and session.lost else None

    def _start_http(self, host: str, port: int) -> None:
        if port:
            from vecdb.http import start_http

            self.http = start_http(host, port, self.health, self.role, self.node_id, self._tls,
                                   rest=(lambda: self.rest_api) if self.serves_rest else None)

    def health(self) -> tuple[bool, str]:
        """For /healthz: (True, "OK") while ready, else (False, why)."""
        if self._stopping:
            return False, "stopping"
        if self.session is None:
            return False, "starting"
        trouble = self.session.trouble() or _log_trouble(self.backends.log)
        return (False, trouble) if trouble else (True, "OK")

    def _start(self, settings: Settings):
        """Build the role's parts; returns (started grpc server, bound port)."""
        raise NotImplementedError

    def stop(self, grace: float = 1.0) -> None:
        self._stopping = True
        if self.session is not None:
            self.session.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        for close in reversed(self._closers):
            close()
        if self._own_backends:
            self.backends.close()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None

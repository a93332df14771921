"""``NodeProcess``: what every cluster process shares (``vecdb querynode``, ``vecdb proxy``):
the storage backends, a gRPC server, and the session ``session/<role>/<node id>`` holding its
address, which is how the other processes find it (``vecdb.discovery``). A subclass builds its
parts in ``_start`` and lists what to close in ``_closers``; a failed start closes whatever had
been opened. The session is registered last, once the server answers, so a node is never found
before it can serve, and ended first by ``stop``, so the others stop sending it calls at once
(not when its lease would run out) while the server's grace lets the calls in flight finish.

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

import socket
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

from vecdb import logs, metrics, startup
from vecdb.config import Settings
from vecdb.coord.session import register_node
from vecdb.discovery import node_number
from vecdb.rpc.transport import use_cluster_secret, use_internal_tls
from vecdb.storage.backends import Backends, open_backends

if TYPE_CHECKING:
    from vecdb.proxy.rest import RestApi


def advertised_address(host: str, port: int) -> str:
    """The address others reach a server at: a wildcard listen address names no host, so the
    machine's name stands for it."""
    return f"{socket.gethostname() if host in ('', '0.0.0.0', '::', '[::]') else host}:{port}"


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
            self.server, self.port = self._start(settings)
            engine = getattr(self, "node", None)
            if engine is not None and hasattr(engine, "metrics_node_id"):
                engine.metrics_node_id = self.node_id
            self.address = advertised_address(host, self.port)
            self.session = register_node(self.backends.meta, self.role, self.node_id, self.address,
                                         settings.storage.session_ttl)
        except BaseException:
            self.stop()
            raise

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

"""The proxy's gRPC server: a sync grpc.server with a small thread pool.

A sync server whose handler threads call numpy/FAISS inline measured fastest
here (see PERFORMANCE.md): FAISS and numpy release the GIL, so two searches run
on two cores, and there is no event-loop hand-off per request.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from concurrent import futures

import grpc
from prometheus_client import Counter
from pymilvus.grpc_gen import milvus_pb2_grpc

from vecdb import startup
from vecdb.config import TlsSettings
from vecdb.proxy import grpc_health
from vecdb.proxy.auth_interceptor import AuthInterceptor
from vecdb.proxy.base import Roles
from vecdb.proxy.milvus_service import MilvusService
from vecdb.security.guard import collection_resolver
from vecdb.security.tls import add_port

MAX_MESSAGE_BYTES = 512 << 20

log = logging.getLogger(__name__)

BAD_REQUESTS = Counter("vecdb_grpc_bad_requests_total",
                       "Requests grpc answered itself (undecodable bytes, unimplemented method), by error and "
                       "request type or method", ["error", "request"])

# What grpc logs, with a traceback, for every such request: (logger, message) pairs.
_PER_REQUEST_TRACEBACKS = {
    ("grpc._common", "Exception deserializing message!"),  # the client then gets INTERNAL
    ("grpc._server", "Exception calling application: Method not implemented!"),  # UNIMPLEMENTED
}
_PARSED_TYPE = re.compile(r"Error parsing message with type '(?:[\w.]+\.)?(\w+)'")


class BadRequestLog(logging.Filter):
    """Turns grpc's traceback per bad request into one warning per kind, counting every one.

    Undecodable bytes (garbage, invalid UTF-8 in a string field) never reach vecdb's handlers:
    grpc answers INTERNAL and logs a full traceback per request, so a client sending garbage
    could fill the disk with logs. Each kind (exception type and request type or method) is
    logged once; all are counted in ``vecdb_grpc_bad_requests_total``.
    """

    def __init__(self):
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.name, record.msg) not in _PER_REQUEST_TRACEBACKS or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if exc is None:  # exc_info=(None, None, None): logged outside an except block
            return True
        kind = (type(exc).__name__, _request_of(exc))
        BAD_REQUESTS.labels(*kind).inc()
        with self._lock:
            if kind in self._seen:
                return False
            self._seen.add(kind)
        record.msg = "grpc rejected a request (%s); further ones of this kind are only counted in " \
                     "vecdb_grpc_bad_requests_total{error=%r,request=%r}"
        record.args = (f"{type(exc).__name__}: {exc}", *kind)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True

    def forget(self) -> None:
        """Log the next of every kind again (for tests)."""
        with self._lock:
            self._seen.clear()


def _request_of(exc: BaseException) -> str:
    """The request type a decode error names, else the function that raised (for an unimplemented
    method, the method's name in the generated servicer)."""
    parsed = _PARSED_TYPE.search(str(exc))
    if parsed:
        return parsed.group(1)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name if tb is not None else ""


BAD_REQUEST_LOG = BadRequestLog()


def install_bad_request_log() -> None:
    """Put ``BAD_REQUEST_LOG`` on the grpc loggers that log per bad request (once per process)."""
    for name in {logger for logger, _ in _PER_REQUEST_TRACEBACKS}:
        logger = logging.getLogger(name)
        if BAD_REQUEST_LOG not in logger.filters:
            logger.addFilter(BAD_REQUEST_LOG)


def handler_threads(workers: int) -> int:
    """``workers`` if set, else twice the CPU cores this process may use, at least 4."""
    if workers > 0:
        return workers
    return max(4, 2 * len(os.sched_getaffinity(0)))


def start_server(roles: Roles, host: str, port: int, workers: int = 0,
                 tls: TlsSettings | None = None, *, reuse_port: bool = False,
                 extra_port: int = 0, health: grpc_health.Health | None = None) -> tuple[grpc.Server, int]:
    """The Milvus API on ``host:port``; over TLS when ``tls.mode`` is 1 or 2 (``vecdb.security.tls``).

    ``reuse_port``: the port is shared with the other worker processes of one proxy (SO_REUSEPORT: the
    kernel spreads the connections over them); off, a port in use is an error. ``extra_port``: the same
    service on this port too (a worker's own). ``health``: the role's /healthz answer, served as gRPC's
    health checking protocol too (``vecdb.proxy.grpc_health``)."""
    workers = handler_threads(workers)
    install_bad_request_log()
    # authentication and privilege checks on every call when on (vecdb.security, docs/security.md)
    interceptors: list[grpc.ServerInterceptor] = []
    if roles.security is not None and roles.security.enabled:
        interceptors.append(AuthInterceptor(roles.security, collection_resolver(roles.catalog)))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # off (grpc's Linux default is on): a second server on a port in use fails instead of sharing it
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # pymilvus sends keepalive pings every 10 s, also between calls: accept them
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusService(roles), server)
    if health is not None:
        server.add_generic_rpc_handlers((grpc_health.handler(health),))
    if not reuse_port:  # (workers share the port: it is in use by design)
        startup.check_free(host, port, startup.GRPC)
    bound = _listen(server, host, port, tls)
    if extra_port:
        startup.check_free(host, extra_port, startup.GRPC)
        _listen(server, host, extra_port, tls)
    server.start()
    return server, bound


def _listen(server: grpc.Server, host: str, port: int, tls) -> int:
    """The port bound; ``StartupFailed`` naming it when it cannot be (grpc raises a RuntimeError, or
    returns 0 in older versions)."""
    try:
        bound = add_port(server, startup.host_port(host, port), tls)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise startup.cannot_listen(host, port, startup.GRPC)
    return bound

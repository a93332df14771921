"""``/healthz`` and ``/metrics`` on a small HTTP server beside a process's gRPC port.

Every role serves it on a port of its own (standalone: ``http.port``, 9091 by default; ``vecdb
coord|querynode|proxy``: ``--http-port``, off unless given). The rules:

- ``/healthz`` asks the role's ``health()``: ``(True, text)`` answers 200 with ``text`` (it starts
  with "OK": "OK", "OK active", "OK standby"); ``(False, reason)`` answers 503 with the reason
  ("starting", "stopping", "session lost ...").
- ``POST /v2/vectordb/...`` is Milvus's REST API where the role serves the Milvus API (standalone,
  proxy: ``vecdb.proxy.rest``, once the role is up); 404 elsewhere. No CORS headers (Milvus allows any
  origin: with authentication off, any web page a user visits could then read and write the data through
  the browser); a preflight ``OPTIONS`` answers 204 without them, so browsers refuse other origins, and a
  POST whose ``Origin`` is another site (a form's text/plain POST needs no preflight) is refused, 403; PUT,
  DELETE, PATCH: 404.
- ``GET /webui/`` is the admin web UI (``vecdb.webui``: the server, databases, collections, their
  schemas, indexes and segments; JSON at ``/webui/api/collections``) where the REST API is served.
- ``/metrics`` is every metric defined in this process (``vecdb.metrics``: Milvus's names where
  Milvus has the metric, each with a ``node_id`` label; prometheus-client's process metrics), plus
  ``vecdb_node_info{role, node_id} 1`` per role served here (several roles in one process, as in
  tests, share one registry: their ``node_id`` labels tell them apart).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, TypeVar, cast
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, Gauge

from vecdb import errors, startup
from vecdb.config import TlsSettings
from vecdb.metrics import exposition
from vecdb.security.tls import TlsHTTPServer, certificate_files
from vecdb.security.tls import enabled as tls_enabled

Health = Callable[[], tuple[bool, str]]
_Server = TypeVar("_Server", bound=ThreadingHTTPServer)

# The largest request body read: the Milvus API port's message limit (``vecdb.proxy.server``'s
# MAX_MESSAGE_BYTES). A larger one is refused, 413, before a byte of it is read: the handler read what
# ``Content-Length`` said into one buffer, whatever came (``Content-Length: 100000000000`` and two bytes: a
# MemoryError traceback on stderr; a few GB: the memory held while the client sent them).
MAX_BODY_BYTES = 512 << 20


# Connections waiting to be accepted (listen's backlog; the kernel caps it at net.core.somaxconn).
# socketserver's default, 5, overflowed under concurrent REST clients: 200 at once on 2 cores, 0-14 of them
# reset and the p99 at 1.0-1.2 s (SYNs dropped, retried after a second); with 1024 none reset, max 0.1 s.
BACKLOG = 1024


class _BodyTooLarge(ValueError):
    pass


class RestHandler(Protocol):
    """What answers the REST API's POSTs: ``vecdb.proxy.rest.RestApi``, or a standalone primary's forwarder
    to its workers (``vecdb.primary.RestForwarder``)."""

    def handle_bytes(self, path: str, body: bytes, headers) -> tuple[int, bytes]: ...

    def handle_get(self, path: str, headers) -> tuple[int, bytes, dict[str, str]]:
        """``GET /webui/...``, the admin web UI (``vecdb.webui``): (status, body, headers)."""
        ...

NODE_INFO = Gauge("vecdb_node_info", "1 for each role this process serves, labelled with its node id",
                  ["role", "node_id"])


def start_http(host: str, port: int, health: Health, role: str = "standalone",
               node_id: str = "standalone", tls: TlsSettings | None = None,
               rest: Callable[[], RestHandler | None] | None = None) -> ThreadingHTTPServer:
    """Serve /healthz and /metrics on ``host:port`` in a daemon thread; ``shutdown()`` stops it.
    Over TLS when ``tls.mode`` is 1 or 2 (mode 2: only to clients with a certificate signed by its CA),
    as the Milvus API port (``vecdb.security.tls``). ``rest()`` is the Milvus REST API to serve on POST, once
    the role has one (None before)."""

    class Handler(BaseHTTPRequestHandler):
        _head = False  # answering a HEAD: GET's status and headers are sent, its body is not

        def do_GET(self):  # noqa: N802 - http.server API
            if self.path.startswith("/healthz"):
                ok, text = _ask(health)
                self._send(200 if ok else 503, text.encode(), "text/plain; charset=utf-8")
            elif self.path.startswith("/metrics"):
                self._send(200, exposition(), CONTENT_TYPE_LATEST)
            elif self.path.split("?", 1)[0] == "/webui" or self.path.startswith("/webui/"):
                api = rest() if rest is not None else None  # the admin web UI, beside the REST API
                if api is None:
                    self._send(404, b"not found", "text/plain")
                    return
                code, body, headers = api.handle_get(self.path, self.headers)
                self._send(code, body, headers.pop("Content-Type", "text/plain"), headers)
            else:
                self._send(404, b"not found", "text/plain")

        def do_HEAD(self):  # noqa: N802 - http.server API: GET's status and headers, no body
            self._head = True
            try:
                self.do_GET()
            finally:
                self._head = False

        def do_POST(self):  # noqa: N802 - http.server API
            api = rest() if rest is not None else None  # the Milvus REST API, where this role serves one
            if api is None or not self.path.startswith("/v2/"):
                self._send(404, b"not found", "text/plain")
                return
            origin = self.headers.get("Origin")
            if origin and urlsplit(origin).netloc.lower() != (self.headers.get("Host") or "").lower():
                # a browser posting for a page of another site (a form's text/plain body needs no preflight)
                self._send(403, json.dumps({"code": 65535, "message": f"cross-origin request refused: Origin "
                                                                      f"{origin} is not this server"}).encode(),
                           "application/json")
                return
            try:
                body = self._body()
            except _BodyTooLarge as e:  # refused unread; the connection closes (HTTP/1.0)
                self._send(413, json.dumps({"code": errors.ParameterTooLarge.code, "message": str(e)}).encode(),
                           "application/json")
                return
            except ValueError as e:  # a Content-Length or chunk size that is no number
                self._send(400, f"{e}".encode(), "text/plain")
                return
            status, reply = api.handle_bytes(self.path.split("?", 1)[0], body, self.headers)
            self._send(status, reply, "application/json")

        def do_OPTIONS(self):  # noqa: N802 - http.server API: a browser's CORS preflight of a REST call
            if rest is None or rest() is None or not self.path.startswith("/v2/"):
                self._send(404, b"not found", "text/plain")
                return
            self._send(204, b"", "text/plain")  # no Access-Control-Allow-*: the browser refuses other origins

        def _body(self) -> bytes:
            """The request's body: ``Content-Length`` bytes, or a chunked one's chunks (as Go's server reads it);
            ``_BodyTooLarge`` past ``MAX_BODY_BYTES``, ValueError for a length that is no number."""
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                text = (self.headers.get("Content-Length") or "0").strip()
                if not (text.isascii() and text.isdigit()):
                    raise ValueError(f"invalid Content-Length {text!r}")
                _check_size(int(text))
                return self.rfile.read(int(text))
            chunks, total = [], 0
            while size := _chunk_size(self.rfile.readline()):
                total += size
                _check_size(total)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the chunk's CRLF
            while self.rfile.readline().strip():  # trailer lines, up to the empty one
                pass
            return b"".join(chunks)

        def _not_found(self):  # other methods: 404, as Milvus's router answers them (not http.server's 501)
            self._send(404, b"not found", "text/plain")

        do_PUT = do_DELETE = do_PATCH = _not_found  # noqa: N815 - http.server API

        def _send(self, code, body, ctype, headers: dict[str, str] | None = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not self._head:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        # http.server listens on IPv4 only: an IPv6 host (``::``, ``[::]``) takes a server of that family
        family = startup.address_family(host, port)
        address = (host.strip("[]"), port)
        if tls_enabled(tls):
            assert tls is not None
            server: ThreadingHTTPServer = _of_family(TlsHTTPServer, family)(address, Handler, certificate_files(tls))
        else:
            server = _of_family(ThreadingHTTPServer, family)(address, Handler)
    except OSError as e:  # port in use, address not available: said in one line (vecdb.startup)
        raise startup.cannot_listen(host, port, startup.HTTP_FULL if rest is not None else startup.HTTP_PROBES,
                                    e) from e
    server.daemon_threads = True
    NODE_INFO.labels(role, node_id).set(1)
    threading.Thread(target=server.serve_forever, name=f"http-{role}", daemon=True).start()
    return server


def _check_size(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise _BodyTooLarge(f"request body of {size} bytes exceeds the limit of {MAX_BODY_BYTES} bytes; "
                            f"split the request")


def _chunk_size(line: bytes) -> int:
    """The size a chunked body's chunk line gives (hex; extensions after ``;`` ignored)."""
    text = line.split(b";", 1)[0].strip() or b"0"
    try:
        size = int(text, 16)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError("malformed chunked encoding")
    return size


def _of_family(cls: type[_Server], family: socket.AddressFamily) -> type[_Server]:
    """A subclass of ``cls`` listening on ``family`` with a backlog of ``BACKLOG`` (socketserver takes both
    from the class)."""
    return cast("type[_Server]", type(cls.__name__, (cls,), {"address_family": family,
                                                             "request_queue_size": BACKLOG}))


def _ask(health: Health) -> tuple[bool, str]:
    """The role's answer; a health check that fails is an unhealthy role, not a 500."""
    try:
        return health()
    except Exception as e:  # noqa: BLE001 - reported as the reason
        return False, f"health check failed: {type(e).__name__}: {e}"

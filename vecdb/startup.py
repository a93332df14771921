"""The known reasons a server cannot start, said in one line.

A port another process listens on, a data directory another vecdb holds, a cluster secret the coord
refuses: the role raises ``StartupFailed`` with what failed and why ("cannot listen on
127.0.0.1:19530 (gRPC): address already in use"), having closed what it had opened, and ``vecdb``
prints ``vecdb: <message>`` on stderr and exits 1 (``vecdb.cli``). Anything else keeps its traceback:
an unexpected exception is a bug to report, not a setting to fix.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from vecdb.errors import DirectoryInUse

log = logging.getLogger(__name__)

# what a port serves, in the messages
GRPC = "gRPC"
INTERNAL_GRPC = "internal gRPC"
HTTP_FULL = "HTTP: REST, /metrics, /healthz, /webui"  # a standalone's, a proxy's, a node's
HTTP_PROBES = "HTTP: /healthz, /metrics"  # the coord's, a query node's, a data node's


class StartupFailed(Exception):
    """A server could not start for a reason its message says in full (no traceback needed)."""


def cannot_listen(host: str, port: int, serves: str, error: OSError | None = None) -> StartupFailed:
    """``host:port`` (serving ``serves``) could not be listened on. gRPC says only that binding failed
    (a RuntimeError): without ``error``, the reason is asked of the system by binding the address once."""
    reason = _reason(error) if error is not None else (_bind_reason(host, port) or "the address could not be bound")
    return StartupFailed(f"cannot listen on {host_port(host, port)} ({serves}): {reason}")


def check_free(host: str, port: int, serves: str) -> None:
    """``StartupFailed`` if ``host:port`` cannot be listened on now. Asked before a gRPC server binds it:
    gRPC's core logs its own error lines to stderr before it raises. Port 0 (any free one): nothing to ask."""
    if port:
        reason = _bind_reason(host, port)
        if reason is not None:
            raise StartupFailed(f"cannot listen on {host_port(host, port)} ({serves}): {reason}")


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC and URLs take it: an IPv6 address in brackets (``[::]:19530``, ``[::1]:19530``;
    ``:::19530`` is a misformatted name to gRPC)."""
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{host}:{port}"


def address_family(host: str, port: int = 0) -> socket.AddressFamily:
    """The socket family to listen on ``host`` with: IPv6 for an IPv6 address (``::``, ``[::]``, ``::1``),
    IPv4 for "" (every IPv4 address, as http.server binds it) and for a name with an IPv4 address (as
    before: ``localhost`` stays 127.0.0.1), IPv6 for a name with IPv6 addresses only. A name that does not
    resolve: ``OSError`` (``socket.gaierror``), which ``cannot_listen`` words."""
    bare = host.strip("[]")
    if ":" in bare:
        return socket.AF_INET6
    if not bare:
        return socket.AF_INET
    families = {info[0] for info in socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)}
    return socket.AF_INET6 if families == {socket.AF_INET6} else socket.AF_INET


def _reason(error: OSError) -> str:
    if isinstance(error, socket.gaierror) or error.errno is None:  # a getaddrinfo code is no errno
        text = error.strerror or str(error)
    else:
        text = os.strerror(error.errno)
    return text[:1].lower() + text[1:]


def _bind_reason(host: str, port: int) -> str | None:
    """Why binding ``host:port`` fails now, None if it does not: as gRPC, listening on every address
    the host resolves to, succeeds when one of them binds. With SO_REUSEADDR, as gRPC and http.server
    bind: a port whose last connections are still in TIME_WAIT is free to them."""
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:  # a name that does not resolve: said before gRPC logs its own lines
        return _reason(e)
    except OSError:
        return None
    reasons = []
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
                return None
            except OSError as e:
                reasons.append(_reason(e))
    return reasons[0] if reasons else None


@contextmanager
def data_dir(path: str) -> Iterator[None]:
    """Opening the local stores under ``path`` (``--data-dir``): another process holding one of them
    (``DirectoryInUse``) is a ``StartupFailed`` naming the data directory."""
    try:
        yield
    except DirectoryInUse as e:
        raise StartupFailed(f"data directory {path} is in use by another vecdb process") from e


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit, as Go's runtime does for every
    Milvus process. Each WAL channel (one per shard of each collection) keeps its active file open, so
    under the usual soft limit of 1,024 a standalone server with a thousand or so collections could not
    start again ("Too many open files" while opening the log). A limit that cannot be raised is left as
    it is (logged): the server starts and fails only where it runs out."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:  # an unlimited hard limit the kernel refuses as a soft one (nr_open)
        log.info("open files limit stays at %d (cannot raise it to %d: %s)", soft, hard, e)

"""Serving and calling internal RPC methods over gRPC (see the package docstring)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from vecdb import errors
from vecdb.rpc.codec import pack, unpack

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 512 << 20
_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]

# A handler takes (meta, arrays) and returns (meta, arrays), or just meta.
Handler = Callable[[dict, dict[str, np.ndarray]], object]


def _identity(b: bytes) -> bytes:
    return b


def _wrap(name: str, fn: Handler):
    def unary(request: bytes, context) -> bytes:
        try:
            meta, arrays = unpack(request)
            out = fn(meta, arrays)
            if isinstance(out, tuple):
                return pack({"ok": out[0]}, out[1])
            return pack({"ok": out})
        except errors.VecdbError as e:
            return pack({"error": {"type": type(e).__name__, "message": e.message}})
        except Exception as e:  # a bug: say so to the caller, keep the server up
            log.exception("internal RPC %s failed", name)
            return pack({"error": {"type": "InternalError", "message": f"{name}: {type(e).__name__}: {e}"}})

    return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=_identity, response_serializer=_identity)


def serve(service: str, handlers: dict[str, Handler], host: str = "127.0.0.1", port: int = 0,
          workers: int = 8) -> tuple[grpc.Server, int]:
    """Start a gRPC server for ``service`` (e.g. "coord") with one method per handler; returns
    (server, bound port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"rpc-{service}"),
                         options=_OPTIONS)
    generic = grpc.method_handlers_generic_handler(
        f"vecdb.{service}", {name: _wrap(name, fn) for name, fn in handlers.items()})
    server.add_generic_rpc_handlers((generic,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (address in use?)")
    server.start()
    return server, bound


class Client:
    """Calls one service at ``address`` ("host:port"). Thread-safe; one channel, reused."""

    def __init__(self, address: str, service: str, timeout: float = 30.0):
        self.address, self.service, self.timeout = address, service, timeout
        # reconnect quickly to a peer that restarted (gRPC's default backoff grows to 2 minutes)
        self._channel = grpc.insecure_channel(address, options=_OPTIONS + [
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000)])
        self._methods: dict[str, Callable] = {}
        self._lock = threading.Lock()

    def _method(self, name: str):
        with self._lock:
            m = self._methods.get(name)
            if m is None:
                m = self._methods[name] = self._channel.unary_unary(
                    f"/vecdb.{self.service}/{name}", request_serializer=_identity, response_deserializer=_identity)
            return m

    def call(self, name: str, meta: dict | None = None, arrays: dict | None = None,
             timeout: float | None = None) -> tuple[Any, dict[str, np.ndarray]]:
        """Returns (the handler's meta result, its arrays); re-raises the handler's VecdbError. The
        result is what the handler returned, decoded (JSON-like values): typed by its caller."""
        try:
            reply = self._method(name)(pack(meta, arrays), timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            # CANCELLED: the server stopped during the call (these clients never cancel one themselves),
            # so another server, or this one once back, may answer: retriable as unreachable is
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                raise errors.ServiceUnavailable(f"{self.service} at {self.address}: {e.details()}") from e
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise errors.Unimplemented(f"{self.service} at {self.address} has no method {name}") from e
            raise errors.InternalError(f"{self.service}.{name}: {code.name}: {e.details()}") from e
        out, arrays = unpack(reply)
        err = out.get("error")
        if err is not None:
            cls = getattr(errors, err.get("type", ""), None)
            if not (isinstance(cls, type) and issubclass(cls, errors.VecdbError)):
                cls = errors.InternalError
            raise cls(err.get("message"))
        return out.get("ok"), arrays

    def close(self) -> None:
        self._channel.close()

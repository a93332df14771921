"""Serving and calling vecdb's internal gRPC services (see the package docstring)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message
from prometheus_client import Counter

from vecdb import errors, startup
from vecdb.config import TlsSettings
from vecdb.rpc.gen import coord_pb2, coord_pb2_grpc, querynode_pb2, querynode_pb2_grpc, storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 512 << 20
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
           ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
# reconnect quickly to a peer that restarted (gRPC's default backoff grows to 2 minutes)
_CLIENT_OPTIONS = OPTIONS + [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                             ("grpc.max_reconnect_backoff_ms", 2000)]
# the trailing metadata key naming the vecdb error class a call ended with (proto/common.proto)
ERROR_KEY = "vecdb-error"

# the call metadata key carrying the cluster credential (a digest of the cluster secret, never the secret)
SECRET_KEY = "vecdb-cluster-credential"
REFUSED = Counter("vecdb_internal_rpc_refused_total", "Internal RPC calls refused for a missing or wrong cluster "
                  "credential, by service", ["service"])
_process_secret = ""  # the process's cluster secret: use_cluster_secret()


class InternalTls:
    """Mutual TLS on internal RPC (``tls.internal``): the credentials, checked at start and following the
    files (a rotated certificate reaches new connections, served and made, without a restart)."""

    def __init__(self, tls: TlsSettings):
        from vecdb.security.tls import internal_credentials

        self.server, self._channel = internal_credentials(tls)
        self.options = [("grpc.ssl_target_name_override", tls.internal_server_name)] if tls.internal_server_name \
            else []


    @property
    def channel(self) -> grpc.ChannelCredentials:
        """The credentials of a new channel: the certificate files as they are now (rotated ones too)."""
        return self._channel()


_process_tls: InternalTls | None = None  # the process's: use_internal_tls()


def use_internal_tls(tls: TlsSettings | None) -> None:
    """Serve and call internal RPC over mutual TLS when ``tls.internal`` is on (set once at start, as
    ``use_cluster_secret``); a bad certificate setting raises ``TlsConfigError`` here."""
    global _process_tls
    _process_tls = InternalTls(tls) if tls is not None and tls.internal else None


def listen(server: grpc.Server, address: str, tls: InternalTls | None = None, service: str = "") -> int:
    """``server`` listening on ``address`` (``host:port``): over mutual TLS with ``tls`` (else the process's),
    else plain. Returns the bound port; ``vecdb.startup.StartupFailed`` naming the port (and ``service``)
    when it cannot be bound, asked first so that gRPC's core does not log its own error lines."""
    tls = tls or _process_tls
    host, _, port = address.rpartition(":")
    serves = f"{startup.INTERNAL_GRPC}, {service}" if service else startup.INTERNAL_GRPC
    startup.check_free(host, int(port), serves)
    try:
        bound = server.add_secure_port(address, tls.server) if tls is not None else server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind" (older versions return 0)
        bound = 0
    if bound == 0:
        raise startup.cannot_listen(host, int(port), serves)
    return bound


def use_cluster_secret(secret: str) -> None:
    """The cluster secret this process's internal servers require and its clients send, unless one
    is given to ``serve``/``Client`` ("" = none: unauthenticated internal RPC). Set once at start
    (``vecdb.process.NodeProcess``, ``vecdb coord``)."""
    global _process_secret
    _process_secret = secret


def _credential(secret: str) -> str:
    """What a call carries for ``secret``: a digest (ASCII whatever the secret's characters, and the
    secret itself never on the wire)."""
    return hashlib.sha256(b"vecdb-cluster-secret\0" + secret.encode()).hexdigest()


def _refuse(request, context: grpc.ServicerContext):
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "internal RPC refused: missing or wrong cluster credential")


class ClusterSecretCheck(grpc.ServerInterceptor):
    """Refuses every call without the cluster credential (UNAUTHENTICATED, before any handler runs)."""

    def __init__(self, secret: str, service: str):
        self._expected = _credential(secret).encode()
        self._service = service
        self._refused: grpc.RpcMethodHandler = grpc.unary_unary_rpc_method_handler(_refuse)

    def intercept_service(self, continuation, handler_call_details):
        sent = next((v for k, v in handler_call_details.invocation_metadata or () if k == SECRET_KEY), None)
        if sent is not None and hmac.compare_digest(sent.encode() if isinstance(sent, str) else sent,
                                                    self._expected):
            return continuation(handler_call_details)
        REFUSED.labels(self._service).inc()
        return self._refused


def server_interceptors(service: str, secret: str | None = None) -> list[grpc.ServerInterceptor]:
    """The interceptors of an internal server: the cluster secret's check when there is a secret
    (``secret``, else the process's)."""
    secret = _process_secret if secret is None else secret
    return [ClusterSecretCheck(secret, service)] if secret else []


# the internal services: name -> (the generated stub, the service's descriptor)
SERVICES: dict[str, tuple[Callable[[grpc.Channel], Any], Any]] = {
    "coord": (coord_pb2_grpc.CoordStub, coord_pb2.DESCRIPTOR.services_by_name["Coord"]),
    "querynode": (querynode_pb2_grpc.QueryNodeStub, querynode_pb2.DESCRIPTOR.services_by_name["QueryNode"]),
    "storage": (storage_pb2_grpc.StorageStub, storage_pb2.DESCRIPTOR.services_by_name["Storage"]),
}


def _status(e: errors.VecdbError) -> grpc.StatusCode:
    if e.retriable:
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(e, errors.Unimplemented):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(e, errors.InternalError):
        return grpc.StatusCode.INTERNAL
    if e.input_error:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.UNKNOWN


def _abort(context: grpc.ServicerContext, e: errors.VecdbError) -> None:
    context.set_trailing_metadata(((ERROR_KEY, type(e).__name__),))
    context.abort(_status(e), e.message)


def _guarded(name: str, fn: Callable[[Any, grpc.ServicerContext], Any]):
    """``fn`` ending a call whose handler raised with the error's status, message and class name;
    a bug (any other exception) is an InternalError naming it, and the server keeps serving."""

    def unary(request, context):
        try:
            return fn(request, context)
        except errors.VecdbError as e:
            _abort(context, e)
        except NotImplementedError:  # the generated servicer's default for a method not served
            _abort(context, errors.Unimplemented(f"method {name} is not served here"))
        except Exception as e:
            log.exception("internal RPC %s failed", name)
            _abort(context, errors.InternalError(f"{name}: {type(e).__name__}: {e}"))

    return unary


def _serialize(reply: Message | bytes) -> bytes:
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


def serve(service: str, servicer: object, host: str = "127.0.0.1", port: int = 0,
          workers: int = 8, secret: str | None = None, tls: InternalTls | None = None) -> tuple[grpc.Server, int]:
    """Start a gRPC server for the internal service ``service`` ("coord", "querynode"):
    ``servicer`` has a method per RPC of its .proto (``def Search(request, context) -> reply``;
    the generated ``<Service>Servicer`` is a base that answers UNIMPLEMENTED for the others). A
    reply may also be its message already encoded (bytes: ``vecdb.rpc.columns``). A ``VecdbError``
    a method raises reaches the caller as the same class and message. Returns (server, bound port).

    The methods are registered from the service's descriptor, as the generated
    ``add_<Service>Servicer_to_server`` would, but with these errors and encoded replies. With a
    cluster secret (``secret``, else the process's: ``use_cluster_secret``), a call without its
    credential is refused with UNAUTHENTICATED. Over mutual TLS with ``tls`` (else the process's:
    ``use_internal_tls``), when there is one."""
    if service not in SERVICES:
        raise ValueError(f"no internal service {service!r} (one of {sorted(SERVICES)})")
    descriptor = SERVICES[service][1]
    handlers = {
        m.name: grpc.unary_unary_rpc_method_handler(
            _guarded(m.name, getattr(servicer, m.name)),
            request_deserializer=message_factory.GetMessageClass(m.input_type).FromString,
            response_serializer=_serialize)
        for m in descriptor.methods}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"rpc-{service}"),
                         options=OPTIONS, interceptors=server_interceptors(service, secret))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    bound = listen(server, startup.host_port(host, port), tls, service)
    server.start()
    return server, bound


class PendingCall:
    """A call in flight (``Client.start``)."""

    def __init__(self, client: Client, method: str, future) -> None:
        self._client, self._method, self._future = client, method, future

    def result(self) -> Any:
        """The reply; None once ``cancel()`` ended the call; else raises as ``Client.invoke`` does."""
        try:
            return self._future.result()
        except grpc.FutureCancelledError:
            return None
        except grpc.RpcError as e:
            if self._future.cancelled():
                return None
            raise self._client._error(self._method, e) from None

    def cancel(self) -> None:
        self._future.cancel()


def set_fields(message: Message) -> dict[str, Any]:
    """The fields set in ``message`` (those with presence, and proto3 scalars that are not zero)."""
    return {f.name: v for f, v in message.ListFields()}


class Client:
    """Calls the internal service ``service`` ("coord", "querynode") at ``address`` ("host:port")
    through its generated stub. Thread-safe; one channel, reused. Every call carries the cluster
    credential when there is a secret (``secret``, else the process's), over mutual TLS when there is
    an ``InternalTls`` (``tls``, else the process's)."""

    def __init__(self, address: str, service: str, timeout: float = 30.0, secret: str | None = None,
                 tls: InternalTls | None = None):
        if service not in SERVICES:
            raise ValueError(f"no internal service {service!r} (one of {sorted(SERVICES)})")
        self.address, self.service, self.timeout = address, service, timeout
        stub, self._descriptor = SERVICES[service]
        tls = tls or _process_tls
        self._channel = grpc.insecure_channel(address, options=_CLIENT_OPTIONS) if tls is None else \
            grpc.secure_channel(address, tls.channel, options=_CLIENT_OPTIONS + tls.options)
        self.stub = stub(self._channel)
        self._encoded: dict[str, Callable] = {}
        self._lock = threading.Lock()
        self._closed = False  # close() was called: a call then raises ServiceUnavailable
        secret = _process_secret if secret is None else secret
        self._metadata = ((SECRET_KEY, _credential(secret)),) if secret else None

    def invoke(self, method: str, request: Message, timeout: float | None = None,
               alive: Callable[[], bool] | None = None, every: float = 1.0) -> Any:
        """The reply of ``method`` to ``request`` (the generated messages); re-raises the handler's
        VecdbError; ServiceUnavailable when the server cannot be reached, stopped during the call
        or did not answer in time. ``alive`` (a long call): asked every ``every`` seconds, the call is
        given up (cancelled; ServiceUnavailable) once it says the server is gone (its session ended):
        a server that hangs without closing the connection (SIGSTOP, a cut network) would hold the
        call its whole timeout."""
        fn = getattr(self.stub, method, None)
        if fn is None:
            raise errors.Unimplemented(f"{self.service} has no method {method}")
        try:
            if alive is None:
                return fn(request, timeout=timeout or self.timeout, metadata=self._metadata)
            future = fn.future(request, timeout=timeout or self.timeout, metadata=self._metadata)
            while True:
                try:
                    return future.result(timeout=every)
                except grpc.FutureTimeoutError:
                    if not alive():
                        future.cancel()
                        raise errors.ServiceUnavailable(f"{self.service} at {self.address}: {method} given up, "
                                                        "the server's session ended during it") from None
        except grpc.RpcError as e:
            raise self._error(method, e) from None
        except ValueError as e:  # "Cannot invoke RPC on closed channel!": closed as its server left
            if not self._closed:
                raise
            raise errors.ServiceUnavailable(f"{self.service} at {self.address}: client closed") from e

    def start(self, method: str, request: Message, timeout: float | None = None) -> PendingCall:
        """``method`` called without waiting for its reply: ``result()`` is ``invoke``'s, and
        ``cancel()`` ends the call on both sides (a long poll given up early: its server's handler
        hears it through ``context.add_callback``)."""
        fn = getattr(self.stub, method, None)
        if fn is None:
            raise errors.Unimplemented(f"{self.service} has no method {method}")
        try:
            return PendingCall(self, method, fn.future(request, timeout=timeout or self.timeout,
                                                       metadata=self._metadata))
        except ValueError as e:  # "Cannot invoke RPC on closed channel!"
            if not self._closed:
                raise
            raise errors.ServiceUnavailable(f"{self.service} at {self.address}: client closed") from e

    def invoke_encoded(self, method: str, request: Message, timeout: float | None = None) -> bytes:
        """As ``invoke``, with the reply as it came, encoded (read it with ``vecdb.rpc.columns``:
        its arrays are then views of these bytes, where ``FromString`` would copy each)."""
        with self._lock:
            fn = self._encoded.get(method)
            if fn is None:
                if method not in self._descriptor.methods_by_name:
                    raise errors.Unimplemented(f"{self.service} has no method {method}")
                fn = self._encoded[method] = self._channel.unary_unary(
                    f"/{self._descriptor.full_name}/{method}", request_serializer=_serialize)
        try:
            return fn(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(method, e) from None
        except ValueError as e:  # "Cannot invoke RPC on closed channel!": closed as its server left
            if not self._closed:
                raise
            raise errors.ServiceUnavailable(f"{self.service} at {self.address}: client closed") from e

    def _error(self, method: str, e: grpc.RpcError) -> errors.VecdbError:
        code, details = e.code(), e.details()
        sent = next((m.value for m in e.trailing_metadata() or () if m.key == ERROR_KEY), None)
        if sent is not None:
            cls = getattr(errors, sent if isinstance(sent, str) else sent.decode(), None)
            if not (isinstance(cls, type) and issubclass(cls, errors.VecdbError)):
                cls = errors.InternalError
            return cls(details)
        # CANCELLED: the server stopped during the call, or this client was closed (its server left),
        # so another server, or this one once back, may answer: retriable as unreachable is
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return errors.ServiceUnavailable(f"{self.service} at {self.address}: {details}")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return errors.Unimplemented(f"{self.service} at {self.address} has no method {method}")
        if code == grpc.StatusCode.UNAUTHENTICATED:  # this process's cluster secret is not the server's
            return errors.CredentialRefused(f"{self.service} at {self.address} refused {method}: {details} "
                                        f"(security.cluster_secret must be the same in every process)")
        return errors.InternalError(f"{self.service}.{method}: {code.name}: {details}")

    def call(self, method: str, msg: dict | None = None, arrays: dict | None = None,
             timeout: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``invoke`` with the request and reply as dicts of their fields, for methods of scalar
        fields (the coord's): ``call("AllocTimestamp", {"count": 2})[0]["ts"]``. A field the request
        has not, or a value of the wrong type, is InvalidParameter. No method takes ``arrays``; the
        second value is always empty (the shape of the calls before the typed services)."""
        if arrays:
            raise errors.InvalidParameter(f"{self.service}.{method} takes no arrays")
        desc = self._descriptor.methods_by_name.get(method)
        if desc is None:
            raise errors.Unimplemented(f"{self.service} has no method {method}")
        request = message_factory.GetMessageClass(desc.input_type)()
        try:
            json_format.ParseDict(msg or {}, request)
        except json_format.ParseError as e:
            raise errors.InvalidParameter(f"{self.service}.{method}: {e}") from None
        reply = self.invoke(method, request, timeout)
        return {f.name: getattr(reply, f.name) for f in reply.DESCRIPTOR.fields}, {}

    def close(self) -> None:
        self._closed = True
        self._channel.close()

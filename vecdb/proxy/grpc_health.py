"""gRPC's health checking protocol (``grpc.health.v1.Health``) on the Milvus API port, as Milvus's proxy
registers it beside the MilvusService (``grpc_health_v1.RegisterHealthServer``).

What asks it: Kubernetes' ``grpc:`` probes, ``grpc_health_probe``, Envoy's and cloud load balancers' gRPC
health checks; without it they got UNIMPLEMENTED and counted the server down. The answer is the role's
``/healthz`` (``vecdb.http``): SERVING while that says 200, NOT_SERVING while it says 503 (starting,
stopping, session lost). As Milvus's, ``Check`` ignores the service name, and ``Watch`` sends the status
once and ends. Like ``/healthz`` it needs no credential with authentication on (``AuthInterceptor`` passes
it): a probe has none, and it tells nothing but whether the server serves.

The two messages are one field each (``HealthCheckRequest {string service = 1}``, ``HealthCheckResponse
{ServingStatus status = 1}``), written here by hand: the generated module is in grpcio-health-checking,
which vecdb does not depend on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc

SERVICE = "grpc.health.v1.Health"
SERVING, NOT_SERVING = 1, 2

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, str]]


def response(status: int) -> bytes:
    """A serialized ``HealthCheckResponse`` (field 1, varint)."""
    return bytes((0x08, status))


def _status(health: Health) -> int:
    try:
        ok, _ = health()
    except Exception:  # noqa: BLE001 - a health check that fails is a server not serving
        log.exception("the gRPC health check failed")
        ok = False
    return SERVING if ok else NOT_SERVING


def handler(health: Health) -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health``'s Check and Watch over ``health`` (a role's /healthz answer)."""

    def check(request: bytes, context) -> bytes:
        return response(_status(health))

    def watch(request: bytes, context) -> Iterator[bytes]:
        yield response(_status(health))

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Check": grpc.unary_unary_rpc_method_handler(check),
        "Watch": grpc.unary_stream_rpc_method_handler(watch),
    })

"""gRPC's health checking protocol (``grpc.health.v1.Health``) on the Milvus API port, as Milvus's proxy
serves it: Kubernetes' ``grpc:`` probes, grpc_health_probe and load balancers ask it. vecdb answered
UNIMPLEMENTED. Now Check and Watch answer the role's /healthz: SERVING while ready, NOT_SERVING while
starting or stopping, and with authentication on a probe needs no credential (as /healthz)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from tests.conftest import free_port
from vecdb.config import Settings
from vecdb.proxy import grpc_health
from vecdb.standalone import Standalone

SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


def _check(port: int, service: str = "") -> bytes:
    request = b"\x0a" + bytes((len(service),)) + service.encode() if service else b""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return channel.unary_unary(f"/{grpc_health.SERVICE}/Check")(request, timeout=10)


def _watch(port: int) -> list[bytes]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return list(channel.unary_stream(f"/{grpc_health.SERVICE}/Watch")(b"", timeout=10))


@pytest.mark.parametrize("auth", [False, True])
def test_a_standalone_answers_serving_without_a_credential(tmp_path, auth):
    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    settings.proxy.port, settings.http.port = free_port(), 0
    settings.security.authorization_enabled = auth
    node = Standalone(settings).start()
    try:
        assert _check(node.port) == SERVING
        assert _check(node.port, "milvus.proto.milvus.MilvusService") == SERVING  # (the name is not looked at)
        assert _watch(node.port) == [SERVING]
        with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:  # the Milvus API itself still asks one
            call = channel.unary_unary("/milvus.proto.milvus.MilvusService/ListDatabases")
            if auth:
                with pytest.raises(grpc.RpcError) as refused:
                    call(b"", timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            else:
                assert call(b"", timeout=10)
    finally:
        node.stop()


@pytest.mark.parametrize("health", [lambda: (False, "starting"), lambda: 1 / 0], ids=["unready", "raising"])
def test_an_unready_or_failing_health_is_not_serving(health):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc_health.handler(health),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        assert _check(port) == NOT_SERVING
        assert _watch(port) == [NOT_SERVING]
    finally:
        server.stop(0)

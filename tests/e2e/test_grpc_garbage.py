"""Bytes that are no request at all: grpc rejects them before vecdb's handlers run.

Each must get a gRPC error (grpc's own INTERNAL for undecodable bytes, UNIMPLEMENTED for a
method vecdb does not serve), be counted in ``vecdb_grpc_bad_requests_total``, and be logged
once per kind, not with a traceback per request; the server keeps answering.
"""

from __future__ import annotations

import logging

import grpc
import pytest
from prometheus_client import REGISTRY
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from tests.conftest import start_standalone
from vecdb.proxy.server import BAD_REQUEST_LOG

SERVICE = "/milvus.proto.milvus.MilvusService/"
SENT = 40  # of each kind


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    server = start_standalone(tmp_path_factory.mktemp("garbage"))
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield ch
    ch.close()
    server.stop()


def rejected(error: str, request: str) -> float:
    return REGISTRY.get_sample_value("vecdb_grpc_bad_requests_total", {"error": error, "request": request}) or 0.0


def grpc_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("grpc")]


def send_raw(channel, method: str, payload: bytes) -> grpc.RpcError:
    call = channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(payload, timeout=10)
    return info.value


def assert_serving(channel) -> None:
    """The server still answers a health check and a plain request."""
    stub = milvus_pb2_grpc.MilvusServiceStub(channel)
    health = stub.CheckHealth(milvus_pb2.CheckHealthRequest(), timeout=10)
    assert health.status.code == 0 and health.isHealthy
    has = stub.HasCollection(milvus_pb2.HasCollectionRequest(collection_name="nope"), timeout=10)
    assert has.status.code == 0 and has.value is False


@pytest.mark.parametrize("payload", [
    pytest.param(b"\xff\xfe\xfd\xfc" * 8, id="corrupt-wire-format"),
    # field 3 (collection_name), 2 bytes that are no UTF-8
    pytest.param(b"\x1a\x02\xc3\x28", id="invalid-utf8-string"),
])
def test_undecodable_requests_are_counted_and_logged_once(channel, caplog, payload):
    BAD_REQUEST_LOG.forget()
    before = rejected("DecodeError", "InsertRequest")
    caplog.set_level(logging.WARNING)
    for _ in range(SENT):
        err = send_raw(channel, "Insert", payload)
        assert err.code() == grpc.StatusCode.INTERNAL, err
    assert rejected("DecodeError", "InsertRequest") - before == SENT
    lines = grpc_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "DecodeError" in lines[0].getMessage() and "InsertRequest" in lines[0].getMessage()
    assert_serving(channel)


def test_each_kind_is_logged_once(channel, caplog):
    """Two request types each get their line; repeats of either get none."""
    BAD_REQUEST_LOG.forget()
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        for method in ("Search", "Query"):
            assert send_raw(channel, method, b"\xff" * 16).code() == grpc.StatusCode.INTERNAL
    assert sorted(r.args[2] for r in grpc_lines(caplog)) == ["QueryRequest", "SearchRequest"]
    assert_serving(channel)


def test_unimplemented_method_is_counted_and_logged_once(channel, caplog):
    """A Milvus method vecdb does not serve answers UNIMPLEMENTED; grpc's traceback per call
    becomes one line."""
    BAD_REQUEST_LOG.forget()
    before = rejected("NotImplementedError", "ListRowPolicies")
    caplog.set_level(logging.WARNING)
    for _ in range(SENT):
        err = send_raw(channel, "ListRowPolicies", b"")
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED, err
    assert rejected("NotImplementedError", "ListRowPolicies") - before == SENT
    lines = grpc_lines(caplog)
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]
    assert_serving(channel)


def test_unknown_method_is_rejected_quietly(channel, caplog):
    """A method no service has never reaches a handler: UNIMPLEMENTED, nothing logged."""
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert send_raw(channel, "NoSuchMethod", b"\xff\xfe").code() == grpc.StatusCode.UNIMPLEMENTED
    assert grpc_lines(caplog) == []
    assert_serving(channel)

"""The one place where exceptions become Milvus Status messages.

Fills both the legacy ``error_code`` enum and the 2.3+ ``code`` field, so old and
new pymilvus clients raise a MilvusException with the right code and message.
Unknown exceptions become code 65535 ("unexpected error"), are logged and counted
(``vecdb_unexpected_errors_total``): bad input must come back as a Milvus error with
its own code, so a 65535 is always a bug, and the test suite fails on any.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from pymilvus.grpc_gen import common_pb2

from vecdb import errors

log = logging.getLogger(__name__)

UNEXPECTED_CODE = 65535

UNEXPECTED = Counter("vecdb_unexpected_errors_total",
                     "Errors answered with code 65535 (a bug: not a Milvus error), by exception type", ["exception"])

_SUCCESS = common_pb2.Status(error_code=common_pb2.Success, code=0, reason="")


def success() -> common_pb2.Status:
    return common_pb2.Status(error_code=common_pb2.Success, code=0)


def unexpected_errors() -> dict[str, int]:
    """How many replies carried code 65535 in this process so far, by exception type (the
    tests' tripwire)."""
    return {sample.labels["exception"]: int(sample.value) for metric in UNEXPECTED.collect()
            for sample in metric.samples if sample.name.endswith("_total")}


def _sendable(text: str) -> str:
    """``text`` as protobuf can encode it. An error message may quote the request, and a
    request's escapes (``"\\ud800"`` in an expression) can decode to lone surrogates, which
    are no UTF-8: building the Status would raise and the client get gRPC UNKNOWN instead."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def from_exception(exc: BaseException) -> common_pb2.Status:
    if isinstance(exc, errors.VecdbError) and exc.code != UNEXPECTED_CODE:
        message = _sendable(exc.message)
        return common_pb2.Status(
            error_code=common_pb2.ErrorCode.Value(exc.legacy_code),
            code=exc.code,
            reason=message,
            detail=message,
            retriable=exc.retriable,
        )
    # not a Milvus error, or the bare VecdbError base (which carries no code of its own)
    UNEXPECTED.labels(type(exc).__name__).inc()
    log.exception("unexpected error", exc_info=exc)
    msg = _sendable(f"unexpected error: {type(exc).__name__}: {exc}")
    return common_pb2.Status(error_code=common_pb2.UnexpectedError, code=UNEXPECTED_CODE, reason=msg, detail=msg)

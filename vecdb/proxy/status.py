"""The one place where exceptions become Milvus Status messages.

Fills both the legacy ``error_code`` enum and the 2.3+ ``code`` field, so old and
new pymilvus clients raise a MilvusException with the right code and message.
Unknown exceptions become code 65535 ("unexpected error") and are logged.
"""

from __future__ import annotations

import logging

from pymilvus.grpc_gen import common_pb2

from vecdb import errors

log = logging.getLogger(__name__)

_SUCCESS = common_pb2.Status(error_code=common_pb2.Success, code=0, reason="")


def success() -> common_pb2.Status:
    return common_pb2.Status(error_code=common_pb2.Success, code=0)


def from_exception(exc: BaseException) -> common_pb2.Status:
    if isinstance(exc, errors.VecdbError):
        return common_pb2.Status(
            error_code=common_pb2.ErrorCode.Value(exc.legacy_code),
            code=exc.code,
            reason=exc.message,
            detail=exc.message,
            retriable=exc.retriable,
        )
    log.exception("unexpected error", exc_info=exc)
    msg = f"unexpected error: {type(exc).__name__}: {exc}"
    return common_pb2.Status(error_code=common_pb2.UnexpectedError, code=65535, reason=msg, detail=msg)

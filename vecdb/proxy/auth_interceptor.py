"""The gRPC side of ``vecdb.security``: every Milvus API call authenticated, then authorized.

As in Milvus, a refused call never reaches its handler and gets no Status in a reply but a
gRPC error: UNAUTHENTICATED for a missing or wrong credential (pymilvus does not retry it;
its client constructor turns it into "Fail connecting to server"), PERMISSION_DENIED for a
privilege the caller lacks. Only installed when authentication is on.
"""

from __future__ import annotations

import base64
import binascii

import grpc
from prometheus_client import Counter

from vecdb import errors
from vecdb.proxy import grpc_health
from vecdb.request_db import privilege_database
from vecdb.security import Security
from vecdb.security.guard import Resolver

REFUSED = Counter("vecdb_auth_refused_total", "Milvus API calls refused by authentication or privilege checks",
                  ["reason"])


def _header(metadata, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("ascii", "replace")
    return None


def current_user(context: grpc.ServicerContext) -> str:
    """The user a request came from (already verified when authentication is on): the name in its
    ``authorization`` header, "" when there is none or it does not parse."""
    token = _header(context.invocation_metadata(), "authorization")
    if not token:
        return ""
    try:
        return base64.b64decode(token, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, ValueError):
        return ""


class AuthInterceptor(grpc.ServerInterceptor):
    """Wraps each handler in the checks. They run in the handler's thread, not here: grpc calls
    interceptors on its one serving thread, where a KDF run (0.1 s) would stall every call."""

    def __init__(self, security: Security, resolve: Resolver | None = None):
        self.security, self.resolve = security, resolve  # resolve: aliases and ids (guard.collection_resolver)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler_call_details.method.startswith(f"/{grpc_health.SERVICE}/"):
            return handler  # a probe, as /healthz: no credential (vecdb.proxy.grpc_health)
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metadata = handler_call_details.invocation_metadata
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                make = getattr(grpc, f"{kind}_rpc_method_handler")
                return make(self._checked(inner, method, metadata, kind.startswith("unary")),
                            request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler

    def _checked(self, inner, method: str, metadata, one_request: bool):
        def checked(request, context):
            try:
                user = self.security.authenticate(_header(metadata, "authorization"))
            except errors.NotAuthenticated as e:
                REFUSED.labels("unauthenticated").inc()
                context.abort(grpc.StatusCode.UNAUTHENTICATED, e.message)
            if one_request:  # a stream's requests are not looked into (the Milvus API has none we serve)
                try:
                    self.security.authorize(user, method, request, privilege_database(method, request, metadata),
                                            self.resolve)
                except errors.NotPermitted as e:
                    REFUSED.labels("permission").inc()
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, e.message)
            return inner(request, context)

        return checked


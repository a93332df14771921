"""Internal RPC between vecdb's own processes (coord, proxies, query and data nodes).

The services and their messages are typed contracts in ``proto/`` (``coord.proto``,
``querynode.proto``, ``common.proto``); their Python modules are generated into ``vecdb/rpc/gen``
and committed (``python -m vecdb.rpc.protogen`` rewrites them, a unit test checks they match).
numpy arrays cross as ``Column`` messages: raw buffers read back with ``np.frombuffer``
(``vecdb.rpc.columns``). ``serve`` runs a generated service's servicer; ``Client`` calls one
through its stub. A ``VecdbError`` raised by a handler reaches the caller as the same class and
message (the gRPC status's details, the class named in the trailing metadata).

Authentication (docs/security.md): with a cluster secret (``security.cluster_secret``, set for the
process by ``transport.use_cluster_secret``) every server refuses a call without its credential
(a digest of the secret in the call metadata) with UNAUTHENTICATED before any handler runs, and
every ``Client`` sends it; with ``tls.internal`` (``transport.use_internal_tls``) servers and
clients also speak mutual TLS.
"""

from vecdb.rpc.transport import Client, serve, set_fields

__all__ = ["Client", "serve", "set_fields"]

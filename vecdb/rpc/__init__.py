"""Internal RPC between vecdb's own processes (coord, proxies, query and data nodes).

gRPC unary calls whose request and reply are ``codec`` messages (a JSON header plus
numpy buffers), served by a generic handler: no generated stubs, vectors and columns
cross as raw buffers. ``serve`` exposes a dict of handlers; ``Client`` calls them. A
``VecdbError`` raised by a handler reaches the caller as the same class and message.
"""

from vecdb.rpc.service import Client, serve

__all__ = ["Client", "serve"]

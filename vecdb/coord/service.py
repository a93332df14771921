"""The coord process: the cluster's timestamp oracle and id allocator behind internal RPC.

Proxies and nodes of a cluster call ``AllocTimestamp`` and ``AllocID`` instead of owning a
TSO: one allocator per cluster keeps timestamps strictly increasing across every process.
The coord holds the exclusive ``session/coord`` so a second coord on the same metadata is
refused. (Catalog writes, node sessions and channel assignment move here next: see
docs/cluster.md.)

``RemoteTimestampOracle`` / ``RemoteIdAllocator`` have the ``allocate(count)`` of the local
ones, so the roles use either without knowing which.
"""

from __future__ import annotations

from vecdb.coord.client import RemoteIdAllocator, RemoteTimestampOracle  # noqa: F401 (imported from here too)
from vecdb.coord.session import Session, describe_process
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.errors import InvalidParameter
from vecdb.rpc import serve
from vecdb.storage.base import MetaStore
from vecdb.timestamp import LOGICAL_MASK

MAX_IDS_PER_CALL = 1 << 24


def _count(meta: dict, limit: int) -> int:
    count = meta.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise InvalidParameter(f"invalid count {count!r}: 1 to {limit}")
    return count


class Coord:
    def __init__(self, meta: MetaStore, host: str = "127.0.0.1", port: int = 0, session_ttl: float = 10.0):
        self.session = Session(meta, "session/coord", describe_process(role="coord"), ttl=session_ttl)
        try:
            self.tso = TimestampOracle(meta)
            self.ids = IdAllocator(meta)
            self.server, self.port = serve("coord", {
                "AllocTimestamp": lambda m, a: {"ts": self.tso.allocate(_count(m, LOGICAL_MASK))},
                "AllocID": lambda m, a: {"id": self.ids.allocate(_count(m, MAX_IDS_PER_CALL))},
            }, host, port)
        except BaseException:
            self.session.close()
            raise
        self.address = f"{host}:{self.port}"

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()
        self.session.close()

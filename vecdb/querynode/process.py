"""``vecdb querynode``: a query node as its own process.

It opens the storage backends, follows the channels of the collections it is asked to load
(``QueryNode(tail=True)``), serves search/query/count and load/release over internal RPC,
and registers ``session/querynode/<node id>`` (its address, renewed under a lease) so the
coord and proxies can find it and notice when it is gone.
"""

from __future__ import annotations

import logging
import uuid

from vecdb.config import Settings
from vecdb.coord.session import Session, describe_process
from vecdb.querynode.node import QueryNode
from vecdb.querynode.service import serve_querynode
from vecdb.storage.backends import open_backends

log = logging.getLogger(__name__)


class QueryNodeProcess:
    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0, node_id: str | None = None):
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.backends = open_backends(settings.storage)
        self.node = QueryNode(self.backends.log, self.backends.meta, self.backends.objects,
                              settings.querynode.index_threads, tail=True)
        self.server = self.session = None
        try:
            self.server, self.port = serve_querynode(self.node, host, port)
            self.address = f"{host}:{self.port}"
            self.session = Session(self.backends.meta, f"session/querynode/{self.node_id}",
                                   describe_process(role="querynode", address=self.address),
                                   ttl=settings.storage.session_ttl, exclusive=True)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 1.0) -> None:
        if self.server is not None:
            self.server.stop(grace).wait()
        self.node.close()
        if self.session is not None:
            self.session.close()
        self.backends.close()

"""``vecdb querynode``: a query node as its own process.

It opens the storage backends, follows the channels of the collections it is asked to load
(``QueryNode(tail=True)``), serves search/query/count and load/release over internal RPC,
and registers ``session/querynode/<node id>`` (its address, renewed under a lease) so the
coord and proxies can find it and notice when it is gone.
"""

from __future__ import annotations

from vecdb.config import Settings
from vecdb.process import NodeProcess
from vecdb.querynode.node import QueryNode
from vecdb.querynode.service import serve_querynode


class QueryNodeProcess(NodeProcess):
    role = "querynode"

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0, node_id: str | None = None):
        self._host, self._port = host, port
        super().__init__(settings, host, node_id)

    def _start(self, settings: Settings):
        self.node = QueryNode(self.backends.log, self.backends.meta, self.backends.objects,
                              settings.querynode.index_threads, tail=True)
        self._closers.append(self.node.close)
        return serve_querynode(self.node, self._host, self._port)

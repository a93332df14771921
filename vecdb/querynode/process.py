"""``vecdb querynode``: a query node as its own process.

It opens the storage backends, serves search/query/count over internal RPC, registers
``session/querynode/<node id>`` (its address, renewed under a lease) so the coord and proxies
can find it and notice when it is gone, then holds the channels the coord assigns it
(``AssignmentFollower``), following each in the log (``QueryNode(tail=True)``), and publishes
how far it applied each (``PositionPublisher``), which bounds the log's truncation.
"""

from __future__ import annotations

from vecdb.config import Settings
from vecdb.process import NodeProcess
from vecdb.querynode.assigned import AssignmentFollower
from vecdb.querynode.node import QueryNode
from vecdb.querynode.positions import PositionPublisher
from vecdb.querynode.rpc import serve_querynode


class QueryNodeProcess(NodeProcess):
    role = "querynode"

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0, node_id: str | None = None):
        self._host, self._port = host, port
        self.follower: AssignmentFollower | None = None
        self.positions: PositionPublisher | None = None
        super().__init__(settings, host, node_id)
        assert self.session is not None
        try:
            self.follower = AssignmentFollower(self.node, self.backends.meta, self.node_id, self.session.lease)
            self.positions = PositionPublisher(self.node, self.backends.meta, self.node_id, self.session.lease)
        except BaseException:
            self.stop()
            raise

    def health(self) -> tuple[bool, str]:
        """Ready (200) once it holds every channel assigned to it at start (and its session and log
        are fine); a later hand-over loads while it serves the rest, ready all along."""
        ok, why = super().health()
        if ok and (self.follower is None or not self.follower.ready.is_set()):
            return False, "loading the channels assigned to it"
        return ok, why

    def stop(self, grace: float = 1.0) -> None:
        for part in (self.positions, self.follower):
            if part is not None:
                part.close()
        super().stop(grace)

    def _start(self, settings: Settings):
        self.node = QueryNode(self.backends.log, self.backends.meta, self.backends.objects,
                              settings.querynode.index_threads, tail=True,
                              mmap_sealed=settings.querynode.mmap_sealed)
        self._closers.append(self.node.close)
        return serve_querynode(self.node, self._host, self._port)

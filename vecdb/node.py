"""``vecdb node``: a proxy and a query node in one process, reads served in-process.

A cluster proxy sends every read to a query node over internal RPC: the request is encoded, sent,
decoded, answered, and the answer encoded and decoded again, at a cost in CPU on both sides. A
``vecdb node`` is both roles in one process under one node id:

- its **query node** is a cluster query node as ``vecdb querynode`` runs it: the session
  ``session/querynode/<id>``, the channels the coord assigns it (``AssignmentFollower``), each
  followed in the log, its applied positions published (``PositionPublisher``), and internal RPC on
  ``--querynode-port`` (default: any free port) so the other proxies of the cluster can read from it;
- its **proxy** is ``vecdb proxy`` (``ProxyProcess``: the Milvus API on ``--port``,
  ``session/proxy/<id>``) whose router (``vecdb.proxy.router``) calls that query node directly
  (``LocalQueryNode``: the same calls as ``RemoteQueryNode``, no RPC, no serialization) and tries
  first a replica it serves entirely; other nodes over RPC as usual (a fallback while its own
  replica is not served).

One node id for both roles: they live and die together, and a Milvus client sees one number for the
process (``GetComponentStates``, ``describe_replicas``' node ids, ``node_id`` in /metrics). The
sessions are two (``session/proxy/<id>``, ``session/querynode/<id>``): the coord and the other
proxies find the query node as any other, the coord's DDL fan-out waits for the proxy as any other.

With the coord's ``querynode.replica_per_node`` every live query node holds a replica of every
loaded collection, so a ``vecdb node``'s reads never leave its process (``vecdb.coord.assignment``).

A node whose session is lost (its lease expired: a stall or an unreachable store longer than the
ttl) is gone for the cluster: the coord drops its replica and DDL stops waiting for its proxy. It
then stops and exits 1 (``vecdb.process.serve_until_stopped``), as Milvus's nodes exit, so a supervisor starts it
again under a new id rather than leave it serving from a stale view.

``--workers N`` serves the Milvus port from N such processes (SO_REUSEPORT), each a whole node with an
id of its own (``<id>-w<i>``), supervised as ``vecdb proxy --workers`` supervises its workers
(``vecdb.proxy.workers.Supervisor``: a dead one is started again under a new id, which then gets
a replica of its own).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from vecdb import errors, logs, signals
from vecdb.catalog_model import CollectionInfo, read_collection
from vecdb.config import Settings
from vecdb.coord.session import Session
from vecdb.discovery import node_number
from vecdb.group_partials import PartialSpec
from vecdb.process import advertised_address, register_session
from vecdb.proxy.process import ProxyProcess
from vecdb.querynode.assigned import AssignmentFollower
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.querynode.positions import PositionPublisher
from vecdb.querynode.rpc import serve_querynode
from vecdb.querynode.shard import ReadScope, at_positions
from vecdb.roles import RowFilter
from vecdb.top_rows import Order

log = logging.getLogger(__name__)


class LocalQueryNode:
    """A ``QueryNode`` of this process with the calls of ``RemoteQueryNode`` (what the router sends),
    answered as ``QueryNodeService`` answers them over RPC: the node's own copy of the collection's
    info, the positions of ``wait`` applied first and each scoped channel read as of its position
    (``at_positions``); the arguments and results pass as they are."""

    def __init__(self, node: QueryNode, address: str):
        self.node, self.address = node, address

    def _info(self, collection_id: int, wait: dict[str, int] | None) -> CollectionInfo:
        coll = self.node.collections.get(collection_id)
        if coll is None:
            raise errors.CollectionNotLoaded(f"collection {collection_id} is not loaded on this query node")
        if wait:
            self.node.wait_applied(wait)
        return coll.info

    def search(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
               output_fields: Sequence[str], wait: dict[str, int] | None = None,
               channels: Sequence[str] | None = None, scopes: Mapping[str, ReadScope] | None = None) -> Hits:
        return self.node.search(self._info(info.id, wait), spec, partition_ids, list(output_fields), channels,
                                at_positions(scopes, wait))

    def bm25_statistics(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
                        wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
                        scopes: Mapping[str, ReadScope] | None = None) -> dict:
        return self.node.bm25_statistics(self._info(info.id, wait), spec, partition_ids, channels,
                                         at_positions(scopes, wait))

    def query(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              output_fields: Sequence[str], limit: int | None, offset: int,
              wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
              scopes: Mapping[str, ReadScope] | None = None, *, sealed_only: bool = False) -> dict[str, np.ndarray]:
        return self.node.query(self._info(info.id, wait), ts, flt, partition_ids, list(output_fields), limit, offset,
                               channels, at_positions(scopes, wait), sealed_only=sealed_only)

    def query_partials(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                       spec: PartialSpec, wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
                       scopes: Mapping[str, ReadScope] | None = None, *,
                       sealed_only: bool = False) -> dict[str, np.ndarray]:
        return self.node.query_partials(self._info(info.id, wait), ts, flt, partition_ids, spec, channels,
                                        at_positions(scopes, wait), sealed_only=sealed_only)

    def query_top(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                  output_fields: Sequence[str], order: Order, limit: int, offset: int,
                  wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
                  scopes: Mapping[str, ReadScope] | None = None, *, sealed_only: bool = False) -> dict[str, np.ndarray]:
        return self.node.query_top(self._info(info.id, wait), ts, flt, partition_ids, list(output_fields), order,
                                   limit, offset, channels, at_positions(scopes, wait), sealed_only=sealed_only)

    def count(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
              scopes: Mapping[str, ReadScope] | None = None, *, sealed_only: bool = False) -> int:
        return self.node.count(self._info(info.id, wait), ts, flt, partition_ids, channels, at_positions(scopes, wait),
                               sealed_only=sealed_only)

    def load(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> None:
        self.node.load(read_collection(self.node.meta, info.id), channels)

    def loaded(self) -> list[int]:
        return sorted(self.node.collections)

    def channels_held(self) -> dict[int, dict[str, int]]:
        return self.node.channels_held()

    def refresh_info(self, info: CollectionInfo) -> None:
        self.node.refresh_from_store(info.id)

    def schedule_indexes(self, info: CollectionInfo) -> None:
        self.node.schedule_indexes(read_collection(self.node.meta, info.id))

    def drop_partition(self, collection_id: int, partition_id: int) -> None:
        self.node.drop_partition(collection_id, partition_id)

    def growing_rows(self, channel: str) -> int:
        return self.node.growing_rows(channel)

    def index_state(self, collection_id: int, field_name: str,
                    channels: Sequence[str] | None = None) -> tuple[int, int]:
        return self.node.index_state(collection_id, field_name, channels)

    def index_segments(self, collection_id: int, field_name: str,
                       channels: Sequence[str] | None = None) -> list[tuple[int, int, int]]:
        return self.node.index_segments(collection_id, field_name, channels)

    def segment_infos(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> list[dict]:
        return self.node.segment_infos(read_collection(self.node.meta, info.id), channels)

    def release(self, collection_id: int, channels: Sequence[str] | None = None) -> None:
        self.node.release(collection_id, channels)

    def serving_nodes(self) -> list[tuple[int, str]]:
        """This one node, numbered from its address (its node id is the router's to know), as
        ``RemoteQueryNode`` answers."""
        return [(node_number(self.address), self.address)]

    def replicas(self, collection_id: int) -> list[dict]:
        """This one node as a replica, leading the channels it holds of the collection (as
        ``RemoteQueryNode`` answers)."""
        held = self.node.channels_held().get(collection_id)
        if not held:
            return []
        me = node_number(self.address)
        return [{"id": me, "nodes": [me], "leaders": {ch: (me, self.address) for ch in held}}]

    def is_loaded(self, collection_id: int) -> bool:
        return collection_id in self.node.collections

    def close(self) -> None:
        """Nothing: the node is its process's (``NodeRoleProcess`` closes it)."""


class NodeRoleProcess(ProxyProcess):
    """``vecdb node`` (see the module's doc). ``port``: the Milvus API's is ``settings.proxy.port``;
    ``querynode_port`` the query node's internal RPC (0: any free port)."""

    def __init__(self, settings: Settings, coord: str | None = None, node_id: str | None = None,
                 worker: int | None = None, querynode_port: int = 0):
        self._qn_port = querynode_port
        self.querynode_address = ""
        self.qn_session: Session | None = None
        self.follower: AssignmentFollower | None = None
        self.positions: PositionPublisher | None = None
        super().__init__(settings, coord, node_id or uuid.uuid4().hex[:12], worker)
        logs.set_node("node", self.node_id)

    def _start(self, settings: Settings):
        host = settings.proxy.host
        self.node = QueryNode(self.backends.log, self.backends.meta, self.backends.objects,
                              settings.querynode.index_threads, tail=True,
                              mmap_sealed=settings.querynode.mmap_sealed)
        self._closers.append(self.node.close)
        qn_server, qn_port = serve_querynode(self.node, host, self._qn_port)
        self._closers.append(lambda: qn_server.stop(1.0).wait())
        self.querynode_address = advertised_address(host, qn_port)
        server, port = super()._start(settings)  # the proxy, its Milvus API served
        try:
            # reads of the query node below go in-process (set before its session appears to the router)
            self.router.set_local(self.node_id, LocalQueryNode(self.node, self.querynode_address))
            self.qn_session = register_session(self.backends.meta, "querynode", self.node_id, self.querynode_address,
                                            settings.storage.session_ttl)
            self._closers.append(self.qn_session.close)
            self.follower = AssignmentFollower(self.node, self.backends.meta, self.node_id, self.qn_session.lease)
            self._closers.append(self.follower.close)
            self.positions = PositionPublisher(self.node, self.backends.meta, self.node_id, self.qn_session.lease)
            self._closers.append(self.positions.close)
        except BaseException:
            server.stop(0)
            raise
        return server, port

    def lost_session(self) -> str | None:
        """The key of a session of this node that was lost (its lease expired: a stall longer than its
        ttl, the store unreachable as long), if one was: the cluster then counts the node gone (the
        coord drops its replica, DDL no longer waits for its proxy), so it must not go on serving."""
        for session in (self.session, self.qn_session):
            if session is not None and session.lost:
                return session.key
        return None

    def health(self) -> tuple[bool, str]:
        """Ready (200) once the proxy is, the query node's session is held and it holds every channel
        assigned to it at start."""
        ok, why = super().health()
        if not ok:
            return ok, why
        trouble = self.qn_session.trouble() if self.qn_session is not None else "starting"
        if trouble:
            return False, f"query node: {trouble}"
        if self.follower is None or not self.follower.ready.is_set():
            return False, "loading the channels assigned to it"
        return True, "OK"


def supervise(argv: list[str], workers: int, node_id: str | None, host: str, port: int) -> int:
    """``vecdb node --workers N`` (N > 1): N node processes on ``port`` (0: a free one) until SIGTERM
    or SIGINT, as ``vecdb.proxy.workers.supervise`` runs a proxy's."""
    from vecdb.proxy.workers import Supervisor, shared_port

    node_id = node_id or uuid.uuid4().hex[:12]
    sup = Supervisor(argv, workers, node_id, ["--port", str(shared_port(host, port))], label="node")
    signals.on_stop_signal(sup.stopping.set)
    code = sup.start()
    if code or sup.stopping.is_set():
        return code if code else (0 if sup.stop() else 1)
    print(f"vecdb node {node_id} ready on {sup.workers[0].address} ({workers} workers)", flush=True)
    sup.run()
    return 0 if sup.stop() else 1


"""``vecdb proxy``: the Milvus API of a cluster, as its own process.

The same Milvus service code as standalone, wired to the cluster: timestamps and ids from
the coord, writes into the shared log (``ShardWriter`` appends expecting each channel's end, so
several proxies keep timestamp order), reads through ``QueryNodeRouter`` to the query nodes,
the catalog on the shared metadata store. A flush is the coord's (``RemoteFlush``: it writes the
seal records and waits for the data node processes, ``vecdb datanode``, to persist the channels);
the channels none persisted (none running) the proxy persists itself (``ClusterDataNode``; the log
is never truncated in a cluster yet).

It needs only the storage backends: the active coord is the one named in ``session/coord``
(``CoordClient``, which follows a failover; a ``coord`` address overrides that), and the query
nodes, with what each serves, come from the coord's assignments and the nodes' sessions (the
router mirrors them).

Any number of proxies share a namespace: each one's catalog cache follows the store. DDL goes
through the active coord (``RemoteDdl``: the coord checks and writes the catalog, and answers once
every live proxy has applied the change); the handlers here validate and then do what the nodes
must (releases, index builds, waiting for a load to be served).
"""

from __future__ import annotations

from vecdb.catalog_model import CollectionInfo
from vecdb.config import Settings
from vecdb.coord.catalog import Catalog
from vecdb.coord.client import CoordClient, RemoteIdAllocator, RemoteTimestampOracle
from vecdb.coord.ddl_rpc import RemoteDdl
from vecdb.coord.flush import FlushManager, RemoteFlush
from vecdb.coord.resource_groups import ResourceGroups
from vecdb.coord.segment_moves import RemoteSegmentMoves
from vecdb.datanode.node import DataNode
from vecdb.datanode.remote import ClusterDataNode
from vecdb.discovery import node_number
from vecdb.errors import CollectionNotFound
from vecdb.process import NodeProcess
from vecdb.proxy.base import Roles
from vecdb.proxy.job_sweep import start_job_sweep
from vecdb.proxy.milvus_service import MilvusService
from vecdb.proxy.quota import Quota
from vecdb.proxy.rest import RestApi
from vecdb.proxy.router import QueryNodeRouter
from vecdb.proxy.server import start_server
from vecdb.proxy.writer import ShardWriter
from vecdb.security import Security


class ProxyProcess(NodeProcess):
    role = "proxy"
    serves_rest = True

    def __init__(self, settings: Settings, coord: str | None = None, node_id: str | None = None,
                 worker: int | None = None):
        """``coord``: the coord's address instead of the one in its session. ``worker``: this process
        is worker ``worker`` of a proxy of several processes (``vecdb.proxy.workers``): it shares the
        Milvus API port with the others, and serves ``proxy.worker_port + worker`` too when that is set."""
        self._coord_address = coord
        self.worker = worker
        super().__init__(settings, settings.proxy.host, node_id)

    def _start(self, settings: Settings):
        coord = CoordClient(self.backends.meta, self._coord_address)
        self._closers.append(coord.close)
        tso, ids = RemoteTimestampOracle(coord), RemoteIdAllocator(coord)
        # one of several proxies: the catalog follows the store, and a DDL call returns once every
        # live proxy applied it (vecdb.coord.catalog_sync); whether a collection is loaded is its word
        catalog = Catalog(self.backends.meta, node_id=self.node_id, ttl=settings.storage.session_ttl)
        self._closers.append(catalog.close)
        # query nodes follow the log; reads below Strong reuse a recent snapshot timestamp
        writer = ShardWriter(self.backends.log, tso, lambda *_: None, reuse_read_ts=True)
        self.router = QueryNodeRouter(self.backends.log, self.backends.meta,
                                      loaded_in_catalog=lambda cid: _loaded(catalog, cid),
                                      written=writer.written_positions, fresh_ts=writer.read_ts)
        self._closers.append(self.router.close)
        # flushes wait for the data node processes (this proxy persists itself when none runs; the segments,
        # build records and index build metrics it makes then name this proxy, as a data node's name it)
        self.datanode = ClusterDataNode(DataNode(self.backends.log, self.backends.meta, self.backends.objects, ids,
                                                 settings.querynode.index_threads, truncate=False,
                                                 node_id=self.node_id, compaction=settings.compaction),
                                        self.backends.meta)
        self._closers.append(self.datanode.close)
        # users and roles, shared by every proxy: a change returns once every live proxy applied it (security.view)
        security = Security(self.backends.meta, settings.security, node_id=self.node_id,
                            ttl=settings.storage.session_ttl)
        self._closers.append(security.close)
        self.roles = Roles(catalog, tso, ids, writer, self.router, self.datanode,
                           max_request_bytes=settings.proxy.max_request_bytes,
                           max_query_window=settings.proxy.max_query_window, seal_rows=settings.datanode.seal_rows,
                           seal_bytes=settings.datanode.seal_bytes,
                           component="proxy", node_id=node_number(self.node_id), security=security,
                           resource_groups=ResourceGroups(self.backends.meta, self.router.node_addresses),
                           quota=Quota(settings.quota, node_id=self.node_id),
                           cluster_id=settings.replication.cluster_id)
        self.roles.ddl = RemoteDdl(coord, catalog)  # catalog changes: the coord's (vecdb.coord.ddl)
        catalog.on_drop(self._forget_dropped)  # every drop, whichever proxy or coord made it
        # flushes and automatic seals: the coord's (vecdb.coord.flush); this proxy's own writer for a coord
        # that does not flush (no shared log, or an older one)
        self.roles.flush = RemoteFlush(coord, fallback=FlushManager(writer, self.backends.meta))
        self.roles.segment_moves = RemoteSegmentMoves(coord)  # LoadBalance: the coord pins segments to nodes
        self.rest_api = RestApi(MilvusService(self.roles), security)  # Milvus's REST API v2 on the HTTP port
        p = settings.proxy
        own_port = p.worker_port + self.worker if self.worker is not None and p.worker_port else 0
        server, port = start_server(self.roles, p.host, p.port, p.workers, settings.tls,
                                    reuse_port=self.worker is not None, extra_port=own_port, health=self.health)
        if self.roles.sealer is not None:  # wired by the servicer (vecdb.proxy.base.ServiceBase)
            self._closers.append(self.roles.sealer.close)
        # jobs whose runner ended (another proxy's, killed), taken over by one proxy of all (vecdb.jobs)
        self._closers.append(start_job_sweep(self.roles).close)
        return server, port

    def _forget_dropped(self, info: CollectionInfo) -> None:
        """A collection dropped (seen in the catalog, whichever proxy or coord dropped it): the router's state
        of it goes (its assignment, its channels' recent log ends); the writer's and the seal counts go by the
        servicer's listener (``vecdb.proxy.base``)."""
        self.router.forget(info.id, info.channels)


def _loaded(catalog: Catalog, collection_id: int) -> bool:
    try:
        return catalog.get_by_id(collection_id).loaded
    except CollectionNotFound:
        return False

"""``vecdb datanode``: a data node as its own process.

It opens the storage backends, registers ``session/datanode/<node id>`` (renewed under a lease)
so the coord can assign it channels and notice when it is gone, then persists the channels the
coord assigns it (``ChannelFlusher``): segment files, delta files and checkpoints in the object
and metadata stores, at each seal record in the log. It is also the seal policy of its channels: once a channel holds
``SEAL_ROWS`` rows after its last seal record, it appends one (a proxy's write no longer asks a
query node how many rows are growing). Segment ids and the seal records' timestamps come from the
coord. It serves
no RPC of its own yet (its port answers gRPC's health only), which a later split of index builds
and compaction will use.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from vecdb.config import Settings
from vecdb.coord.client import CoordClient, RemoteIdAllocator, RemoteTimestampOracle
from vecdb.datanode.flusher import ChannelFlusher
from vecdb.datanode.index_scheduler import IndexScheduler
from vecdb.datanode.node import DataNode
from vecdb.log_records import SealRecord
from vecdb.process import NodeProcess
from vecdb.proxy.writer import ShardWriter
from vecdb.rpc.transport import listen, server_interceptors
from vecdb.storage.backends import Backends


class DataNodeProcess(NodeProcess):
    role = "datanode"

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0, node_id: str | None = None,
                 backends: Backends | None = None):
        """``backends``: storage the caller opened and closes (``NodeProcess``)."""
        self._host, self._port = host, port
        self.flusher: ChannelFlusher | None = None
        self.indexes: IndexScheduler | None = None  # builds the index of every segment of its channels
        super().__init__(settings, host, node_id, backends)
        try:
            self.flusher = ChannelFlusher(self.node, self.backends.log, self.backends.meta, self.node_id,
                                          seal=self._seal, seal_rows=settings.datanode.seal_rows,
                                          seal_bytes=settings.datanode.seal_bytes,
                                          forget=lambda channel: self._sealer.forget([channel]))
            self.indexes = IndexScheduler(self.node.indexer, self.backends.meta, self.node_id)
            self.node.compactor.start(self.flusher.assigned)  # compacts the channels it persists
        except BaseException:
            self.stop()
            raise

    def _start(self, settings: Settings):
        coord = CoordClient(self.backends.meta)
        self._closers.append(coord.close)
        # the seal policy's seal records, in timestamp order with the proxies' writes (vecdb.proxy.writer)
        self._sealer = ShardWriter(self.backends.log, RemoteTimestampOracle(coord), lambda *_: None)
        self.node = DataNode(self.backends.log, self.backends.meta, self.backends.objects, RemoteIdAllocator(coord),
                             settings.querynode.index_threads, truncate=False, node_id=self.node_id,
                             compaction=settings.compaction)
        self._closers.append(self.node.close)
        server = grpc.server(ThreadPoolExecutor(max_workers=1, thread_name_prefix="datanode-rpc"),
                             interceptors=server_interceptors("datanode"))  # the cluster secret's check
        port = listen(server, f"{self._host}:{self._port}")  # mutual TLS with tls.internal
        server.start()
        return server, port

    def _seal(self, collection_id: int, channel: str) -> None:
        """Append a seal record to the channel (the seal policy: ``ChannelFlusher``)."""
        self._sealer.write({channel: lambda ts: [SealRecord(collection_id, ts)]})

    def stop(self, grace: float = 1.0) -> None:
        if self.indexes is not None:
            self.indexes.close()
        if self.flusher is not None:
            self.flusher.close()
        super().stop(grace)

"""Standalone mode: every role in one process, by default over the embedded backends (the
storage settings can point it at JetStream, etcd and S3 instead: ``vecdb.storage.backends``).

Start order follows the dependencies: storage, coord (catalog, TSO, ids, DDL), query
and data nodes, then the proxy's gRPC server; collections that were loaded before
a restart are loaded again (sealed segments plus the log tail). Stop runs in
reverse.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import ThreadingHTTPServer

import grpc

from vecdb import errors, limits, metrics, startup
from vecdb.cdc.replicate_manager import ReplicationManager
from vecdb.config import Settings
from vecdb.coord.catalog import Catalog
from vecdb.coord.ddl import DdlManager
from vecdb.coord.flush import FlushManager
from vecdb.coord.gc import GarbageCollector
from vecdb.coord.resource_groups import ResourceGroups
from vecdb.coord.session import Session, describe_process
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.datanode.node import DataNode
from vecdb.jobs import JobSweeper
from vecdb.proxy.base import Roles
from vecdb.proxy.job_sweep import start_job_sweep
from vecdb.proxy.milvus_service import MilvusService
from vecdb.proxy.quota import Quota
from vecdb.proxy.rest import RestApi
from vecdb.proxy.server import start_server
from vecdb.proxy.writer import ShardWriter
from vecdb.querynode.node import STANDALONE_NODE_ID, QueryNode
from vecdb.security import Security
from vecdb.storage.backends import open_backends

log = logging.getLogger(__name__)


class Standalone:
    def __init__(self, settings: Settings):
        self.settings = settings
        limits.configure(settings.limits)  # this process's request and schema limits (vecdb.limits)
        startup.raise_open_files_limit()  # a WAL file open per channel: thousands of collections (vecdb.startup)
        with startup.data_dir(settings.storage.data_dir):  # held by another server: one line (vecdb.startup)
            self.backends = open_backends(settings.storage)
        self.meta, self.objects, self.wal = self.backends.meta, self.backends.objects, self.backends.log
        self._stopped = threading.Event()  # a stop began
        self._finished = threading.Event()  # ... and ended
        self.session_lost = False
        self.server: grpc.Server | None = None
        self.port = 0
        self.http: ThreadingHTTPServer | None = None
        self.session: Session | None = None
        self.security: Security | None = None
        self.gc: GarbageCollector | None = None
        self.replication: ReplicationManager | None = None
        self.job_sweep: JobSweeper | None = None
        try:
            self._open_roles(settings)
        except BaseException:
            if self.security is not None:
                self.security.close()
            if self.session is not None:
                self.session.close()
            self.backends.close()
            raise

    def _open_roles(self, settings: Settings) -> None:
        # one server per storage namespace: a second one on the same etcd/NATS/S3 is refused
        try:
            self.session = Session(self.meta, "session/standalone", describe_process(role="standalone"),
                                   ttl=settings.storage.session_ttl, on_lost=self._session_lost)
        except errors.ServiceUnavailable as e:  # held by another server: its message says by whom
            raise startup.StartupFailed(str(e)) from e
        catalog = Catalog(self.meta)
        tso = TimestampOracle(self.meta)
        ids = IdAllocator(self.meta)
        metrics.watch_allocators(metrics.STANDALONE, tso, ids)  # the coord's metrics, as a cluster's coord fills them
        self.querynode = QueryNode(self.wal, self.meta, self.objects, settings.querynode.index_threads,
                                   mmap_sealed=settings.querynode.mmap_sealed)
        self.datanode = DataNode(self.wal, self.meta, self.objects, ids, settings.querynode.index_threads,
                                 compaction=settings.compaction)
        for builds in (self.querynode.builds, self.datanode.indexer.builds):
            # a build cut short by a kill runs once more; one that crashed the process does not (index_builds)
            builds.retry_after_crash, builds.data_dir = True, settings.storage.data_dir
        writer = ShardWriter(self.wal, tso, self.querynode.deliver)
        self.security = Security(self.meta, settings.security)
        groups = ResourceGroups(self.meta, lambda: {str(STANDALONE_NODE_ID): "local"})
        # the coord's DDL manager, in-process over the same catalog (a cluster's proxy calls the coord's)
        ddl = DdlManager(catalog, ids, tso, groups)
        # the coord's flush manager, in-process over the same writer (no data node processes: the proxy's
        # handler persists every channel itself)
        flush = FlushManager(writer, self.meta)
        self.roles = Roles(catalog, tso, ids, writer, self.querynode, self.datanode, ddl=ddl, flush=flush,
                           max_request_bytes=settings.proxy.max_request_bytes,
                           max_query_window=settings.proxy.max_query_window, security=self.security,
                           seal_rows=settings.datanode.seal_rows, seal_bytes=settings.datanode.seal_bytes,
                           resource_groups=groups,
                           quota=Quota(settings.quota, data_dir=settings.storage.data_dir),
                           cluster_id=settings.replication.cluster_id)
        for info in catalog.all_collections():
            if info.loaded:
                with writer.locked(info.channels):
                    self.querynode.load(info)
            else:  # index builds cut short by a stop
                self.datanode.indexer.schedule(info)
        # compaction of every collection's channels, in the background (vecdb.datanode.compactor); started once
        # the loads are done: its first round reads every channel's segments (and merges what is due), and
        # beside the loads it slowed them (2,000 collections to list: 4.4 s instead of 1.8)
        self.datanode.compactor.start(
            lambda: {ch: info.id for info in catalog.all_collections() for ch in info.channels}, watch_requests=False)
        # the object store's garbage (vecdb.coord.gc), collected while this server holds the storage
        self.gc = GarbageCollector(self.meta, self.objects, settings.gc.interval, settings.gc.grace,
                                   fence={self.session.key: self.session.value},
                                   full_interval=settings.gc.full_interval, wal=self.wal).start()
        # Milvus 2.6's replication: this server's edges to its targets, replicated from its own log (docs/cdc.md)
        self.replication = ReplicationManager(self.meta, self.wal).start()

    def _session_lost(self) -> None:
        log.error("the storage session was lost; stopping so that no two servers write the same data")
        self.session_lost = True
        threading.Thread(target=self.stop, name="stop-on-session-loss", daemon=True).start()

    def start(self) -> Standalone:
        """Serve; a failed start (a port in use: ``vecdb.startup.StartupFailed``) stops what had started."""
        try:
            return self._serve()
        except BaseException:
            self.stop()
            raise

    def _serve(self) -> Standalone:
        p = self.settings.proxy
        self.server, self.port = start_server(self.roles, p.host, p.port, p.workers, self.settings.tls,
                                              health=self.health)
        # imports, restores and refreshes its previous run left unfinished, carried on (vecdb.jobs)
        self.job_sweep = start_job_sweep(self.roles)
        if self.settings.http.port:
            from vecdb.http import start_http

            rest = RestApi(MilvusService(self.roles), self.roles.security)  # Milvus's REST API v2
            self.http = start_http(p.host, self.settings.http.port, self.health, tls=self.settings.tls,
                                   rest=lambda: rest)
        log.info("vecdb standalone listening on %s:%d (data in %s, authentication %s, tls mode %d)", p.host,
                 self.port, os.path.abspath(self.settings.storage.data_dir),
                 "on" if self.settings.security.authorization_enabled else "off", self.settings.tls.mode)
        return self

    def healthy(self) -> bool:
        return self.server is not None and not self._stopped.is_set()

    def health(self) -> tuple[bool, str]:
        """For /healthz: ready once serving, until stopped (a lost session stops it)."""
        if self._stopped.is_set():
            return False, "stopping"
        return (True, "OK") if self.server is not None else (False, "starting")

    @property
    def stopped(self) -> bool:
        """Whether it has begun to stop (``stop``: signalled, or its storage session was lost)."""
        return self._stopped.is_set()

    def stop(self, grace: float = 2.0, wait: float = 60.0) -> None:
        """Stop serving and close everything; a second call waits (up to ``wait`` s) for the first
        one to end, so whoever exits the process next does not cut a stop short (a lost session's
        stop runs on a thread of its own while the main thread returns)."""
        if self._stopped.is_set():
            self._finished.wait(wait)
            return
        self._stopped.set()
        try:
            self._close(grace)
        finally:
            self._finished.set()

    def _close(self, grace: float) -> None:
        if self.http is not None:
            self.http.shutdown()
        if self.job_sweep is not None:
            self.job_sweep.close()
        if self.server is not None:
            self.server.stop(grace).wait()
        if self.roles.sealer is not None:
            self.roles.sealer.close()
        if self.gc is not None:
            self.gc.close()
        if self.replication is not None:
            self.replication.close()
        self.querynode.close()
        self.datanode.close()
        if self.security is not None:
            self.security.close()
        if self.session is not None:
            self.session.close()
        self.backends.close()

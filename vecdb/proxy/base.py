"""Shared plumbing of the Milvus gRPC servicer: the roles it drives and error wrapping."""

from __future__ import annotations

import functools
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pymilvus.grpc_gen import common_pb2

from vecdb import errors, metrics
from vecdb.catalog_model import DEFAULT_PARTITION, CollectionInfo
from vecdb.cdc import replicate_config
from vecdb.datanode.flusher import SEAL_BYTES, SEAL_ROWS
from vecdb.proxy import status
from vecdb.proxy.consistency import pin_snapshot
from vecdb.proxy.writer import ShardWriter
from vecdb.roles import (
    CatalogRole,
    DataNodeRole,
    DdlRole,
    FlushRole,
    IdSource,
    IndexBuilder,
    QueryNodeRole,
    SegmentMover,
    TimestampSource,
)
from vecdb.schema import DataType
from vecdb.timestamptz import zone_of

if TYPE_CHECKING:
    from vecdb.coord.resource_groups import ResourceGroups
    from vecdb.coord.sealer import Sealer
    from vecdb.proxy.quota import Quota
    from vecdb.security import Security
    from vecdb.storage.base import MetaStore, ObjectStore


@dataclass
class Roles:
    """What the proxy talks to. Standalone wires in-process objects; a cluster, RPC clients
    (the contracts: ``vecdb.roles``)."""

    catalog: CatalogRole
    tso: TimestampSource
    ids: IdSource
    writer: ShardWriter
    querynode: QueryNodeRole
    datanode: DataNodeRole
    # the catalog's changes (vecdb.coord.ddl): a cluster proxy's calls the coord (RemoteDdl);
    # None = decided in-process over ``catalog`` (standalone: a DdlManager, wired at construction)
    ddl: DdlRole | None = None
    # flushes (vecdb.coord.flush): a cluster proxy's call the coord (RemoteFlush); None = in-process over
    # ``writer``, every channel persisted by ``datanode`` here (a FlushManager, wired at construction)
    flush: FlushRole | None = None
    max_request_bytes: int = 64 << 20
    max_query_window: int = 16384
    # rows after a channel's last seal record that make the proxy's seal policy seal it (datanode.seal_rows,
    # vecdb.coord.sealer)
    seal_rows: int = SEAL_ROWS
    seal_bytes: int = SEAL_BYTES
    # what Connect and GetComponentStates say this server is: "standalone", or a cluster's "proxy"
    component: str = "standalone"
    node_id: int = 1
    # users and roles (vecdb.security); requests are checked when security.enabled
    security: Security | None = None
    # resource groups (vecdb.coord.resource_groups): the store's, with the live query nodes
    resource_groups: ResourceGroups | None = None
    # rate limits and write protection (vecdb.proxy.quota); None = none
    quota: Quota | None = None
    # flushes and the automatic seal policy (vecdb.coord.sealer) over the roles above; None = wired at
    # construction; closed with the server
    sealer: Sealer | None = None
    # manual segment moves (LoadBalance, vecdb.coord.segment_moves): a cluster proxy's call the coord
    # (RemoteSegmentMoves); None = this server's one query node (checks only: LocalSegmentMoves)
    segment_moves: SegmentMover | None = None
    # this deployment's id in Milvus 2.6's replication configuration (replication.cluster_id) and the
    # secondary's refusal of writes and DDL (vecdb.cdc.replicate_config.ReplicationGate; None = made on first use)
    cluster_id: str = "by-dev"
    replication: Any = None


PARTITION_KEY_NAMES = "not support manually specifying the partition names if partition key mode is used"
MAX_NAME_LENGTH = 255  # Milvus's proxy.maxNameLength


def check_read_partition_names(names) -> None:
    """The partition names of a search or query, as Milvus's proxy checks them (``validatePartitionTag``,
    not strict) before it looks them up: none empty or blank, none longer than 255 characters (a name
    that is well formed but absent is a lookup's PartitionNotFound)."""
    for name in names:
        tag = name.strip()
        if not tag:
            raise errors.InvalidParameter(f"Invalid partition name: {tag}. Partition name should not be empty.")
        if len(tag) > MAX_NAME_LENGTH:
            raise errors.InvalidParameter(f"Invalid partition name: {tag}. The length of a partition name must "
                                          f"be less than {MAX_NAME_LENGTH} characters.")


log = logging.getLogger(__name__)


def rpc(response_type=None):
    """Turn exceptions into a Status (or ``response_type(status=...)``) for the client; count and time
    every call with Milvus's metrics (``vecdb.metrics``): ``milvus_proxy_req_count`` "total" as it
    starts, then "success" or "fail" (an exception, or a reply whose status is an error), and
    ``milvus_proxy_req_latency`` (ms) of the successful ones; inserts, deletes, searches and queries
    count their vectors too (``metrics.PROXY_AFTER``)."""

    def wrap(fn):
        name = fn.__name__
        calls = metrics.ProxyCalls(name)
        after = metrics.PROXY_AFTER.get(fn.__name__)
        failed_reply = metrics.reply_failed
        clock = time.perf_counter
        guarded = name in replicate_config.GUARDED  # refused on a secondary cluster (docs/cdc.md)

        @functools.wraps(fn)
        def handler(self, request, context):
            start = clock()
            total, ok, failed, latency, node = calls.children(self.r.node_id, self.r.component)
            total.inc()
            pin_snapshot(False)  # a read's snapshot is its client's only when this request says so
            try:
                if guarded:
                    replicate_config.admit(self, name, context)
                if self.r.quota is not None:
                    self.r.quota.admit(name, request, context)
                reply = fn(self, request, context)
            except Exception as exc:  # noqa: BLE001 - every error goes back as a Status
                failed.inc()
                st = status.from_exception(exc)
                return st if response_type is None else response_type(status=st)
            if failed_reply(reply):
                failed.inc()
                return reply
            ms = (clock() - start) * 1000.0
            ok.inc()
            latency.observe(ms)
            if after is not None:
                try:
                    after(node, request, context, reply, ms)
                except Exception:  # noqa: BLE001 - a metric must never fail the call
                    log.exception("metrics of %s", fn.__name__)
            return reply

        return handler

    return wrap


class ServiceBase:
    def __init__(self, roles: Roles):
        self.r = roles
        if roles.ddl is None:  # standalone: the coord's DDL manager in-process, over the same catalog
            from vecdb.coord.ddl import DdlManager

            roles.ddl = DdlManager(roles.catalog, roles.ids, roles.tso, roles.resource_groups)
        self.ddl: DdlRole = roles.ddl
        if roles.flush is None:  # no store to find data nodes in: the caller persists every channel
            from vecdb.coord.flush import FlushManager

            roles.flush = FlushManager(roles.writer, None)
        if roles.sealer is None:
            from vecdb.coord.sealer import Sealer

            roles.sealer = Sealer(roles.flush, roles.writer, roles.datanode, roles.querynode, roles.catalog,
                                  roles.seal_rows, roles.seal_bytes)
            roles.catalog.on_drop(functools.partial(_forget_channels, roles.writer, roles.sealer))
        self.sealer: Sealer = roles.sealer
        if roles.segment_moves is None:
            from vecdb.coord.segment_moves import LocalSegmentMoves

            roles.segment_moves = LocalSegmentMoves(roles.querynode)
        self.segment_moves: SegmentMover = roles.segment_moves
        self.indexer: IndexBuilder = roles.datanode.indexer  # builds of what no query node here has loaded

    def stores(self) -> tuple[MetaStore, ObjectStore]:
        """The deployment's metadata and object stores, as this proxy's data node reaches them (a cluster
        proxy's ClusterDataNode wraps one): jobs, snapshots, file resources and refresh state live there."""
        node: Any = getattr(self.r.datanode, "local", self.r.datanode)
        return node.meta, node.objects

    def collection(self, db: str, name: str) -> CollectionInfo:
        if not name:
            raise errors.InvalidParameter("collection name should not be empty")
        return self.r.catalog.get(db, name)

    def partition_ids(self, info: CollectionInfo, names) -> set[int] | None:
        """Partitions a read covers: the named ones (each must be loaded), else every loaded one;
        None means all partitions."""
        names = [n for n in names if n]
        if not names:
            return None if info.loaded_partitions is None else set(info.loaded_partitions)
        if info.schema.partition_key_field is not None:
            raise errors.InvalidParameter(PARTITION_KEY_NAMES)
        parts = [info.partition(n) for n in names]
        for p in parts:
            if not info.partition_loaded(p.id):
                raise errors.PartitionNotLoaded(f"partition not loaded[partition={p.name}]")
        return {p.id for p in parts}

    def zone_of(self, info: CollectionInfo) -> str:
        """The time zone of the collection's TIMESTAMPTZ fields (``vecdb.timestamptz.zone_of``: its
        ``timezone`` property, else its database's, else UTC)."""
        return zone_of(info.properties, self.r.catalog.database(info.db)["properties"])

    def require_loaded(self, info: CollectionInfo) -> None:
        if not self.r.querynode.is_loaded(info.id):
            raise errors.CollectionNotLoaded(f"collection not loaded[collection={info.name}]")


def _forget_channels(writer: ShardWriter, sealer: Sealer, info: CollectionInfo) -> None:
    """A dropped collection (``Catalog.on_drop``: whichever proxy or coord dropped it, every catalog sees it):
    this proxy's writer state (locks, last positions, recent read timestamps) and seal counts of its channels go,
    else kept for good for each channel it wrote to or read from."""
    writer.forget(info.channels)
    sealer.unsealed.sealed(info.channels)


def kv_dict(pairs) -> dict[str, str]:
    return {kv.key: kv.value for kv in pairs}


def kv_pairs(d: dict) -> list:
    return [common_pb2.KeyValuePair(key=k, value=str(v)) for k, v in d.items()]


def hash_keys(keys: np.ndarray, modulo: int) -> np.ndarray:
    """Stable hash of primary/partition keys to [0, modulo): routes rows to shards and partitions."""
    if modulo == 1:
        return np.zeros(len(keys), np.int64)
    if keys.dtype == object:
        return np.fromiter((zlib.crc32(k.encode()) for k in keys), np.int64, len(keys)) % modulo
    x = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return ((x >> np.uint64(33)) % np.uint64(modulo)).astype(np.int64)


def default_partition(info: CollectionInfo):
    return info.partition(DEFAULT_PARTITION)


def parse_json_param(value: str, what: str) -> dict:
    try:
        out = json.loads(value) if value else {}
    except json.JSONDecodeError:
        raise errors.InvalidParameter(f"{what} is not valid JSON: {value}") from None
    if not isinstance(out, dict):
        raise errors.InvalidParameter(f"{what} must be a JSON object: {value}")
    return out


def pk_dtype(info: CollectionInfo) -> DataType:
    return info.schema.primary_field.dtype

"""The role contracts: what the proxy (and the data node) call on the other roles.

Standalone wires the in-process roles (``QueryNode``, ``DataNode``, ``TimestampOracle``,
``IdAllocator``, ``Catalog``, ``DdlManager``, ``FlushManager``); a cluster proxy wires their remote
clients (``QueryNodeRouter`` over ``RemoteQueryNode``s, ``RemoteTimestampOracle``, ``RemoteIdAllocator``,
``RemoteDdl`` and ``RemoteFlush``, which call the active coord). Callers type
against these Protocols, so where a role lives is not their business.

mypy checks the types where the roles are wired (``Roles``); tests/unit/test_role_contracts.py
checks that every implementation has every method with the same parameter names and kinds
(``isinstance`` on a Protocol would only check names). An implementation may add trailing
parameters with defaults: ``RemoteQueryNode``'s reads take ``wait`` (the log positions a Strong
read must see applied first), which the router passes and the proxy never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from vecdb.catalog_model import CollectionInfo
    from vecdb.coord.ddl import LoadState
    from vecdb.coord.flush import FlushResult
    from vecdb.coord.resource_groups import GroupConfig
    from vecdb.coord.schema_change import SchemaChange
    from vecdb.datanode.compactor import CompactionOptions
    from vecdb.group_partials import PartialSpec
    from vecdb.querynode.executor import Hits, SearchSpec
    from vecdb.schema import CollectionSchema, FieldSchema
    from vecdb.top_rows import Order


class TimestampSource(Protocol):
    """Hybrid timestamps (``vecdb.timestamp``: physical ms << 18 | logical)."""

    def allocate(self, count: int = 1) -> int:
        """The first of ``count`` consecutive timestamps, each larger than every one handed out
        before, by any process of the cluster, across restarts and coord failovers."""
        ...


class IdSource(Protocol):
    """Cluster-unique int64 ids: collection, partition and index ids, auto_id primary keys."""

    def allocate(self, count: int = 1) -> int:
        """The first of ``count`` consecutive ids, none of them handed out before."""
        ...


class RowFilter(Protocol):
    """A boolean expression over a segment's rows (``vecdb.expr.filter.Filter``, or the proxy's
    primary-key filter). ``expr`` and ``template`` are its source, which a remote query node
    compiles again; ``fields`` the columns ``evaluate`` reads."""

    @property
    def expr(self) -> str: ...

    @property
    def template(self) -> dict | None: ...

    @property
    def fields(self) -> frozenset[str]: ...

    def evaluate(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """A new bool mask of length ``n``; only the names in ``fields`` are read from ``columns``."""
        ...


class QueryNodeRole(Protocol):
    """Loads collections and answers reads over them.

    Reads see every row written at or before ``ts`` (a search's ``spec.ts``) and not deleted
    by then. ``partition_ids`` None means every partition; ``limit`` None means no limit.
    Search results are ordered closest first per query: ascending distance, or descending
    similarity for IP and COSINE (``vecdb.index.base``)."""

    def load(self, info: CollectionInfo) -> None: ...

    def release(self, collection_id: int) -> None: ...

    def is_loaded(self, collection_id: int) -> bool: ...

    def refresh_info(self, info: CollectionInfo) -> None:
        """Take a loaded collection's new description (indexes, properties, partitions)."""
        ...

    def schedule_indexes(self, info: CollectionInfo) -> None:
        """Build the collection's indexes on the loaded sealed segments that lack them."""
        ...

    def drop_partition(self, collection_id: int, partition_id: int) -> None: ...

    def search(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
               output_fields: Sequence[str]) -> Hits: ...

    def query(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              output_fields: Sequence[str], limit: int | None, offset: int, *,
              sealed_only: bool = False) -> dict[str, np.ndarray]:
        """``sealed_only``: growing segments are not read (Milvus's ``ignore_growing``)."""
        ...

    def query_partials(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                       spec: PartialSpec, *, sealed_only: bool = False) -> dict[str, np.ndarray]:
        """A query aggregation's per-group partial aggregates (``vecdb.group_partials``) of the rows
        ``query`` would return, merged over segments and nodes."""
        ...

    def query_top(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                  output_fields: Sequence[str], order: Order, limit: int, offset: int, *,
                  sealed_only: bool = False) -> dict[str, np.ndarray]:
        """A plain query's ORDER BY with a limit (``vecdb.top_rows``): the rows ``query`` would return,
        ordered by ``order`` (ties by primary key), ``offset`` skipped, at most ``limit``; each node
        sends only its first ``limit + offset``. ``output_fields`` must hold the sort columns
        (``TopSpec.columns``)."""
        ...

    def count(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None, *,
              sealed_only: bool = False) -> int: ...

    def growing_rows(self, channel: str) -> int:
        """Rows of the channel not yet sealed (the proxy's seal policy: ``vecdb.coord.sealer``)."""
        ...

    def index_state(self, collection_id: int, field_name: str) -> tuple[int, int]:
        """(rows indexed or needing no index, total rows) of the loaded collection's field."""
        ...

    def segment_infos(self, info: CollectionInfo) -> list[dict[str, Any]]:
        """The loaded segments (id, partition, rows, state); with ``node_ids`` (the nodes holding
        each) where there are several nodes."""
        ...

    def serving_nodes(self) -> list[tuple[int, str]]:
        """(node id, address) of each query node."""
        ...

    def replicas(self, collection_id: int) -> list[dict[str, Any]]:
        """The loaded collection's replicas: ``id``, ``nodes`` (node ids) and ``leaders`` (channel
        -> (node id, address) of the node serving it)."""
        ...


class IndexBuilder(Protocol):
    """Builds the index files of persisted segments: standalone, of the collections its query node has
    not loaded (that node builds the rest); in a cluster the data node owning a channel builds every
    segment of it (``vecdb.datanode.index_scheduler``), a proxy only while no data node lives."""

    # whether ``state`` is the progress of a loaded collection too: in a cluster every build is a data
    # node's (or a proxy's) and recorded; standalone, a loaded collection's query node builds its own
    builds_loaded: bool

    def schedule(self, info: CollectionInfo) -> None: ...

    def state(self, info: CollectionInfo, field_name: str) -> tuple[int, int]:
        """(rows indexed or needing no index, total rows) over the persisted segments."""
        ...

    def failures(self, info: CollectionInfo, index_id: int) -> list[dict[str, Any]]: ...

    def settle(self, collection_id: int) -> None:
        """Drop the builds not started yet and wait for the running ones."""
        ...


class DataNodeRole(Protocol):
    """Persists the log into segments in the object store and keeps their metadata."""

    @property
    def indexer(self) -> IndexBuilder: ...

    def persist(self, info: CollectionInfo, channel: str, upto: int) -> list[dict[str, Any]]:
        """Persist the channel's records after its checkpoint up to position ``upto``; the new
        segments' infos."""
        ...

    def segments(self, info: CollectionInfo) -> list[dict[str, Any]]: ...

    def row_count(self, info: CollectionInfo, partition_ids: Iterable[int] | None = None) -> int:
        """Rows of the collection's segments, from metadata (Milvus's ``row_count``: deleted rows
        counted until compaction; ``vecdb.datanode.row_stats``)."""
        ...

    def drop_collection(self, info: CollectionInfo) -> None: ...

    def drop_partition(self, info: CollectionInfo, partition_id: int) -> None: ...

    def truncate_collection(self, info: CollectionInfo, ts: int) -> None:
        """Drop the sealed segments whose rows were all written at or before ``ts``."""
        ...

    def forget_index_builds(self, collection_id: int, index_ids: Iterable[int]) -> None: ...

    def compact(self, info: CollectionInfo, clustering: bool = False, options: CompactionOptions | None = None) -> int:
        """client.compact: a compaction request the data nodes owning the channels carry out
        (``vecdb.datanode.compactor``; ``clustering``: a clustering compaction; ``options``: a force
        merge, an L0 compaction, some segments, a partition or a channel only); its id."""
        ...

    def compaction(self, compaction_id: int) -> dict[str, Any] | None:
        """A compaction request's record (state and plans per channel); None when unknown."""
        ...

    def compactions(self, collection_id: int) -> list[dict[str, Any]]:
        """The collection's compaction request records still kept (``list_compaction_tasks``)."""
        ...

    def segment_list(self, info: CollectionInfo, states: Iterable[int] = ()) -> list[dict[str, Any]]:
        """The collection's segments in Milvus states (``list_segments``; ``vecdb.datanode.segment_listing``):
        ``states`` empty, the live ones."""
        ...

    def seals_itself(self) -> bool:
        """Whether the data nodes apply the seal policy as they follow the channels (data node
        processes: ``vecdb.datanode.flusher``); False: the proxy's writes do (``growing_rows``)."""
        ...


class CatalogRole(Protocol):
    """Databases, collections, partitions, aliases and indexes. When a write returns, every
    proxy's catalog reads it (``vecdb.coord.catalog``)."""

    def create_database(self, name: str, db_id: int, ts: int, properties: dict[str, str]) -> None: ...

    def drop_database(self, name: str) -> None: ...

    def list_databases(self) -> list[str]: ...

    def database(self, name: str) -> dict[str, Any]: ...

    def alter_database(self, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        """``properties`` set, then ``delete_keys`` removed."""
        ...

    def get(self, db: str, name: str) -> CollectionInfo:
        """By name or alias; raises CollectionNotFound."""
        ...

    def get_by_id(self, collection_id: int) -> CollectionInfo: ...

    def fresh(self, info: CollectionInfo) -> CollectionInfo:
        """``info``'s collection re-read when the store's catalog is newer than the cache (a read
        that misses a part of a collection it found: an index); raises CollectionNotFound."""
        ...

    def exists(self, db: str, name: str) -> bool: ...

    def list_collections(self, db: str) -> list[CollectionInfo]: ...

    def collection_count(self) -> int: ...

    def on_drop(self, forget: Callable[[CollectionInfo], None]) -> None: ...

    def add_collection(self, info: CollectionInfo) -> None: ...

    def save(self, info: CollectionInfo) -> None: ...

    def drop_collection(self, info: CollectionInfo) -> None: ...

    def rename_collection(self, info: CollectionInfo, new_db: str, new_name: str) -> None: ...

    def create_alias(self, db: str, alias: str, collection: str) -> None: ...

    def alter_alias(self, db: str, alias: str, collection: str) -> None: ...

    def drop_alias(self, db: str, alias: str) -> None: ...

    def describe_alias(self, db: str, alias: str) -> CollectionInfo: ...

    def aliases_of(self, info: CollectionInfo) -> list[str]: ...

    def list_aliases(self, db: str, collection: str | None) -> list[str]: ...


class DdlRole(Protocol):
    """The catalog's changes, decided by the coord (``vecdb.coord.ddl``): the checks against the
    current catalog, the ids and timestamps of what is created, replica placement at load. A call
    returns once every live proxy's catalog has the change. The caller validates the request
    first and then does what the nodes must (release, drop files, build indexes, wait for a load)."""

    def create_database(self, name: str, properties: dict[str, str]) -> None: ...

    def drop_database(self, name: str) -> None: ...

    def alter_database(self, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        """``properties`` set, then ``delete_keys`` removed."""
        ...

    def create_collection(self, db: str, name: str, schema: CollectionSchema, shards_num: int,
                          consistency_level: int, properties: dict[str, str], num_partitions: int) -> int:
        """The collection's id (the existing one's when it has the same schema)."""
        ...

    def drop_collection(self, db: str, name: str) -> int | None:
        """The dropped collection's id; None when there was none."""
        ...

    def rename_collection(self, db: str, name: str, new_db: str, new_name: str) -> None: ...

    def alter_collection(self, db: str, name: str, properties: dict[str, str], delete_keys: list[str]) -> None: ...

    def add_collection_field(self, db: str, name: str, new: FieldSchema) -> int:
        """Add a field (``vecdb.schema.added_field`` checked it) to the schema; its id."""
        ...

    def alter_collection_field(self, db: str, name: str, field_name: str, properties: dict[str, str],
                               delete_keys: list[str]) -> None: ...

    def alter_collection_schema(self, db: str, name: str, change: SchemaChange) -> list[int]:
        """AlterCollectionSchema (``vecdb.coord.schema_change``); the ids of the indexes dropped with a field."""
        ...

    def truncate_collection(self, db: str, name: str) -> int:
        """The collection's new ``truncated_ts``: rows written at or before it are gone."""
        ...

    def create_partition(self, db: str, collection: str, partition: str) -> None: ...

    def drop_partition(self, db: str, collection: str, partition: str) -> int | None:
        """The dropped partition's id; None when there was none."""
        ...

    def create_alias(self, db: str, alias: str, collection: str) -> None: ...

    def alter_alias(self, db: str, alias: str, collection: str) -> None: ...

    def drop_alias(self, db: str, alias: str) -> None: ...

    def create_index(self, db: str, collection: str, field_name: str, index_name: str, index_type: str,
                     metric_type: str, params: dict[str, Any], user_params: dict[str, str] | None = None,
                     properties: dict[str, str] | None = None) -> None:
        """``user_params``: what the client asked for where the server chose the index (AUTOINDEX);
        ``properties``: the index's properties given at create (``IndexInfo.properties``)."""
        ...

    def drop_index(self, db: str, collection: str, index_name: str, field_name: str) -> list[int]:
        """The dropped indexes' ids."""
        ...

    def alter_index(self, db: str, collection: str, index_name: str, properties: dict[str, str],
                    delete_keys: list[str]) -> None: ...

    def load(self, db: str, collection: str, partition_names: list[str] | None, replica_number: int,
             resource_groups: list[str]) -> LoadState:
        """Mark it loaded with its replicas placed; the load state before (for ``undo_load``)."""
        ...

    def undo_load(self, collection_id: int, before: LoadState) -> None: ...

    def release(self, db: str, collection: str, partition_names: list[str] | None) -> bool:
        """Whether the whole collection is released now."""
        ...

    def transfer_replica(self, db: str, collection: str, source: str, target: str, num_replica: int) -> None: ...

    def create_resource_group(self, name: str, config: GroupConfig | None) -> None: ...

    def update_resource_groups(self, configs: dict[str, GroupConfig]) -> None: ...

    def drop_resource_group(self, name: str) -> None:
        """Refused while a loaded collection has replicas in the group."""
        ...

    def transfer_node(self, source: str, target: str, num: int) -> None: ...


class FlushRole(Protocol):
    """A collection's flush, run by the coord (``vecdb.coord.flush``): seal records written into the
    channels under one timestamp, then persisted by the data nodes owning them."""

    def flush(self, collection_id: int, channels: Sequence[str]) -> FlushResult:
        """Returns once each channel is persisted up to its seal record, except those no data node
        process persists (``FlushResult.unpersisted``: the caller persists them in-process). May be
        repeated: no row is lost or persisted twice."""
        ...


class SegmentMover(Protocol):
    """Manual segment moves (Milvus's LoadBalance; ``vecdb.coord.segment_moves``): a cluster's coord
    pins them and waits for the nodes, a standalone server checks the request only."""

    def move_segments(self, info: CollectionInfo, source: int, targets: Sequence[int],
                      segment_ids: Sequence[int]) -> None:
        """Moves sealed segments of the loaded collection from query node ``source`` to ``targets``
        of its replica (node numbers as clients see them; none: the replica's other nodes; no
        segments: all ``source`` serves); returns once the targets serve them. NodeNotFound,
        SegmentNotFound."""
        ...

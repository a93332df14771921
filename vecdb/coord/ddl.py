"""The coord's DDL manager: databases, collections, partitions, aliases, indexes and load state.

Every change to the catalog is decided and written here, on the coord's own ``Catalog``
(``vecdb.coord.catalog``): the checks run on the coord's cache, the write is a compare-and-set on
the catalog version, and the call returns once every live proxy applied it (the catalog's fence,
``vecdb.coord.catalog_sync``), so DDL through one proxy is visible through every other when it
returns. Standalone wires a ``DdlManager`` in-process over its catalog (the proxy's handlers call
it directly); a cluster's active coord runs one per term behind the DDL RPCs of
``proto/coord.proto`` (``vecdb.coord.ddl_rpc``), and a cluster proxy calls them through
``RemoteDdl``. The contract is ``vecdb.roles.DdlRole``.

What stays with the caller (the proxy): parsing and validating the request (schema, index
parameters, names), Milvus's error codes, and what the query and data nodes do about a change:
releasing a dropped collection, deleting its files, building indexes, waiting until a load is
served. What is decided here: ids and timestamps of what is created, the checks against the
current catalog (exists, duplicate, loaded), replica placement on resource groups at load.

Retries. A call may be repeated after a failover or a lost reply (``CoordClient`` retries on
``ServiceNotReady`` / ``ServiceUnavailable``); a repeat carries ``retry=True``. Drops, alters and
release are idempotent by themselves (a drop index repeat answers []); a create that finds exactly
what it would have made (database, partition, alias on the same collection, collection with the
same schema, index with the same parameters, resource group with the same config) answers success
on a repeat instead of "already exists"; a rename that finds the old name gone and the new one
there does too. Not made safe: a repeated ``load`` answers the state its first try left (an undo
then keeps it loaded), and ``transfer_replica`` / ``transfer_node`` move again (as in Milvus).

Changes are serialized by one lock (the coord is the catalog's one writer in a cluster, so the
compare-and-set seldom loses; a ``CatalogConflict`` from a save is tried again on a fresh copy).

Database and collection properties acted on here (``vecdb.coord.properties``), as Milvus's rootcoord
and querycoord do: ``database.max.collections`` caps a database's collections;
``database.force.deny.ddl`` and its narrower keys refuse the DDL of their kind in that database
(``check_not_denied``; the proxy asks the same of writes and reads, ``vecdb.proxy.quota``); a load
that names neither a replica number nor resource groups takes them from ``collection.replica.number``
/ ``collection.resource_groups``, else ``database.replica.number`` / ``database.resource_groups``
(``load_defaults``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from vecdb import errors, key_isolation
from vecdb.catalog_model import (
    DEFAULT_DB,
    DEFAULT_PARTITION,
    LOAD_TIME_PROPERTIES,
    CollectionInfo,
    IndexInfo,
    PartitionInfo,
)
from vecdb.coord import schema_change
from vecdb.coord.catalog_sync import CatalogConflict
from vecdb.coord.properties import (
    check_collection_properties,
    check_database_properties,
    check_not_denied,
    load_defaults,
    max_collections,
)
from vecdb.coord.resource_groups import GroupConfig, replica_groups, replica_groups_of, transfer_replicas
from vecdb.coord.resource_groups import validate_name as validate_resource_group_name
from vecdb.limits import LIMITS
from vecdb.namespaces import FIXED_PROPERTIES
from vecdb.schema import CollectionSchema, FieldSchema, altered_field, validate_collection_name, validate_partition_name

if TYPE_CHECKING:
    from vecdb.coord.resource_groups import ResourceGroups
    from vecdb.coord.schema_change import SchemaChange
    from vecdb.roles import CatalogRole, IdSource, TimestampSource

T = TypeVar("T")

_SAVE_TRIES = 3  # a save refused with CatalogConflict is tried again on a fresh copy this many times


@dataclass
class LoadState:
    """A collection's load state in the catalog (what ``load`` changed, for ``undo_load``)."""

    loaded: bool = False
    loaded_partitions: list[int] | None = None
    replica_number: int = 1
    resource_groups: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, info: CollectionInfo) -> LoadState:
        parts = None if info.loaded_partitions is None else list(info.loaded_partitions)
        return cls(info.loaded, parts, info.replica_number, list(info.resource_groups))

    def apply(self, info: CollectionInfo) -> None:
        info.loaded = self.loaded
        info.loaded_partitions = None if self.loaded_partitions is None else list(self.loaded_partitions)
        info.replica_number, info.resource_groups = self.replica_number, list(self.resource_groups)


def too_many_partitions(n: int) -> str:
    return f"partition number ({n}) exceeds max configuration ({LIMITS.max_partitions})"


class DdlManager:
    """``groups``: the resource groups replicas are placed on at load (None: every replica in the
    default group, no check of its nodes)."""

    def __init__(self, catalog: CatalogRole, ids: IdSource, tso: TimestampSource,
                 groups: ResourceGroups | None = None):
        self.catalog, self.ids, self.tso, self.groups = catalog, ids, tso, groups
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the catalog it was given (the coord's, opened for it by ``ddl_rpc.open_ddl``)."""
        close = getattr(self.catalog, "close", None)
        if close is not None:
            close()

    @property
    def version(self) -> int:
        """The catalog version the coord's cache is at (every change returned so far is in it)."""
        return int(getattr(self.catalog, "version", 0))

    def _serial(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return fn()

    def _allow(self, db: str, kind: str) -> None:
        """Refuse DDL of ``kind`` that the database's properties deny (run under the lock: an
        alter_database that allows it again is seen by the next call)."""
        check_not_denied(self.catalog.database(db or DEFAULT_DB)["properties"], kind)

    def _saving(self, get: Callable[[], CollectionInfo], change: Callable[[CollectionInfo], T]) -> T:
        """``change(info)`` on the cached collection, then save it; on a conflict (another writer
        changed it meanwhile) once more on the fresh copy."""
        with self._lock:
            for attempt in range(_SAVE_TRIES):
                info = get()
                out = change(info)
                try:
                    self.catalog.save(info)
                    return out
                except CatalogConflict:
                    if attempt == _SAVE_TRIES - 1:
                        raise
            raise AssertionError("unreachable")

    # --- databases ------------------------------------------------------------------
    def create_database(self, name: str, properties: dict[str, str], *, retry: bool = False) -> None:
        check_database_properties(properties)

        def run() -> None:
            if retry and name in self.catalog.list_databases():
                if self.catalog.database(name)["properties"] == properties:
                    return  # the first try's
            self.catalog.create_database(name, self.ids.allocate(), self.tso.allocate(), dict(properties))

        self._serial(run)

    def drop_database(self, name: str) -> None:
        self._serial(lambda: self.catalog.drop_database(name))

    def alter_database(self, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        check_database_properties(properties)
        self._serial(lambda: self.catalog.alter_database(name, dict(properties), list(delete_keys)))

    # --- collections ----------------------------------------------------------------
    def create_collection(self, db: str, name: str, schema: CollectionSchema, shards_num: int,
                          consistency_level: int, properties: dict[str, str], num_partitions: int) -> int:
        """The collection's id. ``num_partitions``: the partitions of a partition-key collection
        (the caller's default applied), else 0. The same name with the same schema again is
        accepted (Milvus's rule; it also makes a repeat safe)."""
        db = db or DEFAULT_DB
        validate_collection_name(name)
        check_collection_properties(properties)
        key_isolation.check_create(name, schema, properties)
        pk_field = schema.partition_key_field
        if pk_field is None and num_partitions:
            raise errors.InvalidParameter("num_partitions should only be specified with partition key field enabled")
        if num_partitions > LIMITS.max_partitions:
            raise errors.InvalidParameter(too_many_partitions(num_partitions))
        names = [f"{DEFAULT_PARTITION}_{i}" for i in range(num_partitions)] if pk_field else [DEFAULT_PARTITION]

        def run() -> int:
            self._allow(db, "ddl_collection")
            if self.catalog.exists(db, name):
                existing = self.catalog.get(db, name)
                if existing.name == name and existing.schema.to_dict() == schema.to_dict() \
                        and (existing.shards_num, existing.consistency_level) == (shards_num, consistency_level):
                    return existing.id  # Milvus's rootcoord compares shards and consistency level too
            self._check_room(db)
            if self.catalog.collection_count() >= LIMITS.max_collections:
                raise errors.CollectionLimitExceeded(
                    f"exceeded the limit number of collections[limit={LIMITS.max_collections}]")
            ts = self.tso.allocate()
            first_pid = self.ids.allocate(len(names))
            info = CollectionInfo(
                id=self.ids.allocate(), db=db, name=name, schema=schema, shards_num=shards_num,
                consistency_level=consistency_level, created_ts=ts, properties=dict(properties),
                num_partitions=num_partitions if pk_field else 0,
                partitions=[PartitionInfo(first_pid + i, n, ts) for i, n in enumerate(names)])
            self.catalog.add_collection(info)
            return info.id

        return self._serial(run)

    def _check_room(self, db: str) -> None:
        """CollectionLimitExceeded when the database holds ``database.max.collections`` already
        (Milvus's rootcoord checks it before the cluster-wide limit, with these words)."""
        limit = max_collections(self.catalog.database(db)["properties"])
        if limit is not None and len(self.catalog.list_collections(db)) >= limit:
            raise errors.CollectionLimitExceeded(
                f"exceeded the limit number of collections[dbName={db}][limit={limit}]")

    def drop_collection(self, db: str, name: str) -> int | None:
        """The dropped collection's id; None when there was none by that name."""
        db = db or DEFAULT_DB

        def run() -> int | None:
            self._allow(db, "ddl_collection")
            if not self.catalog.exists(db, name):
                return None
            info = self.catalog.get(db, name)
            if name in self.catalog.aliases_of(info):
                raise errors.InvalidParameter(f"cannot drop the collection via alias = {name}")
            self.catalog.drop_collection(info)
            return info.id

        return self._serial(run)

    def rename_collection(self, db: str, name: str, new_db: str, new_name: str, *, retry: bool = False) -> None:
        db = db or DEFAULT_DB
        new_db = new_db or db

        def run() -> None:
            self._allow(db, "ddl_collection")
            if retry and not self.catalog.exists(db, name) and self.catalog.exists(new_db, new_name):
                return  # the first try's
            info = self.catalog.get(db, name)
            if name in self.catalog.aliases_of(info):
                raise errors.InvalidParameter(f"unsupported use an alias to rename collection, alias:{name}")
            self.catalog.rename_collection(info, new_db, new_name)

        self._serial(run)

    def alter_collection(self, db: str, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        check_collection_properties(properties)
        fixed = [k for k in (*properties, *delete_keys) if k in FIXED_PROPERTIES]
        if fixed:
            raise errors.InvalidParameter(f"{fixed[0]} is set at create and cannot be altered or deleted")

        for key in LOAD_TIME_PROPERTIES:
            if key in properties and properties[key].strip().lower() not in ("true", "false"):
                raise errors.InvalidParameter(f"invalid {key} value: {properties[key]}, expected true or false")

        def change(info: CollectionInfo) -> None:
            self._allow(info.db, "ddl_collection")
            indexed = next((i.field_name for i in info.indexes if (f := info.schema.field(i.field_name)) is not None
                            and f.dtype.is_vector), None)
            key_isolation.check_alter(info.name, info.schema, info.properties, properties, delete_keys, indexed)
            # read when segments are loaded: a loaded collection would not change until reloaded (Milvus's
            # alterCollectionTask refuses it the same way)
            for verb, keys in (("alter", properties), ("delete", delete_keys)):
                if info.loaded and any(k in LOAD_TIME_PROPERTIES for k in keys):
                    raise errors.CollectionLoaded(f"can not {verb} mmap properties if collection loaded: "
                                                  f"collection already loaded[collection={info.name}]")
            info.properties.update(properties)
            for k in delete_keys:
                info.properties.pop(k, None)

        self._saving(lambda: self.catalog.get(db or DEFAULT_DB, name), change)

    def add_collection_field(self, db: str, name: str, new: FieldSchema, *, retry: bool = False) -> int:
        """Add ``new`` (checked by ``vecdb.schema.added_field``) to the collection's schema: its id the
        largest plus one, placed before the dynamic field, the schema version moved by one. Returns
        the field id. A repeat that finds the same field there answers it; another field of that
        name is refused."""

        def change(info: CollectionInfo) -> int:
            self._allow(info.db, "ddl_collection")
            schema = info.schema
            there = schema.field(new.name)
            if there is not None:
                if retry and _same_field(there, new):
                    return there.field_id
                raise errors.InvalidParameter(f"duplicate field name: {new.name}")
            if len(schema.fields) + 1 > LIMITS.max_fields:
                raise errors.InvalidParameter(f"maximum field's number should be limited to {LIMITS.max_fields}")
            added = FieldSchema.from_dict(new.to_dict())
            added.field_id = schema.next_field_id()
            schema = CollectionSchema.from_dict(schema.to_dict())  # a new object: readers of the old keep it whole
            at = next((i for i, f in enumerate(schema.fields) if f.is_dynamic), len(schema.fields))
            schema.fields.insert(at, added)
            schema.version += 1
            schema.update_ts = self.tso.allocate()
            info.schema = schema
            return added.field_id

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, name), change)

    def alter_collection_field(self, db: str, name: str, field_name: str, properties: dict[str, str],
                               delete_keys: list[str]) -> None:
        """Change a field's properties (``vecdb.schema.altered_field``: what Milvus allows, the rest
        refused). The same change again leaves the schema as it is."""

        def change(info: CollectionInfo) -> None:
            self._allow(info.db, "ddl_collection")
            f = info.schema.field(field_name)
            if f is None or f.is_hidden:
                raise errors.FieldNotFound(f"field {field_name} does not exist in collection {name}")
            new = altered_field(f, properties, delete_keys)
            if new == f:
                return
            schema = CollectionSchema.from_dict(info.schema.to_dict())
            schema.fields = [new if x.name == field_name else x for x in schema.fields]
            schema.update_ts = self.tso.allocate()
            info.schema = schema

        self._saving(lambda: self.catalog.get(db or DEFAULT_DB, name), change)

    def alter_collection_schema(self, db: str, name: str, change: SchemaChange, *, retry: bool = False) -> list[int]:
        """Milvus 3.0's AlterCollectionSchema: drop a field, drop a function with its output, or add a
        function with its output field and index (``vecdb.coord.schema_change``'s rules). Returns the
        ids of the indexes dropped with a field."""

        def change_info(info: CollectionInfo) -> list[int]:
            self._allow(info.db, "ddl_collection")
            index_id = self.ids.allocate() if change.index else 0
            return schema_change.apply(info, change, index_id, self.tso.allocate(), retry=retry)

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, name), change_info)

    def truncate_collection(self, db: str, name: str) -> int:
        """Mark every row written so far gone: a new timestamp becomes the collection's
        ``truncated_ts`` (rows at or before it are dropped by the query nodes, the data nodes' persist
        and a load), and is returned. Schema, indexes, partitions, aliases and load state stay."""

        def change(info: CollectionInfo) -> int:
            self._allow(info.db, "ddl_collection")
            info.truncated_ts = self.tso.allocate()
            return info.truncated_ts

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, name), change)

    # --- partitions -----------------------------------------------------------------
    def create_partition(self, db: str, collection: str, partition: str, *, retry: bool = False) -> None:
        validate_partition_name(partition)

        def change(info: CollectionInfo) -> None:
            self._allow(info.db, "ddl_partition")
            if info.schema.partition_key_field is not None:
                raise errors.InvalidParameter("disable create partition if partition key mode is used")
            if info.has_partition(partition):
                return  # as Milvus's rootcoord ("add duplicate partition" is no error), a retry's too
            if len(info.partitions) >= LIMITS.max_partitions:
                raise errors.InvalidParameter(too_many_partitions(len(info.partitions)))
            info.partitions.append(PartitionInfo(self.ids.allocate(), partition, self.tso.allocate()))
            if info.loaded and info.loaded_partitions is not None and info.loads_new_partitions:
                info.loaded_partitions = [*info.loaded_partitions, info.partitions[-1].id]

        self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    def drop_partition(self, db: str, collection: str, partition: str) -> int | None:
        """The dropped partition's id; None when there was none by that name."""
        if partition == DEFAULT_PARTITION:
            raise errors.InvalidParameter("default partition cannot be deleted")

        def change(info: CollectionInfo) -> int | None:
            self._allow(info.db, "ddl_partition")
            if info.schema.partition_key_field is not None:
                raise errors.InvalidParameter("disable drop partition if partition key mode is used")
            if not info.has_partition(partition):
                return None
            part = info.partition(partition)
            if info.partition_loaded(part.id):
                raise errors.InvalidParameter(
                    f"partition cannot be dropped, partition is loaded, please release it first[partition={part.name}]")
            info.partitions = [p for p in info.partitions if p.id != part.id]
            return part.id

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    # --- aliases --------------------------------------------------------------------
    def create_alias(self, db: str, alias: str, collection: str, *, retry: bool = False) -> None:
        def run() -> None:
            try:
                self.catalog.create_alias(db, alias, collection)
            except errors.AliasAlreadyExists:
                # the same alias of the same collection again is no error (Milvus's rootcoord), a retry's too
                if self.catalog.describe_alias(db, alias).id != self.catalog.get(db, collection).id:
                    raise

        self._serial(run)

    def alter_alias(self, db: str, alias: str, collection: str) -> None:
        self._serial(lambda: self.catalog.alter_alias(db, alias, collection))

    def drop_alias(self, db: str, alias: str) -> None:
        self._serial(lambda: self.catalog.drop_alias(db, alias))

    # --- indexes --------------------------------------------------------------------
    def create_index(self, db: str, collection: str, field_name: str, index_name: str, index_type: str,
                     metric_type: str, params: dict[str, Any], user_params: dict[str, str] | None = None,
                     properties: dict[str, str] | None = None) -> None:
        """The index as the caller validated it (``vecdb.index.validate_index_params``); ``user_params``:
        what the client asked for where the server chose the index (AUTOINDEX, ``IndexInfo.user_params``);
        ``properties``: its properties given at create (``mmap.enabled``, as alter_index sets them).
        An unnamed index takes the field's existing index name, else the field name (Milvus's datacoord);
        the same index again (user params included, as Milvus compares them) is accepted, another one on
        the field or under a taken name is not. A JSON field takes one index per ``json_path``
        (``CollectionInfo.index_on``), each under a name of its own."""
        user = dict(user_params or {})

        def change(info: CollectionInfo) -> None:
            self._allow(info.db, "ddl_index")
            if info.schema.field(field_name) is None:
                raise errors.FieldNotFound(f"cannot create index on non-exist field: {field_name}")
            existing = info.index_on(field_name, params)
            default = existing or info.index_for_field(field_name)  # (Milvus: the field's index's name)
            name = index_name or (default.index_name if default is not None else field_name)
            if existing is not None:
                if existing.same_as(index_type, metric_type, params, user):
                    return
                raise errors.IndexDuplicate("at most one distinct index is allowed per field")
            taken = next((i for i in info.indexes if i.index_name == name), None)
            if taken is not None:  # (an unnamed index on another path of a JSON field takes its index's name)
                raise errors.IndexDuplicate("at most one distinct index is allowed per field" if
                                            taken.field_name == field_name else
                                            f"index name {name} already exists on another field")
            info.indexes.append(IndexInfo(self.ids.allocate(), name, field_name, index_type, metric_type,
                                          dict(params), self.tso.allocate(), properties=dict(properties or {}),
                                          user_params=user))

        self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    def alter_index(self, db: str, collection: str, index_name: str, properties: dict[str, str],
                    delete_keys: list[str]) -> None:
        """Set and delete an index's properties (the keys the proxy allows: ``vecdb.proxy.rpc_index``).
        Refused while the collection is loaded, as Milvus refuses it."""

        def change(info: CollectionInfo) -> None:
            self._allow(info.db, "ddl_index")
            if info.loaded:
                raise errors.CollectionLoaded(
                    f"can't alter index on loaded collection, please release the collection first: "
                    f"collection already loaded[collection={info.name}]")
            found = [i for i in info.indexes if i.index_name == index_name]
            if not found:
                raise errors.IndexNotFound(f"index not found[indexName={index_name}]")
            idx = found[0]
            idx.properties.update(properties)
            for key in delete_keys:
                idx.properties.pop(key, None)

        self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    def drop_index(self, db: str, collection: str, index_name: str, field_name: str, *,
                   retry: bool = False) -> list[int]:
        """The dropped indexes' ids (IndexNotFound when none matches, [] on a repeat). Refused while
        loaded."""

        def change(info: CollectionInfo) -> list[int]:
            self._allow(info.db, "ddl_index")
            if info.loaded:
                raise errors.InvalidParameter("index cannot be dropped, collection is loaded, please release it first")
            try:
                drop = [i.index_id for i in matching_indexes(info, index_name, field_name)]
            except errors.IndexNotFound:
                if retry:
                    return []  # the first try dropped it
                raise
            info.indexes = [i for i in info.indexes if i.index_id not in drop]
            return drop

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    # --- load state -----------------------------------------------------------------
    def load(self, db: str, collection: str, partition_names: list[str] | None, replica_number: int,
             resource_groups: list[str]) -> LoadState:
        """Mark the collection loaded (``partition_names`` None: whole, else those partitions too),
        its replicas placed on resource groups; the state before, for ``undo_load`` when the
        query nodes cannot load it. Refused without an index on every vector field. A load that
        names neither a replica number nor groups takes the properties' (``load_defaults``)."""
        if replica_number < 0:
            raise errors.InvalidParameter(f"invalid replica_number {replica_number}: it must be positive")
        requested = [g for g in resource_groups if g]
        for g in requested:
            validate_resource_group_name(g)

        def change(info: CollectionInfo) -> LoadState:
            self._allow(info.db, "ddl_collection" if partition_names is None else "ddl_partition")
            for f in info.schema.indexed_vector_fields:
                if info.index_for_field(f.name) is None:
                    raise errors.IndexNotFound(
                        f"there is no vector index on field: [{f.name}], please create index firstly: "
                        f"collection={info.name}")
            replicas, groups = replica_number, requested
            if not replicas and not groups:
                replicas, groups = load_defaults(info.properties, self.catalog.database(info.db)["properties"])
                for g in groups:
                    validate_resource_group_name(g)
            before = LoadState.of(info)
            partition_ids = None if partition_names is None else [info.partition(n).id for n in partition_names]
            if replicas or groups or not info.loaded:
                number = replicas or (info.replica_number if info.loaded else 1)
                snapshot = self.groups.snapshot() if self.groups is not None else None
                info.resource_groups = (replica_groups(groups, number, snapshot) if snapshot is not None
                                        else list(groups))
            if partition_ids is None:
                info.loaded_partitions = None
            elif not info.loaded:
                info.loaded_partitions = sorted(set(partition_ids))
                info.loads_new_partitions = False
            elif info.loaded_partitions is not None:
                info.loaded_partitions = sorted(set(info.loaded_partitions) | set(partition_ids))
            if replicas or not info.loaded:
                info.replica_number = replicas or 1
            info.loaded = True
            return before

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    def undo_load(self, collection_id: int, before: LoadState) -> None:
        """Put back the load state ``load`` found (its query nodes could not load it)."""

        def change(info: CollectionInfo) -> None:
            before.apply(info)

        try:
            self._saving(lambda: self.catalog.get_by_id(collection_id), change)
        except errors.CollectionNotFound:
            pass  # dropped meanwhile: nothing to put back

    def transfer_replica(self, db: str, collection: str, source: str, target: str, num_replica: int) -> None:
        """Move ``num_replica`` of the loaded collection's replicas from group ``source`` to ``target``
        (the caller checked that both exist); the assignment then moves their nodes."""

        def change(info: CollectionInfo) -> None:
            if not info.loaded:
                raise errors.InvalidParameter(
                    f"invalid parameter[expected=Collection not loaded][actual=collectionID {info.id}]")
            info.resource_groups = transfer_replicas(replica_groups_of(info), source, target, num_replica)

        self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)

    # --- resource groups ----------------------------------------------------------
    def _groups(self) -> ResourceGroups:
        if self.groups is None:
            raise errors.OperationNotSupported("resource groups are not set up on this server")
        return self.groups

    def create_resource_group(self, name: str, config: GroupConfig | None) -> None:
        self._serial(lambda: self._groups().create(name, config))

    def update_resource_groups(self, configs: dict[str, GroupConfig]) -> None:
        self._serial(lambda: self._groups().update(configs))

    def drop_resource_group(self, name: str) -> None:
        """Refused while a loaded collection has replicas in the group (checked under the lock that
        serializes loads, so none slips in between)."""

        def user_of(group: str) -> str | None:
            for db in self.catalog.list_databases():
                for c in self.catalog.list_collections(db):
                    if c.loaded and group in replica_groups_of(c):
                        return c.name
            return None

        self._serial(lambda: self._groups().drop(name, user_of))

    def transfer_node(self, source: str, target: str, num: int) -> None:
        self._serial(lambda: self._groups().transfer_node(source, target, num))

    def release(self, db: str, collection: str, partition_names: list[str] | None) -> bool:
        """Release the collection (``partition_names`` None) or those partitions. Whether the whole
        collection is released now (the caller then lets the query nodes go)."""

        def change(info: CollectionInfo) -> bool:
            self._allow(info.db, "ddl_collection" if partition_names is None else "ddl_partition")
            if partition_names is None:
                info.loaded, info.loaded_partitions = False, None
                return True
            released = {info.partition(n).id for n in partition_names}
            if not info.loaded:
                return False
            current = ({p.id for p in info.partitions} if info.loaded_partitions is None
                       else set(info.loaded_partitions))
            remaining = current - released
            if not remaining:
                info.loaded, info.loaded_partitions = False, None
                return True
            if info.loaded_partitions is None:  # loaded by load_collection: new partitions still load
                info.loads_new_partitions = True
            info.loaded_partitions = sorted(remaining)
            return False

        return self._saving(lambda: self.catalog.get(db or DEFAULT_DB, collection), change)


def _same_field(a: FieldSchema, b: FieldSchema) -> bool:
    """Whether ``a`` (in the schema) is the field ``b`` asked for, its id aside."""
    return {**a.to_dict(), "field_id": 0} == {**b.to_dict(), "field_id": 0}


def matching_indexes(info: CollectionInfo, index_name: str, field_name: str = "") -> list[IndexInfo]:
    """The collection's indexes by name and field (empty: any); IndexNotFound when none."""
    idxs = info.indexes
    if index_name:
        idxs = [i for i in idxs if i.index_name == index_name]
    if field_name:
        idxs = [i for i in idxs if i.field_name == field_name]
    if not idxs:
        raise errors.IndexNotFound(f"index not found[collection={info.name}]")
    return idxs

"""The coord's DDL over internal RPC (``proto/coord.proto``): the handlers the active coord serves
from its ``DdlManager`` (``ddl_handlers``), and ``RemoteDdl``, a cluster proxy's ``DdlRole``.

``RemoteDdl`` calls through ``CoordClient``, which finds the active coord and retries through a
failover; a repeated request carries ``retry`` (``vecdb.coord.ddl``: a repeat is safe). The reply
names the coord's catalog version after the change; the coord answered only once every live
proxy applied it, and ``RemoteDdl`` also waits for its own proxy's catalog to reach it, so the
caller reads its own DDL even if its session was not yet seen by the coord.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from vecdb.catalog_model import CollectionInfo
from vecdb.coord.catalog import Catalog
from vecdb.coord.client import CoordClient
from vecdb.coord.ddl import DdlManager, LoadState
from vecdb.coord.resource_groups import GroupConfig, ResourceGroups
from vecdb.coord.schema_change import SchemaChange
from vecdb.discovery import session_address
from vecdb.roles import IdSource, TimestampSource
from vecdb.rpc.gen import coord_pb2 as pb
from vecdb.schema import CollectionSchema, FieldSchema
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

T = TypeVar("T")
CATCH_UP_WAIT = 5.0  # seconds the caller's catalog may take to reach the coord's version


QUERYNODE_SESSIONS = "session/querynode/"


def live_query_nodes(meta: MetaStore) -> dict[str, str]:
    """The query nodes with a session: node id -> address (resource groups' live nodes)."""
    return {k[len(QUERYNODE_SESSIONS):]: session_address(v) or "" for k, v in meta.scan(QUERYNODE_SESSIONS)}


def open_ddl(meta: MetaStore, tso: TimestampSource, ids: IdSource, ttl: float,
             on_drop: Callable[[CollectionInfo], None] | None = None) -> DdlManager:
    """The active coord's DDL manager: over a catalog of its own that follows the store (so its
    changes wait for every live proxy), the term's allocators and the live query nodes' resource
    groups. ``close()`` closes its catalog. ``on_drop``: called with each collection dropped
    (``Catalog.on_drop``)."""
    catalog = Catalog(meta, node_id=f"coord-{uuid.uuid4().hex[:12]}", ttl=ttl)
    if on_drop is not None:
        catalog.on_drop(on_drop)
    return DdlManager(catalog, ids, tso, ResourceGroups(meta, lambda: live_query_nodes(meta)))


def _state_pb(state: LoadState) -> pb.DdlLoadState:
    parts = state.loaded_partitions
    return pb.DdlLoadState(loaded=state.loaded, all_partitions=parts is None, loaded_partitions=parts or [],
                           replica_number=state.replica_number, resource_groups=state.resource_groups)


def _state(msg: pb.DdlLoadState) -> LoadState:
    parts = None if msg.all_partitions else list(msg.loaded_partitions)
    return LoadState(msg.loaded, parts, msg.replica_number, list(msg.resource_groups))


def _names(all_partitions: bool, names) -> list[str] | None:
    return None if all_partitions else list(names)


def ddl_handlers(serve: Callable[[Callable[[DdlManager], Any]], Any]) -> dict[str, Callable[[Any, Any], Message]]:
    """The DDL RPCs by name, each running its change through ``serve(fn)``, which calls
    ``fn(manager)`` with the active term's manager (or refuses: not the active coord)."""

    def reply(ddl: DdlManager, **fields: Any) -> pb.DdlReply:
        return pb.DdlReply(version=ddl.version, **fields)

    def found(value: int | None) -> dict[str, Any]:
        return {"found": value is not None, "id": value or 0}

    def create_collection(ddl: DdlManager, r: pb.DdlCreateCollectionRequest) -> pb.DdlReply:
        schema = CollectionSchema.from_dict(json.loads(r.schema_json))
        cid = ddl.create_collection(r.db, r.name, schema, r.shards_num, r.consistency_level, dict(r.properties),
                                    r.num_partitions)
        return reply(ddl, found=True, id=cid)

    def load(ddl: DdlManager, r: pb.DdlLoadRequest) -> pb.DdlReply:
        before = ddl.load(r.db, r.collection, _names(r.all_partitions, r.partition_names), r.replica_number,
                          list(r.resource_groups))
        return reply(ddl, before=_state_pb(before))

    def undo_load(ddl: DdlManager, r: pb.DdlUndoLoadRequest) -> pb.DdlReply:
        ddl.undo_load(r.collection_id, _state(r.before))
        return reply(ddl)

    def release(ddl: DdlManager, r: pb.DdlReleaseRequest) -> pb.DdlReply:
        return reply(ddl, found=ddl.release(r.db, r.collection, _names(r.all_partitions, r.partition_names)))

    def unit(call: Callable[[DdlManager, Any], Any]) -> Callable[[DdlManager, Any], pb.DdlReply]:
        def run(ddl: DdlManager, r: Any) -> pb.DdlReply:
            call(ddl, r)
            return reply(ddl)
        return run

    table: dict[str, Callable[[DdlManager, Any], pb.DdlReply]] = {
        "CreateDatabase": unit(lambda d, r: d.create_database(r.name, dict(r.properties), retry=r.retry)),
        "DropDatabase": unit(lambda d, r: d.drop_database(r.name)),
        "AlterDatabase": unit(lambda d, r: d.alter_database(r.name, dict(r.properties), list(r.delete_keys))),
        "CreateCollection": create_collection,
        "DropCollection": lambda d, r: reply(d, **found(d.drop_collection(r.db, r.name))),
        "RenameCollection": unit(lambda d, r: d.rename_collection(r.db, r.name, r.new_db, r.new_name,
                                                                  retry=r.retry)),
        "AlterCollection": unit(lambda d, r: d.alter_collection(r.db, r.name, dict(r.properties),
                                                                list(r.delete_keys))),
        "AddCollectionField": lambda d, r: reply(d, found=True, id=d.add_collection_field(
            r.db, r.name, FieldSchema.from_dict(json.loads(r.field_json)), retry=r.retry)),
        "AlterCollectionField": unit(lambda d, r: d.alter_collection_field(
            r.db, r.name, r.field_name, dict(r.properties), list(r.delete_keys))),
        "AlterCollectionSchema": lambda d, r: reply(d, ids=d.alter_collection_schema(
            r.db, r.name, SchemaChange.from_dict(json.loads(r.change_json)), retry=r.retry)),
        "TruncateCollection": lambda d, r: reply(d, found=True, id=d.truncate_collection(r.db, r.name)),
        "CreatePartition": unit(lambda d, r: d.create_partition(r.db, r.collection, r.partition, retry=r.retry)),
        "DropPartition": lambda d, r: reply(d, **found(d.drop_partition(r.db, r.collection, r.partition))),
        "CreateAlias": unit(lambda d, r: d.create_alias(r.db, r.alias, r.collection, retry=r.retry)),
        "AlterAlias": unit(lambda d, r: d.alter_alias(r.db, r.alias, r.collection)),
        "DropAlias": unit(lambda d, r: d.drop_alias(r.db, r.alias)),
        "CreateIndex": unit(lambda d, r: d.create_index(r.db, r.collection, r.field_name, r.index_name, r.index_type,
                                                        r.metric_type, json.loads(r.params_json or "{}"),
                                                        json.loads(r.user_params_json or "{}"),
                                                        dict(r.properties))),
        "DropIndex": lambda d, r: reply(d, ids=d.drop_index(r.db, r.collection, r.index_name, r.field_name,
                                                            retry=r.retry)),
        "AlterIndex": unit(lambda d, r: d.alter_index(r.db, r.collection, r.index_name, dict(r.properties),
                                                      list(r.delete_keys))),
        "LoadCollection": load,
        "UndoLoad": undo_load,
        "ReleaseCollection": release,
        "CreateResourceGroup": unit(lambda d, r: d.create_resource_group(
            r.name, GroupConfig.from_dict(json.loads(r.config_json)) if r.config_json else None)),
        "UpdateResourceGroups": unit(lambda d, r: d.update_resource_groups(
            {n: GroupConfig.from_dict(json.loads(c)) for n, c in r.configs_json.items()})),
        "DropResourceGroup": unit(lambda d, r: d.drop_resource_group(r.name)),
        "TransferNode": unit(lambda d, r: d.transfer_node(r.source, r.target, r.num)),
        "TransferReplica": unit(lambda d, r: d.transfer_replica(r.db, r.collection, r.source, r.target,
                                                                r.num_replica)),
    }

    def handler(call: Callable[[DdlManager, Any], pb.DdlReply]) -> Callable[[Any, Any], Message]:
        return lambda request, context: serve(lambda ddl: call(ddl, request))

    return {name: handler(call) for name, call in table.items()}


class RemoteDdl:
    """``DdlRole`` of a cluster proxy: every change through the active coord. ``catalog``: this
    proxy's, which is made to reach each reply's version before the call returns."""

    def __init__(self, coord: CoordClient, catalog: Catalog):
        self._coord, self._catalog = coord, catalog

    def _call(self, method: str, request: Any) -> pb.DdlReply:
        attempts = 0

        def attempt(client, timeout: float) -> pb.DdlReply:
            nonlocal attempts
            if attempts:
                request.retry = True  # the first try may have been applied: vecdb.coord.ddl's rules
            attempts += 1
            return client.invoke(method, request, timeout)

        out: pb.DdlReply = self._coord.retrying(attempt)
        if not self._catalog.wait_version(out.version, CATCH_UP_WAIT):
            log.warning("catalog: still behind the coord's version %d %.0f s after %s", out.version, CATCH_UP_WAIT,
                        method)
        return out

    # --- databases
    def create_database(self, name: str, properties: dict[str, str]) -> None:
        self._call("CreateDatabase", pb.DdlDatabaseRequest(name=name, properties=properties))

    def drop_database(self, name: str) -> None:
        self._call("DropDatabase", pb.DdlDatabaseRequest(name=name))

    def alter_database(self, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        self._call("AlterDatabase", pb.DdlDatabaseRequest(name=name, properties=properties, delete_keys=delete_keys))

    # --- collections
    def create_collection(self, db: str, name: str, schema: CollectionSchema, shards_num: int,
                          consistency_level: int, properties: dict[str, str], num_partitions: int) -> int:
        return self._call("CreateCollection", pb.DdlCreateCollectionRequest(
            db=db, name=name, schema_json=json.dumps(schema.to_dict()), shards_num=shards_num,
            consistency_level=consistency_level, properties=properties, num_partitions=num_partitions)).id

    def drop_collection(self, db: str, name: str) -> int | None:
        out = self._call("DropCollection", pb.DdlCollectionRequest(db=db, name=name))
        return out.id if out.found else None

    def rename_collection(self, db: str, name: str, new_db: str, new_name: str) -> None:
        self._call("RenameCollection", pb.DdlRenameCollectionRequest(db=db, name=name, new_db=new_db,
                                                                     new_name=new_name))

    def alter_collection(self, db: str, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        self._call("AlterCollection", pb.DdlAlterCollectionRequest(db=db, name=name, properties=properties,
                                                                   delete_keys=delete_keys))

    def add_collection_field(self, db: str, name: str, new: FieldSchema) -> int:
        return self._call("AddCollectionField", pb.DdlAddFieldRequest(
            db=db, name=name, field_json=json.dumps(new.to_dict()))).id

    def alter_collection_field(self, db: str, name: str, field_name: str, properties: dict[str, str],
                               delete_keys: list[str]) -> None:
        self._call("AlterCollectionField", pb.DdlAlterFieldRequest(
            db=db, name=name, field_name=field_name, properties=properties, delete_keys=delete_keys))

    def alter_collection_schema(self, db: str, name: str, change: SchemaChange) -> list[int]:
        return list(self._call("AlterCollectionSchema", pb.DdlSchemaChangeRequest(
            db=db, name=name, change_json=json.dumps(change.to_dict()))).ids)

    def truncate_collection(self, db: str, name: str) -> int:
        return self._call("TruncateCollection", pb.DdlCollectionRequest(db=db, name=name)).id

    # --- partitions
    def create_partition(self, db: str, collection: str, partition: str) -> None:
        self._call("CreatePartition", pb.DdlPartitionRequest(db=db, collection=collection, partition=partition))

    def drop_partition(self, db: str, collection: str, partition: str) -> int | None:
        out = self._call("DropPartition", pb.DdlPartitionRequest(db=db, collection=collection, partition=partition))
        return out.id if out.found else None

    # --- aliases
    def create_alias(self, db: str, alias: str, collection: str) -> None:
        self._call("CreateAlias", pb.DdlAliasRequest(db=db, alias=alias, collection=collection))

    def alter_alias(self, db: str, alias: str, collection: str) -> None:
        self._call("AlterAlias", pb.DdlAliasRequest(db=db, alias=alias, collection=collection))

    def drop_alias(self, db: str, alias: str) -> None:
        self._call("DropAlias", pb.DdlAliasRequest(db=db, alias=alias))

    # --- indexes
    def create_index(self, db: str, collection: str, field_name: str, index_name: str, index_type: str,
                     metric_type: str, params: dict[str, Any], user_params: dict[str, str] | None = None,
                     properties: dict[str, str] | None = None) -> None:
        self._call("CreateIndex", pb.DdlCreateIndexRequest(
            db=db, collection=collection, field_name=field_name, index_name=index_name, index_type=index_type,
            metric_type=metric_type, params_json=json.dumps(params), user_params_json=json.dumps(user_params or {}),
            properties=properties or {}))

    def drop_index(self, db: str, collection: str, index_name: str, field_name: str) -> list[int]:
        return list(self._call("DropIndex", pb.DdlDropIndexRequest(
            db=db, collection=collection, index_name=index_name, field_name=field_name)).ids)

    def alter_index(self, db: str, collection: str, index_name: str, properties: dict[str, str],
                    delete_keys: list[str]) -> None:
        self._call("AlterIndex", pb.DdlAlterIndexRequest(db=db, collection=collection, index_name=index_name,
                                                         properties=properties, delete_keys=delete_keys))

    # --- load state
    def load(self, db: str, collection: str, partition_names: list[str] | None, replica_number: int,
             resource_groups: list[str]) -> LoadState:
        out = self._call("LoadCollection", pb.DdlLoadRequest(
            db=db, collection=collection, all_partitions=partition_names is None,
            partition_names=partition_names or [], replica_number=replica_number, resource_groups=resource_groups))
        return _state(out.before)

    def undo_load(self, collection_id: int, before: LoadState) -> None:
        self._call("UndoLoad", pb.DdlUndoLoadRequest(collection_id=collection_id, before=_state_pb(before)))

    def release(self, db: str, collection: str, partition_names: list[str] | None) -> bool:
        return self._call("ReleaseCollection", pb.DdlReleaseRequest(
            db=db, collection=collection, all_partitions=partition_names is None,
            partition_names=partition_names or [])).found

    def transfer_replica(self, db: str, collection: str, source: str, target: str, num_replica: int) -> None:
        self._call("TransferReplica", pb.DdlTransferReplicaRequest(
            db=db, collection=collection, source=source, target=target, num_replica=num_replica))

    # --- resource groups
    def create_resource_group(self, name: str, config: GroupConfig | None) -> None:
        self._call("CreateResourceGroup", pb.DdlResourceGroupRequest(
            name=name, config_json=json.dumps(config.to_dict()) if config is not None else ""))

    def update_resource_groups(self, configs: dict[str, GroupConfig]) -> None:
        self._call("UpdateResourceGroups", pb.DdlUpdateResourceGroupsRequest(
            configs_json={n: json.dumps(c.to_dict()) for n, c in configs.items()}))

    def drop_resource_group(self, name: str) -> None:
        self._call("DropResourceGroup", pb.DdlResourceGroupRequest(name=name))

    def transfer_node(self, source: str, target: str, num: int) -> None:
        self._call("TransferNode", pb.DdlTransferNodeRequest(source=source, target=target, num=num))

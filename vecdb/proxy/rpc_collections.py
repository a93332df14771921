"""RPCs: databases, collections, partitions, aliases.

The handlers parse and validate; the catalog's changes are the coord's (``self.ddl``,
``vecdb.coord.ddl``: in-process on standalone, the coord's RPCs in a cluster), and what the
nodes must do about a change (release a dropped collection, delete its files) follows here.
"""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vecdb import errors, namespaces
from vecdb.catalog_model import DEFAULT_PARTITION, CollectionInfo
from vecdb.coord.ddl import too_many_partitions
from vecdb.external_spec import redacted_spec
from vecdb.external_tables import EXTERNAL_PROPERTIES, RefreshStore, refuse_write
from vecdb.limits import LIMITS
from vecdb.proxy import status
from vecdb.proxy.auth_interceptor import current_user
from vecdb.proxy.base import ServiceBase, kv_dict, kv_pairs, rpc
from vecdb.request_db import db_of
from vecdb.schema import CollectionSchema, added_field, validate_collection_name, validate_partition_name
from vecdb.security.credentials import ROOT
from vecdb.timestamp import physical_ms
from vecdb.timestamptz import zone_of

DEFAULT_PARTITION_KEY_PARTITIONS = 16


class CollectionRpcs(ServiceBase):
    # --- databases --------------------------------------------------------------
    @rpc()
    def CreateDatabase(self, request, context):
        try:
            validate_collection_name(request.db_name, "database name")
        except errors.InvalidParameter as e:  # Milvus's proxy answers 802 with these
            raise errors.InvalidDatabaseName(f"{e.message}: invalid database name[database={request.db_name}]") from e
        self.ddl.create_database(request.db_name, kv_dict(request.properties))
        return status.success()

    @rpc()
    def DropDatabase(self, request, context):
        self.ddl.drop_database(request.db_name)
        return status.success()

    @rpc(milvus_pb2.ListDatabasesResponse)
    def ListDatabases(self, request, context):
        names = self.r.catalog.list_databases()
        security = self.r.security
        if security is not None and security.enabled and (user := current_user(context)) not in ("", ROOT):
            visible = security.roles.visible_databases(user)  # Milvus 2.4+: those the user has a grant in
            if visible is not None:
                names = [n for n in names if n in visible]
        dbs = [self.r.catalog.database(n) for n in names]
        return milvus_pb2.ListDatabasesResponse(
            status=status.success(), db_names=names, db_ids=[d["id"] for d in dbs],
            created_timestamp=[d["created_ts"] for d in dbs])

    @rpc(milvus_pb2.DescribeDatabaseResponse)
    def DescribeDatabase(self, request, context):
        db = self.r.catalog.database(request.db_name)
        return milvus_pb2.DescribeDatabaseResponse(
            status=status.success(), db_name=request.db_name or "default", dbID=db["id"],
            created_timestamp=db["created_ts"], properties=kv_pairs(db["properties"]))

    @rpc()
    def AlterDatabase(self, request, context):
        self.ddl.alter_database(request.db_name, kv_dict(request.properties), list(request.delete_keys))
        return status.success()

    # --- collections ------------------------------------------------------------
    @rpc()
    def CreateCollection(self, request, context):
        db = db_of(request, context)
        validate_collection_name(request.collection_name)
        pb = schema_pb2.CollectionSchema()
        try:
            pb.ParseFromString(request.schema)
        except Exception:
            raise errors.InvalidParameter("the schema is not a valid CollectionSchema message") from None
        properties = kv_dict(request.properties)
        try:  # the zone a TIMESTAMPTZ default value without an offset is read in (the coord checks the names)
            db_properties = self.r.catalog.database(db)["properties"]
        except errors.DatabaseNotFound:
            db_properties = {}  # the coord's create reports it
        schema = CollectionSchema.from_proto(pb, request.collection_name, zone_of(properties, db_properties))
        namespaces.prepare(schema, properties)  # enable_namespace: its mode; partition_key mode's field
        shards = max(request.shards_num, 0) or 1  # as Milvus's proxy: 0 or less is the default, 1
        if schema.is_external and shards != 1:
            raise errors.InvalidParameter(
                f"external collection does not support multiple shards, got ShardsNum={shards}")
        if shards > LIMITS.max_shards:
            raise errors.InvalidParameter(f"maximum shards's number should be limited to {LIMITS.max_shards}")
        pk_field = schema.partition_key_field
        if pk_field is None and request.num_partitions:
            raise errors.InvalidParameter("num_partitions should only be specified with partition key field enabled")
        if request.num_partitions < 0:  # Milvus's check and words; 0 means the default
            raise errors.InvalidParameter("the specified partitions should be greater than 0 if partition key is used")
        num_parts = request.num_partitions or (DEFAULT_PARTITION_KEY_PARTITIONS if pk_field else 0)
        if num_parts > LIMITS.max_partitions:
            raise errors.InvalidParameter(too_many_partitions(num_parts))
        # Milvus: the same schema again is accepted (the coord answers with the existing collection)
        self.ddl.create_collection(db, request.collection_name, schema, shards, request.consistency_level,
                                   properties, num_parts)
        return status.success()

    @rpc()
    def DropCollection(self, request, context):
        db = db_of(request, context)
        if not self.r.catalog.exists(db, request.collection_name):
            return status.success()
        info = self.collection(db, request.collection_name)
        if request.collection_name in self.r.catalog.aliases_of(info):
            raise errors.InvalidParameter(f"cannot drop the collection via alias = {request.collection_name}")
        with self.r.writer.locked(info.channels):
            # the catalog first: a cluster's coord then withdraws its assignment
            dropped = self.ddl.drop_collection(db, request.collection_name)
            if dropped is not None and dropped != info.id:
                return status.success()  # the name meant another collection by then (dropped and created again)
            # None: gone already (another call, or this call's first try before a failover): the
            # cleanup below is idempotent, so it runs again rather than never
            self.r.querynode.release(info.id)
            self.r.datanode.drop_collection(info)
            if info.schema.is_external:
                self.refresh_store().drop_state(info.id)
        return status.success()

    def refresh_store(self) -> RefreshStore:
        """External collections' refresh jobs and file state, in the metadata store (vecdb.external_tables)."""
        return RefreshStore(self.stores()[0])

    def external_pair(self, info: CollectionInfo) -> tuple[str, str]:
        return self.refresh_store().pair(info.schema, info.id)

    @rpc(milvus_pb2.BoolResponse)
    def HasCollection(self, request, context):
        return milvus_pb2.BoolResponse(status=status.success(),
                                       value=self.r.catalog.exists(db_of(request, context), request.collection_name))

    @rpc(milvus_pb2.DescribeCollectionResponse)
    def DescribeCollection(self, request, context):
        db = db_of(request, context)
        try:
            if request.collectionID and not request.collection_name:
                return self.described(self.r.catalog.get_by_id(request.collectionID))
            return self.described(self.collection(db, request.collection_name))
        except errors.CollectionNotFound as e:
            return milvus_pb2.DescribeCollectionResponse(status=missing_collection_status(e))

    @rpc(milvus_pb2.BatchDescribeCollectionResponse)
    def BatchDescribeCollection(self, request, context):
        """Each named collection's description, then each id's, in the request's order; one that is not
        there answers its own error status, as a DescribeCollection would."""
        db = db_of(request, context)
        lookups = [lambda n=n: self.collection(db, n) for n in request.collection_name]
        lookups += [lambda i=i: self.r.catalog.get_by_id(i) for i in request.collectionID]
        out = milvus_pb2.BatchDescribeCollectionResponse(status=status.success())
        for lookup in lookups:
            try:
                out.responses.append(self.described(lookup()))
            except errors.VecdbError as e:
                out.responses.append(milvus_pb2.DescribeCollectionResponse(status=status.from_exception(e)))
        return out

    def described(self, info: CollectionInfo) -> milvus_pb2.DescribeCollectionResponse:
        """DescribeCollection's answer for ``info``."""
        resp = milvus_pb2.DescribeCollectionResponse(
            status=status.success(), collectionID=info.id, collection_name=info.name, db_name=info.db,
            shards_num=info.shards_num, consistency_level=info.consistency_level,
            created_timestamp=info.created_ts, created_utc_timestamp=physical_ms(info.created_ts),
            virtual_channel_names=info.channels, physical_channel_names=info.channels,
            aliases=self.r.catalog.aliases_of(info), properties=kv_pairs(info.properties),
            num_partitions=len(info.partitions),  # Milvus: the partitions there are, _default included
            update_timestamp=info.schema.update_ts or info.created_ts,  # pymilvus 2.6 sends it back on writes
        )
        info.schema.to_proto(resp.schema, self.zone_of(info))  # a TIMESTAMPTZ default in its zone
        if info.schema.is_external:  # the pair a refresh last named, where it named one; its keys never shown
            source, spec = self.external_pair(info)
            resp.schema.external_source, resp.schema.external_spec = source, redacted_spec(spec)
        return resp

    @rpc(milvus_pb2.ShowCollectionsResponse)
    def ShowCollections(self, request, context):
        db = db_of(request, context)
        infos = self.r.catalog.list_collections(db)
        security = self.r.security
        if security is not None and security.enabled and (user := current_user(context)) not in ("", ROOT):
            visible = security.roles.visible_collections(user, db)  # Milvus 2.4+: what the user has a grant on
            if visible is not None:
                infos = [i for i in infos if i.name in visible]
        if request.collection_names:
            wanted = set(request.collection_names)
            infos = [i for i in infos if i.name in wanted]
            missing = wanted - {i.name for i in infos}
            if missing:
                raise errors.CollectionNotFound(f"collection not found[collection={sorted(missing)[0]}]")
        if request.type == milvus_pb2.ShowType.InMemory:
            loaded = [i for i in infos if self.r.querynode.is_loaded(i.id)]
            if request.collection_names and len(loaded) != len(infos):
                name = next(i.name for i in infos if not self.r.querynode.is_loaded(i.id))
                raise errors.CollectionNotLoaded(f"collection not loaded[collection={name}]")
            infos = loaded
        return milvus_pb2.ShowCollectionsResponse(
            status=status.success(), collection_names=[i.name for i in infos],
            collection_ids=[i.id for i in infos], created_timestamps=[i.created_ts for i in infos],
            created_utc_timestamps=[physical_ms(i.created_ts) for i in infos],
            inMemory_percentages=[100 if self.r.querynode.is_loaded(i.id) else 0 for i in infos],
            query_service_available=[self.r.querynode.is_loaded(i.id) for i in infos],
            shards_num=[i.shards_num for i in infos])

    @rpc()
    def RenameCollection(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.oldName)
        validate_collection_name(request.newName)
        self.ddl.rename_collection(db, request.oldName, request.newDBName or db, request.newName)
        self.r.querynode.refresh_info(self.r.catalog.get_by_id(info.id))
        return status.success()

    @rpc()
    def AlterCollection(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        fixed = [k for k in (*kv_dict(request.properties), *request.delete_keys) if k in EXTERNAL_PROPERTIES]
        if fixed:
            raise errors.InvalidParameter(f"{fixed[0]} cannot be altered: an external collection's source and spec "
                                          "change with refresh_external_collection(external_source=, external_spec=)")
        self.ddl.alter_collection(db, request.collection_name, kv_dict(request.properties), list(request.delete_keys))
        self.r.querynode.refresh_info(self.r.catalog.get_by_id(info.id))  # the nodes read with its TTL at once
        return status.success()

    @rpc()
    def AddCollectionField(self, request, context):
        """pymilvus ``add_collection_field``: the field (``vecdb.schema.added_field``: nullable, scalar)
        goes into the schema through the coord; the query nodes that hold the collection take the
        new schema before this returns (their rows so far read as null, or as the default value),
        so an insert that carries the field after it is served in full."""
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        refuse_write(info.schema, "add field", info.name)
        fpb = schema_pb2.FieldSchema()
        try:
            fpb.ParseFromString(request.schema)
        except Exception:
            raise errors.InvalidParameter("the schema is not a valid FieldSchema message") from None
        new = added_field(info.schema, fpb, self.zone_of(info))
        self.ddl.add_collection_field(db, request.collection_name, new)
        self.r.querynode.refresh_info(self.r.catalog.get_by_id(info.id))
        return status.success()

    @rpc()
    def AlterCollectionField(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        refuse_write(info.schema, "alter field", info.name)
        self.ddl.alter_collection_field(db, request.collection_name, request.field_name,
                                        kv_dict(request.properties), list(request.delete_keys))
        self.r.querynode.refresh_info(self.r.catalog.get_by_id(info.id))
        return status.success()

    @rpc(milvus_pb2.TruncateCollectionResponse)
    def TruncateCollection(self, request, context):
        """pymilvus ``truncate_collection``: every row gone, schema, indexes, partitions, aliases and
        load state kept. The coord sets a new timestamp as the collection's ``truncated_ts``: a row
        written at or before it is gone (the query nodes drop what they hold before this returns and
        skip such rows when the log brings them; the data nodes drop the sealed segments and skip
        them at persist; a load drops them too), a row written after it is kept, so an insert that
        races the truncate is wholly before or wholly after it."""
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        with self.r.writer.locked(info.channels):
            ts = self.ddl.truncate_collection(db, request.collection_name)
            if info.schema.is_external:  # every file's rows gone: the next refresh reads them all again
                self.refresh_store().forget_files(info.id)
            fresh = self.r.catalog.get_by_id(info.id)
            self.r.querynode.refresh_info(fresh)
            self.r.datanode.truncate_collection(fresh, ts)
        return milvus_pb2.TruncateCollectionResponse(status=status.success())

    @rpc(milvus_pb2.GetCollectionStatisticsResponse)
    def GetCollectionStatistics(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        rows = self._row_count(info, None)
        return milvus_pb2.GetCollectionStatisticsResponse(
            status=status.success(), stats=[common_pb2.KeyValuePair(key="row_count", value=str(rows))])

    def _row_count(self, info: CollectionInfo, partition_ids) -> int:
        """Milvus's ``row_count``: the rows of the segments, from metadata, loaded or not (deleted rows
        counted until compaction; ``count(*)`` is the exact live count): ``vecdb.datanode.row_stats``."""
        return self.r.datanode.row_count(info, partition_ids)

    # --- partitions -------------------------------------------------------------
    @rpc()
    def CreatePartition(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        refuse_write(info.schema, "create partition", info.name)
        validate_partition_name(request.partition_name)
        self.ddl.create_partition(db, request.collection_name, request.partition_name)
        return status.success()

    @rpc()
    def DropPartition(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        refuse_write(info.schema, "drop partition", info.name)
        self.drop_partition(db, info, request.partition_name)
        return status.success()

    def drop_partition(self, db: str, info: CollectionInfo, name: str) -> None:
        """Drop partition ``name`` of ``info`` (there or not) with its data."""
        if name == DEFAULT_PARTITION:
            raise errors.InvalidParameter("default partition cannot be deleted")
        known = info.partition(name).id if info.has_partition(name) else None
        with self.r.writer.locked(info.channels):
            # None: not there (any more): the cleanup of the one this proxy knew is idempotent
            part_id = self.ddl.drop_partition(db, info.name, name) or known
            if part_id is None:
                return
            self.r.querynode.drop_partition(info.id, part_id)
            self.r.datanode.drop_partition(info, part_id)

    @rpc(milvus_pb2.BoolResponse)
    def HasPartition(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        return milvus_pb2.BoolResponse(status=status.success(), value=info.has_partition(request.partition_name))

    @rpc(milvus_pb2.ShowPartitionsResponse)
    def ShowPartitions(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        parts = info.partitions
        if request.partition_names:
            parts = [info.partition(n) for n in request.partition_names]
        return milvus_pb2.ShowPartitionsResponse(
            status=status.success(), partition_names=[p.name for p in parts], partitionIDs=[p.id for p in parts],
            created_timestamps=[p.created_ts for p in parts],
            created_utc_timestamps=[physical_ms(p.created_ts) for p in parts],
            inMemory_percentages=[100 if info.partition_loaded(p.id) else 0 for p in parts])

    @rpc(milvus_pb2.GetPartitionStatisticsResponse)
    def GetPartitionStatistics(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        rows = self._row_count(info, {info.partition(request.partition_name).id})
        return milvus_pb2.GetPartitionStatisticsResponse(
            status=status.success(), stats=[common_pb2.KeyValuePair(key="row_count", value=str(rows))])

    # --- aliases ----------------------------------------------------------------
    @rpc()
    def CreateAlias(self, request, context):
        validate_collection_name(request.alias, "alias")
        self.ddl.create_alias(db_of(request, context), request.alias, request.collection_name)
        return status.success()

    @rpc()
    def DropAlias(self, request, context):
        validate_collection_name(request.alias, "alias")  # as Milvus's proxy, for a drop too
        self.ddl.drop_alias(db_of(request, context), request.alias)
        return status.success()

    @rpc()
    def AlterAlias(self, request, context):
        validate_collection_name(request.alias, "alias")
        self.ddl.alter_alias(db_of(request, context), request.alias, request.collection_name)
        return status.success()

    @rpc(milvus_pb2.DescribeAliasResponse)
    def DescribeAlias(self, request, context):
        db = db_of(request, context)
        info = self.r.catalog.describe_alias(db, request.alias)
        return milvus_pb2.DescribeAliasResponse(status=status.success(), db_name=db, alias=request.alias,
                                                collection=info.name)

    @rpc(milvus_pb2.ListAliasesResponse)
    def ListAliases(self, request, context):
        db = db_of(request, context)
        aliases = self.r.catalog.list_aliases(db, request.collection_name or None)
        return milvus_pb2.ListAliasesResponse(status=status.success(), db_name=db,
                                              collection_name=request.collection_name, aliases=aliases)


def missing_collection_status(exc: errors.CollectionNotFound) -> common_pb2.Status:
    """DescribeCollection's answer for a collection that is not there: code 100 with the legacy
    ``error_code`` UnexpectedError, as Milvus before 2.3.2 answered. pymilvus 2.3.0 and 2.3.1 (and
    2.2) decide ``has_collection`` -- which every ORM ``Collection(name, schema)`` calls before
    creating -- from that legacy code and "can't find collection" in the reason alone; the legacy
    CollectionNotExists made them raise instead of creating the collection. Every later pymilvus
    reads UnexpectedError with that reason as "not there" too, and the 2.3+ ``code`` stays 100."""
    out = status.from_exception(exc)
    out.error_code = common_pb2.UnexpectedError
    out.reason = out.detail = "can't find collection " + out.reason  # as 2.3.5: "... collection not found[...]"
    return out

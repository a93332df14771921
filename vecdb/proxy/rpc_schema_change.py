"""RPC: AlterCollectionSchema (Milvus 3.0; pymilvus 3.0 ``drop_collection_field``,
``drop_function_field``, ``add_function_field``, and ``add_collection_field``, which tries it first), and
AddCollectionStructField (pymilvus 3.0 ``add_collection_struct_field``: a nullable array-of-struct
field, checked by ``vecdb.struct_fields.added_struct_field``, made by the same coord path).

The handler parses and checks the request against the collection as this proxy knows it; the change
is the coord's (``vecdb.coord.schema_change``: its rules, in-process on standalone, the coord's RPC
in a cluster). The query nodes that hold the collection take the new schema before this returns
(``vecdb.querynode.segment.Segment.take_schema``): a dropped field's column goes, a function's
output added is computed for the rows already there (``vecdb.function_columns``), so a read right
after sees the change."""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.coord.schema_change import SchemaChange
from vecdb.external_tables import refuse_write
from vecdb.index.params import index_spec
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, kv_dict, rpc
from vecdb.proxy.rpc_index import _split_index_params, refuse_metric_case, vector_index_params
from vecdb.request_db import db_of
from vecdb.schema import CollectionSchema, FunctionType, added_field
from vecdb.struct_fields import added_struct_field

_ADDABLE = {FunctionType.BM25: "BM25", FunctionType.MINHASH: "MinHash"}
_METRIC = {FunctionType.BM25: "BM25", FunctionType.MINHASH: "MHJACCARD"}


def _reply(status):  # called as rpc's response_type(status=...)
    return milvus_pb2.AlterCollectionSchemaResponse(alter_status=status)


class SchemaChangeRpcs(ServiceBase):
    @rpc(_reply)
    def AlterCollectionSchema(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        refuse_write(info.schema, "alter collection schema", info.name)  # pymilvus then tries AddCollectionField
        action = request.action
        if action.HasField("drop_request"):
            change = _drop_change(action.drop_request)
        elif action.HasField("add_request"):
            add = action.add_request
            if len(add.field_infos) == 1 and not add.func_schema:  # add_collection_field
                new = added_field(info.schema, add.field_infos[0].field_schema, self.zone_of(info))
                self.ddl.add_collection_field(db, request.collection_name, new)
                self.r.querynode.refresh_info(self.r.catalog.get_by_id(info.id))
                return _reply(status.success())
            change = self._add_change(info, add)
        else:
            raise errors.InvalidParameter("alter collection schema action is empty")
        dropped = self.ddl.alter_collection_schema(db, request.collection_name, change)
        fresh = self.r.catalog.get_by_id(info.id)
        self.r.querynode.refresh_info(fresh)
        if dropped:
            self.r.datanode.forget_index_builds(info.id, dropped)
        if change.index:  # as CreateIndex: the query nodes (or, not loaded, the data node) build it
            self.r.querynode.schedule_indexes(fresh)
            if not self.r.querynode.is_loaded(fresh.id):
                self.indexer.schedule(fresh)
        return _reply(status.success())

    @rpc()
    def AddCollectionStructField(self, request, context):
        """The struct and its sub-fields go into the schema through the coord (as AlterCollectionSchema's
        adds); the query nodes take it before this returns: their rows so far hold no struct."""
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        if not request.HasField("struct_array_field_schema"):
            raise errors.InvalidParameter("struct array field schema is empty")
        st, subs = added_struct_field(info.schema, request.struct_array_field_schema)
        self.ddl.alter_collection_schema(db, request.collection_name,
                                         SchemaChange(add_struct=st, add_struct_fields=subs))
        self.r.querynode.refresh_info(self.r.catalog.get_by_id(info.id))
        return status.success()

    def _add_change(self, info: CollectionInfo, add) -> SchemaChange:
        """The function and its output field, checked as at create (the whole schema with them is
        built as ``CreateCollection`` builds it) and as Milvus's add_function_field checks them."""
        if not add.func_schema:
            raise errors.InvalidParameter("function field add request needs a function")
        if len(add.func_schema) != 1 or len(add.field_infos) != 1:
            raise errors.InvalidParameter("add_function_field adds exactly one function with one output field")
        fpb, fi = add.func_schema[0], add.field_infos[0]
        if fpb.type not in _ADDABLE:
            raise errors.InvalidParameter(
                "For now, only BM25 and MinHash functions are supported in add_function_field interface")
        kind = _ADDABLE[fpb.type]
        if len(fpb.input_field_names) != 1 or len(fpb.output_field_names) != 1:
            raise errors.InvalidParameter(
                f"{kind} function should have exactly one input field and exactly one output field")
        if fpb.output_field_names[0] != fi.field_schema.name:
            raise errors.InvalidParameter(f'function output field "{fpb.output_field_names[0]}" must be the '
                                          f'newly-added field "{fi.field_schema.name}"')
        inp = info.schema.field(fpb.input_field_names[0])
        if inp is not None and inp.dtype.name == "TEXT":
            raise errors.InvalidParameter(
                f"adding a {kind} function with a TEXT input field ({inp.name}) is not supported: its output "
                "cannot be backfilled into existing segments; use a VARCHAR input field")
        if not fi.extra_params:
            raise errors.InvalidParameter(
                f"index params are required when adding function output field {fi.field_schema.name!r} of vector "
                "type: provide index_type/metric_type (and params) in field_info.extra_params")
        pb = schema_pb2.CollectionSchema()
        info.schema.to_proto(pb, self.zone_of(info))
        pb.fields.append(fi.field_schema)
        pb.functions.append(fpb)
        built = CollectionSchema.from_proto(pb, info.name, self.zone_of(info))
        field, fn = built.field(fi.field_schema.name), built.function(fpb.name)
        assert field is not None and fn is not None
        index_type, metric, params = _split_index_params(fi.extra_params)
        metric = metric or _METRIC[fpb.type]
        if metric != _METRIC[fpb.type]:
            raise errors.InvalidParameter(f"only {_METRIC[fpb.type]} metric type can be used to build index for "
                                          f"the {kind} function output field {field.name}, got {metric}")
        index_type, metric, params, user = vector_index_params(index_type, metric, field, params)
        refuse_metric_case(kv_dict(fi.extra_params).get("metric_type", ""), index_spec(index_type).metrics)
        index = {"index_name": fi.index_name, "index_type": index_type, "metric_type": metric, "params": params,
                 "user_params": user}
        return SchemaChange(add_field=field, add_function=fn, index=index)


def _drop_change(drop) -> SchemaChange:
    if drop.function_name:
        return SchemaChange(drop_function=drop.function_name, drop_function_outputs=drop.drop_function_output_fields)
    if drop.field_id:
        return SchemaChange(drop_field_id=drop.field_id)
    if drop.field_name:
        return SchemaChange(drop_field=drop.field_name)
    raise errors.InvalidParameter("field name is empty")

"""Milvus's RESTful API v2 on the HTTP port: ``POST /v2/vectordb/<category>/<action>``, JSON in and out.

Each endpoint builds the request a gRPC client would send and calls the same handler of the Milvus
service in this process (``vecdb.proxy.milvus_service``), after the same authentication and
privilege checks (``vecdb.security``), so its answers, errors, limits and metrics are the gRPC
API's. Replies are HTTP 200 with ``{"code": 0, "data": ...}``, or ``{"code": <Milvus error code>,
"message": ...}`` as Milvus's REST API answers; an unknown endpoint is 404, a missing or wrong
credential 401 (code 1800), a missing privilege 403. Credentials come as ``Authorization: Bearer
<user>:<password>`` or HTTP Basic auth; the database from ``dbName`` in the body, else the ``DB-Name``
header (default "default"); ``Accept-Type-Allow-Int64: false`` asks for int64 keys and values as strings.

Endpoints (Milvus 2.5's): collections list/has/describe/get_stats/get_load_state/create/drop/
rename/load/release/alter_properties/drop_properties/compact/get_compaction_state/flush, collections/
fields alter_properties; entities insert/upsert/delete/get/query/search/hybrid_search;
partitions list/has/get_stats/create/drop/load/release; indexes list/describe/create/drop/
alter_properties/drop_properties; aliases list/describe/create/drop/alter; databases list/describe/
create/drop/alter/alter_properties/drop_properties; users; roles (grant_privilege_v2 too); privilege_groups;
resource_groups; import jobs. docs/rest.md documents them and ``docs/openapi/rest-v2.json`` is their
OpenAPI description.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
from pymilvus.grpc_gen import common_pb2, milvus_pb2, rg_pb2, schema_pb2

from vecdb import errors, importer, timestamptz
from vecdb.proxy import rest_more, rest_structs
from vecdb.proxy.fielddata import float32_to_bfloat16, null_column
from vecdb.proxy.fieldencode import dumps_json, field_data_from_columns
from vecdb.proxy.templates import template_proto
from vecdb.request_db import privilege_database
from vecdb.schema import DEFAULT_VALUE_ATTR, DYNAMIC_FIELD, CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.security.guard import collection_resolver

log = logging.getLogger(__name__)

PREFIX = "/v2/vectordb/"
# Milvus's REST error codes (merr): request body problems
NEED_AUTHENTICATE, BAD_FORMAT, MISSING_PARAMETER, BAD_INSERT_DATA, BAD_PRIMARY_KEY = 1800, 1801, 1802, 1804, 1806
INVALID_PARAMETER = 1100


class RestError(Exception):
    def __init__(self, code: int, message: str, http_status: int = 200):
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


class _Call:
    """What a handler reads of a gRPC call: its metadata (credential and database)."""

    def __init__(self, metadata: list[tuple[str, str]]):
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata

    def peer(self) -> str:
        return "rest"

    def abort(self, code, details: str):
        raise RestError(errors.InternalError.code, details)


def _status_of(reply) -> common_pb2.Status:
    return reply if isinstance(reply, common_pb2.Status) else reply.status


class RestApi(rest_more.RestMore):  # (the newer endpoints: vecdb.proxy.rest_more)
    def __init__(self, service, security=None):
        self.service = service
        self.security = security if security is not None and security.enabled else None
        roles = getattr(service, "r", None)  # aliases and ids are checked as the collection they reach, as on gRPC
        self.resolve = collection_resolver(roles.catalog) if roles is not None else None
        self.started = time.time()  # for the admin web UI's uptime
        self.routes: dict[str, Callable[[dict, _Request], Any]] = {
            f"{category}/{action}": getattr(self, f"_{category.replace('/', '_')}_{action}")
            for category, actions in ENDPOINTS.items() for action in actions
        }

    def handle_bytes(self, path: str, body: bytes, headers) -> tuple[int, bytes]:
        """``handle`` with the reply as JSON bytes."""
        status, reply = self.handle(path, body, headers)
        return status, dumps_json(reply)

    def handle_get(self, path: str, headers) -> tuple[int, bytes, dict[str, str]]:
        """``GET /webui/...``: the admin web UI (``vecdb.webui``), over this API's service and credentials."""
        from vecdb import webui

        return webui.handle(self, path, headers)

    def handle(self, path: str, body: bytes, headers) -> tuple[int, dict]:
        """(HTTP status, JSON reply) of one POST; ``headers`` a mapping or ``http.client`` headers."""
        name = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else ""
        route = self.routes.get(name)
        if route is None:
            return 404, {"code": 404, "message": f"no such endpoint: {path}"}
        if not body:  # (Milvus's wrapperPost: Go's decoder reads io.EOF)
            return 200, {"code": BAD_FORMAT, "message": "can only accept json format request, the request body "
                                                        "should be nil, however {} is valid"}
        try:
            req = _one_json_value(body)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except RecursionError:  # (arrays or objects nested past the decoder's recursion limit)
            return 200, {"code": BAD_FORMAT, "message": "can only accept json format request, error: nested too deeply"}
        except ValueError as e:
            return 200, {"code": BAD_FORMAT, "message": f"can only accept json format request, error: {e}"}
        try:
            r = _Request(self, req, headers)
            data = route(req, r)
            return 200, {"code": 0, "data": data, **(data if name in _TOP_LEVEL else {}), **r.top}
        except RestError as e:
            return e.http_status, {"code": e.code, "message": e.message}
        except rest_structs.JsonTypeError as e:  # (Milvus: its JSON binding refuses the body)
            return 200, {"code": BAD_FORMAT, "message": f"can only accept json format request, error: {e.message}"}
        except errors.VecdbError as e:
            return 200, {"code": e.code, "message": e.message}
        except KeyError as e:  # a required key left out: named as collectionName is (no quotes)
            return 200, {"code": MISSING_PARAMETER, "message": f"missing required parameters, error: {_key_of(e)}"}
        except (TypeError, ValueError, AttributeError) as e:  # (a value of the wrong JSON type)
            return 200, {"code": MISSING_PARAMETER, "message": f"missing required parameters, error: {e}"}

    # --- collections -------------------------------------------------------------------
    def _collections_list(self, req, r):
        return list(r.call("ShowCollections", milvus_pb2.ShowCollectionsRequest(db_name=r.db)).collection_names)

    def _collections_has(self, req, r):
        reply = r.call("HasCollection", milvus_pb2.HasCollectionRequest(db_name=r.db, collection_name=_name(req)))
        return {"has": reply.value}

    def _collections_describe(self, req, r):
        name = _name(req)
        d = r.call("DescribeCollection", milvus_pb2.DescribeCollectionRequest(db_name=r.db, collection_name=name))
        indexes = r.call("DescribeIndex", milvus_pb2.DescribeIndexRequest(db_name=r.db, collection_name=name),
                         ok_codes=(700,))
        load = r.call("GetLoadState", milvus_pb2.GetLoadStateRequest(db_name=r.db, collection_name=name))
        partitions = r.call("ShowPartitions", milvus_pb2.ShowPartitionsRequest(db_name=r.db, collection_name=name))
        pk = next((f for f in d.schema.fields if f.is_primary_key), None)
        return {
            "collectionName": d.collection_name, "collectionID": d.collectionID, "description": d.schema.description,
            "autoId": bool(pk and pk.autoID), "fields": [_field_json(f) for f in d.schema.fields],
            **({"enableNamespace": True} if d.schema.enable_namespace else {}),
            "indexes": [{"fieldName": i.field_name, "indexName": i.index_name,
                         "metricType": _kv(i.params).get("metric_type", "")} for i in indexes.index_descriptions],
            "load": common_pb2.LoadState.Name(load.state), "shardsNum": d.shards_num,
            "partitionsNum": len(partitions.partition_names),
            "consistencyLevel": common_pb2.ConsistencyLevel.Name(d.consistency_level),
            "enableDynamicField": d.schema.enable_dynamic_field, "aliases": list(d.aliases),
            "properties": [{"key": kv.key, "value": kv.value} for kv in d.properties],
            "functions": [{"name": fn.name, "id": fn.id, "description": fn.description,
                           "type": _function_type_name(fn.type),
                           "inputFieldNames": list(fn.input_field_names),
                           "outputFieldNames": list(fn.output_field_names), "params": _kv(fn.params)}
                          for fn in d.schema.functions],
            **({"structArrayFields": rest_structs.describe_json(d.schema)} if d.schema.struct_array_fields else {}),
            **rest_more.describe_extras(d),  # (Milvus 3.0's structFields, externalSource, externalSpec)
        }

    def _collections_get_stats(self, req, r):
        reply = r.call("GetCollectionStatistics",
                       milvus_pb2.GetCollectionStatisticsRequest(db_name=r.db, collection_name=_name(req)))
        return {"rowCount": int(_kv(reply.stats).get("row_count", 0))}

    def _collections_get_load_state(self, req, r):
        name = _name(req)
        state = r.call("GetLoadState", milvus_pb2.GetLoadStateRequest(
            db_name=r.db, collection_name=name, partition_names=req.get("partitionNames", []))).state
        if state == common_pb2.LoadStateNotExist:
            raise errors.CollectionNotFound(f"collection not found[collection={name}]")
        if state == common_pb2.LoadStateNotLoad:
            return {"loadState": "LoadStateNotLoad"}
        progress = r.call("GetLoadingProgress", milvus_pb2.GetLoadingProgressRequest(
            db_name=r.db, collection_name=name, partition_names=req.get("partitionNames", []))).progress
        return {"loadState": "LoadStateLoaded" if progress >= 100 else "LoadStateLoading", "loadProgress": progress}

    def _collections_create(self, req, r):
        name = _name(req)
        params = req.get("params") or {}
        if not isinstance(params, dict):
            raise rest_structs.JsonTypeError("params must be a JSON object")
        schema, indexes = _collection_schema(name, req)
        create = milvus_pb2.CreateCollectionRequest(
            db_name=r.db, collection_name=name, schema=schema.SerializeToString(),
            shards_num=_int_param(params, "shardsNum", 1, "params."),
            num_partitions=_int_param(params, "partitionsNum", 0, "params."),
            consistency_level=common_pb2.ConsistencyLevel.Value(params.get("consistencyLevel", "Bounded")),
            properties=_create_properties(params))
        r.call("CreateCollection", create)
        for idx in indexes:
            r.call("CreateIndex", _index_request(r.db, name, idx))
        vectors = {f.name for f in schema.fields if f.data_type in _VECTOR_TYPES}
        vectors |= rest_structs.vector_sub_fields(schema)  # a struct's vector sub-fields need an index too
        if vectors and vectors <= {i["fieldName"] for i in indexes}:
            r.call("LoadCollection", milvus_pb2.LoadCollectionRequest(db_name=r.db, collection_name=name))
        return {}

    def _collections_drop(self, req, r):
        r.call("DropCollection", milvus_pb2.DropCollectionRequest(db_name=r.db, collection_name=_name(req)))
        return {}

    def _collections_rename(self, req, r):
        r.call("RenameCollection", milvus_pb2.RenameCollectionRequest(
            db_name=r.db, oldName=_name(req), newName=req["newCollectionName"],
            newDBName=req.get("newDbName", r.db)))
        return {}

    def _collections_load(self, req, r):
        r.call("LoadCollection", milvus_pb2.LoadCollectionRequest(db_name=r.db, collection_name=_name(req)))
        return {}

    def _collections_release(self, req, r):
        r.call("ReleaseCollection", milvus_pb2.ReleaseCollectionRequest(db_name=r.db, collection_name=_name(req)))
        return {}

    def _collections_alter_properties(self, req, r):
        r.call("AlterCollection", milvus_pb2.AlterCollectionRequest(
            db_name=r.db, collection_name=_name(req), properties=_properties(req, "properties")))
        return {}

    def _collections_drop_properties(self, req, r):
        r.call("AlterCollection", milvus_pb2.AlterCollectionRequest(
            db_name=r.db, collection_name=_name(req), delete_keys=_keys(req)))
        return {}

    def _collections_fields_alter_properties(self, req, r):
        r.call("AlterCollectionField", milvus_pb2.AlterCollectionFieldRequest(
            db_name=r.db, collection_name=_name(req), field_name=_text(req, "fieldName"),
            properties=_properties(req, "fieldParams")))
        return {}

    def _collections_compact(self, req, r):
        reply = r.call("ManualCompaction", milvus_pb2.ManualCompactionRequest(
            db_name=r.db, collection_name=_name(req), majorCompaction=bool(req.get("isClustering", False))))
        return {"compactionID": reply.compactionID}

    def _collections_get_compaction_state(self, req, r):
        job = _int_param(req, "jobID")
        reply = r.call("GetCompactionState", milvus_pb2.GetCompactionStateRequest(compactionID=job))
        return {"compactionID": job, "state": common_pb2.CompactionState.Name(reply.state),
                "executingPlanNumber": reply.executingPlanNo, "timeoutPlanNumber": reply.timeoutPlanNo,
                "completedPlanNumber": reply.completedPlanNo}

    def _collections_flush(self, req, r):
        """Flush, then wait until GetFlushState says the flushed segments are persisted (as Milvus's REST)."""
        name = _name(req)
        reply = r.call("Flush", milvus_pb2.FlushRequest(db_name=r.db, collection_names=[name]))
        state = milvus_pb2.GetFlushStateRequest(db_name=r.db, collection_name=name,
                                                segmentIDs=reply.coll_segIDs[name].data,
                                                flush_ts=reply.coll_flush_ts[name])
        deadline = time.monotonic() + FLUSH_WAIT_S
        while not r.call("GetFlushState", state).flushed:
            if time.monotonic() > deadline:
                raise errors.ServiceUnavailable(f"flush of collection {name} not done in {FLUSH_WAIT_S} s")
            time.sleep(0.1)
        return {}

    # --- entities --------------------------------------------------------------------------
    def _write(self, req, r, method: str, request_type, **extra):
        name = _name(req)
        rows = req.get("data")
        if rows is None:  # (Milvus's binding:"required" on data)
            raise KeyError("data")
        if isinstance(rows, dict):
            rows = [rows]
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            raise RestError(BAD_INSERT_DATA, "fail to deal the insert data, error: data should be a list of objects")
        schema = r.schema(name)
        try:
            fields = rows_to_field_data(schema, rows, skip_auto_id=method == "Insert",
                                        partial=bool(extra.get("partial_update") or extra.get("field_ops")))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise RestError(BAD_INSERT_DATA, f"fail to deal the insert data, error: {_key_of(e)}") from None
        reply = r.call(method, request_type(db_name=r.db, collection_name=name,
                                            partition_name=req.get("partitionName", ""),
                                            fields_data=fields, num_rows=len(rows), **_namespace(req), **extra))
        if reply.IDs.HasField("int_id"):  # (as decimal strings to a client that takes no int64, as Milvus)
            ids = reply.IDs.int_id.data
            return (list(ids) if r.allow_int64 else np.asarray(ids, np.int64).astype(str).tolist()), reply
        return list(reply.IDs.str_id.data), reply

    def _entities_insert(self, req, r):
        ids, reply = self._write(req, r, "Insert", milvus_pb2.InsertRequest)
        r.top["cost"] = 0
        return {"insertCount": reply.insert_cnt, "insertIds": ids}

    def _entities_upsert(self, req, r):
        """Milvus 2.6's REST upsert: ``partialUpdate`` (the rows' fields only, the rest kept) and
        ``fieldOps`` [{fieldName, op REPLACE|ARRAY_APPEND|ARRAY_REMOVE}] (vecdb.proxy.field_ops)."""
        extra = {"partial_update": rest_structs.json_bool(req, "partialUpdate"), "field_ops": _field_ops(req)}
        ids, reply = self._write(req, r, "Upsert", milvus_pb2.UpsertRequest, **extra)
        r.top["cost"] = 0
        return {"upsertCount": reply.upsert_cnt, "upsertIds": ids}

    def _entities_delete(self, req, r):
        name = _name(req)
        expr = _filter(req) or _pk_filter(r.schema(name), req.get("id"))
        reply = r.call("Delete", milvus_pb2.DeleteRequest(db_name=r.db, collection_name=name, expr=expr,
                                                          partition_name=req.get("partitionName", ""),
                                                          **_namespace(req)))
        return {"deleteCount": reply.delete_cnt}

    def _query(self, r, name: str, expr: str, req, limit: int | None) -> list[dict]:
        params = []
        output = _names(req, "outputFields") or ["*"]
        # Milvus's handler_v2 (matchCountRule): no limit with a lone count(*), which a query refuses with one
        if limit and limit > 0 and not (len(output) == 1 and str(output[0]).strip().lower() == "count(*)"):
            params.append(common_pb2.KeyValuePair(key="limit", value=str(limit)))
        offset = _int_param(req, "offset", 0)
        if offset > 0:  # (Milvus's handler_v2: a limit or offset of 0 or less is left out, not refused)
            params.append(common_pb2.KeyValuePair(key="offset", value=str(offset)))
        params += [common_pb2.KeyValuePair(key=k, value=v) for k, v in _query_shape(req).items()]
        reply = r.call("Query", milvus_pb2.QueryRequest(
            db_name=r.db, collection_name=name, expr=expr, output_fields=output,
            partition_names=req.get("partitionNames", []), query_params=params,
            expr_template_values=template_proto(req.get("exprParams") or {}),
            **_consistency(req),
            **_namespace(req)))
        r.top["cost"] = 0  # (Milvus's query and get answer a cost: 0 without its cost accounting)
        return field_data_to_rows(reply.fields_data, int64_str=not r.allow_int64)

    def _entities_query(self, req, r):
        name = _name(req)
        limit = req.get("limit")
        if limit is None and not req.get("groupByFields"):
            limit = 100  # Milvus's REST default (handler_v2's QueryReqV2{Limit: 100}), with a filter or not
        return self._query(r, name, _filter(req), req, _int_param({"limit": limit}, "limit", 0) or None)

    def _entities_get(self, req, r):
        name = _name(req)
        if req.get("id") is None:  # (Milvus's binding:"required" on id)
            raise KeyError("id")
        return self._query(r, name, _pk_filter(r.schema(name), req.get("id")), req, None)

    def _search_request(self, r, name: str, schema: CollectionSchema, req: dict,
                        limit: int) -> milvus_pb2.SearchRequest:
        vectors, ids = req.get("data", req.get("vector")), req.get("ids") or []
        if vectors is None and not ids:
            raise KeyError("data")
        if vectors is not None and not isinstance(vectors, list):
            raise RestError(BAD_FORMAT, "can only accept json format request, error: data is a list of vectors")
        if vectors and not isinstance(vectors[0], (list, str, dict)):
            vectors = [vectors]  # one vector
        anns = req.get("annsField") or (schema.vector_fields[0].name if len(schema.vector_fields) == 1 else "")
        anns = rest_structs.anns_name(schema, anns)  # a struct's vector sub-field: chunks[emb] (or chunks.emb)
        field = schema.field(anns)
        if field is None or not (field.dtype.is_vector or field.dtype == DataType.ARRAY_OF_VECTOR):
            raise errors.InvalidParameter(f"annsField {anns!r} is not a vector field of {name}")
        by_ids = {}
        if vectors is None:  # search by primary keys (Milvus 2.6): the rows' own vectors are the queries
            by_ids = {"ids": _ids(schema, ids)}
        elif vectors and field.dtype == DataType.ARRAY_OF_VECTOR:
            vectors = rest_structs.embedding_lists(vectors, field)  # the float32 bytes of each embedding list
        # a hybrid search's sub-search holds its searchParams as "params" (Milvus's SubSearchReq)
        params, kv_extra = _search_params(req["searchParams"] if "searchParams" in req else req.get("params"))
        kv = {"anns_field": anns, "topk": str(limit), "params": json.dumps(params), "round_decimal": "-1",
              "offset": str(_int_param(req, "offset", 0)), **kv_extra}
        metric = kv.get("metric_type") or req.get("metricType")  # (metric_type: Milvus's docs)
        if metric:
            kv["metric_type"] = metric
        kv.update(_grouping(req))
        kv.update({k: v for k, v in _query_shape(req).items() if k == "order_by_fields"})
        return milvus_pb2.SearchRequest(
            db_name=r.db, collection_name=name, partition_names=req.get("partitionNames", []),
            dsl=_filter(req), dsl_type=common_pb2.BoolExprV1,
            placeholder_group=_placeholders(field, vectors) if vectors else b"",
            output_fields=_names(req, "outputFields"), expr_template_values=template_proto(req.get("exprParams") or {}),
            search_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in kv.items()],
            nq=len(vectors) if vectors else len(ids), **by_ids, **_namespace(req),
            **_consistency(req))

    def _entities_search(self, req, r):
        name = _name(req)
        _refuse_highlighter(req)
        schema = r.schema(name)
        reply = r.call("Search", rest_more.search_extras(  # (functionScore: vecdb.proxy.rest_more)
            self._search_request(r, name, schema, req, _int_param(req, "limit", 100)), req))
        return _hits(r, reply.results, schema)

    def _entities_hybrid_search(self, req, r):
        name = _name(req)
        _refuse_highlighter(req)
        schema = r.schema(name)
        limit = _int_param(req, "limit", 100)
        subs = [self._search_request(r, name, schema, {**s, "partitionNames": req.get("partitionNames", [])},
                                     _int_param(s, "limit", limit, f"search[{i}]."))
                for i, s in enumerate(req["search"])]
        rerank = req.get("rerank") or {"strategy": "rrf", "params": {"k": 60}}
        rank = {"strategy": rerank["strategy"], "params": json.dumps(rerank.get("params", {})), "limit": str(limit),
                "round_decimal": "-1", "offset": str(_int_param(req, "offset", 0)), **_grouping(req)}
        reply = r.call("HybridSearch", rest_more.search_extras(milvus_pb2.HybridSearchRequest(
            db_name=r.db, collection_name=name, partition_names=req.get("partitionNames", []), requests=subs,
            rank_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in rank.items()],
            output_fields=req.get("outputFields", []), **_consistency(req),
            **_namespace(req)), req))
        return _hits(r, reply.results, schema)

    # --- partitions ----------------------------------------------------------------------
    def _partitions_list(self, req, r):
        reply = r.call("ShowPartitions", milvus_pb2.ShowPartitionsRequest(db_name=r.db, collection_name=_name(req)))
        return list(reply.partition_names)

    def _partitions_has(self, req, r):
        reply = r.call("HasPartition", milvus_pb2.HasPartitionRequest(
            db_name=r.db, collection_name=_name(req), partition_name=req["partitionName"]))
        return {"has": reply.value}

    def _partitions_get_stats(self, req, r):
        reply = r.call("GetPartitionStatistics", milvus_pb2.GetPartitionStatisticsRequest(
            db_name=r.db, collection_name=_name(req), partition_name=req["partitionName"]))
        return {"rowCount": int(_kv(reply.stats).get("row_count", 0))}

    def _partitions_create(self, req, r):
        r.call("CreatePartition", milvus_pb2.CreatePartitionRequest(
            db_name=r.db, collection_name=_name(req), partition_name=req["partitionName"]))
        return {}

    def _partitions_drop(self, req, r):
        r.call("DropPartition", milvus_pb2.DropPartitionRequest(
            db_name=r.db, collection_name=_name(req), partition_name=req["partitionName"]))
        return {}

    def _partitions_load(self, req, r):
        r.call("LoadPartitions", milvus_pb2.LoadPartitionsRequest(
            db_name=r.db, collection_name=_name(req), partition_names=req["partitionNames"]))
        return {}

    def _partitions_release(self, req, r):
        r.call("ReleasePartitions", milvus_pb2.ReleasePartitionsRequest(
            db_name=r.db, collection_name=_name(req), partition_names=req["partitionNames"]))
        return {}

    # --- indexes -------------------------------------------------------------------------
    def _indexes_list(self, req, r):
        reply = r.call("DescribeIndex", milvus_pb2.DescribeIndexRequest(db_name=r.db, collection_name=_name(req)),
                       ok_codes=(700,))
        return [i.index_name for i in reply.index_descriptions]

    def _indexes_describe(self, req, r):
        reply = r.call("DescribeIndex", milvus_pb2.DescribeIndexRequest(
            db_name=r.db, collection_name=_name(req), index_name=req["indexName"]))
        out = []
        for i in reply.index_descriptions:
            params = _kv(i.params)
            out.append({"indexName": i.index_name, "fieldName": i.field_name,
                        "indexType": params.get("index_type", ""), "metricType": params.get("metric_type", ""),
                        "totalRows": i.total_rows, "pendingRows": i.pending_index_rows,
                        "indexedRows": i.indexed_rows, "indexState": common_pb2.IndexState.Name(i.state),
                        "failReason": i.index_state_fail_reason})
        return out

    def _indexes_create(self, req, r):
        for idx in req["indexParams"]:
            r.call("CreateIndex", _index_request(r.db, _name(req), idx))
        return {}

    def _indexes_drop(self, req, r):
        r.call("DropIndex", milvus_pb2.DropIndexRequest(db_name=r.db, collection_name=_name(req),
                                                        index_name=req["indexName"]))
        return {}

    def _indexes_alter_properties(self, req, r):
        r.call("AlterIndex", milvus_pb2.AlterIndexRequest(
            db_name=r.db, collection_name=_name(req), index_name=_text(req, "indexName"),
            extra_params=_properties(req, "properties")))
        return {}

    def _indexes_drop_properties(self, req, r):
        r.call("AlterIndex", milvus_pb2.AlterIndexRequest(
            db_name=r.db, collection_name=_name(req), index_name=_text(req, "indexName"), delete_keys=_keys(req)))
        return {}

    # --- aliases -------------------------------------------------------------------------
    def _aliases_list(self, req, r):
        reply = r.call("ListAliases", milvus_pb2.ListAliasesRequest(db_name=r.db,
                                                                    collection_name=req.get("collectionName", "")))
        return list(reply.aliases)

    def _aliases_describe(self, req, r):
        reply = r.call("DescribeAlias", milvus_pb2.DescribeAliasRequest(db_name=r.db, alias=req["aliasName"]))
        return {"dbName": reply.db_name, "collectionName": reply.collection, "aliasName": reply.alias}

    def _aliases_create(self, req, r):
        r.call("CreateAlias", milvus_pb2.CreateAliasRequest(db_name=r.db, collection_name=_name(req),
                                                            alias=req["aliasName"]))
        return {}

    def _aliases_drop(self, req, r):
        r.call("DropAlias", milvus_pb2.DropAliasRequest(db_name=r.db, alias=req["aliasName"]))
        return {}

    def _aliases_alter(self, req, r):
        r.call("AlterAlias", milvus_pb2.AlterAliasRequest(db_name=r.db, collection_name=_name(req),
                                                          alias=req["aliasName"]))
        return {}

    # --- databases -----------------------------------------------------------------------
    def _databases_list(self, req, r):
        return list(r.call("ListDatabases", milvus_pb2.ListDatabasesRequest()).db_names)

    def _databases_describe(self, req, r):
        reply = r.call("DescribeDatabase", milvus_pb2.DescribeDatabaseRequest(db_name=req["dbName"]))
        return {"dbName": reply.db_name, "dbID": reply.dbID, "properties": _kv_list(reply.properties)}

    def _databases_create(self, req, r):
        r.call("CreateDatabase", milvus_pb2.CreateDatabaseRequest(db_name=req["dbName"],
                                                                  properties=_properties(req, "properties")))
        return {}

    def _databases_drop(self, req, r):
        r.call("DropDatabase", milvus_pb2.DropDatabaseRequest(db_name=req["dbName"]))
        return {}

    def _databases_alter(self, req, r):
        r.call("AlterDatabase", milvus_pb2.AlterDatabaseRequest(db_name=_text(req, "dbName"),
                                                                properties=_properties(req, "properties")))
        return {}

    def _databases_alter_properties(self, req, r):
        return self._databases_alter(req, r)

    def _databases_drop_properties(self, req, r):
        r.call("AlterDatabase", milvus_pb2.AlterDatabaseRequest(db_name=_text(req, "dbName"), delete_keys=_keys(req)))
        return {}

    # --- users and roles -----------------------------------------------------------------
    def _users_list(self, req, r):
        return list(r.call("ListCredUsers", milvus_pb2.ListCredUsersRequest()).usernames)

    def _users_describe(self, req, r):
        reply = r.call("SelectUser", milvus_pb2.SelectUserRequest(user=milvus_pb2.UserEntity(name=req["userName"]),
                                                                  include_role_info=True))
        return [role.name for res in reply.results if res.user.name == req["userName"] for role in res.roles]

    def _users_create(self, req, r):
        r.call("CreateCredential", milvus_pb2.CreateCredentialRequest(
            username=req["userName"], password=_b64(req["password"])))
        return {}

    def _users_update_password(self, req, r):
        r.call("UpdateCredential", milvus_pb2.UpdateCredentialRequest(
            username=req["userName"], oldPassword=_b64(req["password"]), newPassword=_b64(req["newPassword"])))
        return {}

    def _users_drop(self, req, r):
        r.call("DeleteCredential", milvus_pb2.DeleteCredentialRequest(username=req["userName"]))
        return {}

    def _users_grant_role(self, req, r):
        return self._user_role(req, r, milvus_pb2.AddUserToRole)

    def _users_revoke_role(self, req, r):
        return self._user_role(req, r, milvus_pb2.RemoveUserFromRole)

    def _user_role(self, req, r, kind):
        r.call("OperateUserRole", milvus_pb2.OperateUserRoleRequest(username=req["userName"],
                                                                    role_name=req["roleName"], type=kind))
        return {}

    def _roles_list(self, req, r):
        return [res.role.name for res in r.call("SelectRole", milvus_pb2.SelectRoleRequest()).results]

    def _roles_describe(self, req, r):
        reply = r.call("SelectGrant", milvus_pb2.SelectGrantRequest(
            entity=milvus_pb2.GrantEntity(role=milvus_pb2.RoleEntity(name=req["roleName"]))))
        return [{"objectType": g.object.name, "objectName": g.object_name, "privilege": g.grantor.privilege.name,
                 "dbName": g.db_name, "grantor": g.grantor.user.name} for g in reply.entities]

    def _roles_create(self, req, r):
        r.call("CreateRole", milvus_pb2.CreateRoleRequest(entity=milvus_pb2.RoleEntity(name=req["roleName"])))
        return {}

    def _roles_drop(self, req, r):
        r.call("DropRole", milvus_pb2.DropRoleRequest(role_name=req["roleName"]))
        return {}

    def _roles_grant_privilege(self, req, r):
        return self._privilege(req, r, milvus_pb2.Grant)

    def _roles_revoke_privilege(self, req, r):
        return self._privilege(req, r, milvus_pb2.Revoke)

    def _privilege(self, req, r, kind):
        r.call("OperatePrivilege", milvus_pb2.OperatePrivilegeRequest(type=kind, entity=milvus_pb2.GrantEntity(
            role=milvus_pb2.RoleEntity(name=req["roleName"]), object=milvus_pb2.ObjectEntity(name=req["objectType"]),
            object_name=req["objectName"], db_name=r.db,
            grantor=milvus_pb2.GrantorEntity(privilege=milvus_pb2.PrivilegeEntity(name=req["privilege"])))))
        return {}

    def _roles_grant_privilege_v2(self, req, r):
        return self._privilege_v2(req, r, milvus_pb2.Grant)

    def _roles_revoke_privilege_v2(self, req, r):
        return self._privilege_v2(req, r, milvus_pb2.Revoke)

    def _privilege_v2(self, req, r, kind):
        """A privilege (or a privilege group) on ``dbName`` / ``collectionName`` (empty: Milvus's defaults)."""
        r.call("OperatePrivilegeV2", milvus_pb2.OperatePrivilegeV2Request(
            type=kind, role=milvus_pb2.RoleEntity(name=_text(req, "roleName")),
            grantor=milvus_pb2.GrantorEntity(privilege=milvus_pb2.PrivilegeEntity(name=_text(req, "privilege"))),
            db_name=req.get("dbName") or "", collection_name=req.get("collectionName") or ""))
        return {}

    # --- privilege groups ------------------------------------------------------------------
    def _privilege_groups_create(self, req, r):
        r.call("CreatePrivilegeGroup", milvus_pb2.CreatePrivilegeGroupRequest(group_name=_group(req)))
        return {}

    def _privilege_groups_drop(self, req, r):
        r.call("DropPrivilegeGroup", milvus_pb2.DropPrivilegeGroupRequest(group_name=_group(req)))
        return {}

    def _privilege_groups_list(self, req, r):
        groups = r.call("ListPrivilegeGroups", milvus_pb2.ListPrivilegeGroupsRequest()).privilege_groups
        return {"privilegeGroups": [{"privilegeGroupName": g.group_name,
                                     "privileges": ",".join(p.name for p in g.privileges)} for g in groups]}

    def _privilege_groups_add_privileges_to_group(self, req, r):
        return self._privilege_group(req, r, milvus_pb2.AddPrivilegesToGroup)

    def _privilege_groups_remove_privileges_from_group(self, req, r):
        return self._privilege_group(req, r, milvus_pb2.RemovePrivilegesFromGroup)

    def _privilege_group(self, req, r, kind):
        r.call("OperatePrivilegeGroup", milvus_pb2.OperatePrivilegeGroupRequest(
            group_name=_group(req), type=kind,
            privileges=[milvus_pb2.PrivilegeEntity(name=p) for p in _names(req, "privileges")]))
        return {}

    # --- resource groups -------------------------------------------------------------------
    def _resource_groups_create(self, req, r):
        create = milvus_pb2.CreateResourceGroupRequest(resource_group=_text(req, "name"))
        if req.get("config") is not None:
            create.config.CopyFrom(_rg_config(req["config"]))
        r.call("CreateResourceGroup", create)
        return {}

    def _resource_groups_drop(self, req, r):
        r.call("DropResourceGroup", milvus_pb2.DropResourceGroupRequest(resource_group=_text(req, "name")))
        return {}

    def _resource_groups_alter(self, req, r):
        groups = req["resource_groups"]
        if not isinstance(groups, dict):
            raise RestError(MISSING_PARAMETER, "missing required parameters, error: resource_groups (an object)")
        r.call("UpdateResourceGroups", milvus_pb2.UpdateResourceGroupsRequest(
            resource_groups={name: _rg_config(cfg) for name, cfg in groups.items()}))
        return {}

    def _resource_groups_describe(self, req, r):
        reply = r.call("DescribeResourceGroup",
                       milvus_pb2.DescribeResourceGroupRequest(resource_group=_text(req, "name")))
        return {"resource_group": _rg_json(reply.resource_group)}

    def _resource_groups_list(self, req, r):
        return list(r.call("ListResourceGroups", milvus_pb2.ListResourceGroupsRequest()).resource_groups)

    def _resource_groups_transfer_replica(self, req, r):
        r.call("TransferReplica", milvus_pb2.TransferReplicaRequest(
            source_resource_group=_text(req, "sourceRgName"), target_resource_group=_text(req, "targetRgName"),
            collection_name=_name(req), num_replica=_int_param(req, "replicaNum"), db_name=r.db))
        return {}

    # --- import jobs (vecdb.proxy.rpc_import) -------------------------------------------------
    def _jobs_import_create(self, req, r):
        name, partition = _name(req), req.get("partitionName") or ""
        files = req.get("files")
        if not isinstance(files, list) or not all(isinstance(g, list) for g in files):
            raise RestError(MISSING_PARAMETER, "missing required parameters, error: files (a list of lists of paths)")
        r.authorize("Import", milvus_pb2.ImportRequest(db_name=r.db, collection_name=name, partition_name=partition,
                                                       files=[str(p) for g in files for p in g]))
        job = self.service.start_import(r.db, name, partition, importer.check_groups(files))
        return {"jobId": str(job.id)}

    def _import_job(self, req, r):
        job_id = _int_param(req, "jobId")
        job = self.service.get_import_job(job_id)
        r.authorize("Import", milvus_pb2.ImportRequest(db_name=job.db, collection_name=job.collection))
        return job

    def _jobs_import_get_progress(self, req, r):
        return _job_progress(self._import_job(req, r))

    def _jobs_import_describe(self, req, r):
        return _job_progress(self._import_job(req, r))

    def _jobs_import_list(self, req, r):
        name = req.get("collectionName") or ""
        if name:
            r.authorize("Import", milvus_pb2.ImportRequest(db_name=r.db, collection_name=name))
        return {"records": [{"collectionName": j.collection, "jobId": str(j.id), "state": j.state,
                             "progress": j.progress} for j in self.service.list_import_jobs(r.db, name)]}


ENDPOINTS = {
    "collections": ("list", "has", "describe", "get_stats", "get_load_state", "create", "drop", "rename", "load",
                    "release", "alter_properties", "drop_properties", "compact", "get_compaction_state", "flush"),
    "collections/fields": ("alter_properties",),
    "entities": ("insert", "upsert", "delete", "get", "query", "search", "hybrid_search"),
    "partitions": ("list", "has", "get_stats", "create", "drop", "load", "release"),
    "indexes": ("list", "describe", "create", "drop", "alter_properties", "drop_properties"),
    "aliases": ("list", "describe", "create", "drop", "alter"),
    "databases": ("list", "describe", "create", "drop", "alter", "alter_properties", "drop_properties"),
    "users": ("list", "describe", "create", "update_password", "drop", "grant_role", "revoke_role"),
    "roles": ("list", "describe", "create", "drop", "grant_privilege", "revoke_privilege", "grant_privilege_v2",
              "revoke_privilege_v2"),
    "privilege_groups": ("create", "drop", "list", "add_privileges_to_group", "remove_privileges_from_group"),
    "resource_groups": ("create", "drop", "alter", "describe", "list", "transfer_replica"),
    "jobs/import": ("create", "list", "get_progress", "describe"),
}
ENDPOINTS = {c: ENDPOINTS.get(c, ()) + rest_more.ENDPOINTS.get(c, ()) for c in {**ENDPOINTS, **rest_more.ENDPOINTS}}
# Milvus's resource_groups/describe answers its group as a top-level "resource_group" (no "data");
# vecdb's reply carries it both there and in "data"
_TOP_LEVEL = frozenset({"resource_groups/describe"})
FLUSH_WAIT_S = 60.0  # collections/flush: how long it waits for GetFlushState to say flushed


def _job_progress(job) -> dict:
    """A job as Milvus 2.4's REST get_progress answers it (per-file details carry the job's state)."""
    done = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.complete_ms / 1000)) if job.complete_ms else ""
    details = [{"fileName": ",".join(g), "fileSize": 0, "state": job.state, "progress": job.progress,
                "completeTime": done, "reason": job.reason} for g in job.files]
    return {"jobId": str(job.id), "collectionName": job.collection, "state": job.state, "progress": job.progress,
            "reason": job.reason, "completeTime": done, "importedRows": job.imported_rows,
            "totalRows": job.total_rows, "fileSize": 0, "details": details}


class _Request:
    """One REST call: its database and credential, and the Milvus handlers it calls."""

    def __init__(self, api: RestApi, req: dict, headers):
        self.api = api
        # Milvus's wrapperPost: the body's dbName, else the DB-Name header, else "default"
        self.db = req.get("dbName") or _header(headers, DB_NAME_HEADER) or "default"
        self.allow_int64 = _allow_int64(_header(headers, ALLOW_INT64_HEADER))
        metadata = [("dbname", self.db)]
        self._db_header = metadata[:1]
        # databases/create and drop name their database in the body: their grants are the header's database's
        self._conn_db_header = [("dbname", _header(headers, DB_NAME_HEADER) or "default")]
        credential = _credential(_header(headers, "Authorization"))
        if credential:
            metadata.append(("authorization", credential))
        self.call_context = _Call(metadata)
        self.user = ""
        if api.security is not None:
            try:
                self.user = api.security.authenticate(credential or None)
            except errors.NotAuthenticated as e:
                raise RestError(NEED_AUTHENTICATE, e.message, 401) from None
        self._schemas: dict[str, CollectionSchema] = {}
        self.top: dict[str, Any] = {}  # keys of the reply beside code and data (Milvus's cost, topks)

    def authorize(self, method: str, request) -> None:
        """Whether this call's user may call the Milvus ``method`` with ``request`` (403 if not)."""
        if self.api.security is not None:
            try:  # in the database the request names (snapshots/restore: its source's), as gRPC authorizes
                db = privilege_database(method, request, self._db_header, self._conn_db_header)
                self.api.security.authorize(self.user, method, request, db, self.api.resolve)
            except errors.NotPermitted as e:
                raise RestError(e.code, e.message, 403) from None

    def call(self, method: str, request, ok_codes: tuple[int, ...] = ()):
        """The Milvus handler's reply; its error status raised as a Milvus error."""
        self.authorize(method, request)
        reply = getattr(self.api.service, method)(request, self.call_context)
        status = _status_of(reply)
        if status.code and status.code not in ok_codes:
            raise RestError(status.code, status.reason)
        return reply

    def schema(self, name: str) -> CollectionSchema:
        if name not in self._schemas:
            d = self.call("DescribeCollection", milvus_pb2.DescribeCollectionRequest(db_name=self.db,
                                                                                     collection_name=name))
            self._schemas[name] = CollectionSchema.from_proto(d.schema, name)
        return self._schemas[name]


# --- requests ------------------------------------------------------------------------------
DB_NAME_HEADER, ALLOW_INT64_HEADER = "DB-Name", "Accept-Type-Allow-Int64"  # Milvus's constant.go
# proxy.http.acceptTypeAllowInt64: what Milvus (2.3.2+, 2.4, 2.5, 2.6) answers when the header is absent or
# no boolean: int64 values as JSON numbers
ALLOW_INT64_DEFAULT = True
_GO_TRUE, _GO_FALSE = ("1", "t", "T", "true", "TRUE", "True"), ("0", "f", "F", "false", "FALSE", "False")


def _header(headers, name: str) -> str:
    """A request header's value ("" when absent), its name matched without regard to case, from a
    mapping or ``http.client`` headers."""
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value or ""


def _allow_int64(value: str) -> bool:
    """``Accept-Type-Allow-Int64`` read as Milvus's middleware reads it: Go's ``strconv.ParseBool``; a
    header that is absent or no boolean takes the server's default (true)."""
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    return ALLOW_INT64_DEFAULT


def _credential(auth: str) -> str:
    """The ``Authorization`` header as the base64 ``user:password`` credential of a gRPC call, read as
    Milvus's ``ParseUsernamePassword``: HTTP Basic auth (``curl -u user:password``) first, else the token
    with any ``Bearer `` prefix removed. A Basic value that is no base64 of ``user:password`` is handed on
    as it is, to be refused as a wrong token is."""
    scheme, _, rest = auth.partition(" ")
    if scheme.lower() == "basic" and rest.strip():
        return rest.strip()
    token = auth[len("Bearer "):] if auth.startswith("Bearer ") else auth
    token = token.strip()
    return _b64(token) if token else ""


_VECTOR_TYPES = {int(t) for t in DataType if t.is_vector} | {int(DataType.SPARSE_FLOAT_VECTOR)}


def _one_json_value(body: bytes):
    """The body's first JSON value, as Milvus's binding reads it (Go's ``json.Decoder.Decode``): UTF-8 only,
    invalid bytes in strings read as U+FFFD, whatever follows the value ignored; a byte order mark or another
    encoding is no JSON (``ValueError``)."""
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    return _JSON.raw_decode(text, start)[0]


def _no_constant(name: str):
    """``NaN``, ``Infinity`` and ``-Infinity``, which Python's decoder takes and JSON (Go's decoder) does not."""
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


_JSON = json.JSONDecoder(parse_constant=_no_constant)


def _key_of(e: Exception):
    """What an error says, a KeyError's key without the quotes ``str`` puts around it."""
    return e.args[0] if isinstance(e, KeyError) and e.args else e


def _name(req: dict) -> str:
    name = req.get("collectionName")
    if not isinstance(name, str) or not name:
        raise RestError(MISSING_PARAMETER, "missing required parameters, error: collectionName")
    return name


def _filter(req: dict) -> str:
    """An optional ``filter`` (a JSON string; another type is 1801, as Milvus's JSON binding refuses it)."""
    value = req.get("filter")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RestError(BAD_FORMAT, f"can only accept json format request, error: filter is a string, "
                                    f"got {json.dumps(value)[:100]}")
    return value


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _kv(pairs) -> dict[str, str]:
    return {kv.key: kv.value for kv in pairs}


def _kv_list(pairs) -> list[dict[str, str]]:
    return [{"key": kv.key, "value": kv.value} for kv in pairs]


def _text(req: dict, key: str) -> str:
    """A required, non-empty string parameter (1802 when missing)."""
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise RestError(MISSING_PARAMETER, f"missing required parameters, error: {key}")
    return value


def _group(req: dict) -> str:
    return _text(req, "privilegeGroupName")


def _names(req: dict, key: str) -> list[str]:
    """An optional list of strings (a missing or null one: empty)."""
    values = req.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RestError(BAD_FORMAT, f"can only accept json format request, error: {key} is a list of strings")
    return values


def _keys(req: dict) -> list[str]:
    return _names(req, "propertyKeys")


def _property_value(value) -> str:
    """A JSON value as the string Milvus's REST API sends for it (Go's ``%v``): true, 100, 0.5, text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _properties(req: dict, key: str) -> list[common_pb2.KeyValuePair]:
    """An optional JSON object of properties as key-value pairs."""
    props = req.get(key) or {}
    if not isinstance(props, dict):
        raise RestError(BAD_FORMAT, f"can only accept json format request, error: {key} is an object")
    return [common_pb2.KeyValuePair(key=k, value=_property_value(v)) for k, v in props.items()]


def _rg_config(cfg) -> rg_pb2.ResourceGroupConfig:
    """A resource group's config from Milvus's REST form: requests and limits {node_num} (required),
    transfer_from / transfer_to [{resource_group}], node_filter {node_labels: {key: value}}."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("requests"), dict) or \
            not isinstance(cfg.get("limits"), dict):
        raise RestError(MISSING_PARAMETER, "missing required parameters, error: config.requests and config.limits")
    node_filter = cfg.get("node_filter") or {}
    if not isinstance(node_filter, dict):
        raise TypeError("config.node_filter is an object")
    labels = dict(node_filter.get("node_labels") or {})
    return rg_pb2.ResourceGroupConfig(
        requests=rg_pb2.ResourceGroupLimit(node_num=_int_param(cfg["requests"], "node_num", 0, "config.requests.")),
        limits=rg_pb2.ResourceGroupLimit(node_num=_int_param(cfg["limits"], "node_num", 0, "config.limits.")),
        transfer_from=[rg_pb2.ResourceGroupTransfer(resource_group=t["resource_group"])
                       for t in cfg.get("transfer_from") or []],
        transfer_to=[rg_pb2.ResourceGroupTransfer(resource_group=t["resource_group"])
                     for t in cfg.get("transfer_to") or []],
        node_filter=rg_pb2.ResourceGroupNodeFilter(
            node_labels=[common_pb2.KeyValuePair(key=k, value=str(v)) for k, v in labels.items()]))


def _int_param(obj: dict, key: str, default: int | None = None, where: str = "") -> int:
    """``obj[key]``, a request parameter outside row data, as an integer: a JSON integer (10.0 too) or a
    decimal string ("10"); absent or null: ``default`` (required when None: a KeyError, "missing required
    parameters, error: <key>"). Anything else (true, 1.5, "x", [1]) is refused naming the field, 1802 as
    Milvus's binding answers a value it cannot take, not in Python's words."""
    value = obj.get(key)
    if value is None:
        if default is None:
            raise KeyError(where + key)
        return default
    if _integer(value):  # (what a row's integer field takes too)
        return int(value)
    raise RestError(MISSING_PARAMETER, f"missing required parameters, error: {where}{key} must be an integer, "
                                       f"got {json.dumps(value)[:100]}")


# searchParams keys that are search parameters of their own rather than the index's (Milvus's names for them)
_SEARCH_KV = {"metricType": "metric_type", "metric_type": "metric_type", "ignoreGrowing": "ignore_growing",
              "ignore_growing": "ignore_growing"}


def _search_params(sp) -> tuple[dict, dict[str, str]]:
    """(the index's search params, other search_params pairs) of a search's ``searchParams`` (a hybrid
    sub-search's ``params``), as Milvus's generateSearchParams (2.5.2+) reads it: one layer, ``params``
    nested or not (``{"params": {"nprobe": 10}}`` is ``{"nprobe": 10}``); a key both inside and outside
    ``params`` with two values is ambiguous (1100), a ``params`` that is no object too."""
    if sp is None:
        sp = {}
    if not isinstance(sp, dict):
        raise ValueError("searchParams must be an object")
    inner = sp.get("params")
    if inner is not None and not isinstance(inner, dict):
        raise errors.InvalidParameter("searchParams.params must be a dict")
    params, kv = dict(inner or {}), {}
    for key, value in sp.items():
        if key == "params" or value is None:
            continue
        if key in _SEARCH_KV:
            kv[_SEARCH_KV[key]] = json.dumps(value) if isinstance(value, bool) else str(value)
        elif key not in params:
            params[key] = value
        elif params[key] != value:  # (10 == 10.0, as Milvus's deepEqual)
            raise errors.InvalidParameter(f"ambiguous parameter: {key}, in search_param: {json.dumps(value)}, "
                                          f"in search_param.params: {json.dumps(params[key])}")
    return params, kv


def _consistency(req: dict) -> dict:
    """A request's ``consistency_level`` and ``use_default_consistency``, as Milvus's convertConsistencyLevel
    reads ``consistencyLevel``: absent or "" the collection's default, a name not of the enum 1100."""
    level = req.get("consistencyLevel") or ""
    if not level:
        return {"consistency_level": common_pb2.Bounded, "use_default_consistency": True}
    if not isinstance(level, str) or level not in common_pb2.ConsistencyLevel.keys():
        raise RestError(INVALID_PARAMETER, "consistencyLevel can only be [Strong, Session, Bounded, Eventually, "
                                           f"Customized], default: Bounded, err:parameter:'{level}' is incorrect, "
                                           "please check it: invalid parameter")
    return {"consistency_level": common_pb2.ConsistencyLevel.Value(level), "use_default_consistency": False}


def _grouping(req: dict) -> dict[str, str]:
    """A search's or hybrid search's grouping (``groupingField``, ``groupSize``, ``strictGroupSize``)
    as the search parameters pymilvus sends."""
    out = {}
    if req.get("groupingField"):
        out["group_by_field"] = str(req["groupingField"])
        if req.get("groupSize") is not None:
            out["group_size"] = str(req["groupSize"])
        if req.get("strictGroupSize") is not None:
            out["strict_group_size"] = str(bool(req["strictGroupSize"]))
    return out


def _query_shape(req: dict) -> dict[str, str]:
    """A query's ``groupByFields`` (field names) and a query's or search's ``orderByFields`` (``"f:desc"``
    strings or ``{"field": f, "order": "desc"}`` objects) as the parameters pymilvus sends
    (vecdb.proxy.query_aggregation)."""
    out = {}
    group = req.get("groupByFields")
    if group:
        out["group_by_fields"] = ",".join(str(g) for g in (group if isinstance(group, list) else [group]))
    order = req.get("orderByFields")
    if order:
        items = order if isinstance(order, list) else [order]
        out["order_by_fields"] = ",".join(
            f"{o.get('field', '')}:{o.get('order', 'asc')}" if isinstance(o, dict) else str(o) for o in items)
    return out


def _ids(schema: CollectionSchema, ids) -> schema_pb2.IDs:
    """A search's ``ids`` (the primary keys whose vectors are the queries) of the primary key's type."""
    ids = ids if isinstance(ids, list) else [ids]
    if schema.primary_field.dtype == DataType.VARCHAR:
        if not all(isinstance(i, str) for i in ids):
            raise RestError(BAD_PRIMARY_KEY, f"primary key is invalid, error: {schema.primary_field.name} is a VarChar")
        return schema_pb2.IDs(str_id=schema_pb2.StringArray(data=ids))
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise RestError(BAD_PRIMARY_KEY, f"primary key is invalid, error: {schema.primary_field.name} is an Int64")
    return schema_pb2.IDs(int_id=schema_pb2.LongArray(data=ids))


def _pk_filter(schema: CollectionSchema, ids) -> str:
    if ids is None:
        raise RestError(BAD_PRIMARY_KEY, "primary key is invalid, error: give a filter or the ids (id)")
    ids = ids if isinstance(ids, list) else [ids]
    pk = schema.primary_field
    if pk.dtype == DataType.VARCHAR:
        if not all(isinstance(i, str) for i in ids):
            raise RestError(BAD_PRIMARY_KEY, f"primary key is invalid, error: {pk.name} is a VarChar")
        return f"{pk.name} in {json.dumps(ids)}"
    if not all(isinstance(i, int) or (isinstance(i, str) and i.lstrip('-').isdigit()) for i in ids):
        raise RestError(BAD_PRIMARY_KEY, f"primary key is invalid, error: {pk.name} is an Int64")
    return f"{pk.name} in [{', '.join(str(int(i)) for i in ids)}]"


def _field_json(f: schema_pb2.FieldSchema) -> dict:
    """A field as Milvus's printFieldDetail (v2) writes it: its id and nullable always, isFunctionOutput on a
    function's output field."""
    out = {"name": f.name, "id": f.fieldID, "type": schema_pb2.DataType.Name(f.data_type),
           "primaryKey": f.is_primary_key, "partitionKey": f.is_partition_key, "clusteringKey": f.is_clustering_key,
           "autoId": f.autoID, "description": f.description, "nullable": f.nullable,
           "params": _kv_list(f.type_params)}
    if f.data_type == schema_pb2.Array:
        out["elementType"] = schema_pb2.DataType.Name(f.element_type)
    if f.is_function_output:
        out["isFunctionOutput"] = True
    kind = f.default_value.WhichOneof("data") if f.HasField("default_value") else None
    if kind is not None:
        out["defaultValue"] = getattr(f.default_value, kind)
    return out


def _namespace(req: dict) -> dict[str, str]:
    """A request's ``namespace`` (a collection with namespaces: vecdb.namespaces), as a request keyword."""
    ns = req.get("namespace")
    if ns is not None and not isinstance(ns, str):
        raise errors.InvalidParameter(f"namespace must be a string, got {json.dumps(ns)}")
    return {} if ns is None else {"namespace": ns}


# collections/create's ``params`` as Milvus's REST handler reads them (handler_v2.go createCollection):
# shardsNum, partitionsNum, consistencyLevel into the request; ttlSeconds and partitionKeyIsolation into
# the collection's properties; max_length and enableDynamicField for a quick setup. vecdb also takes a
# collection property by its own key (one with a dot, e.g. namespace.mode, mmap.enabled, or timezone),
# as pymilvus's create_collection(properties=...) sends it; any other key is ignored, as Milvus ignores it.
_CREATE_PARAMS = frozenset({"shardsNum", "partitionsNum", "consistencyLevel", "max_length", "enableDynamicField"})
_PARAM_PROPERTIES = {"ttlSeconds": "collection.ttl.seconds", "partitionKeyIsolation": "partitionkey.isolation"}


def _create_properties(params: dict) -> list[common_pb2.KeyValuePair]:
    """The collection properties of a create's ``params`` (Go's ``%v`` text of each value)."""
    props = []
    for key, value in params.items():
        if key in _CREATE_PARAMS:
            continue
        prop = _PARAM_PROPERTIES.get(key, key if "." in key or key == "timezone" else None)
        if prop is None:
            continue  # (Milvus's handler reads the keys it knows and leaves the others)
        props.append(common_pb2.KeyValuePair(key=prop, value=_property_value(value)))
    return props


def _dynamic_param(req: dict) -> bool:
    """A quick setup's ``params.enableDynamicField`` (true when absent), read as Milvus reads it: Go's
    ``strconv.ParseBool`` of its ``%v`` text (1, t, true, TRUE, True, 0, f, false, ...)."""
    value = (req.get("params") or {}).get("enableDynamicField", True)
    text = _property_value(value)
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise RestError(INVALID_PARAMETER, f"parse enableDynamicField fail, err:strconv.ParseBool: parsing {text!r}: "
                                       "invalid syntax")


_FIELD_OPS = {name: value for name, value in schema_pb2.FieldPartialUpdateOp.OpType.items()}


def _field_ops(req: dict) -> list[schema_pb2.FieldPartialUpdateOp]:
    """An upsert's ``fieldOps`` [{fieldName, op}] (Milvus 2.6.17's REST: op REPLACE, ARRAY_APPEND or
    ARRAY_REMOVE; the server checks the rest, vecdb.proxy.field_ops)."""
    items = req.get("fieldOps") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise rest_structs.JsonTypeError("fieldOps must be a list of objects {fieldName, op}")
    out = []
    for item in items:
        name, op = item.get("fieldName"), item.get("op")
        if not isinstance(name, str) or not isinstance(op, str):
            raise rest_structs.JsonTypeError("fieldOps[].fieldName and fieldOps[].op must be strings")
        if op.upper() not in _FIELD_OPS:
            raise RestError(INVALID_PARAMETER, f"unsupported partial update op {op!r} for field {name!r} "
                                               f"(want one of {sorted(_FIELD_OPS)})")
        out.append(schema_pb2.FieldPartialUpdateOp(field_name=name, op=_FIELD_OPS[op.upper()]))
    return out


def _refuse_highlighter(req: dict) -> None:
    """Milvus's REST v2 search request (request_v2.go SearchReqV2 / HybridSearchReq) has no highlighter:
    one sent is refused, not silently dropped (the gRPC API takes it)."""
    if req.get("highlighter") is not None:
        raise RestError(INVALID_PARAMETER, "highlighter is not supported by the RESTful API's search (Milvus's "
                                           "REST v2 has no highlighter); search with highlighter over gRPC")


def _collection_schema(name: str, req: dict) -> tuple[schema_pb2.CollectionSchema, list[dict]]:
    """The schema and the indexes of a create: Milvus's quick setup (``dimension``) or ``schema``."""
    spec = req.get("schema")
    if not spec:
        dim = req.get("dimension")
        if not dim:
            raise RestError(MISSING_PARAMETER, "missing required parameters, error: dimension or schema")
        id_type = req.get("idType", "Int64")
        pk_params = {"max_length": str((req.get("params") or {}).get("max_length", 65535))} \
            if id_type == "VarChar" else {}
        spec = {"autoId": rest_structs.json_bool(req, "autoID"), "enableDynamicField": _dynamic_param(req), "fields": [
            {"fieldName": req.get("primaryFieldName", "id"), "dataType": id_type, "isPrimary": True,
             "elementTypeParams": pk_params},
            {"fieldName": req.get("vectorFieldName", "vector"), "dataType": "FloatVector",
             "elementTypeParams": {"dim": str(dim)}}]}
        vector = req.get("vectorFieldName", "vector")
        indexes = [{"fieldName": vector, "indexName": vector, "metricType": req.get("metricType", "COSINE"),
                    "indexType": "AUTOINDEX"}]
    else:
        indexes = list(req.get("indexParams") or [])
    flag = rest_structs.json_bool  # a JSON boolean, as Milvus's binding takes it ("false": 1801, not true)
    pb = schema_pb2.CollectionSchema(name=name, description=req.get("description", ""),
                                     enable_dynamic_field=flag(spec, "enableDynamicField", "schema."),
                                     enable_namespace=flag(spec, "enableNamespace", "schema."))
    auto_id = flag(spec, "autoId", "schema.")
    for f in spec["fields"]:
        where = f"schema.fields[{f.get('fieldName')}]."
        field = pb.fields.add(name=f["fieldName"], data_type=schema_pb2.DataType.Value(f["dataType"]),
                              is_primary_key=flag(f, "isPrimary", where),
                              is_partition_key=flag(f, "isPartitionKey", where),
                              is_clustering_key=flag(f, "isClusteringKey", where),
                              description=f.get("description", ""))
        if field.is_primary_key:
            field.autoID = auto_id
        if f.get("elementDataType"):
            field.element_type = schema_pb2.DataType.Value(f["elementDataType"])
        for key, value in (f.get("elementTypeParams") or {}).items():  # analyzer_params: a JSON object
            text = json.dumps(value) if isinstance(value, (dict, list)) else \
                str(value).lower() if isinstance(value, bool) else str(value)
            field.type_params.add(key=key, value=text)
        field.nullable = flag(f, "nullable", where)
        if f.get("defaultValue") is not None:
            _set_default(field, f["defaultValue"])
    rest_structs.add_struct_fields(pb, spec)  # array-of-struct fields (Milvus 2.6)
    for fn in spec.get("functions") or []:  # BM25 (vecdb.schema checks them)
        try:
            kind = _MINHASH if fn.get("type") == "MinHash" else schema_pb2.FunctionType.Value(fn.get("type", ""))
        except ValueError:
            raise RestError(INVALID_PARAMETER, f"unknown function type {fn.get('type')!r}") from None
        pb.functions.add(name=fn.get("name", ""), type=kind, description=fn.get("description", ""),
                         input_field_names=list(fn.get("inputFieldNames") or []),
                         output_field_names=list(fn.get("outputFieldNames") or []),
                         params=[common_pb2.KeyValuePair(key=k, value=str(v))
                                 for k, v in (fn.get("params") or {}).items()])
    return pb, indexes


def _set_default(field: schema_pb2.FieldSchema, value) -> None:
    """A JSON ``defaultValue`` in the ValueField member of the field's type (the schema checks it)."""
    try:
        attr = DEFAULT_VALUE_ATTR.get(DataType(field.data_type))
    except ValueError:
        attr = None
    if attr is None:
        raise RestError(INVALID_PARAMETER, f"type not support default_value, name:{field.name}")
    try:
        setattr(field.default_value, attr, value)
    except (TypeError, ValueError) as e:
        raise RestError(INVALID_PARAMETER, f"invalid defaultValue of field {field.name}: {e}") from None


def _index_request(db: str, collection: str, idx: dict) -> milvus_pb2.CreateIndexRequest:
    params = {"metric_type": idx.get("metricType", ""), "index_type": idx.get("indexType", "AUTOINDEX"),
              **{k: str(v) for k, v in (idx.get("params") or {}).items()}}
    if "index_type" in (idx.get("params") or {}):
        params["index_type"] = str(idx["params"]["index_type"])
    return milvus_pb2.CreateIndexRequest(
        db_name=db, collection_name=collection, field_name=idx["fieldName"],
        index_name=idx.get("indexName", ""),
        extra_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items() if v])


_MINHASH = 4  # FunctionType MinHash (Milvus 3.0): a value pymilvus 2.6's proto enum has no name for


def _function_type_name(kind: int) -> str:
    return "MinHash" if kind == _MINHASH else schema_pb2.FunctionType.Name(kind)


def _placeholders(field: FieldSchema, vectors: list) -> bytes:
    dtype = field.dtype
    if field.is_function_output and all(isinstance(v, str) for v in vectors):  # full text on a BM25 output field
        kind, values = common_pb2.VarChar, [v.encode("utf-8") for v in vectors]
    elif dtype == DataType.ARRAY_OF_VECTOR:  # embedding lists (rest_structs.embedding_lists): their bytes
        kind, values = common_pb2.EmbListFloatVector, vectors
    elif dtype == DataType.SPARSE_FLOAT_VECTOR:  # {index: value} objects
        kind, values = common_pb2.SparseFloatVector, [_sparse_row(v) for v in vectors]
    elif dtype == DataType.BINARY_VECTOR:
        kind, values = common_pb2.BinaryVector, [bytes(np.asarray(v, np.uint8)) for v in vectors]
    elif dtype == DataType.INT8_VECTOR:  # lists of integers in [-128, 127]
        kind, values = common_pb2.Int8Vector, [_int8_rows([v]).tobytes() for v in vectors]
    elif dtype == DataType.FLOAT16_VECTOR:
        kind, values = common_pb2.Float16Vector, [np.asarray(v, np.float16).tobytes() for v in vectors]
    elif dtype == DataType.BFLOAT16_VECTOR:
        kind = common_pb2.BFloat16Vector
        values = [float32_to_bfloat16(np.asarray(v, np.float32)).tobytes() for v in vectors]
    else:
        kind, values = common_pb2.FloatVector, [np.asarray(v, np.float32).tobytes() for v in vectors]
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(tag="$0", type=kind, values=values)])
    return group.SerializeToString()


def _int8_rows(values) -> np.ndarray:
    """INT8_VECTOR rows from JSON lists of integers; a value outside [-128, 127] or not an integer is 1100."""
    try:
        a = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise errors.InvalidParameter("an int8 vector is a list of integers in [-128, 127]") from None
    if a.size and ((a != np.round(a)).any() or a.min() < -128 or a.max() > 127):
        raise errors.InvalidParameter("an int8 vector is a list of integers in [-128, 127]")
    return a.astype(np.int8)


def _sparse_row(v) -> bytes:
    if not isinstance(v, dict):
        raise errors.InvalidParameter(f"a sparse vector is a JSON object of index: value, got {type(v).__name__}")
    if set(v) == {"indices", "values"}:  # Milvus's other JSON form (bulk import files)
        if not isinstance(v["indices"], list) or not isinstance(v["values"], list) or \
                len(v["indices"]) != len(v["values"]):
            raise errors.InvalidParameter("a sparse vector's indices and values are lists of the same length")
        v = dict(zip(v["indices"], v["values"]))
    try:
        pairs = sorted((int(k), float(x)) for k, x in v.items())
    except (TypeError, ValueError):
        raise errors.InvalidParameter("a sparse vector's indices are integers and its values numbers") from None
    return np.array(pairs, dtype=[("i", "<u4"), ("v", "<f4")]).tobytes()


_NUMPY = {DataType.BOOL: np.bool_, DataType.INT8: np.int8, DataType.INT16: np.int16, DataType.INT32: np.int32,
          DataType.INT64: np.int64, DataType.FLOAT: np.float32, DataType.DOUBLE: np.float64}


def rows_to_field_data(schema: CollectionSchema, rows: list[dict], skip_auto_id: bool = True,
                       partial: bool = False, quoted_numbers: bool = True) -> list:
    """JSON rows to the ``FieldData`` columns of an insert or upsert (keys not in the schema go to the
    dynamic field when it is on, as pymilvus's row inserts do). ``partial`` (a partial update): only
    the fields the rows hold are sent, each by every row (null where a row says null).
    ``quoted_numbers``: a number field takes a quoted number ("1"), as Milvus's REST insert does;
    bulk import refuses it (False), as Milvus 2.3.5's JSON import does ("illegal value '1' for int64")."""
    names: list[str] = []
    columns: dict[str, np.ndarray] = {}
    static = {f.name for f in schema.fields} | {s.name for s in schema.struct_fields}
    nulls: dict[str, np.ndarray] = {}  # nullable / default-valued fields: the rows holding a value
    for f in schema.fields:
        if f.is_dynamic or (f.is_primary and f.auto_id and skip_auto_id) or f.is_function_output or f.struct_name:
            continue  # (a BM25 output: the server's to fill; struct sub-fields: below)
        if partial:
            missing = [i for i, row in enumerate(rows) if f.name not in row]
            if len(missing) == len(rows):
                continue  # left out: the current value stays
            if missing:
                raise ValueError(f"field {f.name} is missing in row {missing[0]} (a partial update sends the "
                                 "same fields in every row)")
        if f.nullable or f.has_default:  # a null or left-out value: null, or the default (the server's)
            valid = np.array([row.get(f.name) is not None for row in rows], np.bool_)
            if not valid.any() and not partial:
                continue
            if not valid.all():
                nulls[f.name] = valid
            placeholder = null_column(f, 1)[0]
            values = [row.get(f.name) if ok else placeholder for row, ok in zip(rows, valid.tolist())]
        else:
            missing = [i for i, row in enumerate(rows) if f.name not in row]
            if missing:  # (Milvus's checkAndSetData: "field %s is required")
                raise ValueError(f"field {f.name} is required, missing in row {missing[0]}")
            values = [row[f.name] for row in rows]
        if f.nullable:
            columns[valid_key(f.name)] = nulls.get(f.name, np.ones(len(rows), np.bool_))
        try:
            col = _column(f, values, nulls.get(f.name), quoted_numbers)
        except (TypeError, ValueError, OverflowError):  # (numpy's words name no field: Milvus's instead)
            raise ValueError(_bad_value(f, values, quoted_numbers)) from None
        names.append(f.name)
        columns[f.name] = col
    dynamic_keys = None
    if schema.dynamic_field is not None and not (partial and not any(set(row) - static for row in rows)):
        extra = np.empty(len(rows), object)
        extra[:] = [{k: v for k, v in row.items() if k not in static} for row in rows]
        columns[DYNAMIC_FIELD] = extra
        names.append(DYNAMIC_FIELD)
        dynamic_keys = ["*"]
    elif schema.dynamic_field is None:
        unknown = sorted({k for row in rows for k in row} - static)
        if unknown:  # (Milvus's words, and the key)
            raise ValueError(f"has pass more field without dynamic schema, please check it: field {unknown[0]} "
                             "is not in the schema and the dynamic field is off")
    structs = rest_structs.struct_columns(schema, rows, partial)  # chunks[text], chunks[emb]: one ArrayOfStruct
    columns.update(structs)
    names.extend(structs)
    out = field_data_from_columns(schema, columns, names, dynamic_keys)
    for fd in out:  # a default-valued field that is not nullable: its null rows take the default
        if fd.field_name in nulls and not len(fd.valid_data):
            fd.valid_data.extend(nulls[fd.field_name].tolist())
    return out


_INT_RANGE = {DataType.INT8: (-2 ** 7, 2 ** 7 - 1), DataType.INT16: (-2 ** 15, 2 ** 15 - 1),
              DataType.INT32: (-2 ** 31, 2 ** 31 - 1), DataType.INT64: (-2 ** 63, 2 ** 63 - 1)}


def _integer(v) -> bool:
    """A JSON value Milvus's REST insert reads as an integer: a number with an integer value, or a
    quoted decimal integer ("010" is 10); not a boolean."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):  # (numpy's: a null row's placeholder)
        return True
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, str) and v.strip().lstrip("+-").isdigit()


def _bool(v) -> bool:
    """A JSON value as Milvus's REST insert reads a BOOL (``cast.ToBoolE`` of gjson's text of it, i.e. Go's
    ``strconv.ParseBool``): true / false, the strings "1" "t" "T" "true" "TRUE" "True" (and the false
    ones), the numbers 1 and 0; anything else (``"x"``, 2, null, a list) a ValueError."""
    if isinstance(v, (bool, np.bool_)):  # (numpy's: a null row's placeholder)
        return bool(v)
    if isinstance(v, str):
        if v in _GO_TRUE:
            return True
        if v in _GO_FALSE:
            return False
    elif isinstance(v, (int, float)) and v in (0, 1):
        return v == 1
    raise ValueError(v)


def _boolean(v) -> bool:
    try:
        _bool(v)
    except ValueError:
        return False
    return True


def _number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return False
    try:
        float(v)
    except ValueError:
        return False
    return True


_FLOATS = (DataType.FLOAT, DataType.DOUBLE)
_NUMBERS = (*_FLOATS, *_INT_RANGE)
_FLOAT_ROWS = (DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR)


def _bad_value(f: FieldSchema, values: list, quoted_numbers: bool = True) -> str:
    """Milvus's checkAndSetData error for a value of field ``f`` its type cannot take: what the field
    takes, then ``invalid parameter[expected=<type>][actual=<value>]`` (the first such value)."""
    kind = schema_pb2.DataType.Name(int(f.dtype))
    bad: Any
    if not quoted_numbers and f.dtype in _NUMBERS and str in set(map(type, values)):
        bad = json.dumps(next(v for v in values if isinstance(v, str)))
        want = f"field {f.name} value must be a number, not a quoted one"
    elif f.dtype in _INT_RANGE:
        lo, hi = _INT_RANGE[f.dtype]
        bad = next((v for v in values if not _integer(v) or not lo <= int(v) <= hi), None)
        want = f"field {f.name} value must be an integer in range [{lo}, {hi}]"
    elif f.dtype in _FLOATS:
        bad = next((v for v in values if not _number(v)), None)
        want = f"field {f.name} value must be a number"
    elif f.dtype in _FLOAT_ROWS and (bad := next((v for v in values if type(v) is not np.ndarray and (
            not isinstance(v, list) or not set(map(type, v)) <= {int, float})), None)) is not None:
        want = f"field {f.name} value must be a list of numbers"  # (else rows of numbers of unequal lengths)
    elif f.dtype == DataType.BOOL:
        bad = next(('null' if v is None else v for v in values if not _boolean(v)), None)
        want = f"field {f.name} value must be a boolean (true or false; \"true\", \"false\", 1 or 0 also read)"
    else:
        bad, want = None, f"field {f.name} has a value that is not a valid {kind}"
    actual = "" if bad is None else bad if isinstance(bad, str) else json.dumps(bad, default=str)
    return f"{want}: invalid parameter[expected={kind}][actual={actual[:100]}]"


def _column(f: FieldSchema, values: list, valid: np.ndarray | None, quoted_numbers: bool = True) -> np.ndarray:
    """One field's JSON values as the column ``field_data_from_columns`` takes (numpy's errors raised);
    ``quoted_numbers``: as ``rows_to_field_data``'s."""
    col: np.ndarray
    if not quoted_numbers and f.dtype in _NUMBERS and str in set(map(type, values)):
        raise ValueError(f.name)  # (numpy reads "1" as a number; Milvus 2.3.5's JSON import refuses it)
    if f.dtype in _INT_RANGE and not all(type(v) is int for v in values) and not all(map(_integer, values)):
        raise ValueError(f.name)  # (1.5 or true would be truncated to an integer by numpy)
    if f.dtype in _FLOATS and bool in set(map(type, values)):
        raise ValueError(f.name)  # (numpy reads true as 1.0; Milvus's REST refuses it)
    if f.dtype in _FLOAT_ROWS and not set(map(type, chain.from_iterable(
            v for v in values if type(v) is not np.ndarray))) <= {int, float}:  # (not a null's placeholder)
        raise ValueError(f.name)  # (numpy reads true or "1" in a vector as 1.0; Milvus's REST refuses them)
    if f.dtype == DataType.BINARY_VECTOR:
        col = np.asarray(values, np.uint8).reshape(len(values), -1)
    elif f.dtype == DataType.INT8_VECTOR:
        col = _int8_rows(values).reshape(len(values), -1)
    elif f.dtype == DataType.TIMESTAMPTZ:  # ISO 8601 strings as sent: the insert reads them in the
        col = np.empty(len(values), object)  # collection's zone; null rows the epoch as a placeholder
        present = (valid if valid is not None else np.ones(len(values), np.bool_)).tolist()
        col[:] = [str(v) if ok else timestamptz.EPOCH_TEXT for v, ok in zip(values, present)]
    elif f.dtype in (DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR):
        col = np.asarray(values, np.float32).reshape(len(values), -1)
        if f.dtype == DataType.FLOAT16_VECTOR:
            col = col.astype(np.float16)
        elif f.dtype == DataType.BFLOAT16_VECTOR:
            col = float32_to_bfloat16(col)
    elif f.dtype == DataType.SPARSE_FLOAT_VECTOR:  # {index: value} or {"indices": [..], "values": [..]}
        col = np.empty(len(values), object)
        col[:] = [v if isinstance(v, bytes) else _sparse_row(v) for v in values]  # (bytes: a null's placeholder)
    elif f.dtype == DataType.BOOL:  # (numpy reads any non-empty value, "x" or "false", as true)
        col = np.asarray(values if all(type(v) is bool for v in values) else [_bool(v) for v in values], np.bool_)
    elif f.dtype in _NUMPY:
        col = np.asarray(values, _NUMPY[f.dtype])
    else:  # VARCHAR, JSON, ARRAY
        col = np.empty(len(values), object)
        col[:] = values
    return col


# --- replies -------------------------------------------------------------------------------
def _rg_json(g) -> dict:
    """A ``milvus_pb2.ResourceGroup`` with the proto field names Milvus's REST reply uses."""
    c = g.config
    return {"name": g.name, "capacity": g.capacity, "num_available_node": g.num_available_node,
            "num_loaded_replica": dict(g.num_loaded_replica), "num_outgoing_node": dict(g.num_outgoing_node),
            "num_incoming_node": dict(g.num_incoming_node),
            "config": {"requests": {"node_num": c.requests.node_num}, "limits": {"node_num": c.limits.node_num},
                       "transfer_from": [{"resource_group": t.resource_group} for t in c.transfer_from],
                       "transfer_to": [{"resource_group": t.resource_group} for t in c.transfer_to],
                       "node_filter": {"node_labels": _kv_list(c.node_filter.node_labels)}},
            "nodes": [{"node_id": n.node_id, "address": n.address, "hostname": n.hostname} for n in g.nodes]}


def _column_values(fd: schema_pb2.FieldData, n: int, int64_str: bool = False) -> list:
    """A column's values as JSON values; ``int64_str``: INT64 values (alone or in arrays) as decimal
    strings, as Milvus writes them to a client that does not accept int64 (``Accept-Type-Allow-Int64``)."""
    if fd.WhichOneof("field") == "struct_arrays":  # an array-of-struct field: a list of objects per row
        subs = [(sub.field_name, _column_values(sub, n, int64_str)) for sub in fd.struct_arrays.fields]
        return [[{name: values[i][j] for name, values in subs} for j in range(len(subs[0][1][i]) if subs else 0)]
                for i in range(n)]
    if fd.HasField("vectors") and len(fd.valid_data) and fd.vectors.WhichOneof("data") != "vector_array":
        valid = list(fd.valid_data)  # a nullable vector (Milvus 3.0): the valid rows' vectors only
        compact = iter(_column_values(schema_pb2.FieldData(vectors=fd.vectors), sum(valid)))
        return [next(compact) if ok else None for ok in valid]
    if fd.HasField("vectors"):
        v = fd.vectors
        kind = v.WhichOneof("data")
        if kind == "float_vector":
            return _floats(np.asarray(v.float_vector.data, np.float32)).reshape(n, -1).tolist() if n else []
        if kind == "binary_vector":
            return np.frombuffer(v.binary_vector, np.uint8).reshape(n, -1).tolist() if n else []
        if kind == "int8_vector":
            return np.frombuffer(v.int8_vector, np.int8).reshape(n, -1).tolist() if n else []
        if kind == "vector_array":  # a struct's vector sub-field: each row its list of vectors
            cells = [schema_pb2.FieldData(vectors=cell) for cell in v.vector_array.data]
            return [_column_values(cell, _column_length(cell)) for cell in cells]
        if kind == "float16_vector":
            return _floats(np.frombuffer(v.float16_vector, np.float16)).reshape(n, -1).tolist() if n else []
        if kind == "bfloat16_vector":
            raw = np.frombuffer(v.bfloat16_vector, np.uint16).astype(np.uint32) << 16
            return _floats(raw.view(np.float32)).reshape(n, -1).tolist() if n else []
        if kind == "sparse_float_vector":  # each row {index: value}, as Milvus's REST API writes a sparse row
            return [_sparse_json(row) for row in v.sparse_float_vector.contents]
        return [None] * n
    s = fd.scalars
    kind = s.WhichOneof("data")
    if kind is None:
        return [None] * n
    data = getattr(s, kind).data
    if kind == "json_data":
        values = [json.loads(b) for b in data]
    elif kind == "float_data":
        values = _floats(np.asarray(data, np.float32)).tolist()
    elif kind == "array_data":
        values = [list(getattr(a, a.WhichOneof("data")).data) if a.WhichOneof("data") else [] for a in data]
        if int64_str and any(a.WhichOneof("data") == "long_data" for a in data):
            values = [[str(v) for v in a] for a in values]
    elif kind == "long_data" and int64_str:
        values = np.asarray(data, np.int64).astype(str).tolist()
    else:
        values = list(data)
    if len(fd.valid_data):
        values = [v if ok else None for v, ok in zip(values, fd.valid_data)]
    return values


def field_data_to_rows(fields_data, n: int | None = None, int64_str: bool = False) -> list[dict]:
    """Result columns as JSON rows; the dynamic field's keys become the rows' own (``int64_str``:
    ``_column_values``)."""
    columns = []
    for fd in fields_data:
        size = n if n is not None else _column_length(fd)
        columns.append((fd, _column_values(fd, size, int64_str)))
    count = n if n is not None else (min(len(v) for _, v in columns) if columns else 0)
    rows: list[dict] = [{} for _ in range(count)]
    for fd, values in columns:
        for row, value in zip(rows, values):
            if fd.is_dynamic and isinstance(value, dict):
                row.update(value)
            else:
                row[fd.field_name] = value
    return rows


def _sparse_json(row: bytes) -> dict[str, float]:
    """A sparse row's (uint32 index, float32 value) pairs as a JSON object, keys in index order."""
    pairs = np.frombuffer(row, np.dtype([("i", "<u4"), ("v", "<f4")]))
    return dict(zip(pairs["i"].astype(str).tolist(), _floats(pairs["v"]).tolist()))


def _floats(values: np.ndarray) -> np.ndarray:
    """float32 values as the float64 closest to their shortest decimal form (0.02, not 0.0199999995...),
    as Milvus's REST API writes them."""
    return values.astype(str).astype(np.float64)


def _column_length(fd: schema_pb2.FieldData) -> int:
    if fd.WhichOneof("field") == "struct_arrays":
        return _column_length(fd.struct_arrays.fields[0]) if fd.struct_arrays.fields else 0
    if fd.HasField("vectors") and len(fd.valid_data):  # a nullable vector: one entry per row
        return len(fd.valid_data)
    if fd.HasField("vectors"):
        v = fd.vectors
        kind = v.WhichOneof("data")
        if kind == "float_vector":
            return len(v.float_vector.data) // max(1, v.dim)
        if kind == "binary_vector":
            return len(v.binary_vector) * 8 // max(1, v.dim)
        if kind in ("float16_vector", "bfloat16_vector"):
            return len(getattr(v, kind)) // (2 * max(1, v.dim))
        if kind == "int8_vector":
            return len(v.int8_vector) // max(1, v.dim)
        if kind == "vector_array":
            return len(v.vector_array.data)
        if kind == "sparse_float_vector":
            return len(v.sparse_float_vector.contents)
        return 0
    kind = fd.scalars.WhichOneof("data")
    return len(getattr(fd.scalars, kind).data) if kind else 0


def _hits(r: _Request, results: schema_pb2.SearchResultData, schema: CollectionSchema) -> list[dict]:
    """entities/search's and hybrid_search's ``data``, with Milvus's ``cost`` (0) and ``topks`` (how many of
    the hits each query vector has, in turn) beside it; no hits at all: ``data`` [] and no topks, as Milvus
    answers a result of top-k 0."""
    rows = search_rows(results, schema.primary_field.name, int64_str=not r.allow_int64)
    r.top["cost"] = 0
    if rows:
        r.top["topks"] = list(results.topks)
    return rows


def search_rows(results: schema_pb2.SearchResultData, pk_name: str, int64_str: bool = False) -> list[dict]:
    """Hits of every query, in order, each with its primary key, ``distance`` and output fields (Milvus's
    REST API lists the hits of several query vectors one after the other); ``int64_str``: int64 keys and
    values as decimal strings (``_column_values``)."""
    ids: Any = results.ids.int_id.data if results.ids.HasField("int_id") else results.ids.str_id.data
    if int64_str and results.ids.HasField("int_id"):
        ids = np.asarray(ids, np.int64).astype(str).tolist()
    rows = field_data_to_rows(results.fields_data, len(ids), int64_str) if results.fields_data \
        else [{} for _ in ids]
    for row, pk, score in zip(rows, ids, _floats(np.asarray(results.scores, np.float32)).tolist()):
        row[pk_name] = pk
        row["distance"] = score
    return rows


# --- the OpenAPI description (docs/openapi/rest-v2.json, checked against this by tests/e2e/test_rest.py) ---
_S, _I, _B, _O, _A = "string", "integer", "boolean", "object", "array"
_COLL = [("collectionName", _S, True)]
_PART = _COLL + [("partitionName", _S, True)]
_PARTS = _COLL + [("partitionNames", _A, True)]
_NS = [("namespace", _S, False)]  # a collection with namespaces (docs/namespaces.md)
_READ = [("filter", _S, False), ("outputFields", _A, False), ("partitionNames", _A, False),
         ("consistencyLevel", _S, False)] + _NS
_SEARCH = [("data", _A, False), ("ids", _A, False), ("annsField", _S, False), ("limit", _I, False),
           ("offset", _I, False), ("searchParams", _O, False), ("groupingField", _S, False), ("groupSize", _I, False),
           ("strictGroupSize", _B, False), ("exprParams", _O, False), ("orderByFields", _A, False),
           ("functionScore", _O, False)]
_GRANT_V2 = [("roleName", _S, True), ("privilege", _S, True), ("collectionName", _S, False)]
_PG = [("privilegeGroupName", _S, True)]
_RG = [("name", _S, True)]
PARAMETERS: dict[str, list[tuple[str, str, bool]]] = {
    "collections/list": [], "collections/has": _COLL, "collections/describe": _COLL,
    "collections/get_stats": _COLL, "collections/get_load_state": _COLL + [("partitionNames", _A, False)],
    "collections/create": _COLL + [("dimension", _I, False), ("metricType", _S, False), ("idType", _S, False),
                                   ("autoID", _B, False), ("primaryFieldName", _S, False),
                                   ("vectorFieldName", _S, False), ("schema", _O, False),
                                   ("indexParams", _A, False), ("params", _O, False)],
    "collections/drop": _COLL, "collections/rename": _COLL + [("newCollectionName", _S, True),
                                                            ("newDbName", _S, False)],
    "collections/load": _COLL, "collections/release": _COLL,
    "collections/alter_properties": _COLL + [("properties", _O, False)],
    "collections/drop_properties": _COLL + [("propertyKeys", _A, False)],
    "collections/compact": _COLL + [("isClustering", _B, False)],
    "collections/get_compaction_state": [("jobID", _I, True)], "collections/flush": _COLL,
    "collections/fields/alter_properties": _COLL + [("fieldName", _S, True), ("fieldParams", _O, False)],
    "entities/insert": _COLL + [("data", _A, True), ("partitionName", _S, False)] + _NS,
    "entities/upsert": _COLL + [("data", _A, True), ("partitionName", _S, False), ("partialUpdate", _B, False),
                                ("fieldOps", _A, False)] + _NS,
    "entities/delete": _COLL + [("filter", _S, False), ("id", _A, False), ("partitionName", _S, False)] + _NS,
    "entities/get": _COLL + [("id", _A, True), ("outputFields", _A, False), ("partitionNames", _A, False)] + _NS,
    "entities/query": _COLL + _READ + [("limit", _I, False), ("offset", _I, False), ("exprParams", _O, False),
                                       ("groupByFields", _A, False), ("orderByFields", _A, False)],
    "entities/search": _COLL + _READ + _SEARCH,
    "entities/hybrid_search": _COLL + [("search", _A, True), ("rerank", _O, False), ("limit", _I, False),
                                       ("offset", _I, False), ("outputFields", _A, False),
                                       ("partitionNames", _A, False), ("consistencyLevel", _S, False),
                                       ("groupingField", _S, False), ("groupSize", _I, False),
                                       ("strictGroupSize", _B, False), ("functionScore", _O, False)] + _NS,
    "partitions/list": _COLL, "partitions/has": _PART, "partitions/get_stats": _PART, "partitions/create": _PART,
    "partitions/drop": _PART, "partitions/load": _PARTS, "partitions/release": _PARTS,
    "indexes/list": _COLL, "indexes/describe": _COLL + [("indexName", _S, True)],
    "indexes/create": _COLL + [("indexParams", _A, True)], "indexes/drop": _COLL + [("indexName", _S, True)],
    "indexes/alter_properties": _COLL + [("indexName", _S, True), ("properties", _O, False)],
    "indexes/drop_properties": _COLL + [("indexName", _S, True), ("propertyKeys", _A, False)],
    "aliases/list": [("collectionName", _S, False)], "aliases/describe": [("aliasName", _S, True)],
    "aliases/create": _COLL + [("aliasName", _S, True)], "aliases/drop": [("aliasName", _S, True)],
    "aliases/alter": _COLL + [("aliasName", _S, True)],
    "databases/list": [], "databases/describe": [], "databases/create": [("properties", _O, False)],
    "databases/drop": [], "databases/alter": [("properties", _O, False)],
    "databases/alter_properties": [("properties", _O, False)],
    "databases/drop_properties": [("propertyKeys", _A, False)],
    "users/list": [], "users/describe": [("userName", _S, True)],
    "users/create": [("userName", _S, True), ("password", _S, True)],
    "users/update_password": [("userName", _S, True), ("password", _S, True), ("newPassword", _S, True)],
    "users/drop": [("userName", _S, True)], "users/grant_role": [("userName", _S, True), ("roleName", _S, True)],
    "users/revoke_role": [("userName", _S, True), ("roleName", _S, True)],
    "roles/list": [], "roles/describe": [("roleName", _S, True)], "roles/create": [("roleName", _S, True)],
    "roles/drop": [("roleName", _S, True)],
    "roles/grant_privilege": [("roleName", _S, True), ("objectType", _S, True), ("objectName", _S, True),
                              ("privilege", _S, True)],
    "roles/revoke_privilege": [("roleName", _S, True), ("objectType", _S, True), ("objectName", _S, True),
                               ("privilege", _S, True)],
    "roles/grant_privilege_v2": _GRANT_V2, "roles/revoke_privilege_v2": _GRANT_V2,
    "privilege_groups/create": _PG, "privilege_groups/drop": _PG, "privilege_groups/list": [],
    "privilege_groups/add_privileges_to_group": _PG + [("privileges", _A, False)],
    "privilege_groups/remove_privileges_from_group": _PG + [("privileges", _A, False)],
    "resource_groups/create": _RG + [("config", _O, False)], "resource_groups/drop": _RG,
    "resource_groups/alter": [("resource_groups", _O, True)], "resource_groups/describe": _RG,
    "resource_groups/list": [],
    "resource_groups/transfer_replica": [("sourceRgName", _S, True), ("targetRgName", _S, True),
                                         ("collectionName", _S, True), ("replicaNum", _I, True)],
    "jobs/import/create": _COLL + [("files", _A, True), ("partitionName", _S, False), ("options", _O, False)],
    "jobs/import/list": [("collectionName", _S, False)], "jobs/import/get_progress": [("jobId", _S, True)],
    "jobs/import/describe": [("jobId", _S, True)],
    **rest_more.PARAMETERS,
}


def openapi() -> dict:
    """The OpenAPI 3 description of every endpoint: request bodies and the common reply."""
    reply = {"type": "object", "required": ["code"], "properties": {
        "code": {"type": "integer", "description": "0, or the Milvus error code"},
        "message": {"type": "string", "description": "what went wrong (errors only)"},
        "data": {"description": "the endpoint's answer (success only)"}}}
    paths = {}
    for route in (f"{c}/{a}" for c, actions in ENDPOINTS.items() for a in actions):
        fields = [("dbName", _S, route.startswith("databases/") and not route.endswith("/list"))]
        fields += PARAMETERS[route]
        body = {"type": "object", "properties": {name: {"type": t} for name, t, _ in fields}}
        required = [name for name, _, req in fields if req]
        if required:
            body["required"] = required
        paths[f"{PREFIX}{route}"] = {"post": {
            "operationId": route.replace("/", "_"), "tags": [route.split("/")[0]],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "the answer, or a Milvus error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Reply"}}}},
                "401": {"description": "no or a wrong credential (code 1800)"},
                "403": {"description": "the user lacks the privilege"}}}}
    return {"openapi": "3.0.3",
            "info": {"title": "vecdb: Milvus RESTful API v2", "version": "2.5",
                     "description": "Milvus's RESTful API v2 on vecdb's HTTP port (docs/rest.md)."},
            "components": {"schemas": {"Reply": reply}, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "<user>:<password>"},
                "basic": {"type": "http", "scheme": "basic"}}},
            "security": [{"bearer": []}, {"basic": []}], "paths": paths}


if __name__ == "__main__":  # python -m vecdb.proxy.rest > docs/openapi/rest-v2.json
    print(json.dumps(openapi(), indent=1))

"""Milvus's newer RESTful API v2 endpoints (Milvus 2.6 / 3.0's ``handler_v2.go`` route list) that vecdb's gRPC
side serves: entities/advanced_search (hybrid_search's older name), collections truncate / refresh_load /
add_function / alter_function / drop_function /
add_function_field / drop_function_field, collections/fields add / drop, collections/struct_fields/add,
roles/alter, snapshots (create, drop, list, describe, restore, pin, unpin) and their restore jobs
(jobs/snapshot describe / list), external collection refresh jobs (jobs/external_collection refresh /
describe / list), file_resources (add, remove, list) and common/run_analyzer.

A mixin of ``vecdb.proxy.rest.RestApi``: each handler builds the request a gRPC client would send and calls
the same RPC through ``r.call`` (so the same authentication, privilege check, answers and errors), with
Milvus's REST request fields and reply shapes. Not served because vecdb's gRPC side answers UNIMPLEMENTED
or Milvus has no MilvusService RPC for them: jobs/import commit / abort (DataCoord-internal),
jobs/snapshot restore_external / export / export/describe, segments/describe, quotacenter/describe.
"""

from __future__ import annotations

import json
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vecdb.proxy import rest_structs

# Milvus's REST error codes (merr): a missing parameter, an invalid one
MISSING_PARAMETER, INVALID_PARAMETER = 1802, 1100

_RESTORE_STATES = {milvus_pb2.RestoreSnapshotNone: "RestoreSnapshotNone",
                   milvus_pb2.RestoreSnapshotPending: "RestoreSnapshotPending",
                   milvus_pb2.RestoreSnapshotExecuting: "RestoreSnapshotExecuting",
                   milvus_pb2.RestoreSnapshotCompleted: "RestoreSnapshotCompleted",
                   milvus_pb2.RestoreSnapshotFailed: "RestoreSnapshotFailed"}


def _rest():
    from vecdb.proxy import rest  # (rest imports this module: resolved at call time)

    return rest


def _missing(key: str):
    return _rest().RestError(MISSING_PARAMETER, f"missing required parameters, error: {key}")


def _invalid(message: str):
    return _rest().RestError(INVALID_PARAMETER, message)


def _text(req: dict, key: str) -> str:
    return _rest()._text(req, key)


def _name(req: dict) -> str:
    return _rest()._name(req)


def _int(req: dict, key: str, required: bool = False, minimum: int | None = None) -> int:
    """An integer parameter (Milvus's int64 fields also take a decimal string, as its JSON decoder does)."""
    value = req.get(key)
    if value is None:
        if required:
            raise _missing(key)
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _invalid(f"invalid parameter[expected=int64 {key}][actual={value!r}]")
    try:
        number = int(value)
    except ValueError:
        raise _invalid(f"invalid parameter[expected=int64 {key}][actual={value!r}]") from None
    if minimum is not None and number < minimum:
        raise _missing(f"{key} must be at least {minimum}")  # (Milvus: a binding 'gte' failure, 1802)
    return number


def _int64(value: int, r) -> int | str:
    """An int64 of a reply as Milvus's handler writes it (formatRESTInt64): a JSON number, or a decimal
    string under ``Accept-Type-Allow-Int64: false``."""
    return value if r.allow_int64 else str(value)


def _object(req: dict, key: str) -> dict:
    value = req.get(key)
    if not isinstance(value, dict):
        raise _missing(key)
    return value


def _function(spec: dict) -> schema_pb2.FunctionSchema:
    """A REST ``FunctionSchema`` (name, type, inputFieldNames, outputFieldNames, params) as the proto."""
    for key in ("name", "type"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise _missing(f"function.{key}")
    if spec.get("inputFieldNames") is None or spec.get("outputFieldNames") is None:
        raise _missing("function.inputFieldNames and function.outputFieldNames")
    pb, _ = _rest()._collection_schema("_", {"schema": {"fields": [], "functions": [spec]}})
    return pb.functions[0]


def _field(spec: Any) -> schema_pb2.FieldSchema:
    """A REST ``FieldSchema`` (fieldName, dataType, elementDataType, elementTypeParams, nullable, defaultValue,
    ...) as the proto, as collections/create reads one."""
    if not isinstance(spec, dict):
        raise _missing("schema")
    if not isinstance(spec.get("fieldName"), str) or not spec["fieldName"]:
        raise _missing("schema.fieldName")
    dtype = spec.get("dataType")
    if not isinstance(dtype, str) or not dtype:
        raise _missing("schema.dataType")
    if dtype not in schema_pb2.DataType.keys():
        raise _invalid(f"data type {dtype} is invalid(case sensitive)")
    element = spec.get("elementDataType")
    if element and element not in schema_pb2.DataType.keys():
        raise _invalid(f"element data type {element} is invalid(case sensitive)")
    params = {**(spec.get("typeParams") or {}), **(spec.get("elementTypeParams") or {})}
    pb, _ = _rest()._collection_schema("_", {"schema": {"fields": [{**spec, "elementTypeParams": params}]}})
    return pb.fields[0]


def _is_struct(spec: dict) -> bool:
    return spec.get("dataType") == "ArrayOfStruct" or (spec.get("dataType") == "Array"
                                                        and spec.get("elementDataType") == "Struct")


def _restore_job(info: milvus_pb2.RestoreSnapshotInfo) -> dict:
    return {"jobId": info.job_id, "snapshotName": info.snapshot_name, "dbName": info.db_name,
            "collectionName": info.collection_name, "state": _RESTORE_STATES.get(info.state, str(info.state)),
            "progress": info.progress, "reason": info.reason, "startTime": info.start_time,
            "timeCost": info.time_cost}


def _refresh_job(info: milvus_pb2.RefreshExternalCollectionJobInfo) -> dict:
    out = {"jobId": info.job_id, "collectionName": info.collection_name,
           "state": milvus_pb2.RefreshExternalCollectionState.Name(info.state), "progress": info.progress,
           "externalSource": info.external_source, "externalSpec": info.external_spec,
           "startTime": info.start_time, "endTime": info.end_time}
    if info.reason:
        out["reason"] = info.reason
    return out


def _param_text(value) -> str:
    """A parameter value as the string a function's params carry (JSON for objects, lists and booleans)."""
    return value if isinstance(value, str) else json.dumps(value)


def _function_score(spec) -> schema_pb2.FunctionScore:
    """``functionScore`` {functions [{name, type Rerank, inputFieldNames, params}], params} as the proto
    (rerankers: decay, boost, ... as pymilvus's ``ranker=Function(...)`` sends them)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("functions"), list):
        raise _invalid("functionScore must be an object with a list of functions")
    out = schema_pb2.FunctionScore(params=[common_pb2.KeyValuePair(key=str(k), value=_param_text(v))
                                           for k, v in (spec.get("params") or {}).items()])
    for fn in spec["functions"]:
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _invalid("functionScore.functions[].name is required")
        kind = fn.get("type", "")
        if kind not in schema_pb2.FunctionType.keys():
            raise _invalid(f"unknown function type {kind!r} in functionScore")
        out.functions.add(name=fn["name"], type=schema_pb2.FunctionType.Value(kind),
                          description=str(fn.get("description") or ""),
                          input_field_names=[str(f) for f in fn.get("inputFieldNames") or []],
                          output_field_names=[str(f) for f in fn.get("outputFieldNames") or []],
                          params=[common_pb2.KeyValuePair(key=str(k), value=_param_text(v))
                                  for k, v in (fn.get("params") or {}).items()])
    return out


def describe_extras(d: milvus_pb2.DescribeCollectionResponse) -> dict:
    """What Milvus 3.0's collections/describe adds: ``structFields`` (each struct array field: name, id,
    description, nullable, type ArrayOfStruct, params, fields [name, id, type, elementType, params]) and the
    schema's ``externalSource`` / ``externalSpec`` (empty for a collection that is not external)."""
    structs = []
    for sf in d.schema.struct_array_fields:
        subs = []
        for sub in sf.fields:
            short = sub.name[len(sf.name) + 1:-1] if sub.name.startswith(f"{sf.name}[") else sub.name
            subs.append({"name": short, "id": sub.fieldID, "description": sub.description,
                         "type": schema_pb2.DataType.Name(sub.data_type),
                         "elementType": schema_pb2.DataType.Name(sub.element_type),
                         "params": [{"key": kv.key, "value": kv.value} for kv in sub.type_params]})
        entry = {"name": sf.name, "id": sf.fieldID, "description": sf.description, "nullable": sf.nullable,
                 "type": "ArrayOfStruct", "fields": subs}
        if sf.type_params:
            entry["params"] = [{"key": kv.key, "value": kv.value} for kv in sf.type_params]
        structs.append(entry)
    return {"structFields": structs, "externalSource": d.schema.external_source,
            "externalSpec": d.schema.external_spec}


def search_extras(request, req: dict):
    """``request`` (a SearchRequest or HybridSearchRequest that entities/search or hybrid_search built) with
    Milvus 2.6's ``functionScore``; a hybrid search's ``searchAggregation`` and ``functionChains`` refused as
    Milvus's REST refuses them (1100), and a search's as not served over REST by vecdb yet."""
    hybrid = isinstance(request, milvus_pb2.HybridSearchRequest)
    aggregation = req.get("searchAggregation") is not None or (
        hybrid and any(isinstance(s, dict) and s.get("searchAggregation") is not None for s in req["search"]))
    if aggregation:
        raise _invalid("searchAggregation is not supported for hybrid search" if hybrid else
                       "searchAggregation is not served over REST by vecdb yet (the gRPC API serves it)")
    if req.get("functionChains"):
        raise _invalid("functionChains is not supported for hybrid search yet" if hybrid else
                       "functionChains is not served over REST by vecdb yet (the gRPC API serves it)")
    score = req.get("functionScore")
    if score and (score.get("functions") if isinstance(score, dict) else True):
        request.function_score.CopyFrom(_function_score(score))
    return request


class RestMore:
    """The newer endpoints' handlers (``_<category>_<action>``), mixed into ``RestApi``."""

    service: Any  # (RestApi's: the Milvus service)
    _entities_hybrid_search: Any  # (RestApi's)

    # --- entities ----------------------------------------------------------------------------
    def _entities_advanced_search(self, req, r):
        """Milvus's older name of entities/hybrid_search (kept by its route list for compatibility)."""
        return self._entities_hybrid_search(req, r)

    # --- collections -----------------------------------------------------------------------
    def _collections_truncate(self, req, r):
        r.call("TruncateCollection", milvus_pb2.TruncateCollectionRequest(db_name=r.db, collection_name=_name(req)))
        return {}

    def _collections_refresh_load(self, req, r):
        """A load that also loads the segments added since (Milvus's ``refresh``: after an import or restore)."""
        r.call("LoadCollection", milvus_pb2.LoadCollectionRequest(db_name=r.db, collection_name=_name(req),
                                                                  refresh=True))
        return {}

    def _collections_add_function(self, req, r):
        r.call("AddCollectionFunction", milvus_pb2.AddCollectionFunctionRequest(
            db_name=r.db, collection_name=_name(req), functionSchema=_function(_object(req, "function"))))
        return {}

    def _collections_alter_function(self, req, r):
        name = _name(req)
        function_name = _text(req, "functionName")
        r.call("AlterCollectionFunction", milvus_pb2.AlterCollectionFunctionRequest(
            db_name=r.db, collection_name=name, function_name=function_name,
            functionSchema=_function(_object(req, "function"))))
        return {}

    def _collections_drop_function(self, req, r):
        """The deprecated detach endpoint (its key is ``FunctionName``; Go's decoder takes any case)."""
        name = _name(req)
        function_name = req.get("functionName") or req.get("FunctionName")
        if not isinstance(function_name, str) or not function_name:
            raise _missing("FunctionName")
        r.call("DropCollectionFunction", milvus_pb2.DropCollectionFunctionRequest(
            db_name=r.db, collection_name=name, function_name=function_name))
        return {}

    def _collections_add_function_field(self, req, r):
        """A function with its output field (and that field's index) in one AlterCollectionSchema."""
        name = _name(req)
        function = _function(_object(req, "function"))
        field = _field(_object(req, "outputField"))
        info = milvus_pb2.AlterCollectionSchemaRequest.FieldInfo(field_schema=field)
        index = req.get("indexParams")
        if index is not None:
            if not isinstance(index, dict):
                raise _missing("indexParams (an object)")
            if index.get("fieldName") != field.name:
                raise _invalid(f"indexParams.fieldName {index.get('fieldName')!r} must match "
                               f"outputField.fieldName {field.name!r}")
            info.index_name = str(index.get("indexName") or "")
            info.extra_params.extend(_rest()._index_request(r.db, name, index).extra_params)
        self._alter_schema(r, name, milvus_pb2.AlterCollectionSchemaRequest.Action(
            add_request=milvus_pb2.AlterCollectionSchemaRequest.AddRequest(field_infos=[info],
                                                                           func_schema=[function])))
        return {}

    def _collections_drop_function_field(self, req, r):
        name = _name(req)
        function_name = _text(req, "functionName")
        self._alter_schema(r, name, milvus_pb2.AlterCollectionSchemaRequest.Action(
            drop_request=milvus_pb2.AlterCollectionSchemaRequest.DropRequest(
                function_name=function_name, drop_function_output_fields=True)))
        return {}

    def _collections_fields_add(self, req, r):
        name = _name(req)
        spec = req.get("schema")
        if isinstance(spec, dict) and _is_struct(spec):
            raise _invalid("StructArray field must be added through /v2/vectordb/collections/struct_fields/add")
        field = _field(spec)
        self._alter_schema(r, name, milvus_pb2.AlterCollectionSchemaRequest.Action(
            add_request=milvus_pb2.AlterCollectionSchemaRequest.AddRequest(
                field_infos=[milvus_pb2.AlterCollectionSchemaRequest.FieldInfo(field_schema=field)])))
        return {}

    def _collections_fields_drop(self, req, r):
        name = _name(req)
        field_name, field_id = req.get("fieldName") or "", req.get("fieldId")
        if bool(field_name) == (field_id is not None):
            raise _invalid("exactly one of fieldName or fieldId is required")
        drop = milvus_pb2.AlterCollectionSchemaRequest.DropRequest()
        if field_name:
            if not isinstance(field_name, str):
                raise _invalid("fieldName must be a string")
            drop.field_name = field_name
        else:
            number = _int(req, "fieldId")
            if number <= 0:
                raise _invalid("fieldId must be greater than 0")
            drop.field_id = number
        self._alter_schema(r, name, milvus_pb2.AlterCollectionSchemaRequest.Action(drop_request=drop))
        return {}

    def _collections_struct_fields_add(self, req, r):
        name = _name(req)
        spec = req.get("schema")
        if not isinstance(spec, dict):
            raise _missing("schema")
        if not _is_struct(spec):
            raise _invalid(f"StructArray field must use ArrayOfStruct or Array with Struct element, got dataType "
                           f"{spec.get('dataType')} and elementDataType {spec.get('elementDataType')}")
        if not spec.get("fields"):
            raise _invalid(f"struct field {spec.get('fieldName')} must contain at least one sub-field")
        params = {**(spec.get("elementTypeParams") or {}), **(spec.get("typeParams") or {})}
        holder = schema_pb2.CollectionSchema()
        rest_structs.add_struct_fields(holder, {"structFields": [
            {"fieldName": spec.get("fieldName"), "description": spec.get("description", ""),
             "elementTypeParams": params, "fields": spec["fields"]}]})
        struct = holder.struct_array_fields[0]
        struct.nullable = bool(spec.get("nullable", False))
        for sub in struct.fields:
            if sub.data_type not in (schema_pb2.Array, schema_pb2.ArrayOfVector):
                raise _invalid(f"sub-field {sub.name} of struct {struct.name} must be Array or ArrayOfVector")
            if sub.nullable:
                raise _invalid(f"sub-field {sub.name} of struct {struct.name} cannot be nullable")
            if sub.is_primary_key or sub.is_partition_key or sub.is_clustering_key:
                raise _invalid(f"sub-field {sub.name} of struct {struct.name} cannot be primary / partition / "
                               "clustering key")
        r.call("AddCollectionStructField", milvus_pb2.AddCollectionStructFieldRequest(
            db_name=r.db, collection_name=name, struct_array_field_schema=struct))
        return {}

    def _alter_schema(self, r, name: str, action) -> None:
        """AlterCollectionSchema, whose reply carries its status as ``alter_status`` (no ``status``)."""
        request = milvus_pb2.AlterCollectionSchemaRequest(db_name=r.db, collection_name=name, action=action)
        r.authorize("AlterCollectionSchema", request)
        reply = self.service.AlterCollectionSchema(request, r.call_context)
        if reply.alter_status.code:
            raise _rest().RestError(reply.alter_status.code, reply.alter_status.reason)

    # --- roles -------------------------------------------------------------------------------
    def _roles_alter(self, req, r):
        r.call("AlterRole", milvus_pb2.AlterRoleRequest(role_name=_text(req, "roleName"),
                                                        description=str(req.get("description") or "")))
        return {}

    # --- snapshots -----------------------------------------------------------------------------
    def _snapshots_create(self, req, r):
        name, snapshot = _name(req), _text(req, "snapshotName")
        r.call("CreateSnapshot", milvus_pb2.CreateSnapshotRequest(
            db_name=r.db, collection_name=name, name=snapshot, description=str(req.get("description") or ""),
            compaction_protection_seconds=_int(req, "compactionProtectionSeconds", minimum=0)))
        return {}

    def _snapshots_drop(self, req, r):
        name, snapshot = _name(req), _text(req, "snapshotName")
        r.call("DropSnapshot", milvus_pb2.DropSnapshotRequest(db_name=r.db, collection_name=name, name=snapshot))
        return {}

    def _snapshots_list(self, req, r):
        reply = r.call("ListSnapshots", milvus_pb2.ListSnapshotsRequest(db_name=r.db, collection_name=_name(req)))
        return list(reply.snapshots)

    def _snapshots_describe(self, req, r):
        name, snapshot = _name(req), _text(req, "snapshotName")
        d = r.call("DescribeSnapshot", milvus_pb2.DescribeSnapshotRequest(db_name=r.db, collection_name=name,
                                                                          name=snapshot))
        return {"snapshotName": d.name, "description": d.description, "collectionName": d.collection_name,
                "partitionNames": list(d.partition_names), "createTs": _int64(d.create_ts, r),
                "s3Location": d.s3_location, "skipIndex": False}

    def _snapshots_restore(self, req, r):
        """Restore ``snapshotName`` of ``sourceCollectionName`` (in ``sourceDbName``) into a new
        ``targetCollectionName`` (in ``targetDbName``, default the request's database)."""
        source = _text(req, "sourceCollectionName")
        target = _text(req, "targetCollectionName")
        snapshot = _text(req, "snapshotName")
        source_db = req.get("sourceDbName") or r.db
        reply = r.call("RestoreSnapshot", milvus_pb2.RestoreSnapshotRequest(
            name=snapshot, db_name=source_db, collection_name=source,
            target_db_name=req.get("targetDbName") or r.db, target_collection_name=target))
        return {"jobId": _int64(reply.job_id, r)}

    def _snapshots_pin(self, req, r):
        name, snapshot = _name(req), _text(req, "snapshotName")
        reply = r.call("PinSnapshotData", milvus_pb2.PinSnapshotDataRequest(
            db_name=r.db, collection_name=name, name=snapshot, ttl_seconds=_int(req, "ttlSeconds", minimum=0)))
        return {"pinId": _int64(reply.pin_id, r)}

    def _snapshots_unpin(self, req, r):
        raw = req.get("pinId")
        if raw is None or raw == "":
            raise _missing("pinId")
        text = str(raw)
        if isinstance(raw, bool) or not text.isdigit() or int(text) <= 0:
            raise _invalid(f"pinId must be a positive decimal int64, got {text!r}")
        r.call("UnpinSnapshotData", milvus_pb2.UnpinSnapshotDataRequest(pin_id=int(text)))
        return {}

    # --- jobs: snapshot restores and external collection refreshes -------------------------------
    def _jobs_snapshot_describe(self, req, r):
        raw = req.get("jobId")
        if raw is None or raw == "":
            raise _missing("jobId")
        try:
            job_id = int(str(raw))
        except ValueError:
            raise _invalid(f"invalid parameter[expected=int64 jobId][actual={raw}]") from None
        reply = r.call("GetRestoreSnapshotState", milvus_pb2.GetRestoreSnapshotStateRequest(job_id=job_id))
        return _restore_job(reply.info)

    def _jobs_snapshot_list(self, req, r):
        reply = r.call("ListRestoreSnapshotJobs", milvus_pb2.ListRestoreSnapshotJobsRequest(
            db_name=r.db, collection_name=str(req.get("collectionName") or "")))
        return {"records": [_restore_job(j) for j in reply.jobs]}

    def _jobs_external_collection_refresh(self, req, r):
        reply = r.call("RefreshExternalCollection", milvus_pb2.RefreshExternalCollectionRequest(
            db_name=r.db, collection_name=_name(req), external_source=str(req.get("externalSource") or ""),
            external_spec=str(req.get("externalSpec") or "")))
        return {"jobId": reply.job_id}

    def _jobs_external_collection_describe(self, req, r):
        reply = r.call("GetRefreshExternalCollectionProgress",
                       milvus_pb2.GetRefreshExternalCollectionProgressRequest(job_id=_int(req, "jobId", True)))
        return _refresh_job(reply.job_info)

    def _jobs_external_collection_list(self, req, r):
        reply = r.call("ListRefreshExternalCollectionJobs", milvus_pb2.ListRefreshExternalCollectionJobsRequest(
            db_name=r.db, collection_name=str(req.get("collectionName") or "")))
        return {"records": [_refresh_job(j) for j in reply.jobs]}

    # --- file resources --------------------------------------------------------------------------
    def _file_resources_add(self, req, r):
        r.call("AddFileResource", milvus_pb2.AddFileResourceRequest(name=_text(req, "name"),
                                                                    path=_text(req, "path")))
        return {}

    def _file_resources_remove(self, req, r):
        r.call("RemoveFileResource", milvus_pb2.RemoveFileResourceRequest(name=_text(req, "name")))
        return {}

    def _file_resources_list(self, req, r):
        reply = r.call("ListFileResources", milvus_pb2.ListFileResourcesRequest())
        return [{"id": res.id, "name": res.name, "path": res.path} for res in reply.resources]

    # --- common ----------------------------------------------------------------------------------
    def _common_run_analyzer(self, req, r):
        """The tokens of each of ``text`` (``withDetail``: offsets and positions; ``withHash``: hashes)."""
        texts = req.get("text")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise _missing("text (a list of strings)")
        names = req.get("analyzerNames") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _invalid("analyzerNames must be a list of strings")
        params = req.get("analyzerParams") or ""
        if isinstance(params, dict):  # (Milvus takes a JSON string; an object is the same parameters)
            import json

            params = json.dumps(params)
        detail, with_hash = bool(req.get("withDetail")), bool(req.get("withHash"))
        reply = r.call("RunAnalyzer", milvus_pb2.RunAnalyzerRequest(
            db_name=r.db, analyzer_params=str(params), placeholder=[t.encode() for t in texts],
            with_detail=detail, with_hash=with_hash, collection_name=str(req.get("collectionName") or ""),
            field_name=str(req.get("fieldName") or ""), analyzer_names=names))
        results = []
        for result in reply.results:
            tokens = []
            for tok in result.tokens:
                token: dict = {"token": tok.token}
                if detail:
                    token.update(startOffset=tok.start_offset, endOffset=tok.end_offset, position=tok.position,
                                 positionLength=tok.position_length)
                if with_hash:
                    token["hash"] = tok.hash
                tokens.append(token)
            results.append({"tokens": tokens})
        return {"results": results}


ENDPOINTS = {
    "entities": ("advanced_search",),
    "collections": ("truncate", "refresh_load", "add_function", "alter_function", "drop_function",
                    "add_function_field", "drop_function_field"),
    "collections/fields": ("add", "drop"),
    "collections/struct_fields": ("add",),
    "roles": ("alter",),
    "snapshots": ("create", "drop", "list", "describe", "restore", "pin", "unpin"),
    "jobs/snapshot": ("describe", "list"),
    "jobs/external_collection": ("refresh", "describe", "list"),
    "file_resources": ("add", "remove", "list"),
    "common": ("run_analyzer",),
}

# the OpenAPI description's request bodies (name, JSON type, required)
_S, _I, _B, _O, _A = "string", "integer", "boolean", "object", "array"
_COLL = [("collectionName", _S, True)]
_SNAP = _COLL + [("snapshotName", _S, True)]
_FN = [("function", _O, True)]
PARAMETERS: dict[str, list[tuple[str, str, bool]]] = {
    "entities/advanced_search": _COLL + [("search", _A, True), ("rerank", _O, False), ("limit", _I, False),
                                         ("offset", _I, False), ("outputFields", _A, False),
                                         ("partitionNames", _A, False), ("consistencyLevel", _S, False),
                                         ("groupingField", _S, False), ("groupSize", _I, False),
                                         ("strictGroupSize", _B, False), ("functionScore", _O, False),
                                         ("namespace", _S, False)],
    "collections/truncate": _COLL, "collections/refresh_load": _COLL,
    "collections/add_function": _COLL + _FN,
    "collections/alter_function": _COLL + [("functionName", _S, True)] + _FN,
    "collections/drop_function": _COLL + [("FunctionName", _S, True)],
    "collections/add_function_field": _COLL + _FN + [("outputField", _O, True), ("indexParams", _O, False)],
    "collections/drop_function_field": _COLL + [("functionName", _S, True)],
    "collections/fields/add": _COLL + [("schema", _O, True)],
    "collections/fields/drop": _COLL + [("fieldName", _S, False), ("fieldId", _I, False)],
    "collections/struct_fields/add": _COLL + [("schema", _O, True)],
    "roles/alter": [("roleName", _S, True), ("description", _S, False)],
    "snapshots/create": _SNAP + [("description", _S, False), ("compactionProtectionSeconds", _I, False),
                                 ("skipIndex", _B, False)],
    "snapshots/drop": _SNAP, "snapshots/list": _COLL, "snapshots/describe": _SNAP,
    "snapshots/restore": [("sourceDbName", _S, False), ("sourceCollectionName", _S, True),
                          ("targetDbName", _S, False), ("targetCollectionName", _S, True),
                          ("snapshotName", _S, True), ("skipIndex", _B, False)],
    "snapshots/pin": _SNAP + [("ttlSeconds", _I, False)], "snapshots/unpin": [("pinId", _S, True)],
    "jobs/snapshot/describe": [("jobId", _S, True)], "jobs/snapshot/list": [("collectionName", _S, False)],
    "jobs/external_collection/refresh": _COLL + [("externalSource", _S, False), ("externalSpec", _S, False)],
    "jobs/external_collection/describe": [("jobId", _I, True)],
    "jobs/external_collection/list": [("collectionName", _S, False)],
    "file_resources/add": [("name", _S, True), ("path", _S, True)],
    "file_resources/remove": [("name", _S, True)], "file_resources/list": [],
    "common/run_analyzer": [("text", _A, True), ("analyzerParams", _S, False), ("withDetail", _B, False),
                            ("withHash", _B, False), ("collectionName", _S, False), ("fieldName", _S, False),
                            ("analyzerNames", _A, False)],
}

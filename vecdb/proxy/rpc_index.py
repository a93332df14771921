"""RPCs: indexes, load and release.

The handlers parse and validate (index parameters against the field); the catalog's changes are
the coord's (``self.ddl``, ``vecdb.coord.ddl``): the index's id and name rules, the load state and
the replicas' resource groups. What the nodes do follows here: index builds, waiting until the
query nodes serve a load (a cluster's coord places the replicas from the catalog), releases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb import element_search, emb_list, errors
from vecdb.catalog_model import INDEX_PROPERTIES, IndexInfo
from vecdb.coord.ddl import matching_indexes
from vecdb.coord.resource_groups import validate_name as validate_resource_group_name
from vecdb.coord.snapshots import refuse_while_restoring
from vecdb.index import validate_index_params
from vecdb.index.params import AUTOINDEX, index_spec
from vecdb.index.scalar import validate_scalar_index
from vecdb.proxy import status
from vecdb.proxy.base import kv_dict, kv_pairs, parse_json_param, rpc
from vecdb.proxy.rpc_resource_groups import ResourceGroupRpcs
from vecdb.request_db import db_of
from vecdb.schema import validate_collection_name


def _split_index_params(pairs) -> tuple[str, str, dict]:
    extra = kv_dict(pairs)
    index_type = extra.pop("index_type", "") or "AUTOINDEX"
    metric = extra.pop("metric_type", "")
    params = parse_json_param(extra.pop("params", ""), "index params")
    for k, v in extra.items():  # newer clients flatten params into top-level pairs
        try:
            params.setdefault(k, json.loads(v))
        except (json.JSONDecodeError, RecursionError):  # not JSON (or absurdly nested): the text itself
            params.setdefault(k, v)
    return index_type.upper() if index_type.upper() != "TRIE" else "Trie", metric.upper(), params


def refuse_metric_case(sent: str, supported) -> None:
    """Milvus takes an index's metric only by its upper-case name: its index checkers compare the
    ``metric_type`` as sent (``indexparamcheck.CheckStrByValues``, 2.3 to the newest), so ``"l2"`` is
    refused at create_index (Milvus 2.3.5, run: 65535 "metric type not found or not supported,
    supported: [L2 IP COSINE]"; vecdb: 1100 with the name, as Milvus 2.4+). Indexes made from such a
    name before were recorded upper case and keep working (creating such an index again with the name it
    was made from still succeeds, changing nothing), and a search still reads its ``metric_type`` in any
    case (docs/limits.md, "Search and index parameters")."""
    if sent != sent.upper():
        raise errors.InvalidParameter(
            f"metric type {sent} not found or not supported, supported: [{' '.join(supported)}]")


def _param_text(value) -> str:
    """A build parameter as Milvus echoes it: the text the client sent (pymilvus: ``str`` of a number,
    JSON of anything else that is not a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value)


def vector_index_params(index_type: str, metric: str, field, params: dict) -> tuple[str, str, dict, dict[str, str]]:
    """A vector field's index as it is built and as the client asked for it: (index type, metric, build
    params, user params). AUTOINDEX is resolved to the index it builds (``vecdb.index.params``: HNSW
    M=18 efConstruction=240 on float vectors) and remembered as Milvus's UserIndexParams,
    ``{"index_type": "AUTOINDEX", "metric_type": <the metric>}``, which DescribeIndex answers. On a dense
    or binary vector field AUTOINDEX takes no build parameter but the metric, as Milvus refuses them,
    index properties such as ``mmap.enabled`` included (Milvus counts them among the parameters; set them
    with alter_index_properties); a sparse field's AUTOINDEX keeps its drop ratio and BM25 parameters,
    listed with it. An index the client named has user params too (its type, the metric, each parameter
    given), so that a recorded index without them is one from before they were kept
    (``IndexInfo.same_as``)."""
    asked = (index_type or "").strip().upper() or AUTOINDEX
    if asked == AUTOINDEX and params and field.dtype.name != "SPARSE_FLOAT_VECTOR":
        raise errors.InvalidParameter(
            f"only metric type can be passed when use AutoIndex, got {', '.join(sorted(map(str, params)))}")
    built = validate_index_params(index_type, metric, field.dtype, field.dim, params)
    index_type = built.pop("index_type", index_type)
    metric = built.pop("metric_type", metric)
    user = {**{k: _param_text(v) for k, v in params.items()}, "index_type": asked, "metric_type": metric}
    return index_type, metric, built, user


def created_properties(index_type: str, params: dict) -> tuple[dict, dict[str, str]]:
    """The index properties (``INDEX_PROPERTIES``: ``mmap.enabled``) given among an explicit index's
    parameters, taken out of them: (build parameters, properties). Milvus 2.4+ keeps them with the index
    (task_index.go, ``common.MmapEnabledKey``), which maps its files as after alter_index_properties;
    here they are the index's properties, not build parameters. The value is checked as Milvus checks it
    (1100) and kept as the client's text, as Milvus echoes it (pymilvus 2.4+ sends ``True``). AUTOINDEX keeps
    them among its parameters, which it refuses (``vector_index_params``)."""
    if (index_type or "").strip().upper() in ("", AUTOINDEX) or not any(k in params for k in INDEX_PROPERTIES):
        return params, {}
    params = dict(params)
    props = {key: _param_text(params.pop(key)) for key in INDEX_PROPERTIES if key in params}
    for key, value in props.items():
        if value.strip().lower() not in ("true", "false"):
            raise errors.InvalidParameter(
                f"invalid mmap type params: invalid {key} value: {value}, expected: true, false")
    return params, props


def _described_params(idx: IndexInfo) -> list:
    """DescribeIndex's params the way Milvus 2.4+ answers for an index made by today's clients: its
    ``UserIndexParams``, one pair per key (``index_type``, ``metric_type``, then each build parameter
    such as ``M``, ``efConstruction``, ``nlist``), which pymilvus's describe_index lifts into top-level
    keys (``d["M"] == "16"``). The parameters are the validated ones, defaults included. An index the
    server chose (AUTOINDEX) is described as the client asked for it (``IndexInfo.user_params``), as
    Milvus describes it: ``index_type`` AUTOINDEX and the metric, not the HNSW built underneath; one the client
    named, by what is built (its user params are only what the client sent)."""
    pairs: dict[str, str] = dict(idx.user_params) if idx.auto else {}
    if not pairs:
        pairs["index_type"] = idx.index_type
        if idx.metric_type:
            pairs["metric_type"] = idx.metric_type
        for key, value in idx.params.items():
            pairs.setdefault(key, _param_text(value))
    for key, value in idx.properties.items():  # alter_index_properties (Milvus lists them with the params)
        pairs.setdefault(key, value)
    return kv_pairs(pairs)


def _index_properties(pairs, delete_keys) -> dict[str, str]:
    """The properties an AlterIndex sets, checked as Milvus checks them (1100)."""
    props = kv_dict(pairs)
    for key in [*props, *delete_keys]:
        if key not in INDEX_PROPERTIES:
            raise errors.InvalidParameter(f"{key} is not configable index param")
    for key, value in props.items():  # mmap.enabled
        if value.strip().lower() not in ("true", "false"):
            raise errors.InvalidParameter(f"invalid {key} value: {value}, expected true or false")
    return props


@dataclass(frozen=True)
class _Progress:
    """An index's build progress. Segments whose build failed (``failed``: vecdb.coord.index_builds)
    are searched exactly and make the index ``Failed``, with the first reason, as Milvus reports a
    failed build; they are neither indexed nor pending."""

    done: int
    total: int
    failed: list[dict]

    @property
    def pending(self) -> int:
        return max(self.total - self.done - sum(f["rows"] for f in self.failed), 0)

    @property
    def state(self) -> int:
        if self.failed:
            return common_pb2.Failed
        return common_pb2.Finished if self.done == self.total else common_pb2.InProgress

    @property
    def fail_reason(self) -> str:
        if not self.failed:
            return ""
        rows = sum(f["rows"] for f in self.failed)
        return (f"the index of {len(self.failed)} segment(s) ({rows} rows) could not be built, they are searched "
                f"exactly; segment {self.failed[0]['segment']}: {self.failed[0]['reason']}")


class IndexRpcs(ResourceGroupRpcs):
    @rpc()
    def CreateIndex(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        index_type, metric, params = _split_index_params(request.extra_params)
        field = info.schema.field(request.field_name)
        if field is None and "json_path" in params:  # a dynamic key's JSON path index (Milvus 2.5+): on $meta
            field = info.schema.dynamic_field
        if field is None:
            raise errors.FieldNotFound(f"cannot create index on non-exist field: {request.field_name}")
        user: dict[str, str] = {}
        props: dict[str, str] = {}
        if field.is_function_output and info.schema.minhash_function_of(field.name) is not None:
            metric = metric or "MHJACCARD"  # a MinHash function's output: searched with text, MHJACCARD only
            if metric != "MHJACCARD":
                raise errors.InvalidParameter(
                    f"only MHJACCARD metric type can be used to build index for the MinHash function output field "
                    f"{field.name}, got {metric}")
        elif field.is_function_output:  # a BM25 function's output: BM25 only
            metric = metric or "BM25"
            if metric != "BM25":
                raise errors.InvalidParameter(
                    f"only BM25 metric type can be used to build index for the BM25 function output field "
                    f"{field.name}, got {metric}")
        supported: tuple = ()  # the field's metrics, for a metric not named in capitals (refuse_metric_case)
        if field.dtype.name == "ARRAY_OF_VECTOR" and element_search.is_element_metric((metric or "").strip().upper()):
            # a plain metric on a struct's vector sub-field: element-level search (vecdb.element_search)
            index_type, metric, params = element_search.index_params(index_type, metric.strip().upper(), field, params)
            supported = element_search.METRICS
        elif field.dtype.name == "ARRAY_OF_VECTOR":  # a struct's vector sub-field: searched exactly (vecdb.emb_list)
            index_type, metric, params = emb_list.index_params(index_type, metric, field, params)
            supported = tuple(emb_list.METRICS)
        elif field.dtype.is_vector:
            params, props = created_properties(index_type, params)  # mmap.enabled: the index's, not the build's
            index_type, metric, params, user = vector_index_params(index_type, metric, field, params)
            supported = index_spec(index_type).metrics
            if metric == "BM25" and not field.is_function_output:
                raise errors.InvalidParameter(
                    f"BM25 metric type is only for the output field of a BM25 function, field {field.name} is not")
        else:  # the field types Milvus allows each scalar index on (vecdb.index.scalar)
            index_type = validate_scalar_index(index_type, field, params)
        existing = info.index_on(field.name, params)
        if existing is not None and existing.same_as(index_type, metric, params, user):
            return status.success()  # the same index again (the coord would say so too)
        if supported:  # (after the above: a setup script's create_index of an index made from "l2" still passes)
            refuse_metric_case(kv_dict(request.extra_params).get("metric_type", ""), supported)
        # the name rules and duplicates are the coord's (vecdb.coord.ddl.DdlManager.create_index)
        self.ddl.create_index(db, request.collection_name, field.name, request.index_name, index_type, metric, params,
                              user, props)
        info = self.r.catalog.get_by_id(info.id)
        self.r.querynode.refresh_info(info)
        self.r.querynode.schedule_indexes(info)
        if not self.r.querynode.is_loaded(info.id):
            self.indexer.schedule(info)
        return status.success()

    def _index_state(self, info, field_name: str) -> tuple[int, int]:
        """(indexed rows, total rows) over the persisted segments, as Milvus's datacoord counts them: the
        build records, or standalone the query node's view of a loaded collection (it builds those). A
        cluster's query nodes take a flush's or a compaction's segments over after the call returned (one
        in a hand-over on two nodes), so their view said 151 of 300 rows just after a flush, 249 for 200
        just after a compaction."""
        if not self.indexer.builds_loaded and self.r.querynode.is_loaded(info.id):
            return self.r.querynode.index_state(info.id, field_name)
        return self.indexer.state(info, field_name)

    def _progress(self, info, idx) -> _Progress:
        done, total = self._index_state(info, idx.field_name)
        return _Progress(done, total, self.indexer.failures(info, idx.index_id))

    def _indexes(self, info, index_name: str, field_name: str = "") -> list[IndexInfo]:
        try:
            return matching_indexes(info, index_name, field_name)
        except errors.IndexNotFound:  # or one this proxy's cache has not applied yet: the store's word
            return matching_indexes(self.r.catalog.fresh(info), index_name, field_name)

    def _with_vector_indexes(self, info):
        """``info`` once every vector field that must have an index has one; IndexNotFound (Milvus's
        700) naming the first that has none. One that seems missing is looked up in the store first
        (``Catalog.fresh``): a collection a snapshot restore completed has its indexes, even read
        through a cache that has the collection from before they were created."""
        if any(info.index_for_field(f.name) is None for f in info.schema.indexed_vector_fields):
            info = self.r.catalog.fresh(info)
        for f in info.schema.indexed_vector_fields:
            if info.index_for_field(f.name) is None:
                raise errors.IndexNotFound(
                    f"there is no vector index on field: [{f.name}], please create index firstly: "
                    f"collection={info.name}")
        return info

    def _descriptions(self, info, index_name: str, field_name: str = "",
                      pending: bool = True) -> list[milvus_pb2.IndexDescription]:
        out = []
        for idx in self._indexes(info, index_name, field_name):
            p = self._progress(info, idx)
            out.append(milvus_pb2.IndexDescription(
                index_name=idx.index_name, indexID=idx.index_id, field_name=idx.field_name,
                params=_described_params(idx), indexed_rows=p.done, total_rows=p.total,
                pending_index_rows=p.pending if pending else 0, state=p.state, index_state_fail_reason=p.fail_reason))
        return out

    @rpc(milvus_pb2.DescribeIndexResponse)
    def DescribeIndex(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        return milvus_pb2.DescribeIndexResponse(status=status.success(), index_descriptions=self._descriptions(
            info, request.index_name, request.field_name))

    @rpc(milvus_pb2.GetIndexStatisticsResponse)
    def GetIndexStatistics(self, request, context):
        """DescribeIndex without the pending rows (the ORM's ``Index``)."""
        info = self.collection(db_of(request, context), request.collection_name)
        return milvus_pb2.GetIndexStatisticsResponse(status=status.success(), index_descriptions=self._descriptions(
            info, request.index_name, pending=False))

    @rpc()
    def AlterIndex(self, request, context):
        """alter_index_properties / drop_index_properties: ``mmap.enabled``, which makes a query node read
        the index's files memory-mapped when it loads the collection. Refused while loaded (the coord's
        check: ``vecdb.coord.ddl.DdlManager.alter_index``)."""
        db = db_of(request, context)
        props = _index_properties(request.extra_params, list(request.delete_keys))
        self.collection(db, request.collection_name)
        if not request.index_name:
            raise errors.InvalidParameter("index name is empty")
        self.ddl.alter_index(db, request.collection_name, request.index_name, props, list(request.delete_keys))
        return status.success()

    @rpc()
    def DropIndex(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        # refused while loaded...: the coord's checks, on its catalog
        try:
            drop = self.ddl.drop_index(db, request.collection_name, request.index_name, request.field_name)
        except errors.IndexNotFound:  # no such index: a success, as Milvus's datacoord answers
            return status.success()
        if not drop:  # a repeat whose first try dropped them: forget the ones this proxy knew
            try:
                drop = [i.index_id for i in self._indexes(info, request.index_name, request.field_name)]
            except errors.IndexNotFound:
                pass
        self.r.datanode.forget_index_builds(info.id, drop)
        return status.success()

    @rpc(milvus_pb2.GetIndexStateResponse)
    def GetIndexState(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        p = self._progress(info, self._indexes(info, request.index_name, request.field_name)[0])
        return milvus_pb2.GetIndexStateResponse(status=status.success(), state=p.state, fail_reason=p.fail_reason)

    @rpc(milvus_pb2.GetIndexBuildProgressResponse)
    def GetIndexBuildProgress(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        idx = self._indexes(info, request.index_name, request.field_name)[0]
        done, total = self._index_state(info, idx.field_name)
        return milvus_pb2.GetIndexBuildProgressResponse(status=status.success(), indexed_rows=done, total_rows=total)

    # --- load / release -----------------------------------------------------------
    def _load(self, db: str, info, partition_names: list[str] | None = None, replica_number: int = 0,
              resource_groups: list[str] | None = None) -> None:
        """Load the collection's data; ``partition_names`` None = the whole collection. The coord
        marks it loaded first (in a cluster it then places the replicas, each on the nodes of its
        resource group), then the query nodes load; when they cannot, the coord puts back the load
        state it replaced."""
        refuse_while_restoring(self.stores()[0], info)  # (its indexes and segments are still coming)
        info = self._with_vector_indexes(info)
        if replica_number < 0:
            raise errors.InvalidParameter(f"invalid replica_number {replica_number}: it must be positive")
        groups = [g for g in resource_groups or [] if g]
        for g in groups:
            validate_resource_group_name(g)
        self.indexer.settle(info.id)  # the query node builds what is not started yet
        before = self.ddl.load(db, info.name, partition_names, replica_number, groups)
        info = self.r.catalog.get_by_id(info.id)
        try:
            with self.r.writer.locked(info.channels):
                self.r.querynode.load(info)
        except BaseException:
            self.ddl.undo_load(info.id, before)
            raise

    def _release(self, db: str, info) -> None:
        """The coord marks it released first (reads are refused from then on, and a cluster's coord
        withdraws the assignment), then the query nodes let go."""
        self.ddl.release(db, info.name, None)
        self.r.querynode.release(info.id)

    @rpc()
    def LoadCollection(self, request, context):
        db = db_of(request, context)
        self._load(db, self.collection(db, request.collection_name),
                   replica_number=request.replica_number, resource_groups=list(request.resource_groups))
        return status.success()

    @rpc()
    def LoadPartitions(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        if info.schema.partition_key_field is not None:  # as Milvus's proxy
            raise errors.InvalidParameter("disable load partitions if partition key mode is used")
        names = list(request.partition_names)
        for name in names:
            info.partition(name)  # PartitionNotFound
        if not names:
            raise errors.InvalidParameter("partition names should not be empty")
        self._load(db, info, names, replica_number=request.replica_number,
                   resource_groups=list(request.resource_groups))
        return status.success()

    @rpc()
    def ReleaseCollection(self, request, context):
        db = db_of(request, context)
        self._release(db, self.collection(db, request.collection_name))
        return status.success()

    @rpc()
    def ReleasePartitions(self, request, context):
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        if info.schema.partition_key_field is not None:  # as Milvus's proxy
            raise errors.InvalidParameter("disable release partitions if partition key mode is used")
        if not request.partition_names:
            raise errors.InvalidParameter("invalid parameter[expected=any partition][actual=empty partition list]")
        for name in request.partition_names:
            info.partition(name)  # PartitionNotFound
        if not info.loaded:
            return status.success()
        if self.ddl.release(db, info.name, list(request.partition_names)):
            self.r.querynode.release(info.id)  # none of its partitions is loaded any more
        return status.success()

    @rpc(milvus_pb2.GetLoadStateResponse)
    def GetLoadState(self, request, context):
        validate_collection_name(request.collection_name)
        try:
            info = self.collection(db_of(request, context), request.collection_name)
        except (errors.CollectionNotFound, errors.DatabaseNotFound):  # Milvus: a success saying NotExist
            return milvus_pb2.GetLoadStateResponse(status=status.success(), state=common_pb2.LoadStateNotExist)
        parts = [info.partition(name) for name in request.partition_names]
        loaded = self.r.querynode.is_loaded(info.id) and all(info.partition_loaded(p.id) for p in parts)
        state = common_pb2.LoadStateLoaded if loaded else common_pb2.LoadStateNotLoad
        return milvus_pb2.GetLoadStateResponse(status=status.success(), state=state)

    @rpc(milvus_pb2.GetLoadingProgressResponse)
    def GetLoadingProgress(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        self.require_loaded(info)
        return milvus_pb2.GetLoadingProgressResponse(status=status.success(), progress=100, refresh_progress=100)

"""RPCs: search, range search, query, count(*)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import element_search, emb_list, errors, key_isolation, namespaces
from vecdb.bm25 import output_analyzer
from vecdb.expr import compile_filter
from vecdb.expr.filter import KeyFilter
from vecdb.expr.local_time import localize_iso_literals
from vecdb.go_parse import go_bool, go_int
from vecdb.index import validate_search_params
from vecdb.index.base import MINHASH_METRIC, check_range_params
from vecdb.index.params import MAX_CANDIDATES
from vecdb.limits import LIMITS
from vecdb.minhash_function import output_encoder
from vecdb.proxy import function_chain, search_aggregation, status
from vecdb.proxy.base import ServiceBase, check_read_partition_names, kv_dict, parse_json_param, rpc
from vecdb.proxy.boost import Boost, rescored_rows
from vecdb.proxy.consistency import BOUNDED_STALENESS, ReadLevel, level_of, pin_snapshot, reading_at
from vecdb.proxy.decay import fetched
from vecdb.proxy.fielddata import nq_invalid, parse_placeholder_group, resolve_output_fields
from vecdb.proxy.fieldencode import fill_field_data
from vecdb.proxy.grouping import GroupBy, group_hits, group_keys, parse_group_by
from vecdb.proxy.highlight import Highlight, highlight_results, plan_highlight
from vecdb.proxy.order_by import order_fields, order_group_rows, order_rows, parse_order_by
from vecdb.proxy.query_aggregation import (
    aggregate_reply,
    order_query_rows,
    partial_spec,
    plan_query,
    refuse_element_level,
)
from vecdb.proxy.quota import admit_collection
from vecdb.proxy.rerank import Ranker, SubResult, function_ranker, fuse, fused_columns
from vecdb.proxy.results import query_results, search_results
from vecdb.proxy.search_iterator import (
    PER_PAGE_KEYS,
    Cursors,
    far_bound,
    iterator_batch,
    nearer_bound,
    next_page,
    outer_radius,
    page_request,
)
from vecdb.proxy.templates import template_values
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.request_db import db_of
from vecdb.schema import NAMESPACE_FIELD, DataType, FieldSchema, valid_key
from vecdb.timestamptz import UTC_OUTPUT, TimeOutput, time_output

MAX_ROUND_DECIMAL = 6
COUNT_STAR = "count(*)"


_PLAN_CACHE_SIZE = 1024
GROUP_WINDOW_START = 256  # hits per query a grouping search looks at first


@dataclass(frozen=True)
class SearchPlan:
    """A search request's parameters, validated (shared between requests: never mutate)."""

    field: FieldSchema
    limit: int
    offset: int
    metric: str
    index_type: str
    params: dict
    radius: float | None
    range_filter: float | None
    round_decimal: int
    iterator: bool
    out_fields: list
    dyn_keys: list
    fetch: list
    group: GroupBy | None = None  # a grouping search (group_by_field)
    order: tuple = ()  # order_by_fields: ((field, ascending), ...) (vecdb.proxy.order_by)
    iter_batch: int = 0  # a search iterator v2's page size (vecdb.proxy.search_iterator); 0: none
    ignore_growing: bool = False  # search sealed segments only
    times: TimeOutput = UTC_OUTPUT  # TIMESTAMPTZ: the filter's and the reply's zone, time_fields (vecdb.timestamptz)
    highlight: Highlight | None = None  # the request's highlighter (per request: vecdb.proxy.highlight)
    analyzer_name: str = ""  # BM25 on a multi-analyzer field: the analyzer of the search texts ("": default)


def _int_param(params: dict, key: str, default: int) -> int:
    """``params[key]`` read as Milvus reads it (``vecdb.go_parse``), ``default`` without the key;
    a value that does not parse (an empty one too) is refused."""
    raw = params.get(key)
    if raw is None:
        return default
    value = go_int(raw)
    if value is None:
        raise errors.InvalidParameter(f"{key} [{raw}] is invalid, it should be an integer")
    return value


def _ignore_growing(params: dict) -> bool:
    """``ignore_growing`` of a search's or query's parameters: Go's ``strconv.ParseBool``, as Milvus's proxy
    reads it ("1", "t", "True" are true too); another value is refused in Milvus 2.3.5's words (a query's
    too)."""
    raw = params.get("ignore_growing")
    if raw is None:
        return False
    value = go_bool(raw)
    if value is None:
        raise errors.InvalidParameter("parse search growing failed")
    return value


def _check_collection_id(qp: dict, collection_id: int) -> None:
    """pymilvus's query iterators send the id of the collection they started on (``collection_id``):
    a page whose name (an alias moved, a collection dropped and created again) now means another
    collection is refused, as Milvus's proxy refuses it (parseQueryParams and queryTask.PreExecute),
    rather than the walk going on over another collection's rows."""
    raw = qp.get("collection_id")
    if raw is None:
        return
    try:
        wanted = int(raw, 0)
    except ValueError:
        raise errors.InvalidParameter("value for collection id is invalid: invalid parameter"
                                      "[expected=int value for collection_id][actual=collection_id]") from None
    if wanted > 0 and wanted != collection_id:
        raise errors.InvalidParameter("Input collection id is not consistent to collectionID in the context,"
                                      "alias or database may have changed")


def _float_param(params: dict, key: str) -> float | None:
    """A range-search bound: absent, or a finite number (a JSON number or a string holding one;
    a bool or null is no number: Milvus refuses null too). knowhere's wording for the type error."""
    if key not in params:
        return None
    raw = params[key]
    value = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            pass
    if value is None:
        raise errors.InvalidParameter(f"Type conflict in json: param '{key}' ({raw!r}) should be a number")
    if not math.isfinite(value):
        raise errors.InvalidParameter(f"param '{key}' ({raw!r}) should be a finite number")
    return value


def _round_decimal(params: dict) -> int:
    """Milvus: -1 (no rounding) or 0..6 digits, same message for a non-integer."""
    raw = params.get("round_decimal")
    if raw is None:
        return -1
    value = go_int(raw)
    if value is None or not (value == -1 or 0 <= value <= MAX_ROUND_DECIMAL):
        raise errors.InvalidParameter(
            f"round_decimal [{raw}] is invalid, should be -1 or an integer in range [0, {MAX_ROUND_DECIMAL}]")
    return value


def _fetched(schema, out_fields: list[str], dyn_keys: list[str]) -> list[str]:
    """The columns a read fetches: the output fields, nullable ones' validity masks, and the dynamic field
    when keys of it are asked for."""
    dynamic = schema.dynamic_field
    masks = [valid_key(f.name) for name in out_fields if (f := schema.field(name)) is not None and f.nullable]
    return list(dict.fromkeys(out_fields + masks + ([dynamic.name] if dyn_keys and dynamic is not None else [])))


def with_field(fetch: list[str], name: str | None) -> list[str]:
    """``fetch`` with the field ``name`` read too (None: as it is)."""
    return fetch if name is None or name in fetch else [*fetch, name]


def _widened(params: dict, k: int) -> dict:
    """Search parameters for a top-``k`` window: HNSW's ef, SCANN's reorder_k and DISKANN's search_list raised to k."""
    out = dict(params)
    for key in ("ef", "reorder_k", "search_list"):
        if key in out and out[key] < k:
            out[key] = k
    return out


def _with_highlight(plan: SearchPlan, hl: Highlight | None) -> SearchPlan:
    """``plan`` for one request with a highlighter: the highlighted fields read with the hits."""
    if hl is None:
        return plan
    return dataclasses.replace(plan, highlight=hl, fetch=list(dict.fromkeys(plan.fetch + hl.fields)))


def _add_highlights(resp: milvus_pb2.SearchResults, plan: SearchPlan, topks, columns) -> None:
    """The highlights of the reply's hits (``columns``: their values), when the request asked."""
    if plan.highlight is not None:
        resp.results.highlight_results.extend(highlight_results(plan.highlight, list(topks), columns))


def add_group_values(resp: milvus_pb2.SearchResults, schema, columns: dict, group: GroupBy) -> None:
    """A grouping search's reply: each hit's group value (``group_by_field_value``)."""
    if group.field.name in columns:
        fill_field_data(lambda: resp.results.group_by_field_value, schema, columns, [group.field.name], None)


def _element_level(plan: SearchPlan) -> bool:
    """A plain-vector search of a struct's vector sub-field (vecdb.element_search)."""
    return plan.field.dtype == DataType.ARRAY_OF_VECTOR and element_search.is_element_metric(plan.metric)


def _element_cursor(qp: dict, schema) -> tuple | None:
    """A query iterator's element cursor (pymilvus 3.0's ``query_iter_last_pk`` and
    ``query_iter_last_element_offset`` query params), the key in the primary key's type; None without."""
    last, at = qp.get("query_iter_last_pk"), qp.get("query_iter_last_element_offset")
    if last is None or at is None or at in ("", "None"):
        return None
    try:
        key = int(last) if schema.primary_field.dtype == DataType.INT64 else str(last)
        return key, int(at)
    except ValueError:
        raise errors.InvalidParameter(f"invalid query iterator cursor: {last!r}, {at!r}") from None


def _is_iterator(params: dict) -> bool:
    return str(params.get("iterator", "")).lower() == "true"


class SearchRpcs(ServiceBase):
    def _snapshot_ts(self, info, request, level: ReadLevel, iterator: bool = False) -> int:
        """The MVCC timestamp a read sees: every write with a smaller one is already applied, so
        re-reading at this timestamp is stable (``ShardWriter.read_ts``). Below Strong (and not
        for an iterator) the writer may reuse one up to ``BOUNDED_STALENESS`` old (a cluster proxy:
        see vecdb.proxy.consistency).

        Iterators pass the first page's ``session_ts`` back as ``guarantee_timestamp``: every later page
        reads that same snapshot, so rows written meanwhile never appear and none is seen twice."""
        pinned = request.guarantee_timestamp if iterator else getattr(request, "travel_timestamp", 0)
        reuse = 0.0 if iterator or level == ReadLevel.STRONG else BOUNDED_STALENESS
        now = self.r.writer.read_ts(info.channels, max_age=reuse)
        # an iterator's first page too: its reply's session_ts is the snapshot every later page reads
        pin_snapshot(iterator or 0 < pinned < now)
        # Standalone, every level (Strong, Bounded, Session, Eventually) is satisfied by the newest
        # state: its node applies each write before acknowledging it, and it never reuses a timestamp.
        return pinned if 0 < pinned < now else now

    def _filter(self, info, expr: str, template_pb, zone: str, ns: str | None = None):
        """The compiled filter (None: none); ISO literals without an offset read in ``zone``. ``ns``: the
        request's namespace, whose rows alone the filter then passes (vecdb.namespaces)."""
        expr = namespaces.scoped_expr(info, ns, (expr or "").strip())
        if not expr:
            return None
        return compile_filter(localize_iso_literals(expr, zone), info.schema,
                              template_values(template_pb) if template_pb else None)

    @rpc(milvus_pb2.SearchResults)
    def Search(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        admit_collection(self.r, "Search", request, context, info)  # its database's and its own limits
        self.require_loaded(info)
        if request.sub_reqs:
            raise errors.OperationNotSupported("a Search with sub_reqs is not supported; send a HybridSearch")
        if not any(kv.key == "topk" for kv in request.search_params):  # (Milvus: no default limit)
            raise errors.InvalidParameter("topk not found in search_params")
        plan = self._search_plan(info, request.search_params, request.output_fields)
        if request.HasField("highlighter"):
            plan = _with_highlight(plan, plan_highlight(request.highlighter, info.schema, plan.metric, plan.field,
                                                        request.placeholder_group, plan.analyzer_name))
        level = level_of(request, info.consistency_level)
        spec = self._search_spec(info, request, plan, self._snapshot_ts(info, request, level, plan.iterator))
        ns = namespaces.of_request(info, request)
        check_read_partition_names(request.partition_names)
        parts = self.partition_ids(info, namespaces.scoped_partitions(info, ns, request.partition_names))
        ranker = function_ranker(request, 1, info.schema, plan.times.zone)
        if ranker is not None and _element_level(plan):
            raise errors.InvalidParameter(f"a rerank function (ranker) is not supported with element-level search "
                                          f"(field {plan.field.name})")
        if ranker is not None and (plan.iterator or plan.group is not None or plan.order):
            raise errors.InvalidParameter("a rerank function (ranker) cannot be combined with a search iterator, "
                                          "group_by_field or order_by_fields")
        chain = function_chain.parse_chains(request, info.schema)  # Milvus 3.0 (vecdb.proxy.function_chain)
        if chain is not None:
            function_chain.refuse_with(plan, _element_level(plan), search_aggregation.requested(request))
        if search_aggregation.requested(request):  # Milvus 3.0 (vecdb.proxy.search_aggregation)
            return self._aggregated_search(info, request, spec, plan, parts, level, ranker is not None)
        if plan.iter_batch:
            return self._iterator_page(info, request, spec, plan, parts, level)
        with reading_at(level):
            if plan.group is not None:
                return self._grouped_search(info, spec, plan, parts)
            if ranker is not None:
                return self._reranked_search(info, spec, plan, parts, ranker)
            if chain is not None:
                return self._reply(info, spec, plan, function_chain.chained_hits(self, info, spec, plan, parts, chain))
            hits = self.r.querynode.search(info, spec, parts, plan.fetch)
        if plan.order:  # each query's hits re-sorted by the fields (Milvus 2.6)
            rows = order_rows(hits.topks, hits.columns, plan.order)
            hits.pks, hits.scores = hits.pks[rows], hits.scores[rows]
            hits.columns = {k: v[rows] for k, v in hits.columns.items()}
        return self._reply(info, spec, plan, hits)

    def _aggregated_search(self, info, request, spec: SearchSpec, plan: SearchPlan, parts, level: ReadLevel,
                           ranked: bool) -> milvus_pb2.SearchResults:
        """A search with ``search_aggregation``: its buckets instead of hits (vecdb.proxy.search_aggregation)."""
        search_aggregation.check_combination(
            group=plan.group is not None, order=bool(plan.order), offset=plan.offset, iterator=plan.iterator,
            radius=plan.radius is not None, ranker=ranked, highlighter=request.HasField("highlighter"),
            element_level=_element_level(plan))
        agg = search_aggregation.parse(request.search_aggregation, info.schema, plan.out_fields)
        with reading_at(level):
            pool = search_aggregation.search_pool(
                lambda wide, fetch: self.r.querynode.search(info, wide, parts, fetch), spec, list(agg.fetch), agg,
                plan.field, lambda k: _widened(plan.params, k))
        buckets = search_aggregation.aggregate(info.schema, agg, pool)
        return search_aggregation.reply(info.schema, info.name, len(spec.queries), buckets, spec.ts)

    @staticmethod
    def _reply(info, spec: SearchSpec, plan: SearchPlan, hits: Hits) -> milvus_pb2.SearchResults:
        """The SearchResults of ``hits`` (one block per query of ``spec``) as ``plan`` asks: output
        fields, highlights, the collection's name and the snapshot read."""
        resp = search_results(info.schema, len(spec.queries), hits.topks, hits.pks, hits.scores, hits.columns,
                              plan.out_fields, plan.dyn_keys, plan.round_decimal, plan.times)
        _add_highlights(resp, plan, hits.topks, hits.columns)
        elements = hits.columns.get(element_search.ELEMENT_COLUMN)
        if elements is not None and len(elements):  # element-level search: each hit's element offset
            resp.results.element_indices.data.extend(np.asarray(elements, np.int64).tolist())
        resp.collection_name = info.name
        resp.session_ts = spec.ts
        return resp

    def _search_spec(self, info, request, plan: SearchPlan, ts: int) -> SearchSpec:
        """What the query nodes run for one search request (a ``SearchRequest``: a plain search, or one
        ANN request of a hybrid search) under ``plan``, reading the snapshot ``ts``."""
        ns = namespaces.of_request(info, request)
        if request.placeholder_group:
            analyzer = ((output_encoder(info.schema, plan.field.name)  # a MinHash output: the text's signature
                         or output_analyzer(info.schema, plan.field.name, plan.analyzer_name))
                        if plan.field.is_function_output else None)
            queries = parse_placeholder_group(request.placeholder_group, plan.field, analyzer)
        elif request.HasField("ids"):  # pymilvus 2.6 search(ids=...): the rows' own vectors as the queries
            queries = self._vectors_of(info, plan.field, request.ids, ts, ns)
        else:
            raise errors.InvalidParameter("a search needs query vectors or primary keys (ids)")
        if len(queries) > LIMITS.max_nq:
            raise nq_invalid(len(queries))
        if request.nq and request.nq != len(queries):  # (0: an older client's, the queries' number)
            # Milvus trusts nq and fails in its query node's reduce (2.3.5: 65535 "illegal req sizes"; nq -1
            # takes its proxy down); every client sends the number of its queries
            raise errors.InvalidParameter(
                f"nq [{request.nq}] does not match the number of queries in the request [{len(queries)}]")
        if plan.field.dtype == DataType.ARRAY_OF_VECTOR:  # plain vectors: element-level; lists: EmbeddingList
            element_search.check_queries(queries, plan.field, plan.metric)
        flt = self._filter(info, request.dsl, request.expr_template_values, plan.times.zone, ns)
        key_isolation.check_search_filter(info.schema, info.properties, flt)
        return SearchSpec(
            field=plan.field, queries=queries, limit=plan.limit, offset=plan.offset, metric=plan.metric,
            params=plan.params, index_type=plan.index_type, radius=plan.radius, range_filter=plan.range_filter,
            flt=flt, ts=ts, ignore_growing=plan.ignore_growing,
        )

    def _vectors_of(self, info, field, ids, ts: int, ns: str | None = None) -> np.ndarray:
        """The ``field`` vectors of the rows with primary keys ``ids`` (a ``schema_pb2.IDs``), in their
        order, as read at the search's snapshot ``ts``; every key must be there, in namespace ``ns`` where
        the request names one, with a vector (a nullable vector's null: InvalidParameter)."""
        if field.is_function_output:
            raise errors.InvalidParameter(f"search by primary keys is not supported on {field.name}, the output "
                                          "field of a function: search it with text")
        if field.dtype == DataType.ARRAY_OF_VECTOR:
            raise errors.InvalidParameter(f"search by primary keys is not supported on {field.name}, a struct "
                                          "array vector field: search it with EmbeddingList queries")
        ints = ids.HasField("int_id")
        if ints != (info.schema.primary_field.dtype.name == "INT64"):
            raise errors.InvalidParameter(f"the ids' type ({'int' if ints else 'str'}) does not match the primary "
                                          f"key of collection {info.name} ({info.schema.primary_field.dtype.name})")
        pks = np.asarray(ids.int_id.data if ints else list(ids.str_id.data), np.int64 if ints else object)
        if not 1 <= len(pks) <= LIMITS.max_nq:
            raise nq_invalid(len(pks))
        pk = info.schema.primary_field.name
        scoped = ns is not None and namespaces.mode_of(info.schema, info.properties) == namespaces.PARTITION_KEY_MODE
        fetch = [pk, field.name] + ([valid_key(field.name)] if field.nullable else []) + \
            ([NAMESPACE_FIELD] if scoped else [])
        parts = self.partition_ids(info, namespaces.scoped_partitions(info, ns, [])) if ns is not None else None
        cols = self.r.querynode.query(info, ts, KeyFilter(pk, np.unique(pks)), parts, fetch, None, 0)
        if scoped:  # another namespace's rows are not there for this request
            mine = np.asarray(cols[NAMESPACE_FIELD] == ns, bool)
            cols = {k: v[mine] for k, v in cols.items()}
        have = cols[pk]
        order = np.argsort(have, kind="stable")
        at = np.searchsorted(have[order], pks) if len(have) else np.zeros(len(pks), np.int64)
        found = at < len(have)
        found[found] = have[order][at[found]] == pks[found]
        if not found.all():
            missing = pks[~found][:10].tolist()
            raise errors.InvalidParameter(f"primary keys {missing} not found in collection {info.name}: "
                                          "search by primary keys needs each row to exist")
        rows = order[at]
        if field.nullable:
            null = ~np.asarray(cols[valid_key(field.name)], bool)[rows]
            if null.any():
                raise errors.InvalidParameter(f"the {field.name} vector of primary keys {pks[null][:10].tolist()} is "
                                              "null: search by primary keys needs each row's vector")
        return cols[field.name][rows]

    def _iterator_page(self, info, request, spec: SearchSpec, plan: SearchPlan, parts,
                       level: ReadLevel) -> milvus_pb2.SearchResults:
        """One page of a search iterator v2 (``vecdb.proxy.search_iterator``)."""
        req = page_request(request.search_params)
        cursors: Cursors = self.__dict__.setdefault("_cursors", Cursors())
        at = None if req.bound is None else cursors.get(req.token, req.bound)
        depth = 0 if at is None else at.depth  # a graph index's beam must reach past the rows returned
        far = plan.radius if plan.radius is not None else far_bound(plan.metric, plan.field.dim)

        def search(window: int, outer: float | None):
            if req.bound is None:  # the first page: the best hits
                wide = dataclasses.replace(spec, limit=window, offset=0, params=_widened(plan.params, window))
            else:  # from the bound (inclusive) outwards, to ``outer`` (None: as far as the request allows)
                near = nearer_bound(req.bound, plan.range_filter, plan.metric)
                wide = dataclasses.replace(spec, limit=window, offset=0, range_filter=near,
                                           radius=outer_radius(outer, far, near, plan.metric),
                                           params=_widened(plan.params, min(depth + window, MAX_CANDIDATES)))
            with reading_at(level):
                return self.r.querynode.search(info, wide, parts, plan.fetch)

        hits, page = next_page(search, len(spec.queries), plan.limit, req, at, plan.metric)
        if page.cursor is not None:
            cursors.remember(req.token, page.last_bound, page.cursor)
        rows = page.rows
        columns = {k: v[rows] for k, v in hits.columns.items()}
        resp = search_results(info.schema, len(spec.queries), page.topks, hits.pks[rows], hits.scores[rows],
                              columns, plan.out_fields, plan.dyn_keys, plan.round_decimal, plan.times)
        _add_highlights(resp, plan, page.topks, columns)
        resp.results.search_iterator_v2_results.token = req.token
        resp.results.search_iterator_v2_results.last_bound = page.last_bound
        resp.collection_name = info.name
        resp.session_ts = spec.ts
        return resp

    def _reranked_search(self, info, spec: SearchSpec, plan: SearchPlan, parts,
                         ranker: Ranker) -> milvus_pb2.SearchResults:
        """A search with a rerank function (``ranker=``; ``vecdb.proxy.rerank``): its best ``limit +
        offset`` hits per query re-scored and re-sorted, then the offset dropped (as Milvus's proxy)."""
        if ranker.boost is not None:
            return self._reply(info, spec, plan, self.boosted_hits(info, spec, plan, parts, ranker.boost))
        decay = ranker.decay
        wide = dataclasses.replace(spec, limit=plan.limit + plan.offset, offset=0)
        hits = self.r.querynode.search(info, wide, parts, fetched(decay, plan.fetch))
        nq = len(spec.queries)
        values = None if decay is None else decay.values_of(hits.columns)
        fused = fuse(ranker, [SubResult(hits.topks, hits.pks, hits.scores, plan.metric, values)],
                     nq, plan.limit, plan.offset)
        columns = fused_columns(fused, [hits.columns], plan.fetch)
        return self._reply(info, spec, plan, Hits(fused.topks, fused.pks, fused.scores, columns))

    def boosted_hits(self, info, spec: SearchSpec, plan: SearchPlan, parts, boost: Boost) -> Hits:
        """The best ``limit + offset`` hits per query rescored by ``boost`` (``vecdb.proxy.boost``) and
        re-sorted, the offset dropped; their columns those of ``plan.fetch``."""
        wide = dataclasses.replace(spec, limit=plan.limit + plan.offset, offset=0)
        hits = self.r.querynode.search(info, wide, parts, list(dict.fromkeys(plan.fetch + boost.fields)))
        scores = boost.rescore(hits.scores, hits.pks, hits.columns)
        topks, rows = rescored_rows(hits.topks, scores, plan.metric, plan.limit, plan.offset)
        columns = {k: v[rows] for k, v in hits.columns.items() if k in plan.fetch}
        return Hits(topks, hits.pks[rows], scores[rows], columns)

    def _grouped_search(self, info, spec: SearchSpec, plan: SearchPlan, parts) -> milvus_pb2.SearchResults:
        """A grouping search (``vecdb.proxy.grouping``)."""
        assert plan.group is not None
        hits = self.grouped_hits(info, spec, plan, parts, plan.group)
        resp = self._reply(info, spec, plan, hits)
        add_group_values(resp, info.schema, hits.columns, plan.group)
        return resp

    def grouped_hits(self, info, spec: SearchSpec, plan: SearchPlan, parts, group: GroupBy) -> Hits:
        """Each query's hits grouped by ``group`` (``vecdb.proxy.grouping``), in output order, their columns
        with the group field's: ordinary top-k searches over a window of each query's best hits, widened
        (x4, up to LIMITS.max_topk) while an answer is short."""
        name = group.field.name
        fetch = with_field(with_field(plan.fetch, name), valid_key(name) if group.field.nullable else None)
        window = min(LIMITS.max_topk, max(GROUP_WINDOW_START, 2 * (plan.limit + plan.offset) * group.size))
        while True:
            wide = dataclasses.replace(spec, limit=window, offset=0, params=_widened(plan.params, window))
            hits = self.r.querynode.search(info, wide, parts, fetch)
            values = group_keys(hits.columns.get(name, np.empty(0, object)), hits.columns.get(valid_key(name)))
            grouped = group_hits(hits.topks, values, window, plan.limit, plan.offset, group)
            if all(grouped.done) or window >= LIMITS.max_topk:
                break
            window = min(LIMITS.max_topk, 4 * window)
        rows = grouped.rows
        if plan.order:  # the groups ordered by their first hit's values (Milvus 2.6)
            rows = rows[order_group_rows(grouped.topks, values[rows],
                                         {k: v[rows] for k, v in hits.columns.items()}, plan.order)]
        return Hits(grouped.topks, hits.pks[rows], hits.scores[rows], {k: v[rows] for k, v in hits.columns.items()})

    def _search_plan(self, info, pairs, output_fields) -> SearchPlan:
        """Everything a search derives from its parameters, cached: clients repeat the same ones."""
        key = (info.id, tuple([(i.index_id, i.field_name) for i in info.indexes]),
               tuple([(kv.key, kv.value) for kv in pairs if kv.key not in PER_PAGE_KEYS]), tuple(output_fields),
               self.zone_of(info))  # the collection's time zone: an alter of a property changes it
        cache = self.__dict__.setdefault("_plans", {})
        plan = cache.get(key)
        if plan is None:
            plan = self._make_search_plan(info, dict(key[2]), list(output_fields), key[4])
            if len(cache) >= _PLAN_CACHE_SIZE:
                cache.clear()
            cache[key] = plan
        return plan

    def _make_search_plan(self, info, sp: dict, output_fields: list, zone: str) -> SearchPlan:
        try:
            params = parse_json_param(sp.get("params", ""), "search params")
        except RecursionError:  # json's C scanner recurses per nesting level
            raise errors.InvalidParameter("search params are nested too deeply") from None
        schema = info.schema
        field = self._anns_field(info, sp.get("anns_field", ""))
        group = parse_group_by(schema, sp, params, field.dtype)
        for k in ("group_by_field", "group_size", "strict_group_size"):
            params.pop(k, None)
        order = parse_order_by(schema, sp.get("order_by_fields") or params.pop("order_by_fields", ""))
        limit = _int_param(sp, "topk", 10)
        offset = _int_param(sp, "offset", 0)  # (an offset inside ``params`` is not read, as in Milvus)
        if not 1 <= limit <= LIMITS.max_topk:
            raise errors.InvalidParameter(f"topk [{limit}] is invalid, it should be in range [1, {LIMITS.max_topk}]")
        if offset < 0 or limit + offset > LIMITS.max_topk:
            raise errors.InvalidParameter(
                f"top k [{limit}] + offset [{offset}] is invalid, it should be in range [1, {LIMITS.max_topk}]")
        index = info.index_for_field(field.name)
        sent = str(sp.get("metric_type") or params.pop("metric_type", "") or (index.metric_type if index else ""))
        # read in any case, unlike Milvus (its query node compares the name as sent: "l2" on an L2 index is
        # "metric type not match"): indexes vecdb made from "l2" before create_index refused it are L2, and
        # clients that made them search with the same name (docs/limits.md, "Search and index parameters")
        metric = sent.upper()
        if index is not None and metric and metric != index.metric_type:
            raise errors.InvalidParameter(
                f"metric type not match: invalid parameter[expected={index.metric_type}][actual={sent}]")
        emb_lists = field.dtype == DataType.ARRAY_OF_VECTOR  # a struct's vector sub-field (vecdb.emb_list)
        if emb_lists and not element_search.is_element_metric(metric):  # plain metric: element-level search
            metric = emb_list.check_metric(metric, field)
        if field.is_function_output and schema.minhash_function_of(field.name) is not None:  # text -> signature
            if metric not in ("", MINHASH_METRIC):
                raise errors.InvalidParameter(
                    "must use MHJACCARD metric type when searching against MinHash Function output field")
            metric = MINHASH_METRIC
        elif field.is_function_output:  # a BM25 function's output: full-text search (vecdb.bm25)
            if metric not in ("", "BM25"):
                raise errors.InvalidParameter(
                    "must use BM25 metric type when searching against BM25 Function output field")
            metric = "BM25"
        elif field.dtype.name == "SPARSE_FLOAT_VECTOR" and metric not in ("", "IP"):
            raise errors.InvalidParameter(f"metric type {metric} not found or not supported, supported: [IP]")
        metric = metric or {"BINARY_VECTOR": "HAMMING", "SPARSE_FLOAT_VECTOR": "IP"}.get(field.dtype.name, "L2")
        index_type = index.index_type if index else "FLAT"
        radius = _float_param(params, "radius")
        range_filter = _float_param(params, "range_filter")
        params.pop("radius", None), params.pop("range_filter", None)
        round_decimal = _round_decimal(sp)
        iterator = _is_iterator(sp) or _is_iterator(params)
        ignore_growing = _ignore_growing(sp) or str(params.get("ignore_growing", "")).lower() == "true"
        analyzer_name = str(sp.get("analyzer_name") or params.get("analyzer_name") or "")
        for k in ("offset", "topk", "round_decimal", "ignore_growing", "anns_field", "iterator", "analyzer_name"):
            params.pop(k, None)
        if group is not None and iterator:
            raise errors.InvalidParameter("Not allowed to do groupBy when doing iteration")
        if group is not None and radius is not None:
            raise errors.InvalidParameter("Not allowed to do range-search when doing search-group-by")
        if order and iterator:
            raise errors.InvalidParameter("order_by is not supported when using search iterator")
        if iterator and metric == MINHASH_METRIC:  # its pages past the first are range searches (knowhere: none)
            raise errors.InvalidParameter(f"search iterator is not supported for metric type {MINHASH_METRIC}")
        iter_batch = iterator_batch(sp, iterator, offset)
        if iter_batch:
            limit = iter_batch
        out_fields, dyn_keys = resolve_output_fields(schema, output_fields)
        if emb_lists:  # EmbeddingList / element-level searches, searched exactly
            element_level = element_search.is_element_metric(metric)
            # element-level hits are elements: a range search keeps those in range, group_by_field groups
            # them (on the primary key: one hit per entity, Milvus's "Grouping Search with StructArray")
            what = ("a range search" if radius is not None and not element_level
                    else "group_by_field" if group is not None and not element_level
                    else "a search iterator" if iterator else "order_by_fields" if order else "")
            kind = "element-level search" if element_level else "EmbeddingList queries"
            if radius is not None and element_level:
                check_range_params(metric, radius, range_filter)
            if what:
                raise errors.InvalidParameter(f"{what} is not supported with {kind} (field {field.name})")
            search_params: dict = {}
        else:  # a range search is bounded by its radius, not by ef: the index raises ef to the limit itself
            search_params = validate_search_params(index_type, metric, params, limit + offset,
                                                   range_search=radius is not None)
        if index is not None and index.index_type == "MINHASH_LSH":  # growing rows: the index's layout
            for key in ("mh_element_bit_width", "mh_lsh_band"):
                search_params[key] = int(index.params[key])
        if index is not None and "drop_ratio_build" in index.params:  # sparse: postings built on the node
            search_params["drop_ratio_build"] = float(index.params["drop_ratio_build"])
        if index is not None and index.metric_type == "BM25":  # scored on the node with the index's k1, b
            for key in ("bm25_k1", "bm25_b"):
                if key in index.params:
                    search_params[key] = float(index.params[key])
        return SearchPlan(
            field=field, limit=limit, offset=offset, metric=metric, index_type=index_type,
            params=search_params,
            radius=radius, range_filter=range_filter, round_decimal=round_decimal, iterator=iterator,
            out_fields=out_fields, dyn_keys=dyn_keys,
            fetch=list(dict.fromkeys(_fetched(schema, out_fields, dyn_keys) + order_fields(schema, order))),
            group=group, order=order, iter_batch=iter_batch, ignore_growing=ignore_growing,
            times=time_output(sp, zone), analyzer_name=analyzer_name,
        )

    def _anns_field(self, info, name: str):
        vectors = info.schema.vector_fields
        if not name:
            if len(vectors) != 1:
                raise errors.InvalidParameter(
                    "multiple anns_fields exist, please specify a anns_field in search_params")
            return vectors[0]
        field = info.schema.field(name)
        if field is None or not (field.dtype.is_vector or field.dtype == DataType.ARRAY_OF_VECTOR):
            raise errors.FieldNotFound(f"failed to get field schema by name: fieldName({name}) not found")
        return field

    @rpc(milvus_pb2.QueryResults)
    def Query(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        admit_collection(self.r, "Query", request, context, info)  # its database's and its own limits
        self.require_loaded(info)
        schema = info.schema
        qp = kv_dict(request.query_params)
        _check_collection_id(qp, info.id)
        limit = None if qp.get("limit") is None else _int_param(qp, "limit", 0)
        # as Milvus's proxy (parseQueryParams): the offset is read only with a limit (without one every
        # matching row comes back), and a limit below 1 or a negative offset is refused, for every query
        offset = _int_param(qp, "offset", 0) if limit is not None else 0
        if limit is not None:
            window = "invalid max query result window, "
            if offset < 0:
                raise errors.InvalidParameter(f"{window}offset [{offset}] is invalid, should be gte than 0")
            if limit <= 0:
                raise errors.InvalidParameter(f"{window}limit [{limit}] is invalid, should be greater than 0")
            if not _is_iterator(qp) and limit + offset > self.r.max_query_window:
                raise errors.InvalidParameter(f"{window}(offset+limit) should be in range [1, "
                                              f"{self.r.max_query_window}], but got {limit + offset}")
        requested = list(request.output_fields)
        times = time_output(qp, self.zone_of(info))  # TIMESTAMPTZ: the filter's and the reply's zone
        ns = namespaces.of_request(info, request)
        flt = self._filter(info, request.expr, request.expr_template_values, times.zone, ns)
        check_read_partition_names(request.partition_names)
        parts = self.partition_ids(info, namespaces.scoped_partitions(info, ns, request.partition_names))
        level = level_of(request, info.consistency_level)
        ts = self._snapshot_ts(info, request, level, _is_iterator(qp))
        sealed_only = _ignore_growing(qp)  # (pymilvus sends str(bool))
        # Milvus 3.0 query aggregation / group_by_fields / order_by_fields (vecdb.proxy.query_aggregation)
        shape = plan_query(schema, requested, qp, _is_iterator(qp))
        if shape.grouped:  # the groups of every matching row; limit and offset count groups
            if flt is not None and element_search.element_predicate(flt, None) is not None:
                refuse_element_level("aggregation")
            with reading_at(level):  # the query nodes reduce their rows to per-group partials
                partial = self.r.querynode.query_partials(info, ts, flt, parts, partial_spec(shape),
                                                          sealed_only=sealed_only)
            resp = aggregate_reply(shape, partial, limit, offset, info.name, times)
            resp.session_ts = ts
            return resp
        if any(f.strip().lower() == COUNT_STAR for f in requested):
            # as Milvus's proxy: an ungrouped count takes no limit (a query iterator's pages carry one)
            if len(requested) > 1 or limit is not None:
                raise errors.InvalidParameter("count entities with pagination is not allowed")
            with reading_at(level):
                n = self.r.querynode.count(info, ts, flt, parts, sealed_only=sealed_only)
            fd = schema_pb2.FieldData(type=schema_pb2.Int64, field_name=COUNT_STAR)
            fd.scalars.long_data.data.append(n)
            return milvus_pb2.QueryResults(status=status.success(), fields_data=[fd], collection_name=info.name,
                                           output_fields=[COUNT_STAR], session_ts=ts)
        if not request.expr.strip() and limit is None:  # (a namespace's own condition does not count)
            raise errors.InvalidParameter("empty expression should be used with limit")
        out_fields, dyn_keys = resolve_output_fields(schema, requested)
        pk_name = schema.primary_field.name
        if pk_name not in out_fields:
            out_fields = [pk_name] + out_fields
        fetch = _fetched(schema, out_fields, dyn_keys)
        match = element_search.element_predicate(flt, None) if flt is not None else None
        if match is not None:  # an element-level query: each entity's matching elements too
            if shape.order:
                refuse_element_level("order_by")
            return self._element_query(info, ts, flt, parts, fetch, limit, offset, match, sealed_only, level,
                                       (out_fields, dyn_keys, times), _element_cursor(qp, schema))
        if shape.order and limit is not None:  # each node's first limit + offset rows, merged (vecdb.top_rows)
            with reading_at(level):  # (fetch holds the primary key: the ties' order)
                cols = self.r.querynode.query_top(info, ts, flt, parts, list(dict.fromkeys(
                    fetch + order_fields(schema, shape.order))), shape.order, limit, offset, sealed_only=sealed_only)
        elif shape.order:  # every matching row, ordered and paged here (ties by primary key)
            with reading_at(level):
                cols = self.r.querynode.query(info, ts, flt, parts, list(dict.fromkeys(
                    fetch + order_fields(schema, shape.order))), None, 0, sealed_only=sealed_only)
            cols = order_query_rows(schema, cols, shape.order, limit, offset)
        else:
            with reading_at(level):
                cols = self.r.querynode.query(info, ts, flt, parts, fetch, limit, offset, sealed_only=sealed_only)
        resp = query_results(schema, cols, out_fields, dyn_keys, info.name, times)
        resp.session_ts = ts
        return resp

    def _element_query(self, info, ts, flt, parts, fetch, limit, offset, match, sealed_only, level,
                       shape, cursor: tuple | None = None) -> milvus_pb2.QueryResults:
        """A query whose filter ends in ``element_filter(s, pred)`` (the whole filter or the last operand of
        its top-level ``and``), Milvus 3.0's element-level query: the entities in primary-key order, each
        with the offsets of its elements satisfying ``pred`` (``QueryResults.element_indices``, one entry
        per entity; pymilvus 3.0 returns one row per offset, with an ``offset`` key). ``limit`` and
        ``offset`` count elements as Milvus's proxy does (vecdb.element_search.page_elements). An entity
        passing the filter has a matching element, so the first ``offset + limit`` entities cover the page.
        ``cursor``: a query iterator's ``(last primary key, last element offset)`` (pymilvus 3.0 sends them
        with its ``pk >= last`` filter): that entity's elements up to that offset were returned already."""
        out_fields, dyn_keys, times = shape
        pk = info.schema.primary_field.name
        extra = [name for name, _ in match.columns if name not in fetch]
        wanted = fetch + extra + ([pk] if pk not in fetch else [])
        with reading_at(level):
            # (a cursor's entity may have no element left to return: one entity more)
            more = 0 if cursor is None else 1
            cols = self.r.querynode.query(info, ts, flt, parts, wanted,
                                          None if limit is None else offset + limit + more, 0, sealed_only=sealed_only)
        n = len(cols[pk])
        if limit is None and offset:  # (with a limit the rows come sorted by primary key)
            order = np.argsort(cols[pk], kind="stable")
            cols = {k: v[order] for k, v in cols.items()}
        positions, counts = element_search.matched_elements(cols, n, match)
        if cursor is not None and n:
            owner = np.repeat(np.arange(n), counts)
            keep = ~((cols[pk][owner] == cursor[0]) & (positions <= cursor[1]))
            positions, counts = positions[keep], np.bincount(owner[keep], minlength=n).astype(np.int64)
            left = counts > 0  # (an entity whose elements were all returned already: not again)
            cols, counts = {k: v[left] for k, v in cols.items()}, counts[left]
        first, stop, skip, start = element_search.page_elements(counts, limit, offset)
        counts = counts[first:stop].copy()
        if len(counts):
            counts[0] -= skip
        positions = positions[start:start + int(counts.sum())]
        cols = {k: v[first:stop] for k, v in cols.items() if k in fetch}
        resp = query_results(info.schema, cols, out_fields, dyn_keys, info.name, times)
        for part in np.split(positions, np.cumsum(counts)[:-1]) if len(counts) else ():
            resp.element_indices.add().indices.data.extend(part.tolist())
        resp.session_ts = ts
        return resp


"""RPC: hybrid search (several ANN requests, each over its own vector field with its own filter,
parameters and limit, fused into one ranking by RRF or weighted scores: ``vecdb.proxy.rerank``).

Each ANN request runs as a search of its own through the query node interface, the same one a
plain search uses (in a cluster, the router), all at one snapshot timestamp, so the requests see
the same data. As in Milvus, a request's own ``offset`` is ignored (the hybrid ``offset`` applies
to the fused list) and the output fields of a fused hit are those of the request that returned
it first.

With ``group_by_field`` (Milvus 2.5+; ``group_size``, ``strict_group_size``, ``rank_group_scorer``
in the rank parameters) each request is a grouping search of its own limit of groups, and the fused
hits are grouped again (``vecdb.proxy.grouping.group_fused``): ``limit`` groups after ``offset``.

Element-level ANN requests (a plain vector on a struct's vector sub-field: vecdb.element_search)
return struct elements, identified by (primary key, element offset) as in Milvus 3.0's struct
hybrid search design: when every ANN request is element-level on sub-fields of one struct, the
fusion is over those (pk, element) keys, so an element found by several requests adds up its
scores, and each fused hit carries its element's offset (``element_indices``); with
``group_by_field`` on the primary key the fused elements are grouped by entity. Mixing them with
row-level requests (or another struct's) is refused: their keys are not comparable.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pymilvus.grpc_gen import milvus_pb2

from vecdb import element_search, errors, namespaces
from vecdb.limits import LIMITS
from vecdb.proxy import function_chain, search_aggregation
from vecdb.proxy.base import check_read_partition_names, kv_dict, rpc
from vecdb.proxy.boost import Boost
from vecdb.proxy.consistency import level_of, reading_at
from vecdb.proxy.decay import fetched
from vecdb.proxy.grouping import group_fused, group_keys, parse_group_by, parse_group_scorer
from vecdb.proxy.quota import admit_collection
from vecdb.proxy.rerank import Ranker, SubResult, function_ranker, fuse, fused_columns, ranker_from_rank_params
from vecdb.proxy.results import round_scores, search_results
from vecdb.proxy.rpc_search import (
    SearchPlan,
    SearchRpcs,
    _element_level,
    _int_param,
    _round_decimal,
    add_group_values,
    with_field,
)
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.request_db import db_of
from vecdb.schema import valid_key
from vecdb.timestamptz import TIME_FIELDS_KEY, ZONE_KEY, time_output

MAX_ANN_REQUESTS = 1024  # Milvus: defaultMaxSearchRequest
# sub-request parameters the hybrid request owns (pymilvus copies them into every ANN request). An ANN
# request's round_decimal is its own: Milvus's segcore rounds that request's distances before the fusion
# (the hybrid request's rounds the fused scores)
_HYBRID_OWNED = {"offset"}
# rank parameters an ANN request takes when it has none of its own (pymilvus sends them in every ANN
# request, Milvus reads the hybrid request's): TIMESTAMPTZ's zone (filters, reply) and time_fields
_SHARED = (ZONE_KEY, TIME_FIELDS_KEY)


def _rounded(hits: Hits, decimals: int) -> Hits:
    """An ANN request's distances rounded as its own search rounds them (order kept: rounding is monotone)."""
    if decimals < 0:
        return hits
    return dataclasses.replace(hits, scores=round_scores(hits.scores, decimals, single=True))


def _ranker(request, n_requests: int, schema, zone: str) -> Ranker:
    ranker = function_ranker(request, n_requests, schema, zone)
    if ranker is not None and ranker.boost is not None:  # (Milvus: not among its fusion rankers)
        raise errors.InvalidParameter("Unsupported rerank function: [boost] , list of supported "
                                      "[decay,model,rrf,weighted]: a boost ranker can only rescore a search "
                                      "or one ANN request of a hybrid search")
    return ranker or ranker_from_rank_params(kv_dict(request.rank_params), n_requests)


def _sub_boost(sub, schema, zone: str) -> Boost | None:
    """An ANN request's own boost ranker (Milvus docs: allowed on an AnnSearchRequest); other rankers
    there are refused."""
    ranker = function_ranker(sub, 1, schema, zone)
    if ranker is not None and ranker.boost is None:
        raise errors.InvalidParameter("an ANN request of a hybrid search takes only a boost ranker")
    return None if ranker is None else ranker.boost


def _window(rank: dict[str, str]) -> tuple[int, int]:
    """The fused list's (limit, offset): Milvus's checks and words."""
    if "limit" not in rank:
        raise errors.InvalidParameter("limit not found in rank_params")
    limit, offset = _int_param(rank, "limit", 0), _int_param(rank, "offset", 0)
    if offset < 0:
        raise errors.InvalidParameter(f"invalid max query result window, offset [{offset}] is invalid, "
                                      "should be gte than 0")
    if limit <= 0:
        raise errors.InvalidParameter(f"invalid max query result window, limit [{limit}] is invalid, "
                                      "should be greater than 0")
    if limit + offset > LIMITS.max_topk:
        raise errors.InvalidParameter(f"invalid max query result window, (offset+limit) should be in range "
                                      f"[1, {LIMITS.max_topk}], but got {limit + offset}")
    return limit, offset


class HybridRpcs(SearchRpcs):
    @rpc(milvus_pb2.SearchResults)
    def HybridSearch(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        admit_collection(self.r, "HybridSearch", request, context, info)  # its database's and its own limits
        self.require_loaded(info)
        for sub in request.requests:
            if search_aggregation.requested(sub):  # (Milvus: a plain search's only)
                raise errors.InvalidParameter("search_aggregation is not supported in hybrid_search")
            function_chain.refuse_on_ann_request(sub)
        reqs = list(request.requests)
        if not reqs:
            raise errors.InvalidParameter("hybrid search needs at least one ANN search request")
        if len(reqs) > MAX_ANN_REQUESTS:
            raise errors.InvalidParameter(f"maximum of ann search requests is {MAX_ANN_REQUESTS}")
        rank = kv_dict(request.rank_params)
        zone = time_output(rank, self.zone_of(info)).zone  # (its timezone: each ANN request's too)
        ranker = _ranker(request, len(reqs), info.schema, zone)
        limit, offset = _window(rank)
        chain = function_chain.parse_chains(request, info.schema, hybrid=True)  # (vecdb.proxy.function_chain)
        round_decimal = _round_decimal(rank)
        level = level_of(request, info.consistency_level)
        ts = self._snapshot_ts(info, request, level)
        ns = namespaces.of_request(info, request)  # every ANN request reads that namespace (vecdb.namespaces)
        check_read_partition_names(request.partition_names)
        parts = self.partition_ids(info, namespaces.scoped_partitions(info, ns, request.partition_names))
        for sub in reqs:
            if ns is not None:
                sub.namespace = ns
        plans: list[SearchPlan] = []
        specs: list[SearchSpec] = []
        boosts = [_sub_boost(sub, info.schema, zone) for sub in reqs]
        for sub in reqs:
            own = {kv.key for kv in sub.search_params}
            pairs = [kv for kv in sub.search_params if kv.key not in _HYBRID_OWNED]
            pairs += [kv for kv in request.rank_params if kv.key in _SHARED and kv.key not in own]
            plan = self._search_plan(info, pairs, request.output_fields)
            if chain is not None:  # the fields the chain reads, with every hit
                plan = dataclasses.replace(plan, fetch=chain.fetch(plan.fetch))
            if plan.group is not None and not rank.get("group_by_field"):  # (pymilvus copies the hybrid's)
                raise errors.InvalidParameter("not support search_group_by operation in the hybrid search")
            spec = self._search_spec(info, sub, plan, ts)
            if specs and len(spec.queries) != len(specs[0].queries):
                raise errors.InvalidParameter(
                    f"sub search request nq should be the same: invalid parameter"
                    f"[expected={len(specs[0].queries)}][actual={len(spec.queries)}]")
            plans.append(plan)
            specs.append(spec)
        element_level = _check_element_level(plans)
        group = None
        for plan in plans:  # (each request's vector type: grouping refuses binary vectors)
            group = parse_group_by(info.schema, rank, {}, plan.field.dtype)
        if chain is not None:
            function_chain.refuse_in_hybrid(group is not None, element_level)
        decay = ranker.decay

        def fetch(plan: SearchPlan) -> list[str]:  # a decay ranker's field read with every hit
            return fetched(decay, plan.fetch)
        if group is not None and any(boosts):
            raise errors.InvalidParameter("a boost ranker in an ANN request cannot be combined with group_by_field")
        with reading_at(level):
            if group is None:  # (an ANN request with a boost ranker: its hits rescored and re-sorted)
                hits = [self.r.querynode.search(info, spec, parts, fetch(plan)) if boost is None
                        else self.boosted_hits(info, spec, dataclasses.replace(plan, offset=0, fetch=fetch(plan)),
                                               parts, boost)
                        for plan, spec, boost in zip(plans, specs, boosts)]
            else:  # each request a grouping search of its own limit of groups (Milvus 2.5+)
                hits = [self.grouped_hits(info, spec, dataclasses.replace(plan, fetch=fetch(plan)), parts, group)
                        for plan, spec in zip(plans, specs)]
        hits = [_rounded(h, p.round_decimal) for h, p in zip(hits, plans)]
        nq = len(specs[0].queries)
        keys = _ElementKeys(hits) if element_level else None  # element hits: fused on (pk, element)
        subs = [SubResult(h.topks, h.pks if keys is None else keys.codes[i], h.scores, p.metric,
                          None if decay is None else decay.values_of(h.columns))
                for i, (h, p) in enumerate(zip(hits, plans))]
        plan = plans[0]
        if group is None:
            fused = fuse(ranker, subs, nq, *((limit, offset) if chain is None else (limit + offset, 0)))
            topks, pks, scores = fused.topks, fused.pks, fused.scores
            columns = fused_columns(fused, [h.columns for h in hits], plan.fetch)
            if chain is not None:  # the fused hits through the chain, then the page
                topks, pks, scores, columns = function_chain.rerun_fused(chain, topks, pks, scores, columns, limit,
                                                                         offset)
        else:  # every fused hit, then groups of them (vecdb.proxy.grouping.group_fused)
            fused = fuse(ranker, subs, nq, sum(len(h.pks) for h in hits), 0)
            name = group.field.name
            columns = fused_columns(fused, [h.columns for h in hits],
                                    with_field(with_field(plan.fetch, name), valid_key(name)))
            topks, rows = group_fused(fused.topks, fused.pks, fused.scores,
                                      group_keys(columns[name], columns.get(valid_key(name))), group.size,
                                      limit, offset, parse_group_scorer(rank), group.strict)
            pks, scores, columns = fused.pks[rows], fused.scores[rows], {k: v[rows] for k, v in columns.items()}
        if keys is not None:
            pks, elements = keys.decode(pks)
        resp = search_results(info.schema, nq, topks, pks, scores, columns, plan.out_fields, plan.dyn_keys,
                              round_decimal, plan.times, fused=True)
        if keys is not None and len(elements):  # each fused hit's element offset
            resp.results.element_indices.data.extend(elements.tolist())
        if group is not None:
            add_group_values(resp, info.schema, columns, group)
        resp.collection_name = info.name
        resp.session_ts = ts
        return resp


def _check_element_level(plans: list[SearchPlan]) -> bool:
    """Whether the hybrid search's ANN requests are element-level ones (all on one struct); mixing
    element-level and row-level requests, or two structs, is refused."""
    flags = [_element_level(p) for p in plans]
    if not any(flags):
        return False
    structs = {p.field.struct_name for p in plans}
    if not all(flags) or len(structs) != 1:
        mixed = next(p.field.name for p, f in zip(plans, flags) if f)
        raise errors.InvalidParameter(
            f"element-level search (field {mixed}) in a hybrid search needs every ANN request to be an "
            "element-level search on the same struct field: element hits and entity hits cannot be fused")
    return True


class _ElementKeys:
    """The (primary key, element offset) of every element hit of the ANN requests as one int64 code
    each, ordered as the pairs are (primary key first), so the fusion's ties fall in that order."""

    def __init__(self, hits: list[Hits]):
        pks = np.concatenate([h.pks for h in hits])
        elems = np.concatenate([np.asarray(h.columns.get(element_search.ELEMENT_COLUMN, np.empty(0, np.int64)),
                                           np.int64) for h in hits])
        self._pk_values: np.ndarray | None = None
        if pks.dtype == object:  # string keys: their rank stands for them
            self._pk_values, ranks = np.unique(pks, return_inverse=True)
        else:
            ranks = pks.astype(np.int64)
        pairs = np.stack([ranks.ravel().astype(np.int64), elems], axis=1) if len(pks) else np.empty((0, 2), np.int64)
        self._pairs, inverse = np.unique(pairs, axis=0, return_inverse=True)
        codes = inverse.ravel().astype(np.int64)
        bounds = np.cumsum([len(h.pks) for h in hits])[:-1]
        self.codes = np.split(codes, bounds)

    def decode(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The primary keys and element offsets of fused ``codes``."""
        pairs = self._pairs[np.asarray(codes, np.int64)]
        pks = pairs[:, 0] if self._pk_values is None else self._pk_values[pairs[:, 0]]
        return pks, pairs[:, 1]

"""Milvus 3.0's query aggregation (``group_by_fields`` and aggregate expressions in ``output_fields``)
and query ORDER BY (``order_by_fields``).

Aggregation is pushed down: the query nodes reduce their segments' matching rows to per-group
partials (``vecdb.group_partials``: keys, row counts, per field non-null count, sums, min, max), the
proxy merges the nodes' partials (``QueryNodeRouter.query_partials``) and ``aggregate_reply``
finishes the aggregates, orders and pages the groups; ``aggregate_rows`` is the same over rows.
A plain query's ORDER BY with a limit is pushed down too: each query node sends its first
``limit + offset`` rows by the sort keys, the proxy merges them (``vecdb.top_rows``,
``QueryNodeRouter.query_top``); without a limit every matching row is ordered here
(``order_query_rows``), with the same ordering.

pymilvus 3.0 sends them as ``QueryRequest.query_params``: ``group_by_fields="a,b"`` (from
``query(..., group_by_fields=["a", "b"])``) and ``order_by_fields="price:desc,id:asc"`` (from
``order_by_fields=[{"field": "price", "order": "desc"}]`` or ``order_by=["price:desc"]``); the
aggregate expressions ride in ``output_fields``: ``count(*)``, ``count(f)``, ``sum(f)``, ``avg(f)``,
``min(f)``, ``max(f)``, case-insensitive (Milvus's ``(?i)^(sum|count|avg|min|max)\\s*\\(\\s*([\\w*]*)\\s*\\)$``).

Semantics (Milvus PR #44394, internal/agg, tests/python_client/testcases/test_query_aggregation.py):

* Each aggregate's reply column is named by the request's text (``"COUNT(c2)"`` stays as written).
  ``count(*)`` counts rows, ``count(f)`` f's non-null values (INT64); ``sum`` of integers is INT64,
  of FLOAT/DOUBLE a DOUBLE; ``avg`` is a DOUBLE; ``min``/``max`` keep the field's type (VARCHAR
  and TIMESTAMPTZ too). Nulls are skipped; a group with no value gets null (sum, avg, min, max).
* ``sum``/``avg``: INT8..INT64, FLOAT, DOUBLE; ``min``/``max``: those, VARCHAR and TIMESTAMPTZ;
  ``count``: any field. Otherwise 1100 ``aggregation operator sum does not support data type VarChar``.
* GROUP BY fields: BOOL, INT8..INT64, VARCHAR, TIMESTAMPTZ (1100 ``group by field f has unsupported
  data type Float`` for FLOAT, DOUBLE, JSON, ARRAY, vectors); nulls form one group of their own.
  ``output_fields`` may hold only group fields and aggregates (1100 ``output field 'c3' is not
  allowed``); group fields left out of them still group. Without aggregates it is a DISTINCT.
  Without group fields the aggregates are global: one row (SQL's answer over no rows: count 0).
* ``limit``/``offset`` count groups; without a limit every group comes back, and an empty filter
  needs no limit. Groups come back ordered by their key values (Milvus leaves the order open)
  unless ``order_by_fields`` orders them: by group fields or by aggregate expressions.
* ORDER BY on a plain query: BOOL, integers, FLOAT, DOUBLE, VARCHAR fields (vecdb.proxy.order_by's
  parser and refusals); the sort-only fields are not returned unless asked for; ties go by primary
  key. Nulls sort as the largest value: last ascending (Milvus's test_order_by_nullable_field),
  first descending.
* Refused (1100): with a query iterator, with an element-level (``element_filter``) query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import errors, top_rows
from vecdb.group_partials import ROWS, PartialSpec, check_int64, fetched, row_partials
from vecdb.group_partials import group_reduce as group_reduce  # (search aggregation's metrics)
from vecdb.group_partials import ranks as _ranks
from vecdb.proxy.fieldencode import fill_field_data
from vecdb.proxy.order_by import ascending, parse_order_by
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.timestamptz import UTC_OUTPUT, TimeOutput
from vecdb.top_rows import TopSpec

GROUP_BY_KEY = "group_by_fields"
ORDER_BY_KEY = "order_by_fields"
COUNT_STAR = "count(*)"

_AGG_RE = re.compile(r"(?i)^(sum|count|avg|min|max)\s*\(\s*([\w*]*)\s*\)$")
_NUMERIC = frozenset({DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT,
                      DataType.DOUBLE})
_ORDERED = _NUMERIC | {DataType.VARCHAR, DataType.TIMESTAMPTZ}
_GROUPABLE = frozenset({DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64,
                        DataType.VARCHAR, DataType.TIMESTAMPTZ})


@dataclass(frozen=True)
class Aggregate:
    name: str  # the reply's column: the request's text
    op: str  # count, sum, avg, min, max
    field: FieldSchema | None  # None: count(*)

    @property
    def key(self) -> tuple[str, str]:
        return self.op, self.field.name if self.field is not None else "*"


@dataclass(frozen=True)
class QueryShape:
    """What a query asks beyond rows: ``grouped`` (aggregates or group_by_fields), the group fields,
    the aggregates (the requested ones first, then those only ordering needs), the reply's columns in
    order (group fields' names and aggregates' names), and ``order``: ``((column, ascending), ...)``."""

    grouped: bool = False
    group_by: tuple[FieldSchema, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()
    outputs: tuple[str, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()


NONE = QueryShape()


def _type_name(dt: DataType) -> str:
    return schema_pb2.DataType.Name(int(dt))


def parse_aggregate(schema: CollectionSchema, text: str) -> Aggregate | None:
    """The aggregate expression ``text`` (None: not one)."""
    m = _AGG_RE.match(text.strip())
    if m is None:
        return None
    op, arg = m.group(1).lower(), m.group(2).strip()
    if not arg:
        raise errors.InvalidParameter(f"aggregation expression '{text.strip()}' names no field: "
                                      f"use {op}(<field>)" + (" or count(*)" if op == "count" else ""))
    if arg == "*":
        if op != "count":
            raise errors.InvalidParameter(f"aggregation operator {op} does not support '*'")
        return Aggregate(text.strip(), op, None)
    field = schema.field(arg)
    if field is None or field.is_dynamic or field.is_hidden:
        raise errors.FieldNotFound(f"field {arg} not exist")
    dt = field.dtype
    if (op in ("sum", "avg") and dt not in _NUMERIC) or (op in ("min", "max") and dt not in _ORDERED):
        raise errors.InvalidParameter(f"aggregation operator {op} does not support data type {_type_name(dt)}")
    return Aggregate(text.strip(), op, field)


def _items(raw) -> list[str]:
    return [s.strip() for s in str(raw or "").split(",") if s.strip()]


def plan_query(schema: CollectionSchema, requested: list[str], params: Mapping[str, str],
               iterator: bool = False) -> QueryShape:
    """The request's aggregation / group by / order by (``NONE``: a plain query, or ``count(*)`` alone,
    which the caller counts as before)."""
    group_names = _items(params.get(GROUP_BY_KEY))
    order_raw = str(params.get(ORDER_BY_KEY) or "").strip()
    aggs: dict[tuple[str, str], Aggregate] = {}
    plain: list[str] = []
    outputs: list[str] = []
    for raw in requested:
        text = raw.strip()
        agg = parse_aggregate(schema, text)
        if agg is None:
            plain.append(text)
            outputs.append(text)
        elif agg.key not in aggs:
            aggs[agg.key] = agg
            outputs.append(agg.name)
    bare_count = list(aggs) == [("count", "*")] and not plain
    grouped = bool(group_names) or (bool(aggs) and not bare_count)
    if not grouped:
        if not order_raw:
            return NONE
        if iterator:
            raise errors.InvalidParameter("order_by is not supported when using query iterator")
        if bare_count:
            return NONE  # one row: nothing to order
        return QueryShape(order=parse_order_by(schema, order_raw))
    if iterator:
        raise errors.InvalidParameter("group_by_fields and aggregation are not supported with a query iterator")
    group_by: list[FieldSchema] = []
    for name in dict.fromkeys(group_names):
        f = schema.field(name)
        if f is None or f.is_dynamic or f.is_hidden:
            raise errors.InvalidParameter(f"group by field {name} does not exist in collection schema")
        if f.dtype not in _GROUPABLE:
            raise errors.InvalidParameter(f"group by field {name} has unsupported data type {_type_name(f.dtype)}")
        group_by.append(f)
    group_set = {f.name for f in group_by}
    for name in plain:
        if name not in group_set:
            raise errors.InvalidParameter(
                f"output field '{name}' is not allowed: an aggregation query outputs only its "
                "group_by_fields and aggregation expressions (count, sum, avg, min, max)")
    outputs = list(dict.fromkeys(outputs))
    if not outputs:
        raise errors.InvalidParameter("an aggregation query needs output_fields: group_by_fields or aggregations")
    order: list[tuple[str, bool]] = []
    extra: dict[tuple[str, str], Aggregate] = {}
    for item in _items(order_raw):
        # (an aggregate's parentheses never hold ':' or ',': split at the last ':' after them)
        close = item.rfind(")")
        head, sep, direction = item[close + 1:].partition(":") if close >= 0 else item.partition(":")
        name = (item[:close + 1] + head).strip() if close >= 0 else head.strip()
        asc = ascending(name, direction)
        agg = parse_aggregate(schema, name)
        if agg is not None:
            found = aggs.get(agg.key) or extra.get(agg.key)
            if found is None:
                extra[agg.key] = found = Aggregate(f"$order.{len(extra)}", agg.op, agg.field)
            order.append((found.name, asc))
        elif name in group_set:
            order.append((name, asc))
        else:
            raise errors.InvalidParameter(
                f"order_by field '{name}' must be a group_by field or an aggregation in an aggregation query")
    return QueryShape(True, tuple(group_by), tuple(aggs.values()) + tuple(extra.values()), tuple(outputs),
                      tuple(order))


def partial_spec(shape: QueryShape) -> PartialSpec:
    """What the query nodes compute for ``shape`` (vecdb.group_partials)."""
    return PartialSpec(tuple(f.name for f in shape.group_by), tuple(dict.fromkeys(a.key for a in shape.aggregates)))


def fetched_columns(schema: CollectionSchema, shape: QueryShape) -> list[str]:
    """The columns an aggregation reads: group fields and aggregated fields (``count(f)`` only needs
    f's validity mask), with the validity masks of nullable ones."""
    return fetched(schema, partial_spec(shape))


def sort_keys(columns: Mapping[str, np.ndarray], valid: Mapping[str, np.ndarray | None], n: int,
              order: tuple[tuple[str, bool], ...], tie: np.ndarray | None = None) -> np.ndarray:
    """The permutation ordering ``n`` rows by ``order`` (nulls as the largest value), ties by ``tie``
    (ranks), then by position: one np.lexsort."""
    keys: list[np.ndarray] = []  # most significant first
    for name, asc in order:
        present = valid.get(name)
        p = np.ones(n, bool) if present is None else np.asarray(present, bool)
        rank, _ = _ranks(columns[name], p)
        rank = np.where(p, rank, 0)
        if asc:
            keys += [(~p).astype(np.int8), rank]  # nulls after every value
        else:
            keys += [p.astype(np.int8), -rank]  # nulls before every value
    if tie is not None:
        keys.append(tie)
    if not keys:
        return np.arange(n)
    return np.lexsort(keys[::-1])


def _page(n: int, limit: int | None, offset: int) -> slice:
    return slice(min(offset, n), n if limit is None else min(n, offset + limit))


def order_query_rows(schema: CollectionSchema, cols: dict[str, np.ndarray], order: tuple[tuple[str, bool], ...],
                     limit: int | None, offset: int) -> dict[str, np.ndarray]:
    """A plain query's rows (every matching one) ordered by ``order``, ties by primary key, then paged:
    the ordering a pushed-down ORDER BY uses (``vecdb.top_rows``), over all of them."""
    n = len(cols[schema.primary_field.name])
    spec = TopSpec.of(schema, order, n if limit is None else min(n, offset + limit))
    return top_rows.merge(spec, [cols], list(cols), offset)


def _out_field(name: str, dtype: DataType, nullable: bool, like: FieldSchema | None = None) -> FieldSchema:
    return FieldSchema(name=name, dtype=dtype, nullable=nullable,
                       field_id=like.field_id if like is not None else 0,
                       max_length=like.max_length if like is not None else 0)


def aggregate_rows(schema: CollectionSchema, shape: QueryShape, cols: Mapping[str, np.ndarray], limit: int | None,
                   offset: int, collection_name: str, times: TimeOutput = UTC_OUTPUT) -> milvus_pb2.QueryResults:
    """The reply of an aggregation query over ``cols`` (every matching row's ``fetched_columns``)."""
    return aggregate_reply(shape, row_partials(schema, partial_spec(shape), cols), limit, offset,
                           collection_name, times)


def aggregate_reply(shape: QueryShape, partial: Mapping[str, np.ndarray], limit: int | None, offset: int,
                    collection_name: str, times: TimeOutput = UTC_OUTPUT) -> milvus_pb2.QueryResults:
    """The reply of an aggregation query from the partial of every matching row (``partial_spec``'s,
    merged over segments and query nodes: vecdb.group_partials): the aggregates finished, the groups
    ordered and paged."""
    g = len(partial[ROWS])
    out_cols: dict[str, np.ndarray] = {}
    fields: dict[str, FieldSchema] = {}
    for f in shape.group_by:
        fields[f.name] = _out_field(f.name, f.dtype, f.nullable, f)
        out_cols[f.name] = np.asarray(partial[f.name])
        if f.nullable:
            out_cols[valid_key(f.name)] = np.asarray(partial[valid_key(f.name)], bool)
    for a in shape.aggregates:
        _finish(a, partial, out_cols, fields)
    # --- order and page the groups ---
    valid = {name: out_cols.get(valid_key(name)) for name, _ in shape.order}
    perm = sort_keys(out_cols, valid, g, shape.order)[_page(g, limit, offset)]
    out_cols = {k: np.asarray(v)[perm] for k, v in out_cols.items()}
    reply_schema = CollectionSchema(name=collection_name, fields=[fields[name] for name in shape.outputs])
    reply = milvus_pb2.QueryResults(collection_name=collection_name)
    fill_field_data(reply.fields_data.add, reply_schema, out_cols, list(shape.outputs), None, times)
    reply.output_fields.extend(shape.outputs)
    return reply


def _finish(a: Aggregate, partial: Mapping[str, np.ndarray], out: dict[str, np.ndarray],
            fields: dict[str, FieldSchema]) -> None:
    """One aggregate per group from the groups' partials, into ``out``/``fields``: avg = sum / count,
    an integer sum refused past the int64 range, a group without values null (sum, avg, min, max)."""
    f = a.field
    if f is None:
        out[a.name] = np.asarray(partial[ROWS], np.int64)
        fields[a.name] = _out_field(a.name, DataType.INT64, False)
        return
    count = np.asarray(partial[f"#n:{f.name}"], np.int64)
    if a.op == "count":
        out[a.name] = count
        fields[a.name] = _out_field(a.name, DataType.INT64, False)
        return
    out[valid_key(a.name)] = has = count > 0
    if a.op in ("sum", "avg"):
        approx = np.asarray(partial[f"#sum:{f.name}"], np.float64)
        integer = a.op == "sum" and f.dtype.is_integer
        if a.op == "avg":
            out[a.name] = approx / np.maximum(count, 1)
        elif integer:
            check_int64(approx, a.name)
            out[a.name] = np.asarray(partial[f"#isum:{f.name}"], np.int64)
        else:
            out[a.name] = approx
        fields[a.name] = _out_field(a.name, DataType.INT64 if integer else DataType.DOUBLE, True)
        return
    picked = np.asarray(partial[f"#{a.op}:{f.name}"])
    if f.dtype == DataType.VARCHAR:
        picked = np.where(has, picked, "").astype(object)
    else:
        picked = np.where(has, picked, 0)
    out[a.name] = picked
    fields[a.name] = _out_field(a.name, f.dtype, True, f)


def refuse_element_level(what: str) -> None:
    raise errors.InvalidParameter(f"{what} is not supported with an element-level query (element_filter)")


"""Search aggregation (Milvus 3.0 ``SearchRequest.search_aggregation``; pymilvus 3.0's
``SearchAggregation`` / ``TopHits``): a vector search's hits bucketed by scalar fields, level by level,
each bucket with its count, metrics, representative hits and sub-buckets (no gRPC here but the reply's
protos).

Milvus's rules (``internal/proxy/search_agg``: ``context_builder.go``, ``computer.go``, ``order.go``;
the reply from ``aggregateOperator`` / ``serializeAggBuckets``):

* the candidate pool: a grouping search on the composite key of every level's fields, its
  ``topK`` the product of the levels' ``size`` and its group size the largest ``top_hits.size``
  (1 without one): walking a query's hits best first, the first ``topK`` distinct composite keys
  each keep their best ``group size`` hits. The search's ``limit`` is ignored (pymilvus says so).
* a level buckets its parent's rows by its own fields (a composite key; null is a value, null ==
  null); ``count``: the bucket's rows; metrics ``count`` (non-null values; ``*``: rows), ``sum``,
  ``avg``, ``min``, ``max`` of a field or ``_score``, nulls skipped (a metric with no value is left
  out of the bucket).
* buckets come in first-appearance order (their best row), or sorted by ``order`` (metric aliases,
  ``_count``, ``_key``; default direction desc; null metric or key values sort lowest), ties kept
  in first-appearance order; then the first ``size`` kept.
* ``top_hits``: the bucket's rows sorted by its ``sort`` (fields or ``_score``; default direction desc,
  ``null_first`` per criterion), ties best hit first; the first ``size``, each with its primary key,
  score and the request's output fields.
* the reply: ``agg_buckets`` (every query's top-level buckets in turn) and ``agg_topks`` (how many
  belong to each query); the ordinary hit list is empty (``topks`` all 0).

vecdb computes this over the columns of the pool with numpy (codes from ``np.unique``, ``np.lexsort``).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import errors
from vecdb.limits import LIMITS
from vecdb.proxy.fieldencode import dumps_json
from vecdb.proxy.grouping import GroupBy, group_hits
from vecdb.proxy.query_aggregation import group_reduce
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.schema import DataType, FieldSchema, valid_key

MAX_LEVELS = 4  # Milvus: maxAggregationLevels
SCORE = "_score"
COUNT_ALL = "*"
METRIC_OPS = ("avg", "sum", "count", "min", "max")
_INTS = (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)
_NUMERIC = (*_INTS, DataType.FLOAT, DataType.DOUBLE)
KEY_TYPES = (DataType.BOOL, *_INTS, DataType.VARCHAR)  # BucketKeyEntry: int_val, string_val, bool_val
HIT_TYPES = (DataType.BOOL, *_INTS, DataType.FLOAT, DataType.DOUBLE, DataType.VARCHAR, DataType.JSON)
WINDOW_START = 256  # hits per query the pool search looks at first
RANK = "$agg.rank"  # the pool's column of each hit's place in the search's window (best first)


@dataclass(frozen=True)
class Metric:
    alias: str
    op: str
    field: FieldSchema | None  # None: ``_score`` or count(*)
    score: bool = False


@dataclass(frozen=True)
class TopHits:
    size: int
    sort: tuple  # ((field name or "_score", descending, null_first), ...)


@dataclass(frozen=True)
class Level:
    fields: tuple  # FieldSchema, ...
    size: int
    metrics: tuple  # Metric, ...
    order: tuple  # ((alias, "_count" or "_key", descending), ...)
    top_hits: TopHits | None


@dataclass(frozen=True)
class Aggregation:
    levels: tuple  # Level, ...
    groups: int  # the pool's distinct composite keys per query (product of the sizes)
    group_size: int  # rows kept per composite key (largest top_hits size, or 1)
    fetch: tuple  # the columns the pool's hits need read
    hit_fields: tuple  # FieldSchema of the output fields the top hits carry


def requested(request) -> bool:
    """Whether a SearchRequest asks for search aggregation."""
    return "search_aggregation" in request.DESCRIPTOR.fields_by_name and request.HasField("search_aggregation")


def _size(n: int) -> int:
    return n if n > 0 else 1  # Milvus normalizeAggregationSize


def _direction(raw: str, what: str) -> bool:
    """True for descending (the default)."""
    d = raw.strip().lower()
    if d not in ("", "asc", "desc"):
        raise errors.InvalidParameter(f"invalid {what} direction: direction must be asc or desc")
    return d != "asc"


def _field(schema, name: str, what: str) -> FieldSchema:
    name = name.strip()
    f = schema.field(name) if name else None
    if f is None or f.is_hidden:
        if "[" in name and "]" in name:
            raise errors.InvalidParameter(f"{what} {name!r}: JSON path is not yet supported with search_aggregation")
        raise errors.InvalidParameter(f"{what} {name!r}: field {name!r} not found in schema")
    if f.dtype == DataType.JSON or f.is_dynamic:
        raise errors.InvalidParameter(f"{what} {name!r}: JSON / dynamic fields are not yet supported with "
                                      "search_aggregation")
    return f


def _metric(schema, alias: str, spec) -> Metric:
    if not alias.strip():
        raise errors.InvalidParameter("metric alias cannot be empty")
    op = spec.op.strip().lower()
    if op not in METRIC_OPS:
        raise errors.InvalidParameter(f"invalid metric {alias!r}: unsupported metric op {spec.op!r}")
    name = spec.field_name.strip()
    if not name:
        raise errors.InvalidParameter(f"invalid metric {alias!r}: metric field_name is empty")
    if name == COUNT_ALL:
        if op != "count":
            raise errors.InvalidParameter(f"invalid metric {alias!r}: field_name '*' only supports count op")
        return Metric(alias, op, None)
    if name == SCORE:
        return Metric(alias, op, None, score=True)
    f = _field(schema, name, f"invalid metric {alias!r}: field")
    ok = (f.dtype in _NUMERIC if op in ("sum", "avg")
          else f.dtype in (*_NUMERIC, DataType.VARCHAR) if op in ("min", "max")
          else not (f.dtype.is_vector or f.dtype == DataType.ARRAY_OF_VECTOR))
    if not ok:
        raise errors.InvalidParameter(f"invalid metric {alias!r}: {op} is not supported on field {name} of type "
                                      f"{f.dtype.name}")
    return Metric(alias, op, f)


def parse(spec, schema, out_fields: list[str]) -> Aggregation:
    """A request's ``SearchAggregationSpec`` checked against ``schema`` (Milvus's messages);
    ``out_fields``: the request's output fields (the top hits' fields)."""
    depth, cur = 0, spec
    while True:
        depth += 1
        if depth > MAX_LEVELS:
            raise errors.InvalidParameter(f"search_aggregation nesting exceeds max {MAX_LEVELS} levels")
        if not cur.HasField("sub_aggregation"):
            break
        cur = cur.sub_aggregation
    levels: list[Level] = []
    seen: set[str] = set()
    fetch: list[str] = []
    cur = spec
    while cur is not None:
        if not cur.fields:
            raise errors.InvalidParameter("group_by level has no fields")
        if cur.size < 0:
            raise errors.InvalidParameter("search_aggregation size must be non-negative")
        own: list[FieldSchema] = []
        for name in cur.fields:
            f = _field(schema, name, "invalid group_by field")
            if f.dtype in (DataType.FLOAT, DataType.DOUBLE):
                raise errors.InvalidParameter(
                    f"group_by field {name!r}: FLOAT / DOUBLE fields are not supported with search_aggregation "
                    "(BucketKeyEntry has no float variant; equality on floats is fragile)")
            if f.dtype not in KEY_TYPES:
                raise errors.InvalidParameter(f"group_by field {name!r}: {f.dtype.name} fields are not supported with "
                                              "search_aggregation, supported: "
                                              + ", ".join(t.name for t in KEY_TYPES))
            if f.name in (g.name for g in own):
                raise errors.InvalidParameter(f"duplicated group_by field {name!r} in one level")
            if f.name in seen:
                raise errors.InvalidParameter(f"duplicated group_by field {name!r} across levels")
            seen.add(f.name)
            own.append(f)
            fetch.append(f.name)
        metrics = tuple(_metric(schema, alias, cur.metrics[alias]) for alias in sorted(cur.metrics))
        fetch += [m.field.name for m in metrics if m.field is not None]
        order = []
        for o in cur.order:
            key = o.key.strip()
            if not key:
                raise errors.InvalidParameter("order key is empty")
            if key not in ("_count", "_key") and key not in cur.metrics:
                raise errors.InvalidParameter(f"order key {key!r} is neither reserved key nor metric alias")
            order.append((key, _direction(o.direction, f"order direction for key {key!r}")))
        top = None
        if cur.HasField("top_hits"):
            if cur.top_hits.size < 0:
                raise errors.InvalidParameter("top_hits size must be non-negative")
            sort = []
            for s in cur.top_hits.sort:
                name = s.field_name.strip()
                if not name:
                    raise errors.InvalidParameter("top_hits.sort field_name is empty")
                desc = _direction(s.direction, f"top_hits.sort direction for {name!r}")
                if name != SCORE:
                    f = _field(schema, name, "invalid top_hits.sort field")
                    if f.dtype not in (*_NUMERIC, DataType.BOOL, DataType.VARCHAR):
                        raise errors.InvalidParameter(f"invalid top_hits.sort field {name!r}: {f.dtype.name} fields "
                                                      "cannot be sorted")
                    name = f.name
                    fetch.append(name)
                sort.append((name, desc, bool(s.null_first)))
            top = TopHits(_size(cur.top_hits.size), tuple(sort))
        levels.append(Level(tuple(own), _size(cur.size), metrics, tuple(order), top))
        cur = cur.sub_aggregation if cur.HasField("sub_aggregation") else None
    groups = math.prod(lv.size for lv in levels)  # (Python ints: int64 sizes' product wraps in numpy)
    group_size = max([lv.top_hits.size for lv in levels if lv.top_hits is not None], default=1)
    if groups * group_size > LIMITS.max_topk:
        raise errors.InvalidParameter(
            f"number of search_aggregation result entries is too large: the product of the sizes ({groups}) times "
            f"the largest top_hits size ({group_size}) should be at most {LIMITS.max_topk}")
    hit_fields = tuple(f for name in out_fields if (f := schema.field(name)) is not None and f.dtype in HIT_TYPES)
    fetch += [f.name for f in hit_fields]
    names = list(dict.fromkeys(fetch))
    masks = [valid_key(n) for n in names if (f := schema.field(n)) is not None and f.nullable]
    return Aggregation(tuple(levels), groups, group_size, tuple(names + masks), hit_fields)


def check_combination(*, group: bool, order: bool, offset: int, iterator: bool, radius: bool, ranker: bool,
                      highlighter: bool, element_level: bool) -> None:
    """Milvus's refusals of search parts search aggregation does not run with."""
    if group:
        raise errors.InvalidParameter("search_aggregation and group_by_field are mutually exclusive")
    if order:
        raise errors.InvalidParameter("order_by_fields is not supported with search_aggregation")
    if iterator:
        raise errors.InvalidParameter("search iterator is not supported with search_aggregation")
    if offset > 0:
        raise errors.InvalidParameter("offset is not supported with search_aggregation")
    if highlighter:
        raise errors.InvalidParameter("highlighter and search_aggregation cannot be used simultaneously")
    if ranker:
        raise errors.InvalidParameter("a rerank function (ranker) is not supported with search_aggregation")
    if radius:
        raise errors.InvalidParameter("range search is not supported with search_aggregation")
    if element_level:
        raise errors.InvalidParameter("element-level search is not supported with search_aggregation")


# --- the pool ---------------------------------------------------------------------------------


_IS_NOT = np.frompyfunc(operator.is_not, 2, 1)


def _column(columns: dict, f: FieldSchema, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A field's values among ``columns`` and its validity (True: a value)."""
    values = columns.get(f.name)
    if values is None:
        values = np.zeros(n, object)
    valid = columns.get(valid_key(f.name)) if f.nullable else None
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if values.dtype == object and n:  # (None: null too; ``is not``: an ARRAY's values are arrays)
        valid = valid & _IS_NOT(values, np.asarray(None, object)).astype(bool)
    return values, valid


def _codes(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list]:
    """Order-preserving codes of a column: 0 for null, 1.. for its distinct values in ascending order;
    and those values (index ``code - 1``)."""
    codes = np.zeros(len(values), np.int64)
    if not valid.any():
        return codes, []
    present = values[valid]
    if present.dtype == object:
        present = np.asarray(present.tolist())  # str (or bool) values: a typed array np.unique sorts
    uniq, inverse = np.unique(present, return_inverse=True)
    codes[valid] = inverse.reshape(-1) + 1
    return codes, uniq.tolist()


def composite_codes(columns: dict, fields, n: int) -> np.ndarray:
    """One int per row: the same for rows with the same values (null included) in every field."""
    if not fields:
        return np.zeros(n, np.int64)
    cols = [_codes(*_column(columns, f, n))[0] for f in fields]
    if len(cols) == 1:
        return cols[0]
    _, inverse = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def search_pool(search: Callable[[SearchSpec, list], Hits], spec: SearchSpec, fetch: list, agg: Aggregation,
                field: FieldSchema, widen: Callable[[int], dict]) -> Hits:
    """The candidate pool of each query: its hits best first grouped by the composite key of every
    level's fields, the first ``agg.groups`` keys with their best ``agg.group_size`` hits each (each
    key's hits together, keys in order of their best hit). The window of hits read widens until each
    query's pool is final (``widen(k)``: the search parameters for a top-``k`` window)."""
    keys = [f for lv in agg.levels for f in lv.fields]
    window = min(LIMITS.max_topk, max(WINDOW_START, 2 * agg.groups * agg.group_size))
    rule = GroupBy(field, agg.group_size, strict=True)
    while True:
        wide = dataclasses.replace(spec, limit=window, offset=0, params=widen(window))
        hits = search(wide, fetch)
        codes = composite_codes(hits.columns, keys, len(hits.pks))
        grouped = group_hits(hits.topks, codes, window, agg.groups, 0, rule)
        if all(grouped.done) or window >= LIMITS.max_topk:
            break
        window = min(LIMITS.max_topk, 4 * window)
    rows = grouped.rows
    columns = {k: v[rows] for k, v in hits.columns.items()}
    columns[RANK] = rows  # the window's order: best first within each query
    return Hits(grouped.topks, hits.pks[rows], hits.scores[rows], columns)


# --- aggregation ------------------------------------------------------------------------------


@dataclass
class _Pool:
    """The pool's columns, prepared once: each group field's codes and values, each metric / sort
    field's values and validity, the hits' ranks (their places in the search's window: best first
    within a query), primary keys and scores."""

    columns: dict
    n: int
    pks: np.ndarray
    scores: np.ndarray
    rank: np.ndarray
    fields: list
    keys: dict  # name -> (codes, values)
    cols: dict  # name -> (values, valid)

    def key(self, f: FieldSchema):
        got = self.keys.get(f.name)
        if got is None:
            got = self.keys[f.name] = _codes(*self.col(f))
        return got

    def col(self, f: FieldSchema):
        got = self.cols.get(f.name)
        if got is None:
            got = self.cols[f.name] = _column(self.columns, f, self.n)
        return got


def _rank(values: np.ndarray) -> np.ndarray:
    """Dense ascending ranks of ``values`` (ties equal)."""
    if not len(values):
        return np.zeros(0, np.int64)
    if values.dtype == object:
        values = np.asarray(values.tolist())
    return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _metric_values(pool: _Pool, m: Metric, rows: np.ndarray, g: np.ndarray, nb: int, counts: np.ndarray):
    """One metric per bucket: (values list, has list)."""
    if m.field is None and not m.score:  # count(*)
        return counts.tolist(), [True] * nb
    if m.field is None:  # _score
        values, valid, integer = pool.scores[rows].astype(np.float64), np.ones(len(rows), bool), False
    else:
        col, ok = pool.col(m.field)
        values, valid, integer = col[rows], ok[rows], m.field.dtype in _INTS
    gv = g[valid]
    if m.op == "count":
        return np.bincount(gv, minlength=nb).tolist(), [True] * nb
    # (the query aggregation's reduction)
    out, has = group_reduce(m.op, values[valid], gv, nb, m.alias, integer)
    return (out.tolist() if len(out) else [None] * nb), has.tolist()


def _set_metric(mv, m: Metric, value) -> None:
    if m.op == "count" or (m.op == "sum" and isinstance(value, int)):
        mv.int_val = int(value)
    elif isinstance(value, str):
        mv.string_val = value
    elif m.op in ("sum", "avg") or m.score or (m.field is not None and m.field.dtype in (DataType.FLOAT,
                                                                                          DataType.DOUBLE)):
        mv.double_val = float(value)
    else:
        mv.int_val = int(value)


def _set_hit_field(out, f: FieldSchema, value) -> None:
    """One field's value into a bucket key's entry or a top hit's field (null: no value set)."""
    out.field_id = f.field_id
    out.field_name = f.name
    if value is None:
        return
    if f.dtype == DataType.BOOL:
        out.bool_val = bool(value)
    elif f.dtype in _INTS:
        out.int_val = int(value)
    elif f.dtype == DataType.FLOAT:
        out.float_val = float(value)
    elif f.dtype == DataType.DOUBLE:
        out.double_val = float(value)
    elif f.dtype == DataType.VARCHAR:
        out.string_val = str(value)
    else:  # JSON: its bytes, as Milvus's data iterator gives them
        out.bytes_val = dumps_json(value)


def _order(level: Level, counts: np.ndarray, first: np.ndarray, key_codes: np.ndarray,
           metrics: dict) -> np.ndarray:
    """The buckets' order: by ``level.order`` (null metric values lowest), ties in first-appearance order."""
    keys: list[np.ndarray] = []  # most significant first
    for key, desc in level.order:
        sign = -1 if desc else 1
        if key == "_count":
            keys.append(sign * counts)
        elif key == "_key":
            keys += [sign * key_codes[:, i] for i in range(key_codes.shape[1])]
        else:
            values, has = metrics[key]
            has = np.asarray(has, bool)
            ranks = np.zeros(len(has), np.int64)
            if has.any():
                ranks[has] = _rank(np.asarray([v for v, h in zip(values, has) if h])) + 1
            keys.append(sign * ranks)
    keys.append(first)
    return np.lexsort(keys[::-1])


def _top_hits(pool: _Pool, top: TopHits, rows: np.ndarray, fields: tuple, pk_int: bool, out) -> None:
    keys: list[np.ndarray] = []
    for name, desc, null_first in top.sort:
        sign = -1 if desc else 1
        if name == SCORE:
            keys.append(sign * pool.scores[rows].astype(np.float64))
            continue
        f = next(f for f in pool.fields if f.name == name)
        values, valid = pool.col(f)
        values, valid = values[rows], valid[rows]
        ranks = np.zeros(len(rows), np.int64)
        if valid.any():
            ranks[valid] = _rank(values[valid])
        keys.append(np.where(valid, 1, 0) if null_first else np.where(valid, 0, 1))
        keys.append(sign * ranks)
    keys.append(pool.rank[rows])
    chosen = rows[np.lexsort(keys[::-1])[:top.size]]
    cols = {f.name: pool.col(f) for f in fields}
    for r in chosen.tolist():
        hit = out.add()
        if pk_int:
            hit.int_pk = int(pool.pks[r])
        else:
            hit.str_pk = str(pool.pks[r])
        hit.score = float(pool.scores[r])
        for f in fields:
            values, valid = cols[f.name]
            _set_hit_field(hit.fields.add(), f, values[r] if valid[r] else None)


def _level(pool: _Pool, agg: Aggregation, depth: int, rows: np.ndarray, out, pk_int: bool) -> int:
    """The buckets of ``rows`` (pool indexes, in pool order) at level ``depth``, appended to ``out``."""
    level = agg.levels[depth]
    if not len(rows):
        return 0
    per_field = [pool.key(f) for f in level.fields]
    stacked = np.stack([codes[rows] for codes, _ in per_field], axis=1)
    key_codes, first, g, counts = np.unique(stacked, axis=0, return_index=True, return_inverse=True,
                                            return_counts=True)
    g = g.reshape(-1)
    nb = len(counts)
    metrics = {m.alias: _metric_values(pool, m, rows, g, nb, counts) for m in level.metrics}
    chosen = _order(level, counts, first, key_codes, metrics)[:level.size]
    for b in chosen.tolist():
        bucket = out.add()
        for i, f in enumerate(level.fields):
            code = int(key_codes[b, i])
            _set_hit_field(bucket.key.add(), f, per_field[i][1][code - 1] if code else None)
        bucket.count = int(counts[b])
        for m in level.metrics:
            values, has = metrics[m.alias]
            if has[b]:
                _set_metric(bucket.metrics[m.alias], m, values[b])
        members = rows[g == b]
        if level.top_hits is not None:
            _top_hits(pool, level.top_hits, members, agg.hit_fields, pk_int, bucket.hits)
        if depth + 1 < len(agg.levels):
            _level(pool, agg, depth + 1, members, bucket.sub_groups, pk_int)
    return len(chosen)


def aggregate(schema, agg: Aggregation, pool: Hits) -> list:
    """Every query's top-level buckets (``schema_pb2.AggBucket``), one list per query. ``pool``: as
    ``search_pool`` gives it (its ``RANK`` column: each hit's place among its query's hits)."""
    n = len(pool.pks)
    fields = [f for lv in agg.levels for f in lv.fields]
    for lv in agg.levels:
        fields += [m.field for m in lv.metrics if m.field is not None]
        if lv.top_hits is not None:
            fields += [schema.field(name) for name, _, _ in lv.top_hits.sort if name != SCORE]
    rank = pool.columns.get(RANK)
    state = _Pool(pool.columns, n, pool.pks, np.asarray(pool.scores),
                  np.arange(n, dtype=np.int64) if rank is None else np.asarray(rank, np.int64),
                  list({f.name: f for f in fields + list(agg.hit_fields)}.values()), {}, {})
    pk_int = schema.primary_field.dtype == DataType.INT64
    out: list = []
    start = 0
    for k in pool.topks:
        holder = schema_pb2.SearchResultData()
        _level(state, agg, 0, np.arange(start, start + k, dtype=np.int64), holder.agg_buckets, pk_int)
        out.append(list(holder.agg_buckets))
        start += k
    return out


def reply(schema, collection: str, nq: int, buckets: list, ts: int) -> milvus_pb2.SearchResults:
    """The SearchResults of an aggregated search: no hits, the buckets and their per-query counts."""
    resp = milvus_pb2.SearchResults(collection_name=collection)
    res = resp.results
    res.num_queries = nq
    res.topks.extend([0] * nq)
    res.primary_field_name = schema.primary_field.name
    for per_query in buckets:
        res.agg_topks.append(len(per_query))
        res.agg_buckets.extend(per_query)
    resp.session_ts = ts
    return resp

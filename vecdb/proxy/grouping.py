"""Grouping search (``group_by_field``): at most ``group_size`` hits per distinct value of a scalar
field, ``limit`` groups (no gRPC here).

Milvus 2.4+'s rules (proxy ``reduceSearchResultDataWithGroupBy``, segcore's group iterator):
walking a query's hits best first, the first ``offset`` distinct values are skipped with all their
hits; after that a new value opens a group while fewer than ``limit`` groups are open, and a hit
joins its value's group while the group holds fewer than ``group_size``. Groups come out in the
order they were opened (by their best hit), each group's hits together, best first.

vecdb walks a window of each query's best hits (the query nodes' ordinary top-k search) and widens
the window while an answer is short: a query is answered when its window ran dry, or its ``limit``
groups are open and (with ``strict_group_size``, or when they already are) full. Without
``strict_group_size`` groups may hold fewer than ``group_size`` hits, as in Milvus, whose
segments stop as soon as ``limit`` groups are open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecdb import errors
from vecdb.schema import DataType, FieldSchema

MAX_GROUP_SIZE = 10  # Milvus: quotaAndLimits.limits.maxGroupSize
GROUPABLE = (DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.VARCHAR)


@dataclass(frozen=True)
class GroupBy:
    field: FieldSchema
    size: int = 1
    strict: bool = False


@dataclass
class Grouped:
    """Per query, the rows (indexes into the flattened window hits) to answer with, in output order;
    ``done[q]``: query ``q``'s answer is final (its window need not widen)."""

    topks: list[int]
    rows: np.ndarray
    done: list[bool]


def _truthy(raw) -> bool:
    return str(raw).strip().lower() in ("true", "1", "t")


def parse_group_by(schema, sp: dict, params: dict, anns_dtype: DataType) -> GroupBy | None:
    """The grouping a search asks for (``group_by_field``, ``group_size``, ``strict_group_size`` from
    the search parameters or their ``params``), validated; None without one."""
    name = sp.get("group_by_field") or params.get("group_by_field")
    if not name:
        return None
    field = schema.field(name)
    if field is None:
        raise errors.FieldNotFound(f"field not found[field={name}]: groupBy field not found in schema")
    if anns_dtype == DataType.BINARY_VECTOR:
        raise errors.InvalidParameter("not support search_group_by operation based on binary vector column")
    if field.dtype not in GROUPABLE:
        raise errors.InvalidParameter(
            f"Unsupported data type for group by: field {name} is {field.dtype.name}, supported: "
            + ", ".join(t.name for t in GROUPABLE))
    raw = sp.get("group_size", params.get("group_size"))
    size = 1
    if raw not in (None, ""):
        try:
            size = int(raw)
        except (TypeError, ValueError):
            raise errors.InvalidParameter(f"failed to parse input group size:{raw}") from None
        if size <= 0:
            raise errors.InvalidParameter(f"input group size:{size} is negative, failed to do search_groupby")
        if size > MAX_GROUP_SIZE:
            raise errors.InvalidParameter(
                f"input group size:{size} exceeds configured max group size:{MAX_GROUP_SIZE}")
    strict = _truthy(sp.get("strict_group_size", params.get("strict_group_size", False)))
    return GroupBy(field, size, strict)


def group_keys(values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The values hits are grouped on: a nullable field's null rows (``valid`` False) form one group of
    their own (None), apart from the placeholder value they hold (Milvus 2.6+: nullable group-by keys)."""
    if valid is None or bool(np.all(valid)):
        return values
    keys = values.astype(object)
    keys[~np.asarray(valid, bool)] = None
    return keys


def group_hits(topks: list[int], values: np.ndarray, window: int, limit: int, offset: int,
               group: GroupBy) -> Grouped:
    """Group each query's window of hits (``topks[q]`` consecutive ones, best first; ``values``: the
    group field of each hit)."""
    vals = values.tolist()
    out_topks: list[int] = []
    rows: list[int] = []
    done: list[bool] = []
    start = 0
    for n in topks:
        groups: dict = {}
        skipped: set = set()
        filled = 0
        for j in range(start, start + n):
            v = vals[j]
            if v in skipped:
                continue
            members = groups.get(v)
            if members is None:
                if len(skipped) < offset:
                    skipped.add(v)
                    continue
                if len(groups) >= limit:
                    continue
                members = groups[v] = []
            if len(members) < group.size:
                members.append(j)
                filled += 1
                if filled == limit * group.size:
                    break
        opened = len(groups) == limit
        done.append(n < window or filled == limit * group.size or (opened and not group.strict))
        for members in groups.values():
            rows.extend(members)
        out_topks.append(sum(len(m) for m in groups.values()))
        start += n
    return Grouped(out_topks, np.asarray(rows, np.int64), done)


GROUP_SCORERS = ("max", "sum", "avg")  # Milvus's rank_group_scorer (a hybrid search's groups)


def parse_group_scorer(rank: dict) -> str:
    """A grouped hybrid search's ``rank_group_scorer`` (default ``max``), as Milvus checks it."""
    name = str(rank.get("rank_group_scorer") or "max")
    if name not in GROUP_SCORERS:
        raise errors.InvalidParameter(f"input group scorer type: {name} is not supported!")
    return name


def group_fused(topks: list[int], pks: np.ndarray, scores: np.ndarray, values: np.ndarray, size: int,
                limit: int, offset: int, scorer: str, strict: bool = False) -> tuple[list[int], np.ndarray]:
    """A grouped hybrid search's answer from its fused hits (each query's ``topks[q]`` hits, best first,
    ties in primary-key order; ``values``: their group field), Milvus 2.5+'s rules (``rerank``
    ``newGroupingIDScores``): each value's first ``size`` hits form its group, scored by ``scorer``
    over them (max, sum or avg of the fused scores); groups ordered by that score, then the larger
    group, then the smaller first key; ``offset`` groups skipped, ``limit`` kept, each group's hits
    together; with ``strict`` (``strict_group_size``) a kept group of fewer than ``size`` hits is left
    out (not replaced by a later one). Returns the topks and the rows (indexes into the hits) in output
    order."""
    vals, keys, sc = values.tolist(), pks.tolist(), scores.tolist()
    out_topks: list[int] = []
    rows: list[int] = []
    start = 0
    for n in topks:
        groups: dict = {}
        for j in range(start, start + n):
            members = groups.setdefault(vals[j], [])
            if len(members) < size:
                members.append(j)

        def rank(members: list[int]) -> tuple:
            s = [sc[j] for j in members]
            final = max(s) if scorer == "max" else sum(s) if scorer == "sum" else sum(s) / len(s)
            return -final, -len(members), keys[members[0]]
        kept = sorted(groups.values(), key=rank)[offset:offset + limit]
        if strict:
            kept = [m for m in kept if len(m) >= size]
        out_topks.append(sum(len(m) for m in kept))
        rows.extend(j for m in kept for j in m)
        start += n
    return out_topks, np.asarray(rows, np.int64)

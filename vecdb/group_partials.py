"""Per-group partial aggregates of a query aggregation (vecdb.proxy.query_aggregation): what a query
node computes over its segments' matching rows, and what the proxy merges over segments and query
nodes before it finishes the aggregates and orders and pages the groups (Milvus's internal/agg and
proxy agg_reducer do the same). A query then ships a few rows per group instead of every matching row.

A partial is a dict of columns with one row per group, groups in key order:

* the group fields' values, and the validity mask (``valid_key(f)``) of a nullable one: null is a key;
* ``#rows``: the group's rows (``count(*)``);
* for an aggregated field f: ``#n:f``, its non-null values (``count(f)``, avg's divisor; a group
  with none has a null sum, avg, min and max); ``#sum:f``, their sum in float64 (FLOAT and DOUBLE
  sums, avg, and the range check of an integer sum); ``#isum:f`` for an integer field, their exact
  sum in int64, wrapping (modular addition: the total is exact wherever it fits in int64, and where
  ``#sum`` says it does not the proxy refuses it, whatever a part's own sum did); ``#min:f`` and
  ``#max:f`` (filler where ``#n:f`` is 0).

Rows are partials of one row each (``#rows`` 1): ``row_partials`` is ``merge`` over them, so the
per-group math (``group_reduce``'s helpers, also a search aggregation's) is one implementation,
called on segments' rows and on partials alike. Float sums add in another order than over the rows
one by one: a FLOAT/DOUBLE sum or an avg may differ from the row-at-a-time sum in its last bits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vecdb import errors, str_keys
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

ROWS = "#rows"  # present in every partial: how a proxy tells partials from rows (an older node's reply)
_OPS = ("count", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class PartialSpec:
    """What partials a query aggregation needs: its group fields and its aggregates as (op, field
    name), ``"*"`` for ``count(*)``. Travels to query nodes (proto/querynode.proto ``Aggregation``)."""

    group_by: tuple[str, ...] = ()
    aggregates: tuple[tuple[str, str], ...] = ()

    def texts(self) -> list[str]:
        return [f"{op}({name})" for op, name in self.aggregates]

    @classmethod
    def from_texts(cls, group_by: Sequence[str], texts: Sequence[str]) -> PartialSpec:
        aggs = []
        for t in texts:
            op, _, rest = t.partition("(")
            if op not in _OPS or not rest.endswith(")"):
                raise errors.InvalidParameter(f"malformed partial aggregate {t!r}")
            aggs.append((op, rest[:-1]))
        return cls(tuple(group_by), tuple(aggs))


def _needs(spec: PartialSpec) -> dict[str, set[str]]:
    """field -> the partial columns it needs (n, sum, min, max)."""
    out: dict[str, set[str]] = {}
    for op, name in spec.aggregates:
        if name == "*":
            continue
        need = out.setdefault(name, {"n"})
        if op in ("sum", "avg"):
            need.add("sum")
        elif op in ("min", "max"):
            need.add(op)
    return out


def _field(schema: CollectionSchema, name: str) -> FieldSchema:
    f = schema.field(name)
    if f is None:  # (a query node's copy of the schema behind the proxy's)
        raise errors.FieldNotFound(f"field {name} not exist")
    return f


def fetched(schema: CollectionSchema, spec: PartialSpec) -> list[str]:
    """The row columns partials are computed from: group fields and aggregated fields (``count(f)``
    only needs f's validity mask), with the validity masks of nullable ones."""
    names: list[str] = []
    for g in spec.group_by:
        names.append(g)
        if _field(schema, g).nullable:
            names.append(valid_key(g))
    for op, name in spec.aggregates:
        if name == "*":
            continue
        if op != "count":
            names.append(name)
        if _field(schema, name).nullable:
            names.append(valid_key(name))
    if not names:  # count(*) alone, grouped by nothing: the primary key gives the row count
        names.append(schema.primary_field.name)
    return list(dict.fromkeys(names))


# --- the per-group math ---------------------------------------------------------------------------

def ranks(values: np.ndarray, present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's rank among the distinct values (nulls take 0's place, their rank is meaningless) and
    the distinct values."""
    values = np.asarray(values)
    if values.dtype == object:
        values = np.where(present, values, "") if present is not None else values
        values = str_keys.exact(values)  # ("x" and "x\x00" stay two values)
    uniq, inv = np.unique(values, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), uniq


def group_ids(keys: Sequence[tuple[np.ndarray, np.ndarray | None]], n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(each group's first row, each row's group, the number of groups) of ``n`` rows by ``keys``
    ((values, validity mask or None) per group field; a null is a key of its own), groups in key order
    (nulls first). Without keys, one group, even over no rows."""
    if not keys:
        return np.zeros(min(n, 1), np.int64), np.zeros(n, np.int64), 1
    codes, sizes = [], []
    for values, present in keys:
        rank, uniq = ranks(values, present)
        codes.append(rank + 1 if present is None else np.where(present, rank + 1, 0))
        sizes.append(len(uniq) + 1)
    if float(np.prod(np.asarray(sizes, np.float64))) < 2.0**62:  # one int64 code per row, in key order
        code = np.zeros(n, np.int64)
        for c, size in zip(codes, sizes):
            code = code * size + c
        _, first, gid = np.unique(code, return_index=True, return_inverse=True)
    else:
        stacked = np.stack(codes, axis=1) if n else np.zeros((0, len(codes)), np.int64)
        _, first, gid = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    return first, gid.reshape(-1), len(first)


def group_sum(values: np.ndarray, gid: np.ndarray, g: int) -> np.ndarray:
    """Each group's sum in float64 (cannot wrap)."""
    return np.bincount(gid, weights=np.asarray(values).astype(np.float64), minlength=g)


def wrapping_sum(values: np.ndarray, gid: np.ndarray, g: int) -> np.ndarray:
    """Each group's sum in int64, modulo 2**64: exact wherever the true sum fits (``check_int64``)."""
    total = np.zeros(g, np.int64)
    np.add.at(total, gid, np.asarray(values).astype(np.int64))
    return total


def check_int64(approx: np.ndarray, what: str) -> None:
    """Refuse integer sums (``approx``: their float64 sums) outside the int64 range."""
    if np.abs(approx).max(initial=0.0) >= 2.0**63:
        raise errors.InvalidParameter(f"{what} overflows int64")


def group_extreme(op: str, values: np.ndarray, gid: np.ndarray, g: int) -> np.ndarray:
    """Each group's min or max (numbers, strings, timestamps), through the distinct values' ranks; empty
    when there are no values, a group without values gets any of them."""
    rank, uniq = ranks(values, None)
    if op == "min":
        best = np.full(g, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(best, gid, rank)
    else:
        best = np.full(g, -1, np.int64)
        np.maximum.at(best, gid, rank)
    return uniq[np.clip(best, 0, len(uniq) - 1)] if len(uniq) else uniq


def group_reduce(op: str, values: np.ndarray, gid: np.ndarray, g: int, what: str,
                 integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``op`` (sum, avg, min or max) of ``values`` (nulls left out already) in each of ``g`` groups
    (``gid``: each value's group), and whether a group has a value (a search aggregation's metrics).
    sum and avg add in float64, which cannot wrap; an ``integer`` field's sum is also kept exact in
    int64 and refused where it leaves that range. min and max return the values (empty when there are
    none)."""
    counts = np.bincount(gid, minlength=g)
    has = counts > 0
    if op in ("sum", "avg"):
        approx = group_sum(values, gid, g)
        if op == "avg":
            return approx / np.maximum(counts, 1), has
        if not integer:
            return approx, has
        check_int64(approx, what)
        return wrapping_sum(values, gid, g), has
    return group_extreme(op, values, gid, g), has


# --- partials -------------------------------------------------------------------------------------

def row_partials(schema: CollectionSchema, spec: PartialSpec, cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The partial of rows (``cols``: their ``fetched`` columns): each row a group of one, merged."""
    n = len(next(iter(cols.values()))) if cols else 0
    rows: dict[str, np.ndarray] = {}
    for name in spec.group_by:
        rows[name] = np.asarray(cols[name])
        if valid_key(name) in cols:
            rows[valid_key(name)] = np.asarray(cols[valid_key(name)], bool)
    rows[ROWS] = np.ones(n, np.int64)
    for name, need in _needs(spec).items():
        f = _field(schema, name)
        present = np.asarray(cols[valid_key(name)], bool) if f.nullable else np.ones(n, bool)
        rows[f"#n:{name}"] = present.astype(np.int64)
        if need == {"n"}:
            continue
        values = np.asarray(cols[name])
        if "sum" in need:
            rows[f"#sum:{name}"] = np.where(present, values.astype(np.float64), 0.0)
            if f.dtype.is_integer:
                rows[f"#isum:{name}"] = np.where(present, values.astype(np.int64), 0)
        for op in ("min", "max"):
            if op in need:
                rows[f"#{op}:{name}"] = values
    return merge(schema, spec, [rows])


def merge(schema: CollectionSchema, spec: PartialSpec,
          parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One partial of ``parts`` (at least one; segments', query nodes', or rows as partials of one row)."""
    assert parts, "merge needs a partial"
    cols = {k: np.concatenate([np.asarray(p[k]) for p in parts]) if len(parts) > 1 else np.asarray(parts[0][k])
            for k in parts[0]}
    n = len(cols[ROWS])
    keys = []
    for name in spec.group_by:
        present = cols.get(valid_key(name))
        keys.append((cols[name], None if present is None else np.asarray(present, bool)))
    first, gid, g = group_ids(keys, n)
    out: dict[str, np.ndarray] = {}
    for name, present in ((k, p) for k, (_, p) in zip(spec.group_by, keys)):
        key = cols[name][first]
        if present is not None:
            out[valid_key(name)] = valid = present[first]
            if key.dtype == object:  # (a null string's placeholder may be None)
                key = np.where(valid, key, "").astype(object)
        out[name] = key
    out[ROWS] = wrapping_sum(cols[ROWS], gid, g)
    for name, need in _needs(spec).items():
        f = _field(schema, name)
        counts = cols[f"#n:{name}"]
        out[f"#n:{name}"] = wrapping_sum(counts, gid, g)
        if "sum" in need:
            out[f"#sum:{name}"] = group_sum(cols[f"#sum:{name}"], gid, g)
            if f.dtype.is_integer:
                out[f"#isum:{name}"] = wrapping_sum(cols[f"#isum:{name}"], gid, g)
        kept = counts > 0
        for op in ("min", "max"):
            if op not in need:
                continue
            values = cols[f"#{op}:{name}"]
            picked = group_extreme(op, values[kept], gid[kept], g)
            if f.dtype == DataType.VARCHAR:
                picked = picked.astype(object) if len(picked) else np.full(g, "", object)
            elif not len(picked):
                picked = np.zeros(g, values.dtype if values.dtype != object else np.dtype(np.int64))
            out[f"#{op}:{name}"] = picked
    return out

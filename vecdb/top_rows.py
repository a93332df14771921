"""A plain query's ORDER BY with a limit, pushed down (``query(..., order_by_fields=[...], limit=10)``):
each query node keeps only its first ``limit + offset`` rows by the sort keys, the proxy merges the
nodes' rows with the same ordering and pages them. One implementation for a segment's rows, a node's
segments and the proxy's merge, as vecdb.proxy.query_aggregation orders every matching row
(``order_query_rows``): by each field, nulls as the largest value (last ascending, first descending),
ties by primary key.

Each sort level gives an exact key, smaller first: a nullable field's null flag, then its value
(ints as int64, descending bitwise negated; FLOAT/DOUBLE through their IEEE bits, -0.0 as 0.0 and
every NaN one value above +inf, as np.unique ranks them; VARCHAR as fixed-width strings, or ranks
where a value ends in NUL (``str_keys.order_keys``: "x" < "x\\x00" < "x\\x01", as Milvus orders them),
larger first when descending, ranked only to sort the picked rows), the primary key last. ``pick``
selects the first ``k`` rows level by level with np.partition (the rows strictly before the k-th
row's key kept, those tied with it refined by the next level), ``ordered`` sorts what it picked with
one np.lexsort: O(n) per segment instead of a sort of every row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vecdb import str_keys
from vecdb.schema import CollectionSchema, DataType, valid_key

Order = tuple[tuple[str, bool], ...]
Level = Callable[[Mapping[str, np.ndarray], np.ndarray], tuple[np.ndarray, bool]]  # (key, larger first)

_LOW63 = np.int64(0x7FFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class TopSpec:
    """The first ``k`` rows by ``order`` (``((field, ascending), ...)``), ties by ``pk``; ``nullable``:
    the order fields with a validity mask (``valid_key(field)``), ``strings``: the VARCHAR ones (and a
    VARCHAR primary key)."""
    order: Order
    k: int
    pk: str
    nullable: frozenset[str] = frozenset()
    strings: frozenset[str] = frozenset()

    @classmethod
    def of(cls, schema: CollectionSchema, order: Order, k: int) -> TopSpec:
        pk = schema.primary_field
        fields = [schema.field(name) for name, _ in order]
        return cls(tuple(order), int(k), pk.name,
                   frozenset(f.name for f in fields if f is not None and f.nullable),
                   frozenset([f.name for f in fields if f is not None and f.dtype == DataType.VARCHAR]
                             + ([pk.name] if pk.dtype == DataType.VARCHAR else [])))

    def columns(self) -> list[str]:
        """The columns ordering reads: each field, a nullable one's validity mask, the primary key."""
        names: list[str] = []
        for name, _ in self.order:
            names.append(name)
            if name in self.nullable:
                names.append(valid_key(name))
        names.append(self.pk)
        return list(dict.fromkeys(names))

    def levels(self) -> list[Level]:
        out: list[Level] = []
        for name, asc in self.order:
            valid = valid_key(name) if name in self.nullable else None
            if valid is not None:
                out.append(_null_level(valid, asc))
            out.append(_value_level(name, asc, valid, name in self.strings))
        out.append(_value_level(self.pk, True, None, self.pk in self.strings))
        return out


def _null_level(valid: str, asc: bool) -> Level:
    def key(cols: Mapping[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, bool]:
        present = np.asarray(cols[valid])[rows].astype(bool)
        return (~present if asc else present).astype(np.int8), False  # nulls after every value / before it
    return key


def _value_level(name: str, asc: bool, valid: str | None, string: bool) -> Level:
    def key(cols: Mapping[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, bool]:
        values = np.asarray(cols[name])[rows]
        present = None if valid is None else np.asarray(cols[valid])[rows].astype(bool)
        if string or values.dtype == object:  # (a null's placeholder as "": nulls tie)
            values = np.asarray(values if present is None else np.where(present, values, ""), dtype=object)
            return str_keys.order_keys(values), not asc  # ("x" < "x\x00" < "x\x01", as Milvus)
        if values.dtype.kind == "f":
            f = values.astype(np.float64) + 0.0  # (-0.0 as 0.0)
            f[np.isnan(f)] = np.nan  # (one NaN, above +inf)
            bits = f.view(np.int64)
            k = bits ^ ((bits >> 63) & _LOW63)  # the IEEE order as int64
        else:
            k = values.astype(np.int64)
        if not asc:
            k = ~k  # (no overflow, unlike negation)
        return (k if present is None else np.where(present, k, 0)), False  # a null's value is ignored
    return key


def pick(spec: TopSpec, cols: Mapping[str, np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
    """The first ``spec.k`` of ``rows`` (indices into ``cols``' columns; None: every row), unordered:
    level by level, the rows before the k-th one's key kept and those tied with it refined by the next
    level (every row when they tie on all of them: equal primary keys)."""
    if rows is None:
        rows = np.arange(len(np.asarray(cols[spec.pk])))
    k = spec.k
    if k <= 0:
        return rows[:0]
    kept: list[np.ndarray] = []
    for level in spec.levels():
        if len(rows) <= k:
            break
        key, larger_first = level(cols, rows)
        at = len(key) - k if larger_first else k - 1
        kth = np.partition(key, at)[at]
        before = key > kth if larger_first else key < kth
        kept.append(rows[before])
        k -= int(np.count_nonzero(before))
        rows = rows[key == kth]
    return np.concatenate([*kept, rows]) if kept else rows


def ordered(spec: TopSpec, cols: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted by the spec's levels (one stable np.lexsort)."""
    if len(rows) < 2:
        return rows
    keys = []
    for level in spec.levels():
        key, larger_first = level(cols, rows)
        if key.dtype.kind == "U":  # strings: their ranks among these rows
            key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        keys.append(-key if larger_first else key)
    return rows[np.lexsort(keys[::-1])]


def top(spec: TopSpec, cols: Mapping[str, np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
    """The first ``spec.k`` of ``rows`` (None: every row of ``cols``), in order."""
    return ordered(spec, cols, pick(spec, cols, rows))[:max(spec.k, 0)]


def merge(spec: TopSpec, parts: Sequence[Mapping[str, np.ndarray]], output_fields: Sequence[str],
          offset: int = 0) -> dict[str, np.ndarray]:
    """The nodes' rows (each part: ``output_fields`` and ``spec.columns()``, any number of rows in any
    order, as an older node that returns every matching row sends them) merged: the first ``spec.k``
    in order, ``offset`` of them skipped. Parts with no rows are passed over (an executor with no
    segment answers untyped empty columns); with every part empty, the first part's columns."""
    live = [p for p in parts if len(np.asarray(p[spec.pk]))]
    if not live:
        return {name: np.asarray(parts[0][name])[:0] for name in output_fields} if parts else {}
    names = list(dict.fromkeys([*output_fields, *spec.columns()]))
    cols = {name: live[0][name] if len(live) == 1 else np.concatenate([p[name] for p in live]) for name in names}
    idx = top(spec, cols)[offset:]
    return {name: np.asarray(cols[name])[idx] for name in output_fields}

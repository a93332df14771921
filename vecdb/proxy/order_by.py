"""``order_by_fields`` in a search (pymilvus 2.6 ``search(..., order_by_fields=[{"field": "price",
"order": "desc"}])``, sent as the search param ``order_by_fields="price:desc,rating:asc"``), as
Milvus 2.6's proxy applies it: each query's hits (its top ``limit`` after ``offset``, found by
distance as always) are re-sorted by the fields, stably (hits with equal values keep their distance
order), null values first in either direction.

Fields: BOOL (false < true), integers, FLOAT, DOUBLE, VARCHAR of the schema. Refused (1100) as Milvus
refuses them: an empty field name, a direction other than asc / desc / ascending / descending, a
field not in the schema, a JSON, ARRAY or vector field; and with a search iterator. With
``group_by_field`` the groups are ordered by their first hit's values, each group's hits kept
together in their order. Not here yet (refused, 1100): dynamic-field keys and JSON paths.
"""

from __future__ import annotations

import numpy as np
from pymilvus.grpc_gen import schema_pb2

from vecdb import errors, str_keys
from vecdb.schema import CollectionSchema, DataType, valid_key

_DIRECTIONS = {"asc": True, "ascending": True, "desc": False, "descending": False}


def ascending(name: str, direction: str) -> bool:
    """Whether an ``order_by_fields`` item of field ``name`` sorts ascending (``direction``: asc, desc,
    ascending or descending in any case; empty: asc)."""
    if not name:
        raise errors.InvalidParameter("empty field name in order_by_fields")
    direction = direction.strip() or "asc"
    asc = _DIRECTIONS.get(direction.lower())
    if asc is None:
        raise errors.InvalidParameter(f"invalid order direction '{direction}' for field '{name}' "
                                      "(must be 'asc', 'desc', 'ascending', or 'descending')")
    return asc


def parse_order_by(schema: CollectionSchema, raw) -> tuple[tuple[str, bool], ...]:
    """``((field, ascending), ...)`` from the search param's text (empty: no ordering)."""
    text = str(raw or "").strip()
    if not text:
        return ()
    out = []
    for item in text.split(","):
        name, _, direction = item.strip().partition(":")
        name = name.strip()
        asc = ascending(name, direction)
        f = schema.field(name)
        if f is None or f.is_dynamic:
            if schema.enable_dynamic_field:
                raise errors.InvalidParameter(f"order_by on the dynamic field key '{name}' is not supported yet")
            raise errors.InvalidParameter(f"order_by field '{name}' does not exist in collection schema")
        if f.dtype == DataType.JSON:
            raise errors.InvalidParameter(
                f"order_by is not supported for JSON field '{name}', use dynamic field with JSON path instead")
        if not (f.dtype == DataType.BOOL or f.dtype.is_numeric or f.dtype == DataType.VARCHAR):
            raise errors.InvalidParameter(
                f"order_by field '{name}' has unsortable type {schema_pb2.DataType.Name(int(f.dtype))}")
        out.append((name, asc))
    return tuple(out)


def order_fields(schema: CollectionSchema, order: tuple[tuple[str, bool], ...]) -> list[str]:
    """The columns ordering reads: each field and, for a nullable one, its validity mask."""
    names: list[str] = []
    for name, _ in order:
        names.append(name)
        f = schema.field(name)
        if f is not None and f.nullable:
            names.append(valid_key(name))
    return names


def order_rows(topks, columns, order: tuple[tuple[str, bool], ...]) -> np.ndarray:
    """The permutation of the concatenated hits (query 0's first, ``topks[i]`` each) that orders every
    query's hits by ``order``; a stable sort (np.lexsort), nulls first."""
    topks = np.asarray(topks, np.int64)
    n = int(topks.sum())
    keys: list[np.ndarray] = [np.repeat(np.arange(len(topks)), topks)]  # the query first: hits stay in theirs
    for name, asc in order:
        values = np.asarray(columns[name])[:n]
        valid = columns.get(valid_key(name))
        present = np.ones(n, np.int8) if valid is None else np.asarray(valid[:n], np.int8)
        if values.dtype == object:  # VARCHAR (a null row's value is ignored)
            values = str_keys.order_keys(np.where(present.astype(bool), values, ""))  # "x" < "x\x00", as Milvus
        # ranks of the distinct values: descending is the negated rank (no overflow, any type)
        rank = np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)
        key = np.where(present.astype(bool), rank if asc else -rank, 0)  # nulls keep their distance order
        keys += [present, key]  # nulls (present 0) first in either direction
    return np.lexsort(keys[::-1])


def order_group_rows(topks, group_values: np.ndarray, columns, order: tuple[tuple[str, bool], ...]) -> np.ndarray:
    """For a grouping search: the permutation that orders each query's groups (runs of hits with one
    group value, ``topks[i]`` hits per query) by their first hit's values, as Milvus 2.6 orders groups;
    the hits inside a group keep their order."""
    topks = np.asarray(topks, np.int64)
    n = int(topks.sum())
    if n == 0:
        return np.arange(0)
    query = np.repeat(np.arange(len(topks)), topks)
    start = np.ones(n, bool)
    start[1:] = (query[1:] != query[:-1]) | (np.asarray(group_values[1:] != group_values[:-1], bool))
    first = np.flatnonzero(start)
    lengths = np.diff(np.append(first, n))
    groups_per_query = np.bincount(query[first], minlength=len(topks))
    heads = {k: np.asarray(v)[first] for k, v in columns.items()}
    g = order_rows(groups_per_query, heads, order)  # the groups in their new order
    starts, lens = first[g], lengths[g]
    return np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens) + np.arange(n)

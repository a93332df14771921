"""``like`` through a sealed segment's NGRAM index (vecdb.index.ngram), and what that index covers.

A ``like`` on a VARCHAR column, or on a JSON path, asks the columns it is evaluated over for the
NGRAM index of that (field, path) (``ngram_index``: a sealed segment's, vecdb.querynode.executor);
with one, only the index's candidate rows are checked with the exact matcher, else it scans. The
result is the scan's either way: a JSON row whose value is no string is indexed as ``""``, which
holds no gram, so it is never a candidate (as the scan's string view makes it false).

An index on a JSON field names its path as Milvus's ``json_path`` parameter (``j["a"]["b"]``),
resolved here exactly as a filter resolves the same text, so the two meet on one key.
"""

from __future__ import annotations

import numpy as np

from vecdb.expr import rowdata
from vecdb.expr.nodes import Column, JsonPath, ValueNode
from vecdb.schema import CollectionSchema, DataType

NgramKey = tuple[str, tuple]  # (column name, JSON path; () for a VARCHAR column)


def indexed_like(ctx, value: ValueNode, matcher) -> np.ndarray | None:
    """``value like pattern`` answered by an NGRAM index over ``ctx``'s rows; None: scan."""
    if isinstance(value, Column) and value.cat == "str":
        key: NgramKey = (value.field, ())
    elif isinstance(value, JsonPath):
        key = (value.field, value.path)
    else:
        return None
    idx = ctx.index("ngram", key)
    return None if idx is None else idx.like(matcher.literals, matcher)


def index_key(schema: CollectionSchema, field_name: str, params: dict) -> NgramKey | None:
    """The (column, path) an NGRAM index on ``field_name`` covers, as a filter names it; None when its
    ``json_path`` is no path of that field."""
    field = schema.field(field_name)
    if field is None:
        return None
    if field.dtype == DataType.VARCHAR:
        return (field_name, ())
    from vecdb.expr.compiler import compile_expr  # noqa: PLC0415 - the compiler imports this module's neighbours

    try:
        root, _ = compile_expr(f'{params.get("json_path", field_name)} like ""', schema, None)
    except Exception:  # noqa: BLE001 - a path the filter language can't read: no index, like scans
        return None
    value = getattr(getattr(root, "child", root), "value", None)  # a nullable field's NonNull wraps it
    if not isinstance(value, JsonPath) or value.field != field_name:
        return None
    return (value.field, value.path)


def indexed_strings(column: np.ndarray, path: tuple, json: bool) -> np.ndarray:
    """What an NGRAM index of ``column`` at ``path`` holds: a VARCHAR column itself (a null row's
    placeholder is ``""``), or each JSON row's string at the path and ``""`` where there is none."""
    if not json:
        return column
    raw = rowdata.extract(column, path)
    return rowdata.str_view(raw, rowdata.types_of(raw))[0]

"""JSON path indexes (Milvus 2.5+): an INVERTED index on a JSON field with ``json_cast_type`` and
``json_path`` (``create_index(field_name="meta", index_type="INVERTED", params={"json_cast_type":
"varchar", "json_path": 'meta["src"]'})``).

Per sealed segment, the values at the path that hold the cast type (VARCHAR: strings, DOUBLE: numbers,
as float64, BOOL: booleans) are sorted once with their row ids, in the background when the segment
is loaded or sealed or the index created (vecdb.querynode.node); the other rows (a missing key,
another type, a null row) are not in it, as Milvus's cast skips them. A filter comparing that path
with a constant of the same type (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in [...]``) then
reads it instead of parsing every row's value (vecdb.expr.predicates); anything else scans. Results
are the scan's: the values are the scan's typed views (vecdb.expr.rowdata), compared the same way,
and ``!=`` stays "not ==" (a row without the value matches), as the scan reads it.

Cast types ARRAY_* and JSON are accepted at create_index and build nothing: such filters scan.
"""

from __future__ import annotations

import numpy as np

from vecdb.expr import rowdata
from vecdb.index.scalar import SortedIndex, kept_index

CAST_CATEGORIES = {"VARCHAR": "str", "DOUBLE": "num", "BOOL": "bool"}  # json_cast_type -> the filter's category


def cast_category(params: dict) -> str | None:
    """The category an index's ``json_cast_type`` keeps; None for the cast types that build nothing."""
    return CAST_CATEGORIES.get(str(params.get("json_cast_type", "")).strip().upper())


def typed_values(column, path: tuple, cat: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's value at ``path`` in category ``cat`` and the mask of rows holding one (the scan's
    views: vecdb.expr.runtime.JsonVal)."""
    raw = rowdata.extract(column, path)
    if cat == "num":
        return rowdata.num_view(raw)
    types = rowdata.types_of(raw)
    return rowdata.str_view(raw, types) if cat == "str" else rowdata.bool_view(raw, types)


class JsonPathIndex(SortedIndex):
    """The rows of ``n`` that hold a value of ``cat`` at the path, sorted by it: ``values`` and their
    row ids ``order`` (a subset of the rows, so a comparison never inverts a range)."""

    __slots__ = ("cat",)

    def __init__(self, data: np.ndarray, valid: np.ndarray | None, cat: str):  # (SortedIndex's sorts every row)
        rows = np.arange(len(data)) if valid is None else np.flatnonzero(valid)
        kept = data[rows]
        order = np.argsort(kept, kind="stable")
        self.values = kept[order]
        self.order = rows[order].astype(np.int64 if len(data) > 2**31 - 1 else np.int32)
        self.n, self.cat = len(data), cat

    def compare(self, op: str, value) -> np.ndarray:
        """Rows whose value ``op value`` (``==`` or an ordering; ``!=`` is the caller's "not ==")."""
        return self._rows(*self.bounds(op, self.cast(value)))


def segment_json_index(seg, key: tuple) -> JsonPathIndex | None:
    """The JSON path index kept on sealed segment ``seg`` for ``key`` (field, path, category), if built."""
    return kept_index(seg, "_json_indexes", key)


def build_segment_json_index(seg, key: tuple) -> JsonPathIndex:
    """Build (once) and keep the JSON path index of a sealed segment for ``key`` (field, path, category)."""
    return kept_index(seg, "_json_indexes", key,
                      lambda k: JsonPathIndex(*typed_values(seg.column(k[0]), k[1], k[2]), k[2]))

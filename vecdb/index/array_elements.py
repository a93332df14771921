"""ARRAY field indexes (INVERTED, BITMAP or AUTOINDEX on an ARRAY field, as Milvus takes them): per sealed
segment, every element of every row sorted once with the row holding it, in the background when the
segment is loaded or sealed or the index created (vecdb.querynode.node). ``array_contains``,
``array_contains_any`` and ``array_contains_all`` then find their rows with binary searches instead of
flattening and comparing every element of the segment (vecdb.expr.predicates.ArrayContains); the
result is the scan's: the elements are the scan's flattened values (vecdb.expr.rowdata.flatten),
compared the same way (a FLOAT array's as float32). Element access (``tags[0] == 1``) and
``array_length`` scan. About 12 bytes per element (an int64 or float32 element, or a reference to a
VARCHAR element's string, and an int32 row id).
"""

from __future__ import annotations

import numpy as np

from vecdb.expr import rowdata
from vecdb.index.scalar import SortedIndex, kept_index

ARRAY_INDEX_TYPES = ("INVERTED", "BITMAP", "AUTOINDEX")  # the scalar index types Milvus takes on an ARRAY field


class ArrayElementsIndex(SortedIndex):
    """Every element of ``n`` rows sorted (``values``), with the row holding each (``order``)."""

    __slots__ = ()

    def __init__(self, flat: rowdata.Flat, n: int):  # (SortedIndex's sorts a column, one value a row)
        order = np.argsort(flat.values, kind="stable")
        self.values = flat.values[order]
        self.order = flat.rows[order].astype(np.int64 if n > 2**31 - 1 else np.int32)
        self.n = n

    def rows_with(self, value) -> np.ndarray:
        """Rows holding ``value`` (compared as the scan compares it: ``==`` on the element type)."""
        return self._rows(*self.bounds("==", value))


def segment_array_index(seg, name: str) -> ArrayElementsIndex | None:
    """The ARRAY index kept on sealed segment ``seg`` for field ``name``, if built."""
    return kept_index(seg, "_array_indexes", name)


def build_segment_array_index(seg, name: str) -> ArrayElementsIndex:
    """Build (once) and keep the ARRAY index of a sealed segment's field ``name``."""

    def build(field: str) -> ArrayElementsIndex:
        col = seg.column(field)
        return ArrayElementsIndex(rowdata.flatten(col, np.fromiter(map(len, col), np.int64, len(col))), len(col))

    return kept_index(seg, "_array_indexes", name, build)

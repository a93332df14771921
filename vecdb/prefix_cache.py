"""Values derived from a column, kept while the column's array lives, and grown with it.

A filter reads the same arrays again and again: a sealed segment's columns, and a growing segment's
buffers, whose rows below the segment's length never change while later rows are appended. What a
filter derives from such a column (the terms of each text for ``text_match``, the parsed geometry of
each row for spatial predicates) is kept per base array, so each row is worked on once; a view of a
longer prefix of the same array works on its new rows only."""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Any

import numpy as np


def prefix_root(col: np.ndarray) -> np.ndarray | None:
    """The base array whose first rows ``col`` is (same start, same layout), or None when ``col`` is
    not such a view (a copy, a gather, a strided slice: not worth keeping)."""
    root = col
    while isinstance(root.base, np.ndarray):
        root = root.base
    if (col.ndim == 1 and root.ndim == 1 and root.strides == col.strides
            and root.__array_interface__["data"][0] == col.__array_interface__["data"][0]):
        return root
    return None


class ArrayCache:
    """At most ``size`` values, each for a base array (and a ``tag``: what was derived, e.g. with which
    analyzer), dropped when the array is freed; the oldest goes first when full."""

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: dict[tuple[int, Hashable], tuple[weakref.ref, Any]] = {}

    def get(self, root: np.ndarray, tag: Hashable = None) -> Any:
        hit = self._entries.get((id(root), tag))
        return hit[1] if hit is not None and hit[0]() is root else None

    def put(self, root: np.ndarray, value: Any, tag: Hashable = None) -> None:
        key = (id(root), tag)
        if key not in self._entries and len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        entries = self._entries
        self._entries[key] = (weakref.ref(root, lambda _ref: entries.pop(key, None)), value)

    def __len__(self) -> int:
        return len(self._entries)

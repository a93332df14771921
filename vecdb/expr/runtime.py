"""Per-evaluation state and runtime values of the typed plan.

A runtime value offers *views* by category ("num", "str", "bool", "list"):
``view(cat) -> (data, valid) | None`` where ``data`` is a numpy array (or a
scalar for literals) and ``valid`` is None (every row holds that type) or a
bool mask of the rows that do. ``int_rows()`` says which rows hold integers
(a Python bool for all/none, else a mask), which decides C integer semantics
in arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecdb.expr import rowdata


class EvalContext:
    """One evaluation: lazy column reads and per-evaluation caches (JSON paths, flattened arrays)."""

    __slots__ = ("columns", "n", "_cache")
    _cache: dict[tuple, Any]  # ("col" | "len" | "flat", field) or ("json", field, path) -> its value

    def __init__(self, columns: Mapping[str, np.ndarray], n: int):
        self.columns, self.n, self._cache = columns, n, {}

    def column(self, name: str) -> np.ndarray:
        key = ("col", name)
        col = self._cache.get(key)
        if col is None:
            col = self.columns[name]
            if len(col) != self.n:
                col = col[: self.n]
            self._cache[key] = col
        return col

    def index(self, kind: str, key):
        """The index of ``kind`` for ``key`` over exactly these ``n`` rows, when the columns come with one
        (a sealed segment's, vecdb.querynode.executor.SegmentColumns); else None (the filter scans):
        "scalar" a column's (vecdb.index.scalar), "json" a (field, path, category)'s
        (vecdb.index.json_path), "array" an ARRAY field's (vecdb.index.array_elements), "ngram" a
        (column, path)'s (vecdb.index.ngram)."""
        get = getattr(self.columns, f"{kind}_index", None)
        return None if get is None else get(key)

    def json(self, field: str, path: tuple) -> JsonVal:
        key = ("json", field, path)
        val = self._cache.get(key)
        if val is None:
            val = self._cache[key] = JsonVal(rowdata.extract(self.column(field), path))
        return val

    def lengths(self, field: str) -> np.ndarray:
        key = ("len", field)
        if key not in self._cache:
            self._cache[key] = np.fromiter(map(len, self.column(field)), np.int64, self.n)
        return self._cache[key]

    def cached_flat(self, field: str) -> rowdata.Flat | None:
        return self._cache.get(("flat", field))

    def flat(self, field: str) -> rowdata.Flat:
        key = ("flat", field)
        if key not in self._cache:
            self._cache[key] = rowdata.flatten(self.column(field), self.lengths(field))
        return self._cache[key]


class ListLit:
    """A list literal in a "list" view (JSON rows are plain lists, so literals are wrapped)."""

    __slots__ = ("value",)

    def __init__(self, value: list):
        self.value = value


def object_scalar(value) -> np.ndarray:
    """``value`` as a 0-d object array, compared as the Python object it is: NumPy reads a bare str
    against an array as ``np.str_``, which drops trailing NUL characters ("x\\x00" == "x")."""
    out = np.empty((), dtype=object)
    out[()] = value
    return out


class Scalar:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def view(self, cat: str):
        v, t = self.value, self.value.__class__
        if cat == "num" and t in (int, float):
            return (np.int64(v) if t is int else v), None
        if cat == "str" and t is str:
            return object_scalar(v), None
        if cat == "list" and t is list:
            return ListLit(v), None
        if cat == "bool" and t is bool:
            return np.bool_(v), None
        return None

    def int_rows(self):
        return self.value.__class__ is int


class Typed:
    """A typed array (column, array element, arithmetic result) of one category."""

    __slots__ = ("cat", "data", "valid", "isint")

    def __init__(self, cat: str, data, valid=None, isint=None):
        self.cat, self.data, self.valid, self.isint = cat, data, valid, isint

    def view(self, cat: str):
        return (self.data, self.valid) if cat == self.cat else None

    def int_rows(self):
        return self.isint if self.isint is not None else self.data.dtype.kind in "iu"


class JsonVal:
    """Raw JSON values at one path, with typed views computed on first use."""

    __slots__ = ("raw", "_views", "_types", "_objects")
    _views: dict[str, tuple[Any, np.ndarray | None]]
    _types: np.ndarray | None
    _objects: np.ndarray | None

    def __init__(self, raw: list):
        self.raw, self._views, self._types, self._objects = raw, {}, None, None

    def objects(self) -> np.ndarray:
        """The raw values as an object array (compared as the Python objects they are)."""
        if self._objects is None:
            self._objects = np.fromiter(self.raw, object, len(self.raw))
        return self._objects

    @property
    def types(self) -> np.ndarray:
        if self._types is None:
            self._types = rowdata.types_of(self.raw)
        return self._types

    def view(self, cat: str):
        v = self._views.get(cat)
        if v is None:
            if cat == "num":
                v = rowdata.num_view(self.raw)
            elif cat == "str":
                v = rowdata.str_view(self.raw, self.types)
            elif cat == "bool":
                v = rowdata.bool_view(self.raw, self.types)
            else:  # list: the rows holding an array
                v = (self.raw, self.types == list)  # noqa: E721 - element-wise over an object array
            self._views[cat] = v
        return v

    def int_rows(self):
        return rowdata.int_rows(self.types)


class ArrayVal:
    """A whole ARRAY column (rows are 1-D numpy arrays); only compares with lists."""

    __slots__ = ("col",)

    def __init__(self, col):
        self.col = col

    def view(self, cat: str):
        return (self.col, None) if cat == "list" else None

    def int_rows(self):
        return False  # its rows are arrays


def and_masks(a, b):
    """AND of two optional masks (None means all rows)."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b

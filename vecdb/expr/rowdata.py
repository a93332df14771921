"""Per-row work on JSON and ARRAY columns, done once per evaluation and shared.

JSON typing rules (Milvus's, via simdjson ``at<T>``):

- a path that does not resolve (missing key, index out of range, stepping
  into a non-container) gives ``MISSING``;
- numbers are ``int`` or ``float`` (never ``bool``); ints and floats compare
  numerically; ``true`` never equals ``1``; a string never equals a number;
- views turn the raw values into typed numpy arrays plus a ``valid`` mask
  of the rows that hold that type. Numbers are viewed as float64, so JSON
  integers beyond +-2**53 compare with float precision.

ARRAY columns (object arrays of 1-D numpy arrays) are flattened once into
``Flat``: all elements concatenated, the row of each element, each row's
length and start, so element access and contains are vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

import numpy as np

MISSING = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()
_NUM_TYPES = (int, float)
_NAN = float("nan")


def extract(col, path: tuple[str | int, ...]) -> list:
    """Raw values at ``path`` for every row (``MISSING`` where it does not resolve).

    A step is a JSON pointer token, as in Milvus (``/a/0``): ``["0"]`` and ``[0]`` are the same
    step, which reads key ``"0"`` of an object and element 0 of an array (``["00"]``, ``["-1"]``
    are no array index)."""
    vals = col.tolist() if isinstance(col, np.ndarray) else list(col)
    for key in path:
        name, index = (key, _array_index(key)) if isinstance(key, str) else (str(key), key)
        try:  # fast path: every row is a dict
            vals = list(map(dict.get, vals, repeat(name), repeat(MISSING)))
        except TypeError:
            vals = [_step(v, name, index) for v in vals]
    return vals


def _array_index(token: str) -> int | None:
    """``token`` as an array index of a JSON pointer: ``0`` or digits without a leading zero."""
    if token.isascii() and token.isdigit() and (token == "0" or token[0] != "0"):
        return int(token)
    return None


def _step(v, name: str, index: int | None):
    if v.__class__ is dict:
        return v.get(name, MISSING)
    if v.__class__ is list and index is not None and 0 <= index < len(v):
        return v[index]
    return MISSING


def num_view(raw: list) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.fromiter([v if v.__class__ in _NUM_TYPES else _NAN for v in raw], np.float64, len(raw))
    except OverflowError:
        data = np.array([_to_float(v) for v in raw], dtype=np.float64)
    return data, ~np.isnan(data)


def _to_float(v) -> float:
    if v.__class__ not in _NUM_TYPES:
        return _NAN
    try:
        return float(v)
    except OverflowError:
        return float("inf") if v > 0 else float("-inf")


def int_rows(types: np.ndarray) -> np.ndarray:
    return types == int  # noqa: E721


def types_of(raw: list) -> np.ndarray:
    """Object array of each value's type; ``types == str`` is then one vectorised pass."""
    return np.fromiter(map(type, raw), object, len(raw))


def str_view(raw: list, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = types == str  # noqa: E721 - element-wise over an object array
    data = np.fromiter(raw, object, len(raw))
    data[~valid] = ""
    return data, valid


def bool_view(raw: list, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = types == bool  # noqa: E721
    data = np.fromiter(raw, object, len(raw)) == True  # noqa: E712 - element-wise
    return np.asarray(data, dtype=bool) & valid, valid


def json_equal(a, b) -> bool:
    """Typed JSON equality: numbers numerically, bool only with bool, lists element-wise."""
    ta, tb = a.__class__, b.__class__
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in _NUM_TYPES:
        return tb in _NUM_TYPES and a == b
    if ta is str:
        return tb is str and a == b
    if ta is list:
        return tb is list and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def _contains_fn(val):
    """Row predicate: is ``val`` an element of the JSON list ``v``?"""
    t = val.__class__
    if t is str:
        return lambda v: v.__class__ is list and val in v
    if t is bool:
        return lambda v: v.__class__ is list and any(e is val for e in v)
    if t in _NUM_TYPES:
        def num_in(v):
            if v.__class__ is not list or val not in v:
                return False
            return any(e == val and e.__class__ in _NUM_TYPES for e in v)
        return num_in
    return lambda v: v.__class__ is list and any(json_equal(e, val) for e in v)


def json_contains(raw: list, values: list, mode: str) -> np.ndarray:
    """``mode``: 'one' (the row list contains values[0]), 'all' or 'any' of ``values``.

    Rows that are not JSON lists never match; contains_all of [] matches every list.
    """
    fns = [_contains_fn(v) for v in values]
    n = len(raw)
    if len(fns) == 1:
        return np.fromiter(map(fns[0], raw), bool, n)
    if mode == "all":
        return np.fromiter([v.__class__ is list and all(f(v) for f in fns) for v in raw], bool, n)
    return np.fromiter([v.__class__ is list and any(f(v) for f in fns) for v in raw], bool, n)


def rows_equal_list(rows, lit: list) -> np.ndarray:
    """Per-row equality of JSON values or ARRAY rows with a list literal."""
    out = np.zeros(len(rows), dtype=bool)
    for i, v in enumerate(rows):
        if isinstance(v, np.ndarray):
            v = v.tolist()
        out[i] = json_equal(v, lit)
    return out


def rows_equal_rows(left, right) -> np.ndarray:
    out = np.zeros(len(left), dtype=bool)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        a = a.tolist() if isinstance(a, np.ndarray) else a
        b = b.tolist() if isinstance(b, np.ndarray) else b
        out[i] = json_equal(a, b)
    return out


@dataclass(slots=True)
class Flat:
    values: np.ndarray   # all elements, row after row
    rows: np.ndarray     # row index of each element
    lengths: np.ndarray  # int64 per row
    starts: np.ndarray   # offset of each row's first element in ``values``


def flatten(col: np.ndarray, lengths: np.ndarray) -> Flat:
    n = len(lengths)
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    parts = [a for a in col if len(a)]
    values = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
    return Flat(values, np.repeat(np.arange(n, dtype=np.int64), lengths), lengths, starts)


def json_lengths(raw: list) -> tuple[np.ndarray, np.ndarray]:
    """``array_length`` of a JSON path: 0 where the value is no array or the path is missing, as
    Milvus counts (its length starts at 0 and only an array sets it)."""
    lengths = np.fromiter([len(v) if v.__class__ is list else 0 for v in raw], np.int64, len(raw))
    return lengths, np.ones(len(raw), dtype=bool)

"""VARCHAR values as NumPy fixed-width strings (sorted and compared in C) without losing any.

NumPy's ``U`` strings are padded with NUL characters, so ``astype(str)`` drops a value's trailing
NULs: "x", "x\\x00" and "x\\x00\\x00" all become "x". Milvus stores and compares such values as
written (they are distinct primary keys, groups, minima), so the fast ``astype(str)`` is taken only
where no value ends in NUL, which one length comparison shows.
"""

from __future__ import annotations

import numpy as np


def loses_trailing_nuls(values: np.ndarray, fixed: np.ndarray) -> bool:
    """Whether ``fixed`` (``values.astype(str)``, ``values`` an object array of str) dropped characters."""
    if not len(values):
        return False
    lengths = np.fromiter(map(len, values.tolist()), np.int64, len(values))
    return bool((np.char.str_len(fixed) != lengths).any())


def sortable(values: np.ndarray) -> np.ndarray:
    """An object array of str as an array that sorts and compares in C with the same equalities:
    ``astype(str)``, or, where some value ends in NUL, the values with a ``"\\x01"`` appended (equal
    stays equal and different stays different; only such values' order among themselves changes)."""
    fixed = values.astype(str)
    if loses_trailing_nuls(values, fixed):
        return (values + "\x01").astype(str)
    return fixed


def exact(values: np.ndarray) -> np.ndarray:
    """An object array of str as ``astype(str)`` where that keeps every value, else as it is (NumPy then
    sorts and compares the Python strings: slower, exact)."""
    fixed = values.astype(str)
    return values if loses_trailing_nuls(values, fixed) else fixed

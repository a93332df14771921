"""VARCHAR values as NumPy fixed-width strings (sorted and compared in C) without losing any.

NumPy's ``U`` strings are padded with NUL characters, so ``astype(str)`` drops a value's trailing
NULs: "x", "x\\x00" and "x\\x00\\x00" all become "x". Milvus stores and compares such values as
written (they are distinct primary keys, groups, minima), so the fast ``astype(str)`` is taken only
where no value ends in NUL, which one length comparison shows.

Order, where it matters (ORDER BY), is Milvus's: byte order of the UTF-8, which is code point order
and Python's, "x" < "x\\x00" < "x\\x00\\x00" < "x\\x01". ``sortable`` keeps equalities only (it
puts "x\\x00" after "x\\x01"); ``order_keys`` keeps the order too. Beware comparing an object array
with one of its values: NumPy turns the Python str into a ``U`` scalar first, dropping its NULs.
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


def order_keys(values: np.ndarray) -> np.ndarray:
    """An object array of str as keys in exactly the strings' order (code point order, as Milvus sorts
    VARCHAR), compared and partitioned in C: ``astype(str)`` where that keeps every value, else each
    value's rank among the distinct ones (int64; found by sorting the Python strings: slower, exact)."""
    fixed = values.astype(str)
    if loses_trailing_nuls(values, fixed):
        return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return fixed

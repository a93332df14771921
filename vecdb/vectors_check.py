"""Float vectors every distance computation can take: finite, and not too large for float32.

FAISS, the GPU kernels and the brute-force paths compute in float32. A finite
vector can still overflow there: one 1e20 component squares to 1e40 > float32's
max (3.4e38), and FAISS's k-means (IVF builds) then aborts the whole process
("invalid cluster assignment" thrown inside an OpenMP region), at every restart.
So insert/upsert (``vecdb.proxy.fielddata``) refuses such rows, and the index
build path can refuse segments stored before this check existed.

The rule: every component is finite and the squared L2 norm ``||x||^2``,
computed exactly enough (float64), is at most ``MAX_SQUARED_NORM``.

This module imports only numpy and ``vecdb.errors`` so that both the proxy and
``vecdb.index`` can use it without import cycles.
"""

from __future__ import annotations

import numpy as np

from vecdb.errors import InvalidParameter

# Largest squared L2 norm a stored or query vector may have. With both operands
# bounded by B: L2 computed as ||x||^2 + ||y||^2 - 2<x,y> has every term and
# every partial sum within 4B (Cauchy-Schwarz: |<x,y>| <= B); IP is within B;
# COSINE's norm is sqrt(B); a k-means centroid sum over n rows stays finite as
# long as n * sqrt(B) is (the mean is then within sqrt(B) again). B = 1e37 keeps
# 4B = 4e37 an order of magnitude below float32's max 3.4e38, with room for the
# rounding of float32 accumulations. No real embedding comes near it (unit
# vectors have 1; raw pixel or count features are below 1e20).
MAX_SQUARED_NORM = 1e37
# float32 rounding of a squared-norm sum is far below 2x: a row the float32 pass
# puts under half the bound is certainly under the bound.
_FAST_ACCEPT = MAX_SQUARED_NORM / 2


def as_float_rows(vecs: np.ndarray) -> np.ndarray:
    """A 2-D float view of float vectors: float32/float64/float16 as they are,
    uint16 read as raw bfloat16 bits (the BFLOAT16_VECTOR column) and widened."""
    a = np.asarray(vecs)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.dtype == np.uint16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a


def squared_norms(vecs: np.ndarray) -> np.ndarray:
    """Squared L2 norm of each row, in float64 (exact enough to compare with the bound)."""
    a = as_float_rows(vecs)
    return np.einsum("ij,ij->i", a, a, dtype=np.float64)


def invalid_rows(vecs: np.ndarray) -> np.ndarray:
    """Offsets (int64, ascending) of the rows of an (n, dim) float array that hold NaN or
    infinity or whose squared L2 norm exceeds ``MAX_SQUARED_NORM``; empty when all are fine.

    One vectorised float32 pass accepts the usual batch (NaN and inf propagate into the
    norm, a square above float32's range becomes inf); only rows it cannot accept
    outright are looked at again in float64.
    """
    a = as_float_rows(vecs)
    if a.size == 0:
        return np.empty(0, np.int64)
    if len(a) == 1 and a.dtype != np.float16:
        # one row (a search's usual query): its norm in float64 (no overflow, no warning; NaN and inf
        # stay NaN and inf and fail the test), 5x cheaper than the float32 pass with its errstate
        x = a[0].astype(np.float64)
        if float(np.dot(x, x)) <= _FAST_ACCEPT:
            return np.empty(0, np.int64)
    if a.dtype == np.float16:
        # |x| <= 65504 and dim <= 32768 keep ||x||^2 below 1.5e14: only finiteness matters
        return np.flatnonzero(~np.isfinite(a).all(axis=1))
    with np.errstate(over="ignore", invalid="ignore"):
        fast = np.einsum("ij,ij->i", a, a)
    ok = fast <= _FAST_ACCEPT  # False for NaN and inf too
    if ok.all():
        return np.empty(0, np.int64)
    rows = np.flatnonzero(~ok)
    sub = a[rows]
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(sub).all(axis=1) | ~(squared_norms(sub) <= MAX_SQUARED_NORM)
    return rows[bad]


def check_float_vectors(vecs: np.ndarray, field_name: str, kind: str = "vector") -> None:
    """Raise InvalidParameter naming the first row of ``vecs`` (n, dim) that ``invalid_rows``
    finds: "the <i>th <kind> of field (<field_name>) contains NaN or infinity: ..." or
    "... is too large: ...". ``vecs`` is float32/float64/float16, or uint16 bfloat16 bits."""
    bad = invalid_rows(vecs)
    if not len(bad):
        return
    row = int(bad[0])
    values = as_float_rows(vecs)[row]
    finite = np.isfinite(values)
    if not finite.all():
        raise InvalidParameter(
            f"the {row}th {kind} of field ({field_name}) contains NaN or infinity: "
            f"value '{values[~finite][0]}' is not a number or infinity"
        )
    norm2 = float(squared_norms(values.reshape(1, -1))[0])
    raise InvalidParameter(
        f"the {row}th {kind} of field ({field_name}) is too large: its squared L2 norm {norm2:.4g} "
        f"exceeds {MAX_SQUARED_NORM:.0e}, beyond which distances overflow float32"
    )

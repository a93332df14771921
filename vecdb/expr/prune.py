"""Whether a compiled filter can hold on any row of a segment, knowing only the range of one field there.

A query node skips a sealed segment whose clustering key values all lie in ``[lo, hi]`` when the
filter cannot hold on any of them (``vecdb.querynode.executor``): after a clustering compaction
each segment holds one range of the key, so ``key == v``, ``key in [...]`` or ``a < key < b`` reads
the few segments whose range meets the condition, as Milvus prunes by its PartitionStats.

The answer is conservative: False only where the filter is false for every value in the range,
read off the predicates it is made of (``and``: any child false; ``or``: every child false;
``key <op> constant`` and ``key in [...]`` over a plain column); anything else may match. The
comparisons are the evaluator's own (``Compare.eval`` on the range's two ends), so a float32 column,
an int column against a float constant, or VARCHAR ordering answer as a scan would.
"""

from __future__ import annotations

import numpy as np

from vecdb.expr import predicates as preds
from vecdb.expr.nodes import Column, Const
from vecdb.expr.runtime import EvalContext


def may_match(pred, field: str, bounds: np.ndarray) -> bool:
    """False when no row whose ``field`` lies in ``bounds`` (``[lo, hi]``: a 2-row array of the column's
    dtype) can pass ``pred`` (a compiled predicate); True when one may."""
    if isinstance(pred, preds.And):
        return all(may_match(c, field, bounds) for c in pred.children)
    if isinstance(pred, preds.Or):
        return any(may_match(c, field, bounds) for c in pred.children)
    if isinstance(pred, preds.NonNull):  # false on null rows besides: it never matches more
        return may_match(pred.child, field, bounds)
    if isinstance(pred, preds.ConstPred):
        return bool(pred.value)
    if isinstance(pred, preds.Compare) and _on(pred.left, field) and isinstance(pred.right, Const):
        return _compare(pred, field, bounds)
    if isinstance(pred, preds.In) and not pred.negate and _on(pred.value, field):
        return _term(pred, bounds)
    return True


def _on(value, field: str) -> bool:
    return isinstance(value, Column) and value.field == field and value.cat in ("num", "str")


def _at_ends(op: str, pred: preds.Compare, field: str, bounds: np.ndarray) -> np.ndarray:
    """``column <op> constant`` at the range's two ends, as the evaluator computes it."""
    return preds.Compare(op, pred.left, pred.right, pred.cats).eval(EvalContext({field: bounds}, 2))


def _compare(pred: preds.Compare, field: str, bounds: np.ndarray) -> bool:
    op = pred.op
    if op in ("<", "<="):  # holds on some value of the range iff it holds on the smallest
        return bool(_at_ends(op, pred, field, bounds)[0])
    if op in (">", ">="):
        return bool(_at_ends(op, pred, field, bounds)[1])
    if op == "==":
        return bool(_at_ends("<=", pred, field, bounds)[0] and _at_ends(">=", pred, field, bounds)[1])
    if op == "!=" and bounds[0] == bounds[1]:  # one value in the whole segment
        return bool(_at_ends("!=", pred, field, bounds)[0])
    return True


def _term(pred: preds.In, bounds: np.ndarray) -> bool:
    vals = pred.strs if bounds.dtype == object else pred.nums
    if vals is None or pred.lists:
        return True
    if bounds.dtype == np.float32:
        vals = vals.astype(np.float32)  # as In.eval compares them
    return bool(np.any((vals >= bounds[0]) & (vals <= bounds[1])))

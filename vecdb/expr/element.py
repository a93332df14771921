"""Milvus 3.0's StructArray operators over an array-of-struct field ``s`` (row-level):

    element_filter(s, pred)              at least one element satisfies pred (as MATCH_ANY)
    MATCH_ANY(s, pred)                   count >= 1
    MATCH_ALL(s, pred)                   count == the row's number of elements (an empty array: true)
    MATCH_LEAST(s, pred, threshold=n)    count >= n (n >= 1)
    MATCH_MOST(s, pred, threshold=n)     count <= n (n >= 0; an empty array: true)
    MATCH_EXACT(s, pred, threshold=n)    count == n (n >= 0; an empty array: true for n == 0)

``pred`` tests one struct element: ``$[sub]`` is that element's scalar sub-field ``sub``; it may use
comparisons, ranges, arithmetic, ``in``, ``like`` and ``and`` / ``or`` / ``not``, and must reference
at least one ``$[sub]`` and no row-level field (Milvus's ``parser_visitor.go``: ``VisitElementFilter``,
``parseMatchExpr``, ``VisitMatchThreshold``, ``VisitStructSubField`` and its predicate-shape check,
whose messages these are). ``element_filter`` may be the whole filter or the last operand of its
top-level ``and`` (Milvus's ``VisitLogicalAnd``); the ``MATCH_*`` operators go anywhere.

``element_filter`` filters rows (the entities with a matching element); in an element-level search
(a plain vector query on the struct's vector sub-field: vecdb.element_search) it also restricts
which elements take part.

Evaluation is vectorized: the referenced sub-field columns (ARRAY per row) are flattened once into
element columns, the predicate runs once over all elements with the ordinary evaluator, and
``np.bincount`` over each element's row turns the hits into a per-row count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vecdb.expr import ast, nodes
from vecdb.expr.lexer import syntax_error
from vecdb.expr.predicates import Pred
from vecdb.expr.runtime import EvalContext

# operator (lower-cased call name) -> (its name in messages, quantifier)
OPERATORS = {"element_filter": ("ElementFilter", "any"), "match_any": ("MATCH_ANY", "any"),
             "match_all": ("MATCH_ALL", "all"), "match_least": ("MATCH_LEAST", "least"),
             "match_most": ("MATCH_MOST", "most"), "match_exact": ("MATCH_EXACT", "exact")}
_THRESHOLD = ("least", "most", "exact")


@dataclass
class ElementScope:
    """The element predicate being compiled: its struct, its operator, the sub-field columns it reads
    (full name ``s[sub]`` -> element dtype)."""

    struct: str
    label: str
    columns: dict[str, np.dtype] = field(default_factory=dict)


class StructMatch(Pred):
    """A row-level predicate: how many elements of the row's struct array satisfy ``pred`` (a predicate
    over element columns named like the sub-fields), compared with ``count`` as ``mode`` says."""

    __slots__ = ("struct", "mode", "count", "pred", "columns", "element_level")

    def __init__(self, struct: str, mode: str, count: int, pred, columns: dict[str, np.dtype],
                 element_level: bool = False):
        self.struct, self.mode, self.count, self.pred = struct, mode, count, pred
        self.columns = tuple(columns.items())
        self.element_level = element_level  # element_filter: also restricts an element-level search's elements

    def eval(self, ctx: EvalContext) -> np.ndarray:
        n = ctx.n
        flat = ctx.flat(self.columns[0][0])  # every sub-field of a row holds as many elements
        m = len(flat.rows)
        counts = np.zeros(n, np.int64)
        if m:
            elements = {name: np.asarray(ctx.flat(name).values, dtype) for name, dtype in self.columns}
            hits = np.asarray(self.pred.eval(EvalContext(elements, m)), bool)
            counts = np.bincount(flat.rows[hits], minlength=n)
        return quantify(self.mode, counts, flat.lengths, self.count)


def quantify(mode: str, counts: np.ndarray, lengths: np.ndarray, count: int) -> np.ndarray:
    """Rows whose number of matching elements ``counts`` passes the quantifier (``lengths``: elements per row)."""
    if mode == "any":
        return counts >= 1
    if mode == "all":
        return counts == lengths
    if mode == "least":
        return counts >= count
    if mode == "most":
        return counts <= count
    return counts == count


def compile_match(c, node: ast.Call) -> StructMatch:
    """``node`` (an OPERATORS call) compiled by ``c`` (vecdb.expr.compiler._Compiler)."""
    label, mode = OPERATORS[node.name]
    if c.element is not None:
        what = "ElementFilter" if label == "ElementFilter" else "match expression"
        raise c.error(f"nested {label} is not supported, already inside {what} for field: {c.element.struct}",
                      node.pos)
    args = node.args
    want = 3 if mode in _THRESHOLD else 2
    plain = [a for a in args[:2] if not isinstance(a, ast.Keyword)]
    if len(args) != want or len(plain) != 2 or (want == 3 and not isinstance(args[2], ast.Keyword)):
        usage = f"{label}(struct_array_field, predicate{', threshold=N' if want == 3 else ''})"
        raise c.error(f"{label} takes {want} arguments: {usage}", node.pos)
    target = args[0]
    if not isinstance(target, ast.Name) or target.path:
        raise c.error(f"the first argument of {label} must be the name of an array-of-struct field", target.pos)
    if c.schema.struct(target.name) is None:
        if c.schema.field(target.name) is None:
            raise c.error(f"field {target.name} not exist", target.pos)
        raise c.error(f"{label} is only supported on array-of-struct fields, {target.name} is not one", target.pos)
    count = _threshold(c, args[2], label, mode) if want == 3 else 1
    scope = c.element = ElementScope(target.name, label)
    try:
        pred = c.predicate(args[1])
    finally:
        c.element = None
    if not scope.columns:
        raise c.error("predicate must not be constant; it has to test the array element via $[subField]",
                      args[1].pos)
    return StructMatch(target.name, mode, count, pred, scope.columns, element_level=label == "ElementFilter")


def _threshold(c, arg: ast.Node, label: str, mode: str) -> int:
    assert isinstance(arg, ast.Keyword)
    if arg.name != "threshold":
        raise c.error(f"expected 'threshold', got '{arg.name}'", arg.pos)
    v = c.value(arg.value)
    if not isinstance(v, nodes.Const) or v.type != "int":
        raise c.error(f"threshold of {label} must be an integer constant, got {v.desc}", arg.value.pos)
    count = int(v.value)
    if mode == "least" and count <= 0:
        raise c.error(f"count in {label} must be positive, got: {count}", arg.value.pos)
    if count < 0:
        raise c.error(f"count in {label} cannot be negative, got: {count}", arg.value.pos)
    return count


def refuse_in_element(c, node: ast.Node) -> None:
    """Raise for what an element predicate may not hold: a function call (other than a nested MATCH_*,
    which ``compile_match`` refuses with Milvus's message) or ``is null`` on a row-level field."""
    if isinstance(node, ast.Call) and node.name not in OPERATORS:
        raise c.error(f"{node.name}() is not supported in the predicate of {c.element.label}", node.pos)
    if isinstance(node, ast.IsNull) and isinstance(node.operand, ast.Name):
        raise c.error(ROW_LEVEL, node.operand.pos)


ROW_LEVEL = "predicate can only reference array elements ($[subField]); row-level field references are not supported"


def check_placement(expr: str, tree: ast.Node) -> None:
    """``element_filter`` may be the whole filter or the last operand of its top-level ``and`` chain
    (as in Milvus, where it carries the rest of that chain as its row-level predicate)."""
    top, stack = set(), [tree]
    while stack:  # the operands of the top-level ``and``s, however they are nested
        node = stack.pop()
        if isinstance(node, ast.Binary) and node.op == "and":
            stack += [node.left, node.right]
        else:
            top.add(id(node))
    last = tree
    while isinstance(last, ast.Binary) and last.op == "and":
        last = last.right
    stack = [tree]
    while stack:  # without recursing: the tree may be thousands of nodes deep in and / or chains
        node = stack.pop()
        if isinstance(node, ast.Call) and node.name == "element_filter" and node is not last:
            if id(node) in top:
                detail = "element filter expression can only be the last expression in the logical and expression"
            else:
                detail = ("element_filter can only be the whole filter or the last operand of its top-level "
                          "'and' (MATCH_ANY tests the same anywhere)")
            raise syntax_error(expr, f"{detail} at column {node.pos + 1}")
        if not (isinstance(node, ast.Call) and node.name in OPERATORS):  # nested: compile_match says
            stack.extend(ast.children(node))

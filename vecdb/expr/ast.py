"""Untyped syntax tree produced by ``vecdb.expr.parser``.

Every node keeps ``pos`` (0-based offset of its first token) so the compiler
can point at the offending column. Names are not resolved here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: object  # int, float, str or bool


@dataclass(frozen=True, slots=True)
class TimeLiteral(Literal):
    """``ISO '...'`` (an instant) or ``INTERVAL '...'`` (a duration), in microseconds: the literals a
    TIMESTAMPTZ field is compared with (a plain number is not one)."""


@dataclass(frozen=True, slots=True)
class ListLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Template(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Name(Node):
    """A field name, ``$meta``, or a dynamic key, with subscripts ``[...]``."""

    name: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class SubField(Node):
    """``$[name]``: sub-field ``name`` of the struct element an element predicate tests (Milvus 3.0's
    ``element_filter`` / ``MATCH_*``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # '-', '+', 'not'
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Arithmetic (+ - * / % **), comparison (== != < <= > >=) or logic (and, or)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Range(Node):
    """``lower op1 middle op2 upper`` with op1, op2 both in (<, <=) or both in (>, >=)."""

    lower: Node
    op1: str
    middle: Node
    op2: str
    upper: Node


@dataclass(frozen=True, slots=True)
class In(Node):
    value: Node
    items: Node  # ListLiteral or Template
    negate: bool


@dataclass(frozen=True, slots=True)
class Like(Node):
    value: Node
    pattern: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str  # lower-cased
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Keyword(Node):
    """``name=value``, an argument of a call (``text_match(f, 'a b', minimum_should_match=2)``)."""
    name: str
    value: Node


@dataclass(frozen=True, slots=True)
class Exists(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    operand: Node
    negate: bool


def children(node: Node) -> tuple[Node, ...]:
    """The nodes directly below ``node`` (for walks that must not recurse, e.g. the depth check)."""
    if isinstance(node, Literal):  # first: most nodes are (an ``in`` list of 10,000 keys)
        return ()
    if isinstance(node, (Unary, Exists, IsNull)):
        return (node.operand,)
    if isinstance(node, Keyword):
        return (node.value,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, ListLiteral):
        return node.items
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Range):
        return (node.lower, node.middle, node.upper)
    if isinstance(node, In):
        return (node.value, node.items)
    if isinstance(node, Like):
        return (node.value, node.pattern)
    return ()

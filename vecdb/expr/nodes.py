"""Typed value nodes of a compiled plan (``eval(ctx) -> runtime value``).

Each carries static facts for the compiler: ``type`` (int, float, bool,
str, json, array, list), ``is_json`` (a JSON path feeds it: ``!=`` then means
"not ==") and ``desc`` (text for error messages).

Arithmetic follows Milvus/C semantics: int op int stays int64 (``/``
truncates toward zero, ``%`` takes the dividend's sign), anything with a
float is float64 (JSON numbers: per row), and a zero divisor makes that row
invalid, so every comparison on it is false.
"""

from __future__ import annotations

import numpy as np

from vecdb.expr import rowdata
from vecdb.expr.runtime import ArrayVal, EvalContext, JsonVal, Scalar, Typed, and_masks

RuntimeValue = Scalar | Typed | JsonVal | ArrayVal


class ValueNode:
    __slots__ = ("type", "is_json", "desc")

    def __init__(self, type_: str, desc: str, is_json: bool = False):
        self.type, self.desc, self.is_json = type_, desc, is_json

    def eval(self, ctx: EvalContext) -> RuntimeValue:
        """This node's value for the rows of ``ctx``; every subclass implements it."""
        raise NotImplementedError


class Const(ValueNode):
    __slots__ = ("value",)

    def __init__(self, value, type_: str, desc: str):
        super().__init__(type_, desc)
        self.value = value

    def eval(self, ctx):
        return Scalar(self.value)


class Column(ValueNode):
    __slots__ = ("field", "cat")

    def __init__(self, field: str, type_: str, desc: str):
        super().__init__(type_, desc)
        self.field = field
        self.cat = {"int": "num", "float": "num"}.get(type_, type_)

    def eval(self, ctx: EvalContext) -> Typed:
        return Typed(self.cat, ctx.column(self.field))


class JsonPath(ValueNode):
    __slots__ = ("field", "path")

    def __init__(self, field: str, path: tuple, desc: str):
        super().__init__("json", desc, is_json=True)
        self.field, self.path = field, path

    def eval(self, ctx: EvalContext) -> JsonVal:
        return ctx.json(self.field, self.path)


class ArrayColumn(ValueNode):
    __slots__ = ("field", "elem")

    def __init__(self, field: str, elem: str, desc: str):
        super().__init__("array", desc)
        self.field, self.elem = field, elem

    def eval(self, ctx: EvalContext) -> ArrayVal:
        return ArrayVal(ctx.column(self.field))


class ArrayElem(ValueNode):
    """``field[index]`` of an ARRAY field; rows shorter than index+1 are invalid."""

    __slots__ = ("field", "index", "dtype")

    def __init__(self, field: str, index: int, elem: str, dtype, desc: str):
        super().__init__(elem, desc)
        self.field, self.index, self.dtype = field, index, np.dtype(dtype)

    def eval(self, ctx: EvalContext) -> Typed:
        cat = {"int": "num", "float": "num"}.get(self.type, self.type)
        flat = ctx.cached_flat(self.field)
        if flat is not None:
            valid = flat.lengths > self.index
            data = np.full(ctx.n, "", dtype=object) if cat == "str" else np.zeros(ctx.n, dtype=self.dtype)
            data[valid] = flat.values[flat.starts[valid] + self.index]
            return Typed(cat, data, valid)
        # one pass over the rows beats flattening when nothing else needs the flat form
        i = self.index
        filler = "" if cat == "str" else False if cat == "bool" else 0
        items = [a[i] if len(a) > i else filler for a in ctx.column(self.field)]
        if cat == "str":
            data = np.empty(len(items), dtype=object)
            data[:] = items
        else:
            data = np.array(items, dtype=self.dtype) if items else np.zeros(0, dtype=self.dtype)
        return Typed(cat, data, ctx.lengths(self.field) > i)


class ArrayLength(ValueNode):
    __slots__ = ("source",)

    def __init__(self, source: ArrayColumn | JsonPath, desc: str):
        super().__init__("int", desc)
        self.source = source

    def eval(self, ctx):
        src = self.source
        if isinstance(src, ArrayColumn):
            return Typed("num", ctx.lengths(src.field))
        return Typed("num", *rowdata.json_lengths(src.eval(ctx).raw))


class Arith(ValueNode):
    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left: ValueNode, right: ValueNode, type_: str, desc: str):
        super().__init__(type_, desc, is_json=left.is_json or right.is_json)
        self.op, self.left, self.right = op, left, right

    def eval(self, ctx):
        L, R = self.left.eval(ctx), self.right.eval(ctx)
        (a, am), (b, bm) = L.view("num"), R.view("num")
        valid = and_masks(am, bm)
        both_int = np.logical_and(L.int_rows(), R.int_rows())
        all_int = both_int.ndim == 0 and bool(both_int)
        mixed = both_int.ndim > 0
        if all_int:
            a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        else:
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        op = self.op
        if op in ("/", "%"):
            zero = b == 0
            if zero.any():
                valid = ~zero if valid is None else valid & ~zero
                b = np.where(zero, 1, b)
        if op == "+":
            data = a + b
        elif op == "-":
            data = a - b
        elif op == "*":
            data = a * b
        elif op == "%":
            data = np.fmod(a, b)
        elif all_int:
            data = trunc_div_int(a, b)
        else:
            data = a / b
            if mixed:
                data = np.where(both_int, np.trunc(data), data)
        data = np.broadcast_to(data, (ctx.n,)) if data.ndim == 0 else data
        return Typed("num", data, valid, both_int if mixed else None)


class Neg(ValueNode):
    __slots__ = ("operand",)

    def __init__(self, operand: ValueNode, desc: str):
        super().__init__(operand.type, desc, is_json=operand.is_json)
        self.operand = operand

    def eval(self, ctx):
        V = self.operand.eval(ctx)
        data, valid = V.view("num")
        isint = V.int_rows()
        if isinstance(isint, (bool, np.bool_)):
            data = np.asarray(data, np.int64 if isint else np.float64)
            isint = None
        return Typed("num", -data, valid, isint)


# what a field reference (``name``, ``name[...]``) compiles to
FieldNode = Column | JsonPath | ArrayColumn | ArrayElem


class PredValue(ValueNode):
    """A predicate used as a boolean operand, e.g. ``(a > 1) == true``."""

    __slots__ = ("pred",)

    def __init__(self, pred, desc: str):
        super().__init__("bool", desc)
        self.pred = pred

    def eval(self, ctx):
        return Typed("bool", self.pred.eval(ctx))


def trunc_div_int(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division (toward zero); ``b`` has no zeros."""
    q = np.floor_divide(a, b)
    fix = (q * b != a) & ((a < 0) != (b < 0))
    return q + fix

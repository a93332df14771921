"""Typed plan nodes built by the compiler, and their vectorised evaluation.

Value nodes (``eval(ctx) -> Val``) carry static facts for the compiler:
``type`` (int, float, bool, str, json, array, list), ``is_json`` (a JSON
path feeds it), ``desc`` (for error messages). Predicate nodes (``type ==
"pred"``) evaluate to a fresh bool array of length n that callers may
modify in place.

A runtime ``Val`` offers *views* by category ("num", "str", "bool",
"list"): ``(data, valid)`` where ``valid`` is None (every row holds that
type) or a bool mask. A comparison ORs, over the categories both sides
offer, ``op(left, right) & valid_left & valid_right``: rows whose JSON value
is missing or of another type are false. ``!=`` involving a JSON path is the
negation of ``==`` (Milvus: missing key or other type -> true); elsewhere
(array index out of range, division by zero) an invalid row is false for
every operator. ``not`` and ``not in`` negate the mask plainly.

Arithmetic follows Milvus/C semantics: int op int stays int64 (``/``
truncates toward zero, ``%`` takes the dividend's sign), anything with a
float is float64; a zero divisor makes that row invalid.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vecdb.expr import rowdata
from vecdb.expr.rowdata import MISSING

_CMP = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
        ">": np.greater, ">=": np.greater_equal}


class EvalContext:
    """One evaluation: lazy column reads and per-evaluation caches (JSON paths, flattened arrays)."""

    __slots__ = ("columns", "n", "_cache")

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

    def json(self, field: str, path: tuple) -> "JsonVal":
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


# --- runtime values ----------------------------------------------------------
class ListLit:
    """A list literal in a "list" view (JSON rows are plain lists, so literals are wrapped)."""

    __slots__ = ("value",)

    def __init__(self, value: list):
        self.value = value


class Scalar:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def view(self, cat: str):
        v, t = self.value, self.value.__class__
        if cat == "num" and t in (int, float):
            return (np.int64(v) if t is int else v), None
        if cat == "str" and t is str:
            return v, None
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

    __slots__ = ("raw", "_views", "_types")

    def __init__(self, raw: list):
        self.raw, self._views, self._types = raw, {}, None

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
            else:
                v = (self.raw, None)
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


# --- value nodes ---------------------------------------------------------------
class ValueNode:
    __slots__ = ("type", "is_json", "desc")

    def __init__(self, type_: str, desc: str, is_json: bool = False):
        self.type, self.desc, self.is_json = type_, desc, is_json


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

    def eval(self, ctx):
        return Typed(self.cat, ctx.column(self.field))


class JsonPath(ValueNode):
    __slots__ = ("field", "path")

    def __init__(self, field: str, path: tuple, desc: str):
        super().__init__("json", desc, is_json=True)
        self.field, self.path = field, path

    def eval(self, ctx):
        return ctx.json(self.field, self.path)


class ArrayColumn(ValueNode):
    __slots__ = ("field", "elem")

    def __init__(self, field: str, elem: str, desc: str):
        super().__init__("array", desc)
        self.field, self.elem = field, elem

    def eval(self, ctx):
        return ArrayVal(ctx.column(self.field))


class ArrayElem(ValueNode):
    """``field[index]`` of an ARRAY field; rows shorter than index+1 are invalid."""

    __slots__ = ("field", "index", "dtype")

    def __init__(self, field: str, index: int, elem: str, dtype, desc: str):
        super().__init__(elem, desc)
        self.field, self.index, self.dtype = field, index, np.dtype(dtype)

    def eval(self, ctx):
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

    def __init__(self, source: ValueNode, desc: str):
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
        valid = _and_masks(am, bm)
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


def _and_masks(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a & b


# --- predicate nodes -----------------------------------------------------------
class Pred:
    __slots__ = ()
    type = "pred"
    is_json = False


class ConstPred(Pred):
    __slots__ = ("value",)

    def __init__(self, value: bool):
        self.value = value

    def eval(self, ctx):
        return np.full(ctx.n, self.value, dtype=bool)


class And(Pred):
    __slots__ = ("children",)

    def __init__(self, children):
        self.children = children

    def eval(self, ctx):
        res = self.children[0].eval(ctx)
        for child in self.children[1:]:
            if not res.any():
                break
            res &= child.eval(ctx)
        return res


class Or(Pred):
    __slots__ = ("children",)

    def __init__(self, children):
        self.children = children

    def eval(self, ctx):
        res = self.children[0].eval(ctx)
        for child in self.children[1:]:
            if res.all():
                break
            res |= child.eval(ctx)
        return res


class Not(Pred):
    __slots__ = ("child",)

    def __init__(self, child):
        self.child = child

    def eval(self, ctx):
        res = self.child.eval(ctx)
        np.logical_not(res, out=res)
        return res


class Compare(Pred):
    __slots__ = ("op", "left", "right", "cats", "json_ne")

    def __init__(self, op: str, left: ValueNode, right: ValueNode, cats: tuple[str, ...]):
        self.op, self.left, self.right, self.cats = op, left, right, cats
        self.json_ne = op == "!=" and (left.is_json or right.is_json)

    def eval(self, ctx):
        L, R = self.left.eval(ctx), self.right.eval(ctx)
        if self.json_ne:
            res = compare("==", L, R, self.cats, ctx.n)
            np.logical_not(res, out=res)
            return res
        return compare(self.op, L, R, self.cats, ctx.n)


def compare(op: str, L, R, cats, n: int) -> np.ndarray:
    res = None
    fn = _CMP[op]
    for cat in cats:
        lv, rv = L.view(cat), R.view(cat)
        if lv is None or rv is None:
            continue
        if cat == "list":
            part = _list_equal(lv[0], rv[0], n)
            if op == "!=":
                np.logical_not(part, out=part)
        else:
            part = fn(lv[0], rv[0])
        mask = _and_masks(lv[1], rv[1])
        if mask is not None:
            part = part & mask
        res = part if res is None else res | part
    if res is None:
        return np.zeros(n, dtype=bool)
    if np.ndim(res) == 0:
        return np.full(n, bool(res), dtype=bool)
    return res if res.dtype == bool else res.astype(bool)


def _list_equal(a, b, n: int) -> np.ndarray:
    a_lit, b_lit = isinstance(a, ListLit), isinstance(b, ListLit)
    if a_lit and b_lit:
        return np.full(n, rowdata.json_equal(a.value, b.value), dtype=bool)
    if a_lit:
        return rowdata.rows_equal_list(b, a.value)
    if b_lit:
        return rowdata.rows_equal_list(a, b.value)
    return rowdata.rows_equal_rows(a, b)


class In(Pred):
    """``value in [...]``; ``values`` is the literal list, pre-split by category."""

    __slots__ = ("value", "nums", "strs", "bools", "lists", "negate")

    def __init__(self, value: ValueNode, values: list, negate: bool):
        self.value, self.negate = value, negate
        nums = [v for v in values if v.__class__ in (int, float)]
        self.nums = np.array(nums, dtype=np.int64 if all(type(v) is int for v in nums) else np.float64) if nums else None
        strs = [v for v in values if v.__class__ is str]
        self.strs = np.array(strs, dtype=object) if strs else None
        bools = sorted({v for v in values if v.__class__ is bool})
        self.bools = np.array(bools, dtype=bool) if bools else None
        self.lists = [v for v in values if v.__class__ is list]

    def eval(self, ctx):
        V = self.value.eval(ctx)
        res = np.zeros(ctx.n, dtype=bool)
        for cat, vals in (("num", self.nums), ("str", self.strs), ("bool", self.bools)):
            view = V.view(cat) if vals is not None else None
            if view is None:
                continue
            data, valid = view
            if isinstance(data, np.ndarray) and data.dtype == np.float32:
                vals = vals.astype(np.float32)
            part = np.isin(data, vals)
            res |= part if valid is None else part & valid
        if self.lists:
            view = V.view("list")
            if view is not None:
                for lit in self.lists:
                    res |= _list_equal(view[0], ListLit(lit), ctx.n)
        if self.negate:
            np.logical_not(res, out=res)
        return res


class Like(Pred):
    __slots__ = ("value", "matcher")

    def __init__(self, value: ValueNode, matcher):
        self.value, self.matcher = value, matcher

    def eval(self, ctx):
        view = self.value.eval(ctx).view("str")
        if view is None:
            return np.zeros(ctx.n, dtype=bool)
        data, valid = view
        res = self.matcher(data)
        return res if valid is None else res & valid


class JsonContains(Pred):
    __slots__ = ("target", "values", "mode")

    def __init__(self, target: JsonPath, values: list, mode: str):
        self.target, self.values, self.mode = target, values, mode

    def eval(self, ctx):
        return rowdata.json_contains(self.target.eval(ctx).raw, self.values, self.mode)


class ArrayContains(Pred):
    """contains / contains_all / contains_any on an ARRAY field, over its flattened elements."""

    __slots__ = ("field", "values", "mode", "float32")

    def __init__(self, field: str, values: list, mode: str, float32: bool):
        self.field, self.values, self.mode, self.float32 = field, values, mode, float32

    def _rows_with(self, flat, n, hits) -> np.ndarray:
        res = np.zeros(n, dtype=bool)
        res[flat.rows[hits]] = True
        return res

    def eval(self, ctx):
        n = ctx.n
        vals = self.values
        if self.mode == "all":
            if not vals:
                return np.ones(n, dtype=bool)
        elif not vals:
            return np.zeros(n, dtype=bool)
        flat = ctx.flat(self.field)
        if len(flat.values) == 0:
            return np.zeros(n, dtype=bool)
        arr = np.array(vals, dtype=np.float32 if self.float32 else object if isinstance(vals[0], str) else None)
        if self.mode == "all":
            res = np.ones(n, dtype=bool)
            for v in np.unique(arr) if arr.dtype != object else set(vals):
                res &= self._rows_with(flat, n, flat.values == v)
            return res
        return self._rows_with(flat, n, np.isin(flat.values, arr))


class Exists(Pred):
    __slots__ = ("target",)

    def __init__(self, target: JsonPath):
        self.target = target

    def eval(self, ctx):
        raw = self.target.eval(ctx).raw
        return np.fromiter([v is not MISSING for v in raw], bool, ctx.n)


class IsNull(Pred):
    """JSON: missing key or JSON null; array element: index out of range;
    other fields: a None entry (non-nullable columns never have one)."""

    __slots__ = ("value", "negate")

    def __init__(self, value: ValueNode, negate: bool):
        self.value, self.negate = value, negate

    def eval(self, ctx):
        V = self.value.eval(ctx)
        if isinstance(V, JsonVal):
            res = np.fromiter([v is MISSING or v is None for v in V.raw], bool, ctx.n)
        elif isinstance(V, Typed) and V.valid is not None:
            res = ~V.valid
        else:
            col = V.col if isinstance(V, ArrayVal) else V.data
            if col.dtype == object:
                res = np.fromiter([v is None for v in col], bool, ctx.n)
            else:
                res = np.zeros(ctx.n, dtype=bool)
        if self.negate:
            np.logical_not(res, out=res)
        return res

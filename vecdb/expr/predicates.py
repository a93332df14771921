"""Predicate nodes of a compiled plan: ``eval(ctx)`` returns a fresh bool
array of length n that callers may modify in place.

Comparison rule: OR, over the categories both operands offer, of
``op(left, right) & valid_left & valid_right`` -- rows whose JSON value is
missing or of another type are false. ``!=`` involving a JSON path is the
negation of ``==`` (Milvus: a missing key or another type matches ``!=``);
elsewhere (ARRAY index out of range, zero divisor) an invalid row is false
for every operator. ``not`` and ``not in`` negate the mask plainly.
"""

from __future__ import annotations

import numpy as np

from vecdb.expr import rowdata
from vecdb.expr.ngram_like import indexed_like
from vecdb.expr.nodes import Column, Const, FieldNode, JsonPath, ValueNode
from vecdb.expr.rowdata import MISSING
from vecdb.expr.runtime import ArrayVal, JsonVal, ListLit, Scalar, Typed, and_masks, object_scalar

_CMP = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
        ">": np.greater, ">=": np.greater_equal}


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
    """``not child`` as Milvus computes it over nullable fields: the child's result flipped, then ANDed
    with the child's validity (see :func:`validity`), so a row where the child is "unknown" stays false."""

    __slots__ = ("child", "valid")

    def __init__(self, child):
        self.child, self.valid = child, validity(child)

    def eval(self, ctx):
        res = self.child.eval(ctx)
        np.logical_not(res, out=res)
        if self.valid is not None:
            res &= eval_validity(self.valid, ctx)
        return res


def validity(pred):
    """Where ``pred``'s result is known, as Milvus tracks it beside each result bitmap: a predicate on
    nullable fields where all of them hold a value (``NonNull``'s masks), ``and`` / ``or`` where
    either side is known, ``not`` where its operand is; ``is null`` and predicates on other fields
    everywhere. A plan for :func:`eval_validity`: None (every row), ``("masks", keys)`` or
    ``("any", plans)``."""
    if isinstance(pred, NonNull):
        return ("masks", pred.masks)
    if isinstance(pred, Not):
        return pred.valid
    if isinstance(pred, (And, Or)):
        plans = [validity(c) for c in pred.children]
        if any(p is None for p in plans):
            return None
        return ("any", tuple(plans))
    return None


def eval_validity(plan, ctx) -> np.ndarray:
    kind, parts = plan
    if kind == "masks":
        res = np.array(ctx.column(parts[0]), dtype=bool)
        for key in parts[1:]:
            res &= ctx.column(key)
        return res
    res = eval_validity(parts[0], ctx)
    for p in parts[1:]:
        res |= eval_validity(p, ctx)
    return res


class NonNull(Pred):
    """``child`` on rows where every nullable field it reads holds a value, false elsewhere."""

    __slots__ = ("child", "masks")

    def __init__(self, child, masks: tuple[str, ...]):
        self.child, self.masks = child, masks

    def eval(self, ctx):
        res = self.child.eval(ctx)
        for key in self.masks:
            if not res.any():
                break
            res &= ctx.column(key)
        return res


def _indexed_column(value: ValueNode) -> bool:
    """A column a scalar index may answer for (vecdb.index.scalar: BOOL, numeric, VARCHAR)."""
    return isinstance(value, Column) and value.cat in ("num", "str", "bool")


class Compare(Pred):
    __slots__ = ("op", "left", "right", "cats", "json_ne", "indexable", "json_key")

    def __init__(self, op: str, left: ValueNode, right: ValueNode, cats: tuple[str, ...]):
        self.op, self.left, self.right, self.cats = op, left, right, cats
        # ``json != x`` is ``not json == x`` (a missing path or another type is "not equal"), except
        # against a list: Milvus reads the path as an array first, and a row without one is false
        self.json_ne = op == "!=" and (left.is_json or right.is_json) and cats != ("list",)
        # column op constant: a sealed segment's scalar index answers it (the same rows as the scan)
        self.indexable = _indexed_column(left) and isinstance(right, Const) and getattr(left, "cat", "") in cats
        # JSON path op constant: a sealed segment's JSON path index of the constant's type answers it
        self.json_key = ((left.field, left.path, cats[0]) if isinstance(left, JsonPath) and isinstance(right, Const)
                         and len(cats) == 1 and cats[0] in ("num", "str", "bool") else None)

    def eval(self, ctx):
        if self.indexable:
            assert isinstance(self.left, Column) and isinstance(self.right, Const)
            idx = ctx.index("scalar", self.left.field)
            if idx is not None:
                rv = Scalar(self.right.value).view(self.left.cat)
                if rv is None:
                    return np.zeros(ctx.n, dtype=bool)
                res = idx.compare(self.op, rv[0])
                if res is not None:  # else a scan is cheaper
                    return res
        if self.json_key is not None:
            jdx = ctx.index("json", self.json_key)
            if jdx is not None:
                assert isinstance(self.right, Const)
                res = jdx.compare("==" if self.json_ne else self.op, self.right.value)
                if self.json_ne:
                    np.logical_not(res, out=res)
                return res
            if self.json_key[2] == "str" and self.op in ("==", "!="):
                # a string equals only a string: Python's == on the raw values is the typed comparison,
                # without the type pass and the string view
                assert isinstance(self.left, JsonPath) and isinstance(self.right, Const)
                res = np.asarray(self.left.eval(ctx).objects() == object_scalar(self.right.value), bool)
                if self.json_ne:
                    np.logical_not(res, out=res)
                return res
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
            part = fn(*_as_float32(lv[0], rv[0]))
        mask = and_masks(lv[1], rv[1])
        if mask is not None:
            part = part & mask
        res = part if res is None else res | part
    if res is None:
        return np.zeros(n, dtype=bool)
    if np.ndim(res) == 0:
        return np.full(n, bool(res), dtype=bool)
    return res if res.dtype == bool else res.astype(bool)


def _as_float32(a, b):
    """An integer constant against a FLOAT column is compared as float32, as Milvus casts it (a float
    constant is already: a Python float takes the array's type)."""
    if isinstance(b, np.integer) and getattr(a, "dtype", None) == np.float32:
        return a, np.float32(b)
    if isinstance(a, np.integer) and getattr(b, "dtype", None) == np.float32:
        return np.float32(a), b
    return a, b


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
        all_int = all(type(v) is int for v in nums)
        self.nums = np.array(nums, dtype=np.int64 if all_int else np.float64) if nums else None
        strs = [v for v in values if v.__class__ is str]
        self.strs = np.array(strs, dtype=object) if strs else None
        bools = sorted({v for v in values if v.__class__ is bool})
        self.bools = np.array(bools, dtype=bool) if bools else None
        self.lists = [v for v in values if v.__class__ is list]

    def _indexed(self, ctx):
        """The rows a sealed segment's scalar index (or JSON path index) finds (None: no index, scan)."""
        col = self.value
        if isinstance(col, JsonPath):
            return self._json_indexed(ctx, col)
        if not _indexed_column(col):
            return None
        assert isinstance(col, Column)
        idx = ctx.index("scalar", col.field)
        if idx is None:
            return None
        vals = {"num": self.nums, "str": self.strs, "bool": self.bools}[col.cat]
        if vals is None:
            return np.zeros(ctx.n, dtype=bool)
        if idx.values.dtype == np.float32:
            vals = vals.astype(np.float32)
        return idx.isin(vals)

    def _json_indexed(self, ctx, path: JsonPath):
        """A list of constants of one type against a JSON path with an index of that type."""
        kinds = [(cat, vals) for cat, vals in (("num", self.nums), ("str", self.strs), ("bool", self.bools))
                 if vals is not None]
        if len(kinds) != 1 or self.lists:
            return None
        cat, vals = kinds[0]
        idx = ctx.index("json", (path.field, path.path, cat))
        if idx is not None:
            return idx.isin(vals)
        if cat != "str":
            return None
        objects = path.eval(ctx).objects()  # (a string equals only a string, as in Compare)
        res = np.zeros(ctx.n, dtype=bool)
        for v in vals:
            res |= objects == object_scalar(v)
        return res

    def eval(self, ctx):
        res = self._indexed(ctx)
        if res is not None:
            if self.negate:
                np.logical_not(res, out=res)
            return res
        V = self.value.eval(ctx)
        res = np.zeros(ctx.n, dtype=bool)
        for cat, vals in (("num", self.nums), ("str", self.strs), ("bool", self.bools)):
            if vals is None:
                continue
            view = V.view(cat)
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
        res = indexed_like(ctx, self.value, self.matcher)  # a sealed segment's NGRAM index: candidates only
        if res is not None:
            return res
        view = self.value.eval(ctx).view("str")
        if view is None:
            return np.zeros(ctx.n, dtype=bool)
        data, valid = view
        res = self.matcher(data)
        return res if valid is None else res & valid


class TextMatch(Pred):
    """``text_match(field, 'words'[, minimum_should_match=least])``: rows whose text holds any (at
    least ``least``) of the words' distinct tokens, both analyzed with the field's analyzer
    (vecdb.analyzer)."""

    __slots__ = ("field", "analyzer", "ids", "least")

    def __init__(self, field: str, analyzer, ids: np.ndarray, least: int = 1):
        self.field, self.analyzer, self.ids, self.least = field, analyzer, ids, least

    def eval(self, ctx):
        from vecdb.analyzer import match_any  # noqa: PLC0415 - analyzers only where text_match is used

        return match_any(ctx.column(self.field), self.analyzer, self.ids, self.least)


class TextMatchFuzzy(Pred):
    """``text_match_fuzzy(field, 'words', max_edit_distance=k)``: rows whose text holds a term within
    ``k`` (1 or 2) edits of any of the words' tokens, both analyzed with the field's analyzer; an
    adjacent transposition is one edit (``vecdb.text_fuzzy``). ``k`` 0 compiles to ``TextMatch``."""

    __slots__ = ("field", "analyzer", "tokens", "k")

    def __init__(self, field: str, analyzer, tokens: list[str], k: int):
        self.field, self.analyzer, self.tokens, self.k = field, analyzer, tokens, k

    def eval(self, ctx):
        from vecdb.text_fuzzy import match_fuzzy  # noqa: PLC0415 - analyzers only where it is used

        return match_fuzzy(ctx.column(self.field), self.analyzer, self.tokens, self.k)


class RandomSample(Pred):
    """``random_sample(f)``: each row with probability ``f`` (a fresh draw per evaluation: per segment
    and per read, as Milvus samples at the segment level)."""

    __slots__ = ("factor",)

    def __init__(self, factor: float):
        self.factor = factor

    def eval(self, ctx):
        return np.random.default_rng().random(ctx.n) < self.factor


class PhraseMatch(Pred):
    """``phrase_match(field, 'words', slop)``: rows whose text holds the words' tokens at positions
    ``p_i`` whose offsets ``p_i - i`` span at most ``slop`` (Lucene's and tantivy's sloppy phrase:
    0 is the exact phrase; 1 lets one word in between; 2 also matches two words swapped)."""

    __slots__ = ("field", "analyzer", "phrase", "slop", "positions")

    def __init__(self, field: str, analyzer, phrase: list[str], slop: int, positions: list[int] | None = None):
        self.field, self.analyzer, self.phrase, self.slop = field, analyzer, phrase, slop
        self.positions = positions  # the phrase tokens' positions (Analyzer.phrase; None: their indices)

    def eval(self, ctx):
        from vecdb.analyzer import match_phrase  # noqa: PLC0415 - analyzers only where phrase_match is used

        return match_phrase(ctx.column(self.field), self.analyzer, self.phrase, self.slop, self.positions)


class Spatial(Pred):
    """``ST_<OP>(field, 'wkt'[, meters])`` on a GEOMETRY field (Milvus 2.6): ``op`` one of
    ``vecdb.geometry.SPATIAL_CALLS``; ``query`` the WKB of the query geometry (none for
    ``st_isvalid``), ``meters`` ST_DWITHIN's distance. Vectorized over the column's cached
    geometries (vecdb.geometry)."""

    __slots__ = ("op", "field", "query", "meters")

    def __init__(self, op: str, field: str, query: bytes | None, meters: float = 0.0):
        self.op, self.field, self.query, self.meters = op, field, query, meters

    def eval(self, ctx):
        from vecdb import geometry  # noqa: PLC0415 - shapely only where a spatial filter is used

        col = ctx.column(self.field)
        if self.op == "st_isvalid":
            return geometry.is_valid(col)
        assert self.query is not None, "every spatial predicate but st_isvalid has a query geometry"
        if self.op == "st_dwithin":
            return geometry.dwithin(col, self.query, self.meters)
        return geometry.relate(self.op, col, self.query)


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
        arr = np.array(vals, dtype=np.float32 if self.float32 else object if isinstance(vals[0], str) else None)
        idx = ctx.index("array", self.field)  # a sealed segment's elements, sorted (vecdb.index.array_elements)
        if idx is not None:
            if self.mode != "all":
                return idx.isin(arr)
            res = np.ones(n, dtype=bool)
            for v in np.unique(arr) if arr.dtype != object else set(vals):
                res &= idx.rows_with(v)
            return res
        flat = ctx.flat(self.field)
        if len(flat.values) == 0:
            return np.zeros(n, dtype=bool)
        if self.mode == "all":
            res = np.ones(n, dtype=bool)
            for v in np.unique(arr) if arr.dtype != object else set(vals):
                res &= self._rows_with(flat, n, flat.values == (object_scalar(v) if isinstance(v, str) else v))
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
    """A nullable field: its validity mask (``mask``, the column holding it) says; otherwise JSON:
    missing key or JSON null; array element: index out of range; other fields: a None entry
    (non-nullable columns never have one)."""

    __slots__ = ("value", "negate", "mask")

    def __init__(self, value: FieldNode, negate: bool, mask: str | None = None):
        self.value, self.negate, self.mask = value, negate, mask

    def eval(self, ctx):
        if self.mask is not None:
            valid = ctx.column(self.mask)
            return np.array(valid, dtype=bool) if self.negate else ~valid
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

"""Property test: random expressions over random rows, vectorised evaluator == row-by-row reference."""

from __future__ import annotations

import expr_reference as R
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecdb.expr import compile_filter

SCHEMA = R.make_schema()

# --- data -----------------------------------------------------------------------------
ints = st.integers(-6, 6)
quarters = st.integers(-24, 24).map(lambda k: k / 4)  # exact in float32
texts = st.text(alphabet="ab_%\\", max_size=4)
numbers = st.one_of(ints, quarters)
json_scalar = st.one_of(ints, quarters, texts, st.booleans(), st.none())
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=5)

meta = st.fixed_dictionaries({}, optional={
    "x": json_value, "s": st.one_of(texts, ints), "b": st.one_of(st.booleans(), ints),
    "arr": st.lists(json_scalar, max_size=4), "n": st.fixed_dictionaries({}, optional={"y": json_scalar}),
})
dynamic = st.fixed_dictionaries({}, optional={"d": json_scalar, "e": st.lists(st.one_of(ints, texts), max_size=3)})
rows = st.lists(st.fixed_dictionaries({
    "a": ints, "small": st.integers(-100, 100), "i32": ints, "b": quarters, "f32": quarters,
    "flag": st.booleans(), "name": texts, "meta": meta, "tags": st.lists(ints, max_size=3),
    "strs": st.lists(texts, max_size=3), "fl": st.lists(quarters, max_size=3), "$meta": dynamic,
}), min_size=3, max_size=12)

# --- expressions ------------------------------------------------------------------------
style = st.integers(0, 5)
num_leaf = st.one_of(
    st.sampled_from([R.Field("a"), R.Field("small"), R.Field("i32"), R.Field("b"), R.Field("f32"),
                     R.JPath("meta", ("x",)), R.JPath("meta", ("n", "y")), R.JPath("meta", ("arr", 0)),
                     R.JPath("d", dynamic=True), R.JPath("d", dynamic=True, explicit_meta=True),
                     R.ArrElem("tags", 0), R.ArrElem("tags", 2), R.ArrElem("fl", 1),
                     R.ArrLen("tags"), R.ArrLen(R.JPath("meta", ("arr",)))]),
)
num_lit = numbers.map(R.Lit)


def _arith(draw_children):
    def build(t):
        op, left, right = t
        if isinstance(left, R.Lit) and isinstance(right, R.Lit):
            return left
        if op in "/%" and isinstance(right, R.Lit) and right.value == 0:
            right = R.Lit(3)
        return R.Arith(op, left, right)
    return st.tuples(st.sampled_from("+-*/%"), draw_children, draw_children).map(build)


num_value = st.recursive(
    st.one_of(num_leaf, num_lit),
    lambda inner: st.one_of(_arith(inner), num_leaf.map(R.Neg)),
    max_leaves=4,
)
str_value = st.one_of(
    st.sampled_from([R.Field("name"), R.JPath("meta", ("s",)), R.JPath("meta", ("x",)),
                     R.JPath("d", dynamic=True), R.ArrElem("strs", 0), R.ArrElem("strs", 1)]),
    texts.map(R.Lit),
)
str_target = st.sampled_from([R.Field("name"), R.JPath("meta", ("s",)), R.JPath("d", dynamic=True),
                              R.ArrElem("strs", 0)])
bool_value = st.one_of(st.sampled_from([R.Field("flag"), R.JPath("meta", ("b",))]), st.booleans().map(R.Lit))
json_path = st.sampled_from([R.JPath("meta", ("x",)), R.JPath("meta", ("arr",)), R.JPath("meta", ("n", "y")),
                             R.JPath("meta", ("s",)), R.JPath("d", dynamic=True), R.JPath("e", dynamic=True),
                             R.JPath("meta", ("arr", 1))])
list_lit = st.lists(st.one_of(ints, quarters, texts, st.booleans()), max_size=4)
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
like_pattern = st.text(alphabet="ab%_\\", max_size=5)

leaf_pred = st.one_of(
    st.builds(R.Cmp, ops, num_value, num_value),
    st.builds(R.Cmp, ops, str_value, str_value),
    st.builds(R.Cmp, st.sampled_from(["==", "!="]), bool_value, bool_value),
    st.builds(R.Cmp, st.sampled_from(["==", "!="]), json_path, st.lists(numbers, max_size=3).map(R.Lit)),
    st.builds(R.Cmp, st.sampled_from(["==", "!="]), st.sampled_from([R.Field("tags")]),
              st.lists(ints, max_size=3).map(R.Lit)),
    st.builds(lambda lo, o1, m, o2, hi: R.Range(lo, o1, m, o2, hi), num_lit, st.sampled_from(["<", "<="]),
              st.sampled_from([R.Field("a"), R.Field("b"), R.JPath("meta", ("x",))]),
              st.sampled_from(["<", "<="]), num_lit),
    st.builds(lambda hi, o1, m, o2, lo: R.Range(hi, o1, m, o2, lo), num_lit, st.sampled_from([">", ">="]),
              st.sampled_from([R.Field("small"), R.JPath("d", dynamic=True)]),
              st.sampled_from([">", ">="]), num_lit),
    st.builds(R.In, st.sampled_from([R.Field("a"), R.Field("f32"), R.ArrElem("tags", 0)]),
              st.lists(numbers, max_size=4), st.booleans(), style),
    st.builds(R.In, st.sampled_from([R.Field("name"), R.ArrElem("strs", 0)]), st.lists(texts, max_size=4),
              st.booleans(), style),
    st.builds(R.In, json_path, list_lit, st.booleans(), style),
    st.builds(R.Like, str_target, like_pattern),
    st.builds(R.Contains, st.sampled_from(["json_contains", "JSON_CONTAINS", "array_contains"]),
              json_path, st.one_of(ints, texts, st.booleans(), st.lists(ints, max_size=2))),
    st.builds(R.Contains, st.sampled_from(["json_contains_all", "json_contains_any", "array_contains_any"]),
              json_path, list_lit),
    st.builds(R.Contains, st.sampled_from(["array_contains", "json_contains"]), st.just("tags"), ints),
    st.builds(R.Contains, st.sampled_from(["array_contains_all", "array_contains_any"]), st.just("tags"),
              st.lists(numbers, max_size=3)),
    st.builds(R.Contains, st.sampled_from(["array_contains", "array_contains_any"]), st.just("strs"),
              st.one_of(texts, st.lists(texts, max_size=3)))
    .filter(lambda c: isinstance(c.arg, list) == c.func.endswith("_any")),
    st.builds(R.Exists, json_path),
    st.builds(R.IsNull, st.sampled_from([R.JPath("meta", ("x",)), R.JPath("d", dynamic=True),
                                         R.ArrElem("tags", 1), R.Field("a"), R.Field("name")]), st.booleans()),
    st.sampled_from([R.Truth(R.Field("flag")), R.Const(True), R.Const(False)]),
)

predicate = st.recursive(
    leaf_pred,
    lambda inner: st.one_of(
        st.builds(R.Logic, st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3), style),
        st.builds(R.NotP, inner, style),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=rows, expr=predicate)
def test_evaluator_matches_reference(data, expr):
    text = expr.render()
    flt = compile_filter(text, SCHEMA)
    cols = R.rows_to_columns(data)
    got = flt.evaluate(cols, len(data))
    assert got.dtype == np.bool_ and got.shape == (len(data),)
    want = [expr.ev(r) for r in data]
    assert got.tolist() == want, text


class _Recording(dict):
    def __init__(self, cols):
        super().__init__(cols)
        self.read = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)


@settings(max_examples=100, deadline=None)
@given(data=rows, expr=predicate)
def test_reads_only_declared_fields_and_is_repeatable(data, expr):
    flt = compile_filter(expr.render(), SCHEMA)
    cols = _Recording(R.rows_to_columns(data))
    first = flt.evaluate(cols, len(data))
    assert cols.read <= flt.fields
    first[:] = ~first  # callers may mutate the mask; columns and later results are unaffected
    again = flt.evaluate(R.rows_to_columns(data), len(data))
    assert again.tolist() == [expr.ev(r) for r in data]

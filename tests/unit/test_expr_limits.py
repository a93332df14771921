"""Bounded cost: length and depth limits, constant folding that never computes a huge number,
and literals out of range. Every refusal is InvalidParameter (code 1100) with the usual
"cannot parse expression: <expr>, error: ... at column N" message."""

from __future__ import annotations

import threading
import time

import expr_reference as R
import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.expr.limits import MAX_DEPTH, MAX_EXPR_LENGTH, MAX_NESTING

SCHEMA = R.make_schema()
COLS = {"a": np.array([0, 5, 10], dtype=np.int64), "b": np.array([0.5, 1.5, 2.5]),
        "flag": np.array([True, False, True]), "meta": np.array(['{"x": 1}', '{"x": [1]}', "{}"], dtype=object)}


def mask(expr: str) -> list[bool]:
    return compile_filter(expr, SCHEMA).evaluate(COLS, 3).tolist()


def error_of(expr: str, **templates) -> str:
    start = time.perf_counter()
    with pytest.raises(InvalidParameter) as ei:
        compile_filter(expr, SCHEMA, templates or None)
    assert time.perf_counter() - start < 5.0  # linear: well under; a backtracking blow-up: hours
    assert ei.value.code == 1100
    msg = str(ei.value)
    assert msg.startswith("cannot parse expression: ")
    return msg.split(", error: ", 1)[1]


# --- constant folding ------------------------------------------------------------------
@pytest.mark.parametrize("expr,detail", [
    ("a > 3 ** 10000000", "integer result of 3 ** 10000000 is out of int64 range at column 5"),
    ("a > 9 ** 9 ** 9", "integer result of 9 ** 387420489 is out of int64 range at column 5"),
    ("a > 2 ** 20000", "integer result of 2 ** 20000 is out of int64 range at column 5"),
    ("a > (-3) ** 99999999999", "integer result of -3 ** 99999999999 is out of int64 range at column 6"),
    ("a > 2 ** 63", "integer 9223372036854775808 out of int64 range at column 5"),
    ("a > 0 ** -1", "invalid constant arithmetic 0 ** -1 at column 5"),
    ("a > (-8) ** 0.5", "invalid constant arithmetic -8 ** 0.5 at column 6"),
    ("a > 10.0 ** 400", "invalid constant arithmetic 10.0 ** 400 at column 5"),
    ("a > 1.5 ** 9223372036854775807", "invalid constant arithmetic 1.5 ** 9223372036854775807 at column 5"),
    ("a > 9223372036854775807 * 9223372036854775807",
     "integer 85070591730234615847396907784232501249 out of int64 range at column 5"),
    ("b > 1e308 * 10", "invalid constant arithmetic 1e+308 * 10 at column 5"),  # no silent inf
    ("b > -1e308 - 1e308", "invalid constant arithmetic -1e+308 - 1e+308 at column 5"),
])
def test_folding_refuses_out_of_range_results_at_once(expr, detail):
    assert error_of(expr) == detail


@pytest.mark.parametrize("expr,want", [
    ("a == 2 ** 62 - 4611686018427387904", [True, False, False]),  # 2**62 itself fits
    ("a < (-2) ** 63 + 1", [False, False, False]),  # exactly INT64_MIN
    ("a == 1 ** 99999999999 + 4", [False, True, False]),  # |base| <= 1: never large
    ("a == (-1) ** 9223372036854775807 + 1", [True, False, False]),
    ("b == 2 ** -1", [True, False, False]),  # negative exponent: a float
    ("a == 0 ** 0 + 4", [False, True, False]),
])
def test_power_in_range_still_folds(expr, want):
    assert mask(expr) == want


# --- literals --------------------------------------------------------------------------
@pytest.mark.parametrize("literal,shown", [
    ("9" * 5000, "9" * 64 + "... (5000 characters)"),  # over Python's 4300-digit int() limit
    ("0x" + "f" * 100_000, "0x" + "f" * 62 + "... (100002 characters)"),
    ("99999999999999999999", "99999999999999999999"),
])
def test_huge_integer_literal(literal, shown):
    assert error_of(f"a > {literal}") == f"integer {shown} out of int64 range at column 5"


@pytest.mark.parametrize("literal", ["1e400", "0x1p99999", "-1e309"])
def test_float_literal_out_of_range(literal):
    text = literal.lstrip("-")
    col = 5 + literal.startswith("-")
    assert error_of(f"b > {literal}") == f"float {text} out of range at column {col}"


def test_long_expression_is_clipped_in_the_message():
    expr = "a > " + "9" * 100_000
    with pytest.raises(InvalidParameter) as ei:
        compile_filter(expr, SCHEMA)
    assert len(str(ei.value)) < 1300
    assert str(ei.value).startswith("cannot parse expression: a > 999") and "(100004 characters)" in str(ei.value)


# --- length ----------------------------------------------------------------------------
def test_expression_length_limit():
    expr = "a in [" + ",".join(["1"] * (MAX_EXPR_LENGTH // 2)) + "]"
    assert len(expr) > MAX_EXPR_LENGTH
    assert error_of(expr) == f"the expression is {len(expr)} characters long, more than the limit of {MAX_EXPR_LENGTH}"


def test_a_long_in_list_below_the_limit_works():
    expr = "a in [" + ",".join(map(str, range(0, 200_000, 5))) + "]"
    assert len(expr) < MAX_EXPR_LENGTH
    assert mask(expr) == [True, True, True]


# --- depth -----------------------------------------------------------------------------
def nest(n: int, open_: str, inner: str, close: str) -> str:
    return open_ * n + inner + close * n


@pytest.mark.parametrize("expr,col", [
    (nest(5000, "(", "a > 1", ")"), MAX_NESTING + 1),
    ("a in " + nest(5000, "[", "1", "]"), 6 + MAX_NESTING),
    ("not " * 5000 + "flag", 4 * MAX_NESTING + 1),
    ("a > " + "-" * 5000 + "1", 5 + MAX_NESTING),
    ("a > " + "2 ** " * 5000 + "1", 7 + 5 * MAX_NESTING),  # at the 65th **
    ("exists " * 5000 + 'meta["x"]', 7 * MAX_NESTING + 1),
    (nest(5000, "array_length(", "tags", ")") + " > 0", 13 * MAX_NESTING + 13),  # at its (
])
def test_nesting_limit(expr, col):
    assert error_of(expr) == f"the expression is nested too deeply (more than {MAX_NESTING} levels) at column {col}"


def test_tree_depth_limit():
    expr = " + ".join(["a"] * 5000) + " > 0"
    assert error_of(expr).startswith(
        f"the expression is nested too deeply (its syntax tree is more than {MAX_DEPTH} levels deep) at column ")


def test_long_or_chain_is_flat():
    # 20,000 terms: flattened, not a 20,000-deep tree
    expr = " or ".join(f"a == {i}" for i in range(1, 20_001))
    assert mask(expr) == [False, True, True]
    expr = " && ".join(f"a != {i}" for i in range(1, 20_001)) + " and (flag or a > 1)"
    assert mask(expr) == [True, False, False]


AT_LIMIT = [
    nest(MAX_NESTING - 1, "(", "a > 1", ")"),
    nest(MAX_NESTING - 2, "(", "a > 1 or (a < 1)", ")"),
    'meta["x"] in ' + nest(MAX_NESTING - 1, "[", "", "]"),
    "a > " + nest(MAX_NESTING // 2 - 1, "-(", "1", ")"),
    nest(MAX_NESTING // 2 - 1, "not (", "flag", ")"),
    nest(MAX_NESTING - 3, "(", " + ".join(["a"] * (MAX_DEPTH - MAX_NESTING - 2)), ")") + " > 0",
    " + ".join(["a"] * (MAX_DEPTH - 2)) + " > 0",
    "b > " + " * ".join(["b"] * (MAX_DEPTH - 2)),
]


def test_expressions_at_the_limits_fit_in_a_busy_stack():
    # A gRPC handler compiles with ~50 frames below it; leave 200 and check the deepest
    # accepted expressions still compile and evaluate under Python's default recursion limit.
    results = {}

    def dig(n: int):
        if n:
            return dig(n - 1)
        for expr in AT_LIMIT:
            results[expr] = len(compile_filter(expr, SCHEMA).evaluate(COLS, 3))

    t = threading.Thread(target=dig, args=(200,))
    t.start()
    t.join()
    assert results == {expr: 3 for expr in AT_LIMIT}

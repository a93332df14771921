"""Lexer, parser and compile-time errors of the filter expression language."""

from __future__ import annotations

import expr_reference as R
import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import ast, compile_filter
from vecdb.expr.lexer import tokenize
from vecdb.expr.parser import parse

SCHEMA = R.make_schema()
STATIC = R.make_schema(dynamic=False)


def lit(expr: str):
    node = parse(expr)
    assert isinstance(node, ast.Literal)
    return node.value


# --- lexer ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [
    ("42", 42), ("0", 0), ("0x1F", 31), ("0X1f", 31), ("0b101", 5), ("017", 15), ("0o17", 15),
    ("1.5", 1.5), (".5", 0.5), ("2.", 2.0), ("1e3", 1000.0), ("2.5E-3", 0.0025), ("0x1p3", 8.0),
    ("9223372036854775807", 2**63 - 1),
])
def test_numbers(text, value):
    v = lit(text)
    assert v == value and type(v) is type(value)


@pytest.mark.parametrize("text,value", [
    ('"abc"', "abc"), ("'abc'", "abc"), ('"it\'s"', "it's"), ("'say \"hi\"'", 'say "hi"'),
    (r'"a\"b"', 'a"b'), (r"'a\'b'", "a'b"), (r'"tab\there"', "tab\there"), (r'"nl\n"', "nl\n"),
    (r'"back\\slash"', "back\\slash"), (r'"\x41\u00e9\U0001F600"', "A\u00e9\U0001F600"), (r'"\101"', "A"),
    (r'"50\%"', "50\\%"), (r'r"raw\n"', "raw\\n"), ('""', ""), ('"日本"', "日本"),
])
def test_strings(text, value):
    assert lit(text) == value


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("TRUE", True), ("false", False),
                                        ("False", False), ("FALSE", False)])
def test_booleans(text, value):
    assert lit(text) is value


def test_keywords_lower_or_upper_only():
    kinds = [(t.kind, t.value) for t in tokenize("a AND b and c Or d")]
    assert kinds[:6] == [("IDENT", "a"), ("KW", "and"), ("IDENT", "b"), ("KW", "and"), ("IDENT", "c"),
                         ("IDENT", "Or")]


def test_token_positions():
    toks = tokenize('ab >= "x"  && $meta["k"]')
    assert [(t.text, t.pos) for t in toks] == [("ab", 0), (">=", 3), ('"x"', 6), ("&&", 11), ("$meta", 14),
                                              ("[", 19), ('"k"', 20), ("]", 23), ("", 24)]


# --- parser -----------------------------------------------------------------------------
def test_precedence_not_and_or():
    node = parse("not a or b and c")
    assert isinstance(node, ast.Binary) and node.op == "or"
    assert isinstance(node.left, ast.Unary) and node.left.op == "not"
    assert isinstance(node.right, ast.Binary) and node.right.op == "and"


def test_not_binds_looser_than_comparison():
    node = parse("not a > 1")
    assert isinstance(node, ast.Unary) and isinstance(node.operand, ast.Binary) and node.operand.op == ">"


def test_arithmetic_precedence():
    node = parse("a + b * -c > 2")
    assert node.op == ">"
    add = node.left
    assert add.op == "+" and add.right.op == "*" and isinstance(add.right.right, ast.Unary)


def test_range_and_reverse_range():
    r = parse("1 < a <= 5")
    assert isinstance(r, ast.Range) and (r.op1, r.op2) == ("<", "<=")
    r = parse('10 >= meta["x"] > 2')
    assert isinstance(r, ast.Range) and r.middle.path == ("x",)


def test_subscripts_and_calls():
    node = parse('JSON_Contains(meta["a"][0]["b"], 1)')
    assert isinstance(node, ast.Call) and node.name == "json_contains"
    assert node.args[0].path == ("a", 0, "b")


def test_in_forms():
    node = parse("a not in [1, 2,]")
    assert isinstance(node, ast.In) and node.negate and len(node.items.items) == 2
    assert isinstance(parse("a IN {vals}").items, ast.Template)


# --- behaviour of syntax forms ------------------------------------------------------------
ROWS = [
    {"a": 1, "b": 0.5, "flag": True, "name": "apple"},
    {"a": 5, "b": 3.0, "flag": False, "name": "banana"},
    {"a": 7, "b": 9.5, "flag": True, "name": "cherry"},
    {"a": -4, "b": 1.0, "flag": False, "name": "avocado"},
]
COLS = R.rows_to_columns(ROWS)


def mask(expr: str, schema=SCHEMA, **templates) -> list[bool]:
    return compile_filter(expr, schema, templates or None).evaluate(COLS, len(ROWS)).tolist()


@pytest.mark.parametrize("expr,want", [
    ("a > 1 and b < 5", [False, True, False, False]),
    ("a > 1 && b < 5", [False, True, False, False]),
    ("a > 1 AND b < 5", [False, True, False, False]),
    ("a == 1 or a == 7", [True, False, True, False]),
    ("a == 1 || a == 7", [True, False, True, False]),
    ("not a == 1", [False, True, True, True]),
    ("!(a == 1)", [False, True, True, True]),
    ("NOT (a == 1 or a == 5)", [False, False, True, True]),
    ("a == 1 or a == 5 and b > 100", [True, False, False, False]),
    ("(a == 1 or a == 5) and b > 1", [False, True, False, False]),
    ("not flag", [False, True, False, True]),
    ("not not flag", [True, False, True, False]),
    ("true", [True] * 4),
    ("False", [False] * 4),
    ("1 < a < 7", [False, True, False, False]),
    ("1 <= a <= 7", [True, True, True, False]),
    ("7 > a > -4", [True, True, False, False]),
    ("5 < a", [False, False, True, False]),
    ("(a > 1) == true", [False, True, True, False]),
    ("(a > 1) != flag", [True, True, False, False]),
    ("a + 1 > 2 * 3 - 1", [False, True, True, False]),
    ("1 < 2", [True] * 4),
    ("2 + 2 == 5", [False] * 4),
    ('"a" < "b"', [True] * 4),
])
def test_forms(expr, want):
    assert mask(expr) == want


def test_templates():
    assert mask("a > {lo}", lo=4) == [False, True, True, False]
    assert mask("a in {vals} and b < {hi}", vals=[1, 7], hi=5.0) == [True, False, False, False]
    assert mask("name == {n}", n="cherry") == [False, False, True, False]
    assert mask("flag == {f}", f=np.bool_(False)) == [False, True, False, True]
    assert mask("a in {vals}", vals=np.array([5, -4])) == [False, True, False, True]


def test_filters_are_cached_and_fields_reported():
    f1 = compile_filter("a > 1 and meta['x'] == 2 and k == 1", SCHEMA)
    assert f1 is compile_filter("a > 1 and meta['x'] == 2 and k == 1", SCHEMA)
    assert f1.fields == frozenset({"a", "meta", "$meta"})
    f_int = compile_filter("b > {x}", SCHEMA, {"x": 1})
    assert f_int is compile_filter("b > {x}", SCHEMA, {"x": 1})
    assert f_int is not compile_filter("b > {x}", SCHEMA, {"x": 1.0})
    with pytest.raises(InvalidParameter):
        compile_filter("b > {x}", SCHEMA, {"x": True})  # True == 1 must not hit the cached int filter


def test_empty_segment():
    flt = compile_filter('a > 1 and meta["x"] like "a%" and array_contains(tags, 1) and tags[0] == 1', SCHEMA)
    out = flt.evaluate(R.rows_to_columns([]), 0)
    assert out.dtype == np.bool_ and out.shape == (0,)


# --- errors -----------------------------------------------------------------------------
def error_of(expr: str, schema=SCHEMA, **templates) -> str:
    with pytest.raises(InvalidParameter) as ei:
        compile_filter(expr, schema, templates or None)
    msg = str(ei.value)
    assert msg.startswith(f"cannot parse expression: {expr}, error: ")
    return msg.split(", error: ", 1)[1]


@pytest.mark.parametrize("expr,detail", [
    ("a >> 3", "unexpected token '>' at column 4"),
    ("a > ", "unexpected end of expression at column 5"),
    ("a > 1 and", "unexpected end of expression at column 10"),
    ("(a > 1", "unexpected end of expression at column 7 (expected ')')"),
    ("a > 1)", "unexpected token ')' at column 6"),
    ("a = 1", "unexpected token '=' at column 3 (use '==' to compare)"),
    ("f(a = 1 = 2)", "unexpected token '=' at column 9 (expected ')')"),
    ("a > 1 a < 2", "unexpected token 'a' at column 7"),
    ("a @ 1", "unexpected character '@' at column 3"),
    ('name == "abc', "unterminated string literal at column 9"),
    ("a > 12abc", "invalid number '12abc' at column 5"),
    ("a > 99999999999999999999", "integer 99999999999999999999 out of int64 range at column 5"),
    ("a in 5", "unexpected token '5' at column 6 (expected a list after 'in')"),
    ("1 < a > 0", "invalid range at column 7: both operators must be < / <= or > / >="),
    ("1 < a + 1 < 3", "invalid range at column 5: the middle operand must be a field"),
    ("meta[-1] > 0", "unexpected token '-' at column 6 (a JSON key must be a string or a non-negative integer)"),
    ("a is nul", "unexpected token 'nul' at column 6 (expected 'null')"),
])
def test_syntax_errors_point_at_token(expr, detail):
    assert error_of(expr) == detail


@pytest.mark.parametrize("expr,detail", [
    ("nosuch > 1", "field nosuch not exist at column 1"),
    ('nosuch["k"] > 1', "field nosuch not exist at column 1"),
    ('$meta["k"] > 1', "field $meta not exist at column 1"),
    ("a > 1 and zz == 2", "field zz not exist at column 11"),
])
def test_unknown_field_without_dynamic_schema(expr, detail):
    assert error_of(expr, STATIC) == detail


@pytest.mark.parametrize("expr,fragment", [
    ('a == "x"', 'comparison between a (Int64) and "x" (VarChar) is not supported'),
    ("name > 3", "comparison between name (VarChar) and 3 (Int64) is not supported"),
    ("flag == 1", "comparison between flag (Bool) and 1 (Int64)"),
    ("flag > true", "operator > is not supported between flag (Bool) and true (Bool)"),
    ("tags == 1", "comparison between tags (Array) and 1 (Int64)"),
    ("tags < [1]", "operator < is not supported"),
    ('meta["x"] > true', "operator > is not supported"),
    ("name + 1 > 2", "arithmetic operator '+' is not supported on name (VarChar) at column 1"),
    ("-name == 1", "arithmetic operator '-' is not supported on name (VarChar)"),
    ("flag * 2 == 1", "arithmetic operator '*' is not supported on flag (Bool)"),
    ("a ** 2 > 1", "power operator is only supported on constants"),
    ("a / 0 > 1", "divide by zero at column 5"),
    ("a % (1 - 1) == 0", "modulo by zero"),
    ("a + 1", "a + 1 (Int64) is not a boolean expression at column 1"),
    ("name", "name (VarChar) is not a boolean expression"),
    ("a > 1 and 5", "5 (Int64) is not a boolean expression at column 11"),
    # a bare JSON path is no predicate either (Milvus 2.3.5: "... data type: JSON"), so
    # `not meta["k"]` cannot delete every row whose "k" is missing
    ('meta["k"]', 'meta["k"] (JSON) is not a boolean expression at column 1'),
    ('not meta["k"]', 'meta["k"] (JSON) is not a boolean expression at column 5'),
    ('a > 1 or meta["k"][0]', 'meta["k"][0] (JSON) is not a boolean expression at column 10'),
    ("meta", "meta (JSON) is not a boolean expression"),
    ("dyn_key", 'is not a boolean expression'),
    ('a like "x%"', "like operation on non-string or no-json field is unsupported: a (Int64)"),
    ("name like 5", "the pattern of like must be a string literal"),
    ("name like b", "the pattern of like must be a string literal"),
    ('a in ["x"]', 'value "x" in the list is not compatible with a (Int64)'),
    ("name in [1]", "value 1 in the list is not compatible with name (VarChar)"),
    ("flag in [1]", "value 1 in the list is not compatible with flag (Bool)"),
    ("a in [b]", "list elements must be constants, got b (Double)"),
    ("tags in [1]", "'in' is not supported on tags (Array)"),
    ("array_contains(name, 1)", "array_contains operation is only supported on json or array fields"),
    ("array_contains(a, 1)", "only supported on json or array fields"),
    ('array_contains(tags, "x")', 'value "x" is not compatible with the elements of tags (Array of Int64)'),
    ("array_contains(strs, 1)", "value 1 is not compatible with the elements of strs (Array of VarChar)"),
    ("array_contains_all(tags, 1)", "array_contains_all operation element must be an array"),
    ("json_contains_any(meta, 1)", "json_contains_any operation element must be an array"),
    ("json_contains(meta)", "json_contains takes 2 arguments, got 1"),
    ("json_contains(meta, a)", "the second argument of json_contains must be a constant"),
    ("array_length(a) > 1", "array_length is only supported on array or json fields"),
    ("array_length(tags)", "is not a boolean expression"),
    ("exists a", "exists operations are only supported on json field, got a (Int64)"),
    ("(a + 1) is null", "is null can only be applied to a field or a JSON path"),
    ("foo(a) > 1", "function foo() is not supported"),
    ("vec > 1", "field vec of type FLOAT_VECTOR can't be used in a filter expression"),
    ('a["k"] > 1', "field a is not a json or array field and can't be indexed"),
    ('tags["k"] > 1', "array field tags only supports one integer index"),
    ("tags[0][1] > 1", "array field tags only supports one integer index"),
    ("a > {lo}", "the value of expression template variable lo is not found"),
    ("a > 9223372036854775807 + 1", "integer 9223372036854775808 out of int64 range"),
])
def test_type_errors(expr, fragment):
    assert fragment in error_of(expr)


def test_template_type_errors():
    assert "the value of expression template variable x is not found" in error_of("a > {x}", y=1)
    assert "not compatible with a (Int64)" in error_of("a in {v}", v=["s"])
    assert "right side of 'in' must be a list" in error_of("a in {v}", v=3)
    assert "unsupported value" in error_of("a > {v}", v={"k": 1})


def test_deep_nesting_is_an_input_error():
    expr = "(" * 3000 + "a > 1" + ")" * 3000
    with pytest.raises(InvalidParameter, match="nested too deeply"):
        compile_filter(expr, SCHEMA)
    # moderately deep expressions still work
    expr = " + ".join(["a"] * 100) + " > 0"
    assert mask(expr) == [True, True, True, False]


def test_escaped_surrogate_pairs_join_and_lone_surrogates_are_refused():
    assert tokenize(r'"\ud83d\ude00!"')[0].value == "\U0001F600!"  # as JSON decodes it
    with pytest.raises(InvalidParameter, match="lone surrogate"):
        tokenize(r'"\ud800"')
    with pytest.raises(InvalidParameter, match="lone surrogate"):
        tokenize(r'"\udc00\ud800"')  # the wrong order is no pair

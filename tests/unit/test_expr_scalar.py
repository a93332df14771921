"""Every operator on every typed scalar field, with expected masks."""

from __future__ import annotations

import expr_reference as R
import numpy as np
import pytest

from vecdb.expr import compile_filter

SCHEMA = R.make_schema(dynamic=False)
ROWS = [
    {"a": 1, "small": -100, "i32": 3, "b": 0.5, "f32": 0.1, "flag": True, "name": "apple"},
    {"a": 5, "small": 0, "i32": -3, "b": 3.0, "f32": 0.5, "flag": False, "name": "banana"},
    {"a": 7, "small": 100, "i32": 10, "b": 9.5, "f32": 2.25, "flag": True, "name": "cherry"},
    {"a": -4, "small": 5, "i32": 0, "b": -1.0, "f32": -1.0, "flag": False, "name": "avocado"},
    {"a": 0, "small": 7, "i32": 2, "b": 0.0, "f32": 3.0, "flag": True, "name": "50%_off"},
]
COLS = R.rows_to_columns(ROWS)


def m(expr: str) -> str:
    """The mask as a compact string: 'T' for a match, '.' otherwise."""
    out = compile_filter(expr, SCHEMA).evaluate(COLS, len(ROWS))
    assert out.dtype == np.bool_ and out.shape == (len(ROWS),)
    return "".join("T" if x else "." for x in out)


@pytest.mark.parametrize("expr,want", [
    # INT64
    ("a == 5", ".T..."), ("a != 5", "T.TTT"), ("a < 1", "...TT"), ("a <= 1", "T..TT"),
    ("a > 1", ".TT.."), ("a >= 5", ".TT.."), ("a > 4.5", ".TT.."), ("a == 5.0", ".T..."),
    ("a == -4", "...T."), ("-4 == a", "...T."), ("a > 0x4", ".TT.."),
    # INT8: literals beyond the type's range compare numerically
    ("small == -100", "T...."), ("small < 1000", "TTTTT"), ("small > -1000", "TTTTT"),
    ("small >= 100", "..T.."), ("small != 0", "T.TTT"),
    # INT32
    ("i32 <= 0", ".T.T."), ("i32 > 2.5", "T.T.."),
    # DOUBLE
    ("b == 0.5", "T...."), ("b < 0", "...T."), ("b >= 3", ".TT.."), ("b != 0", "TTTT."), ("b > 1e0", ".TT.."),
    # FLOAT compares in float32, like Milvus casting the literal to the field type
    ("f32 == 0.1", "T...."), ("f32 < 0.5", "T..T."), ("f32 >= 2.25", "..T.T"),
    # BOOL
    ("flag == true", "T.T.T"), ("flag != true", ".T.T."), ("flag == False", ".T.T."), ("flag", "T.T.T"),
    ("not flag", ".T.T."), ("true == flag", "T.T.T"),
    # VARCHAR: lexicographic
    ('name == "apple"', "T...."), ("name != 'apple'", ".TTTT"), ('name < "b"', "T..TT"),
    ('name >= "banana"', ".TT.."), ('name > "avocado"', ".TT.."), ('name <= ""', "....."),
    # column vs column
    ("a > i32", ".T..."), ("a == small", "....."), ("b < f32", "....T"), ("a >= b", "TT..T"),
    ("name == name", "TTTTT"), ("small > a", "..TTT"), ("flag == flag", "TTTTT"),
])
def test_comparisons(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ("a in [1, 7]", "T.T.."), ("a not in [1, 7]", ".T.TT"), ("a in []", "....."), ("a not in []", "TTTTT"),
    ("a in [5.0, 2.5]", ".T..."), ("small in [100, 1000, -100]", "T.T.."), ("i32 IN [3, 0]", "T..T."),
    ("b in [0.5, 9.5]", "T.T.."), ("b in [0]", "....T"), ("f32 in [0.1, 3]", "T...T"),
    ("flag in [false]", ".T.T."), ("flag not in [true, false]", "....."),
    ('name in ["apple", "x", "cherry"]', "T.T.."), ('name NOT IN ["apple"]', ".TTTT"),
    ("not (a in [1, 7])", ".T.TT"),
])
def test_in(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ('name like "a%"', "T..T."), ('name like "%a"', ".T..."), ('name like "%an%"', ".T..."),
    ('name like "_pple"', "T...."), ('name like "apple"', "T...."), ('name like "appl"', "....."),
    ('name like "%"', "TTTTT"), ('name like "%%"', "TTTTT"), ('name like "a%o"', "...T."),
    ('name like "%e%r%"', "..T.."), ('name like "______"', ".TT.."), ('name like "_%_"', "TTTTT"),
    ('name like "50\\\\%%"', "....T"), (r'name like "50\%\_off"', "....T"), (r'name like "%\_%"', "....T"),
    (r'name like "50\%"', "....."), ('name like "5%"', "....T"), ('name LIKE "A%"', "....."),
    ('not name like "a%"', ".TT.T"),
])
def test_like(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ("a + 2 == 3", "T...."), ("a - 1 < 0", "...TT"), ("a * 2 == 10", ".T..."), ("-a == 4", "...T."),
    ("a / 2 == 2", ".T..."), ("a / 2 == -2", "...T."), ("a / 2 == 3", "..T.."), ("a / 2 == 0", "T...T"),
    ("a % 3 == 1", "T.T.."), ("a % 3 == -1", "...T."), ("a % 3 == 0", "....T"),
    ("a / 2.0 == 2.5", ".T..."), ("b * 2 > 5", ".TT.."), ("b / 0.5 == 1", "T...."), ("b % 2 == 1.5", "..T.."),
    ("small * 3 > 250", "..T.."), ("small * 3 < -250", "T...."), ("a + i32 == 4", "T...."),
    ("a + b == 8", ".T..."), ("(a + 1) * 2 == 4", "T...."), ("a + 1 * 2 == 3", "T...."),
    ("f32 * 4 == 9", "..T.."), ("2 * a > 10", "..T.."), ("a - -1 == 2", "T...."), ("+a == 1", "T...."),
    ("10 / a == 2", ".T..."), ("a % 4 in [1, 3]", "TTT.."),
])
def test_arithmetic(expr, want):
    assert m(expr) == want


def test_zero_divisor_rows_are_false_for_every_operator():
    # b is 0.0 on the last row, i32 is 0 on the fourth
    assert m("a / b == 0") == "....."
    assert m("a / b != 100") == "TTTT."
    assert m("a % i32 != 100") == "TTT.T"
    assert m("not (a % i32 == 100)") == "TTTTT"


def test_is_null_on_typed_fields():
    assert m("a is null") == "....."
    assert m("name IS NOT NULL") == "TTTTT"


def test_and_or_short_circuit_results():
    assert m("a > 100 and name like '%x'") == "....."
    assert m("a > -100 or b > 1") == "TTTTT"
    assert m("a > 1 and b < 5 and flag == false") == ".T..."
    assert m("a == 1 or a == 5 or a == 0") == "TT..T"


def test_mask_is_fresh_and_columns_untouched():
    flt = compile_filter("flag", SCHEMA)
    out = flt.evaluate(COLS, len(ROWS))
    out[:] = False
    assert COLS["flag"].tolist() == [True, False, True, False, True]
    assert flt.evaluate(COLS, len(ROWS)).tolist() == [True, False, True, False, True]


def test_longer_columns_are_cut_to_n():
    assert compile_filter("a >= 5", SCHEMA).evaluate(COLS, 3).tolist() == [False, True, True]


def test_random_sample_keeps_about_its_share_of_what_the_rest_keeps():
    """random_sample(f) (Milvus 2.6): on its own or and-ed at the top level, a Bernoulli(f) draw per row,
    fresh per evaluation; anywhere else (or / not, twice) and a factor outside (0, 1) are refused."""
    n = 200_000
    cols = {**COLS, "a": np.arange(n) % 10}
    share = compile_filter("random_sample(0.1)", SCHEMA).evaluate(cols, n).mean()
    assert 0.095 < share < 0.105
    both = compile_filter("a < 5 and RANDOM_SAMPLE(0.2)", SCHEMA)
    first, second = both.evaluate(cols, n), both.evaluate(cols, n)
    assert not first[cols["a"] >= 5].any() and 0.095 < first.mean() < 0.105
    assert (first != second).any()  # drawn again
    for bad in ("a < 5 or random_sample(0.1)", "not random_sample(0.1)", "random_sample(0.1) and random_sample(0.2)",
                "random_sample(1)", "random_sample(0)", "random_sample('x')", "random_sample()"):
        with pytest.raises(Exception) as e:
            compile_filter(bad, SCHEMA)
        assert getattr(e.value, "code", None) == 1100, bad

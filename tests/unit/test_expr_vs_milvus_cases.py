"""Filter cases where vecdb differed from Milvus, found by running the same expressions on both
(Milvus 2.3.5; the rule checked in Milvus's current source too). Expected masks are hard-coded.

- ``array_length`` of a JSON path that holds no array, or is missing, is 0 (Milvus starts the
  length at 0 and only an array sets it), so ``array_length(j["x"]) == 0`` matches those rows.
- ``json != [list]`` is false on a row whose path holds no array (Milvus reads the path as an
  array first); ``json != scalar`` stays ``not ==`` (missing keys and other types match).
- a JSON path step is a JSON pointer token: ``["0"]`` and ``[0]`` read key "0" of an object and
  element 0 of an array alike.
- ``not`` / ``!`` negate an operand too: ``flag == !true``.
"""

from __future__ import annotations

import expr_reference as R
import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter

SCHEMA = R.make_schema(dynamic=True)
ROWS = [
    {"flag": True, "meta": {"arr": [1, 2, 3], "o": {"0": 5, "1": 6}, "s": "y"}, "$meta": {"k": [7, 8]}},
    {"flag": False, "meta": {"arr": [], "s": "x"}, "$meta": {"k": {"0": 7}}},
    {"flag": True, "meta": {"arr": "notalist"}, "$meta": {}},
    {"flag": False, "meta": {}, "$meta": {"k": 3}},
    {"flag": True, "meta": {"arr": [[1, 2], [3]], "o": [5, 6]}, "$meta": {"k": [7]}},
]
COLS = R.rows_to_columns(ROWS)


def m(expr: str) -> str:
    out = compile_filter(expr, SCHEMA).evaluate(COLS, len(ROWS))
    return "".join("T" if x else "." for x in out)


@pytest.mark.parametrize("expr,want", [
    ('array_length(meta["arr"]) == 0', ".TTT."), ('array_length(meta["arr"]) != 3', ".TTTT"),
    ('array_length(meta["arr"]) > 0', "T...T"), ('array_length(meta["missing"]) == 0', "TTTTT"),
    ('array_length(meta["arr"]) < 1', ".TTT."), ("array_length(k) == 0", ".TTT."),
    ('array_length($meta["k"]) == 2', "T...."),
    ('not (array_length(meta["arr"]) == 0)', "T...T"),
])
def test_array_length_of_a_json_path_without_an_array_is_zero(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ('meta["arr"] != [1, 2, 3]', ".T..T"), ('meta["arr"] != []', "T...T"), ("k != [7]", "T...."),
    ('meta["arr"] == [1, 2, 3]', "T...."), ('not (meta["arr"] == [1, 2, 3])', ".TTTT"),
    ('meta["arr"] in [[1, 2, 3], []]', "TT..."),
    # scalars keep "not ==": a missing key or another type is not equal
    ('meta["s"] != "x"', "T.TTT"), ("k != 3", "TTT.T"),
])
def test_json_not_equal_to_a_list_needs_an_array(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ('meta["arr"]["0"] == 1', "T...."), ('meta["arr"][0] == 1', "T...."),
    ('meta["o"][0] == 5', "T...T"), ('meta["o"]["1"] == 6', "T...T"),
    ('meta["arr"]["00"] == 1', "....."), ('meta["arr"][0][1] == 2', "....T"),
    ('meta["arr"]["0"]["1"] == 2', "....T"), ("k[0] == 7", "TT..T"), ('$meta["k"]["0"] == 7', "TT..T"),
    ('exists meta["arr"][2]', "T...."), ('exists meta["o"]["0"]', "T...T"),
    ('json_contains(meta["arr"], [1, 2])', "....T"), ('meta["arr"][0][0] == 1', "....T"),
])
def test_json_path_steps_are_pointer_tokens(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ("flag == !true", ".T.T."), ("flag == not false", "T.T.T"), ("flag != !flag", "TTTTT"),
    ("!true == flag", ".T.T."), ("flag == !!true", "T.T.T"), ("not flag", ".T.T."),
])
def test_not_on_an_operand(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr", ["flag == !a", "a == not 1", "a + !1 == 0"])
def test_not_on_a_non_boolean_operand_is_refused(expr):
    with pytest.raises(InvalidParameter, match="cannot parse expression"):
        compile_filter(expr, SCHEMA)

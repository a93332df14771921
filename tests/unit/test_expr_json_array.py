"""JSON paths, the dynamic field and ARRAY fields: typing rules, missing keys, functions."""

from __future__ import annotations

import expr_reference as R
import pytest

from vecdb.expr import compile_filter

SCHEMA = R.make_schema()
ROWS = [
    {"meta": {"x": 1, "s": "abc", "b": True, "arr": [1, 2, "a"], "n": {"y": 5}, "nested": [{"k": 1}]},
     "$meta": {"k": 1, "t": "a"}, "tags": [1, 2, 3], "strs": ["a", "b"], "fl": [0.5]},
    {"meta": {"x": 2.5, "s": "abd", "b": False, "arr": [3, True], "n": {"y": "z"}},
     "$meta": {"k": "1"}, "tags": [], "strs": ["c"], "fl": []},
    {"meta": {"x": "str", "s": 5, "b": 1, "arr": [], "n": {}},
     "$meta": {"k": 1.0}, "tags": [5], "strs": [], "fl": [1.5, 0.1]},
    {"meta": {"x": None, "arr": [[1, 2], 3]},
     "$meta": {}, "tags": [2, 2], "strs": ["a"], "fl": [2.0]},
    {"meta": {},
     "$meta": {"k": None}, "tags": [7, 1], "strs": ["bb", "a"], "fl": []},
    {"meta": {"x": True, "arr": "notalist", "n": 7},
     "$meta": {"k": [1], "t": "b"}, "tags": [0], "strs": ["a", "a"], "fl": [3.0]},
]
COLS = R.rows_to_columns(ROWS)


def m(expr: str, **templates) -> str:
    out = compile_filter(expr, SCHEMA, templates or None).evaluate(COLS, len(ROWS))
    return "".join("T" if x else "." for x in out)


@pytest.mark.parametrize("expr,want", [
    # typed comparison: int/float numeric, true is not 1, strings never equal numbers
    ('meta["x"] == 1', "T....."), ('meta["x"] == 1.0', "T....."), ('meta["x"] > 1', ".T...."),
    ('meta["x"] >= 1', "TT...."), ('meta["x"] < 100', "TT...."), ('meta["x"] == "str"', "..T..."),
    ('meta["x"] > "a"', "..T..."), ('meta["x"] == true', ".....T"), ("meta['x'] == 2.5", ".T...."),
    # Milvus: != on a JSON path is "not ==", so missing keys and other types match
    ('meta["x"] != 1', ".TTTTT"), ('not (meta["x"] == 1)', ".TTTTT"), ('meta["x"] != "str"', "TT.TTT"),
    ('not (meta["x"] > 1)', "T.TTTT"),
    # nested paths and list indexes
    ('meta["n"]["y"] == 5', "T....."), ('meta["n"]["y"] like "z%"', ".T...."), ('meta["n"]["y"] != 5', ".TTTTT"),
    ('meta["arr"][0] == 1', "T....."), ('meta["arr"][1] == true', ".T...."), ('meta["arr"][0][1] == 2', "...T.."),
    ('meta["nested"][0]["k"] == 1', "T....."), ('meta["arr"][5] == 1', "......"),
    # strings
    ('meta["s"] like "ab%"', "TT...."), ('meta["s"] > "abc"', ".T...."), ('meta["s"] in ["abc", 5]', "T.T..."),
    ('meta["s"] like "%"', "TT...."),
    # a JSON path compared with a bool (a bare path is no predicate: test_expr_parse)
    ('meta["b"] == true', "T....."), ('not (meta["b"] == true)', ".TTTTT"), ('meta["b"] == false', ".T...."),
    # in / not in
    ('meta["x"] in [1, "str"]', "T.T..."), ('meta["x"] not in [1, "str"]', ".T.TTT"),
    ('meta["x"] in [true, 2.5]', ".T...T"), ('meta["arr"] in [[3, true], 1]', ".T...."),
    # list equality
    ('meta["arr"] == [1, 2, "a"]', "T....."), ('meta["arr"] != [1, 2, "a"]', ".TTT.."), ('meta["arr"] == []', "..T..."),
    # arithmetic on JSON numbers: int rows keep int semantics
    ('meta["x"] + 1 == 2', "T....."), ('meta["x"] * 2 == 5', ".T...."), ('meta["x"] / 2 == 0', "T....."),
    ('meta["x"] / 2 == 1.25', ".T...."), ('meta["x"] % 2 == 1', "T....."), ('meta["x"] % 2 == 0.5', ".T...."),
    ('-meta["x"] < 0', "TT...."), ('meta["x"] + 1 != 2', ".TTTTT"), ('meta["x"] * 2 > meta["x"]', "TT...."),
    # JSON vs typed column
    ('meta["x"] < a', "T....."),
])
def test_json_field(expr, want):
    # column a is 0 for every row in this fixture
    assert m(expr.replace(" < a", " < array_length(tags)")) == want


@pytest.mark.parametrize("expr,want", [
    ('exists meta["x"]', "TTTT.T"), ('EXISTS meta["n"]["y"]', "TT...."), ('not exists meta["x"]', "....T."),
    ('meta["x"] is null', "...TT."), ('meta["x"] is not null', "TTT..T"), ('meta["n"]["y"] IS NULL', "..TTTT"),
    ("exists meta", "TTTTTT"),
])
def test_exists_and_null(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ('json_contains(meta["arr"], 1)', "T....."), ('json_contains(meta["arr"], true)', ".T...."),
    ('json_contains(meta["arr"], 3)', ".T.T.."), ('json_contains(meta["arr"], 3.0)', ".T.T.."),
    ('json_contains(meta["arr"], "a")', "T....."), ('json_contains(meta["arr"], [1, 2])', "...T.."),
    ('JSON_CONTAINS(meta["arr"], 1)', "T....."), ('Json_Contains(meta["arr"], 1)', "T....."),
    ('json_contains_all(meta["arr"], [1, "a"])', "T....."), ('json_contains_all(meta["arr"], [1, 3])', "......"),
    ('json_contains_any(meta["arr"], [3, "a"])', "TT.T.."), ('json_contains_any(meta["arr"], [])', "......"),
    ('json_contains_all(meta["arr"], [])', "TTTT.."), ('json_contains(meta["x"], 1)', "......"),
    ('not json_contains(meta["arr"], 1)', ".TTTTT"),
    ('array_length(meta["arr"]) == 0', "..T.TT"), ('array_length(meta["arr"]) != 0', "TT.T.."),
    ('array_length(meta["arr"]) >= 2', "TT.T.."),
])
def test_json_functions(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    ("k == 1", "T.T..."), ('k == "1"', ".T...."), ('$meta["k"] == 1', "T.T..."), ("k != 1", ".T.TTT"),
    ("k is null", "...TT."), ("exists k", "TTT.TT"), ('exists $meta["k"]', "TTT.TT"), ('t like "a"', "T....."),
    ("json_contains(k, 1)", ".....T"), ("k[0] == 1", ".....T"), ("zz > 0", "......"), ("zz != 0", "TTTTTT"),
    ("zz is null", "TTTTTT"), ('t in ["a", "b"]', "T....T"), ("k + 1 == 2", "T.T..."),
])
def test_dynamic_field(expr, want):
    assert m(expr) == want


@pytest.mark.parametrize("expr,want", [
    # element access: rows too short are false for every operator (Milvus), null for is null
    ("tags[0] == 1", "T....."), ("tags[0] != 1", "..TTTT"), ("tags[1] > 1", "T..T.."), ("tags[5] == 0", "......"),
    ("tags[1] is null", ".TT..T"), ("tags[0] in [1, 7]", "T...T."), ("tags[0] not in [1, 7]", ".TTT.T"),
    ("tags[0] + tags[1] == 3", "T....."), ("tags[1] * 2 == 4", "T..T.."), ("tags[0] > meta['x']", "......"),
    ("0 <= tags[0] < 2", "T....T"),
    # contains
    ("array_contains(tags, 2)", "T..T.."), ("array_contains(tags, 2.0)", "T..T.."),
    ("ARRAY_CONTAINS(tags, 0)", ".....T"),
    ("json_contains(tags, 1)", "T...T."), ("array_contains_all(tags, [1, 2])", "T....."),
    ("array_contains_all(tags, [2, 2])", "T..T.."), ("array_contains_any(tags, [5, 7])", "..T.T."),
    ("array_contains_any(tags, [])", "......"), ("array_contains_all(tags, [])", "TTTTTT"),
    ("not array_contains(tags, 2)", ".TT.TT"),
    # length and whole-array equality
    ("array_length(tags) == 2", "...TT."), ("array_length(tags) > 0", "T.TTTT"), ("array_length(tags) == 0", ".T...."),
    ("tags == [2, 2]", "...T.."), ("tags != []", "T.TTTT"), ("tags == []", ".T...."), ("tags == [2.0, 2]", "...T.."),
    ("tags is null", "......"),
    # VARCHAR arrays
    ('strs[0] == "a"', "T..T.T"), ('strs[0] like "b%"', "....T."), ('strs[1] != "a"', "T....."),
    ('array_contains(strs, "a")', "T..TTT"), ('array_contains_any(strs, ["c", "bb"])', ".T..T."),
    ('array_contains_all(strs, ["a", "b"])', "T....."), ('strs == ["a", "a"]', ".....T"),
    # FLOAT arrays compare in float32
    ("fl[1] == 0.1", "..T..."), ("array_contains(fl, 0.1)", "..T..."), ("fl[0] > 1", "..TT.T"),
    ("array_contains_any(fl, [0.5, 3])", "T....T"),
])
def test_array_fields(expr, want):
    assert m(expr) == want


def test_shared_path_is_extracted_once():
    from vecdb.expr import rowdata

    calls = []
    orig = rowdata.extract

    def counting(col, path):
        calls.append(path)
        return orig(col, path)

    rowdata.extract = counting
    try:
        flt = compile_filter('meta["x"] > 0 and meta["x"] < 5 or meta["x"] == "str"', SCHEMA)
        assert "".join("T" if x else "." for x in flt.evaluate(COLS, len(ROWS))) == "TTT..."
    finally:
        rowdata.extract = orig
    assert calls == [("x",)]


def test_non_dict_rows_in_json_column():
    cols = dict(COLS)
    cols["meta"] = R.rows_to_columns([{"meta": v} for v in ([1, 2], 3, "s", None, {"x": 1}, {"x": 2})])["meta"]
    assert m_cols('meta["x"] >= 1', cols) == "....TT"
    assert m_cols("meta == 3", cols) == ".T...."
    assert m_cols("json_contains(meta, 2)", cols) == "T....."
    assert m_cols("meta[1] == 2", cols) == "T....."
    assert m_cols("meta is null", cols) == "...T.."


def m_cols(expr: str, cols) -> str:
    out = compile_filter(expr, SCHEMA).evaluate(cols, len(ROWS))
    return "".join("T" if x else "." for x in out)

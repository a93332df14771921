"""Milvus 3.0's StructArray operators in filters (vecdb.expr.element): parsing, evaluation of
``element_filter`` and every ``MATCH_*`` against a plain-Python reference over random rows (empty
struct arrays included), the columns a filter reports, and the refusals (1100)."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import ast, compile_filter
from vecdb.expr.parser import parse
from vecdb.schema import CollectionSchema, DataType, FieldSchema, StructArrayField

CAP = 5
WORDS = ("Red apple", "red", "Redwood", "blue", "")


def schema() -> CollectionSchema:
    def sub(name: str, fid: int, elem: DataType, **kw) -> FieldSchema:
        return FieldSchema(f"chunks[{name}]", DataType.ARRAY, fid, element_type=elem, max_capacity=CAP,
                           struct_name="chunks", **kw)

    fields = [FieldSchema("id", DataType.INT64, 100, is_primary=True),
              FieldSchema("v", DataType.FLOAT_VECTOR, 101, dim=2),
              FieldSchema("tags", DataType.ARRAY, 102, element_type=DataType.INT64, max_capacity=4),
              sub("text", 104, DataType.VARCHAR, max_length=16), sub("n", 105, DataType.INT32),
              sub("score", 106, DataType.FLOAT), sub("ok", 107, DataType.BOOL),
              FieldSchema("chunks[emb]", DataType.ARRAY_OF_VECTOR, 108, element_type=DataType.FLOAT_VECTOR, dim=2,
                          max_capacity=CAP, struct_name="chunks")]
    return CollectionSchema("c", fields, struct_fields=[StructArrayField("chunks", 103, max_capacity=CAP)])


def random_rows(n: int, seed: int) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[{"text": WORDS[int(rng.integers(len(WORDS)))], "n": int(rng.integers(-3, 10)),
              "score": float(rng.integers(0, 8)) / 4, "ok": bool(rng.integers(2))}
             for _ in range(int(rng.integers(0, CAP + 1)))] for _ in range(n)]


def columns(structs: list[list[dict]]) -> dict[str, np.ndarray]:
    dtypes = {"text": object, "n": np.int32, "score": np.float32, "ok": np.bool_}
    cols: dict[str, np.ndarray] = {"id": np.arange(len(structs), dtype=np.int64)}
    for sub, dt in dtypes.items():
        col = np.empty(len(structs), dtype=object)
        col[:] = [np.array([c[sub] for c in row], dtype=dt) for row in structs]
        cols[f"chunks[{sub}]"] = col
    return cols


# element predicate (expression text) -> the same over one struct (a dict)
PREDICATES = {
    '$[text] like "Red%"': lambda c: c["text"].startswith("Red"),
    "$[n] > 4": lambda c: c["n"] > 4,
    "$[n] % 2 == 0 and $[score] >= 0.5": lambda c: c["n"] % 2 == 0 and c["score"] >= 0.5,
    "-1 <= $[n] < 3 or $[ok]": lambda c: -1 <= c["n"] < 3 or c["ok"],
    'not ($[text] in ["red", "blue"])': lambda c: c["text"] not in ("red", "blue"),
    "$[score] * 4 + $[n] != 5": lambda c: c["score"] * 4 + c["n"] != 5,
    "$[ok] == false": lambda c: not c["ok"],
}


def expected(structs, mode: str, pred, k: int) -> np.ndarray:
    out = []
    for row in structs:
        hits = sum(bool(pred(c)) for c in row)
        out.append({"any": hits >= 1, "all": hits == len(row), "least": hits >= k, "most": hits <= k,
                     "exact": hits == k}[mode])
    return np.array(out, dtype=bool)


def call(op: str, pred: str, k: int) -> str:
    return f"{op}(chunks, {pred}, threshold={k})" if op in ("MATCH_LEAST", "MATCH_MOST", "MATCH_EXACT") \
        else f"{op}(chunks, {pred})"


MODES = {"element_filter": "any", "MATCH_ANY": "any", "MATCH_ALL": "all", "MATCH_LEAST": "least",
         "MATCH_MOST": "most", "MATCH_EXACT": "exact"}


def test_parse_sub_fields_and_threshold():
    tree = parse('MATCH_LEAST(chunks, $[text] like "a%" && 1 < $[n] <= 3, threshold=2)')
    assert isinstance(tree, ast.Call) and tree.name == "match_least"
    assert isinstance(tree.args[0], ast.Name) and tree.args[0].name == "chunks"
    kw = tree.args[2]
    assert isinstance(kw, ast.Keyword) and kw.name == "threshold" and kw.value == ast.Literal(kw.value.pos, 2)
    like = tree.args[1].left  # type: ignore[attr-defined]
    assert like.value == ast.SubField(20, "text")
    assert isinstance(tree.args[1].right, ast.Range)  # type: ignore[attr-defined]
    with pytest.raises(InvalidParameter, match="unexpected character"):
        parse("MATCH_ANY(chunks, $ [n] > 1)")  # no space inside $[...], as Milvus lexes it


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("op", list(MODES))
def test_every_operator_against_the_reference(op, seed):
    s = schema()
    structs = random_rows(150, seed)
    structs[0] = []  # always some empty arrays
    structs[1] = []
    cols = columns(structs)
    rng = np.random.default_rng(seed)
    for text, pred in PREDICATES.items():
        k = int(rng.integers(1 if op == "MATCH_LEAST" else 0, 4))
        flt = compile_filter(call(op, text, k), s)
        got = flt.evaluate(cols, len(structs))
        np.testing.assert_array_equal(got, expected(structs, MODES[op], pred, k), err_msg=call(op, text, k))


def test_empty_arrays_per_operator():
    s = schema()
    structs: list[list[dict]] = [[], [{"text": "x", "n": 1, "score": 0.0, "ok": True}]]
    cols = columns(structs)
    want = {"element_filter(chunks, $[n] > 0)": [False, True], "MATCH_ANY(chunks, $[n] > 0)": [False, True],
            "MATCH_ALL(chunks, $[n] > 5)": [True, False],  # vacuous truth on an empty array
            "MATCH_LEAST(chunks, $[n] > 0, threshold=1)": [False, True],
            "MATCH_MOST(chunks, $[n] > 0, threshold=0)": [True, False],
            "MATCH_EXACT(chunks, $[n] > 0, threshold=0)": [True, False]}
    for expr, w in want.items():
        assert compile_filter(expr, s).evaluate(cols, 2).tolist() == w, expr
    every_empty = columns([[], [], []])
    assert compile_filter("MATCH_ALL(chunks, $[n] > 0)", s).evaluate(every_empty, 3).tolist() == [True] * 3
    assert compile_filter('MATCH_ANY(chunks, $[text] == "x")', s).evaluate(every_empty, 3).tolist() == [False] * 3


def test_combined_with_row_level_predicates_and_fields():
    s = schema()
    structs = random_rows(40, 9)
    cols = columns(structs)
    red = expected(structs, "any", PREDICATES['$[text] like "Red%"'], 1)
    big = expected(structs, "least", PREDICATES["$[n] > 4"], 2)
    ids = np.arange(40)
    flt = compile_filter('id > 10 and (id < 30 and element_filter(chunks, $[text] like "Red%"))', s)
    np.testing.assert_array_equal(flt.evaluate(cols, 40), (ids > 10) & (ids < 30) & red)
    assert flt.fields == {"id", "chunks[text]"}
    flt = compile_filter('not MATCH_LEAST(chunks, $[n] > 4, threshold=2) or MATCH_ANY(chunks, $[text] like "Red%")', s)
    np.testing.assert_array_equal(flt.evaluate(cols, 40), ~big | red)
    assert flt.fields == {"chunks[n]", "chunks[text]"}
    flt = compile_filter("MATCH_ALL(chunks, $[ok] and $[score] >= 0) == false", s)
    np.testing.assert_array_equal(flt.evaluate(cols, 40), ~expected(structs, "all", lambda c: c["ok"], 1))


@pytest.mark.parametrize(("expr", "message"), [
    ("$[n] > 1", r"\$\[n\] syntax can only be used inside ElementFilter or MATCH_\*"),
    ("MATCH_ANY(chunks, $[nope] > 1)", r"array field not found: chunks\[nope\]"),
    ("MATCH_ANY(nope, $[n] > 1)", "field nope not exist"),
    ("MATCH_ANY(tags, $[n] > 1)", "MATCH_ANY is only supported on array-of-struct fields"),
    ('MATCH_ANY(chunks["n"], $[n] > 1)', "the first argument of MATCH_ANY must be the name"),
    ("MATCH_ANY(chunks, $[emb] > 1)", r"vector sub-field chunks\[emb\] can't be used"),
    ("MATCH_ANY(chunks, id > 1)", "row-level field references are not supported"),
    ("MATCH_ANY(chunks, $[n] > 1 and id is null)", "row-level field references are not supported"),
    ("MATCH_ANY(chunks, true)", "predicate must not be constant"),
    ("array_length(chunks) > 0", "array-of-struct field chunks can only be filtered with element_filter or MATCH_"),
    ('chunks == "a"', "array-of-struct field chunks can only be filtered with"),
    ("MATCH_ANY(chunks, $[n] > 1, threshold=1)", "MATCH_ANY takes 2 arguments"),
    ("MATCH_LEAST(chunks, $[n] > 1)", "MATCH_LEAST takes 3 arguments"),
    ("MATCH_MOST(chunks, $[n] > 1, 2)", "MATCH_MOST takes 3 arguments"),
    ("MATCH_EXACT(chunks, $[n] > 1, limit=2)", "expected 'threshold', got 'limit'"),
    ("MATCH_LEAST(chunks, $[n] > 1, threshold=0)", "count in MATCH_LEAST must be positive, got: 0"),
    ("MATCH_MOST(chunks, $[n] > 1, threshold=-1)", "count in MATCH_MOST cannot be negative, got: -1"),
    ("MATCH_EXACT(chunks, $[n] > 1, threshold=-2)", "count in MATCH_EXACT cannot be negative, got: -2"),
    ("MATCH_EXACT(chunks, $[n] > 1, threshold=1.0)", "threshold of MATCH_EXACT must be an integer constant"),
    ("MATCH_ANY(chunks, MATCH_ALL(chunks, $[n] > 1))",
     "nested MATCH_ALL is not supported, already inside match expression for field: chunks"),
    ("element_filter(chunks, element_filter(chunks, $[n] > 1))",
     "nested ElementFilter is not supported, already inside ElementFilter for field: chunks"),
    ("MATCH_ANY(chunks, text_match($[text], 'a'))", r"text_match\(\) is not supported in the predicate of MATCH_ANY"),
    ('MATCH_ANY(chunks, $[text] > 1)', "comparison between"),
    ("element_filter(chunks, $[n] > 1) and id > 0",
     "element filter expression can only be the last expression in the logical and expression"),
    ("(id > 0 and element_filter(chunks, $[n] > 1)) and id < 9",
     "element filter expression can only be the last expression in the logical and expression"),
    ("id > 0 or element_filter(chunks, $[n] > 1)", "element_filter can only be the whole filter or the last"),
    ("not element_filter(chunks, $[n] > 1)", "element_filter can only be the whole filter or the last"),
])
def test_refusals(expr, message):
    with pytest.raises(InvalidParameter, match=message) as e:
        compile_filter(expr, schema())
    assert e.value.code == 1100


def test_struct_name_is_no_dynamic_key():
    s = schema()
    s.enable_dynamic_field = True
    with pytest.raises(InvalidParameter, match="array-of-struct field chunks can only be filtered"):
        compile_filter("array_length(chunks) > 0", s)
    assert compile_filter("other > 1", s).fields == {"$meta"}

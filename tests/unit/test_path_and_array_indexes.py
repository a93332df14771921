"""JSON path indexes (vecdb.index.json_path) and ARRAY indexes (vecdb.index.array_elements): a filter
evaluated with an index of every type on every JSON path it reads, and on every ARRAY field, gives the
scan's rows, on random rows and random expressions (the strategies of test_expr_property), and each
index answers the comparisons it serves without reading the column."""

from __future__ import annotations

import expr_reference as R
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_expr_property import predicate, rows

from vecdb.expr import compile_filter, rowdata
from vecdb.index.array_elements import ArrayElementsIndex, build_segment_array_index
from vecdb.index.json_path import JsonPathIndex, build_segment_json_index, cast_category, typed_values

SCHEMA = R.make_schema()


class _Indexed(dict):
    """Columns with a JSON path index of every (field, path, category) asked for, and an ARRAY index of
    every ARRAY field; ``used`` lists them."""

    def __init__(self, cols):
        super().__init__(cols)
        self.used: list = []

    def json_index(self, key):
        field, path, cat = key
        self.used.append(key)
        return JsonPathIndex(*typed_values(self[field], path, cat), cat)

    def array_index(self, name):
        self.used.append(name)
        col = self[name]
        return ArrayElementsIndex(rowdata.flatten(col, np.fromiter(map(len, col), np.int64, len(col))), len(col))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=rows, expr=predicate)
def test_indexed_paths_give_the_scans_rows(data, expr):
    text = expr.render()
    flt = compile_filter(text, SCHEMA)
    cols = R.rows_to_columns(data)
    want = flt.evaluate(cols, len(data))
    got = flt.evaluate(_Indexed(cols), len(data))
    assert got.tolist() == want.tolist(), text


class _NoRead(dict):
    """Columns whose JSON column may not be read: only its index answers."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def __getitem__(self, name):
        raise AssertionError(f"column {name} read")

    def json_index(self, key):
        return self.index if key == ("meta", ("k",), self.index.cat) else None


META = [{"k": "b"}, {"k": 2}, {"k": "a"}, {}, {"k": True}, {"k": 2.5}, {"k": "b"}, {"k": [1]}, {"k": None},
        {"k": 10**18}, {"k": False}]


def _index(cat: str) -> JsonPathIndex:
    col = np.empty(len(META), object)
    col[:] = META
    return JsonPathIndex(*typed_values(col, ("k",), cat), cat)


@pytest.mark.parametrize("expr,cat,want", [
    ('meta["k"] == "b"', "str", [0, 6]),
    ('meta["k"] != "b"', "str", [1, 2, 3, 4, 5, 7, 8, 9, 10]),  # "not ==": no value, other types too
    ('meta["k"] > "a"', "str", [0, 6]),
    ('meta["k"] <= "a"', "str", [2]),
    ('meta["k"] in ["a", "b", "z"]', "str", [0, 2, 6]),
    ('meta["k"] not in ["a"]', "str", [0, 1, 3, 4, 5, 6, 7, 8, 9, 10]),
    ('meta["k"] == 2', "num", [1]),
    ('meta["k"] >= 2', "num", [1, 5, 9]),
    ('meta["k"] < 2.5', "num", [1]),
    ('meta["k"] in [2.5, 10, 1000000000000000000]', "num", [5, 9]),
    ('meta["k"] == true', "bool", [4]),
    ('meta["k"] != false', "bool", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
])
def test_the_index_alone_answers(expr, cat, want):
    got = compile_filter(expr, SCHEMA).evaluate(_NoRead(_index(cat)), len(META))
    assert np.flatnonzero(got).tolist() == want


def test_cast_types_and_segment_cache():
    assert [cast_category({"json_cast_type": t}) for t in ("varchar", " Double ", "BOOL", "array_double", "JSON")] == \
        ["str", "num", "bool", None, None]

    class Seg:
        n = len(META)

        def column(self, name):
            col = np.empty(len(META), object)
            col[:] = META
            return col

    seg = Seg()
    idx = build_segment_json_index(seg, ("meta", ("k",), "str"))
    assert build_segment_json_index(seg, ("meta", ("k",), "str")) is idx  # kept, built once
    assert sorted(idx.values.tolist()) == ["a", "b", "b"] and sorted(idx.order.tolist()) == [0, 2, 6]


TAGS = [[1, 2, 2], [], [3], [2, 5], [7, 1, 3], [5]]


class _ArrayOnly(dict):
    def __init__(self):
        super().__init__()
        col = np.empty(len(TAGS), object)
        col[:] = [np.array(t, dtype=np.int64) for t in TAGS]
        self.index = ArrayElementsIndex(rowdata.flatten(col, np.array([len(t) for t in TAGS])), len(TAGS))

    def __getitem__(self, name):
        raise AssertionError(f"column {name} read")

    def array_index(self, name):
        return self.index if name == "tags" else None


@pytest.mark.parametrize("expr,want", [
    ("array_contains(tags, 2)", [0, 3]),
    ("array_contains(tags, 4)", []),
    ("array_contains_any(tags, [3, 5])", [2, 3, 4, 5]),
    ("array_contains_all(tags, [1, 3])", [4]),
    ("array_contains_all(tags, [2, 2])", [0, 3]),
    ("not array_contains(tags, 1)", [1, 2, 3, 5]),
])
def test_the_array_index_alone_answers(expr, want):
    got = compile_filter(expr, SCHEMA).evaluate(_ArrayOnly(), len(TAGS))
    assert np.flatnonzero(got).tolist() == want


def test_array_index_kept_on_the_segment():
    class Seg:
        n = len(TAGS)

        def column(self, name):
            col = np.empty(len(TAGS), object)
            col[:] = [np.array(t, dtype=np.int64) for t in TAGS]
            return col

    seg = Seg()
    idx = build_segment_array_index(seg, "tags")
    assert build_segment_array_index(seg, "tags") is idx
    assert idx.values.tolist() == [1, 1, 2, 2, 2, 3, 3, 5, 5, 7] and idx.n == len(TAGS)

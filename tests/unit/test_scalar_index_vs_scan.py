"""Scalar indexes (vecdb.index.scalar): the field types each index type is accepted on, with
Milvus's messages, and filters answered through a SortedIndex equal to the scan on random data."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.index import scalar
from vecdb.index.scalar import SortedIndex, validate_scalar_index
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

N = 5000


def _schema() -> CollectionSchema:
    return CollectionSchema("c", fields=[
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("i8", DataType.INT8), FieldSchema("i32", DataType.INT32),
        FieldSchema("f", DataType.FLOAT), FieldSchema("d", DataType.DOUBLE),
        FieldSchema("s", DataType.VARCHAR, type_params={"max_length": "32"}),
        FieldSchema("b", DataType.BOOL),
        FieldSchema("vec", DataType.FLOAT_VECTOR, type_params={"dim": "2"}),
    ])


def _columns(rng) -> dict[str, np.ndarray]:
    words = np.array(["apple", "pear", "fig", "kiwi", "lime", "", "Apple", "été", "zz"], dtype=object)
    return {
        "id": rng.permutation(N).astype(np.int64) * 3 - 7000,
        "i8": rng.integers(-128, 128, N).astype(np.int8),
        "i32": rng.integers(-50, 50, N).astype(np.int32),
        "f": np.round(rng.normal(0, 2, N), 1).astype(np.float32),
        "d": np.round(rng.normal(0, 2, N), 2),
        "s": words[rng.integers(0, len(words), N)],
        "b": rng.random(N) < 0.3,
    }


class _Indexed(dict):
    """Columns with a SortedIndex on each, as a sealed segment's SegmentColumns offers them."""

    def __init__(self, cols):
        super().__init__(cols)
        self.indexes = {k: SortedIndex(v) for k, v in cols.items()}
        self.used: list[str] = []

    def scalar_index(self, name):
        self.used.append(name)
        return self.indexes.get(name)


EXPRS = [
    "id == 2993", "id != 2993", "id < 0", "id <= -7000", "id > 7000", "id >= 14990", "id in [-7000, 2, 5, 14990]",
    "id not in [-7000, 5]", "i8 < 2.5", "i8 >= -128", "i8 == 127", "i8 in [1, 2.0, 3.5]", "i8 > 1e10",
    "i32 > -3 and i32 <= 7", "-3 < i32 < 7", "10 > i32", "i32 != 0 or i8 == 5", "not (i32 in [1, 2, 3])",
    "f > 0.1", "f == 0.1", "f <= -1.3", "f in [0.1, 0.2, 1]", "f == 3", "f != 2.5", "f < 1000",
    "d >= 0.25", "d == 0.25", "d in [0.5, -0.25, 1]", "d < -0.01 and not d < -1",
    "s == 'apple'", "s != 'apple'", "s > 'fig'", "s <= 'kiwi'", "s in ['pear', 'été', 'nope']", "s not in ['']",
    "s == ''", "s >= ''", "s < 'Apple'", "s == 'zzz'",
    "b == true", "b != false", "b", "not b", "b in [true]", "b in [false, true]",
    "s == 'fig' and f > 0 and id < 100", "(i8 > 100 or s == 'kiwi') and not b",
]


@pytest.mark.parametrize("broad", [16, 10**12])  # the default, and the index answering every comparison
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_answers_equal_scan(seed, broad, monkeypatch):
    monkeypatch.setattr(scalar, "BROAD", broad)
    rng = np.random.default_rng(seed)
    cols = _columns(rng)
    schema = _schema()
    for expr in EXPRS:
        flt = compile_filter(expr, schema)
        scan = flt.evaluate(dict(cols), N)
        indexed = _Indexed(cols)
        got = flt.evaluate(indexed, N)
        assert got.dtype == bool and got.shape == (N,)
        np.testing.assert_array_equal(got, scan, err_msg=expr)
        assert indexed.used, expr  # the index answered it, not the scan
    # the reference for a few, computed directly
    np.testing.assert_array_equal(compile_filter("-3 < i32 < 7", schema).evaluate(_Indexed(cols), N),
                                  (cols["i32"] > -3) & (cols["i32"] < 7))
    np.testing.assert_array_equal(compile_filter("s in ['pear', 'fig']", schema).evaluate(_Indexed(cols), N),
                                  np.isin(cols["s"].astype(str), ["pear", "fig"]))


NULL_EXPRS = EXPRS + ["s is null", "i32 is not null and i32 < 3", "not (f > 0.1)", "not (s in ['pear', ''])",
                     "i8 is null or i8 == 0", "not (b == false)"]


@pytest.mark.parametrize("seed", [0, 1])
def test_nullable_fields_index_answers_equal_scan(seed, monkeypatch):
    """Nullable fields: null rows hold their placeholder (0, false, "") in the column and the index
    sorts it with the rest; the validity masks the compiler ANDs make both give the scan's rows."""
    monkeypatch.setattr(scalar, "BROAD", 10**12)
    rng = np.random.default_rng(seed)
    cols = _columns(rng)
    schema = _schema()
    for f in schema.fields:
        if f.name not in ("id", "vec"):
            f.nullable = True
            valid = rng.random(N) < 0.7
            cols[valid_key(f.name)] = valid
            cols[f.name] = cols[f.name].copy()
            cols[f.name][~valid] = "" if f.dtype == DataType.VARCHAR else 0
    for expr in NULL_EXPRS:
        flt = compile_filter(expr, schema)
        scan = flt.evaluate(dict(cols), N)
        indexed = _Indexed({k: v for k, v in cols.items() if not k.startswith("$")})
        indexed.update({k: v for k, v in cols.items() if k.startswith("$")})
        indexed.indexes = {k: v for k, v in indexed.indexes.items() if not k.startswith("$")}
        np.testing.assert_array_equal(flt.evaluate(indexed, N), scan, err_msg=expr)


def test_broad_numeric_ranges_scan():
    """A numeric comparison that would scatter more than n/16 rows is left to the scan (None); a
    range covering most rows scatters its complement; strings always use the index."""
    idx = SortedIndex(np.arange(1000, dtype=np.int64))
    assert idx.compare(">", 500) is None and idx.compare("==", np.int64(3)).sum() == 1
    assert idx.compare("!=", 3).sum() == 999 and idx.compare(">", 10).sum() == 989 and idx.compare("<", 30).sum() == 30
    assert idx.compare(">=", 950).sum() == 50 and idx.compare("<=", 960).sum() == 961
    s = SortedIndex(np.array(["b", "a", "c"] * 100, dtype=object))
    assert s.compare("!=", "a").sum() == 200 and s.compare(">", "a").sum() == 200


def test_sorted_index_empty_and_duplicates(monkeypatch):
    monkeypatch.setattr(scalar, "BROAD", 1)
    idx = SortedIndex(np.array([], np.int64))
    assert idx.compare("<", 3).shape == (0,) and idx.isin(np.array([1])).shape == (0,)
    idx = SortedIndex(np.array([5, 5, 5, 1, 9], np.int64))
    assert idx.compare("==", 5).tolist() == [True, True, True, False, False]
    assert idx.isin(np.array([9, 1, 9, 4])).tolist() == [False, False, False, True, True]
    assert idx.compare(">", 5).tolist() == [False, False, False, False, True]


def test_an_integer_against_a_float_column_compares_in_float32(monkeypatch):
    """16777217 is 16777216 in float32: Milvus casts the literal to the FLOAT field's type; the scan and
    the index both do."""
    monkeypatch.setattr(scalar, "BROAD", 1)
    col = np.array([16777216.0, 1.0, 2.0], np.float32)
    idx = SortedIndex(col)
    assert idx.compare("==", np.int64(16777217)).tolist() == [True, False, False]
    assert idx.compare(">", np.int64(16777215)).tolist() == [True, False, False]
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("f", DataType.FLOAT, field_id=101)])
    for expr in ("f == 16777217", "16777217 == f", "f >= 16777217", "f in [16777217]"):
        assert compile_filter(expr, schema).evaluate({"f": col}, 3).tolist() == [True, False, False], expr


def _field(dtype, **kw):
    return FieldSchema("x", dtype, **kw)


ACCEPTED = [
    ("STL_SORT", DataType.INT64), ("STL_SORT", DataType.FLOAT), ("STL_SORT", DataType.VARCHAR),
    ("Trie", DataType.VARCHAR), ("TRIE", DataType.VARCHAR),
    ("BITMAP", DataType.BOOL), ("BITMAP", DataType.INT8), ("BITMAP", DataType.VARCHAR),
    ("INVERTED", DataType.BOOL), ("INVERTED", DataType.DOUBLE), ("INVERTED", DataType.VARCHAR),
    ("INVERTED", DataType.INT64), ("AUTOINDEX", DataType.INT16), ("AUTOINDEX", DataType.JSON),
    ("STL_SORT", DataType.TIMESTAMPTZ), ("INVERTED", DataType.TIMESTAMPTZ),
]


@pytest.mark.parametrize(("itype", "dtype"), ACCEPTED)
def test_accepted(itype, dtype):
    assert validate_scalar_index(itype, _field(dtype), {}) == ("Trie" if itype == "TRIE" else itype)


def test_accepted_arrays_and_json():
    arr_int = _field(DataType.ARRAY, element_type=DataType.INT64)
    assert validate_scalar_index("BITMAP", arr_int, {}) == "BITMAP"
    assert validate_scalar_index("INVERTED", _field(DataType.ARRAY, element_type=DataType.FLOAT), {}) == "INVERTED"
    assert validate_scalar_index("INVERTED", _field(DataType.JSON),
                                 {"json_cast_type": "double", "json_path": "x['a']"}) == "INVERTED"


STL = "STL_SORT are only supported on numeric, varchar or timestamptz field, got "
REFUSED = [
    ("STL_SORT", _field(DataType.BOOL), STL + "Bool"),
    ("STL_SORT", _field(DataType.JSON), STL + "JSON"),
    ("STL_SORT", _field(DataType.ARRAY, element_type=DataType.INT64), "got Array"),
    ("Trie", _field(DataType.INT64), "TRIE are only supported on varchar field"),
    ("BITMAP", _field(DataType.FLOAT), "bitmap index are only supported on bool, int, string and array field"),
    ("BITMAP", _field(DataType.JSON), "bitmap index are only supported on bool, int, string and array field"),
    ("BITMAP", _field(DataType.ARRAY, element_type=DataType.DOUBLE),
     "bitmap index are only supported on bool, int, string for array field"),
    ("BITMAP", FieldSchema("x", DataType.INT64, is_primary=True), "create bitmap index on primary key not supported"),
    ("INVERTED", _field(DataType.JSON), "json index must specify cast type"),
    ("INVERTED", _field(DataType.JSON), "json_cast_type INT is not supported"),
    ("INVERTED", _field(DataType.JSON), "json index must specify json path"),
    ("HASH", _field(DataType.INT64), "index type HASH is not supported for scalar field x"),
]


@pytest.mark.parametrize("case", range(len(REFUSED)))
def test_refused(case):
    itype, field, message = REFUSED[case]
    params = {}
    if "json_cast_type INT" in message:
        params = {"json_cast_type": "INT", "json_path": "x['a']"}
    elif "json path" in message:
        params = {"json_cast_type": "VARCHAR"}
    with pytest.raises(InvalidParameter) as e:
        validate_scalar_index(itype, field, params)
    assert message in str(e.value)
    assert e.value.code == 1100


@pytest.mark.parametrize(("field", "params", "message"), [
    (_field(DataType.INT64), {"min_gram": "2", "max_gram": "3"}, "Ngram index can only be created on VARCHAR or JSON"),
    (_field(DataType.JSON), {"min_gram": "2", "max_gram": "3"},
     "JSON field with ngram index must specify json_cast_type"),
    (_field(DataType.JSON), {"json_cast_type": "double", "json_path": "x['a']", "min_gram": "2", "max_gram": "3"},
     "JSON field with ngram index only supports VARCHAR cast type, got: DOUBLE"),
    (_field(DataType.VARCHAR), {"min_gram": "2"}, "Ngram index must specify both min_gram and max_gram"),
    (_field(DataType.VARCHAR), {"min_gram": "a", "max_gram": "3"},
     "min_gram for Ngram index must be an integer, got: a"),
    (_field(DataType.VARCHAR), {"min_gram": "2", "max_gram": "3.5"}, "max_gram for Ngram index must be an integer"),
    (_field(DataType.VARCHAR), {"min_gram": "4", "max_gram": "3"},
     "invalid min_gram or max_gram value for Ngram index, min_gram: 4, max_gram: 3"),
    (_field(DataType.VARCHAR), {"min_gram": "0", "max_gram": "3"}, "invalid min_gram or max_gram value"),
])
def test_ngram_index_checks_as_milvus_26(field, params, message):
    with pytest.raises(InvalidParameter, match=message.replace("[", r"\[")) as e:
        validate_scalar_index("NGRAM", field, params)
    assert e.value.code == 1100


def test_ngram_index_accepted_on_varchar_and_json_varchar():
    assert validate_scalar_index("ngram", _field(DataType.VARCHAR), {"min_gram": "2", "max_gram": "4"}) == "NGRAM"
    assert validate_scalar_index("NGRAM", _field(DataType.JSON), {"json_cast_type": "varchar", "json_path": "x['a']",
                                                                 "min_gram": 1, "max_gram": 1}) == "NGRAM"

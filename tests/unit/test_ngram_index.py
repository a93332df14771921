"""The NGRAM index (vecdb.index.ngram) and ``like`` through it (vecdb.expr.ngram_like): on random
strings (unicode, astral characters, the wildcard and escape characters themselves) every pattern
shape gives exactly the scan's rows, for gram ranges from (1, 1) up; literals shorter than
``min_gram``, ``%`` alone and broad grams fall back to the scan; filters compiled against a schema
(VARCHAR, nullable VARCHAR, JSON paths, ``not``) read the index and still equal the scan."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from vecdb.expr import compile_filter
from vecdb.expr.like import compile_like, literals
from vecdb.expr.ngram_like import index_key, indexed_strings
from vecdb.index import ngram
from vecdb.index.ngram import NgramIndex, build_segment_ngram_index, segment_ngram_index
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

ALPHABET = "abcab%_\\é中😀 \n"
GRAMS = [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (1, 5), (4, 6)]


def _strings(rng: random.Random, n: int, longest: int = 10) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, longest))) for _ in range(n)]
    return out


def _pattern(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET + "%%__\\") for _ in range(rng.randint(0, 7)))


SHAPES = ["abc", "abc%", "%abc", "%abc%", "a%b", "ab%ca", "%ab_c%", "a_b%", "%a%b%c%", "_", "__%", "%",
          "", "%%", "abcabcab%", "%cab\\%ab%", "%\\_a%", "%\\\\%", "%é中%", "%😀a%", "%a\nb%", "a\\b%",
          "%ab\\", "\\%%", "%_ab_%", "%bca", "%中😀%"]


@pytest.mark.parametrize("grams", GRAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_pattern_equals_the_scan(grams, seed):
    rng = random.Random(seed)
    strings = _strings(rng, 2500)
    strings[:40] = ["abcab", "%ab", "_ab", "cab%ab", "a\\b", "ab\\", "\\", "", "abcabcabca", "é中😀a"] * 4
    idx = NgramIndex(strings, *grams)
    used = 0
    for pattern in SHAPES + [_pattern(rng) for _ in range(300)]:
        m = compile_like(pattern)
        want = m(strings)
        got = idx.like(m.literals, m)
        if got is None:
            assert not any(len(lit) >= grams[0] for lit in m.literals) or _broad(idx, m.literals), pattern
            continue
        used += 1
        assert got.dtype == bool and got.shape == want.shape
        assert np.array_equal(got, want), (grams, pattern)
    assert used > 20


def _broad(idx: NgramIndex, lits: list[str]) -> bool:
    shortest = min(len(p) for lit in lits if len(lit) >= idx.min_gram for p in idx.postings(lit))
    return shortest * ngram.BROAD_DIVISOR > idx.n


def test_candidates_hold_every_match_and_the_grams_narrow():
    strings = np.array(["xxabcxx", "abc", "ab", "bcab", "cabc", "", "zzz", "abzabc"], dtype=object)
    idx = NgramIndex(np.concatenate([strings, np.full(100, "qq", dtype=object)]), 2, 3)
    assert idx.candidates(["abc"]).tolist() == [0, 1, 4, 7]
    assert idx.candidates(["ab", "bz"]).tolist() == [7]  # each literal's rows, intersected
    assert idx.candidates(["ab", "zz"]).tolist() == []
    assert idx.candidates(["abcd"]).tolist() == []  # bcd in no row
    assert idx.candidates(["qqq"]).tolist() == []
    assert idx.candidates(["a"]) is None  # shorter than min_gram: scan
    assert idx.candidates(["a", "zz"]).tolist() == [6]  # the short literal ignored, the other used
    assert idx.candidates([]) is None
    assert idx.candidates(["qq"]) is None  # in 100 of 108 rows: scan


def test_literals_read_escapes_and_wildcards():
    assert literals("%ab_c%d") == ["ab", "c", "d"]
    assert literals("a\\%b\\_c\\\\d%") == ["a%b_c\\d"]
    assert literals("%") == [] and literals("") == []
    assert literals("x\\y") == ["x\\y"]  # a backslash before another character is itself


def test_edges_empty_segment_empty_strings_astral():
    assert NgramIndex(np.zeros(0, dtype=object), 1, 3).like(["ab"], compile_like("%ab%")).tolist() == []
    empty = NgramIndex(np.full(50, "", dtype=object), 1, 2)
    assert empty.like(["a"], compile_like("a")).tolist() == [False] * 50
    assert empty.like([], compile_like("%")) is None
    astral = NgramIndex(np.array(["😀😀", "😀", "x😀😀", "y", "y"], dtype=object), 2, 4)
    assert astral.like(["😀😀"], compile_like("😀😀")).tolist() == [True, False, False, False, False]
    assert astral.like(["x😀😀"], compile_like("%x😀😀")).tolist() == [False, False, True, False, False]
    with pytest.raises(ValueError):
        NgramIndex(np.array(["a"], dtype=object), 3, 2)


def test_rows_longer_than_a_build_chunk(monkeypatch):
    monkeypatch.setattr(ngram, "_CHUNK_CHARS", 7)  # many chunks, some one long row each
    rng = random.Random(5)
    strings = _strings(rng, 400, longest=20)
    idx, ref = NgramIndex(strings, 1, 3), None
    monkeypatch.setattr(ngram, "_CHUNK_CHARS", 1 << 22)
    ref = NgramIndex(strings, 1, 3)
    for k in range(1, 4):
        assert np.array_equal(idx.grams[k], ref.grams[k]) and np.array_equal(idx.rows[k], ref.rows[k])
        assert np.array_equal(idx.offsets[k], ref.offsets[k])


def test_postings_are_compact_and_sorted():
    rng = random.Random(2)
    strings = _strings(rng, 3000)
    idx = NgramIndex(strings, 2, 3)
    for k in (2, 3):
        g, off, rows = idx.grams[k], idx.offsets[k], idx.rows[k]
        assert (np.diff(g.astype(np.float64)) > 0).all() and off[0] == 0 and off[-1] == len(rows)
        for i in range(0, len(g), 97):
            seg = rows[off[i]:off[i + 1]]
            assert len(seg) and (np.diff(seg) > 0).all()
    grams_per_row = sum(len({s[i:i + k] for i in range(len(s) - k + 1)}) for s in strings for k in (2, 3))
    assert sum(len(r) for r in idx.rows.values()) == grams_per_row  # one posting per distinct gram of a row
    assert idx.nbytes == sum(a.nbytes for d in (idx.grams, idx.offsets, idx.rows) for a in d.values())


def _schema(nullable: bool = False) -> CollectionSchema:
    return CollectionSchema("c", fields=[
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("s", DataType.VARCHAR, type_params={"max_length": "64"}, nullable=nullable),
        FieldSchema("j", DataType.JSON),
        FieldSchema("vec", DataType.FLOAT_VECTOR, type_params={"dim": "2"}),
    ], enable_dynamic_field=True)


class _Indexed(dict):
    """Columns with NGRAM indexes, as a sealed segment's SegmentColumns offers them."""

    def __init__(self, cols, indexes):
        super().__init__(cols)
        self.indexes, self.used = indexes, []

    def ngram_index(self, key):
        self.used.append(key)
        return self.indexes.get(key)


FILTERS = ["s like '%ab%'", "s like 'ab%'", "s like '%ca'", "s like 'a_b%c'", "not (s like '%bc%')",
           "s like '%ab%' and id < 1000", "s like '%' or id == 3", "s like 'c'", "s like '%\\\\%%'",
           'j["w"] like "%ab%"', 'not j["w"] like "ab%"', 'j["w"] like "%"', 'j["w"] like "%é中%"',
           "j['x'][0] like '%ab%'", 's like "%😀%"']


@pytest.mark.parametrize("nullable", [False, True])
def test_filters_read_the_index_and_equal_the_scan(nullable):
    rng = random.Random(7)
    n = 3000
    strings = _strings(rng, n)
    valid = np.array([rng.random() > 0.2 for _ in range(n)])
    col = strings.copy()
    if nullable:
        col[~valid] = ""  # a null row's placeholder
    jcol = np.empty(n, dtype=object)
    jcol[:] = [{"w": s} if i % 5 else ({"w": 3} if i % 2 else {"x": [s]}) for i, s in enumerate(strings)]
    cols = {"id": np.arange(n, dtype=np.int64), "s": col, "j": jcol}
    if nullable:
        cols[valid_key("s")] = valid
    schema = _schema(nullable)
    keys = [index_key(schema, "s", {}), index_key(schema, "j", {"json_path": 'j["w"]'}),
            index_key(schema, "j", {"json_path": "j['x'][0]"})]
    assert keys == [("s", ()), ("j", ("w",)), ("j", ("x", 0))]
    indexes = {k: NgramIndex(indexed_strings(cols[k[0]], k[1], k[0] == "j"), 2, 3) for k in keys}
    for expr in FILTERS:
        flt = compile_filter(expr, schema)
        want = flt.evaluate(dict(cols), n)
        cols_indexed = _Indexed(cols, indexes)
        assert np.array_equal(flt.evaluate(cols_indexed, n), want), expr
        assert cols_indexed.used, expr


def test_index_key_of_json_paths():
    schema = _schema()
    assert index_key(schema, "j", {"json_path": 'j["a"]["b"]'}) == ("j", ("a", "b"))
    assert index_key(schema, "j", {"json_path": "j"}) == ("j", ())
    assert index_key(schema, "j", {"json_path": "s"}) is None  # another field's
    assert index_key(schema, "j", {"json_path": "j[["}) is None
    assert index_key(schema, "nope", {}) is None


def test_segment_cache_builds_once_per_gram_range():
    seg = SimpleNamespace(n=3)
    strings = np.array(["abc", "bcd", "cde"], dtype=object)
    calls = []

    def make():
        calls.append(1)
        return strings

    assert segment_ngram_index(seg, ("s", ())) is None
    a = build_segment_ngram_index(seg, ("s", ()), 2, 3, make)
    assert build_segment_ngram_index(seg, ("s", ()), 2, 3, make) is a and len(calls) == 1
    b = build_segment_ngram_index(seg, ("s", ()), 1, 3, make)
    assert b is not a and segment_ngram_index(seg, ("s", ())) is b and len(calls) == 2

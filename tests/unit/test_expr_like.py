"""LIKE matching: every strategy agrees with a plain reference, and no pattern backtracks badly."""

from __future__ import annotations

import re
import time

import expr_reference as R
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecdb.expr import compile_filter
from vecdb.expr.like import compile_like, like_to_regex, match_one

# Small alphabets make matches (and near misses) common; "\n" checks DOTALL, "\\" the escapes.
patterns = st.text(alphabet="ab%_\\\n", max_size=10)
strings = st.text(alphabet="ab%_\\\n", max_size=12)


def naive_regex(pattern: str) -> str:
    """The old translation (``%`` -> ``.*``): right, but exponential on hostile input."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return "".join(out)


@settings(max_examples=400, deadline=None)
@given(patterns, st.lists(strings, max_size=8))
def test_matchers_agree_with_reference(pattern, data):
    want = [R.like_match(pattern, s) for s in data]
    assert want == [re.fullmatch(naive_regex(pattern), s, re.DOTALL) is not None for s in data]
    assert [match_one(pattern, s) for s in data] == want
    got = compile_like(pattern)(np.array(data, dtype=object))
    assert got.dtype == bool and got.tolist() == want


@pytest.mark.parametrize("pattern,regex", [
    ("abc", "abc"), ("a%", "a.*"), ("%a", ".*a"), ("%a%", "(?>.*?a).*"), ("a_c%d%e_", "a.c(?>.*?d).*e."),
    ("%%a%%b%%", "(?>.*?a)(?>.*?b).*"), (r"50\%%", "50%.*"), ("_", "."),
])
def test_regex_shape(pattern, regex):
    assert like_to_regex(pattern) == regex


HOSTILE = ["%a%a%a%a%a%a%b", "%a%a%a%a%a%a%", "a%a_a%a%a%a_b%", "%a%a%a%a%a%a%a%a%a%a%ab_", "%aaaaaaaab%aaab"]


@pytest.mark.parametrize("pattern", HOSTILE)
def test_hostile_pattern_is_linear(pattern):
    # The naive regex needs ~n**7 steps on a 100k-char string; the atomic one about n * len(pattern).
    s = "a" * 100_000
    data = np.array([s] * 20, dtype=object)
    start = time.perf_counter()
    got = compile_like(pattern)(data)
    one = match_one(pattern, s)
    assert time.perf_counter() - start < 5.0  # linear: well under; a backtracking blow-up: hours
    assert got.tolist() == [one] * 20
    assert one == (pattern == "%a%a%a%a%a%a%")


def test_hostile_pattern_in_filter():
    schema = R.make_schema()
    flt = compile_filter('name like "%a%a%a%a%a%a%b"', schema)
    cols = {"name": np.array(["a" * 5_000] * 2_000 + ["aaaaaab"], dtype=object)}
    start = time.perf_counter()
    mask = flt.evaluate(cols, 2_001)
    assert time.perf_counter() - start < 5.0  # linear: well under; a backtracking blow-up: hours
    assert mask.tolist() == [False] * 2_000 + [True]


def test_constant_like_is_folded_without_backtracking():
    # A string literal on the left is folded at compile time by match_one.
    lhs = '"' + "a" * 50_000 + '"'
    flt = compile_filter(f'{lhs} like "%a%a%a%a%a%a%b" or a > 1', R.make_schema())
    mask = flt.evaluate({"a": np.array([0, 2], dtype=np.int64)}, 2)
    assert mask.tolist() == [False, True]

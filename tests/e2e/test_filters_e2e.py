"""Filter expressions end to end through pymilvus, checked against a plain-Python reference.

One module-scoped collection (every scalar type, JSON, three ARRAY fields, the dynamic field, FLAT
index) holds ~2,000 seeded rows from ``_filter_data``: sealed (flushed) and growing segments, then
deletes and upserts; the reference rows are the truth after those writes.

For every expression the test asserts, through the unmodified pymilvus client:

- ``query(filter=...)`` returns exactly the ids whose row the reference accepts;
- ``count(*)`` with the same filter equals the number of those ids;
- a filtered ``search`` returns the exact L2 top-k among those ids (FLAT is exact): the whole set
  when it has at most ``SEARCH_LIMIT`` ids, else the ``SEARCH_LIMIT`` nearest, all inside the set.

The reference is ``tests/unit/expr_reference.py`` (row-by-row Python restating Milvus's rules:
missing JSON keys and other-typed values make comparisons false, ``!=`` on JSON is ``not ==``, an
out-of-range ARRAY index is false for every operator, int arithmetic truncates toward zero) plus
plain lambdas over the row dicts for hand-written cases.
"""

from __future__ import annotations

import math
import operator
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import common_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the unit tier's reference + strategies
import expr_reference as R  # noqa: E402
import test_expr_property as P  # noqa: E402

from tests.e2e import _filter_data as D  # noqa: E402

COLLECTION = "filters_e2e"
QUERY_LIMIT = 16384
SEARCH_LIMIT = 40
QUERY_VEC = [0.3, -0.2, 0.1, 0.5]
I64_MIN, I64_MAX = D.INT64_MIN, D.INT64_MAX


# --- the collection and its truth -------------------------------------------------------------
class World:
    """The loaded collection, its reference rows, and the checks every expression goes through."""

    def __init__(self, client: MilvusClient, rows: dict[int, dict]):
        self.client, self.rows = client, rows
        pks = sorted(rows)
        vecs = np.stack([rows[pk]["vec"] for pk in pks]).astype(np.float64)
        dist = ((vecs - np.asarray(QUERY_VEC, np.float64)) ** 2).sum(1)
        self.by_distance = [pks[i] for i in np.argsort(dist, kind="stable")]

    def want(self, fn) -> list[int]:
        return sorted(pk for pk, row in self.rows.items() if fn(row))

    def query_ids(self, expr: str, params: dict | None = None) -> list[int]:
        kw = {"filter_params": params} if params else {}
        got = self.client.query(COLLECTION, filter=expr, output_fields=["pk"], limit=QUERY_LIMIT, **kw)
        ids = [r["pk"] for r in got]
        assert len(ids) == len(set(ids)), f"duplicate ids for {expr!r}"
        return sorted(ids)

    def count(self, expr: str, params: dict | None = None) -> int:
        kw = {"filter_params": params} if params else {}
        return self.client.query(COLLECTION, filter=expr, output_fields=["count(*)"], **kw)[0]["count(*)"]

    def search_ids(self, expr: str, limit: int, params: dict | None = None) -> list[int]:
        kw = {"filter_params": params} if params else {}
        hits = self.client.search(COLLECTION, [QUERY_VEC], filter=expr, limit=limit, **kw)
        assert len(hits) == 1
        return [h["pk"] for h in hits[0]]

    def check(self, expr: str, fn, params: dict | None = None) -> None:
        want = self.want(fn)
        assert self.query_ids(expr, params) == want, expr
        assert self.count(expr, params) == len(want), expr
        wanted = set(want)
        limit = max(1, min(len(want), SEARCH_LIMIT))
        got = self.search_ids(expr, limit, params)
        assert set(got) <= wanted, f"{expr}: search returned ids outside the filter"
        nearest = [pk for pk in self.by_distance if pk in wanted][:limit]
        assert sorted(got) == sorted(nearest), expr


@pytest.fixture(scope="module")
def world(uri):
    client = MilvusClient(uri=uri)
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    rows = D.populate(client, COLLECTION)
    yield World(client, rows)
    client.drop_collection(COLLECTION)
    client.close()


# --- reference helpers for hand-written cases ---------------------------------------------------
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
       ">=": operator.ge}


def M(*path):
    """The value at ``path`` in the JSON field ``meta`` (R.MISSING where it does not resolve)."""
    return lambda r: R.walk(r["meta"], path)


def DYN(*path):
    """The value at ``path`` in the dynamic field."""
    return lambda r: R.walk(r["$meta"], path)


def F(name):
    return lambda r: r[name]


def ELEM(name, i):
    return lambda r: r[name][i] if i < len(r[name]) else R.INVALID


def jcmp(op, get, lit):
    """Milvus comparison of a JSON value with a literal (``!=`` is ``not ==``; against a list, the
    value must be an array)."""
    if op == "!=" and isinstance(lit, list):
        return lambda r: isinstance(get(r), list) and not R.json_eq(get(r), lit)
    return lambda r: (not R.json_eq(get(r), lit)) if op == "!=" else R.cmp(op, get(r), lit)


def vcmp(op, get, lit):
    """Comparison of a typed value (INVALID/MISSING false for every operator)."""
    return lambda r: R.cmp(op, get(r), lit)


def arith(op, x, y):
    """int op int stays int (C division and remainder); anything else is float; None when invalid."""
    if R.category(x) != "num" or R.category(y) != "num" or (op in "/%" and y == 0):
        return None
    if isinstance(x, int) and isinstance(y, int):
        return {"+": x + y, "-": x - y, "*": x * y, "/": R.trunc_div(x, y), "%": x - y * R.trunc_div(x, y)}[op]
    return {"+": x + y, "-": x - y, "*": x * y, "/": x / y, "%": math.fmod(x, y)}[op]


def acmp(op, get, aop, k, lit):
    """``get(row) aop k  op  lit``."""
    def fn(r):
        v = arith(aop, get(r), k)
        return v is not None and OPS[op](v, lit)
    return fn


def isin(get, items, negate=False):
    return lambda r: any(R.json_eq(get(r), x) for x in items) != negate


def like(get, pattern):
    return lambda r: isinstance(get(r), str) and R.like_match(pattern, get(r))


def contains(mode, get, arg):
    def fn(r):
        v = get(r)
        if not isinstance(v, list):
            return False
        has = lambda x: any(R.json_eq(e, x) for e in v)  # noqa: E731
        return {"one": lambda: has(arg), "all": lambda: all(map(has, arg)), "any": lambda: any(map(has, arg))}[mode]()
    return fn


def length(get):
    """``array_length``: a JSON path without an array (or missing) has length 0, as in Milvus."""
    return lambda r: len(get(r)) if isinstance(get(r), list) else 0


def lit(v) -> str:
    return R.render_literal(v)


# --- the table --------------------------------------------------------------------------------
CASES: list = []  # pytest.param(expr, fn, params)


def case(expr: str, fn, params: dict | None = None, marks=()) -> None:
    """``expr`` (with pymilvus ``filter_params``) must select exactly the rows where ``fn(row)`` is true."""
    CASES.append(pytest.param(expr, fn, params, marks=marks, id=expr if params is None else f"{expr} {params}"))


# comparisons on every scalar type, literal right and left, edge and out-of-range literals
NUMERIC_LITERALS = {
    "small": [0, -1, 5, -128, 127, 200, -129, 2.5],
    "i16": [0, -6, 3, -32768, 32767, 40000, -0.5],
    "i32": [0, 3, -4, -(2**31), 2**31 - 1, 1e10, 1.25],
    "a": [0, -3, 6, 1000, 10**9, -(10**9), 2.5],
    "big": [0, -1, 4, I64_MAX, I64_MIN + 1, 2**53 + 1],
    "b": [0, -0.25, 2, 0.1, 1e15, -1e15, 1e-6],
    "f32": [0, 0.5, -1.75, 1e10, 3, -0.0],
    "pk": [0, 1000, 1999, 2005, -1],
}
for fname, lits in NUMERIC_LITERALS.items():
    for i, v in enumerate(lits):
        text = f"({lit(v)})" if v < 0 and i % 2 else lit(v)  # negative literals with and without parentheses
        for op in OPS if i < 3 else ("==", "<", ">="):
            case(f"{fname} {op} {text}", (lambda f, o, x: lambda r: OPS[o](r[f], x))(fname, op, v), None)
        op = ("<", ">=", "==", "!=")[i % 4]
        case(f"{text} {op} {fname}", (lambda f, o, x: lambda r: OPS[o](x, r[f]))(fname, op, v), None)

for v in ["a", "", "日本語", "100%", "Apple", "a_b"]:
    for op in OPS if v in ("a", "") else ("==", "!=", ">"):
        case(f"name {op} {lit(v)}", (lambda o, x: lambda r: OPS[o](r["name"], x))(op, v), None)
case("name == 'it\\'s'", lambda r: r["name"] == "it's", None)
case('name == "say \\"hi\\""', lambda r: r["name"] == 'say "hi"', None)
case('name == "tab\\tin"', lambda r: r["name"] == "tab\tin", None)
case('name == "\\u65e5\\u672c"', lambda r: r["name"] == "日本", None)
case('name == "a\\\\b"', lambda r: r["name"] == "a\\b", None)
case('"b" > name', lambda r: r["name"] < "b", None)

for text, fn in [("flag", lambda r: r["flag"]), ("flag == true", lambda r: r["flag"]),
                 ("flag == False", lambda r: not r["flag"]), ("flag != true", lambda r: not r["flag"]),
                 ("flag != FALSE", lambda r: r["flag"]), ("true == flag", lambda r: r["flag"]),
                 ("not flag", lambda r: not r["flag"]), ("!flag", lambda r: not r["flag"]),
                 ("flag in [true]", lambda r: r["flag"]), ("flag not in [true, false]", lambda r: False),
                 ("true", lambda r: True), ("false", lambda r: False), ("True", lambda r: True)]:
    case(text, fn)

# field against field
for left, op, right in [("a", "<", "i32"), ("small", "==", "i16"), ("b", ">=", "f32"), ("a", "==", "big"),
                        ("i32", "!=", "small"), ("f32", "<", "a"), ("b", "<=", "small"), ("pk", ">", "i16")]:
    case(f"{left} {op} {right}", (lambda lf, o, rf: lambda r: OPS[o](r[lf], r[rf]))(left, op, right))
case('name == meta["s"]', lambda r: R.json_eq(r["name"], R.walk(r["meta"], ("s",))))
case('meta["x"] < a', lambda r: R.cmp("<", R.walk(r["meta"], ("x",)), r["a"]))

# chained ranges
for text, fn in [
    ("-3 < a <= 4", lambda r: -3 < r["a"] <= 4),
    ("10 > small >= -10", lambda r: 10 > r["small"] >= -10),
    ("0.5 <= b < 3", lambda r: 0.5 <= r["b"] < 3),
    ("-1.5 < f32 < 1.5", lambda r: -1.5 < r["f32"] < 1.5),
    ("-100 <= i16 <= 100", lambda r: -100 <= r["i16"] <= 100),
    ("0 < i32 < 2147483647", lambda r: 0 < r["i32"] < 2**31 - 1),
    ("-9223372036854775807 <= big < 0", lambda r: -(2**63) + 1 <= r["big"] < 0),
    ('"a" <= name < "b"', lambda r: "a" <= r["name"] < "b"),
    ("5 < a < 2", lambda r: False),
    ('-1 < meta["x"] < 3', lambda r: R.cmp("<", -1, M("x")(r)) and R.cmp("<", M("x")(r), 3)),
    ('"a" <= meta["s"] <= "b"', lambda r: R.cmp("<=", "a", M("s")(r)) and R.cmp("<=", M("s")(r), "b")),
    ("0 <= d <= 5", lambda r: R.cmp("<=", 0, DYN("d")(r)) and R.cmp("<=", DYN("d")(r), 5)),
    ('1 <= $meta["dn"]["k"] < 4', lambda r: R.cmp("<=", 1, DYN("dn", "k")(r)) and R.cmp("<", DYN("dn", "k")(r), 4)),
    ("-2 < tags[0] < 2", lambda r: R.cmp("<", -2, ELEM("tags", 0)(r)) and R.cmp("<", ELEM("tags", 0)(r), 2)),
    ("3 >= fl[1] > -1", lambda r: R.cmp(">=", 3, ELEM("fl", 1)(r)) and R.cmp(">", ELEM("fl", 1)(r), -1)),
]:
    case(text, fn)

# in / not in on every type
for target, get, items in [
    ("small", F("small"), [-128, 127, 0, 300]), ("i16", F("i16"), [32767, -32768, 1]),
    ("i32", F("i32"), [-(2**31), 3, -4]), ("a", F("a"), [1, 2, 3, 1000]), ("big", F("big"), [I64_MAX, 0, -1]),
    ("b", F("b"), [0.25, -1.5, 0.1, 2]), ("f32", F("f32"), [0.5, -0.75, 1e10]), ("pk", F("pk"), [3, 10, 2001, 77]),
    ("name", F("name"), ["", "a", "日本語", "100%", "a%b"]), ("flag", F("flag"), [False]),
    ('meta["x"]', M("x"), [1, "a", True, 0.5, [1, 2]]), ('meta["s"]', M("s"), ["a", "b", 3]),
    ('meta["n"]["y"]', M("n", "y"), [0, 1, "ab", False]), ("d", DYN("d"), [1, 2, "a", True]),
    ("color", DYN("color"), ["red", "红", ""]), ("tags[0]", ELEM("tags", 0), [1, 2, 3]),
    ("strs[1]", ELEM("strs", 1), ["a", "日本", "%"]), ("fl[0]", ELEM("fl", 0), [0.25, -6]),
]:
    case(f"{target} in {lit(items)}", isin(get, items))
    case(f"{target} not in {lit(items)}", isin(get, items, negate=True))
case("a IN [1, 2]", isin(F("a"), [1, 2]))
case("a NOT IN [1, 2]", isin(F("a"), [1, 2], negate=True))
case("a in []", lambda r: False)
case("a not in []", lambda r: True)
case("not (a in [1, 2])", isin(F("a"), [1, 2], negate=True))

# like: prefix, suffix, infix, '_', escaped wildcards, unicode, on every string-valued target
LIKE_PATTERNS = ["a%", "%a", "%a%", "a_", "_", "__", "%\\%%", "%\\_%", "\\%%", "日%", "%語", "%本%", "", "%",
                 "a%b", "A%", "%\\\\%", "_%_", "%\\%"]
for pattern in LIKE_PATTERNS:
    case(f"name like {lit(pattern)}", like(F("name"), pattern))
for target, get in [('meta["s"]', M("s")), ("d", DYN("d")), ("strs[0]", ELEM("strs", 0)), ("color", DYN("color")),
                    ('meta["deep"]["l1"]["w"]', M("deep", "l1", "w")), ('$meta["dn"]["w"]', DYN("dn", "w")),
                    ('meta["x"]', M("x"))]:
    for pattern in ("a%", "%b", "%\\%%", "_", "%日%", "r%"):
        case(f"{target} like {lit(pattern)}", like(get, pattern))
case("name LIKE 'a%'", like(F("name"), "a%"))
case('not (name like "%a%")', lambda r: not like(F("name"), "%a%")(r))

# arithmetic on every numeric type, JSON, dynamic, array elements and lengths
for text, fn in [
    ("small + 1 == 0", acmp("==", F("small"), "+", 1, 0)),
    ("small * 2 < -200", acmp("<", F("small"), "*", 2, -200)),
    ("small - 1 == -129", acmp("==", F("small"), "-", 1, -129)),
    ("i16 - 2 > 32760", acmp(">", F("i16"), "-", 2, 32760)),
    ("i16 * 2 == 65534", acmp("==", F("i16"), "*", 2, 65534)),
    ("i16 / 1000 == -32", acmp("==", F("i16"), "/", 1000, -32)),
    ("i32 * 2 <= 4", acmp("<=", F("i32"), "*", 2, 4)),
    ("i32 + 1 == -2147483647", acmp("==", F("i32"), "+", 1, -(2**31) + 1)),
    ("i32 % 7 == -3", acmp("==", F("i32"), "%", 7, -3)),
    ("a / 2 == -1", acmp("==", F("a"), "/", 2, -1)),
    ("a % 3 == -1", acmp("==", F("a"), "%", 3, -1)),
    ("a % 3 == 2", acmp("==", F("a"), "%", 3, 2)),
    ("a % -4 == 1", acmp("==", F("a"), "%", -4, 1)),
    ("a / 2.0 == 1.5", acmp("==", F("a"), "/", 2.0, 1.5)),
    ("a * 1000000000 > 100", acmp(">", F("a"), "*", 10**9, 100)),
    ("a - 2.5 > 0", acmp(">", F("a"), "-", 2.5, 0)),
    ("b * 2 > 1", acmp(">", F("b"), "*", 2, 1)),
    ("b / 2 == 0.125", acmp("==", F("b"), "/", 2, 0.125)),
    ("b % 1 == 0.5", acmp("==", F("b"), "%", 1, 0.5)),
    ("b % 2 == -1.5", acmp("==", F("b"), "%", 2, -1.5)),
    ("b - 0.25 == 0", acmp("==", F("b"), "-", 0.25, 0)),
    ("b + 1 < 0", acmp("<", F("b"), "+", 1, 0)),
    ("f32 / 2 < 0.5", acmp("<", F("f32"), "/", 2, 0.5)),
    ("f32 * 4 == 3", acmp("==", F("f32"), "*", 4, 3)),
    ("f32 % 2 == -1.5", acmp("==", F("f32"), "%", 2, -1.5)),
    ("pk % 100 == 7", acmp("==", F("pk"), "%", 100, 7)),
    ('meta["x"] + 1 == 2', acmp("==", M("x"), "+", 1, 2)),
    ('meta["x"] * 2 > 3', acmp(">", M("x"), "*", 2, 3)),
    ('meta["x"] % 2 == 1', acmp("==", M("x"), "%", 2, 1)),
    ('meta["x"] / 2 == 1', acmp("==", M("x"), "/", 2, 1)),
    ('meta["x"] - 0.5 < 0', acmp("<", M("x"), "-", 0.5, 0)),
    ('meta["n"]["y"] - 2 >= 0', acmp(">=", M("n", "y"), "-", 2, 0)),
    ('meta["arr"][0] * 3 == 3', acmp("==", M("arr", 0), "*", 3, 3)),
    ("d * 2 == 4", acmp("==", DYN("d"), "*", 2, 4)),
    ('$meta["d"] - 1 < 0', acmp("<", DYN("d"), "-", 1, 0)),
    ('dn["k"] % 3 == 0', acmp("==", DYN("dn", "k"), "%", 3, 0)),
    ("tags[0] + 1 == 3", acmp("==", ELEM("tags", 0), "+", 1, 3)),
    ("tags[2] / 2 == -2", acmp("==", ELEM("tags", 2), "/", 2, -2)),
    ("fl[0] * 4 == 1", acmp("==", ELEM("fl", 0), "*", 4, 1)),
    ("array_length(tags) % 2 == 0", acmp("==", length(F("tags")), "%", 2, 0)),
    ('array_length(meta["arr"]) + 1 == 3', acmp("==", length(M("arr")), "+", 1, 3)),
    ("-a > 3", lambda r: -r["a"] > 3),
    ("-b <= -1", lambda r: -r["b"] <= -1),
    ("-f32 == 0.25", lambda r: -r["f32"] == 0.25),
    ("-small == 128", lambda r: -r["small"] == 128),
    ("-i16 < -32000", lambda r: -r["i16"] < -32000),
    ("-i32 > 2147483647", lambda r: -r["i32"] > 2**31 - 1),
    ("-i16 == 32768", lambda r: -r["i16"] == 32768),
    ('-meta["x"] == 1', lambda r: R.category(M("x")(r)) == "num" and -M("x")(r) == 1),
    ("-(a + 1) == 0", lambda r: -(r["a"] + 1) == 0),
    ("(a + 1) * 2 == 6", lambda r: (r["a"] + 1) * 2 == 6),
    ("a * 3 + 1 > 10", lambda r: r["a"] * 3 + 1 > 10),
    ("a + b > 1", lambda r: r["a"] + r["b"] > 1),
    ("a * i32 == 4", lambda r: r["a"] * r["i32"] == 4),
    ("small - i16 == 0", lambda r: r["small"] - r["i16"] == 0),
    ("a % b == 0", lambda r: r["b"] != 0 and math.fmod(r["a"], r["b"]) == 0),
    ("a < 2 ** 2", lambda r: r["a"] < 4),
    ("a == 7 - 10", lambda r: r["a"] == -3),
    ("2 * a == 4", lambda r: 2 * r["a"] == 4),
    ("10 - a < 7", lambda r: 10 - r["a"] < 7),
    ("a + 1 != 3", lambda r: r["a"] + 1 != 3),
    ("tags[1] * 2 != 4", lambda r: len(r["tags"]) > 1 and r["tags"][1] * 2 != 4),
]:
    case(text, fn)

# and / or / not in all spellings, precedence, parentheses
for text, fn in [
    ("a > 0 and b > 0", lambda r: r["a"] > 0 and r["b"] > 0),
    ("a > 0 && b > 0", lambda r: r["a"] > 0 and r["b"] > 0),
    ("a > 0 AND b > 0", lambda r: r["a"] > 0 and r["b"] > 0),
    ("a > 0 or flag", lambda r: r["a"] > 0 or r["flag"]),
    ("a > 0 || flag", lambda r: r["a"] > 0 or r["flag"]),
    ("a > 0 OR flag", lambda r: r["a"] > 0 or r["flag"]),
    ("not a > 0", lambda r: not r["a"] > 0),
    ("!(a > 0)", lambda r: not r["a"] > 0),
    ("NOT (a > 0)", lambda r: not r["a"] > 0),
    ("not (a > 0 or flag)", lambda r: not (r["a"] > 0 or r["flag"])),
    ("a > 0 or b > 0 and flag", lambda r: r["a"] > 0 or (r["b"] > 0 and r["flag"])),
    ("(a > 0 or b > 0) and flag", lambda r: (r["a"] > 0 or r["b"] > 0) and r["flag"]),
    ("a > 0 && b < 0 || name == 'a'", lambda r: (r["a"] > 0 and r["b"] < 0) or r["name"] == "a"),
    ("not (not flag)", lambda r: r["flag"]),
    ("!flag && !(a < 0)", lambda r: not r["flag"] and not r["a"] < 0),
    ("a > 0 and true", lambda r: r["a"] > 0),
    ('false or name == "a"', lambda r: r["name"] == "a"),
    ("((((a > 1))))", lambda r: r["a"] > 1),
    ("(a > 1) and (b < 1) and (small > 1) and (i16 < 1)",
     lambda r: r["a"] > 1 and r["b"] < 1 and r["small"] > 1 and r["i16"] < 1),
    ("a == 1 or a == 2 or a == 3 or a == -6", lambda r: r["a"] in (1, 2, 3, -6)),
    ('not (meta["b"] == true)', lambda r: M("b")(r) is not True),
    ('meta["b"] == true and flag', lambda r: M("b")(r) is True and r["flag"]),
    ('not (meta["x"] == 1) and exists meta["x"]', lambda r: not R.json_eq(M("x")(r), 1) and M("x")(r) is not R.MISSING),
    ("a>0&&b<0", lambda r: r["a"] > 0 and r["b"] < 0),
    ("  a  >=  3\n and\tb < 1 ", lambda r: r["a"] >= 3 and r["b"] < 1),
]:
    case(text, fn)

# JSON paths: mixed types, nested, array index, dynamic keys (bare and via $meta), missing keys
for target, get in [('meta["x"]', M("x")), ("meta['x']", M("x")), ('meta["s"]', M("s")), ('meta["b"]', M("b")),
                    ('meta["n"]["y"]', M("n", "y")), ('meta["arr"][0]', M("arr", 0)), ('meta["arr"][3]', M("arr", 3)),
                    ('meta["x"][0]', M("x", 0)), ('meta["x"][1][0]', M("x", 1, 0)), ('meta["null"]', M("null")),
                    ('meta["deep"]["l1"]["l2"][0]["v"]', M("deep", "l1", "l2", 0, "v")), ("d", DYN("d")),
                    ('$meta["d"]', DYN("d")), ('dn["k"]', DYN("dn", "k")), ('$meta["dn"]["k"]', DYN("dn", "k")),
                    ("e[0]", DYN("e", 0)), ('e[1]', DYN("e", 1)), ("ghost", DYN("ghost")),
                    ('$meta["ghost"]["x"]', DYN("ghost", "x"))]:
    for op, v in [("==", 1), ("!=", 1), (">", 0), ("<=", -2.5), ("==", "a"), ("<", "b"), ("==", True),
                  ("!=", False), ("==", 1.5)]:
        case(f"{target} {op} {lit(v)}", jcmp(op, get, v))
for text, fn in [
    ('meta["x"] == [1, 2]', jcmp("==", M("x"), [1, 2])),
    ('meta["x"] != [1, 2]', jcmp("!=", M("x"), [1, 2])),
    ('meta["arr"] == []', jcmp("==", M("arr"), [])),
    ('meta["x"] == 1.0', jcmp("==", M("x"), 1)),
    ('meta["b"] == 1', jcmp("==", M("b"), 1)),
    ('meta["s"] > 0', jcmp(">", M("s"), 0)),
    ('meta["deep"]["l1"]["w"] == "apple"', jcmp("==", M("deep", "l1", "w"), "apple")),
    ('color == "red"', jcmp("==", DYN("color"), "red")),
    ('color != "red"', jcmp("!=", DYN("color"), "red")),
    ('color >= "r"', jcmp(">=", DYN("color"), "r")),
    ('$meta["color"] == "红"', jcmp("==", DYN("color"), "红")),
    ("e == [1, \"a\"]", jcmp("==", DYN("e"), [1, "a"])),
    ('meta["x"] == 9007199254740992', jcmp("==", M("x"), 2**53)),
    ('meta["x"] < -9007199254740991', jcmp("<", M("x"), -(2**53) + 1)),
    ('meta["x"] == 127 or meta["x"] == -128', lambda r: R.json_eq(M("x")(r), 127) or R.json_eq(M("x")(r), -128)),
]:
    case(text, fn)

# json_contains family (JSON field, dynamic field, ARRAY field)
for text, fn in [
    ('json_contains(meta["arr"], 1)', contains("one", M("arr"), 1)),
    ('json_contains(meta["arr"], "a")', contains("one", M("arr"), "a")),
    ('json_contains(meta["arr"], true)', contains("one", M("arr"), True)),
    ('json_contains(meta["arr"], 1.5)', contains("one", M("arr"), 1.5)),
    ('JSON_CONTAINS(meta["arr"], -2)', contains("one", M("arr"), -2)),
    ('json_contains(meta["x"], [1, 2])', contains("one", M("x"), [1, 2])),
    ('json_contains(meta["x"], 0)', contains("one", M("x"), 0)),
    ('json_contains(e, "a")', contains("one", DYN("e"), "a")),
    ('json_contains($meta["e"], 3)', contains("one", DYN("e"), 3)),
    ('json_contains(meta["n"], 1)', contains("one", M("n"), 1)),
    ('json_contains_all(meta["arr"], [1, 2])', contains("all", M("arr"), [1, 2])),
    ('json_contains_all(meta["arr"], [1, "a"])', contains("all", M("arr"), [1, "a"])),
    ('json_contains_all(e, [1, "a"])', contains("all", DYN("e"), [1, "a"])),
    ('JSON_CONTAINS_ALL(meta["x"], [0])', contains("all", M("x"), [0])),
    ('json_contains_any(meta["arr"], [1, "a", false])', contains("any", M("arr"), [1, "a", False])),
    ('json_contains_any(e, [0, "b"])', contains("any", DYN("e"), [0, "b"])),
    ('json_contains_any(meta["x"], [[1, 2], 3])', contains("any", M("x"), [[1, 2], 3])),
    ('not json_contains(meta["arr"], 1)', lambda r: not contains("one", M("arr"), 1)(r)),
    ("json_contains(tags, 3)", contains("one", F("tags"), 3)),
    ("json_contains_any(strs, [\"a\", \"b\"])", contains("any", F("strs"), ["a", "b"])),
]:
    case(text, fn)

# ARRAY fields: contains family, length, equality, element access
for text, fn in [
    ("array_contains(tags, 3)", contains("one", F("tags"), 3)),
    ("array_contains(tags, -6)", contains("one", F("tags"), -6)),
    ("ARRAY_CONTAINS(tags, 0)", contains("one", F("tags"), 0)),
    ("array_contains_all(tags, [1, 2])", contains("all", F("tags"), [1, 2])),
    ("array_contains_all(tags, [3])", contains("all", F("tags"), [3])),
    ("array_contains_any(tags, [5, -5])", contains("any", F("tags"), [5, -5])),
    ("ARRAY_CONTAINS_ANY(tags, [6])", contains("any", F("tags"), [6])),
    ('array_contains(strs, "a")', contains("one", F("strs"), "a")),
    ('array_contains(strs, "")', contains("one", F("strs"), "")),
    ('array_contains_any(strs, ["日本", "%"])', contains("any", F("strs"), ["日本", "%"])),
    ('array_contains_all(strs, ["a", "b"])', contains("all", F("strs"), ["a", "b"])),
    ("array_contains(fl, 0.5)", contains("one", F("fl"), 0.5)),
    ("array_contains_any(fl, [1.25, -1])", contains("any", F("fl"), [1.25, -1])),
    ("array_contains_all(fl, [0, 0.25])", contains("all", F("fl"), [0, 0.25])),
    ('array_contains(meta["arr"], 2)', contains("one", M("arr"), 2)),
    ('array_contains_any(e, [1, 2, "a"])', contains("any", DYN("e"), [1, 2, "a"])),
    ("not array_contains(tags, 1)", lambda r: 1 not in r["tags"]),
    ("array_length(tags) == 0", lambda r: len(r["tags"]) == 0),
    ("array_length(tags) >= 5", lambda r: len(r["tags"]) >= 5),
    ("array_length(tags) == 8", lambda r: len(r["tags"]) == 8),
    ("array_length(strs) == 2", lambda r: len(r["strs"]) == 2),
    ("array_length(fl) < 2", lambda r: len(r["fl"]) < 2),
    ('array_length(meta["arr"]) == 3', vcmp("==", length(M("arr")), 3)),
    ('array_length(meta["x"]) == 2', vcmp("==", length(M("x")), 2)),
    ("array_length(e) > 0", vcmp(">", length(DYN("e")), 0)),
    ('array_length(meta["s"]) == 0', vcmp("==", length(M("s")), 0)),
    ("tags == [1, 2]", lambda r: r["tags"] == [1, 2]),
    ("tags == []", lambda r: r["tags"] == []),
    ("tags != []", lambda r: r["tags"] != []),
    ('strs == ["a"]', lambda r: r["strs"] == ["a"]),
    ("tags[0] == 3", vcmp("==", ELEM("tags", 0), 3)),
    ("tags[7] > 0", vcmp(">", ELEM("tags", 7), 0)),
    ("tags[1] != 2", vcmp("!=", ELEM("tags", 1), 2)),
    ("tags[4] >= -6", vcmp(">=", ELEM("tags", 4), -6)),
    ('strs[0] == "a"', vcmp("==", ELEM("strs", 0), "a")),
    ('strs[2] != ""', vcmp("!=", ELEM("strs", 2), "")),
    ('strs[1] < "b"', vcmp("<", ELEM("strs", 1), "b")),
    ("fl[0] < 0", vcmp("<", ELEM("fl", 0), 0)),
    ("fl[2] == 1.5", vcmp("==", ELEM("fl", 2), 1.5)),
]:
    case(text, fn)

# exists, is null / is not null
for text, fn in [
    ('exists meta["x"]', lambda r: M("x")(r) is not R.MISSING),
    ('EXISTS meta["x"]', lambda r: M("x")(r) is not R.MISSING),
    ('exists meta["n"]["y"]', lambda r: M("n", "y")(r) is not R.MISSING),
    ('exists meta["null"]', lambda r: M("null")(r) is not R.MISSING),
    ('exists meta["arr"][2]', lambda r: M("arr", 2)(r) is not R.MISSING),
    ("exists d", lambda r: DYN("d")(r) is not R.MISSING),
    ('exists $meta["dn"]["k"]', lambda r: DYN("dn", "k")(r) is not R.MISSING),
    ('not exists meta["arr"]', lambda r: M("arr")(r) is R.MISSING),
    ("exists ghost", lambda r: False),
    ('meta["x"] is null', lambda r: M("x")(r) in (R.MISSING, None)),
    ('meta["x"] is not null', lambda r: M("x")(r) not in (R.MISSING, None)),
    ('meta["null"] IS NULL', lambda r: M("null")(r) in (R.MISSING, None)),
    ('meta["n"]["y"] IS NOT NULL', lambda r: M("n", "y")(r) not in (R.MISSING, None)),
    ("d is null", lambda r: DYN("d")(r) in (R.MISSING, None)),
    ('$meta["dn"]["k"] is not null', lambda r: DYN("dn", "k")(r) not in (R.MISSING, None)),
    ("a is null", lambda r: False),
    ("name is not null", lambda r: True),
    ("tags[1] is null", lambda r: len(r["tags"]) < 2),
    ("strs[0] is not null", lambda r: len(r["strs"]) > 0),
]:
    case(text, fn)

# template values (pymilvus filter_params)
for text, params, fn in [
    ("a in {vals}", {"vals": [1, 2, 3]}, lambda r: r["a"] in (1, 2, 3)),
    ("a not in {vals}", {"vals": [1, 2, 3]}, lambda r: r["a"] not in (1, 2, 3)),
    ("a > {x}", {"x": 2}, lambda r: r["a"] > 2),
    ("b <= {f}", {"f": 0.5}, lambda r: r["b"] <= 0.5),
    ("name == {s}", {"s": "日本語"}, lambda r: r["name"] == "日本語"),
    ("name in {s}", {"s": ["a", "", "100%"]}, lambda r: r["name"] in ("a", "", "100%")),
    ("flag == {t}", {"t": True}, lambda r: r["flag"]),
    ("{lo} < a < {hi}", {"lo": -2, "hi": 3}, lambda r: -2 < r["a"] < 3),
    ("{lo} <= f32 <= {hi}", {"lo": -0.5, "hi": 1.25}, lambda r: -0.5 <= r["f32"] <= 1.25),
    ("big == {v}", {"v": I64_MAX}, lambda r: r["big"] == I64_MAX),
    ('meta["x"] == {v}', {"v": 1}, jcmp("==", M("x"), 1)),
    ('meta["x"] in {v}', {"v": [1, 2]}, isin(M("x"), [1, 2])),
    ("d == {v}", {"v": 1.5}, jcmp("==", DYN("d"), 1.5)),
    ('json_contains_any(meta["arr"], {l})', {"l": [1, 2]}, contains("any", M("arr"), [1, 2])),
    ('json_contains(meta["arr"], {v})', {"v": "a"}, contains("one", M("arr"), "a")),
    ("array_contains(tags, {t})", {"t": 3}, contains("one", F("tags"), 3)),
    ("array_contains_all(strs, {l})", {"l": ["a", "b"]}, contains("all", F("strs"), ["a", "b"])),
    ("pk in {ids}", {"ids": list(range(0, 2010, 7))}, lambda r: r["pk"] % 7 == 0),
    ("a + {k} == {v}", {"k": 1, "v": 3}, lambda r: r["a"] + 1 == 3),
    ("a > {x} and name like 'a%'", {"x": 0}, lambda r: r["a"] > 0 and R.like_match("a%", r["name"])),
]:
    case(text, fn, params)
# a mixed-type list travels as TemplateArrayValue.json_data; pymilvus parses each str element as JSON text,
# so the string "a" is passed as '"a"'
# a mixed-type list travels as JSON text per element (TemplateArrayValue.json_data)
case('meta["x"] in {v}', isin(M("x"), [1, "a", True]), {"v": [1, '"a"', True]})


@pytest.mark.parametrize("expr,fn,params", CASES)
def test_expression(world, expr, fn, params):
    world.check(expr, fn, params)


def test_table_is_broad_and_selective(world):
    """The table is a real test: hundreds of cases, most select some but not all rows."""
    sizes = [len(world.want(c.values[1])) for c in CASES]
    partial = sum(0 < s < len(world.rows) for s in sizes)
    assert len(CASES) >= 300 and partial >= 0.7 * len(CASES), (len(CASES), partial)


def test_rows_are_in_sealed_and_growing_segments(world):
    rows_by_state = {}
    for seg in world.client.list_loaded_segments(COLLECTION):
        sealed = seg.state in (common_pb2.Sealed, common_pb2.Flushed)
        rows_by_state[sealed] = rows_by_state.get(sealed, 0) + seg.num_rows
    assert rows_by_state.get(True, 0) >= 1000 and rows_by_state.get(False, 0) >= 500, rows_by_state


def test_writes_are_visible(world):
    """Sanity of the truth itself: deletes, the delete filter and upserts all took effect."""
    assert world.query_ids("pk in [3, 5, 250, 1300, 1999]") == []
    assert world.query_ids(D.DELETE_FILTER) == [pk for pk in D.UPSERT_IDS if D.delete_filter_matches(pk)] == [13]
    assert world.query_ids("pk >= 2000") == list(range(2000, 2010))
    alive = {pk for pk in range(D.N_ROWS) if pk not in D.DELETE_IDS and not D.delete_filter_matches(pk)}
    assert sorted(world.rows) == sorted(alive | set(D.UPSERT_IDS))
    assert world.count("") == len(world.rows) == 1980
    upserted = world.client.query(COLLECTION, filter="pk in [10, 251, 1600]", output_fields=["a", "name", "meta"])
    assert {r["pk"]: (r["a"], r["name"], r["meta"]) for r in upserted} == {
        pk: (world.rows[pk]["a"], world.rows[pk]["name"], world.rows[pk]["meta"]) for pk in (10, 251, 1600)}


# --- property: random expression trees ------------------------------------------------------------
NUM_TARGETS = st.sampled_from([R.Field("i16"), R.Field("pk"), R.JPath("dn", ("k",), dynamic=True),
                               R.JPath("dn", ("k",), dynamic=True, explicit_meta=True),
                               R.JPath("meta", ("arr", 1)),
                               R.ArrElem("fl", 0), R.ArrLen("strs"), R.ArrLen(R.JPath("e", dynamic=True))])
STR_TARGETS = st.sampled_from([R.JPath("color", dynamic=True), R.JPath("meta", ("deep", "l1", "w")),
                               R.JPath("dn", ("w",), dynamic=True), R.ArrElem("strs", 2)])
BIG_LITERALS = st.sampled_from([0, -1, 3, I64_MAX, I64_MIN + 1, 2**53 + 1, -(2**62)]).map(R.Lit)
extra_leaf = st.one_of(
    st.builds(R.Cmp, P.ops, NUM_TARGETS, P.num_value),
    st.builds(R.Cmp, P.ops, st.just(R.Field("big")), BIG_LITERALS),
    st.builds(R.Cmp, P.ops, STR_TARGETS, P.str_value),
    st.builds(R.Like, STR_TARGETS, P.like_pattern),
    st.builds(R.In, STR_TARGETS, st.lists(st.sampled_from(["red", "blue", "红", "", "a", "apple"]), max_size=3),
              st.booleans(), P.style),
    st.builds(R.Contains, st.sampled_from(["array_contains", "array_contains_any", "json_contains_all"]),
              st.just("fl"), st.lists(P.quarters, min_size=1, max_size=2))
    .map(lambda c: R.Contains(c.func, c.target, c.arg[0]) if c.func == "array_contains" else c),
)
predicate = st.recursive(
    st.one_of(P.leaf_pred, extra_leaf),
    lambda inner: st.one_of(
        st.builds(R.Logic, st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3), P.style),
        st.builds(R.NotP, inner, P.style),
    ),
    max_leaves=6,
)


def _value_nodes(node):
    """Every Arith / Neg node in an expression tree."""
    if isinstance(node, (R.Arith, R.Neg)):
        yield node
    for v in vars(node).values():
        for child in v if isinstance(v, list) else [v]:
            if hasattr(child, "render"):
                yield from _value_nodes(child)


def _representable(v) -> bool:
    if v is R.INVALID or isinstance(v, bool) or not isinstance(v, (int, float)):
        return True
    return I64_MIN <= v <= I64_MAX if isinstance(v, int) else math.isfinite(v)


def _overflows(expr, rows) -> bool:
    """True when some arithmetic in ``expr`` leaves int64 / finite float64 on some row: the reference
    uses unbounded Python ints there, the server int64 (as Milvus) -- a difference of number width,
    not of filter semantics."""
    return any(not _representable(n.ev(r)) for n in _value_nodes(expr) for r in rows)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(expr=predicate)
def test_random_expressions_match_reference(world, expr):
    rows = list(world.rows.values())
    assume(not _overflows(expr, rows))
    text = expr.render()
    want = sorted(r["pk"] for r in rows if expr.ev(r))
    assert world.query_ids(text) == want, text
    assert world.count(text) == len(want), text


# --- errors -----------------------------------------------------------------------------------------
STATIC_ROWS = 5


@pytest.fixture(scope="module")
def static_coll(uri):
    """A small collection without the dynamic field: unknown names are errors there."""
    client = MilvusClient(uri=uri)
    name = COLLECTION + "_static"
    if client.has_collection(name):
        client.drop_collection(name)
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("a", DataType.INT64)
    s.add_field("name", DataType.VARCHAR, max_length=16)
    s.add_field("flag", DataType.BOOL)
    s.add_field("meta", DataType.JSON)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=D.DIM)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    client.load_collection(name)
    client.insert(name, [{"pk": i, "a": i, "name": str(i), "flag": i % 2 == 0, "meta": {"k": i}, "tags": [i],
                          "vec": [float(i)] * D.DIM} for i in range(STATIC_ROWS)])
    yield client, name
    client.drop_collection(name)
    client.close()


ERRORS = [
    # (expression, substrings the message must contain: the offending token and its column)
    ("a > > 3", ["'>'", "column 5"]),
    ("a >= 3 and", ["end of expression"]),
    ("(a > 1", ["end of expression", "')'"]),
    ("a = 1", ["column 3"]),
    ('name == "abc', ["column 9"]),
    ("a > 1 b < 2", ["'b'", "column 7"]),
    ("ghost > 1", ["ghost", "not exist", "column 1"]),
    ('a > 1 and ghost["k"] == 2', ["ghost", "column 11"]),
    ("name > 1", ["name", "column 1"]),
    ("a == \"x\"", ["a", '"x"']),
    ("flag + 1 > 0", ["flag"]),
    ("a like \"x%\"", ["a", "like"]),
    ("array_contains(a, 1)", ["a", "column 16"]),
    ('array_contains(tags, "x")', ['"x"', "tags"]),
    ("exists a", ["exists", "a"]),
    ("a in 1", ["in", "column 6"]),
    ("a / 0 > 1", ["divide by zero"]),
    ("a % 0 == 1", ["modulo by zero"]),
    ("tags > 1", ["tags"]),
    ("a > {missing}", ["missing"]),
    ("nosuchfn(a)", ["nosuchfn"]),
    ("vec > 1", ["vec"]),
    ("flag < true", ["<", "flag"]),
    ('a in [1, "x"]', ['"x"', "a"]),
    ('json_contains(meta["k"])', ["json_contains", "2 arguments"]),
    ('meta["k"] like a', ["pattern", "column 16"]),
    # a bare JSON path is no predicate (Milvus: "... data type: JSON")
    ('not meta["k"]', ['meta["k"] (JSON) is not a boolean expression', "column 5"]),
    ('meta["k"] and flag', ['meta["k"] (JSON)', "column 1"]),
]


@pytest.mark.parametrize("expr,needles", ERRORS, ids=[e for e, _ in ERRORS])
def test_bad_expression_is_invalid_parameter(static_coll, expr, needles):
    client, name = static_coll
    for call in (lambda: client.query(name, filter=expr, output_fields=["pk"]),
                 lambda: client.query(name, filter=expr, output_fields=["count(*)"]),
                 lambda: client.search(name, [[0.0] * D.DIM], filter=expr, limit=3),
                 lambda: client.delete(name, filter=expr)):
        with pytest.raises(MilvusException) as err:
            call()
        assert err.value.code == 1100, err.value
        msg = err.value.message
        assert expr in msg, msg
        for needle in needles:
            assert needle in msg, (needle, msg)
    count = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert count[0]["count(*)"] == STATIC_ROWS  # (no delete went through)


def test_unknown_name_on_dynamic_collection_is_a_dynamic_key(world):
    """With the dynamic field on, an unknown name is a key of ``$meta``: no error, no match."""
    assert world.query_ids("ghost > 1") == []
    assert world.query_ids("ghost != 1") == sorted(world.rows)  # != on a missing JSON key matches

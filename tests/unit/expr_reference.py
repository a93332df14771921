"""Reference semantics for Milvus filter expressions: plain Python, one dict row at a time.

Expressions are small trees (built directly by tests and hypothesis) that
``render()`` to expression text and ``ev(row)`` to the value the row should
get. Nothing here is shared with ``vecdb.expr``: it restates the rules.

Rules restated:
- a JSON path that does not resolve is MISSING (a step is a JSON pointer token: ``["0"]`` and
  ``[0]`` alike read key "0" of an object, element 0 of an array); numbers compare numerically,
  bool only with bool, str only with str, lists element-wise; anything else
  (missing, other type, null) makes the comparison false, except ``!=`` with
  a JSON operand, which is ``not ==`` (against a list: the path must hold an array).
- ``array_length`` of a JSON path without an array (or missing) is 0.
- an ARRAY index out of range, a non-numeric JSON operand of arithmetic, or a
  zero divisor gives INVALID: every comparison on it is false (``!=`` too,
  unless a JSON path is involved, see above).
- int op int stays int: ``/`` truncates toward zero, ``%`` is the C remainder.
- ``not`` / ``not in`` are plain negations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MISSING = object()
INVALID = object()
NUM = (int, float)


# --- scalar helpers ------------------------------------------------------------
def category(v):
    if v is MISSING or v is INVALID or v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, NUM):
        return "num"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    return None


def json_eq(a, b) -> bool:
    ca, cb = category(a), category(b)
    if ca is None or ca != cb:
        return False
    if ca == "list":
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def cmp(op: str, a, b) -> bool:
    if op == "==":
        return json_eq(a, b)
    ca, cb = category(a), category(b)
    if ca is None or ca != cb:
        return False
    if op == "!=":
        return not json_eq(a, b)
    if ca not in ("num", "str"):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def like_match(pattern: str, s: str) -> bool:
    """LIKE by dynamic programming over parsed tokens (no regex)."""
    toks = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_\\":
            toks.append(("lit", pattern[i + 1]))
            i += 2
            continue
        toks.append(("any",) if c == "%" else ("one",) if c == "_" else ("lit", c))
        i += 1
    # dp[j]: tokens[:t] can match s[:j]
    dp = [True] + [False] * len(s)
    for tok in toks:
        new = [False] * (len(s) + 1)
        for j in range(len(s) + 1):
            if tok[0] == "any":
                new[j] = dp[j] or (j > 0 and new[j - 1])
            elif j > 0 and dp[j - 1] and (tok[0] == "one" or s[j - 1] == tok[1]):
                new[j] = True
        dp = new
    return dp[len(s)]


def render_literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(render_literal(x) for x in v) + "]"
    return repr(v)


def walk(v, path):
    """A path step is a JSON pointer token: key ``str(k)`` of an object, element ``int(k)`` of an
    array (where ``k`` is 0 or digits without a leading zero)."""
    for k in path:
        if isinstance(v, dict):
            if str(k) not in v:
                return MISSING
            v = v[str(k)]
        elif isinstance(v, list) and str(k).isdigit() and (str(k) == "0" or str(k)[0] != "0") \
                and int(k) < len(v):
            v = v[int(k)]
        else:
            return MISSING
    return v


# --- value nodes ------------------------------------------------------------------
@dataclass
class Lit:
    value: object
    json = False

    def render(self):
        v = self.value
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            return f"({render_literal(v)})"
        return render_literal(v)

    def ev(self, row):
        return self.value


@dataclass
class Field:
    """A typed scalar field (int, float, bool, str)."""

    name: str
    json = False

    def render(self):
        return self.name

    def ev(self, row):
        return row[self.name]


@dataclass
class JPath:
    """A JSON field with a path; ``dynamic`` means a key of the ``$meta`` dynamic field."""

    name: str
    path: tuple = ()
    dynamic: bool = False
    explicit_meta: bool = False
    json = True

    def render(self):
        keys = "".join(f'["{k}"]' if isinstance(k, str) else f"[{k}]" for k in self.path)
        if self.dynamic and self.explicit_meta:
            return f'$meta["{self.name}"]{keys}'
        return self.name + keys

    def ev(self, row):
        if self.dynamic:
            return walk(row["$meta"], (self.name, *self.path))
        return walk(row[self.name], self.path)


@dataclass
class ArrElem:
    name: str
    index: int
    json = False

    def render(self):
        return f"{self.name}[{self.index}]"

    def ev(self, row):
        arr = row[self.name]
        return arr[self.index] if self.index < len(arr) else INVALID


@dataclass
class ArrLen:
    target: object  # Field-like name str for ARRAY, or JPath
    json = False

    def render(self):
        t = self.target
        return f"array_length({t if isinstance(t, str) else t.render()})"

    def ev(self, row):
        if isinstance(self.target, str):
            v = row[self.target]
            return len(v) if isinstance(v, list) else INVALID
        v = self.target.ev(row)  # a JSON path that holds no array (or is missing) has length 0, as in Milvus
        return len(v) if isinstance(v, list) else 0


@dataclass
class Arith:
    op: str
    left: object
    right: object

    @property
    def json(self):
        return self.left.json or self.right.json

    def render(self):
        return f"({self.left.render()} {self.op} {self.right.render()})"

    def ev(self, row):
        a, b = self.left.ev(row), self.right.ev(row)
        if category(a) != "num" or category(b) != "num":
            return INVALID
        both_int = isinstance(a, int) and isinstance(b, int)
        if self.op in "/%" and b == 0:
            return INVALID
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        if self.op == "/":
            return trunc_div(a, b) if both_int else a / b
        return a - b * trunc_div(a, b) if both_int else math.fmod(a, b)


@dataclass
class Neg:
    operand: object

    @property
    def json(self):
        return self.operand.json

    def render(self):
        return f"-{self.operand.render()}"

    def ev(self, row):
        v = self.operand.ev(row)
        return -v if category(v) == "num" else INVALID


# --- predicates ----------------------------------------------------------------------
@dataclass
class Cmp:
    op: str
    left: object
    right: object

    def render(self):
        return f"{self.left.render()} {self.op} {self.right.render()}"

    def ev(self, row):
        a, b = self.left.ev(row), self.right.ev(row)
        if self.op == "!=" and self.left.json != self.right.json and isinstance(b if self.left.json else a, list):
            # JSON != a list (literal or ARRAY field): the path must hold an array
            return isinstance(a if self.left.json else b, list) and not cmp("==", a, b)
        if self.op == "!=" and (self.left.json or self.right.json):
            return not cmp("==", a, b)
        return cmp(self.op, a, b)


@dataclass
class Range:
    lower: object
    op1: str
    middle: object
    op2: str
    upper: object

    def render(self):
        return f"{self.lower.render()} {self.op1} {self.middle.render()} {self.op2} {self.upper.render()}"

    def ev(self, row):
        m = self.middle.ev(row)
        return cmp(self.op1, self.lower.ev(row), m) and cmp(self.op2, m, self.upper.ev(row))


@dataclass
class In:
    value: object
    items: list
    negate: bool = False
    style: int = 0

    def render(self):
        kw = ("not in", "NOT IN")[self.style % 2] if self.negate else ("in", "IN")[self.style % 2]
        return f"{self.value.render()} {kw} {render_literal(self.items)}"

    def ev(self, row):
        v = self.value.ev(row)
        hit = any(json_eq(v, x) for x in self.items)
        return hit != self.negate


@dataclass
class Like:
    value: object
    pattern: str

    def render(self):
        return f"{self.value.render()} like {render_literal(self.pattern)}"

    def ev(self, row):
        v = self.value.ev(row)
        return isinstance(v, str) and like_match(self.pattern, v)


@dataclass
class Contains:
    func: str  # json_contains, array_contains_all, ...
    target: object  # JPath or ARRAY field name
    arg: object

    def render(self):
        t = self.target if isinstance(self.target, str) else self.target.render()
        return f"{self.func}({t}, {render_literal(self.arg)})"

    def ev(self, row):
        v = row[self.target] if isinstance(self.target, str) else self.target.ev(row)
        if not isinstance(v, list):
            return False
        has = lambda x: any(json_eq(e, x) for e in v)  # noqa: E731
        if self.func.endswith("_all"):
            return all(has(x) for x in self.arg)
        if self.func.endswith("_any"):
            return any(has(x) for x in self.arg)
        return has(self.arg)


@dataclass
class Exists:
    target: JPath

    def render(self):
        return f"exists {self.target.render()}"

    def ev(self, row):
        return self.target.ev(row) is not MISSING


@dataclass
class IsNull:
    target: object
    negate: bool = False

    def render(self):
        return f"{self.target.render()} is {'not ' if self.negate else ''}null"

    def ev(self, row):
        v = self.target.ev(row)
        return (v is MISSING or v is None or v is INVALID) != self.negate


@dataclass
class Truth:
    """A bare bool field used as a predicate (== true)."""

    value: object

    def render(self):
        return self.value.render()

    def ev(self, row):
        return self.value.ev(row) is True


@dataclass
class Const:
    value: bool

    def render(self):
        return "true" if self.value else "false"

    def ev(self, row):
        return self.value


@dataclass
class Logic:
    op: str  # and / or
    children: list = field(default_factory=list)
    style: int = 0

    def render(self):
        word = {"and": ("and", "&&", "AND"), "or": ("or", "||", "OR")}[self.op][self.style % 3]
        return "(" + f" {word} ".join(c.render() for c in self.children) + ")"

    def ev(self, row):
        vals = [c.ev(row) for c in self.children]
        return all(vals) if self.op == "and" else any(vals)


@dataclass
class NotP:
    child: object
    style: int = 0

    def render(self):
        return ("not ", "!", "NOT ")[self.style % 3] + "(" + self.child.render() + ")"

    def ev(self, row):
        return not self.child.ev(row)


# --- the fixed test schema and its columns ------------------------------------------
def make_schema(dynamic: bool = True):
    from vecdb.schema import CollectionSchema, DataType, FieldSchema

    fields = [
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("a", DataType.INT64),
        FieldSchema("small", DataType.INT8),
        FieldSchema("i32", DataType.INT32),
        FieldSchema("b", DataType.DOUBLE),
        FieldSchema("f32", DataType.FLOAT),
        FieldSchema("flag", DataType.BOOL),
        FieldSchema("name", DataType.VARCHAR, max_length=64),
        FieldSchema("meta", DataType.JSON),
        FieldSchema("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8),
        FieldSchema("strs", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=16),
        FieldSchema("fl", DataType.ARRAY, element_type=DataType.FLOAT, max_capacity=8),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=2),
    ]
    if dynamic:
        fields.append(FieldSchema("$meta", DataType.JSON, is_dynamic=True))
    return CollectionSchema("c", fields, enable_dynamic_field=dynamic)


_DTYPES = {"id": "int64", "a": "int64", "small": "int8", "i32": "int32", "b": "float64",
           "f32": "float32", "flag": "bool"}
_ARRAYS = {"tags": "int64", "strs": object, "fl": "float32"}


def rows_to_columns(rows: list[dict]) -> dict:
    """Dict rows -> numpy columns in vecdb's column representation (see vecdb/schema.py)."""
    import numpy as np

    n = len(rows)
    cols = {}
    for name, dt in _DTYPES.items():
        cols[name] = np.array([r.get(name, 0) for r in rows], dtype=dt).reshape(n)
    for name in ("name", "meta", "$meta"):
        col = np.empty(n, dtype=object)
        for i, r in enumerate(rows):
            col[i] = r.get(name, {} if name != "name" else "")
        cols[name] = col
    for name, dt in _ARRAYS.items():
        col = np.empty(n, dtype=object)
        for i, r in enumerate(rows):
            col[i] = np.array(r.get(name, []), dtype=dt)
        cols[name] = col
    cols["vec"] = np.zeros((n, 2), dtype=np.float32)
    return cols

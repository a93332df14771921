"""Filter evaluation throughput on synthetic columns: ``python -m bench.filter_throughput [rows]``.

Prints the best of three evaluations per expression (compile time excluded;
compiled filters are cached anyway), scanning, and again with the indexes a sealed
segment keeps when the fields have scalar indexes (a sorted column, a JSON path index
of each type on ``meta["x"]`` and ``meta["y"]``, an ARRAY index on ``tags``), with the
time each index takes to build.
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from vecdb.expr import compile_filter, rowdata
from vecdb.index.array_elements import ArrayElementsIndex
from vecdb.index.json_path import JsonPathIndex, typed_values
from vecdb.index.scalar import SortedIndex
from vecdb.schema import CollectionSchema, DataType, FieldSchema

EXPRESSIONS = [
    "a > 5 and b < 3.5",
    'name like "ab%"',
    'meta["x"] > 3',
    'name like "%ab"',
    'name like "a_b%"',
    'name in ["abc", "abd"]',
    'meta["x"] in [1, 2, 3]',
    'meta["y"] == "s"',
    'meta["x"] == 7',
    "array_contains_any(tags, [3, 4])",
    "a % 3 == 0 and a + 2 > b",
    "array_contains(tags, 3)",
    "tags[0] == 1",
    "array_length(tags) == 2",
]


def make_data(n: int):
    schema = CollectionSchema("bench", [
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("a", DataType.INT64),
        FieldSchema("b", DataType.DOUBLE),
        FieldSchema("name", DataType.VARCHAR, max_length=32),
        FieldSchema("meta", DataType.JSON),
        FieldSchema("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=2),
    ])
    rng = np.random.default_rng(0)
    r = random.Random(0)
    name = np.empty(n, dtype=object)
    name[:] = ["".join(r.choice("abcd") for _ in range(r.randint(3, 12))) for _ in range(n)]
    meta = np.empty(n, dtype=object)
    meta[:] = [{"x": r.randint(0, 10), "y": "s"} if r.random() < 0.9 else {"y": 1.5} for _ in range(n)]
    tags = np.empty(n, dtype=object)
    tags[:] = [rng.integers(0, 10, r.randint(0, 5)) for _ in range(n)]
    cols = {"a": rng.integers(0, 10, n), "b": rng.random(n) * 10, "name": name, "meta": meta, "tags": tags}
    return schema, cols


class Indexed(dict):
    """The columns with the indexes a sealed segment offers the filter (vecdb.querynode.executor)."""

    def __init__(self, cols: dict, n: int):
        super().__init__(cols)
        self.built: dict[object, tuple[object, float]] = {}
        for key, make in [
            ("a", lambda: SortedIndex(cols["a"])), ("name", lambda: SortedIndex(cols["name"])),
            *[(("meta", (k,), cat), lambda k=k, cat=cat: JsonPathIndex(*typed_values(cols["meta"], (k,), cat), cat))
              for k, cat in (("x", "num"), ("y", "str"))],
            ("tags[]", lambda: ArrayElementsIndex(rowdata.flatten(cols["tags"], np.fromiter(
                map(len, cols["tags"]), np.int64, n)), n)),
        ]:
            t0 = time.perf_counter()
            self.built[key] = (make(), time.perf_counter() - t0)

    def scalar_index(self, name):
        return self.built.get(name, (None,))[0]

    def json_index(self, key):
        return self.built.get(key, (None,))[0]

    def array_index(self, name):
        return self.built.get(name + "[]", (None,))[0]


def _best(flt, cols, n: int) -> tuple[float, int]:
    best, mask = float("inf"), None
    for _ in range(3):
        t0 = time.perf_counter()
        mask = flt.evaluate(cols, n)
        best = min(best, time.perf_counter() - t0)
    return best, int(mask.sum())


def main(n: int = 1_000_000) -> None:
    schema, cols = make_data(n)
    indexed = Indexed(cols, n)
    print(f"{n:,} rows; index builds: " + ", ".join(f"{k if isinstance(k, str) else k[0] + str(list(k[1]))} "
                                                     f"{t:.2f} s" for k, (_, t) in indexed.built.items()))
    print(f"{'':32s} {'scan':>8s} {'M rows/s':>10s} {'indexed':>10s}")
    for expr in EXPRESSIONS:
        flt = compile_filter(expr, schema)
        scan, matches = _best(flt, cols, n)
        with_index, same = _best(flt, indexed, n)
        assert same == matches, expr
        print(f"{expr:32s} {scan * 1e3:6.1f} ms {n / scan / 1e6:8.1f}   {with_index * 1e3:7.2f} ms  matches={matches}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)

"""Filter evaluation throughput on synthetic columns: ``python -m bench.filter_throughput [rows]``.

Prints the best of three evaluations per expression (compile time excluded;
compiled filters are cached anyway).
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from vecdb.expr import compile_filter
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


def main(n: int = 1_000_000) -> None:
    schema, cols = make_data(n)
    print(f"{n:,} rows")
    for expr in EXPRESSIONS:
        flt = compile_filter(expr, schema)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            mask = flt.evaluate(cols, n)
            best = min(best, time.perf_counter() - t0)
        print(f"{expr:32s} {best * 1e3:8.1f} ms {n / best / 1e6:9.1f} M rows/s  matches={int(mask.sum())}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)

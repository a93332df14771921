"""``like`` with and without an NGRAM index: ``python -m bench.ngram_like [rows] [min_gram] [max_gram]``.

Rows of random words (1 to 4 words of 3 to 8 lowercase letters); for each pattern, the best of
five evaluations of the compiled filter over a sealed segment's columns scanning, then reading the
segment's NGRAM index (vecdb.index.ngram: candidates from the posting lists, checked exactly). Also
the index's build time and bytes per row. Results are checked equal.
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from vecdb.expr import compile_filter
from vecdb.index.ngram import NgramIndex
from vecdb.schema import CollectionSchema, DataType, FieldSchema

PATTERNS = ["%abc%", "abc%", "%abc", "%abcd%", "%ab%cd%", "%a_c%", "%xyzzy%", "%ab%", "a%"]


class _Columns(dict):
    """A sealed segment's columns with its NGRAM index (as vecdb.querynode.executor offers them)."""

    def __init__(self, cols, index):
        super().__init__(cols)
        self._index = index

    def ngram_index(self, key):
        return self._index if key == ("s", ()) else None


def words(n: int, seed: int = 0) -> np.ndarray:
    r = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = np.empty(n, dtype=object)
    out[:] = [" ".join("".join(r.choice(letters) for _ in range(r.randint(3, 8))) for _ in range(r.randint(1, 4)))
              for _ in range(n)]
    return out


def _best(fn, reps: int = 5) -> tuple[float, np.ndarray]:
    best, res = float("inf"), None
    for _ in range(reps):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def main(n: int = 100_000, min_gram: int = 2, max_gram: int = 3) -> None:
    schema = CollectionSchema("bench", [FieldSchema("id", DataType.INT64, is_primary=True),
                                        FieldSchema("s", DataType.VARCHAR, max_length=64),
                                        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=2)])
    cols = {"s": words(n)}
    t = time.perf_counter()
    index = NgramIndex(cols["s"], min_gram, max_gram)
    build = time.perf_counter() - t
    chars = sum(map(len, cols["s"]))
    print(f"{n:,} rows, {chars / n:.1f} characters a row; NGRAM min_gram={min_gram} max_gram={max_gram}: "
          f"built in {build * 1e3:.0f} ms, {index.nbytes / n:.0f} bytes a row")
    print(f"{'filter':<26}{'scan':>10}{'index':>10}{'speed-up':>10}  matches")
    indexed = _Columns(cols, index)
    for pattern in PATTERNS:
        flt = compile_filter(f"s like '{pattern}'", schema)
        scan, want = _best(lambda f=flt: f.evaluate(cols, n))
        fast, got = _best(lambda f=flt: f.evaluate(indexed, n))
        assert np.array_equal(want, got), pattern
        used = "" if index.candidates(flt._root.matcher.literals) is not None else "  (scans: too broad or short)"
        print(f"s like '{pattern}'".ljust(26) + f"{scan * 1e3:8.2f}ms{fast * 1e3:8.2f}ms{scan / fast:9.1f}x"
              f"  {int(want.sum())}{used}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))

"""The delete fast path (``pk in [...]`` / ``pk == v``) reads plain keys without ``ast.literal_eval``,
which is not thread-safe in CPython 3.11 (concurrent deletes failed with "AST constructor recursion
depth mismatch", code 65535); what is not plain goes to the expression compiler (None)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from vecdb.proxy.rpc_dml import DmlRpcs
from vecdb.schema import DataType


def _keys(expr: str, dtype=DataType.INT64):
    info = SimpleNamespace(schema=SimpleNamespace(primary_field=SimpleNamespace(name="id", dtype=dtype)))
    out = DmlRpcs._pks_from_expr(None, info, expr)  # type: ignore[arg-type]
    return None if out is None else out.tolist()


@pytest.mark.parametrize("expr, keys", [
    ("id in [1, 2, 2, -3]", [1, 2, 2, -3]), ("id == 5", [5]), ("(id in [1,])", [1]), ("id in []", []),
    ("id == 9223372036854775807", [9223372036854775807]),
    ("id == 010", None), ("id in [010]", None), ("id in [1_000]", None), ("id in ['a']", None),  # compiler's
])
def test_int64_keys(expr, keys):
    assert _keys(expr) == keys


@pytest.mark.parametrize("expr, keys", [
    ("id in ['a,]', \"b\", '']", ["a,]", "b", ""]), ('id == "x y"', ["x y"]),
    ("id in [1]", None), ('id == "a\\"b"', None),
])
def test_varchar_keys(expr, keys):
    assert _keys(expr, DataType.VARCHAR) == keys


def test_many_threads_read_long_lists():
    expr = "id in [" + ",".join(map(str, range(2000))) + "]"
    errors: list[BaseException] = []

    def run():
        try:
            for _ in range(100):
                assert _keys(expr) == list(range(2000))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

"""vecdb.proxy.order_by: parsing the search param, and each query's hits re-sorted stably (nulls first)
against a plain-Python reference on random hits."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.proxy.order_by import order_fields, order_group_rows, order_rows, parse_order_by
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key


def _schema():
    return CollectionSchema("c", [
        FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("p", DataType.INT64),
        FieldSchema("r", DataType.FLOAT, nullable=True), FieldSchema("s", DataType.VARCHAR),
        FieldSchema("b", DataType.BOOL), FieldSchema("j", DataType.JSON),
        FieldSchema("a", DataType.ARRAY, element_type=DataType.INT64),
    ])


def test_parse():
    s = _schema()
    assert parse_order_by(s, "") == ()
    assert parse_order_by(s, "p:desc, s:ASC,b") == (("p", False), ("s", True), ("b", True))
    assert order_fields(s, parse_order_by(s, "r:descending")) == ["r", valid_key("r")]
    for raw, message in [(":asc", "empty field name"), ("p:up", "invalid order direction 'up'"),
                         ("x", "order_by field 'x' does not exist"), ("j", "not supported for JSON field 'j'"),
                         ("a", "order_by field 'a' has unsortable type Array")]:
        with pytest.raises(InvalidParameter, match=message):
            parse_order_by(s, raw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_rows_equals_reference(seed):
    rng = np.random.default_rng(seed)
    topks = rng.integers(0, 12, 5).tolist()
    n = sum(topks)
    cols = {"p": rng.integers(-3, 3, n).astype(np.int64), "r": np.round(rng.random(n), 1).astype(np.float32),
            valid_key("r"): rng.random(n) < 0.7, "s": np.array([f"w{x}" for x in rng.integers(0, 3, n)], object),
            "b": rng.random(n) < 0.5}
    for order in [(("p", True),), (("p", False), ("s", True)), (("r", False),), (("b", True), ("r", True)),
                  (("s", False), ("p", False))]:
        rows = order_rows(topks, cols, order).tolist()
        start = 0
        for k in topks:
            pos = list(range(start, start + k))
            for name, asc in reversed(order):
                if name == "r":
                    nulls = [p for p in pos if not cols[valid_key("r")][p]]
                    rest = sorted((p for p in pos if cols[valid_key("r")][p]), key=lambda p: cols["r"][p],
                                  reverse=not asc)
                    pos = nulls + rest
                else:
                    pos = sorted(pos, key=lambda p: cols[name][p], reverse=not asc)
            assert rows[start:start + k] == pos, (order, k)
            start += k


def test_order_group_rows():
    # two queries: groups a,a | b | c,c  and  x | y,y
    topks = [5, 3]
    gv = np.array(["a", "a", "b", "c", "c", "x", "y", "y"], object)
    price = np.array([1, 9, 5, 7, 0, 2, 3, 8])
    rows = order_group_rows(topks, gv, {"p": price}, (("p", False),)).tolist()
    assert rows == [3, 4, 2, 0, 1, 6, 7, 5]  # c (7), b (5), a (1); then y (3), x (2)
    assert order_group_rows([0], np.empty(0, object), {"p": np.empty(0)}, (("p", True),)).tolist() == []


def test_varchar_ending_in_nul_sorts_after_its_prefix():
    """"x" < "x\\x00" < "x\\x00\\x00" < "x\\x01", as Milvus orders VARCHAR (NumPy's str would tie the first three)."""
    s = np.array(["x\x01", "x\x00", "x", "x\x00\x00", "w", "x"], object)
    cols = {"s": s, "p": np.arange(6, dtype=np.int64)}
    assert s[order_rows([6], cols, (("s", True),))].tolist() == ["w", "x", "x", "x\x00", "x\x00\x00", "x\x01"]
    assert order_rows([6], cols, (("s", False), ("p", True))).tolist() == [0, 3, 1, 2, 5, 4]
    groups = order_group_rows([6], s, cols, (("s", True),))
    assert s[groups].tolist() == ["w", "x", "x", "x\x00", "x\x00\x00", "x\x01"]

"""vecdb.proxy.query_aggregation without a server: parsing and refusals, every aggregate against a
plain-Python reference (nulls, empty groups, types), group and row ordering, and the reply as
pymilvus 3.0 decodes it."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.client.entity_helper import extract_row_data_from_fields_data_v2

from vecdb import errors
from vecdb.proxy.query_aggregation import (
    NONE,
    aggregate_rows,
    fetched_columns,
    order_query_rows,
    parse_aggregate,
    plan_query,
    sort_keys,
)
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.timestamptz import UTC_OUTPUT


def _schema() -> CollectionSchema:
    return CollectionSchema(name="c", fields=[
        FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
        FieldSchema("vec", DataType.FLOAT_VECTOR, field_id=101, dim=2),
        FieldSchema("cat", DataType.VARCHAR, field_id=102, max_length=8),
        FieldSchema("g", DataType.INT8, field_id=103, nullable=True),
        FieldSchema("n", DataType.INT32, field_id=104, nullable=True),
        FieldSchema("x", DataType.FLOAT, field_id=105),
        FieldSchema("d", DataType.DOUBLE, field_id=106, nullable=True),
        FieldSchema("ts", DataType.TIMESTAMPTZ, field_id=107),
        FieldSchema("b", DataType.BOOL, field_id=108),
        FieldSchema("j", DataType.JSON, field_id=109),
        FieldSchema("arr", DataType.ARRAY, field_id=110, element_type=DataType.INT64, max_capacity=4),
        FieldSchema("tag", DataType.VARCHAR, field_id=111, max_length=8, nullable=True),
    ])


def _rows(result) -> list[dict]:
    n = 0
    for fd in result.fields_data:
        n = max(n, len(fd.valid_data) or len(getattr(fd.scalars, fd.scalars.WhichOneof("data")).data))
    rows: list[dict] = [{} for _ in range(n)]
    for fd in result.fields_data:
        extract_row_data_from_fields_data_v2(fd, rows)
    return rows


def _data(n=500, seed=3):
    rng = np.random.default_rng(seed)
    cols = {
        "id": rng.permutation(n).astype(np.int64),
        "cat": np.array([f"c{v}" for v in rng.integers(0, 6, n)], dtype=object),
        "g": rng.integers(-3, 3, n).astype(np.int8),
        "n": rng.integers(-1000, 1000, n).astype(np.int32),
        "x": (rng.integers(0, 100, n) / 8).astype(np.float32),
        "d": rng.random(n),
        "ts": rng.integers(0, 10**12, n).astype(np.int64),
        "b": rng.random(n) < 0.5,
    }
    for k in ("g", "n", "d"):
        cols[valid_key(k)] = rng.random(n) >= 0.2
    return cols


def _py(cols, name, i):
    mask = cols.get(valid_key(name))
    if mask is not None and not mask[i]:
        return None
    v = cols[name][i]
    return v.item() if isinstance(v, np.generic) else v


def _reference(cols, keys, aggs):
    n = len(cols["id"])
    groups: dict = {}
    for i in range(n):
        groups.setdefault(tuple(_py(cols, k, i) for k in keys), []).append(i)
    out = {}
    for key, idx in groups.items():
        res = {}
        for text, op, field in aggs:
            if field == "*":
                res[text] = len(idx)
                continue
            vals = [v for v in (_py(cols, field, i) for i in idx) if v is not None]
            if op == "count":
                res[text] = len(vals)
            elif not vals:
                res[text] = None
            else:
                res[text] = {"sum": sum, "min": min, "max": max, "avg": lambda v: sum(v) / len(v)}[op](vals)
        out[key] = res
    return out


def test_parse_aggregate_names_types_and_refusals():
    s = _schema()
    assert parse_aggregate(s, "cat") is None and parse_aggregate(s, "count(n") is None
    assert parse_aggregate(s, " COUNT ( * ) ").key == ("count", "*")
    a = parse_aggregate(s, "Max(cat)")
    assert (a.name, a.op, a.field.name) == ("Max(cat)", "max", "cat")
    for text, msg in [("sum(cat)", "aggregation operator sum does not support data type VarChar"),
                      ("avg(ts)", "aggregation operator avg does not support data type Timestamptz"),
                      ("min(b)", "aggregation operator min does not support data type Bool"),
                      ("max(j)", "does not support data type JSON"), ("sum(*)", "does not support '*'"),
                      ("count()", "names no field")]:
        with pytest.raises(errors.InvalidParameter, match=msg.replace("(", r"\(").replace("*", r"\*")):
            parse_aggregate(s, text)
    with pytest.raises(errors.FieldNotFound):
        parse_aggregate(s, "sum(zz)")
    assert parse_aggregate(s, "count(vec)").field.name == "vec"  # count takes any field


def test_plan_query_shapes_and_refusals():
    s = _schema()
    assert plan_query(s, ["id", "cat"], {}) is NONE
    assert plan_query(s, ["count(*)"], {}) is NONE  # the plain count
    assert plan_query(s, ["count(*)"], {"order_by_fields": "count(*):desc"}) is NONE
    shape = plan_query(s, ["cat", "count(*)", "sum(n)", "count(*)"], {"group_by_fields": "cat, g",
                                                                       "order_by_fields": "avg(d):desc,cat"})
    assert shape.grouped and [f.name for f in shape.group_by] == ["cat", "g"]
    assert shape.outputs == ("cat", "count(*)", "sum(n)")
    assert [a.key for a in shape.aggregates] == [("count", "*"), ("sum", "n"), ("avg", "d")]
    assert shape.order == (("$order.0", False), ("cat", True))
    assert fetched_columns(s, shape) == ["cat", "g", valid_key("g"), "n", valid_key("n"), "d", valid_key("d")]
    assert plan_query(s, ["id"], {"order_by_fields": "x:desc,cat:asc"}).order == (("x", False), ("cat", True))
    refusals = [
        (["cat", "count(*)"], {"group_by_fields": "x"}, "group by field x has unsupported data type Float"),
        (["count(*)"], {"group_by_fields": "arr"}, "group by field arr has unsupported data type Array"),
        (["count(*)"], {"group_by_fields": "vec"}, "unsupported data type FloatVector"),
        (["count(*)"], {"group_by_fields": "zz"}, "group by field zz does not exist"),
        (["cat", "n", "count(*)"], {"group_by_fields": "cat"}, "output field 'n' is not allowed"),
        (["*"], {"group_by_fields": "cat"}, "output field '\\*' is not allowed"),
        (["n", "sum(n)"], {}, "output field 'n' is not allowed"),
        (["cat"], {"group_by_fields": "cat", "order_by_fields": "n:asc"}, "must be a group_by field"),
        (["cat"], {"group_by_fields": "cat", "order_by_fields": "cat:up"}, "invalid order direction 'up'"),
        (["id"], {"order_by_fields": "vec:asc"}, "order_by field 'vec' has unsortable type"),
        (["id"], {"order_by_fields": "j"}, "JSON field 'j'"),
    ]
    for requested, params, msg in refusals:
        with pytest.raises(errors.InvalidParameter, match=msg):
            plan_query(s, requested, params)
    with pytest.raises(errors.InvalidParameter, match="query iterator"):
        plan_query(s, ["id"], {"order_by_fields": "n:asc"}, iterator=True)
    with pytest.raises(errors.InvalidParameter, match="query iterator"):
        plan_query(s, ["cat"], {"group_by_fields": "cat"}, iterator=True)


AGGS = [("count(*)", "count", "*"), ("count(n)", "count", "n"), ("sum(n)", "sum", "n"), ("avg(n)", "avg", "n"),
        ("min(n)", "min", "n"), ("max(n)", "max", "n"), ("sum(x)", "sum", "x"), ("avg(d)", "avg", "d"),
        ("min(cat)", "min", "cat"), ("max(cat)", "max", "cat"), ("max(g)", "max", "g"), ("min(ts)", "min", "ts"),
        ("count(d)", "count", "d")]


@pytest.mark.parametrize("keys", [[], ["cat"], ["g"], ["cat", "g"], ["b", "g"]])
def test_aggregates_equal_reference(keys):
    s = _schema()
    cols = _data()
    requested = keys + [a[0] for a in AGGS if a[0] != "min(ts)"]
    shape = plan_query(s, requested, {"group_by_fields": ",".join(keys)})
    got = _rows(aggregate_rows(s, shape, cols, None, 0, "c"))
    want = _reference(cols, keys, [a for a in AGGS if a[0] != "min(ts)"])
    assert len(got) == len(want)
    for row in got:
        exp = want[tuple(row[k] for k in keys)]
        for name, v in exp.items():
            if isinstance(v, float):
                assert row[name] == pytest.approx(v, rel=1e-9), name
            else:
                assert row[name] == v and type(row[name]) is type(v), (name, row[name], v)


def test_reply_types_timestamps_and_empty():
    s = _schema()
    cols = _data(50)
    shape = plan_query(s, ["g", "min(ts)", "max(x)", "sum(n)", "avg(n)", "count(*)"], {"group_by_fields": "g"})
    reply = aggregate_rows(s, shape, cols, None, 0, "c", UTC_OUTPUT)
    types = {fd.field_name: fd.type for fd in reply.fields_data}
    assert types == {"g": DataType.INT8, "min(ts)": DataType.TIMESTAMPTZ, "max(x)": DataType.FLOAT,
                     "sum(n)": DataType.INT64, "avg(n)": DataType.DOUBLE, "count(*)": DataType.INT64}
    assert list(reply.output_fields) == ["g", "min(ts)", "max(x)", "sum(n)", "avg(n)", "count(*)"]
    assert any(r["g"] is None for r in _rows(reply))  # the null group
    empty = {k: v[:0] for k, v in cols.items()}
    glob = plan_query(s, ["count(*)", "sum(n)", "min(cat)", "avg(d)"], {})
    assert _rows(aggregate_rows(s, glob, empty, None, 0, "c")) == [
        {"count(*)": 0, "sum(n)": None, "min(cat)": None, "avg(d)": None}]
    grouped = plan_query(s, ["cat", "count(*)"], {"group_by_fields": "cat"})
    assert len(aggregate_rows(s, grouped, empty, None, 0, "c").fields_data[0].scalars.string_data.data) == 0


def test_group_order_limit_offset():
    s = _schema()
    cols = _data()
    shape = plan_query(s, ["cat", "count(*)"], {"group_by_fields": "cat", "order_by_fields": "count(*):desc,cat"})
    got = _rows(aggregate_rows(s, shape, cols, 3, 1, "c"))
    want = _reference(cols, ["cat"], [("count(*)", "count", "*")])
    ranked = sorted(want, key=lambda k: (-want[k]["count(*)"], k[0]))[1:4]
    assert [r["cat"] for r in got] == [k[0] for k in ranked]
    # without an order: by the group key, nulls first
    plain = _rows(aggregate_rows(s, plan_query(s, ["g"], {"group_by_fields": "g"}), cols, None, 0, "c"))
    assert [r["g"] for r in plain] == [None, -3, -2, -1, 0, 1, 2]


def test_order_query_rows_nulls_and_ties():
    s = _schema()
    cols = _data(200)
    for order in [(("n", True),), (("n", False),), (("b", False), ("d", True)), (("cat", True), ("x", False))]:
        got = order_query_rows(s, dict(cols), order, 20, 7)["id"].tolist()
        idx = sorted(range(200), key=lambda i: cols["id"][i])
        for name, asc in reversed(order):
            present = [i for i in idx if _py(cols, name, i) is not None]
            nulls = [i for i in idx if _py(cols, name, i) is None]
            present.sort(key=lambda i: _py(cols, name, i), reverse=not asc)
            idx = present + nulls if asc else nulls + present
        assert got == [int(cols["id"][i]) for i in idx[7:27]], order


def test_nullable_varchar_group_key_with_none_placeholders():
    s = _schema()
    cols = {"tag": np.array(["x", None, "y", "x", None], dtype=object),
            valid_key("tag"): np.array([True, False, True, True, False]), "n": np.arange(5, dtype=np.int32),
            valid_key("n"): np.ones(5, bool)}
    shape = plan_query(s, ["tag", "sum(n)", "max(tag)"], {"group_by_fields": "tag", "order_by_fields": "tag:desc"})
    got = _rows(aggregate_rows(s, shape, cols, None, 0, "c"))
    assert got == [{"tag": None, "sum(n)": 5, "max(tag)": None}, {"tag": "y", "sum(n)": 2, "max(tag)": "y"},
                   {"tag": "x", "sum(n)": 3, "max(tag)": "x"}]
    ordered = order_query_rows(s, {**cols, "id": np.array([5, 4, 3, 2, 1])}, (("tag", True),), None, 0)
    assert ordered["id"].tolist() == [2, 5, 3, 1, 4]


def test_sort_keys_without_order_keeps_positions():
    assert sort_keys({}, {}, 4, ()).tolist() == [0, 1, 2, 3]


def test_large_int64_sums_and_averages_do_not_wrap():
    """An average of large INT64 values is computed in float64 (never a wrapped, negative mean); a sum
    that leaves the int64 range is refused rather than wrapped."""
    s = CollectionSchema(name="c", fields=[FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                           FieldSchema("vec", DataType.FLOAT_VECTOR, field_id=101, dim=2),
                                           FieldSchema("big", DataType.INT64, field_id=102),
                                           FieldSchema("g", DataType.INT8, field_id=103)])
    cols = {"id": np.arange(20, dtype=np.int64), "big": np.full(20, 2**62, np.int64),
            "g": (np.arange(20) % 2).astype(np.int8)}
    shape = plan_query(s, ["g", "avg(big)"], {"group_by_fields": "g"})
    rows = _rows(aggregate_rows(s, shape, cols, None, 0, "c"))
    assert [r["avg(big)"] for r in rows] == [float(2**62)] * 2
    with pytest.raises(errors.InvalidParameter, match="overflows int64"):
        aggregate_rows(s, plan_query(s, ["sum(big)"], {}), cols, None, 0, "c")
    two = {k: v[:1] for k, v in cols.items()}
    assert _rows(aggregate_rows(s, plan_query(s, ["sum(big)"], {}), two, None, 0, "c")) == [{"sum(big)": 2**62}]

"""vecdb.proxy.field_ops: ARRAY_APPEND / ARRAY_REMOVE over current arrays, against a plain-Python
reference on random rows, and the checks of the request's ops."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb.errors import InvalidParameter
from vecdb.proxy.field_ops import APPEND, REMOVE, apply_field_ops, parse_field_ops
from vecdb.schema import CollectionSchema, DataType, FieldSchema

OP = schema_pb2.FieldPartialUpdateOp


def _schema(cap=64):
    return CollectionSchema("c", [
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("t", DataType.ARRAY, element_type=DataType.INT64, max_capacity=cap),
        FieldSchema("w", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=cap),
        FieldSchema("n", DataType.INT64),
        FieldSchema("z", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4, nullable=True),
    ])


def _col(rows, dtype):
    out = np.empty(len(rows), object)
    out[:] = [np.array(r, dtype=dtype) for r in rows]
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_apply_equals_reference(seed):
    rng = np.random.default_rng(seed)
    n = 200
    base_t = [rng.integers(0, 5, rng.integers(0, 8)).tolist() for _ in range(n)]
    sent_t = [rng.integers(0, 5, rng.integers(0, 4)).tolist() for _ in range(n)]
    base_w = [[str(x) for x in r] for r in base_t]
    sent_w = [[str(x) for x in r] for r in sent_t]
    exists = rng.random(n) < 0.8
    cols = {"t": _col(sent_t, np.int64), "w": _col(sent_w, object)}
    apply_field_ops(_schema(), {"t": APPEND, "w": REMOVE}, cols,
                    {"t": _col(base_t, np.int64), "w": _col(base_w, object)}, exists)
    for i in range(n):
        want_t = base_t[i] + sent_t[i] if exists[i] else sent_t[i]
        want_w = [x for x in base_w[i] if x not in sent_w[i]] if exists[i] else []
        assert cols["t"][i].tolist() == want_t
        assert cols["w"][i].tolist() == want_w


def test_append_past_capacity_refused():
    cols = {"t": _col([[1, 2], [3]], np.int64)}
    with pytest.raises(InvalidParameter, match=r"\(4\) of the array field \(t\) after ARRAY_APPEND exceeds max "
                                               r"capacity \(3\) at row 0"):
        apply_field_ops(_schema(3), {"t": APPEND}, cols, {"t": _col([[1, 2], []], np.int64)}, np.array([True, True]))


def _request(ops, sent=("id", "t")):
    req = milvus_pb2.UpsertRequest(collection_name="c")
    for name in sent:
        req.fields_data.add(field_name=name)
    for name, op in ops:
        req.field_ops.add(field_name=name, op=op)
    return req


def test_parse_field_ops():
    s = _schema()
    assert parse_field_ops(s, _request([("t", OP.ARRAY_APPEND), ("n", OP.REPLACE)])) == {"t": APPEND}
    for ops, sent, message in [
        ([("", OP.ARRAY_APPEND)], ("id", "t"), "field_name is required"),
        ([("t", OP.ARRAY_APPEND), ("t", OP.ARRAY_REMOVE)], ("id", "t"), "duplicate op for field 't'"),
        ([("x", OP.ARRAY_APPEND)], ("id", "t"), "field 'x' not found"),
        ([("n", OP.ARRAY_REMOVE)], ("id", "n"), 'op ARRAY_REMOVE requires Array field, but field "n" is Int64'),
        ([("w", OP.ARRAY_APPEND)], ("id", "t"), "does not send the field"),
        ([("z", OP.ARRAY_APPEND)], ("id", "z"), "nullable Array field"),
        ([("t", 7)], ("id", "t"), "unsupported partial update op 7"),
    ]:
        with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_field_ops(s, _request(ops, sent))

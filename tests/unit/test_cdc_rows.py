"""vecdb.cdc.target.rows_of: an insert record's columns (vecdb.schema's representation) become the
rows pymilvus upserts on the target, every type as pymilvus takes it; target_schema copies the
schema with auto_id off."""

from __future__ import annotations

import numpy as np

from vecdb.cdc.target import rows_of, target_schema
from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, DataType, FieldSchema, valid_key


def test_rows_of_every_type():
    fields = [FieldSchema("id", DataType.INT64, 100, is_primary=True, auto_id=True),
              FieldSchema("f", DataType.FLOAT_VECTOR, 101, dim=2),
              FieldSchema("b", DataType.BINARY_VECTOR, 102, dim=16),
              FieldSchema("h", DataType.FLOAT16_VECTOR, 103, dim=2),
              FieldSchema("s", DataType.VARCHAR, 104, max_length=8),
              FieldSchema("a", DataType.ARRAY, 105, element_type=DataType.INT32, max_capacity=4),
              FieldSchema("j", DataType.JSON, 106),
              FieldSchema("ok", DataType.BOOL, 107),
              FieldSchema(DYNAMIC_FIELD, DataType.JSON, 108, is_dynamic=True)]
    schema = CollectionSchema("c", fields, enable_dynamic_field=True)
    arr = np.empty(2, object)
    arr[0], arr[1] = np.array([1, 2], np.int32), np.array([], np.int32)
    js = np.empty(2, object)
    js[0], js[1] = {"k": [1]}, None
    meta = np.empty(2, object)
    meta[0], meta[1] = {"x": 1}, {}
    strs = np.empty(2, object)
    strs[0], strs[1] = "a", "bb"
    cols = {"id": np.array([7, 9], np.int64), "f": np.array([[1, 2], [3, 4]], np.float32),
            "b": np.array([[1, 2], [3, 4]], np.uint8), "h": np.array([[1, 2], [3, 4]], np.float16),
            "s": strs, "a": arr, "j": js, "ok": np.array([True, False]), DYNAMIC_FIELD: meta}
    rows = rows_of(schema, cols, 2)
    assert rows[0] == {"id": 7, "f": [1.0, 2.0], "b": b"\x01\x02", "h": np.array([1, 2], np.float16).tobytes(),
                       "s": "a", "a": [1, 2], "j": {"k": [1]}, "ok": True, "x": 1}
    assert rows[1]["a"] == [] and rows[1]["j"] is None and "x" not in rows[1] and rows[1]["id"] == 9
    assert type(rows[0]["id"]) is int and type(rows[0]["ok"]) is bool
    ts = target_schema(schema)
    assert [f.name for f in ts.fields] == ["id", "f", "b", "h", "s", "a", "j", "ok"]
    assert ts.auto_id is False and ts.enable_dynamic_field and ts.primary_field.name == "id"


def test_rows_of_nulls_and_target_schema_keeps_nullable_and_defaults():
    fields = [FieldSchema("id", DataType.INT64, 100, is_primary=True),
              FieldSchema("f", DataType.FLOAT_VECTOR, 101, dim=2),
              FieldSchema("age", DataType.INT64, 102, nullable=True),
              FieldSchema("s", DataType.VARCHAR, 103, max_length=8, default_value="d")]
    schema = CollectionSchema("c", fields)
    strs = np.empty(2, object)
    strs[0], strs[1] = "a", "d"
    cols = {"id": np.array([1, 2], np.int64), "f": np.zeros((2, 2), np.float32),
            "age": np.array([5, 0], np.int64), valid_key("age"): np.array([True, False]), "s": strs}
    rows = rows_of(schema, cols, 2)
    assert [r["age"] for r in rows] == [5, None] and [r["s"] for r in rows] == ["a", "d"]
    by = {f.name: f for f in target_schema(schema).fields}
    assert by["age"].nullable and by["s"].default_value.string_data == "d" and not by["s"].nullable


def test_rows_of_int8_vectors_and_timestamptz():
    """INT8_VECTOR rows go as np.int8 arrays and TIMESTAMPTZ values as ISO strings (what pymilvus takes);
    a null TIMESTAMPTZ as None."""
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, 100, is_primary=True),
                                    FieldSchema("v", DataType.INT8_VECTOR, 101, dim=3),
                                    FieldSchema("t", DataType.TIMESTAMPTZ, 102, nullable=True)])
    cols = {"id": np.array([1, 2], np.int64), "v": np.array([[-128, 0, 127], [1, 2, 3]], np.int8),
            "t": np.array([1_700_000_000_250_000, 0], np.int64), valid_key("t"): np.array([True, False])}
    rows = rows_of(schema, cols, 2)
    assert rows[0]["v"].dtype == np.int8 and rows[0]["v"].tolist() == [-128, 0, 127]
    assert rows[0]["t"] == "2023-11-14T22:13:20.25Z" and rows[1]["t"] is None

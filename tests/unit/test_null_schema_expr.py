"""Nullable fields and default values (Milvus 2.5): schema rules, insert payloads as pymilvus builds
them (FieldData.valid_data, values of the valid rows only), the reply's valid_data, and the filter
language's null semantics (``is null``, comparisons and ``not`` false on null rows)."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.client.abstract import CollectionSchema as PyCollectionSchema
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.results import query_results
from vecdb.schema import CollectionSchema, DataType, valid_key


def _pb(extra=()) -> schema_pb2.CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="2")
    for f in extra:
        pb.fields.add().CopyFrom(f)
    return pb


def _field(name, dt, nullable=False, default=None, **params) -> schema_pb2.FieldSchema:
    f = schema_pb2.FieldSchema(name=name, data_type=int(dt), nullable=nullable)
    if "element_type" in params:
        f.element_type = int(params.pop("element_type"))
    for k, v in params.items():
        f.type_params.add(key=k, value=str(v))
    if default is not None:
        setattr(f.default_value, default[0], default[1])
    return f


def _schema() -> CollectionSchema:
    return CollectionSchema.from_proto(_pb([
        _field("age", DataType.INT64, nullable=True),
        _field("status", DataType.VARCHAR, default=("string_data", "active"), max_length=10),
        _field("score", DataType.FLOAT, nullable=True, default=("float_data", 1.5)),
        _field("j", DataType.JSON, nullable=True),
        _field("a", DataType.ARRAY, nullable=True, element_type=DataType.INT64, max_capacity=4),
    ]), "c")


# ---------------------------------------------------------------- schema
def test_schema_round_trips_nullable_and_default():
    schema = _schema()
    by = {f.name: f for f in schema.fields}
    assert by["age"].nullable and not by["age"].has_default
    assert by["status"].default_value == "active" and not by["status"].nullable
    assert by["score"].nullable and by["score"].default_value == 1.5
    again = CollectionSchema.from_dict(schema.to_dict())
    assert again == schema
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    pb = {f.name: f for f in resp.schema.fields}
    assert pb["age"].nullable and not pb["age"].HasField("default_value")
    assert pb["status"].default_value.string_data == "active"
    assert pb["score"].default_value.float_data == 1.5 and pb["score"].nullable
    assert not pb["id"].nullable


@pytest.mark.parametrize("fields,message", [
    ([], None),  # the primary key made nullable below
    ([_field("x", DataType.FLOAT_VECTOR, default=("float_data", 1.0), dim=2)],
     "type not support default_value, type:FloatVector"),  # (a nullable vector is Milvus 3.0's: taken)
    ([_field("x", DataType.INT64, nullable=True)], "partition key field not support nullable"),
    ([_field("x", DataType.INT64, default=("string_data", "a"))],
     "default value type mismatches field schema type"),
    ([_field("x", DataType.INT32, default=("long_data", 1))], "default value type mismatches field schema type"),
    ([_field("x", DataType.INT8, default=("int_data", 300))], "default value out of range"),
    ([_field("x", DataType.JSON, default=("string_data", "{}"))], "type not support default_value, type:JSON"),
    ([_field("x", DataType.ARRAY, default=("long_data", 1), element_type=DataType.INT64, max_capacity=2)],
     "type not support default_value, type:Array"),
    ([_field("x", DataType.VARCHAR, default=("string_data", "toolong"), max_length=3)],
     r"the length \(7\) of string exceeds max length \(3\)"),
])
def test_schema_refusals(fields, message):
    pb = _pb(fields)
    if not fields:
        pb.fields[0].nullable = True
        message = "primary field not support null"
    if message.startswith("partition key"):
        pb.fields[2].is_partition_key = True
    with pytest.raises(InvalidParameter, match=message) as e:
        CollectionSchema.from_proto(pb, "c")
    assert e.value.code == 1100


def test_default_value_on_primary_key_is_refused():
    pb = _pb()
    pb.fields[0].default_value.long_data = 3
    with pytest.raises(InvalidParameter, match="primary field not support default_value"):
        CollectionSchema.from_proto(pb, "c")


# ---------------------------------------------------------------- insert payloads
def _fields_info(schema):
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    return [f.dict() for f in PyCollectionSchema(resp).fields]


def _columns(schema, rows):
    req = Prepare.row_insert_param("c", rows, "", _fields_info(schema))
    return columns_from_field_data(schema, req.fields_data, req.num_rows)


ROWS = [
    {"id": 1, "v": [0.0, 1.0], "age": 30, "status": "premium", "score": 2.0, "j": {"k": 1}, "a": [1, 2]},
    {"id": 2, "v": [0.0, 1.0], "age": None, "status": None, "score": None, "j": None, "a": None},
    {"id": 3, "v": [0.0, 1.0]},  # every nullable / default field left out
]


def test_row_insert_fills_nulls_and_defaults():
    cols = _columns(_schema(), ROWS)
    assert cols["age"].tolist() == [30, 0, 0] and cols[valid_key("age")].tolist() == [True, False, False]
    assert cols["status"].tolist() == ["premium", "active", "active"] and valid_key("status") not in cols
    assert cols["score"].tolist() == [2.0, 1.5, 1.5] and cols[valid_key("score")].all()  # default wins
    assert cols["j"].tolist() == [{"k": 1}, None, None] and cols[valid_key("j")].tolist() == [True, False, False]
    assert cols["a"][0].tolist() == [1, 2] and len(cols["a"][1]) == 0
    assert cols[valid_key("a")].tolist() == [True, False, False]


def test_column_insert_without_the_nullable_fields():
    schema = _schema()
    req = Prepare.row_insert_param("c", [{"id": 1, "v": [0.0, 1.0]}, {"id": 2, "v": [1.0, 0.0]}], "",
                                   _fields_info(schema))
    sent = [f for f in req.fields_data if f.field_name in ("id", "v")]  # the others not sent at all
    cols = columns_from_field_data(schema, sent, 2)
    assert not cols[valid_key("age")].any() and cols["status"].tolist() == ["active", "active"]


def test_full_length_payload_with_valid_data_is_taken():
    schema = _schema()
    req = Prepare.row_insert_param("c", ROWS[:1] * 1, "", _fields_info(schema))
    fds = list(req.fields_data)
    age = next(f for f in fds if f.field_name == "age")
    age.scalars.long_data.data[:] = [30, 0]
    del age.valid_data[:]
    age.valid_data.extend([True, False])
    for f in fds:  # the other fields get a second row
        if f.field_name == "id":
            f.scalars.long_data.data.append(9)
        elif f.field_name == "v":
            f.vectors.float_vector.data.extend([1.0, 0.0])
        elif f.field_name != "age":
            f.valid_data.append(False) if len(f.valid_data) else None
    cols = columns_from_field_data(schema, fds, 2)
    assert cols["age"].tolist() == [30, 0] and cols[valid_key("age")].tolist() == [True, False]


def test_null_for_a_plain_field_and_bad_valid_data_are_refused():
    schema = _schema()
    req = Prepare.row_insert_param("c", ROWS[:2], "", _fields_info(schema))
    fds = list(req.fields_data)
    pk = next(f for f in fds if f.field_name == "id")
    pk.valid_data.extend([True, False])
    with pytest.raises(InvalidParameter, match=r"field \(id\) is not nullable, but null values were passed"):
        columns_from_field_data(schema, fds, 2)
    del pk.valid_data[:]
    age = next(f for f in fds if f.field_name == "age")
    age.valid_data.append(True)
    with pytest.raises(InvalidParameter, match=r"the length of valid_data of field\(age\) is wrong"):
        columns_from_field_data(schema, fds, 2)
    del age.valid_data[:]
    age.valid_data.extend([False, False])  # one value sent, none valid
    with pytest.raises(InvalidParameter, match=r"not equal to the number of valid rows \(0\)"):
        columns_from_field_data(schema, fds, 2)


def test_reply_sets_valid_data_and_pymilvus_reads_none():
    schema = _schema()
    cols = _columns(schema, ROWS)
    names = ["id", "age", "status", "score", "j", "a"]
    reply = query_results(schema, cols, names, [], "c")
    by = {f.field_name: f for f in reply.fields_data}
    assert list(by["age"].valid_data) == [True, False, False]
    assert not len(by["status"].valid_data)  # not nullable: no mask
    assert list(by["j"].valid_data) == list(by["a"].valid_data) == [True, False, False]
    assert len(by["j"].scalars.json_data.data) == len(by["a"].scalars.array_data.data) == 3  # full length
    from pymilvus.client.entity_helper import extract_row_data_from_fields_data_v2
    rows: list[dict] = [{} for _ in range(3)]
    for name in ("age", "status", "score"):
        extract_row_data_from_fields_data_v2(by[name], rows)
    assert [r["age"] for r in rows] == [30, None, None]
    assert [r["status"] for r in rows] == ["premium", "active", "active"]
    assert [r["score"] for r in rows] == [2.0, 1.5, 1.5]


# ---------------------------------------------------------------- filters
def _eval(expr: str) -> list[int]:
    schema = _schema()
    cols = _columns(schema, ROWS + [{"id": 4, "v": [0.0, 1.0], "age": 5, "j": {"k": 2}, "a": []}])
    flt = compile_filter(expr, schema)
    return [int(i) for i in np.flatnonzero(flt.evaluate(cols, 4)) + 1]  # the ids


@pytest.mark.parametrize("expr,ids", [
    ("age is null", [2, 3]),
    ("age IS NOT NULL", [1, 4]),
    ("age is not null and age < 10", [4]),
    ("age >= 0", [1, 4]),  # a null is no number: false for every comparison
    ("age != 5", [1]),
    ("age not in [5]", [1]),
    ("not (age > 10)", [4]),  # not keeps a null row false
    ("not (age is null)", [1, 4]),
    ("age < 10 or status == 'active'", [2, 3, 4]),
    ("status == 'active'", [2, 3, 4]),  # the default value is a value
    ("score == 1.5", [2, 3, 4]),
    ("j is null", [2, 3]),
    ("j['k'] != 1", [4]),  # a missing key matches != in a JSON row that is there, not in a null row
    ("a is null", [2, 3]),
    ("array_length(a) == 0", [4]),
    ("not array_contains(a, 1)", [4]),
    ("(age > 1) == true", [1, 4]),
])
def test_filters_on_nulls(expr, ids):
    assert _eval(expr) == ids


def test_is_null_on_a_plain_field_is_never_true():
    assert _eval("id is null") == [] and _eval("id is not null") == [1, 2, 3, 4]


@pytest.mark.parametrize("expr,ids", [
    # Milvus: and/or are "known" where either side is; not flips and ANDs that (ids 2, 3: age null)
    ("not (age > 10 and status == 'premium')", [2, 3, 4]),  # status known on 2, 3: not(false) = true
    ("not (age > 10 or j['k'] == 9)", [4]),  # j null on 2, 3 too: unknown, false
    ("not (age > 10 or status == 'nope')", [2, 3, 4]),
    ("not (not (age > 10))", [1]),
])
def test_not_over_and_or_follows_milvus_validity(expr, ids):
    assert _eval(expr) == ids

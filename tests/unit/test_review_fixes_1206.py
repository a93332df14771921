"""Regressions found reviewing 4d5fc84..cf3794a."""

from __future__ import annotations

import json

import pytest
from pymilvus.grpc_gen import schema_pb2

from tests.unit.test_compaction import CID, Env
from vecdb.datanode import segment_listing
from vecdb.datanode.compactor import COMPLETED, fail_overdue, request_compaction, request_key, update_request
from vecdb.errors import InvalidParameter
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.rest import rows_to_field_data
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key


def _overdue_request(env: Env, compaction_id: int) -> str:
    request_compaction(env.meta, compaction_id, env.info)
    key = request_key(CID, compaction_id)
    rec = json.loads(env.meta.get(key))
    rec["at"] -= 60
    env.meta.put(key, json.dumps(rec).encode())
    return key


def test_an_overdue_read_does_not_fail_a_channel_completed_since_the_record_was_read():
    env = Env(timeout=30)
    key = _overdue_request(env, 7)
    stale = json.loads(env.meta.get(key))  # a proxy read it: every channel still pending
    plans = [{"sources": [1, 2], "target": 3}]
    for channel in stale["channels"]:
        update_request(env.meta, key, channel, COMPLETED, plans)  # the data node finished meanwhile

    out = fail_overdue(env.meta, stale, 30)

    stored = json.loads(env.meta.get(key))
    assert {c["state"] for c in stored["channels"].values()} == {COMPLETED}
    assert all(c["plans"] == plans for c in stored["channels"].values())
    assert out == stored and segment_listing.failed(out) == 0


def test_an_overdue_read_fails_the_channels_still_pending_in_one_write():
    env = Env(timeout=30)
    key = _overdue_request(env, 8)
    stale = json.loads(env.meta.get(key))
    out = fail_overdue(env.meta, stale, 30)
    stored = json.loads(env.meta.get(key))
    assert [(c["state"], c.get("failed")) for c in stored["channels"].values()] == [(COMPLETED, True)] * len(
        env.info.channels)
    assert out == stored and segment_listing.executing(out) == 0
    assert segment_listing.failed(out) == len(env.info.channels)


def _vector_schema():
    return CollectionSchema("c", fields=[FieldSchema("id", DataType.INT64, is_primary=True),
                                         FieldSchema("v", DataType.FLOAT_VECTOR, dim=2)])


def test_rest_rows_of_numbers_of_unequal_lengths_are_not_called_non_numbers():
    with pytest.raises(ValueError) as e:  # every row a list of numbers: the lengths differ
        rows_to_field_data(_vector_schema(), [{"id": 1, "v": [0.1, 0.2]}, {"id": 2, "v": [0.1]}])
    assert str(e.value).startswith("field v has a value that is not a valid FloatVector"), str(e.value)
    with pytest.raises(ValueError) as e:
        rows_to_field_data(_vector_schema(), [{"id": 1, "v": [0.1, True]}])
    assert str(e.value).startswith("field v value must be a list of numbers"), str(e.value)
    assert str(e.value).endswith("[actual=[0.1, true]]"), str(e.value)


def _nullable_array_insert(third_row: list[int] | None):
    """ids 1..3 and a nullable ARRAY sent as all 3 rows: row 0 null (a placeholder), row 1 ``[1]``, row 2
    ``third_row`` (None: a row with no data)."""
    schema = CollectionSchema("c", fields=[
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("a", DataType.ARRAY, element_type=DataType.INT64, max_capacity=2, nullable=True)])
    ids = schema_pb2.FieldData(type=schema_pb2.Int64, field_name="id")
    ids.scalars.long_data.data.extend([1, 2, 3])
    a = schema_pb2.FieldData(type=schema_pb2.Array, field_name="a", valid_data=[False, True, True])
    a.scalars.array_data.element_type = schema_pb2.Int64
    a.scalars.array_data.data.add()
    a.scalars.array_data.data.add().long_data.data.extend([1])
    row = a.scalars.array_data.data.add()
    if third_row is not None:
        row.long_data.data.extend(third_row)
    return schema, [ids, a]


def test_a_bad_array_row_after_a_null_one_is_named_by_its_row_number():
    schema, fields = _nullable_array_insert(None)
    with pytest.raises(InvalidParameter, match="got nil at row 2$"):
        columns_from_field_data(schema, fields, 3)
    schema, fields = _nullable_array_insert([1, 2, 3])
    with pytest.raises(InvalidParameter, match=r"the length \(3\) of 2th array"):
        columns_from_field_data(schema, fields, 3)
    schema, fields = _nullable_array_insert([5])
    cols = columns_from_field_data(schema, fields, 3)
    assert [None if not ok else v.tolist() for v, ok in zip(cols["a"], cols[valid_key("a")])] == [None, [1], [5]]

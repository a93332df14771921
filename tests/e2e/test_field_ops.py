"""Upsert ``field_ops`` (pymilvus 2.6 FieldOp.array_append / array_remove) on every deployment: the
op is applied to the row's current array (sealed or growing), other fields keep their values, new
primary keys start from an empty array; refusals as Milvus's proxy refuses them."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client.field_ops import FieldOp

DIM = 4


def _collection(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=6)
    schema.add_field("words", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=8)
    schema.add_field("n", DataType.INT64)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rows = [{"id": i, "vec": [float(i)] * DIM, "tags": [i, i + 1, i], "words": ["a", "b", "a"][: i + 1], "n": 10 * i}
            for i in range(3)]
    client.insert(name, rows[:2])
    client.flush(name)  # rows 0, 1 sealed; row 2 growing
    client.insert(name, rows[2:])
    return rows


def _rows(client, name):
    got = client.query(name, filter="id >= 0", output_fields=["tags", "words", "n", "vec"])
    return {r["id"]: ([int(x) for x in r["tags"]], list(r["words"]), r["n"], [float(x) for x in r["vec"]])
            for r in got}


def test_array_append_and_remove(client, name):
    rows = _collection(client, name)
    # rows 0 (sealed) and 2 (growing) exist
    client.upsert(name, [{"id": 0, "tags": [7, 0]}, {"id": 2, "tags": [9]}],
                  field_ops={"tags": FieldOp.array_append()})
    want = {i: ([int(x) for x in r["tags"]], r["words"], r["n"], r["vec"]) for i, r in enumerate(rows)}
    want[0] = ([0, 1, 0, 7, 0], *want[0][1:])
    want[2] = ([2, 3, 2, 9], *want[2][1:])
    assert _rows(client, name) == want
    client.upsert(name, [{"id": 0, "tags": [0, 5], "words": ["a"]}, {"id": 1, "tags": [99], "words": ["zz"]}],
                  field_ops={"tags": "array_remove", "words": FieldOp.array_remove()})
    want[0] = ([1, 7], [], 0, want[0][3])
    want[1] = ([1, 2, 1], ["a", "b"], 10, want[1][3])  # nothing matched
    assert _rows(client, name) == want
    # a new primary key with every field: the op starts from an empty array
    client.upsert(name, [{"id": 5, "vec": [5.0] * DIM, "tags": [4, 4], "words": ["x"], "n": 50}],
                  field_ops={"tags": FieldOp.array_append(), "words": FieldOp.array_remove()})
    want[5] = ([4, 4], [], 50, [5.0] * DIM)
    assert _rows(client, name) == want
    assert client.query(name, filter="array_contains(tags, 7)", output_fields=["id"])[0]["id"] == 0


def test_field_ops_refused(client, name):
    _collection(client, name)
    cases = [
        ({"n": FieldOp.array_append()}, [{"id": 0, "n": 1}],
         'op ARRAY_APPEND requires Array field, but field "n" is Int64'),
        ({"tags": FieldOp.array_append()}, [{"id": 1, "tags": [1, 2, 3, 4]}], "exceeds max capacity (6)"),
        ({"nope": FieldOp.array_remove()}, [{"id": 1, "tags": [1]}], "field 'nope' not found"),
        ({"words": FieldOp.array_append()}, [{"id": 1, "tags": [1]}], "does not send the field"),
    ]
    before = _rows(client, name)
    for ops, data, message in cases:
        with pytest.raises(MilvusException) as e:
            client.upsert(name, data, field_ops=ops)
        assert e.value.code == 1100 and message in e.value.message, e.value.message
    assert _rows(client, name) == before  # nothing written

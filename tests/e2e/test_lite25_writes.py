"""Writes found differing from Milvus Lite 2.5.1 (the Milvus 2.5 engine) in a differential hunt
(.dev/writediff): the expected answers are Milvus 2.5's, written here as literal values.
"""

from __future__ import annotations

from pymilvus import DataType

V = [0.1, 0.2, 0.3, 0.4]


def _partition_key_collection(client, name, pk_type=DataType.INT64):
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    kw = {"max_length": 16} if pk_type == DataType.VARCHAR else {}
    schema.add_field("pk", pk_type, is_primary=True, **kw)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("k", DataType.INT64, is_partition_key=True)
    schema.add_field("x", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=index, num_partitions=16,
                             consistency_level="Strong")


def _rows(client, name):
    return sorted((r["pk"], r["k"], r["x"]) for r in client.query(name, filter="", limit=100, output_fields=["k", "x"]))


def test_partition_key_batch_repeating_a_key_keeps_its_last_row(client, name):
    """A batch that repeats a primary key with different partition key values: the last row wins, as
    in a batch without a partition key (Milvus 2.5 / Lite: `pk 1, k 4`). The batch's rows went to one
    log record per partition at one timestamp, and the partitions' order decided: `pk 1, k 3` came
    back, and `delete(filter="k == 4")` deleted nothing."""
    _partition_key_collection(client, name)
    client.insert(name, [{"pk": 2, "v": V, "k": 1, "x": 1}])
    res = client.upsert(name, [{"pk": 1, "v": V, "k": 3, "x": 3}, {"pk": 1, "v": V, "k": 4, "x": 4}])
    assert res["upsert_count"] == 2  # as Milvus counts the rows sent
    assert _rows(client, name) == [(1, 4, 4), (2, 1, 1)]
    assert client.get(name, ids=[1], output_fields=["k", "x"])[0]["x"] == 4
    assert [r["pk"] for r in client.query(name, filter="k == 3", output_fields=["pk"])] == []
    client.flush(name)
    assert _rows(client, name) == [(1, 4, 4), (2, 1, 1)]
    assert client.delete(name, filter="k == 4")["delete_count"] == 1
    assert _rows(client, name) == [(2, 1, 1)]


def test_partition_key_insert_batch_repeating_a_key_keeps_its_last_row(client, name):
    _partition_key_collection(client, name, DataType.VARCHAR)
    res = client.insert(name, [{"pk": "a", "v": V, "k": k, "x": k} for k in (9, 5, 7, 2)])
    assert res["insert_count"] == 4 and list(res["ids"]) == ["a", "a", "a", "a"]
    assert _rows(client, name) == [("a", 2, 2)]
    assert client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 1
    client.flush(name)
    assert _rows(client, name) == [("a", 2, 2)]

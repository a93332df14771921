"""Partition-level load and release, as Milvus does it."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusException
from pymilvus.client.types import LoadState


def _setup(client, name):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    client.create_partition(name, "p1")
    client.create_partition(name, "p2")
    client.insert(name, [{"id": 0, "vec": [0, 0]}])
    client.insert(name, [{"id": 1, "vec": [1, 1]}], partition_name="p1")
    client.insert(name, [{"id": 2, "vec": [2, 2]}], partition_name="p2")


def _ids(client, name, **kw):
    return sorted(r["id"] for r in client.query(name, filter="id >= 0", **kw))


def test_release_one_partition_hides_it_and_blocks_reads_naming_it(client, name):
    _setup(client, name)
    assert _ids(client, name) == [0, 1, 2]
    client.release_partitions(name, ["p1"])
    assert client.get_load_state(name, partition_name="p1")["state"] == LoadState.NotLoad
    assert client.get_load_state(name, partition_name="p2")["state"] == LoadState.Loaded
    assert _ids(client, name) == [0, 2]
    assert client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 2
    with pytest.raises(MilvusException) as e:
        client.query(name, filter="id >= 0", partition_names=["p1"])
    assert e.value.code == 201
    hits = client.search(name, data=[[1, 1]], limit=3)[0]
    assert sorted(h["id"] for h in hits) == [0, 2]
    # writes into a released partition are accepted and show up once it is loaded again
    client.insert(name, [{"id": 3, "vec": [3, 3]}], partition_name="p1")
    client.load_partitions(name, ["p1"])
    assert _ids(client, name) == [0, 1, 2, 3]


def test_load_partitions_only_and_drop_needs_release(client, name):
    _setup(client, name)
    client.release_collection(name)
    client.load_partitions(name, ["p2"])
    assert client.get_load_state(name)["state"] == LoadState.Loaded
    assert _ids(client, name) == [2]
    with pytest.raises(MilvusException) as e:
        client.drop_partition(name, "p2")
    assert "release" in e.value.message
    client.release_partitions(name, ["p2"])
    assert client.get_load_state(name)["state"] == LoadState.NotLoad
    client.drop_partition(name, "p2")
    assert not client.has_partition(name, "p2")
    client.load_collection(name)
    assert _ids(client, name) == [0, 1]

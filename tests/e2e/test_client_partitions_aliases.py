"""MilvusClient partitions (create/list/has/drop/load/release, scoped reads and writes) and aliases."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusException

from tests.e2e._helpers import count, float_schema, float_vectors, make_collection


def _rows(ids, seed=0):
    vecs = float_vectors(len(ids), 4, seed)
    return [{"id": int(i), "vec": vecs[k]} for k, i in enumerate(ids)]


def test_partitions_lifecycle_and_scoped_dml(client, name):
    make_collection(client, name, float_schema(4))
    assert client.list_partitions(name) == ["_default"]
    client.create_partition(name, "p1")
    client.create_partition(name, "p2")
    assert sorted(client.list_partitions(name)) == ["_default", "p1", "p2"]
    assert client.has_partition(name, "p1") and not client.has_partition(name, "nope")

    client.insert(name, _rows(range(0, 10)))
    client.insert(name, _rows(range(10, 20), seed=1), partition_name="p1")
    client.insert(name, _rows(range(20, 25), seed=2), partition_name="p2")
    assert count(client, name) == 25
    assert count(client, name, partition_names=["p1"]) == 10
    assert client.get_partition_stats(name, "p2")["row_count"] == 5
    rows = client.query(name, filter="id >= 0", partition_names=["p1", "p2"])
    assert sorted(r["id"] for r in rows) == list(range(10, 25))
    q = float_vectors(10, 4, 0)[3]  # the vector of id 3, in _default
    hits = client.search(name, [q], limit=3, partition_names=["p1"])
    assert all(10 <= h.id < 20 for h in hits[0])
    assert client.search(name, [q], limit=1)[0][0].id == 3

    # delete scoped to a partition only touches that partition
    client.delete(name, filter="id in [1, 11]", partition_name="p1")
    assert sorted(r["id"] for r in client.get(name, ids=[1, 11])) == [1]

    # release / load a partition; then drop one (must be released in Milvus)
    client.release_partitions(name, ["p2"])
    client.load_partitions(name, ["p2"])
    assert client.get_load_state(name, partition_name="p2")["state"].name == "Loaded"
    client.release_collection(name)
    client.drop_partition(name, "p2")
    assert sorted(client.list_partitions(name)) == ["_default", "p1"]
    client.load_collection(name)
    assert count(client, name) == 19  # p2's 5 rows went with it
    assert client.get(name, ids=[20, 21]) == []


def test_upsert_into_partition(client, name):
    make_collection(client, name, float_schema(4, extra=(("v", DataType.INT64, {}),)))
    client.create_partition(name, "p1")
    client.insert(name, [{"id": 1, "vec": [1, 1, 1, 1], "v": 1}], partition_name="p1")
    client.upsert(name, [{"id": 1, "vec": [2, 2, 2, 2], "v": 2}], partition_name="p1")
    got = client.query(name, filter="id == 1", output_fields=["v"], partition_names=["p1"])
    assert [(r["id"], r["v"]) for r in got] == [(1, 2)]
    assert count(client, name) == 1


def test_aliases(client, name):
    other = name + "_b"
    make_collection(client, name, float_schema(4))
    make_collection(client, other, float_schema(4))
    alias = name + "_alias"
    try:
        client.create_alias(name, alias)
        assert client.describe_alias(alias)["collection_name"] == name
        assert alias in client.list_aliases(name)["aliases"]
        assert alias in client.describe_collection(name)["aliases"]
        assert client.has_collection(alias)

        # writes and reads through the alias land in the collection
        client.insert(alias, _rows(range(5)))
        assert count(client, name) == 5
        assert client.search(alias, [float_vectors(5, 4, 0)[2]], limit=1)[0][0].id == 2
        client.upsert(alias, _rows([4], seed=9))
        client.delete(alias, ids=[0])
        assert sorted(r["id"] for r in client.query(alias, filter="id >= 0")) == [1, 2, 3, 4]

        # alter: the alias now names the other collection
        client.alter_alias(other, alias)
        assert client.describe_alias(alias)["collection_name"] == other
        assert count(client, alias) == 0
        client.insert(alias, _rows([100]))
        assert count(client, other) == 1 and count(client, name) == 4
        assert client.list_aliases(name)["aliases"] == []

        with pytest.raises(MilvusException):
            client.create_alias(name, alias)  # already points at `other`
        with pytest.raises(MilvusException):
            client.drop_collection(alias)  # a collection is never dropped through an alias
        assert client.has_collection(other)
    finally:
        client.drop_alias(alias)
        client.drop_collection(other)
    assert alias not in client.list_aliases()["aliases"]
    with pytest.raises(MilvusException):
        client.describe_alias(alias)
    assert count(client, name) == 4

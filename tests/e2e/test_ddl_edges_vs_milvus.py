"""DDL edges (partitions, partition keys, aliases, databases, collections) as Milvus 2.3.5 answers them.

Each expectation was measured with pymilvus 3.0.2 against the real Milvus 2.3.5 server (the `milvus`
PyPI package) next to vecdb. Milvus answers several of these with code 65535; vecdb answers 1100
(65535 means a bug in vecdb: docs/limits.md), with Milvus's words.
"""

from __future__ import annotations

import uuid

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e._helpers import float_schema, make_collection


def _rows(ids, dim: int = 4):
    return [{"id": int(i), "vec": [float(i)] * dim} for i in ids]


def _code(call) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        call()
    return e.value.code, e.value.message


def _hit_ids(client, name, **kwargs) -> list[int]:
    res = client.search(name, [[1.0] * 4], limit=20, consistency_level="Strong", **kwargs)
    return sorted(h["id"] for h in res[0])


def _key_schema():
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("k", DataType.INT64, is_partition_key=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    return s


# --- partitions ---------------------------------------------------------------------------------
def test_create_partition_twice_is_no_error(client, name):
    # Milvus: the same partition name again succeeds (rootcoord "add duplicate partition"), _default too
    make_collection(client, name, float_schema(4), load=False)
    client.create_partition(name, "pA")
    client.create_partition(name, "pA")
    client.create_partition(name, "_default")
    assert client.list_partitions(name) == ["_default", "pA"]


def test_partition_names_may_start_with_a_digit(client, name):
    make_collection(client, name, float_schema(4), load=False)
    client.create_partition(name, "1abc")  # Milvus's validatePartitionTag takes a leading digit
    assert client.has_partition(name, "1abc")
    client.insert(name, _rows(range(3)), partition_name="1abc")
    for bad in ("a-b", "a b", "a$b", "中文"):
        code, msg = _code(lambda bad=bad: client.create_partition(name, bad))
        assert code == 1100 and "Invalid partition name" in msg, (bad, msg)
    assert _code(lambda: client.create_partition(name, "a" * 256))[0] == 1100
    client.create_partition(name, "a" * 255)
    assert sorted(client.list_partitions(name)) == sorted(["_default", "1abc", "a" * 255])


def test_new_partition_of_loaded_collection_and_drop_refusals(client, name):
    make_collection(client, name, float_schema(4))
    client.create_partition(name, "pA")
    client.insert(name, _rows(range(5)), partition_name="pA")
    # a partition created while the collection is loaded is loaded: its rows are searchable at once
    assert _hit_ids(client, name) == [0, 1, 2, 3, 4]
    assert _hit_ids(client, name, partition_names=["pA"]) == [0, 1, 2, 3, 4]
    code, msg = _code(lambda: client.drop_partition(name, "pA"))
    assert code == 1100 and "partition is loaded, please release it first" in msg
    client.release_partitions(name, ["pA"])
    client.drop_partition(name, "pA")
    assert not client.has_partition(name, "pA")
    client.drop_partition(name, "pA")  # a missing partition: no error in Milvus either
    assert _code(lambda: client.drop_partition(name, "_default"))[0] == 1100


def test_release_partitions_of_no_partition_is_refused(client, name):
    make_collection(client, name, float_schema(4))
    code, msg = _code(lambda: client.release_partitions(name, []))
    assert code == 1100 and "empty partition list" in msg
    assert _code(lambda: client.load_partitions(name, []))[0] == 1100
    assert _code(lambda: client.release_partitions(name, ["nope"]))[0] == 200


def test_partial_load_scopes_reads(client, name):
    make_collection(client, name, float_schema(4), load=False)
    client.create_partition(name, "pA")
    client.insert(name, _rows(range(5)), partition_name="pA")
    client.insert(name, _rows(range(5, 10)))
    client.load_partitions(name, ["pA"])
    assert _hit_ids(client, name) == [0, 1, 2, 3, 4]  # the loaded partition only
    assert _code(lambda: _hit_ids(client, name, partition_names=["_default"]))[0] == 201
    assert _code(lambda: _hit_ids(client, name, partition_names=["nope"]))[0] == 200
    client.release_partitions(name, ["pA"])
    assert _code(lambda: _hit_ids(client, name))[0] == 101
    client.load_collection(name)
    client.release_partitions(name, ["pA"])
    assert _hit_ids(client, name) == [5, 6, 7, 8, 9]


# --- partition key ------------------------------------------------------------------------------
def test_partition_key_collection_refuses_partition_calls(client, name):
    client.create_collection(name, schema=_key_schema(), num_partitions=4)
    assert len(client.list_partitions(name)) == 4
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": i, "k": i, "vec": [1.0] * 4} for i in range(5)])
    for call, words in (
        (lambda: client.create_partition(name, "x"), "disable create partition if partition key mode is used"),
        (lambda: client.drop_partition(name, "_default_0"), "disable drop partition if partition key mode is used"),
        (lambda: client.load_partitions(name, ["_default_0"]), "disable load partitions if partition key mode is used"),
        (lambda: client.release_partitions(name, ["_default_0"]),
         "disable release partitions if partition key mode is used"),
        (lambda: client.delete(name, filter="id in [1]", partition_name="_default_0"),
         "not support manually specifying the partition names if partition key mode is used"),
        (lambda: client.query(name, "id >= 0", partition_names=["_default_0"]),
         "not support manually specifying the partition names if partition key mode is used"),
    ):
        assert _code(call) == (1100, words)
    # nothing was released or deleted
    assert len(client.query(name, "id >= 0", consistency_level="Strong")) == 5
    assert _code(lambda: client.create_collection(name + "_big", schema=_key_schema(), num_partitions=4097))[0] == 1100


# --- aliases ------------------------------------------------------------------------------------
def test_alias_edges(client, name):
    other, alias = name + "_b", "a_" + uuid.uuid4().hex[:10]
    make_collection(client, name, float_schema(4))
    make_collection(client, other, float_schema(4))
    try:
        client.insert(name, _rows(range(3)))
        client.insert(other, _rows(range(10, 13)))
        assert _code(lambda: client.create_alias("nope_" + alias, alias))[0] == 100
        assert _code(lambda: client.create_alias(name, other))[0] == 1601  # a collection's name
        client.create_alias(name, alias)
        client.create_alias(name, alias)  # the same again: no error (Milvus)
        assert _code(lambda: client.create_alias(other, alias))[0] == 1602
        assert _code(lambda: client.create_alias(alias, alias + "x"))[0] in (100, 1100)  # not on an alias
        assert client.describe_alias(alias)["collection_name"] == name
        assert client.list_aliases(name)["aliases"] == [alias]
        # reads and writes through the alias reach the collection
        client.insert(alias, _rows([5]))
        client.delete(alias, ids=[0])
        assert _hit_ids(client, alias) == [1, 2, 5]
        # an alias cannot be altered to a collection's name, nor a collection renamed through it
        assert _code(lambda: client.alter_alias(other, name))[0] == 1601
        code, msg = _code(lambda: client.rename_collection(alias, name + "_r"))
        assert code == 1100 and "unsupported use an alias to rename collection" in msg
        assert client.has_collection(name)
        client.alter_alias(other, alias)
        assert _hit_ids(client, alias) == [10, 11, 12]
        # renaming the collection keeps its alias
        client.rename_collection(other, other + "2")
        assert client.describe_alias(alias)["collection_name"] == other + "2"
        assert _code(lambda: client.drop_collection(alias))[0] == 1100  # not through an alias
        # dropping a collection drops its aliases (Milvus 2.3.5)
        client.drop_collection(other + "2")
        assert _code(lambda: client.describe_alias(alias))[0] == 1600
        client.drop_alias(alias)  # a missing alias: no error
        for bad in ("", "a b"):
            assert _code(lambda bad=bad: client.drop_alias(bad))[0] == 1100
            assert _code(lambda bad=bad: client.create_alias(name, bad))[0] == 1100
    finally:
        for n in (other, other + "2"):
            if client.has_collection(n):
                client.drop_collection(n)


# --- databases ----------------------------------------------------------------------------------
def test_database_edges(uri):
    c = MilvusClient(uri=uri)
    made: list[str] = []
    try:
        for bad in ("1db", ""):
            assert _code(lambda bad=bad: c.create_database(bad))[0] == 802  # invalid database name
        assert _code(lambda: c.drop_database("default"))[0] == 1100
        c.drop_database("nope_" + uuid.uuid4().hex[:8])  # a missing database: no error
        # 64 databases besides the default one (Milvus does not count it)
        user = len([d for d in c.list_databases() if d != "default"])
        for _ in range(64 - user):
            made.append("lim_" + uuid.uuid4().hex[:10])
            c.create_database(made[-1])
        code, msg = _code(lambda: c.create_database("lim_" + uuid.uuid4().hex[:10]))
        assert (code, msg) == (801, "exceeded the limit number of database[limit=64]")
    finally:
        for d in made:
            c.drop_database(d)
        c.close()


# --- collections --------------------------------------------------------------------------------
def test_shards_num_bounds(client, name):
    client.create_collection(name, schema=float_schema(4), shards_num=-1)  # Milvus: the default, 1
    assert client.describe_collection(name)["num_shards"] == 1
    client.drop_collection(name)
    assert _code(lambda: client.create_collection(name, schema=float_schema(4), shards_num=17))[0] == 1100
    client.create_collection(name, schema=float_schema(4), shards_num=16)
    assert client.describe_collection(name)["num_shards"] == 16


def test_create_again_needs_the_same_parameters(client, name):
    client.create_collection(name, schema=float_schema(4))
    client.create_collection(name, schema=float_schema(4))  # the same: no error
    for kwargs in ({"shards_num": 2}, {"consistency_level": "Strong"}):
        assert _code(lambda kwargs=kwargs: client.create_collection(name, schema=float_schema(4), **kwargs))[0] == 1100
    assert _code(lambda: client.create_collection(name, schema=float_schema(8)))[0] == 1100
    assert client.describe_collection(name)["num_shards"] == 1

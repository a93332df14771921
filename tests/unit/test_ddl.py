"""The coord owns DDL (vecdb.coord.ddl, vecdb.coord.ddl_rpc): the manager's checks and the catalog it
writes, the same calls through the coord's RPCs from "proxies" (catalogs following one memory
store, each with a proxy session), visible through every proxy when the call returns; repeats are
safe; with no active coord DDL fails (retriable), and it goes on through a standby that took over."""

from __future__ import annotations

import time

import pytest

from vecdb import errors
from vecdb.coord.catalog import Catalog
from vecdb.coord.client import CoordClient
from vecdb.coord.ddl import DdlManager, LoadState
from vecdb.coord.ddl_rpc import RemoteDdl
from vecdb.coord.resource_groups import GroupConfig, ResourceGroups
from vecdb.coord.server import Coord
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryMetaStore

TTL = 2


def schema(name: str = "c", partition_key: bool = False) -> CollectionSchema:
    fields = [FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("v", DataType.FLOAT_VECTOR, dim=4)]
    if partition_key:
        fields.append(FieldSchema("k", DataType.INT64, is_partition_key=True))
    return CollectionSchema(name, fields)


@pytest.fixture
def manager():
    meta = MemoryMetaStore()
    catalog = Catalog(meta)
    yield DdlManager(catalog, IdAllocator(meta), TimestampOracle(meta),
                     ResourceGroups(meta, lambda: {"1": "local", "2": "local"}))
    catalog.close()


def test_collections_partitions_aliases_databases(manager):
    cat = manager.catalog
    cid = manager.create_collection("", "c", schema(), 2, 0, {"p": "1"}, 0)
    info = cat.get("default", "c")
    assert (info.id, info.shards_num, info.properties, [p.name for p in info.partitions]) == (
        cid, 2, {"p": "1"}, ["_default"])
    assert manager.create_collection("", "c", schema(), 2, 0, {}, 0) == cid  # same schema: accepted
    other = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True)])
    with pytest.raises(errors.VecdbError):
        manager.create_collection("", "c", other, 1, 0, {}, 0)
    pk = manager.create_collection("default", "pk", schema("pk", partition_key=True), 1, 0, {}, 4)
    assert [p.name for p in cat.get_by_id(pk).partitions] == [f"_default_{i}" for i in range(4)]
    with pytest.raises(errors.InvalidParameter, match="partition key"):
        manager.create_partition("", "pk", "p1")

    manager.create_partition("", "c", "p1")
    manager.create_partition("", "c", "p1")  # the same again: no error, as Milvus
    manager.create_partition("", "c", "p1", retry=True)  # a repeat of the first: success
    assert [p.name for p in cat.get("", "c").partitions] == ["_default", "p1"]
    part = cat.get("", "c").partition("p1").id
    assert manager.drop_partition("", "c", "p1") == part
    assert manager.drop_partition("", "c", "p1") is None
    with pytest.raises(errors.InvalidParameter, match="default partition"):
        manager.drop_partition("", "c", "_default")

    manager.create_alias("", "al", "c")
    manager.create_alias("", "al", "c")  # the same again: no error, as Milvus
    with pytest.raises(errors.AliasAlreadyExists):
        manager.create_alias("", "al", "pk")
    manager.create_alias("", "al", "c", retry=True)
    with pytest.raises(errors.InvalidParameter, match="via alias"):
        manager.drop_collection("", "al")
    manager.alter_alias("", "al", "pk")
    assert cat.describe_alias("", "al").id == pk
    manager.drop_alias("", "al")

    manager.alter_collection("", "c", {"a": "b"}, ["p"])
    assert cat.get("", "c").properties == {"a": "b"}
    manager.rename_collection("", "c", "", "c2")
    manager.rename_collection("", "c", "", "c2", retry=True)  # found done: success
    with pytest.raises(errors.CollectionNotFound):
        manager.rename_collection("", "c", "", "c2")
    assert cat.get("", "c2").id == cid

    manager.create_database("db2", {"k": "v"})
    with pytest.raises(errors.InvalidParameter, match="already exist"):
        manager.create_database("db2", {"k": "v"})
    manager.create_database("db2", {"k": "v"}, retry=True)
    manager.alter_database("db2", {"k2": "v2"}, [])
    assert cat.database("db2")["properties"] == {"k": "v", "k2": "v2"}
    manager.alter_database("db2", {}, ["k", "absent"])  # drop_database_properties
    assert cat.database("db2")["properties"] == {"k2": "v2"}
    manager.create_collection("db2", "c", schema(), 1, 0, {}, 0)
    with pytest.raises(errors.InvalidParameter, match="not empty"):
        manager.drop_database("db2")
    assert manager.drop_collection("db2", "c") is not None
    assert manager.drop_collection("db2", "c") is None
    manager.drop_database("db2")
    assert cat.list_databases() == ["default"]


def test_indexes_and_load_state(manager):
    cat = manager.catalog
    cid = manager.create_collection("", "c", schema(), 1, 0, {}, 0)
    manager.create_partition("", "c", "p1")
    with pytest.raises(errors.IndexNotFound, match="create index firstly"):
        manager.load("", "c", None, 0, [])
    with pytest.raises(errors.FieldNotFound):
        manager.create_index("", "c", "nope", "", "FLAT", "L2", {})
    manager.create_index("", "c", "v", "", "HNSW", "L2", {"M": 8})
    manager.create_index("", "c", "v", "", "HNSW", "L2", {"M": 8})  # the same again
    with pytest.raises(errors.IndexDuplicate):
        manager.create_index("", "c", "v", "", "FLAT", "L2", {})
    (idx,) = cat.get("", "c").indexes
    assert (idx.index_name, idx.field_name, idx.params) == ("v", "v", {"M": 8})

    before = manager.load("", "c", ["p1"], 0, [])
    assert before == LoadState(False, None, 1, [])
    info = cat.get_by_id(cid)
    p1 = info.partition("p1").id
    assert (info.loaded, info.loaded_partitions, info.replica_number) == (True, [p1], 1)
    with pytest.raises(errors.InvalidParameter, match="release it first"):
        manager.drop_index("", "c", "", "")
    with pytest.raises(errors.InvalidParameter, match="partition is loaded"):
        manager.drop_partition("", "c", "p1")
    manager.undo_load(cid, before)
    assert not cat.get_by_id(cid).loaded

    manager.load("", "c", None, 2, [])
    info = cat.get_by_id(cid)
    assert (info.loaded, info.loaded_partitions, info.replica_number) == (True, None, 2)
    assert info.resource_groups == ["__default_resource_group"] * 2
    with pytest.raises(errors.VecdbError):  # three replicas, two nodes in the group
        manager.load("", "c", None, 3, [])
    assert manager.release("", "c", ["p1"]) is False  # _default stays loaded
    assert cat.get_by_id(cid).loaded_partitions == [cat.get_by_id(cid).partition("_default").id]
    assert manager.release("", "c", ["_default"]) is True
    assert not cat.get_by_id(cid).loaded
    assert manager.drop_index("", "c", "v", "") == [idx.index_id]
    with pytest.raises(errors.IndexNotFound):
        manager.drop_index("", "c", "v", "")


class Proxy:
    """What a cluster proxy has of DDL: its session, its catalog following the store, RemoteDdl."""

    def __init__(self, meta, node_id: str, timeout: float = 15.0):
        meta.put(f"session/proxy/{node_id}", b"{}")
        self.catalog = Catalog(meta, node_id, ttl=TTL)
        self.client = CoordClient(meta, timeout=timeout)
        self.ddl = RemoteDdl(self.client, self.catalog)

    def close(self) -> None:
        self.client.close()
        self.catalog.close()


@pytest.fixture
def cluster():
    meta = MemoryMetaStore()
    made: list = []

    def coord() -> Coord:
        made.append(Coord(meta, session_ttl=TTL))
        return made[-1]

    def proxy(node_id: str, **kw) -> Proxy:
        made.append(Proxy(meta, node_id, **kw))
        return made[-1]

    yield meta, coord, proxy
    for m in reversed(made):
        m.stop() if isinstance(m, Coord) else m.close()


def test_ddl_through_the_coord_is_seen_by_every_proxy_when_it_returns(cluster):
    meta, coord, proxy = cluster
    meta.put("session/querynode/7", b'{"address": "127.0.0.1:1"}')  # a live query node to place replicas on
    coord()
    a, b = proxy("a"), proxy("b")
    for i in range(3):  # no waiting anywhere: each call returned once both catalogs had it
        name = f"c{i}"
        cid = a.ddl.create_collection("", name, schema(name), 1, 0, {}, 0)
        assert b.catalog.get("default", name).id == cid
        b.ddl.create_partition("", name, "p1")
        assert a.catalog.get("default", name).has_partition("p1")
        a.ddl.create_alias("", f"{name}_al", name)
        assert b.catalog.describe_alias("", f"{name}_al").id == cid
        b.ddl.create_index("", name, "v", "", "FLAT", "L2", {})
        assert a.catalog.get_by_id(cid).index_for_field("v") is not None
        before = a.ddl.load("", name, None, 1, [])
        assert before.loaded is False and b.catalog.get_by_id(cid).loaded
        assert b.ddl.release("", name, None) is True
        assert not a.catalog.get_by_id(cid).loaded
        b.ddl.drop_alias("", f"{name}_al")
        assert a.ddl.drop_collection("", name) == cid
        assert not b.catalog.exists("default", name)
        with pytest.raises(errors.CollectionNotFound):
            b.catalog.get_by_id(cid)
    # the coord's errors reach the proxy as themselves (the handlers give them Milvus's codes)
    with pytest.raises(errors.CollectionNotFound):
        a.ddl.create_partition("", "nope", "p")
    with pytest.raises(errors.InvalidParameter, match="default partition"):
        a.ddl.drop_partition("", "nope", "_default")
    a.ddl.create_database("db2", {"k": "v"})
    assert b.catalog.database("db2")["properties"] == {"k": "v"}
    # a proxy whose session the coord did not see still reads its own DDL on return
    meta.delete("session/proxy/a")
    a.ddl.alter_database("db2", {"k2": "v"}, [])
    assert a.catalog.database("db2")["properties"] == {"k": "v", "k2": "v"}


def test_ddl_needs_the_active_coord_and_goes_on_through_the_standby(cluster):
    meta, coord, proxy = cluster
    first = coord()
    standby = coord()
    assert first.active and not standby.active
    p = proxy("a", timeout=1.0)
    p.ddl.create_collection("", "c", schema(), 1, 0, {}, 0)
    first.stop()  # a clean stop ends its session: the standby takes over at once
    assert standby.wait_active(10)
    t0 = time.monotonic()
    p.ddl.create_partition("", "c", "p1")
    took = time.monotonic() - t0
    print(f"first DDL after the takeover: {took * 1000:.0f} ms")
    assert p.catalog.get("", "c").has_partition("p1")
    standby.stop()
    # no coord: DDL fails with a retriable error once the client's timeout has passed
    t0 = time.monotonic()
    with pytest.raises(errors.ServiceNotReady):
        p.ddl.create_partition("", "c", "p2")
    assert time.monotonic() - t0 >= 0.5  # retried for about the client's timeout (1 s), not at once
    assert not p.catalog.get("", "c").has_partition("p2")
    third = coord()  # a new coord: DDL works again, on the catalog the others left
    assert third.active
    p.ddl.create_partition("", "c", "p2")
    assert [x.name for x in p.catalog.get("", "c").partitions] == ["_default", "p1", "p2"]


def test_resource_groups_through_the_manager_and_the_coord(cluster):
    meta, coord, proxy = cluster
    for n in ("7", "8"):  # two live query nodes
        meta.put(f"session/querynode/{n}", b'{"address": "127.0.0.1:1"}')
    coord()
    a = proxy("a")
    a.ddl.create_resource_group("rg1", GroupConfig(requests=1, limits=1))
    a.ddl.create_resource_group("rg1", GroupConfig(requests=1, limits=1))  # the same again: accepted
    with pytest.raises(errors.ResourceGroupAlreadyExist):
        a.ddl.create_resource_group("rg1", GroupConfig(requests=2, limits=2))
    groups = ResourceGroups(meta, lambda: {"7": "", "8": ""}).snapshot()
    assert len(groups["rg1"].nodes) == 1 and len(groups["__default_resource_group"].nodes) == 1
    a.ddl.create_collection("", "c", schema(), 1, 0, {}, 0)
    a.ddl.create_index("", "c", "v", "", "FLAT", "L2", {})
    a.ddl.load("", "c", None, 1, ["rg1"])
    assert a.catalog.get("", "c").resource_groups == ["rg1"]
    a.ddl.update_resource_groups({"rg1": GroupConfig(requests=1, limits=2)})
    with pytest.raises(errors.InvalidParameter, match="release it first"):  # the coord checks its catalog
        a.ddl.drop_resource_group("rg1")
    a.ddl.release("", "c", None)
    a.ddl.transfer_node("rg1", "__default_resource_group", 1)
    a.ddl.update_resource_groups({"rg1": GroupConfig(requests=0, limits=0)})
    a.ddl.drop_resource_group("rg1")
    a.ddl.drop_resource_group("rg1")  # gone already: accepted, as in Milvus
    groups = ResourceGroups(meta, lambda: {"7": "", "8": ""}).snapshot()
    assert sorted(groups) == ["__default_resource_group"] and len(groups["__default_resource_group"].nodes) == 2


def test_repeats_are_safe(manager):
    """What a repeat after a lost reply (retry=True) answers once its first try was applied."""
    manager.create_collection("", "c", schema(), 1, 0, {}, 0)
    manager.create_index("", "c", "v", "", "FLAT", "L2", {})
    (idx,) = manager.catalog.get("", "c").indexes
    assert manager.drop_index("", "c", "", "") == [idx.index_id]
    assert manager.drop_index("", "c", "", "", retry=True) == []
    with pytest.raises(errors.IndexNotFound):
        manager.drop_index("", "c", "", "")
    assert manager.create_collection("", "c", schema(), 1, 0, {}, 0) == manager.catalog.get("", "c").id


def test_add_and_alter_collection_field(manager):
    """A field added gets the next id (above the dynamic field's), goes before ``$meta``, moves the
    schema version and its update timestamp; a repeat answers the field it made; the old schema
    object is left whole (readers holding it); alter changes what Milvus allows and nothing else."""
    s = schema()
    s.enable_dynamic_field = True
    s.fields.append(FieldSchema("$meta", DataType.JSON, field_id=102, is_dynamic=True))
    s.fields[0].field_id, s.fields[1].field_id = 100, 101
    manager.create_collection("", "c", s, 1, 0, {}, 0)
    before = manager.catalog.get("default", "c").schema
    new = FieldSchema("tag", DataType.VARCHAR, max_length=8, nullable=True, type_params={"max_length": "8"})
    assert manager.add_collection_field("", "c", new) == 103
    after = manager.catalog.get("default", "c").schema
    assert [f.name for f in after.fields] == ["id", "v", "tag", "$meta"]
    assert (after.version, before.version) == (1, 0) and after.update_ts > 0
    assert [f.name for f in before.fields] == ["id", "v", "$meta"]
    assert manager.add_collection_field("", "c", new, retry=True) == 103  # the first try's
    with pytest.raises(errors.InvalidParameter, match="duplicate field name"):
        manager.add_collection_field("", "c", new)
    ts = after.update_ts
    manager.alter_collection_field("", "c", "tag", {"max_length": "64"}, [])
    tag = manager.catalog.get("default", "c").schema.field("tag")
    assert (tag.max_length, tag.type_params["max_length"]) == (64, "64")
    assert manager.catalog.get("default", "c").schema.update_ts > ts
    with pytest.raises(errors.InvalidParameter, match="does not allow update"):
        manager.alter_collection_field("", "c", "v", {"dim": "8"}, [])
    with pytest.raises(errors.FieldNotFound):
        manager.alter_collection_field("", "c", "nope", {"max_length": "8"}, [])
    with pytest.raises(errors.InvalidParameter, match="primary field id can not be altered"):
        manager.alter_collection_field("", "c", "id", {"mmap.enabled": "true"}, [])
    manager.alter_collection_field("", "c", "tag", {"mmap_enabled": "True"}, [])  # the API reference's name
    assert manager.catalog.get("default", "c").schema.field("tag").type_params["mmap.enabled"] == "true"
    manager.alter_collection_field("", "c", "tag", {}, ["mmap.enabled"])
    assert "mmap.enabled" not in manager.catalog.get("default", "c").schema.field("tag").type_params
    # the catalog's JSON round trip keeps them
    assert CollectionSchema.from_dict(after.to_dict()) == after
    t = manager.truncate_collection("", "c")
    info = manager.catalog.get("default", "c")
    assert info.truncated_ts == t > after.update_ts and [f.name for f in info.schema.fields] == [
        "id", "v", "tag", "$meta"]

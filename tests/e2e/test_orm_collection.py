"""The pymilvus ORM API (connections / Collection / Partition / utility / db) against the server:
metadata calls: connect, databases, collections, schemas, partitions, aliases, indexes, load state."""

from __future__ import annotations

import uuid

import pytest
from pymilvus import (
    Collection,
    CollectionSchema,
    DataType,
    FieldSchema,
    MilvusException,
    Partition,
    connections,
    db,
    utility,
)

from tests.e2e._helpers import cname, orm  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore:.*ORM-style PyMilvus API")


def _schema(dim=4, **kw):
    fields = [
        FieldSchema("pk", DataType.INT64, is_primary=True),
        FieldSchema("title", DataType.VARCHAR, max_length=32),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
    ]
    return CollectionSchema(fields, description="orm test", **kw)


def test_connect_version_and_collections(orm, cname):
    assert connections.has_connection(orm)
    assert utility.get_server_version(using=orm).startswith("v2.")
    coll = Collection(cname, _schema(), using=orm, shards_num=2)
    assert utility.has_collection(cname, using=orm)
    assert cname in utility.list_collections(using=orm)
    assert coll.num_shards == 2
    again = Collection(cname, using=orm)  # by name: the schema comes from the server
    assert [f.name for f in again.schema.fields] == ["pk", "title", "vec"]
    assert again.schema.fields[2].params["dim"] == 4
    assert again.schema.fields[1].params["max_length"] == 32
    assert again.schema.primary_field.name == "pk"
    assert coll.is_empty and coll.num_entities == 0
    new = cname + "_x"
    utility.rename_collection(cname, new, using=orm)
    assert not utility.has_collection(cname, using=orm)
    utility.drop_collection(new, using=orm)
    assert not utility.has_collection(new, using=orm)


def test_orm_databases(orm):
    name = "ormdb_" + uuid.uuid4().hex[:6]
    db.create_database(name, using=orm)
    try:
        assert name in db.list_database(using=orm)
        db.using_database(name, using=orm)
        Collection("inside", _schema(), using=orm)
        assert utility.list_collections(using=orm) == ["inside"]
        utility.drop_collection("inside", using=orm)
        db.using_database("default", using=orm)
    finally:
        db.drop_database(name, using=orm)
    assert name not in db.list_database(using=orm)


def test_orm_index_load_release(orm, cname):
    coll = Collection(cname, _schema(), using=orm)
    coll.create_index("vec", {"index_type": "IVF_FLAT", "metric_type": "IP", "params": {"nlist": 8}})
    assert coll.has_index()
    idx = coll.index()
    assert idx.field_name == "vec"
    assert idx.params["index_type"] == "IVF_FLAT" and idx.params["metric_type"] == "IP"
    assert utility.index_building_progress(cname, using=orm)["pending_index_rows"] == 0
    coll.load()
    assert utility.load_state(cname, using=orm).name == "Loaded"
    assert utility.loading_progress(cname, using=orm)["loading_progress"] == "100%"
    utility.wait_for_loading_complete(cname, using=orm, timeout=10)
    coll.release()
    assert utility.load_state(cname, using=orm).name == "NotLoad"
    coll.drop_index()
    assert not coll.has_index()
    with pytest.raises(MilvusException) as e:
        coll.load()
    assert e.value.code == 700


def test_orm_partitions(orm, cname):
    coll = Collection(cname, _schema(), using=orm)
    p = coll.create_partition("p1", description="first")
    assert isinstance(p, Partition) and p.name == "p1"
    assert coll.has_partition("p1") and utility.has_partition(cname, "p1", using=orm)
    assert sorted(x.name for x in coll.partitions) == ["_default", "p1"]
    p.insert([[1, 2], ["a", "b"], [[1, 0, 0, 0], [0, 1, 0, 0]]])
    coll.insert([[3], ["c"], [[0, 0, 1, 0]]])
    coll.flush()
    assert p.num_entities == 2 and coll.num_entities == 3
    coll.create_index("vec", {"index_type": "FLAT", "metric_type": "L2", "params": {}}, sync=False)
    p.load()
    assert sorted(r["pk"] for r in p.query("pk >= 0")) == [1, 2]
    p.release()
    coll.release()
    coll.drop_partition("p1")
    assert not coll.has_partition("p1")
    with pytest.raises(MilvusException) as e:
        coll.drop_partition("_default")
    assert e.value.code == 1100


def test_orm_aliases(orm, cname):
    coll = Collection(cname, _schema(), using=orm)
    alias = cname + "_al"
    utility.create_alias(cname, alias, using=orm)
    try:
        assert alias in utility.list_aliases(cname, using=orm)
        assert alias in coll.aliases
        via = Collection(alias, using=orm)
        via.insert([[1], ["x"], [[1, 2, 3, 4]]])
        assert coll.num_entities == 1
        other = Collection(cname + "_o", _schema(), using=orm)
        utility.alter_alias(other.name, alias, using=orm)
        assert utility.list_aliases(other.name, using=orm) == [alias]
        assert utility.list_aliases(cname, using=orm) == []
    finally:
        utility.drop_alias(alias, using=orm)
        if utility.has_collection(cname + "_o", using=orm):
            utility.drop_collection(cname + "_o", using=orm)
    assert utility.list_aliases(cname, using=orm) == []


def test_orm_all_field_types_schema(orm, cname):
    fields = [
        FieldSchema("pk", DataType.VARCHAR, is_primary=True, max_length=20),
        FieldSchema("b", DataType.BOOL),
        FieldSchema("i8", DataType.INT8),
        FieldSchema("i16", DataType.INT16),
        FieldSchema("i32", DataType.INT32),
        FieldSchema("i64", DataType.INT64, is_partition_key=True),
        FieldSchema("f", DataType.FLOAT),
        FieldSchema("d", DataType.DOUBLE),
        FieldSchema("s", DataType.VARCHAR, max_length=5),
        FieldSchema("j", DataType.JSON),
        FieldSchema("a", DataType.ARRAY, element_type=DataType.DOUBLE, max_capacity=3),
        FieldSchema("bv", DataType.BINARY_VECTOR, dim=32),
    ]
    Collection(cname, CollectionSchema(fields, enable_dynamic_field=True), using=orm, num_partitions=3)
    got = Collection(cname, using=orm).schema
    by_name = {f.name: f for f in got.fields}
    assert [f.name for f in got.fields] == [f.name for f in fields]
    assert {f.name: f.dtype for f in got.fields} == {f.name: f.dtype for f in fields}
    assert by_name["i64"].is_partition_key and by_name["a"].element_type == DataType.DOUBLE
    assert by_name["a"].params["max_capacity"] == 3 and by_name["bv"].params["dim"] == 32
    assert got.enable_dynamic_field
    assert len(Collection(cname, using=orm).partitions) == 3

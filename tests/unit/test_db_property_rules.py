"""Database and collection properties that take effect (Milvus's keys): the parsing rules, the coord's
DDL manager (max collections, denied DDL, a load's replicas and resource groups from the properties)
and the proxy's checks of writes and reads (vecdb.proxy.quota) on a clock the test moves."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pymilvus.grpc_gen import milvus_pb2

from tests.unit.test_quota import Clock
from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.config import QuotaSettings
from vecdb.coord.catalog import Catalog
from vecdb.coord.ddl import DdlManager
from vecdb.coord.properties import DENIED, check_not_denied, load_defaults, max_collections, property_flag
from vecdb.coord.resource_groups import DEFAULT_RESOURCE_GROUP, GroupConfig, ResourceGroups
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.proxy.quota import Quota, admit_collection, admit_database, property_rate
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryMetaStore

WRITES = ("insert", "upsert", "delete", "import")
READS = ("search", "query")
DDL_KINDS = {"ddl_collection": "collectionDDL", "ddl_partition": "partitionDDL", "ddl_index": "index",
             "flush": "flush", "compaction": "compaction"}


# --- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["true", "True", "TRUE", "tRuE", "1", "t", "T", " true "])
def test_a_flag_is_true_in_any_case(value):
    assert property_flag({"k": value}, "k")


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "f", "", "yes", "on", "2", "truee"])
def test_a_false_or_unparsable_flag_is_ignored(value):
    assert not property_flag({"k": value}, "k")
    assert not property_flag({}, "k")


def test_writing_and_reading_keys_refuse_only_their_calls():
    for kind in WRITES:
        with pytest.raises(errors.ForceDeny) as e:
            check_not_denied({"database.force.deny.writing": "true"}, kind)
        assert e.value.code == 9 and e.value.legacy_code == "ForceDeny" and e.value.message == DENIED
    for kind in (*READS, *DDL_KINDS):
        check_not_denied({"database.force.deny.writing": "true"}, kind)
    for kind in READS:
        with pytest.raises(errors.ForceDeny, match=r"quota exceeded\[reason=access has been disabled"):
            check_not_denied({"database.force.deny.reading": "True"}, kind)
    for kind in (*WRITES, *DDL_KINDS):
        check_not_denied({"database.force.deny.reading": "true"}, kind)
    check_not_denied({"database.force.deny.writing": "maybe"}, "insert")  # unparsable: ignored


def test_each_ddl_key_refuses_its_kind_and_the_ddl_key_all_of_them():
    for kind, suffix in DDL_KINDS.items():
        props = {f"database.force.deny.{suffix}": "true"}
        with pytest.raises(errors.ForceDeny):
            check_not_denied(props, kind)
        for other in set(DDL_KINDS) - {kind}:
            check_not_denied(props, other)
        with pytest.raises(errors.ForceDeny):
            check_not_denied({"database.force.deny.ddl": "1"}, kind)
    for kind in (*WRITES, *READS):
        check_not_denied({"database.force.deny.ddl": "true"}, kind)


def test_max_collections_parses_as_milvus_s_atoi():
    assert max_collections({}) is None and max_collections({"database.max.collections": ""}) is None
    assert max_collections({"database.max.collections": "3"}) == 3
    assert max_collections({"database.max.collections": "+0"}) == 0
    for bad in ("3.0", " 3", "many", "1_0"):
        with pytest.raises(errors.InvalidParameter, match="parse value of property fail, key:database.max.collections"):
            max_collections({"database.max.collections": bad})


def test_load_defaults_take_the_collection_s_then_the_database_s_each_on_its_own():
    db = {"database.replica.number": "3", "database.resource_groups": "rg1, rg2,"}
    assert load_defaults({}, {}) == (0, [])
    assert load_defaults({}, db) == (3, ["rg1", "rg2"])
    assert load_defaults({"collection.replica.number": "2"}, db) == (2, ["rg1", "rg2"])
    assert load_defaults({"collection.resource_groups": "rg3"}, db) == (3, ["rg3"])
    # not a positive integer, or an empty list: unset, the database's then
    assert load_defaults({"collection.replica.number": "two", "collection.resource_groups": " , "}, db) == (
        3, ["rg1", "rg2"])
    assert load_defaults({"collection.replica.number": "-1"}, {"database.replica.number": "0"}) == (0, [])


def test_property_rates_are_numbers_else_unset():
    props = {"collection.insertRate.max.mb": "0.5", "collection.searchRate.max.vps": "10",
             "collection.queryRate.max.qps": "x", "collection.deleteRate.max.mb": "-1",
             "collection.upsertRate.max.mb": "nan"}
    assert property_rate(props, "insert") == 0.5 and property_rate(props, "search") == 10
    assert property_rate(props, "query") == property_rate(props, "delete") == property_rate(props, "upsert") == -1
    assert property_rate(props, "ddl_collection") == -1 and property_rate({}, "insert") == -1


# --- the coord's DDL manager -------------------------------------------------------------------
def schema(name: str) -> CollectionSchema:
    return CollectionSchema(name, [FieldSchema("id", DataType.INT64, is_primary=True),
                                   FieldSchema("v", DataType.FLOAT_VECTOR, dim=4)])


@pytest.fixture
def manager():
    meta = MemoryMetaStore()
    catalog = Catalog(meta)
    nodes = {str(n): "local" for n in range(1, 5)}
    yield DdlManager(catalog, IdAllocator(meta), TimestampOracle(meta), ResourceGroups(meta, lambda: nodes))
    catalog.close()


def create(manager: DdlManager, db: str, name: str, properties: dict | None = None) -> None:
    manager.create_collection(db, name, schema(name), 1, 0, properties or {}, 0)


def test_max_collections_counts_the_database_s_collections(manager):
    manager.create_database("d", {"database.max.collections": "2"})
    create(manager, "d", "a")
    create(manager, "d", "b")
    create(manager, "default", "elsewhere")  # another database's count
    with pytest.raises(errors.CollectionLimitExceeded) as e:
        create(manager, "d", "c")
    assert e.value.code == 102 and e.value.message == "exceeded the limit number of collections[dbName=d][limit=2]"
    create(manager, "d", "a")  # the same collection again is no new one
    manager.alter_database("d", {"database.max.collections": "oops"}, [])
    with pytest.raises(errors.InvalidParameter):
        create(manager, "d", "c")
    manager.alter_database("d", {}, ["database.max.collections"])
    create(manager, "d", "c")
    assert len(manager.catalog.list_collections("d")) == 3


def test_denied_ddl_is_refused_until_allowed_again(manager):
    manager.create_database("d", {})
    create(manager, "d", "a")
    manager.alter_database("d", {"database.force.deny.collectionDDL": "true"}, [])
    for call in (lambda: create(manager, "d", "b"), lambda: manager.drop_collection("d", "a"),
                 lambda: manager.alter_collection("d", "a", {"x": "1"}, []),
                 lambda: manager.rename_collection("d", "a", "d", "b"), lambda: manager.truncate_collection("d", "a")):
        with pytest.raises(errors.ForceDeny, match=r"quota exceeded\[reason=access has been disabled"):
            call()
    manager.create_partition("d", "a", "p")  # partition DDL is another key
    manager.create_index("d", "a", "v", "", "FLAT", "L2", {})  # so is index DDL
    create(manager, "default", "b")  # and another database
    manager.alter_database("d", {"database.force.deny.collectionDDL": "false",
                                 "database.force.deny.partitionDDL": "true", "database.force.deny.index": "true"}, [])
    create(manager, "d", "b")
    with pytest.raises(errors.ForceDeny):
        manager.drop_partition("d", "a", "p")
    with pytest.raises(errors.ForceDeny):
        manager.load("d", "a", ["p"], 0, [])  # load_partitions is partition DDL
    with pytest.raises(errors.ForceDeny):
        manager.drop_index("d", "a", "v", "")
    manager.load("d", "a", None, 0, [])  # load_collection is collection DDL
    manager.alter_database("d", {"database.force.deny.ddl": "TRUE"}, [])
    with pytest.raises(errors.ForceDeny):
        manager.release("d", "a", None)
    manager.alter_database("d", {}, ["database.force.deny.ddl", "database.force.deny.partitionDDL"])
    manager.release("d", "a", None)
    manager.drop_partition("d", "a", "p")
    assert manager.catalog.list_databases() == ["default", "d"]


def test_a_load_naming_nothing_takes_the_properties(manager):
    manager.create_resource_group("rg", GroupConfig(requests=2, limits=2))  # two of the four nodes
    manager.create_database("d", {"database.replica.number": "2"})
    create(manager, "d", "a")
    create(manager, "d", "b", {"collection.replica.number": "1"})
    create(manager, "d", "c", {"collection.resource_groups": "rg"})
    for name in "abc":
        manager.create_index("d", name, "v", "", "FLAT", "L2", {})
    cat = manager.catalog

    def placed(name: str) -> tuple[int, list[str]]:
        info = cat.get("d", name)
        return info.replica_number, info.resource_groups

    manager.load("d", "a", None, 0, [])
    assert placed("a") == (2, [DEFAULT_RESOURCE_GROUP] * 2)
    manager.load("d", "b", None, 0, [])
    assert placed("b") == (1, [DEFAULT_RESOURCE_GROUP])  # the collection's before the database's
    with pytest.raises(errors.InvalidParameter, match="resource group num can only be 0, 1 or same"):
        manager.load("d", "c", None, 0, ["rg", DEFAULT_RESOURCE_GROUP])  # named groups: no property
    manager.load("d", "c", None, 1, [])  # a replica number named: no property either
    assert placed("c") == (1, [DEFAULT_RESOURCE_GROUP])
    manager.release("d", "c", None)
    manager.load("d", "c", None, 0, [])  # its group, the database's replica number
    assert placed("c") == (2, ["rg", "rg"])


def test_a_load_of_more_replicas_than_nodes_names_the_property_s_number(manager):
    manager.create_database("d", {"database.replica.number": "5"})
    create(manager, "d", "a")
    manager.create_index("d", "a", "v", "", "FLAT", "L2", {})
    with pytest.raises(errors.ResourceGroupNodeNotEnough, match="expectedNodeNum=5"):
        manager.load("d", "a", None, 0, [])
    assert not manager.catalog.get("d", "a").loaded


# --- the proxy's checks of writes and reads -------------------------------------------------------
class Databases:
    """The catalog as admit_collection reads it: each database's properties."""

    def __init__(self, **props: dict) -> None:
        self.props = {"default": {}, **props}

    def database(self, name: str) -> dict:
        return {"properties": self.props[name]}


def info(cid: int = 7, db: str = "default", **properties: str) -> CollectionInfo:
    return CollectionInfo(cid, db, f"c{cid}", schema(f"c{cid}"), 1, 0, 0, properties=dict(properties))


def test_force_deny_refuses_writes_and_reads_whatever_the_quota_settings(tmp_path):
    for settings in (QuotaSettings(), QuotaSettings(enabled=False)):
        dbs = Databases(d={"database.force.deny.writing": "true", "database.force.deny.reading": "false"})
        roles = SimpleNamespace(quota=Quota(settings, memory_used=lambda: 0), catalog=dbs)
        coll = info(db="d")
        for method in ("Insert", "Upsert", "Delete"):
            with pytest.raises(errors.ForceDeny):
                admit_collection(roles, method, milvus_pb2.InsertRequest(), None, coll)
        with pytest.raises(errors.ForceDeny):
            admit_collection(roles, "Import", None, None, coll)
        for method in ("Search", "HybridSearch", "Query"):
            admit_collection(roles, method, milvus_pb2.SearchRequest(), None, coll)
        admit_collection(roles, "Insert", milvus_pb2.InsertRequest(), None, info())  # the default database
        dbs.props["d"]["database.force.deny.reading"] = "true"
        with pytest.raises(errors.ForceDeny):
            admit_collection(roles, "Query", milvus_pb2.QueryRequest(), None, coll)
        dbs.props["d"]["database.force.deny.flush"] = "true"
        with pytest.raises(errors.ForceDeny):
            admit_database(roles, "Flush", milvus_pb2.FlushRequest(), None, "d")
        admit_database(SimpleNamespace(quota=None, catalog=dbs), "Flush", milvus_pb2.FlushRequest(), None, "default")


def test_a_collection_s_rate_property_is_one_more_bucket_of_that_collection():
    clock = Clock()
    quota = Quota(QuotaSettings(), clock=clock, memory_used=lambda: 0)
    roles = SimpleNamespace(quota=quota, catalog=Databases())
    limited, other = info(1, **{"collection.searchRate.max.vps": "10"}), info(2)
    search = milvus_pb2.SearchRequest(collection_name="c1", nq=4)

    def admitted(coll: CollectionInfo, tries: int = 100) -> int:
        n = 0
        for _ in range(tries):
            try:
                quota.admit("Search", search)
                admit_collection(roles, "Search", search, None, coll)
            except errors.RateLimited as e:
                assert e.code == 8 and "collection=c1" in e.message and "rate=10 vectors/s" in e.message
                continue
            n += 1
        return n

    assert admitted(limited) == 3  # 4 vectors a call, 10 a second: the third into debt
    assert admitted(other) == 100
    clock.now += 2
    assert admitted(limited) == 3
    limited.properties.pop("collection.searchRate.max.vps")  # drop_collection_properties
    assert admitted(limited) == 100


def test_a_call_refused_by_a_property_gives_back_what_the_settings_charged_it():
    clock = Clock()
    quota = Quota(QuotaSettings(query_rate=5), clock=clock, memory_used=lambda: 0)
    dbs = Databases(d={"database.force.deny.reading": "true"})
    roles = SimpleNamespace(quota=quota, catalog=dbs)
    query = milvus_pb2.QueryRequest(collection_name="c7")
    for _ in range(20):  # refused by the database: the server-wide bucket stays full
        quota.admit("Query", query)
        with pytest.raises(errors.ForceDeny):
            admit_collection(roles, "Query", query, None, info(db="d"))
    limited = info(8, **{"collection.queryRate.max.qps": "1"})
    quota.admit("Query", query)
    admit_collection(roles, "Query", query, None, limited)
    for _ in range(20):  # refused by the collection's rate: likewise
        quota.admit("Query", query)
        with pytest.raises(errors.RateLimited):
            admit_collection(roles, "Query", query, None, limited)
    n = 0
    for _ in range(20):
        try:
            quota.admit("Query", query)
        except errors.RateLimited:
            continue
        n += 1
    assert n == 4  # the 5 a second of the setting, less the one call that went through


def test_rate_properties_need_the_quota_enabled_as_in_milvus():
    quota = Quota(QuotaSettings(enabled=False), memory_used=lambda: 0)
    roles = SimpleNamespace(quota=quota, catalog=Databases())
    coll = info(**{"collection.insertRate.max.mb": "0.000001"})
    for _ in range(10):
        admit_collection(roles, "Insert", milvus_pb2.InsertRequest(collection_name="c7", num_rows=3), None, coll)

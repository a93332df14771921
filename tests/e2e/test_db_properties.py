"""Database and collection properties that take effect, through pymilvus on every deployment: a
database's max collections (102), its force-deny switches for writes, reads and DDL (9, Milvus's
"quota exceeded[reason=access has been disabled by the administrator]"), allowed again once set
false or dropped; a load that names no replica number or resource groups takes the collection's,
else the database's (standalone's one node refuses two replicas, the cluster's three query nodes
serve them); a collection's own search and insert rates (8). On the cluster the properties are set
through the first proxy and take effect on the last: each proxy reads them from its catalog."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from pymilvus import AnnSearchRequest, MilvusClient, MilvusException, RRFRanker
from pymilvus.grpc_gen import milvus_pb2

from tests.e2e._helpers import count, float_schema, make_collection, raw_stub

DIM = 4
DEFAULT_RG = "__default_resource_group"
DENIED = "quota exceeded[reason=access has been disabled by the administrator]"
DENY_KEYS = [f"database.force.deny.{k}" for k in
             ("writing", "reading", "ddl", "collectionDDL", "partitionDDL", "index", "flush", "compaction")]


@dataclass
class Db:
    name: str
    admin: MilvusClient  # the first proxy, default database: sets the properties
    client: MilvusClient  # the last proxy, in the database: makes the calls
    uri: str  # the last proxy's


@pytest.fixture
def db(server):
    ports = getattr(server, "ports", [server.port])
    name = "props_" + uuid.uuid4().hex[:8]
    admin = MilvusClient(uri=f"http://127.0.0.1:{ports[0]}")
    admin.create_database(name)
    uri = f"http://127.0.0.1:{ports[-1]}"
    client = MilvusClient(uri=uri, db_name=name)
    yield Db(name, admin, client, uri)
    admin.drop_database_properties(name, DENY_KEYS)  # a deny key would refuse the cleanup
    for c in client.list_collections():
        client.drop_collection(c)
    client.close()
    admin.drop_database(name)
    admin.close()


def refused(call, code: int = 9) -> str:
    """The message of the MilvusException ``call`` raises, checked to carry ``code``."""
    with pytest.raises(MilvusException) as e:
        call()
    assert e.value.code == code, e.value
    return e.value.message


def rows(start: int, n: int) -> list[dict]:
    return [{"id": i, "vec": [float(i)] * DIM} for i in range(start, start + n)]


def test_max_collections_refuses_a_create_past_it(db):
    c = db.client
    db.admin.alter_database_properties(db.name, {"database.max.collections": 2})
    for n in ("a", "b"):
        c.create_collection(n, schema=float_schema(DIM))
    msg = refused(lambda: c.create_collection("c", schema=float_schema(DIM)), 102)
    assert msg == f"exceeded the limit number of collections[dbName={db.name}][limit=2]"
    assert not c.has_collection("c")
    c.create_collection("a", schema=float_schema(DIM))  # the same collection again is no new one
    db.admin.alter_database_properties(db.name, {"database.max.collections": 3})
    c.create_collection("c", schema=float_schema(DIM))
    refused(lambda: c.create_collection("d", schema=float_schema(DIM)), 102)
    db.admin.drop_database_properties(db.name, ["database.max.collections"])
    c.create_collection("d", schema=float_schema(DIM))
    assert sorted(c.list_collections()) == ["a", "b", "c", "d"]


def test_force_deny_writing_refuses_writes_until_set_false_or_dropped(db):
    c = db.client
    make_collection(c, "w", float_schema(DIM))
    c.insert("w", rows(0, 10))
    db.admin.alter_database_properties(db.name, {"database.force.deny.writing": True})
    writes = {"insert": lambda: c.insert("w", rows(10, 5)), "upsert": lambda: c.upsert("w", rows(0, 5)),
              "delete": lambda: c.delete("w", ids=[1, 2]),
              "import": lambda: _bulk_insert(db, "w")}
    for what, call in writes.items():
        assert refused(call) == DENIED, what
    assert count(c, "w", consistency_level="Strong") == 10  # reads go on; nothing refused was written
    assert len(c.search("w", [[0.5] * DIM], limit=3)[0]) == 3
    db.admin.alter_database_properties(db.name, {"database.force.deny.writing": "false"})
    c.insert("w", rows(10, 5))
    db.admin.alter_database_properties(db.name, {"database.force.deny.writing": "TRUE"})
    assert refused(lambda: c.delete("w", ids=[1])) == DENIED
    db.admin.alter_database_properties(db.name, {"database.force.deny.writing": "maybe"})  # no bool: ignored
    c.delete("w", ids=[1])
    db.admin.alter_database_properties(db.name, {"database.force.deny.writing": "true"})
    refused(lambda: c.insert("w", rows(15, 5)))
    db.admin.drop_database_properties(db.name, ["database.force.deny.writing"])
    c.insert("w", rows(15, 5))
    assert count(c, "w", consistency_level="Strong") == 19


def _bulk_insert(db: Db, collection: str) -> None:
    """A bulk insert into the database (pymilvus's do_bulk_insert names no database)."""
    with raw_stub(db.uri) as stub:
        st = stub.Import(milvus_pb2.ImportRequest(db_name=db.name, collection_name=collection,
                                                  files=["nowhere.json"])).status
    if st.code:
        raise MilvusException(st.code, st.reason)


def test_force_deny_reading_refuses_reads_until_set_false_or_dropped(db):
    c = db.client
    make_collection(c, "r", float_schema(DIM))
    c.insert("r", rows(0, 10))
    db.admin.alter_database_properties(db.name, {"database.force.deny.reading": True})
    ann = AnnSearchRequest([[0.5] * DIM], "vec", {"metric_type": "L2"}, limit=3)
    reads = {"search": lambda: c.search("r", [[0.5] * DIM], limit=3),
             "hybrid search": lambda: c.hybrid_search("r", [ann, ann], RRFRanker(), limit=3),
             "query": lambda: c.query("r", "id >= 0", limit=3),
             "count": lambda: count(c, "r")}
    for what, call in reads.items():
        assert refused(call) == DENIED, what
    c.insert("r", rows(10, 5))  # writes go on
    db.admin.alter_database_properties(db.name, {"database.force.deny.reading": False})
    assert len(c.search("r", [[0.5] * DIM], limit=3)[0]) == 3
    db.admin.alter_database_properties(db.name, {"database.force.deny.reading": "True"})
    refused(lambda: count(c, "r"))
    db.admin.drop_database_properties(db.name, ["database.force.deny.reading"])
    assert count(c, "r", consistency_level="Strong") == 15
    assert len(c.hybrid_search("r", [ann, ann], RRFRanker(), limit=3)[0]) == 3


def test_force_deny_ddl_and_its_narrower_keys_refuse_their_ddl(db):
    c = db.client
    make_collection(c, "t", float_schema(DIM), load=False)
    c.insert("t", rows(0, 10))
    calls = {
        "collectionDDL": {"create collection": lambda: c.create_collection("t2", schema=float_schema(DIM)),
                          "drop collection": lambda: c.drop_collection("t"), "load": lambda: c.load_collection("t"),
                          "alter collection": lambda: c.alter_collection_properties("t", {"note": "x"})},
        "partitionDDL": {"create partition": lambda: c.create_partition("t", "p")},
        "index": {"drop index": lambda: c.drop_index("t", "vec")},
        "flush": {"flush": lambda: c.flush("t")},
        "compaction": {"compact": lambda: c.compact("t")},
    }
    db.admin.alter_database_properties(db.name, {"database.force.deny.ddl": True})
    for kind in calls.values():
        for what, call in kind.items():
            assert refused(call) == DENIED, what
    c.insert("t", rows(10, 5))  # not DDL
    for key, kind in calls.items():  # each narrower key refuses its own calls only
        db.admin.alter_database_properties(db.name, {"database.force.deny.ddl": False,
                                                     f"database.force.deny.{key}": True})
        for what, call in kind.items():
            assert refused(call) == DENIED, (key, what)
        assert c.has_partition("t", "_default")  # reads of the catalog are no DDL
        if key != "flush":
            c.flush("t")  # another kind's key
        db.admin.drop_database_properties(db.name, [f"database.force.deny.{key}"])
    c.create_partition("t", "p")
    c.flush("t")
    c.drop_index("t", "vec")
    c.create_index("t", _index(c), sync=False)
    c.load_collection("t")
    assert count(c, "t", consistency_level="Strong") == 15


def _index(c: MilvusClient):
    idx = c.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    return idx


def test_a_load_naming_no_replicas_takes_the_collection_s_then_the_database_s(server, db):
    c, cluster = db.client, hasattr(server, "log_offsets")  # a LocalCluster: coord, three query nodes...
    name = "rep_" + uuid.uuid4().hex[:8]  # num_loaded_replica is by collection name across databases
    make_collection(c, name, float_schema(DIM), load=False)
    c.insert(name, rows(0, 10))

    def loaded_replicas() -> int:
        groups = c.describe_replica(name)
        if cluster:  # standalone answers its one node whatever was asked
            assert len(groups) == c.describe_resource_group(DEFAULT_RG).num_loaded_replica[name]
        return c.describe_resource_group(DEFAULT_RG).num_loaded_replica[name]

    db.admin.alter_database_properties(db.name, {"database.replica.number": 2})
    if cluster:  # three query nodes: two replicas
        c.load_collection(name)  # pymilvus sends replica_number 0: none named
        assert loaded_replicas() == 2
        assert count(c, name, consistency_level="Strong") == 10
        c.release_collection(name)
    else:  # one node: two replicas cannot be placed, and the refusal says two were asked for
        msg = refused(lambda: c.load_collection(name), 304)
        assert "expectedNodeNum=2" in msg
    c.alter_collection_properties(name, {"collection.replica.number": 1})  # the collection's comes first
    c.load_collection(name)
    assert loaded_replicas() == 1
    c.release_collection(name)
    c.drop_collection_properties(name, ["collection.replica.number"])
    db.admin.alter_database_properties(db.name, {"database.resource_groups": "no_such_group"})
    assert "no_such_group" in refused(lambda: c.load_collection(name), 300)
    c.load_collection(name, replica_number=1)  # a number named: no property applies
    assert loaded_replicas() == 1
    assert count(c, name, consistency_level="Strong") == 10


def test_a_collection_s_rate_properties_limit_that_collection_only(db):
    c = db.client
    make_collection(c, "lim", float_schema(DIM), properties={"collection.searchRate.max.vps": 1})
    make_collection(c, "free", float_schema(DIM))
    for n in ("lim", "free"):
        c.insert(n, rows(0, 10))
    five = [[0.5] * DIM] * 5

    def search(n: str):
        return c.search(n, five, limit=3, retry_on_rate_limit=False)

    search("lim")  # a full bucket lets one call through into debt: five vectors at one a second
    assert "collection=lim" in refused(lambda: search("lim"), 8)
    for _ in range(5):
        search("free")
    c.alter_collection_properties("lim", {"collection.insertRate.max.mb": 0.0001})  # ~100 bytes a second
    c.insert("lim", rows(10, 5))
    refused(lambda: c.insert("lim", rows(15, 5), retry_on_rate_limit=False), 8)
    c.insert("free", rows(10, 5), retry_on_rate_limit=False)
    c.drop_collection_properties("lim", ["collection.searchRate.max.vps", "collection.insertRate.max.mb"])
    for _ in range(3):
        search("lim")
    c.insert("lim", rows(15, 5), retry_on_rate_limit=False)
    assert count(c, "lim", consistency_level="Strong") == 20

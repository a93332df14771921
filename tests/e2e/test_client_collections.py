"""MilvusClient against the standalone server: connect, health, databases, collections, schemas."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2

from tests.e2e._helpers import count, float_schema, float_vectors, make_collection, raw_stub


def test_connect_health_and_version(server, client, uri):
    # the API level vecdb speaks, which frameworks gate features on (BM25 hybrid search from 2.5.0)
    assert client.get_server_version() == "v2.6.0"
    cluster = hasattr(server, "ports")
    with raw_stub(uri) as stub:
        health = stub.CheckHealth(milvus_pb2.CheckHealthRequest())
        assert health.status.code == 0 and health.isHealthy is True
        states = stub.GetComponentStates(milvus_pb2.GetComponentStatesRequest())
        assert states.state.state_code == 1  # Healthy
        assert states.state.role == ("proxy" if cluster else "standalone")
        # a cluster's proxy lists the query nodes it reads from (LocalCluster runs three)
        assert [s.role for s in states.subcomponent_states] == (["querynode"] * 3 if cluster else [])
        mode = stub.Connect(milvus_pb2.ConnectRequest()).server_info.deploy_mode
        assert mode == ("CLUSTER" if cluster else "STANDALONE")


def test_databases_create_list_use_drop(uri):
    db = "db_" + uuid.uuid4().hex[:8]
    c = MilvusClient(uri=uri)
    try:
        assert "default" in c.list_databases()
        c.create_database(db)
        assert db in c.list_databases()
        assert c.describe_database(db)["name"] == db
        c.alter_database_properties(db, {"database.max.collections": 5, "note": "x"})
        c.drop_database_properties(db, ["note"])  # was ignored: the catalog only merged properties
        props = c.describe_database(db)
        assert props["database.max.collections"] == "5" and "note" not in props
        c.use_database(db)
        c.create_collection("in_db", dimension=4)
        assert c.list_collections() == ["in_db"]
        c.insert("in_db", [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
        assert count(c, "in_db") == 1
        # the collection lives in its database only
        other = MilvusClient(uri=uri)
        assert not other.has_collection("in_db")
        other.close()
        in_db = MilvusClient(uri=uri, db_name=db)
        assert in_db.has_collection("in_db")
        in_db.close()
        c.drop_collection("in_db")
        c.use_database("default")
        c.drop_database(db)
        assert db not in c.list_databases()
        with pytest.raises(MilvusException) as e:
            c.use_database(db)
        assert e.value.code == 800
    finally:
        c.close()


def test_quick_setup_create_collection(client, name):
    client.create_collection(name, dimension=8)
    assert client.has_collection(name)
    assert name in client.list_collections()
    desc = client.describe_collection(name)
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields["id"]["type"] == DataType.INT64 and fields["id"]["is_primary"]
    assert fields["vector"]["type"] == DataType.FLOAT_VECTOR and fields["vector"]["params"]["dim"] == 8
    assert desc["enable_dynamic_field"] is True
    # quick setup creates an index and loads
    assert client.get_load_state(name)["state"].name == "Loaded"
    vecs = float_vectors(5, 8, seed=1)
    client.insert(name, [{"id": i, "vector": vecs[i], "color": f"c{i}"} for i in range(5)])
    rows = client.query(name, filter="id >= 3", output_fields=["color"])
    assert sorted((r["id"], r["color"]) for r in rows) == [(3, "c3"), (4, "c4")]
    hits = client.search(name, [vecs[2].tolist()], limit=1)
    assert hits[0][0].id == 2


def test_quick_setup_varchar_pk_and_metric(client, name):
    client.create_collection(name, dimension=4, primary_field_name="pk", id_type="string", max_length=16,
                             metric_type="IP", auto_id=False)
    desc = client.describe_collection(name)
    pk = next(f for f in desc["fields"] if f["name"] == "pk")
    assert pk["type"] == DataType.VARCHAR and pk["params"]["max_length"] == 16
    client.insert(name, [{"pk": "a", "vector": [1, 0, 0, 0]}, {"pk": "b", "vector": [0, 2, 0, 0]}])
    hits = client.search(name, [[0, 1, 0, 0]], limit=2)
    assert [h.id for h in hits[0]] == ["b", "a"]
    assert hits[0][0]["distance"] == pytest.approx(2.0)


def test_describe_has_list_drop_rename(client, name):
    make_collection(client, name, float_schema(4))
    new = name + "_r"
    try:
        client.insert(name, [{"id": 7, "vec": [1, 2, 3, 4]}])
        client.rename_collection(name, new)
        assert not client.has_collection(name)
        assert client.has_collection(new)
        assert new in client.list_collections() and name not in client.list_collections()
        assert client.describe_collection(new)["collection_name"] == new
        assert client.get(new, ids=[7])[0]["id"] == 7
    finally:
        client.drop_collection(new)
    assert not client.has_collection(new)
    client.drop_collection(new)  # dropping a missing collection is a no-op, as in Milvus


def test_batch_describe_collection(client, uri, name):
    """BatchDescribeCollection: each named (then each id's) collection's DescribeCollection answer, in
    order; one that is not there its own error status, the others still answered."""
    client.create_collection(name, dimension=4)
    cid = client.describe_collection(name)["collection_id"]
    with raw_stub(uri) as stub:
        r = stub.BatchDescribeCollection(milvus_pb2.BatchDescribeCollectionRequest(
            collection_name=[name, name + "_nope"], collectionID=[cid]))
    assert r.status.code == 0 and len(r.responses) == 3
    assert r.responses[0].collection_name == name and r.responses[0].collectionID == cid
    assert [f.name for f in r.responses[0].schema.fields] == ["id", "vector"]
    assert r.responses[1].status.code == 100 and "nope" in r.responses[1].status.reason
    assert r.responses[2].collection_name == name


def test_get_collection_stats_and_load_state(client, name):
    make_collection(client, name, float_schema(4))
    client.insert(name, [{"id": i, "vec": [i, 1, 1, 1]} for i in range(10)])
    client.delete(name, ids=[0, 1])
    # Milvus's row_count: the segments' rows, deleted ones until compaction; count(*) is the live count
    assert client.get_collection_stats(name)["row_count"] == 10 and count(client, name) == 8
    client.release_collection(name)
    assert client.get_load_state(name)["state"].name == "NotLoad"
    assert client.get_collection_stats(name)["row_count"] == 10  # the same when not loaded, loading nothing
    assert client.get_load_state(name)["state"].name == "NotLoad"
    client.load_collection(name)
    assert client.get_load_state(name)["state"].name == "Loaded"


def _all_types_schema(dynamic: bool):
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=dynamic)
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
    s.add_field("fvec", DataType.FLOAT_VECTOR, dim=8)
    s.add_field("b", DataType.BOOL)
    s.add_field("i8", DataType.INT8)
    s.add_field("i16", DataType.INT16)
    s.add_field("i32", DataType.INT32)
    s.add_field("i64", DataType.INT64)
    s.add_field("f", DataType.FLOAT)
    s.add_field("d", DataType.DOUBLE)
    s.add_field("s", DataType.VARCHAR, max_length=10)
    s.add_field("j", DataType.JSON)
    s.add_field("arr_i", DataType.ARRAY, element_type=DataType.INT64, max_capacity=5)
    s.add_field("arr_s", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=3, max_length=8)
    return s


def test_all_scalar_types_roundtrip(client, name):
    make_collection(client, name, _all_types_schema(dynamic=True), field="fvec")
    desc = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert desc["s"]["params"]["max_length"] == 10
    assert desc["arr_i"]["element_type"] == DataType.INT64 and desc["arr_i"]["params"]["max_capacity"] == 5
    assert desc["arr_s"]["element_type"] == DataType.VARCHAR
    vecs = float_vectors(3, 8, seed=3)
    rows = [
        {"pk": f"k{i}", "fvec": vecs[i], "b": i % 2 == 0, "i8": -128 + i, "i16": 32767 - i, "i32": -(2**31) + i,
         "i64": 2**62 + i, "f": 1.5 * i, "d": 1e300 / (i + 1), "s": "é" * i, "j": {"a": i, "n": [i, {"x": "y"}]},
         "arr_i": list(range(i)), "arr_s": ["x"] * i, "extra": f"dyn{i}"}
        for i in range(3)
    ]
    client.insert(name, rows)
    got = {r["pk"]: r for r in client.get(name, ids=["k0", "k1", "k2"], output_fields=["*"])}
    for want in rows:
        r = got[want["pk"]]
        for key in ("b", "i8", "i16", "i32", "i64", "s", "j", "arr_i", "arr_s", "extra"):
            assert r[key] == want[key], key
        assert r["f"] == pytest.approx(want["f"])
        assert r["d"] == pytest.approx(want["d"], rel=1e-15)
        np.testing.assert_allclose(np.asarray(r["fvec"], np.float32), want["fvec"])
    assert [r["pk"] for r in client.query(name, filter="j['a'] >= 1 and array_length(arr_i) == 2")] == ["k2"]
    assert [r["pk"] for r in client.query(name, filter='extra == "dyn1"')] == ["k1"]


def test_binary_and_float16_vectors(client, name):
    s = MilvusClient.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
    s.add_field("bv", DataType.BINARY_VECTOR, dim=16)
    s.add_field("hv", DataType.FLOAT16_VECTOR, dim=4)
    idx = client.prepare_index_params()
    idx.add_index("bv", index_type="BIN_FLAT", metric_type="HAMMING")
    idx.add_index("hv", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s)
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    bits = np.array([[0, 0], [255, 0], [255, 255]], np.uint8)
    half = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [0.5, 0, 0, 0]], np.float16)
    res = client.insert(name, [{"bv": bits[i].tobytes(), "hv": half[i]} for i in range(3)])
    ids = list(res["ids"])
    assert len(set(ids)) == 3
    hits = client.search(name, [np.array([255, 0], np.uint8).tobytes()], anns_field="bv", limit=3,
                         search_params={"metric_type": "HAMMING"})
    assert hits[0][0].id == ids[1] and {h.id for h in hits[0][1:]} == {ids[0], ids[2]}
    assert [h["distance"] for h in hits[0]] == [0.0, 8.0, 8.0]
    got = client.get(name, ids=[ids[2]], output_fields=["bv", "hv"])[0]
    assert bytes(got["bv"][0]) == bits[2].tobytes()
    np.testing.assert_array_equal(np.frombuffer(got["hv"][0], np.float16), half[2])  # pymilvus: raw bytes
    hits = client.search(name, [np.array([0.4, 0, 0, 0], np.float16)], anns_field="hv", limit=1)
    assert hits[0][0].id == ids[2]
    assert hits[0][0]["distance"] == pytest.approx(0.01, abs=1e-3)


def test_partition_key_collection(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    make_collection(client, name, s, num_partitions=4)
    desc = client.describe_collection(name)
    assert desc["num_partitions"] == 4
    assert next(f for f in desc["fields"] if f["name"] == "tenant").get("is_partition_key") is True
    assert len(client.list_partitions(name)) == 4
    vecs = float_vectors(40, 4, seed=9)
    client.insert(name, [{"id": i, "tenant": f"t{i % 5}", "vec": vecs[i]} for i in range(40)])
    assert count(client, name) == 40
    rows = client.query(name, filter='tenant == "t3"', output_fields=["tenant"])
    assert sorted(r["id"] for r in rows) == list(range(3, 40, 5))
    hits = client.search(name, [vecs[8]], filter='tenant == "t3"', limit=3, output_fields=["tenant"])
    assert hits[0][0].id == 8 and all(h["entity"]["tenant"] == "t3" for h in hits[0])
    with pytest.raises(MilvusException) as e:
        client.create_partition(name, "p1")
    assert e.value.code == 1100


def test_auto_id_assigns_unique_ids(client, name):
    make_collection(client, name, _schema_auto_id())
    res1 = client.insert(name, [{"vec": [float(i)] * 4} for i in range(5)])
    res2 = client.insert(name, [{"vec": [float(i)] * 4} for i in range(5)])
    ids = list(res1["ids"]) + list(res2["ids"])
    assert res1["insert_count"] == 5 and len(set(ids)) == 10
    assert sorted(r["id"] for r in client.query(name, filter="id >= 0")) == sorted(ids)


def _schema_auto_id():
    s = MilvusClient.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    return s

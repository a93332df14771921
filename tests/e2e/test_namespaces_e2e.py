"""Namespaces (Milvus 3.0) through pymilvus 3.0 on every deployment: a collection created with
``enable_namespace`` keeps each tenant's rows apart. partition_key mode (the default): inserts fill the
hidden ``$namespace_id``, searches, queries, counts and hybrid searches naming a namespace see its rows
alone, a delete naming one deletes only there; describe_collection and ``*`` hide the field. partition
mode: each namespace is a partition made with CreateNamespace, listed, counted and dropped by the
namespace RPCs. The refusals: a read or write without its namespace, one naming a namespace where
there are none, a partition key of the user's own, the namespace RPCs outside partition mode."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, RRFRanker
from pymilvus.grpc_gen import milvus_pb2

from tests.e2e._helpers import raw_stub

DIM = 8
TENANTS = {"acme": range(0, 40), "globex": range(100, 130), 'o"dd\\ name': range(200, 205)}


def _schema(**kw):
    schema = MilvusClient.create_schema(enable_namespace=True, **kw)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("w", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    return schema


def _rows(ids) -> list[dict]:
    rng = np.random.default_rng(ids[0])
    return [{"id": i, "v": rng.random(DIM).tolist(), "w": rng.random(DIM).tolist(), "tag": f"t{i % 3}"} for i in ids]


def _create(client, name, **kw):
    client.create_collection(name, schema=_schema(), **kw)
    ip = client.prepare_index_params()
    ip.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    ip.add_index(field_name="w", index_type="FLAT", metric_type="L2")
    client.create_index(name, ip)
    client.load_collection(name)


def _ids(rows) -> set[int]:
    return {r["id"] for r in rows}


@pytest.fixture
def tenants(client, name):
    _create(client, name)
    for ns, ids in TENANTS.items():
        client.insert(name, _rows(list(ids)), namespace=ns)
    return name


def test_reads_see_their_namespace_alone(client, name, tenants):
    for ns, ids in TENANTS.items():
        got = client.query(name, filter="id >= 0", output_fields=["*"], namespace=ns, consistency_level="Strong")
        assert _ids(got) == set(ids)
        assert all(set(r) == {"id", "v", "w", "tag"} for r in got)  # $namespace_id stays hidden
        count = client.query(name, filter="", output_fields=["count(*)"], namespace=ns)
        assert count[0]["count(*)"] == len(ids)
        hits = client.search(name, data=[_rows(list(ids))[0]["v"]], anns_field="v", limit=50, namespace=ns,
                             output_fields=["tag"])
        assert {h["id"] for h in hits[0]} == set(ids) and hits[0][0]["id"] == ids[0]
    acme = set(TENANTS["acme"])
    filtered = client.query(name, filter='tag == "t1"', output_fields=["tag"], namespace="acme")
    assert _ids(filtered) == {i for i in acme if i % 3 == 1}
    own = client.query(name, filter='$namespace_id == "acme"', output_fields=["id"], namespace="globex")
    assert own == []  # the field reads in a filter too: no acme row in globex
    reqs = [AnnSearchRequest([_rows([100])[0]["v"]], "v", {}, limit=10),
            AnnSearchRequest([_rows([100])[0]["w"]], "w", {}, limit=10)]
    fused = client.hybrid_search(name, reqs, RRFRanker(), limit=10, namespace="globex")
    assert {h["id"] for h in fused[0]} <= set(TENANTS["globex"]) and fused[0][0]["id"] == 100
    client.flush(name)  # sealed segments read the same way
    got = client.query(name, filter="id >= 0", output_fields=["id"], namespace="globex")
    assert _ids(got) == set(TENANTS["globex"])


def test_a_filter_cannot_reach_out_of_its_namespace(client, uri, name, tenants):
    """The namespace's condition holds a whole filter: text that closes its parentheses is refused, a
    string that looks like it stays a string."""
    for flt in ("id >= 0) or (id >= 0", "id >= 0 ) or ( id >= 0"):
        with pytest.raises(MilvusException, match="cannot parse expression"):
            client.query(name, filter=flt, namespace="acme")
        with pytest.raises(MilvusException, match="cannot parse expression"):
            client.search(name, data=[[0.0] * DIM], anns_field="v", filter=flt, limit=5, namespace="acme")
        with raw_stub(uri) as stub:
            r = stub.Delete(milvus_pb2.DeleteRequest(collection_name=name, expr=flt, namespace="acme"))
        assert r.status.code == 1100
    assert client.query(name, filter='tag == ") or (id >= 0"', namespace="acme") == []
    with pytest.raises(MilvusException, match="not found"):  # search by primary keys: this namespace's rows only
        client.search(name, ids=[100], anns_field="v", limit=3, namespace="acme")
    hits = client.search(name, ids=[100], anns_field="v", limit=3, namespace="globex")
    assert hits[0][0]["id"] == 100
    assert client.query(name, filter="", output_fields=["count(*)"], namespace="globex")[0]["count(*)"] == 30


def test_describe_hides_the_field(client, name, tenants):
    d = client.describe_collection(name)
    assert d["enable_namespace"] is True
    assert [f["name"] for f in d["fields"]] == ["id", "v", "w", "tag"]


def test_delete_naming_a_namespace_deletes_only_there(client, uri, name, tenants):
    with raw_stub(uri) as stub:  # (pymilvus 3.0.2's delete sends no namespace)
        r = stub.Delete(milvus_pb2.DeleteRequest(collection_name=name, expr="id in [0, 1, 100, 101]",
                                                 namespace="globex"))
    assert r.status.code == 0, r.status.reason
    assert _ids(client.query(name, filter="id in [0, 1, 100, 101]", namespace="acme",
                             consistency_level="Strong")) == {0, 1}
    assert _ids(client.query(name, filter="id in [0, 1, 100, 101]", namespace="globex",
                             consistency_level="Strong")) == set()
    client.delete(name, ids=[0])  # without a namespace: wherever the key is
    assert _ids(client.query(name, filter="id in [0, 1]", namespace="acme", consistency_level="Strong")) == {1}


def test_refusals(client, uri, name, tenants):
    with pytest.raises(MilvusException, match="must name a namespace") as e:
        client.insert(name, _rows([900]))
    assert e.value.code == 1100
    with pytest.raises(MilvusException, match="must name a namespace"):
        client.query(name, filter="id >= 0")
    with pytest.raises(MilvusException, match="must name a namespace"):
        client.search(name, data=[[0.0] * DIM], anns_field="v", limit=3)
    with pytest.raises(MilvusException, match="must name a namespace"):
        client.upsert(name, _rows([901]))  # (pymilvus 3.0.2's upsert sends none)
    with pytest.raises(MilvusException, match="namespace should not be empty"):
        client.insert(name, _rows([902]), namespace="")
    with pytest.raises(MilvusException, match="cannot be altered"):
        client.alter_collection_properties(name, {"namespace.mode": "partition"})
    with raw_stub(uri) as stub:  # the namespace RPCs serve partition mode only
        r = stub.ListNamespaces(milvus_pb2.ListNamespacesRequest(collection_name=name))
    assert r.status.code == 1100 and "namespace.mode=partition" in r.status.reason
    plain = name + "_plain"
    client.create_collection(plain, dimension=DIM)
    try:
        with pytest.raises(MilvusException, match="namespace is not enabled") as e:
            client.insert(plain, [{"id": 1, "vector": [0.0] * DIM}], namespace="acme")
        assert e.value.code == 1100
        with pytest.raises(MilvusException, match="namespace is not enabled"):
            client.query(plain, filter="id >= 0", namespace="acme")
    finally:
        client.drop_collection(plain)
    keyed = _schema()
    keyed.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    with pytest.raises(MilvusException, match="not supported with partition key"):
        client.create_collection(name + "_keyed", schema=keyed)
    with pytest.raises(MilvusException, match="invalid namespace.mode"):
        client.create_collection(name + "_mode", schema=_schema(), properties={"namespace.mode": "tables"})
    assert not client.has_collection(name + "_keyed") and not client.has_collection(name + "_mode")


def test_partition_mode_namespaces_are_partitions(client, uri, name):
    _create(client, name, properties={"namespace.mode": "partition"})
    assert [f["name"] for f in client.describe_collection(name)["fields"]] == ["id", "v", "w", "tag"]
    with raw_stub(uri) as stub:
        for ns in ("t1", "t2", "t3"):
            r = stub.CreateNamespace(milvus_pb2.CreateNamespaceRequest(collection_name=name, namespace_name=ns))
            assert r.status.code == 0 and r.namespace.namespace_name == ns and r.namespace.created_timestamp
        with pytest.raises(MilvusException, match="partition not found"):
            client.insert(name, _rows([1]), namespace="nope")  # a namespace is created first
        client.insert(name, _rows(list(range(10))), namespace="t1")
        client.insert(name, _rows(list(range(10, 13))), namespace="t2")
        assert set(client.list_partitions(name)) == {"_default", "t1", "t2", "t3"}
        assert _ids(client.query(name, filter="id >= 0", namespace="t2", consistency_level="Strong")) == {10, 11, 12}
        hits = client.search(name, data=[_rows([0])[0]["v"]], anns_field="v", limit=20, namespace="t1")
        assert {h["id"] for h in hits[0]} == set(range(10))
        with pytest.raises(MilvusException, match="partition names if namespace is used"):
            client.query(name, filter="id >= 0", namespace="t1", partition_names=["t2"])
        with pytest.raises(MilvusException, match="mismatches namespace"):
            client.insert(name, _rows([50]), namespace="t1", partition_name="t2")
        page = stub.ListNamespaces(milvus_pb2.ListNamespacesRequest(collection_name=name, page_size=2))
        assert [n.namespace_name for n in page.namespaces] == ["t1", "t2"] and page.next_page_token == "t2"
        rest = stub.ListNamespaces(milvus_pb2.ListNamespacesRequest(collection_name=name, page_size=2,
                                                                    page_token=page.next_page_token))
        assert [n.namespace_name for n in rest.namespaces] == ["t3"] and rest.next_page_token == ""
        assert [n.namespace_name for n in stub.ListNamespaces(milvus_pb2.ListNamespacesRequest(
            collection_name=name, prefix="t2")).namespaces] == ["t2"]
        client.flush(name)
        stats = stub.GetNamespaceStats(milvus_pb2.GetNamespaceStatsRequest(collection_name=name, namespace_name="t1"))
        assert stats.status.code == 0 and stats.stats.approx_entity_count == 10
        d = stub.DescribeNamespace(milvus_pb2.DescribeNamespaceRequest(collection_name=name, namespace_name="t2"))
        assert d.namespace.stats.approx_entity_count == 3 and d.namespace.collection_name == name
        assert stub.HasNamespace(milvus_pb2.HasNamespaceRequest(collection_name=name, namespace_name="t3")).value
        drop = milvus_pb2.DropNamespaceRequest(collection_name=name, namespace_name="t1")
        assert "namespace is loaded" in stub.DropNamespace(drop).status.reason
        client.release_partitions(name, ["t1"])
        r = stub.DropNamespace(drop)
        assert r.status.code == 0 and r.namespace.namespace_name == "t1"
        assert not stub.HasNamespace(milvus_pb2.HasNamespaceRequest(collection_name=name, namespace_name="t1")).value
        missing = stub.DescribeNamespace(milvus_pb2.DescribeNamespaceRequest(collection_name=name,
                                                                             namespace_name="t1"))
        assert "namespace not found" in missing.status.reason
        assert client.get_collection_stats(name)["row_count"] == 3  # t1's rows went with it
        exact = stub.GetNamespaceStats(milvus_pb2.GetNamespaceStatsRequest(collection_name=name,
                                                                           namespace_name="t2", exact=True))
        assert exact.status.code == 1100


def test_rest_takes_the_namespace(server, client, name):
    from tests.e2e.test_rest import ok, post  # noqa: PLC0415

    port = server.http_ports[0]
    schema = {"enableNamespace": True, "fields": [
        {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
        {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}}]}
    ok(post(port, "collections/create", {"collectionName": name, "schema": schema, "indexParams": [
        {"fieldName": "v", "indexName": "v", "metricType": "L2", "indexType": "FLAT"}]}))
    assert ok(post(port, "collections/describe", {"collectionName": name}))["enableNamespace"] is True
    for ns, ids in (("a", range(5)), ("b", range(10, 13))):
        ok(post(port, "entities/insert", {"collectionName": name, "namespace": ns,
                                          "data": [{"id": i, "v": [float(i)] * DIM} for i in ids]}))
    got = ok(post(port, "entities/query", {"collectionName": name, "namespace": "b", "filter": "id >= 0",
                                           "outputFields": ["id"]}))
    assert sorted(r["id"] for r in got) == [10, 11, 12]
    hits = ok(post(port, "entities/search", {"collectionName": name, "namespace": "a", "data": [[0.0] * DIM],
                                             "annsField": "v", "limit": 10}))
    assert sorted(h["id"] for h in hits) == list(range(5))
    ok(post(port, "entities/delete", {"collectionName": name, "namespace": "a", "filter": "id in [0, 10]"}))
    assert _ids(client.query(name, filter="id in [0, 10]", namespace="b", consistency_level="Strong")) == {10}
    status, body = post(port, "entities/insert", {"collectionName": name, "data": [{"id": 99, "v": [0.0] * DIM}]})
    assert body["code"] == 1100 and "must name a namespace" in body["message"]

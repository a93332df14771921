"""alter_index_properties / drop_index_properties (Milvus 2.4+'s AlterIndex) and GetIndexStatistics
through pymilvus: ``mmap.enabled`` set on a released collection's index shows in describe_index and
survives a load (the query nodes read the index files memory-mapped: tests/unit/
test_index_file_switch.py); any other key, or a loaded collection, is refused with Milvus's codes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException


@pytest.fixture
def released(uri, request):
    client = MilvusClient(uri=uri)
    name = f"idxprops_{request.node.name[-20:].replace('[', '_').replace(']', '').replace('-', '_')}"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=8)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_name="vec_idx", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = np.random.default_rng(0).random((500, 8), dtype=np.float32)
    client.insert(name, [{"id": i, "vec": vecs[i].tolist()} for i in range(500)])
    client.flush(name)
    client.release_collection(name)
    yield client, name, vecs
    client.drop_collection(name)
    client.close()


def test_mmap_on_an_index_shows_in_describe_and_the_collection_still_serves(released):
    client, name, vecs = released
    client.alter_index_properties(name, "vec_idx", properties={"mmap.enabled": True})
    desc = client.describe_index(name, "vec_idx")
    assert desc["mmap.enabled"] == "True" and desc["nlist"] == "8" and desc["index_type"] == "IVF_FLAT"
    client.load_collection(name)
    hits = client.search(name, [vecs[7].tolist()], limit=1, search_params={"params": {"nprobe": 8}})
    assert hits[0][0]["id"] == 7
    client.release_collection(name)
    client.drop_index_properties(name, "vec_idx", property_keys=["mmap.enabled"])
    assert "mmap.enabled" not in client.describe_index(name, "vec_idx")


def test_a_loaded_collection_or_another_key_is_refused(released):
    client, name, _ = released
    with pytest.raises(MilvusException, match="is not configable index param") as e:
        client.alter_index_properties(name, "vec_idx", properties={"nlist": 16})
    assert e.value.code == 1100
    with pytest.raises(MilvusException, match="expected true or false"):
        client.alter_index_properties(name, "vec_idx", properties={"mmap.enabled": "maybe"})
    with pytest.raises(MilvusException) as e:
        client.alter_index_properties(name, "no_such_index", properties={"mmap.enabled": True})
    assert e.value.code == 700
    client.load_collection(name)
    with pytest.raises(MilvusException, match="release the collection first") as e:
        client.alter_index_properties(name, "vec_idx", properties={"mmap.enabled": True})
    assert e.value.code == 104
    assert "mmap.enabled" not in client.describe_index(name, "vec_idx")
    # dropping the index of a loaded collection is refused too (the coord's check, Milvus's message)
    with pytest.raises(MilvusException, match="index cannot be dropped, collection is loaded") as e:
        client.drop_index(name, "vec_idx")
    assert e.value.code == 1100 and client.list_indexes(name) == ["vec_idx"]
    client.release_collection(name)
    client.drop_index(name, "vec_idx")
    assert client.list_indexes(name) == []


def test_index_statistics_name_each_index_with_its_rows(released):
    """GetIndexStatistics (what the ORM's ``Index`` and older tools call): DescribeIndex's rows."""
    from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

    client, name, _ = released
    client.load_collection(name)
    stub = milvus_pb2_grpc.MilvusServiceStub(client._get_connection()._channel)
    reply = stub.GetIndexStatistics(milvus_pb2.GetIndexStatisticsRequest(collection_name=name))
    assert reply.status.code == 0
    (desc,) = reply.index_descriptions
    assert (desc.index_name, desc.field_name, desc.total_rows) == ("vec_idx", "vec", 500)
    assert {kv.key: kv.value for kv in desc.params}["index_type"] == "IVF_FLAT"


def test_mmap_given_at_create_is_the_index_property_described_and_served(uri):
    """``mmap.enabled`` among an explicit index's params (Milvus 2.4+ keeps it with the index): stored as
    the index's property, not a build parameter; described as Milvus describes it (the query nodes map the
    index files of an index with that property: tests/unit/test_index_file_switch.py); drop_index_properties
    takes it away. A bad value is refused (1100); AUTOINDEX still refuses it, as Milvus does."""
    client = MilvusClient(uri=uri)
    name = "idxprops_at_create"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=8)
    client.create_collection(name, schema=schema)
    try:
        bad = client.prepare_index_params()
        bad.add_index(field_name="vector", index_type="HNSW", metric_type="L2",
                      params={"M": 16, "efConstruction": 64, "mmap.enabled": "maybe"})
        with pytest.raises(MilvusException, match="invalid mmap.enabled value: maybe") as e:
            client.create_index(name, bad)
        assert e.value.code == 1100
        auto = client.prepare_index_params()
        auto.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2", params={"mmap.enabled": True})
        with pytest.raises(MilvusException, match="only metric type can be passed when use AutoIndex") as e:
            client.create_index(name, auto)
        assert e.value.code == 1100
        assert client.list_indexes(name) == []

        vecs = np.random.default_rng(1).random((600, 8), dtype=np.float32)
        client.insert(name, [{"id": i, "vector": vecs[i].tolist()} for i in range(600)])
        client.flush(name)
        idx = client.prepare_index_params()
        idx.add_index(field_name="vector", index_type="HNSW", metric_type="L2",
                      params={"M": 16, "efConstruction": 64, "mmap.enabled": True})
        client.create_index(name, idx)
        desc = client.describe_index(name, "vector")
        assert (desc["index_type"], desc["M"], desc["efConstruction"], desc["mmap.enabled"]) == \
            ("HNSW", "16", "64", "True")  # the client's text (pymilvus: str(True))
        deadline = time.monotonic() + 60
        while client.describe_index(name, "vector")["indexed_rows"] < 600:  # built before the load
            assert time.monotonic() < deadline, "index not built"
            time.sleep(0.2)
        client.load_collection(name)
        hits = client.search(name, [vecs[11].tolist()], limit=1, search_params={"params": {"ef": 64}})
        assert hits[0][0]["id"] == 11
        # the same index again (same build) is the one there; the property is alter_index_properties'
        client.create_index(name, idx)
        client.release_collection(name)
        client.drop_index_properties(name, "vector", property_keys=["mmap.enabled"])
        assert "mmap.enabled" not in client.describe_index(name, "vector")
        client.load_collection(name)
        assert client.search(name, [vecs[11].tolist()], limit=1)[0][0]["id"] == 11
    finally:
        client.drop_collection(name)
        client.close()

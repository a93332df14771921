"""Requests shaped as pymilvus 2.3.x-2.5.x sends them, through the current pymilvus' raw stubs.

Each pymilvus line was run against vecdb with a user workload (docs/limits.md, "Older pymilvus
clients"); what an old client needs from an answer that the current clients do not check is
pinned here, with the old client's own logic spelled out where it decides.
"""

from __future__ import annotations

import numpy as np
from pymilvus import CollectionSchema, DataType, FieldSchema
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from tests.e2e._helpers import cname, distances, float_schema, float_vectors, orm, raw_stub  # noqa: F401 - fixtures

DIM = 8


def has_collection_as_pymilvus_2_3_0(reply: milvus_pb2.DescribeCollectionResponse) -> bool:
    """pymilvus 2.3.0's ``GrpcHandler.has_collection`` (2.2 and 2.3.1 alike): the legacy code alone
    decides; anything but these two answers raises."""
    if reply.status.error_code == common_pb2.Success:
        return True
    if reply.status.error_code == common_pb2.UnexpectedError and "can't find collection" in reply.status.reason:
        return False
    raise AssertionError(f"pymilvus 2.3.0 raises here: {reply.status}")


def test_describe_of_a_missing_collection_reads_as_absent_to_pymilvus_2_3_0(uri, client, name):
    with raw_stub(uri) as stub:
        reply = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collection_name=name))
        assert (reply.status.error_code, reply.status.code) == (common_pb2.UnexpectedError, 100)
        assert "can't find collection" in reply.status.reason
        assert has_collection_as_pymilvus_2_3_0(reply) is False
        by_id = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collectionID=987654321))
        assert (by_id.status.error_code, by_id.status.code) == (common_pb2.UnexpectedError, 100)
        # every later client reads the same answer as "not there" and reports code 100
        assert client.has_collection(name) is False
        try:
            client.describe_collection(name)
            raise AssertionError("describe_collection of a missing collection returned")
        except Exception as e:  # noqa: BLE001 -- pymilvus' exception class differs per version
            assert getattr(e, "code", None) == 100, e
        # the ORM's Collection(name, schema): has_collection, then CreateCollection
        client.create_collection(name, schema=float_schema(DIM))
        reply = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collection_name=name))
        assert has_collection_as_pymilvus_2_3_0(reply) is True
        assert reply.collection_name == name


def test_orm_collection_of_pymilvus_2_3_0_creates_and_reopens(orm, cname):
    """``Collection(name, schema)`` on pymilvus 2.3.0 raised "can't find collection" (code 4) before
    creating; now the has_collection step answers False and the create goes through."""
    from pymilvus import Collection, utility

    schema = CollectionSchema([FieldSchema("pk", DataType.VARCHAR, max_length=16, is_primary=True),
                               FieldSchema("v", DataType.FLOAT_VECTOR, dim=DIM)])
    Collection(cname, schema, using=orm)
    assert utility.has_collection(cname, using=orm)
    assert Collection(cname, using=orm).schema.primary_field.name == "pk"


def test_search_iterator_v1_pages_of_pymilvus_2_3(client, name):
    """pymilvus 2.3's client-side search iterator: a first search of batch_size * 10 hits, then range
    searches over the next distance band (radius = tail + width, range_filter = tail) with the ids of
    the tail's ties excluded by ``pk not in [...]``. The pages concatenate to the exact ranking."""
    client.create_collection(name, schema=float_schema(DIM))
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    data = float_vectors(3000, DIM, seed=11)
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(len(data))])
    q = float_vectors(1, DIM, seed=12)
    dist = distances(data, q, "L2")[0]
    first = client.search(name, q, limit=1000, search_params={"metric_type": "L2", "params": {}},
                          consistency_level="Strong")[0]
    seen = [h["id"] for h in first]
    tail, width = first[-1]["distance"], first[-1]["distance"] - first[0]["distance"]
    ties = [h["id"] for h in first if h["distance"] == tail]
    band = {"radius": tail + width, "range_filter": tail}
    page = client.search(name, q, limit=1000, filter=f"id not in {ties}", consistency_level="Strong",
                         search_params={"metric_type": "L2", "params": band})[0]
    assert page and page[0]["distance"] >= tail and page[-1]["distance"] < tail + width
    seen += [h["id"] for h in page]
    assert len(seen) == len(set(seen))
    assert len(seen) > 1000
    # the exact ranking, up to the order of (near) ties
    np.testing.assert_allclose(dist[seen], np.sort(dist)[:len(seen)], rtol=1e-5, atol=1e-6)

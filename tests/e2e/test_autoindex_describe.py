"""AUTOINDEX is described as the client asked for it, as Milvus describes it (its UserIndexParams):
``index_type`` AUTOINDEX and the metric, through describe_index, the ORM's ``Collection.index()`` and
REST ``indexes/describe``, for a quick-setup collection and an explicit AUTOINDEX, while HNSW is built
underneath (vecdb.index.params). Milvus 2.3.5 answered the same when run (the report of this change):
``{'index_type': 'AUTOINDEX', 'metric_type': 'IP', ...}``, "only metric type can be passed when use
AutoIndex" for build params, and "at most one distinct index is allowed per field" for HNSW or another
metric on the field afterwards; the described params create the same index again."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from pymilvus import Collection, DataType, MilvusClient, connections
from pymilvus.exceptions import MilvusException

from tests.conftest import free_port, server_settings
from vecdb.standalone import Standalone

DIM = 8
STATS = ("field_name", "index_name", "total_rows", "indexed_rows", "pending_index_rows", "state")


def _user_params(desc: dict) -> dict:
    return {k: v for k, v in desc.items() if k not in STATS}


def _explicit(client: MilvusClient, name: str, **index) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vector", **index)
    client.create_collection(name, schema=schema, index_params=idx)


def _search_ok(client: MilvusClient, name: str, metric_sign: int) -> None:
    vecs = np.random.default_rng(3).random((300, DIM), dtype=np.float32)
    client.insert(name, [{"id": i, "vector": vecs[i].tolist()} for i in range(300)])
    client.flush(name)
    for params in ({}, {"params": {"level": 2}}, {"params": {"ef": 64}}):
        got = client.search(name, [vecs[11].tolist()], limit=5, search_params=params,
                            consistency_level="Strong")[0]
        exact = np.argsort(metric_sign * (vecs @ vecs[11]) if metric_sign else ((vecs - vecs[11]) ** 2).sum(1))[:5]
        assert [h["id"] for h in got][0] == int(exact[0]) and len(got) == 5


def test_quick_setup_is_described_as_autoindex(client, name):
    client.create_collection(name, dimension=DIM, metric_type="IP")
    desc = client.describe_index(name, "vector")
    assert _user_params(desc) == {"index_type": "AUTOINDEX", "metric_type": "IP"}
    assert desc["field_name"] == "vector" and desc["index_name"] == "vector"
    assert client.list_indexes(name) == ["vector"]
    _search_ok(client, name, -1)


def test_explicit_autoindex_and_the_default_metric(client, name):
    _explicit(client, name, index_type="AUTOINDEX", metric_type="L2")
    assert _user_params(client.describe_index(name, "vector")) == {"index_type": "AUTOINDEX", "metric_type": "L2"}
    _search_ok(client, name, 0)
    client.release_collection(name)
    client.drop_collection(name)
    _explicit(client, name, index_type="AUTOINDEX")  # no metric: the float default, COSINE
    assert _user_params(client.describe_index(name, "vector")) == {"index_type": "AUTOINDEX",
                                                                   "metric_type": "COSINE"}


def test_autoindex_takes_no_build_params(client, name):
    with pytest.raises(MilvusException, match="only metric type can be passed when use AutoIndex") as e:
        _explicit(client, name, index_type="AUTOINDEX", metric_type="IP", params={"M": 16, "efConstruction": 100})
    assert e.value.code == 1100


def test_the_described_index_is_the_same_index_and_another_is_refused(client, name):
    client.create_collection(name, dimension=DIM, metric_type="IP")
    client.release_collection(name)
    desc = client.describe_index(name, "vector")
    again = client.prepare_index_params()
    params = {k: v for k, v in _user_params(desc).items() if k not in ("index_type", "metric_type")}
    again.add_index(field_name="vector", index_type=desc["index_type"], metric_type=desc["metric_type"],
                    index_name=desc["index_name"], params=params)
    client.create_index(name, again)  # the same index: accepted, nothing changes
    assert client.describe_index(name, "vector")["index_type"] == "AUTOINDEX"
    for other in ({"index_type": "HNSW", "metric_type": "IP", "params": {"M": 18, "efConstruction": 240}},
                  {"index_type": "AUTOINDEX", "metric_type": "L2"}):
        idx = client.prepare_index_params()
        idx.add_index(field_name="vector", **other)
        with pytest.raises(MilvusException, match="at most one distinct index is allowed per field"):
            client.create_index(name, idx)
    # properties are listed with it; dropped and created again it is AUTOINDEX again
    client.alter_index_properties(name, "vector", properties={"mmap.enabled": True})
    assert _user_params(client.describe_index(name, "vector")) == {
        "index_type": "AUTOINDEX", "metric_type": "IP", "mmap.enabled": "True"}
    client.drop_index(name, "vector")
    idx = client.prepare_index_params()
    idx.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="IP")
    client.create_index(name, idx)
    assert _user_params(client.describe_index(name, "vector")) == {"index_type": "AUTOINDEX", "metric_type": "IP"}


def test_autoindex_takes_no_index_property_at_create(client, name):
    """Milvus counts ``mmap.enabled`` among an AUTOINDEX's parameters (parseIndexParams): refused as a build
    parameter is; alter_index_properties sets it (test_the_described_index_is_the_same_index_...)."""
    with pytest.raises(MilvusException, match="only metric type can be passed when use AutoIndex") as e:
        _explicit(client, name, index_type="AUTOINDEX", metric_type="L2", params={"mmap.enabled": True})
    assert e.value.code == 1100


def test_autoindex_on_an_explicit_hnsw_that_builds_the_same_is_refused(client, name):
    """HNSW M=18 efConstruction=240 is what AUTOINDEX builds, yet AUTOINDEX on it is another index (Milvus
    compares what was asked); the explicit index is described by its build as before, and creating it
    again is the same index."""
    _explicit(client, name, index_type="HNSW", metric_type="L2", params={"M": 18, "efConstruction": 240})
    client.release_collection(name)
    described = {"index_type": "HNSW", "metric_type": "L2", "M": "18", "efConstruction": "240"}
    assert _user_params(client.describe_index(name, "vector")) == described
    auto = client.prepare_index_params()
    auto.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
    with pytest.raises(MilvusException, match="at most one distinct index is allowed per field"):
        client.create_index(name, auto)
    for params in ({"M": 18, "efConstruction": 240}, {"M": "18", "efConstruction": "240"}):
        again = client.prepare_index_params()
        again.add_index(field_name="vector", index_type="HNSW", metric_type="L2", params=params)
        client.create_index(name, again)  # the same index: accepted
    assert _user_params(client.describe_index(name, "vector")) == described
    client.load_collection(name)
    _search_ok(client, name, 0)


def test_orm_index_and_rest_describe(tmp_path):
    settings = server_settings(tmp_path)
    settings.http.port = free_port()
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    try:
        client.create_collection("rag", dimension=DIM, metric_type="IP")
        connections.connect(alias="autoindex_orm", uri=f"http://127.0.0.1:{srv.port}")
        try:
            assert Collection("rag", using="autoindex_orm").index().params == {"index_type": "AUTOINDEX",
                                                                               "metric_type": "IP"}
        finally:
            connections.disconnect("autoindex_orm")
        req = urllib.request.Request(
            f"http://127.0.0.1:{settings.http.port}/v2/vectordb/indexes/describe", method="POST",
            data=json.dumps({"collectionName": "rag", "indexName": "vector"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["code"] == 0, body
        assert body["data"][0]["indexType"] == "AUTOINDEX" and body["data"][0]["metricType"] == "IP"
    finally:
        client.close()
        srv.stop()

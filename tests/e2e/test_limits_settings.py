"""The request and schema limits are settings (vecdb.limits, ``limits:`` / VECDB_LIMITS__*): a server
started with smaller ones refuses what passes them, with Milvus's errors naming the configured value."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import server_settings
from vecdb.config import LimitsSettings, load_settings
from vecdb.limits import configure
from vecdb.standalone import Standalone


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    settings = server_settings(tmp_path_factory.mktemp("limits"))
    settings.limits = LimitsSettings(max_nq=3, max_topk=20, max_dim=16, max_fields=4, max_shards=2,
                                     max_partitions=3, max_collections=2)
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield client
    client.close()
    srv.stop()
    configure(LimitsSettings())  # the process's defaults again for the tests after these


def refused(fn, *args, **kwargs) -> MilvusException:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kwargs)
    return e.value


def test_smaller_limits_are_enforced_with_the_configured_values(small):
    client = small
    client.create_collection("a", dimension=16, metric_type="L2")  # the largest dim allowed
    assert "1 ~ 16" in refused(client.create_collection, "b", dimension=17).message
    schema = client.create_schema(auto_id=False)
    for name, kind in (("id", DataType.INT64), ("x", DataType.INT64), ("y", DataType.INT64), ("z", DataType.INT64)):
        schema.add_field(name, kind, is_primary=name == "id")
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    assert "limited to 4" in refused(client.create_collection, "b", schema=schema).message
    assert "limited to 2" in refused(client.create_collection, "b", dimension=4, num_shards=3).message

    client.insert("a", [{"id": i, "vector": [float(i)] * 16} for i in range(30)])
    assert len(client.search("a", [[0.0] * 16] * 3, limit=20)) == 3
    e = refused(client.search, "a", [[0.0] * 16] * 4, limit=1)
    assert e.code == 1100 and "nq [4] is invalid, nq (number of search vector per search request) should be in " \
        "range [1, 3], but got 4" in e.message
    assert "[1, 20]" in refused(client.search, "a", [[0.0] * 16], limit=21).message
    assert "[1, 20]" in refused(client.search, "a", [[0.0] * 16], limit=10, offset=11).message

    client.create_partition("a", "p1")
    client.create_partition("a", "p2")  # with _default: three
    assert "max configuration (3)" in refused(client.create_partition, "a", "p3").message

    client.create_collection("b", dimension=4)
    e = refused(client.create_collection, "c", dimension=4)
    assert e.code == 102 and "limit=2" in e.message
    client.drop_collection("b")
    client.create_collection("c", dimension=4)


def test_limits_come_from_the_environment_and_default_to_milvus():
    s = load_settings(env={"VECDB_LIMITS__MAX_NQ": "100", "VECDB_LIMITS__MAX_COLLECTIONS": "10"})
    assert s.limits.max_nq == 100 and s.limits.max_collections == 10 and s.limits.max_topk == 16384
    d = LimitsSettings()
    assert (d.max_nq, d.max_topk, d.max_dim, d.max_fields, d.max_shards, d.max_partitions, d.max_collections) == (
        16384, 16384, 32768, 64, 16, 4096, 65536)

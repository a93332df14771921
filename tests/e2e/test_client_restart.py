"""Durability across a clean restart: flush, more writes, stop, start on the same data dir.

Everything acknowledged survives: inserts, deletes, upserts (before and after the
flush), partitions, aliases, indexes, databases; a collection loaded before the
restart is loaded after it, a released one stays released.
"""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient

from tests.conftest import free_port, start_standalone
from tests.e2e._helpers import count, float_schema, float_vectors

DIM = 8
N = 1500  # above the size at which sealed segments get their HNSW index built


def _expected_state():
    vals = {i: 1 for i in range(N)}                  # first insert
    for i in range(0, 100):
        vals.pop(i)                                  # delete before flush
    for i in range(100, 200):
        vals[i] = 2                                  # upsert before flush
    # --- flush ---
    for i in range(N, N + 50):
        vals[i] = 3                                  # insert after flush
    for i in range(200, 250):
        vals.pop(i)                                  # delete after flush (sealed rows)
    for i in range(150, 160):
        vals[i] = 4                                  # upsert after flush
    for i in range(N, N + 10):
        vals.pop(i)                                  # delete growing rows
    return vals


def _vec(i, val):
    return float_vectors(1, DIM, seed=i * 10 + val)[0]


def _write_workload(c: MilvusClient, name: str) -> None:
    c.insert(name, [{"id": i, "vec": _vec(i, 1), "val": 1} for i in range(N)])
    c.delete(name, ids=list(range(0, 100)))
    c.upsert(name, [{"id": i, "vec": _vec(i, 2), "val": 2} for i in range(100, 200)])
    c.flush(name)
    c.insert(name, [{"id": i, "vec": _vec(i, 3), "val": 3} for i in range(N, N + 50)])
    c.delete(name, filter="id >= 200 and id < 250")
    c.upsert(name, [{"id": i, "vec": _vec(i, 4), "val": 4} for i in range(150, 160)])
    c.delete(name, ids=list(range(N, N + 10)))


def _check_state(c: MilvusClient, name: str, want: dict) -> None:
    got = {r["id"]: r["val"] for r in c.query(name, filter="id >= 0", output_fields=["val"])}
    assert got == want
    assert count(c, name) == len(want)
    sample = [0, 100, 150, 155, 199, 200, 260, N + 5, N + 20]
    by_get = {r["id"]: r["val"] for r in c.get(name, ids=sample, output_fields=["val"])}
    assert by_get == {k: want[k] for k in sample if k in want}
    for pk in (155, 199, 300, N + 20):  # each live row's current vector finds itself
        hit = c.search(name, [_vec(pk, want[pk])], limit=1, output_fields=["val"])[0][0]
        assert (hit.id, hit["entity"]["val"]) == (pk, want[pk])
        assert hit.distance == pytest.approx(0.0, abs=1e-4)


@pytest.fixture(params=["embedded", "remote"])
def storage(request):
    """Storage settings for the restarted server: the embedded backends, or JetStream + etcd + S3."""
    return request.getfixturevalue("remote_storage")() if request.param == "remote" else None


def test_restart_keeps_everything(tmp_path, storage):
    port = free_port()
    node = start_standalone(tmp_path, port, storage)
    uri = f"http://127.0.0.1:{port}"
    c = MilvusClient(uri=uri)
    try:
        schema = float_schema(DIM, extra=(("val", DataType.INT64, {}),))
        idx = c.prepare_index_params()
        idx.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
        c.create_collection("main", schema=schema, index_params=idx)
        c.create_partition("main", "p1")
        c.create_alias("main", "main_alias")
        _write_workload(c, "main")
        c.insert("main", [{"id": 10**6 + i, "vec": _vec(i, 9), "val": 9} for i in range(5)], partition_name="p1")

        c.create_collection("cold", dimension=4)
        c.insert("cold", [{"id": i, "vector": [i, 0, 0, 0]} for i in range(3)])
        c.release_collection("cold")

        c.create_database("otherdb")
        want = _expected_state()
        want.update({10**6 + i: 9 for i in range(5)})
        _check_state(c, "main", want)
    finally:
        c.close()
        node.stop()

    node = start_standalone(tmp_path, port, storage)
    c = MilvusClient(uri=uri)
    try:
        assert sorted(c.list_collections()) == ["cold", "main"]
        assert "otherdb" in c.list_databases()
        assert c.get_load_state("main")["state"].name == "Loaded"
        assert c.get_load_state("cold")["state"].name == "NotLoad"
        _check_state(c, "main", want)
        assert sorted(c.list_partitions("main")) == ["_default", "p1"]
        assert count(c, "main", partition_names=["p1"]) == 5
        assert c.describe_alias("main_alias")["collection_name"] == "main"
        assert count(c, "main_alias") == len(want)
        index = c.describe_index("main", c.list_indexes("main")[0])
        assert (index["index_type"], index["metric_type"], index["field_name"]) == ("HNSW", "L2", "vec")

        c.load_collection("cold")
        assert sorted(r["id"] for r in c.query("cold", filter="id >= 0")) == [0, 1, 2]

        # writes after the restart go on from where the data left off
        c.upsert("main", [{"id": 300, "vec": _vec(300, 5), "val": 5}])
        want[300] = 5
        _check_state(c, "main", want)
    finally:
        c.close()
        node.stop()

    # a second restart, this time after a flush that followed the first restart
    node = start_standalone(tmp_path, port, storage)
    c = MilvusClient(uri=uri)
    try:
        _check_state(c, "main", want)
        c.flush("main")
        c.delete("main", ids=[260])
        want.pop(260)
    finally:
        c.close()
        node.stop()
    node = start_standalone(tmp_path, port, storage)
    c = MilvusClient(uri=uri)
    try:
        _check_state(c, "main", want)
        assert c.get_load_state("cold")["state"].name == "Loaded"  # loaded after the first restart
        assert count(c, "cold") == 3
    finally:
        c.close()
        node.stop()


def test_a_second_server_on_the_same_namespace_is_refused(tmp_path, remote_storage):
    from vecdb.startup import StartupFailed

    storage = dict(remote_storage(), session_ttl=2)
    node = start_standalone(tmp_path / "a", free_port(), storage)
    try:
        with pytest.raises(StartupFailed, match="held by another process"):  # one line from `vecdb standalone`
            start_standalone(tmp_path / "b", free_port(), storage)
        c = MilvusClient(uri=f"http://127.0.0.1:{node.port}")  # the first one is unaffected
        c.create_collection("still_mine", dimension=4)
        assert c.list_collections() == ["still_mine"]
        c.close()
    finally:
        node.stop()
    node = start_standalone(tmp_path / "b", free_port(), storage)  # free again once it stopped
    node.stop()

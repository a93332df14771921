"""Two proxies of one cluster agree on the catalog: what a DDL call did through one is there
through the other as soon as the call returns (vecdb.coord.catalog_sync), on real NATS, etcd
and S3."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException

from tests.conftest import LocalCluster
from tests.e2e._helpers import count, float_schema, make_collection

DIM = 4


@pytest.fixture(scope="module")
def cluster(remote_storage, tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("two-proxies"), remote_storage(), proxies=2)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def clients(cluster):
    a, b = (MilvusClient(uri=f"http://127.0.0.1:{port}") for port in cluster.ports)
    yield a, b
    a.close()
    b.close()


def test_ddl_through_one_proxy_is_seen_through_the_other_when_it_returns(clients):
    a, b = clients
    for round_ in range(5):  # no sleep anywhere: each call is visible on return
        name = f"tp_create_{round_}"
        make_collection(a, name, float_schema(DIM), load=False)
        assert b.has_collection(name)
        assert b.describe_collection(name)["collection_name"] == name
        b.create_partition(name, "p1")
        assert a.has_partition(name, "p1")
        a.create_alias(name, f"{name}_alias")
        assert b.describe_alias(f"{name}_alias")["collection_name"] == name
        b.drop_alias(f"{name}_alias")
        a.drop_collection(name)
        assert not b.has_collection(name)


def test_a_drop_through_one_proxy_is_collection_not_found_through_the_other(clients):
    a, b = clients
    make_collection(a, "tp_drop", float_schema(DIM))
    a.insert("tp_drop", [{"id": i, "vec": [float(i)] * DIM} for i in range(10)])
    assert count(b, "tp_drop") == 10  # data written through A, read through B
    b.drop_collection("tp_drop")
    assert "tp_drop" not in a.list_collections()
    with pytest.raises(MilvusException) as err:
        a.query("tp_drop", "id >= 0")
    assert err.value.code == 100  # collection not found


def test_writes_through_both_proxies_reach_one_collection(clients):
    a, b = clients
    make_collection(b, "tp_rw", float_schema(DIM))
    vecs = np.random.default_rng(0).random((200, DIM), dtype=np.float32)
    a.insert("tp_rw", [{"id": i, "vec": vecs[i]} for i in range(100)])
    b.insert("tp_rw", [{"id": i, "vec": vecs[i]} for i in range(100, 200)])
    a.flush("tp_rw")
    b.delete("tp_rw", ids=[0, 150])
    assert count(a, "tp_rw") == count(b, "tp_rw") == 198
    hits = b.search("tp_rw", [vecs[42].tolist()], limit=1)
    assert hits[0][0]["id"] == 42


def test_load_and_release_through_one_proxy_hold_for_the_other(clients):
    a, b = clients
    make_collection(a, "tp_load", float_schema(DIM), load=False)
    a.insert("tp_load", [{"id": i, "vec": [float(i)] * DIM} for i in range(5)])
    with pytest.raises(MilvusException) as err:
        count(b, "tp_load")
    assert err.value.code == 101  # not loaded anywhere yet
    a.load_collection("tp_load")
    assert b.get_load_state("tp_load")["state"].name == "Loaded"
    assert count(b, "tp_load") == 5
    b.release_collection("tp_load")  # released through B: A must not serve (or reload) it
    with pytest.raises(MilvusException) as err:
        count(a, "tp_load")
    assert err.value.code == 101
    assert a.get_load_state("tp_load")["state"].name == "NotLoad"


def test_ddl_goes_through_the_coord(cluster, clients):
    """The proxies change the catalog only through the active coord (vecdb.coord.ddl): with the
    coord stopped DDL fails (retriable, after the proxy's retries) and changes nothing; once a new
    coord is active it works again, seen through the other proxy on return. Runs last: it replaces
    the module's coord."""
    a, b = clients
    make_collection(a, "tp_coord", float_schema(DIM), load=False)
    coord = cluster.procs.pop("coord")
    coord.send_signal(signal.SIGTERM)
    assert coord.stop() == 0
    t0 = time.monotonic()
    with pytest.raises(MilvusException) as err:
        a.create_partition("tp_coord", "p1")
    failed_after = time.monotonic() - t0
    print(f"create_partition with no coord failed after {failed_after:.1f} s: {err.value}")
    assert "coord" in str(err.value)
    assert not b.has_partition("tp_coord", "p1")
    assert b.has_collection("tp_coord")  # reads need no coord
    cluster._start("coord1", ready=" ready on ", args=("--port", "0"))
    t0 = time.monotonic()
    a.create_partition("tp_coord", "p1")  # the proxy finds the new coord in its session
    print(f"create_partition through the new coord: {time.monotonic() - t0:.2f} s")
    assert b.has_partition("tp_coord", "p1")
    b.drop_collection("tp_coord")
    assert not a.has_collection("tp_coord")

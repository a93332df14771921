"""What a resource-leak hunt found growing without bound (or outliving what it belonged to), each kept
as a regression test, driven by pymilvus:

- per-collection proxy metrics (``milvus_proxy_*{collection_name=...}``, ~100 series and ~100 KiB a
  collection) stayed for every collection ever created and dropped; now a drop (of the collection or
  of an alias) removes them on every proxy, as Milvus's ``CleanupProxyCollectionMetrics`` does, also
  on a proxy of a cluster that did not serve the drop;
- the compiled-filter cache held 1024 filters whatever their size (``id in [...]`` of 10,000 keys:
  170 KB each); now it is bounded by the expressions' length too;
- per-collection rate-limit buckets were made for every name a request gave (dropped collections,
  names that never existed) and kept; full buckets are now forgotten;
- expired ``snapshot_pin/`` records (each with its snapshot's file list) were never deleted; the
  garbage collector now deletes them;
- a deleted CDC task kept its ``vecdb_cdc_task_state`` series (its last state, for good);
- a request that finished just after its collection's drop made the series again.

And what the hunt found steady, kept as a guard: a server's open files and threads across client
connections opened and closed, iterators abandoned unclosed, and refused requests.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid

import numpy as np
import pytest
from prometheus_client import REGISTRY
from pymilvus import MilvusClient, MilvusException

from tests.conftest import LocalCluster, free_port, server_settings, start_vecdb, wait_until
from vecdb import metrics
from vecdb.coord.snapshots import PIN_PREFIX
from vecdb.expr import filter as filter_cache
from vecdb.proxy import quota

DIM = 4


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A standalone server in this process: fast garbage collection, a per-collection query rate limit
    (high: never reached)."""
    from vecdb.standalone import Standalone

    settings = server_settings(tmp_path_factory.mktemp("leaks"))
    settings.gc.interval, settings.gc.grace = 0.3, 0.5
    settings.quota.query_rate_per_collection = 1e6
    server = Standalone(settings).start()
    yield server
    server.stop()


@pytest.fixture
def client(standalone):
    c = MilvusClient(uri=f"http://127.0.0.1:{standalone.port}")
    yield c
    c.close()


def _rows(n: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(start)
    return [{"id": start + i, "vector": rng.random(DIM).tolist()} for i in range(n)]


def _use(c: MilvusClient, name: str) -> None:
    """Every call that labels a proxy metric by collection name: insert, upsert, delete, search, query."""
    c.insert(name, _rows(10))
    c.upsert(name, _rows(2))
    c.delete(name, ids=[9])
    c.search(name, [[0.1] * DIM], limit=2)
    c.query(name, filter="id < 3")


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if f'collection_name="{name}"' in line]


def test_a_dropped_collection_takes_its_proxy_metrics(client):
    names = ["leak_" + uuid.uuid4().hex[:8] for _ in range(3)]
    alias = "alias_" + uuid.uuid4().hex[:8]
    for name in names:
        client.create_collection(name, dimension=DIM)
        _use(client, name)
    client.create_alias(names[0], alias)
    client.search(alias, [[0.1] * DIM], limit=1)
    text = metrics.exposition().decode()
    assert all(len(_series(text, n)) > 50 for n in names) and _series(text, alias)
    client.drop_alias(alias)
    assert not _series(metrics.exposition().decode(), alias)
    for name in names:
        client.drop_collection(name)
    text = metrics.exposition().decode()
    assert [line for n in names for line in _series(text, n)] == []
    # a new collection of a dropped one's name is counted from nothing again (no stale cached child)
    client.create_collection(names[0], dimension=DIM)
    client.search(names[0], [[0.1] * DIM], limit=1)
    counted = [line for line in _series(metrics.exposition().decode(), names[0])
               if line.startswith("milvus_proxy_search_vectors_count")]
    assert len(counted) == 1 and counted[0].endswith(" 1.0"), counted
    client.drop_collection(names[0])


def test_a_request_finishing_after_the_drop_brings_no_series_back():
    """A search or insert that started before its collection's drop and ends after it (the drop removed
    the series meanwhile) is not counted: its series would stay for good; one that started after the
    drop (a new collection of that name) is."""
    from pymilvus.grpc_gen import milvus_pb2

    name = "late_" + uuid.uuid4().hex[:8]
    search = milvus_pb2.SearchRequest(db_name="default", collection_name=name, nq=1)
    insert = milvus_pb2.InsertRequest(db_name="default", collection_name=name)
    replies = {"Search": milvus_pb2.SearchResults(), "Insert": milvus_pb2.MutationResult(insert_cnt=3)}
    metrics.PROXY_AFTER["Search"]("n1", search, None, replies["Search"], 1.0)
    assert _series(metrics.exposition().decode(), name)
    started = time.perf_counter()
    time.sleep(0.01)
    metrics.forget_collection("default", name)
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    metrics.PROXY_AFTER["Search"]("n1", search, None, replies["Search"], elapsed_ms)
    metrics.PROXY_AFTER["Insert"]("n1", insert, None, replies["Insert"], elapsed_ms)
    assert _series(metrics.exposition().decode(), name) == []
    time.sleep(0.01)
    metrics.PROXY_AFTER["Insert"]("n1", insert, None, replies["Insert"], 1.0)  # started after the drop
    counted = [line for line in _series(metrics.exposition().decode(), name)
               if line.startswith("milvus_proxy_insert_vectors_count")]
    assert len(counted) == 1 and counted[0].endswith(" 3.0"), counted
    metrics.forget_collection("default", name)


def test_collection_metrics_go_on_the_proxy_that_did_not_drop(remote_storage, tmp_path):
    cluster = LocalCluster(tmp_path, remote_storage(), proxies=2, querynodes=1, datanodes=1)
    try:
        first, second = (MilvusClient(uri=f"http://127.0.0.1:{p}") for p in cluster.ports)
        name = "leak_" + uuid.uuid4().hex[:8]
        first.create_collection(name, dimension=DIM)
        first.insert(name, _rows(10))
        second.search(name, [[0.1] * DIM], limit=2)  # the second proxy now has series of it

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http_ports[1]}/metrics", timeout=10) as r:
                return r.read().decode()

        assert _series(scrape(), name)
        first.drop_collection(name)  # through the first proxy: the second hears of it by its catalog watch
        wait_until(lambda: not _series(scrape(), name), 10, "the second proxy still exports the dropped collection")
        first.close()
        second.close()
    finally:
        cluster.stop()


def test_filter_cache_is_bounded_by_text(client, monkeypatch):
    monkeypatch.setattr(filter_cache, "_CACHE_MAX_CHARS", 40_000)
    name = "leak_" + uuid.uuid4().hex[:8]
    client.create_collection(name, dimension=DIM)
    client.insert(name, _rows(10))
    try:
        for i in range(8):  # each ~14,000 characters: the cache holds two or three of them
            keys = list(range(1000 + 2000 * i, 3000 + 2000 * i))
            assert client.query(name, filter=f"id in {keys}", output_fields=["id"]) == []
            assert 0 < filter_cache._cached_chars <= 40_000
        assert filter_cache._cached_chars == sum(weight for _, weight in filter_cache._CACHE.values())
        assert client.query(name, filter=f"id in {[1, 2, 3]}", output_fields=["id"]) != []
    finally:
        client.drop_collection(name)


def test_rate_buckets_of_names_gone_are_forgotten(standalone, client, monkeypatch):
    monkeypatch.setattr(quota, "_SWEEP_MIN", 16)  # a sweep of the full buckets once 16 are held (not 1024)
    monkeypatch.setattr(standalone.roles.quota, "_sweep_at", 16)
    buckets = standalone.roles.quota._buckets
    for i in range(100):  # a per-collection bucket each, for names that never existed
        with pytest.raises(MilvusException, match="can't find collection|not found"):
            client.query(f"nosuch_{i}", filter="id > 0")
    assert len(buckets) <= 32, len(buckets)


def test_expired_snapshot_pins_are_collected(standalone, client):
    name = "leak_" + uuid.uuid4().hex[:8]
    client.create_collection(name, dimension=DIM)
    client.insert(name, _rows(20))
    client.flush(name)
    client.create_snapshot("s1", name)
    try:
        short = [client.pin_snapshot_data("s1", name, ttl_seconds=1) for _ in range(3)]
        kept = client.pin_snapshot_data("s1", name, ttl_seconds=600)
        pins = lambda: sorted(int(k[len(PIN_PREFIX):]) for k, _ in standalone.meta.scan(PIN_PREFIX))  # noqa: E731
        assert pins() == sorted([*short, kept])
        wait_until(lambda: pins() == [kept], 15, "expired pins stay in the metadata")
        client.unpin_snapshot_data(kept)
        assert pins() == []
    finally:
        client.drop_snapshot("s1", name)
        client.drop_collection(name)


def test_a_deleted_cdc_task_leaves_no_series():
    from vecdb.cdc.server import CdcService
    from vecdb.cdc.task import Task, TaskSpec
    from vecdb.storage.memory import MemoryMetaStore

    unreachable = {"log": "nats://127.0.0.1:9", "meta": "etcd://127.0.0.1:9", "namespace": "x"}
    service = CdcService(MemoryMetaStore())
    task = "leak" + uuid.uuid4().hex[:8]
    try:
        service.create({"id": task, "source": unreachable, "target": {"uri": "http://127.0.0.1:9"}})
        service.pause(task, "test")
        service.update_metrics()
        assert REGISTRY.get_sample_value("vecdb_cdc_task_state", {"task": task, "state": "paused"}) == 1.0
        service.delete(task)
        assert [s for m in REGISTRY.collect() for s in m.samples if s.labels.get("task") == task] == []
        # a scrape that listed the task just before the delete (its listing raced it): the task is
        # skipped, not described (that failed: "cdc task not found") nor its series made again
        listed = [*service.store.all(), Task(task, TaskSpec(source=unreachable, target={"uri": "http://127.0.0.1:9"}))]
        real_all = service.store.all
        service.store.all = lambda: listed  # type: ignore[method-assign]
        service.update_metrics()
        service.store.all = real_all  # type: ignore[method-assign]
        assert [s for m in REGISTRY.collect() for s in m.samples if s.labels.get("task") == task] == []
    finally:
        service.stop()


def _open_files_and_threads(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return len(os.listdir(f"/proc/{pid}/fd")), threads


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_connections_abandoned_iterators_and_refusals_leave_nothing_open(tmp_path):
    port = free_port()
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    try:
        c = MilvusClient(uri=uri)
        c.create_collection("c", dimension=DIM)
        c.insert("c", _rows(300))
        c.flush("c")

        def rounds(n: int) -> None:
            for i in range(n):
                x = MilvusClient(uri=uri, dedicated=True)  # a connection of its own, closed
                x.has_collection("c")
                x.close()
                c.query_iterator("c", batch_size=20, filter="id >= 0").next()  # iterators never closed
                c.search_iterator("c", data=[[0.1] * DIM], batch_size=20, limit=100).next()
                with pytest.raises(MilvusException, match="cannot parse expression"):
                    c.query("c", filter="id >>> 1")
                with pytest.raises(MilvusException, match="dim"):
                    c.search("c", [[0.1] * (DIM + 1)])
                with pytest.raises(MilvusException, match="collection not found"):
                    c.search(f"nosuch{i}", [[0.1] * DIM])

        rounds(15)  # warm-up: thread pools and caches fill
        time.sleep(0.5)
        fds, threads = _open_files_and_threads(proc.pid)
        rounds(60)
        time.sleep(0.5)
        fds_after, threads_after = _open_files_and_threads(proc.pid)
        assert fds_after <= fds + 3 and threads_after <= threads + 3, (fds, fds_after, threads, threads_after)
        c.close()
    finally:
        assert proc.stop() == 0, proc.failure("did not stop cleanly")

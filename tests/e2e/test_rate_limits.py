"""Rate limits and write protection through pymilvus (vecdb.proxy.quota): a client over its
collection's search rate gets Milvus's rate-limit error while a client of another collection keeps
its latency; writes are refused with ForceDeny over the memory limit and nothing written is lost."""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import free_port, server_settings, start_vecdb, stop_processes
from vecdb.config import QuotaSettings
from vecdb.proxy.quota import Quota
from vecdb.standalone import Standalone

DIM = 8
RATE = 40  # search vectors per second per collection


def _fill(client) -> None:
    rng = np.random.default_rng(7)
    for name in ("hot", "cold"):
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
        index = client.prepare_index_params()
        index.add_index("v", index_type="FLAT", metric_type="L2")
        client.create_collection(name, schema=schema, index_params=index)
        client.insert(name, [{"id": i, "v": rng.random(DIM).tolist()} for i in range(200)])
        client.load_collection(name)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server process (the load test's clients must not share its interpreter) with a per-collection
    search rate from the environment."""
    port = free_port()
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0",
                       data_dir=tmp_path_factory.mktemp("quota"),
                       env={"VECDB_QUOTA__SEARCH_RATE_PER_COLLECTION": RATE})
    client = MilvusClient(uri=f"http://127.0.0.1:{port}")
    _fill(client)
    yield client
    client.close()
    stop_processes([proc])


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    srv = Standalone(server_settings(tmp_path_factory.mktemp("quota"))).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    _fill(client)
    yield srv, client
    client.close()
    srv.stop()


def _search(client, name):
    return client.search(name, [[0.5] * DIM], limit=3, retry_on_rate_limit=False, consistency_level="Strong")


def test_a_client_over_its_collection_rate_is_refused_and_the_others_keep_their_latency(limited):
    client = limited
    time.sleep(1.1)  # a full bucket
    baseline = []
    for _ in range(30):
        t = time.perf_counter()
        _search(client, "cold")
        baseline.append(time.perf_counter() - t)
    hot_ok, hot_refused, cold_latency, cold_errors = [0], [], [], []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                _search(client, "hot")
                hot_ok[0] += 1
            except MilvusException as e:
                hot_refused.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    start = time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - start < 3.0:
        t0 = time.perf_counter()
        try:
            _search(client, "cold")
            cold_latency.append(time.perf_counter() - t0)
        except MilvusException as e:
            cold_errors.append(e)
        time.sleep(0.05)  # ~15/s: under the collection's rate
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    print(f"\nhot: {hot_ok[0]} admitted, {len(hot_refused)} refused in {elapsed:.1f} s (rate {RATE}/s); cold: "
          f"{len(cold_latency)} searches, median {statistics.median(cold_latency) * 1e3:.2f} ms "
          f"(alone {statistics.median(baseline) * 1e3:.2f} ms), p99 "
          f"{sorted(cold_latency)[int(len(cold_latency) * 0.99)] * 1e3:.2f} ms")
    assert not cold_errors
    assert hot_refused and all(e.code == 8 and "rate limit exceeded" in e.message for e in hot_refused)
    assert hot_ok[0] <= RATE * (elapsed + 1) + 3  # a second saved up, then the rate
    assert hot_ok[0] >= RATE * elapsed * 0.5
    # "keep their latency": the refused calls cost the server next to nothing (a loose bound: shared CPUs)
    assert statistics.median(cold_latency) < max(4 * statistics.median(baseline), statistics.median(baseline) + 0.05)


def test_pymilvus_retries_a_rate_limited_call_until_it_passes(limited):
    client = limited
    time.sleep(1.1)
    t = time.monotonic()
    for _ in range(RATE + 10):  # past the saved-up second: the last ones wait in pymilvus's backoff
        client.search("hot", [[0.5] * DIM], limit=1)
    assert time.monotonic() - t > 0.15


def test_writes_are_refused_over_the_memory_limit_and_nothing_is_lost(in_process):
    srv, client = in_process
    before = client.query("cold", "id >= 0", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    saved = srv.roles.quota
    srv.roles.quota = Quota(QuotaSettings(memory_limit_bytes=1 << 20))  # any process is over 95% of 1 MiB
    try:
        with pytest.raises(MilvusException) as e:
            client.insert("cold", [{"id": 10_000, "v": [0.0] * DIM}])
        assert e.value.code == 9 and "deny to write, reason: memory quota exceeded" in e.value.message
        with pytest.raises(MilvusException) as e:
            client.upsert("cold", [{"id": 1, "v": [0.0] * DIM}])
        assert e.value.code == 9
        assert client.delete("cold", ids=[0])["delete_count"] == 1  # deletes make room: let through
        hits = client.search("cold", [[0.5] * DIM], limit=3, consistency_level="Strong")
        assert len(hits[0]) == 3
    finally:
        srv.roles.quota = saved
    after = client.query("cold", "id >= 0", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    assert after == before - 1
    assert client.get("cold", ids=[1])[0]["v"] != [0.0] * DIM  # the refused upsert changed nothing
    client.insert("cold", [{"id": 10_000, "v": [0.0] * DIM}])  # back under the limit: accepted
    assert client.get("cold", ids=[10_000])

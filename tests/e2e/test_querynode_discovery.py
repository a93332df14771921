"""A proxy that was given no addresses, on NATS JetStream, etcd and S3: it finds the coord and the
query nodes from their sessions; a node that starts later is given a channel by the coord and
takes reads without a restart; one that is killed (its lease expires) or stopped (its session is
revoked) has its channel moved to the other while reads go on (they wait out the move). The coord
and the nodes are real processes; the proxy runs in this one, so the test can look at its router
(which nodes it has, which served reads). Times are printed, not asserted."""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import server_settings, spawn_vecdb, stop_processes, wait_until

TTL = 2  # session_ttl: a killed node's session expires within this




def test_proxy_finds_the_nodes_that_join_and_drops_those_that_leave(tmp_path, remote_storage):
    from vecdb.proxy.process import ProxyProcess

    storage = dict(remote_storage(), session_ttl=TTL)
    procs: dict[str, subprocess.Popen] = {}
    proxy = c = None

    def querynode(name: str) -> None:
        procs[name] = spawn_vecdb(storage, tmp_path / name, "querynode", "--port", "0", "--node-id", name)

    try:
        procs["coord"] = spawn_vecdb(storage, tmp_path / "coord", "coord", "--port", "0")
        querynode("a")
        proxy = ProxyProcess(server_settings(tmp_path / "proxy", None, storage))  # no addresses
        router = proxy.router
        assert router.node_ids() == ["a"]

        c = MilvusClient(uri=f"http://127.0.0.1:{proxy.port}")
        c.create_collection("docs", dimension=4, metric_type="L2", num_shards=2)
        info = proxy.roles.catalog.get("default", "docs")
        vecs = np.random.default_rng(0).random((300, 4), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(300)])
        rows = 300

        def count() -> int:
            return c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"]

        def holders() -> set[str]:
            return {part[0] for plan in router.plans(info.id) for part in plan}

        for _ in range(3):
            assert count() == rows
        assert set(router.reads_served()) == {"a"}

        querynode("b")  # registered when it printed ready: the coord hands it a channel, no restart
        joined = wait_until(lambda: holders() == {"a", "b"}, 60.0, "b takes a channel")
        served = router.reads_served()
        for _ in range(3):
            assert count() == rows
        now = router.reads_served()
        assert now["a"] == served["a"] + 3 and now.get("b", 0) == 3, now  # each read asks both, one channel each
        print(f"\njoin: b serves a channel {joined * 1000:.0f} ms after it reported ready; reads so far {now}")

        procs["a"].kill()  # a crash: a's session expires within the ttl, its channel moves to b
        procs["a"].wait(5)
        t0 = time.monotonic()
        c.insert("docs", [{"id": 1000, "vector": vecs[0]}])
        rows += 1
        assert count() == rows  # waits out the move
        moved = time.monotonic() - t0
        assert "a" not in router.node_ids() and holders() == {"b"}
        before = router.reads_served()
        for _ in range(4):
            assert count() == rows
        assert router.reads_served()["b"] == before["b"] + 4
        print(f"leave (kill -9): a's channel served by b {moved:.2f} s after the kill (session ttl {TTL} s)")

        querynode("a")  # back under its id: given a channel again
        rejoined = wait_until(lambda: holders() == {"a", "b"}, 60.0, "a takes a channel again")
        procs["b"].send_signal(signal.SIGTERM)  # a clean stop revokes b's session at once
        t0 = time.monotonic()
        stopped = wait_until(lambda: holders() == {"a"}, 60.0, "b's channels move to a on a clean stop")
        assert procs["b"].wait(15) == 0
        before = router.reads_served()
        for _ in range(4):
            assert count() == rows
        assert router.reads_served()["a"] == before["a"] + 4
        print(f"rejoin: a serves a channel {rejoined * 1000:.0f} ms after it reported ready; "
              f"leave (SIGTERM): b's channels on a {stopped * 1000:.0f} ms after the signal")
        print(f"reads served: {router.reads_served()}")
    finally:
        if c is not None:
            c.close()
        if proxy is not None:
            proxy.stop()
        stop_processes(procs.values())

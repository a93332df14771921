"""The cluster as separate processes on loopback: ``vecdb coord``, two ``vecdb querynode`` and a
``vecdb proxy`` on NATS JetStream, etcd and S3, driven through pymilvus; a query node that
crashes has its channels taken over by the other one, and a restarted one serves again; everything
stops cleanly. The proxy finds the coord and the nodes from their sessions, or is given the coord's
address (the override)."""

from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, spawn_vecdb


@pytest.mark.parametrize("wiring", ["discovery", "addresses"])
def test_cluster_of_processes_serves_pymilvus(tmp_path, remote_storage, wiring):
    storage = dict(remote_storage(), session_ttl=2)
    coord_port, qn_ports, proxy_port = free_port(), [free_port(), free_port()], free_port()
    procs = []
    try:
        procs.append(spawn_vecdb(storage, tmp_path / "coord", "coord", "--port", str(coord_port)))
        for i, p in enumerate(qn_ports):
            procs.append(spawn_vecdb(storage, tmp_path / f"qn{i}", "querynode", "--port", str(p),
                                     "--node-id", f"qn{i}"))
        flags = ["--coord", f"127.0.0.1:{coord_port}"]
        procs.append(spawn_vecdb(storage, tmp_path / "proxy", "proxy", "--port", str(proxy_port),
                                 *(flags if wiring == "addresses" else ())))

        c = MilvusClient(uri=f"http://127.0.0.1:{proxy_port}")
        c.create_collection("docs", dimension=4, metric_type="L2")
        vecs = np.random.default_rng(0).random((500, 4), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"t{i % 5}"} for i in range(500)])
        c.delete("docs", ids=[0, 1, 2])
        for _ in range(4):  # every acknowledged write is seen
            assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 497
        hits = c.search("docs", data=[vecs[42]], limit=3, filter='tag == "t2"', output_fields=["tag"])[0]
        assert hits[0]["id"] == 42 and all(h["entity"]["tag"] == "t2" for h in hits)
        c.flush("docs")
        c.insert("docs", [{"id": 1000, "vector": vecs[3], "tag": "new"}])
        assert c.query("docs", filter='tag == "new"', output_fields=["id"]) == [{"id": 1000}]

        procs[1].kill()  # a query node crashes: the other one takes its channels over
        procs[1].wait(5)
        for _ in range(4):
            assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 498
        c.insert("docs", [{"id": 1001, "vector": vecs[4], "tag": "new"}])
        procs[1] = spawn_vecdb(storage, tmp_path / "qn0", "querynode", "--port", str(qn_ports[0]), "--node-id", "qn0")
        procs[2].kill()  # now the other one is gone: the restarted node loads the collection and answers
        procs[2].wait(5)
        procs.pop(2)
        for _ in range(4):
            assert c.query("docs", filter='tag == "new"', output_fields=["count(*)"])[0]["count(*)"] == 2
        c.close()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                assert proc.wait(15) == 0, proc.stdout.read()
            except subprocess.TimeoutExpired:
                proc.kill()
                raise

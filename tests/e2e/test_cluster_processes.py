"""The cluster as separate processes on loopback: ``vecdb coord``, two ``vecdb querynode`` and a
``vecdb proxy`` on NATS JetStream, etcd and S3, driven through pymilvus; a query node that
crashes has its channels taken over by the other one, and a restarted one serves again; everything
stops cleanly. The proxy finds the coord and the nodes from their sessions, or is given the coord's
address (the override)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import start_cluster


@pytest.mark.parametrize("wiring", ["discovery", "addresses"])
def test_cluster_of_processes_serves_pymilvus(tmp_path, remote_storage, wiring):
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path, querynodes=("qn0", "qn1"), datanodes=(),
                       proxies=()) as cluster:
        flags = ["--coord", f"127.0.0.1:{cluster.ports['coord']}"]
        cluster.start("proxy", "proxy", *(flags if wiring == "addresses" else ()))

        c = cluster.client()
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

        cluster.kill("qn0")  # a query node crashes: the other one takes its channels over
        for _ in range(4):
            assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 498
        c.insert("docs", [{"id": 1001, "vector": vecs[4], "tag": "new"}])
        cluster.start("qn0")  # on its port and data dir again
        cluster.kill("qn1")  # now the other one is gone: the restarted node loads the collection and answers
        for _ in range(4):
            assert c.query("docs", filter='tag == "new"', output_fields=["count(*)"])[0]["count(*)"] == 2
        cluster.stop_all()  # every process exits cleanly on SIGTERM

"""The same pymilvus calls on a standalone server and on a cluster of processes (coord, two query nodes,
a data node, two proxies on NATS, etcd and S3), consecutive calls alternating between the cluster's
proxies, answer alike. Left from a differential sweep of the API (every DDL, DML, read, index, load,
compaction, import, RBAC, resource group and error call, answers compared as JSON):

- describe_index's ``total_rows`` / ``indexed_rows`` just after a flush or a compaction: the cluster's
  proxies counted the query nodes' view, which takes the new segments over after the call returned
  (151 of 300 rows just after a flush, 249 instead of 200 just after a compaction: the compacted
  segment and a source held at once). Now the build records over the persisted segments, as Milvus's
  datacoord counts them, whatever the query nodes hold.
- get_query_segment_info / list_loaded_segments with two replicas listed each growing segment once per
  replica (its rows counted twice); now once, with both replicas' nodes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import MilvusClient, connections, utility

from tests.conftest import LocalCluster, start_standalone, wait_until

DIM = 4
N = 300


@pytest.fixture(scope="module")
def deployments(tmp_path_factory, remote_storage):
    """{"standalone": [client, client], "cluster": [client of proxy 0, client of proxy 1]}."""
    standalone = start_standalone(tmp_path_factory.mktemp("vs-standalone"))
    try:
        cluster = LocalCluster(tmp_path_factory.mktemp("vs-cluster"), remote_storage(), proxies=2, querynodes=2)
    except BaseException:
        standalone.stop()
        raise
    uris = {"standalone": [f"http://127.0.0.1:{standalone.port}"] * 2,
            "cluster": [f"http://127.0.0.1:{p}" for p in cluster.ports]}
    clients = {kind: [MilvusClient(uri=u) for u in us] for kind, us in uris.items()}
    yield clients, uris
    for pair in clients.values():
        for c in pair:
            c.close()
    cluster.stop()
    standalone.stop()


class Alternating:
    """Each call on the next client in turn (on a cluster: the other proxy)."""

    def __init__(self, clients: list[MilvusClient]):
        self.clients, self.turn = clients, 0

    def __getattr__(self, method: str):
        c = self.clients[self.turn % len(self.clients)]
        self.turn += 1
        return getattr(c, method)


def _rows(start: int, n: int) -> list[dict]:
    v = np.random.default_rng(start).random((n, DIM), dtype=np.float32)
    return [{"id": start + i, "vector": v[i].tolist(), "g": (start + i) % 5} for i in range(n)]


def _progress(c, name: str) -> dict:
    d = c.describe_index(name, "vector")
    return {k: d[k] for k in ("total_rows", "indexed_rows", "pending_index_rows", "state")}


def _index_progress_after_flush_and_compaction(c) -> list[dict]:
    c.create_collection("ip", dimension=DIM, num_shards=2, consistency_level="Strong")
    c.insert("ip", _rows(0, N))
    c.flush("ip")
    seen = [_progress(c, "ip")]
    c.delete("ip", filter="id < 100")
    c.flush("ip")
    seen.append(_progress(c, "ip"))
    cid = c.compact("ip")
    deadline = time.monotonic() + 60
    while c.get_compaction_state(cid) != "Completed":
        assert time.monotonic() < deadline, "the compaction did not complete within 60 s"
        time.sleep(0.1)
    seen.append(_progress(c, "ip"))
    seen.append(c.query("ip", filter="", output_fields=["count(*)"])[0]["count(*)"])
    c.drop_collection("ip")
    return seen


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_index_progress_counts_the_persisted_segments_at_once(deployments, kind):
    clients, _ = deployments
    seen = _index_progress_after_flush_and_compaction(Alternating(clients[kind]))
    done = {"pending_index_rows": 0, "state": "Finished"}
    # FLAT needs no build: every persisted row counts as indexed at once, however the query nodes hold them
    assert seen == [{"total_rows": N, "indexed_rows": N, **done}, {"total_rows": N, "indexed_rows": N, **done},
                    {"total_rows": N - 100, "indexed_rows": N - 100, **done}, N - 100], kind


def _segment_rows(uri: str, alias: str, name: str, replicas: int, growing: int) -> list[tuple[int, int, int]]:
    """(state, rows, nodes holding it) of each segment get_query_segment_info lists, once every one of
    ``replicas`` query nodes holds its ``growing`` rows: the replica that did not answer the count may
    apply them a moment later (segment infos wait for nothing, as Milvus's do not)."""
    connections.connect(alias, uri=uri)
    try:
        def settled() -> bool:
            segs[:] = utility.get_query_segment_info(name, using=alias)
            held: dict[int, int] = {}
            for seg in segs:
                for node in seg.nodeIds if seg.state == 2 else ():
                    held[node] = held.get(node, 0) + seg.num_rows
            return len(held) == replicas and set(held.values()) == {growing}

        segs: list = []
        wait_until(lambda: settled() or time.sleep(0.2), 30, "the replicas do not all hold the growing rows")
        return sorted((s.state, s.num_rows, len(s.nodeIds)) for s in segs)
    finally:
        connections.disconnect(alias)


def test_loaded_segments_count_each_growing_segment_once_over_replicas(deployments):
    clients, uris = deployments
    got = {}
    for kind in ("standalone", "cluster"):
        c = Alternating(clients[kind])
        c.create_collection("rep", dimension=DIM, num_shards=2, consistency_level="Strong")
        c.release_collection("rep")
        c.insert("rep", _rows(0, 200))
        c.flush("rep")
        replicas = 2 if kind == "cluster" else 1  # standalone has one query node
        c.load_collection("rep", replica_number=replicas)
        c.insert("rep", _rows(1000, 40))  # growing in every replica
        assert c.query("rep", filter="", output_fields=["count(*)"])[0]["count(*)"] == 240
        segs = _segment_rows(uris[kind][0], f"vs-{kind}", "rep", replicas, 40)
        loaded = c.list_loaded_segments("rep")
        c.drop_collection("rep")
        assert sum(rows for _, rows, _ in segs) == 240, (kind, segs)
        assert sum(s.num_rows for s in loaded) == 240, (kind, loaded)
        assert all(nodes == replicas for _, _, nodes in segs), (kind, segs)  # one node of each replica
        got[kind] = [(state, rows) for state, rows, _ in segs]
    assert sum(r for s, r in got["cluster"] if s == 2) == sum(r for s, r in got["standalone"] if s == 2) == 40

"""``vecdb node``: a proxy and a query node in one process (vecdb.node), two of them beside a coord
with ``querynode.replica_per_node`` on NATS, etcd and S3, as real processes driven through pymilvus.

Each node holds a whole replica of the collection (describe_replica: one replica per node, each
node the leader of every shard); searches and queries through either node's port answer exactly
(brute force) and are served by that node's own query node: the other node's search counter
(``milvus_querynode_sq_req_count`` on its /metrics) stays still. A Strong read through one node
sees what the other acknowledged. kill -9 of a node while it takes writes loses no acknowledged
write, the other node answers at once (its own replica: no failover to wait for) and the dead
node's replica goes; a node started later gets a replica of its own and serves its reads itself.
``vecdb node --workers 2``: each worker process a replica of its own, serving its own reads; a worker
killed with -9 comes back under a new id, which gets a replica; a worker stalled past its session's
ttl (SIGSTOP) exits 1 on waking and comes back the same way. SIGTERM stops a node cleanly."""

from __future__ import annotations

import re
import time
import urllib.request

import numpy as np
from pymilvus import DataType, MilvusClient

from tests.conftest import RoleProcesses, free_ports, wait_until
from tests.e2e._helpers import AckedWriter, worker_pid
from vecdb.discovery import node_number

DIM = 8
ENV = {"VECDB_QUERYNODE__REPLICA_PER_NODE": "true"}
# the sessions' ttl: a killed node is found gone within it; 2 s (as other cluster tests use) has seen a live
# node's sessions lapse on this 2-core machine under other sessions' load (a node then exits 1)
TTL = 4


def client(port: int, **kwargs) -> MilvusClient:
    return MilvusClient(uri=f"http://127.0.0.1:{port}", dedicated=True, **kwargs)


def searches_served(http_port: int, node_id: str) -> float:
    """The searches the query node ``node_id`` answered, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for m in re.finditer(r"^milvus_querynode_sq_req_count(?:_total)?\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels == {"node_id": node_id, "query_type": "search", "status": "total"}:
            total += float(m.group(2))
    return total


def replicas(c: MilvusClient) -> dict[int, set[int]]:
    """node number -> the shard leaders of its replica, for each replica of one node."""
    out = {}
    for r in c.describe_replica("docs"):
        assert len(r.group_nodes) == 1, r
        out[r.group_nodes[0]] = {s.shard_leader for s in r.shards}
    return out


def wait_served_here(c: MilvusClient, http_port: int, node_id: str, q: np.ndarray) -> float:
    """Until a search through ``c`` is answered by the query node ``node_id`` (its own, once it
    loaded its replica and reported it: until then a read goes to another replica over RPC)."""
    def served() -> bool:
        before = searches_served(http_port, node_id)
        c.search("docs", data=[q.tolist()], limit=1)
        return searches_served(http_port, node_id) > before
    return wait_until(served, 30, f"{node_id} never served its own reads")


def wait_replicas(c: MilvusClient, want: dict[int, set[int]], what: str) -> None:
    seen: list = []

    def holds() -> bool:
        seen[:] = [replicas(c)]
        return seen[0] == want
    try:
        wait_until(holds, 30, what)
    except AssertionError as e:
        raise AssertionError(f"{e}: {seen[0]} (want {want})") from None


def count(c: MilvusClient) -> int:
    return c.query("docs", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def brute(vecs: dict[int, np.ndarray], q: np.ndarray, k: int) -> list[int]:
    ids = np.array(sorted(vecs))
    d = ((np.stack([vecs[i] for i in ids]) - q) ** 2).sum(axis=1)
    return ids[np.argsort(d, kind="stable")[:k]].tolist()


def check_exact(c: MilvusClient, vecs: dict[int, np.ndarray], queries: np.ndarray) -> None:
    got = c.search("docs", data=queries.tolist(), limit=10, consistency_level="Strong")
    for q, hits in zip(queries, got):
        assert [h["id"] for h in hits] == brute(vecs, q, 10)
    rows = c.query("docs", filter="id < 40", output_fields=["vector"], consistency_level="Strong")
    assert sorted(r["id"] for r in rows) == [i for i in sorted(vecs) if i < 40]
    for r in rows:
        assert np.allclose(r["vector"], vecs[r["id"]])


def test_nodes_serve_reads_from_their_own_replica(tmp_path, remote_storage):
    rng = np.random.default_rng(7)
    vecs: dict[int, np.ndarray] = {}
    with RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path) as cl:
        cl.start("coord", env=ENV)
        for name in ("na", "nb"):
            proc = cl.start(name, "node", http=True)
            assert f"vecdb node {name} ready on 127.0.0.1:{cl.ports[name]} (query node on 127.0.0.1:" in proc.output()
        a, b = client(cl.ports["na"]), client(cl.ports["nb"])
        cl.at_close(a.close)
        cl.at_close(b.close)
        schema = a.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        index = a.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="L2")
        a.create_collection("docs", schema=schema, index_params=index, num_shards=2, consistency_level="Strong")

        def insert(c: MilvusClient, ids) -> None:
            rows = [{"id": int(i), "vector": rng.random(DIM, dtype=np.float32)} for i in ids]
            c.insert("docs", rows)
            vecs.update({r["id"]: r["vector"] for r in rows})

        insert(a, range(300))
        a.flush("docs")  # sealed segments and growing rows below
        insert(b, range(300, 500))
        # a replica per node, each node leading every shard of its own
        na, nb = node_number("na"), node_number("nb")
        wait_replicas(a, {na: {na}, nb: {nb}}, "no replica per node")
        assert replicas(b) == {na: {na}, nb: {nb}}

        # exact answers through either node, each served by its own query node alone
        queries = rng.random((5, DIM), dtype=np.float32)
        ha, hb = cl.http_ports["na"], cl.http_ports["nb"]
        for reader, own, other in ((a, ("na", ha), ("nb", hb)), (b, ("nb", hb), ("na", ha))):
            wait_served_here(reader, own[1], own[0], queries[0])
            check_exact(reader, vecs, queries)
            before = searches_served(own[1], own[0]), searches_served(other[1], other[0])
            for q in queries:
                hits = reader.search("docs", data=[q.tolist()], limit=10, consistency_level="Strong")[0]
                assert [h["id"] for h in hits] == brute(vecs, q, 10)
            assert searches_served(own[1], own[0]) == before[0] + len(queries)
            assert searches_served(other[1], other[0]) == before[1]  # the other node answered none

        # a Strong read through one node sees each write the other acknowledged
        for step in range(6):
            writer, reader = (a, b) if step % 2 == 0 else (b, a)
            base = 1000 + step * 20
            insert(writer, range(base, base + 20))
            assert count(reader) == len(vecs)
            assert reader.search("docs", data=[vecs[base + 19].tolist()], limit=1)[0][0]["id"] == base + 19
        b.delete("docs", ids=[0, 1])
        del vecs[0], vecs[1]
        assert count(a) == len(vecs)

        # kill -9 of node a while it takes writes: every acknowledged write stays, b answers at once
        drawn: dict[int, np.ndarray] = {}

        def row(i: int) -> dict:
            drawn[i] = rng.random(DIM, dtype=np.float32)
            return {"id": i, "vector": drawn[i]}

        writes = AckedWriter(cl.ports["na"], "docs", range(2000, 4000), row).start(20)
        cl.kill("na")
        writes.join()
        acked = writes.acked
        vecs.update({i: drawn[i] for i in acked})
        t0 = time.monotonic()
        got = b.query("docs", filter="id >= 2000", output_fields=["id"], consistency_level="Strong", limit=5000)
        assert time.monotonic() - t0 < 2.0  # b's own replica: no failover, no wait for a's session to end
        assert set(acked) <= {r["id"] for r in got}
        # a's replica goes once its session ended
        wait_replicas(b, {nb: {nb}}, "the dead node's replica stayed")
        # a write in flight at the kill may have landed (never acknowledged; its bytes may have reached NATS
        # after the read above): by now it has, or never will
        got_ids = {r["id"] for r in b.query("docs", filter="id >= 2000", output_fields=["id"], limit=5000)}
        assert set(acked) <= got_ids and got_ids - set(acked) <= {max(acked) + 1}
        for i in got_ids - set(vecs):
            vecs[i] = np.array(b.get("docs", ids=[i], output_fields=["vector"])[0]["vector"], np.float32)
        assert count(b) == len(vecs)
        check_exact(b, vecs, queries)

        # a node started later gets a replica of its own and serves its reads itself
        cl.start("nc", "node", http=True)
        c = client(cl.ports["nc"])
        cl.at_close(c.close)
        nc = node_number("nc")
        wait_replicas(b, {nb: {nb}, nc: {nc}}, "the new node got no replica")
        hc = cl.http_ports["nc"]
        took = wait_served_here(c, hc, "nc", queries[0])  # until then its reads go to nb's replica
        print(f"nc served its own replica {took:.2f} s after describe_replica showed it")
        check_exact(c, vecs, queries)
        before = searches_served(hc, "nc"), searches_served(hb, "nb")
        for q in queries:
            assert [h["id"] for h in c.search("docs", data=[q.tolist()], limit=10)[0]] == brute(vecs, q, 10)
        assert (searches_served(hc, "nc"), searches_served(hb, "nb")) == (before[0] + len(queries), before[1])
        insert(c, range(5000, 5010))
        assert count(b) == count(c) == len(vecs)
        # SIGTERM: each node stops cleanly (exit 0), the other serving on meanwhile
        stopped = cl.procs.pop("nc")
        assert stopped.stop(30) == 0, stopped.failure("did not stop cleanly")
        assert count(b) == len(vecs)
        stopped = cl.procs.pop("nb")
        assert stopped.stop(30) == 0, stopped.failure("did not stop cleanly")


def test_node_workers_each_hold_a_replica(tmp_path, remote_storage):
    """``vecdb node --workers 2``: two node processes on one port, each a replica of its own and serving
    its own reads; a worker killed with -9 is started again under a new id, which gets a replica while
    the dead one's goes."""
    import os
    import signal


    rng = np.random.default_rng(3)
    with RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path) as cl:
        cl.start("coord", env=ENV)
        base = free_ports(4)  # one block: ports picked one by one could overlap
        wport, hport = base, base + 2
        node = cl.start("nw", "node", "--workers", "2", "--worker-port", str(wport), "--http-port", str(hport))
        out = node.output()
        assert "vecdb node worker 0 (nw-w0) serving on" in out and "vecdb node worker 1 (nw-w1) serving on" in out
        assert f"vecdb node nw ready on 127.0.0.1:{cl.ports['nw']} (2 workers)" in out
        shared, w0, w1 = client(cl.ports["nw"]), client(wport), client(wport + 1)
        for c in (shared, w0, w1):
            cl.at_close(c.close)
        shared.create_collection("docs", dimension=DIM, metric_type="L2", consistency_level="Strong")
        vecs = {i: rng.random(DIM, dtype=np.float32) for i in range(200)}
        shared.insert("docs", [{"id": i, "vector": v} for i, v in vecs.items()])
        n0, n1 = node_number("nw-w0"), node_number("nw-w1")
        wait_replicas(shared, {n0: {n0}, n1: {n1}}, "no replica per worker")
        q = rng.random(DIM, dtype=np.float32)
        for c, i in ((w0, 0), (w1, 1)):
            mine, other = f"nw-w{i}", f"nw-w{1 - i}"
            wait_served_here(c, hport + i, mine, q)
            before = searches_served(hport + 1 - i, other)
            assert [h["id"] for h in c.search("docs", data=[q.tolist()], limit=10)[0]] == brute(vecs, q, 10)
            assert searches_served(hport + 1 - i, other) == before
        pid0 = worker_pid(node.pid, 0)
        assert pid0 is not None
        os.kill(pid0, signal.SIGKILL)
        wait_until(lambda: "vecdb node worker 0 (nw-w0.1) serving on" in node.output(), 60,
                   "worker 0 was not started again")
        n01 = node_number("nw-w0.1")
        wait_replicas(w1, {n01: {n01}, n1: {n1}}, "the restarted worker got no replica")
        assert count(w1) == 200
        # worker 1 stalls longer than its session's ttl (SIGSTOP): on waking its sessions are lost, so it stops
        # and exits 1, and comes back under a new id with a replica of its own (not serving from a stale view)
        pid1 = worker_pid(node.pid, 1)
        assert pid1 is not None
        os.kill(pid1, signal.SIGSTOP)
        try:
            wait_replicas(w0b := client(wport), {n01: {n01}}, "the stalled worker's replica stayed")
        finally:
            os.kill(pid1, signal.SIGCONT)
        cl.at_close(w0b.close)
        wait_until(lambda: "node worker 1 (nw-w1) exited with code 1: starting it again" in node.output(), 30,
                   "the stalled worker did not exit")
        assert "nw-w1: its session session/" in node.output()
        wait_until(lambda: "vecdb node worker 1 (nw-w1.1) serving on" in node.output(), 60,
                   "worker 1 was not started again")
        n11 = node_number("nw-w1.1")
        wait_replicas(w0b, {n01: {n01}, n11: {n11}}, "the restarted worker got no replica")
        assert count(w0b) == 200
        stopped = cl.procs.pop("nw")  # SIGTERM to the parent: both workers stop, the parent exits 0
        assert stopped.stop(40) == 0, stopped.failure("did not stop cleanly")

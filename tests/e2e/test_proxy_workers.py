"""``vecdb proxy --workers 2``: one proxy as two worker processes on one port (vecdb.proxy.workers),
in a cluster of processes (coord, a query node) on NATS, etcd and S3. Each worker is a proxy of its
own (its node id, session, /metrics on http port + i, its own Milvus port with --worker-port), and
both accept on the shared port; a Strong read through one worker sees what the other acknowledged,
DDL through one is seen at once by the other; kill -9 of a worker loses no acknowledged write, the
other keeps serving, and the parent starts the dead one again under a new id; SIGTERM to the parent
stops both cleanly. A client on the shared port answers through the loss of its worker (pymilvus
reconnects, to a live one)."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request

import grpc
import numpy as np
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from tests.conftest import free_port, free_ports, spawn_vecdb, stop_processes, wait_until
from tests.e2e._helpers import AckedWriter, worker_pid
from vecdb.discovery import node_number


def answering_node(port: int) -> int:
    """The node number of the worker that answers GetComponentStates on a connection of its own
    (a local subchannel pool: grpc would otherwise reuse one connection for every channel)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        reply = milvus_pb2_grpc.MilvusServiceStub(ch).GetComponentStates(milvus_pb2.GetComponentStatesRequest(),
                                                                          timeout=10)
    return reply.state.nodeID


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def client(port: int, **kwargs) -> MilvusClient:
    """A pymilvus client with a connection of its own (pymilvus 2.6 shares one between clients of one
    address: a writer's broken connection would be every such client's)."""
    return MilvusClient(uri=f"http://127.0.0.1:{port}", dedicated=True, **kwargs)


def count(client: MilvusClient, name: str) -> int:
    return client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def test_two_workers_one_port(tmp_path, remote_storage):
    storage = dict(remote_storage(), session_ttl=2)
    base = free_ports(5)  # one block: ports picked one by one could overlap
    port, wport, hport = base, base + 1, base + 3
    procs, clients = [], []
    try:
        procs.append(spawn_vecdb(storage, tmp_path / "coord", "coord", "--port", "0"))
        procs.append(spawn_vecdb(storage, tmp_path / "qn0", "querynode", "--port", "0", "--node-id", "qn0"))
        proxy = spawn_vecdb(storage, tmp_path / "proxy", "proxy", "--port", str(port), "--workers", "2",
                            "--worker-port", str(wport), "--http-port", str(hport), "--node-id", "px")
        procs.append(proxy)
        out = proxy.output()
        assert "vecdb proxy worker 0 (px-w0) serving on" in out and "vecdb proxy worker 1 (px-w1) serving on" in out
        assert f"vecdb proxy px ready on 127.0.0.1:{port} (2 workers)" in out
        w0, w1 = node_number("px-w0"), node_number("px-w1")
        # each worker: its own Milvus port, /healthz and /metrics (its node id), its own session
        assert answering_node(wport) == w0 and answering_node(wport + 1) == w1
        for i in range(2):
            assert http_get(hport + i, "/healthz") == "OK"
            assert f'vecdb_node_info{{node_id="px-w{i}",role="proxy"}} 1.0' in http_get(hport + i, "/metrics")
        # the shared port: connections land on both workers (the kernel spreads them; 2^-31 that it does not)
        seen = {answering_node(port) for _ in range(32)}
        assert seen == {w0, w1}

        a, b = client(wport), client(wport + 1)
        clients += [a, b]
        a.create_collection("docs", dimension=4, metric_type="L2", consistency_level="Strong")
        assert b.has_collection("docs")  # DDL through worker 0 answered once worker 1 applied it
        vecs = np.random.default_rng(0).random((400, 4), dtype=np.float32)
        for step in range(8):  # each write through one worker is seen by a Strong read through the other
            writer, reader = (a, b) if step % 2 == 0 else (b, a)
            writer.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(step * 50, step * 50 + 50)])
            assert count(reader, "docs") == step * 50 + 50
            hits = reader.search("docs", data=[vecs[step * 50 + 49]], limit=1, consistency_level="Strong")[0]
            assert hits[0]["id"] == step * 50 + 49
        b.delete("docs", ids=[0, 1])
        assert count(a, "docs") == 398

        # a client on the shared port, on one worker or the other: it answers through the kills of both below
        shared = client(port)
        clients.append(shared)
        assert count(shared, "docs") == 398
        # kill -9 worker 0 while it takes writes: every acknowledged one stays, worker 1 keeps serving
        pid0 = worker_pid(proxy.pid, 0)
        assert pid0 is not None
        writes = AckedWriter(wport, "docs", range(1000, 3000), lambda i: {"id": i, "vector": vecs[i % 400]}).start(20)
        os.kill(pid0, signal.SIGKILL)
        # gone once the parent reaped it (a connection made while it dies can land in its backlog and be reset)
        wait_until(lambda: "proxy worker 0 (px-w0) exited with code -9: starting it again" in proxy.output(), 30,
                   "the parent did not see worker 0 die")
        writes.join()
        got = b.query("docs", filter="id >= 1000", output_fields=["id"], consistency_level="Strong", limit=5000)
        assert set(writes.acked) <= {r["id"] for r in got}
        assert count(shared, "docs") == 398 + len({r["id"] for r in got})  # the shared port serves on
        # the parent starts worker 0 again, under a new id; it reads everything
        wait_until(lambda: "vecdb proxy worker 0 (px-w0.1) serving on" in proxy.output(), 60,
                   "worker 0 was not started again")
        assert answering_node(wport) == node_number("px-w0.1")
        a2 = client(wport)
        clients.append(a2)
        a2.insert("docs", [{"id": 5000, "vector": vecs[0]}])
        assert count(b, "docs") == count(a2, "docs") == 399 + len({r["id"] for r in got})
        os.kill(worker_pid(proxy.pid, 1), signal.SIGKILL)  # now worker 1: the shared client lost its worker once
        wait_until(lambda: "proxy worker 1 (px-w1) exited with code -9: starting it again" in proxy.output(), 30,
                   "the parent did not see worker 1 die")
        assert count(shared, "docs") == 399 + len({r["id"] for r in got})  # pymilvus reconnects, to worker 0
        wait_until(lambda: "vecdb proxy worker 1 (px-w1.1) serving on" in proxy.output(), 60,
                   "worker 1 was not started again")
        for c in clients:
            c.close()
        clients.clear()

        # a bad count is refused; a worker that cannot start (its own port is taken) ends its proxy
        bad = spawn_vecdb(storage, tmp_path / "p0", "proxy", "--workers", "0", ready=None)
        assert bad.wait(30) == 2 and "--workers must be 1 or more" in bad.output()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            other = spawn_vecdb(storage, tmp_path / "p1", "proxy", "--port", str(free_port()), "--workers", "2",
                                "--worker-port", str(taken.getsockname()[1]), ready=None)
            procs.append(other)
            assert other.wait(60) != 0, other.failure("kept running")
            assert "before it was up: stopping" in other.output() and " ready on " not in other.output()

        # SIGTERM to the parent: both workers stop, the parent exits 0
        pids = [worker_pid(proxy.pid, i) for i in range(2)]
        assert None not in pids
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(40) == 0, proxy.failure("did not stop cleanly")
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    finally:
        for c in clients:
            c.close()
        stop_processes(reversed(procs))

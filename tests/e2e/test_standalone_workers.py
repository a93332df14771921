"""``vecdb standalone --workers 2``: a primary process (the embedded storage served over loopback gRPC, the
coord, the data node) and two workers (``vecdb node``: a proxy and a query node each) on one Milvus port
(vecdb.primary), as real processes through pymilvus.

- the whole round trip (create, insert, index, load, search, query, delete, upsert, flush, count) answers as
  a one-process standalone does on the same operations;
- a Strong read through one worker sees what the other acknowledged (each worker reached on its own port,
  ``proxy.worker_port``);
- kill -9 of a worker under writes loses no acknowledged write, the other keeps serving, and the primary
  starts the dead one again (a new id) which reads everything;
- the same data directory under one process and back under two workers: everything is found each time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import free_ports, start_vecdb, stop_processes, wait_until
from tests.e2e._helpers import AckedWriter, worker_pid
from tests.e2e.test_rest import post

DIM = 8
N = 600
TTL = 4  # session ttl: a killed worker's query node is found gone within ~4 s (at 2 s a live worker's session
# lapsed under load, and a worker whose session is lost exits: test_node_process saw it)


def _start(data_dir, port: int, workers: int, worker_port: int | None = None, http_port: int = 0,
           env: dict | None = None):
    env = {"VECDB_STORAGE__SESSION_TTL": str(TTL), **(env or {})}
    if worker_port is not None:
        env["VECDB_PROXY__WORKER_PORT"] = str(worker_port)
    return start_vecdb("standalone", "--port", str(port), "--http-port", str(http_port), "--workers", str(workers),
                       data_dir=data_dir, env=env, timeout=120)


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def wal_starts(data_dir) -> list[int]:
    """The first position of each WAL channel's oldest file (1 until the log was truncated)."""
    root = data_dir / "wal"
    return [min(int(f.split(".")[0]) for f in os.listdir(root / ch)) for ch in os.listdir(root)
            if not ch.startswith(".") and (root / ch).is_dir() and os.listdir(root / ch)]


def client(port: int, **kwargs) -> MilvusClient:
    """A client with a connection of its own (pymilvus 2.6 shares one between clients of an address)."""
    return MilvusClient(uri=f"http://127.0.0.1:{port}", dedicated=True, **kwargs)


def count(c: MilvusClient, name: str) -> int:
    return c.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def vectors(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32)


def _segments(data_dir) -> list[dict]:
    """The persisted segments' records in the data directory's metadata (the server stopped)."""
    from vecdb.storage.local_meta import LocalMetaStore

    meta = LocalMetaStore(str(data_dir / "meta"))
    try:
        return [json.loads(raw) for _, raw in meta.scan("seg/")]
    finally:
        meta.close()


def round_trip(c: MilvusClient) -> list:
    """Every step's answer, for comparison between deployments (distances rounded: float sums may
    differ in the last bits between a growing and a sealed segment)."""
    out: list = []
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("tag", DataType.INT64)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection("rt", schema=schema, consistency_level="Strong")
    vecs = vectors(1, N)
    for lo in range(0, N, 200):
        res = c.insert("rt", [{"id": i, "tag": i % 7, "vec": vecs[i]} for i in range(lo, lo + 200)])
        out.append(("insert", res["insert_count"]))
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 200})
    c.create_index("rt", idx)
    c.load_collection("rt")
    out.append(("load", str(c.get_load_state("rt")["state"])))
    queries = vectors(2, 5)

    def search(tag: str) -> None:
        hits = c.search("rt", data=queries, limit=5, search_params={"params": {"ef": 256}}, output_fields=["tag"],
                        consistency_level="Strong")
        out.append((tag, [[(h["id"], round(h["distance"], 4), h["entity"]["tag"]) for h in q] for q in hits]))

    search("search")
    got = c.query("rt", filter="tag == 3 and id < 100", output_fields=["id", "tag"], consistency_level="Strong")
    out.append(("query", sorted(r["id"] for r in got)))
    c.delete("rt", ids=list(range(0, 50)))
    c.delete("rt", filter="tag == 6")
    out.append(("count after delete", count(c, "rt")))
    res = c.upsert("rt", [{"id": i, "tag": 100 + i, "vec": vecs[i] * 0.5} for i in range(40, 80)])
    out.append(("upsert", res["upsert_count"]))
    out.append(("count after upsert", count(c, "rt")))
    c.flush("rt")
    out.append(("count after flush", count(c, "rt")))
    search("search after flush")
    got = c.query("rt", filter="id in [0, 45, 46, 99, 599]", output_fields=["id", "tag"], consistency_level="Strong")
    out.append(("get", sorted((r["id"], r["tag"]) for r in got)))
    out.append(("rows", c.get_collection_stats("rt")["row_count"]))
    out.append(("collections", c.list_collections()))
    return out


def test_round_trip_answers_as_one_process(tmp_path):
    base = free_ports(4)
    procs, clients = [], []
    try:
        one = _start(tmp_path / "one", base, 1)
        procs.append(one)
        c = client(base)
        clients.append(c)
        expected = round_trip(c)
        # the reference itself is right: rows left after the deletes and the upsert, five hits per query
        present = {i for i in range(50, N) if i % 7 != 6}
        steps = dict(expected)
        assert steps["count after delete"] == len(present)
        assert steps["count after flush"] == len(present | set(range(40, 80)))
        assert all(len(q) == 5 for q in steps["search after flush"])
        assert steps["get"] == [(45, 145), (46, 146), (99, 1), (599, 4)]  # 0 deleted, 45 and 46 upserted
        two = _start(tmp_path / "two", base + 1, 2, worker_port=base + 2)
        procs.append(two)
        assert "vecdb standalone worker 0" in two.output() and "vecdb standalone worker 1" in two.output()
        assert f"ready on 127.0.0.1:{base + 1}" in two.output() and "2 workers" in two.output()
        c2 = client(base + 1)
        clients.append(c2)
        assert round_trip(c2) == expected
        # each worker maps the sealed segments' files (querynode.mmap_sealed, set by the primary): the files
        # both read are one copy in the page cache, not one in each worker's memory (a segment sealed while
        # loaded keeps the rows it had in memory; a load reads the files)
        c2.release_collection("rt")
        c2.load_collection("rt")
        assert count(c2, "rt") == steps["count after flush"]
        for i in range(2):
            with open(f"/proc/{worker_pid(two.pid, i)}/maps") as f:
                mapped = {line.split()[-1] for line in f if len(line.split()) >= 6}
            assert any(path.startswith(str(tmp_path / "two")) for path in mapped), sorted(mapped)[-10:]
    finally:
        for c in clients:
            c.close()
        stop_processes(procs)


def test_strong_reads_across_workers_kill_and_restart(tmp_path):
    base = free_ports(6)
    port, wport, hport = base, base + 1, base + 3  # hport: the primary's HTTP; hport + 1 + i: worker i's
    data = tmp_path / "data"
    procs, clients = [], []
    try:
        # small WAL files, so that the primary's data node truncating the log shows as files gone
        server = _start(data, port, 2, worker_port=wport, http_port=hport,
                        env={"VECDB_STORAGE__WAL_SEGMENT_BYTES": "4096"})
        procs.append(server)
        assert http_get(hport, "/healthz") == "OK"  # the primary's: every worker up, coord, data node
        for i in range(2):  # each worker's own HTTP port: http port + 1 + i
            assert http_get(hport + 1 + i, "/healthz") == "OK"
            assert 'role="proxy"' in http_get(hport + 1 + i, "/metrics")
        a, b = client(wport), client(wport + 1)
        clients += [a, b]
        a.create_collection("docs", dimension=DIM, metric_type="L2", consistency_level="Strong")
        assert b.has_collection("docs")  # DDL through worker 0 answered once worker 1 applied it
        # the REST API on the primary's HTTP port as with one process (passed on to a worker), and on each worker's
        for p in (hport, hport + 1, hport + 2):
            assert post(p, "collections/has", {"collectionName": "docs"}) == (200, {"code": 0, "data": {"has": True}})
        assert post(hport, "entities/insert", {"collectionName": "docs", "data": [
            {"id": 9999, "vector": [0.5] * DIM}]})[1]["data"]["insertCount"] == 1
        a.delete("docs", ids=[9999])
        assert post(hport, "no/such/endpoint", {})[0] == 404
        vecs = vectors(0, 400)
        for step in range(8):  # a write acknowledged by one worker is seen by a Strong read on the other
            writer, reader = (a, b) if step % 2 == 0 else (b, a)
            writer.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(step * 50, step * 50 + 50)])
            assert count(reader, "docs") == step * 50 + 50
            hits = reader.search("docs", data=[vecs[step * 50 + 49]], limit=1, consistency_level="Strong")[0]
            assert hits[0]["id"] == step * 50 + 49
        b.delete("docs", ids=[0, 1])
        assert count(a, "docs") == 398
        a.flush("docs")  # through worker 0: the primary's data node persists the channels
        assert count(b, "docs") == 398
        # ... and truncates the log below what both workers' query nodes applied
        wait_until(lambda: any(start > 1 for start in wal_starts(data)), 30, "the log was not truncated")

        shared = client(port)  # on the shared port: one worker or the other
        clients.append(shared)
        assert count(shared, "docs") == 398
        # kill -9 worker 0 while it takes writes: every acknowledged one stays, worker 1 keeps serving
        pid0 = worker_pid(server.pid, 0)
        assert pid0 is not None
        writes = AckedWriter(wport, "docs", range(1000, 3000), lambda i: {"id": i, "vector": vecs[i % 400]}).start(20)
        os.kill(pid0, signal.SIGKILL)
        wait_until(lambda: "standalone worker 0" in server.output() and "exited with code -9" in server.output(),
                   30, "the primary did not see worker 0 die")
        health = http_get(hport, "/healthz")  # still 200: worker 1 serves
        if "-w0.1) serving on" not in server.output():  # (printed before the worker counts as up)
            assert health == "OK (1 of 2 workers restarting: [0])"
        else:
            assert health == "OK"
        writes.join()
        got = b.query("docs", filter="id >= 1000", output_fields=["id"], consistency_level="Strong", limit=5000)
        written = {r["id"] for r in got}
        assert set(writes.acked) <= written
        assert count(b, "docs") == 398 + len(written)
        wait_until(lambda: "-w0.1) serving on" in server.output(), 90, "worker 0 was not started again (new id)")
        a2 = client(wport)
        clients.append(a2)
        a2.insert("docs", [{"id": 5000, "vector": vecs[0]}])
        assert count(b, "docs") == count(a2, "docs") == 399 + len(written)
        assert count(shared, "docs") == 399 + len(written)  # the shared port serves on (pymilvus reconnects)
        total = 399 + len(written)
        for c in clients:
            c.close()
        clients.clear()

        # SIGTERM: workers, then the primary; exit 0. The same data directory under one process
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, server.failure("did not stop cleanly")
        errors = [line for line in server.output().splitlines() if " ERROR " in line and "code -9" not in line]
        assert not errors, server.failure("logged an error besides the killed worker's exit")
        segments = _segments(data)
        assert segments and all(seg["by"].endswith("-dn") for seg in segments)  # the primary's data node's
        one = _start(data, port, 1)
        procs.append(one)
        c = client(port)
        clients.append(c)
        assert count(c, "docs") == total
        assert c.search("docs", data=[vecs[7]], limit=1, consistency_level="Strong")[0][0]["id"] == 7
        c.insert("docs", [{"id": 6000, "vector": vecs[3]}])
        c.close()
        clients.clear()
        one.send_signal(signal.SIGTERM)
        assert one.wait(60) == 0, one.failure("did not stop cleanly")
        # and back under two workers
        again = _start(data, port, 2, worker_port=wport)
        procs.append(again)
        a, b = client(wport), client(wport + 1)
        clients += [a, b]
        assert count(a, "docs") == count(b, "docs") == total + 1
        assert b.search("docs", data=[vecs[9]], limit=1, consistency_level="Strong")[0][0]["id"] == 9
    finally:
        for c in clients:
            c.close()
        stop_processes(procs)


def test_bad_worker_count(tmp_path):
    bad = start_vecdb("standalone", "--workers", "0", "--http-port", "0", data_dir=tmp_path, ready=None)
    assert bad.wait(30) == 2 and "--workers must be 1 or more" in bad.output()


def test_kill_of_the_primary_loses_no_acknowledged_write(tmp_path):
    """kill -9 of the primary while a client writes through a worker: the workers exit (PR_SET_PDEATHSIG,
    their storage gone), and the server started again on the directory has every acknowledged write."""
    base = free_ports(3)
    port, wport = base, base + 1
    data = tmp_path / "data"
    procs, clients = [], []
    try:
        server = _start(data, port, 2, worker_port=wport)
        procs.append(server)
        workers = [worker_pid(server.pid, i) for i in range(2)]
        assert None not in workers
        a = client(wport)
        clients.append(a)
        a.create_collection("docs", dimension=DIM, metric_type="L2", consistency_level="Strong")
        vecs = vectors(3, 100)
        a.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(100)])
        a.flush("docs")  # some rows in segments, the rest only in the log
        writes = AckedWriter(wport + 1, "docs", range(1000, 5000),
                             lambda i: {"id": i, "vector": vecs[i % 100]}).start(30)
        server.kill()
        server.wait(10)
        writes.join()
        for pid in workers:  # the workers went with it
            wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}")
                       or open(f"/proc/{pid}/stat").read().split()[2] == "Z", 30, f"worker {pid} outlived the primary")
        for c in clients:
            c.close()
        clients.clear()
        again = _start(data, port, 2, worker_port=wport)  # waits out the dead primary's session (ttl TTL s)
        procs.append(again)
        b = client(wport + 1)
        clients.append(b)
        got = {r["id"] for r in b.query("docs", filter="id >= 1000", output_fields=["id"], limit=10000,
                                        consistency_level="Strong")}
        # at most the insert in flight at the kill beyond the acknowledged ones
        assert set(writes.acked) <= got and len(got) - len(writes.acked) <= 1
        assert count(b, "docs") == 100 + len(got)
    finally:
        for c in clients:
            c.close()
        stop_processes(procs)


def test_a_worker_that_cannot_start_ends_the_server(tmp_path):
    """A worker that fails before the first ready (its HTTP port, http.port + 1, taken; a Milvus port in use
    the primary refuses before it starts any: tests/e2e/test_startup_failures.py) ends the server with an
    error, and the primary lets go of the data directory: a server started next on it runs."""
    http = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", http + 1))
        taken.listen()
        bad = start_vecdb("standalone", "--port", str(free_ports(1)), "--http-port", str(http), "--workers", "2",
                          data_dir=tmp_path, env={"VECDB_STORAGE__SESSION_TTL": str(TTL)}, ready=None)
        try:
            assert bad.wait(120) != 0, bad.failure("kept running")
        finally:
            stop_processes([bad])
    out = bad.output()
    assert "before it was up: stopping" in out and " ready on " not in out
    other = free_ports(1)
    good = _start(tmp_path, other, 2)
    try:
        c = client(other)
        c.create_collection("after", dimension=DIM, consistency_level="Strong")
        assert c.list_collections() == ["after"]
        c.close()
    finally:
        stop_processes([good])


def test_flags_reach_the_workers(tmp_path):
    """--auth given to the primary holds on every worker: a call without a password is refused, root's works,
    and a user created through one worker logs in through the other."""
    base = free_ports(3)
    proc = start_vecdb("standalone", "--port", str(base), "--http-port", "0", "--workers", "2", "--auth",
                       data_dir=tmp_path, env={"VECDB_STORAGE__SESSION_TTL": str(TTL),
                                               "VECDB_PROXY__WORKER_PORT": str(base + 1)}, timeout=120)
    clients = []
    try:
        for i in range(2):
            with pytest.raises(MilvusException):
                client(base + 1 + i, timeout=10).list_collections()
        root0 = client(base + 1, token="root:Milvus")
        clients.append(root0)
        root0.create_user("alice", "secret-pw-1")
        alice1 = client(base + 2, token="alice:secret-pw-1")
        clients.append(alice1)
        assert alice1.list_collections() == []
    finally:
        for c in clients:
            c.close()
        stop_processes([proc])

"""The coord process's timestamp and id service (vecdb.coord.server), in-process and as
``vecdb coord`` on a real etcd."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
import uuid

import pytest

from tests.conftest import spawn_vecdb
from vecdb import errors
from vecdb.coord.server import Coord, RemoteIdAllocator, RemoteTimestampOracle
from vecdb.rpc import Client
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.memory import MemoryMetaStore
from vecdb.storage.servers import free_port


def test_timestamps_and_ids_are_unique_and_increasing_across_clients():
    coord = Coord(MemoryMetaStore(), session_ttl=2)
    clients = [Client(coord.address, "coord") for _ in range(3)]
    per_thread: list[list[int]] = []
    ids: list[int] = []

    def work(c):
        tso, alloc = RemoteTimestampOracle(c), RemoteIdAllocator(c)
        mine = [tso.allocate() for _ in range(150)]
        mine.append(tso.allocate(10))  # the first of 10 consecutive
        per_thread.append(mine)
        ids.extend(alloc.allocate(5) + k for k in range(5))

    threads = [threading.Thread(target=work, args=(c,)) for c in clients for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed = [ts for mine in per_thread for ts in mine[:-1]] + [mine[-1] + k for mine in per_thread for k in range(10)]
    assert len(set(handed)) == len(handed) == 6 * 160  # nothing handed out twice
    assert all(a < b for mine in per_thread for a, b in itertools.pairwise(mine))  # each caller's sequence increases
    assert len(set(ids)) == len(ids) == 6 * 5
    with pytest.raises(errors.InvalidParameter):
        clients[0].call("AllocTimestamp", {"count": 0})
    with pytest.raises(errors.InvalidParameter):
        clients[0].call("AllocID", {"count": "many"})
    for c in clients:
        c.close()
    coord.stop()


def test_a_second_coord_stands_by_until_the_first_stops():
    meta = MemoryMetaStore()
    first = Coord(meta, session_ttl=2)
    second = Coord(meta, session_ttl=2)
    assert first.active and not second.active
    assert json.loads(meta.get("session/coord"))["address"] == first.address
    with pytest.raises(errors.ServiceNotReady, match="not the active coord"):
        Client(second.address, "coord").call("AllocTimestamp", {})
    last = RemoteTimestampOracle(Client(first.address, "coord")).allocate()
    first.stop()  # a clean stop ends its session at once
    assert second.wait_active(10)
    assert json.loads(meta.get("session/coord"))["address"] == second.address
    assert RemoteTimestampOracle(Client(second.address, "coord")).allocate() > last
    second.stop()


def test_coord_process_on_etcd_restarts_above_every_timestamp_it_gave(etcd_server, tmp_path):
    ns = "t" + uuid.uuid4().hex[:12]
    port = free_port()
    argv = ("coord", "--port", str(port), "--meta-store", "etcd://" + etcd_server.url.split("://", 1)[1])
    procs = []  # every process started, killed at the end whatever happens

    def start():
        procs.append(spawn_vecdb({"namespace": ns, "session_ttl": 2}, tmp_path, *argv, ready="vecdb coord ready"))
        return procs[-1]

    try:
        proc = start()
        client = Client(f"127.0.0.1:{port}", "coord", timeout=5)
        tso = RemoteTimestampOracle(client)
        given = [tso.allocate() for _ in range(50)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        meta = EtcdMetaStore(etcd_server.url, prefix=f"{ns}/")
        assert meta.get("session/coord") is None  # a clean stop ends the session at once
        meta.close()

        proc = start()
        deadline = time.monotonic() + 20
        while True:  # the channel reconnects to the new process
            try:
                after = tso.allocate()
                break
            except errors.ServiceUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert after > max(given)
        proc.kill()  # a crash: the next coord stands by until the session's ttl ran out, then takes over
        proc.wait(5)
        proc = start()
        deadline = time.monotonic() + 20  # the old session's ttl (2 s) and a process start, on a busy machine
        while True:
            try:
                assert tso.allocate() > after
                break
            except (errors.ServiceUnavailable, errors.ServiceNotReady):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        client.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)

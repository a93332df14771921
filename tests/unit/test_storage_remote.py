"""The embedded backends served to other processes (``backend_server``, ``remote``): what the
conformance suites (the "remote" kind of test_storage_meta.py and test_storage_wal.py) do not
cover: clients in other processes, a client killed while it holds a lease, the serving side
restarting under a watcher, paging, authentication and how the URLs open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest

from tests.unit.storage_served import ServedLog, ServedMetaStore
from vecdb.config import StorageSettings
from vecdb.errors import InternalError, InvalidParameter, IoFailed, LeaseExpired
from vecdb.storage import backend_server
from vecdb.storage.backend_server import serve_backends
from vecdb.storage.backends import open_log, open_meta
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.remote import RemoteLog, RemoteMetaStore
from vecdb.storage.servers import free_port
from vecdb.storage.wal import WalLog
from vecdb.storage.watch import DELETE, PUT, Mirror, WatchCompacted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_writers_in_two_processes_keep_one_ordered_log(tmp_path):
    """Two client processes append to one channel, each reading the end and appending with
    ``expect_last`` (retrying on LogConflict), as the workers' writers do: one gapless log in which
    the writer of each record had seen the record before it."""
    log = ServedLog(str(tmp_path / "wal"))
    writer = """
        import sys
        from vecdb.errors import LogConflict
        from vecdb.storage.remote import RemoteLog
        log, name, conflicts = RemoteLog(sys.argv[1]), sys.argv[2], 0
        for i in range(60):
            while True:
                last = log.last_position("ch")
                try:
                    log.append_batch("ch", [f"{name}:{i}:{last}".encode()], expect_last=last)
                    break
                except LogConflict:
                    conflicts += 1
        print(conflicts)
        log.close()
    """
    try:
        procs = [_spawn(writer, log.url, name) for name in ("a", "b")]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        records = list(log.read("ch"))
        assert [p for p, _ in records] == list(range(1, 121))
        for pos, value in records:
            assert int(value.decode().rsplit(":", 1)[1]) == pos - 1
        for name in ("a", "b"):  # each writer's records in its own order
            assert [int(v.split(b":")[1]) for _, v in records if v.startswith(name.encode())] == list(range(60))
    finally:
        log.close()


def test_the_lease_of_a_killed_client_expires(tmp_path):
    """A client process holds a session key on a lease it renews; killed with SIGKILL it renews no
    more, and the key goes after the ttl (a watcher sees its delete), as with etcd."""
    store = ServedMetaStore(str(tmp_path / "meta"))
    holder = """
        import sys, time
        from vecdb.storage.remote import RemoteMetaStore
        s = RemoteMetaStore(sys.argv[1])
        lease = s.grant_lease(2)
        s.txn(puts={"session/worker-1": b"alive"}, lease=lease)
        print("ready", flush=True)
        while True:
            assert s.renew_lease(lease)
            time.sleep(0.3)
    """
    proc = _spawn(holder, store.url)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        w = store.watch("session/")
        time.sleep(2.5)  # past the ttl: renewed, so still there
        assert store.get("session/worker-1") == b"alive"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        events = []
        while not events and time.monotonic() - killed < 10:
            events = w.poll(1)  # nothing else uses the store: the blocked poll ends the lease
        assert [(ev.kind, ev.key) for ev in events] == [(DELETE, "session/worker-1")]
        assert time.monotonic() - killed < 2 + 1.5
        assert store.get("session/worker-1") is None
        w.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        store.close()


def _restart(server, local: LocalMetaStore, path: str, port: int):
    """The serving side restarts on the same port: a new process would reopen the store."""
    server.stop(0)
    local.close()
    local = LocalMetaStore(path)
    server, bound = serve_backends(local, None, port=port)
    assert bound == port
    return server, local


def test_a_watch_resumes_across_a_restart_of_the_server_or_reports_compacted(tmp_path):
    """As etcd's watchers: one that had every change resumes by itself from its last revision + 1
    once the server is back; one that had not (its changes were in the old process's memory) raises
    WatchCompacted and stays dropped, and a ``Mirror`` (scan, then watch) gets the whole state again."""
    path = str(tmp_path / "meta")
    local = LocalMetaStore(path)
    server, port = serve_backends(local, None)
    client = RemoteMetaStore(f"vecdb://127.0.0.1:{port}")
    try:
        caught_up, behind = client.watch("k/"), client.watch("k/")
        mirror = Mirror(client, "k/", retry_wait=0.2)
        client.put("k/1", b"one")
        assert [(ev.kind, ev.key) for ev in caught_up.poll(5)] == [(PUT, "k/1")]
        server, local = _restart(server, local, path, port)
        assert caught_up.poll(0.3) == []  # reconnected meanwhile; nothing new
        client.put("k/2", b"two")
        client.delete("k/1")
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += caught_up.poll(1)
        assert [(ev.kind, ev.key, ev.value) for ev in got] == [(PUT, "k/2", b"two"), (DELETE, "k/1", None)]
        with pytest.raises(WatchCompacted):
            while time.monotonic() < deadline:
                behind.poll(1)
        with pytest.raises(WatchCompacted):
            behind.poll(0)
        deadline = time.monotonic() + 10
        while mirror.items() != {"2": b"two"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mirror.items() == {"2": b"two"}
        mirror.close()
        caught_up.close()
        behind.close()
    finally:
        client.close()
        server.stop(0)
        local.close()


def test_a_poll_while_the_server_is_away_returns_nothing_and_the_watch_goes_on(tmp_path):
    path = str(tmp_path / "meta")
    local = LocalMetaStore(path)
    server, port = serve_backends(local, None)
    client = RemoteMetaStore(f"vecdb://127.0.0.1:{port}", timeout=2)
    try:
        w = client.watch("k/")
        server.stop(0)
        local.close()
        t0 = time.monotonic()
        assert w.poll(0.5) == []  # etcd's watcher: nothing while the connection is down
        assert time.monotonic() - t0 < 3
        with pytest.raises(IoFailed):
            client.get("k/1")
        local = LocalMetaStore(path)
        server, _ = serve_backends(local, None, port=port)
        deadline = time.monotonic() + 10
        while True:  # the channel reconnects on its own; the first calls may still fail
            try:
                client.put("k/1", b"back")
                break
            except IoFailed:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        got = []
        while not got and time.monotonic() < deadline:
            got = w.poll(1)
        assert [(ev.kind, ev.key) for ev in got] == [(PUT, "k/1")]
        w.close()
    finally:
        client.close()
        server.stop(0)
        local.close()


def test_a_watcher_nobody_polls_is_forgotten_and_its_client_reopens_it(tmp_path):
    local = LocalMetaStore(str(tmp_path / "meta"))
    server, port = serve_backends(local, None, idle_watch=0.5)
    client = RemoteMetaStore(f"vecdb://127.0.0.1:{port}")
    try:
        w = client.watch("k/")
        client.put("k/1", b"1")
        assert [ev.key for ev in w.poll(5)] == ["k/1"]
        time.sleep(1.0)
        client.put("k/2", b"2")
        client.watch("other/").close()  # any call sweeps the idle watchers
        assert server.service.watchers() == 0
        assert [ev.key for ev in w.poll(5)] == ["k/2"]  # reopened from its last revision + 1
        assert server.service.watchers() == 1
        w.close()
        assert server.service.watchers() == 0
    finally:
        client.close()
        server.stop(0)
        local.close()


def test_reads_and_follows_come_in_pages(tmp_path, monkeypatch):
    """A read larger than a page comes whole and in order over several calls; a follower's poll
    hands out at most about a page."""
    monkeypatch.setattr("vecdb.storage.remote.PAGE_BYTES", 1 << 20)
    log = ServedLog(str(tmp_path / "wal"))
    try:
        big = [bytes([i]) * (300 << 10) for i in range(20)]  # 6 MB in 300 KB records
        log.append_batch("c", big[:10])
        log.append_batch("c", big[10:])
        it = log.read("c", 2)
        log.append("c", b"after the read began")
        assert list(it) == [(i + 1, big[i]) for i in range(1, 20)]
        f = log.follow("c")
        pages = []
        while sum(len(p) for p in pages) < 21:
            pages.append(f.poll(2))
        assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 1]  # 1 MB pages of 300 KB records
        assert [r for p in pages for r in p][-1] == (21, b"after the read began")
    finally:
        log.close()


def test_wrong_secret_is_refused_and_an_absent_server_is_io_failed(tmp_path):
    local = LocalMetaStore(str(tmp_path / "meta"))
    server, port = serve_backends(local, None, secret="s3cret")
    try:
        good = RemoteMetaStore(f"vecdb://127.0.0.1:{port}", secret="s3cret")
        good.put("k", b"v")
        bad = RemoteMetaStore(f"vecdb://127.0.0.1:{port}", secret="wrong")
        with pytest.raises(InternalError, match="cluster_secret"):
            bad.get("k")
        assert good.get("k") == b"v"
        good.close()
        bad.close()
    finally:
        server.stop(0)
        local.close()
    absent = RemoteLog(f"vecdb://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(IoFailed):
        absent.append("c", b"x")
    absent.close()


def test_a_server_without_the_log_refuses_log_calls(tmp_path):
    store = ServedMetaStore(str(tmp_path / "meta"))
    log = RemoteLog(store.url)
    try:
        with pytest.raises(IoFailed, match="no log"):
            log.append("c", b"x")
    finally:
        log.close()
        store.close()


def test_vecdb_urls_open_the_remote_clients(tmp_path):
    meta, wal = ServedMetaStore(str(tmp_path / "meta")), ServedLog(str(tmp_path / "wal"))
    try:
        storage = StorageSettings(data_dir=str(tmp_path / "worker"), meta=meta.url, log=wal.url, namespace="other")
        m, lg = open_meta(storage), open_log(storage)
        assert isinstance(m, RemoteMetaStore) and isinstance(lg, RemoteLog)
        m.put("k", b"v")  # the served store's keys, without the client's namespace
        assert meta.local.get("k") == b"v"
        assert lg.append("c", b"x") == 1 and wal.local.last_position("c") == 1
        m.close()
        lg.close()
        for bad in ("vecdb://nohost", "vecdb://:12"):
            with pytest.raises(InvalidParameter, match="vecdb://host:port"):
                open_meta(StorageSettings(data_dir=str(tmp_path / "worker"), meta=bad))
    finally:
        meta.close()
        wal.close()


def test_long_polls_are_capped_by_the_server(tmp_path, monkeypatch):
    """A poll longer than one call may wait is several calls; the server never holds one longer."""
    monkeypatch.setattr(backend_server, "MAX_WAIT", 0.3)
    log = ServedLog(str(tmp_path / "wal"))
    try:
        f = log.follow("c")
        t0 = time.monotonic()
        assert f.poll(1.0) == []
        assert 0.9 < time.monotonic() - t0 < 3
    finally:
        log.close()


def test_a_lease_of_the_server_before_a_restart_is_not_another_clients(tmp_path):
    """The restarted store numbers its leases from 1 again; a client still holding a lease of the
    old process must not renew, or put with, the new process's lease of the same number."""
    path = str(tmp_path / "meta")
    local = LocalMetaStore(path)
    server, port = serve_backends(local, None)
    old, new = RemoteMetaStore(f"vecdb://127.0.0.1:{port}"), None
    try:
        stale = old.grant_lease(30)
        old.txn(puts={"session/old": b"1"}, lease=stale)
        server, local = _restart(server, local, path, port)
        new = RemoteMetaStore(f"vecdb://127.0.0.1:{port}")
        fresh = new.grant_lease(30)
        new.txn(puts={"session/new": b"2"}, lease=fresh)
        assert fresh != stale and old.renew_lease(stale) is False
        with pytest.raises(LeaseExpired):
            old.txn(puts={"session/late": b"x"}, lease=stale)
        old.revoke_lease(stale)  # no error, and not the new lease
        assert new.scan("session/") == [("session/new", b"2")] and new.renew_lease(fresh) is True
        new.revoke_lease(fresh)
        assert new.scan("session/") == []
    finally:
        old.close()
        if new is not None:
            new.close()
        server.stop(0)
        local.close()


class _CountingLog:
    """A WalLog that counts the reads of each channel."""

    def __init__(self, log: WalLog):
        self._log, self.appended, self.reads = log, log.appended, Counter()

    def read(self, channel, start=1, end=None):
        self.reads[channel] += 1
        return self._log.read(channel, start, end)

    def __getattr__(self, name):
        return getattr(self._log, name)


def test_an_append_wakes_only_the_followers_of_its_channel(tmp_path):
    """Followers waiting on the server for other channels are not woken by an append (each append
    would otherwise cost a read per waiting follower of every worker), and those of the channel are."""
    wal = WalLog(str(tmp_path / "wal"))
    counting = _CountingLog(wal)
    server, port = serve_backends(None, counting)  # type: ignore[arg-type]
    log = RemoteLog(f"vecdb://127.0.0.1:{port}")
    stop, got = threading.Event(), []

    def follow(channel):
        f = log.follow(channel)
        while not stop.is_set():
            got.extend(r for r in f.poll(0.5) if channel == "hot")

    threads = [threading.Thread(target=follow, args=(ch,)) for ch in ["idle"] * 10 + ["hot"]]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # every poll is waiting on the server
        before, t0 = counting.reads["idle"], time.monotonic()
        for i in range(30):
            log.append("hot", b"%d" % i)
        deadline = time.monotonic() + 10
        while len(got) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [v for _, v in got] == [b"%d" % i for i in range(30)]
        # each idle follower reads once per 0.5 s poll, not once per append (that would be 300 reads)
        assert counting.reads["idle"] - before <= 10 * ((time.monotonic() - t0) / 0.5 + 2)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        log.close()
        server.stop(0)
        wal.close()


def test_a_client_opened_before_the_process_sets_its_secret_uses_it(tmp_path):
    """A node opens its storage before it sets the process's cluster secret (vecdb.process): the
    clients take the secret at their first call."""
    from vecdb.rpc import transport

    local = LocalMetaStore(str(tmp_path / "meta"))
    server, port = serve_backends(local, None, secret="s3cret")
    client = RemoteMetaStore(f"vecdb://127.0.0.1:{port}")
    try:
        transport.use_cluster_secret("s3cret")
        client.put("k", b"v")
        assert client.get("k") == b"v"
    finally:
        transport.use_cluster_secret("")
        client.close()
        server.stop(0)
        local.close()


def test_concurrent_last_position_calls_share_rpcs_and_see_every_acknowledged_append(tmp_path):
    """Threads that append and then ask for the end always get at least what was acknowledged before
    they asked (a round already sent is never joined), with far fewer calls reaching the server."""
    wal = WalLog(str(tmp_path / "wal"))
    counting = _CountingLog(wal)
    asked = Counter()
    counting.last_position = lambda ch: (asked.update([ch]), wal.last_position(ch))[1]  # type: ignore[method-assign]
    server, port = serve_backends(None, counting)  # type: ignore[arg-type]
    log = RemoteLog(f"vecdb://127.0.0.1:{port}")
    acknowledged = [0]  # the highest position an append returned, before the ask
    lock, bad, calls = threading.Lock(), [], Counter()

    def run(t):
        for i in range(40):
            if i % 8 == 0:
                (pos,) = log.append_batch("c", [b"%d" % t])
                with lock:
                    acknowledged[0] = max(acknowledged[0], pos)
            with lock:
                floor = acknowledged[0]
            end = log.last_position("c" if i % 2 else "d")
            calls["c" if i % 2 else "d"] += 1
            if i % 2 and end < floor:
                bad.append((floor, end))
            if not i % 2 and end != 0:
                bad.append(("d", end))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not bad
        assert log.last_position("c") == 16 * 5 and calls["c"] == calls["d"] == 16 * 20
        assert asked["c"] + asked["d"] < 0.8 * (calls["c"] + calls["d"])  # shared rounds
    finally:
        log.close()
        server.stop(0)
        wal.close()

"""Watches beyond the conformance suite (tests/unit/test_storage_meta.py): the local store's
revisions across restarts, the in-process history bound, ``PrefixWatch``, and an etcd watch
that outlives an etcd restart."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import wait_until
from vecdb.errors import IoFailed
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.memory import MemoryMetaStore
from vecdb.storage.watch import DELETE, PUT, ChangeFeed, PrefixWatch, WatchCompacted


@pytest.mark.parametrize("compact_bytes", [1 << 20, 200])
def test_local_revisions_keep_growing_across_restarts(tmp_path, compact_bytes):
    path = str(tmp_path / "m")
    with LocalMetaStore(path, compact_bytes) as s:
        for i in range(10):
            s.put(f"k/{i}", b"x" * 30)
        lease = s.grant_lease(30)
        s.txn(puts={"session/a": b"me"}, lease=lease)
        s.revoke_lease(lease)  # a change of memory only: its revision is journaled all the same
        s.delete("absent")  # no change: no revision
        before = s.scan_revision("")[1]
        assert before == 12
    with LocalMetaStore(path, compact_bytes) as s:
        assert s.scan_revision("") == ([(f"k/{i}", b"x" * 30) for i in range(10)], before)
        with pytest.raises(WatchCompacted):  # the history stayed with the old process
            s.watch("k/", 1)
        w = s.watch("k/", before + 1)
        s.put("k/new", b"y")
        assert w.poll(5) == [(PUT, "k/new", b"y", before + 1)]
        w.close()
    with LocalMetaStore(path, compact_bytes) as s:
        assert s.scan_revision("")[1] == before + 1


def test_local_store_opens_a_journal_without_revisions(tmp_path):
    """Directories written before revisions existed open at revision 0 and go on from there."""
    from vecdb.storage import framing, local_meta

    path = tmp_path / "m"
    path.mkdir()
    payload = local_meta._encode_ops([], [], {"a": b"1", "b": b"2"})
    (path / local_meta.JOURNAL).write_bytes(framing.encode(1, payload))
    with LocalMetaStore(str(path)) as s:
        assert s.scan_revision("") == ([("a", b"1"), ("b", b"2")], 0)
        s.put("c", b"3")
        assert s.scan_revision("")[1] == 1


def test_change_feed_keeps_between_backlog_and_twice_it():
    feed = ChangeFeed(backlog=10)
    for i in range(100):
        feed.publish([], {f"k/{i}": b"x"})
        assert min(i + 1, 10) <= len(feed._events) <= 20
    assert feed.revision == 100
    with feed.cond:
        kept, through = feed.read(90, "k/", 1000)  # the last 10 are always there
    assert [ev.revision for ev in kept] == list(range(91, 101)) and through == 100
    with pytest.raises(WatchCompacted), feed.cond:
        feed.read(10, "k/", 1000)
    feed.publish([], {f"big/{i}": b"x" for i in range(50)})  # one change is kept whole
    with feed.cond:
        big, _ = feed.read(100, "", 5)
    assert len(big) == 50 and {ev.revision for ev in big} == {101}


class _View:
    """What a PrefixWatch user keeps: the prefix's current pairs, from resets and events."""

    def __init__(self):
        self.pairs: dict[str, bytes] = {}
        self.resets = 0
        self.lock = threading.Lock()

    def reset(self, pairs):
        with self.lock:
            self.pairs = dict(pairs)
            self.resets += 1

    def apply(self, events):
        with self.lock:
            for ev in events:
                if ev.kind == PUT:
                    self.pairs[ev.key] = ev.value
                else:
                    assert ev.kind == DELETE and ev.value is None
                    self.pairs.pop(ev.key, None)

    def snapshot(self):
        with self.lock:
            return dict(self.pairs)


def test_prefix_watch_keeps_a_view_of_the_prefix():
    s = MemoryMetaStore()
    s.put("nodes/1", b"a")
    s.put("other", b"x")
    view = _View()
    pw = PrefixWatch(s, "nodes/", view.reset, view.apply, poll_timeout=0.2)
    assert view.pairs == {"nodes/1": b"a"} and view.resets == 1  # the first scan, before returning
    lease = s.grant_lease(30)
    s.txn(puts={"nodes/2": b"b"}, lease=lease)
    s.put("nodes/1", b"a2")
    wait_until(lambda: view.snapshot() == {"nodes/1": b"a2", "nodes/2": b"b"})
    s.revoke_lease(lease)  # a node leaving
    wait_until(lambda: view.snapshot() == {"nodes/1": b"a2"})
    pw.close()
    s.put("nodes/3", b"after close")
    time.sleep(0.5)
    assert view.snapshot() == {"nodes/1": b"a2"} and view.resets == 1


def test_prefix_watch_starts_over_when_it_fell_behind_or_a_callback_failed():
    s = MemoryMetaStore(watch_backlog=3)
    view = _View()
    gate, entered = threading.Event(), threading.Event()
    fail_once = [True]

    def apply(events):
        if any(ev.key == "n/boom" for ev in events) and fail_once[0]:
            fail_once[0] = False
            raise RuntimeError("a callback bug")
        if any(ev.key == "n/slow" for ev in events):
            entered.set()
            gate.wait(20)  # a slow consumer: the store moves on meanwhile
        view.apply(events)

    pw = PrefixWatch(s, "n/", view.reset, apply, poll_timeout=0.2, retry_wait=0.1)
    s.put("n/slow", b"1")
    assert entered.wait(20)
    for i in range(20):
        s.put(f"n/{i}", b"%d" % i)
    gate.set()  # its next poll finds its events gone: a new scan replaces the view
    wait_until(lambda: view.resets >= 2)
    wait_until(lambda: view.snapshot() == dict(s.scan("n/")))
    resets = view.resets
    s.put("n/boom", b"!")  # the callback raises: it starts over too, and sees the key in the scan
    wait_until(lambda: view.resets > resets and view.snapshot().get("n/boom") == b"!")
    pw.close()


def test_prefix_watch_reports_a_failing_first_scan():
    s = MemoryMetaStore()
    s.close()
    with pytest.raises(IoFailed):
        PrefixWatch(s, "n/", lambda pairs: None, lambda events: None)


def test_etcd_watch_resumes_after_an_etcd_restart(tmp_path):
    from vecdb.storage.servers import start_etcd

    srv = start_etcd(str(tmp_path / "etcd"))
    s = EtcdMetaStore(srv.url, prefix="r/", timeout=2)
    try:
        w = s.watch("k/")
        s.put("k/1", b"before")
        assert [(ev.key, ev.value) for ev in w.poll(10)] == [("k/1", b"before")]
        srv.kill()
        assert w.poll(0.5) == []  # a broken stream is not an error: it resumes
        srv = start_etcd(str(tmp_path / "etcd"), port=srv.ports[0], peer_port=srv.ports[1])
        deadline = time.monotonic() + 20
        while True:  # the client's channel reconnects on its own; the first calls may fail
            try:
                s.put("k/2", b"after")
                break
            except IoFailed:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        s.delete("k/1")
        got = []
        while len(got) < 2:
            assert time.monotonic() < deadline + 10, got
            got += w.poll(0.5)
        assert [(ev.kind, ev.key, ev.value) for ev in got] == [(PUT, "k/2", b"after"), (DELETE, "k/1", None)]
        w.close()
    finally:
        s.close()
        srv.stop()


def test_prefix_watch_can_be_closed_from_its_callback():
    s = MemoryMetaStore()
    seen, holder = [], []

    def apply(events):
        seen.extend(ev.key for ev in events)
        if any(ev.key == "n/stop" for ev in events):
            holder[0].close()

    holder.append(PrefixWatch(s, "n/", lambda pairs: None, apply, poll_timeout=0.2))
    s.put("n/stop", b"")
    wait_until(lambda: not holder[0]._thread.is_alive())
    s.put("n/later", b"")
    time.sleep(0.5)
    assert seen == ["n/stop"]

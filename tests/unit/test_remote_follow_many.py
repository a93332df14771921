"""The followers of one ``RemoteLog`` share one long poll (``remote._SharedPoll``, the server's
``FollowMany``): idle channels cost the server a call per ``MAX_WAIT`` in all, not a call per poll
each; a written channel is still handed out at once; a follower opened or closed while the shared
call waits is taken into account at once; ``close()`` wakes a waiting poll; a server restarted
under the followers loses none of their records. Real backend server (a WalLog) on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from tests.follower_checks import closing_wakes_a_waiting_poll
from vecdb.errors import IoFailed
from vecdb.storage.backend_server import serve_backends
from vecdb.storage.remote import RemoteLog
from vecdb.storage.wal import WalLog


@pytest.fixture
def served(tmp_path):
    """(the WalLog, its server, a RemoteLog client of it)."""
    wal = WalLog(str(tmp_path / "wal"))
    server, port = serve_backends(None, wal, secret="", tls=None)
    log = RemoteLog(f"vecdb://127.0.0.1:{port}", secret="", tls=None)
    yield wal, server, log
    log.close()
    server.stop(0)
    wal.close()


class _Tails:
    """A thread per follower polling in a loop (``poll(timeout=0.5)``, as a query node's tailer),
    recording when each record came."""

    def __init__(self, followers: dict[str, object]):
        self.got: dict[str, list[tuple[int, bytes, float]]] = {ch: [] for ch in followers}
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._tail, args=(ch, f), daemon=True) for ch, f in followers.items()]
        for t in self._threads:
            t.start()

    def _tail(self, ch, f) -> None:
        while not self._stop.is_set():
            try:
                records = f.poll(timeout=0.5)
            except IoFailed as e:
                if self._stop.is_set():
                    return
                self.errors.append(e)
                time.sleep(0.1)
                continue
            now = time.monotonic()
            self.got[ch].extend((p, v, now) for p, v in records)

    def until(self, ch: str, n: int, timeout: float = 10.0) -> list[tuple[int, bytes, float]]:
        deadline = time.monotonic() + timeout
        while len(self.got[ch]) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.got[ch]

    def stop(self, followers) -> None:
        self._stop.set()
        for f in followers:
            f.close()
        for t in self._threads:
            t.join(5)


def test_one_written_channel_among_many_idle_is_handed_out_at_once_and_idle_ones_cost_a_call_in_all(served):
    wal, server, log = served
    channels = [f"c{i}" for i in range(300)]
    for ch in channels:
        wal.append(ch, b"first")
    followers = {ch: log.follow(ch) for ch in channels}
    tails = _Tails(followers)
    try:
        for ch in channels:
            assert [(p, v) for p, v, _ in tails.until(ch, 1)] == [(1, b"first")]
        time.sleep(0.3)  # every follower is waiting (the shared call too)
        before = dict(server.service.long_polls)
        time.sleep(1.0)
        idle = {k: server.service.long_polls[k] - before.get(k, 0) for k in ("Follow", "FollowMany")}
        assert idle == {"Follow": 0, "FollowMany": 0}  # 300 followers polled 600 times: no call at all
        latencies = []
        for i in range(10):
            t0 = time.monotonic()
            pos = log.append("c7", b"hot%d" % i)
            got = tails.until("c7", 2 + i)
            assert got[-1][:2] == (pos, b"hot%d" % i)
            latencies.append(got[-1][2] - t0)
        assert max(latencies) < 1.0 and sorted(latencies)[5] < 0.2  # (MAX_WAIT is 10 s)
        assert all(len(tails.got[ch]) == 1 for ch in channels if ch != "c7")
        assert tails.errors == []
    finally:
        tails.stop(followers.values())


def test_a_follower_opened_while_the_shared_call_waits_gets_its_records_at_once(served):
    wal, _, log = served
    for i in range(20):
        wal.append(f"c{i}", b"x")
    early = [log.follow(f"c{i}", 2) for i in range(20)]  # nothing to hand out: the shared call waits
    try:
        assert early[0].poll(timeout=0.5) == []
        wal.append_batch("late", [b"a", b"b", b"c"])
        t0 = time.monotonic()
        late = log.follow("late", 2)
        got = late.poll(timeout=8)
        assert got == [(2, b"b"), (3, b"c")] and time.monotonic() - t0 < 1.0
        t0 = time.monotonic()
        log.append("late", b"d")  # ... and it is followed on from there
        assert late.poll(timeout=8) == [(4, b"d")] and time.monotonic() - t0 < 1.0
        # the same channel twice, each from its own position, each record once, in order
        again = log.follow("late", 1)
        got = []
        while len(got) < 4:
            page = again.poll(timeout=2, max_records=3)
            assert page and len(page) <= 3
            got += page
        assert got == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
        assert late.poll(timeout=0) == []
        late.close()
        again.close()
    finally:
        for f in early:
            f.close()


def test_a_closed_follower_stops_being_asked_for_and_the_others_go_on(served):
    wal, server, log = served
    a, b = log.follow("a"), log.follow("b")
    assert a.poll(timeout=0.3) == [] and b.poll(timeout=0.3) == []
    a.close()
    with pytest.raises(IoFailed, match="follower is closed"):
        a.poll(timeout=0)
    time.sleep(0.2)
    before = server.service.long_polls["FollowMany"]
    for i in range(5):
        wal.append("a", b"%d" % i)  # the closed follower's channel: the shared call is not woken by it
    time.sleep(0.5)
    assert server.service.long_polls["FollowMany"] == before
    log.append("b", b"y")
    assert b.poll(timeout=5) == [(1, b"y")]
    b.close()


def test_close_wakes_a_poll_waiting_in_another_thread(served):
    _, _, log = served
    raised = closing_wakes_a_waiting_poll(log.follow("c"))
    assert isinstance(raised, IoFailed) and "follower is closed" in str(raised)


def test_closing_the_log_wakes_its_followers_and_poll_with_no_timeout_asks_nothing(served):
    wal, server, log = served
    wal.append("c", b"one")
    f = log.follow("c")
    assert f.poll(timeout=5) == [(1, b"one")]
    time.sleep(0.2)
    before = dict(server.service.long_polls)
    t0 = time.monotonic()
    for _ in range(1000):
        assert f.poll(timeout=0) == []
    assert time.monotonic() - t0 < 1.0 and dict(server.service.long_polls) == before
    raised = closing_wakes_a_waiting_poll(f, close=log.close)
    assert isinstance(raised, IoFailed) and "closed" in str(raised)


def test_a_server_restarted_under_the_followers_loses_none_of_their_records(tmp_path):
    path = str(tmp_path / "wal")
    wal = WalLog(path)
    server, port = serve_backends(None, wal, secret="", tls=None)
    log = RemoteLog(f"vecdb://127.0.0.1:{port}", secret="", tls=None)
    followers = {ch: log.follow(ch) for ch in ("a", "b", "c")}
    tails = _Tails(followers)
    try:
        log.append("a", b"before")
        assert [v for _, v, _ in tails.until("a", 1)] == [b"before"]
        server.stop(0)
        wal.close()
        time.sleep(0.5)  # the polls meanwhile raise IoFailed (as each did when it was a call of its own)
        assert tails.errors and all(isinstance(e, IoFailed) for e in tails.errors)
        wal = WalLog(path)
        wal.append("a", b"while away")
        wal.append("b", b"while away")
        server, _ = serve_backends(None, wal, port=port, secret="", tls=None)
        assert [v for _, v, _ in tails.until("a", 2)] == [b"before", b"while away"]
        assert [v for _, v, _ in tails.until("b", 1)] == [b"while away"]
        log.append("c", b"after")
        assert [(p, v) for p, v, _ in tails.until("c", 1)] == [(1, b"after")]
    finally:
        tails.stop(followers.values())
        log.close()
        server.stop(0)
        wal.close()


def test_the_stall_check_asks_a_quiet_channel_nothing_until_something_is_past_it(served, monkeypatch):
    """``heard_last``: what the shared poll handed out; a tailer's stall check (``vecdb.storage.stall``)
    asks the server for the channel's end at its first look and then only when a record is past what it
    applied (or each minute)."""
    from vecdb.storage import stall

    monkeypatch.setattr(stall, "STALL_SECONDS", 0.05)
    wal, _, log = served
    wal.append("c1", b"x")
    f = log.follow("c1")
    asked: list[str] = []
    real = log.last_position
    monkeypatch.setattr(log, "last_position", lambda ch: asked.append(ch) or real(ch))
    watch = stall.StallWatch(log, "c1")
    try:
        assert [p for p, _ in f.poll(timeout=5)] == [1]
        time.sleep(0.06)
        assert watch.check(1) is None and asked == ["c1"]
        for _ in range(4):
            time.sleep(0.06)
            assert watch.check(1) is None
        assert asked == ["c1"]  # nothing came since its look
        assert log.heard_last("c1") is not None and log.heard_last("c1").last == 1
    finally:
        f.close()


def test_a_written_channel_moves_to_the_hot_call_and_its_deliveries_do_not_ask_for_the_idle_ones(served,
                                                                                                  monkeypatch):
    """Each delivery re-sends the call it came in: a channel written often beside 200 idle ones moves to
    the hot call (its own), so its deliveries ask for it alone, not for all 201 (whose cost is the
    call's channels); quiet again, it goes back to the cold call."""
    from vecdb.storage import remote

    monkeypatch.setattr(remote, "_HOT", 0.5)
    wal, server, log = served
    channels = [f"c{i}" for i in range(200)] + ["busy"]
    for ch in channels:
        wal.append(ch, b"first")
    followers = {ch: log.follow(ch) for ch in channels}
    tails = _Tails(followers)
    try:
        for ch in channels:
            assert len(tails.until(ch, 1)) == 1
        time.sleep(1.0)  # every follower cooled: all in the cold call
        polls = server.service.long_polls
        before_calls, before_channels = polls["FollowMany"], polls["FollowMany channels"]
        for i in range(30):
            pos = log.append("busy", b"%d" % i)
            assert tails.until("busy", 2 + i)[-1][:2] == (pos, b"%d" % i)
        calls, asked = polls["FollowMany"] - before_calls, polls["FollowMany channels"] - before_channels
        assert calls >= 30 and asked < 3 * 201 + 2 * calls, (calls, asked)  # (before: 201 channels a call)
        time.sleep(1.0)  # quiet: back to the cold call, which still hands its records out
        log.append("busy", b"later")
        assert tails.until("busy", 32)[-1][1] == b"later"
        assert all(len(tails.got[ch]) == 1 for ch in channels if ch != "busy") and tails.errors == []
    finally:
        tails.stop(followers.values())

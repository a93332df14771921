"""JetStream followers of idle channels ask the server nothing (``vecdb.storage.jetstream_follow``):
each append publishes its channel's tip, a follower whose last pull found nothing waits for one, and
a written channel is still handed out at once, from another connection (another process) too. A tip
lost (a writer that sends none) costs a recheck's delay, not the record; a NATS server restarted
under quiet followers loses none of the records appended after it. The stall check of a tailer
(``vecdb.storage.stall``) does not ask a quiet channel's end while no tip is past what it applied.
Real nats-server on loopback."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from tests.follower_checks import closing_wakes_a_waiting_poll
from vecdb.storage import stall
from vecdb.storage.jetstream_follow import JetStreamFollower
from vecdb.storage.jetstream_log import JetStreamLog
from vecdb.storage.servers import start_nats


@pytest.fixture
def nats(tmp_path):
    srv = start_nats(str(tmp_path / "nats"))
    yield srv
    srv.stop()


@pytest.fixture
def fast(monkeypatch):
    """Pull requests expire after 0.3 s (5 s in service): a follower is quiet soon after its records."""
    monkeypatch.setattr(JetStreamFollower, "_EXPIRES", 0.3)


def _in_msgs(srv) -> int:
    """Messages the server received from every client so far (its monitoring /varz)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.ports[1]}/varz", timeout=5) as r:
        return int(json.load(r)["in_msgs"])


def _logs(srv):
    prefix = "t" + uuid.uuid4().hex[:10]
    return JetStreamLog(srv.url, prefix=prefix), JetStreamLog(srv.url, prefix=prefix)


def _until(follower, n: int, timeout: float) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += follower.poll(timeout=max(deadline - time.monotonic(), 0.01))
    return got


def test_quiet_followers_send_nothing_and_a_written_channel_is_handed_out_at_once(nats, fast):
    writer, reader = _logs(nats)
    channels = [f"c{i}_0" for i in range(20)]
    for ch in channels:
        writer.append(ch, b"first")
    followers = {ch: reader.follow(ch, 1) for ch in channels}
    try:
        for f in followers.values():
            assert [p for p, _ in _until(f, 1, 5)] == [1]
        time.sleep(0.8)  # the pulls expire with nothing: quiet from here
        before = _in_msgs(nats)
        for f in followers.values():
            assert f.poll(timeout=0.1) == []
        time.sleep(1.5)  # five pull expiries' worth
        assert _in_msgs(nats) - before == 0
        started = time.monotonic()
        writer.append_batch(channels[7], [b"a", b"b"])
        assert _until(followers[channels[7]], 2, 5) == [(2, b"a"), (3, b"b")]
        assert time.monotonic() - started < 2.0  # a tip woke it (a recheck is a minute away)
        assert all(f.poll(timeout=0.05) == [] for ch, f in followers.items() if ch != channels[7])
    finally:
        for f in followers.values():
            f.close()
        writer.close()
        reader.close()


def test_a_record_without_a_tip_is_still_handed_out_after_the_recheck(nats, fast, monkeypatch):
    monkeypatch.setattr(JetStreamFollower, "_RECHECK", 1.0)
    writer, reader = _logs(nats)
    writer.append("c1_0", b"first")
    f = reader.follow("c1_0", 1)
    try:
        assert len(_until(f, 1, 5)) == 1
        assert f.poll(timeout=0.6) == []  # quiet
        # a writer that publishes no tip (an older vecdb, say): straight to the stream's subject
        writer._run(writer._nc.request(writer._subject("c1_0"), b"untold", timeout=5), "append")
        assert f.poll(timeout=0.3) == []  # nothing told it
        assert _until(f, 1, 5) == [(2, b"untold")]
    finally:
        f.close()
        writer.close()
        reader.close()


def test_quiet_followers_get_the_records_appended_after_their_server_restarted(tmp_path, fast):
    srv = start_nats(str(tmp_path / "nats"))
    writer, reader = _logs(srv)
    try:
        for ch in ("c1_0", "c2_0"):
            writer.append(ch, b"before")
        followers = [reader.follow(ch, 1) for ch in ("c1_0", "c2_0")]
        for f in followers:
            assert len(_until(f, 1, 5)) == 1
            assert f.poll(timeout=0.6) == []  # quiet
        srv.kill()
        srv = start_nats(str(tmp_path / "nats"), port=srv.ports[0], monitor_port=srv.ports[1])
        deadline = time.monotonic() + 15
        while True:  # the writer reconnects on its own
            try:
                writer.append("c2_0", b"after")
                break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert _until(followers[1], 1, 10) == [(2, b"after")]
        assert followers[0].poll(timeout=0.2) == []
        writer.append("c1_0", b"after")
        assert _until(followers[0], 1, 10) == [(2, b"after")]
        for f in followers:
            f.close()
    finally:
        writer.close()
        reader.close()
        srv.stop()


def test_a_closed_follower_wakes_its_poller_at_once(nats):
    _, reader = _logs(nats)
    assert "closed" in str(closing_wakes_a_waiting_poll(reader.follow("c1_0", 1)))
    reader.close()


def test_the_stall_check_asks_a_quiet_channel_nothing_until_a_tip_is_past_it(nats, monkeypatch):
    monkeypatch.setattr(stall, "STALL_SECONDS", 0.05)
    monkeypatch.setattr(stall, "SETTLE_SECONDS", 0.01)
    writer, reader = _logs(nats)
    writer.append("c1_0", b"x")
    f = reader.follow("c1_0", 1)  # (the tips' subscription comes with the first follower)
    asked: list[str] = []
    real = reader.last_position
    monkeypatch.setattr(reader, "last_position", lambda ch: asked.append(ch) or real(ch))
    watch = stall.StallWatch(reader, "c1_0")
    try:
        assert len(_until(f, 1, 5)) == 1
        time.sleep(0.06)
        assert watch.check(1) is None and asked == ["c1_0"]  # the first look asks
        for _ in range(5):
            time.sleep(0.06)
            assert watch.check(1) is None
        assert asked == ["c1_0"]  # nothing appended since: not asked again
        writer.append("c1_0", b"y")
        deadline = time.monotonic() + 5
        while (heard := reader.heard_last("c1_0")) is None or heard.last < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.06)
        assert watch.check(1) is None and asked == ["c1_0"] * 2  # a tip past 1: asked (the record may be coming)
        time.sleep(0.06)
        assert watch.check(1) == 2  # still not handed out at the second look: the follower is stuck
    finally:
        f.close()
        writer.close()
        reader.close()


def test_a_follower_of_a_channel_not_written_yet_waits_for_its_first_append(nats):
    """A collection made and loaded but never written has no stream yet: its followers do not ask
    for one every half second, and the first append reaches them at once."""
    writer, reader = _logs(nats)
    followers = [reader.follow(f"c{i}_0", 1) for i in range(10)]
    try:
        for f in followers:
            assert f.poll(timeout=0.05) == []
        before = _in_msgs(nats)
        for f in followers:
            assert f.poll(timeout=0.01) == []
        time.sleep(1.5)
        assert _in_msgs(nats) - before == 0
        started = time.monotonic()
        writer.append("c3_0", b"first")
        assert _until(followers[3], 1, 5) == [(1, b"first")]
        assert time.monotonic() - started < 2.0
    finally:
        for f in followers:
            f.close()
        writer.close()
        reader.close()

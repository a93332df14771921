"""Sessions: an exclusive key held with a renewed lease (vecdb.coord.session)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from vecdb.coord.session import Session, describe_process
from vecdb.errors import ServiceUnavailable
from vecdb.storage.memory import MemoryMetaStore


def test_exclusive_session_keeps_others_out_until_closed():
    meta = MemoryMetaStore()
    first = Session(meta, "session/standalone", describe_process(role="a"), ttl=1)
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="held by another process") as err:
        Session(meta, "session/standalone", describe_process(role="b"), ttl=1, wait=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert '"role": "a"' in str(err.value)  # says who holds it
    time.sleep(1.5)  # renewed in the background: still held after its ttl
    assert json.loads(meta.get("session/standalone"))["role"] == "a"
    first.close()
    assert meta.get("session/standalone") is None
    second = Session(meta, "session/standalone", describe_process(role="b"), ttl=1, wait=0)
    assert json.loads(meta.get("session/standalone"))["role"] == "b"
    second.close()


def test_a_crashed_holder_is_waited_out():
    meta = MemoryMetaStore()
    lease = meta.grant_lease(1)  # a holder that stopped renewing (crashed)
    meta.txn(puts={"session/x": b"old"}, lease=lease)
    s = Session(meta, "session/x", b"new", ttl=1)  # waits up to 2 * ttl + 2 by default
    assert meta.get("session/x") == b"new"
    s.close()


def test_a_wait_for_a_dead_holder_of_this_host_is_said_and_a_live_one_is_not(caplog):
    """A restart after a crash waits out the dead holder's lease: one WARNING says why it is not up yet. A
    holder still running gets the refusal alone (one line from the command: tests/e2e/test_cluster_secret.py)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    meta = MemoryMetaStore()
    lease = meta.grant_lease(1)
    meta.txn(puts={"session/x": json.dumps({"host": socket.gethostname(), "pid": gone.pid}).encode()}, lease=lease)
    with caplog.at_level("WARNING", logger="vecdb.coord.session"):
        s = Session(meta, "session/x", b"new", ttl=1)
    s.close()
    # (the session's records: a thread another test left may log meanwhile)
    assert [r.getMessage()[:60] for r in caplog.records if r.name == "vecdb.coord.session"] == [
        "session/x is held by a process of this host that is gone ({\""]
    caplog.clear()
    live = Session(meta, "session/y", describe_process(role="a"), ttl=1)  # this process: alive
    with caplog.at_level("WARNING", logger="vecdb.coord.session"), pytest.raises(ServiceUnavailable):
        Session(meta, "session/y", b"new", ttl=1, wait=0.6)
    assert [r for r in caplog.records if r.name == "vecdb.coord.session"] == []
    live.close()


def test_losing_the_lease_is_reported():
    meta = MemoryMetaStore()
    lost = threading.Event()
    s = Session(meta, "session/y", b"me", ttl=1, on_lost=lost.set)
    meta.revoke_lease(s.lease)  # e.g. the process stalled past its ttl and the store expired it
    assert lost.wait(3)
    s.close()


def test_non_exclusive_sessions_overwrite():
    meta = MemoryMetaStore()
    a = Session(meta, "session/querynode/1", b"a", ttl=1, exclusive=False)
    b = Session(meta, "session/querynode/1", b"b", ttl=1, exclusive=False)
    assert meta.get("session/querynode/1") == b"b"
    b.close()
    a.close()


def test_trouble_says_why_a_session_is_not_surely_held():
    meta = MemoryMetaStore()
    s = Session(meta, "session/querynode/x", describe_process(role="querynode"), ttl=1)
    assert s.trouble() is None
    s.renewed_at -= 5  # as if renewals had failed for 5 s (the store did not answer)
    assert "not renewed for" in (s.trouble() or "")
    meta.revoke_lease(s.lease)
    deadline = time.monotonic() + 5
    while not s.lost:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "lost" in (s.trouble() or "")
    s.close()
    s2 = Session(meta, "session/querynode/y", describe_process(role="querynode"), ttl=1)
    s2.close()
    assert "ended" in (s2.trouble() or "")

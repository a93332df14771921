"""Coord active-standby (vecdb.coord.server): a standby takes over when the active coord's session
ends; a coord stops answering before its lease can end, goes back to standby when it learns it
lost the session, and timestamps never go back across a failover."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest

from tests.conftest import wait_until
from vecdb import errors
from vecdb.coord.client import CoordClient, RemoteTimestampOracle
from vecdb.coord.server import Coord
from vecdb.rpc import Client
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.memory import MemoryMetaStore

TTL = 2


class CutOff:
    """A coord's view of the store in which its lease renewals fail once ``cut`` is set: a process
    that stalls, or cannot reach the store, while others can."""

    def __init__(self, meta):
        self._meta = meta
        self.cut = threading.Event()

    def __getattr__(self, name):
        return getattr(self._meta, name)

    def renew_lease(self, lease: int) -> bool:
        if self.cut.is_set():
            raise errors.IoFailed("cut off from the store (test)")
        return self._meta.renew_lease(lease)


def _ts(coord: Coord) -> int:
    c = Client(coord.address, "coord", timeout=5)
    try:
        return RemoteTimestampOracle(c).allocate()
    finally:
        c.close()




@pytest.fixture
def etcd_stores(etcd_server):
    """A maker of etcd stores on one fresh namespace (one per simulated process)."""
    ns, made = f"t{uuid.uuid4().hex[:12]}/", []

    def make():
        made.append(EtcdMetaStore(etcd_server.url, prefix=ns))
        return made[-1]

    yield make
    for m in made:
        m.close()


def test_standby_takes_over_when_the_active_session_is_revoked(etcd_stores):
    meta = etcd_stores()
    a, b = Coord(etcd_stores(), session_ttl=TTL), Coord(etcd_stores(), session_ttl=TTL)
    try:
        assert a.active and not b.active
        last_a = _ts(a)
        meta.revoke_lease(a.session.lease)  # as the store does when the lease runs out
        took = wait_until(lambda: b.active, 2 * TTL + 8, "the standby did not take over")
        print(f"\nstandby active {took:.2f} s after the active session was revoked (ttl {TTL} s)")
        last_b = _ts(b)
        assert last_b > last_a
        # the old one learns it at its next renewal (ttl / 3), stops answering and stands by
        wait_until(lambda: not a.active, 10, "the old coord still answers")
        with pytest.raises(errors.ServiceNotReady):
            _ts(a)
        b.stop()
        assert a.wait_active(2 * TTL + 8)  # and may be the active one again, above its successor
        assert _ts(a) > last_b
    finally:
        a.stop()
        b.stop()


def test_a_coord_cut_off_from_the_store_stops_answering_before_a_standby_can_take_over():
    meta = MemoryMetaStore()
    view = CutOff(meta)
    a, b = Coord(view, session_ttl=TTL), Coord(meta, session_ttl=TTL)
    try:
        given_a = [_ts(a)]
        view.cut.set()  # a's renewals fail from now on; nothing tells it that its lease ends
        t0 = time.monotonic()
        while True:
            try:
                given_a.append(_ts(a))
            except errors.ServiceNotReady:
                break
            assert time.monotonic() - t0 < 10
            time.sleep(0.02)
        refused = time.monotonic() - t0
        assert b.wait_active(2 * TTL + 8)
        print(f"\ncut-off coord refused after {refused:.2f} s; standby active after {time.monotonic() - t0:.2f} s")
        first_b = _ts(b)
        assert first_b > max(given_a)
        with pytest.raises(errors.ServiceNotReady):
            _ts(a)  # never both: a refused before its lease could end, and b took over only after
        view.cut.clear()  # the store answers again: a's renewal says its lease ended; a stands by
        wait_until(lambda: a.session is None, 10, "the cut-off coord did not step down")
        b.stop()
        assert a.wait_active(2 * TTL + 8)
        assert _ts(a) > first_b
    finally:
        a.stop()
        b.stop()


def test_timestamps_keep_increasing_for_a_caller_while_the_active_coord_crashes(etcd_stores):
    view = CutOff(etcd_stores())
    a, b = Coord(view, session_ttl=TTL), Coord(etcd_stores(), session_ttl=TTL)
    client = CoordClient(etcd_stores())  # finds the coord in the session, no address given
    tso = RemoteTimestampOracle(client)
    got: list[tuple[float, int]] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def caller():
        try:
            while not done.is_set():
                got.append((time.monotonic(), tso.allocate()))
        except BaseException as e:  # noqa: BLE001 (reported by the test)
            failures.append(e)

    thread = threading.Thread(target=caller)
    try:
        thread.start()
        wait_until(lambda: len(got) > 20, 10, "no timestamps before the crash")
        assert client.address == a.address
        view.cut.set()  # a crash as the others see it: no more renewals, no more answers
        a.server.stop(0)
        crashed = time.monotonic()
        wait_until(lambda: failures or (got[-1][0] > crashed and client.address == b.address), 2 * TTL + 15,
              "no answer after the crash")
        assert not failures, failures
        n = len(got)
        wait_until(lambda: len(got) > n + 20, 10, "too few answers after the takeover")
        done.set()
        thread.join(20)
        assert not failures, failures  # the caller saw a delay, never an error
        stamps = [ts for _, ts in got]
        assert all(x < y for x, y in itertools.pairwise(stamps))
        gap = max(t2 - t1 for (t1, _), (t2, _) in itertools.pairwise(got))
        print(f"\n{len(got)} timestamps, strictly increasing; longest wait for one across the failover {gap:.2f} s")
    finally:
        done.set()
        thread.join(20)
        client.close()
        a.stop()
        b.stop()

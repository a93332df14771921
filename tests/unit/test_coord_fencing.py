"""Fenced windows (vecdb.coord.tso): a reservation is a compare-and-set on the persisted window
and on the fence keys, so an allocator whose coord lost its session, or that another allocator
overtook, cannot reserve again; whoever starts next starts above every reservation."""

from __future__ import annotations

import time
import uuid

import pytest

from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.errors import ServiceNotReady
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.memory import MemoryMetaStore


@pytest.fixture(params=["memory", "local", "etcd"])
def meta(request, tmp_path):
    if request.param == "memory":
        store = MemoryMetaStore()
    elif request.param == "local":
        store = LocalMetaStore(str(tmp_path / "meta"))
    else:
        store = EtcdMetaStore(request.getfixturevalue("etcd_server").url, prefix=f"t{uuid.uuid4().hex[:12]}/")
    yield store
    store.close()


def _past_window(tso: TimestampOracle, window_ms: int) -> int:
    """An allocation that needs a new reservation."""
    time.sleep(2 * window_ms / 1000)
    return tso.allocate()


def test_a_timestamp_window_needs_the_fence_key_to_hold_its_value(meta):
    meta.put("session/coord", b"me")
    tso = TimestampOracle(meta, window_ms=5, fence={"session/coord": b"me"})
    given = [tso.allocate(), _past_window(tso, 5)]  # reserves while the fence holds
    meta.put("session/coord", b"another coord")  # the session was taken over
    with pytest.raises(ServiceNotReady, match="session/coord"):
        _past_window(tso, 5)
    meta.delete("session/coord")  # or ended
    with pytest.raises(ServiceNotReady):
        _past_window(tso, 5)
    successor = TimestampOracle(meta, window_ms=5)
    assert successor.allocate() > max(given)


def test_an_id_window_needs_the_fence_key_to_hold_its_value(meta):
    meta.put("session/coord", b"me")
    ids = IdAllocator(meta, window=10, fence={"session/coord": b"me"})
    given = [ids.allocate(4), ids.allocate(4)]
    meta.delete("session/coord")
    with pytest.raises(ServiceNotReady):
        ids.allocate(4)  # past the window
    assert IdAllocator(meta, window=10).allocate() >= given[-1] + 4


def test_an_overtaken_allocator_cannot_reserve_and_its_successor_starts_above_it(meta):
    """No fence keys: the compare-and-set on the window alone stops an allocator whose window
    another one reserved over (two coords that both believe they are active)."""
    old = TimestampOracle(meta, window_ms=5)
    old_ids = IdAllocator(meta, window=10)
    given = [old.allocate() for _ in range(3)]
    first_ids = old_ids.allocate(5)
    new, new_ids = TimestampOracle(meta, window_ms=5), IdAllocator(meta, window=10)
    assert new.allocate() > max(given)
    assert new_ids.allocate() >= first_ids + 10  # above the old window's end, not just what it gave
    with pytest.raises(ServiceNotReady):
        _past_window(old, 5)
    with pytest.raises(ServiceNotReady):
        old_ids.allocate(10)
    assert _past_window(new, 5) > max(given)  # the successor goes on


def test_a_refused_reservation_hands_out_nothing(meta):
    meta.put("session/coord", b"me")
    tso = TimestampOracle(meta, window_ms=5, fence={"session/coord": b"me"})
    last = tso.allocate()
    meta.delete("session/coord")
    for _ in range(2):
        with pytest.raises(ServiceNotReady):
            _past_window(tso, 5)
    assert tso.last() == last


def test_unfenced_allocators_restart_above_everything_they_gave(meta):
    """The standalone server's use: one process, no fence keys, restarts."""
    tso, ids = TimestampOracle(meta, window_ms=50), IdAllocator(meta, window=100)
    ts_given = [tso.allocate() for _ in range(200)] + [tso.allocate(1000)]
    ids_given = [ids.allocate(3) for _ in range(60)]
    assert ts_given == sorted(set(ts_given)) and ids_given == sorted(set(ids_given))
    tso2, ids2 = TimestampOracle(meta, window_ms=50), IdAllocator(meta, window=100)  # a restart
    assert tso2.allocate() > max(ts_given) + 999
    assert ids2.allocate() >= max(ids_given) + 3

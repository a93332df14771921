"""CoordClient (vecdb.coord.client): the active coord found from ``session/coord``, a fixed address
as the override, retries through a failover and an error once its timeout has passed."""

from __future__ import annotations

import json
import threading
import time

import pytest

from vecdb import errors
from vecdb.coord.client import CoordClient, RemoteIdAllocator, RemoteTimestampOracle, active_coord_address
from vecdb.coord.server import Coord
from vecdb.storage.memory import MemoryMetaStore


def test_finds_the_active_coord_in_the_session():
    meta = MemoryMetaStore()
    first, standby = Coord(meta, session_ttl=2), Coord(meta, session_ttl=2)
    client = CoordClient(meta)  # no address
    try:
        assert client.address is None  # read at the first call
        tso, ids = RemoteTimestampOracle(client), RemoteIdAllocator(client)
        before = tso.allocate()
        assert client.address == first.address == active_coord_address(meta)
        assert ids.allocate(3) + 3 <= ids.allocate()
        first.stop()
        after = tso.allocate()  # waits for the standby to take over, then calls it
        assert after > before and client.address == standby.address
    finally:
        client.close()
        first.stop()
        standby.stop()


def test_a_fixed_address_overrides_the_session():
    meta = MemoryMetaStore()
    active, standby = Coord(meta, session_ttl=2), Coord(meta, session_ttl=2)
    client = CoordClient(meta, address=standby.address, timeout=1)
    try:
        with pytest.raises(errors.ServiceNotReady):  # a standby refuses, and the address is never replaced
            client.call("AllocTimestamp", {})
        assert client.address == standby.address
        active.stop()
        assert standby.wait_active(10)
        assert client.call("AllocTimestamp", {})[0]["ts"] > 0
    finally:
        client.close()
        active.stop()
        standby.stop()


def test_no_active_coord_is_an_error_after_the_timeout():
    meta = MemoryMetaStore()
    client = CoordClient(meta, timeout=0.5)
    with pytest.raises(errors.ServiceNotReady, match="no active coord"):
        client.call("AllocID", {})
    meta.put("session/coord", json.dumps({"role": "coord"}).encode())  # written by a coord without an address
    with pytest.raises(errors.ServiceNotReady, match="no coord address"):
        client.call("AllocID", {})
    client.close()


def test_a_coord_that_starts_later_is_found():
    meta = MemoryMetaStore()
    client = CoordClient(meta, timeout=30)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(RemoteIdAllocator(client).allocate()))
    t.start()
    time.sleep(0.5)  # the call is retrying: no coord yet
    coord = Coord(meta, session_ttl=2)
    t.join(30)
    assert result and result[0] > 0
    client.close()
    coord.stop()

"""Calling the cluster's active coord from any process (proxies, nodes, tools).

The active coord holds ``session/coord``, whose value (``describe_process``) carries its internal
RPC address, so a process needs only the metadata store to find it; ``address`` fixes it instead
(the ``--coord`` override). A failover shows up as refused calls for a few seconds: a standby, or
a coord that lost its session, answers ``ServiceNotReady``; a dead one cannot be reached
(``ServiceUnavailable``), and one that stops during a call cancels it. ``CoordClient`` then
re-reads the session and tries again, with a growing pause, until ``timeout``: the caller sees
a delay, not an error.

Rule: only methods that may be repeated go through it. A call that timed out may have been
served before the retry (``AllocTimestamp`` and ``AllocID`` are safe: a repeat leaves a gap in
the timestamps or ids, never a duplicate).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np
from google.protobuf.message import Message

from vecdb.errors import ServiceNotReady, ServiceUnavailable
from vecdb.rpc import Client
from vecdb.rpc.gen import coord_pb2
from vecdb.storage.base import MetaStore

T = TypeVar("T")

SESSION_KEY = "session/coord"
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 0.5  # seconds between tries while a coord takes over
_MIN_ATTEMPT = 1.0  # the last try still gets this long to answer
# seconds one try of a short call (``invoke``, ``call``: timestamps, ids) waits for its answer. A coord
# that holds the connection but does not answer (SIGSTOPped, cut off) is then left after this long
# and the session read again, so the standby that took over answers the same call: before, each call
# waited its whole ``timeout`` on the stopped coord and failed, and the next went to it again
# (writes and Strong reads failed as long as it stayed stopped, a standby active meanwhile)
_SHORT_ATTEMPT = 5.0


def active_coord_address(meta: MetaStore) -> str:
    """The address in ``session/coord``; ServiceNotReady when no coord is active (none started,
    or the last active one is gone and no standby took over yet)."""
    raw = meta.get(SESSION_KEY)
    if raw is None:
        raise ServiceNotReady(f"no active coord ({SESSION_KEY} is not held)")
    try:
        address = json.loads(raw)["address"]
    except (ValueError, KeyError, TypeError) as e:
        raise ServiceNotReady(f"{SESSION_KEY} holds no coord address: {raw[:200]!r}") from e
    if not isinstance(address, str) or not address:
        raise ServiceNotReady(f"{SESSION_KEY} holds no coord address: {raw[:200]!r}")
    return address


class CoordClient:
    """Calls the active coord. Its address comes from ``session/coord`` in ``meta`` (or is fixed by
    ``address``, the ``--coord`` override); on ServiceNotReady / ServiceUnavailable it re-reads the
    session and retries until ``timeout`` seconds have passed since the call began (a failover
    takes a few seconds: the old coord's session ttl, then the standby's start). Thread-safe."""

    def __init__(self, meta: MetaStore, address: str | None = None, timeout: float = 15.0):
        self._meta, self._fixed, self.timeout = meta, address, float(timeout)
        self._lock = threading.Lock()
        # one channel per coord address seen (a handful), kept until close(): closing one that
        # another thread is calling through would fail that call instead of retrying it
        self._clients: dict[str, Client] = {}
        self._current: str | None = address

    @property
    def address(self) -> str | None:
        """The coord address calls go to now (None until the session was first read)."""
        return self._current

    def holds_session(self, address: str) -> bool:
        """Whether the coord at ``address`` is still the active one (``session/coord`` names it): a
        long call to it is given up once not (``vecdb.coord.flush.RemoteFlush``). True with a fixed
        address, and when the store cannot be read (no verdict)."""
        if self._fixed is not None:
            return True
        try:
            return active_coord_address(self._meta) == address
        except ServiceNotReady:
            return False
        except Exception:  # noqa: BLE001 (the metadata store unreachable: the call's own timeout decides)
            return True

    def invoke(self, method: str, request: Message) -> Any:
        """As ``vecdb.rpc.Client.invoke``: the reply of the coord's ``method`` (proto/coord.proto)."""
        return self._retrying(lambda client, timeout: client.invoke(method, request, min(timeout, _SHORT_ATTEMPT)))

    def call(self, method: str, msg: dict, arrays: dict | None = None) -> tuple[Any, dict[str, np.ndarray]]:
        """As ``vecdb.rpc.Client.call``: the request and reply as dicts of their fields."""
        return self._retrying(lambda client, timeout: client.call(method, msg, arrays, min(timeout, _SHORT_ATTEMPT)))

    def retrying(self, attempt: Callable[[Client, float], T], deadline: float | None = None) -> T:
        """``attempt(client, timeout)`` on the active coord, tried again as ``invoke`` is (a caller
        that must tell a repeat from the first try counts its attempts: ``vecdb.coord.ddl_rpc``);
        ``deadline`` (monotonic): tried until then instead of ``timeout`` seconds."""
        return self._retrying(attempt, deadline)

    def _retrying(self, attempt: Callable[[Client, float], T], deadline: float | None = None) -> T:
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        pause = _FIRST_PAUSE
        while True:
            try:
                client = self._client()
                return attempt(client, max(deadline - time.monotonic(), _MIN_ATTEMPT))
            except (ServiceNotReady, ServiceUnavailable):  # a standby, not reached, or stopped mid-call
                self._current = self._fixed  # re-read the session before the next try, this call's or the next's
                if time.monotonic() + pause >= deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, _MAX_PAUSE)

    def _client(self) -> Client:
        address = self._current if self._current is not None else self._resolve()
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = Client(address, "coord")
            self._current = address
            return client

    def _resolve(self) -> str:
        return self._fixed if self._fixed is not None else active_coord_address(self._meta)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()


class Caller(Protocol):
    """What the remote allocators call through: ``CoordClient`` or a ``vecdb.rpc.Client``."""

    def invoke(self, method: str, request: Message) -> Any:
        ...


class RemoteTimestampOracle:
    """``allocate`` from the coord: one call per allocation (a cached range would hand out
    timestamps older than other proxies' acknowledged writes)."""

    def __init__(self, client: Caller):
        self._client = client

    def allocate(self, count: int = 1) -> int:
        return self._client.invoke("AllocTimestamp", coord_pb2.AllocRequest(count=count)).ts


class RemoteIdAllocator:
    def __init__(self, client: Caller):
        self._client = client

    def allocate(self, count: int = 1) -> int:
        return self._client.invoke("AllocID", coord_pb2.AllocRequest(count=count)).id

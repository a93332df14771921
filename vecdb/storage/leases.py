"""Leases for the in-process metadata stores (memory, local), with etcd's semantics.

A lease lives ``ttl`` seconds after it was granted or last renewed; keys put with it are
deleted when it expires or is revoked. A later put of the key without the lease (or a
delete) detaches it. Expiry is checked whenever the store is used (``expired()``), by the
monotonic clock. A node's session is such a key: it disappears a few seconds after the node
stops renewing, which is how the cluster notices dead nodes.

The stores call a ``LeaseTable`` under their own lock; it is not thread-safe by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from vecdb.errors import InvalidParameter, LeaseExpired


def check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= 86400:
        raise InvalidParameter(f"invalid lease ttl {ttl!r}: 1 to 86400 seconds")
    return float(ttl)


class LeaseTable:
    def __init__(self) -> None:
        self._leases: dict[int, list] = {}  # id -> [ttl, deadline, set of keys]
        self._owner: dict[str, int] = {}  # key -> lease id
        self._next = 1

    def grant(self, ttl: float) -> int:
        lid = self._next
        self._next += 1
        ttl = check_ttl(ttl)
        self._leases[lid] = [ttl, time.monotonic() + ttl, set()]
        return lid

    def alive(self, lid: int) -> bool:
        lease = self._leases.get(lid)
        return lease is not None and lease[1] > time.monotonic()

    def renew(self, lid: int) -> bool:
        if not self.alive(lid):
            return False
        lease = self._leases[lid]
        lease[1] = time.monotonic() + lease[0]
        return True

    def revoke(self, lid: int) -> list[str]:
        """Forget the lease; returns the keys to delete."""
        lease = self._leases.pop(lid, None)
        if lease is None:
            return []
        for k in lease[2]:
            self._owner.pop(k, None)
        return sorted(lease[2])

    def expired(self) -> list[str]:
        """Forget the leases past their deadline; returns their keys, to delete."""
        now = time.monotonic()
        out: list[str] = []
        for lid in [lid for lid, lease in self._leases.items() if lease[1] <= now]:
            out += self.revoke(lid)
        return out

    def attach(self, keys, lid: int) -> None:
        if not self.alive(lid):
            raise LeaseExpired(f"lease {lid} expired or does not exist")
        self.detach(keys)
        for k in keys:
            self._owner[k] = lid
            self._leases[lid][2].add(k)

    def detach(self, keys) -> None:
        for k in keys:
            lid = self._owner.pop(k, None)
            if lid is not None:
                self._leases[lid][2].discard(k)

    def detach_changed(self, puts, deletes, delete_prefixes) -> None:
        """A txn wrote ``puts`` and deleted ``deletes`` and ``delete_prefixes`` without a lease:
        those keys no longer belong to one."""
        if self._owner:
            self.detach([k for k in self._owner
                         if k in puts or k in deletes or any(k.startswith(p) for p in delete_prefixes)])

    def attached(self) -> set[str]:
        return set(self._owner)


class LeaseMethods:
    """``grant_lease``/``renew_lease``/``revoke_lease`` for an in-process store with ``_lock``,
    ``_leases`` (a ``LeaseTable``), ``_check_open()`` and ``_forget(keys)`` (drop keys from memory)."""

    # what the store provides (declared, not defined: a definition here would shadow the store's)
    _lock: AbstractContextManager[Any]
    _leases: LeaseTable
    _check_open: Callable[[], None]
    _forget: Callable[[Iterable[str]], None]

    def _live(self) -> None:
        """Under the lock: refuse when closed; forget the keys of expired leases."""
        self._check_open()
        self._forget(self._leases.expired())

    def grant_lease(self, ttl: float) -> int:
        with self._lock:
            self._live()
            return self._leases.grant(ttl)

    def renew_lease(self, lease: int) -> bool:
        with self._lock:
            self._live()
            return self._leases.renew(lease)

    def revoke_lease(self, lease: int) -> None:
        with self._lock:
            self._live()
            self._forget(self._leases.revoke(lease))

"""In-memory reference implementations of the storage protocols.

Simple and obviously correct rather than fast: they are what the unit tests
of other modules run on, and the oracle the real backends are tested
against. Nothing survives the process. Thread-safe (one lock each).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from vecdb.errors import IoFailed, KeyNotFound, LeaseExpired
from vecdb.storage.base import MetaStoreMethods
from vecdb.storage.follow import AppendSignal, PollingFollower
from vecdb.storage.keys import (
    check_channel,
    check_expect,
    check_expected_last,
    check_meta_key,
    check_object_key,
    check_payload,
    check_position,
    check_prefix,
    check_read,
    payload_parts,
)
from vecdb.storage.leases import LeaseMethods, LeaseTable
from vecdb.storage.watch import WATCH_BACKLOG, ChangeFeed, FeedMethods


class _Closable:
    def __init__(self) -> None:
        self._lock: AbstractContextManager[Any] = threading.RLock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise IoFailed(f"{type(self).__name__} is closed")

    def close(self) -> None:
        with self._lock:
            self._closed = True


class _MemChannel:
    def __init__(self) -> None:
        self.base = 1  # position of records[0]
        self.records: list[bytes] = []

    @property
    def last(self) -> int:
        return self.base + len(self.records) - 1


class MemoryLog(_Closable):
    """``Log`` in memory; ``truncate_before`` discards exactly the records
    below the given position."""

    def __init__(self) -> None:
        super().__init__()
        self._channels: dict[str, _MemChannel] = {}
        self.appended = AppendSignal()  # wakes followers

    def append(self, channel: str, payload: bytes) -> int:
        return self.append_batch(channel, [payload])[0]

    def append_batch(self, channel: str, payloads: list[bytes], expect_last: int | None = None) -> list[int]:
        check_channel(channel)
        data = [check_payload(p) for p in payloads]
        with self._lock:
            self._check_open()
            if not data:
                return []
            ch = self._channels.setdefault(channel, _MemChannel())
            check_expected_last(channel, ch.last, expect_last)
            first = ch.last + 1
            ch.records.extend(data)
        self.appended.fire(channel)
        return list(range(first, first + len(data)))

    def read(self, channel: str, start: int = 1, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        check_read(channel, start, end)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
            if ch is None:
                return iter(())
            lo = max(start, ch.base)
            hi = ch.last if end is None else min(end, ch.last)
            if lo > hi:
                return iter(())
            snapshot = ch.records[lo - ch.base : hi - ch.base + 1]
        return iter(list(zip(range(lo, hi + 1), snapshot)))

    def follow(self, channel: str, start: int = 1) -> PollingFollower:
        check_channel(channel)
        check_position(start, "start")
        with self._lock:
            self._check_open()
        return PollingFollower(self, channel, start)

    def last_position(self, channel: str) -> int:
        check_channel(channel)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
            return 0 if ch is None else ch.last

    def truncate_before(self, channel: str, position: int) -> None:
        check_channel(channel)
        check_position(position)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
            if ch is None:
                return
            cut = min(position, ch.last + 1)
            if cut > ch.base:
                del ch.records[: cut - ch.base]
                ch.base = cut

    def channels(self) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(self._channels)

    def drop_channel(self, channel: str) -> None:
        check_channel(channel)
        with self._lock:
            self._check_open()
            self._channels.pop(channel, None)


class MemoryMetaStore(FeedMethods, LeaseMethods, MetaStoreMethods, _Closable):
    """``MetaStore`` as a dict; watchers read a ``ChangeFeed`` of the last ``watch_backlog`` events."""

    def __init__(self, watch_backlog: int = WATCH_BACKLOG) -> None:
        super().__init__()
        self._data: dict[str, bytes] = {}
        self._leases = LeaseTable()
        self._feed = ChangeFeed(watch_backlog)

    def _forget(self, keys) -> None:
        """A lease ended: its keys go, as one change."""
        self._feed.publish(sorted(k for k in keys if self._data.pop(k, None) is not None), {})

    def get(self, key: str) -> bytes | None:
        check_meta_key(key)
        with self._lock:
            self._live()
            return self._data.get(key)

    def scan_revision(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        check_prefix(prefix)
        with self._lock:
            self._live()
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix)), self._feed.revision

    def txn(
        self,
        puts: dict[str, bytes] | None = None,
        deletes: list[str] | None = None,
        delete_prefixes: list[str] | None = None,
        expect: dict[str, bytes | None] | None = None,
        lease: int | None = None,
    ) -> bool:
        puts = {check_meta_key(k): check_payload(v) for k, v in (puts or {}).items()}
        deletes = [check_meta_key(k) for k in deletes or []]
        delete_prefixes = [check_prefix(p) for p in delete_prefixes or []]
        expect = check_expect(expect)
        with self._lock:
            self._live()
            if any(self._data.get(k) != v for k, v in expect.items()):
                return False
            if lease is not None and not self._leases.alive(lease):
                raise LeaseExpired(f"lease {lease} expired or does not exist")
            self._leases.detach_changed({} if lease is not None else puts, deletes, delete_prefixes)
            gone = {k for k in deletes if k in self._data}
            gone.update(k for k in self._data if any(k.startswith(p) for p in delete_prefixes))
            for k in gone:
                del self._data[k]
            self._data.update(puts)
            if lease is not None:
                self._leases.attach(puts, lease)
            self._feed.publish(sorted(gone.difference(puts)), puts)
            return True


class MemoryObjectStore(_Closable):
    """``ObjectStore`` as a dict; ``local_path`` is always None."""

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[str, bytes] = {}

    def put(self, key: str, data) -> None:
        check_object_key(key)
        blob = b"".join(payload_parts(data))
        with self._lock:
            self._check_open()
            self._data[key] = blob

    def get(self, key: str) -> bytes:
        check_object_key(key)
        with self._lock:
            self._check_open()
            try:
                return self._data[key]
            except KeyError:
                raise KeyNotFound(f"object not found: {key}") from None

    def exists(self, key: str) -> bool:
        check_object_key(key)
        with self._lock:
            self._check_open()
            return key in self._data

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        with self._lock:
            self._check_open()
            return sorted(k for k in self._data if k.startswith(prefix))

    def delete(self, key: str) -> None:
        check_object_key(key)
        with self._lock:
            self._check_open()
            self._data.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        check_prefix(prefix)
        with self._lock:
            self._check_open()
            for k in [k for k in self._data if k.startswith(prefix)]:
                del self._data[k]

    def local_path(self, key: str) -> str | None:
        check_object_key(key)
        return None

"""Timestamp oracle and id allocator, persisted in the metadata store.

Both reserve a window ahead in the metadata store before handing out values, so
after a crash and restart every new value is larger than every value given out
before the crash, without a metadata write per call.
"""

from __future__ import annotations

import threading

from vecdb.storage.base import MetaStore
from vecdb.timestamp import LOGICAL_MASK, compose, now_ms, physical_ms

_TSO_KEY = "tso/reserved_ms"
_ID_KEY = "ids/reserved"


class TimestampOracle:
    def __init__(self, meta: MetaStore, window_ms: int = 3000):
        self._meta = meta
        self._window = window_ms
        self._lock = threading.Lock()
        raw = meta.get(_TSO_KEY)
        reserved = int(raw) if raw else 0
        # Everything before `reserved` may have been handed out already.
        self._last = compose(max(reserved, now_ms()), 0)
        self._reserved_ms = 0
        self._reserve(physical_ms(self._last))

    def _reserve(self, upto_ms: int) -> None:
        self._reserved_ms = upto_ms + self._window
        self._meta.put(_TSO_KEY, str(self._reserved_ms).encode())

    def allocate(self, count: int = 1) -> int:
        """Return the first of ``count`` consecutive, strictly increasing timestamps."""
        with self._lock:
            phys = max(now_ms(), physical_ms(self._last))
            candidate = compose(phys, 0)
            if candidate <= self._last:
                candidate = self._last + 1
            if (candidate & LOGICAL_MASK) + count > LOGICAL_MASK:
                candidate = compose(physical_ms(candidate) + 1, 0)
            self._last = candidate + count - 1
            if physical_ms(self._last) >= self._reserved_ms:
                self._reserve(physical_ms(self._last))
            return candidate

    def last(self) -> int:
        with self._lock:
            return self._last


class IdAllocator:
    """Monotonic int64 ids (collection, partition, index ids and auto_id primary keys)."""

    def __init__(self, meta: MetaStore, window: int = 1 << 20, start: int = 450_000_000_000_000_000):
        self._meta = meta
        self._window = window
        self._lock = threading.Lock()
        raw = meta.get(_ID_KEY)
        self._next = int(raw) if raw else start
        self._reserved = self._next
        self._reserve(0)

    def _reserve(self, need: int) -> None:
        self._reserved = self._next + max(self._window, need)
        self._meta.put(_ID_KEY, str(self._reserved).encode())

    def allocate(self, count: int = 1) -> int:
        """Return the first of ``count`` consecutive ids."""
        with self._lock:
            if self._next + count > self._reserved:
                self._reserve(count)
            first = self._next
            self._next += count
            return first

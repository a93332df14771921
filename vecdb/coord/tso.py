"""Timestamp oracle and id allocator, persisted in the metadata store.

Both reserve a window ahead in the metadata store before handing out values, so after a crash
and restart, or a failover to another coord, every new value is larger than every value given
out before, without a metadata write per call.

Fencing: a reservation is a compare-and-set. It expects the window as this allocator last wrote
(or read) it, and every key of ``fence`` holding its value (the coord passes its own
``session/coord`` and the value it put there). So once another process reserved, or the
coord's session ended or was taken over, the old allocator cannot reserve again: it raises
``ServiceNotReady`` and hands out nothing more than the rest of its window, which its
successor starts above. (Handing out that rest is for the caller to stop: the coord answers
only while its lease is valid, ``vecdb.coord.server``.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vecdb.errors import ServiceNotReady
from vecdb.storage.base import MetaStore
from vecdb.timestamp import LOGICAL_MASK, compose, now_ms, physical_ms

_TSO_KEY = "tso/reserved_ms"
_ID_KEY = "ids/reserved"


class _ReservedBound:
    """An int in the metadata store that only its holder moves, and only upwards (see the module
    docstring): the end of the window reserved so far."""

    def __init__(self, meta: MetaStore, key: str, fence: dict[str, bytes] | None):
        self._meta, self._key, self._fence = meta, key, dict(fence or {})
        self._raw = meta.get(key)
        self.value = int(self._raw) if self._raw else None  # None: nothing was ever reserved

    def move_to(self, value: int) -> None:
        raw = str(value).encode()
        if not self._meta.txn(puts={self._key: raw}, expect={self._key: self._raw, **self._fence}):
            raise ServiceNotReady(f"cannot reserve {self._key}: another process reserved it, or this one's "
                                  f"session ({', '.join(self._fence) or 'none'}) ended; it hands out no more")
        self._raw, self.value = raw, value

    @property
    def end(self) -> int:
        """``value`` once this holder moved it (each allocator does in its constructor)."""
        assert self.value is not None, "moved in the constructor"
        return self.value


class TimestampOracle:
    def __init__(self, meta: MetaStore, window_ms: int = 3000, fence: dict[str, bytes] | None = None):
        self._window = window_ms
        self._lock = threading.Lock()
        self._bound = _ReservedBound(meta, _TSO_KEY, fence)
        # Everything before the reserved bound may have been handed out already.
        self._last = compose(max(self._bound.value or 0, now_ms()), 0)
        self._bound.move_to(physical_ms(self._last) + self._window)

    def allocate(self, count: int = 1) -> int:
        """Return the first of ``count`` consecutive, strictly increasing timestamps."""
        with self._lock:
            phys = max(now_ms(), physical_ms(self._last))
            candidate = compose(phys, 0)
            if candidate <= self._last:
                candidate = self._last + 1
            if (candidate & LOGICAL_MASK) + count > LOGICAL_MASK:
                candidate = compose(physical_ms(candidate) + 1, 0)
            last = candidate + count - 1
            if physical_ms(last) >= self._bound.end:  # reserve before handing out (raises if fenced off)
                self._bound.move_to(physical_ms(last) + self._window)
            self._last = last
            return candidate

    def last(self) -> int:
        with self._lock:
            return self._last


class IdAllocator:
    """Monotonic int64 ids (collection, partition, index ids and auto_id primary keys). ``on_allocate``,
    when set, is told each count handed out (a standalone server's ``milvus_rootcoord_id_alloc_count``:
    ``vecdb.metrics.watch_allocators``; a cluster's coord counts in its RPC handler)."""

    def __init__(self, meta: MetaStore, window: int = 1 << 20, start: int = 450_000_000_000_000_000,
                 fence: dict[str, bytes] | None = None):
        self.on_allocate: Callable[[int], object] | None = None
        self._window = window
        self._lock = threading.Lock()
        self._bound = _ReservedBound(meta, _ID_KEY, fence)
        self._next = start if self._bound.value is None else self._bound.value
        self._bound.move_to(self._next + window)

    def allocate(self, count: int = 1) -> int:
        """Return the first of ``count`` consecutive ids."""
        with self._lock:
            if self._next + count > self._bound.end:
                self._bound.move_to(self._next + max(self._window, count))
            first = self._next
            self._next += count
        if self.on_allocate is not None:
            self.on_allocate(count)
        return first

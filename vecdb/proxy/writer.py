"""The proxy's write path: timestamps, the shard log, and delivery to query nodes.

A write takes the locks of the channels it touches (in name order), allocates one
timestamp, appends one record per channel (durable on return: this is the
acknowledgement point) and hands each record to the local query node.

Reads need a snapshot timestamp T such that every write with a smaller timestamp
is already applied (so re-reading at T is stable). ``read_ts`` gets one without
taking the channel locks in the common case: a writer marks its channels "in
flight" *before* it allocates its timestamp, so a reader whose T is larger sees
the mark and waits for that one write (by taking its lock once).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager

from vecdb.coord.tso import TimestampOracle
from vecdb.records import Record, encode
from vecdb.storage.base import Log


class ShardWriter:
    def __init__(self, wal: Log, tso: TimestampOracle, deliver: Callable[[str, int, Record], None]):
        self.log = wal
        self.tso = tso
        self._deliver = deliver
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._inflight: dict[str, int] = {}  # channel -> ts of the write in progress (0: allocating)

    def _lock(self, channel: str) -> threading.Lock:
        with self._guard:
            return self._locks[channel]

    @contextmanager
    def locked(self, channels: list[str]):
        """Hold the write locks of ``channels`` (e.g. while a query node loads them)."""
        with ExitStack() as stack:
            for ch in sorted(set(channels)):
                stack.enter_context(self._lock(ch))
            yield

    def write(self, builders: dict[str, Callable[[int], list[Record]]]) -> tuple[int, dict[str, int]]:
        """Append each channel's records under one timestamp; returns (ts, last position per channel)."""
        with self.locked(list(builders)):
            for channel in builders:
                self._inflight[channel] = 0
            try:
                ts = self.tso.allocate()
                for channel in builders:
                    self._inflight[channel] = ts
                positions = {}
                for channel, build in builders.items():
                    records = build(ts)
                    payloads = [encode(r) for r in records]
                    for pos, record in zip(self.log.append_batch(channel, payloads), records):
                        self._deliver(channel, pos, record)
                        positions[channel] = pos
                return ts, positions
            finally:
                for channel in builders:
                    self._inflight.pop(channel, None)

    def read_ts(self, channels: list[str]) -> int:
        """A snapshot timestamp for reads: every write to ``channels`` with a smaller one is applied."""
        ts = self.tso.allocate()
        for channel in channels:
            pending = self._inflight.get(channel)
            if pending is not None and pending < ts:
                with self._lock(channel):  # that write finishes (or fails) before we read
                    pass
        return ts

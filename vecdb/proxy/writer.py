"""The proxy's write path: timestamps, the shard log, and delivery to query nodes.

A write takes the locks of the channels it touches (in name order), allocates one
timestamp, appends one record per channel (durable on return: this is the
acknowledgement point) and hands each record to the local query node. Because
the timestamp is taken under the channel locks, a reader that takes its snapshot
timestamp later and then locks the channel sees every write ordered before it.
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
            ts = self.tso.allocate()
            positions = {}
            for channel, build in builders.items():
                records = build(ts)
                payloads = [encode(r) for r in records]
                for pos, record in zip(self.log.append_batch(channel, payloads), records):
                    self._deliver(channel, pos, record)
                    positions[channel] = pos
            return ts, positions

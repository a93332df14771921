"""The proxy's write path: timestamps, the shard log, and delivery to query nodes.

A write takes the locks of the channels it touches (in name order), allocates one
timestamp, appends one record per channel (durable on return: this is the
acknowledgement point) and hands each record to the local query node. Each append
expects the channel to end where this writer last saw it, so writers in several
processes (the cluster's proxies) keep every channel in timestamp order: one that lost
the race re-reads the end, takes a newer timestamp and appends again.

A writer that seldom appends (the coord's, for a flush's seal records: the proxies append in
between) is made with ``refresh_ends``: it reads each channel's end before every write rather than
failing an append on the end it saw last time. The other way round, ``saw`` tells a writer where
another one's records ended (a proxy, the seal positions of the flush it asked the coord for), so
its next append there expects that end and does not fail once on it.

Reads need a snapshot timestamp T such that every write with a smaller timestamp
is already applied (so re-reading at T is stable). ``read_ts`` gets one without
taking the channel locks in the common case: a writer marks its channels "in
flight" *before* it allocates its timestamp, so a reader whose T is larger sees
the mark and waits for that one write (by taking its lock once).

Reads below Strong may reuse a snapshot timestamp (``read_ts(max_age=...)``, only when the
writer was made with ``reuse_read_ts``: a cluster proxy, where a fresh one is a coord round
trip): one taken at most ``max_age`` seconds ago for the same channels, raised to the newest
timestamp this writer's own writes used, so a client still reads its own writes, and a batch is
still seen whole or not at all (the same wait for writes in flight below it).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager

from vecdb.errors import LogConflict
from vecdb.log_records import Record, encode
from vecdb.roles import TimestampSource
from vecdb.storage.base import Log


class ShardWriter:
    def __init__(self, wal: Log, tso: TimestampSource, deliver: Callable[[str, int, Record], None],
                 reuse_read_ts: bool = False, refresh_ends: bool = False):
        self.log = wal
        self.tso = tso
        self._reuse_read_ts = reuse_read_ts
        self._refresh_ends = refresh_ends
        self._recent_read_ts: dict[tuple[str, ...], tuple[float, int]] = {}  # channels -> (when, ts)
        self._newest = 0  # the largest timestamp this writer's acknowledged writes used
        self._deliver = deliver
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._inflight: dict[str, int] = {}  # channel -> ts of the write in progress (0: allocating)
        self._last: dict[str, int] = {}  # channel -> its last position as this writer last saw it

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
        """Append each channel's records under one timestamp; returns (the largest timestamp used,
        last position per channel). A channel another process appended to since this writer last
        saw it is appended again under a new, larger timestamp (see ``_append``)."""
        with self.locked(list(builders)):
            for channel in builders:
                self._inflight[channel] = 0
            try:
                for channel in builders:
                    if self._refresh_ends or channel not in self._last:
                        self._last[channel] = self.log.last_position(channel)
                ts = self.tso.allocate()
                for channel in builders:
                    self._inflight[channel] = ts
                positions = {}
                top = ts
                for channel, build in builders.items():
                    used, last = self._append(channel, build, ts)
                    top = max(top, used)
                    if last is not None:
                        positions[channel] = last
                with self._guard:
                    self._newest = max(self._newest, top)
                return top, positions
            finally:
                for channel in builders:
                    self._inflight.pop(channel, None)

    def _append(self, channel: str, build: Callable[[int], list[Record]], ts: int) -> tuple[int, int | None]:
        """Under the channel's lock. Records must sit in a channel in timestamp order, also with
        several writer processes: append only if the channel still ends where this writer saw it
        end *before* allocating ``ts``; otherwise look again, take a new timestamp, retry."""
        while True:
            records = build(ts)
            if not records:
                return ts, None
            for i, r in enumerate(records):
                r.more = i + 1 < len(records)  # the append's last record says it is whole (log_records)
            try:
                appended = self.log.append_batch(channel, [encode(r) for r in records],
                                                 expect_last=self._last[channel])
            except LogConflict:
                self._last[channel] = self.log.last_position(channel)
                self._inflight[channel] = 0
                ts = self.tso.allocate()
                self._inflight[channel] = ts
                continue
            self._last[channel] = appended[-1]
            for pos, record in zip(appended, records):
                self._deliver(channel, pos, record)
            return ts, appended[-1]

    def saw(self, positions: dict[str, int]) -> None:
        """Another writer appended up to these positions (a flush's seal records, by the coord): this
        writer's next append to each channel expects the end there, unless it saw a later one. Only a
        hint: an append that finds the channel longer still re-reads the end and retries."""
        for channel, position in positions.items():
            with self._lock(channel):
                if channel in self._last and position > self._last[channel]:
                    self._last[channel] = position

    def forget(self, channels: list[str]) -> None:
        """A dropped collection's channels: what this writer keeps of them goes (a channel's name is
        never used again: it names its collection's id)."""
        gone = set(channels)
        with self._guard:
            for ch in gone:
                self._locks.pop(ch, None)
                self._last.pop(ch, None)
            for key in [k for k in list(self._recent_read_ts) if gone.intersection(k)]:
                self._recent_read_ts.pop(key, None)

    def written_positions(self, channels: list[str]) -> dict[str, int]:
        """How far this writer's own appends reached in ``channels`` (those it wrote to): what a
        Session read through this proxy waits for (vecdb.proxy.consistency)."""
        last = self._last
        return {ch: last[ch] for ch in channels if ch in last}

    def read_ts(self, channels: list[str], max_age: float = 0.0) -> int:
        """A snapshot timestamp for reads: every write to ``channels`` with a smaller one is applied.
        ``max_age`` > 0 (reads below Strong) lets a writer made with ``reuse_read_ts`` reuse one
        that old (see the module doc)."""
        if not (self._reuse_read_ts and max_age > 0):
            ts = self.tso.allocate()
        else:
            key, now = tuple(channels), time.monotonic()
            seen = self._recent_read_ts.get(key)
            if seen is None or now - seen[0] > max_age:
                seen = self._recent_read_ts[key] = (now, self.tso.allocate())
            ts = max(seen[1], self._newest)
        for channel in channels:
            pending = self._inflight.get(channel)
            if pending is not None and pending < ts:
                with self._lock(channel):  # that write finishes (or fails) before we read
                    pass
        return ts

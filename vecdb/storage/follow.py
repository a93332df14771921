"""Following a log channel: the records appended after a position, as they are acknowledged.

A ``Follower`` (from ``Log.follow(channel, start)``) hands out a channel's records in
order, from ``start`` on, each once: ``poll(timeout)`` returns the next ones already
acknowledged, or waits up to ``timeout`` seconds for at least one (``[]`` when none came).
Records discarded by ``truncate_before`` are skipped. Query and data nodes of a cluster
tail their channels this way.

``PollingFollower`` serves any log that can wait for appends (``AppendSignal``); the
JetStream log has its own follower on a pull consumer.

A follower's ``close()`` wakes a ``poll`` waiting in another thread (it raises ``IoFailed``), so a
tailer's thread polls with a long timeout and is still stopped at once: ``TailStop`` is its stop
flag, which closes the follower it was given when set. (A thousand tailers polling every half
second were two thousand wake-ups a second while the log was idle.)
"""

from __future__ import annotations

import threading
import time

from vecdb.errors import IoFailed

# how long a tailer's poll waits for records (its ``TailStop`` wakes it; between polls it looks at
# whether its follower stalled, ``vecdb.storage.stall``)
POLL_SECONDS = 2.0


class AppendSignal:
    """Wakes followers when a log acknowledged records. ``wait(seen, timeout)`` blocks until
    the generation moves past ``seen`` (so a signal between reading the generation and waiting
    is never lost)."""

    _MOVED_MAX = 10_000  # channels remembered as appended to; past it, "any"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0
        self._moved: set[str] | None = None  # appended to since the last ``take_moved`` (None: any)

    def fire(self, channel: str | None = None) -> None:
        """Records were appended to ``channel`` (None: to some channel)."""
        with self._cond:
            self.generation += 1
            if channel is None or self._moved is None or len(self._moved) >= self._MOVED_MAX:
                self._moved = None
            else:
                self._moved.add(channel)
            self._cond.notify_all()

    def take_moved(self) -> set[str] | None:
        """The channels appended to since the last call (None: any may have been); for one reader
        (the storage server's waits, ``vecdb.storage.backend_server``): what it takes, others miss."""
        with self._cond:
            moved, self._moved = self._moved, set()
            return moved

    def wait(self, seen: int, timeout: float, cancelled=lambda: False) -> None:
        """Also returns once ``cancelled()`` says so after a ``nudge``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.generation == seen and not cancelled():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def nudge(self) -> None:
        """Wake every waiter to look at its ``cancelled`` (a follower closed: the others wait on)."""
        with self._cond:
            self._cond.notify_all()


class TailStop:
    """The stop flag of a thread tailing a channel: ``set()`` also closes the follower last given to
    ``watch`` (waking its ``poll``); a follower watched after ``set()`` is closed at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._follower = None

    def watch(self, follower):
        """``follower``, closed once this flag is set."""
        with self._lock:
            self._follower = follower
        if self._event.is_set():
            follower.close()
        return follower

    def set(self) -> None:
        self._event.set()
        with self._lock:
            follower = self._follower
        if follower is not None:
            follower.close()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class PollingFollower:
    """``Follower`` over ``log.read`` and the log's ``AppendSignal`` (``log.appended``)."""

    def __init__(self, log, channel: str, start: int):
        self._log, self._channel = log, channel
        self.position = max(int(start), 1) - 1  # last position handed out
        self._closed = False

    def poll(self, timeout: float = 1.0, max_records: int = 1024) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._closed:
                raise IoFailed("follower is closed")
            seen = self._log.appended.generation
            out = []
            for pos, payload in self._log.read(self._channel, self.position + 1):
                out.append((pos, payload))
                if len(out) >= max_records:
                    break
            if out:
                self.position = out[-1][0]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._log.appended.wait(seen, left, lambda: self._closed)

    def close(self) -> None:
        self._closed = True
        self._log.appended.nudge()

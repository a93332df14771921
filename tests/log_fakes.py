"""Log followers that stop handing records out, as a JetStream consumer opened past a purge does (no
later record ever comes to show it the gap): the fault the tailers' stall check (``vecdb.storage.stall``)
is for, which a real log cannot be made to produce on demand."""

from __future__ import annotations

import threading
from collections import Counter


class SilentFollower:
    """A follower that never hands anything out."""

    def __init__(self):
        self._closed = threading.Event()

    def poll(self, timeout: float = 1.0, max_records: int = 1024) -> list:
        self._closed.wait(timeout)
        return []

    def close(self) -> None:
        self._closed.set()


class FirstFollowerSilent:
    """A log whose first follower of each channel is silent; the later ones are the real log's.
    ``follows``: how many followers each channel was given."""

    def __init__(self, log):
        self._log = log
        self.follows: Counter[str] = Counter()

    def follow(self, channel: str, start: int = 1):
        self.follows[channel] += 1
        return SilentFollower() if self.follows[channel] == 1 else self._log.follow(channel, start)

    def __getattr__(self, name):
        return getattr(self._log, name)


class OneAtATime:
    """A log whose followers hand out one record per poll and, once they handed one out, wait in
    their next poll until ``release()`` (never answering empty meanwhile): a reader that got the
    first records of an append and not yet the rest, for as long as the test likes."""

    def __init__(self, log):
        self._log = log
        self._gate = threading.Semaphore(0)
        self.handed: list[int] = []  # positions handed out

    def release(self) -> None:
        self._gate.release()

    def follow(self, channel: str, start: int = 1):
        inner, gate, handed = self._log.follow(channel, start), self._gate, self.handed

        class _Follower:
            def poll(self, timeout: float = 1.0, max_records: int = 1024) -> list:
                if handed and not gate.acquire(timeout=30):
                    return []
                out = inner.poll(timeout, 1)
                handed.extend(pos for pos, _ in out)
                if not out and handed:
                    gate.release()  # nothing came: the next poll may go on without a release
                return out

            def close(self) -> None:
                inner.close()

        return _Follower()

    def __getattr__(self, name):
        return getattr(self._log, name)

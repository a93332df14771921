"""Watching a ``MetaStore``: the changes under a prefix, in revision order (rules: ``base.MetaStore``).

``ChangeFeed`` keeps the recent changes of an in-process store (memory, local) and wakes its
``FeedWatcher``s; the etcd store has its own watcher on etcd's watch streams
(``vecdb.storage.etcd_watch``). ``PrefixWatch`` runs callbacks over a scan and a watch on a
thread: how a process keeps a view of a prefix (node sessions, the catalog) up to date.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from vecdb.errors import InvalidParameter, IoFailed
from vecdb.storage.keys import check_prefix

log = logging.getLogger(__name__)

PUT, DELETE = "put", "delete"
WATCH_BACKLOG = 10_000  # events a watcher may be behind before it is dropped (see ChangeFeed)
_TICK = 0.2  # seconds a blocked poll waits before letting the store end expired leases


class WatchEvent(NamedTuple):
    kind: str  # PUT or DELETE
    key: str
    value: bytes | None  # None for DELETE
    revision: int


class WatchCompacted(IoFailed):
    """The changes a watch needs are no longer kept (the start revision was compacted, or the
    watcher fell too far behind): scan again and watch from the scan's revision + 1."""

    default_message = "watch revision compacted"


def check_start_revision(start: int | None) -> int | None:
    if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 1):
        raise InvalidParameter(f"invalid watch start revision {start!r}: an int >= 1, or None for now")
    return start


def check_backlog(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameter(f"invalid watch backlog {n!r}: an int >= 1")
    return n


def take_revisions(events, max_events: int) -> int:
    """How many of ``events`` (in revision order) to hand out: at least ``max_events`` when there
    are that many, but never part of a revision (a txn's changes arrive together)."""
    n = min(max(max_events, 1), len(events))
    while n < len(events) and events[n].revision == events[n - 1].revision:
        n += 1
    return n


def _revision(ev: WatchEvent) -> int:
    return ev.revision


class ChangeFeed:
    """The recent changes of an in-process store, in revision order.

    The store calls ``publish`` under its own lock for every change that alters keys, so
    revisions follow the order changes were applied. Bound: the last ``backlog`` events are
    kept, and at most twice that (the oldest half is dropped at once, by whole revisions; one
    change bigger than that is kept whole). A watch that starts below what is kept, or a
    watcher that has not polled past it, raises ``WatchCompacted``.
    """

    def __init__(self, backlog: int = WATCH_BACKLOG):
        self.backlog = check_backlog(backlog)
        self.revision = 0  # the store's: that of its last change
        self._oldest = 1  # every event with a revision >= this is kept
        self._events: list[WatchEvent] = []
        self.cond = threading.Condition()

    def restore(self, revision: int) -> None:
        """A store reopened at ``revision`` (nothing before it can be watched)."""
        with self.cond:
            self.revision = revision
            self._oldest = revision + 1
            self._events.clear()

    def publish(self, deleted: list[str], puts: dict[str, bytes]) -> int:
        """Record one change: the present keys it deleted (sorted), then the keys it put (in the
        order given). Returns its revision; a change of nothing does not advance it."""
        if not deleted and not puts:
            return self.revision
        with self.cond:
            rev = self.revision + 1
            self._events += [WatchEvent(DELETE, k, None, rev) for k in deleted]
            self._events += [WatchEvent(PUT, k, v, rev) for k, v in puts.items()]
            self.revision = rev
            if len(self._events) > 2 * self.backlog:
                self._trim()
            self.cond.notify_all()
        return rev

    def _trim(self) -> None:
        keep_from = self._events[len(self._events) - self.backlog].revision
        cut = bisect.bisect_left(self._events, keep_from, key=_revision)
        del self._events[:cut]
        self._oldest = keep_from

    def check_start(self, start: int) -> None:
        if start < self._oldest:
            raise WatchCompacted(f"revision {start} is no longer kept (the oldest is {self._oldest}): "
                                 "scan again and watch from the scan's revision + 1")

    def read(self, after: int, prefix: str, max_events: int) -> tuple[list[WatchEvent], int]:
        """Under ``cond``: the events after revision ``after`` under ``prefix`` (whole revisions, about
        ``max_events``), and the revision read up to."""
        if after + 1 < self._oldest:
            raise WatchCompacted(f"the watcher fell more than {self.backlog} changes behind "
                                 "(its events are no longer kept): scan again and watch from the scan's revision + 1")
        events = self._events
        out: list[WatchEvent] = []
        for i in range(bisect.bisect_right(events, after, key=_revision), len(events)):
            ev = events[i]
            if len(out) >= max_events and ev.revision != out[-1].revision:
                return out, out[-1].revision
            if ev.key.startswith(prefix):
                out.append(ev)
        return out, max(after, self.revision)


class FeedWatcher:
    """``Watcher`` over a ``ChangeFeed``. ``tick()`` is the store's: it ends expired leases (their
    deletions are events too, and nothing else may be calling the store) and raises when the
    store is closed; a blocked poll runs it every ``_TICK`` seconds."""

    def __init__(self, feed: ChangeFeed, prefix: str, start_revision: int | None, tick: Callable[[], None]):
        self._feed, self._prefix, self._tick = feed, prefix, tick
        self._closed = False
        with feed.cond:
            if start_revision is None:
                self._after = feed.revision
            else:
                feed.check_start(start_revision)
                self._after = start_revision - 1

    def poll(self, timeout: float = 1.0, max_events: int = 1024) -> list[WatchEvent]:
        deadline = time.monotonic() + max(timeout, 0.0)
        feed = self._feed
        while True:
            if self._closed:
                raise IoFailed("watcher is closed")
            self._tick()
            with feed.cond:
                if self._closed:
                    raise IoFailed("watcher is closed")
                events, self._after = feed.read(self._after, self._prefix, max_events)
                if events:
                    return events
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                feed.cond.wait(min(left, _TICK))

    def close(self) -> None:
        self._closed = True
        with self._feed.cond:
            self._feed.cond.notify_all()


class FeedMethods:
    """``watch`` for an in-process store with ``_lock``, ``_feed`` (a ``ChangeFeed``) and ``_live()``
    (``leases.LeaseMethods``)."""

    # what the store provides (declared, not defined: a definition here would shadow the store's)
    _lock: AbstractContextManager[Any]
    _feed: ChangeFeed
    _live: Callable[[], None]

    def watch(self, prefix: str, start_revision: int | None = None) -> FeedWatcher:
        check_prefix(prefix)
        check_start_revision(start_revision)
        with self._lock:
            self._live()
            return FeedWatcher(self._feed, prefix, start_revision, self._tick)

    def _tick(self) -> None:
        with self._lock:
            self._live()


class PrefixWatch:
    """Keeps callbacks in step with a prefix of a ``MetaStore``, on a daemon thread.

    ``on_reset(pairs)`` gets the prefix's whole contents (``scan_revision``), then
    ``on_events(events)`` every later batch of changes, in revision order, from a watch that
    starts right after the scan, so nothing is missed or seen twice. Whenever the watch cannot
    go on (``WatchCompacted``, a store failure, a callback that raised), it starts over: after
    ``retry_wait`` seconds (at once when compacted) a new scan goes to ``on_reset``, which must
    replace the caller's view. The first scan and ``on_reset`` run in the constructor, so a
    failure there raises to the caller. ``close()`` stops the thread (from a callback too: then
    no more calls follow the current one).
    """

    def __init__(self, store, prefix: str, on_reset: Callable[[list[tuple[str, bytes]]], None],
                 on_events: Callable[[list[WatchEvent]], None], *, poll_timeout: float = 1.0,
                 retry_wait: float = 1.0, name: str | None = None):
        self._store, self._prefix = store, prefix
        self._on_reset, self._on_events = on_reset, on_events
        self._poll_timeout, self._retry_wait = poll_timeout, retry_wait
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher = self._start()
        self._thread = threading.Thread(target=self._run, name=name or f"watch {prefix}", daemon=True)
        self._thread.start()

    def _start(self):
        pairs, revision = self._store.scan_revision(self._prefix)
        watcher = self._store.watch(self._prefix, revision + 1)
        try:
            self._on_reset(pairs)
        except BaseException:
            watcher.close()
            raise
        return watcher

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._watcher is None:
                    watcher = self._start()
                    with self._lock:
                        if self._stop.is_set():  # closed while starting over
                            watcher.close()
                            return
                        self._watcher = watcher
                events = self._watcher.poll(self._poll_timeout)
                if events:
                    self._on_events(events)
            except Exception as e:
                if self._stop.is_set():
                    return
                log.warning("watch of %r starts over: %s", self._prefix, e)
                self._drop()
                if not isinstance(e, WatchCompacted):
                    self._stop.wait(self._retry_wait)

    def _drop(self) -> None:
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        self._drop()
        if threading.current_thread() is not self._thread:
            self._thread.join(10)


class Mirror:
    """A dict that follows a prefix of a ``MetaStore`` (key without the prefix -> value), kept by a
    ``PrefixWatch``; ``on_change()`` runs after each batch of changes is applied (on the watch's
    thread: it must be quick). ``items()`` is a copy taken under the lock; ``version`` counts the batches
    applied, so a reader that derives something from the items knows when to derive it again."""

    def __init__(self, store, prefix: str, on_change: Callable[[], None] | None = None, *, retry_wait: float = 1.0):
        self.prefix = prefix
        self._on_change = on_change
        self._lock = threading.Lock()
        self._items: dict[str, bytes] = {}
        self.version = 0
        self._watch = PrefixWatch(store, prefix, self._reset, self._events, retry_wait=retry_wait,
                                  name=f"mirror {prefix}")

    def _reset(self, pairs: list[tuple[str, bytes]]) -> None:
        with self._lock:
            self._items = {key[len(self.prefix):]: value for key, value in pairs}
            self.version += 1
        self._changed()

    def _events(self, events: list[WatchEvent]) -> None:
        with self._lock:
            for ev in events:
                if ev.kind == PUT:
                    assert ev.value is not None, "a put carries its value"
                    self._items[ev.key[len(self.prefix):]] = ev.value
                else:
                    self._items.pop(ev.key[len(self.prefix):], None)
            self.version += 1
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def items(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._items)

    def versioned_items(self) -> tuple[int, dict[str, bytes]]:
        """``(version, items())``, taken together."""
        with self._lock:
            return self.version, dict(self._items)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)

    def close(self) -> None:
        self._watch.close()

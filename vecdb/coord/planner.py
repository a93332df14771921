"""``Planner``: the loop of a coord-side manager that keeps a prefix of the metadata store equal to
a plan (the query nodes' assignments, the data nodes' channels).

It mirrors the prefixes its plan reads (``vecdb.storage.watch.Mirror``), plans again on every change
to them, on a thread, and writes the differences to its own prefix in one transaction fenced by the
coord's session (a coord that lost its session cannot write). A failed pass (the store, a fence) is
logged and tried again ``RETRY_SECONDS`` later.

Passes follow changes, not the clock: with nothing changed there is no pass (a cluster of thousands of
idle collections used to re-plan every one of them every second). A plan whose rules depend on time
(the assignment's cool-down after a change) says when it wants its next pass (``tick``'s return);
every input is mirrored, so a change the plan depends on wakes it, and a mirror whose watch starts over
counts as changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from vecdb.storage.base import MetaStore
from vecdb.storage.watch import Mirror

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.5  # after a failed pass

T = TypeVar("T")


class Parsed(Generic[T]):
    """A mirror's values, each parsed once: ``get()`` parses only the values that changed since the last
    call, and nothing when the mirror did not change (its ``version``). ``parse(key, raw)``; ``parses``
    counts its calls (the idle-cost test counts them)."""

    def __init__(self, mirror: Mirror, parse: Callable[[str, bytes], T]):
        self.mirror, self._parse = mirror, parse
        self._version = -1
        self._cache: dict[str, tuple[bytes, T]] = {}
        self._values: dict[str, T] = {}
        self.parses = 0

    def changed(self) -> bool:
        """Whether the mirror changed since the last ``get``."""
        return self.mirror.version != self._version

    def get(self) -> dict[str, T]:
        """key -> parsed value (the same dict while the mirror does not change: do not modify it)."""
        if self.mirror.version == self._version:
            return self._values
        version, items = self.mirror.versioned_items()
        old, cache = self._cache, {}
        for key, raw in items.items():
            hit = old.get(key)
            if hit is None or hit[0] != raw:
                hit = (raw, self._parse(key, raw))
                self.parses += 1
            cache[key] = hit
        self._cache, self._version = cache, version
        self._values = {key: value for key, (_, value) in cache.items()}
        return self._values


class Planner:
    name = "plan"  # for the thread and the log

    def __init__(self, meta: MetaStore, fence: dict[str, bytes], prefix: str, watched: tuple[str, ...]):
        """``prefix``: where the plan is written (mirrored too); ``watched``: what it is made from."""
        self.meta, self.prefix = meta, prefix
        self.fence: dict[str, bytes | None] = dict(fence)
        self._wake = threading.Event()
        self._wake.set()  # the first pass: at start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0  # passes run (for tests and the idle-cost probe: an idle planner runs none)
        self.due: float | None = None  # time.monotonic() of a pass the plan asked for; None: at the next change
        self._passing = False
        self.mirrors: list[Mirror] = []
        try:
            for p in (*watched, prefix):
                self.mirrors.append(Mirror(meta, p, self._wake.set))
        except BaseException:
            self.close()
            raise
        # what stands: the store's at start, then what this planner wrote (its mirror may lag behind)
        self.current: dict[int, bytes] = {int(k): v for k, v in self.mirrors[-1].items().items()}

    def start(self) -> None:
        """Run the passes (the subclass calls it once its own state is set up)."""
        self._thread = threading.Thread(target=self._run, name=f"coord-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            due = self.due
            self._wake.wait(None if due is None else max(due - time.monotonic(), 0.0))
            self._wake.clear()
            if self._stop.is_set():
                return
            self._passing = True
            try:
                self.passes += 1
                self.due = self.tick()
            except Exception:  # noqa: BLE001 (the store failed, fenced off...: the next pass tries again)
                log.exception("%s: planning failed; trying again", self.name)
                self.due = time.monotonic() + RETRY_SECONDS
            finally:
                self._passing = False

    def settled(self) -> bool:
        """Whether the planner waits for a change: no pass running, none asked for by a change seen or
        due at a time (``due`` alone is None during a pass too, before the pass sets it)."""
        return not self._passing and not self._wake.is_set() and self.due is None

    def tick(self) -> float | None:
        """One pass; returns when the next one is due though nothing changes (``time.monotonic()``), or None."""
        raise NotImplementedError

    def commit(self, wanted: dict[int, bytes]) -> list[int]:
        """Write what differs from ``current`` (puts, and deletes of ids no longer wanted) in one
        fenced transaction; returns the ids written."""
        puts = {f"{self.prefix}{i}": raw for i, raw in wanted.items() if raw != self.current.get(i)}
        deletes = [f"{self.prefix}{i}" for i in self.current if i not in wanted]
        if not puts and not deletes:
            return []
        if not self.meta.txn(puts=puts, deletes=deletes, expect=self.fence):
            raise RuntimeError(f"{self.name}: the coord's session changed: it may no longer write")
        self.current = dict(wanted)
        for key, raw in puts.items():
            log.info("%s %s: %s", self.name, key, raw.decode())
        return [int(k[len(self.prefix):]) for k in puts]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for m in self.mirrors:
            m.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

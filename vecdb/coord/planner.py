"""``Planner``: the loop of a coord-side manager that keeps a prefix of the metadata store equal to
a plan (the query nodes' assignments, the data nodes' channels).

It mirrors the prefixes its plan reads (``vecdb.storage.watch.Mirror``), plans again on every change
to them and every ``interval`` seconds, on a thread, and writes the differences to its own prefix
in one transaction fenced by the coord's session (a coord that lost its session cannot write).
A failed pass (the store, a fence) is logged and tried again.
"""

from __future__ import annotations

import logging
import threading

from vecdb.storage.base import MetaStore
from vecdb.storage.watch import Mirror

log = logging.getLogger(__name__)


class Planner:
    name = "plan"  # for the thread and the log
    interval = 1.0  # seconds between passes when nothing changes

    def __init__(self, meta: MetaStore, fence: dict[str, bytes], prefix: str, watched: tuple[str, ...]):
        """``prefix``: where the plan is written (mirrored too); ``watched``: what it is made from."""
        self.meta, self.prefix = meta, prefix
        self.fence: dict[str, bytes | None] = dict(fence)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # noqa: BLE001 (the store failed, fenced off...: the next pass tries again)
                log.exception("%s: planning failed; trying again", self.name)
                self._stop.wait(0.5)

    def tick(self) -> None:
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

"""A data node process's index builds: each segment of the channels it owns is indexed once, here.

The data node that owns a channel (``dnassign/``, ``vecdb.coord.datanode_assignment``) persists
its segments and compacts them; it also builds their indexes, whether the collection is loaded or
not, so query nodes never build: they load the finished files (``vecdb.querynode.node``). The
``SegmentIndexer`` is told which channels to look at:

- when a segment of an owned channel appears (a watch on ``seg/``: a flush's segments, and a
  compaction's, which replace their sources);
- when an owned channel's collection changes (a watch on ``coll/``: a new index);
- when a channel becomes owned (start, or taken over from a data node that died: builds its
  predecessor did not finish, one that died in the middle of a build is built once more:
  ``IndexBuilds.retry_after_crash``), and every channel when a watch starts over (it may have missed
  events);
- ``RETRY_SECONDS`` after a look or a build that did not settle: the store failed, a build failed
  without a record (reading the columns, writing the file), or another live process was building
  the segment (it may die before it finishes).

Nothing else: an idle channel costs nothing. (A sweep of every owned channel every 30 s was the
backstop before; with a thousand idle collections it read the store some hundred times a second.)

Each look lists the channel's segments and the collection's finished build records (metadata
only) and queues the builds missing. The build records of segments gone (compacted away, their
partition dropped) are garbage collection's to delete (``vecdb.coord.gc``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable

from vecdb import errors
from vecdb.catalog_model import read_collection
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
from vecdb.datanode.indexer import SegmentIndexer
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import DELETE, Mirror, PrefixWatch, WatchEvent

log = logging.getLogger(__name__)

SEG_PREFIX = "seg/"
RETRY_SECONDS = 30.0


class IndexScheduler:
    def __init__(self, indexer: SegmentIndexer, meta: MetaStore, node_id: str, retry_seconds: float = RETRY_SECONDS):
        self.indexer, self.meta, self.node_id = indexer, meta, node_id
        # a data node may be killed from outside mid-build, and its channels move on: the next owner
        # builds a segment once more before a crash is taken for the build's (index_builds)
        indexer.builds.retry_after_crash = True
        self._cond = threading.Condition()
        self._owned: dict[str, int] = {}  # channel -> collection id, of the channels this node owns
        self._todo: dict[int, set[str]] = {}  # collection id -> channels to look at
        self._retry: dict[int, set[str]] = {}  # collection id -> channels to look at again at _retry_at
        self._retry_at: float | None = None
        self.looks = 0  # channels looked at (the idle-cost test counts them)
        self._stop = threading.Event()
        self._retry_seconds = retry_seconds
        indexer.on_unsettled = lambda cid, channel: self._look_again(cid, [channel])
        self._worker = threading.Thread(target=self._run, name="index-scheduler", daemon=True)
        self._worker.start()
        self._assignment = Mirror(meta, DN_ASSIGN_PREFIX, self._on_assignment)
        self._on_assignment()
        # a watch that starts over (compacted, store trouble) may have missed events: look at everything
        self._segments = PrefixWatch(meta, SEG_PREFIX, self._want_all, self._on_segments, name="index seg/")
        self._catalog = PrefixWatch(meta, COLL_PREFIX, self._want_all, self._on_catalog, name="index coll/")

    def _on_assignment(self) -> None:
        if not hasattr(self, "_assignment"):
            return  # the mirror's first scan, inside its constructor: the constructor calls again
        owned = {}
        for key, raw in self._assignment.items().items():
            for ch, node in json.loads(raw).items():
                if node == self.node_id:
                    owned[ch] = int(key)
        with self._cond:
            new = {ch: cid for ch, cid in owned.items() if ch not in self._owned}
            self._owned = owned
        for ch, cid in new.items():
            self._want(cid, [ch])

    def _on_segments(self, events: list[WatchEvent]) -> None:
        for ev in events:
            parts = ev.key.split("/")  # seg/<cid>/<channel>/<position>-<partition>[-c<segment id>]
            if ev.kind == DELETE or len(parts) != 4:
                continue
            with self._cond:
                cid = self._owned.get(parts[2])
            if cid is not None:
                self._want(cid, [parts[2]])

    def _on_catalog(self, events: list[WatchEvent]) -> None:
        for ev in events:
            try:
                cid = int(ev.key[len(COLL_PREFIX):])
            except ValueError:
                continue
            with self._cond:
                channels = [ch for ch, c in self._owned.items() if c == cid]
            if channels and ev.kind != DELETE:
                self._want(cid, channels)

    def _want_all(self, _pairs=None) -> None:
        with self._cond:
            for ch, cid in self._owned.items():
                self._todo.setdefault(cid, set()).add(ch)
            self._cond.notify()

    def _want(self, cid: int, channels: list[str]) -> None:
        with self._cond:
            self._todo.setdefault(cid, set()).update(channels)
            self._cond.notify()

    def _look_again(self, cid: int, channels: Iterable[str]) -> None:
        """Look at these channels again ``retry_seconds`` from now (or sooner, when an event asks)."""
        with self._cond:
            self._retry.setdefault(cid, set()).update(channels)
            if self._retry_at is None:
                self._retry_at = time.monotonic() + self._retry_seconds
            self._cond.notify()

    def _retry_due(self) -> bool:
        return self._retry_at is not None and time.monotonic() >= self._retry_at

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not (self._todo or self._stop.is_set() or self._retry_due()):
                    self._cond.wait(None if self._retry_at is None else self._retry_at - time.monotonic())
                if self._retry_due():
                    for cid, channels in self._retry.items():  # (those still owned)
                        owned = {ch for ch in channels if self._owned.get(ch) == cid}
                        if owned:
                            self._todo.setdefault(cid, set()).update(owned)
                    self._retry, self._retry_at = {}, None
                todo, self._todo = self._todo, {}
            for cid, channels in todo.items():
                if self._stop.is_set():
                    return
                self.looks += len(channels)
                try:
                    info = read_collection(self.meta, cid)
                    if info.indexes:
                        self.indexer.schedule(info, sorted(ch for ch in channels if ch in info.channels))
                except errors.CollectionNotFound:
                    continue
                except Exception:  # noqa: BLE001 - store trouble: looked at again later
                    log.exception("data node %s: scheduling index builds of collection %d failed", self.node_id, cid)
                    self._look_again(cid, channels)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for watch in (self._segments, self._catalog, self._assignment):
            watch.close()

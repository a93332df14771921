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
  ``IndexBuilds.retry_after_crash``), and every ``SWEEP_SECONDS`` as a backstop.

Each look lists the channel's segments and the collection's finished build records (metadata
only) and queues the builds missing. The build records of segments gone (compacted away, their
partition dropped) are garbage collection's to delete (``vecdb.coord.gc``).
"""

from __future__ import annotations

import json
import logging
import threading
import time

from vecdb import errors
from vecdb.catalog_model import read_collection
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
from vecdb.datanode.indexer import SegmentIndexer
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import DELETE, Mirror, PrefixWatch, WatchEvent

log = logging.getLogger(__name__)

SEG_PREFIX = "seg/"
SWEEP_SECONDS = 30.0


class IndexScheduler:
    def __init__(self, indexer: SegmentIndexer, meta: MetaStore, node_id: str, sweep_seconds: float = SWEEP_SECONDS):
        self.indexer, self.meta, self.node_id = indexer, meta, node_id
        # a data node may be killed from outside mid-build, and its channels move on: the next owner
        # builds a segment once more before a crash is taken for the build's (index_builds)
        indexer.builds.retry_after_crash = True
        self._cond = threading.Condition()
        self._owned: dict[str, int] = {}  # channel -> collection id, of the channels this node owns
        self._todo: dict[int, set[str]] = {}  # collection id -> channels to look at
        self._stop = threading.Event()
        self._sweep_seconds = sweep_seconds
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

    def _run(self) -> None:
        sweep_at = time.monotonic() + self._sweep_seconds
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._todo or self._stop.is_set(), max(sweep_at - time.monotonic(), 0))
                if time.monotonic() >= sweep_at:  # the backstop: everything owned, events or not
                    sweep_at = time.monotonic() + self._sweep_seconds
                    for ch, cid in self._owned.items():
                        self._todo.setdefault(cid, set()).add(ch)
                todo, self._todo = self._todo, {}
            for cid, channels in todo.items():
                if self._stop.is_set():
                    return
                try:
                    info = read_collection(self.meta, cid)
                    if info.indexes:
                        self.indexer.schedule(info, sorted(ch for ch in channels if ch in info.channels))
                except errors.CollectionNotFound:
                    continue
                except Exception:  # noqa: BLE001 - store trouble: the next event or sweep looks again
                    log.exception("data node %s: scheduling index builds of collection %d failed", self.node_id, cid)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for watch in (self._segments, self._catalog, self._assignment):
            watch.close()

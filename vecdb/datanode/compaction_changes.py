"""Which collections' compaction inputs changed: what lets a compaction round skip the channels that did not.

An automatic compaction check of a channel reads its checkpoint, segment and delta lists, its collection's
record and index build records (``Compactor.maybe_compact``): five metadata reads, each an etcd round trip in a
cluster. A round every ``interval`` seconds over every owned channel made a data node's idle cost grow with the
number of collections (1,000 idle collections: 450 reads a second, for nothing changed). ``ChangedCollections``
watches the prefixes those reads cover and keeps the ids of the collections any key under them changed for; a
round checks those (and its own persists', ``mark``), the rest are skipped unread.

Every key under the watched prefixes names its collection id second (``ckpt/<cid>/<channel>``,
``seg/<cid>/...``, ``delta/<cid>/...``, ``idxbuild/<cid>/...``, ``coll/<cid>``). A watch that starts over (its
first scan, a compacted revision, store trouble) may have missed changes: everything counts as changed then.
"""

from __future__ import annotations

import threading
from collections.abc import Set as AbstractSet

from vecdb.catalog_model import COLL_PREFIX
from vecdb.coord import index_builds
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import PrefixWatch, WatchEvent

WATCHED = ("ckpt/", "seg/", "delta/", index_builds.ROOT, COLL_PREFIX)


class ChangedIds:
    """The collection ids marked changed since the last ``take`` (or everything), and the watches that
    mark them (this module's ``ChangedCollections``, the garbage collector's ``vecdb.coord.gc_changes``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = True  # everything counts as changed (nothing was checked yet, or a watch started over)
        self._ids: set[int] = set()
        self._watches: list[PrefixWatch] = []

    def mark(self, ids: AbstractSet[int] | None) -> None:
        """These collections changed (None: everything)."""
        with self._lock:
            if ids is None:
                self._all = True
            else:
                self._ids |= ids

    def take(self) -> set[int] | None:
        """The collections changed since the last ``take`` (None: everything), forgotten here: a caller
        that could not check them all hands them back (``mark``)."""
        with self._lock:
            out = None if self._all else self._ids
            self._all, self._ids = False, set()
        return out

    def close(self) -> None:
        for w in self._watches:
            w.close()


class ChangedCollections(ChangedIds):
    def __init__(self, meta: MetaStore):
        super().__init__()
        try:
            for prefix in WATCHED:
                self._watches.append(PrefixWatch(meta, prefix, self._reset, self._events,
                                                 name=f"compaction {prefix}"))
        except BaseException:
            self.close()
            raise

    def _reset(self, _pairs: list[tuple[str, bytes]]) -> None:
        with self._lock:
            self._all = True

    def _events(self, events: list[WatchEvent]) -> None:
        ids = set()
        for ev in events:
            try:
                ids.add(int(ev.key.split("/", 2)[1]))
            except (IndexError, ValueError):
                continue
        self.mark(ids)

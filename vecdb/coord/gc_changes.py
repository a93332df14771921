"""What changed for the garbage collector since its last pass: which collections, and whether everything.

A pass that lists the whole object store and reads every segment, delta, checkpoint and build record costs
as much with a thousand idle collections as with a thousand busy ones (``vecdb.coord.gc``). ``GcChanges``
watches the metadata a pass judges by and keeps the ids of the collections any key changed for, so the
collector passes over those alone and skips a pass when nothing changed (the idea of the data node's
``vecdb.datanode.compaction_changes``):

- keys that name their collection second (``ckpt/<cid>/..``, ``seg/``, ``delta/``, ``gc/``, ``compacted/``,
  ``idxbuild/``, ``coll/<cid>``) or third (``gcintent/segments/<cid>/..``) mark that collection;
- a session that ends may leave intents of a dead writer: it marks the collections that hold intents;
- a snapshot or pin written or deleted pins or frees files of any collection: everything counts as changed,
  and so it does when a pin's time runs out (``pin_expired``);
- a watch that starts over (its first scan, a compacted revision, store trouble) may have missed changes:
  everything counts as changed then.

What no metadata announces (files a process wrote before it died, with no key naming them) is the periodic
full pass's (``gc.full_interval``).
"""

from __future__ import annotations

import json
from collections import Counter

from vecdb.coord import index_builds
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.coord.snapshots import PIN_PREFIX, SNAPSHOT_PREFIX
from vecdb.datanode.compaction_changes import ChangedIds
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import DELETE, PrefixWatch, WatchEvent

INTENT_PREFIX = "gcintent/"  # (vecdb.coord.gc's: imported from here there)
BY_COLLECTION = ("ckpt/", "seg/", "delta/", "gc/", "compacted/", index_builds.ROOT, COLL_PREFIX, INTENT_PREFIX)
SESSIONS = "session/"


def collection_of(key: str) -> int | None:
    """The collection a key of ``BY_COLLECTION`` names (``gcintent/segments/<cid>/..``: third), else None."""
    parts = key.split("/", 3)
    at = 2 if key.startswith(INTENT_PREFIX) else 1
    try:
        return int(parts[at])
    except (IndexError, ValueError):
        return None


class GcChanges(ChangedIds):
    def __init__(self, meta: MetaStore):
        super().__init__()  # (everything counts as changed until a pass judged it: _all)
        self._intents: Counter[int] = Counter()  # collection id -> its gcintent/ keys
        self._pins: dict[str, int] = {}  # snapshot_pin/ key -> expires_ms
        self._watches: list[PrefixWatch] = []
        handlers = [(p, self._events) for p in BY_COLLECTION] + [(SESSIONS, self._sessions)]
        handlers += [(p, self._snapshots) for p in (SNAPSHOT_PREFIX, PIN_PREFIX)]
        try:
            for prefix, on_events in handlers:
                self._watches.append(PrefixWatch(meta, prefix, self._reset_of(prefix), on_events, name=f"gc {prefix}"))
        except BaseException:
            self.close()
            raise

    def _reset_of(self, prefix: str):
        def reset(pairs: list[tuple[str, bytes]]) -> None:
            with self._lock:
                self._all = True
                if prefix == INTENT_PREFIX:
                    self._intents = Counter(c for key, _ in pairs if (c := collection_of(key)) is not None)
                elif prefix == PIN_PREFIX:
                    self._pins = {}
                    for key, raw in pairs:
                        self._pin(key, raw)
        return reset

    def _pin(self, key: str, raw: bytes | None) -> None:
        """Under the lock: a pin written (``raw``) or deleted (None)."""
        self._pins.pop(key, None)
        if raw is not None:
            try:
                self._pins[key] = int(json.loads(raw)["expires_ms"])
            except (ValueError, TypeError, KeyError):
                pass  # it pins nothing (vecdb.coord.snapshots.pinned_files)

    def _events(self, events: list[WatchEvent]) -> None:
        ids = set()
        with self._lock:
            for ev in events:
                if (c := collection_of(ev.key)) is None:
                    continue
                ids.add(c)
                if ev.key.startswith(INTENT_PREFIX):
                    self._intents[c] += -1 if ev.kind == DELETE else 1
                    if self._intents[c] <= 0:
                        del self._intents[c]
            self._ids |= ids

    def _sessions(self, events: list[WatchEvent]) -> None:
        if any(ev.kind == DELETE for ev in events):  # a writer gone: its intents are garbage now
            with self._lock:
                self._ids |= set(self._intents)

    def _snapshots(self, events: list[WatchEvent]) -> None:
        with self._lock:
            self._all = True
            for ev in events:
                if ev.key.startswith(PIN_PREFIX):
                    self._pin(ev.key, ev.value)

    def pin_expired(self, after_ms: int, until_ms: int) -> bool:
        """Whether a pin's time ran out in (``after_ms``, ``until_ms``]: its files may be garbage now."""
        with self._lock:
            return any(after_ms < e <= until_ms for e in self._pins.values())

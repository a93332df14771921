"""Each proxy's in-memory copy of ``cred/`` (users, roles, grants), kept current by a watch.

Checks read this copy, never the store, so authentication and privilege checks cost no round
trip to etcd. How current it is:

- a change made through this proxy is in the copy before the RPC that made it returns
  (``wait_for``, bounded by ``SYNC_SECONDS``);
- a change made through another proxy arrives with the watch: milliseconds on etcd and on the
  embedded stores. While the store is unreachable the copy stays as it was last seen, and the
  watch scans afresh when the store is back (``vecdb.storage.watch.PrefixWatch``).
"""

from __future__ import annotations

import logging
import threading

from vecdb.storage.base import MetaStore
from vecdb.storage.watch import PUT, PrefixWatch, WatchEvent

log = logging.getLogger(__name__)

SYNC_SECONDS = 5.0


class CredentialView:
    def __init__(self, meta: MetaStore, prefix: str = "cred/"):
        self._data: dict[str, bytes] = {}
        self.version = 0  # grows with every change seen: lets readers cache what they derive from the copy
        self._changed = threading.Condition()
        self._watch = PrefixWatch(meta, prefix, self._reset, self._events, name="credentials")

    def _reset(self, pairs: list[tuple[str, bytes]]) -> None:
        with self._changed:
            self._data = dict(pairs)
            self.version += 1
            self._changed.notify_all()

    def _events(self, events: list[WatchEvent]) -> None:
        with self._changed:
            for ev in events:
                if ev.kind == PUT:
                    assert ev.value is not None, "a put carries its value"
                    self._data[ev.key] = ev.value
                else:
                    self._data.pop(ev.key, None)
            self.version += 1
            self._changed.notify_all()

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """(key, value) under ``prefix``, sorted by key (a snapshot)."""
        with self._changed:
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    def wait_for(self, changes: dict[str, bytes | None], timeout: float = SYNC_SECONDS) -> bool:
        """Wait until every key holds its value in ``changes`` (None: absent); False if that did
        not happen within ``timeout`` (another writer changed it again, or the watch is behind)."""
        def done() -> bool:
            return all(self._data.get(k) == v for k, v in changes.items())

        with self._changed:
            ok = self._changed.wait_for(done, timeout)
        if not ok:
            log.warning("the credential view did not show a write of %d key(s) within %.0f s", len(changes), timeout)
        return ok

    def close(self) -> None:
        self._watch.close()

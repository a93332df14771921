"""Each proxy's in-memory copy of ``cred/`` (users, roles, grants), kept current by a watch, and the
writes to ``cred/`` that return once every live proxy's copy shows them.

Checks read this copy, never the store, so authentication and privilege checks cost no round
trip to etcd. How current it is:

- **Every proxy before the call returns.** Each change goes through ``txn``, which returns once
  this copy and that of every other live proxy (``session/proxy/<id>``: ``vecdb proxy``, ``vecdb
  node``, the workers of ``--workers``) has applied it, as Milvus's rootcoord refreshes every
  proxy's credential and policy caches before an RBAC call answers. How: the transaction also puts
  a fresh token at ``cred/stamp``, whose event in this copy's watch carries the change's store
  revision r; a copy with a node id publishes the revision it has applied in
  ``security/applied/<node id>`` (leased, so the key goes with the process: ``AppliedVersion``,
  as the catalog's ``catalog/applied/``), and ``txn`` waits until each other live proxy has
  published >= r, at most ``FENCE_WAIT`` seconds. A proxy that has not by then (stalled, or killed
  and its session not yet expired) is named in a warning and the call succeeds; one whose process
  ended is not waited for, nor one that publishes nothing (a vecdb from before this fence). A copy
  without a node id (standalone: the one proxy of its store) waits for itself only. The cost is on
  the RBAC calls (a few store round trips), none on requests.
- While the store is unreachable the copy stays as it was last seen, and the watch scans afresh
  when the store is back (``vecdb.storage.watch.PrefixWatch``).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from vecdb.coord.catalog_state import PROXY_SESSIONS
from vecdb.coord.catalog_sync import FENCE_WAIT, AppliedVersion
from vecdb.errors import IoFailed
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import PUT, PrefixWatch, WatchEvent

log = logging.getLogger(__name__)

SYNC_SECONDS = 5.0  # how long a write waits for this process's own copy to show it
STAMP_KEY = "cred/stamp"
APPLIED_PREFIX = "security/applied/"


class _Scans:
    """The store as ``PrefixWatch`` reads it, noting the revision of its last scan: the revision a
    reset of the copy reflects."""

    def __init__(self, meta: MetaStore):
        self.meta, self.revision = meta, 0

    def scan_revision(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        pairs, self.revision = self.meta.scan_revision(prefix)
        return pairs, self.revision

    def watch(self, prefix: str, start_revision: int | None = None):
        return self.meta.watch(prefix, start_revision)


class CredentialView:
    def __init__(self, meta: MetaStore, prefix: str = "cred/", node_id: str | None = None, ttl: float = 10.0,
                 fence_wait: float = FENCE_WAIT):
        """``node_id``: the proxy's (its session's) when other proxies share the store: this copy then
        publishes what it applied and waits for theirs (the module's rules); ``ttl``: its session's."""
        self.meta, self.node_id, self.fence_wait = meta, node_id, fence_wait
        self._data: dict[str, bytes] = {}
        self.version = 0  # grows with every change seen: lets readers cache what they derive from the copy
        self.revision = 0  # the store revision this copy reflects
        self._resets = 0
        self._stamps: dict[bytes, int] = {}  # tokens of this process's writes in flight -> revision seen (0: not yet)
        self._changed = threading.Condition()
        self._published = AppliedVersion(meta, node_id, ttl, prefix=APPLIED_PREFIX) if node_id else None
        self._scans = _Scans(meta)
        try:
            self._watch = PrefixWatch(self._scans, prefix, self._reset, self._events, name="credentials")
        except BaseException:
            if self._published is not None:
                self._published.close()
            raise

    def _reset(self, pairs: list[tuple[str, bytes]]) -> None:
        revision = self._scans.revision  # the scan these pairs come from (same thread, just before)
        with self._changed:
            self._data = dict(pairs)
            self.version += 1
            self.revision = revision
            self._resets += 1
            stamp = self._data.get(STAMP_KEY)
            if stamp is not None and self._stamps.get(stamp) == 0:
                self._stamps[stamp] = revision
            self._changed.notify_all()
        self._publish(revision)

    def _events(self, events: list[WatchEvent]) -> None:
        with self._changed:
            for ev in events:
                if ev.kind == PUT:
                    assert ev.value is not None, "a put carries its value"
                    self._data[ev.key] = ev.value
                    if ev.key == STAMP_KEY and ev.value in self._stamps:
                        self._stamps[ev.value] = ev.revision
                else:
                    self._data.pop(ev.key, None)
            self.version += 1
            revision = self.revision = events[-1].revision
            self._changed.notify_all()
        self._publish(revision)

    def _publish(self, revision: int) -> None:
        if self._published is not None:
            self._published.publish(revision)

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """(key, value) under ``prefix``, sorted by key (a snapshot)."""
        with self._changed:
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    # --- writing ------------------------------------------------------------------------
    def txn(self, puts: dict[str, bytes] | None = None, deletes: list[str] | None = None,
            delete_prefixes: list[str] | None = None, expect: dict[str, bytes | None] | None = None) -> bool:
        """``MetaStore.txn`` of a change to ``cred/``; when applied, it returns once every live proxy's
        copy shows it (bounded: the module's rules). Whether it was applied."""
        token = os.urandom(12).hex().encode()
        with self._changed:
            self._stamps[token] = 0
        try:
            if not self.meta.txn(puts={**(puts or {}), STAMP_KEY: token}, deletes=deletes,
                                 delete_prefixes=delete_prefixes, expect=expect):
                return False
            revision = self._seen(token)
        finally:
            with self._changed:
                self._stamps.pop(token, None)
        if revision is not None and self.node_id is not None:
            try:
                self._fence(revision)
            except IoFailed as e:  # committed: the call succeeds; the other copies follow by their watch
                log.warning("credentials: cannot tell whether the other proxies applied revision %d: %s", revision, e)
        return True

    def _seen(self, token: bytes) -> int | None:
        """The revision of this process's committed write ``token`` once this copy applied it; None when it
        did not within ``SYNC_SECONDS``. A reset after the commit (the watch started over) covers it too."""
        with self._changed:
            resets = self._resets
            if self._changed.wait_for(lambda: self._stamps[token] or self._resets > resets, SYNC_SECONDS):
                return self._stamps[token] or self.revision
        log.warning("credentials: this proxy's copy did not show a write within %.0f s", SYNC_SECONDS)
        return None

    def _fence(self, revision: int) -> None:
        """Wait until every other live proxy published a revision >= ``revision``, at most ``fence_wait``."""
        deadline = time.monotonic() + self.fence_wait
        # the live proxies as the store has them now; one that starts later scans after this change
        live = {key[len(PROXY_SESSIONS):] for key, _ in self.meta.scan(PROXY_SESSIONS)} - {self.node_id}
        if not live:
            return
        pairs, at = self.meta.scan_revision(APPLIED_PREFIX)
        applied = {key[len(APPLIED_PREFIX):]: _int(value) for key, value in pairs}
        # a live proxy with no key publishes none: a process from before this fence (a rolling upgrade),
        # or one closing (its key goes before its session); this version's hold theirs from before their
        # sessions are written, so neither is waited for (each would cost every RBAC call the whole bound)
        behind = {p for p in live if p in applied and applied[p] < revision}
        if not behind:
            return
        watcher = self.meta.watch(APPLIED_PREFIX, at + 1)
        try:
            while behind:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("credentials: proxies %s have not applied revision %d after %.1f s; answering anyway",
                                ", ".join(sorted(behind)), revision, self.fence_wait)
                    return
                for ev in watcher.poll(min(left, 1.0)):
                    # applied, or its process ended (the key is leased)
                    if ev.kind != PUT or _int(ev.value) >= revision:
                        behind.discard(ev.key[len(APPLIED_PREFIX):])
        finally:
            watcher.close()

    def close(self) -> None:
        self._watch.close()
        if self._published is not None:
            self._published.close()


def _int(value: bytes | None) -> int:
    try:
        return int(value or b"")
    except ValueError:
        return -1

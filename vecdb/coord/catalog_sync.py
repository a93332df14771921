"""Keeping a catalog's cache equal to the metadata store, and changing the store without losing
another process's change.

Rules (several proxies share one catalog in the store; each caches it):

- **Versioned writes.** Every catalog change is one transaction that also moves
  ``catalog/version`` from n to n+1, expecting n, where n is the version the writer's cache is at;
  the change's checks (name taken, collection gone, ...) ran against that cache. So catalog
  changes are serialized across processes and none is decided on a stale view: a writer whose
  cache is behind fails the compare-and-set, catches up and runs its checks again (up to
  ``WRITE_WAIT`` seconds, then ``CatalogConflict``, retriable). A refusal (an error from the
  checks) stands only if the store's version is still n; otherwise it is checked again too.
- **Coherent cache.** A catalog with a node id (a proxy's) follows the whole namespace with a
  watch (``PrefixWatch``): the catalog keys' changes arrive with the version that moved with
  them, in one revision, so its cache always equals the store at some version. A catalog without
  one (standalone, the sole writer of its namespace) loads once and reloads only when it finds
  itself behind.
- **Read-your-DDL across proxies.** A catalog with a node id publishes the version it applied in
  ``catalog/applied/<node id>``, under a lease of its own (the key goes with the process). A change,
  once committed at version v, waits until every live proxy (``session/proxy/<id>`` present)
  other than the writer has published >= v, at most ``fence_wait`` seconds (then it logs the
  laggards and returns); a proxy whose session is gone is not waited for. So when a DDL call
  returns, the other proxies' caches have it, the way Milvus's coordinator invalidates the
  proxies' meta caches before it answers.
- **Misses re-check.** A read that finds nothing (no such collection, alias, database) reads the
  store's version once; when the cache is behind, it catches up (at most ``RECHECK_WAIT`` s)
  and looks again: a proxy that was slow to apply a DDL does not answer not-found for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.coord.catalog_state import (
    APPLIED_PREFIX,
    CATALOG_PREFIXES,
    COLL_PREFIX,
    PROXY_SESSIONS,
    VERSION_KEY,
    CatalogState,
    encode_version,
    is_catalog_key,
)
from vecdb.coord.session import Session
from vecdb.errors import CatalogConflict  # noqa: F401 - raised here, imported from here by callers
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import PrefixWatch

log = logging.getLogger(__name__)

WRITE_WAIT = 10.0  # seconds a change may keep losing its compare-and-set before CatalogConflict
FENCE_WAIT = 5.0  # seconds a committed change waits for the live proxies to apply it
RECHECK_WAIT = 2.0  # seconds a read that missed waits for the cache to reach the store's version


@dataclass
class Change:
    """One catalog change: keys to put and delete. ``objects``: the collection objects that become
    the cache's for their ``coll/`` puts (so callers holding them stay current); ``then``: run under
    the lock once committed, before they are cached (a rename renaming the caller's object)."""

    puts: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    objects: list[CollectionInfo] = field(default_factory=list)
    then: Callable[[], None] | None = None


_STALE = Change()  # a plan refused on a cache that was behind: catch up and plan again


class CatalogSync:
    def __init__(self, meta: MetaStore, node_id: str | None = None, *, ttl: float = 10.0,
                 fence_wait: float = FENCE_WAIT):
        self.meta, self.node_id, self.fence_wait = meta, node_id, fence_wait
        self.state = CatalogState()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified whenever ``state`` moved
        self._watch: PrefixWatch | None = None
        self._published: AppliedVersion | None = None
        if node_id is None:
            self.state.reset(load_snapshot(meta))
            return
        self._published = AppliedVersion(meta, node_id, ttl)
        try:
            self._watch = PrefixWatch(meta, "", self._on_reset, self._on_events, name=f"catalog {node_id}")
        except BaseException:
            self._published.close()
            raise

    # --- following the store -----------------------------------------------------
    def _on_reset(self, pairs) -> None:
        self._follow(lambda: self.state.reset(pairs))

    def _on_events(self, events) -> None:
        self._follow(lambda: self.state.apply(events))

    def _follow(self, change: Callable[[], None]) -> None:
        """Apply what the watch delivered, wake the waiters (fence, catch-up), publish the version."""
        with self.changed:
            change()
            self.changed.notify_all()
            version = self.state.version
        self._publish(version)

    def _publish(self, version: int) -> None:
        if self._published is not None:
            self._published.publish(version)

    def store_version(self) -> int:
        raw = self.meta.get(VERSION_KEY)
        return int(raw) if raw else 0

    def catch_up(self, target: int, timeout: float) -> bool:
        """Bring the cache to version >= ``target`` (call without the lock): wait for the watch, or
        reload when there is none. Whether it got there."""
        if self._watch is None:
            pairs = load_snapshot(self.meta)
            with self.changed:
                # the store read above may be older than the cache by now: a change this process
                # committed meanwhile (a restore job's create_index while a read's miss reloads) is
                # in the cache, not in ``pairs``; a reset to them would take it out again, and only a
                # later miss would bring it back (a load then found "no vector index")
                if snapshot_version(pairs) >= self.state.version:
                    self.state.reset(pairs)
                self.changed.notify_all()
        with self.changed:
            return self.changed.wait_for(lambda: self.state.version >= target, timeout)

    def recheck(self, missed_at: int) -> bool:
        """A read missed on the cache at version ``missed_at``: when the store's catalog is newer
        than that, catch up (call without the lock). Whether there is anything newer to look at.

        Compared with the version the miss was decided at, not the cache's version now: the watch
        may have applied the very change the read missed in between (then the cache is already
        there, and the read must look again)."""
        target = self.store_version()
        if target <= missed_at:
            return False
        if not self.catch_up(target, RECHECK_WAIT):
            log.warning("catalog: still behind version %d after %.1f s; answering from the cache", target,
                        RECHECK_WAIT)
        return True

    # --- changing the store ---------------------------------------------------------
    def commit(self, plan: Callable[[], Change | None]) -> int | None:
        """Run ``plan`` (under the lock, on the cache) and write the change it returns, versioned
        (see the module's rules); None from it: nothing to write. Returns the version committed."""
        deadline = time.monotonic() + WRITE_WAIT
        while True:
            with self.lock:
                n = self.state.version
                change = self._plan(plan, n)
                if change is None:
                    return None
                if change is not _STALE and self._try(n, change):
                    break
            if time.monotonic() >= deadline:
                with self.lock:
                    for info in change.objects:
                        self.state.revert(info)
                raise CatalogConflict(f"the catalog kept changing for {WRITE_WAIT:.0f} s under this call "
                                      "(other DDL at the same time); retry")
            self.catch_up(max(self.store_version(), n + 1), max(deadline - time.monotonic(), 0.0))
        self._publish(n + 1)
        self.fence(n + 1)
        return n + 1

    def _plan(self, plan: Callable[[], Change | None], n: int) -> Change | None:
        try:
            return plan()
        except errors.VecdbError:
            if self.store_version() <= n:
                raise  # decided on the store's current catalog
            return _STALE

    def _try(self, n: int, change: Change) -> bool:
        assert all(is_catalog_key(k) for k in [*change.puts, *change.deletes])
        version = encode_version(n + 1)
        assert version is not None, "only version 0 is absent"
        try:
            ok = self.meta.txn(puts={**change.puts, VERSION_KEY: version}, deletes=change.deletes,
                               expect={VERSION_KEY: encode_version(n)})
        except BaseException:  # maybe committed, maybe not: the watch (or the next reload) tells
            for info in change.objects:
                self.state.revert(info)
            raise
        if not ok:
            return False
        for key in change.deletes:
            self.state.delete(key)
        if change.then is not None:
            change.then()
        objects = {info.id: info for info in change.objects}
        for key, value in change.puts.items():
            obj = objects.get(int(key[len(COLL_PREFIX):])) if key.startswith(COLL_PREFIX) else None
            if obj is not None:
                self.state.install(obj, value)
            else:
                self.state.put(key, value)
        self.state.version = n + 1
        self.changed.notify_all()
        return True

    def fence(self, version: int) -> None:
        """Wait until every other live proxy applied ``version``, at most ``fence_wait`` seconds."""
        if self._watch is None:
            return  # the sole writer of its namespace: nobody else caches it
        deadline = time.monotonic() + self.fence_wait
        # the live proxies as the store has them now: this cache's watch may not have delivered a
        # session written a moment ago (that proxy's applied version then arrives after it)
        live = {key[len(PROXY_SESSIONS):] for key, _ in self.meta.scan(PROXY_SESSIONS)}
        with self.changed:
            while behind := self.state.behind(version, self.node_id, live):
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("catalog version %d: proxies %s have not applied it after %.1f s; answering anyway",
                                version, ", ".join(behind), self.fence_wait)
                    return
                self.changed.wait(left)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._published is not None:
            self._published.close()


class AppliedVersion:
    """``catalog/applied/<node id>``: the catalog version a process has applied, held under a lease
    of its own so that it goes with the process (a new lease if the old one ran out). ``prefix``:
    another cache's (``vecdb.security.view`` publishes its store revision so)."""

    def __init__(self, meta: MetaStore, node_id: str, ttl: float, prefix: str = APPLIED_PREFIX):
        self.meta, self.key, self.ttl = meta, prefix + node_id, ttl
        self._lock = threading.Lock()
        self._version = 0
        self._session = Session(meta, self.key, b"0", ttl=ttl, exclusive=False)

    def publish(self, version: int) -> None:
        """Never raises: a DDL that committed must not fail here (a proxy that cannot publish only
        makes the others' fences wait their bound)."""
        with self._lock:
            if version <= self._version:
                return
            try:
                self._put(version)
            except errors.IoFailed as e:
                log.warning("%s: cannot publish applied version %d: %s", self.key, version, e)
                return
            self._version = version

    def _put(self, version: int) -> None:
        value = str(version).encode()
        try:
            self.meta.txn(puts={self.key: value}, lease=self._session.lease)
        except errors.LeaseExpired:  # a stall outlived the lease: hold the key anew
            self._session.close()
            self._session = Session(self.meta, self.key, value, ttl=self.ttl, exclusive=False)

    def close(self) -> None:
        self._session.close()


def load_snapshot(meta: MetaStore, attempts: int = 20) -> list[tuple[str, bytes]]:
    """The catalog's keys at one version: the version, then the catalog's prefixes, then the
    version again; equal versions mean no catalog change came in between (each moves it)."""
    for _ in range(attempts):
        before = meta.get(VERSION_KEY)
        pairs = [pair for prefix in CATALOG_PREFIXES for pair in meta.scan(prefix)]
        if meta.get(VERSION_KEY) == before:
            return pairs + ([(VERSION_KEY, before)] if before else [])
    raise CatalogConflict("the catalog kept changing while it was read; retry")


def snapshot_version(pairs: list[tuple[str, bytes]]) -> int:
    """The catalog version ``load_snapshot``'s pairs are at (0: no catalog change reached the store)."""
    return next((int(value) for key, value in pairs if key == VERSION_KEY), 0)

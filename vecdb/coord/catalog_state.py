"""The catalog's in-memory copy of the metadata store, and the keys it reads.

Layout in the store (values are JSON unless said):
  ``db/<name>``                     database properties
  ``coll/<collection_id>``          one CollectionInfo, partitions and indexes inside
  ``alias/<db>/<alias>``            collection id (text)
  ``catalog/version``               the catalog's version (text int): every catalog change moves it by one
  ``catalog/applied/<node id>``     the version a proxy's catalog has applied (text int; leased)
  ``session/proxy/<node id>``       a live proxy (written by its process; read here for the fence)

``CatalogState`` is built from a scan (``reset``) and follows the store's changes (``apply``), a
whole revision at a time; it is not thread-safe (``CatalogSync`` holds the lock around it).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from vecdb import metrics
from vecdb.catalog_model import COLL_PREFIX, CollectionInfo, coll_key
from vecdb.storage.watch import PUT, WatchEvent

log = logging.getLogger(__name__)

DB_PREFIX = "db/"
ALIAS_PREFIX = "alias/"
VERSION_KEY = "catalog/version"
APPLIED_PREFIX = "catalog/applied/"
PROXY_SESSIONS = "session/proxy/"
CATALOG_PREFIXES = (DB_PREFIX, COLL_PREFIX, ALIAS_PREFIX)


def db_key(name: str) -> str:
    return DB_PREFIX + name


def alias_key(db: str, alias: str) -> str:
    return f"{ALIAS_PREFIX}{db}/{alias}"


def encode_version(version: int) -> bytes | None:
    """The version key's value; None (absent) for 0, the version of a store no catalog change reached."""
    return str(version).encode() if version else None


def is_catalog_key(key: str) -> bool:
    return key == VERSION_KEY or key.startswith(CATALOG_PREFIXES)


class CatalogState:
    """Databases, collections and aliases as the store holds them at ``version``, plus the live
    proxies and the versions they applied.

    A collection whose stored bytes did not change keeps its object: callers mutate the object
    they got and hand it back to ``Catalog.save``, which tells a stale copy by identity.
    """

    def __init__(self) -> None:
        self.databases: dict[str, dict[str, Any]] = {}
        self.collections: dict[int, CollectionInfo] = {}
        self.raws: dict[int, bytes] = {}  # each collection's stored bytes
        self.aliases: dict[tuple[str, str], int] = {}
        self._by_name: dict[tuple[str, str], int] = {}  # (db, name) -> id of every cached collection (find)
        self.version = 0
        self.proxies: set[str] = set()
        self.gone: set[str] = set()  # proxies whose session this state saw end (since its last reset)
        self.applied: dict[str, int] = {}
        # called with each collection that leaves the cache (dropped: by this process's change, the watch's or a
        # reset's), under the catalog's lock: a process's per-collection and per-channel state of it goes
        # (``Catalog.on_drop``); each must be quick and take no lock that is held while waiting for the catalog
        self.on_drop: list[Callable[[CollectionInfo], None]] = []

    def reset(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Replace everything by a scan's (key, value) pairs."""
        pairs = list(pairs)
        present = {k for k, _ in pairs}
        for cid in [c for c in self.collections if coll_key(c) not in present]:
            self._drop_collection(cid)
        self.databases, self.aliases, self.proxies, self.gone, self.applied = {}, {}, set(), set(), {}
        self.version = 0
        for key, value in pairs:
            self.put(key, value)

    def apply(self, events: list[WatchEvent]) -> None:
        """Watch events in revision order. A revision whose catalog version this state already has
        (the catalog's own change, applied when it committed) is skipped."""
        for _, same_revision in itertools.groupby(events, key=lambda ev: ev.revision):
            group = list(same_revision)
            seen = next((ev.value for ev in group if ev.key == VERSION_KEY and ev.kind == PUT), None)
            skip = seen is not None and _int(seen, VERSION_KEY) <= self.version
            for ev in group:
                if skip and is_catalog_key(ev.key):
                    continue
                if ev.kind == PUT:
                    assert ev.value is not None, "a put carries its value"
                    self.put(ev.key, ev.value)
                else:
                    self.delete(ev.key)

    def put(self, key: str, value: bytes) -> None:
        try:
            self._put(key, value)
        except (ValueError, KeyError, TypeError) as e:  # one bad record must not stop the catalog
            log.warning("catalog: ignoring malformed %s: %s", key, e)

    def _put(self, key: str, value: bytes) -> None:
        if key == VERSION_KEY:
            self.version = int(value)
        elif key.startswith(COLL_PREFIX):
            cid = int(key[len(COLL_PREFIX):])
            if self.raws.get(cid) != value:
                self._cache(CollectionInfo.from_json(value), bytes(value))
        elif key.startswith(DB_PREFIX):
            self.databases[key[len(DB_PREFIX):]] = json.loads(value)
        elif key.startswith(ALIAS_PREFIX):
            db, alias = key[len(ALIAS_PREFIX):].split("/", 1)
            self.aliases[(db, alias)] = int(value)
        elif key.startswith(PROXY_SESSIONS):
            self.proxies.add(key[len(PROXY_SESSIONS):])
            self.gone.discard(key[len(PROXY_SESSIONS):])
        elif key.startswith(APPLIED_PREFIX):
            self.applied[key[len(APPLIED_PREFIX):]] = int(value)

    def delete(self, key: str) -> None:
        if key.startswith(COLL_PREFIX):
            cid = _int(key[len(COLL_PREFIX):], key)
            self._drop_collection(cid)
        elif key.startswith(DB_PREFIX):
            self.databases.pop(key[len(DB_PREFIX):], None)
        elif key.startswith(ALIAS_PREFIX):
            db, _, alias = key[len(ALIAS_PREFIX):].partition("/")
            if self.aliases.pop((db, alias), None) is not None:
                metrics.forget_collection(db, alias)
        elif key.startswith(PROXY_SESSIONS):
            self.proxies.discard(key[len(PROXY_SESSIONS):])
            self.gone.add(key[len(PROXY_SESSIONS):])
        elif key.startswith(APPLIED_PREFIX):
            self.applied.pop(key[len(APPLIED_PREFIX):], None)
        elif key == VERSION_KEY:
            self.version = 0

    def find(self, db: str, name: str) -> CollectionInfo | None:
        """The collection named ``name`` in ``db``, or the one an alias of that name points at.

        Every search and query looks its collection up by name, so this is a dict read, not a pass
        over every collection (a server with thousands paid for all of them on each request), and so
        is a miss (every create_collection and has_collection of a new name: a pass over all of them
        made creating N collections quadratic). Every object that becomes the cached one is indexed
        under its name (``_cache``; a rename's object when it is installed); an entry left by a
        rename no longer matches its object's name and goes on its next use.
        """
        info = self.named(db, name)
        if info is not None:
            return info
        cid = self.aliases.get((db, name))
        return self.collections.get(cid) if cid is not None else None

    def named(self, db: str, name: str) -> CollectionInfo | None:
        """The collection whose own name is ``name`` in ``db`` (an alias's target is not)."""
        cid = self._by_name.get((db, name))
        if cid is not None:
            info = self.collections.get(cid)
            if info is not None and info.db == db and info.name == name:
                return info
            del self._by_name[(db, name)]
        return None

    def install(self, info: CollectionInfo, raw: bytes) -> None:
        """``info`` itself becomes the cached object of its collection, stored as ``raw``."""
        self._cache(info, raw)

    def _cache(self, info: CollectionInfo, raw: bytes) -> None:
        """``info`` is the cached object of its collection, found by its name (``find``)."""
        self.collections[info.id], self.raws[info.id] = info, raw
        self._by_name[(info.db, info.name)] = info.id

    def revert(self, info: CollectionInfo) -> None:
        """``info`` is cached but carries changes that were not committed: cache the stored record
        again (a fresh object, so ``save`` of the changed one is refused as stale)."""
        raw = self.raws.get(info.id)
        if raw is not None and self.collections.get(info.id) is info and info.to_json() != raw:
            self._cache(CollectionInfo.from_json(raw), raw)

    def _drop_collection(self, cid: int) -> None:
        info = self.collections.pop(cid, None)
        self.raws.pop(cid, None)
        if info is not None and self._by_name.get((info.db, info.name)) == cid:
            del self._by_name[(info.db, info.name)]
        if info is not None:  # its proxy metrics go with it, on every proxy (each caches the catalog)
            metrics.forget_collection(info.db, info.name, info.channels)
            for forget in self.on_drop:
                try:
                    forget(info)
                except Exception:  # noqa: BLE001 (the catalog follows the store whatever a listener does)
                    log.exception("catalog: forgetting dropped collection %s", cid)

    def behind(self, version: int, exclude: str | None, live: AbstractSet[str] = frozenset()) -> list[str]:
        """The live proxies (those this state saw, and ``live``, minus ``exclude``) whose catalog has
        not applied ``version``. One in ``live`` whose session this state has seen go is not live."""
        proxies = self.proxies | (live - self.gone)
        return sorted(p for p in proxies if p != exclude and self.applied.get(p, 0) < version)


def _int(value: bytes | str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        log.warning("catalog: ignoring malformed %s: %r", key, value)
        return -1

"""Collection, partition, alias, index and database metadata, kept in a MetaStore and cached.

The store's layout is in ``catalog_state``; how the cache stays equal to the store, how writes are
versioned and how a DDL call waits for the other proxies is in ``catalog_sync`` (its docstring
has the rules). ``Catalog`` is the API the proxy's handlers use:

- Reads answer from the cache, under its lock; a miss (no such collection, alias, database)
  re-checks the store once before it is an error.
- Writes run their checks on the cache and commit with compare-and-set on the catalog version
  (checks run again if another process got there first). ``get`` hands out the cached
  ``CollectionInfo``; a caller changes it and passes it to ``save``, which refuses it with
  ``CatalogConflict`` (retriable) when another process changed that collection meanwhile (the
  cache then holds a newer object than the caller's), so no update is lost.
- ``Catalog(meta)``: the sole writer of its namespace (standalone). ``Catalog(meta, node_id=...)``:
  one of several proxies: follows the store with a watch, publishes what it applied, and each
  of its DDL calls returns once every live proxy has applied it (bounded). ``close()`` ends both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from vecdb import errors
from vecdb.catalog_model import (
    DEFAULT_DB,
    MAX_DATABASES,
    CollectionInfo,
    coll_key,
)
from vecdb.coord.catalog_state import alias_key, db_key
from vecdb.coord.catalog_sync import FENCE_WAIT, CatalogConflict, CatalogSync, Change  # noqa: F401
from vecdb.schema import validate_collection_name
from vecdb.storage.base import MetaStore

T = TypeVar("T")


class Catalog:
    def __init__(self, meta: MetaStore, node_id: str | None = None, *, ttl: float = 10.0,
                 fence_wait: float = FENCE_WAIT):
        self._meta = meta
        self._sync = CatalogSync(meta, node_id, ttl=ttl, fence_wait=fence_wait)
        self._lock, self._state = self._sync.lock, self._sync.state
        try:
            self._sync.commit(self._plan_default_db)
        except BaseException:
            self._sync.close()
            raise

    def close(self) -> None:
        self._sync.close()

    def on_drop(self, forget: Callable[[CollectionInfo], None]) -> None:
        """``forget(info)`` for every collection dropped from now on, whichever process dropped it (a
        catalog with a node id follows the store, so every proxy and the coord see each drop): what the
        caller keeps per collection or per channel goes with it. Runs under the catalog's lock."""
        with self._lock:
            self._state.on_drop.append(forget)

    @property
    def version(self) -> int:
        """The catalog version this cache is at."""
        return self._state.version

    def wait_version(self, version: int, timeout: float) -> bool:
        """Wait until this cache is at ``version`` or later (a change another process committed
        and this one must read: the coord's DDL, ``vecdb.coord.ddl_rpc``); whether it got there."""
        if self._state.version >= version:
            return True
        return self._sync.catch_up(version, timeout)

    def _plan_default_db(self) -> Change | None:
        if DEFAULT_DB in self._state.databases:
            return None
        return Change(puts={db_key(DEFAULT_DB): json.dumps({"id": 1, "created_ts": 0, "properties": {}}).encode()})

    def _lookup(self, find: Callable[[], T | None]) -> T | None:
        """``find()`` on the cache; on a miss, once more after the cache caught up with the store."""
        with self._lock:
            found, seen = find(), self._state.version
        if found is None and self._sync.recheck(seen):
            with self._lock:
                found = find()
        return found

    # --- databases ------------------------------------------------------
    def create_database(self, name: str, db_id: int, ts: int, properties: dict[str, str]) -> None:
        validate_collection_name(name, "database name")
        record = json.dumps({"id": db_id, "created_ts": ts, "properties": properties}).encode()

        def plan() -> Change:
            dbs = self._state.databases
            if name in dbs:
                raise errors.InvalidParameter(f"database already exist: {name}")
            if len(dbs) > MAX_DATABASES:  # as Milvus: the default database is not counted
                raise errors.DatabaseLimitExceeded(f"exceeded the limit number of database[limit={MAX_DATABASES}]")
            return Change(puts={db_key(name): record})

        self._sync.commit(plan)

    def drop_database(self, name: str) -> None:
        if name == DEFAULT_DB:
            raise errors.InvalidParameter("can not drop default database")

        def plan() -> Change | None:
            if name not in self._state.databases:
                return None
            if any(c.db == name for c in self._state.collections.values()):
                raise errors.InvalidParameter(
                    f"{name} database is not empty, must drop all collections before drop database")
            return Change(deletes=[db_key(name)])

        self._sync.commit(plan)

    def list_databases(self) -> list[str]:
        with self._lock:
            dbs = self._state.databases
            return sorted(dbs, key=lambda n: dbs[n]["id"])

    def database(self, name: str) -> dict[str, Any]:
        name = name or DEFAULT_DB
        db = self._lookup(lambda: self._state.databases.get(name))
        if db is None:
            raise errors.DatabaseNotFound(f"database not found[database={name}]")
        return db

    def _cached_database(self, name: str) -> dict[str, Any]:
        db = self._state.databases.get(name)
        if db is None:
            raise errors.DatabaseNotFound(f"database not found[database={name}]")
        return db

    def alter_database(self, name: str, properties: dict[str, str], delete_keys: list[str]) -> None:
        """The database's properties updated with ``properties``, then ``delete_keys`` removed."""
        name = name or DEFAULT_DB

        def plan() -> Change:
            db = self._cached_database(name)
            kept = {k: v for k, v in {**db["properties"], **properties}.items() if k not in delete_keys}
            record = {**db, "properties": kept}
            return Change(puts={db_key(name): json.dumps(record).encode()})

        self._sync.commit(plan)

    # --- collections ----------------------------------------------------
    def _cached(self, db: str, name: str) -> CollectionInfo:
        self._cached_database(db)
        info = self._state.find(db, name)
        if info is None:
            raise errors.CollectionNotFound(f"collection not found[database={db}][collection={name}]")
        return info

    def get(self, db: str, name: str) -> CollectionInfo:
        db = db or DEFAULT_DB
        self.database(db)
        info = self._lookup(lambda: self._state.find(db, name))
        if info is None:
            raise errors.CollectionNotFound(f"collection not found[database={db}][collection={name}]")
        return info

    def get_by_id(self, collection_id: int) -> CollectionInfo:
        info = self._lookup(lambda: self._state.collections.get(collection_id))
        if info is None:
            raise errors.CollectionNotFound(f"collection not found[collectionID={collection_id}]")
        return info

    def fresh(self, info: CollectionInfo) -> CollectionInfo:
        """``info``'s collection as the store has it now: a read that found the collection but misses
        a part of it (an index that a snapshot restore created, read through a cache that the
        fence gave up waiting for) re-checks the store once, as a miss does; the cached entry
        when the cache is at the store's version. CollectionNotFound when it was dropped."""
        with self._lock:
            seen = self._state.version
        self._sync.recheck(seen)
        return self.get_by_id(info.id)

    def exists(self, db: str, name: str) -> bool:
        db = db or DEFAULT_DB
        return self._lookup(lambda: self._state.find(db, name)) is not None

    def list_collections(self, db: str) -> list[CollectionInfo]:
        db = db or DEFAULT_DB
        self.database(db)
        with self._lock:
            return sorted((c for c in self._state.collections.values() if c.db == db), key=lambda c: c.id)

    def all_collections(self) -> list[CollectionInfo]:
        with self._lock:
            return list(self._state.collections.values())

    def collection_count(self) -> int:
        """How many collections there are, in every database (no pass over them)."""
        with self._lock:
            return len(self._state.collections)

    def add_collection(self, info: CollectionInfo) -> None:
        def plan() -> Change:
            self._cached_database(info.db)
            if self._state.find(info.db, info.name) is not None:
                if (info.db, info.name) in self._state.aliases:
                    raise errors.InvalidParameter(f"collection name [{info.name}] conflicts with an existing alias")
                raise errors.InvalidParameter(f"collection already exists: {info.name}")
            if info.id in self._state.collections:
                raise errors.InvalidParameter(f"collection id {info.id} is taken")
            return Change(puts={coll_key(info.id): info.to_json()}, objects=[info])

        self._sync.commit(plan)

    def save(self, info: CollectionInfo) -> None:
        """Store the changes the caller made to ``info`` (an object ``get`` returned). Refused with
        ``CatalogConflict`` when the collection changed in the store since ``info`` was handed out."""

        def plan() -> Change | None:
            cached = self._state.collections.get(info.id)
            if cached is None:
                raise errors.CollectionNotFound(f"collection not found[database={info.db}][collection={info.name}]")
            if cached is not info:
                raise CatalogConflict(f"collection {info.name} was changed by another call at the same time; retry")
            raw = info.to_json()
            if raw == self._state.raws.get(info.id):
                return None
            return Change(puts={coll_key(info.id): raw}, objects=[info])

        self._sync.commit(plan)

    def drop_collection(self, info: CollectionInfo) -> None:
        def plan() -> Change | None:
            if info.id not in self._state.collections:
                return None
            dead = [alias_key(db, a) for (db, a), cid in self._state.aliases.items() if cid == info.id]
            return Change(deletes=[coll_key(info.id), *dead])

        self._sync.commit(plan)

    def rename_collection(self, info: CollectionInfo, new_db: str, new_name: str) -> None:
        validate_collection_name(new_name)

        def plan() -> Change:
            cached = self._state.collections.get(info.id)
            if cached is None:
                raise errors.CollectionNotFound(f"collection not found[database={info.db}][collection={info.name}]")
            self._cached_database(new_db)
            if self._state.find(new_db, new_name) is not None:
                raise errors.InvalidParameter(f"duplicated new collection name {new_name} in database {new_db} "
                                              "with other collection name or alias")
            renamed = CollectionInfo.from_json(self._state.raws[info.id])
            _rename(renamed, new_db, new_name)

            def then() -> None:
                for obj in {id(cached): cached, id(info): info}.values():
                    _rename(obj, new_db, new_name)

            return Change(puts={coll_key(info.id): renamed.to_json()}, objects=[cached], then=then)

        self._sync.commit(plan)

    # --- aliases --------------------------------------------------------
    def create_alias(self, db: str, alias: str, collection: str) -> None:
        db = db or DEFAULT_DB
        validate_collection_name(alias, "alias")

        def plan() -> Change:
            target = self._cached(db, collection)
            aliases = self._state.aliases
            if (db, collection) in aliases:  # Milvus 2.3.5: an alias is no collection to point at (100)
                raise errors.CollectionNotFound(f"collection not found[database={db}][collection={collection}]")
            if self._state.named(db, alias) is not None:
                raise errors.AliasNameConflict(f"alias name {alias} conflicts with an existing collection name")
            if (db, alias) in aliases:
                raise errors.AliasAlreadyExists(f"alias {alias} already exists and is bound to another collection")
            return Change(puts={alias_key(db, alias): str(target.id).encode()})

        self._sync.commit(plan)

    def alter_alias(self, db: str, alias: str, collection: str) -> None:
        db = db or DEFAULT_DB

        def plan() -> Change:
            if self._state.named(db, alias) is not None:
                raise errors.AliasNameConflict(f"alias and collection name conflict[database={db}][alias={alias}]")
            if (db, alias) not in self._state.aliases:
                raise errors.AliasNotFound(f"alias not found[database={db}][alias={alias}]")
            if (db, collection) in self._state.aliases:  # as create_alias: no alias of an alias (100)
                raise errors.CollectionNotFound(f"collection not found[collection={collection}]")
            target = self._cached(db, collection)
            return Change(puts={alias_key(db, alias): str(target.id).encode()})

        self._sync.commit(plan)

    def drop_alias(self, db: str, alias: str) -> None:
        db = db or DEFAULT_DB

        def plan() -> Change | None:
            if (db, alias) not in self._state.aliases:
                return None
            return Change(deletes=[alias_key(db, alias)])

        self._sync.commit(plan)

    def describe_alias(self, db: str, alias: str) -> CollectionInfo:
        db = db or DEFAULT_DB

        def find() -> CollectionInfo | None:
            cid = self._state.aliases.get((db, alias))
            return None if cid is None else self._state.collections.get(cid)

        info = self._lookup(find)
        if info is None:
            raise errors.AliasNotFound(f"alias not found[database={db}][alias={alias}]")
        return info

    def aliases_of(self, info: CollectionInfo) -> list[str]:
        with self._lock:
            return sorted(a for (db, a), cid in self._state.aliases.items() if cid == info.id)

    def list_aliases(self, db: str, collection: str | None) -> list[str]:
        db = db or DEFAULT_DB
        if collection:
            return self.aliases_of(self.get(db, collection))
        with self._lock:
            return sorted(a for (d, a) in self._state.aliases if d == db)


def _rename(info: CollectionInfo, db: str, name: str) -> None:
    info.db, info.name = db, name
    info.schema.name = name


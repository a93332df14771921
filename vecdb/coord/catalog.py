"""Collection, partition, alias, index and database metadata, kept in a MetaStore.

Layout in the store (values are JSON):
  ``db/<name>``                     database properties
  ``coll/<collection_id>``          one CollectionInfo, partitions and indexes inside
  ``alias/<db>/<alias>``            collection id
The catalog keeps everything in memory too; the store is the durable copy.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from vecdb import errors
from vecdb.schema import CollectionSchema, validate_collection_name
from vecdb.storage.base import MetaStore

DEFAULT_DB = "default"
DEFAULT_PARTITION = "_default"
MAX_PARTITIONS = 4096
MAX_DATABASES = 64


@dataclass
class PartitionInfo:
    id: int
    name: str
    created_ts: int


@dataclass
class IndexInfo:
    index_id: int
    index_name: str
    field_name: str
    index_type: str
    metric_type: str
    params: dict[str, Any]
    created_ts: int = 0


@dataclass
class CollectionInfo:
    id: int
    db: str
    name: str
    schema: CollectionSchema
    shards_num: int
    consistency_level: int
    created_ts: int
    properties: dict[str, str] = field(default_factory=dict)
    num_partitions: int = 0
    partitions: list[PartitionInfo] = field(default_factory=list)
    indexes: list[IndexInfo] = field(default_factory=list)
    loaded: bool = False
    # With ``loaded``: None = every partition (load_collection, new partitions included), else the ids
    # that load_partitions loaded and release_partitions has not released.
    loaded_partitions: list[int] | None = None

    @property
    def channels(self) -> list[str]:
        return [f"c{self.id}-s{i}" for i in range(self.shards_num)]

    def partition(self, name: str) -> PartitionInfo:
        for p in self.partitions:
            if p.name == name:
                return p
        raise errors.PartitionNotFound(f"partition not found[partition={name}]")

    def has_partition(self, name: str) -> bool:
        return any(p.name == name for p in self.partitions)

    def partition_loaded(self, partition_id: int) -> bool:
        return self.loaded and (self.loaded_partitions is None or partition_id in self.loaded_partitions)

    def index_for_field(self, field_name: str) -> IndexInfo | None:
        return next((i for i in self.indexes if i.field_name == field_name), None)

    def to_json(self) -> bytes:
        d = asdict(self)
        d["schema"] = self.schema.to_dict()
        return json.dumps(d).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "CollectionInfo":
        d = json.loads(raw)
        d["schema"] = CollectionSchema.from_dict(d["schema"])
        d["partitions"] = [PartitionInfo(**p) for p in d["partitions"]]
        d["indexes"] = [IndexInfo(**i) for i in d["indexes"]]
        return cls(**d)


class Catalog:
    def __init__(self, meta: MetaStore):
        self._meta = meta
        self._lock = threading.RLock()
        self._collections: dict[int, CollectionInfo] = {}
        self._aliases: dict[tuple[str, str], int] = {}
        self._databases: dict[str, dict[str, Any]] = {}
        for key, raw in meta.scan("db/"):
            self._databases[key[3:]] = json.loads(raw)
        for _, raw in meta.scan("coll/"):
            info = CollectionInfo.from_json(raw)
            self._collections[info.id] = info
        for key, raw in meta.scan("alias/"):
            _, db, alias = key.split("/", 2)
            self._aliases[(db, alias)] = int(raw)
        if DEFAULT_DB not in self._databases:
            self._databases[DEFAULT_DB] = {"id": 1, "created_ts": 0, "properties": {}}
            self._meta.put(f"db/{DEFAULT_DB}", json.dumps(self._databases[DEFAULT_DB]).encode())

    # --- databases ------------------------------------------------------
    def create_database(self, name: str, db_id: int, ts: int, properties: dict[str, str]) -> None:
        validate_collection_name(name, "database name")
        with self._lock:
            if name in self._databases:
                raise errors.InvalidParameter(f"database already exist: {name}")
            if len(self._databases) >= MAX_DATABASES:
                raise errors.DatabaseLimitExceeded(f"database number ({len(self._databases)}) exceeds max configuration ({MAX_DATABASES})")
            self._databases[name] = {"id": db_id, "created_ts": ts, "properties": properties}
            self._meta.put(f"db/{name}", json.dumps(self._databases[name]).encode())

    def drop_database(self, name: str) -> None:
        with self._lock:
            if name == DEFAULT_DB:
                raise errors.InvalidParameter("can not drop default database")
            if name not in self._databases:
                return
            if any(c.db == name for c in self._collections.values()):
                raise errors.InvalidParameter(f"{name} database is not empty, must drop all collections before drop database")
            del self._databases[name]
            self._meta.delete(f"db/{name}")

    def list_databases(self) -> list[str]:
        with self._lock:
            return sorted(self._databases, key=lambda n: self._databases[n]["id"])

    def database(self, name: str) -> dict[str, Any]:
        with self._lock:
            db = self._databases.get(name or DEFAULT_DB)
            if db is None:
                raise errors.DatabaseNotFound(f"database not found[database={name}]")
            return db

    def alter_database(self, name: str, properties: dict[str, str]) -> None:
        with self._lock:
            db = self.database(name)
            db["properties"].update(properties)
            self._meta.put(f"db/{name}", json.dumps(db).encode())

    # --- collections ----------------------------------------------------
    def _find(self, db: str, name: str) -> CollectionInfo | None:
        for c in self._collections.values():
            if c.db == db and c.name == name:
                return c
        cid = self._aliases.get((db, name))
        return self._collections.get(cid) if cid is not None else None

    def get(self, db: str, name: str) -> CollectionInfo:
        db = db or DEFAULT_DB
        with self._lock:
            self.database(db)
            info = self._find(db, name)
            if info is None:
                raise errors.CollectionNotFound(f"can't find collection[database={db}][collection={name}]")
            return info

    def get_by_id(self, collection_id: int) -> CollectionInfo:
        with self._lock:
            info = self._collections.get(collection_id)
            if info is None:
                raise errors.CollectionNotFound(f"can't find collection[collectionID={collection_id}]")
            return info

    def exists(self, db: str, name: str) -> bool:
        with self._lock:
            return self._find(db or DEFAULT_DB, name) is not None

    def list_collections(self, db: str) -> list[CollectionInfo]:
        db = db or DEFAULT_DB
        with self._lock:
            self.database(db)
            return sorted((c for c in self._collections.values() if c.db == db), key=lambda c: c.id)

    def all_collections(self) -> list[CollectionInfo]:
        with self._lock:
            return list(self._collections.values())

    def add_collection(self, info: CollectionInfo) -> None:
        with self._lock:
            self.database(info.db)
            existing = self._find(info.db, info.name)
            if existing is not None:
                if (info.db, info.name) in self._aliases:
                    raise errors.InvalidParameter(f"collection name [{info.name}] conflicts with an existing alias")
                raise errors.InvalidParameter(f"collection already exists: {info.name}")
            self._collections[info.id] = info
            self._save(info)

    def save(self, info: CollectionInfo) -> None:
        with self._lock:
            self._save(info)

    def _save(self, info: CollectionInfo) -> None:
        self._meta.put(_coll_key(info.id), info.to_json())

    def drop_collection(self, info: CollectionInfo) -> None:
        with self._lock:
            self._collections.pop(info.id, None)
            dead = [k for k, v in self._aliases.items() if v == info.id]
            for k in dead:
                del self._aliases[k]
            self._meta.txn(deletes=[_coll_key(info.id)] + [f"alias/{db}/{a}" for db, a in dead])

    def rename_collection(self, info: CollectionInfo, new_db: str, new_name: str) -> None:
        validate_collection_name(new_name)
        with self._lock:
            self.database(new_db)
            if self._find(new_db, new_name) is not None:
                raise errors.InvalidParameter(f"duplicated new collection name {new_name} in database {new_db} with other collection name or alias")
            info.db, info.name = new_db, new_name
            info.schema.name = new_name
            self._save(info)

    # --- aliases --------------------------------------------------------
    def create_alias(self, db: str, alias: str, collection: str) -> None:
        db = db or DEFAULT_DB
        validate_collection_name(alias, "alias")
        with self._lock:
            target = self.get(db, collection)
            if (db, collection) in self._aliases:
                raise errors.InvalidParameter(f"create alias failed: alias cannot be based on another alias {collection}")
            if any(c.db == db and c.name == alias for c in self._collections.values()):
                raise errors.AliasNameConflict(f"alias name {alias} conflicts with an existing collection name")
            if (db, alias) in self._aliases:
                raise errors.AliasAlreadyExists(f"alias {alias} already exists and is bound to another collection")
            self._aliases[(db, alias)] = target.id
            self._meta.put(f"alias/{db}/{alias}", str(target.id).encode())

    def alter_alias(self, db: str, alias: str, collection: str) -> None:
        db = db or DEFAULT_DB
        with self._lock:
            if (db, alias) not in self._aliases:
                raise errors.AliasNotFound(f"alias not found[database={db}][alias={alias}]")
            target = self.get(db, collection)
            self._aliases[(db, alias)] = target.id
            self._meta.put(f"alias/{db}/{alias}", str(target.id).encode())

    def drop_alias(self, db: str, alias: str) -> None:
        db = db or DEFAULT_DB
        with self._lock:
            if self._aliases.pop((db, alias), None) is not None:
                self._meta.delete(f"alias/{db}/{alias}")

    def describe_alias(self, db: str, alias: str) -> CollectionInfo:
        db = db or DEFAULT_DB
        with self._lock:
            cid = self._aliases.get((db, alias))
            if cid is None:
                raise errors.AliasNotFound(f"alias not found[database={db}][alias={alias}]")
            return self._collections[cid]

    def aliases_of(self, info: CollectionInfo) -> list[str]:
        with self._lock:
            return sorted(a for (db, a), cid in self._aliases.items() if cid == info.id)

    def list_aliases(self, db: str, collection: str | None) -> list[str]:
        db = db or DEFAULT_DB
        with self._lock:
            if collection:
                return self.aliases_of(self.get(db, collection))
            return sorted(a for (d, a) in self._aliases if d == db)


def _coll_key(collection_id: int) -> str:
    return f"coll/{collection_id}"


def read_collection(meta: MetaStore, collection_id: int) -> CollectionInfo:
    """One collection's current metadata straight from the store (for a node in another process
    than the catalog's owner)."""
    raw = meta.get(_coll_key(collection_id))
    if raw is None:
        raise errors.CollectionNotFound(f"can't find collection[collectionID={collection_id}]")
    return CollectionInfo.from_json(raw)

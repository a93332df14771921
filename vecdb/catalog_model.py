"""The catalog's data model: what a collection, its partitions and its indexes are, as stored
(``CollectionInfo.to_json`` under ``coll_key``) and as every role reads them (``read_collection``).
A contract between the roles, so it lives outside them: the coord's catalog (``vecdb.coord.catalog``)
changes it, the proxy, the query nodes and the data nodes read it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from vecdb import errors
from vecdb.schema import CollectionSchema
from vecdb.storage.base import MetaStore
from vecdb.timestamp import compose

DEFAULT_DB = "default"
DEFAULT_PARTITION = "_default"
MAX_DATABASES = 64
COLL_PREFIX = "coll/"  # coll/<collection id> -> CollectionInfo.to_json()


def coll_key(collection_id: int) -> str:
    return f"{COLL_PREFIX}{collection_id}"


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
    # alter_index_properties: settings of the index that are not build parameters (INDEX_PROPERTIES)
    properties: dict[str, str] = field(default_factory=dict)
    # Milvus's UserIndexParams: what the client asked for, as text (``index_type``, ``metric_type``, each
    # parameter given); ``index_type`` and ``params`` are what is built. AUTOINDEX: ``{"index_type":
    # "AUTOINDEX", "metric_type": ...}``, which DescribeIndex answers (an index the client named is described
    # by its build). Every vector index created since they are kept has them: empty is an index recorded
    # before (or a scalar one), whose request is not known.
    user_params: dict[str, str] = field(default_factory=dict)

    @property
    def auto(self) -> bool:
        """Whether the client asked for AUTOINDEX (the server chose what is built)."""
        return is_auto(self.user_params)

    def same_as(self, index_type: str, metric_type: str, params: dict[str, Any], user_params: dict[str, str]) -> bool:
        """Whether creating this index (validated) again is this one, as Milvus compares its UserIndexParams:
        the same build, and AUTOINDEX asked both times or neither (AUTOINDEX is not the HNSW it builds, nor
        the reverse), with the same metric when both are AUTOINDEX. An index recorded without user params
        (before they were kept) is taken as the one its build is."""
        if (self.index_type, self.metric_type, self.params) != (index_type, metric_type, params):
            return False
        if not self.user_params:
            return True
        if self.auto != is_auto(user_params):
            return False
        return not self.auto or self.user_params.get("metric_type") == user_params.get("metric_type")


def is_auto(user_params: dict[str, str]) -> bool:
    """Whether ``user_params`` (``IndexInfo.user_params``) ask for AUTOINDEX."""
    return str(user_params.get("index_type", "")).strip().upper() == "AUTOINDEX"


def _known(cls, d: dict[str, Any]) -> dict[str, Any]:
    """``d``'s keys that ``cls`` (a dataclass) has: an entry written by a newer version, with a key this one
    lacks, still loads (as ``FieldSchema.from_dict`` does)."""
    return {k: v for k, v in d.items() if k in cls.__dataclass_fields__}


# collection properties read when its segments load: altered or deleted only while it is released
LOAD_TIME_PROPERTIES = ("mmap.enabled", "lazyload.enabled")
INDEX_PROPERTIES = ("mmap.enabled",)  # what alter_index_properties may set (Milvus's configurable index params)
TTL_PROPERTY = "collection.ttl.seconds"  # rows older than this are expired: no read sees them, compaction drops them



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
    # load_collection loaded it (Milvus's LoadType_LoadCollection): a partition created while it is loaded
    # is loaded too, also after release_partitions turned ``loaded_partitions`` into a list
    loads_new_partitions: bool = False
    replica_number: int = 1  # replicas to load (a cluster's coord places them on query nodes)
    # the resource group of each replica when loaded (vecdb.coord.resource_groups); [] = all in the default group
    resource_groups: list[str] = field(default_factory=list)
    # truncate_collection: every row written at or before this timestamp is gone (0: never truncated)
    truncated_ts: int = 0

    @property
    def channels(self) -> list[str]:
        return [f"c{self.id}-s{i}" for i in range(self.shards_num)]

    @property
    def ttl_span(self) -> int:
        """The collection's TTL (``collection.ttl.seconds``) as a hybrid-timestamp span; 0: none."""
        raw = self.properties.get(TTL_PROPERTY, "").strip()
        return compose(int(raw) * 1000) if raw.isdigit() else 0

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

    def index_on(self, field_name: str, params: dict[str, Any]) -> IndexInfo | None:
        """The index a new one of ``field_name`` with ``params`` would repeat or clash with: the field's
        index, or on a JSON field, which takes one index per ``json_path`` (Milvus 2.5+), the one on the
        same path (the path as written, as Milvus compares it)."""
        path = params.get("json_path")
        return next((i for i in self.indexes if i.field_name == field_name and i.params.get("json_path") == path),
                    None)

    def to_json(self) -> bytes:
        d = asdict(self)
        d["schema"] = self.schema.to_dict()
        return json.dumps(d).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CollectionInfo:
        d = _known(cls, json.loads(raw))
        d["schema"] = CollectionSchema.from_dict(d["schema"])
        d["partitions"] = [PartitionInfo(**_known(PartitionInfo, p)) for p in d.get("partitions", ())]
        d["indexes"] = [IndexInfo(**_known(IndexInfo, i)) for i in d.get("indexes", ())]
        return cls(**d)


_CHANNEL = re.compile(r"c(\d+)-s\d+")  # CollectionInfo.channels


def channel_collection(channel: str) -> int | None:
    """The collection id a channel's name holds (``c<collection id>-s<shard>``); None for another name."""
    m = _CHANNEL.fullmatch(channel)
    return int(m.group(1)) if m else None


def channel_dropped(meta: MetaStore, channel: str) -> bool:
    """Whether ``channel`` is a channel of a collection the catalog no longer has: dropped for good (ids
    are never reused), so nothing may make its log channel again (``vecdb.storage.jetstream_log``). A
    name of another form is no collection's: False."""
    cid = channel_collection(channel)
    return cid is not None and meta.get(coll_key(cid)) is None


def read_collection(meta: MetaStore, collection_id: int) -> CollectionInfo:
    """One collection's current metadata straight from the store (for a node in another process
    than the catalog's owner)."""
    raw = meta.get(coll_key(collection_id))
    if raw is None:
        raise errors.CollectionNotFound(f"collection not found[collectionID={collection_id}]")
    return CollectionInfo.from_json(raw)

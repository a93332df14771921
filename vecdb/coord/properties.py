"""Database and collection properties Milvus acts on (the keys of Milvus's ``pkg/common/common.go``),
parsed as Milvus parses them: the force-deny switches of a database (``check_not_denied``: the
coord's DDL, ``vecdb.coord.ddl``, and the proxy's writes and reads, ``vecdb.proxy.quota``), its cap
on collections (``max_collections``) and the replica number and resource groups a load takes when it
names none (``load_defaults``); a collection's TTL as create / alter may set it
(``check_collection_properties``; read as ``CollectionInfo.ttl_span``, ``vecdb.catalog_model``); the
``timezone`` of a database or a collection, an IANA zone name (``check_database_properties`` and
``check_collection_properties``; read by ``vecdb.timestamptz.zone_of``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vecdb import errors
from vecdb.catalog_model import TTL_PROPERTY
from vecdb.go_parse import go_bool
from vecdb.timestamptz import ZONE_KEY, check_zone

MAX_COLLECTIONS = "database.max.collections"
DENY_WRITING = "database.force.deny.writing"
DENY_READING = "database.force.deny.reading"
DENY_DDL = "database.force.deny.ddl"  # every kind of DDL below
# The properties that refuse each kind of call (the kinds of ``vecdb.proxy.quota``'s rate types).
DENY_KEYS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("insert", "upsert", "delete", "import"), (DENY_WRITING,)),
    **dict.fromkeys(("search", "query"), (DENY_READING,)),
    "ddl_collection": (DENY_DDL, "database.force.deny.collectionDDL"),
    "ddl_partition": (DENY_DDL, "database.force.deny.partitionDDL"),
    "ddl_index": (DENY_DDL, "database.force.deny.index"),
    "flush": (DENY_DDL, "database.force.deny.flush"),
    "compaction": (DENY_DDL, "database.force.deny.compaction"),
}
# Milvus's ErrServiceQuotaExceeded (code 9) with the reason its quota center gives a forced denial
DENIED = "quota exceeded[reason=access has been disabled by the administrator]"
COLLECTION_REPLICAS, COLLECTION_GROUPS = "collection.replica.number", "collection.resource_groups"
DATABASE_REPLICAS, DATABASE_GROUPS = "database.replica.number", "database.resource_groups"
_INT = re.compile(r"[+-]?[0-9]+")  # Go's strconv.Atoi / ParseInt: no spaces, no underscores


def property_flag(properties: Mapping[str, str], key: str) -> bool:
    """Whether ``key`` is set to true. A value that is no bool (Go's ParseBool, any case) counts as
    unset, as Milvus ignores it."""
    return go_bool(properties.get(key, "").strip().lower()) is True


def check_not_denied(properties: Mapping[str, str], kind: str) -> None:
    """ForceDeny (Milvus's ErrServiceQuotaExceeded, 9) when a database property refuses calls of
    ``kind`` (a key of ``DENY_KEYS``; others are never refused)."""
    if any(property_flag(properties, key) for key in DENY_KEYS.get(kind, ())):
        raise errors.ForceDeny(DENIED)


def max_collections(properties: Mapping[str, str]) -> int | None:
    """``database.max.collections``; None when unset. A value that is no integer refuses the
    create, as Milvus's rootcoord does."""
    raw = properties.get(MAX_COLLECTIONS)
    if raw is None or raw == "":
        return None
    if not _INT.fullmatch(raw):
        raise errors.InvalidParameter(f"parse value of property fail, key:{MAX_COLLECTIONS}, value:{raw}")
    return int(raw)


def _replicas(properties: Mapping[str, str], key: str) -> int:
    raw = properties.get(key, "")
    return max(int(raw), 0) if _INT.fullmatch(raw) else 0  # unparsable or not positive: unset


def _groups(properties: Mapping[str, str], key: str) -> list[str]:
    return [g.strip() for g in properties.get(key, "").split(",") if g.strip()]


def load_defaults(collection: Mapping[str, str], database: Mapping[str, str]) -> tuple[int, list[str]]:
    """The replica number and resource groups of a load that names neither (Milvus 2.5's querycoord:
    the collection's properties, else its database's, each on its own; 0 / [] when neither sets it,
    and a value that does not parse counts as unset)."""
    number = _replicas(collection, COLLECTION_REPLICAS) or _replicas(database, DATABASE_REPLICAS)
    groups = _groups(collection, COLLECTION_GROUPS) or _groups(database, DATABASE_GROUPS)
    return number, groups


def check_collection_properties(properties: Mapping[str, str]) -> None:
    """A collection's properties as create/alter may set them: ``collection.ttl.seconds`` a whole
    number of seconds, 0 or more (0: no TTL); ``timezone`` an IANA time zone. InvalidParameter
    otherwise."""
    raw = properties.get(TTL_PROPERTY)
    if raw is not None and not (raw.strip().isdigit() and int(raw) < 1 << 40):
        raise errors.InvalidParameter(f"{TTL_PROPERTY} must be a whole number of seconds, 0 or more, got {raw!r}")
    check_database_properties(properties)


def check_database_properties(properties: Mapping[str, str]) -> None:
    """``timezone``, when set, an IANA time zone (Milvus's words for one that is not)."""
    if ZONE_KEY in properties:
        check_zone(properties[ZONE_KEY])

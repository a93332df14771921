"""``vecdb cdc verify``: compare the collections of two Milvus API endpoints.

For each collection (every one of every database, or ``--collection``): the schema (field names,
types, vector dimensions, lengths, primary key; auto_id is not compared: a CDC target has it off),
count(*), the set of primary keys and a checksum of every field of every row, read page by page in
primary-key order with Strong consistency, every page at the timestamp of the first
(``vecdb.cdc.base_copy.Pages``, as a query iterator reads, with VARCHAR keys escaped).
Differences are listed; equal collections are not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CollectionDigest:
    schema: list[tuple]
    count: int
    loaded: bool = True  # not loaded: rows are not read (count -1), only the schema and the load state compared
    rows: dict[Any, bytes] = field(default_factory=dict)  # primary key -> digest of the row


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float):
        return float(np.float32(value)) if value == value else "nan"
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _schema_of(desc: dict) -> list[tuple]:
    out: list[tuple] = [("<partitions>", desc.get("num_partitions") if any(
        f.get("is_partition_key") for f in desc.get("fields", [])) else None)]
    for f in desc.get("fields", []):
        params = f.get("params", {}) or {}
        out.append((f["name"], int(f["type"]), bool(f.get("is_primary", False)),
                    str(params.get("dim", "")), str(params.get("max_length", "")),
                    int(f.get("element_type", 0) or 0), str(params.get("max_capacity", "")),
                    bool(f.get("is_partition_key", False))))
    out.append(("<dynamic>", bool(desc.get("enable_dynamic_field", False))))
    if desc.get("enable_namespace"):
        out.append(("<namespaces>", _namespace_mode(desc)))
    return out


def _namespace_mode(desc: dict) -> str:
    return str((desc.get("properties") or {}).get("namespace.mode", "partition_key"))


def _namespaces(client, name: str, desc: dict) -> list[str | None] | None:
    """The namespaces a collection's rows are read in (vecdb.namespaces): [None] without them; its
    partitions in partition mode; None in partition_key mode, which has no list of its namespaces."""
    if not desc.get("enable_namespace"):
        return [None]
    return list(client.list_partitions(name)) if _namespace_mode(desc) == "partition" else None


def is_loaded(client, name: str, partition: str = "") -> bool:
    """Whether the collection (or one of its partitions) is loaded."""
    state = client.get_load_state(name, partition_name=partition).get("state")
    return getattr(state, "name", str(state)) == "Loaded"


def digest(client, name: str, batch: int = 1000) -> CollectionDigest:
    desc = client.describe_collection(name)
    pk, pk_type = next((f["name"], int(f["type"])) for f in desc["fields"] if f.get("is_primary"))
    if not is_loaded(client, name):
        return CollectionDigest(_schema_of(desc), -1, loaded=False)
    spaces = _namespaces(client, name, desc)
    if spaces is None:  # partition_key namespaces: the schema and the load state alone
        return CollectionDigest(_schema_of(desc), -1)
    d = CollectionDigest(_schema_of(desc), 0)
    for ns in spaces:
        kw = {} if ns is None else {"namespace": ns}
        d.count += int(client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong",
                                    **kw)[0]["count(*)"])
        _read_rows(client, name, pk, batch, d, kw, pk_type == 21)  # (21: VARCHAR)
    return d


def _read_rows(client, name: str, pk: str, batch: int, d: CollectionDigest, kw: dict, pk_str: bool = False) -> None:
    from vecdb.cdc.base_copy import Pages  # (not pymilvus's query_iterator: see Pages)

    it = Pages(client, name, pk, pk_str, ["*"], batch, kw=kw)
    try:
        while True:
            page = it.next()
            if not page:
                break
            for row in page:
                key = row[pk]
                raw = json.dumps(_canonical(dict(row)), sort_keys=True, default=str).encode()
                if key in d.rows:
                    d.rows[key] = b"<duplicate>"
                else:
                    d.rows[key] = hashlib.blake2b(raw, digest_size=16).digest()
    finally:
        it.close()


def compare(a: CollectionDigest, b: CollectionDigest, limit: int = 10) -> list[str]:
    out = []
    if a.schema != b.schema:
        out.append(f"schema differs: source {a.schema} target {b.schema}")
    if a.loaded != b.loaded:
        out.append(f"load state differs: source {'loaded' if a.loaded else 'not loaded'}, target "
                   f"{'loaded' if b.loaded else 'not loaded'}")
        return out
    if a.count != b.count:
        out.append(f"count(*) differs: source {a.count} target {b.count}")
    dup = [k for k, v in list(a.rows.items()) + list(b.rows.items()) if v == b"<duplicate>"]
    if dup:
        out.append(f"{len(dup)} primary keys read twice (duplicates), e.g. {dup[:limit]}")
    missing = sorted(set(a.rows) - set(b.rows), key=str)
    extra = sorted(set(b.rows) - set(a.rows), key=str)
    if missing:
        out.append(f"{len(missing)} primary keys missing on the target, e.g. {missing[:limit]}")
    if extra:
        out.append(f"{len(extra)} primary keys only on the target, e.g. {extra[:limit]}")
    changed = sorted((k for k in set(a.rows) & set(b.rows) if a.rows[k] != b.rows[k]), key=str)
    if changed:
        out.append(f"{len(changed)} rows differ in some field, e.g. primary keys {changed[:limit]}")
    if a.loaded and a.count >= 0 and len(a.rows) != a.count:
        out.append(f"source: iterator read {len(a.rows)} rows, count(*) says {a.count}")
    return out


class Unreachable(Exception):
    """An endpoint could not be connected to (refused, unknown host, authentication): nothing was compared."""


def _reason(e: Exception) -> str:
    """One line for a failed connection: pymilvus's message and gRPC's own reason (connection refused,
    "missing authorization in header", "auth check failure ...")."""
    msg = str(getattr(e, "message", "") or e).strip()
    cause = e.__cause__ or e.__context__
    details = str(cause.details() or "") if cause is not None and hasattr(cause, "details") else ""
    if "Connection refused" in details:
        details = "connection refused"
    elif "failed to connect" in details:
        details = details.rsplit(": ", 1)[-1]
    return " ".join(f"{msg}: {details}".split()) if details and details not in msg else " ".join(msg.split())


def parse_rename(pairs: list[str]) -> dict[str, str]:
    """``["docs=docs_copy", "db2.a=b"]`` (``--rename``) as a task's rename map (source ``name`` or
    ``db.name`` -> target name, same database); InvalidParameter for a pair without ``=``."""
    from vecdb import errors

    out: dict[str, str] = {}
    for p in pairs:
        src, sep, dst = p.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise errors.InvalidParameter(f"--rename {p!r}: expected SOURCE=TARGET (e.g. docs=docs_copy or "
                                          "db2.docs=docs_copy)")
        out[src.strip()] = dst.strip()
    return out


def _wanted(collections: list[str] | None, db: str, name: str) -> bool:
    """Whether a task's ``collections`` (``["*"]`` or ``name`` / ``db.name``; None: all) take ``db.name``."""
    return not collections or "*" in collections or name in collections or f"{db}.{name}" in collections


def verify(source_uri: str, target_uri: str, collection: str | None = None, source_token: str = "",
           target_token: str = "", rename: dict[str, str] | None = None,
           collections: list[str] | None = None) -> dict[str, list[str]]:
    """``{"db.collection": [differences]}`` for every collection compared (an empty list: equal).

    ``rename``: a task's rename map (source ``name`` or ``db.name`` -> target name in the same database):
    a source collection is compared with the target collection of its new name. ``collections``: a task's
    list (``["*"]`` or ``name`` / ``db.name``): only those are compared, and target collections that no
    source one maps to are reported only with ``["*"]`` (or None). Raises ``Unreachable`` when either
    endpoint cannot be connected to."""
    from pymilvus import MilvusClient  # type: ignore[import-untyped]
    from pymilvus.exceptions import MilvusException  # type: ignore[import-untyped]

    rename = rename or {}
    every = collection is None and (not collections or "*" in collections)
    opened: list = []

    def connect(side: str, uri: str, token: str, db: str | None):
        # a client per database: use_database asks DescribeDatabase, which Milvus 2.3 lacks
        try:
            c = MilvusClient(uri=uri, token=token, **({"db_name": db} if db else {}))
        except MilvusException as e:
            raise Unreachable(f"cannot connect to the {side} {uri}: {_reason(e)}") from None
        opened.append(c)
        return c

    def target_name(db: str, name: str) -> str:
        return rename.get(f"{db}.{name}", rename.get(name, name))

    report: dict[str, list[str]] = {}
    try:
        src0 = connect("source", source_uri, source_token, None)
        dst0 = connect("target", target_uri, target_token, None)
        try:  # (the first call that needs the credentials: a wrong or missing token fails here)
            dbs = src0.list_databases() if collection is None else [None]
        except MilvusException as e:
            raise Unreachable(f"cannot connect to the source {source_uri}: {_reason(e)}") from None
        try:
            target_dbs = dst0.list_databases() if collection is None else []
        except MilvusException as e:
            raise Unreachable(f"cannot connect to the target {target_uri}: {_reason(e)}") from None
        for db in dbs:
            if db is not None and db not in target_dbs:
                if every or any(_wanted(collections, db, n)
                                for n in connect("source", source_uri, source_token, db).list_collections()):
                    report[f"{db}.*"] = [f"database {db} missing on the target"]
                continue
            src = connect("source", source_uri, source_token, db) if db else src0
            dst = connect("target", target_uri, target_token, db) if db else dst0
            names = src.list_collections() if collection is None else [collection]
            if collection is None:  # external collections are not replicated (their rows come from their files)
                names = [n for n in names if _wanted(collections, db or "default", n)
                         and not src.describe_collection(n).get("external_source")]
            for name in names:
                label = f"{db or 'default'}.{name}"
                to = target_name(db or "default", name)
                if not dst.has_collection(to):
                    report[label] = [f"collection {to} missing on the target"
                                     + ("" if rename else " (if a task renames it: --rename or --task)")]
                    continue
                report[label] = compare(digest(src, name), digest(dst, to))
            if db is not None and every:
                mapped = {target_name(db, n) for n in src.list_collections()}
                for name in set(dst.list_collections()) - mapped \
                        - {n for n in dst.list_collections() if dst.describe_collection(n).get("external_source")}:
                    report[f"{db}.{name}"] = [f"collection {name} only on the target"
                                              + (" (a task's rename? see --rename or --task)" if not rename else "")]
    finally:
        for c in opened:
            c.close()
    return report


def print_report(report: dict[str, list[str]]) -> bool:
    """Print the differences; whether everything was equal."""
    equal = True
    for label, diffs in sorted(report.items()):
        if diffs:
            equal = False
            for d in diffs:
                print(f"{label}: {d}")
        else:
            print(f"{label}: equal")
    print("EQUAL" if equal else "DIFFERENT")
    return equal

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


def is_loaded(client, name: str) -> bool:
    state = client.get_load_state(name).get("state")
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


def verify(source_uri: str, target_uri: str, collection: str | None = None, source_token: str = "",
           target_token: str = "", rename: dict[str, str] | None = None) -> dict[str, list[str]]:
    """``{"db.collection": [differences]}`` for every collection compared (an empty list: equal)."""
    from pymilvus import MilvusClient  # type: ignore[import-untyped]

    rename = rename or {}
    opened: list = []

    def connect(uri: str, token: str, db: str | None):
        # a client per database: use_database asks DescribeDatabase, which Milvus 2.3 lacks
        c = MilvusClient(uri=uri, token=token, **({"db_name": db} if db else {}))
        opened.append(c)
        return c

    report: dict[str, list[str]] = {}
    try:
        src0, dst0 = connect(source_uri, source_token, None), connect(target_uri, target_token, None)
        dbs = src0.list_databases() if collection is None else [None]
        target_dbs = dst0.list_databases() if collection is None else []
        for db in dbs:
            if db is not None and db not in target_dbs:
                report[f"{db}.*"] = [f"database {db} missing on the target"]
                continue
            src = connect(source_uri, source_token, db) if db else src0
            dst = connect(target_uri, target_token, db) if db else dst0
            names = src.list_collections() if collection is None else [collection]
            if collection is None:  # external collections are not replicated (their rows come from their files)
                names = [n for n in names if not src.describe_collection(n).get("external_source")]
            for name in names:
                label = f"{db or 'default'}.{name}"
                target_name = rename.get(label, rename.get(name, name))
                if not dst.has_collection(target_name):
                    report[label] = [f"collection {target_name} missing on the target"]
                    continue
                report[label] = compare(digest(src, name), digest(dst, target_name))
            if db is not None:
                for name in set(dst.list_collections()) - {rename.get(n, n) for n in src.list_collections()} \
                        - {n for n in dst.list_collections() if dst.describe_collection(n).get("external_source")}:
                    report[f"{db}.{name}"] = [f"collection {name} only on the target"]
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

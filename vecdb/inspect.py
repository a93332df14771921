"""``vecdb inspect``: a read-only debug view of a deployment's metadata store (after Milvus's birdwatcher).

It reads the keys the roles keep (``vecdb.coord.catalog_state``: ``db/``, ``coll/``, ``alias/``;
``seg/<collection>/<channel>/...`` sealed segments, ``compacted/``, ``ckpt/`` checkpoints;
``assign/`` replicas and placements; ``session/`` live processes; ``idxbuild/`` index builds;
``import/`` jobs) and prints them as tables, or as JSON with ``--json``. It never writes.

The store: ``--meta-store etcd://host:port`` (a cluster's, keys under ``--namespace``) or
``vecdb://host:port`` (a standalone primary's, served to its workers), or by default ``local``: the
files of ``<--data-dir>/meta``. ``LocalMetaStore`` takes an exclusive lock on that directory and
compacts its journal when it opens it, so inspect does not open one: ``LocalFilesReader`` reads the
snapshot and the journal as they are, without the lock (a running server is neither blocked nor
disturbed), and reads them again if the server compacted in between. What it cannot see there: the
keys a server puts with a lease (its ``session/`` key) live in that server's memory only, so for a
local directory ``sessions`` reports the process that holds the directory's lock instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from vecdb.errors import VecdbError

VALUE_WIDTH = 120  # `inspect keys --values` without --full: values cut to this many characters


class InspectError(Exception):
    """A store that cannot be opened or read: the message says which and why."""


# --- reading a store --------------------------------------------------------------------


class LocalFilesReader:
    """The keys of a ``LocalMetaStore`` directory, read from its files without its lock: the snapshot,
    then the journal over it (a torn tail, a write in flight, is left out as on open). If the snapshot
    changed while reading (the owner compacted and emptied the journal), it reads again."""

    def __init__(self, meta_dir: str, tries: int = 10):
        from vecdb.storage.local_meta import JOURNAL, SNAPSHOT

        self.dir = os.path.abspath(meta_dir)
        if not os.path.isdir(self.dir):
            raise InspectError(f"no metadata store at {self.dir} (not a vecdb data directory? give --data-dir, "
                               "or --meta-store etcd://host:port for a cluster)")
        snap, journal = os.path.join(self.dir, SNAPSHOT), os.path.join(self.dir, JOURNAL)
        if not os.path.exists(snap) and not os.path.exists(journal):
            raise InspectError(f"no metadata files ({SNAPSHOT}, {JOURNAL}) in {self.dir}")
        for _ in range(tries):
            before = _stamp(snap)
            data = self._read(self.dir)
            if _stamp(snap) == before:
                self.data = data
                break
            time.sleep(0.05)
        else:
            raise InspectError(f"{self.dir} kept changing under the reader ({tries} tries): try again")

    @staticmethod
    def _read(meta_dir: str) -> dict[str, bytes]:
        from vecdb.storage.local_meta import read_keys

        try:
            return read_keys(meta_dir)
        except VecdbError as e:  # IoFailed: a corrupt snapshot, an undecodable record
            raise InspectError(str(e)) from e

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))

    def close(self) -> None:
        pass

    def lock_holders(self) -> list[int]:
        """The pids holding the directory's LOCK (a running server), from /proc/locks (Linux; [] elsewhere)."""
        try:
            ino = os.stat(os.path.join(self.dir, "LOCK")).st_ino
            with open("/proc/locks") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        pids = []
        for line in lines:
            parts = line.split()
            if "->" in parts:  # a waiter, "1: -> FLOCK ..."
                continue
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
                try:
                    pids.append(int(parts[4]))
                except ValueError:
                    pass
        return sorted(set(pids))


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def open_store(args) -> Any:
    """A ``get``/``scan``/``close`` view of the store ``args`` name (see the module docstring)."""
    url = args.meta_store or "local"
    if url == "local":
        return LocalFilesReader(os.path.join(args.data_dir, "meta"))
    if not url.startswith(("etcd://", "vecdb://")):
        raise InspectError(f"invalid --meta-store {url!r}: 'local' (files in --data-dir), etcd://host:port or "
                           "vecdb://host:port")
    from vecdb.storage.backends import _open_meta

    try:
        store = _open_meta(url, os.path.abspath(args.data_dir), args.namespace)
        store.get("catalog/version")  # reach it now: an unreachable server is an error here, not mid-output
    except (VecdbError, OSError) as e:
        raise InspectError(f"cannot read the metadata store {url}: {e}") from e
    return store


# --- what the subcommands gather ------------------------------------------------------------


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _collections(meta) -> dict[int, dict]:
    out = {}
    for key, raw in meta.scan("coll/"):
        info = _json(raw)
        if isinstance(info, dict):
            try:
                out[int(key[len("coll/"):])] = info
            except ValueError:
                pass
    return out


def _select(colls: dict[int, dict], name: str | None, db: str | None) -> dict[int, dict]:
    """The collections named ``name`` (a name, or an id) in ``db`` (any db when None); all when ``name`` is None."""
    if name is None:
        return {cid: c for cid, c in colls.items() if db is None or c.get("db") == db}
    hits = {cid: c for cid, c in colls.items()
            if (c.get("name") == name or str(cid) == name) and (db is None or c.get("db") == db)}
    if not hits:
        raise InspectError(f"no collection {name!r}" + (f" in database {db!r}" if db else ""))
    return hits


def _channels(cid: int, info: dict) -> list[str]:
    return [f"c{cid}-s{i}" for i in range(int(info.get("shards_num") or 0))]


def collections(meta, args) -> dict:
    aliases: dict[int, list[str]] = {}
    for key, raw in meta.scan("alias/"):
        try:
            aliases.setdefault(int(raw), []).append(key[len("alias/"):].split("/", 1)[-1])
        except ValueError:
            pass
    dbs = {key[len("db/"):]: _json(raw) for key, raw in meta.scan("db/")}
    if args.db is not None and args.db not in dbs and args.db != "default":  # (an empty table read as "none there")
        raise InspectError(f"no database {args.db!r}")
    rows = []
    for cid, c in sorted(_select(_collections(meta), None, args.db).items()):
        fields = (c.get("schema") or {}).get("fields") or []
        rows.append({
            "db": c.get("db"), "name": c.get("name"), "id": cid, "shards": c.get("shards_num"),
            "channels": _channels(cid, c),
            "fields": [_field_summary(f) for f in fields],
            "partitions": [p.get("name") for p in c.get("partitions") or []],
            "indexes": [{"name": i.get("index_name"), "field": i.get("field_name"), "type": i.get("index_type"),
                         "metric": i.get("metric_type"), "id": i.get("index_id")} for i in c.get("indexes") or []],
            "loaded": bool(c.get("loaded")), "replica_number": c.get("replica_number"),
            "aliases": sorted(aliases.get(cid, [])), "properties": c.get("properties") or {},
        })
    return {"databases": dbs, "collections": rows}


def _field_summary(f: dict) -> str:
    from pymilvus import DataType  # type: ignore[import-untyped]

    try:
        kind = DataType(f.get("dtype")).name
    except ValueError:
        kind = str(f.get("dtype"))
    extra = f"({f['dim']})" if f.get("dim") else f"({f['max_length']})" if f.get("max_length") else ""
    flags = "".join(s for s, on in ((" pk", f.get("is_primary")), (" auto", f.get("auto_id")),
                                     (" nullable", f.get("nullable")), (" partkey", f.get("is_partition_key")))
                    if on)
    return f"{f.get('name')}:{kind}{extra}{flags}"


def segments(meta, args) -> dict:
    out = []
    for cid, c in sorted(_select(_collections(meta), args.collection, args.db).items()):
        parts = {p.get("id"): p.get("name") for p in c.get("partitions") or []}
        compacted: dict[str, list] = {}
        for key, raw in meta.scan(f"compacted/{cid}/"):
            rec = _json(raw) or {}
            _, _, channel, sid = key.split("/", 3)
            compacted.setdefault(channel, []).append({"segment_id": _int(sid), **rec})
        channels = {}
        for channel in sorted(set(_channels(cid, c)) | {k.split("/")[2] for k, _ in meta.scan(f"seg/{cid}/")}
                              | set(compacted)):
            segs = []
            for key, raw in meta.scan(f"seg/{cid}/{channel}/"):
                s = _json(raw) or {}
                segs.append({"segment_id": s.get("segment_id"), "partition_id": s.get("partition_id"),
                             "partition": parts.get(s.get("partition_id")), "rows": s.get("num_rows"),
                             "position": s.get("position"), "prefix": s.get("prefix"),
                             "compacted_from": s.get("from") or [], "cluster": s.get("cluster"), "key": key})
            ckpt = meta.get(f"ckpt/{cid}/{channel}")
            channels[channel] = {"checkpoint": _int(ckpt.decode()) if ckpt else 0, "segments": segs,
                                 "compactions": compacted.get(channel, [])}
        out.append({"db": c.get("db"), "collection": c.get("name"), "id": cid, "channels": channels})
    return {"collections": out}


def _int(s: str) -> int | str:
    try:
        return int(s)
    except ValueError:
        return s


def sessions(meta, args) -> dict:
    rows = []
    for key, raw in meta.scan("session/"):
        rec = _json(raw)
        rec = rec if isinstance(rec, dict) else {"value": raw.decode("utf-8", "replace")}
        parts = key.split("/")
        rows.append({"role": parts[1] if len(parts) > 1 else "", "node_id": "/".join(parts[2:]) or None,
                     "address": rec.get("address"), "host": rec.get("host"), "pid": rec.get("pid"),
                     "since": rec.get("since"), "incarnation": rec.get("incarnation"), "key": key})
    out: dict[str, Any] = {"sessions": rows}
    if isinstance(meta, LocalFilesReader):
        holders = []
        for pid in meta.lock_holders():
            holders.append({"pid": pid, "command": _cmdline(pid)})
        out["lock_holders"] = holders
        out["note"] = ("a local store's session keys are leased, kept in the server's memory only: "
                       + (f"the directory is open in pid {', '.join(str(h['pid']) for h in holders)} "
                          "(a running server)" if holders else "no process holds the directory (no server running)"))
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def assignments(meta, args) -> dict:
    colls = _select(_collections(meta), args.collection, args.db)
    out = []
    for key, raw in meta.scan("assign/"):
        try:
            cid = int(key[len("assign/"):])
        except ValueError:
            continue
        if cid not in colls:
            continue
        a = _json(raw) or {}
        replicas = []
        for i, r in enumerate(a.get("replicas") or []):
            replicas.append({"replica": i, "nodes": r.get("nodes") or [], "resource_group": r.get("resource_group"),
                             "channel_leaders": r.get("channels") or {}, "moving": r.get("moving") or {},
                             "segments": r.get("segments") or {}, "pinned": r.get("pinned") or {}})
        out.append({"db": colls[cid].get("db"), "collection": colls[cid].get("name"), "id": cid,
                    "replicas": replicas})
    res: dict[str, Any] = {"assignments": out}
    if isinstance(meta, LocalFilesReader):
        res["note"] = "a standalone serves every loaded collection itself: it keeps no assign/ records"
    return res


def index_builds(meta, args) -> dict:
    colls = _select(_collections(meta), args.collection, args.db)
    out = []
    for cid, c in sorted(colls.items()):
        names = {i.get("index_id"): i.get("index_name") for i in c.get("indexes") or []}
        counts = {"running": 0, "failed": 0, "finished": 0}
        failures = []
        for key, raw in meta.scan(f"idxbuild/{cid}/"):
            rec = _json(raw) or {}
            state = rec.get("state", "?")
            counts[state] = counts.get(state, 0) + 1
            if state == "failed":
                parts = key.split("/")
                failures.append({"index": names.get(_int(parts[2])) if len(parts) > 2 else None,
                                 "segment": "/".join(parts[3:5]), "reason": rec.get("reason", ""),
                                 "host": rec.get("host"), "pid": rec.get("pid"), "since": rec.get("since"),
                                 "key": key})
        out.append({"db": c.get("db"), "collection": c.get("name"), "id": cid, **counts, "failures": failures})
    return {"index_builds": out}


def keys(meta, args) -> dict:
    rows = []
    for key, raw in meta.scan(args.prefix):
        row: dict[str, Any] = {"key": key, "bytes": len(raw)}
        if args.values:
            text = raw.decode("utf-8", "replace")
            row["value"] = text if args.full or len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH] + "..."
        rows.append(row)
    return {"prefix": args.prefix, "keys": rows}


# --- printing -----------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return ",".join(_cell(x) for x in v) or "-"
    if isinstance(v, dict):
        return ",".join(f"{k}={_cell(x)}" for k, x in v.items()) or "-"
    return str(v)


def _print_collections(d: dict) -> str:
    return _table(["db", "name", "id", "shards", "channels", "fields", "partitions", "indexes", "loaded",
                   "aliases", "properties"],
                  [[c["db"], c["name"], c["id"], c["shards"], c["channels"], c["fields"], c["partitions"],
                    [f"{i['name']}({i['type']},{i['metric']})" if i["metric"] else f"{i['name']}({i['type']})"
                     for i in c["indexes"]],
                    f"yes x{c['replica_number']}" if c["loaded"] else "no", c["aliases"], c["properties"]]
                   for c in d["collections"]])


def _print_segments(d: dict) -> str:
    blocks = []
    for c in d["collections"]:
        rows = []
        for ch, v in c["channels"].items():
            for s in v["segments"]:
                cl = s["cluster"]
                rows.append([ch, v["checkpoint"], s["segment_id"], s["partition"] or s["partition_id"], s["rows"],
                             s["position"], s["prefix"], len(s["compacted_from"]) or "-",
                             f"{cl.get('field')}:[{cl.get('min')},{cl.get('max')}]" if isinstance(cl, dict) else cl])
            if not v["segments"]:
                rows.append([ch, v["checkpoint"], "-", "-", "-", "-", "-", "-", "-"])
        total = sum(s["rows"] or 0 for v in c["channels"].values() for s in v["segments"])
        blocks.append(f"{c['db']}.{c['collection']} ({c['id']}): {total} stored rows "
                      "(deleted or replaced rows included until compaction)\n"
                      + _table(["channel", "checkpoint", "segment", "partition", "rows", "position", "prefix",
                                "compacted-from", "cluster"], rows))
    return "\n\n".join(blocks) or "(no collections)"


def _print_sessions(d: dict) -> str:
    text = _table(["role", "node id", "address", "host", "pid", "since"],
                  [[s["role"], s["node_id"], s["address"], s["host"], s["pid"], s["since"]] for s in d["sessions"]])
    if "note" in d:
        text += "\n" + d["note"]
        for h in d.get("lock_holders", []):
            text += f"\n  pid {h['pid']}: {h['command']}"
    return text


def _print_assignments(d: dict) -> str:
    rows = []
    for a in d["assignments"]:
        for r in a["replicas"]:
            placed = {ch: len(segs) for ch, segs in r["segments"].items()}
            rows.append([f"{a['db']}.{a['collection']}", r["replica"], r["resource_group"], r["nodes"],
                         r["channel_leaders"], r["moving"], placed])
    text = _table(["collection", "replica", "group", "nodes", "channel leaders", "moving", "sealed placed"], rows)
    for a in d["assignments"]:
        for r in a["replicas"]:
            for ch, segs in sorted(r["segments"].items()):
                for prefix, node in sorted(segs.items()):
                    text += f"\n  {a['collection']} r{r['replica']} {ch} {prefix} -> {node}"
    return text + ("\n" + d["note"] if "note" in d else "")


def _print_index_builds(d: dict) -> str:
    text = _table(["collection", "running", "failed", "finished"],
                  [[f"{b['db']}.{b['collection']}", b["running"], b["failed"], b["finished"]]
                   for b in d["index_builds"]])
    for b in d["index_builds"]:
        for f in b["failures"]:
            text += f"\n  {b['collection']} index {f['index']} segment {f['segment']}: {f['reason']}"
    return text


def _print_keys(d: dict) -> str:
    if any("value" in k for k in d["keys"]):
        return "\n".join(f"{k['key']} = {k['value']}" for k in d["keys"]) or f"(no keys under {d['prefix']!r})"
    return "\n".join(k["key"] for k in d["keys"]) or f"(no keys under {d['prefix']!r})"


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "collections": (collections, _print_collections,
                    "databases and collections: id, shards, channels, fields, indexes, loaded, properties"),
    "segments": (segments, _print_segments,
                 "sealed segments per channel: id, partition, rows, position, prefix, compacted-from, cluster range"),
    "sessions": (sessions, _print_sessions, "live processes (session/ keys): role, node id, address, since"),
    "assignments": (assignments, _print_assignments,
                    "replicas of loaded collections: nodes, channel leaders, sealed segment placement"),
    "index-builds": (index_builds, _print_index_builds,
                     "index builds per collection: running, failed, finished, and the failures' reasons"),
    "keys": (keys, _print_keys, "raw keys under a prefix (with --values: their values, cut short)"),
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "inspect", help="read a deployment's metadata store and print what is there (read-only, for debugging)",
        description="Read the metadata store of a standalone data directory (--data-dir, the files of <dir>/meta, "
                    "read without taking its lock: safe beside a running server) or of a cluster (--meta-store "
                    "etcd://host:port) and print collections, segments, sessions, assignments, index builds or "
                    "raw keys. Never writes. See docs/observability.md, 'Debug CLI'.")
    _store_options(p, suppress=False)  # before the command (vecdb inspect --data-dir d segments) or after it
    actions = p.add_subparsers(dest="what", required=True)
    for name, (_, _, help) in COMMANDS.items():
        a = actions.add_parser(name, help=help, description=help)
        if name == "keys":
            a.add_argument("prefix", help="key prefix, e.g. coll/ or seg/<collection id>/ ('' for every key)")
            a.add_argument("--values", action="store_true", help=f"print values too (cut to {VALUE_WIDTH} chars)")
            a.add_argument("--full", action="store_true", help="with --values: whole values")
        elif name in ("segments", "assignments", "index-builds"):
            a.add_argument("collection", nargs="?", default=None, help="a collection name or id (default: all)")
        _store_options(a, suppress=True)
    p.set_defaults(func=run)


def _store_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options of every command; on a command's own parser without defaults (``suppress``), so that
    one given before the command is not overwritten."""
    def default(value):
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--db", default=default(None), help="only this database's collections (default: every one)")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")
    parser.add_argument("--data-dir", default=default("./data"),
                        help="a standalone's data directory (its 'local' metadata store, default ./data)")
    parser.add_argument("--meta-store", default=default(None), metavar="URL",
                        help="the metadata store: 'local' (files in --data-dir, default), etcd://host:port or "
                             "vecdb://host:port")
    parser.add_argument("--namespace", default=default("vecdb"),
                        help="the deployment's storage.namespace on a shared etcd (default vecdb)")


def run(args: argparse.Namespace) -> int:
    gather, show, _ = COMMANDS[args.what]
    try:
        meta = open_store(args)
        try:
            result = gather(meta, args)
        finally:
            meta.close()
    except InspectError as e:
        print(f"vecdb inspect: {e}", file=sys.stderr)
        return 2
    except (VecdbError, OSError) as e:
        print(f"vecdb inspect: reading the metadata store failed: {e}", file=sys.stderr)
        return 2
    try:
        if args.json:
            print(json.dumps(result, indent=1, default=str))
        else:
            print(show(result))
        sys.stdout.flush()
    except BrokenPipeError:  # `vecdb inspect ... | head`: the reader has all it wanted, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit: no 2nd error
    return 0

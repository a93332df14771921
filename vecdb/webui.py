"""The admin web UI on the HTTP port, as Milvus 2.5 serves one at ``http://<host>:9091/webui/``.

``GET /webui/`` (and ``/webui``) is one server-rendered HTML page (no scripts, no external assets; it
refreshes itself every 10 s): the server (role, vecdb's version, uptime, node id), its databases, and
for each collection its id, shards, row count, load state, schema fields, indexes and loaded segments.
``GET /webui/api/collections`` is the same data as JSON.

Served where the role serves the Milvus API (standalone, proxy: beside the REST API,
``vecdb.proxy.rest``). The data comes from the role's own Milvus service, called in-process with the
request messages a client would send (ListDatabases, ShowCollections, DescribeCollection,
GetCollectionStatistics, GetLoadState, GetLoadingProgress, DescribeIndex, GetQuerySegmentInfo), the
way the REST API calls it: the page shows what pymilvus would see. With authentication on
(``security.authorization_enabled``) it asks for the REST API's credentials, ``Authorization: Basic``
(a browser's) or ``Authorization: Bearer <user>:<password>``, answers 401 with ``WWW-Authenticate:
Basic`` without them, and shows only what that user may see (each call is checked as that user's).
"""

from __future__ import annotations

import base64
import binascii
import html
import importlib.metadata
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vecdb import errors

if TYPE_CHECKING:
    from vecdb.proxy.rest import RestApi

log = logging.getLogger(__name__)

PREFIX = "/webui"
API_PATH = "/webui/api/collections"
REFRESH_SECONDS = 10
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="vecdb", charset="UTF-8"'}


def version() -> str:
    """vecdb's version, from its package metadata."""
    try:
        return importlib.metadata.version("vecdb")
    except importlib.metadata.PackageNotFoundError:
        from vecdb import __version__

        return __version__


def handle(api: RestApi, path: str, headers) -> tuple[int, bytes, dict[str, str]]:
    """(HTTP status, body, headers) of ``GET path`` (under /webui) for the REST API's service ``api``."""
    from vecdb.proxy.rest import RestError

    path = path.split("?", 1)[0]
    if path.rstrip("/") not in (PREFIX, API_PATH):
        return 404, b"not found", {"Content-Type": "text/plain"}
    try:
        data = collect(api, _bearer(headers))
    except RestError as e:
        if e.http_status == 401:
            return 401, f"401 unauthorized: {e.message}\n".encode(), {"Content-Type": "text/plain", **_CHALLENGE}
        return e.http_status if e.http_status >= 400 else 500, f"{e.code}: {e.message}\n".encode(), \
            {"Content-Type": "text/plain"}
    except Exception as e:  # noqa: BLE001 - an answer, not a dropped connection
        log.exception("the admin web UI failed")
        return 500, f"internal error: {type(e).__name__}: {e}\n".encode(), {"Content-Type": "text/plain"}
    if path.rstrip("/") == API_PATH:
        return 200, json.dumps(data, indent=1).encode(), {"Content-Type": "application/json"}
    return 200, render(data).encode(), {"Content-Type": "text/html; charset=utf-8"}


def _bearer(headers) -> dict[str, str]:
    """The request's credential as the REST API reads it (``Authorization: Bearer <user>:<password>``);
    a browser's ``Basic`` credential is the same user and password."""
    auth = (headers.get("Authorization") or headers.get("authorization") or "").strip()
    if auth[:6].lower() == "basic ":
        try:
            auth = "Bearer " + base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            auth = ""
    return {"Authorization": auth} if auth.startswith("Bearer ") else {}


# --- the data ------------------------------------------------------------------------------------
def collect(api: RestApi, headers: dict[str, str]) -> dict[str, Any]:
    """The server, its databases and their collections, as the user of ``headers`` sees them. A
    credential missing or wrong raises ``RestError`` (401); a database or collection the user may not
    read is listed with its ``error``."""
    from vecdb.proxy.rest import RestError, _Request

    r = _Request(api, {}, headers)  # authenticates: 401 here
    server = _server(api, r)
    databases = []
    for db in _databases(r):
        entry: dict[str, Any] = {"name": db, "collections": []}
        try:
            rdb = _Request(api, {"dbName": db}, headers)
            names = rdb.call("ShowCollections", milvus_pb2.ShowCollectionsRequest(db_name=db)).collection_names
            entry["collections"] = [_collection(rdb, db, name) for name in sorted(names)]
        except (RestError, errors.VecdbError) as e:
            entry["error"] = _message(e)
        databases.append(entry)
    return {"server": server, "databases": databases}


def _message(e: Exception) -> str:
    return str(getattr(e, "message", "") or e)


def _server(api: RestApi, r) -> dict[str, Any]:
    started = getattr(api, "started", time.time())
    info: dict[str, Any] = {"role": "", "node_id": 0, "version": version(), "started": started,
                            "uptime_seconds": round(time.time() - started, 1)}
    try:
        state = r.call("GetComponentStates", milvus_pb2.GetComponentStatesRequest()).state
        info["role"], info["node_id"] = state.role, state.nodeID
        info["state"] = common_pb2.StateCode.Name(state.state_code)
    except Exception as e:  # noqa: BLE001 - the page still shows the rest
        info["error"] = _message(e)
    return info


def _databases(r) -> list[str]:
    from vecdb.proxy.rest import RestError

    try:
        names = list(r.call("ListDatabases", milvus_pb2.ListDatabasesRequest()).db_names)
    except RestError:  # may not list databases: its own default one
        names = []
    return names or ["default"]


def _collection(r, db: str, name: str) -> dict[str, Any]:
    from vecdb.proxy.rest import RestError

    out: dict[str, Any] = {"name": name}
    try:
        d = r.call("DescribeCollection", milvus_pb2.DescribeCollectionRequest(db_name=db, collection_name=name))
        out.update(id=d.collectionID, description=d.schema.description, shards=d.shards_num,
                   consistency_level=common_pb2.ConsistencyLevel.Name(d.consistency_level),
                   enable_dynamic_field=d.schema.enable_dynamic_field, aliases=list(d.aliases),
                   fields=[_field(f) for f in d.schema.fields])
        stats = r.call("GetCollectionStatistics",
                       milvus_pb2.GetCollectionStatisticsRequest(db_name=db, collection_name=name))
        out["row_count"] = int({kv.key: kv.value for kv in stats.stats}.get("row_count", 0))
        state = r.call("GetLoadState", milvus_pb2.GetLoadStateRequest(db_name=db, collection_name=name)).state
        load = common_pb2.LoadState.Name(state).removeprefix("LoadState")
        out["load_state"], out["load_progress"] = load, 0
        if load in ("Loading", "Loaded"):
            progress = r.call("GetLoadingProgress", milvus_pb2.GetLoadingProgressRequest(
                db_name=db, collection_name=name)).progress
            out["load_progress"] = int(progress)
        indexes = r.call("DescribeIndex", milvus_pb2.DescribeIndexRequest(db_name=db, collection_name=name),
                         ok_codes=(700,))  # 700: no index
        out["indexes"] = [_index(i) for i in indexes.index_descriptions]
        out["segments"] = []
        if load in ("Loading", "Loaded"):
            segs = r.call("GetQuerySegmentInfo", milvus_pb2.GetQuerySegmentInfoRequest(
                dbName=db, collectionName=name), ok_codes=(101,))  # 101: released meanwhile
            partitions = _partition_names(r, db, name)
            out["segments"] = [_segment(s, partitions) for s in segs.infos]
    except (RestError, errors.VecdbError) as e:
        out["error"] = _message(e)
    return out


def _field(f) -> dict[str, Any]:
    return {"name": f.name, "id": f.fieldID, "type": schema_pb2.DataType.Name(f.data_type),
            "element_type": schema_pb2.DataType.Name(f.element_type) if f.element_type else "",
            "primary_key": f.is_primary_key, "auto_id": f.autoID, "partition_key": f.is_partition_key,
            "clustering_key": f.is_clustering_key, "nullable": f.nullable, "description": f.description,
            "params": {kv.key: kv.value for kv in f.type_params}}


def _index(i) -> dict[str, Any]:
    params = {kv.key: kv.value for kv in i.params}
    return {"field": i.field_name, "name": i.index_name, "id": i.indexID,
            "index_type": params.get("index_type", ""), "metric_type": params.get("metric_type", ""),
            "state": common_pb2.IndexState.Name(i.state), "indexed_rows": i.indexed_rows,
            "total_rows": i.total_rows, "pending_rows": i.pending_index_rows}


def _partition_names(r, db: str, name: str) -> dict[int, str]:
    """Partition id -> name, as ``vecdb inspect segments`` shows them ({} if the user may not list them)."""
    from vecdb.proxy.rest import RestError

    try:
        shown = r.call("ShowPartitions", milvus_pb2.ShowPartitionsRequest(db_name=db, collection_name=name))
    except RestError:
        return {}
    return dict(zip(shown.partitionIDs, shown.partition_names, strict=False))


def _segment(s, partitions: dict[int, str]) -> dict[str, Any]:
    return {"id": s.segmentID, "partition_id": s.partitionID,
            "partition": partitions.get(s.partitionID, str(s.partitionID)), "rows": s.num_rows,
            "state": common_pb2.SegmentState.Name(s.state), "nodes": list(s.nodeIds),
            "index_name": s.index_name}


# --- the page --------------------------------------------------------------------------------------
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #ccc}
h3{font-size:1.05em;margin:1.2em 0 .3em}h4{font-size:.95em;margin:.6em 0 .2em}
table{border-collapse:collapse;margin:.3em 0 .8em}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
.muted{color:#777}.err{color:#b00}code{font-size:.95em}"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out += ["<tr>", *(f"<td>{_e(c)}</td>" for c in row), "</tr>"]
    out.append("</table>")
    return "".join(out)


def _uptime(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def render(data: dict[str, Any]) -> str:
    """The HTML page of ``collect``'s data; every name and text in it escaped."""
    srv = data["server"]
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
             f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
             f"<title>vecdb {_e(srv.get('role', ''))} {_e(srv.get('node_id', ''))}</title>",
             f"<style>{_CSS}</style></head><body>",
             "<h1>vecdb admin</h1>",
             _table(["role", "version", "uptime", "node id", "state"],
                    [[srv.get("role", ""), srv.get("version", ""), _uptime(srv.get("uptime_seconds", 0)),
                      srv.get("node_id", ""), srv.get("state", "")]]),
             f'<p class="muted">JSON: <a href="{API_PATH}">{API_PATH}</a>; refreshed every {REFRESH_SECONDS} s</p>']
    if srv.get("error"):
        parts.append(f'<p class="err">{_e(srv["error"])}</p>')
    dbs = data["databases"]
    parts.append("<h2>Databases</h2>")
    parts.append(_table(["database", "collections"], [[d["name"], len(d["collections"])] for d in dbs]))
    for db in dbs:
        parts.append(f"<h2>Database {_e(db['name'])}</h2>")
        if db.get("error"):
            parts.append(f'<p class="err">{_e(db["error"])}</p>')
        cols = db["collections"]
        parts.append(_table(["collection", "id", "shards", "rows", "load state", "indexes", "segments"],
                            [[c["name"], c.get("id", ""), c.get("shards", ""), c.get("row_count", ""),
                              _load(c), len(c.get("indexes", [])), len(c.get("segments", []))] for c in cols]))
        for c in cols:
            parts.append(_collection_html(db["name"], c))
    parts.append("</body></html>\n")
    return "".join(parts)


def _load(c: dict[str, Any]) -> str:
    state = c.get("load_state", "")
    return f"{state} ({c.get('load_progress', 0)}%)" if state == "Loading" else state


def _collection_html(db: str, c: dict[str, Any]) -> str:
    parts = [f'<h3 id="{_e(db)}.{_e(c["name"])}">{_e(db)}.{_e(c["name"])}</h3>']
    if c.get("error"):
        parts.append(f'<p class="err">{_e(c["error"])}</p>')
        return "".join(parts)
    if c.get("description"):
        parts.append(f"<p>{_e(c['description'])}</p>")
    parts.append(f"<p>id {_e(c['id'])}, {_e(c['shards'])} shards, {_e(c['row_count'])} rows, "
                 f"{_e(_load(c))}, consistency {_e(c['consistency_level'])}"
                 + (", dynamic fields" if c.get("enable_dynamic_field") else "")
                 + (f", aliases {_e(', '.join(c['aliases']))}" if c.get("aliases") else "") + "</p>")
    parts.append("<h4>Fields</h4>")
    parts.append(_table(
        ["field", "type", "key", "nullable", "params", "description"],
        [[f["name"], f["type"] + (f"<{f['element_type']}>" if f["element_type"] else ""), _keys(f),
          "yes" if f["nullable"] else "", ", ".join(f"{k}={v}" for k, v in f["params"].items()), f["description"]]
         for f in c["fields"]]))
    parts.append("<h4>Indexes</h4>")
    parts.append(_table(["index", "field", "type", "metric", "state", "indexed / total rows"],
                        [[i["name"], i["field"], i["index_type"], i["metric_type"], i["state"],
                          f"{i['indexed_rows']} / {i['total_rows']}"] for i in c["indexes"]]))
    growing = sum(1 for s in c["segments"] if s["state"] == "Growing")
    parts.append(f"<h4>Segments ({len(c['segments']) - growing} sealed, {growing} growing)</h4>")
    if c["load_state"] in ("Loading", "Loaded"):
        parts.append(_table(["segment", "partition", "rows", "state", "nodes", "index"],
                            [[s["id"], s["partition"], s["rows"], s["state"], ", ".join(map(str, s["nodes"])),
                              s["index_name"]] for s in c["segments"]]))
    else:
        parts.append('<p class="muted">not loaded</p>')
    return "".join(parts)


def _keys(f: dict[str, Any]) -> str:
    keys = [k for k, on in (("primary", f["primary_key"]), ("auto_id", f["primary_key"] and f["auto_id"]),
                            ("partition", f["partition_key"]), ("clustering", f["clustering_key"])) if on]
    return ", ".join(keys)

"""``GetMetrics`` with ``{"metric_type": "system_info"}``: the cluster's topology, as Milvus answers it.

Milvus's answer (``metricsinfo.SystemTopology``) is JSON: ``{"nodes_info": [{"identifier",
"connected": [{"connected_identifier", "type", "target_type"}], "infos": {"has_error",
"error_reason", "name", "hardware_infos", "system_info", "created_time", "updated_time", "type",
"id", "system_configurations"}}]}``, a node's name being its role and number ("proxy12").

vecdb's nodes are the processes holding a session (``session/coord``, ``session/<role>/<node
id>``, ``session/standalone``): the live ones, with the role and id each registered. Each node's
``id`` is the number Milvus clients see for it (``vecdb.discovery.node_number``, as in
``GetReplicas``; a standalone's is 1, ``STANDALONE_NODE_ID``, as in Milvus); ``node_id`` is its own
id as in its session and on its ``/metrics`` (a standalone's: "standalone"). The coord
(timestamps, ids, catalog and placement: Milvus's root and query coords in one) is the type
"mixcoord", Milvus's name for the coordinators in one process. Hardware figures are known for the
answering node only (the others' are zero, as Milvus leaves a node's it could not ask).
"""

from __future__ import annotations

import json
import os
import socket
import time
import zlib

from vecdb import __version__
from vecdb.discovery import node_number
from vecdb.querynode.node import STANDALONE_NODE_ID
from vecdb.storage.base import MetaStore

SYSTEM_INFO = "system_info"
# a session's role -> Milvus's component type
MILVUS_TYPE = {"coord": "mixcoord", "proxy": "proxy", "querynode": "querynode", "datanode": "datanode",
               "standalone": "standalone"}


def _hardware(local: bool) -> dict:
    if not local:
        return {"ip": "", "cpu_core_count": 0, "cpu_core_usage": 0.0, "memory": 0, "memory_usage": 0,
                "disk": 0, "disk_usage": 0}
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * page
    except OSError:
        rss = 0
    st = os.statvfs(".")
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        ip = "127.0.0.1"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {"ip": ip, "cpu_core_count": os.cpu_count() or 0, "cpu_core_usage": load,
            "memory": os.sysconf("SC_PHYS_PAGES") * page, "memory_usage": rss,
            "disk": st.f_blocks * st.f_frsize, "disk_usage": (st.f_blocks - st.f_bfree) * st.f_frsize}


def _sessions(meta: MetaStore) -> list[dict]:
    """Every live process: role, node id (the coord: its address), number, session value."""
    out = []
    for key, raw in meta.scan("session/"):
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        parts = key.split("/")
        if len(parts) == 3:
            role, node_id = parts[1], parts[2]
        elif key == "session/coord":
            role, node_id = "coord", str(value.get("address", "coord"))
        elif key == "session/standalone":
            role, node_id = "standalone", "standalone"
        else:
            continue
        if role == "coord":
            number = zlib.crc32(f"coord/{node_id}".encode()) & 0x7FFFFFFF
        elif role == "standalone":  # its number everywhere else (GetComponentStates, GetReplicas, the web UI)
            number = STANDALONE_NODE_ID
        else:
            number = node_number(node_id)
        out.append({"role": role, "node_id": node_id, "number": number, "session": value})
    return out


def system_topology(meta: MetaStore | None, self_role: str, self_number: int, self_node_id: str) -> dict:
    """The topology as Milvus's ``SystemTopology``; the answering node (``self_*``) is always in it."""
    nodes = _sessions(meta) if meta is not None else []
    if not any(n["role"] == self_role and n["number"] == self_number for n in nodes):
        nodes.append({"role": self_role, "node_id": self_node_id, "number": self_number, "session": {}})
    mode = "STANDALONE" if self_role == "standalone" else "DISTRIBUTED"
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    by_role: dict[str, list[int]] = {}
    for n in nodes:
        by_role.setdefault(n["role"], []).append(n["number"])

    def edges(role: str) -> list[dict]:
        if role == "proxy":  # a proxy calls the coord and reads from the query nodes
            targets = [("coord", "forward"), ("querynode", "forward")]
        elif role == "coord":  # the coord places channels on query and data nodes
            targets = [("querynode", "manage"), ("datanode", "manage")]
        else:
            targets = []
        return [{"connected_identifier": number, "type": kind, "target_type": MILVUS_TYPE[target]}
                for target, kind in targets for number in sorted(by_role.get(target, []))]

    out = []
    for n in sorted(nodes, key=lambda n: (n["role"], n["node_id"])):
        kind = MILVUS_TYPE.get(n["role"], n["role"])
        local = n["role"] == self_role and n["number"] == self_number
        session = n["session"]
        out.append({
            "identifier": n["number"],
            "connected": edges(n["role"]),
            "infos": {
                "has_error": False, "error_reason": "",
                "name": f"{kind}{n['number']}",
                "hardware_infos": _hardware(local),
                "system_info": {"system_version": __version__, "deploy_mode": mode,
                                "build_version": f"vecdb-{__version__}", "build_time": "", "used_go_version": ""},
                "created_time": session.get("since", now if local else ""),
                "updated_time": now,
                "type": kind,
                "id": n["number"],
                "system_configurations": {},
                # vecdb's own: the id in its session (and its /metrics node_id), where it listens, what it is
                "node_id": n["node_id"], "role": n["role"], "address": session.get("address", ""),
                "host": session.get("host", ""), "pid": session.get("pid", 0),
            },
        })
    return {"nodes_info": out}

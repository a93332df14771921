"""Which data node persists each shard channel: the coord decides (``DataNodeAssigner``, in the
active coord), the data nodes follow (``vecdb.datanode.flusher``).

``dnassign/<collection id>`` holds ``{channel: data node id}`` for every channel of every
collection (loaded or not: data is persisted either way), written by the active coord only
(compare-and-set on its session value). Rules (``plan_datanodes``): a channel keeps its data node
while that node's session lives; a channel without one goes to the live data node with the
fewest channels. With no data node alive there is no assignment, and the proxies persist
themselves (``vecdb.datanode.remote``).
"""

from __future__ import annotations

import json
import logging

from vecdb.catalog_model import CollectionInfo
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.coord.planner import Parsed, Planner
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

DN_ASSIGN_PREFIX = "dnassign/"
DATANODE_SESSIONS = "session/datanode/"


def dn_assign_key(collection_id: int) -> str:
    return f"{DN_ASSIGN_PREFIX}{collection_id}"


def plan_datanodes(collections: dict[int, list[str]], nodes: list[str],
                   current: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
    """collection id -> {channel: data node}; pure. ``collections``: id -> channels."""
    if not nodes:
        return {}
    live = set(nodes)
    load = dict.fromkeys(sorted(live), 0)
    out: dict[int, dict[str, str]] = {}
    for cid in sorted(collections):
        kept = {ch: n for ch, n in current.get(cid, {}).items() if n in live and ch in collections[cid]}
        for n in kept.values():
            load[n] += 1
        out[cid] = kept
    for cid in sorted(collections):
        for ch in collections[cid]:
            if ch not in out[cid]:
                best = min(load, key=lambda n: (load[n], n))
                out[cid][ch] = best
                load[best] += 1
    return out


class DataNodeAssigner(Planner):
    """Keeps ``dnassign/`` equal to ``plan_datanodes(...)`` while its coord is active, re-planning
    on every change of the catalog or the data node sessions (only then: its rules have no clock),
    parsing only the catalog records that changed (``Parsed``)."""

    name = "data node assignment"

    def __init__(self, meta: MetaStore, fence: dict[str, bytes]):
        super().__init__(meta, fence, DN_ASSIGN_PREFIX, (COLL_PREFIX, DATANODE_SESSIONS))
        self._colls, self._nodes, _ = self.mirrors
        self.channels: Parsed[tuple[int, list[str]]] = Parsed(self._colls, _channels)
        self._parsed: dict[int, tuple[bytes, dict[str, str]]] = {}  # collection id -> current raw, parsed
        self.start()

    def tick(self) -> None:
        colls = dict(self.channels.get().values())
        current = {}
        for cid, raw in self.current.items():
            hit = self._parsed.get(cid)
            if hit is None or hit[0] != raw:
                hit = (raw, json.loads(raw))
            current[cid] = hit[1]
        # (plan_datanodes copies what it keeps: these stay as written)
        wanted = plan_datanodes(colls, sorted(self._nodes.items()), current)
        wanted_raw = {cid: json.dumps(chs, sort_keys=True).encode() for cid, chs in wanted.items()}
        self.commit(wanted_raw)
        self._parsed = {cid: (wanted_raw[cid], chs) for cid, chs in wanted.items()}


def _channels(_key: str, raw: bytes) -> tuple[int, list[str]]:
    info = CollectionInfo.from_json(raw)
    return info.id, info.channels

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
import threading

from vecdb.coord.catalog_model import CollectionInfo
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import Mirror

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


class DataNodeAssigner:
    """Keeps ``dnassign/`` equal to ``plan_datanodes(...)`` while its coord is active, re-planning
    on every change of the catalog or the data node sessions."""

    def __init__(self, meta: MetaStore, fence: dict[str, bytes]):
        self.meta = meta
        self.fence: dict[str, bytes | None] = dict(fence)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._mirrors: list[Mirror] = []
        try:
            for prefix in (COLL_PREFIX, DATANODE_SESSIONS, DN_ASSIGN_PREFIX):
                self._mirrors.append(Mirror(meta, prefix, self._wake.set))
        except BaseException:
            self.close()
            raise
        self._colls, self._nodes, self._assigned = self._mirrors
        self._current = {int(k): json.loads(v) for k, v in self._assigned.items().items()}
        self._thread = threading.Thread(target=self._run, name="coord-datanode-assignment", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # noqa: BLE001 (the store failed, fenced off...: the next tick tries again)
                log.exception("data node assignment: planning failed; trying again")
                self._stop.wait(0.5)

    def tick(self) -> None:
        colls = {info.id: info.channels for info in map(CollectionInfo.from_json, self._colls.items().values())}
        wanted = plan_datanodes(colls, sorted(self._nodes.items()), self._current)
        puts = {dn_assign_key(cid): json.dumps(chs, sort_keys=True).encode() for cid, chs in wanted.items()
                if chs != self._current.get(cid)}
        deletes = [dn_assign_key(cid) for cid in self._current if cid not in wanted]
        if puts or deletes:
            if not self.meta.txn(puts=puts, deletes=deletes, expect=self.fence):
                raise RuntimeError("the coord's session changed: it may no longer assign")
            self._current = wanted
            for key, raw in puts.items():
                log.info("data node assignment %s: %s", key, raw.decode())

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for m in self._mirrors:
            m.close()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

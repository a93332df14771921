"""A cluster query node holds what the coord assigned it (``vecdb.coord.assignment``).

``AssignmentFollower`` mirrors ``assign/``, loads the channels assigned to its node (owned or
being handed over to it), releases those no longer assigned, and publishes what the node holds in
``qnserve/<node id>`` under the node's session lease: the coord passes a hand-over once the new
node reports the channel, and proxies send reads only to nodes that report what they read.

A channel handed over to another node is released ``RELEASE_GRACE`` seconds later, so reads that
a proxy planned just before the change still find it; the channels of a collection released or
dropped (its assignment gone) are released at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from vecdb import errors
from vecdb.coord.assignment import ASSIGN_PREFIX, Assignment, serve_key
from vecdb.coord.catalog import read_collection
from vecdb.querynode.node import QueryNode
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import Mirror

log = logging.getLogger(__name__)

RELEASE_GRACE = 2.0
PUBLISH_SECONDS = 1.0  # held rows are published again at most this often when they change


class AssignmentFollower:
    def __init__(self, node: QueryNode, meta: MetaStore, node_id: str, lease: int):
        self.node, self.meta, self.node_id, self.lease = node, meta, node_id, lease
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._unwanted_since: dict[tuple[int, str], float] = {}
        # set once everything assigned to the node has been loaded (the first pass that found nothing missing):
        # the node is ready (/healthz 200) from then on; later hand-overs load while it serves the rest
        self.ready = threading.Event()
        self._published: bytes | None = None
        self._published_at = 0.0
        self._mirror = Mirror(meta, ASSIGN_PREFIX, self._wake.set)
        self._thread = threading.Thread(target=self._run, name=f"querynode {node_id} assignments", daemon=True)
        self._thread.start()

    def wanted(self) -> tuple[dict[int, list[str]], set[int]]:
        """(collection id -> the channels assigned to this node, the collections with an assignment)."""
        out, placed = {}, set()
        for raw in self._mirror.items().values():
            a = Assignment.from_json(raw)
            placed.add(a.collection_id)
            if chs := a.node_channels(self.node_id):  # over replicas: one it left may still need it
                out[a.collection_id] = chs
        return out, placed

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(PUBLISH_SECONDS, RELEASE_GRACE / 2))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 (the store or a load failed: the next pass tries again)
                log.exception("query node %s: following its assignment failed; trying again", self.node_id)
                self._stop.wait(0.5)

    def reconcile(self) -> None:
        wanted, placed = self.wanted()
        held = self.node.channels_held()
        if not any(ch not in held.get(cid, {}) for cid, chs in wanted.items() for ch in chs):
            self.ready.set()
        for cid, channels in wanted.items():
            missing = [ch for ch in channels if ch not in held.get(cid, {})]
            if missing:
                self._load(cid, missing)
                self._publish(force=True)  # the coord and proxies learn at once, not at the next pass
        now = time.monotonic()
        still = set()
        for cid, chs in held.items():
            extra = [ch for ch in chs if ch not in wanted.get(cid, [])]
            for ch in extra:
                since = self._unwanted_since.setdefault((cid, ch), now)
                still.add((cid, ch))
                # a hand-over keeps the channel a while for reads planned before it; a collection released
                # or dropped (no assignment left) goes at once: its reads are refused by the catalog already
                if now - since >= RELEASE_GRACE or cid not in placed:
                    log.info("query node %s releases %s of collection %s", self.node_id, ch, cid)
                    self.node.release(cid, [ch])
                    still.discard((cid, ch))
        self._unwanted_since = {k: v for k, v in self._unwanted_since.items() if k in still}
        self._publish()

    def _load(self, cid: int, channels: list[str]) -> None:
        try:
            info = read_collection(self.meta, cid)
        except errors.CollectionNotFound:
            return  # dropped meanwhile: its assignment goes next
        log.info("query node %s loads %s of collection %s", self.node_id, channels, info.name)
        self.node.load(info, channels)

    def _publish(self, force: bool = False) -> None:
        raw = json.dumps({str(c): chs for c, chs in sorted(self.node.channels_held().items())},
                         sort_keys=True).encode()
        now = time.monotonic()
        if raw == self._published or (not force and now - self._published_at < PUBLISH_SECONDS
                                      and self._same_channels(raw)):
            return
        self.meta.txn(puts={serve_key(self.node_id): raw}, lease=self.lease)
        self._published, self._published_at = raw, now

    def _same_channels(self, raw: bytes) -> bool:
        """Whether only row counts changed since the last publication (those may wait)."""
        if self._published is None:
            return False
        def shape(r: bytes) -> dict:
            return {c: sorted(chs) for c, chs in json.loads(r).items()}
        return shape(raw) == shape(self._published)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._mirror.close()
        if self._thread is not threading.current_thread():
            self._thread.join(10)

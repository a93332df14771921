"""A cluster query node holds what the coord assigned it (``vecdb.coord.assignment``).

``AssignmentFollower`` mirrors ``assign/``, loads the channels assigned to its node (owned or
being handed over to it), releases those no longer assigned, and publishes what the node holds in
``qnserve/<node id>`` under the node's session lease: the coord passes a hand-over once the new
node reports the channel, and proxies send reads only to nodes that report what they read.

A channel handed over to another node is released ``RELEASE_GRACE`` seconds later, so reads that
a proxy planned just before the change still find it; the channels of a collection released or
dropped (its assignment gone) are released at once.

It also mirrors the catalog's collection records (``coll/``): a collection the node holds takes
its record again whenever it changes (``QueryNode.refresh_from_store``). The proxy that made a DDL
change refreshes the nodes itself before it answers, so its client reads the change at once; this
is for the change whose proxy died between the coord's commit and that call (a TTL, a truncate, a
field added would otherwise stay unseen until the next load), and for DDL made by a coord tool.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import partial

from vecdb import errors
from vecdb.catalog_model import COLL_PREFIX, read_collection
from vecdb.coord.assignment import ASSIGN_PREFIX, FULL_PREFIX, Assignment, full_key, parse_full, serve_key
from vecdb.coord.planner import Parsed
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
        self._published: tuple[bytes, bytes] | None = None  # (rows, full segments) as last written
        self._published_at = 0.0
        self._demote_since: dict[tuple[str, str], float] = {}
        self._mirror = Mirror(meta, ASSIGN_PREFIX, self._wake.set)
        # each record parsed once (a pass runs on every change and every second: parsing every loaded
        # collection's assignment twice in each made loading N collections quadratic)
        self.assignments: Parsed[Assignment] = Parsed(self._mirror, lambda _, raw: Assignment.from_json(raw))
        self._full = Mirror(meta, FULL_PREFIX, self._wake.set)
        self._catalog = Mirror(meta, COLL_PREFIX, self._wake.set)
        self._records: dict[int, bytes] = {}  # collection id -> its catalog record as last taken
        self._thread = threading.Thread(target=self._run, name=f"querynode {node_id} assignments", daemon=True)
        self._thread.start()

    def wanted(self) -> tuple[dict[int, list[str]], set[int]]:
        """(collection id -> the channels this node leads, the collections with an assignment)."""
        out, placed = {}, set()
        for a in self.assignments.get().values():
            placed.add(a.collection_id)
            if chs := a.node_channels(self.node_id):  # over replicas: one it left may still need it
                out[a.collection_id] = chs
        return out, placed

    def _assignments(self) -> dict[int, Assignment]:
        """collection id -> its assignment (parsed once: shared between passes, not to be changed)."""
        return {a.collection_id: a for a in self.assignments.get().values()}

    def _fulls(self) -> dict[str, dict[int, dict[str, list[str]]]]:
        return {n: parse_full(raw) for n, raw in self._full.items().items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(PUBLISH_SECONDS, RELEASE_GRACE / 2))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile()
            except (errors.KeyNotFound, errors.CollectionNotFound) as e:  # dropped under it: the next pass releases
                log.warning("query node %s: following its assignment: %s (dropped meanwhile?); trying again",
                            self.node_id, e)
            except Exception:  # noqa: BLE001 (the store or a load failed: the next pass tries again)
                log.exception("query node %s: following its assignment failed; trying again", self.node_id)
                self._stop.wait(0.5)

    def reconcile(self) -> None:
        wanted, placed = self.wanted()
        assigns = self._assignments()
        holds = self._holds(assigns, wanted)
        fulls = self._fulls()
        held = self.node.channels_held()
        if not any(ch not in held.get(cid, {}) for cid, chs in [*wanted.items(), *holds.items()] for ch in chs):
            self.ready.set()
        for cid, channels in wanted.items():
            led_elsewhere = [ch for ch in channels if ch in held.get(cid, {}) and not self.node.leads(ch)]
            if led_elsewhere:  # it held only some segments of them: load them again, as their leader
                self.node.release(cid, led_elsewhere)
                held = self.node.channels_held()
            missing = [ch for ch in channels if ch not in held.get(cid, {})]
            if missing and cid in assigns:
                self._load(cid, missing, True, partial(self._leader_keeps, assigns[cid], fulls))
                self._publish(force=True)  # the coord and proxies learn at once, not at the next pass
        for cid, mine in holds.items():
            missing = [ch for ch in mine if ch not in held.get(cid, {})]
            if missing:
                self._load(cid, missing, False, lambda ch, prefix, mine=mine: prefix in mine[ch])
                self._publish(force=True)
        held = self.node.channels_held()
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
                    still.discard((cid, ch))
                    if (ch in holds.get(cid, {}) or self.node.keeps_history(ch)) and cid in placed:
                        if self.node.leads(ch):
                            log.info("query node %s no longer leads %s of collection %s", self.node_id, ch, cid)
                            self.node.follow_only(ch)
                        continue
                    log.info("query node %s releases %s of collection %s", self.node_id, ch, cid)
                    self.node.release(cid, [ch])
        self._unwanted_since = {k: v for k, v in self._unwanted_since.items() if k in still}
        self._spread(assigns, fulls, now)
        self._follow_catalog()
        self._publish()

    def _follow_catalog(self) -> None:
        """Each collection held takes its catalog record again when the mirror shows it changed (the
        record itself is read from the store then: never older than what the mirror showed)."""
        held = set(self.node.collections)
        for cid in held:
            raw = self._catalog.get(str(cid))
            if raw is not None and raw != self._records.get(cid):
                try:
                    self.node.refresh_from_store(cid)
                except errors.CollectionNotFound:
                    continue  # dropped meanwhile: its assignment goes next
                self._records[cid] = raw
        self._records = {cid: raw for cid, raw in self._records.items() if cid in held}

    def _holds(self, assigns: dict[int, Assignment], wanted: dict[int, list[str]]) -> dict[int, dict[str, set[str]]]:
        """collection id -> channel -> the sealed segments placed on this node, of the channels it does
        not lead."""
        out: dict[int, dict[str, set[str]]] = {}
        for cid, a in assigns.items():
            r = a.replica_of(self.node_id)
            if r is None:
                continue
            for ch, prefixes in r.placed_on(self.node_id).items():
                if ch not in wanted.get(cid, []):
                    out.setdefault(cid, {})[ch] = prefixes
        return out

    def _leader_keeps(self, a: Assignment, fulls, channel: str, prefix: str) -> bool:
        """Whether the leader of ``channel`` holds sealed segment ``prefix`` in full: unless it is
        placed on another node of the replica and a node that does not lead the channel serves it."""
        r = a.replica_of(self.node_id)
        if r is None:
            return True
        owner = r.segments.get(channel, {}).get(prefix)
        if owner is None or owner == self.node_id:
            return True
        leaders = {r.channels.get(channel), r.moving.get(channel)}
        return not any(prefix in fulls.get(n, {}).get(a.collection_id, {}).get(channel, [])
                       for n in r.nodes if n != self.node_id and n not in leaders)

    def _holder_keeps(self, a: Assignment, fulls, channel: str, prefix: str) -> bool:
        """Whether a node that does not lead ``channel`` holds sealed segment ``prefix`` in full: when
        placed on it, or until the node it is placed on serves it."""
        r = a.replica_of(self.node_id)
        owner = None if r is None else r.segments.get(channel, {}).get(prefix)
        if owner is None:
            return False
        return owner == self.node_id or prefix not in fulls.get(owner, {}).get(a.collection_id, {}).get(channel, [])

    def _spread(self, assigns: dict[int, Assignment], fulls, now: float) -> None:
        """Promote the stubs this node should serve in full, demote (after ``RELEASE_GRACE``) the
        segments it should not."""
        still = set()
        for cid, chs in self.node.full_segments().items():
            a = assigns.get(cid)
            if a is None:
                continue
            for ch, full in chs.items():
                keeps = self._leader_keeps if self.node.leads(ch) else self._holder_keeps
                known = self.node.sealed_prefixes(ch)
                promote = [p for p in known if p not in full and keeps(a, fulls, ch, p)]
                if promote:
                    done = self.node.promote(cid, ch, promote)
                    if done:
                        log.info("query node %s serves segments %s of %s", self.node_id, done, ch)
                        self._publish(force=True)
                drop = []
                pending = self.node.compactions.pending_sources(ch) if full else set()
                for p in full:
                    if keeps(a, fulls, ch, p) or p in pending:  # a source is kept in full until its swap
                        continue
                    since = self._demote_since.setdefault((ch, p), now)
                    still.add((ch, p))
                    if now - since >= RELEASE_GRACE:
                        drop.append(p)
                        still.discard((ch, p))
                if drop:
                    log.info("query node %s lets segments %s of %s go (served elsewhere)", self.node_id, drop, ch)
                    self.node.demote(cid, ch, drop)
                    self._publish(force=True)
        self._demote_since = {k: v for k, v in self._demote_since.items() if k in still}

    def _load(self, cid: int, channels: list[str], leader: bool = True, full=None) -> None:
        try:
            info = read_collection(self.meta, cid)
        except errors.CollectionNotFound:
            return  # dropped meanwhile: its assignment goes next
        log.info("query node %s loads %s of collection %s%s", self.node_id, channels, info.name,
                 "" if leader else " (some of their sealed segments)")
        self.node.load(info, channels, leader, full)

    def _publish(self, force: bool = False) -> None:
        """``qnserve/<node id>`` (rows held per channel) and ``qnfull/<node id>`` (sealed segments held
        in full): at once when what is held changed, at most every ``PUBLISH_SECONDS`` when only row
        counts did."""
        # qnserve: the channels this node leads (a read of the whole channel may go to it); those where it
        # holds only placed segments are in qnfull alone
        led = {c: {ch: n for ch, n in chs.items() if self.node.leads(ch)}
               for c, chs in self.node.channels_held().items()}
        raw = json.dumps({str(c): chs for c, chs in sorted(led.items()) if chs}, sort_keys=True).encode()
        full = json.dumps({str(c): chs for c, chs in sorted(self.node.full_segments().items())},
                          sort_keys=True).encode()
        now = time.monotonic()
        if self._published is not None:
            same_full = full == self._published[1]
            if same_full and (raw == self._published[0] or (
                    not force and now - self._published_at < PUBLISH_SECONDS and self._same_channels(raw))):
                return
        self.meta.txn(puts={serve_key(self.node_id): raw, full_key(self.node_id): full}, lease=self.lease)
        self._published, self._published_at = (raw, full), now

    def _same_channels(self, raw: bytes) -> bool:
        """Whether only row counts changed since the last publication (those may wait)."""
        if self._published is None:
            return False

        def shape(r: bytes) -> dict:
            return {c: sorted(chs) for c, chs in json.loads(r).items()}
        return shape(raw) == shape(self._published[0])

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._mirror.close()
        self._full.close()
        self._catalog.close()
        if self._thread is not threading.current_thread():
            self._thread.join(10)

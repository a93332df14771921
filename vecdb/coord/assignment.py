"""Which query node serves which shard channel of each loaded collection: the coord decides
(``AssignmentManager``, in the active coord), the query nodes follow (``vecdb.querynode.assigned``)
and the proxies route reads by it (``vecdb.proxy.router``).

Keys (in the metadata store):

- ``assign/<collection id>``: the collection's replicas (``Assignment``), written by the active
  coord only (a compare-and-set on its session value, so a coord that lost its session cannot
  write).
- ``qnserve/<node id>``: what a query node holds now, ``{collection id: {channel: live rows}}``,
  under the node's session lease (it goes with the node).

Rules (``plan``):

- ``replica_number`` replicas per loaded collection, each a disjoint set of live query nodes
  (fewer when fewer nodes live). Every live node belongs to one replica of each collection: a
  joining node goes to the replica with the fewest nodes.
- In a replica, each channel has one owner, the node that serves all of it (sealed and growing
  data). A channel whose owner is gone (its session ended) gets the least loaded node of the
  replica at once; it serves once it has loaded.
- Load is measured: the live rows a node reports serving, over every collection (plus one per
  channel, so empty channels spread too). When moving a channel from the most to the least
  loaded node of a replica lowers the higher of the two, the channel is handed over: the new
  node loads it while the old one still serves (``moving``), and ownership passes only once the
  new node reports it serves the channel; the old node then releases it. One hand-over per
  replica at a time, so reads always find a complete replica.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field

from vecdb.coord.catalog_model import CollectionInfo
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import Mirror

log = logging.getLogger(__name__)

ASSIGN_PREFIX = "assign/"
SERVE_PREFIX = "qnserve/"
QUERYNODE_SESSIONS = "session/querynode/"
REBALANCE_SECONDS = 1.0  # the manager plans again at least this often (reported rows change)


def assign_key(collection_id: int) -> str:
    return f"{ASSIGN_PREFIX}{collection_id}"


def serve_key(node_id: str) -> str:
    return f"{SERVE_PREFIX}{node_id}"


@dataclass
class Replica:
    id: int
    nodes: list[str]
    channels: dict[str, str | None]  # channel -> owner node id (None: no live node to own it)
    moving: dict[str, str] = field(default_factory=dict)  # channel -> node taking it over

    def node_channels(self, node_id: str) -> list[str]:
        """The channels ``node_id`` must hold: those it owns and those it takes over."""
        return sorted({ch for ch, n in self.channels.items() if n == node_id}
                      | {ch for ch, n in self.moving.items() if n == node_id})


@dataclass
class Assignment:
    collection_id: int
    replicas: list[Replica]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Assignment:
        d = json.loads(raw)
        return cls(d["collection_id"], [Replica(**r) for r in d["replicas"]])

    def replica_of(self, node_id: str) -> Replica | None:
        return next((r for r in self.replicas if node_id in r.nodes), None)


Served = dict[str, dict[int, dict[str, int]]]  # node id -> collection id -> channel -> live rows


def parse_served(raw: bytes) -> dict[int, dict[str, int]]:
    return {int(cid): chs for cid, chs in json.loads(raw).items()}


def plan(loaded: dict[int, tuple[list[str], int]], nodes: list[str], current: dict[int, Assignment],
         served: Served) -> dict[int, Assignment]:
    """The assignments that should stand: ``loaded`` (collection id -> (channels, replica
    number)), the live query ``nodes``, the ``current`` assignments and what each node reports it
    serves. Pure; the rules are the module's."""
    live = set(nodes)
    load = {n: 0 for n in sorted(live)}
    rows = _channel_rows(served)
    out: dict[int, Assignment] = {}
    for cid in sorted(loaded):
        channels, replica_number = loaded[cid]
        a = current.get(cid) or Assignment(cid, [])
        out[cid] = Assignment(cid, _place_nodes(a.replicas, max(1, replica_number), live))
    # owners first for every collection (so the loads below are complete), then hand-overs
    for cid, a in out.items():
        channels, _ = loaded[cid]
        for r in a.replicas:
            _own(r, channels, live, cid, served, rows, load)
    for cid, a in out.items():
        for r in a.replicas:
            _rebalance(r, cid, rows, load)
    return out


def _channel_rows(served: Served) -> dict[tuple[int, str], int]:
    rows: dict[tuple[int, str], int] = {}
    for per_coll in served.values():
        for cid, chs in per_coll.items():
            for ch, n in chs.items():
                rows[(cid, ch)] = max(rows.get((cid, ch), 0), int(n))
    return rows


def _place_nodes(replicas: list[Replica], replica_number: int, live: set[str]) -> list[Replica]:
    """Replicas with live nodes only, ``replica_number`` of them (fewer if fewer nodes live), every
    live node in one of them."""
    kept: list[Replica] = []
    taken: set[str] = set()
    for r in replicas[:replica_number]:
        members = [n for n in r.nodes if n in live and n not in taken]
        taken.update(members)
        kept.append(Replica(r.id, members, dict(r.channels), dict(r.moving)))
    next_id = max([r.id for r in replicas] + [0]) + 1
    while len(kept) < min(replica_number, len(live)):
        kept.append(Replica(next_id, [], {}))
        next_id += 1
    for n in sorted(live - taken):
        if kept:
            min(kept, key=lambda r: (len(r.nodes), r.id)).nodes.append(n)
    for r in kept:
        r.nodes.sort()
    return kept


def _weight(rows: dict[tuple[int, str], int], cid: int, ch: str) -> int:
    return rows.get((cid, ch), 0) + 1


def _own(r: Replica, channels: list[str], live: set[str], cid: int, served: Served,
         rows: dict[tuple[int, str], int], load: dict[str, int]) -> None:
    members = set(r.nodes)
    r.channels = {ch: r.channels.get(ch) for ch in channels}
    for ch in channels:
        owner = r.channels[ch]
        if owner is not None and owner in members:
            load[owner] += _weight(rows, cid, ch)
    for ch in channels:
        target = r.moving.get(ch)
        if target is None:
            continue
        if target not in members or r.channels[ch] is None or r.channels[ch] == target:
            del r.moving[ch]
        elif ch in served.get(target, {}).get(cid, {}):  # the new node serves it: ownership passes
            old = r.channels[ch]
            assert old is not None
            w = _weight(rows, cid, ch)
            load[old] -= w
            load[target] += w
            r.channels[ch] = target
            del r.moving[ch]
    r.moving = {ch: n for ch, n in r.moving.items() if ch in r.channels}
    for ch in channels:
        owner = r.channels[ch]
        if owner is None or owner not in members:
            if not r.nodes:
                r.channels[ch] = None
                continue
            best = min(r.nodes, key=lambda n: (load[n], n))
            r.channels[ch] = best
            load[best] += _weight(rows, cid, ch)
            r.moving.pop(ch, None)


def _rebalance(r: Replica, cid: int, rows: dict[tuple[int, str], int], load: dict[str, int]) -> None:
    """Start one hand-over in ``r`` when it lowers the higher load of the two nodes."""
    if r.moving or len(r.nodes) < 2:
        return
    heavy = max(r.nodes, key=lambda n: (load[n], n))
    light = min(r.nodes, key=lambda n: (load[n], n))
    best = None
    for ch, owner in sorted(r.channels.items()):
        if owner != heavy:
            continue
        w = _weight(rows, cid, ch)
        after = max(load[heavy] - w, load[light] + w)
        if after < load[heavy] and (best is None or after < best[0]):
            best = (after, ch, w)
    if best is not None:
        _, ch, w = best
        r.moving[ch] = light
        load[heavy] -= w  # counted as moved: later collections balance against it
        load[light] += w


class AssignmentManager:
    """Keeps ``assign/`` equal to ``plan(...)`` while its coord is active: re-plans on every change
    of the catalog, the query node sessions, the nodes' reports or the assignments, and at least
    every ``REBALANCE_SECONDS``. Writes are fenced by ``fence`` (the coord's session key and value)."""

    def __init__(self, meta: MetaStore, fence: dict[str, bytes]):
        self.meta = meta
        self.fence: dict[str, bytes | None] = dict(fence)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._mirrors: list[Mirror] = []
        try:
            for prefix in (COLL_PREFIX, QUERYNODE_SESSIONS, SERVE_PREFIX, ASSIGN_PREFIX):
                self._mirrors.append(Mirror(meta, prefix, self._wake.set))
        except BaseException:
            self.close()
            raise
        self._colls, self._nodes, self._served, self._assigned = self._mirrors
        # what stands: the store's at start, then what this manager wrote (its mirror may lag behind)
        self._current = {int(k): Assignment.from_json(v) for k, v in self._assigned.items().items()}
        self._thread = threading.Thread(target=self._run, name="coord-assignment", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(REBALANCE_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # noqa: BLE001 (the store failed, fenced off...: the next tick tries again)
                log.exception("assignment: planning failed; trying again")
                self._stop.wait(0.5)

    def tick(self) -> None:
        loaded: dict[int, tuple[list[str], int]] = {}
        for raw in self._colls.items().values():
            info = CollectionInfo.from_json(raw)
            if info.loaded:
                loaded[info.id] = (info.channels, info.replica_number)
        nodes = sorted(self._nodes.items())
        served = {n: parse_served(raw) for n, raw in self._served.items().items() if n in nodes}
        current = self._current
        wanted = plan(loaded, nodes, current, served)
        puts = {assign_key(cid): raw for cid, a in wanted.items()
                if (raw := a.to_json()) != (current[cid].to_json() if cid in current else None)}
        deletes = [assign_key(cid) for cid in current if cid not in wanted]
        if puts or deletes:
            if not self.meta.txn(puts=puts, deletes=deletes, expect=self.fence):
                raise RuntimeError("the coord's session changed: it may no longer assign")
            self._current = wanted
            for key, raw in puts.items():
                log.info("assignment %s: %s", key, raw.decode())

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for m in self._mirrors:
            m.close()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

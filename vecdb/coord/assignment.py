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
- With ``querynode.replica_per_node`` (``per_node``), a collection gets, in each resource group it
  has replicas in, as many replicas as the group has live query nodes, at least the replicas the
  client asked for there (``replica_number`` stays the floor): every node holds a whole replica of
  every loaded collection, so a proxy in the same process (``vecdb node``) reads from its own
  node only. A node that joins gets a new replica; a node that is gone (its session ended) takes
  its replica with it (a replica with a live node is kept before one without), the others keep
  theirs untouched. A replica has one node then (one of several, placed before the setting was
  on, keeps its first live node; the others hand its channels over and take replicas of their own).
- Resource groups (``vecdb.coord.resource_groups``): each replica belongs to one group (the
  catalog's ``resource_groups`` of the collection say how many replicas each group gets; none:
  all in ``__default_resource_group``) and takes its nodes only from that group's live nodes (at
  most as many replicas in a group as it has nodes). A replica moved to another group
  (TransferReplica) keeps its id; a node moved to another group (TransferNode) leaves its replicas.
  A node that leaves a replica but still lives keeps serving the channels it owns until their new
  owner in the replica serves them (a hand-over, as in balance); in a replica left without nodes
  it keeps them.
- In a replica, each channel has one owner, the node that serves all of it (sealed and growing
  data). A channel whose owner is gone (its session ended) gets the least loaded node of the
  replica at once; it serves once it has loaded.
- Load is measured: the live rows a node reports serving, over every collection (plus one per
  channel, so empty channels spread too). When moving a channel from the most to the least
  loaded node of a replica lowers the higher of the two, the channel is handed over: the new
  node loads it while the old one still serves (``moving``), and ownership passes only once the
  new node reports it serves the channel; the old node then releases it. One hand-over per
  replica at a time, so reads always find a complete replica.
- Sealed segments spread over the replica's nodes (``Replica.segments``), so that memory scales
  out even for a collection of one shard: in a replica of two nodes or more, once a channel's sealed
  rows reach ``querynode.spread_min_rows`` (200,000 by default: below it spreading costs more than it
  saves, every node holding segments of a channel follows it), each persisted segment
  (``seg/`` keys) is placed on one node of the replica, new ones on the node holding the fewest
  placed rows (the channel's leader, which sealed it, unless another node is lighter by more than a
  tenth of the segment's rows), placements kept while their node stays. When moving one segment from the busiest to
  the least busy node lowers the higher of the two (by ``MIN_GAIN`` at least), it moves (one per
  replica and pass, in settled collections). The channel's leader (its owner above) holds the
  growing rows and every sealed segment no other node of the replica serves; a node that holds
  only placed segments of a channel follows the channel too, keeping the other rows as stubs (keys
  and timestamps), so deletes and upserts reach every row. Hand-overs keep a segment served: the
  node losing it lets go only once the node it goes to reports it (``qnfull/<node id>``: the
  sealed segments each node holds in full, under its lease); see ``vecdb.querynode.assigned``.
- A manual move (LoadBalance, ``vecdb.coord.segment_moves``) pins a segment to a node
  (``Replica.pinned``): it is placed there, even in a channel below ``spread_min_rows`` (whose other
  segments stay with the leader), and the balance never moves it; the pin goes with its node (out of
  the replica), its segment (compacted away) or the assignment (released).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Container, Iterator
from dataclasses import asdict, dataclass, field, replace

from vecdb.catalog_model import CollectionInfo
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.coord.planner import Parsed, Planner
from vecdb.coord.resource_groups import (
    DEFAULT_RESOURCE_GROUP,
    RG_PREFIX,
    ResourceGroups,
    node_groups,
    parse_groups,
    recover,
)
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

ASSIGN_PREFIX = "assign/"
SERVE_PREFIX = "qnserve/"
FULL_PREFIX = "qnfull/"
SEG_PREFIX = "seg/"
QUERYNODE_SESSIONS = "session/querynode/"
# A collection whose assignment changed starts no hand-over for this long: the nodes' reports of the
# rows they hold catch up first (balancing on reports taken at different moments makes channels flap).
REBALANCE_COOLDOWN = 5.0
MIN_GAIN = 0.1  # a hand-over must lower the busier node's load by this share at least


def assign_key(collection_id: int) -> str:
    return f"{ASSIGN_PREFIX}{collection_id}"


def serve_key(node_id: str) -> str:
    return f"{SERVE_PREFIX}{node_id}"


def full_key(node_id: str) -> str:
    return f"{FULL_PREFIX}{node_id}"


def parse_full(raw: bytes) -> dict[int, dict[str, list[str]]]:
    """A ``qnfull/`` value: collection id -> channel -> the sealed segments held in full."""
    return {int(cid): chs for cid, chs in json.loads(raw).items()}


@dataclass
class Replica:
    id: int
    nodes: list[str]
    channels: dict[str, str | None]  # channel -> owner node id (None: no live node to own it)
    moving: dict[str, str] = field(default_factory=dict)  # channel -> node taking it over
    resource_group: str = DEFAULT_RESOURCE_GROUP
    # channel -> sealed segment prefix -> the node of this replica that serves it (empty with one node)
    segments: dict[str, dict[str, str]] = field(default_factory=dict)
    # channel -> sealed segment prefix -> the node a manual move (LoadBalance) put it on: it stays there
    # while the node is in the replica and the segment exists (vecdb.coord.segment_moves)
    pinned: dict[str, dict[str, str]] = field(default_factory=dict)

    def node_channels(self, node_id: str) -> list[str]:
        """The channels ``node_id`` must lead: those it owns and those it takes over."""
        return sorted({ch for ch, n in self.channels.items() if n == node_id}
                      | {ch for ch, n in self.moving.items() if n == node_id})

    def placed_on(self, node_id: str) -> dict[str, set[str]]:
        """channel -> the sealed segments placed on ``node_id``."""
        out: dict[str, set[str]] = {}
        for ch, segs in self.segments.items():
            mine = {p for p, n in segs.items() if n == node_id}
            if mine:
                out[ch] = mine
        return out


@dataclass
class Assignment:
    collection_id: int
    replicas: list[Replica]

    def to_json(self) -> bytes:
        d = asdict(self)
        for r in d["replicas"]:  # written only when set: a process of an earlier version reads the rest
            if not r["pinned"]:
                del r["pinned"]
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Assignment:
        d = json.loads(raw)
        known = Replica.__dataclass_fields__
        # keys a later version added are left out, so a rolling upgrade's older processes keep reading
        return cls(d["collection_id"], [Replica(**{k: v for k, v in r.items() if k in known}) for r in d["replicas"]])

    def replica_of(self, node_id: str) -> Replica | None:
        return next((r for r in self.replicas if node_id in r.nodes), None)

    def node_channels(self, node_id: str) -> list[str]:
        """Every channel ``node_id`` must hold, over the replicas: a node that left a replica
        (another resource group) still owns some there until they are handed over."""
        return sorted({ch for r in self.replicas for ch in r.node_channels(node_id)})


Served = dict[str, dict[int, dict[str, int]]]  # node id -> collection id -> channel -> live rows


def parse_served(raw: bytes) -> dict[int, dict[str, int]]:
    return {int(cid): chs for cid, chs in json.loads(raw).items()}


Loaded = dict[int, tuple]  # collection id -> (channels, replica number[, each replica's resource group])


Sealed = dict[int, dict[str, dict[str, int]]]  # collection id -> channel -> segment prefix -> rows


def plan(loaded: Loaded, nodes: list[str], current: dict[int, Assignment],
         served: Served, groups: dict[str, str] | None = None,
         settled: set[int] | None = None, sealed: Sealed | None = None,
         spread_min_rows: int = 0, per_node: bool = False) -> dict[int, Assignment]:
    """The assignments that should stand: ``loaded`` (collection id -> (channels, replica
    number) or (channels, replica number, the resource group of each replica)), the live query
    ``nodes``, the ``current`` assignments, what each node reports it serves and ``groups``
    (node id -> its resource group; a node not in it is in the default group) and the ``sealed``
    segments of each channel (their rows; a channel's are spread once they hold
    ``spread_min_rows``). Hand-overs for balance start only in the ``settled`` collections (None:
    all). ``per_node``: a replica per live node (``querynode.replica_per_node``). Pure; the rules
    are the module's."""
    live = set(nodes)
    group_of = {n: (groups or {}).get(n, DEFAULT_RESOURCE_GROUP) for n in live}
    load = {n: 0 for n in sorted(live)}
    rows = _channel_rows(served)
    out: dict[int, Assignment] = {}
    for cid in sorted(loaded):
        replica_number = max(1, loaded[cid][1])
        wanted = list(loaded[cid][2]) if len(loaded[cid]) > 2 and loaded[cid][2] else []
        if len(wanted) != replica_number:
            wanted = [DEFAULT_RESOURCE_GROUP] * replica_number
        a = current.get(cid) or Assignment(cid, [])
        replicas = a.replicas
        if per_node:
            wanted = _per_node(wanted, group_of)
            # a replica with a live node first: one whose nodes are all gone is the one dropped; one node
            # per replica (a replica of several, placed before the setting, lets the others go to new ones)
            replicas = [replace(r, nodes=[n for n in r.nodes if n in live][:1])
                        for r in sorted(replicas, key=lambda r: not any(n in live for n in r.nodes))]
        out[cid] = Assignment(cid, _place_in_groups(replicas, wanted, group_of))
    # owners first for every collection (so the loads below are complete), then hand-overs
    for cid, a in out.items():
        channels = loaded[cid][0]
        for r in a.replicas:
            _own(r, channels, live, cid, served, rows, load)
    for cid, a in out.items():
        if settled is None or cid in settled:
            for r in a.replicas:
                _rebalance(r, cid, rows, load)
    for cid, a in out.items():
        channel_segs = (sealed or {}).get(cid, {})
        for r in a.replicas:
            _prune_pins(r, channel_segs)
            # a channel below spread_min_rows places only its pinned segments (its leader holds the rest)
            spread = {ch: segs if sum(segs.values()) >= spread_min_rows
                      else {p: n for p, n in segs.items() if p in r.pinned.get(ch, {})}
                      for ch, segs in channel_segs.items()}
            _place_segments(r, {ch: segs for ch, segs in spread.items() if segs}, settled is None or cid in settled)
    return out


def _prune_pins(r: Replica, sealed: dict[str, dict[str, int]]) -> None:
    """Keep the pins of segments that still exist, on nodes still in ``r``."""
    pins = {ch: {p: n for p, n in segs.items() if n in r.nodes and p in sealed.get(ch, {})}
            for ch, segs in r.pinned.items() if ch in r.channels}
    r.pinned = {ch: segs for ch, segs in pins.items() if segs} if len(r.nodes) > 1 else {}


def _per_node(wanted: list[str], group_of: dict[str, str]) -> list[str]:
    """``wanted`` (a resource group per replica) with more replicas in each of its groups, up to the
    group's live nodes."""
    out = list(wanted)
    for g in sorted(set(wanted)):
        members = sum(1 for ng in group_of.values() if ng == g)
        out += [g] * (members - wanted.count(g))
    return out


def _place_segments(r: Replica, sealed: dict[str, dict[str, int]], settled: bool) -> None:
    """Each sealed segment of ``r``'s channels on one node of ``r`` (the module's rules)."""
    if len(r.nodes) < 2:
        r.segments = {}
        return
    load = {n: 0 for n in r.nodes}
    placed: dict[str, dict[str, str]] = {}
    todo = []
    for ch in sorted(r.channels):
        old = {**r.segments.get(ch, {}), **r.pinned.get(ch, {})}
        for prefix, n_rows in sorted(sealed.get(ch, {}).items()):
            node = old.get(prefix)
            if node in load:
                placed.setdefault(ch, {})[prefix] = node
                load[node] += n_rows
            else:
                todo.append((-n_rows, ch, prefix))
    for neg_rows, ch, prefix in sorted(todo):  # the biggest first
        # the channel's leader holds it already (it sealed it): it keeps it unless another node is
        # lighter by more than a tenth of the segment
        leader, slack = r.channels.get(ch), -neg_rows * MIN_GAIN
        best = min(r.nodes, key=lambda n: (load[n] - (slack if n == leader else 0), n))
        placed.setdefault(ch, {})[prefix] = best
        load[best] -= neg_rows
    if settled:
        heavy = max(r.nodes, key=lambda n: (load[n], n))
        light = min(r.nodes, key=lambda n: (load[n], n))
        best_move = None
        for ch, segs in sorted(placed.items()):
            for prefix, node in sorted(segs.items()):
                if node != heavy or prefix in r.pinned.get(ch, {}):
                    continue
                w = sealed[ch][prefix]
                after = max(load[heavy] - w, load[light] + w)
                if load[heavy] - after >= MIN_GAIN * load[heavy] and (best_move is None or after < best_move[0]):
                    best_move = (after, ch, prefix)
        if best_move is not None:
            placed[best_move[1]][best_move[2]] = light
    r.segments = placed


def parse_segment_key(key: str) -> tuple[int, str] | None:
    """(collection id, channel) of a ``seg/<collection id>/<channel>/<name>`` key."""
    parts = key[len(SEG_PREFIX):].split("/") if key.startswith(SEG_PREFIX) else []
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1]


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
        kept.append(replace(r, nodes=members, channels=dict(r.channels), moving=dict(r.moving),
                             segments=dict(r.segments), pinned=dict(r.pinned)))
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


def _place_in_groups(replicas: list[Replica], wanted: list[str], group_of: dict[str, str]) -> list[Replica]:
    """The replicas, each in its group (``wanted``: one group name per replica), with nodes of
    that group only: replicas keep their group while it is still wanted, the others move to a
    group that lacks replicas (keeping their id); per group, ``_place_nodes``."""
    need: dict[str, int] = {}
    for g in wanted:
        need[g] = need.get(g, 0) + 1
    kept: list[Replica] = []
    spare: list[Replica] = []
    for r in replicas:
        if need.get(r.resource_group, 0) > 0:
            need[r.resource_group] -= 1
            kept.append(r)
        else:
            spare.append(r)
    next_id = max([r.id for r in replicas] + [0]) + 1
    for g in sorted(need):
        for _ in range(need[g]):
            if spare:  # moved here by TransferReplica: same replica, new group
                r = spare.pop(0)
                kept.append(replace(r, nodes=list(r.nodes), channels=dict(r.channels), moving=dict(r.moving),
                                         resource_group=g, segments=dict(r.segments), pinned=dict(r.pinned)))
    for g in sorted(set(wanted)):
        members = {n for n, ng in group_of.items() if ng == g}
        have = sum(1 for r in kept if r.resource_group == g)
        for _ in range(min(wanted.count(g), len(members)) - have):  # no more new replicas than nodes
            kept.append(Replica(next_id, [], {}, {}, g))
            next_id += 1
    out: list[Replica] = []
    for g in sorted({r.resource_group for r in kept}):
        members = {n for n, ng in group_of.items() if ng == g}
        in_group = [r for r in kept if r.resource_group == g]
        # in id order, the replicas that had nodes first (a group short of nodes leaves the new ones empty)
        in_group.sort(key=lambda r: (not r.nodes, r.id))
        placed = _place_nodes(in_group, len(in_group), members)
        for r in placed:
            r.resource_group = g
        out.extend(placed)
    return sorted(out, key=lambda r: r.id)


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
            if old in members:
                load[old] -= w
            load[target] += w
            r.channels[ch] = target
            del r.moving[ch]
    r.moving = {ch: n for ch, n in r.moving.items() if ch in r.channels}
    for ch in channels:
        owner = r.channels[ch]
        if owner is not None and owner not in members and owner in live:
            # it left the replica (another resource group) but lives: it serves until handed over
            if r.nodes and ch not in r.moving:
                best = min(r.nodes, key=lambda n: (load[n], n))
                r.moving[ch] = best
                load[best] += _weight(rows, cid, ch)
            continue
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
        if load[heavy] - after >= MIN_GAIN * load[heavy] and (best is None or after < best[0]):
            best = (after, ch, w)
    if best is not None:
        _, ch, w = best
        r.moving[ch] = light
        load[heavy] -= w  # counted as moved: later collections balance against it
        load[light] += w


class AssignmentManager(Planner):
    """Keeps ``assign/`` equal to ``plan(...)`` while its coord is active: re-plans on every change
    of the catalog, the query node sessions, the nodes' reports or the assignments, and when a
    collection's cool-down (``REBALANCE_COOLDOWN``) ends; with nothing changed, it does nothing. Each
    pass parses only the records that changed since the last (``Parsed``), plans only when what the plan
    reads changed, and encodes only the assignments the plan changed. Writes are fenced by ``fence``
    (the coord's session key and value)."""

    name = "assignment"

    def __init__(self, meta: MetaStore, fence: dict[str, bytes], spread_min_rows: int = 0,
                 replica_per_node: bool = False):
        """``spread_min_rows``, ``replica_per_node``: the placement's (see ``plan``)."""
        self.spread_min_rows, self.replica_per_node = spread_min_rows, replica_per_node
        super().__init__(meta, fence, ASSIGN_PREFIX, (COLL_PREFIX, QUERYNODE_SESSIONS, SERVE_PREFIX, RG_PREFIX,
                                                      SEG_PREFIX, FULL_PREFIX))
        self._pins_lock = threading.Lock()
        self._pending_pins: dict[int, dict[int, dict[str, dict[str, str]]]] = {}  # collection -> replica -> pins
        try:
            self._colls, self._nodes, self._served, self._rgs, self._segs, self._full, _ = self.mirrors
            # the coord keeps resource groups' members what their configs ask as nodes come and go
            self._groups = ResourceGroups(meta, lambda: {n: "" for n in self._nodes.items()})
            self._groups_seen: tuple | None = None
            self._changed_at: dict[int, float] = {}  # collection id -> when this manager last changed its assignment
            # the records, parsed once each: a collection's load state, a node's report, a segment's rows
            self.loaded_states: Parsed[tuple[int, tuple] | None] = Parsed(self._colls, _load_state)
            self._reports: Parsed[dict[int, dict[str, int]]] = Parsed(self._served, lambda _, raw: parse_served(raw))
            self._segments: Parsed[tuple[int, str, str, int] | None] = Parsed(self._segs, _segment_rows)
            self._sealed: Sealed = {}  # of every collection, from _segments
            self._assigned: dict[int, tuple[bytes, Assignment]] = {}  # collection id -> current raw, parsed
            self.encodes = 0  # assignments serialized (the idle-cost test counts them: unchanged ones are not)
            self.plans = 0  # passes that planned (a pass whose inputs are the last plan's does not)
            self._planned: tuple | None = None  # the inputs of the last plan, and the assignments it left
        except BaseException:
            self.close()
            raise
        self.start()

    def _node_groups(self, nodes: list[str]) -> dict[str, str]:
        """node id -> resource group, once the groups' members follow the rules (written when not)."""
        seen = (tuple(nodes), tuple(sorted(self._rgs.items().items())))
        if seen != self._groups_seen:
            self._groups.reconcile()  # a compare-and-set: a proxy's concurrent change wins, then this again
            self._groups_seen = seen
        return node_groups(recover(parse_groups(dict(self._rgs.items()), nodes), nodes))

    def assignment(self, collection_id: int) -> Assignment | None:
        """The collection's assignment as this manager last wrote it."""
        raw = self.current.get(collection_id)
        return None if raw is None else Assignment.from_json(raw)

    def full_reports(self) -> dict[str, dict[int, dict[str, list[str]]]]:
        """``qnfull/``: node id -> collection id -> channel -> the sealed segments it serves in full."""
        return {n: parse_full(raw) for n, raw in self._full.items().items()}

    def _segment_records(self, collections: Container[int]) -> Iterator[tuple[int, str, dict]]:
        """(collection id, channel, ``seg/`` value) of each persisted segment of ``collections`` (the
        others' values are not parsed)."""
        for key, raw in self._segs.items().items():
            where = parse_segment_key(SEG_PREFIX + key)
            if where is not None and where[0] in collections:
                yield where[0], where[1], json.loads(raw)

    def sealed_segments(self, collection_id: int) -> dict[str, dict]:
        """The collection's persisted segments (``seg/`` values, with their ``channel``) by prefix."""
        return {seg["prefix"]: {**seg, "channel": ch} for _, ch, seg in self._segment_records((collection_id,))}

    def pin(self, collection_id: int, replica_id: int, pins: dict[str, dict[str, str]]) -> None:
        """Pin sealed segments (channel -> prefix -> node id) of a replica to nodes at the next pass
        (``Replica.pinned``)."""
        with self._pins_lock:
            mine = self._pending_pins.setdefault(collection_id, {}).setdefault(replica_id, {})
            for ch, segs in pins.items():
                mine.setdefault(ch, {}).update(segs)
        self._wake.set()

    def _take_pins(self, current: dict[int, Assignment]) -> None:
        with self._pins_lock:
            pending, self._pending_pins = self._pending_pins, {}
        for cid, replicas in pending.items():
            if cid not in current:
                continue
            current[cid] = Assignment.from_json(self.current[cid])  # a copy of its own: the cached one stays as written
            for r in current[cid].replicas:
                for ch, segs in replicas.get(r.id, {}).items():
                    r.pinned.setdefault(ch, {}).update(segs)

    def _current(self) -> dict[int, Assignment]:
        """The assignments that stand, parsed (only those written since the last pass are parsed again).
        ``plan`` copies what it changes, so these stay equal to what was written."""
        out = {}
        for cid, raw in self.current.items():
            hit = self._assigned.get(cid)
            if hit is None or hit[0] != raw:
                hit = self._assigned[cid] = (raw, Assignment.from_json(raw))
            out[cid] = hit[1]
        for cid in [cid for cid in self._assigned if cid not in self.current]:
            del self._assigned[cid]
        return out

    def _sealed_of(self, loaded: Container[int]) -> Sealed:
        """collection id -> channel -> segment prefix -> rows, of the ``loaded`` collections."""
        if self._segments.changed():
            sealed: Sealed = {}
            for where in self._segments.get().values():
                if where is not None:
                    cid, ch, prefix, rows = where
                    sealed.setdefault(cid, {}).setdefault(ch, {})[prefix] = rows
            self._sealed = sealed
        return {cid: chs for cid, chs in self._sealed.items() if cid in loaded}

    def tick(self) -> float | None:
        loaded: Loaded = dict(state for state in self.loaded_states.get().values() if state is not None)
        nodes = sorted(self._nodes.items())
        served = {n: report for n, report in self._reports.get().items() if n in nodes}
        groups = self._node_groups(nodes)
        now = time.monotonic()
        settled = {cid for cid in loaded if now - self._changed_at.get(cid, -REBALANCE_COOLDOWN) >= REBALANCE_COOLDOWN}
        sealed = self._sealed_of(loaded)
        # ``plan`` is pure: with the same inputs as the last plan and the assignments it wrote still standing,
        # it would write nothing. Most changes that wake a pass leave them so (a collection created or indexed
        # but not loaded, this planner's own writes coming back through its mirror), and a plan goes over
        # every loaded collection: comparing the inputs is far cheaper
        inputs = (loaded, nodes, served, groups, settled, sealed, dict(self.current))
        with self._pins_lock:
            pins = bool(self._pending_pins)
        if pins or inputs != self._planned:
            self.plans += 1
            current = self._current()
            self._take_pins(current)
            wanted = plan(loaded, nodes, current, served, groups, settled, sealed, self.spread_min_rows,
                          self.replica_per_node)
            for cid in self.commit(self._encoded(wanted)):
                self._changed_at[cid] = now
            self._planned = (*inputs[:-1], dict(self.current))
        for cid in [cid for cid in self._changed_at if cid not in loaded]:  # released or dropped: nothing to settle
            del self._changed_at[cid]
        # a collection still cooling down is balanced once it settles: the next pass is due then
        cooling = [at + REBALANCE_COOLDOWN for at in self._changed_at.values() if at + REBALANCE_COOLDOWN > now]
        return min(cooling) if cooling else None

    def _encoded(self, wanted: dict[int, Assignment]) -> dict[int, bytes]:
        """Each wanted assignment's record: the stored bytes of one equal to the assignment that stands
        (``_current`` parsed them), a new encoding only for those the pass changed. A pass changes a
        collection or two, and encoding every loaded collection's on each of the passes that loading one
        takes made loading N collections quadratic (the coord's busiest thread with a few hundred)."""
        out = {}
        for cid, a in wanted.items():
            hit = self._assigned.get(cid)
            if hit is not None and hit[1] == a:
                out[cid] = hit[0]
            else:
                out[cid] = a.to_json()
                self.encodes += 1
        return out


def _load_state(_key: str, raw: bytes) -> tuple[int, tuple] | None:
    """A ``coll/`` record -> (collection id, (channels, replica number, resource groups)) when loaded, else None."""
    info = CollectionInfo.from_json(raw)
    return (info.id, (info.channels, info.replica_number, info.resource_groups)) if info.loaded else None


def _segment_rows(key: str, raw: bytes) -> tuple[int, str, str, int] | None:
    """A ``seg/`` record -> (collection id, channel, segment prefix, rows); None for another key or a
    record it cannot read (logged: its segment is left to its channel's leader)."""
    where = parse_segment_key(SEG_PREFIX + key)
    if where is None:
        return None
    try:
        seg = json.loads(raw)
        return where[0], where[1], seg["prefix"], int(seg["num_rows"])
    except (ValueError, KeyError, TypeError):
        log.warning("assignment: %s%s is not a segment record I can read", SEG_PREFIX, key)
        return None

"""``QueryNodeRouter``: a proxy's view of the query nodes of a cluster, with the methods of an
in-process ``QueryNode`` so the Milvus service code is the same in both deployments.

Where data lives is the coord's word (``vecdb.coord.assignment``): each loaded collection has
replicas, and in each replica every shard channel has one owner node. The router mirrors the
assignments (``assign/``), what each node reports it serves (``qnserve/``) and the nodes'
sessions (``session/querynode/``, their addresses). A read goes to one replica whose every
channel's owner serves it (replicas in turn); each owner gets the read for its channels only and
the router merges the answers (``vecdb.proxy.merge``) into what one node holding everything
would answer. A node that does not answer, or no longer holds a channel it was sent, makes the
read try the next replica, then wait for the assignment to change (a failover: the coord gives
the channel to another node, which loads it) for up to ``READ_WAIT`` seconds.

Reads carry, per channel, the log position the node must have applied first: the channel's log
end for Strong, the proxy's own writes (and, for Bounded, recent log ends) below it
(``vecdb.proxy.consistency``).

A proxy with a query node in its own process (``vecdb node``, ``vecdb.node``) gives the router
that node (``local``: its node id and an in-process client, ``vecdb.node.LocalQueryNode``): the
router calls it directly, with no RPC and no serialization, and tries first a replica that node
serves entirely (with ``querynode.replica_per_node`` every node has one), so such a proxy's reads
never leave its process while its node serves its replica; other nodes are reached over RPC as
usual (the fallback when its own replica cannot answer).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol

from vecdb import bm25, errors, group_partials, timestamp, top_rows
from vecdb.coord.assignment import (
    ASSIGN_PREFIX,
    FULL_PREFIX,
    SERVE_PREFIX,
    Assignment,
    Replica,
    parse_full,
    parse_served,
)
from vecdb.discovery import SessionWatch, node_number
from vecdb.proxy import consistency
from vecdb.proxy.batching import SearchBatcher, batch_key
from vecdb.proxy.consistency import ReadLevel
from vecdb.proxy.merge import merge_hits, merge_query
from vecdb.querynode.rpc import RemoteQueryNode
from vecdb.querynode.shard import ReadScope
from vecdb.storage.base import Log, MetaStore
from vecdb.storage.watch import Mirror

log = logging.getLogger(__name__)

DOWN_SECONDS = 5.0  # a node that did not answer is tried after the others for this long
READ_WAIT = 15.0  # how long a read waits for some replica to be served completely
# a read whose snapshot is older (a query iterator's later pages; not a Bounded read, which reuses a
# timestamp up to vecdb.proxy.consistency.BOUNDED_STALENESS old) asks every node of a spread channel
OLD_SNAPSHOT_S = 1.5
LOAD_WAIT = 120.0  # how long load waits for every replica to be served
# how long load waits, once replica_number replicas are served, for the coord's further replicas (one per
# node with querynode.replica_per_node) to be served too: a slow or stuck node does not fail the load
EXTRA_REPLICA_WAIT = 10.0
RELEASE_WAIT = 10.0  # how long release waits for the nodes to let go
GONE_COUNTS_KEPT = 64  # read counts (``reads_served``) of nodes whose session ended that stay, the latest kept
RETIRE_SECONDS = 120.0  # a client swapped for the in-process node (``set_local``) stays open this long

# (node id, its channels, the part of each it reads where a channel's sealed segments are spread over several
# nodes) covering every row of a collection once
Plan = list[tuple[str, list[str], dict[str, ReadScope]]]


class NodeClient(Protocol):
    """A query node as the router reaches it (``RemoteQueryNode``, or a test's stand-in): the
    reads of ``QueryNodeRole`` (called by name, with ``wait`` and ``channels``) plus ``close``."""

    def close(self) -> None: ...


class QueryNodeRouter:
    def __init__(self, log: Log, meta: MetaStore, connect: Callable[[str], Any] = RemoteQueryNode,
                 loaded_in_catalog: Callable[[int], bool] | None = None,
                 written: Callable[[list[str]], dict[str, int]] | None = None,
                 local: tuple[str, NodeClient] | None = None,
                 fresh_ts: Callable[[list[str]], int] | None = None):
        """``connect(address)`` makes a node's client (tests: stand-ins).

        ``local``: (node id, client) of the query node in this process (``set_local``).

        ``loaded_in_catalog(collection id)``: whether the catalog says the collection is loaded
        (with several proxies, or after a restart, the catalog is the truth).

        ``written(channels)``: the positions this proxy's own writes reached (its ``ShardWriter``),
        which is what reads below Strong wait for (vecdb.proxy.consistency).

        ``fresh_ts(channels)``: a new snapshot timestamp, which a read retried after a node failed takes
        unless its client chose its snapshot (``_read``)."""
        self.log = log
        self._connect = connect
        self._loaded_in_catalog = loaded_in_catalog or (lambda cid: True)
        self._written = written or (lambda channels: {})
        self._fresh_ts = fresh_ts
        self._ends_seen: dict[str, tuple[float, int]] = {}  # channel -> (when, log end) for Bounded reads
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when nodes, assignments or reports change
        self._nodes: dict[str, NodeClient] = {}  # node id -> client
        self._addresses: dict[str, str] = {}
        self._down_until: dict[str, float] = {}
        self._retired: list[tuple[float, NodeClient]] = []
        self._served_count: dict[str, int] = {}
        self._local: tuple[str, NodeClient] | None = local
        self._parsed: dict[str, tuple[bytes, Any]] = {}  # cache: key -> (raw, parsed)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="router-fanout")
        # searches merge once as many calls of their kind are in flight as there are nodes to take them: one
        # when a query node in this process takes them all (its replica first, ``set_local``)
        self._batcher = SearchBatcher(lambda: 1 if self._local is not None else max(1, len(self._nodes)))
        self._mirrors: list[Mirror] = []
        self._sessions: SessionWatch | None = None
        try:
            self._sessions = SessionWatch(meta, "querynode", self._join, self._leave)
            self._assigned = Mirror(meta, ASSIGN_PREFIX, self._notify)
            self._mirrors.append(self._assigned)
            self._served = Mirror(meta, SERVE_PREFIX, self._notify)
            self._mirrors.append(self._served)
            self._full = Mirror(meta, FULL_PREFIX, self._notify)
            self._mirrors.append(self._full)
        except BaseException:
            self.close()
            raise

    # --- membership and state --------------------------------------------------------
    def set_local(self, node_id: str, client: NodeClient) -> None:
        """The query node ``node_id`` runs in this process: calls to it go to ``client`` (in-process),
        and replicas it serves entirely are tried first. Set before its session appears (else a
        client over RPC, made when it joined, is swapped for ``client``)."""
        with self._changed:
            self._local = (node_id, client)
            old = self._nodes.get(node_id)
            if old is not None and old is not client:
                self._nodes[node_id] = client
                self._retired.append((time.monotonic(), old))
            self._changed.notify_all()

    @property
    def local_node(self) -> str | None:
        """The id of the query node in this process, if any."""
        return None if self._local is None else self._local[0]

    def _join(self, key: str, address: str) -> None:
        local = self._local
        node = local[1] if local is not None and local[0] == key else self._connect(address)
        with self._changed:
            self._nodes[key] = node
            self._addresses[key] = address
            self._down_until.pop(key, None)
            self._changed.notify_all()
        log.info("query node %s joined at %s", key, address)

    def _leave(self, key: str) -> None:
        local = self._local
        with self._changed:
            node = self._nodes.pop(key, None)
            self._down_until.pop(key, None)
            # a restarted node comes back under a new id (one without --node-id): what is kept per node goes, for
            # every node gone (a read that ended after its node left may have parsed it again); the read counts
            # of the last GONE_COUNTS_KEPT nodes gone stay (one back under its id counts on)
            self._addresses.pop(key, None)
            gone = [k for k in self._served_count if k not in self._nodes]
            for k in gone[:max(0, len(gone) - GONE_COUNTS_KEPT)]:
                del self._served_count[k]
            for k in [k for k in self._parsed if k[0] in "sf" and k[1:] not in self._nodes]:
                self._parsed.pop(k, None)
            now = time.monotonic()
            stale = [n for t, n in self._retired if now - t > RETIRE_SECONDS]
            self._retired = [(t, n) for t, n in self._retired if now - t <= RETIRE_SECONDS]
            self._changed.notify_all()
        # a node whose session ended may hold calls without answering them (stopped, cut off): its client is
        # closed at once, which ends the calls in flight on it (ServiceUnavailable), so their reads go to
        # another replica or the channels' next owner (``_read``) instead of waiting out the RPC timeout
        # (60 s: reads stalled that long on a SIGSTOPped node though another replica held every channel)
        if node is not None and not (local is not None and local[1] is node):
            stale.append(node)
        for n in stale:
            n.close()
        if node is not None:
            log.info("query node %s left", key)

    def forget(self, collection_id: int, channels: list[str]) -> None:
        """A dropped collection (the catalog's ``on_drop``, on every proxy): its parsed assignment and its
        channels' recent log ends go (a channel's name is never used again: it names its collection's id)."""
        with self._lock:
            self._parsed.pop(f"a{collection_id}", None)
            for ch in channels:
                self._ends_seen.pop(ch, None)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _parse(self, key: str, raw: bytes, parse):
        hit = self._parsed.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        value = parse(raw)
        self._parsed[key] = (raw, value)
        return value

    def assignment(self, collection_id: int) -> Assignment | None:
        raw = self._assigned.get(str(collection_id))
        return None if raw is None else self._parse(f"a{collection_id}", raw, Assignment.from_json)

    def _serving(self) -> dict[str, dict[int, dict[str, int]]]:
        """node id -> collection id -> channels it reports holding (live rows)."""
        return {n: self._parse(f"s{n}", raw, parse_served) for n, raw in self._served.items().items()}

    def _fulls(self) -> dict[str, dict[int, dict[str, list[str]]]]:
        """node id -> collection id -> channel -> the sealed segments it holds in full."""
        return {n: self._parse(f"f{n}", raw, parse_full) for n, raw in self._full.items().items()}

    def node_ids(self) -> list[str]:
        """The query nodes with a session."""
        with self._lock:
            return sorted(self._nodes)

    def node_addresses(self) -> dict[str, str]:
        """The query nodes with a session: node id -> address."""
        with self._lock:
            return {k: self._addresses.get(k, "") for k in self._nodes}

    def reads_served(self) -> dict[str, int]:
        """Reads each node answered (a read over several nodes counts for each), by node id."""
        with self._lock:
            return dict(self._served_count)

    def plans(self, collection_id: int, every_node: bool = False) -> list[Plan]:
        """The replicas that can answer a read now (every channel's owner live and serving it),
        each as (node, channels) pairs; one served entirely by this process's own query node first
        (``set_local``), replicas with a node marked down last, the others in turn. A channel is read in
        parts (``ReadScope``) where the coord places some of its sealed segments on other nodes, or
        where another node still holds in full a segment its leader does not (a hand-over either way,
        placed segments included: the coord may place nothing any more while the leader still loads).
        ``every_node`` (a read at an older snapshot): each other node of the replica that holds the
        channel is asked too, with no segment named: it reads the sources of a compaction made since
        that it holds in full (vecdb.querynode.shard.ReadScope.select)."""
        a = self.assignment(collection_id)
        if a is None:
            return []
        serving = self._serving()
        fulls = self._fulls() if any(len(r.nodes) > 1 for r in a.replicas) else {}
        with self._lock:
            nodes = set(self._nodes)
            down = {n for n, t in self._down_until.items() if t > time.monotonic()}
        out: list[Plan] = []
        for r in a.replicas:
            groups: dict[str, list[str]] = {}
            scopes: dict[str, dict[str, ReadScope]] = {}
            for ch, owner in sorted(r.channels.items()):
                if owner is None or owner not in nodes or ch not in serving.get(owner, {}).get(collection_id, {}):
                    break
                groups.setdefault(owner, []).append(ch)
                routed = _route_segments(r, ch, owner, collection_id, fulls, nodes) if fulls else {}
                readers = set(routed.values())
                if every_node:  # the other nodes that hold the channel (``qnfull/`` names each, full segments or not)
                    readers |= {n for n in r.nodes if n != owner and n in nodes
                                and ch in fulls.get(n, {}).get(collection_id, {})}
                if r.segments.get(ch) or readers:
                    scopes.setdefault(owner, {})[ch] = ReadScope(True, frozenset(routed))
                    for n in sorted(readers):
                        groups.setdefault(n, []).append(ch)
                        scopes.setdefault(n, {})[ch] = ReadScope(False, frozenset(p for p, m in routed.items()
                                                                                  if m == n))
            else:
                if groups:
                    out.append([(n, chs, scopes.get(n, {})) for n, chs in groups.items()])
        if len(out) > 1:
            first = next(self._turn) % len(out)
            out = out[first:] + out[:first]
        local = self.local_node
        # stable: the turn order stays among equals
        return sorted(out, key=lambda p: (any(part[0] in down for part in p),
                                          local is None or any(part[0] != local for part in p)))

    # --- calls -----------------------------------------------------------------------
    def _read(self, info, call: Callable[[Plan, int, dict[str, int]], Any], ts: int = 0,
              end: dict[str, int] | None = None):
        """``call(plan, ts, end)`` on a replica that can answer; on a node that does not answer or lacks a
        channel, the next replica; when none can, waits for the assignment to change, up to
        ``READ_WAIT`` seconds. ``ts``: the read's snapshot; one older than ``OLD_SNAPSHOT_S`` (a query
        iterator's later pages) asks every node following a spread channel (``plans``). ``end``: the
        positions the read waits for (``_end``), which a channel read in parts gets if it has none.

        A try after one that failed takes a fresh snapshot and positions, unless the client chose the
        snapshot (``consistency.snapshot_pinned``): the node that took a channel over loaded its segments
        as compacted since, without the rows a compaction dropped that the old snapshot still sees (a Strong
        count in flight while the channel's leader was killed answered 418 rows of 550)."""
        deadline = time.monotonic() + READ_WAIT
        error: errors.VecdbError | None = None
        every_node = 0 < ts and timestamp.physical_ms(ts) < (time.time() - OLD_SNAPSHOT_S) * 1000
        fresh_ts = self._fresh_ts if end is not None and 0 < ts and not consistency.snapshot_pinned() else None
        while True:
            for plan in self.plans(info.id, every_node):
                if error is not None and fresh_ts is not None:
                    ts, end = max(ts, fresh_ts(list(info.channels))), self._end(info)
                if end is not None:
                    self._cut_parts(plan, end)
                try:
                    return call(plan, ts, end or {})
                except (errors.ServiceUnavailable, errors.CollectionNotLoaded) as e:
                    error = e
            if not self._loaded_in_catalog(info.id):
                raise errors.CollectionNotLoaded(f"collection not loaded[collection={info.name}]")
            left = deadline - time.monotonic()
            if left <= 0:
                if isinstance(error, errors.CollectionNotLoaded):  # a node taking a channel over, still loading
                    raise errors.ServiceUnavailable(
                        f"collection {info.name} is loaded, but no replica answered within {READ_WAIT:g} s: its "
                        f"channels are moving to other query nodes (last: {error.message})")
                raise error or errors.ServiceUnavailable(
                    f"no replica of collection {info.name} is served by live query nodes: "
                    f"query nodes {self.node_ids()}, assignment {self._assigned.get(str(info.id))!r}")
            with self._changed:
                self._changed.wait(min(left, 0.2))

    def _on_nodes(self, plan: Plan, fn: Callable[[Any, list[str], dict[str, ReadScope] | None], Any]) -> list:
        """``fn(client, channels, scopes)`` on every node of ``plan`` (in parallel when several); their
        results in plan order. A node that does not answer is marked down."""
        def one(key: str, channels: list[str], scopes: dict[str, ReadScope]):
            with self._lock:
                node = self._nodes.get(key)
            if node is None:
                raise errors.ServiceUnavailable(f"query node {key} left")
            try:
                out = fn(node, channels, scopes or None)
            except errors.ServiceUnavailable:
                with self._lock:
                    self._down_until[key] = time.monotonic() + DOWN_SECONDS
                raise
            with self._lock:
                self._served_count[key] = self._served_count.get(key, 0) + 1
            return out
        if len(plan) == 1:
            return [one(*plan[0])]
        futures = [self._pool.submit(one, *part) for part in plan[1:]]
        results = [one(*plan[0])]
        error = None
        for f in futures:
            try:
                results.append(f.result())
            except BaseException as e:  # noqa: BLE001 (re-raised below, after every call ended)
                error = error or e
        if error is not None:
            raise error
        return results

    def _end(self, info) -> dict[str, int]:
        """The positions a read must find applied, by the level of the read in progress."""
        level = consistency.current()
        if level == ReadLevel.STRONG:
            return {ch: self.log.last_position(ch) for ch in info.channels}
        wait = self._written(info.channels)
        if level == ReadLevel.BOUNDED:
            for ch, end in self._recent_ends(info.channels).items():
                wait[ch] = max(end, wait.get(ch, 0))
        return wait

    def _cut_parts(self, plan: Plan, end: dict[str, int]) -> None:
        """A channel read in parts (on several nodes) is read by each as of one position (``ReadScope.position``):
        a Session or Eventually read with none (this proxy did not write it) takes a recent log end, as a
        Bounded read does. Each node at its own pace showed an upsert's old row deleted on one and its new row
        not yet applied on the other: neither row. ``end`` gets it, so every node and a retry use the same."""
        parted = [ch for _, _, scopes in plan for ch in scopes if ch not in end]
        if parted:
            end.update(self._recent_ends(sorted(set(parted))))

    def _recent_ends(self, channels: list[str]) -> dict[str, int]:
        """Log ends looked up at most ``BOUNDED_STALENESS`` seconds ago (looked up again if older)."""
        now = time.monotonic()
        out = {}
        for ch in channels:
            seen = self._ends_seen.get(ch)
            if seen is None or now - seen[0] > consistency.BOUNDED_STALENESS:
                seen = self._ends_seen[ch] = (now, self.log.last_position(ch))
            out[ch] = seen[1]
        return out

    # --- reads -------------------------------------------------------------------
    def search(self, info, spec, partition_ids, output_fields):
        """Concurrent one-query searches that agree on everything else go to the nodes as one
        request when calls of theirs are already in flight (``vecdb.proxy.batching``)."""
        first_end = self._end(info)

        def run(spec):
            def call(plan: Plan, ts: int, end: dict[str, int]):
                at = spec if ts == spec.ts else replace(spec, ts=ts)
                return search_on(plan, with_bm25_stats(plan, at, end), end)

            def with_bm25_stats(plan: Plan, spec, end: dict[str, int]):
                """A BM25 search over several nodes scores with one set of statistics, the whole search's."""
                if spec.metric != "BM25" or len(plan) < 2:
                    return spec
                stats = bm25.add(self._on_nodes(plan, lambda n, c, s: n.bm25_statistics(
                    info, spec, partition_ids, wait=_only(end, c), channels=c, scopes=s)))
                return replace(spec, params={**(spec.params or {}), "bm25_stats": stats})

            def search_on(plan: Plan, spec, end: dict[str, int]):
                if len(plan) == 1:
                    return self._on_nodes(plan, lambda n, c, s: n.search(info, spec, partition_ids, output_fields,
                                                                         wait=_only(end, c), channels=c, scopes=s))[0]
                each = replace(spec, limit=spec.limit + spec.offset, offset=0)
                parts = self._on_nodes(plan, lambda n, c, s: n.search(info, each, partition_ids, output_fields,
                                                                      wait=_only(end, c), channels=c, scopes=s))
                return merge_hits(parts, len(spec.queries), spec.limit, spec.offset, spec.metric)
            return self._read(info, call, spec.ts, first_end)
        return self._batcher.search(batch_key(info, spec, partition_ids, output_fields, first_end), spec, run)

    def query(self, info, ts, flt, partition_ids, output_fields, limit, offset, *, sealed_only=False):
        end = self._end(info)
        pk = info.schema.primary_field.name

        def call(plan: Plan, ts: int, end: dict[str, int]):
            if len(plan) == 1:
                return self._on_nodes(plan, lambda n, c, s: n.query(info, ts, flt, partition_ids, output_fields, limit,
                                                                    offset, wait=_only(end, c), channels=c,
                                                                    scopes=s, sealed_only=sealed_only))[0]
            fields = list(output_fields) if pk in output_fields else [*output_fields, pk]
            each = None if limit is None else limit + offset
            parts = self._on_nodes(plan, lambda n, c, s: n.query(info, ts, flt, partition_ids, fields, each, 0,
                                                                 wait=_only(end, c), channels=c, scopes=s,
                                                                 sealed_only=sealed_only))
            return merge_query(parts, pk, limit, offset, list(output_fields))
        return self._read(info, call, ts, end)

    def query_partials(self, info, ts, flt, partition_ids, spec, *, sealed_only=False):
        """Each node's partials (``vecdb.group_partials``), merged."""
        end = self._end(info)

        def call(plan: Plan, ts: int, end: dict[str, int]):
            parts = self._on_nodes(plan, lambda n, c, s: n.query_partials(info, ts, flt, partition_ids, spec,
                                                                          wait=_only(end, c), channels=c, scopes=s,
                                                                          sealed_only=sealed_only))
            return parts[0] if len(parts) == 1 else group_partials.merge(info.schema, spec, parts)
        return self._read(info, call, ts, end)

    def query_top(self, info, ts, flt, partition_ids, output_fields, order, limit, offset, *, sealed_only=False):
        """Each node's first ``limit + offset`` rows by ``order`` (``vecdb.top_rows``), merged and paged:
        whatever rows a node sends (an older one: every matching row), the first ones are kept."""
        end = self._end(info)
        spec = top_rows.TopSpec.of(info.schema, order, limit + offset)

        def call(plan: Plan, ts: int, end: dict[str, int]):
            parts = self._on_nodes(plan, lambda n, c, s: n.query_top(info, ts, flt, partition_ids, output_fields,
                                                                     order, spec.k, 0, wait=_only(end, c), channels=c,
                                                                     scopes=s, sealed_only=sealed_only))
            return top_rows.merge(spec, parts, list(output_fields), offset)
        return self._read(info, call, ts, end)

    def count(self, info, ts, flt, partition_ids, *, sealed_only=False) -> int:
        end = self._end(info)
        return self._read(info, lambda plan, ts, end: sum(self._on_nodes(
            plan, lambda n, c, s: n.count(info, ts, flt, partition_ids, wait=_only(end, c), channels=c, scopes=s,
                                          sealed_only=sealed_only))), ts, end)

    # --- load state ------------------------------------------------------------
    def load(self, info) -> None:
        """Wait until the coord placed every replica of the collection (the catalog, saved before
        this call, says it is loaded) and their nodes serve it: ``replica_number`` of them (fewer
        with fewer nodes) within ``LOAD_WAIT`` s, else an error; the coord's further replicas
        (``querynode.replica_per_node``) for up to ``EXTRA_REPLICA_WAIT`` s more, without an error."""
        live = len(self.node_ids())
        if info.replica_number > live:
            raise errors.InvalidParameter(
                f"failed to load collection {info.name}: {info.replica_number} replicas need as many query "
                f"nodes, {live} live (resource group node not enough)")
        start = time.monotonic()
        deadline = start + LOAD_WAIT
        with self._changed:
            while True:
                a = self.assignment(info.id)
                want = min(info.replica_number, len(self._nodes))
                if a is not None and len(a.replicas) >= want:
                    served = len(self._unlocked(self.plans, info.id))
                    placed = sum(1 for r in a.replicas if r.nodes)
                    if served >= want and (served >= placed or time.monotonic() - start >= EXTRA_REPLICA_WAIT):
                        return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.ServiceUnavailable(f"collection {info.name} was not loaded within {LOAD_WAIT:.0f} s: "
                                                    f"assignment {self._assigned.get(str(info.id))!r}")
                self._changed.wait(min(left, 0.2))

    def _unlocked(self, fn: Callable[..., Any], *args) -> Any:
        """``fn(*args)`` with the lock let go (called under it: a wait on ``_changed``; ``fn`` takes it)."""
        self._lock.release()
        try:
            return fn(*args)
        finally:
            self._lock.acquire()

    def release(self, collection_id: int) -> None:
        """Wait (a while) until no node reports the collection: the coord withdraws its assignment
        once the catalog says released."""
        if self._loaded_in_catalog(collection_id):
            return  # loaded again meanwhile (or the caller had not saved the release): nothing to wait for
        deadline = time.monotonic() + RELEASE_WAIT
        with self._changed:
            while any(collection_id in held for held in self._unlocked(self._serving).values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("collection %s: still held by query nodes %s s after its release", collection_id,
                                RELEASE_WAIT)
                    return
                self._changed.wait(min(left, 0.2))

    def is_loaded(self, collection_id: int) -> bool:
        return self._loaded_in_catalog(collection_id)

    def _all(self, method: str, *args) -> None:
        """On every node that answers (a node that does not reads the catalog when it loads)."""
        with self._lock:
            nodes = list(self._nodes.items())
        for key, node in nodes:
            try:
                getattr(node, method)(*args)
            except errors.ServiceUnavailable:
                with self._lock:
                    self._down_until[key] = time.monotonic() + DOWN_SECONDS

    def refresh_info(self, info) -> None:
        self._all("refresh_info", info)

    def schedule_indexes(self, info) -> None:
        self._all("schedule_indexes", info)

    def drop_partition(self, collection_id: int, partition_id: int) -> None:
        self._all("drop_partition", collection_id, partition_id)

    # --- state for flush, index progress and statistics -------------------------------
    def growing_rows(self, channel: str) -> int:
        """The channel owner's count (the seal policy, after each write: it never waits; 0 when no
        live owner serves the channel now)."""
        cid = int(channel[1:channel.index("-")])
        for plan in self.plans(cid):
            owner: Plan = [(k, chs, {}) for k, chs, scopes in _leaders(plan) if channel in chs]
            try:
                return self._on_nodes(owner, lambda n, c, s: n.growing_rows(channel))[0]
            except (errors.ServiceUnavailable, errors.CollectionNotLoaded):
                continue
        return 0

    def index_state(self, collection_id: int, field_name: str) -> tuple[int, int]:
        def call(plan: Plan):
            # each node lists the sealed segments it holds; a segment in a hand-over, on two nodes for a
            # moment, counts once (indexed when either has its index), one not persisted yet (id 0) each time
            parts = self._on_nodes(plan, lambda n, c, s: n.index_segments(collection_id, field_name, channels=c))
            once: dict[int, tuple[int, int]] = {}
            done = total = 0
            for sid, rows, indexed in (seg for part in parts for seg in part):
                if not sid:
                    done, total = done + indexed, total + rows
                elif sid not in once or indexed > once[sid][1]:
                    once[sid] = (rows, indexed)
            return done + sum(i for _, i in once.values()), total + sum(r for r, _ in once.values())
        return self._read(_Named(collection_id, f"id {collection_id}"), lambda plan, ts, end: call(plan))

    def segment_infos(self, info) -> list[dict]:
        """Every replica's segments, each once; with ``node_ids``: the nodes holding it (one per replica).
        A replica with a node that does not answer is left out; when none answers, this waits for
        one as a read does."""
        def ask(plan: Plan) -> list[tuple[str, str, list[dict]]]:
            # channel by channel: a segment with no id yet (growing, or sealed and not persisted) is known
            # by its channel and partition, as every replica holds the same one
            segs = self._on_nodes(plan, lambda n, c, s: [(ch, n.segment_infos(info, channels=[ch])) for ch in c])
            return [(part[0], ch, s) for part, per_channel in zip(plan, segs) for ch, s in per_channel]
        answers = []
        for plan in self.plans(info.id):
            try:
                answers += ask(plan)
            except (errors.ServiceUnavailable, errors.CollectionNotLoaded):
                continue
        if not answers:
            answers = self._read(info, lambda plan, ts, end: ask(plan))
        out: dict[tuple, dict] = {}
        for key, channel, segs in answers:
            unnamed: dict[tuple, int] = {}
            for seg in segs:
                ident: tuple = (seg["segment_id"],)
                if not seg["segment_id"]:  # the n-th of its channel, partition and state, in each replica
                    group = (channel, seg["partition_id"], seg["state"])
                    unnamed[group] = unnamed.get(group, 0) + 1
                    ident = (*group, unnamed[group])
                merged = out.setdefault(ident, {**seg, "node_ids": []})
                merged["node_ids"].append(node_number(key))
        return list(out.values())

    def replicas(self, collection_id: int) -> list[dict]:
        """The collection's replicas as the coord placed them: id, node numbers, resource group,
        and for each channel its owner's (number, address); only live nodes (a session), and only the
        replicas with one: a replica whose nodes all died (say its one node, in the middle of a load)
        serves nothing until a node joins it (the coord gives a joining node to the replica with the
        fewest), so it is not shown empty meanwhile; the replicas that serve are."""
        a = self.assignment(collection_id)
        if a is None:
            return []
        with self._lock:
            addresses = dict(self._addresses)
            live = set(self._nodes)
        out = []
        for r in a.replicas:
            nodes = [n for n in r.nodes if n in live]
            if nodes:
                out.append({"id": r.id, "nodes": [node_number(n) for n in nodes], "resource_group": r.resource_group,
                            "leaders": {ch: (node_number(o), addresses.get(o, ""))
                                        for ch, o in r.channels.items() if o in live}})
        return out

    def serving_nodes(self) -> list[tuple[int, str]]:
        """The query nodes with a session, numbered from their node ids (``node_number``), in id order."""
        with self._lock:
            return sorted((node_number(k), self._addresses.get(k, k)) for k in self._nodes)

    def close(self) -> None:
        """Stop watching, then close every node's client."""
        if self._sessions is not None:
            self._sessions.close()
        for m in self._mirrors:
            m.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            nodes = [*self._nodes.values(), *(n for _, n in self._retired)]
            self._nodes, self._retired = {}, []
        for node in nodes:
            node.close()


class _Named:
    """Enough of a CollectionInfo for ``_read`` (id and name)."""

    def __init__(self, collection_id: int, name: str):
        self.id, self.name = collection_id, name


def _route_segments(r: Replica, channel: str, owner: str, collection_id: int,
                    fulls: dict[str, dict[int, dict[str, list[str]]]], nodes: set[str]) -> dict[str, str]:
    """Sealed segments of ``channel`` that nodes of ``r`` other than its leader ``owner`` serve:
    prefix -> node. The node a segment is placed on when it reports it held; else, during a
    hand-over, another node that still holds it while the leader does not."""
    def full(n: str) -> list[str]:
        return fulls.get(n, {}).get(collection_id, {}).get(channel, [])
    others = [n for n in r.nodes if n != owner and n in nodes]
    routed = {p: n for p, n in r.segments.get(channel, {}).items() if n in others and p in full(n)}
    owner_full = set(full(owner))
    for n in others:
        for p in full(n):
            if p not in routed and p not in owner_full:
                routed[p] = n
    return routed


def _leaders(plan: Plan) -> Plan:
    """The plan without the nodes that serve only sealed segments of others' channels (what only a
    channel's leader knows: its growing rows)."""
    return [(n, [ch for ch in chs if scopes.get(ch) is None or scopes[ch].rest], {})
            for n, chs, scopes in plan if any(scopes.get(ch) is None or scopes[ch].rest for ch in chs)]


def _only(end: dict[str, int], channels: Sequence[str]) -> dict[str, int]:
    return {ch: end[ch] for ch in channels if ch in end}

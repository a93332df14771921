"""``QueryNodeRouter``: a proxy's view of the query nodes of a cluster, with the methods of an
in-process ``QueryNode`` so the Milvus service code is the same in both deployments.

The nodes are found from their sessions (``session/querynode/<id>``, ``vecdb.discovery``): a
node that registers takes reads once it has loaded what the proxy has loaded, and one whose
session goes (a clean stop revokes it, a crash lets it expire) gets no more reads from then on.
Fixed addresses (``vecdb proxy --querynode``) override discovery.

Every node loads what the proxy loads (each is a full replica; assignment of channels to nodes
by the coord comes later, see docs/cluster.md). Reads go to the nodes in turn, skipping one
that does not answer, and carry the channels' current log ends, so the node answers only once
it applied every write acknowledged before the read began (Strong consistency, and so every
weaker level too).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from vecdb import errors
from vecdb.discovery import SessionWatch, node_number
from vecdb.proxy import consistency
from vecdb.proxy.consistency import ReadLevel
from vecdb.querynode.service import RemoteQueryNode
from vecdb.storage.base import Log, MetaStore

log = logging.getLogger(__name__)

DOWN_SECONDS = 5.0  # a node that did not answer gets no reads for this long
RETRY_SECONDS = 5.0  # how long a read waits for some node to answer when none does
RETIRE_SECONDS = 120.0  # a gone node's client stays open this long: a read may have picked it just before


class NodeClient(Protocol):
    """A query node as the router reaches it (``RemoteQueryNode``, or a test's stand-in): the
    reads of ``QueryNodeRole`` (called by name, with ``wait``) plus these."""

    def loaded(self) -> list[int]: ...

    def load(self, info: Any) -> None: ...

    def close(self) -> None: ...


class QueryNodeRouter:
    def __init__(self, log: Log, meta: MetaStore | None = None, addresses: list[str] | None = None,
                 connect: Callable[[str], NodeClient] = RemoteQueryNode,
                 loaded_in_catalog: Callable[[int], bool] | None = None,
                 written: Callable[[list[str]], dict[str, int]] | None = None):
        """The nodes with a session in ``meta``, or the fixed ``addresses`` instead (then the
        sessions are not read). ``connect(address)`` makes a node's client (tests: stand-ins).

        ``loaded_in_catalog(collection id)``: whether the catalog says the collection is loaded.
        With several proxies (or after a restart) that, not what this router loaded itself, is
        the truth: a collection loaded through another proxy is served here, one released there
        is not, and a node without a collection the catalog says is loaded loads it on its first
        read. Without it, the router's own loads and releases decide.

        ``written(channels)``: the positions this proxy's own writes reached (its ``ShardWriter``),
        which is what reads below Strong wait for (vecdb.proxy.consistency)."""
        if not addresses and meta is None:
            raise errors.InvalidParameter("a proxy needs the metadata store or query node addresses")
        self.log = log
        self._connect = connect
        self._loaded_in_catalog = loaded_in_catalog
        self._written = written or (lambda channels: {})
        self._ends_seen: dict[str, tuple[float, int]] = {}  # channel -> (when, log end) for Bounded reads
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeClient] = {}  # node id (or fixed address) -> client: the nodes taking reads
        self._joining: dict[str, NodeClient] = {}  # nodes loading what the proxy has loaded before they take reads
        self._addresses: dict[str, str] = {}  # node id (or fixed address) -> its address
        self._loaded: dict[int, Any] = {}  # collection id -> its latest info (None: learnt from a node)
        self._down_until: dict[str, float] = {}  # node -> when to try it again
        self._retired: list[tuple[float, NodeClient]] = []  # (when it left, client) of gone nodes
        self._served: Counter[str] = Counter()  # node -> reads it answered
        self._closed = False
        # nodes there at start are admitted before the constructor returns (what they serve counts as
        # loaded: a proxy restarted while its nodes kept running); later joins load in the background
        self._admit_inline = True
        self._sessions = None
        if addresses:
            for address in addresses:
                self._join(address, address)
        elif meta is not None:
            self._sessions = SessionWatch(meta, "querynode", self._join, self._leave)
        self._admit_inline = False

    # --- membership ----------------------------------------------------------------
    def _join(self, key: str, address: str) -> None:
        self._addresses[key] = address
        node = self._connect(address)
        with self._lock:
            self._joining[key] = node
        if self._admit_inline:
            self._admit(key, node)
        else:
            threading.Thread(target=self._admit, args=(key, node), name=f"admit querynode {key}", daemon=True).start()

    def _admit(self, key: str, node) -> None:
        """Load on a joining node what the proxy has loaded, then give it reads. The last check
        for something left to load and the admission are one step under the lock, and ``load``
        marks a collection loaded before it calls the nodes, so a load that runs meanwhile
        reaches the node one way or the other. A node that does not answer takes reads at once,
        marked down (reads try it after ``DOWN_SECONDS`` and load a collection it lacks on its
        first read)."""
        down = False
        try:
            have = set(node.loaded())
            with self._lock:
                for cid in have:
                    self._loaded.setdefault(cid, None)
            while todo := self._admit_or_list(key, node, have):
                for info in todo:
                    self._load_one(node, info)
                    have.add(info.id)
            return
        except errors.ServiceUnavailable as e:
            log.warning("query node %s joined but does not answer: %s", key, e)
            down = True
        except Exception:
            if not self._closed:
                log.exception("query node %s: loading it on join failed; reads load what it lacks", key)
        self._admit_or_list(key, node, None, down)

    def _admit_or_list(self, key: str, node: NodeClient, have: set[int] | None, down: bool = False) -> list:
        """The collections ``node`` lacks (``have``: what it has; None: admit it as it is); when
        none, it takes reads from now on (unless it left, or the router closed, meanwhile)."""
        with self._lock:
            if have is not None:
                todo = [info for cid, info in self._loaded.items() if cid not in have and info is not None]
                if todo:
                    return todo
            if self._joining.get(key) is node:
                del self._joining[key]
                self._nodes[key] = node
                if down:
                    self._down_until[key] = time.monotonic() + DOWN_SECONDS
                else:
                    self._down_until.pop(key, None)
                log.info("query node %s takes reads", key)
            return []

    @staticmethod
    def _load_one(node, info) -> None:
        try:
            node.load(info)
        except errors.ServiceUnavailable:
            raise
        except errors.VecdbError as e:  # dropped meanwhile, ...: its first read says what is wrong
            log.warning("query node could not load collection %s on join: %s", info.id, e)

    def _leave(self, key: str) -> None:
        with self._lock:
            node = self._nodes.pop(key, None)
            if node is None:
                node = self._joining.pop(key, None)
            self._down_until.pop(key, None)
            if node is not None:
                self._retired.append((time.monotonic(), node))
            now = time.monotonic()
            stale = [n for t, n in self._retired if now - t > RETIRE_SECONDS]
            self._retired = [(t, n) for t, n in self._retired if now - t <= RETIRE_SECONDS]
        for n in stale:
            n.close()
        if node is not None:
            log.info("query node %s left", key)

    def node_ids(self) -> list[str]:
        """The nodes taking reads (node ids; addresses when they were given)."""
        with self._lock:
            return sorted(self._nodes)

    def reads_served(self) -> dict[str, int]:
        """Reads each node answered, by node id (including nodes gone since)."""
        with self._lock:
            return dict(self._served)

    def _members(self) -> list[tuple[str, NodeClient]]:
        """The nodes taking reads (in the order they joined)."""
        with self._lock:
            return list(self._nodes.items())

    def _in_turn(self) -> list[tuple[str, NodeClient]]:
        """The nodes taking reads, starting at the next in turn."""
        nodes = self._members()
        if not nodes:
            return []
        first = next(self._turn) % len(nodes)
        return nodes[first:] + nodes[:first]

    # --- calls -----------------------------------------------------------------------
    def _read(self, method: str, *args, **kwargs):
        """A read on the next node in turn; a node that does not answer is skipped (for
        ``DOWN_SECONDS``) and the read goes to the next one, so any one live node serves. When
        none answers (or none is registered), the nodes of the moment are tried again for a
        few seconds (one may be restarting or joining)."""
        order = self._in_turn()
        now = time.monotonic()
        live = [(k, n) for k, n in order if self._down_until.get(k, 0) <= now]
        try:
            return self._try(live or order, method, args, kwargs)
        except errors.ServiceUnavailable:
            deadline = time.monotonic() + RETRY_SECONDS
            while True:
                time.sleep(0.2)
                try:
                    return self._try(self._in_turn(), method, args, kwargs)
                except errors.ServiceUnavailable:
                    if time.monotonic() > deadline:
                        raise

    def _try(self, nodes: list[tuple[str, NodeClient]], method: str, args, kwargs):
        error = errors.ServiceUnavailable("no query node is registered (session/querynode/)")
        for key, node in nodes:
            try:
                out = self._call(node, method, args, kwargs)
            except errors.ServiceUnavailable as e:
                self._down_until[key] = time.monotonic() + DOWN_SECONDS
                error = e
                continue
            with self._lock:
                self._served[key] += 1
            return out
        raise error

    def _call(self, node, method: str, args, kwargs):
        try:
            return getattr(node, method)(*args, **kwargs)
        except errors.CollectionNotLoaded:
            info = args[0] if args and hasattr(args[0], "channels") else None
            if info is None or not self._should_serve(info):
                raise
            node.load(info)  # a node that was down when the collection was loaded (or restarted)
            return getattr(node, method)(*args, **kwargs)

    def _should_serve(self, info) -> bool:
        """Whether the nodes should hold ``info`` (the caller's info is the catalog's, current)."""
        if self._loaded_in_catalog is None:
            return info.id in self._loaded
        with self._lock:
            if info.loaded:
                self._loaded[info.id] = info  # nodes that join load it too
            else:
                self._loaded.pop(info.id, None)
        return bool(info.loaded)

    def _all(self, method: str, *args) -> None:
        """On every node; one that is down is skipped (it loads what it must when it comes back:
        see docs/cluster.md), but if none answers the call fails."""
        done = 0
        for key, node in self._members():
            try:
                getattr(node, method)(*args)
                done += 1
            except errors.ServiceUnavailable:
                self._down_until[key] = time.monotonic() + DOWN_SECONDS
        if not done:
            raise errors.ServiceUnavailable(f"no query node answered ({method})")

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

    # --- load state ------------------------------------------------------------
    def load(self, info) -> None:
        # loaded before the nodes load it: a node joining meanwhile either is among them or loads it on joining
        with self._lock:
            reload = info.id in self._loaded
            self._loaded[info.id] = info
        try:
            self._all("load", info)
        except BaseException:
            if not reload:
                with self._lock:
                    self._loaded.pop(info.id, None)
            raise

    def release(self, collection_id: int) -> None:
        with self._lock:  # first, so a node joining meanwhile does not load it
            self._loaded.pop(collection_id, None)
        self._all("release", collection_id)

    def is_loaded(self, collection_id: int) -> bool:
        if self._loaded_in_catalog is not None:
            return self._loaded_in_catalog(collection_id)
        return collection_id in self._loaded

    def refresh_info(self, info) -> None:
        if info.id in self._loaded:
            with self._lock:
                self._loaded[info.id] = info
            self._all("refresh_info", info)

    def schedule_indexes(self, info) -> None:
        if info.id in self._loaded:
            self._all("schedule_indexes", info)

    def drop_partition(self, collection_id: int, partition_id: int) -> None:
        if collection_id in self._loaded:
            self._all("drop_partition", collection_id, partition_id)

    # --- reads -------------------------------------------------------------------
    def search(self, info, spec, partition_ids, output_fields):
        return self._read("search", info, spec, partition_ids, output_fields, wait=self._end(info))

    def query(self, info, ts, flt, partition_ids, output_fields, limit, offset):
        return self._read("query", info, ts, flt, partition_ids, output_fields, limit, offset, wait=self._end(info))

    def count(self, info, ts, flt, partition_ids) -> int:
        return self._read("count", info, ts, flt, partition_ids, wait=self._end(info))

    # --- state for flush, index progress and statistics (from any node: they are replicas) ---
    def growing_rows(self, channel: str) -> int:
        return self._read("growing_rows", channel)

    def index_state(self, collection_id: int, field_name: str) -> tuple[int, int]:
        return self._read("index_state", collection_id, field_name)

    def segment_infos(self, info) -> list[dict]:
        return self._read("segment_infos", info)

    def serving_nodes(self) -> list[tuple[int, str]]:
        """The nodes taking reads, numbered from their node ids (``node_number``), in id order."""
        with self._lock:
            keys = list(self._nodes)
            addresses = dict(self._addresses)
        return sorted((node_number(k), addresses.get(k, k)) for k in keys)

    def close(self) -> None:
        """Stop watching the sessions, then close every node's client."""
        self._closed = True
        if self._sessions is not None:
            self._sessions.close()
        with self._lock:
            nodes = [*self._nodes.values(), *self._joining.values(), *(n for _, n in self._retired)]
            self._nodes, self._joining, self._retired = {}, {}, []
        for node in nodes:
            node.close()

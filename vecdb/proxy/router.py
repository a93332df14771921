"""``QueryNodeRouter``: a proxy's view of the query nodes of a cluster, with the methods of an
in-process ``QueryNode`` so the Milvus service code is the same in both deployments.

Every node loads what the proxy loads (each is a full replica; assignment of channels to nodes
by the coord comes later, see docs/cluster.md). Reads go to the nodes in turn, skipping one
that does not answer, and carry the channels' current log ends, so the node answers only once
it applied every write acknowledged before the read began (Strong consistency, and so every
weaker level too).
"""

from __future__ import annotations

import itertools
import threading
import time

from vecdb import errors
from vecdb.querynode.service import RemoteQueryNode
from vecdb.storage.base import Log

DOWN_SECONDS = 5.0  # a node that did not answer gets no reads for this long
RETRY_SECONDS = 5.0  # how long a read waits for some node to answer when none does


class QueryNodeRouter:
    def __init__(self, log: Log, addresses: list[str], nodes: list | None = None):
        """``nodes``: the node clients themselves, instead of addresses (tests)."""
        if not addresses and not nodes:
            raise errors.InvalidParameter("a proxy needs at least one query node address")
        self.log = log
        self.nodes = nodes or [RemoteQueryNode(a) for a in addresses]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._loaded: set[int] = set()
        self._down_until: dict[int, float] = {}  # node index -> when to try it again
        for node in self.nodes:  # what they serve already (a proxy restarted, nodes kept running)
            try:
                self._loaded.update(node.loaded())
            except errors.ServiceUnavailable:
                pass

    def _read(self, method: str, *args, **kwargs):
        """A read on the next node in turn; a node that does not answer is skipped (for
        ``DOWN_SECONDS``) and the read goes to the next one, so any one live node serves. When
        none answers, every node is tried again for a few seconds (one may be restarting)."""
        now = time.monotonic()
        n = len(self.nodes)
        with self._lock:
            first = next(self._turn) % n
        order = [(first + k) % n for k in range(n)]
        live = [i for i in order if self._down_until.get(i, 0) <= now]
        try:
            return self._try(live or order, method, args, kwargs)
        except errors.ServiceUnavailable:
            deadline = time.monotonic() + RETRY_SECONDS
            while True:
                time.sleep(0.2)
                try:
                    return self._try(order, method, args, kwargs)
                except errors.ServiceUnavailable:
                    if time.monotonic() > deadline:
                        raise

    def _try(self, indexes: list[int], method: str, args, kwargs):
        error = None
        for i in indexes:
            node = self.nodes[i]
            try:
                try:
                    return getattr(node, method)(*args, **kwargs)
                except errors.CollectionNotLoaded:
                    info = args[0] if args and hasattr(args[0], "channels") else None
                    if info is None or info.id not in self._loaded:
                        raise
                    node.load(info)  # a node that was down when the collection was loaded (or restarted)
                    return getattr(node, method)(*args, **kwargs)
            except errors.ServiceUnavailable as e:
                self._down_until[i] = time.monotonic() + DOWN_SECONDS
                error = e
        raise error

    def _all(self, method: str, *args) -> None:
        """On every node; one that is down is skipped (it loads what it must when it comes back:
        see docs/cluster.md), but if none answers the call fails."""
        done = 0
        for i, node in enumerate(self.nodes):
            try:
                getattr(node, method)(*args)
                done += 1
            except errors.ServiceUnavailable:
                self._down_until[i] = time.monotonic() + DOWN_SECONDS
        if not done:
            raise errors.ServiceUnavailable(f"no query node answered ({method})")

    def _end(self, info) -> dict[str, int]:
        return {ch: self.log.last_position(ch) for ch in info.channels}

    # --- load state ------------------------------------------------------------
    def load(self, info) -> None:
        self._all("load", info)
        self._loaded.add(info.id)

    def release(self, collection_id: int) -> None:
        self._all("release", collection_id)
        self._loaded.discard(collection_id)

    def is_loaded(self, collection_id: int) -> bool:
        return collection_id in self._loaded

    def refresh_info(self, info) -> None:
        if info.id in self._loaded:
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

    def close(self) -> None:
        for node in self.nodes:
            node.close()

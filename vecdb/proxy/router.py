"""``QueryNodeRouter``: a proxy's view of the query nodes of a cluster, with the methods of an
in-process ``QueryNode`` so the Milvus service code is the same in both deployments.

Every node loads what the proxy loads (each is a full replica; assignment of channels to nodes
by the coord comes later, see docs/cluster.md). Reads go to the nodes in turn and carry the
channels' current log ends, so the node answers only once it applied every write acknowledged
before the read began (Strong consistency, and so every weaker level too).
"""

from __future__ import annotations

import itertools
import threading

from vecdb import errors
from vecdb.querynode.service import RemoteQueryNode
from vecdb.storage.base import Log


class QueryNodeRouter:
    def __init__(self, log: Log, addresses: list[str]):
        if not addresses:
            raise errors.InvalidParameter("a proxy needs at least one query node address")
        self.log = log
        self.nodes = [RemoteQueryNode(a) for a in addresses]
        self._turn = itertools.cycle(range(len(self.nodes)))
        self._lock = threading.Lock()
        self._loaded: set[int] = set()
        for node in self.nodes:  # what they serve already (a proxy restarted, nodes kept running)
            try:
                self._loaded.update(node.loaded())
            except errors.ServiceUnavailable:
                pass

    def _next(self) -> RemoteQueryNode:
        with self._lock:
            return self.nodes[next(self._turn)]

    def _all(self, method: str, *args) -> None:
        for node in self.nodes:
            getattr(node, method)(*args)

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
        return self._next().search(info, spec, partition_ids, output_fields, wait=self._end(info))

    def query(self, info, ts, flt, partition_ids, output_fields, limit, offset):
        return self._next().query(info, ts, flt, partition_ids, output_fields, limit, offset, wait=self._end(info))

    def count(self, info, ts, flt, partition_ids) -> int:
        return self._next().count(info, ts, flt, partition_ids, wait=self._end(info))

    # --- state for flush, index progress and statistics (from one node: they are replicas) ---
    def growing_rows(self, channel: str) -> int:
        return self.nodes[0].growing_rows(channel)

    def index_state(self, collection_id: int, field_name: str) -> tuple[int, int]:
        return self.nodes[0].index_state(collection_id, field_name)

    def segment_infos(self, info) -> list[dict]:
        return self.nodes[0].segment_infos(info)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

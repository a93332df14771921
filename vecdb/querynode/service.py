"""A query node behind internal RPC, and ``RemoteQueryNode``: the client a proxy uses in place
of an in-process ``QueryNode`` (same ``search``/``query``/``count`` signatures).

Reads carry the positions the proxy's snapshot needs (``wait``: channel -> log position); the
node answers once it applied them (``QueryNode.wait_applied``), which is how a Strong read on a
node that follows the log sees every acknowledged write. Filters travel as their expression
and template values and are compiled again on the node (against the node's copy of the schema).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecdb import errors
from vecdb.coord.catalog import CollectionInfo, read_collection
from vecdb.discovery import node_number
from vecdb.expr.filter import compile_filter
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.roles import RowFilter
from vecdb.rpc import Client, serve

_COL = "col."  # prefix of output columns among a reply's arrays


def _flt_meta(flt: RowFilter | None) -> dict:
    return {} if flt is None else {"expr": flt.expr, "template": flt.template}


class QueryNodeService:
    def __init__(self, node: QueryNode):
        self.node = node

    def handlers(self) -> dict:
        n = self.node
        return {"Search": self._search, "Query": self._query, "Count": self._count, "Load": self._load,
                "Release": self._release, "Loaded": self._loaded,
                "Refresh": lambda m, a: n.refresh_info(read_collection(n.meta, m["collection_id"])),
                "ScheduleIndexes": lambda m, a: n.schedule_indexes(read_collection(n.meta, m["collection_id"])),
                "DropPartition": lambda m, a: n.drop_partition(m["collection_id"], m["partition_id"]),
                "GrowingRows": lambda m, a: {"rows": n.growing_rows(m["channel"])},
                "IndexState": lambda m, a: {"state": list(n.index_state(m["collection_id"], m["field"],
                                                                        m.get("channels")))},
                "SegmentInfos": lambda m, a: {"segments": n.segment_infos(read_collection(n.meta, m["collection_id"]),
                                                                          m.get("channels"))},
                "Held": lambda m, a: {"held": {str(c): chs for c, chs in n.channels_held().items()}}}

    def _load(self, meta: dict, arrays: dict):
        """Load a collection (or some of its channels) as its metadata stands in the store now;
        what is loaded already stays."""
        self.node.load(read_collection(self.node.meta, meta["collection_id"]), meta.get("channels"))
        return {}

    def _release(self, meta: dict, arrays: dict):
        self.node.release(meta["collection_id"], meta.get("channels"))
        return {}

    def _loaded(self, meta: dict, arrays: dict):
        return {"collection_ids": sorted(self.node.collections)}

    def _info(self, meta: dict):
        coll = self.node.collections.get(meta["collection_id"])
        if coll is None:
            raise errors.CollectionNotLoaded(f"collection {meta['collection_id']} is not loaded on this query node")
        if meta.get("wait"):
            self.node.wait_applied(meta["wait"])
        return coll.info

    @staticmethod
    def _filter(info, meta: dict):
        return compile_filter(meta["expr"], info.schema, meta.get("template")) if meta.get("expr") else None

    @staticmethod
    def _parts(meta: dict):
        parts = meta.get("partition_ids")
        return None if parts is None else set(parts)

    def _search(self, meta: dict, arrays: dict):
        info = self._info(meta)
        field = info.schema.field(meta["field"])
        if field is None:
            raise errors.FieldNotFound(f"field {meta['field']!r} not found")
        spec = SearchSpec(field=field, queries=arrays["queries"], limit=meta["limit"], offset=meta["offset"],
                          metric=meta["metric"], params=meta["params"], index_type=meta["index_type"],
                          radius=meta.get("radius"), range_filter=meta.get("range_filter"),
                          flt=self._filter(info, meta), ts=meta["ts"])
        hits = self.node.search(info, spec, self._parts(meta), meta["output_fields"], meta.get("channels"))
        out = {"pks": hits.pks, "scores": hits.scores}
        out.update({_COL + k: v for k, v in hits.columns.items()})
        return {"topks": hits.topks}, out

    def _query(self, meta: dict, arrays: dict):
        info = self._info(meta)
        cols = self.node.query(info, meta["ts"], self._filter(info, meta), self._parts(meta), meta["output_fields"],
                               meta.get("limit"), meta.get("offset", 0), meta.get("channels"))
        return {}, {_COL + k: v for k, v in cols.items()}

    def _count(self, meta: dict, arrays: dict):
        info = self._info(meta)
        return {"count": self.node.count(info, meta["ts"], self._filter(info, meta), self._parts(meta),
                                         meta.get("channels"))}


def serve_querynode(node: QueryNode, host: str = "127.0.0.1", port: int = 0, workers: int = 8):
    """Start the node's RPC service; returns (grpc server, bound port)."""
    return serve("querynode", QueryNodeService(node).handlers(), host, port, workers)


class RemoteQueryNode:
    """The reads of a ``QueryNode`` in another process. ``wait`` (channel -> position), when
    set, is what the node must have applied first (a Strong read's guarantee)."""

    def __init__(self, address: str, timeout: float = 60.0):
        self.address = address
        self._client = Client(address, "querynode", timeout)

    @staticmethod
    def _common(info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                wait: dict[str, int] | None, channels: Sequence[str] | None) -> dict:
        return {"collection_id": info.id, "ts": int(ts), **_flt_meta(flt),
                "partition_ids": None if partition_ids is None else sorted(partition_ids), "wait": wait or {},
                "channels": None if channels is None else list(channels)}

    def search(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
               output_fields: Sequence[str], wait: dict[str, int] | None = None,
               channels: Sequence[str] | None = None) -> Hits:
        meta = self._common(info, spec.ts, spec.flt, partition_ids, wait, channels)
        meta.update(field=spec.field.name, limit=spec.limit, offset=spec.offset, metric=spec.metric,
                    params=spec.params, index_type=spec.index_type, radius=spec.radius,
                    range_filter=spec.range_filter, output_fields=list(output_fields))
        out, arrays = self._client.call("Search", meta, {"queries": np.asarray(spec.queries)})
        cols = {k[len(_COL):]: v for k, v in arrays.items() if k.startswith(_COL)}
        return Hits(out["topks"], arrays["pks"], arrays["scores"], cols)

    def query(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              output_fields: Sequence[str], limit: int | None, offset: int,
              wait: dict[str, int] | None = None, channels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        meta = self._common(info, ts, flt, partition_ids, wait, channels)
        meta.update(output_fields=list(output_fields), limit=limit, offset=offset)
        _, arrays = self._client.call("Query", meta)
        return {k[len(_COL):]: v for k, v in arrays.items() if k.startswith(_COL)}

    def count(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              wait: dict[str, int] | None = None, channels: Sequence[str] | None = None) -> int:
        return self._client.call("Count", self._common(info, ts, flt, partition_ids, wait, channels))[0]["count"]

    def load(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> None:
        self._client.call("Load", {"collection_id": info.id, "channels": None if channels is None else list(channels)})

    def loaded(self) -> list[int]:
        return self._client.call("Loaded")[0]["collection_ids"]

    def channels_held(self) -> dict[int, dict[str, int]]:
        return {int(c): chs for c, chs in self._client.call("Held")[0]["held"].items()}

    def refresh_info(self, info: CollectionInfo) -> None:
        self._client.call("Refresh", {"collection_id": info.id})

    def schedule_indexes(self, info: CollectionInfo) -> None:
        self._client.call("ScheduleIndexes", {"collection_id": info.id})

    def drop_partition(self, collection_id: int, partition_id: int) -> None:
        self._client.call("DropPartition", {"collection_id": collection_id, "partition_id": partition_id})

    def growing_rows(self, channel: str) -> int:
        return self._client.call("GrowingRows", {"channel": channel})[0]["rows"]

    def index_state(self, collection_id: int, field_name: str,
                    channels: Sequence[str] | None = None) -> tuple[int, int]:
        meta = {"collection_id": collection_id, "field": field_name,
                "channels": None if channels is None else list(channels)}
        return tuple(self._client.call("IndexState", meta)[0]["state"])

    def segment_infos(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> list[dict]:
        meta = {"collection_id": info.id, "channels": None if channels is None else list(channels)}
        return self._client.call("SegmentInfos", meta)[0]["segments"]

    def serving_nodes(self) -> list[tuple[int, str]]:
        """This one node, numbered from its address (its node id is the router's to know)."""
        return [(node_number(self.address), self.address)]

    def replicas(self, collection_id: int) -> list[dict]:
        """This one node as a replica, leading the channels it holds of the collection."""
        held = self.channels_held().get(collection_id)
        if not held:
            return []
        me = node_number(self.address)
        return [{"id": me, "nodes": [me], "leaders": {ch: (me, self.address) for ch in held}}]

    def release(self, collection_id: int, channels: Sequence[str] | None = None) -> None:
        self._client.call("Release", {"collection_id": collection_id,
                                      "channels": None if channels is None else list(channels)})

    def is_loaded(self, collection_id: int) -> bool:
        return collection_id in self.loaded()

    def close(self) -> None:
        self._client.close()

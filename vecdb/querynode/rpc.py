"""A query node behind internal RPC (the ``QueryNode`` service of proto/querynode.proto), and
``RemoteQueryNode``: the client a proxy uses in place of an in-process ``QueryNode`` (same
``search``/``query``/``count`` signatures).

Reads carry the positions the proxy's snapshot needs (``wait``: channel -> log position); the
node answers once it applied them (``QueryNode.wait_applied``), which is how a Strong read on a
node that follows the log sees every acknowledged write. Filters travel as their expression
and template values and are compiled again on the node (against the node's copy of the schema).
Query vectors, hits and output columns travel as ``Column`` messages (``vecdb.rpc.columns``):
the node encodes Search and Query replies with the columns' buffers joined as they are, and
``RemoteQueryNode`` reads them as views of the received bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from vecdb import errors, top_rows
from vecdb.catalog_model import CollectionInfo, read_collection
from vecdb.discovery import node_number
from vecdb.expr.filter import compile_filter
from vecdb.group_partials import ROWS, PartialSpec, fetched, row_partials
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.querynode.shard import ReadScope, at_positions
from vecdb.roles import RowFilter
from vecdb.rpc import Client, serve
from vecdb.rpc.columns import (
    column_wire,
    embed,
    fill_column,
    from_column,
    named_wire,
    read_query_reply,
    read_search_reply,
)
from vecdb.rpc.gen import common_pb2 as common
from vecdb.rpc.gen import querynode_pb2 as pb
from vecdb.rpc.gen.querynode_pb2_grpc import QueryNodeServicer
from vecdb.top_rows import Order, TopSpec

_EMPTY = common.Empty()


def _channels(channels: Sequence[str] | None) -> common.ChannelList | None:
    return None if channels is None else common.ChannelList(names=channels)


def _channels_of(request) -> list[str] | None:
    return list(request.channels.names) if request.HasField("channels") else None


def _scopes_of(scope: pb.ReadScope) -> dict[str, ReadScope] | None:
    if not scope.segments:
        return None
    return at_positions({ch: ReadScope(s.rest, frozenset(s.prefixes)) for ch, s in scope.segments.items()},
                        dict(scope.wait))


class QueryNodeService(QueryNodeServicer):
    """The RPCs of proto/querynode.proto, answered by ``node``."""

    def __init__(self, node: QueryNode):
        self.node = node

    # --- reads

    def _info(self, scope: pb.ReadScope) -> CollectionInfo:
        coll = self.node.collections.get(scope.collection_id)
        if coll is None:
            raise errors.CollectionNotLoaded(f"collection {scope.collection_id} is not loaded on this query node")
        if scope.wait:
            self.node.wait_applied(dict(scope.wait))
        return coll.info

    @staticmethod
    def _filter(info: CollectionInfo, scope: pb.ReadScope):
        if not scope.filter.expr:
            return None
        template = json.loads(scope.filter.template_json) if scope.filter.template_json else None
        return compile_filter(scope.filter.expr, info.schema, template)

    @staticmethod
    def _parts(scope: pb.ReadScope) -> set[int] | None:
        return set(scope.partition_ids.ids) if scope.HasField("partition_ids") else None

    def _search_spec(self, request: pb.SearchRequest) -> tuple[CollectionInfo, SearchSpec]:
        scope = request.scope
        info = self._info(scope)
        field = info.schema.field(request.field)
        if field is None:
            raise errors.FieldNotFound(f"field {request.field!r} not found")
        return info, SearchSpec(field=field, queries=from_column(request.queries), limit=request.limit,
                                offset=request.offset, metric=request.metric,
                                params=json.loads(request.params_json or "{}"), index_type=request.index_type,
                                radius=request.radius if request.HasField("radius") else None,
                                range_filter=request.range_filter if request.HasField("range_filter") else None,
                                flt=self._filter(info, scope), ts=scope.ts, ignore_growing=request.ignore_growing)

    def Bm25Stats(self, request: pb.SearchRequest, context) -> pb.Bm25StatsReply:
        info, spec = self._search_spec(request)
        scope = request.scope
        stats = self.node.bm25_statistics(info, spec, self._parts(scope), _channels_of(scope), _scopes_of(scope))
        return pb.Bm25StatsReply(rows=stats["rows"], tokens=stats["tokens"], terms=stats["terms"], df=stats["df"])

    def Search(self, request: pb.SearchRequest, context) -> bytes:
        """A SearchReply, encoded with its columns' buffers as they are (``vecdb.rpc.columns``)."""
        scope = request.scope
        info, spec = self._search_spec(request)
        hits = self.node.search(info, spec, self._parts(scope), list(request.output_fields), _channels_of(scope),
                                _scopes_of(scope))
        return b"".join([pb.SearchReply(topks=hits.topks).SerializeToString(), *embed(2, column_wire(hits.pks)),
                         *embed(3, column_wire(hits.scores)), *named_wire(4, hits.columns)])

    def Query(self, request: pb.QueryRequest, context) -> bytes:
        """A QueryReply, encoded as Search's is: the rows, or with ``aggregation`` their per-group partials."""
        scope = request.scope
        info = self._info(scope)
        if request.HasField("aggregation"):
            spec = PartialSpec.from_texts(request.aggregation.group_by, request.aggregation.aggregates)
            partials = self.node.query_partials(info, scope.ts, self._filter(info, scope), self._parts(scope), spec,
                                                _channels_of(scope), _scopes_of(scope), sealed_only=scope.sealed_only)
            return b"".join(named_wire(1, partials))
        if request.HasField("order"):  # a plain query's ORDER BY with a limit: the node's first rows
            order = tuple(zip(request.order.fields, request.order.ascending))
            cols = self.node.query_top(info, scope.ts, self._filter(info, scope), self._parts(scope),
                                       list(request.output_fields), order, request.order.top, 0,
                                       _channels_of(scope), _scopes_of(scope), sealed_only=scope.sealed_only)
            return b"".join(named_wire(1, cols))
        cols = self.node.query(info, scope.ts, self._filter(info, scope), self._parts(scope),
                               list(request.output_fields), request.limit if request.HasField("limit") else None,
                               request.offset, _channels_of(scope), _scopes_of(scope), sealed_only=scope.sealed_only)
        return b"".join(named_wire(1, cols))

    def Count(self, request: pb.CountRequest, context) -> pb.CountReply:
        scope = request.scope
        info = self._info(scope)
        n = self.node.count(info, scope.ts, self._filter(info, scope), self._parts(scope), _channels_of(scope),
                            _scopes_of(scope), sealed_only=scope.sealed_only)
        return pb.CountReply(count=n)

    # --- loading, and what is held

    def Load(self, request: pb.LoadRequest, context) -> common.Empty:
        self.node.load(read_collection(self.node.meta, request.collection_id), _channels_of(request))
        return _EMPTY

    def Release(self, request: pb.ReleaseRequest, context) -> common.Empty:
        self.node.release(request.collection_id, _channels_of(request))
        return _EMPTY

    def Loaded(self, request: common.Empty, context) -> pb.LoadedReply:
        return pb.LoadedReply(collection_ids=sorted(self.node.collections))

    def Held(self, request: common.Empty, context) -> pb.HeldReply:
        return pb.HeldReply(held={c: pb.ChannelRows(rows=chs) for c, chs in self.node.channels_held().items()})

    def Refresh(self, request: pb.CollectionRequest, context) -> common.Empty:
        self.node.refresh_from_store(request.collection_id)
        return _EMPTY

    def ScheduleIndexes(self, request: pb.CollectionRequest, context) -> common.Empty:
        self.node.schedule_indexes(read_collection(self.node.meta, request.collection_id))
        return _EMPTY

    def DropPartition(self, request: pb.DropPartitionRequest, context) -> common.Empty:
        self.node.drop_partition(request.collection_id, request.partition_id)
        return _EMPTY

    def GrowingRows(self, request: pb.GrowingRowsRequest, context) -> pb.GrowingRowsReply:
        return pb.GrowingRowsReply(rows=self.node.growing_rows(request.channel))

    def IndexState(self, request: pb.IndexStateRequest, context) -> pb.IndexStateReply:
        segments = self.node.index_segments(request.collection_id, request.field, _channels_of(request))
        ids, rows, indexed = zip(*segments) if segments else ((), (), ())
        return pb.IndexStateReply(indexed=sum(indexed), total=sum(rows), segment_ids=ids, segment_rows=rows,
                                  segment_indexed=indexed)

    def SegmentInfos(self, request: pb.SegmentInfosRequest, context) -> pb.SegmentInfosReply:
        infos = self.node.segment_infos(read_collection(self.node.meta, request.collection_id), _channels_of(request))
        return pb.SegmentInfosReply(segments=[pb.SegmentInfo(**s) for s in infos])


def serve_querynode(node: QueryNode, host: str = "127.0.0.1", port: int = 0, workers: int = 8):
    """Start the node's RPC service; returns (grpc server, bound port)."""
    return serve("querynode", QueryNodeService(node), host, port, workers)


class RemoteQueryNode:
    """The reads of a ``QueryNode`` in another process. ``wait`` (channel -> position), when
    set, is what the node must have applied first (a Strong read's guarantee)."""

    def __init__(self, address: str, timeout: float = 60.0):
        self.address = address
        self._client = Client(address, "querynode", timeout)

    @staticmethod
    def _scope(scope: pb.ReadScope, info: CollectionInfo, ts: int, flt: RowFilter | None,
               partition_ids: set[int] | None, wait: dict[str, int] | None,
               channels: Sequence[str] | None, scopes: Mapping[str, ReadScope] | None = None,
               *, sealed_only: bool = False) -> None:
        """Fill the request's ``scope`` in place (a message given to a constructor is copied)."""
        scope.collection_id, scope.ts, scope.sealed_only = info.id, int(ts), sealed_only
        if flt is not None:
            scope.filter.expr = flt.expr
            if flt.template is not None:
                scope.filter.template_json = json.dumps(flt.template)
        if partition_ids is not None:
            scope.partition_ids.SetInParent()  # set, even when empty
            scope.partition_ids.ids.extend(sorted(partition_ids))
        if wait:
            scope.wait.update(wait)
        if channels is not None:
            scope.channels.SetInParent()
            scope.channels.names.extend(channels)
        for ch, part in (scopes or {}).items():
            scope.segments[ch].rest = part.rest
            scope.segments[ch].prefixes.extend(sorted(part.prefixes))

    def _search_request(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
                        output_fields: Sequence[str], wait: dict[str, int] | None,
                        channels: Sequence[str] | None, scopes: Mapping[str, ReadScope] | None) -> pb.SearchRequest:
        request = pb.SearchRequest(
            field=spec.field.name, limit=spec.limit, offset=spec.offset, metric=spec.metric,
            params_json=json.dumps(spec.params), index_type=spec.index_type, radius=spec.radius,
            range_filter=spec.range_filter, output_fields=output_fields, ignore_growing=spec.ignore_growing)
        self._scope(request.scope, info, spec.ts, spec.flt, partition_ids, wait, channels, scopes)
        fill_column(request.queries, spec.queries)
        return request

    def search(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
               output_fields: Sequence[str], wait: dict[str, int] | None = None,
               channels: Sequence[str] | None = None, scopes: Mapping[str, ReadScope] | None = None) -> Hits:
        request = self._search_request(info, spec, partition_ids, output_fields, wait, channels, scopes)
        topks, pks, scores, columns = read_search_reply(self._client.invoke_encoded("Search", request))
        return Hits(topks, pks, scores, columns)

    def bm25_statistics(self, info: CollectionInfo, spec: SearchSpec, partition_ids: set[int] | None,
                        wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
                        scopes: Mapping[str, ReadScope] | None = None) -> dict:
        request = self._search_request(info, spec, partition_ids, (), wait, channels, scopes)
        reply = self._client.invoke("Bm25Stats", request)
        return {"rows": reply.rows, "tokens": reply.tokens, "terms": list(reply.terms), "df": list(reply.df)}

    def query(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              output_fields: Sequence[str], limit: int | None, offset: int,
              wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
              scopes: Mapping[str, ReadScope] | None = None, *, sealed_only: bool = False) -> dict[str, np.ndarray]:
        request = pb.QueryRequest(output_fields=output_fields, limit=limit, offset=offset)
        self._scope(request.scope, info, ts, flt, partition_ids, wait, channels, scopes, sealed_only=sealed_only)
        return read_query_reply(self._client.invoke_encoded("Query", request))

    def query_partials(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                       spec: PartialSpec, wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
                       scopes: Mapping[str, ReadScope] | None = None, *,
                       sealed_only: bool = False) -> dict[str, np.ndarray]:
        """A Query with ``aggregation``; a node older than that field answers the rows (their columns
        ``output_fields`` asks), reduced here."""
        request = pb.QueryRequest(output_fields=fetched(info.schema, spec),
                                  aggregation=pb.Aggregation(group_by=spec.group_by, aggregates=spec.texts()))
        self._scope(request.scope, info, ts, flt, partition_ids, wait, channels, scopes, sealed_only=sealed_only)
        cols = read_query_reply(self._client.invoke_encoded("Query", request))
        return cols if ROWS in cols else row_partials(info.schema, spec, cols)

    def query_top(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                  output_fields: Sequence[str], order: Order, limit: int, offset: int,
                  wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
                  scopes: Mapping[str, ReadScope] | None = None, *, sealed_only: bool = False) -> dict[str, np.ndarray]:
        """A Query with ``order`` (its first ``limit + offset`` rows) and no limit: a node older than that
        field answers every matching row, which ``vecdb.top_rows.merge`` orders and cuts as a newer node's
        rows. ``output_fields`` must hold the sort columns (``TopSpec.columns``)."""
        spec = TopSpec.of(info.schema, order, limit + offset)
        request = pb.QueryRequest(output_fields=output_fields, offset=0, order=pb.QueryOrder(
            fields=[name for name, _ in order], ascending=[asc for _, asc in order], top=spec.k))
        self._scope(request.scope, info, ts, flt, partition_ids, wait, channels, scopes, sealed_only=sealed_only)
        cols = read_query_reply(self._client.invoke_encoded("Query", request))
        return top_rows.merge(spec, [cols], list(output_fields), offset)

    def count(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              wait: dict[str, int] | None = None, channels: Sequence[str] | None = None,
              scopes: Mapping[str, ReadScope] | None = None, *, sealed_only: bool = False) -> int:
        request = pb.CountRequest()
        self._scope(request.scope, info, ts, flt, partition_ids, wait, channels, scopes, sealed_only=sealed_only)
        return self._client.invoke("Count", request).count

    def load(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> None:
        self._client.invoke("Load", pb.LoadRequest(collection_id=info.id, channels=_channels(channels)))

    def loaded(self) -> list[int]:
        return list(self._client.invoke("Loaded", _EMPTY).collection_ids)

    def channels_held(self) -> dict[int, dict[str, int]]:
        return {c: dict(chs.rows) for c, chs in self._client.invoke("Held", _EMPTY).held.items()}

    def refresh_info(self, info: CollectionInfo) -> None:
        self._client.invoke("Refresh", pb.CollectionRequest(collection_id=info.id))

    def schedule_indexes(self, info: CollectionInfo) -> None:
        self._client.invoke("ScheduleIndexes", pb.CollectionRequest(collection_id=info.id))

    def drop_partition(self, collection_id: int, partition_id: int) -> None:
        self._client.invoke("DropPartition", pb.DropPartitionRequest(collection_id=collection_id,
                                                                     partition_id=partition_id))

    def growing_rows(self, channel: str) -> int:
        return self._client.invoke("GrowingRows", pb.GrowingRowsRequest(channel=channel)).rows

    def index_state(self, collection_id: int, field_name: str,
                    channels: Sequence[str] | None = None) -> tuple[int, int]:
        segments = self.index_segments(collection_id, field_name, channels)
        return sum(s[2] for s in segments), sum(s[1] for s in segments)

    def index_segments(self, collection_id: int, field_name: str,
                       channels: Sequence[str] | None = None) -> list[tuple[int, int, int]]:
        reply = self._client.invoke("IndexState", pb.IndexStateRequest(collection_id=collection_id, field=field_name,
                                                                       channels=_channels(channels)))
        if not reply.segment_ids and reply.total:  # a node of the previous version: its sums, as one segment
            return [(0, reply.total, reply.indexed)]
        return list(zip(reply.segment_ids, reply.segment_rows, reply.segment_indexed))

    def segment_infos(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> list[dict]:
        reply = self._client.invoke("SegmentInfos", pb.SegmentInfosRequest(collection_id=info.id,
                                                                           channels=_channels(channels)))
        return [{"segment_id": s.segment_id, "partition_id": s.partition_id, "num_rows": s.num_rows,
                 "state": s.state, "index_id": s.index_id, "index_name": s.index_name} for s in reply.segments]

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
        self._client.invoke("Release", pb.ReleaseRequest(collection_id=collection_id, channels=_channels(channels)))

    def is_loaded(self, collection_id: int) -> bool:
        return collection_id in self.loaded()

    def close(self) -> None:
        self._client.close()

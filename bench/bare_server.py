"""A bare Milvus-API servicer: FAISS behind pymilvus's own gRPC stubs, nothing else.

This is the benchmark's transport ceiling: the least a Python server on the
Milvus protocol can do per request. No storage, no log, no segments, no
filters, no consistency, no validation beyond what the benchmark needs. It
answers only the RPCs ``MilvusClient`` sends in the benchmark: Connect,
CreateCollection, HasCollection, DescribeCollection, DropCollection,
ShowCollections, Insert, Flush, GetFlushState, CreateIndex (builds the FAISS
index synchronously), DescribeIndex, AllocTimestamp, LoadCollection,
GetLoadingProgress, GetLoadState, ReleaseCollection, Search and Query (only
``count(*)``). Everything else is UNIMPLEMENTED.

Search calls FAISS inline in the gRPC handler thread (FAISS releases the GIL),
on a sync ``grpc.server`` with a small thread pool: the fastest arrangement
measured (shared/PERFORMANCE.md). Run it with ``OMP_WAIT_POLICY=PASSIVE``.

    python -m bench.bare_server --port 19999 [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from concurrent import futures

import grpc
import numpy as np
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

from bench.indexes import build_faiss, faiss_search_params

_OK = common_pb2.Status()
_FLOAT_VECTOR = schema_pb2.DataType.FloatVector
_NOT_FOUND = 100  # Milvus code for "collection not found"


def _error(reason: str, code: int = 1100) -> common_pb2.Status:
    return common_pb2.Status(error_code=common_pb2.ErrorCode.UnexpectedError, code=code, reason=reason)


class _Collection:
    """Rows as appended numpy chunks; one FAISS index built at CreateIndex."""

    def __init__(self, cid: int, name: str, schema: schema_pb2.CollectionSchema):
        self.id = cid
        self.name = name
        self.schema = schema
        for i, f in enumerate(schema.fields):
            f.fieldID = 100 + i
        self.pk = next(f.name for f in schema.fields if f.is_primary_key)
        vec = next(f for f in schema.fields if f.data_type == _FLOAT_VECTOR)
        self.vec = vec.name
        self.dim = int(next(kv.value for kv in vec.type_params if kv.key == "dim"))
        self.created = int(time.time() * 1000) << 18
        self.lock = threading.Lock()
        self.pk_chunks: list[np.ndarray] = []
        self.vec_chunks: list[np.ndarray] = []
        self.rows = 0
        self.index = None
        self.index_type = ""
        self.index_params: list = []   # KeyValuePairs as received
        self.pks = np.empty(0, dtype=np.int64)
        self.loaded = False

    def append(self, pks: np.ndarray, vecs: np.ndarray) -> None:
        with self.lock:
            self.pk_chunks.append(pks)
            self.vec_chunks.append(vecs)
            self.rows += len(pks)

    def build(self, index_type: str, metric: str, params: dict) -> None:
        with self.lock:
            vecs = np.concatenate(self.vec_chunks) if self.vec_chunks else np.empty((0, self.dim), np.float32)
            pks = np.concatenate(self.pk_chunks) if self.pk_chunks else np.empty(0, np.int64)
            self.vec_chunks, self.pk_chunks = [vecs], [pks]
        index = build_faiss(index_type, params, metric, vecs)
        self.index, self.index_type, self.pks = index, index_type, pks


class BareServicer(milvus_pb2_grpc.MilvusServiceServicer):
    def __init__(self):
        self._colls: dict[str, _Collection] = {}
        self._next_id = 1000
        self._lock = threading.Lock()

    # -- session and collections -------------------------------------------
    def Connect(self, request, context):
        return milvus_pb2.ConnectResponse(
            status=_OK, identifier=int(time.time()),
            server_info=common_pb2.ServerInfo(build_tags="bare-faiss", reserved={}))

    def AllocTimestamp(self, request, context):
        return milvus_pb2.AllocTimestampResponse(status=_OK, timestamp=int(time.time() * 1000) << 18)

    def CreateCollection(self, request, context):
        schema = schema_pb2.CollectionSchema.FromString(request.schema)
        with self._lock:
            if request.collection_name in self._colls:
                return _error(f"collection {request.collection_name} already exists")
            self._next_id += 1
            self._colls[request.collection_name] = _Collection(self._next_id, request.collection_name, schema)
        return _OK

    def HasCollection(self, request, context):
        return milvus_pb2.BoolResponse(status=_OK, value=request.collection_name in self._colls)

    def DescribeCollection(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None:
            return milvus_pb2.DescribeCollectionResponse(
                status=_error(f"collection not found[collection={request.collection_name}]", _NOT_FOUND))
        return milvus_pb2.DescribeCollectionResponse(
            status=_OK, schema=c.schema, collectionID=c.id, collection_name=c.name, shards_num=1,
            created_timestamp=c.created, update_timestamp=c.created, num_partitions=1,
            consistency_level=common_pb2.ConsistencyLevel.Bounded,
            virtual_channel_names=[f"bare-{c.id}-v0"], physical_channel_names=["bare-dml-0"])

    def DropCollection(self, request, context):
        with self._lock:
            self._colls.pop(request.collection_name, None)
        return _OK

    def ShowCollections(self, request, context):
        names = list(self._colls)
        return milvus_pb2.ShowCollectionsResponse(
            status=_OK, collection_names=names, collection_ids=[self._colls[n].id for n in names])

    # -- writes ---------------------------------------------------------------
    def Insert(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None:
            return milvus_pb2.MutationResult(status=_error("collection not found", _NOT_FOUND))
        pks = vecs = None
        for fd in request.fields_data:
            if fd.field_name == c.pk:
                pks = np.array(fd.scalars.long_data.data, dtype=np.int64)
            elif fd.field_name == c.vec:
                vecs = np.array(fd.vectors.float_vector.data, dtype=np.float32).reshape(-1, c.dim)
        if pks is None or vecs is None or len(pks) != len(vecs):
            return milvus_pb2.MutationResult(status=_error("bare server needs an INT64 pk and the vector"))
        c.append(pks, vecs)
        return milvus_pb2.MutationResult(
            status=_OK, IDs=schema_pb2.IDs(int_id=schema_pb2.LongArray(data=pks.tolist())),
            succ_index=range(len(pks)), insert_cnt=len(pks), timestamp=int(time.time() * 1000) << 18)

    def Flush(self, request, context):
        resp = milvus_pb2.FlushResponse(status=_OK, db_name=request.db_name)
        ts = int(time.time() * 1000) << 18
        for name in request.collection_names:
            resp.coll_segIDs[name].data.extend([])
            resp.flush_coll_segIDs[name].data.extend([])
            resp.coll_flush_ts[name] = ts
        return resp

    def GetFlushState(self, request, context):
        return milvus_pb2.GetFlushStateResponse(status=_OK, flushed=True)

    # -- index and load ---------------------------------------------------------
    def CreateIndex(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None:
            return _error("collection not found", _NOT_FOUND)
        kv = {p.key: p.value for p in request.extra_params}
        params = json.loads(kv.get("params", "{}"))
        index_type = kv.get("index_type", "FLAT")
        try:
            c.build(index_type, kv.get("metric_type", "L2"), params)
        except ValueError as e:
            return _error(str(e))
        c.index_params = list(request.extra_params)
        return _OK

    def DescribeIndex(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None or c.index is None:
            return milvus_pb2.DescribeIndexResponse(
                status=common_pb2.Status(error_code=common_pb2.ErrorCode.IndexNotExist, code=700,
                                         reason="index not found"))
        desc = milvus_pb2.IndexDescription(
            index_name=request.index_name or c.vec, indexID=c.id + 1, params=c.index_params,
            field_name=c.vec, indexed_rows=c.rows, total_rows=c.rows, pending_index_rows=0,
            state=common_pb2.IndexState.Finished)
        return milvus_pb2.DescribeIndexResponse(status=_OK, index_descriptions=[desc])

    def LoadCollection(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None:
            return _error("collection not found", _NOT_FOUND)
        if c.index is None:
            return _error("index not found", 700)
        c.loaded = True
        return _OK

    def ReleaseCollection(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is not None:
            c.loaded = False
        return _OK

    def GetLoadingProgress(self, request, context):
        c = self._colls.get(request.collection_name)
        done = 100 if c is not None and c.loaded else 0
        return milvus_pb2.GetLoadingProgressResponse(status=_OK, progress=done, refresh_progress=done)

    def GetLoadState(self, request, context):
        c = self._colls.get(request.collection_name)
        state = common_pb2.LoadState.LoadStateNotExist if c is None else (
            common_pb2.LoadState.LoadStateLoaded if c.loaded else common_pb2.LoadState.LoadStateNotLoad)
        return milvus_pb2.GetLoadStateResponse(status=_OK, state=state)

    # -- reads ------------------------------------------------------------------
    def Search(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None or c.index is None or not c.loaded:
            return milvus_pb2.SearchResults(status=_error("collection not loaded", 101))
        sp = {kv.key: kv.value for kv in request.search_params}
        topk = int(sp.get("topk", "10"))
        knob = json.loads(sp.get("params", "{}") or "{}")
        value = knob.get("ef", knob.get("nprobe"))
        ph = common_pb2.PlaceholderGroup.FromString(request.placeholder_group).placeholders[0]
        q = np.frombuffer(b"".join(ph.values), dtype=np.float32).reshape(len(ph.values), c.dim)
        dist, labels = c.index.search(q, topk, params=faiss_search_params(c.index_type, value))
        nq = len(q)
        found = labels >= 0
        if found.all():
            topks = [topk] * nq
            ids, scores = c.pks[labels.ravel()], dist.ravel()
        else:
            topks = found.sum(1).tolist()
            ids, scores = c.pks[labels[found]], dist[found]
        data = schema_pb2.SearchResultData(
            num_queries=nq, top_k=topk, topks=topks, scores=scores.tolist(),
            ids=schema_pb2.IDs(int_id=schema_pb2.LongArray(data=ids.tolist())), primary_field_name=c.pk)
        return milvus_pb2.SearchResults(status=_OK, results=data, collection_name=c.name)

    def Query(self, request, context):
        c = self._colls.get(request.collection_name)
        if c is None:
            return milvus_pb2.QueryResults(status=_error("collection not found", _NOT_FOUND))
        if list(request.output_fields) != ["count(*)"] or request.expr.strip():
            return milvus_pb2.QueryResults(status=_error("bare server answers only count(*)"))
        fd = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="count(*)",
                                  scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=[c.rows])))
        return milvus_pb2.QueryResults(status=_OK, fields_data=[fd], collection_name=c.name,
                                       output_fields=["count(*)"], primary_field_name=c.pk)


def serve(host: str = "127.0.0.1", port: int = 0, workers: int = 4):
    """Start the servicer; returns (server, bound port)."""
    opts = [("grpc.max_send_message_length", 512 << 20), ("grpc.max_receive_message_length", 512 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=opts)
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(BareServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bare_server", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=19999)
    ap.add_argument("--workers", type=int, default=4, help="gRPC handler threads (default 4)")
    args = ap.parse_args(argv)
    server, port = serve(args.host, args.port, args.workers)
    print(f"bare server ready on {args.host}:{port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

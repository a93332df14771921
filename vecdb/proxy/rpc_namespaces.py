"""RPCs: the namespaces of a collection in ``namespace.mode`` partition (Milvus 3.0: ``CreateNamespace``,
``DescribeNamespace``, ``DropNamespace``, ``HasNamespace``, ``ListNamespaces``, ``GetNamespaceStats``).

Each namespace is the partition of its name (vecdb.namespaces): created empty, dropped with its rows,
its stats the partition's ``row_count``. A collection whose namespaces live in ``$namespace_id``
(``partition_key`` mode, the default) has no list of them: these RPCs refuse it, as Milvus does, and
so does a collection without namespaces. ``_default`` is not a namespace.
"""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb import errors, namespaces
from vecdb.catalog_model import DEFAULT_PARTITION, CollectionInfo, PartitionInfo
from vecdb.proxy import status
from vecdb.proxy.base import rpc
from vecdb.proxy.rpc_collections import CollectionRpcs
from vecdb.request_db import db_of
from vecdb.schema import validate_collection_name
from vecdb.timestamp import physical_ms

_NOT_PARTITION_MODE = (f"namespace APIs require collection with namespace enabled and "
                       f"{namespaces.MODE_KEY}={namespaces.PARTITION_MODE}")


class NamespaceRpcs(CollectionRpcs):
    def _namespaced(self, request, context, *, named: bool = True) -> tuple[str, CollectionInfo]:
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        if namespaces.mode_of(info.schema, info.properties) != namespaces.PARTITION_MODE:
            raise errors.InvalidParameter(_NOT_PARTITION_MODE)
        if named:
            validate_collection_name(request.namespace_name, "namespace name")
            if request.namespace_name == DEFAULT_PARTITION:
                raise errors.InvalidParameter(f"{DEFAULT_PARTITION} is not a namespace")
        return db, info

    def _info(self, info: CollectionInfo, p: PartitionInfo, *, stats: bool = False) -> milvus_pb2.NamespaceInfo:
        out = milvus_pb2.NamespaceInfo(collection_name=info.name, namespace_name=p.name, state="Created",
                                       created_timestamp=p.created_ts,
                                       created_utc_timestamp=physical_ms(p.created_ts))
        if stats:
            rows = self._row_count(info, {p.id})
            out.stats.CopyFrom(milvus_pb2.NamespaceStats(
                stats=[common_pb2.KeyValuePair(key="row_count", value=str(rows))], approx_entity_count=rows,
                entity_count_type="approximate"))
        return out

    @staticmethod
    def _partition(info: CollectionInfo, name: str) -> PartitionInfo:
        if name == DEFAULT_PARTITION or not info.has_partition(name):
            raise errors.NamespaceNotFound(f"namespace not found[namespace={name}]")
        return info.partition(name)

    @rpc(milvus_pb2.CreateNamespaceResponse)
    def CreateNamespace(self, request, context):
        db, info = self._namespaced(request, context)
        self.ddl.create_partition(db, info.name, request.namespace_name)
        fresh = self.collection(db, info.name)
        return milvus_pb2.CreateNamespaceResponse(
            status=status.success(), namespace=self._info(fresh, fresh.partition(request.namespace_name)))

    @rpc(milvus_pb2.DropNamespaceResponse)
    def DropNamespace(self, request, context):
        db, info = self._namespaced(request, context)
        p = self._partition(info, request.namespace_name)
        if info.partition_loaded(p.id):  # as a partition (release_partitions first)
            raise errors.InvalidParameter(f"namespace cannot be dropped, namespace is loaded, please release it "
                                          f"first[namespace={p.name}]")
        gone = self._info(info, p)
        self.drop_partition(db, info, request.namespace_name)
        return milvus_pb2.DropNamespaceResponse(status=status.success(), namespace=gone)

    @rpc(milvus_pb2.HasNamespaceResponse)
    def HasNamespace(self, request, context):
        _, info = self._namespaced(request, context)
        return milvus_pb2.HasNamespaceResponse(status=status.success(),
                                               value=info.has_partition(request.namespace_name))

    @rpc(milvus_pb2.DescribeNamespaceResponse)
    def DescribeNamespace(self, request, context):
        _, info = self._namespaced(request, context)
        p = self._partition(info, request.namespace_name)
        return milvus_pb2.DescribeNamespaceResponse(status=status.success(), namespace=self._info(info, p, stats=True))

    @rpc(milvus_pb2.ListNamespacesResponse)
    def ListNamespaces(self, request, context):
        """By name; ``prefix`` narrows, ``page_size`` (0: all) pages, ``page_token`` (the last name of the
        page before) goes on."""
        _, info = self._namespaced(request, context, named=False)
        if request.page_size < 0:
            raise errors.InvalidParameter(f"page_size should not be negative, got {request.page_size}")
        names = sorted(p for p in (q.name for q in info.partitions)
                       if p != DEFAULT_PARTITION and p.startswith(request.prefix) and p > request.page_token)
        page = names[:request.page_size] if request.page_size else names
        more = len(page) < len(names)
        return milvus_pb2.ListNamespacesResponse(
            status=status.success(), namespaces=[self._info(info, info.partition(n)) for n in page],
            next_page_token=page[-1] if more else "")

    @rpc(milvus_pb2.GetNamespaceStatsResponse)
    def GetNamespaceStats(self, request, context):
        _, info = self._namespaced(request, context)
        if request.exact:
            raise errors.InvalidParameter("exact namespace stats are not supported yet")
        p = self._partition(info, request.namespace_name)
        return milvus_pb2.GetNamespaceStatsResponse(status=status.success(), namespace_name=p.name,
                                                    stats=self._info(info, p, stats=True).stats)

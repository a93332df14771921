"""The Milvus gRPC service: the RPC families composed onto pymilvus's generated servicer.

RPCs not implemented here fall through to the generated base class, which answers
UNIMPLEMENTED; pymilvus turns that into a clear error.
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2_grpc

from vecdb.proxy.rpc_admin import AdminRpcs
from vecdb.proxy.rpc_collections import CollectionRpcs
from vecdb.proxy.rpc_compaction import CompactionRpcs
from vecdb.proxy.rpc_dml import DmlRpcs
from vecdb.proxy.rpc_external import ExternalRpcs
from vecdb.proxy.rpc_file_resources import FileResourceRpcs
from vecdb.proxy.rpc_functions import CollectionFunctionRpcs
from vecdb.proxy.rpc_hybrid import HybridRpcs
from vecdb.proxy.rpc_import import ImportRpcs
from vecdb.proxy.rpc_index import IndexRpcs
from vecdb.proxy.rpc_namespaces import NamespaceRpcs
from vecdb.proxy.rpc_replication import ReplicationRpcs
from vecdb.proxy.rpc_resource_groups import ResourceGroupRpcs
from vecdb.proxy.rpc_schema_change import SchemaChangeRpcs
from vecdb.proxy.rpc_search import SearchRpcs
from vecdb.proxy.rpc_security import SecurityRpcs
from vecdb.proxy.rpc_snapshots import SnapshotRpcs
from vecdb.proxy.rpc_text import TextRpcs


class MilvusService(AdminRpcs, NamespaceRpcs, ExternalRpcs, CollectionRpcs, CollectionFunctionRpcs, CompactionRpcs,
                    IndexRpcs, ResourceGroupRpcs, ImportRpcs, DmlRpcs, HybridRpcs, SchemaChangeRpcs, SearchRpcs,
                    SecurityRpcs, SnapshotRpcs, TextRpcs, FileResourceRpcs, ReplicationRpcs,
                    milvus_pb2_grpc.MilvusServiceServicer):
    pass

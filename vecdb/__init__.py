"""vecdb: a distributed vector database that speaks the Milvus API."""

__version__ = "0.1.0"

from vecdb.pymilvus_stubs import load_stubs_without_client

load_stubs_without_client()  # before any module imports pymilvus.grpc_gen (vecdb.pymilvus_stubs)

"""vecdb: a distributed vector database that speaks the Milvus API."""

__version__ = "0.1.0"

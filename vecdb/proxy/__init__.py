"""The proxy role: the Milvus gRPC API in front of the other roles, built on the gRPC stubs that
ship with pymilvus (``pymilvus.grpc_gen``, loaded without the client: ``vecdb.pymilvus_stubs``)."""

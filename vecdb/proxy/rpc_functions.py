"""RPCs: AddCollectionFunction, AlterCollectionFunction, DropCollectionFunction (pymilvus 2.6
``add_collection_function`` / ``alter_collection_function`` / ``drop_collection_function``).

Answered as Milvus 2.6's proxy answers them for what vecdb has: its functions are BM25 (and MinHash)
functions, which Milvus neither adds to nor alters on nor drops from an existing collection ("Currently
does not support ..."), and the other kinds (embedding and rerank model functions) vecdb does not run
at all (105, as at create). Dropping a function the collection does not have succeeds, as in Milvus.
None of them changes the schema."""

from __future__ import annotations

from pymilvus.grpc_gen import schema_pb2

from vecdb import errors
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of

_BM25 = schema_pb2.FunctionType.BM25
_KINDS = {_BM25: "BM25", 4: "MinHash"}  # 4: MinHash (Milvus 3.0), not named in pymilvus 2.6's proto


def _refuse_kind(fn, verb: str) -> None:
    if fn.type in _KINDS:
        raise errors.InvalidParameter(f"Currently does not support {verb} {_KINDS[fn.type]} function")
    raise errors.IllegalSchema(f"collection schema functions other than BM25 (embedding functions: "
                               f"{fn.name or '?'}) is not supported by vecdb yet")


class CollectionFunctionRpcs(ServiceBase):
    @rpc()
    def AddCollectionFunction(self, request, context):
        self.collection(db_of(request, context), request.collection_name)
        if not request.HasField("functionSchema"):
            raise errors.InvalidParameter("Function Schema is empty")
        _refuse_kind(request.functionSchema, "adding")

    @rpc()
    def AlterCollectionFunction(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        if not request.HasField("functionSchema"):
            raise errors.InvalidParameter("Function Schema is empty")
        fn = request.functionSchema
        if fn.type not in _KINDS and request.function_name != fn.name:
            raise errors.InvalidParameter("Invalid function config, name not match")
        if fn.type not in _KINDS and info.schema.function(request.function_name) is None:
            raise errors.InvalidParameter(f"Function {request.function_name} not found")
        _refuse_kind(fn, "alter")

    @rpc()
    def DropCollectionFunction(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        held = info.schema.function(request.function_name)
        if held is not None:  # every function vecdb holds is BM25 or MinHash
            raise errors.InvalidParameter(f"Currently does not support droping {_KINDS[int(held.type)]} function")
        return status.success()

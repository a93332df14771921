"""RunAnalyzer (pymilvus ``client.run_analyzer``): the tokens an analyzer makes of texts.

Either ``analyzer_params`` (a JSON object, empty: the standard analyzer) or a collection's field
with ``enable_analyzer`` (its own analyzer), as in Milvus 2.5; ``with_detail`` adds each token's
UTF-8 byte offsets and position, ``with_hash`` its term id (what a BM25 function stores).
``analyzer_names`` (multi-analyzer fields) is refused: vecdb has no multi-analyzer fields.
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2

from vecdb import errors
from vecdb.analyzer import parse_params, term_ids
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of


class TextRpcs(ServiceBase):
    @rpc(milvus_pb2.RunAnalyzerResponse)
    def RunAnalyzer(self, request, context):
        if len(request.analyzer_names):
            raise errors.InvalidParameter("analyzer_names is for multi-analyzer fields, which vecdb does not have")
        if request.collection_name:
            info = self.collection(db_of(request, context), request.collection_name)
            f = info.schema.field(request.field_name)
            if f is None:
                raise errors.FieldNotFound(f"field {request.field_name} not exist in collection "
                                           f"{request.collection_name}")
            if not f.enable_analyzer:
                raise errors.InvalidParameter(f"field {f.name} does not enable analyzer")
            analyzer = parse_params(f.type_params.get("analyzer_params"), f.name)
        else:
            analyzer = parse_params(request.analyzer_params or None)
        reply = milvus_pb2.RunAnalyzerResponse(status=status.success())
        for raw in request.placeholder:
            spans = analyzer.spans(raw.decode("utf-8", "replace"))
            ids = term_ids([t for t, *_ in spans]).tolist() if request.with_hash else [0] * len(spans)
            result = reply.results.add()
            for (token, start, end, pos), h in zip(spans, ids, strict=True):
                tok = result.tokens.add(token=token)
                if request.with_detail:
                    tok.start_offset, tok.end_offset, tok.position, tok.position_length = start, end, pos, 1
                if request.with_hash:
                    tok.hash = h
        return reply

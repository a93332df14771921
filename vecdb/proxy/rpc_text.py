"""RunAnalyzer (pymilvus ``client.run_analyzer``): the tokens an analyzer makes of texts.

Either ``analyzer_params`` (a JSON object, empty: the standard analyzer) or a collection's field
with ``enable_analyzer`` (its own analyzer), as in Milvus 2.5; ``with_detail`` adds each token's
UTF-8 byte offsets and position, ``with_hash`` its term id (what a BM25 function stores).
On a multi-analyzer field (``multi_analyzer_params``) ``analyzer_names`` picks each text's analyzer, as
Milvus's shard delegator does: one name for every text, or one per text; a name resolves through the
field's aliases, an unknown one to ``default``; none is 1101 ("analyzer names must be set for multi
analyzer"). Elsewhere the names are ignored (Milvus: a single analyzer takes no names).

ComputePhraseMatchSlop (Milvus 3.0; pymilvus 3.0.2 has no client method: its stub): the slop each
text needs for a phrase to match it (``vecdb.phrase_slop``).
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2

from vecdb import errors
from vecdb.analyzer import MultiAnalyzer, parse_params, term_ids
from vecdb.bm25 import text_analyzer
from vecdb.phrase_slop import min_phrase_slop
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of


class TextRpcs(ServiceBase):
    @rpc(milvus_pb2.RunAnalyzerResponse)
    def RunAnalyzer(self, request, context):
        analyzers = None  # a multi-analyzer field's: each text's analyzer
        if request.collection_name:
            info = self.collection(db_of(request, context), request.collection_name)
            f = info.schema.field(request.field_name)
            if f is None:
                raise errors.FieldNotFound(f"field {request.field_name} not exist in collection "
                                           f"{request.collection_name}")
            if not f.enable_analyzer:
                raise errors.InvalidParameter(f"field {f.name} does not enable analyzer")
            own = text_analyzer(f)  # the field's, as its inserts are analyzed
            if isinstance(own, MultiAnalyzer):
                analyzers = _per_text(own, list(request.analyzer_names), len(request.placeholder))
            else:
                analyzer = own
        else:
            analyzer = parse_params(request.analyzer_params or None)
        reply = milvus_pb2.RunAnalyzerResponse(status=status.success())
        for i, raw in enumerate(request.placeholder):
            if analyzers is not None:
                analyzer = analyzers[i]
            spans = analyzer.spans(raw.decode("utf-8", "replace"))
            ids = term_ids([t for t, *_ in spans]).tolist() if request.with_hash else [0] * len(spans)
            result = reply.results.add()
            for (token, start, end, pos, width), h in zip(spans, ids, strict=True):
                tok = result.tokens.add(token=token)
                if request.with_detail:
                    tok.start_offset, tok.end_offset, tok.position, tok.position_length = start, end, pos, width
                if request.with_hash:
                    tok.hash = h
        return reply

    @rpc(milvus_pb2.ComputePhraseMatchSlopResponse)
    def ComputePhraseMatchSlop(self, request, context):
        """Per data text, whether the query text's tokens are all in it and the smallest slop at which
        ``phrase_match`` finds them (``vecdb.phrase_slop``), -1 where not, with ``analyzer_params``'
        analyzer (empty: the standard one). An empty query or no data text: an empty answer (Milvus's
        query node ``computePhraseMatchSlopByParams``). Unlike Milvus, which answers not matched for
        every text when the analyzer cannot be built, bad ``analyzer_params`` are an error (1100)."""
        if not request.query_text or not request.data_texts:
            return milvus_pb2.ComputePhraseMatchSlopResponse(status=status.success())
        analyzer = parse_params(request.analyzer_params or None)
        phrase = [(t, pos) for t, _, _, pos, _ in analyzer.spans(request.query_text)]
        slops = [min_phrase_slop(phrase, [(t, pos) for t, _, _, pos, _ in analyzer.spans(text)])
                 for text in request.data_texts]
        return milvus_pb2.ComputePhraseMatchSlopResponse(
            status=status.success(), is_match=[s is not None for s in slops],
            slops=[-1 if s is None else s for s in slops])


def _per_text(multi: MultiAnalyzer, names: list[str], n: int) -> list:
    """Each of ``n`` texts' analyzer by ``names`` (Milvus's ``shardDelegator.RunAnalyzer``)."""
    if not names:
        raise errors.MissingParameter("analyzer names must be set for multi analyzer")
    if len(names) == 1:
        names = names * n
    if len(names) != n:
        raise errors.InvalidParameter("multi analyzer input text and analyzer name must have same length")
    return [multi.analyzer(name) for name in names]

"""vecdb.proxy.highlight: Milvus 2.6's LexicalHighlighter. The fragments of the Milvus documentation's
examples (text-highlighter.md) exactly, the fragment rules of the delegator's
``fetchFragmentsFromOffsets`` (offset, size, count, spans joining a fragment), tag rotation, the
analyzer's character offsets (stemming, stop words, non-ASCII text), and the parameter checks with
Milvus's wording."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymilvus import LexicalHighlighter
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import common_pb2, schema_pb2

from vecdb.analyzer import Analyzer, parse_params
from vecdb.errors import InvalidParameter
from vecdb.proxy.highlight import (
    Options,
    fragments,
    highlight_results,
    merge_spans,
    parse_options,
    plan_highlight,
    render,
)
from vecdb.schema import CollectionSchema, DataType

DOCS = [
    "my first test doc",
    "my second test doc",
    "my first test doc. Milvus is an open-source vector database built for GenAI applications.",
    "my second test doc. Milvus is an open-source vector database that suits AI applications of every size "
    "from running a demo chatbot to building web-scale search.",
]


def _pb(highlighter) -> common_pb2.Highlighter:
    return Prepare.highlighter_schema(highlighter)  # what pymilvus 2.6 sends


def _schema() -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    for name, params in (("text", {"enable_analyzer": "true", "enable_match": "true"}),
                         ("en", {"enable_analyzer": "true", "analyzer_params": '{"type": "english"}'}),
                         ("plain", {})):
        f = pb.fields.add(name=name, data_type=DataType.VARCHAR)
        f.type_params.add(key="max_length", value="2000")
        for k, v in params.items():
            f.type_params.add(key=k, value=v)
    pb.fields.add(name="sparse", data_type=DataType.SPARSE_FLOAT_VECTOR)
    d = pb.fields.add(name="dense", data_type=DataType.FLOAT_VECTOR)
    d.type_params.add(key="dim", value="2")
    pb.functions.add(name="bm25", type=schema_pb2.FunctionType.BM25, input_field_names=["text"],
                     output_field_names=["sparse"])
    return CollectionSchema.from_proto(pb, "c")


def _texts(*texts: str) -> bytes:
    group = common_pb2.PlaceholderGroup()
    group.placeholders.add(tag="$0", type=common_pb2.PlaceholderType.VarChar, values=[t.encode() for t in texts])
    return group.SerializeToString()


def _run(highlighter, queries: list[str], hits: list[list[str]], field="text", metric="BM25", anns="sparse"):
    """What pymilvus shows for each query's hits: ``hit["highlight"][field]["fragments"]``."""
    schema = _schema()
    hl = plan_highlight(_pb(highlighter), schema, metric, schema.field(anns), _texts(*queries))
    assert hl is not None
    values = np.array([t for q in hits for t in q], dtype=object)
    results = highlight_results(hl, [len(q) for q in hits], dict.fromkeys(hl.fields, values))
    got = {r.field_name: [list(d.fragments) for d in r.datas] for r in results}
    assert all(not d.scores for r in results for d in r.datas)
    rows = got[field]
    out, at = [], 0
    for q in hits:
        out.append(rows[at:at + len(q)])
        at += len(q)
    return out


def test_the_milvus_documentation_examples():
    braces = {"pre_tags": ["{"], "post_tags": ["}"]}
    # Example 1: the BM25 search terms
    assert _run(LexicalHighlighter(highlight_search_text=True, **braces), ["test"], [DOCS]) == [[
        ["{test} doc"], ["{test} doc"],
        ["{test} doc. Milvus is an open-source vector database built for GenAI applications."],
        ["{test} doc. Milvus is an open-source vector database that suits AI applications of every size from run"]]]
    # Example 2: and the terms of a TEXT_MATCH query
    hl = LexicalHighlighter(highlight_search_text=True, **braces,
                            highlight_query=[{"type": "TextMatch", "field": "text", "text": "my doc"}])
    assert _run(hl, ["test"], [DOCS]) == [[
        ["{my} first {test} {doc}"], ["{my} second {test} {doc}"],
        ["{my} first {test} {doc}. Milvus is an open-source vector database built for GenAI applications."],
        ["{my} second {test} {doc}. Milvus is an open-source vector database that suits AI applications of every "
         "siz"]]]
    # Example 3: fragment_offset and fragment_size
    hl = LexicalHighlighter(highlight_search_text=True, fragment_offset=20, fragment_size=60, **braces)
    assert _run(hl, ["Milvus"], [DOCS[2:]]) == [[
        ["my first test doc. {Milvus} is an open-source vector database "],
        ["my second test doc. {Milvus} is an open-source vector database"]]]
    # Example 4: each query's hits with its own search terms
    assert _run(LexicalHighlighter(highlight_search_text=True, **braces), ["test", "Milvus"],
                [DOCS[:2], DOCS[2:]]) == [
        [["{test} doc"], ["{test} doc"]],
        [["{Milvus} is an open-source vector database built for GenAI applications."],
         ["{Milvus} is an open-source vector database that suits AI applications of every size from running a dem"]]]
    # Example 5: HTML tags; and the defaults <em></em>
    assert _run(LexicalHighlighter(highlight_search_text=True, pre_tags=["<mark>"], post_tags=["</mark>"]),
                ["test"], [DOCS[:1]]) == [[["<mark>test</mark> doc"]]]
    assert _run(LexicalHighlighter(highlight_search_text=True), ["test"], [DOCS[:1]]) == [[["<em>test</em> doc"]]]
    # the text-filtering section: the fragment starts at the first match
    hl = LexicalHighlighter(**braces, highlight_query=[{"type": "TextMatch", "field": "text",
                                                         "text": "text filtering"}])
    assert _run(hl, ["x"], [["This document explains how text filtering works in Milvus."]]) == [[
        ["{text} {filtering} works in Milvus."]]]


def test_fragments_follow_the_delegator_rules():
    # a span at or before the fragment's end joins it and stretches it; a later one opens the next
    assert [(f.start, f.end, f.spans) for f in fragments(50, [(0, 2), (5, 8), (8, 20), (30, 32)], 0, 5, 5)] == [
        (0, 20, [(0, 2), (5, 8), (8, 20)]), (30, 35, [(30, 32)])]
    # the offset keeps characters before the first span, never before the text
    assert [(f.start, f.end) for f in fragments(50, [(3, 5), (40, 45)], 10, 8, 5)] == [(0, 8), (30, 45)]
    # at most num_of_fragments (0: none), never past the text's end
    assert len(fragments(100, [(0, 1), (10, 11), (20, 21)], 0, 2, 2)) == 2
    assert fragments(100, [(0, 1)], 0, 2, 0) == []
    assert [(f.start, f.end) for f in fragments(12, [(10, 12)], 0, 100, 5)] == [(10, 12)]
    assert merge_spans([(5, 8), (0, 2), (1, 3), (8, 9), (20, 22), (20, 21)]) == [(0, 3), (5, 9), (20, 22)]


def test_tags_rotate_within_each_fragment():
    text = "alpha beta gamma delta"
    spans = [(0, 5), (6, 10), (11, 16), (17, 22)]
    frag = fragments(len(text), spans, 0, 100, 5)[0]
    assert render(text, frag, ["<a>", "<b>"], ["</a>"]) == "<a>alpha</a> <b>beta</a> <a>gamma</a> <b>delta</a>"
    frags = fragments(len(text), [(0, 5), (17, 22)], 0, 6, 5)
    assert [render(text, f, ["<a>", "<b>"], ["</a>", "</b>"]) for f in frags] == ["<a>alpha</a> ", "<a>delta</a>"]


def test_terms_are_the_analyzers_tokens():
    # the english analyzer: stems match whatever the word's form, stop words are never highlighted
    hl = LexicalHighlighter(pre_tags=["["], post_tags=["]"], highlight_query=[
        {"type": "TextMatch", "field": "en", "text": "the running dogs"}])
    assert _run(hl, ["x"], [["The dog runs; two Dogs ran, the DOG's run!"]], field="en") == [[
        ["[dog] [runs]; two [Dogs] ran, the [DOG]'s [run]!"]]]  # (from the first match: fragment_offset 0)
    # character offsets on non-ASCII text; case folded by the analyzer, not the highlight
    hl = LexicalHighlighter(highlight_search_text=True, pre_tags=["<"], post_tags=[">"], fragment_size=7)
    # (7 characters from the match: a fragment may end inside a word, as Milvus's)
    assert _run(hl, ["ÉTÉ"], [["Un été très chaud, été!"]]) == [[["<été> trè", "<été>!"]]]


def test_analyzer_char_spans_map_back_through_length_changing_transforms():
    a = Analyzer()
    assert a.char_spans("Hello, wörld") == [("hello", 0, 5, 0), ("wörld", 7, 12, 1)]
    assert a.spans("Hello, wörld") == [("hello", 0, 5, 0, 1), ("wörld", 7, 13, 1, 1)]  # bytes, as RunAnalyzer
    # "İ" lowercases to two characters (an "i" and a combining dot, which folding keeps, as Milvus), a ligature
    # folds to two: the offsets stay the original text's
    text = "İstanbul ﬁne day"
    folding = parse_params({"tokenizer": "standard", "filter": ["lowercase", "asciifolding"]})
    got = folding.char_spans(text)
    assert [(t, text[s:e]) for t, s, e, _ in got] == [("i\u0307stanbul", "İstanbul"), ("fine", "ﬁne"),
                                                        ("day", "day")]
    assert [(t, text[s:e]) for t, s, e, _ in a.char_spans(text)][2] == ("day", "day")


def test_no_hits_no_highlights_and_nulls_have_no_fragments():
    schema = _schema()
    hl = plan_highlight(_pb(LexicalHighlighter(highlight_search_text=True)), schema, "BM25", schema.field("sparse"),
                        _texts("a", "b"))
    assert hl is not None and hl.fields == ["text"]
    assert highlight_results(hl, [0, 0], {"text": np.array([], object)}) == []
    res = highlight_results(hl, [1, 1], {"text": np.array([None, "b b"], object)})
    assert [list(d.fragments) for d in res[0].datas] == [[], ["<em>b</em> <em>b</em>"]]


def test_one_result_per_field_search_text_field_first():
    schema = _schema()
    pb = _pb(LexicalHighlighter(highlight_search_text=True, highlight_query=[
        {"type": "TextMatch", "field": "en", "text": "cats"}, {"type": "TextMatch", "field": "text", "text": "b"}]))
    hl = plan_highlight(pb, schema, "BM25", schema.field("sparse"), _texts("a"))
    assert hl is not None and hl.fields == ["text", "en"]
    res = highlight_results(hl, [1], {"text": np.array(["a b c"], object), "en": np.array(["a cat"], object)})
    assert [(r.field_name, list(r.datas[0].fragments)) for r in res] == [
        ("text", ["<em>a</em> <em>b</em> c"]), ("en", ["<em>cat</em>"])]  # (the search text is for "text" only)


def test_nothing_to_highlight_is_no_highlighter():
    schema = _schema()
    for h in (LexicalHighlighter(), LexicalHighlighter(highlight_search_text=False, pre_tags=["<b>"])):
        assert plan_highlight(_pb(h), schema, "L2", schema.field("dense"), b"") is None


def test_options_defaults_and_what_pymilvus_sends():
    assert parse_options(_pb(LexicalHighlighter())) == Options()
    opts = parse_options(_pb(LexicalHighlighter(pre_tags=["<b>", "<i>"], post_tags=["</b>"], fragment_offset=3,
                                                fragment_size=7, num_of_fragments=0, highlight_search_text=True)))
    assert opts == Options(("<b>", "<i>"), ("</b>",), 3, 7, 0, True, ())


def _raw(**params) -> common_pb2.Highlighter:
    return common_pb2.Highlighter(type=common_pb2.HighlightType.Lexical,
                                  params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items()])


@pytest.mark.parametrize("params, words", [
    ({"pre_tags": "[]"}, "pre_tags cannot be empty list"),
    ({"post_tags": "null"}, "post_tags cannot be empty list"),
    ({"pre_tags": "<b>"}, "unmarshal pre_tags as string array failed"),
    ({"post_tags": "[1]"}, "unmarshal post_tags as string list failed"),
    ({"fragment_size": "0"}, "invalid fragment_size: 0"),
    ({"fragment_size": "1.5"}, r"invalid fragment_size: 1\.5"),
    ({"num_of_fragments": "-1"}, "invalid num_of_fragments: -1"),
    ({"fragment_offset": "x"}, "invalid fragment_offset: x"),
    ({"highlight_search_text": "yes"}, "unmarshal highlight_search_text as bool failed"),
    ({"highlight_query": "{}"}, "unmarshal highlight queries as json array failed"),
    ({"highlight_query": "[1]"}, "item in array is not json object"),
    ({"highlight_query": json.dumps([{"type": "TextMatch", "field": "text"}])}, "must set `text` in query"),
    ({"highlight_query": json.dumps([{"type": 1, "field": "text", "text": "a"}])}, "`type` must be string"),
    ({"highlight_query": json.dumps([{"type": "PhraseMatch", "field": "text", "text": "a"}])},
     "invalid highlight query type: PhraseMatch"),
])
def test_bad_parameters_are_refused_with_milvus_wording(params, words):
    with pytest.raises(InvalidParameter, match=words):
        parse_options(_raw(**params))


def test_refusals_against_the_collection():
    schema = _schema()
    search_text = _pb(LexicalHighlighter(highlight_search_text=True))
    with pytest.raises(InvalidParameter, match='only support with metric type "BM25" but was: L2'):
        plan_highlight(search_text, schema, "L2", schema.field("dense"), b"")
    sparse_query = common_pb2.PlaceholderGroup()
    sparse_query.placeholders.add(tag="$0", type=common_pb2.PlaceholderType.SparseFloatVector, values=[b"\0" * 8])
    with pytest.raises(InvalidParameter, match="provide varchar/text for BM25 Function based search, got Sparse"):
        plan_highlight(search_text, schema, "BM25", schema.field("sparse"), sparse_query.SerializeToString())
    for field, words in (("nope", "highlight field not found in schema: nope"), ("plain", "has no analyzer")):
        query = _pb(LexicalHighlighter(highlight_query=[{"type": "TextMatch", "field": field, "text": "a"}]))
        with pytest.raises(InvalidParameter, match=words):
            plan_highlight(query, schema, "L2", schema.field("dense"), b"")
    with pytest.raises(InvalidParameter, match="Create SemanticHighlight failed"):
        parse_options(common_pb2.Highlighter(type=common_pb2.HighlightType.Semantic))
    with pytest.raises(InvalidParameter, match="unsupported highlight type: 7"):
        parse_options(common_pb2.Highlighter(type=7))

"""Multi-language analyzers (``multi_analyzer_params``, Milvus 2.5.x / 2.6) through pymilvus on every
deployment: Milvus's multi-language-analyzers.md example (English and Chinese rows, each analyzed by the
analyzer its ``language`` names; searches with ``analyzer_name``; the documented scores), the default
analyzer for unknown names, run_analyzer with ``analyzer_names``, highlighting, describe, and the
refusals with Milvus's messages."""

from __future__ import annotations

import json

import pytest
from pymilvus import DataType, Function, FunctionType, LexicalHighlighter, MilvusClient, MilvusException

MULTI = {"analyzers": {"english": {"type": "english"}, "chinese": {"type": "chinese"},
                       "default": {"tokenizer": "whitespace"}},
         "by_field": "language", "alias": {"cn": "chinese", "en": "english"}}
DOCS = [("Artificial intelligence is transforming technology", "english"),
        ("Machine learning models require large datasets", "en"),
        ("人工智能正在改变技术领域", "chinese"),
        ("机器学习模型需要大型数据集", "cn")]


def _schema(multi=None, match=False, analyzer_params=None):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("language", DataType.VARCHAR, max_length=255)
    kw = {"analyzer_params": analyzer_params} if analyzer_params else {}
    schema.add_field("text", DataType.VARCHAR, max_length=8192, enable_analyzer=True, enable_match=match,
                     multi_analyzer_params=multi or MULTI, **kw)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("text_to_vector", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    return schema


def _create(client, name):
    client.create_collection(name, schema=_schema())
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": i, "text": t, "language": lang} for i, (t, lang) in enumerate(DOCS)])


def _search(client, name, text, **params):
    return client.search(name, [text], anns_field="sparse", limit=3, output_fields=["text", "language"],
                         search_params={"metric_type": "BM25", "drop_ratio_search": "0", **params},
                         consistency_level="Strong")[0]


def test_milvus_docs_example(client, name):
    _create(client, name)
    hits = _search(client, name, "artificial intelligence", analyzer_name="english")
    assert [(h["id"], round(h["distance"], 4)) for h in hits] == [(0, 2.7881)]  # the docs' expected output
    hits = _search(client, name, "人工智能", analyzer_name="cn")
    assert [(h["id"], round(h["distance"], 4)) for h in hits] == [(2, 3.3814)]
    # the english analyzer stems the query: "models" finds "model"; the default (whitespace) analyzer
    # keeps "models" as it is, which no english row holds (they hold "model")
    assert [h["id"] for h in _search(client, name, "models", analyzer_name="en")] == [1]
    assert list(_search(client, name, "models")) == []
    assert list(_search(client, name, "models", analyzer_name="klingon")) == []  # unknown: default
    # a row of an unknown language is analyzed by the default analyzer (whitespace: "Models" as it is)
    client.insert(name, [{"id": 9, "text": "Models everywhere", "language": "fr"}])
    assert [h["id"] for h in _search(client, name, "Models")] == [9]
    assert [h["id"] for h in _search(client, name, "models", analyzer_name="english")] == [1]
    desc = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert json.loads(desc["text"]["params"]["multi_analyzer_params"]) == MULTI


def test_run_analyzer_with_analyzer_names_and_highlight(client, name):
    _create(client, name)
    res = client.run_analyzer(["Running dogs", "人工智能"], collection_name=name, field_name="text",
                              analyzer_names=["en", "chinese"])
    assert [r.tokens for r in res] == [["run", "dog"], ["人工", "智能", "人工智能"]]
    res = client.run_analyzer(["Running dogs", "Big cats"], collection_name=name, field_name="text",
                              analyzer_names="english")  # one name for every text
    assert [r.tokens for r in res] == [["run", "dog"], ["big", "cat"]]
    res = client.run_analyzer("Running dogs", collection_name=name, field_name="text", analyzer_names=["x"])
    assert res.tokens == ["Running", "dogs"]  # unknown: default
    with pytest.raises(MilvusException) as e:
        client.run_analyzer("x", collection_name=name, field_name="text")
    assert e.value.code == 1101 and "analyzer names must be set for multi analyzer" in e.value.message
    with pytest.raises(MilvusException) as e:
        client.run_analyzer(["a", "b", "c"], collection_name=name, field_name="text", analyzer_names=["en", "cn"])
    assert e.value.code == 1100 and "must have same length" in e.value.message
    # highlighting: the search text through analyzer_name's analyzer, each hit through its own row's
    hits = client.search(name, ["intelligence"], anns_field="sparse", limit=3, consistency_level="Strong",
                         search_params={"metric_type": "BM25", "analyzer_name": "english"},
                         highlighter=LexicalHighlighter(highlight_search_text=True, pre_tags=["["], post_tags=["]"]))
    assert [h["highlight"]["text"]["fragments"] for h in hits[0]] == [
        ["[intelligence] is transforming technology"]]  # (a fragment starts at its first match)


def _code(fn, *args, **kw) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kw)
    return e.value.code, e.value.message


def test_refusals(client, name):
    cases = [
        (_schema(match=True), "multi analyzer now only support for bm25, but now field text enable match"),
        (_schema(analyzer_params={"type": "english"}),
         "field text analyzer params should be none if has multi analyzer params"),
        (_schema({k: v for k, v in MULTI.items() if k != "by_field"}),
         "multi analyzer params now must set by_field to specify with field decide analyzer"),
        (_schema({**MULTI, "by_field": "lang"}),
         f'multi analyzer dependent field "lang" not exist in collection {name}'),
        (_schema({**MULTI, "by_field": "id"}),
         "multi analyzer params now only support by string field, but field id is not string"),
        (_schema({**MULTI, "analyzers": {"english": {"type": "english"}}}),
         "multi analyzer must set default analyzer for all unknown value"),
        (_schema({**MULTI, "analyzers": {"default": {"tokenizer": "lindera"}}}),
         "analyzer default params invalid: lindera tokenizer must be costum"),
    ]
    for schema, words in cases:
        code, msg = _code(client.create_collection, name, schema=schema)
        assert code == 1100 and words in msg, (words, msg)
        assert not client.has_collection(name)

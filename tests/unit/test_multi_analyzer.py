"""Multi-language analyzers (``multi_analyzer_params``; vecdb.analyzer.MultiAnalyzer, vecdb.bm25): name
resolution as Milvus's MultiAnalyzerBM25FunctionRunner, per-row term frequencies grouped by analyzer,
the search analyzer by ``analyzer_name``, and the schema checks of Milvus's validateAnalyzer /
validateMultiAnalyzerParams (their messages)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb import bm25
from vecdb.analyzer import MultiAnalyzer, parse_multi_params, parse_params
from vecdb.errors import InvalidParameter
from vecdb.schema import CollectionSchema, DataType

PARAMS = {"analyzers": {"english": {"type": "english"}, "chinese": {"type": "chinese"},
                        "default": {"tokenizer": "whitespace"}},
          "by_field": "language", "alias": {"cn": "chinese", "en": "english"}}


def _multi(params=None) -> MultiAnalyzer:
    return parse_multi_params(json.dumps(params or PARAMS))


def test_names_resolve_through_aliases_else_to_default():
    m = _multi()
    assert [m.resolve(n) for n in ("english", "en", "cn", "chinese", "fr", "", None)] == [
        "english", "english", "chinese", "chinese", "default", "default", "default"]
    assert m.analyzer("en") == parse_params({"type": "english"})
    # an alias of "default" applies to unknown names too (Milvus's getAnalyzer recurses on "default")
    odd = _multi({**PARAMS, "alias": {"default": "english"}})
    assert odd.resolve("klingon") == "english"


def test_term_frequencies_use_each_rows_analyzer_in_row_order():
    m = _multi()
    texts = ["Running dogs", "人工智能正在改变技术领域", "Running dogs", "Running dogs", "机器学习"]
    names = ["en", "chinese", "fr", None, "cn"]
    got = m.term_frequencies(texts, names)
    for text, name, row in zip(texts, names, got, strict=True):
        assert row == m.analyzer(name).term_frequencies([text])[0]
    assert got[0] != got[2]  # english stems ("run", "dog"); the whitespace default keeps "Running"
    assert sorted(len(rows) for _, rows in m.groups(names)) == [1, 2, 2]  # one run of each analyzer


def test_bm25_output_column_and_search_analyzer():
    schema = CollectionSchema.from_proto(_pb(), "c")
    (fn,) = schema.functions
    cols = {"text": np.array(["Running dogs", "Running dogs"], object), "language": np.array(["en", "x"], object)}
    tf = bm25.term_frequencies(schema, fn, cols)
    assert tf is not None and tf[0] == parse_params({"type": "english"}).term_frequencies(["Running dogs"])[0]
    assert tf[1] == parse_params({"tokenizer": "whitespace"}).term_frequencies(["Running dogs"])[0]
    # the language field not sent: the default analyzer
    only_text = bm25.term_frequencies(schema, fn, {"text": cols["text"]})
    assert only_text is not None and only_text[0] == tf[1]
    assert bm25.output_analyzer(schema, "sp", "cn") == parse_params({"type": "chinese"})
    assert bm25.output_analyzer(schema, "sp") == parse_params({"tokenizer": "whitespace"})


def _pb(multi=None, lang_type=DataType.VARCHAR, extra=None, lang=True):
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    if lang:
        lf = pb.fields.add(name="language", data_type=lang_type)
        if lang_type == DataType.VARCHAR:
            lf.type_params.add(key="max_length", value="16")
    t = pb.fields.add(name="text", data_type=DataType.VARCHAR)
    t.type_params.add(key="max_length", value="100")
    t.type_params.add(key="enable_analyzer", value="true")
    raw = multi if isinstance(multi, str) else json.dumps(multi or PARAMS)
    t.type_params.add(key="multi_analyzer_params", value=raw)
    for k, v in (extra or {}).items():
        t.type_params.add(key=k, value=v)
    pb.fields.add(name="sp", data_type=DataType.SPARSE_FLOAT_VECTOR)
    pb.functions.add(name="bm25", type=schema_pb2.FunctionType.BM25, input_field_names=["text"],
                     output_field_names=["sp"])
    return pb


def test_multi_analyzer_schema_is_taken():
    schema = CollectionSchema.from_proto(_pb(), "c")
    text = schema.field("text")
    assert text is not None and json.loads(text.type_params["multi_analyzer_params"]) == PARAMS


_NO_DEFAULT = {**PARAMS, "analyzers": {"english": {"type": "english"}}}


@pytest.mark.parametrize("kw, message", [
    ({"extra": {"enable_match": "true"}}, "multi analyzer now only support for bm25, but now field text enable match"),
    ({"extra": {"analyzer_params": '{"type": "english"}'}},
     "field text analyzer params should be none if has multi analyzer params"),
    ({"multi": {"analyzers": PARAMS["analyzers"]}},
     "multi analyzer params now must set by_field to specify with field decide analyzer"),
    ({"multi": {**PARAMS, "by_field": 3}}, "multi analyzer params by_field must be string but now: 3"),
    ({"lang": False}, 'multi analyzer dependent field "language" not exist in collection c'),
    ({"lang_type": DataType.INT64},
     "multi analyzer params now only support by string field, but field language is not string"),
    ({"multi": {**PARAMS, "alias": {"cn": 1}}}, 'multi analyzer alias must be string map but now: {"cn": 1}'),
    ({"multi": {"by_field": "language"}}, "multi analyzer params must set analyzers"),
    ({"multi": {**PARAMS, "analyzers": {"default": {"type": "klingon"}}}},
     "analyzer default params invalid: analyzer type 'klingon'"),
    ({"multi": _NO_DEFAULT}, "multi analyzer must set default analyzer for all unknown value"),
    ({"multi": "{not json"}, "multi analyzer params of field (text) are not valid JSON"),
])
def test_bad_multi_analyzer_params_are_refused_as_milvus_does(kw, message):
    with pytest.raises(InvalidParameter) as e:
        CollectionSchema.from_proto(_pb(**kw), "c")
    assert message in e.value.message and e.value.code == 1100

"""vecdb.analyzer (tokenizers, filters, Milvus's term ids, term-frequency rows) and the BM25 function's
schema rules (vecdb.schema._parse_functions: Milvus's validateFunction checks and messages)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb import sparse
from vecdb.analyzer import ENGLISH_STOP_WORDS, Analyzer, parse_params, term_ids
from vecdb.errors import InvalidParameter
from vecdb.schema import CollectionSchema, DataType, FunctionType


def test_standard_tokenizer_word_boundaries_and_lowercase():
    a = parse_params('{"type": "standard"}')
    text = "Don't stop: U.S.A costs 1,000.50 dollars; hello_world -- Cafe\u0301 ÜBER 東京 x2!"
    # Milvus's standard tokenizer (tantivy's SimpleTokenizer): alphanumeric runs, every other character cuts
    assert a.tokens(text) == ["don", "t", "stop", "u", "s", "a", "costs", "1", "000", "50", "dollars", "hello",
                              "world", "cafe", "über", "東京", "x2"]
    assert a.tokens("") == [] and a.tokens("  ,.;  ") == []
    assert parse_params(None) == parse_params("") == Analyzer()  # no params: the standard analyzer


def test_filters_stop_words_length_ascii_folding_and_whitespace():
    a = parse_params({"type": "standard", "stop_words": ["_english_", "cat"]})
    assert a.tokens("The Cat and the DOG are in it") == ["dog"]
    assert {"the", "and", "of", "a"} <= ENGLISH_STOP_WORDS
    b = parse_params({"tokenizer": "standard", "filter": ["lowercase", {"type": "length", "max": 3},
                                                          {"type": "stop", "stop_words": ["ab"]}]})
    assert b.tokens("AB abc ABCD x") == ["abc", "x"]
    c = parse_params({"tokenizer": "whitespace", "filter": ["asciifolding"]})
    assert c.tokens("Café  Naïve-Thing,") == ["Cafe", "Naive-Thing,"]  # no lowercase filter: case kept
    d = parse_params({"tokenizer": "standard", "filter": ["lowercase", "alphanumonly"]})
    assert d.tokens("abc don't 東京 x_y 42") == ["abc", "don", "t", "x", "y", "42"]


def test_english_analyzer_and_stemmer_filters_stem_as_snowball():
    """Milvus's english analyzer: standard tokenizer, lowercase, the (Snowball) English stemmer, then the
    English stop words; a stemmer filter in a custom chain."""
    en = parse_params({"type": "english"})
    assert en.tokens("The Cats were RUNNING happily, and this is generously done") == [
        "cat", "were", "run", "happili", "generous", "done"]
    assert parse_params({"type": "english", "stop_words": ["cat"]}).tokens("cats and dogs") == ["dog"]
    fr = parse_params({"tokenizer": "standard", "filter": ["lowercase", {"type": "stemmer", "language": "french"}]})
    assert fr.tokens("Les chevaux mangeaient") == ["le", "cheval", "mang"]
    # run_analyzer's spans give the stemmed tokens at their places
    assert [t for t, *_ in en.spans("Running dogs")] == ["run", "dog"]
    # term frequencies and the query rows agree on stems: "runs" finds "running"
    doc, query = en.term_frequencies(["running fast"])[0], en.query_rows(["runs"])[0]
    assert np.frombuffer(query, sparse.PAIR)["i"][0] in np.frombuffer(doc, sparse.PAIR)["i"]


@pytest.mark.parametrize("params, words", [
    ('{"type": "french"}', "analyzer type 'french'"),
    ('{"type": "japanese"}', "analyzer type 'japanese'"),
    ({"tokenizer": "lindera"}, "lindera tokenizer must be costum"),
    ({"tokenizer": "standard", "filter": ["stemmer"]}, "filter 'stemmer'"),
    ({"tokenizer": "standard", "filter": [{"type": "stemmer", "language": "klingon"}]}, "stemmer language 'klingon'"),
    ({"tokenizer": "standard", "filter": [{"type": "pinyin"}]}, "filter {"),
    ({"tokenizer": "standard", "filter": [{"type": "length", "max": 0}]}, "length filter max"),
    ({"type": "standard", "stop_words": "the"}, "stop_words"),
    ({"type": "standard", "tokenizer": "standard"}, "type cannot be given with tokenizer"),
    ({"typo": 1}, "unknown analyzer params"),
    ("{not json", "not valid JSON"),
    ("[1]", "must be a JSON object"),
])
def test_unsupported_or_bad_params_are_refused(params, words):
    with pytest.raises(InvalidParameter, match=None) as e:
        parse_params(params, "text")
    assert e.value.code == 1100 and words in str(e.value) and "text" in str(e.value)


def test_term_ids_are_milvus_crc32_of_the_first_100_bytes():
    toks = ["hello", "", "é" * 60, "a" * 150]
    want = [zlib.crc32(t.encode()[:100]) % (2**32 - 1) for t in toks]
    assert term_ids(toks).tolist() == want
    assert term_ids(["a" * 100 + "x"])[0] == term_ids(["a" * 100 + "y"])[0]  # only 100 bytes hashed


def test_term_frequency_rows_count_tokens_per_row_with_sorted_indices():
    a = Analyzer()
    texts = ["the cat the dog", "", "Cat cat CAT", "dog"]
    col = a.term_frequencies(texts)
    csr = sparse.to_csr(col)
    assert csr.n == 4 and np.diff(csr.indptr).tolist() == [3, 0, 1, 1]
    for i, text in enumerate(texts):
        row = np.frombuffer(col[i], sparse.PAIR)
        assert (np.diff(row["i"].astype(np.int64)) > 0).all()  # a valid sparse row (Milvus's order)
        want: dict[int, float] = {}
        for t in a.tokens(text):
            k = int(term_ids([t])[0])
            want[k] = want.get(k, 0.0) + 1.0
        assert dict(zip(row["i"].tolist(), row["v"].tolist(), strict=True)) == want
    sparse.validate_rows(list(col), "sp")  # what insert would take
    assert len(a.term_frequencies([])) == 0 and a.term_frequencies(["", ""]).tolist() == [b"", b""]


# --- the BM25 function in a schema ----------------------------------------------------------------
def _pb(analyzer: bool = True, text_type=DataType.VARCHAR, out_type=DataType.SPARSE_FLOAT_VECTOR,
        inputs=("text",), outputs=("sp",), params=None, nullable=False, extra_params=None):
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    t = pb.fields.add(name="text", data_type=text_type, nullable=nullable)
    t.type_params.add(key="max_length", value="100")
    if analyzer:
        t.type_params.add(key="enable_analyzer", value="true")
    for k, v in (extra_params or {}).items():
        t.type_params.add(key=k, value=v)
    o = pb.fields.add(name="sp", data_type=out_type)
    if out_type == DataType.FLOAT_VECTOR:
        o.type_params.add(key="dim", value="4")
    fn = pb.functions.add(name="bm25", type=schema_pb2.FunctionType.BM25, input_field_names=list(inputs),
                          output_field_names=list(outputs))
    for k, v in (params or {}).items():
        fn.params.add(key=k, value=v)
    return pb


def test_bm25_function_is_taken_and_round_trips():
    schema = CollectionSchema.from_proto(_pb(extra_params={"analyzer_params": '{"type": "standard"}'}), "c")
    (fn,) = schema.functions
    assert (fn.name, fn.type, fn.input_field_names, fn.output_field_names) == ("bm25", FunctionType.BM25,
                                                                              ["text"], ["sp"])
    assert schema.field("sp").is_function_output and not schema.field("text").is_function_output
    assert schema.field("text").enable_analyzer
    assert schema.bm25_function_of("sp") is fn and schema.bm25_function_of("text") is None
    assert CollectionSchema.from_dict(schema.to_dict()) == schema
    out = schema_pb2.CollectionSchema()
    schema.to_proto(out)
    assert [f.name for f in out.fields if f.is_function_output] == ["sp"]
    assert out.functions[0].input_field_ids == [101] and out.functions[0].output_field_ids == [102]
    assert CollectionSchema.from_proto(out, "c") == schema


@pytest.mark.parametrize("kw, words", [
    ({"analyzer": False}, "BM25 function input field must set enable_analyzer to true"),
    ({"text_type": DataType.INT64}, "enable_analyzer is only for VARCHAR fields"),
    ({"analyzer": False, "text_type": DataType.INT64},
     "BM25 function input field must be a VARCHAR field, got 1 field with type Int64"),
    ({"out_type": DataType.FLOAT_VECTOR},
     "BM25 function output field must be a SparseFloatVector field, but got FloatVector"),
    ({"inputs": ("nope",)}, "function input field not found: nope"),
    ({"outputs": ("nope",)}, "function output field not found: nope"),
    ({"outputs": ("text",)}, "a single field cannot be both input and output in the same function"),
    ({"outputs": ("sp", "sp")}, "each function output field should be used exactly once"),
    ({"inputs": ("text", "text")}, "each function input field should be used exactly once"),
    ({"inputs": ()}, "function input field names cannot be empty"),
    ({"params": {"k": "v"}}, "BM25 function accepts no params"),
    ({"extra_params": {"analyzer_params": '{"type": "japanese"}'}}, "analyzer type 'japanese'"),
])
def test_bm25_function_is_checked_as_milvus_does(kw, words):
    with pytest.raises(InvalidParameter) as e:
        CollectionSchema.from_proto(_pb(**kw), "c")
    assert e.value.code == 1100 and words in str(e.value)


def test_duplicate_function_names_and_outputs_are_refused():
    pb = _pb()
    pb.fields.add(name="sp2", data_type=DataType.SPARSE_FLOAT_VECTOR)
    pb.functions.add(name="bm25", type=schema_pb2.FunctionType.BM25, input_field_names=["text"],
                     output_field_names=["sp2"])
    with pytest.raises(InvalidParameter, match="duplicate function name: bm25"):
        CollectionSchema.from_proto(pb, "c")
    pb.functions[1].name = "other"
    pb.functions[1].output_field_names[0] = "sp"
    with pytest.raises(InvalidParameter, match="duplicate function output field: function other, field sp"):
        CollectionSchema.from_proto(pb, "c")


def test_cdc_target_schema_keeps_the_function_and_rows_leave_its_output_out():
    from vecdb.analyzer import Analyzer as _A
    from vecdb.cdc.target import rows_of, target_schema

    schema = CollectionSchema.from_proto(_pb(extra_params={"analyzer_params": '{"type": "standard"}'}), "c")
    target = target_schema(schema).to_dict()
    (fn,) = target["functions"]
    assert fn["input_field_names"] == ["text"] and fn["output_field_names"] == ["sp"]
    text = next(f for f in target["fields"] if f["name"] == "text")
    assert text["params"]["enable_analyzer"] is True
    assert json.loads(text["params"]["analyzer_params"]) == {"type": "standard"}
    cols = {"id": np.array([1, 2]), "text": np.array(["a b", "c"], object),
            "sp": _A().term_frequencies(["a b", "c"])}
    assert rows_of(schema, cols, 2) == [{"id": 1, "text": "a b"}, {"id": 2, "text": "c"}]


# --- text_match -----------------------------------------------------------------------------------
def _match_schema(match: bool = True):
    pb = _pb(extra_params={"enable_match": "true"} if match else None)
    return CollectionSchema.from_proto(pb, "c")


def test_text_match_filters_rows_holding_any_query_token():
    from vecdb.expr import compile_filter

    schema = _match_schema()
    texts = np.array(["The quick brown fox", "lazy DOG", "", "a fox and a dog", "quickly"], object)
    flt = compile_filter("text_match(text, 'FOX dog')", schema)
    assert flt.evaluate({"text": texts}, 5).tolist() == [True, True, False, True, False]
    assert compile_filter("text_match(text, 'quick') and id > 0", schema).evaluate(
        {"text": texts, "id": np.arange(5)}, 5).tolist() == [False] * 5
    assert compile_filter("not text_match(text, 'quick')", schema).evaluate({"text": texts}, 5).tolist() == [
        False, True, True, True, True]
    assert not compile_filter("text_match(text, '...')", schema).evaluate({"text": texts}, 5).any()
    # the same array again (a sealed segment's column) and a prefix of it reuse the analysis
    assert compile_filter("text_match(text, 'dog')", schema).evaluate({"text": texts[:2]}, 2).tolist() == [
        False, True]


def test_text_match_minimum_should_match_counts_distinct_query_tokens():
    """Milvus 2.6's ``minimum_should_match``: rows holding at least n of the query's distinct tokens
    (a token repeated in the query or the row counts once); more than the query has: no row."""
    from vecdb.expr import compile_filter

    schema = _match_schema()
    texts = np.array(["fox dog cat", "fox fox fox", "dog cat", "bird", "cat dog fox bird"], object)

    def rows(expr: str) -> list[int]:
        return np.flatnonzero(compile_filter(expr, schema).evaluate({"text": texts}, len(texts))).tolist()
    assert rows("text_match(text, 'fox dog cat', minimum_should_match=1)") == [0, 1, 2, 4]
    assert rows("text_match(text, 'fox dog cat', minimum_should_match=2)") == [0, 2, 4]
    assert rows("TEXT_MATCH(text, 'fox dog cat fox', MINIMUM_SHOULD_MATCH = 3)") == [0, 4]
    assert rows("text_match(text, 'fox dog', minimum_should_match=3)") == []
    assert rows("not text_match(text, 'fox dog cat', minimum_should_match=3)") == [1, 2, 3]
    assert rows("text_match(text, 'bird fox', minimum_should_match=2) or text_match(text, 'fox fox', "
                "minimum_should_match=1)") == [0, 1, 4]


def test_phrase_match_keeps_order_and_slop_as_milvus_documents_it():
    """Milvus's phrase-match guide: 'machine learning' matches itself at slop 0, one word in between
    at slop 1, and the two words swapped only from slop 2."""
    from vecdb.analyzer import phrase_within
    from vecdb.expr import compile_filter

    q = ["machine", "learning"]
    assert phrase_within(["machine", "learning", "boosts"], q, 0)
    assert not phrase_within(["machine", "deep", "learning"], q, 0)
    assert phrase_within(["machine", "deep", "learning"], q, 1)
    assert not phrase_within(["learning", "machine"], q, 1) and phrase_within(["learning", "machine"], q, 2)
    assert phrase_within(["deep", "learning", "machine", "x"], q, 2)
    assert not phrase_within(["machine", "a", "b", "c", "learning"], q, 2)
    assert phrase_within(["robotics", "machine", "learning", "models"], ["robotics", "machine", "learning"], 0)
    schema = _match_schema()
    texts = np.array(["Machine learning boosts efficiency", "machine deep learning", "learning machine",
                      "machine", "", "the learning of a machine"], object)
    def rows(expr: str) -> list[int]:
        return np.flatnonzero(compile_filter(expr, schema).evaluate({"text": texts}, len(texts))).tolist()
    assert rows("phrase_match(text, 'machine learning')") == [0]
    assert rows('PHRASE_MATCH(text, "machine learning", 1)') == [0, 1]
    assert rows("phrase_match(text, 'machine learning', 2)") == [0, 1, 2]
    assert rows("phrase_match(text, 'machine learning', 5)") == [0, 1, 2, 5]
    assert rows("not phrase_match(text, 'machine learning') and phrase_match(text, 'machine')") == [1, 2, 3, 5]
    assert rows("phrase_match(text, '')") == []


@pytest.mark.parametrize("expr, words", [
    ("text_match(id, 'x')", "text_match is only supported on VARCHAR fields"),
    ("text_match(text, 3)", "the second argument of text_match must be a string"),
    ("text_match(text)", "text_match takes 2 arguments"),
    ("text_match(text, 'a', minimum_should_match=0)", "minimum_should_match should be >= 1, got 0"),
    ("text_match(text, 'a', minimum_should_match=1001)", "minimum_should_match should be <= 1000, got 1001"),
    ("text_match(text, 'a', minimum_should_match=1.5)", "minimum_should_match should be a const integer"),
    ("text_match(text, 'a', minimum_should_match='2')", "minimum_should_match should be a const integer"),
    ("text_match(text, 'a', slop=2)", "text_match has no option slop"),
    ("phrase_match(text, 'a', slop=2)", "unexpected keyword argument slop="),
    ("array_contains(text, x=1)", "unexpected keyword argument x="),
    ("phrase_match(text, 'a b', -1)", "slop of phrase_match must be a non-negative integer"),
    ("phrase_match(text, 'a b', 1.5)", "slop of phrase_match must be a non-negative integer"),
    ("phrase_match(text, 'a', 1, 2)", "phrase_match takes 2 or 3 arguments"),
    ("phrase_match(id, 'a')", "phrase_match is only supported on VARCHAR fields"),
])
def test_text_and_phrase_match_errors(expr, words):
    from vecdb.expr import compile_filter

    with pytest.raises(InvalidParameter) as e:
        compile_filter(expr, _match_schema())
    assert e.value.code == 1100 and words in str(e.value)
    with pytest.raises(InvalidParameter, match='field "text" does not enable match'):
        compile_filter("text_match(text, 'x')", _match_schema(match=False))
    pb = _pb(analyzer=False, extra_params={"enable_match": "true"})
    pb.functions.pop()
    with pytest.raises(InvalidParameter, match="set to enable match but not enable analyzer"):
        CollectionSchema.from_proto(pb, "c")


# --- BM25 scoring over several segments (vecdb.bm25 through the query node's executor) --------------
class _Seg:
    """A segment as the executor reads it: a sparse column, primary keys, all rows visible."""

    def __init__(self, col: np.ndarray, first_pk: int, sealed: bool):
        self.col, self.first_pk, self.sealed = col, first_pk, sealed

    @property
    def n(self) -> int:
        return len(self.col)

    def column(self, name: str, n: int) -> np.ndarray:
        return self.col[:n] if name == "sp" else np.arange(self.first_pk, self.first_pk + n, dtype=np.int64)

    def visible(self, ts: int, n: int, expired_at: int = 0):
        return None


def _bm25_reference(texts: list[str], q: str, k1: float, b: float) -> dict[int, float]:
    a = Analyzer()
    toks = [a.tokens(t) for t in texts]
    dl = np.array([len(t) for t in toks], float)
    avgdl = dl.sum() / len(texts)
    out: dict[int, float] = {}
    qt = a.tokens(q)
    for term in set(qt):
        tf = np.array([t.count(term) for t in toks], float)
        df = np.count_nonzero(tf)
        idf = np.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
        s = qt.count(term) * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
        for i in np.flatnonzero(tf):
            out[int(i)] = out.get(int(i), 0.0) + float(s[i])
    return out


def test_bm25_statistics_span_sealed_growing_tail_and_older_snapshots():
    from vecdb import sparse as sp
    from vecdb.querynode import executor
    from vecdb.querynode.shard import SegmentView
    from vecdb.schema import FieldSchema

    rng = np.random.default_rng(3)
    words = "red green blue cyan magenta yellow black white".split()
    texts = [" ".join(rng.choice(words, int(rng.integers(1, 9)))) for _ in range(9000)]
    a = Analyzer()
    sealed = _Seg(a.term_frequencies(texts[:3000]), 0, True)
    growing = _Seg(a.term_frequencies(texts[3000:]), 3000, False)
    field = FieldSchema("sp", DataType.SPARSE_FLOAT_VECTOR, is_function_output=True)

    def search(views, q, k1=1.2, b=0.75):
        spec = executor.SearchSpec(field=field, queries=a.query_rows([q]), limit=20, offset=0, metric="BM25",
                                   params={"bm25_k1": k1, "bm25_b": b}, index_type="SPARSE_INVERTED_INDEX")
        hits = executor.search(views, spec, "id", [])
        return hits.pks.tolist(), hits.scores.tolist()

    def check(n_growing: int, q: str, k1=1.2, b=0.75):
        views = [SegmentView(sealed, 3000), SegmentView(growing, n_growing)]
        ref = _bm25_reference(texts[:3000 + n_growing], q, k1, b)
        want = sorted(ref.items(), key=lambda t: (-t[1], t[0]))[:20]
        pks, scores = search(views, q, k1, b)
        np.testing.assert_allclose(scores, [s for _, s in want], rtol=1e-5)
        assert all(abs(ref[pk] - s) <= 1e-5 * s for pk, s in zip(pks, scores, strict=True))

    check(6000, "red blue", 1.5, 0.3)  # postings over all growing rows
    sp.segment_postings(growing, "sp", 6000, 0.0)  # the growing postings cover 6,000 rows now
    check(4000, "cyan cyan white")  # an older snapshot: only its 4,000 rows count, in scores and statistics
    more = a.term_frequencies(["red red red", "magenta"] * 500)
    growing.col = np.concatenate([growing.col, more])  # rows after the postings: scored from their CSR
    texts += ["red red red", "magenta"] * 500
    check(7000, "red magenta")
    assert search([SegmentView(sealed, 3000)], "nothing known") == ([], [])
    # a sealed index's drop_ratio_build leaves values out of the postings, not out of the statistics
    views = [SegmentView(sealed, 3000)]
    spec = executor.SearchSpec(field=field, queries=a.query_rows(["red"]), limit=3000, offset=0, metric="BM25",
                               params={"drop_ratio_build": 0.5}, index_type="SPARSE_INVERTED_INDEX")
    hits = executor.search(views, spec, "id", [])
    ref = _bm25_reference(texts[:3000], "red", 1.2, 0.75)
    assert all(abs(ref[pk] - s) <= 1e-5 * s for pk, s in zip(hits.pks.tolist(), hits.scores.tolist(), strict=True))
    assert len(hits.pks) and sealed.__dict__["_sparse_postings"]["sp"][1] == 0.5  # the index's postings


@pytest.mark.parametrize("raw", ["[" * 100_000, '{"tokenizer": ["x"]}', '{"type": ["standard"]}', '{"filter": [["x"]]}',
                                 '{"filter": [{"type": "length", "max": true}]}', '{"filter": "lowercase"}',
                                 '{"filter": [{"type": "stemmer", "language": null}]}', "null", '"x"'])
def test_hostile_analyzer_params_are_1100_not_crashes(raw):
    with pytest.raises(InvalidParameter) as e:
        parse_params(raw, "text")
    assert e.value.code == 1100


@pytest.mark.parametrize("params", [{"tokenizer": "standard"}, {"tokenizer": "jieba"}, {"tokenizer": "icu"},
                                    {"tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}])
def test_spans_byte_offsets_are_each_token_s_utf8_bytes_in_a_long_mixed_text(params):
    # run_analyzer's byte offsets, from one pass over the text: 1-, 2-, 3- and 4-byte characters,
    # a lone surrogate, and a text long enough that re-encoding its prefix per token would show
    text = ("Ünïcode 日本語 text ñandú 😀 emoji İstanbul ﬁne x\ud800y " * 400)
    a = parse_params(params)
    spans, chars = a.spans(text), a.char_spans(text)
    assert len(spans) == len(chars) > 2000
    for (token, first, last, pos, _), (ctoken, start, end, cpos) in zip(spans, chars):
        assert (token, pos) == (ctoken, cpos)
        assert first == len(text[:start].encode("utf-8", "surrogatepass"))
        assert last - first == len(text[start:end].encode("utf-8", "surrogatepass"))

"""Full-text answers that differed from Milvus 2.5's (Milvus Lite 2.5.1, run side by side through
pymilvus 2.5.14: .dev/litediff/). The expected hits and BM25 scores below are Lite's.

- The standard tokenizer is tantivy's SimpleTokenizer (alphanumeric runs; "don't" is "don", "t") and
  the whitespace tokenizer splits at ASCII white space only; vecdb joined words across ' . , _ and
  split at any Unicode space.
- asciifolding dropped every character it could not fold ("Жук", "日本" made no token) and did not
  fold "ß", "Æ", "ø"; lowercase and asciifolding ran before the tokenizer ("İ", a final sigma).
- The length filter counts UTF-8 bytes ("日本" is 6), not characters.
"""

from __future__ import annotations

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient

from tests.conftest import start_standalone


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    node = start_standalone(str(tmp_path_factory.mktemp("lite25")))
    c = MilvusClient(uri=f"http://127.0.0.1:{node.port}")
    yield c
    c.close()
    node.stop()


def _hits(client: MilvusClient, name: str, analyzer: dict, texts: list[str], queries: list[str]):
    """Each query's hits as sorted (text, score) pairs, over a BM25 collection of ``texts``."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True, analyzer_params=analyzer)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("bm", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    try:
        client.insert(name, [{"id": i, "text": t} for i, t in enumerate(texts)])
        res = client.search(name, queries, anns_field="sparse", limit=30, search_params={"metric_type": "BM25"})
        return {q: sorted((texts[h["id"]], h["distance"]) for h in hits) for q, hits in zip(queries, res)}
    finally:
        client.drop_collection(name)


def _check(got: dict, want: dict) -> None:
    for q, hits in want.items():
        assert [t for t, _ in got[q]] == [t for t, _ in hits], q
        assert [s for _, s in got[q]] == pytest.approx([s for _, s in hits], rel=1e-4), q


def test_standard_tokenizer_cuts_at_every_character_that_is_not_alphanumeric(client):
    texts = ["don't", "well-known", "3.14", "a_b", "x1", "über", "naïve", "café", "U.S.A", "1,000", "foo.bar",
             "it’s", "e-mail", "hello world", "日本語 テキスト", "ab12cd", "x.1", "über-cool", "O'Neil's"]
    got = _hits(client, "lite_std", {"type": "standard"}, texts,
                ["don", "t", "don't", "3", "a", "a_b", "s", "u.s.a", "1,000", "foo", "it", "neil", "日本語", "日",
                 "x1", "x"])
    want = {"don": ["don't"], "t": ["don't"], "don't": ["don't"], "3": ["3.14"], "a": ["U.S.A", "a_b"],
            "a_b": ["U.S.A", "a_b"], "s": ["O'Neil's", "U.S.A", "it’s"],
            "u.s.a": ["O'Neil's", "U.S.A", "a_b", "it’s"], "1,000": ["1,000", "x.1"], "foo": ["foo.bar"],
            "it": ["it’s"], "neil": ["O'Neil's"], "日本語": ["日本語 テキスト"], "日": [], "x1": ["x1"], "x": ["x.1"]}
    assert {q: [t for t, _ in hits] for q, hits in got.items()} == want


def test_whitespace_tokenizer_splits_at_ascii_white_space_only(client):
    texts = ["a\xa0b", "c\x0bd", "e\u3000f", "g\th", "i\x0cj", "k\x1cl"]
    got = _hits(client, "lite_ws", {"tokenizer": "whitespace"}, texts,
                ["a", "a\xa0b", "c", "c\x0bd", "e", "e\u3000f", "g", "i", "k"])
    _check(got, {"a": [], "a\xa0b": [("a\xa0b", 1.7159)], "c": [], "c\x0bd": [("c\x0bd", 1.7159)], "e": [],
                 "e\u3000f": [("e\u3000f", 1.7159)], "g": [("g\th", 1.2789)], "i": [("i\x0cj", 1.2789)], "k": []})


def test_asciifolding_and_lowercase_act_on_tokens_and_keep_what_cannot_fold(client):
    texts = ["Жук a", "日本 b", "straße c", "Æsir d", "øre e", "½ f", "ﬁne g", "x² h", "한국 i", "ĳ j", "ŉ l", "Ǆ m",
             "ΟΔΟΣ n", "İstanbul o", "x™y p", "Ⅻ q"]
    analyzer = {"tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}
    got = _hits(client, "lite_fold", analyzer, texts,
                ["жук", "日本", "strasse", "aesir", "ore", "½", "fine", "x2", "한국", "ij", "n", "dz", "οδοσ", "οδος",
                 "istanbul", "x", "xtmy", "Ⅻ", "xii"])
    one = 2.4582
    _check(got, {"жук": [("Жук a", one)], "日本": [("日本 b", one)], "strasse": [("straße c", one)],
                 "aesir": [("Æsir d", one)], "ore": [("øre e", one)], "½": [("½ f", one)], "fine": [("ﬁne g", one)],
                 "x2": [("x² h", one)], "한국": [("한국 i", one)], "ij": [("ĳ j", one)],
                 "n": [("ŉ l", 1.941), ("ΟΔΟΣ n", 1.941)], "dz": [("Ǆ m", one)], "οδοσ": [("ΟΔΟΣ n", one)],
                 "οδος": [], "istanbul": [], "x": [("x™y p", 2.0471)], "xtmy": [], "Ⅻ": [("Ⅻ q", one)], "xii": []})


def test_length_filter_counts_utf8_bytes(client):
    texts = ["abcd x", "abcde y", "abcdef z", "café w", "über v", "日本 u", "日 t"]
    got = _hits(client, "lite_len", {"tokenizer": "standard", "filter": [{"type": "length", "max": 5}]}, texts,
                ["abcd", "abcde", "abcdef", "café", "über", "日本", "日"])
    one = 1.5671
    _check(got, {"abcd": [("abcd x", one)], "abcde": [("abcde y", one)], "abcdef": [], "café": [("café w", one)],
                 "über": [("über v", one)], "日本": [], "日": [("日 t", one)]})

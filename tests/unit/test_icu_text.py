"""The icu tokenizer (vecdb.icu_text) and the removepunct filter (vecdb.analyzer): the tokens, offsets and
positions Milvus's run_analyzer gives (tantivy-binding's icu_tokneizer.rs, remove_punct_filter.rs), the
example of Milvus's docs (icu-tokenizer.md) exactly, and the filters over icu tokens."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vecdb import icu_text, sparse
from vecdb.analyzer import match_any, match_phrase, parse_multi_params, parse_params, term_ids
from vecdb.errors import InvalidParameter

ICU = {"tokenizer": "icu"}
DOC_TEXT = "Привет! Как дела?"


def test_icu_tokenizer_matches_milvus_docs_example():
    # icu-tokenizer.md: punctuation and spaces stay tokens; removepunct drops them
    assert parse_params(ICU).tokens(DOC_TEXT) == ["Привет", "!", " ", "Как", " ", "дела", "?"]
    assert parse_params({**ICU, "filter": ["removepunct"]}).tokens(DOC_TEXT) == ["Привет", "Как", "дела"]
    assert parse_params({"tokenizer": {"type": "icu"}}) == parse_params(ICU)


def test_run_analyzer_spans_are_bytes_and_positions_are_start_characters():
    """Milvus's icu tokenizer: offsets in UTF-8 bytes, position = the characters before the token,
    position length = its width in characters; filtered tokens leave their positions behind."""
    assert parse_params(ICU).spans(DOC_TEXT) == [
        ("Привет", 0, 12, 0, 6), ("!", 12, 13, 6, 1), (" ", 13, 14, 7, 1), ("Как", 14, 20, 8, 3),
        (" ", 20, 21, 11, 1), ("дела", 21, 29, 12, 4), ("?", 29, 30, 16, 1)]
    assert parse_params({**ICU, "filter": ["removepunct"]}).spans(DOC_TEXT) == [
        ("Привет", 0, 12, 0, 6), ("Как", 14, 20, 8, 3), ("дела", 21, 29, 12, 4)]
    text = "Tokyo 東京スカイツリー 👍🏽 ok"
    chars = parse_params(ICU).char_spans(text)
    assert all(text[s:e] == t for t, s, e, _ in chars) and "".join(t for t, *_ in chars) == text
    assert [t for t, *_ in chars] == ["Tokyo", " ", "東京", "スカイ", "ツリー", " ", "👍🏽", " ", "ok"]


def test_icu_segments_words_of_scripts_without_spaces():
    a = parse_params({**ICU, "filter": ["removepunct"]})
    # Thai by ICU's dictionary (the example of Elasticsearch's icu_tokenizer docs)
    assert a.tokens("สวัสดี ผมมาจากกรุงเทพฯ") == ["สวัสดี", "ผม", "มา", "จาก", "กรุงเทพฯ"]
    assert a.tokens("中文分词测试") == ["中文", "分词", "测试"]
    assert a.tokens("東京スカイツリーの最寄り駅") == ["東京", "スカイ", "ツリー", "の", "最寄り駅"]


def test_icu_keeps_whitespace_runs_and_word_internal_punctuation_together():
    toks = icu_text.tokenize("don't  3.14 e-mail\r\nx")
    assert [t for t, *_ in toks] == ["don't", "  ", "3.14", " ", "e", "-", "mail", "\r\n", "x"]
    assert icu_text.tokenize("") == []
    # a lone surrogate is segmented as U+FFFD; the token keeps the text's own character
    assert icu_text.tokenize("a\ud800b") == [("a", 0, 1), ("\ud800", 1, 2), ("b", 2, 3)]


def test_filters_apply_to_icu_tokens():
    text = "The Café's ÉCOLE, running Dogs!"
    low = parse_params({**ICU, "filter": ["lowercase"]})
    assert low.tokens(text) == ["the", " ", "café's", " ", "école", ",", " ", "running", " ", "dogs", "!"]
    folded = parse_params({**ICU, "filter": ["lowercase", "asciifolding", "removepunct"]})
    assert folded.tokens(text) == ["the", "ecole", "running", "dogs"]  # café's holds an apostrophe: dropped
    full = parse_params({**ICU, "filter": ["lowercase", "removepunct", {"type": "stop", "stop_words": ["the"]},
                                           {"type": "length", "max": 6},
                                           {"type": "stemmer", "language": "english"}]})
    assert full.tokens(text) == ["école", "dog"]  # "running" is 7 characters: the length filter drops it
    assert parse_params({**ICU, "filter": ["alphanumonly"]}).tokens("abc 数据 x1 é") == ["abc", "x1"]
    assert parse_params({**ICU, "filter": ["cncharonly"]}).tokens("abc 数据 x1") == ["数据"]
    # offsets stay the source's where lowercasing changes a length ("İ" lowers to two characters)
    spans = parse_params({**ICU, "filter": ["lowercase", "removepunct"]}).char_spans("İstanbul ok")
    assert [(s, e, p) for _, s, e, p in spans] == [(0, 8, 0), (9, 11, 9)]


def test_removepunct_drops_tokens_holding_punctuation_or_space_as_milvus_regex():
    """Milvus: ``[\\p{Punct}\\s]+`` matched anywhere in the token (Unicode category P, White_Space);
    symbols (S*) are not punctuation."""
    a = parse_params({"tokenizer": "whitespace", "filter": ["removepunct"]})
    assert a.tokens("a.b foo_bar «x» ★ $5 +1 ok 。 、") == ["★", "$5", "+1", "ok"]
    std = parse_params({"tokenizer": "standard", "filter": ["removepunct"]})
    assert std.tokens("don't stop 3.14 now") == ["don", "t", "stop", "3", "14", "now"]  # no punctuation in a token
    icu = parse_params({**ICU, "filter": ["removepunct"]})
    assert icu.tokens("a\u3000b\u00a0c\u2028d") == ["a", "b", "c", "d"]


@pytest.mark.parametrize("params, words", [
    ({"tokenizer": {"type": "icu", "locale": "th"}}, "unknown icu tokenizer params"),
    ({"tokenizer": "icu", "filter": ["nosuchfilter"]}, "filter 'nosuchfilter'"),
])
def test_bad_icu_params_are_refused(params, words):
    with pytest.raises(InvalidParameter) as e:
        parse_params(params)
    assert words in e.value.message and e.value.code == 1100


def test_term_frequencies_text_match_and_phrase_over_icu():
    a = parse_params({**ICU, "filter": ["lowercase", "removepunct"]})
    texts = ["Milvus は高速なベクトルデータベースです", "สวัสดี ผมมาจากกรุงเทพฯ", "Vector search in Bangkok"]
    rows = [np.frombuffer(r, sparse.PAIR) for r in a.term_frequencies(texts)]
    assert [int(r["v"].sum()) for r in rows] == [len(a.tokens(t)) for t in texts]
    assert set(rows[1]["i"].tolist()) == set(term_ids(a.tokens(texts[1])).tolist())
    col = np.array(texts, dtype=object)
    assert match_any(col, a, np.unique(term_ids(a.tokens("กรุงเทพฯ vector")))).tolist() == [False, True, True]
    assert match_phrase(col, a, a.tokens("ผมมาจาก"), 0).tolist() == [False, True, False]
    assert match_phrase(col, a, a.tokens("search Bangkok"), 0).tolist() == [False, False, False]
    assert match_phrase(col, a, a.tokens("search Bangkok"), 1).tolist() == [False, False, True]


def test_multi_analyzer_default_icu():
    multi = parse_multi_params('{"by_field": "lang", "analyzers": {"en": {"type": "english"}, '
                               '"default": {"tokenizer": "icu", "filter": ["removepunct"]}}}')
    assert multi.analyzer("th").tokens("สวัสดี ผม") == ["สวัสดี", "ผม"]
    assert multi.analyzer("en").tokens("Running dogs") == ["run", "dog"]


def test_icu4py_loads_only_when_an_icu_analyzer_runs():
    code = ("import sys, vecdb.analyzer as a; assert 'icu4py' not in sys.modules; "
            "a.parse_params({'tokenizer': 'standard'}).tokens('x'); assert 'icu4py.breakers' not in sys.modules; "
            "a.parse_params({'tokenizer': 'icu'}).tokens('x'); assert 'icu4py.breakers' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

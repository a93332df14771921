"""vecdb.analyzer's regex, decompounder and synonym filters (Milvus's tantivy-binding ``regex_filter.rs``,
tantivy's ``SplitCompoundWords``, Milvus 2.6's ``synonym_filter.rs``): behaviour, positions, order and
the refusals with Milvus's messages."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.analyzer import Analyzer, match_any, match_phrase, parse_params, phrase_within, term_ids
from vecdb.errors import InvalidParameter


def analyzer(*filters, tokenizer="standard") -> Analyzer:
    return parse_params({"tokenizer": tokenizer, "filter": list(filters)})


def refused(params, match: str) -> None:
    with pytest.raises(InvalidParameter, match=match) as e:
        parse_params(params)
    assert e.value.code == 1100


# --- regex ------------------------------------------------------------------------------------------
def test_regex_keeps_tokens_matched_anywhere_not_only_full_matches():
    a = analyzer("lowercase", {"type": "regex", "expr": "^(?!test)"})  # Milvus's own test pattern
    assert a.tokens("Test milvus testing atest") == ["milvus", "atest"]
    assert analyzer({"type": "regex", "expr": "ab"}).tokens("xaby ab ba abc") == ["xaby", "ab", "abc"]  # a search
    assert analyzer({"type": "regex", "expr": "^[a-z]+$"}).tokens("abc ab1 ABC x") == ["abc", "x"]
    assert analyzer({"type": "regex", "expr": ""}).tokens("all tokens kept") == ["all", "tokens", "kept"]
    assert analyzer({"type": "regex", "expr": r"\d"}).tokens("v2 beta 3 rc") == ["v2", "3"]


def test_regex_rust_syntax():
    pytest.importorskip("regex")  # the closer engine (\p{..}, (?<name>..)); re is the fallback
    assert analyzer({"type": "regex", "expr": r"\p{Han}"}, tokenizer="whitespace").tokens("中文 abc 混合x") == \
        ["中文", "混合x"]
    assert analyzer({"type": "regex", "expr": r"(?<d>\d)\z"}).tokens("a1 2b 33") == ["a1", "33"]
    assert analyzer({"type": "regex", "expr": r"(?i)^MIL"}).tokens("milvus Milky ml") == ["milvus", "Milky"]


def test_regex_order_with_other_filters():
    # before lowercase the pattern sees the original case; after, the lowered one
    assert analyzer({"type": "regex", "expr": "^[A-Z]"}, "lowercase").tokens("Alpha beta Gamma") == ["alpha", "gamma"]
    assert analyzer("lowercase", {"type": "regex", "expr": "^[A-Z]"}).tokens("Alpha beta Gamma") == []
    # a stemmer before the regex: the stems are tested
    a = analyzer("lowercase", {"type": "stemmer", "language": "english"}, {"type": "regex", "expr": "run$"})
    assert a.tokens("Running runs runner") == ["run", "run"]


def test_regex_refusals():
    refused({"tokenizer": "standard", "filter": [{"type": "regex"}]}, "must set expr for regex filter")
    refused({"tokenizer": "standard", "filter": [{"type": "regex", "expr": 3}]}, "expr must be string")
    refused({"tokenizer": "standard", "filter": [{"type": "regex", "expr": "a(b"}]},
            r"regex expression invalid, expr:a\(b, err: ")
    refused({"tokenizer": "standard", "filter": [{"type": "regex", "expr": "[z-a]"}]}, "regex expression invalid")


# --- decompounder -----------------------------------------------------------------------------------
def test_decompounder_splits_only_fully_decomposable_tokens():
    a = analyzer("lowercase", {"type": "decompounder",
                               "word_list": ["dampf", "schiff", "fahrt", "brot", "backen", "automat"]})
    assert a.tokens("Dampfschifffahrt brotbackautomat") == ["dampf", "schiff", "fahrt", "brotbackautomat"]
    b = analyzer({"type": "decompounder", "word_list": ["foo", "bar"]})  # tantivy's own cases
    assert b.tokens("") == []
    assert b.tokens("foo bar") == ["foo", "bar"]
    assert b.tokens("foobar") == ["foo", "bar"]
    assert b.tokens("foobarbaz") == ["foobarbaz"]
    assert b.tokens("baz foobar qux") == ["baz", "foo", "bar", "qux"]
    assert b.tokens("foobazbar foo bar foobar") == ["foobazbar", "foo", "bar", "foo", "bar"]
    assert b.tokens("barfoo barbarfoo") == ["bar", "foo", "bar", "bar", "foo"]


def test_decompounder_is_greedy_leftmost_longest():
    # the longest word at each place, never a shorter one that would let the rest split
    a = analyzer({"type": "decompounder", "word_list": ["foo", "foob", "bar", "ar"]})
    assert a.tokens("foobar") == ["foob", "ar"]
    assert analyzer({"type": "decompounder", "word_list": ["foo", "foob", "bar"]}).tokens("foobar") == ["foobar"]
    assert analyzer({"type": "decompounder", "word_list": ["bank", "banknote", "note"]}).tokens(
        "banknote notebank") == ["banknote", "note", "bank"]
    # case-sensitive; an empty word changes nothing; a word may be the whole token
    c = analyzer({"type": "decompounder", "word_list": ["", "bank", "note"]})
    assert c.tokens("BankNote banknote bank x") == ["BankNote", "bank", "note", "bank", "x"]
    assert analyzer({"type": "decompounder", "word_list": ["ü", "ber"]}).tokens("überü") == ["ü", "ber", "ü"]


def test_decompounder_parts_share_position_and_offsets():
    a = analyzer({"type": "decompounder", "word_list": ["bank", "note"]})
    assert a.spans("a banknote b") == [("a", 0, 1, 0, 1), ("bank", 2, 10, 1, 1), ("note", 2, 10, 1, 1),
                                       ("b", 11, 12, 2, 1)]
    assert a.phrase("a banknote b") == (["a", "bank", "note", "b"], [0, 1, 1, 2])
    col = np.array(["a banknote b", "a bank note b"], dtype=object)
    # "bank note" as a phrase needs note right after bank: not where both are one token's parts
    phrase, pos = a.phrase("bank note")
    assert pos == [0, 1] and match_phrase(col, a, phrase, 0, pos).tolist() == [False, True]
    phrase, pos = a.phrase("banknote")
    assert pos == [0, 0] and match_phrase(col, a, phrase, 0, pos).tolist() == [True, False]
    assert match_phrase(col, a, phrase, 1, pos).tolist() == [True, True]


def test_decompounder_refusals():
    base = {"tokenizer": "standard"}
    refused({**base, "filter": [{"type": "decompounder"}]}, "decompounder word list is empty")
    refused({**base, "filter": [{"type": "decompounder", "word_list": []}]}, "decompounder word list is empty")
    refused({**base, "filter": [{"type": "decompounder", "word_list": "bank"}]},
            "decompounder word list should be array")
    refused({**base, "filter": [{"type": "decompounder", "word_list": ["a", 1]}]},
            "decompounder word list item should be string")
    refused({**base, "filter": [{"type": "decompounder", "word_list_file": {"type": "local", "path": "/x"}}]},
            "word_list_file .*not supported")


# --- synonym ----------------------------------------------------------------------------------------
def test_synonym_expand_default_groups_and_mappings():
    a = analyzer("lowercase", {"type": "synonym", "synonyms": ["happy, joyful, cheerful", "fast, quick => speedy"]})
    assert a.tokens("Joyful") == ["happy", "joyful", "cheerful"]
    assert a.tokens("happy") == ["happy", "joyful", "cheerful"]
    assert a.tokens("fast") == ["speedy", "fast"]  # expand keeps a mapped word too
    assert a.tokens("speedy sad") == ["speedy", "sad"]  # a target alone maps to nothing
    # Milvus's file test: rows of one word merge their words
    b = analyzer({"type": "synonym", "synonyms": ["distance, range, span, length", "interval, gap"]})
    assert sorted(b.tokens("distance interval")) == sorted(["distance", "range", "span", "length", "interval", "gap"])


def test_synonym_without_expand_normalizes():
    a = analyzer({"type": "synonym", "expand": False,
                  "synonyms": ["happy, joyful, cheerful", "small, little => tiny, compact"]})
    assert a.tokens("joyful happy cheerful") == ["happy", "happy", "happy"]
    assert a.tokens("little small big") == ["tiny", "compact", "tiny", "compact", "big"]
    # Milvus's own test: escapes, a mapping to "=>", a word "\test"
    b = analyzer({"type": "synonym", "expand": False,
                  "synonyms": ["trans => translate, \\=>", "\\\\test, test, tests"]})
    assert b.tokens("test trans synonym") == ["\\test", "translate", "=>", "synonym"]
    # an empty right side: the word stays as it is
    assert analyzer({"type": "synonym", "expand": False, "synonyms": ["a =>"]}).tokens("a b") == ["a", "b"]


def test_synonym_rule_parsing():
    a = analyzer({"type": "synonym", "synonyms": ["  x ,  y,,z  ", "p=>q", "new\\ york, ny", "a\\,b, ab",
                                                  "e=f, ef", "m, n", "m => o"]}, tokenizer="whitespace")
    assert a.tokens("x") == ["x", "y", "z"]
    assert a.tokens("p") == ["q", "p"]
    assert a.tokens("ny") == ["new york", "ny"]  # an escaped space is in the word (one token never holds one)
    assert a.tokens("ab") == ["a,b", "ab"]
    assert a.tokens("e=f") == ["e=f", "ef"]  # "=" alone is a character of a word
    assert a.tokens("m") == ["m", "n", "o"] and a.tokens("n") == ["m", "n"]  # rules of one word merge
    assert analyzer({"type": "synonym"}).tokens("no rules") == ["no", "rules"]
    assert analyzer({"type": "synonym", "synonyms": ["", "   ", ","]}).tokens("x") == ["x"]


def test_synonym_positions_and_phrase_match():
    a = analyzer("lowercase", {"type": "synonym", "synonyms": ["car, automobile"]})
    assert a.spans("Red car here") == [("red", 0, 3, 0, 1), ("car", 4, 7, 1, 1), ("automobile", 4, 7, 1, 1),
                                       ("here", 8, 12, 2, 1)]
    col = np.array(["a red automobile here", "red car", "car red", "red truck"], dtype=object)
    phrase, pos = a.phrase("red car")
    assert phrase == ["red", "car", "automobile"] and pos == [0, 1, 1]
    assert match_phrase(col, a, phrase, 0, pos).tolist() == [True, True, False, False]
    assert match_phrase(col, a, phrase, 2, pos).tolist() == [True, True, True, False]
    # text_match: any token of the query, synonyms included
    ids = np.unique(term_ids(a.tokens("automobile")))
    assert match_any(col, a, ids).tolist() == [True, True, True, False]
    # BM25 term frequencies count every token
    assert len(a.term_frequencies(["car"])[0]) == 2 * 8  # two (index, value) pairs of 8 bytes


def test_phrase_within_positions():
    assert phrase_within(["a", "b", "c"], ["a", "b"], 0)  # the index form is unchanged
    assert phrase_within(["x", "y", "z"], ["x", "z"], 0, [0, 1, 1], [0, 1])
    assert not phrase_within(["x", "y", "z"], ["x", "z"], 0, [0, 1, 2], [0, 1])
    assert phrase_within(["x", "y", "z"], ["x", "z"], 1, [0, 1, 2], [0, 1])


def test_synonym_refusals():
    base = {"tokenizer": "standard"}

    def syn(**kw):
        return {**base, "filter": [{"type": "synonym", **kw}]}

    refused(syn(expand="yes"), "create synonym filter failed, `expand` must be bool")
    refused(syn(synonyms="a, b"), "create synonym filter failed, `synonyms` must be array")
    refused(syn(synonyms=["a, b", 3]), "create synonym filter failed, item in `synonyms` must be string")
    refused(syn(synonyms=["new york, ny"]),
            r"read synonym dict failed, has space between words new york, ny, please use \\ to escape space")
    refused(syn(synonyms=["a => b => c"]), 'read synonym dict failed, has more than one "=>" in a => b => c')
    refused(syn(synonyms=["a\\x"]), r"invalid synonym escaped: \\x in a\\x")
    refused(syn(synonyms=["a\\"]), r"invalid synonym escaped in the end: a\\")
    refused(syn(synonyms_file={"type": "local", "path": "/x"}), "synonyms_file .*not supported")


# --- all of them ------------------------------------------------------------------------------------
def test_listed_order_and_unchanged_analyzers():
    # an analyzer without the new filters keeps its fixed order and fields (no steps)
    plain = analyzer("lowercase", {"type": "stop", "stop_words": ["the"]})
    assert plain.steps == () and plain.tokens("The cat") == ["cat"]
    # with one, the listed order: stop after the synonym sees the synonym's words
    a = analyzer("lowercase", {"type": "synonym", "synonyms": ["the, teh"]}, {"type": "stop", "stop_words": ["the"]})
    assert a.tokens("Teh cat") == ["teh", "cat"]
    b = analyzer("lowercase", {"type": "stop", "stop_words": ["the"]}, {"type": "synonym", "synonyms": ["cat, kitty"]},
                 {"type": "decompounder", "word_list": ["kit", "ty"]}, {"type": "length", "max": 3})
    assert b.tokens("The kitty") == ["cat", "kit", "ty"]
    # asciifolding after another filter folds per token and keeps what it cannot fold
    c = analyzer({"type": "regex", "expr": "."}, "asciifolding", "lowercase")
    assert c.tokens("Café 東京") == ["cafe", "東京"]
    assert analyzer("asciifolding", {"type": "regex", "expr": "."}).tokens("Café 東京") == ["Cafe", "東京"]
    # equal params, equal analyzers (they key caches)
    assert analyzer({"type": "synonym", "synonyms": ["a, b"]}) == analyzer({"type": "synonym", "synonyms": ["a, b"]})
    assert hash(analyzer({"type": "regex", "expr": "x"})) == hash(analyzer({"type": "regex", "expr": "x"}))


def test_new_filters_with_jieba_and_icu():
    a = analyzer({"type": "synonym", "synonyms": ["向量, vector"]}, tokenizer="jieba")
    toks = a.spans("向量数据库")
    assert ("向量", 0, 6, 0, 2) in toks and ("vector", 0, 6, 0, 2) in toks
    b = analyzer("removepunct", {"type": "regex", "expr": "^[a-z]"}, tokenizer="icu")
    assert b.tokens("hello, World! ok") == ["hello", "ok"]


def test_unknown_filters_list_the_new_ones():
    refused({"tokenizer": "standard", "filter": [{"type": "pinyin"}]}, "regex, decompounder, synonym")
    refused({"tokenizer": "standard", "filter": ["synonym"]}, "is not supported by vecdb")


def test_regex_without_the_regex_package_falls_back_to_re(monkeypatch):
    import sys

    from vecdb import analyzer as mod

    monkeypatch.setitem(sys.modules, "regex", None)  # import regex: ImportError
    mod._regex_matcher.cache_clear()
    try:
        assert analyzer({"type": "regex", "expr": r"(?<d>\d)\z"}).tokens("a1 2b 33") == ["a1", "33"]
        # an escaped backslash before z stays a backslash and a z
        assert analyzer({"type": "regex", "expr": r"\\z"}, tokenizer="whitespace").tokens(r"a\z b z") == [r"a\z"]
        refused({"tokenizer": "standard", "filter": [{"type": "regex", "expr": "a(b"}]}, "regex expression invalid")
    finally:
        mod._regex_matcher.cache_clear()


def test_analyzers_with_steps_pickle():
    import copy
    import pickle

    a = analyzer("lowercase", {"type": "regex", "expr": "^[a-z]"}, {"type": "decompounder", "word_list": ["a", "b"]},
                 {"type": "synonym", "synonyms": ["x, y"]})
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.tokens("AB x 1") == a.tokens("AB x 1") == ["a", "b", "x", "y"]
    assert copy.deepcopy(a).tokens("x") == ["x", "y"]

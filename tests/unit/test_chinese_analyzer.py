"""The chinese analyzer, the jieba tokenizer and the cnalphanumonly / cncharonly filters (vecdb.analyzer,
vecdb.jieba_text): the tokens, offsets and positions Milvus's run_analyzer gives, the examples of
Milvus's docs (chinese-analyzer.md, jieba-tokenizer.md, multi-language-analyzers.md) exactly."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import sparse
from vecdb.analyzer import match_any, match_phrase, parse_params, term_ids
from vecdb.errors import InvalidParameter

DOC_TEXT = "Milvus 是一个高性能、可扩展的向量数据库！"


def test_chinese_analyzer_matches_milvus_docs_example():
    # chinese-analyzer.md, "Expected output"
    assert parse_params({"type": "chinese"}).tokens(DOC_TEXT) == [
        "Milvus", "是", "一个", "高性", "性能", "高性能", "可", "扩展", "的", "向量", "数据", "据库", "数据库"]
    # the same as its documented equivalent custom analyzer
    custom = parse_params({"tokenizer": "jieba", "filter": ["cnalphanumonly"]})
    assert custom.tokens(DOC_TEXT) == parse_params('{"type": "chinese"}').tokens(DOC_TEXT)


def test_jieba_custom_dictionary_exact_mode_without_hmm_matches_milvus_docs_example():
    # jieba-tokenizer.md: a dict without "_default_" is the words given only
    a = parse_params({"tokenizer": {"type": "jieba", "dict": ["结巴分词器"], "mode": "exact", "hmm": False}})
    assert a.tokens("milvus结巴分词器中文测试") == ["milvus", "结巴分词器", "中", "文", "测", "试"]


def test_jieba_defaults_are_search_mode_with_hmm_and_keep_punctuation():
    plain = parse_params({"tokenizer": "jieba"})
    explicit = parse_params({"tokenizer": {"type": "jieba", "dict": ["_default_"], "mode": "search", "hmm": True}})
    assert plain == explicit
    assert plain.tokens("你好！世界。") == ["你好", "！", "世界", "。"]  # (zdoc's note: punctuation stays)
    assert plain.tokens("南京市长江大桥") == ["南京", "京市", "南京市", "长江", "大桥", "长江大桥"]  # jieba-rs's test
    exact = parse_params({"tokenizer": {"type": "jieba", "mode": "exact"}})
    assert exact.tokens("南京市长江大桥") == ["南京市", "长江大桥"]
    # HMM joins unknown runs (jieba-rs's test: "中出"); without it they stay single characters
    assert "中出" in plain.tokens("我们中出了一个叛徒")
    no_hmm = parse_params({"tokenizer": {"type": "jieba", "mode": "exact", "hmm": False}})
    assert no_hmm.tokens("我们中出了一个叛徒") == ["我们", "中", "出", "了", "一个", "叛徒"]
    # the default dictionary plus words of one's own
    both = parse_params({"tokenizer": {"type": "jieba", "dict": ["_default_", "向量数据库"], "mode": "exact"}})
    assert "向量数据库" in both.tokens("一个向量数据库")


def test_run_analyzer_spans_are_bytes_and_positions_are_start_characters():
    """Milvus's jieba tokenizer: offsets in UTF-8 bytes, position = the token's start character,
    position length = its width in characters."""
    spans = parse_params({"type": "chinese"}).spans(DOC_TEXT)
    assert spans[:6] == [("Milvus", 0, 6, 0, 6), ("是", 7, 10, 7, 1), ("一个", 10, 16, 8, 2),
                         ("高性", 16, 22, 10, 2), ("性能", 19, 25, 11, 2), ("高性能", 16, 25, 10, 3)]
    chars = parse_params({"type": "chinese"}).char_spans(DOC_TEXT)
    assert all(DOC_TEXT[s:e] == t for t, s, e, _ in chars)


def test_chinese_filters():
    text = "Milvus 3.0 是向量数据库！ café ★"
    alnum = parse_params({"tokenizer": "jieba", "filter": ["cnalphanumonly"]}).tokens(text)
    char = parse_params({"tokenizer": "jieba", "filter": ["cncharonly"]}).tokens(text)
    assert "Milvus" in alnum and "3.0" in alnum and "caf" in alnum  # holding a letter or digit: kept
    assert "！" not in alnum and " " not in alnum and "★" not in alnum and "é" not in alnum  # (jieba: "caf", "é")
    assert char == [t for t in alnum if any("\u4e00" <= c <= "\u9fff" for c in t)]
    # lowercase and stop words after jieba; the standard tokenizer takes the filters too
    low = parse_params({"tokenizer": "jieba", "filter": ["lowercase", "cnalphanumonly",
                                                        {"type": "stop", "stop_words": ["是"]}]})
    assert low.tokens("Milvus是数据库") == ["milvus", "数据", "据库", "数据库"]
    assert parse_params({"type": "chinese", "stop_words": ["是"]}).tokens("Milvus是数据库")[:1] == ["Milvus"]
    assert parse_params({"tokenizer": "standard", "filter": ["cncharonly"]}).tokens("abc 数据 x1") == ["数据"]


@pytest.mark.parametrize("params, words", [
    ({"tokenizer": {"type": "jieba", "dict": "x"}}, "jieba tokenizer dict must be array"),
    ({"tokenizer": {"type": "jieba", "dict": [1]}}, "jieba tokenizer dict item must be string"),
    ({"tokenizer": {"type": "jieba", "mode": "full"}}, 'jieba tokenizer mode must be "exact" or "search"'),
    ({"tokenizer": {"type": "jieba", "mode": 1}}, "jieba tokenizer mode must be string"),
    ({"tokenizer": {"type": "jieba", "hmm": "yes"}}, "jieba tokenizer hmm must be boolean"),
    ({"tokenizer": {"type": "jieba", "dict": ["_extend_default_"]}}, "_extend_default_"),
    ({"tokenizer": {"type": "jieba", "dict": ["_default_", "x", "_default_"]}},
     "jieba tokenizer dict can only set one system dict"),
    ({"tokenizer": {"type": "jieba", "dict": ["_default_", "_extend_default_"]}},
     "jieba tokenizer dict can only set one system dict"),
    ({"tokenizer": {"type": "jieba", "extra_dict_file": {"resource_name": "x"}}}, "extra_dict_file"),
    ({"tokenizer": {"type": "jieba", "dict_path": "/x"}}, "dict_path"),
    ({"type": "chinese", "max_token_length": 3}, "max_token_length"),
])
def test_bad_jieba_params_are_refused(params, words):
    with pytest.raises(InvalidParameter) as e:
        parse_params(params)
    assert words in e.value.message and e.value.code == 1100


def test_term_frequencies_text_match_and_phrase_over_chinese():
    a = parse_params({"type": "chinese"})
    texts = ["人工智能正在改变技术领域", "机器学习模型需要大型数据集", "Milvus 是向量数据库"]
    rows = [np.frombuffer(r, sparse.PAIR) for r in a.term_frequencies(texts)]
    assert [int(r["v"].sum()) for r in rows] == [7, 7, 6]  # token counts (dl): BM25's lengths
    assert set(rows[0]["i"].tolist()) == set(term_ids(a.tokens(texts[0])).tolist())
    col = np.array(texts, dtype=object)
    ids = np.unique(term_ids(a.tokens("数据库")))
    assert match_any(col, a, ids).tolist() == [False, True, True]  # 数据 / 据库 / 数据库: any of them
    assert match_any(col, a, ids, least=3).tolist() == [False, False, True]
    assert match_phrase(col, a, a.tokens("改变技术"), 0).tolist() == [True, False, False]

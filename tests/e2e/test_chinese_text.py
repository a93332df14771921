"""Chinese full text through pymilvus on every deployment: the chinese analyzer and the jieba tokenizer
(vecdb.jieba_text) in BM25 search (scores against Milvus's formula over jieba's tokens), text_match,
phrase_match, run_analyzer (Milvus's documented output, offsets and positions) and highlighting."""

from __future__ import annotations

import pytest
from pymilvus import LexicalHighlighter, MilvusException

from tests.e2e._helpers import bm25_collection, bm25_hits, check_bm25_ranking

DOCS = ["人工智能正在改变技术领域", "机器学习模型需要大型数据集", "Milvus 是一个高性能、可扩展的向量数据库！",
        "向量数据库支持人工智能应用", "今天天气很好，我们去公园散步"]
CHINESE = {"type": "chinese"}


def _create(client, name, analyzer_params=None, match=False):
    bm25_collection(client, name, DOCS, analyzer_params or CHINESE, match=match)



def test_bm25_search_over_chinese_text(client, name):
    _create(client, name)
    check_bm25_ranking(client, name, CHINESE, DOCS, ("人工智能", "向量数据库", "数据集", "天气 公园", "不存在的词语"))
    # "人工智能" is 人工 / 智能 / 人工智能: docs 0 and 3, the shorter one first
    assert [h["id"] for h in bm25_hits(client, name, "人工智能")] == [0, 3]


def test_text_match_and_phrase_match_on_chinese(client, name):
    _create(client, name, match=True)
    got = client.query(name, filter="text_match(text, '数据库')", output_fields=["id"], consistency_level="Strong")
    assert sorted(r["id"] for r in got) == [1, 2, 3]  # 数据 in 数据集 too (数据库: 数据 / 据库 / 数据库)
    got = client.query(name, filter="text_match(text, '数据库', minimum_should_match=3)", output_fields=["id"],
                       consistency_level="Strong")
    assert sorted(r["id"] for r in got) == [2, 3]
    got = client.query(name, filter="text_match(text, '天气 机器')", output_fields=["id"], consistency_level="Strong")
    assert sorted(r["id"] for r in got) == [1, 4]
    got = client.query(name, filter="phrase_match(text, '改变技术')", output_fields=["id"], consistency_level="Strong")
    assert [r["id"] for r in got] == [0]


def test_run_analyzer_chinese_as_milvus_docs(client, name):
    text = "Milvus 是一个高性能、可扩展的向量数据库！"
    res = client.run_analyzer(text, analyzer_params=CHINESE)
    assert res.tokens == ["Milvus", "是", "一个", "高性", "性能", "高性能", "可", "扩展", "的", "向量", "数据", "据库",
                          "数据库"]
    res = client.run_analyzer("milvus结巴分词器中文测试", analyzer_params={
        "tokenizer": {"type": "jieba", "dict": ["结巴分词器"], "mode": "exact", "hmm": False}})
    assert res.tokens == ["milvus", "结巴分词器", "中", "文", "测", "试"]
    res = client.run_analyzer(text, analyzer_params=CHINESE, with_detail=True, with_hash=True)
    first = res.tokens[:3]
    assert [(t["token"], t["start_offset"], t["end_offset"], t["position"], t["position_length"]) for t in first] == [
        ("Milvus", 0, 6, 0, 6), ("是", 7, 10, 7, 1), ("一个", 10, 16, 8, 2)]
    _create(client, name)
    by_field = client.run_analyzer(["人工智能"], collection_name=name, field_name="text")
    assert by_field[0].tokens == ["人工", "智能", "人工智能"]
    with pytest.raises(MilvusException) as e:
        client.run_analyzer("x", analyzer_params={"tokenizer": {"type": "jieba", "mode": "full"}})
    assert e.value.code == 1100 and 'jieba tokenizer mode must be "exact" or "search"' in e.value.message


def test_highlight_chinese_search_text(client, name):
    _create(client, name)
    res = client.search(name, ["人工智能"], anns_field="sparse", limit=10, consistency_level="Strong",
                        search_params={"metric_type": "BM25"},
                        highlighter=LexicalHighlighter(highlight_search_text=True, pre_tags=["["], post_tags=["]"]))
    frags = {h["id"]: h["highlight"]["text"]["fragments"] for h in res[0]}
    assert frags[0] == ["[人工智能]正在改变技术领域"]
    assert frags[3] == ["[人工智能]应用"]

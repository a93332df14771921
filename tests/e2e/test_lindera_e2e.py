"""The lindera tokenizer through pymilvus on every deployment (vecdb.lindera_text): run_analyzer for
Japanese and Korean with and without Lindera's tag filters (Milvus's documented output, byte offsets and
positions, sentence_split_chars), BM25 search over Japanese text (scores against Milvus's formula over the
lindera tokens), text_match, hostile text through run_analyzer and inserts, and the refusals (1100,
Milvus's messages)."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e._helpers import bm25_collection, bm25_hits, check_bm25_ranking, matching_ids

pytest.importorskip("fugashi")
pytest.importorskip("mecab")

DOCS = ["東京スカイツリーの最寄り駅はとうきょうスカイツリー駅です", "京都の寺を観光しました", "大阪の食べ物はおいしい",
        "東京駅から京都駅まで新幹線で行きます", "スカイツリーの高さは６３４メートルです"]
STOP = ["助詞,格助詞,一般", "助詞,係助詞", "助詞,連体化", "助動詞", "記号,句点", "記号,読点"]
JA = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic",
                   "filter": [{"kind": "japanese_stop_tags", "tags": STOP}]}}
DOC_TEXT = "東京スカイツリーの最寄り駅はとうきょうスカイツリー駅で"


def _create(client, name, match=False):
    bm25_collection(client, name, DOCS, JA, match=match, max_length=60000)



def test_run_analyzer_japanese_and_korean(client):
    ja = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}}
    assert client.run_analyzer(DOC_TEXT, analyzer_params=ja).tokens == [  # lindera-tokenizer.md
        "東京", "スカイ", "ツリー", "の", "最寄り駅", "は", "とう", "きょう", "スカイ", "ツリー", "駅", "で"]
    res = client.run_analyzer("東京の駅", analyzer_params=JA, with_detail=True, with_hash=True)
    assert [(t["token"], t["start_offset"], t["end_offset"], t["position"], t["position_length"])
            for t in res.tokens] == [("東京", 0, 6, 0, 1), ("駅", 9, 12, 2, 1)]
    ko = {"tokenizer": {"type": "lindera", "dict_kind": "ko-dic"}}
    text = "아버지가 방에 들어가신다."
    assert client.run_analyzer(text, analyzer_params=ko).tokens == [
        "아버지", "가", " ", "방", "에", " ", "들어가", "신다", "."]
    ko_stop = {"tokenizer": {**ko["tokenizer"], "filter": [{"kind": "korean_stop_tags", "tags": ["JKS", "SF"]}]},
               "filter": ["removepunct"]}
    res = client.run_analyzer([text, "한국어"], analyzer_params=ko_stop, with_detail=True)
    assert [(t["token"], t["start_offset"], t["end_offset"], t["position"]) for t in res[0].tokens] == [
        ("아버지", 0, 9, 0), ("방", 13, 16, 3), ("에", 16, 19, 4), ("들어가", 20, 29, 6), ("신다", 29, 35, 7)]
    assert [t["token"] for t in res[1].tokens] == ["한국어"]
    compound = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "filter": [
        {"kind": "japanese_compound_word", "tags": ["名詞,数", "名詞,接尾,助数詞"]}]}}
    assert client.run_analyzer("６３４メートルの塔", analyzer_params=compound).tokens == ["６３４メートル", "の", "塔"]
    # Milvus 3.0.2's sentence_split_chars: [] one lattice over the text, a custom set cuts after its characters
    for split, want in (([], ["あっ", "。", "た", "そう", "だ", "\n\t", "駅"]),
                        (["\n"], ["あっ", "。", "た", "そう", "だ", "\n", "\t", "駅"]),
                        (["。", "\n", "\t"], ["あっ", "。", "たそ", "う", "だ", "\n", "\t", "駅"])):
        params = {"tokenizer": {**ja["tokenizer"], "sentence_split_chars": split}}
        assert client.run_analyzer("あっ。たそうだ\n\t駅", analyzer_params=params).tokens == want, split


def test_bm25_search_over_japanese_text(client, name):
    _create(client, name)
    check_bm25_ranking(client, name, JA, DOCS, ("東京", "スカイツリーの高さ", "京都駅", "新幹線で行く", "ニューヨーク"))
    # スカイ and ツリー: the documents about the tower
    assert sorted(h["id"] for h in bm25_hits(client, name, "スカイツリー")) == [0, 4]
    assert sorted(h["id"] for h in bm25_hits(client, name, "京都")) == [1, 3]  # not 東京 (a word of its own)
    by_field = client.run_analyzer(["京都の寺"], collection_name=name, field_name="text")
    assert by_field[0].tokens == ["京都", "寺"]


def test_text_match_with_lindera(client, name):
    _create(client, name, match=True)

    def ids(expr):
        return matching_ids(client, name, expr)

    assert ids("text_match(text, '東京')") == [0, 3]
    assert ids("text_match(text, '京都 大阪')") == [1, 2, 3]
    assert ids("text_match(text, '東京駅から京都', minimum_should_match=2)") == [0, 3]
    assert ids("text_match(text, '東京駅から京都', minimum_should_match=3)") == [3]
    assert ids("text_match(text, '観光しました')") == [1]


def test_hostile_text_through_run_analyzer_and_inserts(client, name):
    _create(client, name, match=True)
    ja = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}}
    ko = {"tokenizer": {"type": "lindera", "dict_kind": "ko-dic"}}
    hostile = ["", "\x00", "東京\x00駅", "\x00\x00 \x00", "\uffff\U0010ffff\ufeff", "😀" * 100, " \t\r\n　",
               "東京スカイツリー" * 2000, "a" * 59000]
    for params in (ja, ko):
        res = client.run_analyzer(hostile, analyzer_params=params)
        for text, r in zip(hostile, res):
            assert "".join(r.tokens) == text  # every character in a token: white space, NUL and unknown words
    assert client.run_analyzer("東京\x00駅", analyzer_params=ja).tokens == ["東京", "\x00", "駅"]
    for params in (ja, ko):  # a million "a"s crashed MeCab in one piece (vecdb cuts the text)
        huge = client.run_analyzer("a" * 1_000_000 + " 東京", analyzer_params=params).tokens
        assert huge[-2:] == [" ", "東京"] and "".join(huge[:-2]) == "a" * 1_000_000
    client.insert(name, [{"id": 100 + i, "text": t} for i, t in enumerate(hostile)])
    rows = client.query(name, filter="text_match(text, '駅')", output_fields=["id"], consistency_level="Strong")
    assert sorted(r["id"] for r in rows) == [0, 3, 102]
    res = client.search(name, ["スカイツリー"], anns_field="sparse", limit=3, search_params={"metric_type": "BM25"},
                        consistency_level="Strong")
    assert {h["id"] for h in res[0]} <= {0, 4, 107} and 0 in {h["id"] for h in res[0]}


@pytest.mark.parametrize("tokenizer, message", [
    ({"type": "lindera"}, "lindera tokenizer dict_kind must be set"),
    ({"type": "lindera", "dict_kind": 3}, "lindera tokenizer dict kind should be string"),
    ({"type": "lindera", "dict_kind": "jp"}, "unsupported lindera dict type: jp"),
    ({"type": "lindera", "dict_kind": "cc-cedict"}, "lindera tokenizer with invalid dict_kind"),
    ({"type": "lindera", "dict_kind": "ipadic", "filter": {}}, "lindera filters should be array"),
    ({"type": "lindera", "dict_kind": "ipadic", "filter": ["lowercase"]}, "unknown lindera filter type"),
    ({"type": "lindera", "dict_kind": "ko-dic", "filter": ["korean_stop_tags"]},
     "lindera korean stop tags filter must use with params"),
    ({"type": "lindera", "dict_kind": "ko-dic", "filter": [{"kind": "korean_stop_tags", "tags": "JKS"}]},
     "lindera japanese stop tags filter tags must be array"),
    ("lindera", "lindera tokenizer must be costum"),
    ({"type": "lindera", "dict_kind": "ipadic", "sentence_split_chars": ["。、"]},
     "lindera sentence split chars list item should be a single character"),
])
def test_refusals(client, name, tokenizer, message):
    with pytest.raises(MilvusException) as e:
        client.run_analyzer("東京", analyzer_params={"tokenizer": tokenizer})
    assert e.value.code == 1100 and message in e.value.message
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=100, enable_analyzer=True,
                     analyzer_params={"tokenizer": tokenizer})
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    with pytest.raises(MilvusException) as e:
        client.create_collection(name, schema=schema)
    assert e.value.code == 1100 and message in e.value.message

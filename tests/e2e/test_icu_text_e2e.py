"""The icu tokenizer through pymilvus on every deployment (vecdb.icu_text): BM25 search over mixed English,
Thai and Japanese text (scores against Milvus's formula over the icu tokens), text_match, phrase_match
and run_analyzer (Milvus's documented output, offsets and positions)."""

from __future__ import annotations

import pytest
from pymilvus import MilvusException

from tests.e2e._helpers import bm25_collection, bm25_hits, check_bm25_ranking, matching_ids

DOCS = ["Milvus is a vector database", "สวัสดี ผมมาจากกรุงเทพฯ", "東京スカイツリーの最寄り駅はどこですか",
        "Vector search in Bangkok: กรุงเทพฯ!", "Tokyo 東京 and Bangkok"]
ICU = {"tokenizer": "icu", "filter": ["lowercase", "removepunct"]}


def _create(client, name, match=False):
    bm25_collection(client, name, DOCS, ICU, match=match)



def test_bm25_search_over_mixed_language_text(client, name):
    _create(client, name)
    check_bm25_ranking(client, name, ICU, DOCS,
                       ("กรุงเทพฯ", "東京", "vector database", "Bangkok ผม", "スカイツリー", "nothing here"))
    # the Thai words are cut out of the run
    assert sorted(h["id"] for h in bm25_hits(client, name, "กรุงเทพฯ")) == [1, 3]


def test_text_match_and_phrase_match_with_icu(client, name):
    _create(client, name, match=True)

    def ids(expr):
        return matching_ids(client, name, expr)

    assert ids("text_match(text, 'bangkok')") == [3, 4]
    assert ids("text_match(text, 'ผม 東京')") == [1, 2, 4]
    assert ids("text_match(text, 'vector bangkok', minimum_should_match=2)") == [3]
    assert ids("phrase_match(text, 'ผมมาจาก')") == [1]
    assert ids("phrase_match(text, 'vector database')") == [0]


def test_run_analyzer_icu_as_milvus_docs(client, name):
    res = client.run_analyzer("Привет! Как дела?", analyzer_params={"tokenizer": "icu"})
    assert res.tokens == ["Привет", "!", " ", "Как", " ", "дела", "?"]  # icu-tokenizer.md
    res = client.run_analyzer("Привет! Как дела?", analyzer_params={"tokenizer": "icu", "filter": ["removepunct"]},
                              with_detail=True, with_hash=True)
    assert [(t["token"], t["start_offset"], t["end_offset"], t["position"], t["position_length"])
            for t in res.tokens] == [("Привет", 0, 12, 0, 6), ("Как", 14, 20, 8, 3), ("дела", 21, 29, 12, 4)]
    _create(client, name)
    by_field = client.run_analyzer(["สวัสดี ผมมาจากกรุงเทพฯ"], collection_name=name, field_name="text")
    assert by_field[0].tokens == ["สวัสดี", "ผม", "มา", "จาก", "กรุงเทพฯ"]
    with pytest.raises(MilvusException) as e:
        client.run_analyzer("x", analyzer_params={"tokenizer": {"type": "icu", "locale": "th"}})
    assert e.value.code == 1100 and "unknown icu tokenizer params" in e.value.message

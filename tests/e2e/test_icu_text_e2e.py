"""The icu tokenizer through pymilvus on every deployment (vecdb.icu_text): BM25 search over mixed English,
Thai and Japanese text (scores against Milvus's formula over the icu tokens), text_match, phrase_match
and run_analyzer (Milvus's documented output, offsets and positions)."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from vecdb.analyzer import parse_params

DOCS = ["Milvus is a vector database", "สวัสดี ผมมาจากกรุงเทพฯ", "東京スカイツリーの最寄り駅はどこですか",
        "Vector search in Bangkok: กรุงเทพฯ!", "Tokyo 東京 and Bangkok"]
ICU = {"tokenizer": "icu", "filter": ["lowercase", "removepunct"]}


def _create(client, name, match=False):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True, enable_match=match,
                     analyzer_params=ICU)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": i, "text": t} for i, t in enumerate(DOCS)])


def _reference(query: str, k1=1.2, b=0.75) -> list[tuple[int, float]]:
    """Milvus's BM25 over the icu analyzer's tokens (idf ln(1 + (N - df + 0.5) / (df + 0.5)))."""
    a = parse_params(ICU)
    toks = [a.tokens(t) for t in DOCS]
    dl = np.array([len(t) for t in toks], float)
    q = a.tokens(query)
    scores = np.zeros(len(DOCS))
    for term in set(q):
        tf = np.array([t.count(term) for t in toks], float)
        df = np.count_nonzero(tf)
        idf = np.log(1 + (len(DOCS) - df + 0.5) / (df + 0.5))
        scores += q.count(term) * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / dl.mean()))
    order = [i for i in np.lexsort((np.arange(len(DOCS)), -scores)) if scores[i] > 0]
    return [(int(i), float(scores[i])) for i in order]


def test_bm25_search_over_mixed_language_text(client, name):
    _create(client, name)
    for query in ("กรุงเทพฯ", "東京", "vector database", "Bangkok ผม", "スカイツリー", "nothing here"):
        res = client.search(name, [query], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"},
                            consistency_level="Strong")
        want = _reference(query)
        assert [h["id"] for h in res[0]] == [pk for pk, _ in want], query
        np.testing.assert_allclose([h["distance"] for h in res[0]], [s for _, s in want], rtol=1e-4)
    res = client.search(name, ["กรุงเทพฯ"], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"},
                        consistency_level="Strong")
    assert sorted(h["id"] for h in res[0]) == [1, 3]  # the Thai words are cut out of the run


def test_text_match_and_phrase_match_with_icu(client, name):
    _create(client, name, match=True)

    def ids(expr):
        return sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"],
                                                    consistency_level="Strong"))

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

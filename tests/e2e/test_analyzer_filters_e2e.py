"""The regex, decompounder and synonym token filters (Milvus's tantivy-binding filters; vecdb.analyzer)
through pymilvus on every deployment: run_analyzer's tokens and positions, a BM25 search that finds a
text by a synonym and by a compound's part, text_match / phrase_match over them, and a bad rule refused."""

from __future__ import annotations

import pytest
from pymilvus import MilvusException

from tests.e2e._helpers import bm25_collection

PARAMS = {"tokenizer": "standard", "filter": [
    "lowercase",
    {"type": "regex", "expr": "^[a-z]"},  # tokens starting with a letter (numbers dropped)
    {"type": "decompounder", "word_list": ["bank", "note", "book"]},
    {"type": "synonym", "synonyms": ["car, automobile", "quick => fast"]},
]}
DOCS = ["The red automobile 2024", "A banknote in a notebook", "Quick brown fox", "Plain text here"]


def test_new_filters_in_run_analyzer_and_bm25(client, name):
    res = client.run_analyzer("Red car 42 notebook quick", analyzer_params=PARAMS, with_detail=True)
    got = [(t["token"], t["start_offset"], t["end_offset"], t["position"]) for t in res.tokens]
    assert got == [("red", 0, 3, 0), ("car", 4, 7, 1), ("automobile", 4, 7, 1), ("note", 11, 19, 3),
                   ("book", 11, 19, 3), ("fast", 20, 25, 4), ("quick", 20, 25, 4)]

    bm25_collection(client, name, DOCS, PARAMS, match=True)

    def bm25(query: str) -> list[int]:
        res = client.search(name, [query], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"},
                            consistency_level="Strong")
        return [hit["id"] for hit in res[0]]

    assert bm25("car") == [0]  # "automobile" in the text, "car" its synonym
    assert bm25("book") == [1]  # a part of "notebook"
    assert bm25("fast") == [2]  # "Quick" maps to fast (and stays)
    assert bm25("2024") == []  # the regex dropped the number: no token, no hit
    by_field = client.run_analyzer(["banknote"], collection_name=name, field_name="text")
    assert by_field[0].tokens == ["bank", "note"]

    def ids(expr: str) -> list[int]:
        return sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"],
                                                    consistency_level="Strong"))

    assert ids("text_match(text, 'car note')") == [0, 1]
    assert ids("phrase_match(text, 'red car')") == [0]  # "car" at automobile's position
    assert ids("phrase_match(text, 'bank note')") == []  # parts of one token share a position

    with pytest.raises(MilvusException) as e:
        client.run_analyzer("x", analyzer_params={"tokenizer": "standard",
                                                  "filter": [{"type": "synonym", "synonyms": ["new york, ny"]}]})
    assert e.value.code == 1100 and "has space between words" in e.value.message

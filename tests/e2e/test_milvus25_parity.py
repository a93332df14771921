"""Milvus 2.5 API behaviours that vecdb had wrong, through pymilvus on every deployment:

- ``output_fields=["*"]`` leaves out a BM25 function's output field (Milvus's
  ``CanRetrieveRawFieldData``), in query, search and hybrid search, so rows read with ``"*"`` insert
  again (pymilvus refuses a function output in insert data); naming the field still returns its
  term frequencies (a vecdb extension).
- ``phrase_match`` counts positions as tantivy does: a word a filter drops (a stop word) keeps its
  place, so "dogs running" is no exact phrase of "dogs are running".
- ``drop_index`` of an index that does not exist succeeds (Milvus's datacoord), as scripts that drop
  and create a sparse / BM25 index again expect.
"""

from __future__ import annotations

import pytest
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, MilvusException, RRFRanker

TEXTS = ["apple banana cherry", "banana banana delta", "cherry echo apple apple", "delta", "echo foxtrot banana"]


def _create_bm25(client, name, analyzer_params=None):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    kw = {"analyzer_params": analyzer_params} if analyzer_params else {}
    schema.add_field("text", DataType.VARCHAR, max_length=200, enable_analyzer=True, enable_match=True, **kw)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=2)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    idx.add_index("dense", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)


def _bm25(client, name, text, limit=10):
    hits = client.search(name, [text], anns_field="sparse", limit=limit, search_params={"metric_type": "BM25"},
                         consistency_level="Strong")[0]
    return [(h["id"], round(h["distance"], 5)) for h in hits]


def test_star_output_fields_leave_out_the_bm25_output(client, name):
    _create_bm25(client, name)
    client.insert(name, [{"id": i, "text": t, "dense": [float(i), 0.0]} for i, t in enumerate(TEXTS)])
    rows = client.query(name, filter="id >= 0", output_fields=["*"], consistency_level="Strong")
    assert sorted(r["id"] for r in rows) == list(range(len(TEXTS)))
    assert all(set(r) == {"id", "text", "dense"} for r in rows), rows

    hit = client.search(name, ["banana"], anns_field="sparse", limit=1, output_fields=["*"],
                        search_params={"metric_type": "BM25"}, consistency_level="Strong")[0][0]
    assert set(hit["entity"]) == {"id", "text", "dense"}
    reqs = [AnnSearchRequest(["banana"], "sparse", {"metric_type": "BM25"}, 5),
            AnnSearchRequest([[0.0, 0.0]], "dense", {"metric_type": "L2"}, 5)]
    hybrid = client.hybrid_search(name, reqs, RRFRanker(), limit=3, output_fields=["*"], consistency_level="Strong")[0]
    assert len(hybrid) == 3 and all(set(h["entity"]) == {"id", "text", "dense"} for h in hybrid)

    # the rows read with "*" go back in as they are (as on Milvus): the server fills the output again
    before = _bm25(client, name, "banana")
    client.insert(name, [{**r, "id": r["id"] + 100} for r in rows])
    after = dict(_bm25(client, name, "banana"))
    for pk, _ in before:
        assert after[pk] == after[pk + 100]  # the same text scores the same with the same statistics
    # named explicitly, the output still reads back as term frequencies (Milvus refuses this)
    got = client.query(name, filter="id == 1", output_fields=["sparse"], consistency_level="Strong")
    assert sorted(got[0]["sparse"].values()) == [1.0, 2.0]


def test_phrase_match_keeps_a_stop_word_place(client, name):
    stop = {"type": "stop", "stop_words": ["are", "the"]}
    _create_bm25(client, name, {"tokenizer": "standard", "filter": ["lowercase", stop]})
    texts = ["dogs are running", "dogs running", "dogs the running", "dogs are the running", "running dogs"]
    client.insert(name, [{"id": i, "text": t, "dense": [0.0, 0.0]} for i, t in enumerate(texts)])

    def rows(expr):
        got = client.query(name, filter=expr, output_fields=["id"], consistency_level="Strong")
        return sorted(r["id"] for r in got)

    # "are" keeps its place: dog@0 run@2, as tantivy (Milvus) indexes it
    assert rows("phrase_match(text, 'dogs running')") == [1]
    assert rows("phrase_match(text, 'dogs running', 1)") == [0, 1, 2]
    assert rows("phrase_match(text, 'dogs running', 2)") == [0, 1, 2, 3, 4]  # (4: the two swapped)
    # the phrase's own stop word keeps its place too: it matches any one dropped word between
    assert rows("phrase_match(text, 'dogs are running')") == [0, 2]
    assert rows("phrase_match(text, 'the dogs are running')") == [0, 2]
    # text_match and BM25 are unchanged: every row holds both words
    assert rows("text_match(text, 'dogs') and text_match(text, 'running')") == [0, 1, 2, 3, 4]


def test_drop_index_that_does_not_exist_succeeds(client, name):
    """Milvus's datacoord answers success when no index matches (scripts drop, then create again)."""
    _create_bm25(client, name)
    with pytest.raises(MilvusException, match="release it first"):  # loaded: refused first, as Milvus's proxy
        client.drop_index(name, "no_such_index")
    client.release_collection(name)
    client.drop_index(name, "sparse")
    client.drop_index(name, "sparse")  # gone already: nothing to do
    client.drop_index(name, "no_such_index")
    assert client.list_indexes(name) == ["dense"]
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_WAND", metric_type="BM25", params={"bm25_k1": 1.5})
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": i, "text": t, "dense": [0.0, 0.0]} for i, t in enumerate(TEXTS)])
    assert [pk for pk, _ in _bm25(client, name, "delta")] == [3, 1]

"""Search result highlighting (pymilvus 2.6 ``LexicalHighlighter``) through pymilvus on every deployment:
the Milvus documentation's examples (text-highlighter.md: BM25 search terms, TEXT_MATCH query terms,
fragment offset / size, several queries, custom tags) with their exact fragments, over sealed and
growing rows; the highlighted field read with the hits but returned only when asked for; highlights
with a filter, grouping, order_by and a rerank function; no highlights where nothing is asked or
nothing is found; and the refusals (1100, Milvus's wording)."""

from __future__ import annotations

import pytest
from pymilvus import DataType, Function, FunctionType, LexicalHighlighter, MilvusClient, MilvusException
from pymilvus.orm.schema import SemanticHighlighter

DOCS = [
    "my first test doc",
    "my second test doc",
    "my first test doc. Milvus is an open-source vector database built for GenAI applications.",
    "my second test doc. Milvus is an open-source vector database that suits AI applications of every size "
    "from running a demo chatbot to building web-scale search.",
]
BRACES = {"pre_tags": ["{"], "post_tags": ["}"]}
BM25 = {"metric_type": "BM25"}


def _create(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=2000, enable_analyzer=True, enable_match=True)
    schema.add_field("note", DataType.VARCHAR, max_length=200)  # no analyzer
    schema.add_field("grp", DataType.INT64)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=2)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    idx.add_index("dense", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rows = [{"id": i, "text": t, "note": f"note {i}", "grp": i % 2, "dense": [float(i), 0.0]}
            for i, t in enumerate(DOCS)]
    client.insert(name, rows[:2])
    client.flush(name)  # sealed rows and growing ones
    client.insert(name, rows[2:])


def _search(client, name, data, highlighter, **kw):
    kw.setdefault("anns_field", "sparse")
    kw.setdefault("search_params", BM25)
    return client.search(name, data, limit=10, highlighter=highlighter, consistency_level="Strong", **kw)


def _fragments(hits, field="text") -> dict[int, list[str]]:
    return {h["id"]: h["highlight"][field]["fragments"] for h in hits}


def test_the_milvus_documentation_examples(client, name):
    _create(client, name)
    # Example 1: the BM25 search terms; the text is read for the highlight, returned only if asked for
    res = _search(client, name, ["test"], LexicalHighlighter(highlight_search_text=True, **BRACES))
    assert _fragments(res[0]) == {
        0: ["{test} doc"], 1: ["{test} doc"],
        2: ["{test} doc. Milvus is an open-source vector database built for GenAI applications."],
        3: ["{test} doc. Milvus is an open-source vector database that suits AI applications of every size from run"]}
    assert all(h["entity"] == {} and h["highlight"]["text"]["scores"] == [] for h in res[0])
    # Example 2: and a TEXT_MATCH query's terms
    hl = LexicalHighlighter(highlight_search_text=True, **BRACES,
                            highlight_query=[{"type": "TextMatch", "field": "text", "text": "my doc"}])
    res = _search(client, name, ["test"], hl, output_fields=["text"])
    assert _fragments(res[0]) == {
        0: ["{my} first {test} {doc}"], 1: ["{my} second {test} {doc}"],
        2: ["{my} first {test} {doc}. Milvus is an open-source vector database built for GenAI applications."],
        3: ["{my} second {test} {doc}. Milvus is an open-source vector database that suits AI applications of "
            "every siz"]}
    assert {h["id"]: h["entity"]["text"] for h in res[0]} == dict(enumerate(DOCS))
    # Example 3: fragment_offset and fragment_size
    hl = LexicalHighlighter(highlight_search_text=True, fragment_offset=20, fragment_size=60, **BRACES)
    assert _fragments(_search(client, name, ["Milvus"], hl)[0]) == {
        2: ["my first test doc. {Milvus} is an open-source vector database "],
        3: ["my second test doc. {Milvus} is an open-source vector database"]}
    # Example 4: each query's hits with its own terms
    res = client.search(name, ["test", "Milvus"], anns_field="sparse", limit=2, search_params=BM25,
                        highlighter=LexicalHighlighter(highlight_search_text=True, **BRACES),
                        consistency_level="Strong")
    assert {h["id"] for h in res[0]} <= {0, 1, 2, 3} and all(f[0].startswith("{test} doc")
                                                             for f in _fragments(res[0]).values())
    assert _fragments(res[1]) == {
        2: ["{Milvus} is an open-source vector database built for GenAI applications."],
        3: ["{Milvus} is an open-source vector database that suits AI applications of every size from running a dem"]}
    # Example 5: HTML tags (and the defaults, <em></em>)
    hl = LexicalHighlighter(highlight_search_text=True, pre_tags=["<mark>"], post_tags=["</mark>"])
    assert _fragments(_search(client, name, ["second"], hl)[0]) == {
        1: ["<mark>second</mark> test doc"],
        3: ["<mark>second</mark> test doc. Milvus is an open-source vector database that suits AI applications of "
            "every size f"]}  # (100 characters of text from the match: the default fragment_size)
    assert _fragments(_search(client, name, ["GenAI"], LexicalHighlighter(highlight_search_text=True))[0]) == {
        2: ["<em>GenAI</em> applications."]}


def test_query_terms_with_a_filter_grouping_order_by_and_rerank(client, name):
    _create(client, name)
    hl = LexicalHighlighter(**BRACES, num_of_fragments=1, fragment_size=9,
                            highlight_query=[{"type": "TextMatch", "field": "text", "text": "vector search"}])
    # a dense search filtered by TEXT_MATCH, the filter's terms highlighted
    res = _search(client, name, [[0.0, 0.0]], hl, anns_field="dense", search_params={"metric_type": "L2"},
                  filter='TEXT_MATCH(text, "vector search")')
    assert [h["id"] for h in res[0]] == [2, 3]
    # 9 characters from each first match, one fragment (row 3's "search" left out)
    assert _fragments(res[0]) == {2: ["{vector} da"], 3: ["{vector} da"]}
    grouped = _search(client, name, [[0.0, 0.0]], hl, anns_field="dense", search_params={"metric_type": "L2"},
                      group_by_field="grp")
    assert _fragments(grouped[0]) == {0: [], 1: []}
    ordered = _search(client, name, ["doc"], LexicalHighlighter(highlight_search_text=True, fragment_size=3),
                      order_by_fields=[{"field": "grp", "order": "desc"}])
    assert [h["id"] % 2 for h in ordered[0]] == [1, 1, 0, 0]
    assert set(map(tuple, _fragments(ordered[0]).values())) == {("<em>doc</em>",)}
    decay = Function(name="d", input_field_names=["grp"], function_type=FunctionType.RERANK,
                     params={"reranker": "decay", "function": "gauss", "origin": 1, "scale": 1})
    reranked = _search(client, name, ["Milvus"], LexicalHighlighter(highlight_search_text=True, fragment_size=6),
                       ranker=decay)
    assert [h["id"] for h in reranked[0]] == [3, 2]  # grp 1 first, as the decay makes it
    assert _fragments(reranked[0]) == {3: ["<em>Milvus</em>"], 2: ["<em>Milvus</em>"]}


def test_no_highlights_when_nothing_asked_or_found(client, name):
    _create(client, name)
    res = _search(client, name, [[0.0, 0.0]], LexicalHighlighter(**BRACES), anns_field="dense",
                  search_params={"metric_type": "L2"})
    assert len(res[0]) == 4 and all("highlight" not in h for h in res[0])
    res = _search(client, name, ["nothing"], LexicalHighlighter(highlight_search_text=True))
    assert list(res[0]) == []


@pytest.mark.parametrize("kw, highlighter, words", [
    ({"anns_field": "dense", "search_params": {"metric_type": "L2"}}, LexicalHighlighter(highlight_search_text=True),
     'Search highlight only support with metric type "BM25" but was: L2'),
    ({}, LexicalHighlighter(highlight_query=[{"type": "TextMatch", "field": "nope", "text": "a"}]),
     "highlight field not found in schema: nope"),
    ({}, LexicalHighlighter(highlight_query=[{"type": "TextMatch", "field": "note", "text": "a"}]),
     "field note has no analyzer"),
    ({}, LexicalHighlighter(highlight_query=[{"type": "Phrase", "field": "text", "text": "a"}]),
     "invalid highlight query type: Phrase"),
    ({}, LexicalHighlighter(pre_tags=[]), "pre_tags cannot be empty list"),
    ({}, LexicalHighlighter(fragment_size=0), "invalid fragment_size: 0"),
    ({}, SemanticHighlighter(queries=["a"], input_fields=["text"], pre_tags=["<b>"], post_tags=["</b>"],
                             model_deployment_id="m"), "Create SemanticHighlight failed"),
])
def test_refusals(client, name, kw, highlighter, words):
    _create(client, name)
    data = [[0.0, 0.0]] if kw.get("anns_field") == "dense" else ["test"]
    with pytest.raises(MilvusException, match=words) as e:
        _search(client, name, data, highlighter, **kw)
    assert e.value.code == 1100

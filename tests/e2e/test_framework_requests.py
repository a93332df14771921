"""The requests the popular frameworks' Milvus integrations send (langchain-milvus 0.4.0, milvus-haystack 0.1.0,
llama-index-vector-stores-milvus 1.2.0; captured from their flows against vecdb and Milvus Lite, .dev/fw/),
sent here through plain pymilvus so the frameworks need not be installed: their filter spellings (haystack's
JSON-escaped double-quoted strings, llama-index's upper-case ARRAY_* functions), the schemas and indexes they
create, their sparse / BM25 / hybrid searches, and what their flows read back (describe_collection's functions
and num_partitions, an upsert that replaces a row's dynamic keys).
"""

from __future__ import annotations

import json
import math

import pytest
from pymilvus import (
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
)

from tests.e2e._helpers import count

TEXTS = ["apples are red", "bananas are yellow", "cherries are red", "grapes are green",
         "lemons are yellow", "limes are green", "plums are purple", "oranges are orange"]
ODD = ['O"Reilly \\ says', "it's", "naïve café ✓", "line\nbreak"]
DIM = 4


def _vec(i: int) -> list[float]:
    return [1.0, float(i), float(i % 3), 0.5]


def _dynamic_rows() -> list[dict]:
    """Rows as the frameworks write them: a VARCHAR id, the text, a vector, the metadata as dynamic keys."""
    return [{"id": f"d{i}", "text": t, "vector": _vec(i), "color": t.split()[-1], "page": i,
             "source": "fruit" if i % 2 == 0 else "book", "odd": ODD[i % 4], "tags": [f"t{i % 3}", "all"],
             "name": "O'Reilly" if i == 3 else f"name{i}"} for i, t in enumerate(TEXTS)]


def _dynamic_collection(client: MilvusClient, name: str) -> None:
    """haystack's / llama-index's default schema: VARCHAR primary key, text, vector, dynamic field on."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=65_535)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vector", index_type="AUTOINDEX", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    client.insert(name, _dynamic_rows())


def _ids(client: MilvusClient, name: str, expr: str) -> list[str]:
    return sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"]))


def test_haystack_json_escaped_filters(client, name):
    """milvus-haystack writes string values with json.dumps: double quotes, backslash escapes (\\", \\\\, \\n),
    non-ASCII kept; comparisons parenthesised, NOT as ``(not (...))``, fields of the dynamic field bare."""
    _dynamic_collection(client, name)
    for i, value in enumerate(ODD):
        expr = f"(odd == {json.dumps(value, ensure_ascii=False)})"
        assert _ids(client, name, expr) == [f"d{i}", f"d{i + 4}"], expr
    assert _ids(client, name, '(not ((color in ["red", "green"])))') == ["d1", "d4", "d6", "d7"]
    assert _ids(client, name, '((page >= 2) and (source in ["fruit"]))') == ["d2", "d4", "d6"]
    assert _ids(client, name, "((page < 0.15) or (page not in [0, 1, 2, 3, 4, 5]))") == ["d0", "d6", "d7"]
    assert _ids(client, name, '(id in ["d7", "d99", "not-there"])') == ["d7"]
    assert _ids(client, name, "(nope == 1)") == []  # a key no row has: no match, no error
    hits = client.search(name, [_vec(3)], limit=3, filter='(color != "green")', output_fields=["color"])[0]
    assert "green" not in {h["entity"]["color"] for h in hits} and len(hits) == 3


def test_llama_index_filter_spellings(client, name):
    """llama-index's filters on dynamic keys: ``like`` prefixes, lower- and upper-case ARRAY functions,
    an escaped single quote, node / doc id lists in double quotes, nested AND/OR."""
    _dynamic_collection(client, name)
    cases = {
        "page in [1, 2, 3]": ["d1", "d2", "d3"],
        "color not in ['red', 'green']": ["d1", "d4", "d6", "d7"],
        "name == 'O\\'Reilly'": ["d3"],
        "color like 'gre%'": ["d3", "d5"],
        "array_contains(tags, 't1')": ["d1", "d4", "d7"],
        "array_contains_any(tags, ['t0', 't2'])": ["d0", "d2", "d3", "d5", "d6"],
        "array_contains_all(tags, ['t0', 'all'])": ["d0", "d3", "d6"],
        "ARRAY_CONTAINS(tags, 't2')": ["d2", "d5"],
        "ARRAY_LENGTH(tags) == 2": [f"d{i}" for i in range(8)],
        "(page >= 0 and (color == 'yellow' or color == 'purple'))": ["d1", "d4", "d6"],
        'id in ["d1","d5"]': ["d1", "d5"],
        "color == 'red' and id in [\"d0\",\"d1\"]": ["d0"],
    }
    for expr, want in cases.items():
        assert _ids(client, name, expr) == want, expr
        hits = client.search(name, [_vec(0)], limit=8, filter=expr, output_fields=["id"])[0]
        assert sorted(h["id"] for h in hits) == want, expr


def _bm25_schema(client: MilvusClient, dense: bool = True):
    """llama-index's / langchain's hybrid schema: text analysed, a BM25 function into a sparse field."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=65_535)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535, enable_analyzer=True, enable_match=False)
    if dense:
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("sparse_embedding", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("bm25_function_1a2b3c4d", FunctionType.BM25, input_field_names="text",
                                 output_field_names="sparse_embedding"))
    idx = client.prepare_index_params()
    if dense:
        idx.add_index(field_name="embedding", index_name="embedding", index_type="FLAT", metric_type="COSINE")
    idx.add_index(field_name="sparse_embedding", index_name="sparse_embedding", index_type="SPARSE_INVERTED_INDEX",
                  metric_type="BM25")
    return schema, idx


def test_llama_index_bm25_search_and_hybrid(client, name):
    """llama-index's SPARSE mode sends the query text with ``{"params": {"drop_ratio_search": 0.2}}`` and no
    metric; HYBRID sends a dense and a BM25 AnnSearchRequest with RRF or weights. BM25 scores are Milvus's
    (positive, idf ln(1 + (N - df + 0.5) / (df + 0.5)); Milvus Lite 3 answers them negated)."""
    schema, idx = _bm25_schema(client)
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    client.insert(name, [{"id": f"n{i}", "text": t, "embedding": _vec(i), "page": i} for i, t in enumerate(TEXTS)])
    hits = client.search(name, ["yellow"], anns_field="sparse_embedding", limit=2, output_fields=["*"],
                         search_params={"params": {"drop_ratio_search": 0.2}})[0]
    idf = math.log(1 + (8 - 2 + 0.5) / (2 + 0.5))  # 2 of 8 documents, each of average length
    assert sorted(h["id"] for h in hits) == ["n1", "n4"]
    assert [round(h["distance"], 4) for h in hits] == [round(idf, 4)] * 2
    assert "sparse_embedding" not in hits[0]["entity"] and hits[0]["entity"]["text"].endswith("yellow")
    hits = client.search(name, ["red"], anns_field="sparse_embedding", limit=3, filter="page > 0",
                         search_params={"params": {"drop_ratio_search": 0.2}})[0]
    assert [h["id"] for h in hits] == ["n2"]
    reqs = [AnnSearchRequest([_vec(6)], "embedding", {"metric_type": "COSINE"}, 2),
            AnnSearchRequest(["purple"], "sparse_embedding", {"metric_type": "BM25"}, 2)]
    for ranker in (RRFRanker(60), WeightedRanker(0.2, 0.8)):
        res = client.hybrid_search(name, reqs, ranker, limit=2, output_fields=["text"])[0]
        assert res[0]["id"] == "n6" and res[0]["entity"]["text"] == "plums are purple", ranker


def test_describe_lists_the_bm25_function_for_a_reconnect(client, name):
    """Reconnecting to an existing collection, llama-index picks its sparse embedding from
    ``describe_collection()["functions"]`` (no function: a BGE-M3 model it would have to download)."""
    schema, idx = _bm25_schema(client, dense=False)
    client.create_collection(name, schema=schema, index_params=idx)
    fns = client.describe_collection(name)["functions"]
    assert [(f["name"], f["type"], f["input_field_names"], f["output_field_names"]) for f in fns] == \
        [("bm25_function_1a2b3c4d", FunctionType.BM25, ["text"], ["sparse_embedding"])]
    assert client.describe_index(name, "sparse_embedding")["metric_type"] == "BM25"


def test_langchain_weights_longer_than_requests_are_refused(client, name):
    """langchain-milvus 0.4.0 appends its BM25 output field to its vector-field list on every search, so its
    second default-ranker hybrid search sends WeightedRanker(1.0, 1.0, 1.0, 1.0) with two requests: refused
    1100, as Milvus's weighted reranker refuses it (not silently fused)."""
    schema, idx = _bm25_schema(client)
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    client.insert(name, [{"id": f"n{i}", "text": t, "embedding": _vec(i)} for i, t in enumerate(TEXTS)])
    reqs = [AnnSearchRequest([_vec(1)], "embedding", {"metric_type": "COSINE", "params": {}}, 4),
            AnnSearchRequest(["yellow"], "sparse_embedding", {"metric_type": "BM25", "params": {}}, 4)]
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, reqs, WeightedRanker(1.0, 1.0, 1.0, 1.0), limit=3)
    assert e.value.code == 1100
    assert "the length of weights param mismatch with ann search requests" in e.value.message
    assert len(client.hybrid_search(name, reqs, WeightedRanker(1.0, 1.0), limit=3)[0]) == 3


def test_haystack_overwrite_replaces_the_dynamic_keys(client, name):
    """DuplicatePolicy.OVERWRITE is a plain upsert: the row's dynamic keys become the sent ones (Milvus; a
    partial update would merge them, and Milvus Lite 3 merges them here)."""
    _dynamic_collection(client, name)
    res = client.upsert(name, [{"id": "d0", "text": "apples are gold", "vector": _vec(0), "color": "gold", "page": 0},
                               {"id": "d99", "text": "new", "vector": _vec(9), "color": "white", "page": 99}])
    assert res["upsert_count"] == 2
    rows = {r["id"]: r for r in client.query(name, filter='id in ["d0", "d99"]', output_fields=["*"])}
    assert {k: v for k, v in rows["d0"].items() if k != "vector"} == \
        {"id": "d0", "text": "apples are gold", "color": "gold", "page": 0}
    assert count(client, name) == 9
    assert _ids(client, name, '(source == "fruit")') == ["d2", "d4", "d6"]


def test_langchain_partition_key_with_num_partitions(client, name):
    """langchain's ``partition_key_field`` + ``num_partitions`` on a dynamic collection: the partitions it
    asked for, and a search filtered by the key sees only that tenant's rows."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True, partition_key_field="tenant")
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=65_535)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tenant", DataType.VARCHAR, max_length=65_535, is_partition_key=True)
    idx = client.prepare_index_params()
    idx.add_index("vector", index_type="AUTOINDEX", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, num_partitions=4, consistency_level="Strong")
    client.insert(name, [{"pk": f"doc{i}", "text": t, "vector": _vec(i), "tenant": f"t{i % 3}", "extra": {"k": i}}
                         for i, t in enumerate(TEXTS)])
    desc = client.describe_collection(name)
    assert desc["num_partitions"] == 4 and desc["enable_dynamic_field"]
    hits = client.search(name, [_vec(0)], limit=8, filter="tenant == 't1'", output_fields=["tenant"])[0]
    assert sorted(h["pk"] for h in hits) == ["doc1", "doc4", "doc7"]
    hits = client.search(name, [_vec(0)], limit=8, filter="extra['k'] >= 5", output_fields=["extra"])[0]
    assert sorted(h["pk"] for h in hits) == ["doc5", "doc6", "doc7"]

"""add_collection_function / alter_collection_function / drop_collection_function (pymilvus 2.6)
answered as Milvus 2.6 answers them for the functions vecdb has: a BM25 function is neither added
to, altered on nor dropped from an existing collection (Milvus's "Currently does not support ...",
1100), a model function (text embedding) is refused as at create (105), and dropping a function
the collection does not have succeeds; the schema is unchanged and the collection serves on."""

from __future__ import annotations

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException


def _bm25_collection(client: MilvusClient, name: str) -> None:
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=200, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("other", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="AUTOINDEX", metric_type="BM25")
    idx.add_index("other", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=idx)


def _refused(code: int, words: str, call) -> None:
    with pytest.raises(MilvusException, match=words) as e:
        call()
    assert e.value.code == code


def test_collection_functions_are_answered_as_milvus_does(client, name):
    _bm25_collection(client, name)
    bm25 = Function("bm25_2", function_type=FunctionType.BM25, input_field_names=["text"],
                    output_field_names=["other"])
    embed = Function("embed", function_type=FunctionType.TEXTEMBEDDING, input_field_names=["text"],
                     output_field_names=["other"], params={"provider": "openai"})
    _refused(1100, "Currently does not support adding BM25 function",
             lambda: client.add_collection_function(name, bm25))
    _refused(105, "not supported by vecdb", lambda: client.add_collection_function(name, embed))
    _refused(1100, "Currently does not support alter BM25 function",
             lambda: client.alter_collection_function(name, "bm25", bm25))
    _refused(1100, "Function embed not found", lambda: client.alter_collection_function(name, "embed", embed))
    _refused(1100, "Currently does not support droping BM25 function",
             lambda: client.drop_collection_function(name, "bm25"))
    client.drop_collection_function(name, "no_such_function")  # nothing to drop: success, as Milvus
    _refused(100, "", lambda: client.drop_collection_function("no_such_collection_x", "bm25"))
    functions = client.describe_collection(name)["functions"]
    assert [f["name"] for f in functions] == ["bm25"]
    client.insert(name, [{"id": 1, "text": "a quick fox", "other": {1: 0.5}}])
    hits = client.search(name, ["fox"], anns_field="sparse", limit=1, consistency_level="Strong")
    assert [h["id"] for h in hits[0]] == [1]

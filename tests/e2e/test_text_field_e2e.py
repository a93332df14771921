"""Milvus 3.0's TEXT field type through pymilvus on every deployment: long strings with no max_length
(100 KB rows), nullable, analyzed and matched (text_match, phrase_match), a BM25 function over a TEXT
input, query / search / get output as strings, upsert, describe; and the refusals Milvus's text.md
lists (scalar filter operators, a user scalar index, primary key, default value, ARRAY element),
with Milvus's codes (1100; pymilvus's own checks where it makes them first)."""

from __future__ import annotations

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from tests.conftest import free_port, start_standalone
from tests.e2e._helpers import raw_stub
from tests.e2e.test_rest import ok, post

DIM = 4
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase"]}
LONG = ("alpha " * 20_000).strip() + " omega"  # ~120 KB: past VARCHAR's 65,535 bytes


def _schema(c: MilvusClient, bm25: bool = True):
    s = c.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("body", DataType.TEXT, enable_analyzer=True, enable_match=True, analyzer_params=ANALYZER)
    s.add_field("note", DataType.TEXT, nullable=True, enable_analyzer=True, enable_match=True)
    if bm25:
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(Function("body_bm25", FunctionType.BM25, input_field_names=["body"],
                                output_field_names=["sparse"]))
    return s


def _index(c: MilvusClient, bm25: bool = True):
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    if bm25:
        idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return idx


ROWS = [
    {"id": 0, "vec": [0, 0, 0, 0], "body": "the quick brown fox jumps", "note": "first note"},
    {"id": 1, "vec": [1, 0, 0, 0], "body": "a lazy dog sleeps all day", "note": None},
    {"id": 2, "vec": [2, 0, 0, 0], "body": LONG, "note": "long row"},
    {"id": 3, "vec": [3, 0, 0, 0], "body": "brown dog and quick fox", "note": "Fox tail"},
]


def _make(c: MilvusClient, name: str) -> None:
    c.create_collection(name, schema=_schema(c), index_params=_index(c), consistency_level="Strong")
    c.insert(name, ROWS[:2])
    c.flush(name)
    c.insert(name, ROWS[2:])  # sealed and growing rows alike


def _ids(rows) -> list[int]:
    return sorted(r["id"] for r in rows)


def test_text_insert_query_search_and_match(client, name):
    _make(client, name)
    got = {r["id"]: r for r in client.query(name, filter="id >= 0", output_fields=["body", "note"])}
    assert got[2]["body"] == LONG and len(got[2]["body"]) > 65535
    assert got[1]["note"] is None and got[3]["note"] == "Fox tail"
    hits = client.search(name, [[2, 0, 0, 0]], limit=2, anns_field="vec", output_fields=["body"])[0]
    assert hits[0]["id"] == 2 and hits[0]["entity"]["body"] == LONG
    assert [r["body"] for r in client.get(name, ids=[0])] == [ROWS[0]["body"]]

    assert _ids(client.query(name, filter="text_match(body, 'fox')")) == [0, 3]
    assert _ids(client.query(name, filter="TEXT_MATCH(body, 'omega dog')")) == [1, 2, 3]
    assert _ids(client.query(name, filter="text_match(body, 'quick dog', minimum_should_match=2)")) == [3]
    assert _ids(client.query(name, filter="phrase_match(body, 'quick brown')")) == [0]
    assert _ids(client.query(name, filter="phrase_match(body, 'brown fox', 1)")) == [0]
    assert _ids(client.query(name, filter="text_match(note, 'fox') and id > 0")) == [3]
    assert _ids(client.query(name, filter="not text_match(note, 'note')")) == [2, 3]  # null: unknown
    hits = client.search(name, [[0, 0, 0, 0]], limit=5, anns_field="vec", filter="text_match(body, 'dog')")[0]
    assert sorted(h["id"] for h in hits) == [1, 3]

    bm25 = client.search(name, ["omega"], limit=3, anns_field="sparse", output_fields=["body"],
                         search_params={"metric_type": "BM25"})[0]
    assert [h["id"] for h in bm25] == [2] and bm25[0]["entity"]["body"] == LONG

    client.upsert(name, [{"id": 1, "vec": [1, 0, 0, 0], "body": "omega " + LONG, "note": "now set"}])
    got = client.query(name, filter="id == 1", output_fields=["body", "note"])[0]
    assert got["body"] == "omega " + LONG and got["note"] == "now set"
    assert _ids(client.search(name, ["omega"], limit=3, anns_field="sparse",
                              search_params={"metric_type": "BM25"})[0]) == [1, 2]

    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert fields["body"]["type"] == DataType.TEXT and fields["note"].get("nullable") is True
    assert "max_length" not in fields["body"]["params"]


@pytest.mark.parametrize("expr", [
    "body == 'x'", "body != 'x'", "body > 'a'", "body in ['a', 'b']", "body like 'qu%'",
    "body is null", "note is not null", "'a' < body < 'z'",
])
def test_text_refuses_scalar_filter_operators(client, name, expr):
    client.create_collection(name, schema=_schema(client, bm25=False), index_params=_index(client, bm25=False))
    client.insert(name, ROWS[:1])
    with pytest.raises(MilvusException) as e:
        client.query(name, filter=expr)
    assert e.value.code == 1100 and "TEXT field" in e.value.message and "text_match" in e.value.message


def test_text_refuses_user_index(client, name):
    client.create_collection(name, schema=_schema(client, bm25=False), index_params=_index(client, bm25=False))
    for index_type in ("INVERTED", "AUTOINDEX", "BITMAP", "Trie", "STL_SORT"):
        idx = client.prepare_index_params()
        idx.add_index("body", index_type=index_type)
        with pytest.raises(MilvusException) as e:
            client.create_index(name, idx)
        assert e.value.code == 1100 and "TEXT field does not support user-created scalar index" in e.value.message


def _create_raw(uri: str, name: str, fields: list[schema_pb2.FieldSchema]):
    """A create of a raw proto schema (past pymilvus's own checks): its Status."""
    pb = schema_pb2.CollectionSchema(name=name)
    pb.fields.extend(fields)
    with raw_stub(uri) as stub:
        return stub.CreateCollection(milvus_pb2.CreateCollectionRequest(
            collection_name=name, schema=pb.SerializeToString(), shards_num=1))


def test_text_schema_refusals(client, uri, name):
    text = schema_pb2.Text
    pk = schema_pb2.FieldSchema(name="id", data_type=schema_pb2.Int64, is_primary_key=True)
    vec = schema_pb2.FieldSchema(name="vec", data_type=schema_pb2.FloatVector,
                                 type_params=[{"key": "dim", "value": str(DIM)}])
    cases = [
        ([pk, vec, schema_pb2.FieldSchema(name="t", data_type=text, nullable=True,
                                          default_value=schema_pb2.ValueField(string_data="x"))],
         1100, "default_value"),
        ([pk, vec, schema_pb2.FieldSchema(name="t", data_type=text, is_partition_key=True)], 105, "partition key"),
        ([pk, vec, schema_pb2.FieldSchema(name="t", data_type=text, is_clustering_key=True)], 105, "clustering key"),
        ([pk, vec, schema_pb2.FieldSchema(name="t", data_type=schema_pb2.Array, element_type=text,
                                          type_params=[{"key": "max_capacity", "value": "4"}])], 105, "TEXT"),
        ([schema_pb2.FieldSchema(name="id", data_type=text, is_primary_key=True), vec], 105, "primary key"),
    ]
    for fields, code, words in cases:
        st = _create_raw(uri, name, fields)
        assert (st.code, words in st.reason) == (code, True), st.reason
        assert not client.has_collection(name)


def test_text_over_rest(server, client, name):
    port = server.http_ports[0]
    ok(post(port, "collections/create", {
        "collectionName": name,
        "schema": {"autoId": False, "enableDynamicField": False, "fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "vec", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}},
            {"fieldName": "body", "dataType": "Text", "nullable": True,
             "elementTypeParams": {"enable_analyzer": True, "enable_match": True}}]},
        "indexParams": [{"fieldName": "vec", "indexName": "vec", "metricType": "L2", "indexType": "FLAT"}]}))
    data = [{"id": 0, "vec": [0] * DIM, "body": LONG}, {"id": 1, "vec": [1] * DIM, "body": None}]
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": data}))["insertCount"] == 2
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": "text_match(body, 'omega')",
                                           "outputFields": ["body"], "consistencyLevel": "Strong"}))
    assert [(r["id"], r["body"]) for r in got] == [(0, LONG)]
    assert client.query(name, filter="id == 1", output_fields=["body"])[0]["body"] is None
    described = ok(post(port, "collections/describe", {"collectionName": name}))
    assert {f["name"]: f["type"] for f in described["fields"]}["body"] == "Text"


def test_text_survives_restart(tmp_path):
    port = free_port()
    node = start_standalone(tmp_path, port)
    c = MilvusClient(uri=f"http://127.0.0.1:{port}")
    try:
        _make(c, "texts")
        c.flush("texts")
    finally:
        c.close()
        node.stop()
    node = start_standalone(tmp_path, port)
    c = MilvusClient(uri=f"http://127.0.0.1:{port}")
    try:
        got = {r["id"]: r for r in c.query("texts", filter="id >= 0", output_fields=["body", "note"])}
        assert got[2]["body"] == LONG and got[1]["note"] is None
        assert _ids(c.query("texts", filter="text_match(body, 'fox')")) == [0, 3]
    finally:
        c.close()
        node.stop()

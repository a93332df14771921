"""Bad input the hostile pass of tests/e2e/test_bad_input_newest.py left open, each now as Milvus has it
(or refused, 1100, where Milvus's behaviour is unclear): a struct FieldData's own valid_data, REST
collections/create's params and JSON booleans, REST upsert's partialUpdate / fieldOps and search's
highlighter, a TIMESTAMPTZ field compared with a number, a partial update of a new primary key.
Function chain params and REST struct elements: tests/unit/test_newest_bad_input_units.py.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException
from pymilvus.client.abstract import CollectionSchema as DescribedSchema
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2

from tests.conftest import free_port, server_settings
from tests.e2e._helpers import raw_stub
from vecdb.standalone import Standalone

DIM = 2


def _raises(code: int, fn, *args, **kwargs) -> str:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value
    return e.value.message


def _index(client, field: str = "v", metric: str = "L2", kind: str = "FLAT"):
    idx = client.prepare_index_params()
    idx.add_index(field, index_type=kind, metric_type=metric)
    return idx


# --- a struct FieldData's own valid_data -------------------------------------------------------
def _struct_insert(stub, name: str, rows: list[dict], valid: list[bool]):
    """A raw insert of ``rows`` whose ArrayOfStruct FieldData carries ``valid`` (pymilvus marks nulls
    on the sub-fields only, so this takes the stub)."""
    described = DescribedSchema(stub.DescribeCollection(
        milvus_pb2.DescribeCollectionRequest(collection_name=name))).dict()
    req = Prepare.row_insert_param(name, rows, "", described["fields"], described["struct_array_fields"])
    (st,) = [fd for fd in req.fields_data if fd.field_name == "chunks"]
    del st.valid_data[:]
    st.valid_data.extend(valid)
    return stub.Insert(req)


def _chunks(i: int) -> list[dict]:
    return [{"text": f"r{i}c{j}", "emb": [float(i), float(j)]} for j in range(i % 2 + 1)]


def _struct_schema(client):
    st = client.create_struct_field_schema()
    st.add_field("text", DataType.VARCHAR, max_length=16)
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    return st


def test_a_struct_field_data_valid_data_nulls_a_nullable_struct(client, uri, name):
    """valid_data=[False] on the struct's FieldData was ignored: the row was stored with its struct."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(name, schema=schema, index_params=_index(client))
    client.add_collection_struct_field(name, "chunks", _struct_schema(client), max_capacity=4)  # nullable
    rows = [{"id": i, "v": [float(i), 0.0], "chunks": _chunks(i)} for i in range(3)]
    with raw_stub(uri) as stub:
        reply = _struct_insert(stub, name, rows, [True, False, True])
    assert reply.status.code == 0, reply.status
    got = {r["id"]: r["chunks"] for r in client.query(name, "id >= 0", output_fields=["chunks"],
                                                      consistency_level="Strong")}
    assert got[1] is None  # as a null struct pymilvus sends reads (tests/e2e/test_add_struct_field_e2e.py)
    assert [c["text"] for c in got[0]] == ["r0c0"] and [c["text"] for c in got[2]] == ["r2c0"]


def test_a_struct_field_data_valid_data_is_refused_for_a_struct_that_is_not_nullable(client, uri, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=_struct_schema(client),
                     max_capacity=4)
    idx = _index(client)
    idx.add_index("chunks[emb]", index_type="HNSW", metric_type="MAX_SIM_L2", params={"M": 8, "efConstruction": 32})
    client.create_collection(name, schema=schema, index_params=idx)
    rows = [{"id": i, "v": [float(i), 0.0], "chunks": _chunks(i)} for i in range(2)]
    with raw_stub(uri) as stub:
        reply = _struct_insert(stub, name, rows, [False, True])
    assert reply.status.code == 1100 and "field (chunks) is not nullable, but null values were passed" in \
        reply.status.reason
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 0


# --- a partial update of a new primary key -------------------------------------------------------
def test_a_partial_update_of_a_new_key_leaves_out_function_outputs_and_nullable_fields(client, name):
    """A new key needed the BM25 output and the nullable fields (Milvus 2.6's upsert fills them:
    task_upsert.go, LackOfFieldsDataBySchema then GenNullableFieldData; the output is computed)."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=64, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("tag", DataType.VARCHAR, max_length=8, nullable=True)
    schema.add_field("n", DataType.INT64, default_value=7)
    schema.add_function(Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    client.create_collection(name, schema=schema,
                             index_params=_index(client, "sparse", "BM25", "SPARSE_INVERTED_INDEX"))
    client.insert(name, [{"id": 1, "text": "apple pie", "tag": "a", "n": 1}])
    client.upsert(name, [{"id": 1, "n": 2}], partial_update=True)
    client.upsert(name, [{"id": 2, "text": "banana bread"}], partial_update=True)  # (a new key)
    got = {r["id"]: r for r in client.query(name, "id >= 0", output_fields=["text", "tag", "n"],
                                            consistency_level="Strong")}
    assert got == {1: {"id": 1, "text": "apple pie", "tag": "a", "n": 2},
                   2: {"id": 2, "text": "banana bread", "tag": None, "n": 7}}
    for query, pk in (("banana", 2), ("apple", 1)):
        hits = client.search(name, [query], anns_field="sparse", limit=3, search_params={"metric_type": "BM25"},
                             consistency_level="Strong")
        assert [h["id"] for h in hits[0]] == [pk]
    msg = _raises(1100, client.upsert, name, [{"id": 3, "tag": "x"}], partial_update=True)
    assert msg.endswith("partial update of a new primary key 3: must provide every field that is neither nullable "
                        "nor has a default value; missing ['text']")


# --- TIMESTAMPTZ filters ---------------------------------------------------------------------------
def test_a_timestamptz_field_compared_with_a_number_is_refused(client, name):
    """``ts > 5`` was read as 5 microseconds after the epoch; Milvus compares with ISO '...' literals."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("ts", DataType.TIMESTAMPTZ)
    client.create_collection(name, schema=schema, index_params=_index(client))
    client.insert(name, [{"id": 1, "v": [0.0, 0.0], "ts": "2025-01-02T00:00:00Z"}])
    msg = _raises(1100, client.query, name, "ts > 5")
    assert "field 'ts' is a timestamptz field" in msg and "not the number 5" in msg
    _raises(1100, client.search, name, [[0.0, 0.0]], filter="ts in [1, 2]", anns_field="v", limit=3)
    got = client.query(name, "ts > ISO '2025-01-01T00:00:00Z'", output_fields=["id"], consistency_level="Strong")
    assert [r["id"] for r in got] == [1]


# --- REST v2 -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    settings = server_settings(tmp_path_factory.mktemp("rest_followups"))
    settings.http.port = free_port()
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield settings.http.port, client, f"http://127.0.0.1:{srv.port}"
    client.close()
    srv.stop()


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _fields() -> list[dict]:
    return [{"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}}]


def test_rest_create_takes_params_as_properties(rest):
    """params beyond shardsNum / partitionsNum / consistencyLevel were ignored: namespace.mode (no
    partition-mode namespaces over REST), ttlSeconds, partitionKeyIsolation; a key Milvus does not read is
    ignored, as there."""
    port, client, uri = rest
    body = {"collectionName": "rest_ns_parts", "schema": {"enableNamespace": True, "fields": _fields()},
            "indexParams": [{"fieldName": "v", "metricType": "L2", "indexType": "FLAT"}],
            "params": {"namespace.mode": "partition", "ttlSeconds": 3600}}
    assert _post(port, "collections/create", body)["code"] == 0
    props = client.describe_collection("rest_ns_parts")["properties"]
    assert props["namespace.mode"] == "partition" and props["collection.ttl.seconds"] == "3600"
    with raw_stub(uri) as stub:
        r = stub.CreateNamespace(milvus_pb2.CreateNamespaceRequest(collection_name="rest_ns_parts",
                                                                   namespace_name="t1"))
    assert r.status.code == 0, r.status
    row = {"id": 1, "v": [0.0, 0.0]}
    assert _post(port, "entities/insert", {"collectionName": "rest_ns_parts", "namespace": "t1",
                                           "data": [row]})["code"] == 0
    assert set(client.list_partitions("rest_ns_parts")) == {"_default", "t1"}
    # a key Milvus's handler does not read is left alone there, so a Milvus user's body still works here
    reply = _post(port, "collections/create", {**body, "collectionName": "rest_typo", "params": {"shardNum": 2}})
    assert reply["code"] == 0 and "shardNum" not in client.describe_collection("rest_typo")["properties"]


@pytest.mark.parametrize("where", ["enableNamespace", "enableDynamicField", "autoId", "nullable"])
def test_rest_create_booleans_must_be_json_booleans(rest, where):
    """``enableNamespace: "false"`` (a string) made a collection with namespaces: Milvus's JSON binding
    refuses a string for a bool (1801)."""
    port, client, _ = rest
    fields = _fields()
    schema: dict = {"fields": fields}
    if where == "nullable":
        fields.append({"fieldName": "tag", "dataType": "VarChar", "elementTypeParams": {"max_length": 8},
                       "nullable": "false"})
    else:
        schema[where] = "false"
    reply = _post(port, "collections/create", {"collectionName": f"rest_bool_{where}", "schema": schema})
    assert reply["code"] == 1801 and f'{where} must be a JSON boolean, got "false"' in reply["message"], reply
    assert not client.has_collection(f"rest_bool_{where}")


def test_rest_upsert_partial_update_and_field_ops(rest):
    """partialUpdate and fieldOps (Milvus 2.6.17's REST upsert) were dropped: a partial row failed
    (the fields it leaves out were missing) and the ops never ran."""
    port, client, _ = rest
    fields = _fields() + [{"fieldName": "tag", "dataType": "VarChar", "elementTypeParams": {"max_length": 8}},
                          {"fieldName": "arr", "dataType": "Array", "elementDataType": "Int64",
                           "elementTypeParams": {"max_capacity": 8}}]
    assert _post(port, "collections/create", {
        "collectionName": "rest_partial", "schema": {"fields": fields},
        "indexParams": [{"fieldName": "v", "metricType": "L2", "indexType": "FLAT"}]})["code"] == 0
    rows = [{"id": i, "v": [float(i), 0.0], "tag": f"t{i}", "arr": [i]} for i in range(3)]
    assert _post(port, "entities/insert", {"collectionName": "rest_partial", "data": rows})["code"] == 0
    reply = _post(port, "entities/upsert", {"collectionName": "rest_partial", "partialUpdate": True,
                                            "data": [{"id": 1, "tag": "new"}]})
    assert reply["code"] == 0 and reply["data"]["upsertCount"] == 1, reply
    reply = _post(port, "entities/upsert", {"collectionName": "rest_partial", "data": [{"id": 2, "arr": [7, 8]}],
                                            "fieldOps": [{"fieldName": "arr", "op": "ARRAY_APPEND"}]})
    assert reply["code"] == 0, reply
    got = {r["id"]: r for r in client.query("rest_partial", "id >= 0", output_fields=["tag", "arr"],
                                            consistency_level="Strong")}
    assert {i: (r["tag"], r["arr"]) for i, r in got.items()} == {0: ("t0", [0]), 1: ("new", [1]), 2: ("t2", [2, 7, 8])}
    for body, code, words in [
        ({"fieldOps": [{"fieldName": "arr", "op": "ARRAY_EXTEND"}], "data": [{"id": 2, "arr": [1]}]}, 1100,
         "unsupported partial update op 'ARRAY_EXTEND'"),
        ({"partialUpdate": "yes", "data": [{"id": 1, "tag": "x"}]}, 1801, 'partialUpdate must be a JSON boolean'),
        ({"partialUpdate": True, "data": [{"id": 1, "tag": "x"}, {"id": 2}]}, 1804, "field tag is missing in row 1"),
    ]:
        reply = _post(port, "entities/upsert", {"collectionName": "rest_partial", **body})
        assert reply["code"] == code and words in reply["message"], reply


def test_rest_search_highlighter_is_refused(rest):
    """A search's highlighter was dropped silently; Milvus's REST v2 search request has none (1100)."""
    port, client, _ = rest
    assert _post(port, "collections/create", {
        "collectionName": "rest_hl", "schema": {"fields": _fields()},
        "indexParams": [{"fieldName": "v", "metricType": "L2", "indexType": "FLAT"}]})["code"] == 0
    highlighter = {"type": "lexical", "pre_tags": ["<b>"], "post_tags": ["</b>"]}
    reply = _post(port, "entities/search", {"collectionName": "rest_hl", "data": [[0.0, 0.0]], "limit": 3,
                                            "highlighter": highlighter})
    assert reply["code"] == 1100 and "highlighter is not supported by the RESTful API" in reply["message"]
    reply = _post(port, "entities/hybrid_search", {
        "collectionName": "rest_hl", "highlighter": highlighter,
        "search": [{"data": [[0.0, 0.0]], "annsField": "v", "limit": 3}], "limit": 3})
    assert reply["code"] == 1100
    assert _post(port, "entities/search", {"collectionName": "rest_hl", "data": [[0.0, 0.0]], "limit": 3})["code"] == 0

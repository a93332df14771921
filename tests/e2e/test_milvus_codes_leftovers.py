"""Leftover status-code and input gaps against Milvus 2.3.5, each measured with pymilvus 3.0.2 against
the real Milvus 2.3.5 server (the `milvus` PyPI package) next to vecdb:

- an alias as the target of create_alias / alter_alias: 100 "collection not found" (vecdb said 1100);
- unknown field names: Milvus 2.3.5 answers every one with 65535; vecdb keeps 1700 (output fields,
  anns field, create_index: Milvus 2.4+'s code, Milvus's words) and 1100 (a filter that does not parse);
- get_bulk_insert_state of an unknown job: 1000 "key not found[key=.../importtask/<id>]";
- an ARRAY row with no data (a ScalarField with nothing set): Milvus 2.3.5's proxy dies of a nil
  pointer; vecdb refuses it (1100), as it does an element of the wrong kind;
- a FLOAT or DOUBLE default of NaN or ±inf: Milvus 2.3.5 stores it; vecdb refuses it (1100), as it does
  such an inserted value;
- range_filter without radius: accepted and ignored by both;
- a JSON import's quoted number ("1" for an INT64 or FLOAT) fails the job, as Milvus 2.3.5's
  "illegal value '1' for int64 type field"; true or "1" inside a FLOAT_VECTOR fails it too; the REST
  insert takes a quoted number (Milvus's checkAndSetData reads it) but refuses those vectors (1804);
- HEAD on the HTTP port answers as GET does, without the body (it was 501).
"""

from __future__ import annotations

import json
import math
import urllib.request
import uuid

import grpc
import pytest
from pymilvus import BulkInsertState, DataType, MilvusClient, MilvusException, utility
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc, schema_pb2

from tests.e2e._helpers import orm  # noqa: F401 - fixture
from tests.e2e.test_bulk_import import _wait, objects  # noqa: F401 - fixture
from tests.e2e.test_rest import post


def _code(call) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        call()
    return e.value.code, e.value.message


def _schema(dynamic: bool = False):
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=dynamic)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("x", DataType.INT64)
    s.add_field("f", DataType.FLOAT)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    return s


def _loaded(client, name) -> None:
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=_schema(), index_params=idx)
    client.insert(name, [{"id": i, "x": i, "f": float(i), "vec": [float(i), 0.0]} for i in range(5)])
    client.load_collection(name)


def test_an_alias_is_no_target_of_an_alias(client, name):
    client.create_collection(name, schema=_schema())
    a, b = f"a_{name}", f"b_{name}"
    client.create_alias(name, a)
    try:
        assert _code(lambda: client.create_alias(a, b)) == (
            100, f"collection not found[database=default][collection={a}]")
        assert _code(lambda: client.alter_alias(a, a)) == (100, f"collection not found[collection={a}]")
        assert client.describe_alias(a)["collection_name"] == name
        assert b not in client.list_aliases(name)["aliases"]
    finally:
        client.drop_alias(a)


def test_unknown_field_names(client, name):
    _loaded(client, name)
    vec = [[1.0, 0.0]]
    parse = "cannot parse expression: nope > 1, error: field nope not exist"
    assert _code(lambda: client.query(name, "id >= 0", output_fields=["nope"])) == (1700, "field nope not exist")
    assert _code(lambda: client.search(name, vec, limit=2, output_fields=["nope"])) == (1700, "field nope not exist")
    assert _code(lambda: client.search(name, vec, limit=2, anns_field="nope")) == (
        1700, "failed to get field schema by name: fieldName(nope) not found")
    for call in (lambda: client.query(name, "nope > 1"), lambda: client.search(name, vec, limit=2, filter="nope > 1"),
                 lambda: client.delete(name, filter="nope > 1")):
        code, msg = _code(call)
        assert code == 1100 and msg.startswith(parse), msg
    client.release_collection(name)
    idx = client.prepare_index_params()
    idx.add_index("nope", index_type="STL_SORT")
    assert _code(lambda: client.create_index(name, idx)) == (1700, "cannot create index on non-exist field: nope")


def test_unknown_import_job_is_key_not_found(orm):  # noqa: F811
    code, msg = _code(lambda: utility.get_bulk_insert_state(123456789, using=orm))
    assert code == 1000 and msg.startswith("key not found[key=") and msg.endswith("importtask/123456789]"), msg


def test_array_row_without_data_is_refused(server, client, name):
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("arr", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    port = getattr(server, "ports", [getattr(server, "port", None)])[0]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = milvus_pb2_grpc.MilvusServiceStub(channel)

    def insert(*rows: schema_pb2.ScalarField):
        arr = schema_pb2.ArrayArray(element_type=DataType.INT64, data=list(rows))
        fields = [
            schema_pb2.FieldData(type=DataType.INT64, field_name="id",
                                 scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=range(len(rows))))),
            schema_pb2.FieldData(type=DataType.ARRAY, field_name="arr", scalars=schema_pb2.ScalarField(array_data=arr)),
            schema_pb2.FieldData(type=DataType.FLOAT_VECTOR, field_name="vec", vectors=schema_pb2.VectorField(
                dim=2, float_vector=schema_pb2.FloatArray(data=[1.0, 2.0] * len(rows)))),
        ]
        return stub.Insert(milvus_pb2.InsertRequest(collection_name=name, num_rows=len(rows), fields_data=fields))

    try:
        one = schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=[1]))
        reply = insert(one, schema_pb2.ScalarField())
        assert reply.status.code == 1100 and reply.insert_cnt == 0
        assert reply.status.reason == ("array field (arr) is illegal, insert data does not match: "
                                       "need Int64 array, got nil at row 1")
        empty = schema_pb2.ScalarField()
        empty.long_data.SetInParent()  # an empty array: the oneof set, no values (as pymilvus sends [])
        reply = insert(one, empty)
        assert reply.status.code == 0 and reply.insert_cnt == 2
    finally:
        channel.close()
    got = client.query(name, "id >= 0", output_fields=["arr"], consistency_level="Strong")
    assert sorted((r["id"], list(r["arr"])) for r in got) == [(0, [1]), (1, [])]


@pytest.mark.parametrize("dtype", [DataType.DOUBLE, DataType.FLOAT])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_default_is_refused(client, name, dtype, value):
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("d", dtype, default_value=value)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    assert _code(lambda: client.create_collection(name, schema=s)) == (
        1100, f"default value of field d is NaN or infinity: {value}")
    assert not client.has_collection(name)


def test_range_filter_without_radius_is_ignored(client, name):
    _loaded(client, name)
    plain = client.search(name, [[1.0, 0.0]], limit=3, consistency_level="Strong")
    for params in ({"metric_type": "L2", "params": {"range_filter": 0.5}}, {"metric_type": "L2", "range_filter": 0.5}):
        got = client.search(name, [[1.0, 0.0]], limit=3, search_params=params, consistency_level="Strong")
        assert [(h["id"], h["distance"]) for h in got[0]] == [(h["id"], h["distance"]) for h in plain[0]]
    assert [h["id"] for h in plain[0]][0] == 1


def test_import_refuses_quoted_numbers_and_non_numbers_in_vectors(client, name, orm, objects):  # noqa: F811
    client.create_collection(name, schema=_schema())
    ok = {"id": 1, "x": 1, "f": 1.0, "vec": [1, 2]}
    prefix = f"imports/{uuid.uuid4().hex}"
    cases = [({"x": "1"}, 'field x value must be a number, not a quoted one: invalid parameter[expected=Int64]'
                          '[actual="1"]'),
             ({"id": "2"}, 'field id value must be a number, not a quoted one'),
             ({"f": "1.5"}, 'field f value must be a number, not a quoted one: invalid parameter[expected=Float]'
                            '[actual="1.5"]'),
             ({"f": True}, "field f value must be a number: invalid parameter[expected=Float][actual=true]"),
             ({"vec": [True, 2]}, "field vec value must be a list of numbers: "
                                  "invalid parameter[expected=FloatVector][actual=[true, 2]]"),
             ({"vec": ["1", 2]}, "field vec value must be a list of numbers")]
    for i, (bad, words) in enumerate(cases):
        key = f"{prefix}/bad{i}.json"
        objects.put(key, json.dumps({"rows": [ok, {**ok, "id": 2, **bad}]}).encode())
        st = _wait(utility.do_bulk_insert(name, files=[key], using=orm), orm)
        assert st.state == BulkInsertState.ImportFailed, (bad, st)
        assert f"row 1: {words}" in st.failed_reason, (bad, st.failed_reason)
    key = f"{prefix}/good.json"
    objects.put(key, json.dumps({"rows": [ok]}).encode())
    st = _wait(utility.do_bulk_insert(name, files=[key], using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted and st.row_count == 1, st


def test_rest_insert_refuses_non_numbers_in_vectors(server, client, name):
    port = server.http_ports[0]
    s = _schema()
    s.add_field("nv", DataType.FLOAT_VECTOR, dim=2, nullable=True)
    idx = client.prepare_index_params()
    for v in ("vec", "nv"):
        idx.add_index(v, index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    ok = {"id": 1, "x": 1, "f": 1.0, "vec": [1, 2], "nv": None}
    for bad, actual in (({"vec": [True, 2]}, "[true, 2]"), ({"vec": ["1", 2]}, '["1", 2]'),
                        ({"nv": [1, False]}, "[1, false]")):
        field = next(iter(bad))
        status, body = post(port, "entities/insert", {"collectionName": name, "data": [ok, {**ok, "id": 2, **bad}]})
        assert status == 200 and body["code"] == 1804, body
        assert body["message"] == (f"fail to deal the insert data, error: field {field} value must be a list of "
                                   f"numbers: invalid parameter[expected=FloatVector][actual={actual}]"), body
    _, body = post(port, "entities/insert", {"collectionName": name, "data": [{**ok, "f": True}]})
    assert body["code"] == 1804 and "field f value must be a number" in body["message"], body
    # a quoted number is read, as Milvus's REST insert reads it (json.Number, cast.ToFloat32E)
    _, body = post(port, "entities/insert", {"collectionName": name,
                                             "data": [{**ok, "id": "7", "x": "8", "f": "1.5", "nv": [3, 4.5]}]})
    assert body["code"] == 0 and body["data"]["insertCount"] == 1, body
    got = client.query(name, "id == 7", output_fields=["x", "f", "nv"], consistency_level="Strong")
    assert [(r["x"], r["f"], [float(v) for v in r["nv"]]) for r in got] == [(8, 1.5, [3.0, 4.5])]


def test_head_answers_as_get_without_a_body(server):
    port = server.http_ports[0]
    for path, status in (("/webui/", 200), ("/healthz", 200), ("/metrics", 200), ("/nope", 404)):
        get = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        head = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="HEAD")
        try:
            with urllib.request.urlopen(get, timeout=10) as r:
                got_get = (r.status, r.headers["Content-Type"], r.headers["Content-Length"], len(r.read()))
        except urllib.error.HTTPError as e:
            got_get = (e.code, e.headers["Content-Type"], e.headers["Content-Length"], len(e.read()))
        try:
            with urllib.request.urlopen(head, timeout=10) as r:
                got_head = (r.status, r.headers["Content-Type"], r.headers["Content-Length"], r.read())
        except urllib.error.HTTPError as e:
            got_head = (e.code, e.headers["Content-Type"], e.headers["Content-Length"], e.read())
        assert got_get[0] == got_head[0] == status, (path, got_get, got_head)
        assert got_head[1] == got_get[1] and got_head[3] == b"", (path, got_get, got_head)
        if path != "/metrics":  # (the metrics change between two calls)
            assert got_head[2] == got_get[2] and int(got_get[2]) == got_get[3] > 0, (path, got_get, got_head)


def test_a_missing_collection_is_named_as_milvus_2_3_5_names_it(client):
    """Milvus 2.3.5: 100 "collection not found[database=default][collection=x]" for reads, writes and DDL;
    describe_collection "can't find collection " before it (vecdb said "can't find collection[...]" to
    every call)."""
    name = "nope_" + uuid.uuid4().hex[:8]
    words = f"collection not found[database=default][collection={name}]"
    for call in (lambda: client.query(name, filter="id > 0"), lambda: client.search(name, [[0.1, 0.2]], limit=1),
                 lambda: client.load_collection(name), lambda: client.list_partitions(name),
                 lambda: client.create_alias(name, "a" + name)):
        assert _code(call) == (100, words)
    assert _code(lambda: client.describe_collection(name)) == (100, "can't find collection " + words)

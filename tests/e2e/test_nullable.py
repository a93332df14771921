"""Nullable fields and default values through pymilvus (Milvus 2.5 behaviour), on every deployment:
the schema round trip and its refusals, None and left-out values at insert and upsert, nulls in
query, search and iterator output (None), ``is null`` / ``is not null`` filters and comparisons
that are false on a null (also inside ``not``), count(*), on growing and sealed segments, through
compaction, a release/load and (standalone) a restart. Every answer is checked against the rows
computed here.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, RRFRanker

from tests.e2e._helpers import check_compacted_and_reloaded

N = 300


def _schema():
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("age", DataType.INT64, nullable=True)
    s.add_field("status", DataType.VARCHAR, max_length=16, default_value="active")
    s.add_field("score", DataType.DOUBLE, nullable=True, default_value=0.5)
    s.add_field("flag", DataType.BOOL, nullable=True)
    s.add_field("name", DataType.VARCHAR, max_length=16, nullable=True)
    s.add_field("j", DataType.JSON, nullable=True)
    s.add_field("a", DataType.ARRAY, element_type=DataType.INT32, max_capacity=4, nullable=True)
    return s


def _create(client, name, properties=None):
    client.create_collection(name, schema=_schema(), properties=properties or {})
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


def _rows(lo: int, hi: int) -> list[dict]:
    """Row i: every third age null (None or left out), status/score left out on even rows, ..."""
    out = []
    for i in range(lo, hi):
        r: dict = {"id": i, "v": [float(i % 17), float(i % 5)]}
        if i % 3 == 1:
            r["age"] = None
        elif i % 3 == 2:
            r["age"] = i
        if i % 2:
            r["status"] = f"s{i % 4}"
            r["score"] = None if i % 5 == 0 else i / 4
        if i % 4:
            r["flag"] = bool(i % 3)
            r["name"] = None if i % 7 == 0 else f"n{i}"
        if i % 6:
            r["j"] = {"k": i % 10}
            r["a"] = [i % 3, i % 5]
        else:
            r["j"] = None
        out.append(r)
    return out


def _stored(r: dict) -> dict:
    """The row as the server gives it back: nulls None, left-out defaults filled."""
    out = {k: r.get(k) for k in ("id", "age", "flag", "name", "j", "a")}
    out["status"] = r.get("status") or "active"
    out["score"] = r.get("score") if r.get("score") is not None else 0.5
    return out


FIELDS = ["age", "status", "score", "flag", "name", "j", "a"]
CASES = [
    ("age is null", lambda r: r["age"] is None),
    ("age IS NOT NULL", lambda r: r["age"] is not None),
    ("age > 100", lambda r: r["age"] is not None and r["age"] > 100),
    ("age != 5", lambda r: r["age"] is not None and r["age"] != 5),
    ("not (age > 100)", lambda r: r["age"] is not None and not r["age"] > 100),
    ("age in [2, 5, 8] or name is null", lambda r: r["age"] in (2, 5, 8) or r["name"] is None),
    ("status == 'active'", lambda r: r["status"] == "active"),
    ("score == 0.5", lambda r: r["score"] == 0.5),
    ("flag == false", lambda r: r["flag"] is False),
    ("flag is null and name is not null", lambda r: r["flag"] is None and r["name"] is not None),
    ("name like 'n1%'", lambda r: r["name"] is not None and r["name"].startswith("n1")),
    ("j is null", lambda r: r["j"] is None),
    ("j['k'] != 3", lambda r: r["j"] is not None and r["j"]["k"] != 3),
    ("a is not null and array_contains(a, 2)", lambda r: r["a"] is not None and 2 in r["a"]),
    ("not array_contains(a, 2)", lambda r: r["a"] is not None and 2 not in r["a"]),
]


def _check(client, name, live: dict[int, dict]):
    got = client.query(name, "id >= 0", output_fields=FIELDS, consistency_level="Strong")
    assert {r["id"]: {k: r[k] for k in ("id", *FIELDS)} for r in got} == live
    for expr, pred in CASES:
        want = sorted(pk for pk, r in live.items() if pred(r))
        got = client.query(name, expr, output_fields=["id"], consistency_level="Strong")
        assert sorted(r["id"] for r in got) == want, expr
        count = client.query(name, expr, output_fields=["count(*)"], consistency_level="Strong")
        assert count[0]["count(*)"] == len(want), expr
    # search: nulls come back as None in the hits' entities, filtered searches skip null rows
    res = client.search(name, [[3.0, 1.0]], limit=20, filter="age is null", output_fields=FIELDS,
                        consistency_level="Strong")
    assert len(res[0]) == 20
    for h in res[0]:
        assert h["entity"] == {k: live[h["id"]][k] for k in FIELDS}
        assert h["entity"]["age"] is None


def test_nulls_and_defaults_growing_sealed_compacted(client, name):
    _create(client, name)
    rows = _rows(0, N)
    client.insert(name, rows[:150])
    live = {r["id"]: _stored(r) for r in rows}
    _check(client, name, {pk: r for pk, r in live.items() if pk < 150})  # growing only
    client.flush(name)
    client.insert(name, rows[150:])
    _check(client, name, live)  # sealed + growing
    # upsert: a null where a value was, a value where a null was, a default where a value was
    new = [{"id": 2, "v": [0.0, 0.0], "age": None, "name": "x"},
           {"id": 4, "v": [0.0, 0.0], "age": 44, "j": {"k": 3}, "a": [9]},
           {"id": 7, "v": [0.0, 0.0], "status": None}]
    client.upsert(name, new)
    for r in new:
        live[r["id"]] = _stored(r)
    client.delete(name, ids=[0, 1, 3])
    for pk in (0, 1, 3):
        live.pop(pk)
    _check(client, name, live)
    client.flush(name)
    check_compacted_and_reloaded(client, name, lambda: _check(client, name, live))


def test_describe_round_trip_and_iterator(client, name):
    _create(client, name)
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert fields["age"].get("nullable") is True and "default_value" not in fields["age"]
    assert fields["status"]["default_value"].string_data == "active" and not fields["status"].get("nullable")
    assert fields["score"]["default_value"].double_data == 0.5 and fields["score"]["nullable"] is True
    assert not fields["id"].get("nullable") and not fields["v"].get("nullable")
    rows = _rows(0, 120)
    client.insert(name, rows)
    it = client.query_iterator(name, batch_size=25, filter="age is null or flag is null", output_fields=["age", "flag"])
    seen = []
    while batch := it.next():
        seen += batch
    it.close()
    want = {r["id"]: _stored(r) for r in rows}
    want = {pk: r for pk, r in want.items() if r["age"] is None or r["flag"] is None}
    assert {r["id"]: (r["age"], r["flag"]) for r in seen} == {pk: (r["age"], r["flag"]) for pk, r in want.items()}


def test_null_for_a_plain_field_is_refused(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("plain", DataType.INT64)
    client.create_collection(name, schema=s)
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    # None: pymilvus sends no value for the row, the server counts 0 values for 1 row (as Milvus does)
    with pytest.raises(MilvusException) as e:
        client.insert(name, [{"id": 1, "v": [0.0, 1.0], "plain": None}])
    assert e.value.code == 1100
    assert "the num_rows (0) of field (plain) is not equal to passed num_rows (1)" in str(e.value)
    with pytest.raises(MilvusException, match="without set nullable==true or set default_value"):
        client.insert(name, [{"id": 1, "v": [0.0, 1.0]}])  # pymilvus's own check of a left-out field
    assert client.query(name, "id >= 0", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 0


@pytest.mark.parametrize("field,kwargs,message", [
    ("id", {"is_primary": True, "nullable": True}, "primary field not support null"),
    ("w", {"default_value": 1.0, "dim": 2}, "type not support default_value"),  # (nullable: Milvus 3.0 takes it)
    ("x", {"default_value": "a"}, "default value type mismatches field schema type"),
    ("x", {"nullable": True, "is_partition_key": True}, "partition key field not support nullable"),
])
def test_schema_refusals(client, name, field, kwargs, message):
    s = MilvusClient.create_schema()
    if field != "id":
        s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    if field == "id":
        s.add_field("id", DataType.INT64, **kwargs)
    else:
        s.add_field(field, DataType.FLOAT_VECTOR if field == "w" else DataType.INT64, **kwargs)
    with pytest.raises(MilvusException) as e:
        client.create_collection(name, schema=s)
    assert e.value.code == 1100 and message in e.value.message
    assert not client.has_collection(name)


def test_nulls_survive_a_restart(tmp_path):
    """Standalone on a data directory, columns memory-mapped: sealed and growing rows with nulls,
    stopped and started again."""
    from tests.conftest import free_port, start_standalone

    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        _create(c, "nulls_restart", properties={"mmap.enabled": "true"})
        rows = _rows(0, 90)
        c.insert("nulls_restart", rows[:60])
        c.flush("nulls_restart")
        c.insert("nulls_restart", rows[60:])  # growing: replayed from the log
        live = {r["id"]: _stored(r) for r in rows}
        _check(c, "nulls_restart", live)
        c.close()
        node.stop()
        node = start_standalone(tmp_path, port)
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.load_collection("nulls_restart")
        _check(c, "nulls_restart", live)
        c.close()
    finally:
        node.stop()


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_rest_nullable_and_default(server, client, name):
    """The RESTful API: a schema with ``nullable`` and ``defaultValue`` (Milvus's field keys), rows with
    null and left-out values, nulls back as JSON null, the same answers as through gRPC."""
    port = server.http_ports[0]
    fields = [{"fieldName": "id", "dataType": "Int64", "isPrimary": True},
              {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}},
              {"fieldName": "age", "dataType": "Int64", "nullable": True},
              {"fieldName": "status", "dataType": "VarChar", "elementTypeParams": {"max_length": 10},
               "defaultValue": "active"}]
    body = _post(port, "collections/create", {"collectionName": name, "schema": {"fields": fields},
                                              "indexParams": [{"fieldName": "vector", "metricType": "L2",
                                                               "indexType": "FLAT"}]})
    assert body["code"] == 0, body
    desc = {f["name"]: f for f in _post(port, "collections/describe", {"collectionName": name})["data"]["fields"]}
    assert desc["age"]["nullable"] is True and desc["status"]["defaultValue"] == "active"
    data = [{"id": 1, "vector": [0.0, 1.0], "age": 30, "status": "premium"},
            {"id": 2, "vector": [0.0, 2.0], "age": None, "status": None},
            {"id": 3, "vector": [0.0, 3.0]}]
    body = _post(port, "entities/insert", {"collectionName": name, "data": data})
    assert body["code"] == 0 and body["data"]["insertCount"] == 3, body
    got = _post(port, "entities/query", {"collectionName": name, "filter": "id > 0", "outputFields": ["age", "status"]})
    assert sorted(got["data"], key=lambda r: r["id"]) == [
        {"id": 1, "age": 30, "status": "premium"}, {"id": 2, "age": None, "status": "active"},
        {"id": 3, "age": None, "status": "active"}]
    grpc = client.query(name, "age is null", output_fields=["age", "status"], consistency_level="Strong")
    rest = _post(port, "entities/query", {"collectionName": name, "filter": "age is null",
                                          "outputFields": ["age", "status"]})["data"]
    assert sorted(rest, key=lambda r: r["id"]) == sorted(grpc, key=lambda r: r["id"]) and len(rest) == 2
    bad = [{"fieldName": "id", "dataType": "Int64", "isPrimary": True, "nullable": True},
           {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}}]
    body = _post(port, "collections/create", {"collectionName": name + "_bad", "schema": {"fields": bad}})
    assert body["code"] == 1100 and "primary field not support null" in body["message"], body


def test_milvus_docs_examples(client, name):
    """The examples of Milvus 2.5's "Nullable & Default" page, with the answers it prints."""
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=5)
    s.add_field("age", DataType.INT64, nullable=True)
    s.add_field("status", DataType.VARCHAR, default_value="active", max_length=10)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vector", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 128})
    client.create_collection(name, schema=s, index_params=idx)
    client.insert(name, [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4, 0.5], "age": 30, "status": "premium"},
                         {"id": 2, "vector": [0.2, 0.3, 0.4, 0.5, 0.6], "age": None},
                         {"id": 3, "vector": [0.3, 0.4, 0.5, 0.6, 0.7], "status": None}])
    q = {"output_fields": ["id", "age", "status"], "consistency_level": "Strong"}
    assert client.query(name, "age >= 0", **q) == [{"id": 1, "age": 30, "status": "premium"}]
    everything = client.query(name, "", limit=10, **q)
    assert sorted(everything, key=lambda r: r["id"]) == [
        {"id": 1, "age": 30, "status": "premium"}, {"id": 2, "age": None, "status": "active"},
        {"id": 3, "age": None, "status": "active"}]
    assert sorted(r["id"] for r in client.query(name, 'status == "active"', **q)) == [2, 3]
    res = client.search(name, [[0.1, 0.2, 0.4, 0.3, 0.128]], limit=2, search_params={"params": {"nprobe": 16}},
                        output_fields=["id", "age"], consistency_level="Strong")
    assert [(h["id"], h["entity"]["age"]) for h in res[0]] == [(1, 30), (2, None)]
    # grouping on a nullable field: its nulls are one group (Milvus 2.6+)
    res = client.search(name, [[0.1] * 5], limit=2, group_by_field="age", group_size=2, output_fields=["age"],
                        consistency_level="Strong")
    assert [(h["id"], h["entity"]["age"]) for h in res[0]] == [(1, 30), (2, None), (3, None)]


def test_partial_update_keeps_nulls(client, name):
    """An upsert with partial_update: the fields left out keep their values and their nulls."""
    _create(client, name)
    rows = _rows(0, 12)
    client.insert(name, rows)
    client.upsert(name, [{"id": 1, "flag": False}], partial_update=True)
    client.upsert(name, [{"id": 2, "age": None}], partial_update=True)
    want = {r["id"]: _stored(r) for r in rows}
    want[1]["flag"], want[2]["age"] = False, None
    got = client.query(name, "id in [1, 2]", output_fields=FIELDS, consistency_level="Strong")
    assert {r["id"]: {k: r[k] for k in ("id", *FIELDS)} for r in got} == {1: want[1], 2: want[2]}


def test_get_hybrid_search_and_delete_by_a_null_filter(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("w", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("age", DataType.INT64, nullable=True)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    idx.add_index("w", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    client.insert(name, [{"id": i, "v": [i, 0], "w": [0, i], "age": None if i % 2 else i} for i in range(10)])
    got = client.get(name, ids=[1, 2], output_fields=["age"])
    assert sorted((r["id"], r["age"]) for r in got) == [(1, None), (2, 2)]
    reqs = [AnnSearchRequest([[0.0, 0.0]], "v", {}, limit=4), AnnSearchRequest([[0.0, 0.0]], "w", {}, limit=4)]
    res = client.hybrid_search(name, reqs, RRFRanker(), limit=4, output_fields=["age"])
    assert [(h["id"], h["entity"]["age"]) for h in res[0]] == [(0, 0), (1, None), (2, 2), (3, None)]
    assert client.delete(name, filter="age is null")["delete_count"] == 5
    left = client.query(name, "", limit=20, output_fields=["age"], consistency_level="Strong")
    assert sorted((r["id"], r["age"]) for r in left) == [(i, i) for i in range(0, 10, 2)]

"""Value types in Milvus's REST v2 requests and replies (vecdb.proxy.rest, rest_more): a BOOL field of an
insert or upsert row read as Milvus's checkAndSetData reads it (cast.ToBoolE: JSON booleans, Go's
ParseBool strings, 1 and 0), other values refused with 1804; integer request parameters of the wrong JSON
type refused naming the field (1802, no Python in the words); a snapshot's createTs, a restore's jobId
and a pin's pinId as decimal strings under ``Accept-Type-Allow-Int64: false``."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_rest_headers import error, ok, post


@pytest.fixture
def port(server):
    return server.http_ports[0]


def _fresh(port: int, name: str, fields: list[dict]) -> None:
    if name in ok(post(port, "collections/list", {})):
        ok(post(port, "collections/drop", {"collectionName": name}))
    ok(post(port, "collections/create", {"collectionName": name, "schema": {"fields": [
        {"fieldName": "id", "dataType": "Int64", "isPrimary": True}, *fields,
        {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}}]},
        "indexParams": [{"fieldName": "v", "indexName": "v", "metricType": "L2"}]}))


def test_bool_values_read_as_milvus_reads_them(port):
    _fresh(port, "val_bool", [{"fieldName": "b", "dataType": "Bool"},
                              {"fieldName": "nb", "dataType": "Bool", "nullable": True}])
    accepted = [True, False, "true", "false", "True", "FALSE", "t", "F", "1", "0", 1, 0, 1.0]
    rows = [{"id": i, "b": b, "nb": None if i % 2 else b, "v": [0.0, 0.0]} for i, b in enumerate(accepted)]
    assert ok(post(port, "entities/insert", {"collectionName": "val_bool", "data": rows}))["insertCount"] == 13
    got = ok(post(port, "entities/query", {"collectionName": "val_bool", "filter": "id >= 0", "limit": 20,
                                           "outputFields": ["b", "nb"], "consistencyLevel": "Strong"}))
    want = [True, False, True, False, True, False, True, False, True, False, True, False, True]
    assert [r["b"] for r in sorted(got, key=lambda r: r["id"])] == want
    assert [r["nb"] for r in sorted(got, key=lambda r: r["id"])] == [w if i % 2 == 0 else None
                                                                     for i, w in enumerate(want)]
    true_ids = ok(post(port, "entities/query", {"collectionName": "val_bool", "filter": "b == true",
                                                "outputFields": ["id"], "consistencyLevel": "Strong"}))
    assert sorted(r["id"] for r in true_ids) == [0, 2, 4, 6, 8, 10, 12]
    for bad, shown in (("x", "x"), ("yes", "yes"), (2, "2"), (0.5, "0.5"), ([True], "[true]"), ({}, "{}"),
                       (None, "null"), ("", "")):
        for action in ("insert", "upsert"):
            code, message = error(post(port, f"entities/{action}", {"collectionName": "val_bool", "data": [
                {"id": 100, "b": True, "v": [0.0, 0.0]}, {"id": 101, "b": bad, "v": [0.0, 0.0]}]}))
            assert code == 1804, (bad, message)
            assert "insert data, error: field b value must be a boolean" in message, message
            assert message.endswith(f"invalid parameter[expected=Bool][actual={shown}]"), message
    code, message = error(post(port, "entities/insert", {"collectionName": "val_bool", "data": [
        {"id": 100, "b": True, "nb": "maybe", "v": [0.0, 0.0]}]}))
    assert code == 1804 and "field nb" in message and "[actual=maybe]" in message
    # an upsert reads the same strings: "false" is false, not a non-empty (truthy) string
    ok(post(port, "entities/upsert", {"collectionName": "val_bool", "data": [{"id": 0, "b": "false", "v": [0, 0]}]}))
    got = ok(post(port, "entities/get", {"collectionName": "val_bool", "id": [0], "outputFields": ["b"]}))
    assert got == [{"id": 0, "b": False}]
    assert ok(post(port, "entities/query", {"collectionName": "val_bool", "filter": "id >= 100",
                                            "consistencyLevel": "Strong"})) == []  # nothing refused was written
    ok(post(port, "collections/drop", {"collectionName": "val_bool"}))


def test_integer_parameters_of_the_wrong_type_name_the_field(port):
    _fresh(port, "val_int", [])
    ok(post(port, "entities/insert", {"collectionName": "val_int", "data": [{"id": 1, "v": [0.0, 0.0]}]}))
    search = {"collectionName": "val_int", "data": [[0.0, 0.0]]}
    cases = [("jobs/import/get_progress", {"jobId": "abc"}, "jobId"),
             ("jobs/import/describe", {"jobId": [1]}, "jobId"),
             ("entities/query", {"collectionName": "val_int", "filter": "id > 0", "limit": "x"}, "limit"),
             ("entities/query", {"collectionName": "val_int", "filter": "id > 0", "offset": 1.5}, "offset"),
             ("entities/search", {**search, "limit": "ten"}, "limit"),
             ("entities/search", {**search, "limit": True}, "limit"),
             ("entities/search", {**search, "offset": "x"}, "offset"),
             ("entities/hybrid_search", {"collectionName": "val_int", "limit": {},
                                         "search": [{"data": [[0.0, 0.0]], "annsField": "v"}]}, "limit"),
             ("entities/hybrid_search", {"collectionName": "val_int",
                                         "search": [{"data": [[0.0, 0.0]], "annsField": "v", "limit": "x"}]},
              "search[0].limit"),
             ("collections/get_compaction_state", {"collectionName": "val_int", "jobID": "x"}, "jobID"),
             ("collections/create", {"collectionName": "val_int2", "dimension": 2, "params": {"shardsNum": "x"}},
              "params.shardsNum"),
             ("resource_groups/transfer_replica", {"collectionName": "val_int", "sourceRgName": "a",
                                                   "targetRgName": "b", "replicaNum": "x"}, "replicaNum"),
             ("resource_groups/create", {"name": "val_rg", "config": {"requests": {"node_num": "x"},
                                                                   "limits": {"node_num": 1}}},
              "config.requests.node_num")]
    for path, body, field in cases:
        code, message = error(post(port, path, body))
        assert code == 1802, (path, message)
        assert message.startswith(f"missing required parameters, error: {field} must be an integer, got "), message
        assert "int()" not in message and "literal" not in message
    assert error(post(port, "jobs/import/get_progress", {})) == (1802, "missing required parameters, error: jobId")
    # integers as decimal strings and integral numbers are still read
    got = ok(post(port, "entities/query", {"collectionName": "val_int", "filter": "id > 0", "limit": "5",
                                           "offset": 0.0, "consistencyLevel": "Strong"}))
    assert [r["id"] for r in got] == [1]
    assert [h["id"] for h in ok(post(port, "entities/search", {**search, "limit": 3.0,
                                                               "consistencyLevel": "Strong"}))] == [1]
    assert "val_int2" not in ok(post(port, "collections/list", {}))
    ok(post(port, "collections/drop", {"collectionName": "val_int"}))


def test_snapshot_int64s_as_strings_when_the_client_takes_no_int64(port):
    _fresh(port, "val_snap", [])
    ok(post(port, "entities/insert", {"collectionName": "val_snap", "data": [{"id": 1, "v": [0.0, 0.0]}]}))
    ok(post(port, "collections/flush", {"collectionName": "val_snap"}))
    ok(post(port, "snapshots/create", {"collectionName": "val_snap", "snapshotName": "vs"}))
    no = {"Accept-Type-Allow-Int64": "false"}
    ref = {"collectionName": "val_snap", "snapshotName": "vs"}
    as_string = ok(post(port, "snapshots/describe", ref, no))["createTs"]
    as_number = ok(post(port, "snapshots/describe", ref))["createTs"]
    assert isinstance(as_number, int) and as_number > 0 and as_string == str(as_number)
    pin = ok(post(port, "snapshots/pin", {**ref, "ttlSeconds": 60}, no))["pinId"]
    assert isinstance(pin, str) and int(pin) > 0
    ok(post(port, "snapshots/unpin", {"pinId": pin}))
    job = ok(post(port, "snapshots/restore", {"sourceCollectionName": "val_snap", "snapshotName": "vs",
                                              "targetCollectionName": "val_snap_dst"}, no))["jobId"]
    assert isinstance(job, str) and int(job) > 0
    deadline = time.monotonic() + 60
    while ok(post(port, "jobs/snapshot/describe", {"jobId": job}))["state"] not in (
            "RestoreSnapshotCompleted", "RestoreSnapshotFailed") and time.monotonic() < deadline:
        time.sleep(0.2)
    ok(post(port, "snapshots/drop", ref))
    for name in ("val_snap", "val_snap_dst"):
        ok(post(port, "collections/drop", {"collectionName": name}))

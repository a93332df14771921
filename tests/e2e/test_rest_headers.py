"""Milvus's REST v2 request headers and error wording (vecdb.proxy.rest): the ``DB-Name`` header picks the
database when the body names none; HTTP Basic auth is taken as Milvus's ParseUsernamePassword takes it;
``Accept-Type-Allow-Int64: false`` makes int64 keys and values decimal strings; insert and parameter
errors say what Milvus says, with no Python in them; nq past the limit answers Milvus's message."""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest
from pymilvus import MilvusException

from tests.conftest import free_port, server_settings
from vecdb.standalone import Standalone

INT64_MAX = 2 ** 63 - 1


def post(port: int, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def ok(reply: tuple[int, dict]):
    status, body = reply
    assert status == 200 and body.get("code") == 0, body
    return body["data"]


def error(reply: tuple[int, dict]) -> tuple[int, str]:
    status, body = reply
    assert status == 200 and body["code"] != 0, body
    return body["code"], body["message"]


@pytest.fixture
def deployed(server, client):
    """The shared server of the e2e suite (through its first proxy's HTTP port) and a pymilvus client."""
    return server.http_ports[0], client


def test_db_name_header_picks_the_database_when_the_body_names_none(deployed):
    port, client = deployed
    if "hdr_db" not in ok(post(port, "databases/list", {})):
        ok(post(port, "databases/create", {"dbName": "hdr_db"}))
    in_db = {"DB-Name": "hdr_db"}
    for name in ok(post(port, "collections/list", {}, in_db)):
        ok(post(port, "collections/drop", {"collectionName": name}, in_db))
    ok(post(port, "collections/create", {"collectionName": "hdr_c", "dimension": 2}, in_db))
    assert ok(post(port, "collections/list", {}, in_db)) == ["hdr_c"]
    assert "hdr_c" not in ok(post(port, "collections/list", {}))  # no header: the default database
    assert "hdr_c" not in ok(post(port, "collections/list", {}, {"DB-Name": ""}))  # an empty one: the same
    # the body's dbName first (Milvus's wrapperPost), the header only where the body has none
    assert "hdr_c" not in ok(post(port, "collections/list", {"dbName": "default"}, in_db))
    assert ok(post(port, "collections/list", {"dbName": "hdr_db"}, {"DB-Name": "default"})) == ["hdr_c"]
    assert ok(post(port, "entities/insert", {"collectionName": "hdr_c", "data": [{"id": 1, "vector": [0.1, 0.2]}]},
                   {"db-name": "hdr_db"}))["insertCount"] == 1  # (a header name in any case)
    got = ok(post(port, "entities/query", {"collectionName": "hdr_c", "filter": "id >= 0",
                                           "consistencyLevel": "Strong"}, in_db))
    assert [r["id"] for r in got] == [1]
    assert error(post(port, "collections/describe", {"collectionName": "hdr_c"}))[0] == 100
    assert error(post(port, "collections/list", {}, {"DB-Name": "no_such_db"}))[0] == 800
    ok(post(port, "collections/drop", {"collectionName": "hdr_c"}, in_db))
    ok(post(port, "databases/drop", {"dbName": "hdr_db"}))


def test_accept_type_allow_int64_false_writes_int64_as_strings(deployed):
    port, client = deployed
    if client.has_collection("hdr_int64"):
        client.drop_collection("hdr_int64")
    ok(post(port, "collections/create", {"collectionName": "hdr_int64", "schema": {"fields": [
        {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
        {"fieldName": "n", "dataType": "Int64"}, {"fieldName": "small", "dataType": "Int32"},
        {"fieldName": "arr", "dataType": "Array", "elementDataType": "Int64", "elementTypeParams": {"max_capacity": 4}},
        {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}}]},
        "indexParams": [{"fieldName": "v", "indexName": "v", "metricType": "L2"}]}))
    rows = [{"id": INT64_MAX, "n": INT64_MAX - 1, "small": 7, "arr": [INT64_MAX, 1], "v": [0.0, 0.0]},
            {"id": 2, "n": -3, "small": 8, "arr": [], "v": [1.0, 1.0]}]
    no = {"Accept-Type-Allow-Int64": "false"}
    assert ok(post(port, "entities/insert", {"collectionName": "hdr_int64", "data": rows[:1]}, no)) == {
        "insertCount": 1, "insertIds": [str(INT64_MAX)]}
    assert ok(post(port, "entities/insert", {"collectionName": "hdr_int64", "data": rows[1:]})) == {
        "insertCount": 1, "insertIds": [2]}  # no header: Milvus's default (proxy.http.acceptTypeAllowInt64 true)
    assert ok(post(port, "entities/upsert", {"collectionName": "hdr_int64", "data": rows[1:]}, {
        "Accept-Type-Allow-Int64": "0"}))["upsertIds"] == ["2"]
    query = {"collectionName": "hdr_int64", "filter": "id >= 0", "outputFields": ["id", "n", "small", "arr"],
             "consistencyLevel": "Strong"}
    as_strings = sorted(ok(post(port, "entities/query", query, no)), key=lambda r: len(r["id"]))
    assert as_strings == [{"id": "2", "n": "-3", "small": 8, "arr": []},
                          {"id": str(INT64_MAX), "n": str(INT64_MAX - 1), "small": 7, "arr": [str(INT64_MAX), "1"]}]
    for headers in ({}, {"Accept-Type-Allow-Int64": "true"}, {"Accept-Type-Allow-Int64": "maybe"}):
        as_numbers = sorted(ok(post(port, "entities/query", query, headers)), key=lambda r: r["id"])
        assert as_numbers == [{"id": 2, "n": -3, "small": 8, "arr": []},
                              {"id": INT64_MAX, "n": INT64_MAX - 1, "small": 7, "arr": [INT64_MAX, 1]}], headers
    got = ok(post(port, "entities/get", {"collectionName": "hdr_int64", "id": [2], "outputFields": ["n"]}, no))
    assert got == [{"id": "2", "n": "-3"}]
    search = {"collectionName": "hdr_int64", "data": [[0.0, 0.0]], "limit": 2, "outputFields": ["n"],
              "consistencyLevel": "Strong"}
    hits = ok(post(port, "entities/search", search, no))
    assert [(h["id"], h["n"]) for h in hits] == [(str(INT64_MAX), str(INT64_MAX - 1)), ("2", "-3")]
    assert [h["id"] for h in ok(post(port, "entities/search", search))] == [INT64_MAX, 2]
    hybrid = {"collectionName": "hdr_int64", "search": [{"data": [[0.0, 0.0]], "annsField": "v", "limit": 2}],
              "limit": 2, "outputFields": ["n"], "consistencyLevel": "Strong"}
    assert [h["id"] for h in ok(post(port, "entities/hybrid_search", hybrid, no))] == [str(INT64_MAX), "2"]
    client.drop_collection("hdr_int64")


def test_insert_and_parameter_errors_say_what_milvus_says(deployed):
    port, client = deployed
    for name in ("hdr_errs", "hdr_static"):
        if client.has_collection(name):
            client.drop_collection(name)
    ok(post(port, "collections/create", {"collectionName": "hdr_errs", "dimension": 2}))
    insert = {"collectionName": "hdr_errs"}
    code, message = error(post(port, "entities/insert", {**insert, "data": [{"id": "x", "vector": [0.1, 0.2]}]}))
    assert (code, message) == (1804, "fail to deal the insert data, error: field id value must be an integer in "
                                     "range [-9223372036854775808, 9223372036854775807]: invalid "
                                     "parameter[expected=Int64][actual=x]")
    for bad, actual in ((1.5, "1.5"), (True, "true"), (2 ** 63, str(2 ** 63))):
        code, message = error(post(port, "entities/insert", {**insert, "data": [{"id": bad, "vector": [0.1, 0.2]}]}))
        assert code == 1804 and message.endswith(f"[expected=Int64][actual={actual}]"), message
    code, message = error(post(port, "entities/insert", {**insert, "data": [{"id": 1}]}))
    assert (code, message) == (1804, "fail to deal the insert data, error: field vector is required, missing in row 0")
    # a quoted integer and an integer-valued number are integers, as Milvus reads them
    quoted = [{"id": "7", "vector": [0.1, 0.2]}, {"id": 8.0, "vector": [0.1, 0.2]}]
    assert ok(post(port, "entities/insert", {**insert, "data": quoted}))["insertIds"] == [7, 8]

    ok(post(port, "collections/create", {"collectionName": "hdr_static", "schema": {
        "enableDynamicField": False, "fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True}, {"fieldName": "tiny", "dataType": "Int8"},
            {"fieldName": "x", "dataType": "Float"},
            {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}}]}}))
    row = {"id": 1, "tiny": 1, "x": 0.5, "v": [0.1, 0.2]}
    static = {"collectionName": "hdr_static"}
    code, message = error(post(port, "entities/insert", {**static, "data": [{**row, "dyn": 1}]}))
    assert (code, message) == (1804, "fail to deal the insert data, error: has pass more field without dynamic "
                                     "schema, please check it: field dyn is not in the schema and the dynamic "
                                     "field is off")
    code, message = error(post(port, "entities/insert", {**static, "data": [{**row, "tiny": 300}]}))
    assert code == 1804 and message.endswith("field tiny value must be an integer in range [-128, 127]: "
                                             "invalid parameter[expected=Int8][actual=300]"), message
    code, message = error(post(port, "entities/insert", {**static, "data": [{**row, "x": "abc"}]}))
    assert code == 1804 and message.endswith("field x value must be a number: invalid "
                                             "parameter[expected=Float][actual=abc]"), message
    code, message = error(post(port, "entities/insert", {**static, "data": [{**row, "v": [0.1, "a"]}]}))
    assert code == 1804 and message.endswith("field v value must be a list of numbers: invalid "
                                             'parameter[expected=FloatVector][actual=[0.1, "a"]]'), message

    # a required parameter left out: named alike, without quotes, on every endpoint
    missing = "missing required parameters, error: "
    assert error(post(port, "collections/describe", {})) == (1802, missing + "collectionName")
    assert error(post(port, "users/create", {"userName": "x"})) == (1802, missing + "password")
    assert error(post(port, "partitions/has", {"collectionName": "hdr_static"})) == (
        1802, missing + "partitionName")
    for name in ("hdr_errs", "hdr_static"):
        client.drop_collection(name)


def test_nq_past_the_limit_is_refused_in_milvus_words(deployed):
    port, client = deployed
    if not client.has_collection("hdr_nq"):
        client.create_collection("hdr_nq", dimension=2, metric_type="L2")
    expected = ("nq [16385] is invalid, nq (number of search vector per search request) should be in range "
                "[1, 16384], but got 16385")
    queries = [[0.0, 0.0]] * 16385
    assert error(post(port, "entities/search", {"collectionName": "hdr_nq", "data": queries})) == (1100, expected)
    with pytest.raises(MilvusException) as e:
        client.search("hdr_nq", queries, limit=1)
    assert e.value.code == 1100 and expected in e.value.message
    client.drop_collection("hdr_nq")


def test_http_basic_auth_is_taken_as_milvus_takes_it(tmp_path):
    settings = server_settings(tmp_path)
    settings.http.port = free_port()
    settings.security.authorization_enabled = True
    srv = Standalone(settings).start()
    port = settings.http.port

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    try:
        assert ok(post(port, "collections/list", {}, basic("root", "Milvus"))) == []
        assert ok(post(port, "collections/list", {}, {"Authorization": "basic " + basic("root", "Milvus")[
            "Authorization"][6:]})) == []  # (the scheme in any case, as Go's BasicAuth)
        assert ok(post(port, "collections/list", {}, {"Authorization": "root:Milvus"})) == []  # (no Bearer prefix)
        wrong_basic = post(port, "collections/list", {}, basic("root", "wrong"))
        wrong_bearer = post(port, "collections/list", {}, {"Authorization": "Bearer root:wrong"})
        assert wrong_basic == wrong_bearer and wrong_basic[0] == 401 and wrong_basic[1]["code"] == 1800
        status, body = post(port, "collections/list", {}, {"Authorization": "Basic !!notbase64"})
        assert status == 401 and body["code"] == 1800
        ok(post(port, "users/create", {"userName": "bob", "password": "bobpass123"}, basic("root", "Milvus")))
        status, body = post(port, "collections/create", {"collectionName": "c", "dimension": 2},
                            basic("bob", "bobpass123"))  # authenticated as bob: his privileges apply
        assert status == 403 and body["code"] == 1401
    finally:
        srv.stop()

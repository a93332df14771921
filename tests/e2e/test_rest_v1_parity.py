"""REST answers found different from Milvus's REST server in a side-by-side run (Milvus 2.3.5's v1 API, the
request handling its v2 API shares, and Milvus's handler_v2 sources): an empty or non-JSON body, NaN,
parameters of the wrong JSON type, a missing id or data, entities/query's default limit of 100 (with a
filter too) and its limit / offset of 0 or less (left out, not refused), an unknown consistencyLevel,
and the methods other than POST. The expected answers are Milvus's, written out (no Milvus needed), but
for CORS: vecdb sends no CORS headers (Milvus allows any origin)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

BAD_FORMAT, MISSING_PARAMETER, INVALID_PARAMETER = 1801, 1802, 1100


def send(port: int, path: str, raw: bytes | None, method: str = "POST", headers: dict | None = None):
    """(status, headers, body bytes) of one request."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=raw, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post(port: int, endpoint: str, body: dict | bytes) -> dict:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, reply = send(port, f"/v2/vectordb/{endpoint}", raw)
    assert status == 200, reply
    return json.loads(reply)


def ok(reply: dict):
    assert reply.get("code") == 0, reply
    return reply["data"]


@pytest.fixture(scope="module")
def rest(server):
    """The suite's server (its first HTTP port) with ``v1p``: 150 rows, ids 0..149, tag "a" or "b"."""
    port = server.http_ports[0]
    post(port, "collections/drop", {"collectionName": "v1p"})
    ok(post(port, "collections/create", {"collectionName": "v1p", "dimension": 2, "metricType": "L2"}))
    rows = [{"id": i, "vector": [float(i), 1.0], "tag": "ab"[i % 2]} for i in range(150)]
    assert ok(post(port, "entities/insert", {"collectionName": "v1p", "data": rows}))["insertCount"] == 150
    return port


def test_a_body_that_is_empty_or_not_json_is_1801(rest):
    """Milvus's wrapperPost: an empty body is Go's io.EOF (1801, its own words); NaN and Infinity are no
    JSON (Python's decoder took them: a NaN limit answered 1802, a NaN vector value went on)."""
    assert post(rest, "collections/list", b"") == {
        "code": BAD_FORMAT, "message": "can only accept json format request, the request body should be nil, "
                                       "however {} is valid"}
    reply = post(rest, "entities/query", b'{"collectionName": "v1p", "filter": "id < 3", "limit": NaN}')
    assert reply == {"code": BAD_FORMAT, "message": "can only accept json format request, error: invalid "
                                                    "character 'N' looking for beginning of value"}
    reply = post(rest, "entities/search", b'{"collectionName": "v1p", "data": [[Infinity, 1.0]]}')
    assert reply["code"] == BAD_FORMAT
    assert ok(post(rest, "collections/list", b"{}")) is not None  # {} is a body


def test_wrong_json_types_are_1801_naming_the_parameter(rest):
    """A filter that is no string (Python's "bad argument type for built-in operation", 1802), outputFields
    that is no list (a string was read letter by letter), search data that is no list (1802 "error: 0")."""
    assert post(rest, "entities/query", {"collectionName": "v1p", "filter": 5}) == {
        "code": BAD_FORMAT, "message": "can only accept json format request, error: filter is a string, got 5"}
    assert post(rest, "entities/query", {"collectionName": "v1p", "filter": "id < 3", "outputFields": "tag"}) == {
        "code": BAD_FORMAT, "message": "can only accept json format request, error: outputFields is a list of strings"}
    assert post(rest, "entities/search", {"collectionName": "v1p", "data": {"a": 1}})["code"] == BAD_FORMAT
    assert post(rest, "entities/delete", {"collectionName": "v1p", "filter": ["id < 3"]})["code"] == BAD_FORMAT


def test_missing_id_of_get_and_data_of_insert_are_1802(rest):
    """Milvus's binding:"required" on entities/get's id and entities/insert's data (vecdb answered 1806 and 1804)."""
    assert post(rest, "entities/get", {"collectionName": "v1p"}) == {
        "code": MISSING_PARAMETER, "message": "missing required parameters, error: id"}
    assert post(rest, "entities/insert", {"collectionName": "v1p"}) == {
        "code": MISSING_PARAMETER, "message": "missing required parameters, error: data"}
    assert post(rest, "entities/upsert", {"collectionName": "v1p", "data": None})["code"] == MISSING_PARAMETER


def test_query_limit_defaults_to_100_with_a_filter_too(rest):
    """handler_v2's QueryReqV2{Limit: 100}: a query that names no limit reads at most 100 rows, with a filter
    or without (vecdb applied the default only without a filter: 150 rows came back)."""
    assert len(ok(post(rest, "entities/query", {"collectionName": "v1p", "filter": "id >= 0",
                                                "outputFields": ["id"]}))) == 100
    assert len(ok(post(rest, "entities/query", {"collectionName": "v1p", "outputFields": ["id"]}))) == 100
    assert len(ok(post(rest, "entities/query", {"collectionName": "v1p", "filter": "id >= 0", "limit": 120,
                                                "outputFields": ["id"]}))) == 120
    # count(*) takes no limit (matchCountRule)
    assert ok(post(rest, "entities/query", {"collectionName": "v1p", "filter": "id >= 0",
                                            "outputFields": ["count(*)"]})) == [{"count(*)": 150}]


def test_query_limit_and_offset_of_0_or_less_are_left_out(rest):
    """handler_v2's query sends a limit or offset only when it is above 0 (vecdb refused -1 with 1100)."""
    rows = ok(post(rest, "entities/query", {"collectionName": "v1p", "filter": "id < 5", "limit": -1,
                                            "outputFields": ["id"]}))
    assert sorted(r["id"] for r in rows) == [0, 1, 2, 3, 4]
    rows = ok(post(rest, "entities/query", {"collectionName": "v1p", "filter": "id < 5", "limit": 0,
                                            "offset": -1, "outputFields": ["id"]}))
    assert sorted(r["id"] for r in rows) == [0, 1, 2, 3, 4]
    # no filter and no limit that counts: the query's own rule ("empty expression should be used with limit")
    assert post(rest, "entities/query", {"collectionName": "v1p", "limit": 0})["code"] == INVALID_PARAMETER


def test_consistency_level_empty_is_the_default_and_unknown_is_1100(rest):
    """convertConsistencyLevel: "" is the default (Bounded), a name outside the enum 1100 in Milvus's words
    (vecdb answered 1802 with protobuf's words for both)."""
    rows = ok(post(rest, "entities/query", {"collectionName": "v1p", "filter": "id == 7", "consistencyLevel": "",
                                            "outputFields": ["tag"]}))
    assert rows == [{"id": 7, "tag": "b"}]
    expected = {"code": INVALID_PARAMETER, "message": "consistencyLevel can only be [Strong, Session, Bounded, "
                "Eventually, Customized], default: Bounded, err:parameter:'Nope' is incorrect, please check it: "
                "invalid parameter"}
    assert post(rest, "entities/query", {"collectionName": "v1p", "filter": "id == 7",
                                         "consistencyLevel": "Nope"}) == expected
    assert post(rest, "entities/search", {"collectionName": "v1p", "data": [[1.0, 1.0]],
                                          "consistencyLevel": "Nope"}) == expected


def test_no_cors_and_other_methods(rest):
    """A preflight OPTIONS is answered 204 with no Access-Control-Allow-* header, and no reply carries one:
    a browser refuses calls from pages of other origins (Milvus allows any; with authentication off, any
    page a user visits could read and write the data). Other methods get 404, not http.server's 501 page."""
    status, headers, body = send(rest, "/v2/vectordb/collections/list", None, "OPTIONS",
                                 {"Origin": "http://x", "Access-Control-Request-Method": "POST"})
    assert (status, body) == (204, b"")
    assert not [k for k in headers if k.lower().startswith("access-control-")]
    own = f"http://127.0.0.1:{rest}"
    status, headers, _ = send(rest, "/v2/vectordb/collections/list", b"{}", headers={"Origin": own})
    assert status == 200 and not [k for k in headers if k.lower().startswith("access-control-")]
    # a page of another site posting a form (text/plain: no preflight) is refused before the body is read
    for origin in ("http://evil.example", "null", f"http://localhost:{rest}"):
        status, _, body = send(rest, "/v2/vectordb/collections/drop", b'{"collectionName": "v1p"}',
                               headers={"Origin": origin, "Content-Type": "text/plain"})
        assert status == 403 and json.loads(body)["message"].startswith("cross-origin request refused"), origin
    assert json.loads(send(rest, "/v2/vectordb/collections/has", b'{"collectionName": "v1p"}')[2])["data"] == {
        "has": True}
    for method in ("PUT", "DELETE", "PATCH"):
        assert send(rest, "/v2/vectordb/collections/list", b"{}", method)[0] == 404


def test_a_chunked_body_is_read(rest):
    """A body sent with Transfer-Encoding: chunked (no Content-Length), as Go's server reads it; vecdb read
    it as empty."""
    req = urllib.request.Request(f"http://127.0.0.1:{rest}/v2/vectordb/entities/query", method="POST",
                                 data=iter([b'{"collectionName": "v1p", ',
                                            b'"filter": "id < 2", "outputFields": ["id"]}']),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        rows = ok(json.loads(resp.read()))
    assert sorted(r["id"] for r in rows) == [0, 1]

"""How the REST API reads a request body's bytes, as Milvus's JSON binding does (Go's ``json.Decoder``, found
by the REST differential hunt against Milvus 2.3.5): the first JSON value counts and what follows it is
ignored; invalid UTF-8 inside a string reads as U+FFFD; a UTF-8 byte order mark or a UTF-16 body is no JSON
(1801). Before, vecdb refused trailing data and invalid UTF-8 (1801) and took a BOM or UTF-16."""

from __future__ import annotations

import json

from tests.e2e.test_rest import post


def test_body_bytes_read_as_milvus_reads_them(server, client, name):
    port = server.http_ports[0]
    client.create_collection(name, dimension=2, auto_id=False)
    row = {"id": 1, "vector": [0.5, 0.5], "note": "x"}
    body = json.dumps({"collectionName": name, "data": [row]}).encode()
    assert post(port, "entities/insert", body + b' {"trailing": true} junk')[1]["code"] == 0
    bad_utf8 = body.replace(b'"x"', b'"a\xffb"').replace(b'"id": 1', b'"id": 2')
    assert post(port, "entities/insert", bad_utf8)[1]["code"] == 0
    got = post(port, "entities/get", {"collectionName": name, "id": [1, 2], "outputFields": ["note"]})[1]
    assert sorted((r["id"], r["note"]) for r in got["data"]) == [(1, "x"), (2, "a\ufffdb")]
    for refused in (b"\xef\xbb\xbf" + body, json.dumps({"collectionName": name}).encode("utf-16"), b"   "):
        status, reply = post(port, "collections/describe", refused)
        assert status == 200 and reply["code"] == 1801, (refused[:8], reply)

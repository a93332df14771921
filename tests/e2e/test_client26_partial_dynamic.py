"""A partial update (upsert with partial_update=True) merges the dynamic field, as Milvus 2.6 does
(its upsert docs: "the value of the dynamic field will merge with all non-schema-defined fields
included in the request"; Milvus's test_partial_update_dynamic_different_keys_per_row: "non-updated
dynamic fields preserved"). Found by the pymilvus 2.6 MilvusClient hunt (`.dev/client26/`): vecdb
replaced the row's whole dynamic field with the request's, so a partial update of one dynamic key,
or of a vector alone (pymilvus sends ``{}`` for a row without dynamic keys), lost every other key.
Checked with the suite's client, REST's partialUpdate and, where its virtualenv exists, pymilvus 2.6."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.test_rest import ok, post

CLIENT_PYTHON = os.environ.get("VECDB_CLIENT_PYTHON", "")


def _rows(client, name, ids):
    got = client.query(name, filter=f"id in {list(ids)}", output_fields=["*"], consistency_level="Strong")
    return {r["id"]: {k: v for k, v in r.items() if k not in ("id", "vector")} for r in got}


def _setup(client, name):
    client.create_collection(name, dimension=2, consistency_level="Strong")  # dynamic field on
    client.insert(name, [{"id": 1, "vector": [1.0, 0.0], "a": 1, "b": {"x": 1}},
                         {"id": 2, "vector": [0.0, 1.0], "a": 2, "c": "keep"}])


@pytest.mark.parametrize("sealed", [False, True])
def test_partial_update_keeps_and_merges_dynamic_keys(client, name, sealed):
    _setup(client, name)
    if sealed:
        client.flush(name)
    client.upsert(name, [{"id": 1, "vector": [0.5, 0.5]}], partial_update=True)  # no dynamic key sent
    client.upsert(name, [{"id": 2, "a": 20, "d": None}], partial_update=True)  # one replaced, one added
    client.upsert(name, [{"id": 3, "vector": [1.0, 1.0], "n": 3}], partial_update=True)  # a new key: as sent
    assert _rows(client, name, [1, 2, 3]) == {
        1: {"a": 1, "b": {"x": 1}}, 2: {"a": 20, "c": "keep", "d": None}, 3: {"n": 3}}
    got = client.query(name, filter="id == 1", output_fields=["vector"])
    assert got[0]["vector"] == pytest.approx([0.5, 0.5])
    # an upsert without partial_update still replaces the whole dynamic field (Milvus's override mode)
    client.upsert(name, [{"id": 2, "vector": [0.0, 1.0], "z": 9}])
    assert _rows(client, name, [2]) == {2: {"z": 9}}


def test_rest_partial_update_merges_dynamic_keys(server, client, name):
    _setup(client, name)
    port = server.http_ports[0]
    ok(post(port, "entities/upsert", {"collectionName": name, "partialUpdate": True,
                                      "data": [{"id": 2, "e": 5}]}))
    assert _rows(client, name, [2]) == {2: {"a": 2, "c": "keep", "e": 5}}


SCRIPT = r'''
import json, sys
from pymilvus import MilvusClient
args = json.load(sys.stdin)
c = MilvusClient(uri=args["uri"])
c.upsert(args["name"], [{"id": 1, "vector": [0.5, 0.5]}], partial_update=True)
c.upsert(args["name"], [{"id": 2, "a": 20}], partial_update=True)
rows = c.query(args["name"], filter="id in [1, 2]", output_fields=["*"], consistency_level="Strong")
print("RESULT " + json.dumps({r["id"]: {k: v for k, v in r.items() if k not in ("id", "vector")} for r in rows}))
'''


@pytest.mark.skipif(not CLIENT_PYTHON, reason="VECDB_CLIENT_PYTHON is not set: no virtualenv of the other pymilvus "
                                              "(run through `make test`, which creates it)")
def test_partial_update_through_pymilvus_26(uri, client, name):
    _setup(client, name)
    proc = subprocess.run([CLIENT_PYTHON, "-c", SCRIPT], input=json.dumps({"uri": uri, "name": name}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    assert out == {"1": {"a": 1, "b": {"x": 1}}, "2": {"a": 20, "c": "keep"}}

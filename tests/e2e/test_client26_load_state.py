"""get_load_state of a collection that does not exist (found by the pymilvus 2.6 MilvusClient hunt,
`.dev/client26/`, against Milvus Lite 2.5.1 and Milvus's proxy sources): Milvus's proxy answers
GetLoadState with success and LoadStateNotExist when it cannot resolve the collection (in a database
that does not exist either); vecdb answered 100 "collection not found". An invalid name (1100) and an
unknown partition (200) stay errors, and the REST get_load_state still answers a missing collection
with 100 (Milvus's handler turns NotExist into "collection not found[collection=...]")."""

from __future__ import annotations

import uuid

import pytest
from pymilvus import MilvusClient, MilvusException

from tests.e2e.test_rest import post


def _code(call) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        call()
    return e.value.code, e.value.message


def test_missing_collection_is_not_exist(server, client, name):
    assert client.get_load_state(name)["state"].name == "NotExist"
    other_db = MilvusClient(uri=f"http://127.0.0.1:{server.port}", db_name="no_db_" + uuid.uuid4().hex[:8])
    try:
        assert other_db.get_load_state(name)["state"].name == "NotExist"
    finally:
        other_db.close()
    client.create_collection(name, dimension=4)
    assert client.get_load_state(name)["state"].name == "Loaded"
    client.release_collection(name)
    assert client.get_load_state(name)["state"].name == "NotLoad"
    assert _code(lambda: client.get_load_state(name, partition_name="nope")) == (
        200, "partition not found[partition=nope]")
    assert _code(lambda: client.get_load_state("1bad-name"))[0] == 1100
    client.drop_collection(name)
    assert client.get_load_state(name)["state"].name == "NotExist"


def test_rest_get_load_state_of_missing_collection_is_100(server, name):
    status, body = post(server.http_ports[0], "collections/get_load_state", {"collectionName": name})
    assert status == 200 and body["code"] == 100, body
    assert body["message"] == f"collection not found[collection={name}]", body

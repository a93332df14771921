"""A collection's ``mmap.enabled`` (alter/drop_collection_properties) is read when its segments load:
changed only while the collection is released, as Milvus's alterCollectionTask refuses it on a loaded
one (104, "can not alter mmap properties if collection loaded"); a value that is no bool is refused."""

from __future__ import annotations

import uuid

import pytest
from pymilvus import MilvusClient, MilvusException


@pytest.fixture
def name(client: MilvusClient):
    n = "mmapprop_" + uuid.uuid4().hex[:8]
    client.create_collection(n, dimension=4)  # quick setup: indexed and loaded
    yield n
    client.drop_collection(n)


def _refused(call, code: int) -> str:
    with pytest.raises(MilvusException) as e:
        call()
    assert e.value.code == code, e.value
    return e.value.message


def test_mmap_property_changes_only_while_released(client: MilvusClient, name: str):
    client.insert(name, [{"id": i, "vector": [float(i)] * 4} for i in range(10)])
    msg = _refused(lambda: client.alter_collection_properties(name, {"mmap.enabled": True}), 104)
    assert msg.startswith("can not alter mmap properties if collection loaded") and name in msg
    client.alter_collection_properties(name, {"collection.ttl.seconds": 3600})  # other keys: loaded or not
    client.release_collection(name)
    client.alter_collection_properties(name, {"mmap.enabled": True})
    assert client.describe_collection(name)["properties"]["mmap.enabled"] == "True"
    client.load_collection(name)
    assert client.query(name, filter="", output_fields=["count(*)"],
                        consistency_level="Strong")[0]["count(*)"] == 10
    msg = _refused(lambda: client.drop_collection_properties(name, ["mmap.enabled"]), 104)
    assert msg.startswith("can not delete mmap properties if collection loaded")
    client.release_collection(name)
    client.drop_collection_properties(name, ["mmap.enabled"])
    assert "mmap.enabled" not in client.describe_collection(name)["properties"]


def test_mmap_property_value_must_be_a_bool(client: MilvusClient, name: str):
    client.release_collection(name)
    for bad in ("yes", "1", ""):
        msg = _refused(lambda bad=bad: client.alter_collection_properties(name, {"mmap.enabled": bad}), 1100)
        assert "invalid mmap.enabled value" in msg
    assert "mmap.enabled" not in client.describe_collection(name)["properties"]

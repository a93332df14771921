"""A collection's TTL (``collection.ttl.seconds``, Milvus 2.3), through pymilvus on every deployment:
rows older than the TTL are gone from count, query, get and search as soon as they expire (the query
nodes mask them against each read's snapshot, as Milvus's segcore does), later rows stay; the TTL is
set at create or by alter_collection_properties (0: none); a value that is not a whole number of
seconds is refused (1100). Compaction dropping expired rows: tests/unit/test_compaction.py."""

from __future__ import annotations

import time

import pytest
from pymilvus import MilvusException

from tests.e2e._helpers import count, float_vectors

TTL = 2


def _rows(ids, dim: int = 4) -> list[dict]:
    vecs = float_vectors(len(ids), dim, seed=ids[0])
    return [{"id": i, "vector": vecs[k].tolist()} for k, i in enumerate(ids)]


def test_rows_older_than_the_ttl_are_gone_from_every_read(client, name):
    client.create_collection(name, dimension=4, properties={"collection.ttl.seconds": TTL})
    client.insert(name, _rows(list(range(20))))
    assert count(client, name, consistency_level="Strong") == 20
    time.sleep(TTL + 0.5)
    client.insert(name, _rows(list(range(100, 105))))
    assert count(client, name, consistency_level="Strong") == 5
    assert sorted(r["id"] for r in client.query(name, "id >= 0", consistency_level="Strong")) == list(range(100, 105))
    assert [r["id"] for r in client.get(name, ids=[1, 2, 101])] == [101]
    hits = client.search(name, data=float_vectors(1, 4, seed=3).tolist(), limit=50, consistency_level="Strong")
    assert sorted(h["id"] for h in hits[0]) == list(range(100, 105))
    # the TTL off: rows not yet compacted away read again (Milvus's segcore masks by the property too)
    client.alter_collection_properties(name, {"collection.ttl.seconds": 0})
    assert count(client, name, consistency_level="Strong") == 25
    client.alter_collection_properties(name, {"collection.ttl.seconds": TTL})
    assert count(client, name, consistency_level="Strong") == 5
    assert client.describe_collection(name)["properties"]["collection.ttl.seconds"] == str(TTL)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_a_ttl_that_is_not_a_whole_number_of_seconds_is_refused(client, name, value):
    with pytest.raises(MilvusException, match="collection.ttl.seconds must be a whole number") as e:
        client.create_collection(name, dimension=4, properties={"collection.ttl.seconds": value})
    assert e.value.code == 1100 and not client.has_collection(name)
    client.create_collection(name, dimension=4)
    with pytest.raises(MilvusException) as e:
        client.alter_collection_properties(name, {"collection.ttl.seconds": value})
    assert e.value.code == 1100 and "collection.ttl.seconds" not in client.describe_collection(name)["properties"]

"""Consistency levels, per collection and per request.

A standalone server applies every write before acknowledging it, so each level
(Strong, Bounded, Session, Eventually) reads the newest state: what a client
wrote is visible to its very next read, whatever level it asks for.
"""

from __future__ import annotations

import pytest
from pymilvus import DataType

LEVELS = ["Strong", "Bounded", "Session", "Eventually"]


@pytest.mark.parametrize("collection_level", LEVELS)
def test_read_your_writes_at_every_level(client, name, collection_level):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level=collection_level)
    assert client.describe_collection(name)["consistency_level_name"] == collection_level
    for i in range(5):
        client.insert(name, [{"id": i, "vec": [i, i]}])
        for level in [None, *LEVELS]:  # the collection's default, then each per-request override
            kw = {} if level is None else {"consistency_level": level}
            assert client.query(name, filter="", output_fields=["count(*)"], **kw)[0]["count(*)"] == i + 1
            hit = client.search(name, data=[[i, i]], limit=1, **kw)[0][0]
            assert hit["id"] == i and hit["distance"] == 0
    client.delete(name, ids=[4])
    assert client.get(name, ids=[4], consistency_level="Eventually") == []

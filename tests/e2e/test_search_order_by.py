"""Search ``order_by_fields`` (pymilvus 2.6, Milvus 2.6) on every deployment: each query's top-k hits
(by distance, after offset) re-sorted by the fields, stably, nulls first; checked against a reference
computed here; refusals as Milvus gives them."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e._helpers import reference_topk

N, DIM = 300, 8


def _load(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("price", DataType.INT64)
    schema.add_field("rating", DataType.DOUBLE, nullable=True)
    schema.add_field("tag", DataType.VARCHAR, max_length=8)
    schema.add_field("j", DataType.JSON)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(21)
    cols = {"vec": rng.random((N, DIM), dtype=np.float32), "price": rng.integers(0, 5, N),
            "rating": np.round(rng.random(N) * 3, 1), "tag": np.array([f"t{x}" for x in rng.integers(0, 4, N)]),
            "null": rng.random(N) < 0.2}
    rows = [{"id": i, "vec": cols["vec"][i].tolist(), "price": int(cols["price"][i]),
             "rating": None if cols["null"][i] else float(cols["rating"][i]), "tag": str(cols["tag"][i]), "j": {}}
            for i in range(N)]
    client.insert(name, rows[:200])
    client.flush(name)
    client.insert(name, rows[200:])
    return cols


def _reference(cols, query, limit, offset, order):
    """Exact top (offset + limit) by L2, the last ``limit``, then stably sorted by ``order``."""
    pos = reference_topk(cols["vec"], query[None, :], "L2", offset + limit)[0][0][offset:].tolist()
    for field, asc in reversed(order):  # successive stable sorts: the first field decides last
        if field == "rating":
            nulls = [p for p in pos if cols["null"][p]]
            rest = sorted((p for p in pos if not cols["null"][p]), key=lambda p: cols["rating"][p], reverse=not asc)
            pos = nulls + rest
        else:
            pos = sorted(pos, key=lambda p: cols[field][p], reverse=not asc)
    return pos


@pytest.mark.parametrize("order", [
    [("price", True)], [("price", False)], [("tag", False), ("price", True)], [("rating", True)],
    [("rating", False), ("tag", True)],
])
def test_order_by_equals_reference(client, name, order):
    cols = _load(client, name)
    queries = np.random.default_rng(22).random((3, DIM), dtype=np.float32)
    res = client.search(name, queries.tolist(), limit=15, offset=5, output_fields=["price"],
                        order_by_fields=[{"field": f, "order": "asc" if a else "desc"} for f, a in order])
    for q in range(len(queries)):
        assert [h["id"] for h in res[q]] == _reference(cols, queries[q], 15, 5, order), (q, order)
        assert [h["entity"]["price"] for h in res[q]] == [int(cols["price"][h["id"]]) for h in res[q]]
        assert set(res[q][0]["entity"]) == {"price"}  # the ordering fields are not output unless asked


def test_order_by_refused(client, name):
    _load(client, name)
    q = [[0.5] * DIM]
    for spec, message in [
        ([{"field": "nope"}], "order_by field 'nope' does not exist in collection schema"),
        ([{"field": "j"}], "order_by is not supported for JSON field 'j'"),
        ([{"field": "vec"}], "order_by field 'vec' has unsortable type FloatVector"),
        ([{"field": "price", "order": "up"}], "invalid order direction 'up' for field 'price'"),
    ]:
        with pytest.raises(MilvusException) as e:
            client.search(name, q, limit=3, order_by_fields=spec)
        assert e.value.code == 1100 and message in e.value.message, e.value.message


def test_order_by_orders_groups_by_their_first_hit(client, name):
    """With group_by_field the groups (as the unordered grouping search returns them) are ordered by
    their first hit's value, stably; each group's hits stay together in their order."""
    _load(client, name)
    q = np.random.default_rng(23).random((2, DIM), dtype=np.float32).tolist()
    kw = {"limit": 4, "group_by_field": "tag", "group_size": 2, "output_fields": ["price", "tag"]}
    plain = client.search(name, q, **kw)
    ordered = client.search(name, q, order_by_fields=[{"field": "price", "order": "desc"}], **kw)
    for qi in range(len(q)):
        groups: list[list] = []
        for h in plain[qi]:
            if groups and groups[-1][0]["entity"]["tag"] == h["entity"]["tag"]:
                groups[-1].append(h)
            else:
                groups.append([h])
        groups.sort(key=lambda g: -g[0]["entity"]["price"])  # stable
        assert [h["id"] for h in ordered[qi]] == [h["id"] for g in groups for h in g]
        assert len(groups) == 4

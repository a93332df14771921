"""A plain query's ORDER BY with a limit pushed down to the query nodes (vecdb.top_rows: each node sends
its first limit + offset rows by the sort keys, the proxy merges them) answers what the full-sort path
(the same query without a limit: every matching row ordered in the proxy) answers, page by page, on
every deployment: the cluster's query nodes each hold a part of the spread sealed segments and the
growing rows. Several sealed segments, growing rows, deletes, ties, nulls, asc/desc, several keys of
mixed types, VARCHAR keys, a filter, offsets past the rows."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

N = 900
FIELDS = ["id", "k", "s", "tag", "n", "d", "b"]


def _load(client, name) -> None:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("k", DataType.INT64)
    schema.add_field("s", DataType.VARCHAR, max_length=8)
    schema.add_field("tag", DataType.VARCHAR, max_length=8, nullable=True)
    schema.add_field("n", DataType.INT32, nullable=True)
    schema.add_field("d", DataType.DOUBLE, nullable=True)
    schema.add_field("b", DataType.BOOL)
    client.create_collection(name, schema=schema, num_shards=2, consistency_level="Strong")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(5)
    ids = rng.permutation(N)  # (primary keys not in insertion order)
    rows = [{"id": int(ids[i]), "vec": rng.random(2).tolist(), "k": int(rng.integers(0, 7)),
             "s": f"s{int(rng.integers(0, 12))}", "tag": None if rng.random() < 0.3 else f"t{int(rng.integers(0, 3))}",
             "n": None if rng.random() < 0.2 else int(rng.integers(-50, 50)),
             "d": None if rng.random() < 0.2 else float(rng.integers(0, 40)) / 8, "b": bool(rng.random() < 0.5)}
            for i in range(N)]
    for lo in (0, 250, 500):  # three flushes: several sealed segments per shard
        client.insert(name, rows[lo:lo + 250])
        client.flush(name)
    client.insert(name, rows[750:])  # growing
    client.delete(name, ids=list(range(0, N, 13)))


ORDERS = [[("d", "desc")], [("n", "asc")], [("s", "desc"), ("d", "asc")],
          [("b", "desc"), ("tag", "asc"), ("k", "desc")], [("tag", "desc"), ("n", "desc")]]


@pytest.mark.parametrize("expr", ["", "n > 0 or tag == 't1'"])
def test_pushed_down_order_by_equals_the_full_sort(client, name, expr):
    _load(client, name)
    for order in ORDERS:
        by = [{"field": f, "order": o} for f, o in order]
        every = client.query(name, filter=expr or "id >= 0", output_fields=FIELDS, order_by_fields=by)
        assert len(every) > 100
        for limit, offset in [(1, 0), (10, 0), (25, 40), (30, len(every) - 10), (5, len(every) + 3)]:
            got = client.query(name, filter=expr, output_fields=FIELDS, order_by_fields=by, limit=limit, offset=offset)
            assert got == every[offset:offset + limit], (order, limit, offset)
    # the sort fields need not be returned; nulls first descending, ties by primary key
    got = client.query(name, filter=expr, output_fields=["id"], order_by_fields=[{"field": "d", "order": "desc"}],
                       limit=20)
    want = sorted(every, key=lambda r: (r["d"] is not None, -(r["d"] or 0.0), r["id"]))[:20]
    assert [r["id"] for r in got] == [r["id"] for r in want] and set(got[0]) == {"id"}


def test_varchar_ending_in_nul_sorts_after_its_prefix(client, name):
    """Milvus orders VARCHAR by its bytes: "x" < "x\\x00" < "x\\x00\\x00" < "x\\x01" (NumPy's str ties the first
    three), sealed and growing rows alike, with and without a limit."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("s", DataType.VARCHAR, max_length=8)
    client.create_collection(name, schema=schema, consistency_level="Strong")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    words = ["x\x01", "x\x00", "x", "x\x00\x00", "w"]
    client.insert(name, [{"id": i, "vec": [0.0, 1.0], "s": w} for i, w in enumerate(words)])
    client.flush(name)
    client.insert(name, [{"id": 10 + i, "vec": [0.0, 1.0], "s": w} for i, w in enumerate(words)])  # growing
    want = [w for w in sorted(words) for _ in range(2)]
    for limit in (None, 3, 10):
        page = {} if limit is None else {"limit": limit}
        for direction, expected in (("asc", want), ("desc", want[::-1])):
            got = client.query(name, filter="id >= 0", output_fields=["s"],
                               order_by_fields=[{"field": "s", "order": direction}], **page)
            assert [r["s"] for r in got] == expected[:limit], (direction, limit)

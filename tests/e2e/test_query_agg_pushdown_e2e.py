"""Query aggregation pushed down to the query nodes (vecdb.group_partials: each node reduces its
segments' matching rows to per-group partials, the proxy merges them) gives what reducing every
matching row gives, on every deployment: the cluster's three query nodes each hold a part of the
spread sealed segments and the growing rows. The rows here are read back with a plain query and
reduced in the test (the row path's answer), over several sealed segments, growing rows, deletes,
nulls in keys and values, a filter, ORDER BY with limit and offset."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

N = 900
FIELDS = ["id", "k", "s", "tag", "n", "d", "big"]


def _load(client, name) -> list[dict]:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("k", DataType.INT64)
    schema.add_field("s", DataType.VARCHAR, max_length=8)
    schema.add_field("tag", DataType.VARCHAR, max_length=8, nullable=True)
    schema.add_field("n", DataType.INT32, nullable=True)
    schema.add_field("d", DataType.DOUBLE, nullable=True)
    schema.add_field("big", DataType.INT64)
    client.create_collection(name, schema=schema, num_shards=2, consistency_level="Strong")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(11)
    rows = [{"id": i, "vec": rng.random(2).tolist(), "k": int(rng.integers(0, 7)), "s": f"s{int(rng.integers(0, 12))}",
             "tag": None if rng.random() < 0.3 else f"t{int(rng.integers(0, 3))}",
             "n": None if rng.random() < 0.2 else int(rng.integers(-500, 500)),
             "d": None if rng.random() < 0.2 else float(rng.integers(0, 4000)) / 8,
             "big": int(rng.integers(-(2**40), 2**40))} for i in range(N)]
    for lo in (0, 250, 500):  # three flushes: several sealed segments per shard
        client.insert(name, rows[lo:lo + 250])
        client.flush(name)
    client.insert(name, rows[750:])  # growing
    client.delete(name, ids=list(range(0, N, 13)))
    return rows


def _row_path(rows: list[dict], keys: list[str], aggs: list[str]) -> dict[tuple, dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = {}
    for key, members in groups.items():
        res = {}
        for text in aggs:
            op, field = text[:-1].split("(")
            if field == "*":
                res[text] = len(members)
                continue
            vals = [m[field] for m in members if m[field] is not None]
            if op == "count":
                res[text] = len(vals)
            elif not vals:
                res[text] = None
            else:
                res[text] = {"sum": sum, "min": min, "max": max, "avg": lambda v: sum(v) / len(v)}[op](vals)
        out[key] = res
    return out


AGGS = ["count(*)", "count(n)", "sum(n)", "avg(n)", "min(n)", "max(n)", "sum(d)", "avg(d)", "min(tag)", "max(s)",
        "sum(big)", "min(d)"]


@pytest.mark.parametrize("keys", [[], ["k"], ["s"], ["tag", "k"]])
@pytest.mark.parametrize("expr", ["", "n > 0 or tag == 't1'"])
def test_pushed_down_aggregation_equals_the_row_path(client, name, keys, expr):
    _load(client, name)
    rows = client.query(name, filter=expr or "id >= 0", output_fields=FIELDS, limit=16384)
    want = _row_path(rows, keys, AGGS)
    got = client.query(name, filter=expr, output_fields=keys + AGGS, **({"group_by_fields": keys} if keys else {}))
    assert len(got) == len(want) > 0
    for r in got:
        exp = want[tuple(r[k] for k in keys)]
        for text, v in exp.items():
            if isinstance(v, float):
                assert r[text] == pytest.approx(v, rel=1e-12), (text, r[text], v)
            else:
                assert r[text] == v and type(r[text]) is type(v), (text, r[text], v)


def test_ordered_and_paged_groups_and_int64_overflow(client, name):
    _load(client, name)
    rows = client.query(name, filter="id >= 0", output_fields=FIELDS, limit=16384)
    want = _row_path(rows, ["s", "k"], ["sum(n)", "count(*)"])
    # descending: a null sum (no value in the group) first, as the largest value
    ranked = sorted(want, key=lambda key: (want[key]["sum(n)"] is not None, -(want[key]["sum(n)"] or 0), *key))
    got = client.query(name, output_fields=["s", "k", "sum(n)", "count(*)"], group_by_fields=["s", "k"],
                       order_by_fields=[{"field": "sum(n)", "order": "desc"}, {"field": "s", "order": "asc"},
                                        {"field": "k", "order": "asc"}], limit=7, offset=3)
    assert [(r["s"], r["k"]) for r in got] == ranked[3:10]
    client.insert(name, [{"id": N + i, "vec": [0.0, 0.0], "k": 99, "s": "x", "tag": None, "n": None, "d": None,
                          "big": 2**62} for i in range(2)])
    with pytest.raises(MilvusException, match="overflows int64"):
        client.query(name, filter="k == 99", output_fields=["sum(big)"])
    assert client.query(name, filter="k == 99", output_fields=["avg(big)"]) == [{"avg(big)": float(2**62)}]

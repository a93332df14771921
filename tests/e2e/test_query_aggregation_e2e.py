"""Milvus 3.0 query aggregation (``group_by_fields``, ``count/sum/avg/min/max`` in ``output_fields``)
and query ORDER BY (``order_by_fields`` / ``order_by``) through pymilvus 3.0, on every deployment,
against a reference computed here: sealed and growing rows, deletes, nulls, paging, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

N, DIM = 300, 4
CATS = ["a", "b", "c", "d", "e"]


def _load(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("cat", DataType.VARCHAR, max_length=8)
    schema.add_field("sub", DataType.INT16, nullable=True)
    schema.add_field("n", DataType.INT32, nullable=True)
    schema.add_field("d", DataType.DOUBLE, nullable=True)
    schema.add_field("f", DataType.FLOAT)
    schema.add_field("name", DataType.VARCHAR, max_length=16)
    schema.add_field("flag", DataType.BOOL)
    schema.add_field("j", DataType.JSON)
    schema.add_field("tag", DataType.VARCHAR, max_length=8, nullable=True)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(5)
    rows = []
    for i in range(N):
        rows.append({
            "id": i, "vec": rng.random(DIM).tolist(), "cat": CATS[int(rng.integers(0, 5))],
            "sub": None if rng.random() < 0.2 else int(rng.integers(0, 3)),
            "n": None if rng.random() < 0.25 else int(rng.integers(-50, 1000)),
            "d": None if rng.random() < 0.2 else float(np.round(rng.random() * 100, 3)),
            "f": float(np.float32(rng.integers(0, 40) / 4)), "name": f"nm{int(rng.integers(0, 60)):02d}",
            "flag": bool(rng.random() < 0.5), "j": {"k": i},
            "tag": None if rng.random() < 0.3 else f"t{int(rng.integers(0, 3))}"})
    client.insert(name, rows[:200])
    client.flush(name)  # sealed
    client.insert(name, rows[200:])  # growing
    deleted = set(range(0, N, 17))
    client.delete(name, ids=sorted(deleted))
    return [r for r in rows if r["id"] not in deleted]


def _agg(op, values):
    vals = [v for v in values if v is not None]
    if op == "count":
        return len(vals)
    if not vals:
        return None
    return {"sum": sum, "min": min, "max": max, "avg": lambda v: sum(v) / len(v)}[op](vals)


def _reference(rows, keys, aggs):
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = {}
    for key, members in groups.items():
        res = {}
        for text, op, field in aggs:
            res[text] = len(members) if field == "*" else _agg(op, [m[field] for m in members])
        out[key] = res
    return out


def _check(got, want):
    for k, v in want.items():
        if v is None or isinstance(v, str) or isinstance(v, bool):
            assert got[k] == v, (k, got[k], v)
        elif isinstance(v, float):
            assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-6), (k, got[k], v)
        else:
            assert got[k] == v and isinstance(got[k], int), (k, got[k], v)


AGGS = [("count(*)", "count", "*"), ("count(n)", "count", "n"), ("sum(n)", "sum", "n"), ("avg(n)", "avg", "n"),
        ("min(n)", "min", "n"), ("max(n)", "max", "n"), ("sum(d)", "sum", "d"), ("avg(d)", "avg", "d"),
        ("MIN(name)", "min", "name"), ("Max(name)", "max", "name"), ("max(f)", "max", "f"), ("sum(sub)", "sum", "sub")]


def test_group_by_every_op(client, name):
    rows = _load(client, name)
    res = client.query(name, group_by_fields=["cat"], output_fields=["cat", *[a[0] for a in AGGS]])
    want = _reference(rows, ["cat"], AGGS)
    assert sorted(r["cat"] for r in res) == sorted(k[0] for k in want)
    for r in res:
        _check(r, want[(r["cat"],)])
        assert isinstance(r["avg(n)"], float) and isinstance(r["sum(d)"], float) and isinstance(r["MIN(name)"], str)


def test_group_by_two_fields_with_null_keys_and_filter(client, name):
    rows = _load(client, name)
    aggs = AGGS[:6]
    res = client.query(name, filter="f >= 2.5", group_by_fields=["cat", "sub"],
                       output_fields=["sub", "cat", *[a[0] for a in aggs]])
    want = _reference([r for r in rows if r["f"] >= 2.5], ["cat", "sub"], aggs)
    assert len(res) == len(want) and any(r["sub"] is None for r in res)
    for r in res:
        assert list(r)[:2] == ["sub", "cat"]
        _check(r, want[(r["cat"], r["sub"])])


def test_global_aggregation_and_empty_match(client, name):
    rows = _load(client, name)
    aggs = [("count(*)", "count", "*"), ("count(d)", "count", "d"), ("sum(n)", "sum", "n"), ("avg(d)", "avg", "d"),
            ("min(f)", "min", "f"), ("max(name)", "max", "name")]
    res = client.query(name, output_fields=[a[0] for a in aggs])
    assert len(res) == 1
    _check(res[0], _reference(rows, [], aggs)[()])
    empty = client.query(name, filter="n > 100000", output_fields=["count(*)", "count(n)", "sum(n)", "avg(d)"])
    assert len(empty) == 1 and empty[0] == {"count(*)": 0, "count(n)": 0, "sum(n)": None, "avg(d)": None}
    grouped_empty = client.query(name, filter="n > 100000", group_by_fields=["cat"], output_fields=["cat", "count(*)"])
    assert len(grouped_empty) == 0
    # count(*) alone is still the plain count
    assert client.query(name, output_fields=["count(*)"])[0]["count(*)"] == len(rows)


def test_distinct_and_group_order_and_paging(client, name):
    rows = _load(client, name)
    distinct = client.query(name, group_by_fields=["cat", "flag"], output_fields=["cat", "flag"])
    assert sorted((r["cat"], r["flag"]) for r in distinct) == sorted({(r["cat"], r["flag"]) for r in rows})
    assert all(set(r) == {"cat", "flag"} for r in distinct)
    tags = client.query(name, group_by_fields=["tag"], output_fields=["tag", "count(*)", "max(tag)"])
    want_tags = _reference(rows, ["tag"], [("count(*)", "count", "*"), ("max(tag)", "max", "tag")])
    assert len(tags) == len(want_tags) and tags[0]["tag"] is None  # the null group first
    for r in tags:
        _check(r, want_tags[(r["tag"],)])
    counts = _reference(rows, ["cat"], [("count(*)", "count", "*"), ("sum(n)", "sum", "n")])
    ranked = sorted(counts, key=lambda k: (-counts[k]["count(*)"], k[0]))
    # groups ordered by an aggregate (then by the group field), paged by limit / offset
    res = client.query(name, group_by_fields=["cat"], output_fields=["cat", "count(*)"], limit=2, offset=1,
                       order_by_fields=[{"field": "count(*)", "order": "desc"}, {"field": "cat", "order": "asc"}])
    assert [r["cat"] for r in res] == [k[0] for k in ranked[1:3]]
    # ordering by an aggregate not asked for: computed, not returned
    by_sum = client.query(name, group_by_fields=["cat"], output_fields=["cat"], order_by=["sum(n):asc"])
    assert [r["cat"] for r in by_sum] == [k[0] for k in sorted(counts, key=lambda k: counts[k]["sum(n)"])]
    assert all(set(r) == {"cat"} for r in by_sum)


def _order_reference(rows, order):
    """Ties by primary key; nulls after every value ascending, before every value descending."""
    out = sorted(rows, key=lambda r: r["id"])
    for field, asc in reversed(order):
        present = [r for r in out if r[field] is not None]
        nulls = [r for r in out if r[field] is None]
        present = sorted(present, key=lambda r: r[field], reverse=not asc)
        out = present + nulls if asc else nulls + present
    return out


@pytest.mark.parametrize("order", [[("n", True)], [("n", False)], [("cat", True), ("d", False)],
                                   [("flag", False), ("f", True)], [("name", False)]])
def test_query_order_by_equals_reference(client, name, order):
    rows = _load(client, name)
    spec = [{"field": f, "order": "asc" if a else "desc"} for f, a in order]
    want = _order_reference([r for r in rows if r["id"] % 3 != 1], order)
    for limit, offset in [(10, 0), (7, 5), (300, 0), (25, 240)]:
        res = client.query(name, filter="id % 3 != 1", output_fields=["id", "cat"], limit=limit, offset=offset,
                           order_by_fields=spec)
        assert [r["id"] for r in res] == [r["id"] for r in want[offset:offset + limit]], (limit, offset)
        assert all(set(r) == {"id", "cat"} for r in res)  # the sort-only fields are not returned
    # pymilvus's order_by= strings, descending spelled out
    res = client.query(name, filter="id >= 0", output_fields=["n"], limit=5,
                       order_by=[f"{f}:{'ascending' if a else 'descending'}" for f, a in order])
    assert [r["id"] for r in res] == [r["id"] for r in _order_reference(rows, order)[:5]]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "sum(name)"]},
     "aggregation operator sum does not support data type VarChar"),
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "avg(j)"]},
     "aggregation operator avg does not support data type JSON"),
    ({"group_by_fields": ["vec"], "output_fields": ["count(*)"]}, "group by field vec has unsupported data type"),
    ({"group_by_fields": ["d"], "output_fields": ["d", "count(*)"]},
     "group by field d has unsupported data type Double"),
    ({"group_by_fields": ["j"], "output_fields": ["count(*)"]}, "group by field j has unsupported data type JSON"),
    ({"group_by_fields": ["nope"], "output_fields": ["count(*)"]}, "group by field nope"),
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "n", "count(n)"]}, "output field 'n' is not allowed"),
    ({"output_fields": ["n", "sum(n)"]}, "output field 'n' is not allowed"),
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "count()"]}, "names no field"),
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "sum(*)"]}, "does not support '*'"),
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "median(n)"]}, "median(n)"),
    ({"group_by_fields": ["cat"], "output_fields": ["cat", "count(*)"], "order_by": ["n:asc"]},
     "must be a group_by field or an aggregation"),
    ({"filter": "id > 0", "limit": 5, "output_fields": ["id"], "order_by": ["vec:asc"]}, "order_by field 'vec'"),
    ({"filter": "id > 0", "limit": 5, "output_fields": ["id"], "order_by": ["j:asc"]}, "JSON field 'j'"),
    ({"filter": "id > 0", "limit": 5, "output_fields": ["id"], "order_by": ["n:up"]}, "invalid order direction"),
    ({"filter": "id > 0", "limit": 5, "output_fields": ["id"], "order_by": ["zz:asc"]}, "does not exist"),
])
def test_refusals(client, name, kwargs, fragment):
    _load(client, name)
    with pytest.raises(MilvusException) as e:
        client.query(name, **kwargs)
    assert fragment in e.value.message, e.value.message
    assert e.value.code != 65535


def test_query_iterator_refuses_order_by(client, name):
    _load(client, name)
    with pytest.raises(MilvusException, match="order_by is not supported when using query iterator"):
        it = client.query_iterator(name, batch_size=10, filter="id >= 0", output_fields=["id"],
                                   order_by_fields=[{"field": "n", "order": "asc"}])
        it.next()


def test_rest_group_by_and_order_by(server, client, name):
    import json
    import urllib.request

    rows = _load(client, name)

    def post(path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{server.http_ports[0]}/v2/vectordb/{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            reply = json.loads(resp.read())
        assert reply["code"] == 0, reply
        return reply["data"]

    got = post("entities/query", {"collectionName": name, "groupByFields": ["cat"],
                                  "outputFields": ["cat", "count(*)", "avg(n)"],
                                  "orderByFields": [{"field": "cat", "order": "desc"}]})
    want = _reference(rows, ["cat"], [("count(*)", "count", "*"), ("avg(n)", "avg", "n")])
    assert [r["cat"] for r in got] == sorted((k[0] for k in want), reverse=True)
    for r in got:
        assert r["count(*)"] == want[(r["cat"],)]["count(*)"]
        assert r["avg(n)"] == pytest.approx(want[(r["cat"],)]["avg(n)"])
    ordered = post("entities/query", {"collectionName": name, "filter": "id >= 0", "limit": 6,
                                      "outputFields": ["id"], "orderByFields": ["n:desc"]})
    assert [r["id"] for r in ordered] == [r["id"] for r in _order_reference(rows, [("n", False)])[:6]]
    hits = post("entities/search", {"collectionName": name, "data": [[0.5] * DIM], "limit": 8,
                                    "outputFields": ["f"], "orderByFields": ["f:asc"]})
    fs = [h["f"] for h in hits]
    assert len(fs) == 8 and fs == sorted(fs)

"""Search aggregation (Milvus 3.0, pymilvus 3.0's ``SearchAggregation`` / ``TopHits``) checked against a
reference built here from the plain search's own hits (every row, best first): the candidate pool
(the first ``product of sizes`` composite keys of all levels' fields, each with its best
``max top_hits size`` hits), then per level buckets in first-appearance order or sorted by ``order``
(stable, null lowest), the first ``size`` kept, metrics with nulls skipped, top hits sorted by their
``sort`` (ties best first)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException, SearchAggregation, TopHits

from tests.e2e._helpers import float_vectors

N = 240
DIM = 8
CATS = ["books", "games", "music", "toys", "tools"]


def _load(client, name):
    schema = MilvusClient.create_schema(enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("cat", DataType.VARCHAR, max_length=16)
    schema.add_field("brand", DataType.INT32)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("stock", DataType.INT64, nullable=True)
    schema.add_field("tag", DataType.VARCHAR, max_length=16, nullable=True)
    schema.add_field("meta", DataType.JSON)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(11)
    vecs = float_vectors(N, DIM, seed=12)
    rows = []
    for i in range(N):
        rows.append({
            "id": i, "vec": vecs[i].tolist(), "cat": CATS[int(rng.integers(len(CATS)))],
            "brand": int(rng.integers(4)), "price": round(float(rng.uniform(1, 100)), 2),
            "stock": None if i % 7 == 0 else int(rng.integers(0, 50)),
            "tag": None if i % 5 == 0 else f"t{int(rng.integers(3))}", "meta": {"i": i},
        })
    client.insert(name, rows)
    return vecs


FIELDS = ["cat", "brand", "price", "stock", "tag"]


def _all_hits(client, name, query, flt=""):
    """Every row (passing ``flt``), best first, as dicts with ``_score`` and ``_rank``."""
    res = client.search(name, [query], limit=N, filter=flt, output_fields=FIELDS, anns_field="vec")[0]
    return [{"id": h["id"], "_score": h["distance"], "_rank": i, **{f: h["entity"].get(f) for f in FIELDS}}
            for i, h in enumerate(res)]


def _pool(hits, keys, groups, size):
    opened: dict = {}
    for h in hits:
        k = tuple(h[f] for f in keys)
        if k not in opened:
            if len(opened) >= groups:
                continue
            opened[k] = []
        if len(opened[k]) < size:
            opened[k].append(h)
    return [h for members in opened.values() for h in members]


def _cmp_null_low(a, b):
    if a is None or b is None:
        return (a is not None) - (b is not None)
    return (a > b) - (a < b)


def _ref_level(rows, levels, d):
    lv = levels[d]
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[f] for f in lv["fields"]), []).append(r)
    items = []
    for key, members in groups.items():
        metrics = {}
        for alias, (op, fld) in lv.get("metrics", {}).items():
            if fld == "*":
                metrics[alias] = len(members)
                continue
            vals = [r[fld] for r in members if r[fld] is not None]
            if op == "count":
                metrics[alias] = len(vals)
            elif vals:
                metrics[alias] = {"sum": sum, "min": min, "max": max,
                                  "avg": lambda v: sum(v) / len(v)}[op](vals)
        items.append({"key": key, "count": len(members), "metrics": metrics, "members": members})
    for okey, direction in reversed(lv.get("order", [])):
        def cmp(a, b, okey=okey):
            if okey == "_count":
                return _cmp_null_low(a["count"], b["count"])
            if okey == "_key":
                for x, y in zip(a["key"], b["key"]):
                    if c := _cmp_null_low(x, y):
                        return c
                return 0
            return _cmp_null_low(a["metrics"].get(okey), b["metrics"].get(okey))
        items.sort(key=functools.cmp_to_key(cmp), reverse=direction == "desc")
    out = []
    for it in items[:lv["size"]]:
        node = {"key": list(it["key"]), "count": it["count"], "metrics": it["metrics"]}
        if "top_hits" in lv:
            size, sort = lv["top_hits"]
            members = sorted(it["members"], key=lambda r: r["_rank"])
            for fld, direction, null_first in reversed(sort):
                def hcmp(a, b, fld=fld, direction=direction, null_first=null_first):
                    x, y = a[fld], b[fld]
                    if x is None or y is None:
                        if x is None and y is None:
                            return 0
                        return (-1 if x is None else 1) * (1 if null_first else -1)
                    c = (x > y) - (x < y)
                    return -c if direction == "desc" else c
                members.sort(key=functools.cmp_to_key(hcmp))
            node["hits"] = [r["id"] for r in members[:size]]
        if d + 1 < len(levels):
            node["sub"] = _ref_level(it["members"], levels, d + 1)
        out.append(node)
    return out


def _reference(hits, levels):
    keys = [f for lv in levels for f in lv["fields"]]
    groups = int(np.prod([lv["size"] for lv in levels]))
    size = max([lv["top_hits"][0] for lv in levels if "top_hits" in lv], default=1)
    return _ref_level(_pool(hits, keys, groups, size), levels, 0)


def _spec(levels, d=0):
    lv = levels[d]
    top = None
    if "top_hits" in lv:
        size, sort = lv["top_hits"]
        top = TopHits(size=size, sort=[{f: direction} for f, direction, _ in sort])
    return SearchAggregation(
        fields=lv["fields"], size=lv["size"],
        metrics={alias: {op: fld} for alias, (op, fld) in lv.get("metrics", {}).items()} or None,
        order=[{k: direction} for k, direction in lv.get("order", [])] or None, top_hits=top,
        sub_aggregation=_spec(levels, d + 1) if d + 1 < len(levels) else None)


def _check(got, want, levels, d=0, hit_fields=()):
    assert len(got) == len(want), (got, want)
    lv = levels[d]
    for b, w in zip(got, want):
        assert [k["field_name"] for k in b.key] == lv["fields"]
        assert [k["value"] for k in b.key] == w["key"]
        assert b.count == w["count"]
        assert set(b.metrics) == set(w["metrics"])
        for alias, value in w["metrics"].items():
            if isinstance(value, float):
                assert b.metrics[alias] == pytest.approx(value, rel=1e-5), alias
            else:  # counts, int sums / min / max, VARCHAR min / max: exact, and of their own type
                assert b.metrics[alias] == value and type(b.metrics[alias]) is type(value), alias
        if "hits" in w:
            assert [h.pk for h in b.hits] == w["hits"]
            for h in b.hits:
                assert set(h.fields) <= set(hit_fields)
        else:
            assert not b.hits
        _check(b.sub_groups, w.get("sub", []), levels, d + 1, hit_fields) if d + 1 < len(levels) else None


def _run(client, name, queries, levels, flt="", output_fields=()):
    res = client.search(name, [q.tolist() for q in queries], limit=5, filter=flt, anns_field="vec",
                        output_fields=list(output_fields), search_aggregation=_spec(levels))
    assert len(res.agg_buckets) == len(queries)
    for i, q in enumerate(queries):
        assert len(res[i]) == 0  # the hit list is empty: the buckets are the answer
        _check(res.agg_buckets[i], _reference(_all_hits(client, name, q.tolist(), flt), levels), levels,
               hit_fields=output_fields)
    return res


ALL_METRICS = {
    "avg_price": ("avg", "price"), "sum_price": ("sum", "price"), "min_price": ("min", "price"),
    "max_price": ("max", "price"), "sum_stock": ("sum", "stock"), "n_stock": ("count", "stock"),
    "n": ("count", "*"), "min_tag": ("min", "tag"), "max_brand": ("max", "brand"),
    "avg_score": ("avg", "_score"), "max_score": ("max", "_score"),
}


def test_one_level_every_metric_order_by_metric_and_top_hits(client, name):
    vecs = _load(client, name)
    levels = [{"fields": ["cat"], "size": 3, "metrics": ALL_METRICS, "order": [("avg_price", "desc")],
               "top_hits": (4, [("price", "asc", False)])}]
    for lv_hits in (levels, [{**levels[0], "top_hits": (2, [("_score", "asc", False)])}]):
        res = _run(client, name, [vecs[3] + 0.01], lv_hits, output_fields=("price", "tag", "meta"))
    b = res.agg_buckets[0][0]
    assert b.hits[0].score <= b.hits[1].score <= b.metrics["max_score"]  # L2: _score asc, the nearest first
    assert b.hits[0].fields["price"] == pytest.approx(client.get(name, ids=[b.hits[0].pk])[0]["price"])
    assert isinstance(b.metrics["avg_score"], float) and isinstance(b.metrics["n"], int)


@pytest.mark.parametrize("order", [[("_count", "desc"), ("_key", "asc")], [("_key", "desc")],
                                   [("n_stock", "asc"), ("_count", "asc")], []])
def test_order_by_count_key_and_default(client, name, order):
    vecs = _load(client, name)
    levels = [{"fields": ["tag"], "size": 3, "metrics": {"n_stock": ("count", "stock")}, "order": order}]
    _run(client, name, [vecs[10]], levels)


def test_nested_composite_nq2_and_filter(client, name):
    vecs = _load(client, name)
    levels = [
        {"fields": ["cat"], "size": 2, "metrics": {"n": ("count", "*"), "avg": ("avg", "price")},
         "order": [("n", "desc")], "top_hits": (1, [])},
        {"fields": ["brand", "tag"], "size": 3, "metrics": {"lo": ("min", "price"), "hi": ("max", "stock")},
         "order": [("lo", "asc")], "top_hits": (3, [("stock", "desc", False)])},
    ]
    _run(client, name, [vecs[0], vecs[50] * 0.5], levels, flt="price > 20", output_fields=("stock",))
    three = [{"fields": ["cat"], "size": 2}, {"fields": ["brand"], "size": 2, "order": [("_key", "asc")]},
             {"fields": ["tag"], "size": 2, "top_hits": (2, [("_score", "desc", False)])}]
    _run(client, name, [vecs[7]], three)


@pytest.mark.parametrize("agg,words", [
    (SearchAggregation(fields=["nope"], size=2), "field 'nope' not found in schema"),
    (SearchAggregation(fields=["price"], size=2), "FLOAT / DOUBLE fields are not supported"),
    (SearchAggregation(fields=["meta"], size=2), "JSON / dynamic fields are not yet supported"),
    (SearchAggregation(fields=["vec"], size=2), "FLOAT_VECTOR fields are not supported"),
    (SearchAggregation(fields=["cat", "cat"], size=2), "duplicated group_by field 'cat' in one level"),
    (SearchAggregation(fields=["cat"], size=2, sub_aggregation=SearchAggregation(fields=["cat"], size=2)),
     "duplicated group_by field 'cat' across levels"),
    (SearchAggregation(fields=["cat"], size=2, metrics={"s": {"sum": "tag"}}), "sum is not supported on field tag"),
    (SearchAggregation(fields=["cat"], size=2, metrics={"s": {"avg": "ghost"}}), "invalid metric 's'"),
    (SearchAggregation(fields=["cat"], size=2, top_hits=TopHits(size=2, sort=[{"ghost": "asc"}])),
     "invalid top_hits.sort field 'ghost'"),
    (functools.reduce(lambda sub, f: SearchAggregation(fields=[f], size=2, sub_aggregation=sub),
                      ["id", "tag", "stock", "brand"], SearchAggregation(fields=["cat"], size=2)),
     "nesting exceeds max 4 levels"),
])
def test_bad_specs_are_refused(client, name, agg, words):
    _load(client, name)
    with pytest.raises(MilvusException, match=words) as e:
        client.search(name, [[0.0] * DIM], limit=3, anns_field="vec", search_aggregation=agg)
    assert e.value.code == 1100


def test_refused_combinations(client, name):
    _load(client, name)
    agg = SearchAggregation(fields=["cat"], size=2)
    with pytest.raises(MilvusException, match="offset is not supported with search_aggregation"):
        client.search(name, [[0.0] * DIM], limit=3, offset=1, anns_field="vec", search_aggregation=agg)
    with pytest.raises(MilvusException, match="not supported with search_aggregation"):
        client.search(name, [[0.0] * DIM], limit=3, anns_field="vec", search_aggregation=agg,
                      search_params={"params": {"radius": 10.0}})

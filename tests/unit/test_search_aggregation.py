"""vecdb.proxy.search_aggregation: spec checks, the candidate pool and the bucket tree on hand-made hits."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import SearchAggregation, TopHits

from vecdb import errors
from vecdb.proxy import search_aggregation as sa
from vecdb.querynode.executor import Hits, SearchSpec
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

VEC = FieldSchema("vec", DataType.FLOAT_VECTOR, field_id=101, dim=2)
SCHEMA = CollectionSchema("c", [
    FieldSchema("id", DataType.INT64, field_id=100, is_primary=True), VEC,
    FieldSchema("cat", DataType.VARCHAR, field_id=102, max_length=8),
    FieldSchema("brand", DataType.INT32, field_id=103),
    FieldSchema("price", DataType.DOUBLE, field_id=104),
    FieldSchema("stock", DataType.INT64, field_id=105, nullable=True),
    FieldSchema("tag", DataType.VARCHAR, field_id=106, max_length=8, nullable=True),
    FieldSchema("meta", DataType.JSON, field_id=107),
    FieldSchema("flag", DataType.BOOL, field_id=108),
    FieldSchema("f", DataType.FLOAT, field_id=109),
])


def _parse(agg: SearchAggregation, out=()):
    return sa.parse(agg.to_proto(), SCHEMA, list(out))


def _hits(rows: list[dict], topks=None) -> Hits:
    n = len(rows)
    cols = {
        "cat": np.asarray([r["cat"] for r in rows], object),
        "brand": np.asarray([r["brand"] for r in rows], np.int32),
        "price": np.asarray([r["price"] for r in rows], np.float64),
        "stock": np.asarray([r["stock"] or 0 for r in rows], np.int64),
        valid_key("stock"): np.asarray([r["stock"] is not None for r in rows], bool),
        "tag": np.asarray([r["tag"] or "" for r in rows], object),
        valid_key("tag"): np.asarray([r["tag"] is not None for r in rows], bool),
        "flag": np.asarray([r.get("flag", False) for r in rows], bool),
    }
    return Hits(topks or [n], np.arange(n, dtype=np.int64) + 10, np.linspace(0.1, 0.9, n).astype(np.float32), cols)


ROWS = [  # best first
    {"cat": "a", "brand": 1, "price": 10.0, "stock": 5, "tag": "x"},
    {"cat": "b", "brand": 2, "price": 30.0, "stock": None, "tag": None},
    {"cat": "a", "brand": 2, "price": 20.0, "stock": 7, "tag": "y"},
    {"cat": "c", "brand": 1, "price": 5.0, "stock": 1, "tag": None},
    {"cat": "b", "brand": 2, "price": 50.0, "stock": 2, "tag": "x"},
    {"cat": "a", "brand": 1, "price": 40.0, "stock": None, "tag": "x"},
]


def _tree(agg: SearchAggregation, rows=ROWS, out=(), topks=None):
    plan = _parse(agg, out)
    return plan, sa.aggregate(SCHEMA, plan, _hits(rows, topks))


def test_first_appearance_order_counts_and_keys():
    _, (buckets,) = _tree(SearchAggregation(fields=["cat"], size=2))
    assert [(b.key[0].string_val, b.count) for b in buckets] == [("a", 3), ("b", 2)]
    assert buckets[0].key[0].field_id == 102 and buckets[0].key[0].field_name == "cat"


def test_every_metric_with_nulls_skipped_and_typed():
    metrics = {"n": {"count": "*"}, "ns": {"count": "stock"}, "s": {"sum": "stock"}, "sp": {"sum": "price"},
               "a": {"avg": "stock"}, "lo": {"min": "tag"}, "hi": {"max": "brand"}, "ms": {"max": "_score"}}
    _, (buckets,) = _tree(SearchAggregation(fields=["cat"], size=3, metrics=metrics))
    a, b, c = buckets
    assert a.metrics["n"].int_val == 3 and a.metrics["ns"].int_val == 2 and a.metrics["s"].int_val == 12
    assert a.metrics["sp"].double_val == 70.0 and a.metrics["a"].double_val == 6.0
    assert a.metrics["lo"].string_val == "x" and a.metrics["hi"].int_val == 2
    assert a.metrics["ms"].WhichOneof("value") == "double_val"
    assert b.metrics["s"].int_val == 2 and b.metrics["lo"].string_val == "x"
    assert "lo" not in c.metrics and c.metrics["ns"].int_val == 1  # c's only tag is null: no min


def test_order_by_metric_count_key_and_null_keys():
    agg = SearchAggregation(fields=["tag"], size=5, order=[{"_key": "asc"}])
    _, (buckets,) = _tree(agg)
    assert [b.key[0].WhichOneof("value") and b.key[0].string_val for b in buckets] == [None, "x", "y"]
    assert buckets[0].count == 2  # null == null: one bucket, its key entry without a value
    agg = SearchAggregation(fields=["cat"], size=2, metrics={"p": {"max": "price"}}, order=[{"p": "asc"}])
    assert [b.key[0].string_val for b in _tree(agg)[1][0]] == ["c", "a"]
    agg = SearchAggregation(fields=["brand"], size=2, order=[{"_count": "desc"}, {"_key": "desc"}])
    assert [(b.key[0].int_val, b.count) for b in _tree(agg)[1][0]] == [(2, 3), (1, 3)]
    agg = SearchAggregation(fields=["cat"], size=3, metrics={"s": {"min": "tag"}}, order=[{"s": "desc"}])
    assert [b.key[0].string_val for b in _tree(agg)[1][0]] == ["a", "b", "c"]  # c's null metric lowest


def test_top_hits_sort_nulls_and_fields():
    agg = SearchAggregation(fields=["cat"], size=1, top_hits=TopHits(size=3, sort=[{"stock": "desc"}]))
    _, (buckets,) = _tree(agg, out=["price", "tag", "vec"])
    hits = buckets[0].hits
    assert [h.int_pk for h in hits] == [12, 10, 15]  # stock 7, 5, then the null one (nulls last)
    assert [f.field_name for f in hits[0].fields] == ["price", "tag"]  # vectors are not carried
    _, (two,) = _tree(SearchAggregation(fields=["cat"], size=2, top_hits=TopHits(size=1)), out=["tag"])
    assert two[1].hits[0].int_pk == 11 and two[1].hits[0].fields[0].WhichOneof("value") is None  # null: no value
    spec = agg.to_proto()
    spec.top_hits.sort[0].null_first = True
    plan = sa.parse(spec, SCHEMA, [])
    assert [h.int_pk for h in sa.aggregate(SCHEMA, plan, _hits(ROWS))[0][0].hits] == [15, 12, 10]
    agg = SearchAggregation(fields=["cat"], size=1, top_hits=TopHits(size=2))  # default: best first
    assert [h.int_pk for h in _tree(agg)[1][0][0].hits] == [10, 12]


def test_nested_and_several_queries():
    agg = SearchAggregation(fields=["cat"], size=2, sub_aggregation=SearchAggregation(
        fields=["brand", "tag"], size=5, top_hits=TopHits(size=1)))
    _, per_query = _tree(agg, rows=ROWS + ROWS[:3], topks=[6, 3])
    first, second = per_query
    assert [(s.key[0].int_val, s.key[1].string_val) for s in first[0].sub_groups] == [(1, "x"), (2, "y")]
    assert first[0].sub_groups[0].count == 2 and first[0].sub_groups[0].hits[0].int_pk == 10
    assert [b.key[0].string_val for b in second] == ["a", "b"] and second[0].hits == []
    assert second[0].sub_groups[1].hits[0].int_pk == 18


def test_pool_keeps_the_first_composite_keys_and_widens():
    calls = []
    values = np.asarray(["a", "b", "a", "a", "c", "b", "d"], object)

    def search(spec, fetch):
        calls.append(spec.limit)
        k = min(spec.limit, len(values))
        return Hits([k], np.arange(k, dtype=np.int64), np.arange(k, dtype=np.float32), {"cat": values[:k]})

    plan = _parse(SearchAggregation(fields=["cat"], size=2, top_hits=TopHits(size=2)))
    spec = SearchSpec(field=VEC, queries=np.zeros((1, 2), np.float32), limit=10, offset=0, metric="L2", params={},
                      index_type="FLAT")
    pool = sa.search_pool(search, spec, list(plan.fetch), plan, VEC, lambda k: {})
    assert pool.pks.tolist() == [0, 2, 1, 5] and pool.columns[sa.RANK].tolist() == [0, 2, 1, 5]
    assert calls == [sa.WINDOW_START]  # 7 hits of a 256 window: every hit seen
    values = np.asarray(["a"] * 600 + ["b"] * 10, object)  # "b" only past the first window
    calls.clear()
    pool = sa.search_pool(search, spec, list(plan.fetch), plan, VEC, lambda k: {})
    assert pool.pks.tolist() == [0, 1, 600, 601] and calls == [sa.WINDOW_START, 4 * sa.WINDOW_START]


def test_reply_shape():
    resp = sa.reply(SCHEMA, "c", 2, [[], []], 7)
    assert list(resp.results.topks) == [0, 0] and list(resp.results.agg_topks) == [0, 0]
    assert resp.results.num_queries == 2 and resp.session_ts == 7


@pytest.mark.parametrize("agg,words", [
    (SearchAggregation(fields=["nope"], size=1), "field 'nope' not found in schema"),
    (SearchAggregation(fields=["f"], size=1), "FLOAT / DOUBLE fields are not supported"),
    (SearchAggregation(fields=["meta"], size=1), "JSON / dynamic fields"),
    (SearchAggregation(fields=["vec"], size=1), "FLOAT_VECTOR fields are not supported"),
    (SearchAggregation(fields=["cat", "cat"], size=1), "in one level"),
    (SearchAggregation(fields=["cat"], size=1, sub_aggregation=SearchAggregation(fields=["cat"], size=1)),
     "across levels"),
    (SearchAggregation(fields=["cat"], size=1, metrics={"m": {"avg": "cat"}}), "avg is not supported on field cat"),
    (SearchAggregation(fields=["cat"], size=1, metrics={"m": {"min": "flag"}}), "min is not supported"),
    (SearchAggregation(fields=["cat"], size=1, metrics={"m": {"max": "meta"}}), "JSON / dynamic"),
    (SearchAggregation(fields=["cat"], size=1, top_hits=TopHits(size=1, sort=[{"vec": "asc"}])), "cannot be sorted"),
    (SearchAggregation(fields=["cat"], size=200, sub_aggregation=SearchAggregation(fields=["brand"], size=100)),
     "result entries is too large"),
])
def test_bad_specs(agg, words):
    with pytest.raises(errors.InvalidParameter, match=words):
        _parse(agg)


def test_raw_spec_checks():
    spec = SearchAggregation(fields=["cat"], size=1).to_proto()
    spec.order.add(key="ghost", direction="desc")
    with pytest.raises(errors.InvalidParameter, match="neither reserved key nor metric alias"):
        sa.parse(spec, SCHEMA, [])
    spec = SearchAggregation(fields=["cat"], size=1).to_proto()
    spec.metrics["m"].op = "median"
    spec.metrics["m"].field_name = "price"
    with pytest.raises(errors.InvalidParameter, match="unsupported metric op 'median'"):
        sa.parse(spec, SCHEMA, [])
    spec = SearchAggregation(fields=["cat"], size=0 + 1).to_proto()
    spec.size = 0  # Milvus: 0 reads as 1
    spec.order.add(key="_count", direction="")  # no direction: desc
    assert sa.parse(spec, SCHEMA, []).levels[0].size == 1
    assert sa.parse(spec, SCHEMA, []).levels[0].order == (("_count", True),)


def test_combinations_refused():
    base = dict(group=False, order=False, offset=0, iterator=False, radius=False, ranker=False, highlighter=False,
                element_level=False)
    sa.check_combination(**base)
    for key, value, words in [("group", True, "mutually exclusive"), ("offset", 2, "offset is not supported"),
                              ("iterator", True, "iterator"), ("order", True, "order_by_fields"),
                              ("highlighter", True, "highlighter"), ("ranker", True, "ranker"),
                              ("radius", True, "range search"), ("element_level", True, "element-level")]:
        with pytest.raises(errors.InvalidParameter, match=words):
            sa.check_combination(**{**base, key: value})

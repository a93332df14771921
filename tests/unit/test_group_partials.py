"""vecdb.group_partials: a query aggregation's per-group partials, computed per segment (the query node's
executor over real segments), merged per node, sent through the query node RPC's column encoding and
merged again in the proxy, give the reply the row path (every matching row reduced in the proxy) gives:
nulls in keys and values, empty parts and groups, int64 overflow across parts, VARCHAR and TIMESTAMPTZ
min/max, and an older node's rows in place of partials."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.client.entity_helper import extract_row_data_from_fields_data_v2

from vecdb import errors
from vecdb.expr.filter import compile_filter
from vecdb.group_partials import ROWS, PartialSpec, fetched, merge, row_partials
from vecdb.proxy.query_aggregation import aggregate_reply, aggregate_rows, partial_spec, plan_query
from vecdb.querynode import executor
from vecdb.querynode.rpc import RemoteQueryNode
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.rpc.columns import named_wire, read_query_reply
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.timestamp import compose

SCHEMA = CollectionSchema(name="c", fields=[
    FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
    FieldSchema("vec", DataType.FLOAT_VECTOR, field_id=101, dim=2),
    FieldSchema("cat", DataType.VARCHAR, field_id=102, max_length=8),
    FieldSchema("g", DataType.INT8, field_id=103, nullable=True),
    FieldSchema("n", DataType.INT32, field_id=104, nullable=True),
    FieldSchema("x", DataType.FLOAT, field_id=105),
    FieldSchema("d", DataType.DOUBLE, field_id=106, nullable=True),
    FieldSchema("ts", DataType.TIMESTAMPTZ, field_id=107),
    FieldSchema("b", DataType.BOOL, field_id=108),
    FieldSchema("tag", DataType.VARCHAR, field_id=109, max_length=8, nullable=True),
    FieldSchema("big", DataType.INT64, field_id=110),
])
AGGS = ["count(*)", "count(n)", "sum(n)", "avg(n)", "min(n)", "max(n)", "sum(x)", "avg(d)", "sum(d)", "min(cat)",
        "max(cat)", "min(tag)", "max(tag)", "min(ts)", "max(ts)", "count(d)", "max(g)", "sum(big)", "min(d)"]
KEYS = [[], ["cat"], ["g"], ["cat", "g"], ["tag", "b"], ["ts"]]


def _data(n: int, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tag = np.array([f"t{v}" for v in rng.integers(0, 4, n)], dtype=object)
    cols = {
        "id": np.arange(n, dtype=np.int64), "vec": rng.random((n, 2), dtype=np.float32),
        "cat": np.array([f"c{v}" for v in rng.integers(0, 5, n)], dtype=object),
        "g": rng.integers(-2, 2, n).astype(np.int8), "n": rng.integers(-1000, 1000, n).astype(np.int32),
        "x": (rng.integers(0, 100, n) / 8).astype(np.float32), "d": rng.random(n),
        "ts": rng.integers(0, 4, n).astype(np.int64) * 10**12, "b": rng.random(n) < 0.5, "tag": tag,
        "big": rng.integers(-(2**40), 2**40, n).astype(np.int64),
    }
    for k in ("g", "n", "d", "tag"):
        cols[valid_key(k)] = rng.random(n) >= 0.25
    tag[~cols[valid_key("tag")]] = None  # (a null string's placeholder)
    return cols


def _rows(result) -> list[dict]:
    n = 0
    for fd in result.fields_data:
        n = max(n, len(fd.valid_data) or len(getattr(fd.scalars, fd.scalars.WhichOneof("data")).data))
    rows: list[dict] = [{} for _ in range(n)]
    for fd in result.fields_data:
        extract_row_data_from_fields_data_v2(fd, rows)
    return rows


def _same(got: list[dict], want: list[dict]) -> None:
    """Equal replies; float sums and averages up to their addition order."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(b[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-9), k
            else:
                assert a[k] == b[k] and type(a[k]) is type(b[k]), (k, a[k], b[k])


def _wire(partial: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Through the Query RPC's reply encoding, as a remote node's partials reach the proxy."""
    return read_query_reply(b"".join(named_wire(1, partial)))


def _segments(cols: dict[str, np.ndarray], bounds: list[int]) -> list[SegmentView]:
    views = []
    for lo, hi in zip(bounds, bounds[1:]):
        seg = Segment(len(views), 0, SCHEMA)
        if hi > lo:
            seg.append({k: v[lo:hi] for k, v in cols.items()}, hi - lo, compose(1_000))
        views.append(SegmentView(seg, seg.n, 0))
    return views


@pytest.mark.parametrize("keys", KEYS)
@pytest.mark.parametrize("expr", ["", "n > 0 or tag == 't1'"])
@pytest.mark.parametrize("chunk", [executor.AGGREGATE_CHUNK, 16])
def test_segments_and_nodes_equal_the_row_path(keys, expr, chunk, monkeypatch):
    monkeypatch.setattr(executor, "AGGREGATE_CHUNK", chunk)  # 16: segments reduced in chunks, merged as they add up
    cols = _data(700)
    shape = plan_query(SCHEMA, keys + AGGS, {"group_by_fields": ",".join(keys), "order_by_fields": ""})
    spec = partial_spec(shape)
    flt = compile_filter(expr, SCHEMA, None) if expr else None
    snapshot = compose(2_000)
    # two query nodes: three segments (one empty) and two segments
    nodes = [_segments(cols, [0, 250, 250, 400]), _segments(cols, [400, 401, 700])]
    empty = {k: v[:0] for k, v in cols.items()}
    partials = [_wire(executor.aggregate(views, snapshot, flt, SCHEMA, spec, empty)) for views in nodes]
    got = aggregate_reply(shape, merge(SCHEMA, spec, partials), None, 0, "c")
    names = fetched(SCHEMA, spec)
    rows = [executor.query(views, snapshot, flt, names, "id", None, 0) for views in nodes]
    every = {k: np.concatenate([r[k] for r in rows]) for k in names}
    want = aggregate_rows(SCHEMA, shape, every, None, 0, "c")
    assert len(_rows(want)) > 1 or not keys
    _same(_rows(got), _rows(want))


def test_order_limit_offset_over_merged_groups():
    cols = _data(300)
    shape = plan_query(SCHEMA, ["cat", "g", "count(*)", "sum(n)"],
                       {"group_by_fields": "cat,g", "order_by_fields": "sum(n):desc,cat"})
    spec = partial_spec(shape)
    parts = [row_partials(SCHEMA, spec, {k: v[lo:lo + 100] for k, v in cols.items()}) for lo in (0, 100, 200)]
    got = _rows(aggregate_reply(shape, merge(SCHEMA, spec, parts), 5, 3, "c"))
    _same(got, _rows(aggregate_rows(SCHEMA, shape, cols, 5, 3, "c")))
    assert len(got) == 5


def test_empty_parts_and_global_over_no_rows():
    cols = _data(40)
    empty = {k: v[:0] for k, v in cols.items()}
    glob = plan_query(SCHEMA, ["count(*)", "sum(n)", "min(tag)", "avg(d)", "count(tag)"], {})
    spec = partial_spec(glob)
    nothing = merge(SCHEMA, spec, [_wire(row_partials(SCHEMA, spec, empty)), row_partials(SCHEMA, spec, empty)])
    assert _rows(aggregate_reply(glob, nothing, None, 0, "c")) == [
        {"count(*)": 0, "sum(n)": None, "min(tag)": None, "avg(d)": None, "count(tag)": 0}]
    grouped = plan_query(SCHEMA, ["tag", "count(*)", "max(tag)"], {"group_by_fields": "tag"})
    gspec = partial_spec(grouped)
    merged = merge(SCHEMA, gspec, [row_partials(SCHEMA, gspec, empty),
                                   _wire(row_partials(SCHEMA, gspec, cols)), row_partials(SCHEMA, gspec, empty)])
    _same(_rows(aggregate_reply(grouped, merged, None, 0, "c")), _rows(aggregate_rows(SCHEMA, grouped, cols, None, 0,
                                                                                        "c")))
    assert len(merged[ROWS]) == 5  # t0..t3 and null


def test_groups_whose_values_are_all_null_in_some_parts():
    """min/max/sum over parts where a group has only nulls in one part and values in another; a group
    with no value anywhere gets null (count 0)."""
    cols = {"cat": np.array(["a", "a", "b", "a", "b"], dtype=object),
            "tag": np.array(["q", None, None, None, None], dtype=object),
            valid_key("tag"): np.array([True, False, False, False, False]),
            "n": np.array([7, 1, 2, 3, 4], np.int32), valid_key("n"): np.array([False, False, False, True, False])}
    shape = plan_query(SCHEMA, ["cat", "min(tag)", "max(tag)", "sum(n)", "count(n)", "avg(n)", "min(n)"],
                       {"group_by_fields": "cat"})
    spec = partial_spec(shape)
    parts = [_wire(row_partials(SCHEMA, spec, {k: v[lo:hi] for k, v in cols.items()})) for lo, hi in ((0, 2), (2, 5))]
    got = _rows(aggregate_reply(shape, merge(SCHEMA, spec, parts), None, 0, "c"))
    assert got == [{"cat": "a", "min(tag)": "q", "max(tag)": "q", "sum(n)": 3, "count(n)": 1, "avg(n)": 3.0,
                    "min(n)": 3},
                   {"cat": "b", "min(tag)": None, "max(tag)": None, "sum(n)": None, "count(n)": 0, "avg(n)": None,
                    "min(n)": None}]


def test_int64_sums_overflow_by_the_total_not_by_a_part():
    cols = {"big": np.array([2**62, 2**62, -(2**62), 2**62], np.int64)}
    shape = plan_query(SCHEMA, ["sum(big)", "avg(big)"], {})
    spec = partial_spec(shape)
    first, second = (row_partials(SCHEMA, spec, {"big": cols["big"][lo:hi]}) for lo, hi in ((0, 2), (2, 3)))
    # the first part's own sum (2**63) leaves the range; with the second the total is back in it
    assert _rows(aggregate_reply(shape, merge(SCHEMA, spec, [first, _wire(second)]), None, 0, "c")) == [
        {"sum(big)": 2**62, "avg(big)": float(2**62) / 3}]
    third = row_partials(SCHEMA, spec, {"big": cols["big"][3:]})
    with pytest.raises(errors.InvalidParameter, match=r"sum\(big\) overflows int64"):
        aggregate_reply(shape, merge(SCHEMA, spec, [first, third]), None, 0, "c")
    with pytest.raises(errors.InvalidParameter, match="overflows int64"):  # as the row path refuses it
        aggregate_rows(SCHEMA, shape, {"big": cols["big"][[0, 1, 3]]}, None, 0, "c")


def test_spec_travels_as_texts():
    shape = plan_query(SCHEMA, ["cat", "count(*)", "SUM(n)", "avg(n)", "max(ts)"], {"group_by_fields": "cat,g"})
    spec = partial_spec(shape)
    assert spec.texts() == ["count(*)", "sum(n)", "avg(n)", "max(ts)"]
    assert PartialSpec.from_texts(spec.group_by, spec.texts()) == spec
    with pytest.raises(errors.InvalidParameter, match="malformed partial aggregate"):
        PartialSpec.from_texts([], ["median(n)"])


def test_an_older_node_answering_rows_is_reduced_in_the_proxy(monkeypatch):
    """A node that does not know QueryRequest.aggregation returns the rows output_fields names (the
    fetched columns); RemoteQueryNode reduces them to the partials a newer node would have sent."""
    cols = _data(120)
    shape = plan_query(SCHEMA, ["tag", "count(*)", "sum(n)", "min(cat)"], {"group_by_fields": "tag"})
    spec = partial_spec(shape)
    asked = {}

    def old_node(method, request):
        asked["fields"] = list(request.output_fields)
        return b"".join(named_wire(1, {k: cols[k] for k in request.output_fields}))

    node = RemoteQueryNode("127.0.0.1:1")
    monkeypatch.setattr(node._client, "invoke_encoded", old_node)
    info = type("Info", (), {"id": 1, "schema": SCHEMA})()
    partial = node.query_partials(info, 1, None, None, spec)  # type: ignore[arg-type]
    node.close()
    assert asked["fields"] == fetched(SCHEMA, spec)
    _same(_rows(aggregate_reply(shape, partial, None, 0, "c")), _rows(aggregate_rows(SCHEMA, shape, cols, None, 0,
                                                                                       "c")))

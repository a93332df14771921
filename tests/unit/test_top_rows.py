"""vecdb.top_rows: a plain query's ORDER BY with a limit, pushed down. Each node's first ``limit + offset``
rows by the sort keys (per segment, then across its segments: the query node's executor over real
segments), sent through the query node RPC's column encoding and merged in the proxy, give exactly the
rows a full sort of every matching row gives (the rank-based ``sort_keys``): ties by primary
key, nulls last ascending and first descending, several keys of mixed types, VARCHAR keys and primary
keys, NaN / -0.0 / infinities, int64 extremes, offsets past the rows, empty segments and nodes, and an
older node that returns every matching row."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import top_rows
from vecdb.expr.filter import compile_filter
from vecdb.proxy.query_aggregation import plan_query, sort_keys
from vecdb.querynode import executor
from vecdb.querynode.rpc import RemoteQueryNode
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.rpc.columns import named_wire, read_query_reply
from vecdb.rpc.gen import querynode_pb2 as pb
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.timestamp import compose


def _schema(pk: DataType = DataType.INT64) -> CollectionSchema:
    return CollectionSchema(name="c", fields=[
        FieldSchema("id", pk, field_id=100, is_primary=True, max_length=16),
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


SCHEMA = _schema()
NAMES = ["id", "vec", "cat", "g", "n", "x", "d", "ts", "b", "tag", "big"]


def _data(n: int, seed: int = 7, pk: DataType = DataType.INT64) -> dict[str, np.ndarray]:
    """Few distinct values (many ties), nulls, float specials and int64 extremes, primary keys shuffled."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n).astype(np.int64) * 3 - n
    d = rng.integers(0, 6, n) / 4
    d[rng.random(n) < 0.05] = np.nan
    d[rng.random(n) < 0.03] = -np.nan  # (a NaN with its sign bit set)
    d[rng.random(n) < 0.05] = -0.0
    d[rng.random(n) < 0.03] = np.inf
    d[rng.random(n) < 0.03] = -np.inf
    extremes = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0, 2**53, 2**53 + 1], np.int64)
    cols = {
        "id": ids if pk == DataType.INT64 else np.array([f"k{v:+05d}" for v in ids], dtype=object),
        "vec": rng.random((n, 2), dtype=np.float32),
        "cat": np.array([f"c{v}" for v in rng.integers(0, 5, n)], dtype=object),
        "g": rng.integers(-2, 2, n).astype(np.int8), "n": rng.integers(-20, 20, n).astype(np.int32),
        "x": (rng.integers(-8, 8, n) / 4).astype(np.float32), "d": d,
        "ts": rng.integers(0, 4, n).astype(np.int64) * 10**12, "b": rng.random(n) < 0.5,
        "tag": np.array([f"t{v}" for v in rng.integers(0, 4, n)], dtype=object),
        "big": extremes[rng.integers(0, len(extremes), n)],
    }
    for k in ("g", "n", "d", "tag"):
        cols[valid_key(k)] = rng.random(n) >= 0.2
    cols["tag"][~cols[valid_key("tag")]] = None  # (a null string's placeholder)
    return cols


def _segments(schema: CollectionSchema, cols: dict[str, np.ndarray], bounds: list[int]) -> list[SegmentView]:
    views = []
    for lo, hi in zip(bounds, bounds[1:]):
        seg = Segment(len(views), 0, schema)
        if hi > lo:
            seg.append({k: v[lo:hi] for k, v in cols.items()}, hi - lo, compose(1_000))
        views.append(SegmentView(seg, seg.n, 0))
    return views


def _wire(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Through the Query RPC's reply encoding, as a remote node's rows reach the proxy."""
    return read_query_reply(b"".join(named_wire(1, cols)))


def _order(schema: CollectionSchema, text: str) -> top_rows.Order:
    return plan_query(schema, ["id"], {"order_by_fields": text}).order


def _pushed(schema, cols, order, limit, offset, expr="", nodes=((0, 130, 130, 260), (260, 261, 400))):
    """What the proxy answers with the push-down: two query nodes (one with an empty segment), each its
    first limit + offset rows, merged."""
    spec = top_rows.TopSpec.of(schema, order, limit + offset)
    wanted = list(dict.fromkeys(NAMES + spec.columns() + [valid_key(k) for k in ("g", "n", "d", "tag")]))
    flt = compile_filter(expr, schema, None) if expr else None
    parts = [_wire(executor.query_top(_segments(schema, cols, list(b)), compose(2_000), flt, wanted, spec))
             for b in nodes]
    for p in parts:
        assert len(p["id"]) <= limit + offset
    return top_rows.merge(spec, parts, wanted, offset)


def _full(schema, cols, order, limit, offset, expr=""):
    """Today's full-sort path: every matching row ordered and paged in the proxy."""
    if expr:
        keep = np.asarray(compile_filter(expr, schema, None).evaluate(cols, len(cols["id"])), bool)
        cols = {k: v[keep] for k, v in cols.items()}
    # (the rank-based sort the groups of an aggregation are ordered by: independent of vecdb.top_rows)
    pk = cols["id"]
    valid = {name: cols.get(valid_key(name)) for name, _ in order}
    perm = sort_keys(cols, valid, len(pk), order, np.unique(pk, return_inverse=True)[1].reshape(-1))
    perm = perm[min(offset, len(pk)):len(pk) if limit is None else min(len(pk), offset + limit)]
    return {k: np.asarray(v)[perm] for k, v in cols.items()}


def _equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) <= set(want) and "id" in got
    for k in got:
        a, b = np.asarray(got[k]), np.asarray(want[k])
        assert len(a) == len(b), k
        if b.dtype == object:
            assert a.tolist() == b.tolist(), k
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)  # (NaN equals NaN)


ORDERS = ["d:desc", "d:asc", "x", "x:desc", "big:desc", "big", "cat,n:desc", "b:desc,x:asc,tag:desc",
          "tag,g:desc,d", "g:desc,cat:desc,big", "n:descending,g:ascending", "b"]
PAGES = [(1, 0), (10, 0), (7, 13), (60, 200), (50, 380), (5, 500), (0, 5)]


@pytest.mark.parametrize("order_text", ORDERS)
@pytest.mark.parametrize("page", PAGES)
def test_pushed_down_equals_the_full_sort(order_text, page):
    cols = _data(400)
    order = _order(SCHEMA, order_text)
    limit, offset = page
    got = _pushed(SCHEMA, cols, order, limit, offset)
    want = _full(SCHEMA, cols, order, limit, offset)
    assert len(want["id"]) == max(0, min(limit, 400 - offset))
    _equal(got, want)


@pytest.mark.parametrize("order_text", ["cat:desc", "tag", "d:desc,cat", "b"])
def test_varchar_primary_key_and_a_filter(order_text):
    schema = _schema(DataType.VARCHAR)
    cols = _data(400, seed=11, pk=DataType.VARCHAR)
    order = _order(schema, order_text)
    expr = "n > -5 or tag == 't1'"
    for limit, offset in [(3, 0), (25, 9), (400, 0)]:
        _equal(_pushed(schema, cols, order, limit, offset, expr), _full(schema, cols, order, limit, offset, expr))


def test_ties_go_by_primary_key_and_nulls_by_direction():
    schema = SCHEMA
    n = 8
    cols = {k: v[:n] for k, v in _data(n).items()}
    cols["id"] = np.array([8, 3, 5, 1, 7, 2, 6, 4], np.int64)
    cols["n"] = np.array([5, 5, 9, 5, 0, 9, 0, 0], np.int32)
    cols[valid_key("n")] = np.array([True, True, True, True, False, True, False, True])
    nodes = ((0, 3, 5), (5, 8))
    asc = _pushed(schema, cols, _order(schema, "n"), 8, 0, nodes=nodes)
    assert asc["id"].tolist() == [4, 1, 3, 8, 2, 5, 6, 7]  # 0, 5 5 5, 9 9, then the nulls (by pk)
    desc = _pushed(schema, cols, _order(schema, "n:desc"), 4, 1, nodes=nodes)
    assert desc["id"].tolist() == [7, 2, 5, 1]  # nulls first: 6 7, then 9 9 (2 5), 5 (1 ...); offset 1


def test_every_row_ties_on_the_keys():
    cols = _data(300)
    cols["b"][:] = True
    cols["cat"][:] = "same"
    order = _order(SCHEMA, "b:desc,cat")
    got = _pushed(SCHEMA, cols, order, 10, 5, nodes=((0, 300),))
    assert got["id"].tolist() == sorted(cols["id"].tolist())[5:15]
    _equal(got, _full(SCHEMA, cols, order, 10, 5))


def test_pick_keeps_the_first_k_level_by_level():
    spec = top_rows.TopSpec.of(SCHEMA, (("g", True), ("x", False)), 3)
    cols = {"id": np.arange(6, dtype=np.int64), "g": np.array([1, 0, 0, 0, 2, 0], np.int8),
            valid_key("g"): np.array([True, True, True, True, True, False]),
            "x": np.array([0, 1, 3, 3, 9, 9], np.float32)}
    assert sorted(top_rows.pick(spec, cols).tolist()) == [1, 2, 3]
    assert top_rows.top(spec, cols).tolist() == [2, 3, 1]  # g 0 by x descending, ties (x 3) by id
    assert top_rows.top(top_rows.TopSpec.of(SCHEMA, (("g", False),), 2), cols).tolist() == [5, 4]  # null first


def test_empty_nodes_and_no_matching_row():
    cols = _data(100)
    order = _order(SCHEMA, "d:desc")
    got = _pushed(SCHEMA, cols, order, 10, 0, expr="n > 1000", nodes=((0, 50, 100), (100, 100)))
    assert len(got["id"]) == 0 and got["cat"].dtype == object
    spec = top_rows.TopSpec.of(SCHEMA, order, 10)
    assert executor.query_top([], compose(2_000), None, ["id"], spec)["id"].shape == (0,)
    assert top_rows.merge(spec, [], ["id"]) == {}


def test_an_older_node_answering_every_row_is_ordered_in_the_proxy(monkeypatch):
    """A node that does not know QueryRequest.order is asked with no limit: it returns every matching
    row, in its own order; the merge keeps the first ones as a newer node's would have been."""
    cols = _data(400)
    order = _order(SCHEMA, "tag:desc,d")
    asked = {}

    def old_node(method, request):
        asked["limit"] = request.HasField("limit")
        asked["order"] = (list(request.order.fields), list(request.order.ascending), request.order.top)
        shuffled = np.random.default_rng(1).permutation(200)  # (the node holds the first 200 rows)
        return b"".join(named_wire(1, {k: cols[k][shuffled] for k in request.output_fields}))

    node = RemoteQueryNode("127.0.0.1:1")
    monkeypatch.setattr(node._client, "invoke_encoded", old_node)
    info = type("Info", (), {"id": 1, "schema": SCHEMA})()
    spec = top_rows.TopSpec.of(SCHEMA, order, 12 + 4)
    wanted = list(dict.fromkeys(["id", "cat", "d", *spec.columns()]))
    rows = node.query_top(info, 1, None, None, wanted, order, 16, 0)  # type: ignore[arg-type]
    paged = node.query_top(info, 1, None, None, wanted, order, 6, 10)  # type: ignore[arg-type]
    node.close()
    assert asked == {"limit": False, "order": (["tag", "d"], [False, True], 16)}
    assert len(rows["id"]) == 16 and paged["id"].tolist() == rows["id"][10:].tolist()  # its first 16, in order
    newer = _wire(executor.query_top(_segments(SCHEMA, cols, [200, 300, 400]), compose(2_000), None, wanted, spec))
    got = top_rows.merge(spec, [rows, newer], wanted, 4)  # an older node beside a newer one
    _equal(got, _full(SCHEMA, cols, order, 12, 4))


def test_the_request_field_round_trips():
    request = pb.QueryRequest(output_fields=["id"], order=pb.QueryOrder(fields=["a", "b"], ascending=[True, False],
                                                                       top=7))
    back = pb.QueryRequest.FromString(request.SerializeToString())
    assert back.HasField("order") and not back.HasField("limit")
    assert tuple(zip(back.order.fields, back.order.ascending)) == (("a", True), ("b", False))


def test_varchar_ending_in_nul_sorts_after_its_prefix():
    """"x" < "x\\x00" < "x\\x00\\x00" < "x\\x01", as Milvus orders VARCHAR (NumPy's str would tie the first
    three), through a node's pick, the proxy's merge and a nullable field."""
    n = 40
    cols = {k: v[:n] for k, v in _data(n).items()}
    words = ["x\x01", "x\x00", "x", "x\x00\x00", "w"]
    cols["cat"] = np.array([words[i % 5] for i in range(n)], object)
    cols["tag"] = np.array([words[(i * 3) % 5] for i in range(n)], object)
    cols[valid_key("tag")] = np.arange(n) % 7 != 0
    cols["tag"][~cols[valid_key("tag")]] = None
    nodes = ((0, 10, 25), (25, 40))
    want = sorted(words)
    for text, limit, offset in [("cat", 40, 0), ("cat:desc", 9, 3), ("tag", 40, 0), ("tag:desc,cat", 12, 2),
                                ("cat", 3, 7)]:
        order = _order(SCHEMA, text)
        got = _pushed(SCHEMA, cols, order, limit, offset, nodes=nodes)
        _equal(got, _full(SCHEMA, cols, order, limit, offset))
    got = _pushed(SCHEMA, cols, _order(SCHEMA, "cat"), 40, 0, nodes=nodes)
    assert got["cat"].tolist() == [w for w in want for _ in range(8)]
    got = _pushed(SCHEMA, cols, _order(SCHEMA, "cat:desc"), 10, 6, nodes=nodes)
    assert got["cat"].tolist() == ["x\x01"] * 2 + ["x\x00\x00"] * 8

"""Bad input to the newest features (Milvus 2.5-3.0: search aggregation, GEOMETRY filters, the REST v2
endpoints of namespaces and structs) never takes the server down (tests/e2e/test_bad_input.py's rule):
each is refused with its Milvus code, or served; nothing accepted makes a later read fail, and a server
restarted on the data reads it. Requests pymilvus would refuse itself go over the raw gRPC stub.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import shapely
from pymilvus import DataType, MilvusClient, MilvusException, SearchAggregation, TopHits
from pymilvus.client.prepare import Prepare

from tests.conftest import free_port, server_settings
from tests.e2e._helpers import raw_stub, serving
from vecdb.standalone import Standalone

DIM = 2


def _raises(code: int, fn, *args, **kwargs) -> str:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value
    return e.value.message


# --- search aggregation ----------------------------------------------------------------
def _agg_collection(client, name) -> list[dict]:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=8)
    schema.add_field("arr", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4, nullable=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    rows = [{"id": i, "vec": [float(i), 0.0], "tag": f"t{i % 3}", "arr": None if i % 4 == 0 else [i] * (i % 3 + 1)}
            for i in range(30)]
    client.insert(name, rows)
    return rows


def test_search_aggregation_count_of_an_array_field(client, name):
    """count over an ARRAY field answered 65535 (an element-wise ``!= None`` over arrays); it counts
    the rows whose array is not null, as query aggregation's count(arr) does."""
    rows = _agg_collection(client, name)
    agg = SearchAggregation(fields=["tag"], size=3, metrics={"n_arr": {"count": "arr"}, "n": {"count": "*"}},
                            top_hits=TopHits(size=20))
    res = client.search(name, [[0.0, 0.0]], limit=10, anns_field="vec", search_aggregation=agg,
                        consistency_level="Strong")
    got = {b.key[0]["value"]: (b.count, b.metrics["n_arr"], b.metrics["n"]) for b in res.agg_buckets[0]}
    want = {t: (sum(r["tag"] == t for r in rows), sum(r["tag"] == t and r["arr"] is not None for r in rows),
                sum(r["tag"] == t for r in rows)) for t in ("t0", "t1", "t2")}
    assert got == want
    by_query = client.query(name, "id >= 0", output_fields=["tag", "count(arr)"], group_by_fields=["tag"],
                            consistency_level="Strong")
    assert {r["tag"]: r["count(arr)"] for r in by_query} == {t: w[1] for t, w in want.items()}


@pytest.mark.parametrize("sizes", [(2**32, 2**32), (2**62, 4), (2**62, 2)])
def test_search_aggregation_sizes_whose_product_wraps_int64_are_refused(uri, client, name, sizes):
    """The product of the levels' sizes was taken in int64: 2**32 * 2**32 wrapped to 0 and passed the
    result-size check (an unbounded aggregation accepted)."""
    _agg_collection(client, name)
    spec = SearchAggregation(fields=["tag"], size=1, sub_aggregation=SearchAggregation(fields=["id"], size=1))
    pb = spec.to_proto()
    pb.size, pb.sub_aggregation.size = sizes
    req = Prepare.search_requests_with_expr(name, "vec", {"metric_type": "L2", "params": {}}, 10,
                                            data=[[0.0, 0.0]])
    req.search_aggregation.CopyFrom(pb)
    with raw_stub(uri) as stub:
        reply = stub.Search(req)
    assert reply.status.code == 1100
    assert f"the product of the sizes ({sizes[0] * sizes[1]})" in reply.status.reason
    assert f"should be at most {16384}" in reply.status.reason


# --- GEOMETRY ------------------------------------------------------------------------
GEOS_TRAPS = [
    "MULTIPOINT (EMPTY, (1 1))",  # GEOS's prepared predicates crashed the server (SIGSEGV) on these
    "GEOMETRYCOLLECTION (POINT EMPTY, POINT (1 1))",
    "MULTILINESTRING (EMPTY, (0 0, 1 1))",
    "GEOMETRYCOLLECTION (MULTIPOINT (EMPTY, (3 3)), POINT (9 9))",
    "POINT EMPTY",  # ST_DWITHIN answered 65535 (GEOS has no x of an empty point)
    "POINT (1 1)", "POINT (20 20)", "LINESTRING (0 0, 2 2)", "POLYGON ((0 0, 1 0, 1 1, 0 0))",
]
BOX = "POLYGON ((0 0, 5 0, 5 5, 0 5, 0 0))"
OPS = {"ST_EQUALS": shapely.equals, "ST_TOUCHES": shapely.touches, "ST_OVERLAPS": shapely.overlaps,
       "ST_CROSSES": shapely.crosses, "ST_CONTAINS": shapely.contains, "ST_INTERSECTS": shapely.intersects,
       "ST_WITHIN": shapely.within}


def _geo_collection(client, name) -> None:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("geo", DataType.GEOMETRY, nullable=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)


def _check_spatial_filters(client, name) -> None:
    """Every spatial filter over the rows of GEOS_TRAPS (and a null row) equals shapely's plain answer."""
    rows = [shapely.from_wkt(w) for w in GEOS_TRAPS]
    box = shapely.from_wkt(BOX)
    for op, fn in OPS.items():
        got = client.query(name, f"{op}(geo, '{BOX}')", output_fields=["id"], consistency_level="Strong")
        assert sorted(r["id"] for r in got) == [i for i, g in enumerate(rows) if fn(g, box)], op
    got = client.query(name, "ST_DWITHIN(geo, 'POINT (1 1)', 1000)", output_fields=["id"], consistency_level="Strong")
    assert sorted(r["id"] for r in got) == [0, 1, 2, 5, 7, 8]  # 7: its line passes through (1 1)


def test_spatial_filters_over_geometries_with_empty_parts_and_a_restart(tmp_path):
    """A collection holding MULTIPOINT (EMPTY, (1 1)) and kin: the spatial filters run (an ST_WITHIN
    crashed the whole server), and again on a server restarted on the same data."""
    name = "geo_traps"
    with serving(tmp_path) as (_, client):
        _geo_collection(client, name)
        rows = [{"id": i, "vec": [float(i), 0.0], "geo": w} for i, w in enumerate(GEOS_TRAPS)]
        client.insert(name, rows + [{"id": 99, "vec": [0.0, 0.0], "geo": None}])
        _check_spatial_filters(client, name)
        client.flush(name)
        _check_spatial_filters(client, name)
    with serving(tmp_path) as (_, client):
        client.load_collection(name)
        _check_spatial_filters(client, name)
        assert client.query(name, "id == 0", output_fields=["geo"])[0]["geo"] == "MULTIPOINT (EMPTY, (1 1))"


@pytest.mark.parametrize("wkt", ["POINT (nan nan)", "POINT (1 inf)", "POINT (1e400 0)",
                                 "LINESTRING (0 0, nan 1)", "POLYGON ((0 0, 1 0, inf 1, 0 0))"])
def test_geometry_with_nan_or_infinite_coordinates_is_refused(client, name, wkt):
    """NaN / infinite coordinates were stored; a later ST_TOUCHES over the collection then answered 65535
    (GEOS: orientationIndex encountered NaN/Inf), and ST_DWITHIN's POINT (nan nan) (WKB's empty point)
    did too. Refused at insert and in a filter (1100); nothing written."""
    _geo_collection(client, name)
    client.insert(name, [{"id": 0, "vec": [0.0, 0.0], "geo": "POINT (1 1)"}])
    msg = _raises(1100, client.insert, name, [{"id": 1, "vec": [0.0, 0.0], "geo": "POINT (2 2)"},
                                              {"id": 2, "vec": [0.0, 0.0], "geo": wkt}])
    assert "invalid Geometry data: a coordinate is NaN or infinite" in msg and "row 1" in msg
    _raises(1100, client.upsert, name, [{"id": 0, "vec": [0.0, 0.0], "geo": wkt}])
    msg = _raises(1100, client.query, name, f"ST_TOUCHES(geo, '{wkt}')")
    assert "a coordinate is NaN or infinite" in msg
    if wkt.startswith("POINT"):
        _raises(1100, client.query, name, f"ST_DWITHIN(geo, '{wkt}', 10)")
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 1
    got = client.query(name, f"ST_TOUCHES(geo, '{BOX}') or ST_DWITHIN(geo, 'POINT (1 1)', 1)", output_fields=["id"])
    assert [r["id"] for r in got] == [0]


# --- REST v2 -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    settings = server_settings(tmp_path_factory.mktemp("rest_bad_newest"))
    settings.http.port = free_port()
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield settings.http.port, client
    client.close()
    srv.stop()


def _post(port: int, path: str, body: dict | bytes) -> dict:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # (the connection closed unanswered before)
        assert resp.status == 200
        return json.loads(resp.read())


def _fields(dim_params) -> list[dict]:
    return [{"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": dim_params}]


def test_rest_values_of_the_wrong_json_type_are_refused(rest):
    """A JSON value of the wrong type where the handler expects an object or a string raised an
    AttributeError the handler did not turn into an answer: the HTTP connection closed unanswered."""
    port, client = rest
    ok = _post(port, "collections/create", {"collectionName": "rest_ok", "schema": {"fields": _fields({"dim": DIM})},
                                            "indexParams": [{"fieldName": "v", "metricType": "L2"}]})
    assert ok["code"] == 0, ok
    cases = [
        ("entities/search", {"collectionName": "rest_ok", "data": [[0.0, 0.0]], "limit": 3, "annsField": ["v"]}),
        ("collections/create", {"collectionName": "rest_bad1", "schema": [1]}),
        ("collections/create", {"collectionName": "rest_bad2", "schema": {"fields": _fields([DIM])}}),
        ("collections/create", {"collectionName": "rest_bad3", "schema": {"fields": _fields({"dim": DIM})},
                                "indexParams": {"fieldName": "v"}}),
        ("collections/create", {"collectionName": "rest_bad4", "schema": {"fields": _fields({"dim": DIM})},
                                "indexParams": [5]}),
    ]
    for path, body in cases:
        reply = _post(port, path, body)
        assert reply["code"] == 1802 and "missing required parameters" in reply["message"], (body, reply)
    assert not client.has_collection("rest_bad1") and not client.has_collection("rest_bad2")


def test_rest_deeply_nested_json_is_refused(rest):
    port, _ = rest
    body = b'{"collectionName": "x", "filter": "id > 0", "exprParams": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = _post(port, "entities/query", body)
    assert reply["code"] == 1801 and "nested too deeply" in reply["message"], reply


def test_rest_namespace_must_be_a_string(rest):
    """A namespace of another JSON type was written under its Python text ("5", "['a']")."""
    port, client = rest
    schema = MilvusClient.create_schema(enable_namespace=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection("rest_ns", schema=schema, index_params=idx)
    row = {"id": 1, "v": [0.0, 0.0]}
    for ns in (5, ["a"], {"a": 1}, True):
        for path, body in (("entities/insert", {"data": [row]}), ("entities/upsert", {"data": [row]}),
                           ("entities/search", {"data": [[0.0, 0.0]], "limit": 3}),
                           ("entities/query", {"filter": "id >= 0", "limit": 3}),
                           ("entities/delete", {"filter": "id >= 0"})):
            reply = _post(port, path, {"collectionName": "rest_ns", "namespace": ns, **body})
            assert reply["code"] == 1100 and f"namespace must be a string, got {json.dumps(ns)}" in reply["message"]
    assert _post(port, "entities/insert", {"collectionName": "rest_ns", "namespace": "5", "data": [row]})["code"] == 0
    got = client.query("rest_ns", "", output_fields=["count(*)"], namespace="5", consistency_level="Strong")
    assert got[0]["count(*)"] == 1


# --- partial update --------------------------------------------------------------------
def test_partial_update_of_a_new_key_names_the_missing_fields(client, name):
    """The refusal listed vecdb's internal validity columns ('$valid.tag') beside the fields."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=8, nullable=True)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    client.insert(name, [{"id": 1, "vec": [0.0, 0.0], "tag": "a", "n": 1}])
    msg = _raises(1100, client.upsert, name, [{"id": 1, "n": 2}, {"id": 2, "n": 3}], partial_update=True)
    assert msg.endswith("partial update of a new primary key 2: must provide every field that is neither nullable "
                        "nor has a default value; missing ['vec']")  # (tag: nullable, null in a new row)
    assert client.query(name, "id >= 0", output_fields=["n"], consistency_level="Strong") == [{"id": 1, "n": 1}]


# --- add_collection_struct_field -------------------------------------------------------
def test_an_added_struct_refuses_what_create_refuses(client, name):
    """A struct sub-field with enable_analyzer (refused at create) was taken by
    add_collection_struct_field; every later add_function_field of the collection then failed on it."""
    from pymilvus import Function, FunctionType

    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("text", DataType.VARCHAR, max_length=64, enable_analyzer=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    client.insert(name, [{"id": 1, "vec": [0.0, 0.0], "text": "hello world"}])
    for params, message in [({"enable_analyzer": True}, "enable_analyzer is only for VARCHAR fields (and TEXT), "
                                                        "field chunks[note] is Array"),
                            ({"enable_match": True}, "field chunks[note] is set to enable match but not enable "
                                                     "analyzer")]:
        st = client.create_struct_field_schema()
        st.add_field("note", DataType.VARCHAR, max_length=8, **params)
        st.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
        assert message in _raises(1100, client.add_collection_struct_field, name, "chunks", st, max_capacity=4)
    assert [f["name"] for f in client.describe_collection(name)["fields"]] == ["id", "vec", "text"]
    bm25 = Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                    output_field_names=["sparse"])
    sidx = client.prepare_index_params()
    sidx.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.add_function_field(name, MilvusClient.create_field_schema("sparse", DataType.SPARSE_FLOAT_VECTOR), bm25,
                              sidx)
    hits = client.search(name, ["hello"], anns_field="sparse", limit=3, search_params={"metric_type": "BM25"},
                         consistency_level="Strong")
    assert [h["id"] for h in hits[0]] == [1]

"""Units behind tests/e2e/test_bad_input_newest.py: GEOMETRY values GEOS cannot take (NaN / infinite
coordinates refused; empty points and collections with empty parts served), and search aggregation's
int64-wrapping size product and its count over an ARRAY column."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pymilvus import SearchAggregation

from vecdb import errors, geometry
from vecdb.proxy import search_aggregation as sa
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

BOX = "POLYGON ((0 0, 5 0, 5 5, 0 5, 0 0))"


@pytest.mark.parametrize("wkt", ["POINT (nan nan)", "POINT (inf 0)", "POINT (1e400 0)", "LINESTRING (0 0, nan 1)",
                                 "GEOMETRYCOLLECTION (POINT (1 1), POLYGON ((0 0, 1 0, inf 1, 0 0)))"])
def test_non_finite_coordinates_are_refused_as_wkt_wkb_and_in_filters(wkt):
    with pytest.raises(errors.InvalidParameter, match=r"NaN or infinite.*row 1"):
        geometry.normalize_wkt(["POINT (1 2)", wkt], "g")
    with np.errstate(over="ignore", invalid="ignore"):
        wkb = shapely.to_wkb(shapely.from_wkt(wkt))
    rows = [shapely.to_wkb(shapely.from_wkt("POINT (1 2)")), wkb]
    if wkt == "POINT (nan nan)":  # WKB's empty point
        assert geometry.from_wkb(rows, "g").tolist() == ["POINT (1 2)", "POINT EMPTY"]
    else:
        with pytest.raises(errors.InvalidParameter, match="NaN or infinite in row 1 of field g"):
            geometry.from_wkb(rows, "g")
    with pytest.raises(errors.InvalidParameter, match="NaN or infinite"):
        geometry.query_geometry(wkt)


def test_a_3d_geometry_and_empty_ones_are_kept():
    got = geometry.normalize_wkt(["POINT Z (1 2 3)", "POINT EMPTY", "MULTIPOINT (EMPTY, (1 1))"], "g")
    assert got.tolist() == ["POINT Z (1 2 3)", "POINT EMPTY", "MULTIPOINT (EMPTY, (1 1))"]


ROWS = ["MULTIPOINT (EMPTY, (1 1))", "POINT (1 1)",
        "GEOMETRYCOLLECTION (GEOMETRYCOLLECTION (POINT EMPTY, POINT (2 2)))", "MULTILINESTRING (EMPTY, (0 0, 9 9))",
        "POINT EMPTY", "MULTIPOINT ((1 1), (9 9))", "POINT (9 9)"]


def _column() -> np.ndarray:
    return np.concatenate([geometry.normalize_wkt(ROWS, "g"), np.array([geometry.NULL_TEXT], object)])


def test_collections_with_an_empty_part_are_found():
    assert geometry._empty_parts(geometry.geometries(_column())).tolist() == [
        True, False, True, True, False, False, False, False]


@pytest.mark.parametrize("op", sorted(geometry.SPATIAL_BINARY))
def test_relate_over_empty_parts_equals_the_plain_predicate(op):
    """GEOS's prepared predicates crashed the process on MULTIPOINT (EMPTY, (1 1)) and kin."""
    box = geometry.query_geometry(BOX)
    got = geometry.relate(op, _column(), shapely.to_wkb(box))
    plain = {"st_contains": shapely.contains, "st_within": shapely.within}.get(op, getattr(shapely, op[3:]))
    want = [bool(plain(shapely.from_wkt(w), box)) for w in ROWS] + [False]
    assert got.tolist() == want


def test_dwithin_skips_empty_points():
    """ST_DWITHIN read every row's x and y: GEOS raised on an empty point (65535 for any query)."""
    point = shapely.to_wkb(geometry.query_point("POINT (1 1)"))
    assert geometry.dwithin(_column(), point, 1000).tolist() == [True, True, False, True, False, True, False, False]


SCHEMA = CollectionSchema("c", [
    FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
    FieldSchema("vec", DataType.FLOAT_VECTOR, field_id=101, dim=2),
    FieldSchema("cat", DataType.VARCHAR, field_id=102, max_length=8),
    FieldSchema("arr", DataType.ARRAY, field_id=103, element_type=DataType.INT64, max_capacity=4, nullable=True),
    FieldSchema("n", DataType.INT32, field_id=104),
])


@pytest.mark.parametrize("sizes", [(2**32, 2**32), (2**62, 4), (2**21, 2**21, 2**21)])
def test_a_size_product_past_int64_is_refused(sizes):
    spec = None
    for field in reversed(["cat", "id", "n"][:len(sizes)]):
        spec = SearchAggregation(fields=[field], size=1, sub_aggregation=spec)
    assert spec is not None
    pb = spec.to_proto()
    level = pb
    for size in sizes:
        level.size = size
        level = level.sub_aggregation
    with pytest.raises(errors.InvalidParameter, match=rf"the product of the sizes \({np.prod(sizes, dtype=object)}\)"):
        sa.parse(pb, SCHEMA, [])


def test_count_over_an_array_column_counts_its_non_null_rows():
    values = np.empty(4, object)
    values[:] = [np.array([1, 2]), np.array([], np.int64), None, np.array([3])]
    cols = {"arr": values, valid_key("arr"): np.array([True, True, False, True])}
    got, valid = sa._column(cols, SCHEMA.field("arr"), 4)
    assert valid.tolist() == [True, True, False, True] and got is values
    cols[valid_key("arr")] = np.ones(4, bool)  # (a None without a mask: null too)
    assert sa._column(cols, SCHEMA.field("arr"), 4)[1].tolist() == [True, True, False, True]


# --- follow-ups (tests/e2e/test_bad_input_followups.py) ------------------------------------------------
def _struct_schema(nullable: bool) -> CollectionSchema:
    from tests.unit.test_struct_array import proto_of, user_schema

    pb = proto_of(user_schema())
    pb.struct_array_fields[0].nullable = nullable
    for sub in pb.struct_array_fields[0].fields:
        sub.nullable = nullable
    return CollectionSchema.from_proto(pb, "c")


def _struct_request(schema: CollectionSchema, valid: list[bool]):
    from tests.unit.test_struct_array import insert_request, rows

    req = insert_request(_struct_schema(False), rows(len(valid)))  # every row with its struct
    (st,) = [fd for fd in req.fields_data if fd.field_name == "chunks"]
    st.valid_data.extend(valid)
    return req


def test_a_struct_field_data_valid_data_nulls_a_nullable_struct():
    """The ArrayOfStruct FieldData's own valid_data was ignored: its null rows were stored with their structs."""
    from vecdb.proxy.fielddata import columns_from_field_data

    schema = _struct_schema(True)
    cols = columns_from_field_data(schema, _struct_request(schema, [True, False, True]).fields_data, 3)
    assert [len(v) for v in cols["chunks[text]"]] == [1, 0, 3]  # row 1: no struct (an empty list)
    assert [len(v) for v in cols["chunks[emb]"]] == [1, 0, 3]
    assert cols["chunks[text]"][2].tolist() == ["t20", "t21", "t22"]


def test_a_struct_field_data_valid_data_is_refused_for_a_struct_that_is_not_nullable():
    from vecdb.proxy.fielddata import columns_from_field_data

    schema = _struct_schema(False)
    with pytest.raises(errors.InvalidParameter, match=r"field \(chunks\) is not nullable, but null values"):
        columns_from_field_data(schema, _struct_request(schema, [True, False, True]).fields_data, 3)
    with pytest.raises(errors.InvalidParameter, match=r"valid_data of field\(chunks\) is wrong: 2, num_rows: 3"):
        columns_from_field_data(schema, _struct_request(schema, [True, True]).fields_data, 3)
    cols = columns_from_field_data(schema, _struct_request(schema, [True, True, True]).fields_data, 3)
    assert [len(v) for v in cols["chunks[text]"]] == [1, 2, 3]  # all valid: as without valid_data


@pytest.mark.parametrize("params, words", [
    ({"limit": 2.5}, 'op[0]: limit_op: parameter "limit" must be an integer, got 2.500000'),
    ({"limit": 3, "offset": 0.5}, 'limit_op: parameter "offset" must be an integer, got 0.500000'),
    ({"limit": "3"}, 'limit_op: parameter "limit" must be an integer'),
    ({"limit": True}, 'limit_op: parameter "limit" must be an integer'),
])
def test_function_chain_limit_takes_integers_only(params, words):
    """limit 2.5 was cut to 2 (Milvus's chain ParamReader.Int64 refuses a double that is no whole number)."""
    import re

    from pymilvus.function_chain import FunctionChain, FunctionChainOp, FunctionChainStage

    from tests.unit.test_function_chain import _raises

    chain = FunctionChain(FunctionChainStage.L2_RERANK)
    chain._ops.append(FunctionChainOp(op="limit", params=params))
    _raises(re.escape(words), chain)


def test_function_chain_sort_desc_must_be_a_bool():
    """desc "yes" was read as ascending (Milvus's ParamReader.Bool: 'must be a bool'); 3.0 limit is 3."""
    import re

    from pymilvus.function_chain import FunctionChain, FunctionChainOp, FunctionChainStage, col

    from tests.unit.test_function_chain import _parse, _raises

    chain = FunctionChain(FunctionChainStage.L2_RERANK)
    chain._ops.append(FunctionChainOp(op="sort", params={"column": "$score", "desc": "yes"}))
    _raises(re.escape('op[0]: sort_op: parameter "desc" must be a bool'), chain)
    ok = FunctionChain(FunctionChainStage.L2_RERANK).sort(col("$score"), desc=True)
    ok._ops.append(FunctionChainOp(op="limit", params={"limit": 3.0}))
    ops = _parse(ok).ops
    assert ops[0].desc is True and (ops[1].limit, ops[1].offset) == (3, 0)


TZ_SCHEMA = CollectionSchema("t", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                   FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2),
                                   FieldSchema("ts", DataType.TIMESTAMPTZ, field_id=102, nullable=True)])


@pytest.mark.parametrize("expr, number", [("ts > 5", "5"), ("5 < ts", "5"), ("ts >= -3", "-3"), ("1 < ts < 9", "1"),
                                          ("ts in [1, 2]", "1"), ("ts == 1.5", "1.5"),
                                          ("ts + 5 > ISO '2025-01-01T00:00:00Z'", "5")])
def test_a_timestamptz_field_is_not_compared_with_a_number(expr, number):
    """``ts > 5`` was read as 5 microseconds after the epoch; Milvus 2.6 compares a TIMESTAMPTZ field
    with ISO '...' instants (shifted by INTERVAL '...')."""
    from vecdb.expr import compile_filter

    with pytest.raises(errors.InvalidParameter, match=f"field 'ts' is a timestamptz field: .* not the number {number}"):
        compile_filter(expr, TZ_SCHEMA)
    for ok in ("ts > ISO '2025-01-01T00:00:00Z'", "ISO '2025-01-01T00:00:00Z' <= ts",
               "ts + INTERVAL 'P1D' > ISO '2025-01-01T00:00:00Z'", "ts in [ISO '2025-01-01T00:00:00Z']", "id > 5"):
        compile_filter(ok, TZ_SCHEMA)


def test_rest_create_params_become_properties_and_booleans_are_json_booleans():
    from vecdb.proxy import rest, rest_structs

    props = rest._create_properties({"shardsNum": 1, "ttlSeconds": 60, "partitionKeyIsolation": True,
                                     "namespace.mode": "partition", "mmap.enabled": False, "timezone": "UTC"})
    assert {p.key: p.value for p in props} == {"collection.ttl.seconds": "60", "partitionkey.isolation": "true",
                                               "namespace.mode": "partition", "mmap.enabled": "false",
                                               "timezone": "UTC"}
    assert rest._create_properties({"shardNum": 2}) == []  # a key Milvus does not read: ignored, as there
    with pytest.raises(rest_structs.JsonTypeError, match='schema.enableNamespace must be a JSON boolean, got "false"'):
        rest_structs.json_bool({"enableNamespace": "false"}, "enableNamespace", "schema.")
    assert rest_structs.json_bool({}, "enableNamespace") is False
    assert rest._dynamic_param({"params": {"enableDynamicField": "false"}}) is False
    assert rest._dynamic_param({}) is True
    with pytest.raises(rest.RestError, match="parse enableDynamicField fail"):
        rest._dynamic_param({"params": {"enableDynamicField": "no"}})


def test_rest_struct_elements_ignore_unknown_keys_as_milvus_does():
    """Milvus's REST handler (struct_array_v2.go parseStructArrayRow) skips a key that names no
    sub-field "to allow forward compatibility": vecdb's REST does the same (gRPC's sub-field FieldData
    naming no sub-field is refused, 1700, a different shape of request)."""
    from vecdb.proxy import rest_structs

    schema = _struct_schema(False)
    rows = [{"chunks": [{"text": "a", "score": 1.0, "emb": [0.0] * 4, "color": "red"}]}]
    cols = rest_structs.struct_columns(schema, rows)
    assert sorted(cols) == ["chunks[emb]", "chunks[score]", "chunks[text]"]
    assert cols["chunks[text]"][0] == ["a"]

"""GEOMETRY fields (Milvus 2.6): WKT in (checked, normalized), WKT out, the spatial filters against
shapely called plainly here (row first, unprepared), ST_DWITHIN against Milvus's formula written out,
nulls, defaults, RTREE, the column's cached geometries, and the paths a column travels (segment
files, NumPy import, CDC rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pymilvus.client.abstract import CollectionSchema as PyCollectionSchema
from pymilvus.client.grpc_handler import GrpcHandler
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import geometry
from vecdb.column_codec import decode_columns, encode_columns
from vecdb.errors import IllegalSchema, InvalidParameter
from vecdb.expr import compile_filter
from vecdb.expr.compiler import _SPATIAL
from vecdb.index.scalar import validate_scalar_index
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.results import query_results
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

BOX = "POLYGON ((2 2, 8 2, 8 8, 2 8, 2 2))"


def _schema(nullable: bool = False, default: str | None = None) -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="2")
    geo = pb.fields.add(name="geo", data_type=int(DataType.GEOMETRY), nullable=nullable)
    if default is not None:
        geo.default_value.string_data = default
    return CollectionSchema.from_proto(pb, "c")


def _fields_info(schema):
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    return [f.dict() for f in PyCollectionSchema(resp).fields]


def _columns(schema, rows):
    """Rows through pymilvus's own insert encoder, then vecdb's insert decoder."""
    req = Prepare.row_insert_param("c", rows, "", _fields_info(schema))
    return columns_from_field_data(schema, req.fields_data, req.num_rows)


def _shapes(n: int, seed: int) -> list[str]:
    """Points, lines and boxes on a half-unit grid of [0, 10]^2 (so rows touch, cross, equal each other)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x, y = (rng.integers(0, 21, 2) / 2).tolist()
        w, h = (rng.integers(1, 9, 2) / 2).tolist()
        kind = i % 3
        if kind == 0:
            out.append(f"POINT ({x:g} {y:g})")
        elif kind == 1:
            out.append(f"LINESTRING ({x:g} {y:g}, {x + w:g} {y + h:g})")
        else:
            out.append(f"POLYGON (({x:g} {y:g}, {x + w:g} {y:g}, {x + w:g} {y + h:g}, {x:g} {y + h:g}, {x:g} {y:g}))")
    return out


# ---------------------------------------------------------------- WKT in and out
def test_insert_normalizes_wkt_as_milvus_writes_it_back():
    cols = _columns(_schema(), [
        {"id": 1, "v": [0, 0], "geo": "point(1 2)"},
        {"id": 2, "v": [0, 0], "geo": "POLYGON((0 0,1 0,1 1,0 0))"},
        {"id": 3, "v": [0, 0], "geo": "LINESTRING (0.1 0.3, 1e3 -2.5)"},
        {"id": 4, "v": [0, 0], "geo": "MULTIPOINT ((1 2), (3 4))"},
        {"id": 5, "v": [0, 0], "geo": "POINT Z (1 2 3)"},
    ])
    assert cols["geo"].tolist() == ["POINT (1 2)", "POLYGON ((0 0, 1 0, 1 1, 0 0))",
                                    "LINESTRING (0.1 0.3, 1000 -2.5)", "MULTIPOINT ((1 2), (3 4))",
                                    "POINT Z (1 2 3)"]
    reply = query_results(_schema(), {"id": np.arange(1, 6), "geo": cols["geo"]}, ["geo"], None, "c")
    fd = next(f for f in reply.fields_data if f.field_name == "geo")
    assert fd.type == DataType.GEOMETRY and fd.scalars.WhichOneof("data") == "geometry_wkt_data"
    h = GrpcHandler.__new__(GrpcHandler)
    h._address = "fake:19530"
    h._stub = type("Stub", (), {"Query": lambda self, request, timeout=None, metadata=None: reply})()
    got = [dict(r) for r in h.query("c", "id >= 0", output_fields=["geo"])]
    assert [r["geo"] for r in got] == cols["geo"].tolist()


@pytest.mark.parametrize("bad", ["POINT (1)", "invalid geometry", "", "POLYGON ((0 0, 1 1)", "POINT (1 2) x"])
def test_an_insert_with_a_value_that_is_no_wkt_is_refused(bad):
    with pytest.raises(InvalidParameter) as e:
        _columns(_schema(), [{"id": 1, "v": [0, 0], "geo": "POINT (0 0)"}, {"id": 2, "v": [0, 0], "geo": bad}])
    assert e.value.code == 1100
    assert e.value.message.startswith("invalid Geometry data, transform to wkb failed: ")
    assert "(field geo, row 1)" in e.value.message


def test_wkb_geometry_data_is_taken_too():
    schema = _schema()
    fd = schema_pb2.FieldData(field_name="geo", type=DataType.GEOMETRY)
    fd.scalars.geometry_data.data.extend([shapely.from_wkt("POINT (1 2)").wkb, shapely.box(0, 0, 1, 1).wkb])
    ids = schema_pb2.FieldData(field_name="id", type=DataType.INT64)
    ids.scalars.long_data.data.extend([1, 2])
    vec = schema_pb2.FieldData(field_name="v", type=DataType.FLOAT_VECTOR)
    vec.vectors.dim = 2
    vec.vectors.float_vector.data.extend([0.0] * 4)
    cols = columns_from_field_data(schema, [ids, vec, fd], 2)
    assert cols["geo"][0] == "POINT (1 2)" and shapely.equals(shapely.from_wkt(cols["geo"][1]), shapely.box(0, 0, 1, 1))
    fd.scalars.geometry_data.data[1] = b"\x01\x02"
    with pytest.raises(InvalidParameter, match="row 1 of field geo is no WKB"):
        columns_from_field_data(schema, [ids, vec, fd], 2)
    other = schema_pb2.FieldData(field_name="geo", type=DataType.GEOMETRY)
    other.scalars.string_data.data.extend(["POINT (1 2)", "POINT (1 2)"])
    with pytest.raises(InvalidParameter, match="need geometry_wkt_data, got string_data"):
        columns_from_field_data(schema, [ids, vec, other], 2)


def test_nullable_and_default_value():
    schema = _schema(nullable=True)
    cols = _columns(schema, [{"id": 1, "v": [0, 0], "geo": "POINT (1 1)"}, {"id": 2, "v": [0, 0], "geo": None},
                             {"id": 3, "v": [0, 0]}])
    assert cols["geo"].tolist() == ["POINT (1 1)", "", ""]
    assert cols[valid_key("geo")].tolist() == [True, False, False]
    # a payload of every row, placeholders at the null ones (vecdb's REST API builds these): only the
    # valid rows' values need be WKT
    fd = schema_pb2.FieldData(field_name="geo", type=DataType.GEOMETRY, valid_data=[False, True])
    fd.scalars.geometry_wkt_data.data.extend(["", "point(3 4)"])
    ids = schema_pb2.FieldData(field_name="id", type=DataType.INT64)
    ids.scalars.long_data.data.extend([1, 2])
    vec = schema_pb2.FieldData(field_name="v", type=DataType.FLOAT_VECTOR)
    vec.vectors.dim = 2
    vec.vectors.float_vector.data.extend([0.0] * 4)
    cols = columns_from_field_data(schema, [ids, vec, fd], 2)
    assert cols["geo"].tolist() == ["", "POINT (3 4)"] and cols[valid_key("geo")].tolist() == [False, True]

    with_default = _schema(default="point(9 9)")
    assert with_default.field("geo").default_value == "POINT (9 9)"  # normalized as an inserted value
    resp = milvus_pb2.DescribeCollectionResponse()
    with_default.to_proto(resp.schema)
    assert resp.schema.fields[2].default_value.string_data == "POINT (9 9)"
    cols = _columns(with_default, [{"id": 1, "v": [0, 0], "geo": "POINT (1 1)"}, {"id": 2, "v": [0, 0]}])
    assert cols["geo"].tolist() == ["POINT (1 1)", "POINT (9 9)"]
    with pytest.raises(InvalidParameter, match="invalid default value of field, name: geo"):
        _schema(default="POINT (9)")


def test_geometry_is_no_key_nor_array_element():
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=int(DataType.GEOMETRY), is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="2")
    with pytest.raises(IllegalSchema, match="primary key should be Int64 or VarChar"):
        CollectionSchema.from_proto(pb, "c")
    pb = _schema().to_dict()
    assert CollectionSchema.from_dict(pb).field("geo").dtype == DataType.GEOMETRY  # the catalog's record


# ---------------------------------------------------------------- filters
_ROW_FIRST = {"st_equals": shapely.equals, "st_touches": shapely.touches, "st_overlaps": shapely.overlaps,
              "st_crosses": shapely.crosses, "st_contains": shapely.contains, "st_intersects": shapely.intersects,
              "st_within": shapely.within}
QUERIES = [BOX, "POINT (4 4)", "LINESTRING (0 0, 10 10)", "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))",
           "LINESTRING (2 5, 8 5)", "POINT (2 2)", "POLYGON ((4 4, 6 4, 6 6, 4 6, 4 4))"]


def test_spatial_predicates_equal_shapely_row_by_row():
    schema = _schema(nullable=True)
    wkts = _shapes(300, 1)
    col = geometry.normalize_wkt(wkts, "geo")
    valid = np.ones(len(col), bool)
    valid[::17] = False
    col[~valid] = ""
    cols = {"geo": col, valid_key("geo"): valid}
    rows = [shapely.from_wkt(w) for w in wkts]
    checked = 0
    for q in QUERIES + wkts[:6]:  # a few of the rows themselves too (ST_EQUALS on a point, a line, a box)
        qg = shapely.from_wkt(q)
        for op, fn in _ROW_FIRST.items():
            for name in (op, op.upper()):
                got = compile_filter(f"{name}(geo, '{q}')", schema).evaluate(cols, len(col))
                want = np.array([bool(fn(g, qg)) and ok for g, ok in zip(rows, valid)])
                assert (got == want).all(), (op, q)
            neg = compile_filter(f"not {op}(geo, '{q}')", schema).evaluate(cols, len(col))
            assert (neg == (~want & valid)).all()  # a null row is false under not too
            checked += int(want.sum())
    assert checked > 200  # the data hit every predicate often enough to mean something
    flt = compile_filter(f"st_within(geo, '{BOX}') and id > 3", _schema(True))
    assert flt.fields == {"geo", "id", valid_key("geo")}


def _milvus_dwithin(g: shapely.Geometry, qx: float, qy: float, meters: float) -> bool:
    """Milvus's Geometry::dwithin written out row by row: haversine for a point, else planar degrees
    times 111320 * sqrt((1 + cos^2(lat)) / 2) at the query's latitude."""
    if g.geom_type == "Point":
        la1, lo1, la2, lo2 = map(math.radians, (g.y, g.x, qy, qx))
        a = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
        return 6371000.0 * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a)) <= meters
    deg = shapely.distance(g, shapely.Point(qx, qy))
    return deg * 111320.0 * math.sqrt((1 + math.cos(math.radians(qy)) ** 2) / 2) <= meters


def test_st_dwithin_measures_as_milvus():
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(116.2, 116.6, 200), rng.uniform(39.8, 40.1, 200)
    wkts = [f"POINT ({x} {y})" for x, y in zip(lon, lat)]
    wkts += [f"LINESTRING ({x} {y}, {x + 0.02} {y + 0.01})" for x, y in zip(lon[:50], lat[:50])]
    wkts += [shapely.box(x, y, x + 0.01, y + 0.01).wkt for x, y in zip(lon[50:80], lat[50:80])]
    col = geometry.normalize_wkt(wkts, "geo")
    rows = [shapely.from_wkt(w) for w in col]
    schema = _schema()
    for qx, qy, meters in [(116.4, 39.95, 5000), (116.4, 39.95, 12_000.5), (116.3, 40.0, 0), (0.0, 0.0, 1e7)]:
        got = compile_filter(f"ST_DWITHIN(geo, 'POINT ({qx} {qy})', {meters})", schema).evaluate({"geo": col}, len(col))
        want = [_milvus_dwithin(g, qx, qy, meters) for g in rows]
        assert got.tolist() == want
    assert 0 < int(compile_filter("ST_DWITHIN(geo, 'POINT (116.4 39.95)', 8000)", schema).evaluate(
        {"geo": col}, len(col)).sum()) < len(col)


def test_st_isvalid_and_is_null():
    schema = _schema(nullable=True)
    col = geometry.normalize_wkt(["POLYGON ((0 0, 2 2, 2 0, 0 2, 0 0))", "POINT (1 1)", "POINT (2 2)"], "geo")
    col[2] = ""
    cols = {"geo": col, valid_key("geo"): np.array([True, True, False])}
    assert compile_filter("ST_ISVALID(geo)", schema).evaluate(cols, 3).tolist() == [False, True, False]
    assert compile_filter("st_isvalid(geo)", schema).evaluate(cols, 3).tolist() == [False, True, False]
    assert compile_filter("geo is null", schema).evaluate(cols, 3).tolist() == [False, False, True]
    assert compile_filter("geo IS NOT NULL", schema).evaluate(cols, 3).tolist() == [True, True, False]
    plain = _schema()  # a field that is not nullable is never null
    assert compile_filter("geo is null", plain).evaluate({"geo": col}, 3).tolist() == [False, False, False]


def test_template_wkt():
    schema = _schema()
    col = geometry.normalize_wkt(["POINT (1 1)", "POINT (5 5)"], "geo")
    flt = compile_filter("ST_WITHIN(geo, {area})", schema, {"area": BOX})
    assert flt.evaluate({"geo": col}, 2).tolist() == [False, True]
    flt = compile_filter("ST_DWITHIN(geo, {p}, {d})", schema, {"p": "POINT (1 1.0001)", "d": 20})
    assert flt.evaluate({"geo": col}, 2).tolist() == [True, False]


@pytest.mark.parametrize("expr, message", [
    ("ST_CONTAINS(id, 'POINT (1 1)')", "spatial operation are only supported on geometry fields now"),
    ("ST_ISVALID(id)", "STIsValid operation are only supported on geometry fields now"),
    ("ST_DWITHIN(id, 'POINT (0 0)', 1)", "ST_DWITHIN operation are only supported on geometry fields now"),
    ("ST_CONTAINS(nope, 'POINT (1 1)')", "field nope not exist"),
    ("ST_CONTAINS(geo, 'POINTX (1 1)')", "invalid WKT: POINTX (1 1)"),
    ("ST_CONTAINS(geo, 3)", "the second argument of ST_CONTAINS must be a WKT string"),
    ("ST_CONTAINS(geo)", "ST_CONTAINS takes 2 arguments, got 1"),
    ("ST_DWITHIN(geo, 'LINESTRING (0 0, 1 1)', 3)", "ST_DWITHIN needs a POINT"),
    ("ST_DWITHIN(geo, 'POINT (0 0)', -3)", "distance parameter must be non-negative, got: -3.000000"),
    ("ST_DWITHIN(geo, 'POINT (0 0)', 'far')", "distance parameter must be a numeric value (int or float)"),
    ("ST_DWITHIN(geo, 'POINT (0 0)', id)", "distance parameter must be a constant numeric value, got: id"),
    ("geo == 'POINT (1 1)'", "field geo of type GEOMETRY can't be used in a filter expression"),
    ("ST_AREA(geo) > 1", "function st_area() is not supported"),
])
def test_spatial_filter_errors(expr, message):
    with pytest.raises(InvalidParameter) as e:
        compile_filter(expr, _schema())
    assert e.value.code == 1100 and message in e.value.message and "cannot parse expression" in e.value.message


def test_spatial_names_match_the_evaluator():
    assert set(_SPATIAL) == geometry.SPATIAL_CALLS


def test_geometries_are_parsed_once_per_column_array():
    col = np.empty(10, object)
    col[:4] = ["POINT (0 0)", "POINT (1 1)", "", "POINT (3 3)"]  # "": a null row's placeholder
    first = geometry.geometries(col[:4])
    assert first[2] is None and first[3].equals(shapely.Point(3, 3))
    again = geometry.geometries(col[:4])
    assert again[0] is first[0]  # the same objects: not parsed again
    col[4:6] = ["POINT (4 4)", "LINESTRING (0 0, 1 1)"]  # a growing buffer: more rows past the ones seen
    grown = geometry.geometries(col[:6])
    assert grown[0] is first[0] and grown[5].geom_type == "LineString"
    assert len(geometry.geometries(col[:2])) == 2
    other = geometry.geometries(np.array(["POINT (7 7)"], object))  # another array: its own entry
    assert other[0].equals(shapely.Point(7, 7))


# ---------------------------------------------------------------- RTREE and the column's other paths
def test_rtree_only_on_geometry_and_geometry_takes_no_other_index():
    geo, text = FieldSchema("geo", DataType.GEOMETRY), FieldSchema("s", DataType.VARCHAR, max_length=8)
    assert validate_scalar_index("rtree", geo, {}) == "RTREE"
    assert validate_scalar_index("AUTOINDEX", geo, {}) == "AUTOINDEX"
    with pytest.raises(InvalidParameter, match="RTREE index can only be built on geometry field, got VarChar"):
        validate_scalar_index("RTREE", text, {})
    for t, msg in [("INVERTED", "INVERTED are not supported on Geometry field"),
                   ("STL_SORT", "got Geometry"), ("BITMAP", "bitmap index are only supported"),
                   ("Trie", "TRIE are only supported on varchar field")]:
        with pytest.raises(InvalidParameter, match=msg):
            validate_scalar_index(t, geo, {})


def test_segment_file_round_trip():
    col = geometry.normalize_wkt(_shapes(30, 2), "geo")
    col[3] = ""
    n, out, _ = decode_columns(encode_columns({"geo": col}, len(col)))
    assert n == 30 and out["geo"].dtype == object and out["geo"].tolist() == col.tolist()


def test_numpy_import_and_cdc_rows():
    import io

    from vecdb.cdc.target import rows_of
    from vecdb.importer import numpy_columns

    schema = _schema(nullable=True)
    files = {}
    for name, arr in {"id": np.array([1, 2]), "v": np.zeros((2, 2), np.float32),
                      "geo": np.array(["POINT (1 2)", "LINESTRING (0 0, 1 1)"])}.items():
        buf = io.BytesIO()
        np.save(buf, arr)
        files[f"{name}.npy"] = buf.getvalue()
    cols, n = numpy_columns(schema, files)
    assert n == 2 and cols["geo"].tolist() == ["POINT (1 2)", "LINESTRING (0 0, 1 1)"]
    rows = rows_of(schema, {"id": np.array([1, 2]), "v": np.zeros((2, 2), np.float32),
                            "geo": np.array(["POINT (1 2)", ""], object),
                            valid_key("geo"): np.array([True, False])}, 2)
    assert [r["geo"] for r in rows] == ["POINT (1 2)", None]
    from vecdb.cdc.target import field_kwargs  # the target's field: its default as WKT

    assert field_kwargs(_schema(default="point(0 1)").field("geo")) == {"default_value": "POINT (0 1)"}

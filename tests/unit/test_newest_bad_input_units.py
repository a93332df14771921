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

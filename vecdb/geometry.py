"""GEOMETRY fields (Milvus 2.6): WKT in, WKT out, spatial filters over shapely (GEOS) arrays.

Column representation (vecdb.schema): an object array of ``str``, each row's WKT as vecdb
writes it. An insert parses every value (``normalize_wkt``: refused with 1100 when one is no
WKT, nothing written) and keeps shapely's WKT of it at full precision (``POINT (1 2)`` for
``point(1 2)``), which is what Milvus answers too: its proxy turns WKT into WKB at insert and WKB
back into WKT in results. Kept as text, the column travels the log, the segment files, CDC and
REST as a VARCHAR column does; a null row holds ``""`` under its validity mask.

Filters (``vecdb.expr``: ``ST_EQUALS``, ``ST_TOUCHES``, ``ST_OVERLAPS``, ``ST_CROSSES``,
``ST_CONTAINS``, ``ST_INTERSECTS``, ``ST_WITHIN``, ``ST_DWITHIN``, ``ST_ISVALID``) read a column
as a shapely geometry array, parsed once per column array and kept while that array lives
(``geometries``: the same scheme as text_match's term index, ``vecdb.analyzer.term_rows``), then
run one vectorized shapely predicate over it. Semantics are Milvus's segcore (``Geometry.h``):
``ST_<OP>(field, 'wkt')`` is ``row.<op>(query)`` in GEOS's DE-9IM sense; a null row is false.
``ST_DWITHIN(field, 'POINT (lon lat)', meters)``: for a point row the great-circle (haversine)
distance on a sphere of radius 6,371,000 m; for any other row GEOS's planar distance in degrees
times 111,320 m * sqrt((1 + cos^2 lat) / 2) at the query point's latitude; within when <=.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely

from vecdb.errors import InvalidParameter
from vecdb.prefix_cache import ArrayCache, prefix_root

EARTH_RADIUS_M = 6371000.0  # Milvus's haversine_distance_meters
METERS_PER_DEGREE_LAT = 111320.0  # Milvus's degrees_to_meters_at_location
NULL_TEXT = ""  # what a null row of a GEOMETRY column holds
# ST_<OP>(field, q) is field.<op>(q). Each runs as the query's predicate over the rows (GEOS's
# prepared query geometry: a polygon's point-in-polygon tests take its edge index instead of a walk
# over every edge per row): contains and within trade places, the others are symmetric in DE-9IM.
_PREPARED = {"st_equals": shapely.equals, "st_touches": shapely.touches, "st_overlaps": shapely.overlaps,
             "st_crosses": shapely.crosses, "st_contains": shapely.within, "st_intersects": shapely.intersects,
             "st_within": shapely.contains}
SPATIAL_BINARY = frozenset(_PREPARED)
SPATIAL_CALLS = SPATIAL_BINARY | {"st_dwithin", "st_isvalid"}


def _reason(text: object) -> str:
    """Why ``text`` is no WKT, in GEOS's words."""
    if not isinstance(text, str):
        return f"expected a WKT string, got {type(text).__name__}"
    try:
        shapely.from_wkt(text)
    except shapely.errors.GEOSException as e:
        return str(e)
    return "not a geometry"


def parse_wkt(values: Sequence, field_name: str) -> np.ndarray:
    """``values`` (WKT strings) as a shapely geometry array; InvalidParameter (1100, Milvus's
    message at insert) naming the first row that is no WKT."""
    arr = np.asarray(values, dtype=object)
    with np.errstate(over="ignore", invalid="ignore"):  # (1e400, nan: refused below, not warned about)
        geoms = shapely.from_wkt(arr, on_invalid="ignore") if len(arr) else np.empty(0, object)
    bad = np.flatnonzero(shapely.is_missing(geoms))
    if len(bad):
        i = int(bad[0])
        raise InvalidParameter(f"invalid Geometry data, transform to wkb failed: {_reason(arr[i])} "
                               f"(field {field_name}, row {i})")
    bad = _not_finite(geoms)
    if len(bad):
        i = int(bad[0])
        raise InvalidParameter(f"invalid Geometry data: a coordinate is NaN or infinite: {arr[i]} "
                               f"(field {field_name}, row {i})")
    return geoms


def _not_finite(geoms: np.ndarray) -> np.ndarray:
    """The rows with a NaN or infinite coordinate (GEOS's predicates throw on them; WKB has no NaN
    point but the empty one), ascending."""
    coords, rows = shapely.get_coordinates(geoms, return_index=True)  # (x, y: what the predicates read)
    return np.unique(rows[~np.isfinite(coords).all(axis=1)])


def to_wkt(geoms: np.ndarray) -> np.ndarray:
    """Geometries as the WKT vecdb stores and answers: every digit a double holds, nothing more."""
    out = np.empty(len(geoms), dtype=object)
    if len(geoms):
        out[:] = shapely.to_wkt(geoms, rounding_precision=-1, trim=True).tolist()
    return out


def normalize_wkt(values: Sequence, field_name: str) -> np.ndarray:
    """An insert's WKT strings as the column stores them (see the module docstring)."""
    return to_wkt(parse_wkt(values, field_name))


def from_wkb(values: Sequence[bytes], field_name: str) -> np.ndarray:
    """WKB rows (``geometry_data``, the form Milvus keeps) as the column's WKT."""
    arr = np.asarray(values, dtype=object)
    with np.errstate(invalid="ignore"):  # (a NaN coordinate: refused below, not warned about)
        geoms = shapely.from_wkb(arr, on_invalid="ignore") if len(arr) else np.empty(0, object)
    bad = np.flatnonzero(shapely.is_missing(geoms))
    if len(bad):
        raise InvalidParameter(f"invalid Geometry data: row {int(bad[0])} of field {field_name} is no WKB")
    bad = _not_finite(geoms)
    if len(bad):
        raise InvalidParameter(f"invalid Geometry data: a coordinate is NaN or infinite in row {int(bad[0])} of "
                               f"field {field_name}")
    return to_wkt(geoms)


def query_geometry(wkt: str) -> shapely.Geometry:
    """The WKT of a spatial filter, parsed (InvalidParameter when it is none)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            geom = shapely.from_wkt(wkt)
    except shapely.errors.GEOSException as e:
        raise InvalidParameter(f"invalid WKT: {wkt}: {e}") from None
    if geom is None:
        raise InvalidParameter(f"invalid WKT: {wkt}")
    if len(_not_finite(np.array([geom]))):
        raise InvalidParameter(f"invalid WKT: {wkt}: a coordinate is NaN or infinite")
    return geom


def query_point(wkt: str) -> shapely.Geometry:
    """ST_DWITHIN's WKT: a point (Milvus's checkValidPoint)."""
    geom = query_geometry(wkt)
    if geom.geom_type != "Point" or geom.is_empty:
        raise InvalidParameter(f"ST_DWITHIN needs a POINT (lon lat), got {geom.geom_type}: {wkt}")
    return geom


# --- a column's geometries, parsed once --------------------------------------------------------------
_CACHE = ArrayCache(64)  # the parsed rows per column array


def geometries(col: np.ndarray) -> np.ndarray:
    """The column's rows as shapely geometries (None at ``""``, a null row's placeholder), kept for the
    column's base array while it lives (``vecdb.prefix_cache``): a longer prefix of the same array
    parses only its new rows."""
    root, n = prefix_root(col), len(col)
    if root is None:
        return _parse_rows(col)
    done = _CACHE.get(root)
    if done is None:
        done = np.empty(0, object)
    if len(done) < n:
        done = np.concatenate([done, _parse_rows(col[len(done):n])])
        _CACHE.put(root, done)
    return done[:n]


def _parse_rows(col: np.ndarray) -> np.ndarray:
    if not len(col):
        return np.empty(0, object)
    # stored WKT parses (it was checked at insert); a null row's "" becomes None
    return shapely.from_wkt(np.asarray(col, dtype=object), on_invalid="ignore")


# --- predicates over a column -----------------------------------------------------------------------
def relate(op: str, col: np.ndarray, query_wkb: bytes) -> np.ndarray:
    """``ST_<OP>(field, query)`` on every row (``op``: ``st_contains``, ...); a null row is false. The
    query comes as WKB and is parsed and prepared here, per call: a prepared geometry builds its
    index lazily, so one shared by the threads that evaluate a cached filter would race."""
    rows = geometries(col)
    query = shapely.from_wkb(query_wkb)
    risky = _empty_parts(rows)
    if not risky.any():
        shapely.prepare(query)
        return np.asarray(_PREPARED[op](query, rows), dtype=bool)
    # GEOS's prepared predicates crash (SIGSEGV) on a collection holding an empty part, e.g.
    # MULTIPOINT (EMPTY, (1 1)): those rows take the plain predicate
    out = np.zeros(len(rows), bool)
    out[risky] = _PREPARED[op](query, rows[risky])
    shapely.prepare(query)
    safe = np.flatnonzero(~risky)
    out[safe] = _PREPARED[op](query, rows[safe])
    return out


def _empty_parts(geoms: np.ndarray) -> np.ndarray:
    """Which rows are collections (MULTI*, GEOMETRYCOLLECTION) with an empty part at any depth."""
    out = np.zeros(len(geoms), bool)
    owner = np.flatnonzero(shapely.get_type_id(geoms) >= 4)  # (4..7: the collection types)
    parts = geoms[owner]
    while len(parts):
        sub, where = shapely.get_parts(parts, return_index=True)
        owner = owner[where]
        out[owner[shapely.is_empty(sub)]] = True
        nested = shapely.get_type_id(sub) >= 4
        parts, owner = sub[nested], owner[nested]
    return out


def dwithin(col: np.ndarray, point_wkb: bytes, meters: float) -> np.ndarray:
    """``ST_DWITHIN(field, point, meters)`` on every row, as Milvus measures it (module docstring)."""
    geoms = geometries(col)
    point = shapely.from_wkb(point_wkb)
    qx, qy = float(shapely.get_x(point)), float(shapely.get_y(point))
    types = shapely.get_type_id(geoms)  # -1 for a null row, 0 for a point
    out = np.zeros(len(geoms), bool)
    points = np.flatnonzero((types == 0) & ~shapely.is_empty(geoms))  # (GEOS has no x of an empty point)
    with np.errstate(invalid="ignore"):  # (a NaN coordinate: never within)
        out[points] = haversine(shapely.get_y(geoms[points]), shapely.get_x(geoms[points]), qy, qx) <= meters
        others = np.flatnonzero(types > 0)
        if len(others):
            per_degree = METERS_PER_DEGREE_LAT * np.sqrt((1.0 + np.cos(np.radians(qy)) ** 2) / 2.0)
            out[others] = shapely.distance(geoms[others], point) * per_degree <= meters
    return np.asarray(out, dtype=bool)


def haversine(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in meters between points given in degrees (Milvus's formula)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(lon2) - np.radians(lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return EARTH_RADIUS_M * 2 * np.arctan2(np.sqrt(a), np.sqrt(1 - a))


def is_valid(col: np.ndarray) -> np.ndarray:
    """``ST_ISVALID(field)``: the rows whose geometry is valid in the OGC sense (GEOS isValid)."""
    return np.asarray(shapely.is_valid(geometries(col)), dtype=bool)

"""GEOMETRY fields (Milvus 2.6, data type 24) through pymilvus on every deployment: WKT in, WKT out as
Milvus writes it back, each spatial filter (ST_EQUALS ... ST_WITHIN, ST_DWITHIN, ST_ISVALID) over
sealed and growing rows against shapely called here, search with a spatial filter, RTREE, nullable
and default values, invalid WKT refused with nothing written, the REST API; and a standalone server
restarted on its data keeps them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e.test_rest import ok, post

N = 240
BOX = "POLYGON ((3 3, 12 3, 12 12, 3 12, 3 3))"
QUERIES = [BOX, "POINT (5 5)", "LINESTRING (0 0, 20 20)", "POLYGON ((0 0, 20 0, 20 20, 0 20, 0 0))",
           "LINESTRING (3 7, 12 7)", "POLYGON ((6 6, 8 6, 8 8, 6 8, 6 6))"]
# ST_<OP>(geo, q) is geo.<op>(q) (Milvus's segcore Geometry.h)
OPS = {"ST_EQUALS": shapely.equals, "ST_TOUCHES": shapely.touches, "ST_OVERLAPS": shapely.overlaps,
       "ST_CROSSES": shapely.crosses, "ST_CONTAINS": shapely.contains, "ST_INTERSECTS": shapely.intersects,
       "ST_WITHIN": shapely.within}


def _wkt(n: int, seed: int) -> list[str]:
    """Points, lines and boxes on a half-unit grid of [0, 15]^2, written as Milvus writes WKT back."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x, y = (rng.integers(0, 31, 2) / 2).tolist()
        w, h = (rng.integers(1, 11, 2) / 2).tolist()
        if i % 3 == 0:
            out.append(f"POINT ({x:g} {y:g})")
        elif i % 3 == 1:
            out.append(f"LINESTRING ({x:g} {y:g}, {x + w:g} {y + h:g})")
        else:
            out.append(f"POLYGON (({x:g} {y:g}, {x + w:g} {y:g}, {x + w:g} {y + h:g}, {x:g} {y + h:g}, {x:g} {y:g}))")
    return out


def _center(w: str) -> list[float]:
    c = shapely.from_wkt(w).centroid
    return [c.x, c.y]


def _schema(extra=()):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("geo", DataType.GEOMETRY)
    for name, kw in extra:
        s.add_field(name, DataType.GEOMETRY, **kw)
    return s


def _create(client, name, schema, rtree: bool = True) -> None:
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    if rtree:
        idx.add_index("geo", index_type="RTREE")
    client.create_index(name, idx)
    client.load_collection(name)


def _ids(client, name, expr, **kw) -> list[int]:
    return sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"], limit=16384, **kw))


def _dwithin(w: str, qx: float, qy: float, meters: float) -> bool:
    """Milvus's ST_DWITHIN row by row: haversine (R = 6371 km) for a point, else GEOS's planar distance in
    degrees times 111320 * sqrt((1 + cos^2 lat) / 2) at the query point's latitude."""
    g = shapely.from_wkt(w)
    if g.geom_type == "Point":
        p1, p2 = math.radians(g.y), math.radians(qy)
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(qx - g.x) / 2) ** 2
        return 6371000.0 * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a)) <= meters
    deg = shapely.distance(g, shapely.Point(qx, qy))
    return deg * 111320.0 * math.sqrt((1 + math.cos(math.radians(qy)) ** 2) / 2) <= meters


def test_geometry_round_trip_and_spatial_filters(client, name):
    _create(client, name, _schema())
    wkts = _wkt(N, 5)
    rows = [{"id": i, "vec": _center(w), "geo": w} for i, w in enumerate(wkts)]
    client.insert(name, rows[:150])
    client.flush(name)  # sealed rows, then growing ones
    client.insert(name, rows[150:])
    got = {r["id"]: r["geo"] for r in client.query(name, filter="id >= 0", output_fields=["geo"], limit=N)}
    assert got == dict(enumerate(wkts))
    geoms = [shapely.from_wkt(w) for w in wkts]
    hits = 0
    for q in [*QUERIES, wkts[0], wkts[1], wkts[2]]:
        qg = shapely.from_wkt(q)
        for op, fn in OPS.items():
            want = [i for i, g in enumerate(geoms) if fn(g, qg)]
            assert _ids(client, name, f"{op}(geo, '{q}')") == want, (op, q)
            hits += len(want)
    assert hits > 300
    assert _ids(client, name, f"st_intersects(geo, '{BOX}') and id < 100") == [
        i for i, g in enumerate(geoms) if i < 100 and g.intersects(shapely.from_wkt(BOX))]
    assert _ids(client, name, f"not ST_INTERSECTS(geo, '{BOX}')") == [
        i for i, g in enumerate(geoms) if not g.intersects(shapely.from_wkt(BOX))]
    for qx, qy, meters in [(5.0, 5.0, 100_000), (7.5, 7.5, 250_000.5), (1.0, 1.0, 0)]:
        want = [i for i, w in enumerate(wkts) if _dwithin(w, qx, qy, meters)]
        assert _ids(client, name, f"ST_DWITHIN(geo, 'POINT ({qx} {qy})', {meters})") == want
    assert _ids(client, name, "ST_ISVALID(geo)") == list(range(N))
    assert _ids(client, name, "ST_WITHIN(geo, {area})", filter_params={"area": BOX}) == [
        i for i, g in enumerate(geoms) if g.within(shapely.from_wkt(BOX))]

    # search with a spatial filter: the nearest rows among those the filter keeps
    inside = {i for i, g in enumerate(geoms) if g.within(shapely.from_wkt(BOX))}
    res = client.search(name, [[7.0, 7.0]], limit=5, filter=f"ST_WITHIN(geo, '{BOX}')", output_fields=["geo"])[0]
    centers = np.array([_center(w) for w in wkts])
    d = ((centers - [7.0, 7.0]) ** 2).sum(1)
    want = sorted(inside, key=lambda i: (d[i], i))[:5]
    assert [h["id"] for h in res] == want or np.allclose([h["distance"] for h in res], d[want], atol=1e-4)
    assert all(h["id"] in inside and h["entity"]["geo"] == wkts[h["id"]] for h in res)


def test_wkt_comes_back_as_milvus_writes_it_and_bad_wkt_is_refused(client, name):
    _create(client, name, _schema(), rtree=False)
    client.insert(name, [{"id": 1, "vec": [0, 0], "geo": "point(1 2)"},
                         {"id": 2, "vec": [0, 0], "geo": "POLYGON((0 0,1 0,1 1,0 0))"},
                         {"id": 3, "vec": [0, 0], "geo": "LINESTRING (0.1 0.3, 1e3 -2.5)"}])
    got = {r["id"]: r["geo"] for r in client.query(name, filter="id > 0", output_fields=["geo"])}
    assert got == {1: "POINT (1 2)", 2: "POLYGON ((0 0, 1 0, 1 1, 0 0))", 3: "LINESTRING (0.1 0.3, 1000 -2.5)"}
    for bad in ("POINT (1)", "not a geometry", "POLYGON ((0 0, 1 1)"):
        with pytest.raises(MilvusException) as e:
            client.insert(name, [{"id": 10, "vec": [0, 0], "geo": "POINT (0 0)"},
                                 {"id": 11, "vec": [0, 0], "geo": bad}])
        assert e.value.code == 1100 and "invalid Geometry data" in e.value.message
    assert _ids(client, name, "id >= 10") == []  # nothing of a refused insert was written
    for expr, message in [("ST_CONTAINS(geo, 'POINT (1)')", "invalid WKT"),
                          ("ST_DWITHIN(geo, 'POLYGON ((0 0, 1 0, 1 1, 0 0))', 5)", "ST_DWITHIN needs a POINT"),
                          ("ST_DWITHIN(geo, 'POINT (0 0)', -1)", "distance parameter must be non-negative"),
                          ("ST_CONTAINS(id, 'POINT (0 0)')", "spatial operation are only supported on geometry")]:
        with pytest.raises(MilvusException) as e:
            client.query(name, filter=expr)
        assert e.value.code == 1100 and message in e.value.message, expr
    idx = client.prepare_index_params()
    idx.add_index("geo", index_type="INVERTED")
    with pytest.raises(MilvusException) as e:
        client.create_index(name, idx)
    assert e.value.code == 1100 and "INVERTED are not supported on Geometry field" in e.value.message
    idx = client.prepare_index_params()
    idx.add_index("id", index_type="RTREE")
    with pytest.raises(MilvusException) as e:
        client.create_index(name, idx)
    assert e.value.code == 1100 and "RTREE index can only be built on geometry field" in e.value.message


def test_nullable_and_default_geometry(client, name):
    _create(client, name, _schema([("maybe", {"nullable": True}),
                                   ("home", {"default_value": "point(9 9)"})]))
    assert client.describe_collection(name)["fields"][4]["default_value"].string_data == "POINT (9 9)"
    client.insert(name, [{"id": 1, "vec": [0, 0], "geo": "POINT (1 1)", "maybe": "POINT (2 2)", "home": "POINT (3 3)"},
                         {"id": 2, "vec": [1, 0], "geo": "POINT (1 1)", "maybe": None},
                         {"id": 3, "vec": [2, 0], "geo": "POINT (1 1)"}])
    client.flush(name)
    client.insert(name, [{"id": 4, "vec": [3, 0], "geo": "POINT (1 1)", "maybe": None, "home": None}])
    got = {r["id"]: (r["maybe"], r["home"])
           for r in client.query(name, filter="id > 0", output_fields=["maybe", "home"])}
    assert got == {1: ("POINT (2 2)", "POINT (3 3)"), 2: (None, "POINT (9 9)"), 3: (None, "POINT (9 9)"),
                   4: (None, "POINT (9 9)")}
    assert _ids(client, name, "maybe is null") == [2, 3, 4]
    assert _ids(client, name, "maybe is not null") == [1]
    assert _ids(client, name, "ST_INTERSECTS(maybe, 'POINT (2 2)')") == [1]
    assert _ids(client, name, "not ST_INTERSECTS(maybe, 'POINT (5 5)')") == [1]  # null rows stay false
    assert _ids(client, name, "ST_EQUALS(home, 'POINT (9 9)')") == [2, 3, 4]


def test_rest_geometry(server, client, name):
    port = server.http_ports[0]
    ok(post(port, "collections/create", {
        "collectionName": name,
        "schema": {"autoId": False, "enableDynamicField": False, "fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "vec", "dataType": "FloatVector", "elementTypeParams": {"dim": 2}},
            {"fieldName": "geo", "dataType": "Geometry", "nullable": True}]},
        "indexParams": [{"fieldName": "vec", "indexName": "v", "metricType": "L2", "indexType": "FLAT"},
                        {"fieldName": "geo", "indexName": "g", "indexType": "RTREE"}]}))
    data = [{"id": 1, "vec": [1, 1], "geo": "point(1 1)"}, {"id": 2, "vec": [5, 5], "geo": None},
            {"id": 3, "vec": [5, 5], "geo": "POLYGON ((4 4, 6 4, 6 6, 4 6, 4 4))"}]
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": data}))["insertCount"] == 3
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": "id > 0", "outputFields": ["geo"],
                                           "consistencyLevel": "Strong"}))
    assert {r["id"]: r["geo"] for r in got} == {1: "POINT (1 1)", 2: None, 3: "POLYGON ((4 4, 6 4, 6 6, 4 6, 4 4))"}
    got = ok(post(port, "entities/query", {"collectionName": name, "filter": "ST_CONTAINS(geo, 'POINT (5 5)')",
                                           "outputFields": ["id"], "consistencyLevel": "Strong"}))
    assert [r["id"] for r in got] == [3] == _ids(client, name, "ST_CONTAINS(geo, 'POINT (5 5)')",
                                                  consistency_level="Strong")
    _, body = post(port, "entities/insert", {"collectionName": name, "data": [{"id": 9, "vec": [0, 0], "geo": "x"}]})
    assert body["code"] == 1100 and "invalid Geometry data" in body["message"]


def test_restart_keeps_geometry(tmp_path):
    from tests.conftest import free_port, start_standalone

    port = free_port()
    node = start_standalone(tmp_path, port)
    wkts = _wkt(60, 9)
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        _create(c, "geo_restart", _schema([("maybe", {"nullable": True})]))
        rows = [{"id": i, "vec": _center(w), "geo": w, "maybe": None if i % 4 else w} for i, w in enumerate(wkts)]
        c.insert("geo_restart", rows[:40])
        c.flush("geo_restart")  # sealed, in segment files
        c.insert("geo_restart", rows[40:])  # in the log only
        before = _ids(c, "geo_restart", f"ST_INTERSECTS(geo, '{BOX}')")
        c.close()
        node.stop()
        node = start_standalone(tmp_path, port)
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.load_collection("geo_restart")
        got = {r["id"]: (r["geo"], r["maybe"])
               for r in c.query("geo_restart", filter="id >= 0", output_fields=["geo", "maybe"], limit=100)}
        assert got == {i: (w, None if i % 4 else w) for i, w in enumerate(wkts)}
        assert _ids(c, "geo_restart", f"ST_INTERSECTS(geo, '{BOX}')") == before == [
            i for i, w in enumerate(wkts) if shapely.from_wkt(w).intersects(shapely.from_wkt(BOX))]
        assert _ids(c, "geo_restart", "maybe is not null") == list(range(0, 60, 4))
        assert c.describe_index("geo_restart", "geo")["index_type"] == "RTREE"
        c.close()
    finally:
        node.stop()

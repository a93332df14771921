"""TIMESTAMPTZ fields (Milvus 2.6, data type 26) through pymilvus on every deployment: ISO 8601 strings
with offsets in, UTC RFC 3339 strings out (query and search), comparisons with ISO '...' literals in
filters over sealed and growing rows, against a reference computed here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

N = 120


def _iso_out(dt: datetime) -> str:
    """Go's RFC3339Nano in UTC: fraction without trailing zeros."""
    dt = dt.astimezone(UTC)
    frac = f".{dt.microsecond:06d}".rstrip("0").rstrip(".")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def test_timestamptz_in_out_and_filters(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("tsz", DataType.TIMESTAMPTZ)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    idx.add_index("tsz", index_type="STL_SORT")  # sealed rows' filters through the sorted index
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(3)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    times = [base + timedelta(minutes=int(m), microseconds=int(u))
             for m, u in zip(rng.integers(0, 60 * 24 * 90, N), rng.integers(0, 4, N) * 250_000, strict=True)]
    offsets = [timedelta(hours=int(h)) for h in rng.integers(-8, 9, N)]
    sent = [t.astimezone(timezone(o)).isoformat() for t, o in zip(times, offsets, strict=True)]
    rows = [{"id": i, "vec": [float(i), 0.0], "tsz": sent[i]} for i in range(N)]
    client.insert(name, rows[:80])
    client.flush(name)
    client.insert(name, rows[80:])
    got = {r["id"]: r["tsz"] for r in client.query(name, filter="id >= 0", output_fields=["tsz"], limit=N)}
    assert got == {i: _iso_out(times[i]) for i in range(N)}
    for expr, lo, op in [("tsz > ISO '2025-02-01T08:00:00+08:00'", datetime(2025, 2, 1, tzinfo=UTC), "gt"),
                         ("tsz <= ISO '2025-01-15T12:30:00Z'", datetime(2025, 1, 15, 12, 30, tzinfo=UTC), "le"),
                         (f"tsz == ISO '{sent[7]}'", times[7], "eq"),
                         ("tsz + INTERVAL 'P10DT12H' > ISO '2025-02-01T00:00:00Z'",
                          datetime(2025, 2, 1, tzinfo=UTC) - timedelta(days=10, hours=12), "gt")]:
        want = sorted(i for i in range(N) if {"gt": times[i] > lo, "le": times[i] <= lo, "eq": times[i] == lo}[op])
        assert sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"], limit=N)) == want, expr
    hit = client.search(name, [[5.0, 0.0]], limit=1, output_fields=["tsz"],
                        filter="tsz >= ISO '2025-01-01T00:00:00Z'")[0][0]
    assert hit["id"] == 5 and hit["entity"]["tsz"] == _iso_out(times[5])
    with pytest.raises(MilvusException) as e:
        client.insert(name, [{"id": 999, "vec": [0.0, 0.0], "tsz": "yesterday"}])
    assert e.value.code == 1100 and "expected an ISO 8601 timestamp" in e.value.message
    with pytest.raises(MilvusException) as e:
        client.query(name, filter="tsz > ISO 'soon'")
    assert e.value.code == 1100 and "invalid ISO 8601 timestamp 'soon'" in e.value.message


def test_nullable_timestamptz(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("tsz", DataType.TIMESTAMPTZ, nullable=True)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": 1, "vec": [0.0, 0.0], "tsz": "2025-05-01T23:59:59+08:00"},
                         {"id": 2, "vec": [1.0, 0.0], "tsz": None}, {"id": 3, "vec": [2.0, 0.0]}])
    got = {r["id"]: r["tsz"] for r in client.query(name, filter="id > 0", output_fields=["tsz"])}
    assert got == {1: "2025-05-01T15:59:59Z", 2: None, 3: None}
    assert sorted(r["id"] for r in client.query(name, filter="tsz is null", output_fields=["id"])) == [2, 3]
    assert [r["id"] for r in client.query(name, filter="tsz < ISO '2026-01-01T00:00:00Z'")] == [1]
    # default values, zones and time_fields: test_timestamptz_zones.py

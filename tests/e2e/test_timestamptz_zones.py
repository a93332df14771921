"""TIMESTAMPTZ time zones (Milvus 2.6) through pymilvus on every deployment: the ``timezone`` of a
query or search over the collection's ``timezone`` property over its database's over UTC, for the
strings written back, for offset-less strings inserted (gRPC, REST, bulk import) and for offset-less
ISO literals in filters; ``time_fields``; ``default_value``; Milvus's errors for a bad zone."""

from __future__ import annotations

import io
import json
import time
import uuid

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, BulkInsertState, DataType, MilvusClient, MilvusException, RRFRanker, utility

from tests.e2e._helpers import orm  # noqa: F401 - fixture
from tests.e2e.test_bulk_import import objects  # noqa: F401 - fixture
from tests.e2e.test_rest import ok, post

# (id, what is inserted); the instants: 2025-01-01T00:00:00Z, 2025-07-01T12:00:00.5Z, 2024-12-31T16:00:00Z
ROWS = [(1, "2025-01-01T00:00:00Z"), (2, "2025-07-01T20:00:00.5+08:00"), (3, "2025-01-01T00:00:00+08:00")]


def _collection(client: MilvusClient, name: str, properties: dict | None = None, default: str | None = None) -> None:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    if default is None:
        schema.add_field("tsz", DataType.TIMESTAMPTZ, nullable=True)
    else:
        schema.add_field("tsz", DataType.TIMESTAMPTZ, default_value=default)
    client.create_collection(name, schema=schema, properties=properties or {})
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


def _insert(client: MilvusClient, name: str, rows=ROWS) -> None:
    client.insert(name, [{"id": i, "vec": [float(i), 0.0], "tsz": t} for i, t in rows])


def _query(client: MilvusClient, name: str, **kw) -> dict:
    return {r["id"]: r["tsz"] for r in client.query(name, filter="id > 0", output_fields=["tsz"], **kw)}


def _search(client: MilvusClient, name: str, **kw) -> dict:
    hits = client.search(name, [[0.0, 0.0]], limit=10, output_fields=["tsz"], **kw)[0]
    return {h["id"]: h["entity"]["tsz"] for h in hits}


def _bad_zone(call, zone: str = "error") -> None:
    with pytest.raises(MilvusException) as e:
        call()
    assert e.value.code == 1100 and f"unknown or invalid IANA Time Zone ID: {zone}" in e.value.message


def test_request_zone_over_collection_zone_over_utc(client, name):
    _collection(client, name)
    _insert(client, name)
    utc = {1: "2025-01-01T00:00:00Z", 2: "2025-07-01T12:00:00.5Z", 3: "2024-12-31T16:00:00Z"}
    assert _query(client, name) == _search(client, name) == utc
    shanghai = {1: "2025-01-01T08:00:00+08:00", 2: "2025-07-01T20:00:00.5+08:00", 3: "2025-01-01T00:00:00+08:00"}
    assert _query(client, name, timezone="Asia/Shanghai") == _search(client, name, timezone="Asia/Shanghai") == shanghai
    new_york = {1: "2024-12-31T19:00:00-05:00", 2: "2025-07-01T08:00:00.5-04:00", 3: "2024-12-31T11:00:00-05:00"}
    assert _query(client, name, timezone="America/New_York") == new_york  # daylight saving in July
    assert _query(client, name, timezone="Europe/London") == {  # zero offset: Z, as Go writes it
        1: "2025-01-01T00:00:00Z", 2: "2025-07-01T13:00:00.5+01:00", 3: "2024-12-31T16:00:00Z"}
    client.alter_collection_properties(name, {"timezone": "Asia/Shanghai"})
    assert client.describe_collection(name)["properties"]["timezone"] == "Asia/Shanghai"
    assert _query(client, name) == _search(client, name) == shanghai
    assert _query(client, name, timezone="America/New_York") == _search(client, name, timezone="America/New_York") \
        == new_york
    assert _query(client, name, timezone="UTC") == utc
    # an offset-less string is read in the collection's zone, so is an offset-less ISO literal
    _insert(client, name, [(4, "2025-03-01T09:30:00"), (5, "2025-03-01 09:30:00.25")])
    got = {r["id"]: r["tsz"] for r in client.query(name, filter="id >= 4", output_fields=["tsz"], timezone="UTC")}
    assert got == {4: "2025-03-01T01:30:00Z", 5: "2025-03-01T01:30:00.25Z"}
    assert [r["id"] for r in client.query(name, filter="tsz == ISO '2025-01-01T08:00:00'")] == [1]
    assert [r["id"] for r in client.query(name, filter="tsz == ISO '2025-01-01T08:00:00'", timezone="UTC")] == []
    assert [r["id"] for r in client.query(name, filter="tsz == ISO '2025-01-01T00:00:00'", timezone="UTC")] == [1]
    hits = client.search(name, [[0.0, 0.0]], limit=10, filter="tsz <= ISO '2025-01-01 00:00:00'")[0]
    assert [h["id"] for h in hits] == [3]  # 2024-12-31T16:00:00Z
    # a hybrid search's timezone (pymilvus sends it in each ANN request): its filters and its output
    ann = AnnSearchRequest([[0.0, 0.0]], "vec", {}, limit=10, expr="tsz <= ISO '2025-01-01 00:00:00'")
    hits = client.hybrid_search(name, [ann], RRFRanker(), limit=10, output_fields=["tsz"],
                                timezone="America/New_York")[0]  # 2025-01-01T05:00:00Z
    assert {h["id"]: h["entity"]["tsz"] for h in hits} == {1: new_york[1], 3: new_york[3]}
    client.delete(name, filter="tsz == ISO '2025-03-01T09:30:00'")  # a delete reads it in the collection's zone
    assert sorted(_query(client, name)) == [1, 2, 3, 5]
    # Milvus's words for a zone that is none
    _bad_zone(lambda: client.alter_collection_properties(name, {"timezone": "error"}))
    _bad_zone(lambda: client.query(name, filter="id > 0", timezone="error"))
    _bad_zone(lambda: client.search(name, [[0.0, 0.0]], limit=1, timezone="Mars/Olympus"), "Mars/Olympus")
    _bad_zone(lambda: client.create_collection(name + "_x", dimension=2, properties={"timezone": "Utc/Nowhere"}),
              "Utc/Nowhere")
    with pytest.raises(MilvusException) as e:
        _insert(client, name, [(9, "2025-01-01T00:00:00+15:00")])
    assert e.value.code == 1100 and "UTC offset hour 15 is out of the valid range [-12, 14]" in e.value.message
    client.drop_collection_properties(name, ["timezone"])
    assert _query(client, name) == utc | {5: "2025-03-01T01:30:00.25Z"}  # back to the database's: UTC


def test_time_fields(client, name):
    _collection(client, name)
    _insert(client, name, [*ROWS, (4, None)])
    got = {r["id"]: r["tsz"] for r in client.query(name, filter="id > 0", output_fields=["tsz"],
                                                   time_fields="year, month, day")}
    assert got == {1: [2025, 1, 1], 2: [2025, 7, 1], 3: [2024, 12, 31], 4: None}
    got = {r["id"]: r["tsz"] for r in client.query(name, filter="id <= 3", output_fields=["tsz"],
                                                   time_fields="year,month,day,hour,minute,second,microsecond",
                                                   timezone="Asia/Shanghai")}
    assert got == {1: [2025, 1, 1, 8, 0, 0, 0], 2: [2025, 7, 1, 20, 0, 0, 500000], 3: [2025, 1, 1, 0, 0, 0, 0]}
    hits = client.search(name, [[2.0, 0.0]], limit=1, output_fields=["tsz"], time_fields="HOUR minute",
                         timezone="America/New_York")[0]
    assert hits[0]["id"] == 2 and hits[0]["entity"]["tsz"] == [8, 0]
    with pytest.raises(MilvusException) as e:
        client.query(name, filter="id > 0", output_fields=["tsz"], time_fields="year, week")
    assert e.value.code == 1100 and "unsupported field for extraction: week" in e.value.message


def test_database_zone(client):
    db = "db_" + uuid.uuid4().hex[:10]
    _bad_zone(lambda: client.create_database(db, properties={"timezone": "error"}))
    client.create_database(db, properties={"timezone": "Asia/Tokyo"})
    try:
        client.use_database(db)
        name = "c_" + uuid.uuid4().hex[:10]
        _collection(client, name)
        _insert(client, name, [(1, "2025-01-01T09:00:00"), (2, "2025-01-01T00:00:00Z")])
        assert _query(client, name) == {1: "2025-01-01T09:00:00+09:00", 2: "2025-01-01T09:00:00+09:00"}
        _bad_zone(lambda: client.alter_database_properties(db, {"timezone": "error"}))
        client.alter_database_properties(db, {"timezone": "Europe/Berlin"})  # reaches collections made before
        assert _query(client, name) == {1: "2025-01-01T01:00:00+01:00", 2: "2025-01-01T01:00:00+01:00"}
        client.alter_collection_properties(name, {"timezone": "Asia/Kolkata"})  # the collection's first
        assert _query(client, name) == {1: "2025-01-01T05:30:00+05:30", 2: "2025-01-01T05:30:00+05:30"}
        assert _query(client, name, timezone="UTC") == {1: "2025-01-01T00:00:00Z", 2: "2025-01-01T00:00:00Z"}
        client.drop_collection(name)
    finally:
        client.use_database("default")
        client.drop_database(db)


def test_default_value(client, name):
    _collection(client, name, {"timezone": "Asia/Shanghai"}, default="2025-01-01T00:00:00")
    field = next(f for f in client.describe_collection(name)["fields"] if f["name"] == "tsz")
    assert field["default_value"].string_data == "2025-01-01T00:00:00+08:00"
    client.insert(name, [{"id": 1, "vec": [0.0, 0.0]}, {"id": 2, "vec": [1.0, 0.0], "tsz": None},
                         {"id": 3, "vec": [2.0, 0.0], "tsz": "2025-06-01T00:00:00Z"}])
    assert _query(client, name, timezone="UTC") == {1: "2024-12-31T16:00:00Z", 2: "2024-12-31T16:00:00Z",
                                                    3: "2025-06-01T00:00:00Z"}
    client.alter_collection_properties(name, {"timezone": "America/New_York"})
    field = next(f for f in client.describe_collection(name)["fields"] if f["name"] == "tsz")
    assert field["default_value"].string_data == "2024-12-31T11:00:00-05:00"
    client.add_collection_field(name, "later", DataType.TIMESTAMPTZ, nullable=True,
                                default_value="2025-02-01T12:00:00")  # in the collection's zone now
    rows = client.query(name, filter="id == 1", output_fields=["later"], timezone="UTC")
    assert rows == [{"id": 1, "later": "2025-02-01T17:00:00Z"}]
    bad = MilvusClient.create_schema()
    bad.add_field("id", DataType.INT64, is_primary=True)
    bad.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    bad.add_field("tsz", DataType.TIMESTAMPTZ, default_value="new year")
    with pytest.raises(MilvusException) as e:
        client.create_collection(name + "_d", schema=bad)
    assert e.value.code == 1100 and "invalid default value of field, name: tsz" in e.value.message


def _wait(job_id: int, alias: str, timeout: float = 60) -> BulkInsertState:
    deadline = time.monotonic() + timeout
    while True:
        st = utility.get_bulk_insert_state(job_id, using=alias)
        if st.state in (BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed) or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def test_bulk_import_and_rest_insert_in_the_collection_zone(server, client, name, orm, objects):  # noqa: F811
    _collection(client, name, {"timezone": "Asia/Shanghai"})
    prefix = f"imports/{uuid.uuid4().hex}"
    objects.put(f"{prefix}/rows.json", json.dumps({"rows": [
        {"id": 1, "vec": [1.0, 0.0], "tsz": "2025-01-01T08:00:00"},
        {"id": 2, "vec": [2.0, 0.0], "tsz": "2025-01-01T08:00:00-05:00"},
        {"id": 3, "vec": [3.0, 0.0], "tsz": None}]}).encode())
    for key, arr in (("id", np.array([4, 5])), ("vec", np.array([[4.0, 0.0], [5.0, 0.0]], np.float32)),
                     ("tsz", np.array(["2025-05-01 12:00:00", "2025-05-01T12:00:00Z"]))):
        buf = io.BytesIO()
        np.save(buf, arr)
        objects.put(f"{prefix}/np/{key}.npy", buf.getvalue())
    job = utility.do_bulk_insert(name, files=[f"{prefix}/rows.json"], using=orm)
    assert _wait(job, orm).state == BulkInsertState.ImportCompleted
    job = utility.do_bulk_insert(name, files=[f"{prefix}/np/{k}.npy" for k in ("id", "vec", "tsz")], using=orm)
    st = _wait(job, orm)
    assert st.state == BulkInsertState.ImportCompleted, st.infos
    ok(post(server.http_ports[0], "entities/insert", {"collectionName": name, "data": [
        {"id": 6, "vec": [6.0, 0.0], "tsz": "2025-09-09T09:09:09"}, {"id": 7, "vec": [7.0, 0.0]}]}))
    got = {r["id"]: r["tsz"] for r in client.query(name, filter="id > 0", output_fields=["tsz"], timezone="UTC",
                                                   consistency_level="Strong")}
    assert got == {1: "2025-01-01T00:00:00Z", 2: "2025-01-01T13:00:00Z", 3: None, 4: "2025-05-01T04:00:00Z",
                   5: "2025-05-01T12:00:00Z", 6: "2025-09-09T01:09:09Z", 7: None}
    # REST reads answer in the collection's zone too
    rows = ok(post(server.http_ports[0], "entities/query", {"collectionName": name, "filter": "id in [1, 6]",
                                                            "outputFields": ["tsz"], "consistencyLevel": "Strong"}))
    assert {r["id"]: r["tsz"] for r in rows} == {1: "2025-01-01T08:00:00+08:00", 6: "2025-09-09T09:09:09+08:00"}

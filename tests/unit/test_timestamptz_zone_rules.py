"""TIMESTAMPTZ in time zones (Milvus 2.6): zone names and precedence, offset-less strings read in a
zone (Go's rule at a change of offset), RFC 3339 output with offsets against a per-row reference,
time_fields parts, offset-less ISO literals in filters, default values, the properties' checks, the
columns of a reply and of an insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import importer
from vecdb.coord.properties import check_collection_properties, check_database_properties
from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.expr.local_time import localize_iso_literals
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.fieldencode import field_data_from_columns, fill_field_data
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.timestamptz import (
    TimeOutput,
    check_zone,
    format_column,
    parse_column,
    parse_iso,
    time_output,
    time_parts,
    utc_offsets,
    zone_of,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(text: str) -> int:
    return parse_iso(text)


def _reference(us: int, zone: str) -> str:
    """Go's RFC3339Nano of one instant in ``zone``, row by row through zoneinfo."""
    local = (EPOCH + timedelta(microseconds=us)).astimezone(ZoneInfo(zone))
    off = local.utcoffset()
    assert off is not None
    secs = off.days * 86400 + off.seconds
    frac = f".{local.microsecond:06d}".rstrip("0").rstrip(".")
    minutes = abs(secs) // 60
    suffix = "Z" if secs == 0 else f"{'-' if secs < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + frac + suffix


def test_zone_names_and_precedence():
    for good in ("UTC", "Asia/Shanghai", "America/New_York", "Etc/GMT+8", "Australia/Lord_Howe"):
        assert check_zone(good) == good
    for bad in ("", "error", "utc", "Local", "America", "zone.tab", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(InvalidParameter, match=f"^unknown or invalid IANA Time Zone ID: {bad}$"):
            check_zone(bad)
    # request > collection > database > UTC
    assert zone_of({}, {}) == "UTC"
    assert zone_of({}, {"timezone": "Asia/Tokyo"}) == "Asia/Tokyo"
    assert zone_of({"timezone": "Europe/Paris"}, {"timezone": "Asia/Tokyo"}) == "Europe/Paris"
    assert time_output({"timezone": "America/Chicago"}, "Europe/Paris") == TimeOutput("America/Chicago", ())
    assert time_output({"timezone": ""}, "Europe/Paris") == TimeOutput("Europe/Paris", ())
    assert time_output({"time_fields": "year, month,,day  hour"}, "UTC").fields == ("year", "month", "day", "hour")
    with pytest.raises(InvalidParameter, match="^unknown or invalid IANA Time Zone ID: Mars/Base$"):
        time_output({"timezone": "Mars/Base"}, "UTC")


def test_offsetless_strings_read_in_a_zone():
    assert parse_iso("2025-05-01T23:59:59", "Asia/Shanghai") == _us("2025-05-01T15:59:59Z")
    assert parse_iso("2025-05-01 23:59:59.5", "Asia/Kolkata") == _us("2025-05-01T18:29:59.5Z")
    assert parse_iso("2025-05-01T23:59:59+02:00", "Asia/Shanghai") == _us("2025-05-01T21:59:59Z")  # its own
    assert parse_iso("2025-05-01T23:59:59") == _us("2025-05-01T23:59:59Z")  # no zone: UTC
    # Go's time.Date at a change of offset: a skipped time takes the offset after it, a repeated one
    # the first offset found (New York: the earlier reading; London, whose GMT is offset 0: the later)
    assert parse_iso("2025-03-09T02:30:00", "America/New_York") == _us("2025-03-09T06:30:00Z")
    assert parse_iso("2025-11-02T01:30:00", "America/New_York") == _us("2025-11-02T05:30:00Z")
    assert parse_iso("2025-03-30T01:30:00", "Europe/London") == _us("2025-03-30T01:30:00Z")
    assert parse_iso("2025-10-26T01:30:00", "Europe/London") == _us("2025-10-26T01:30:00Z")
    assert parse_column(["2025-01-01T00:00:00", "2025-01-01T00:00:00Z"], "t", "Asia/Tokyo").tolist() == [
        _us("2024-12-31T15:00:00Z"), _us("2025-01-01T00:00:00Z")]
    # Milvus's range of offsets, [-12, +14], and its words
    assert parse_iso("2025-01-01T00:00:00+14:00") == _us("2024-12-31T10:00:00Z")
    assert parse_iso("2025-01-01T00:00:00-12:00") == _us("2025-01-01T12:00:00Z")
    for text, hour in (("2025-01-01T00:00:00+14:30", 14), ("2025-01-01T00:00:00-12:30", -12),
                       ("2025-01-01T00:00:00+15:00", 15)):
        with pytest.raises(InvalidParameter, match=rf"^UTC offset hour {hour} is out of the valid range \[-12, 14\]$"):
            parse_iso(text)
    with pytest.raises(InvalidParameter, match="^unknown or invalid IANA Time Zone ID: Nowhere$"):
        parse_iso("2025-01-01T00:00:00", "Nowhere")


def test_output_in_zones_exact():
    us = np.array([_us("2025-05-01T23:59:59+08:00"), _us("2025-01-01T00:00:00.25Z"), 0, -1], np.int64)
    assert format_column(us) == ["2025-05-01T15:59:59Z", "2025-01-01T00:00:00.25Z", "1970-01-01T00:00:00Z",
                                 "1969-12-31T23:59:59.999999Z"]
    assert format_column(us, "Asia/Shanghai") == [
        "2025-05-01T23:59:59+08:00", "2025-01-01T08:00:00.25+08:00", "1970-01-01T08:00:00+08:00",
        "1970-01-01T07:59:59.999999+08:00"]
    assert format_column(us, "America/New_York") == [
        "2025-05-01T11:59:59-04:00", "2024-12-31T19:00:00.25-05:00", "1969-12-31T19:00:00-05:00",
        "1969-12-31T18:59:59.999999-05:00"]
    # Go writes Z wherever the offset is zero (London in winter), hh:mm otherwise (seconds of an old
    # local mean time dropped: Shanghai's +08:05:43 before 1901)
    assert format_column(us[1:2], "Europe/London") == ["2025-01-01T00:00:00.25Z"]
    assert format_column(us[:1], "Asia/Kolkata") == ["2025-05-01T21:29:59+05:30"]
    assert format_column(np.array([_us("1900-01-01T00:00:00+08:00")]), "Asia/Shanghai") == [
        "1900-01-01T00:05:43+08:05"]
    assert format_column(np.zeros(0, np.int64), "Asia/Shanghai") == []


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Tehran",
                                  "America/Sao_Paulo", "Pacific/Chatham", "Africa/Casablanca", "Etc/GMT-14"])
def test_output_matches_a_row_by_row_reference(zone):
    """Offsets are looked up per day: rows on days with a change of offset, and around it, still
    get each their own."""
    rng = np.random.default_rng(7)
    wide = rng.integers(_us("1890-01-01T00:00:00Z"), _us("2060-01-01T00:00:00Z"), 300)
    tz = ZoneInfo(zone)
    near = []  # instants within an hour of every change of offset in 2000..2030
    t = datetime(2000, 1, 1, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    while t.year < 2030:
        t += timedelta(hours=1)
        cur = t.astimezone(tz).utcoffset()
        if cur != prev:
            base = int((t - EPOCH) / timedelta(microseconds=1))
            near.extend(base + rng.integers(-7_200_000_000, 3_600_000_000, 6))
        prev = cur
    us = np.concatenate([wide, np.asarray(near, np.int64), [0, -1, 1]]).astype(np.int64)
    assert format_column(us, zone) == [_reference(u, zone) for u in us.tolist()]
    offsets = utc_offsets(us, zone)
    assert offsets.tolist() == [int((EPOCH + timedelta(microseconds=u)).astimezone(tz).utcoffset()
                                    .total_seconds()) for u in us.tolist()]
    # and back: each string parses to its instant (an offset in whole minutes: Go drops the seconds)
    whole = us[offsets % 60 == 0]
    assert parse_column(format_column(whole, zone), "t").tolist() == whole.tolist()


def test_time_parts():
    us = np.array([_us("2024-12-31T16:30:05.123456Z"), _us("1969-12-31T23:59:59.999999Z")], np.int64)
    names = ("year", "month", "day", "hour", "minute", "second", "microsecond")
    assert time_parts(us, "UTC", names).tolist() == [[2024, 12, 31, 16, 30, 5, 123456],
                                                      [1969, 12, 31, 23, 59, 59, 999999]]
    assert time_parts(us, "Asia/Shanghai", names).tolist() == [[2025, 1, 1, 0, 30, 5, 123456],
                                                                [1970, 1, 1, 7, 59, 59, 999999]]
    assert time_parts(us, "America/New_York", ("Day", "HOUR")).tolist() == [[31, 11], [31, 18]]  # any case
    with pytest.raises(InvalidParameter, match="^unsupported field for extraction: week, fields should be "
                                               "seprated by ',' or ' '$"):
        time_parts(us, "UTC", ("year", "week"))
    assert time_parts(us[:0], "UTC", ("week",)).shape == (0, 1)  # as Milvus: no value, no error


def test_offsetless_literals_in_filters():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                    FieldSchema("t", DataType.TIMESTAMPTZ)])
    expr = "t >= ISO '2025-01-01T08:00:00' and t < iso \"2025-01-02 08:00:00\" or t == ISO '2024-01-01T00:00:00Z'"
    assert localize_iso_literals(expr, "Asia/Shanghai") == (
        "t >= ISO '2025-01-01T00:00:00Z' and t < iso '2025-01-02T00:00:00Z' or t == ISO '2024-01-01T00:00:00Z'")
    assert localize_iso_literals(expr, "UTC") == expr
    assert localize_iso_literals("name == 'iso'", "Asia/Shanghai") == "name == 'iso'"
    assert localize_iso_literals("t > ISO 'soon'", "Asia/Shanghai") == "t > ISO 'soon'"  # the compile reports it
    col = parse_column(["2025-01-01T00:00:00Z", "2025-01-01T23:59:59Z", "2025-01-02T00:00:00Z"], "t")
    flt = compile_filter(localize_iso_literals(expr, "Asia/Shanghai"), schema)
    assert flt.evaluate({"t": col}, 3).tolist() == [True, True, False]
    flt = compile_filter(localize_iso_literals(expr, "UTC"), schema)
    assert flt.evaluate({"t": col}, 3).tolist() == [False, True, True]


def _schema(default: str | None = None, zone: str = "UTC", kind: str = "string_data") -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=schema_pb2.Int64, is_primary_key=True)
    pb.fields.add(name="v", data_type=schema_pb2.FloatVector, type_params=[{"key": "dim", "value": "2"}])
    t = pb.fields.add(name="t", data_type=schema_pb2.Timestamptz, nullable=True)
    if default is not None:
        setattr(t.default_value, kind, default)  # type: ignore[arg-type]
    return CollectionSchema.from_proto(pb, "c", zone)


def test_default_values():
    s = _schema("2025-01-01T00:00:00", "Asia/Shanghai")  # no offset: the collection's zone
    assert s.field("t").default_value == _us("2024-12-31T16:00:00Z")
    assert _schema("2025-01-01T00:00:00+09:00", "Asia/Shanghai").field("t").default_value == _us(
        "2024-12-31T15:00:00Z")
    assert _schema(_us("2025-01-01T00:00:00Z"), kind="timestamptz_data").field("t").default_value == _us(  # type: ignore[arg-type]
        "2025-01-01T00:00:00Z")
    out = schema_pb2.CollectionSchema()
    s.to_proto(out, "America/New_York")  # described as a string in the collection's zone
    assert out.fields[2].default_value.string_data == "2024-12-31T11:00:00-05:00"
    out = schema_pb2.CollectionSchema()
    s.to_proto(out)
    assert out.fields[2].default_value.string_data == "2024-12-31T16:00:00Z"
    assert CollectionSchema.from_dict(s.to_dict()).field("t").default_value == s.field("t").default_value
    with pytest.raises(InvalidParameter, match="^invalid default value of field, name: t, err: invalid timestamptz "
                                               "value 'tomorrow': expected an ISO 8601 timestamp$"):
        _schema("tomorrow")
    with pytest.raises(InvalidParameter, match="UTC offset hour 15 is out of the valid range"):
        _schema("2025-01-01T00:00:00+15:00")
    # rows without a value take it
    fd = schema_pb2.FieldData(field_name="t", type=schema_pb2.Timestamptz, valid_data=[True, False])
    fd.scalars.string_data.data.extend(["2025-06-01T12:00:00"])
    ids = schema_pb2.FieldData(field_name="id", type=schema_pb2.Int64)
    ids.scalars.long_data.data.extend([1, 2])
    vec = schema_pb2.FieldData(field_name="v", type=schema_pb2.FloatVector)
    vec.vectors.dim = 2
    vec.vectors.float_vector.data.extend([0.0] * 4)
    cols = columns_from_field_data(s, [ids, vec, fd], 2, zone="Asia/Shanghai")
    assert cols["t"].tolist() == [_us("2025-06-01T04:00:00Z"), _us("2024-12-31T16:00:00Z")]


def test_cdc_replays_a_default_as_a_utc_string():
    from vecdb.cdc.target import field_kwargs

    f = _schema("2025-01-01T00:00:00", "Asia/Shanghai").field("t")
    assert field_kwargs(f)["default_value"] == "2024-12-31T16:00:00Z"


def test_property_checks():
    check_collection_properties({"timezone": "Asia/Shanghai", "collection.ttl.seconds": "10"})
    check_database_properties({"timezone": "UTC", "database.max.collections": "3"})
    for check in (check_collection_properties, check_database_properties):
        for bad in ("error", ""):
            with pytest.raises(InvalidParameter, match=f"^unknown or invalid IANA Time Zone ID: {bad}$"):
                check({"timezone": bad})


def test_reply_columns():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True, field_id=100),
                                    FieldSchema("t", DataType.TIMESTAMPTZ, field_id=101, nullable=True)])
    cols = {"id": np.array([1, 2]), "t": np.array([_us("2025-05-01T15:59:59Z"), 0], np.int64),
            "$valid.t": np.array([True, False])}
    out = milvus_pb2.QueryResults()
    fill_field_data(out.fields_data.add, schema, cols, ["t"], None, TimeOutput("Asia/Shanghai"))
    fd = out.fields_data[0]
    assert fd.type == DataType.TIMESTAMPTZ and list(fd.valid_data) == [True, False]
    assert list(fd.scalars.string_data.data) == ["2025-05-01T23:59:59+08:00", "1970-01-01T08:00:00+08:00"]
    out = milvus_pb2.QueryResults()
    fill_field_data(out.fields_data.add, schema, cols, ["t"], None, TimeOutput("Asia/Shanghai", ("year", "hour")))
    fd = out.fields_data[0]
    assert fd.type == DataType.ARRAY and fd.scalars.array_data.element_type == DataType.INT64
    assert [list(r.long_data.data) for r in fd.scalars.array_data.data] == [[2025, 23], [1970, 8]]
    assert list(fd.valid_data) == [True, False]
    # strings (an insert built from rows) go as they are
    text = np.array(["2025-01-01T00:00:00", "1970-01-01T00:00:00Z"], object)
    fd = field_data_from_columns(schema, {"t": text, "$valid.t": np.array([True, False])}, ["t"])[0]
    assert list(fd.scalars.string_data.data) == ["2025-01-01T00:00:00", "1970-01-01T00:00:00Z"]


def test_numpy_import_column():
    f = FieldSchema("t", DataType.TIMESTAMPTZ)
    col = importer._numpy_column(f, np.array(["2025-01-01T00:00:00", "2025-01-01T00:00:00+08:00"]), "t.npy")
    assert col.dtype == object and col.tolist() == ["2025-01-01T00:00:00", "2025-01-01T00:00:00+08:00"]
    with pytest.raises(InvalidParameter, match="needs strings"):
        importer._numpy_column(f, np.array([1, 2]), "t.npy")

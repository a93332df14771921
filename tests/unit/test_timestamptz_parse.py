"""vecdb.timestamptz: ISO 8601 parsing to UTC microseconds and RFC 3339 output, round trips on random
instants and offsets; ISO literals in filters compare with the column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.timestamptz import format_column, parse_column, parse_interval, parse_iso


def test_parse_and_format_round_trip():
    rng = np.random.default_rng(0)
    us = rng.integers(-10**15, 4 * 10**15, 500)
    us[:3] = [0, 1, -1]
    text = format_column(us)
    assert text[:3] == ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z", "1969-12-31T23:59:59.999999Z"]
    assert parse_column(text, "t").tolist() == us.tolist()
    for u in us[3:50].tolist():  # the same instant written with an offset
        dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=u)
        off = timezone(timedelta(hours=int(rng.integers(-12, 13)), minutes=int(rng.choice([0, 30]))))
        assert parse_iso(dt.astimezone(off).isoformat()) == u
    assert parse_iso("2025-05-01 23:59:59") == parse_iso("2025-05-01T23:59:59Z")  # no offset: UTC
    with pytest.raises(InvalidParameter, match="field t: invalid timestamptz value 'x'"):
        parse_column(["2025-01-01T00:00:00Z", "x"], "t")


def test_iso_literals_in_filters():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                    FieldSchema("t", DataType.TIMESTAMPTZ)])
    col = parse_column(["2025-01-01T00:00:00Z", "2025-01-01T08:00:00+08:00", "2025-06-01T00:00:00-05:00"], "t")
    flt = compile_filter("t == ISO '2025-01-01T00:00:00+00:00'", schema)
    assert flt.evaluate({"t": col}, 3).tolist() == [True, True, False]
    flt = compile_filter("t > ISO '2025-05-31T23:00:00-04:00' or t < ISO '2024-12-31T19:00:01-05:00'", schema)
    assert flt.evaluate({"t": col}, 3).tolist() == [True, True, True]
    with pytest.raises(InvalidParameter, match="invalid ISO 8601 timestamp 'nope' at column 9"):
        compile_filter("t < ISO 'nope'", schema)
    # INTERVAL: a duration in microseconds, added to or subtracted from the field
    flt = compile_filter("t + INTERVAL 'P150DT1H' >= ISO '2025-06-01T00:00:00Z'", schema)
    assert flt.evaluate({"t": col}, 3).tolist() == [False, False, True]
    flt = compile_filter("t - INTERVAL 'PT8H' < ISO '2024-12-31T16:00:00.5Z'", schema)
    assert flt.evaluate({"t": col}, 3).tolist() == [True, True, False]
    with pytest.raises(InvalidParameter, match="years and months are not supported"):
        compile_filter("t + INTERVAL 'P1M' > ISO '2025-01-01T00:00:00Z'", schema)


def test_intervals():
    assert [parse_interval(s) for s in ("P1D", "PT1H30M", "P1DT0.5S", "P2W", "pt0s")] == [
        86_400_000_000, 5_400_000_000, 86_400_500_000, 1_209_600_000_000, 0]
    for bad in ("P", "PT", "P1DT", "1D", "P1.5D"):
        with pytest.raises(InvalidParameter, match="invalid ISO 8601 duration"):
            parse_interval(bad)

"""TIMESTAMPTZ fields (Milvus 2.6, data type 26): ISO 8601 strings in and out, int64 microseconds
since the Unix epoch (UTC) in the column.

In: what pymilvus sends (``string_data``), each string parsed by ``datetime.fromisoformat`` (ISO
8601 with ``Z`` or a ``+hh:mm`` offset, ``T`` or a space between date and time); a string without an
offset is UTC (the collection and database ``timezone`` settings are not kept here). Out: UTC in
RFC 3339 form, as Go's ``time.RFC3339Nano`` writes it (``2025-05-01T15:59:59Z``,
``2025-05-01T15:59:59.25Z``: fraction without trailing zeros). Filters compare the field with
``ISO '2025-01-01T00:00:00+08:00'`` literals (vecdb.expr.parser), in UTC, also after adding or
subtracting ``INTERVAL 'P1DT2H'`` durations (weeks to seconds; years and months are refused).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np

from vecdb.errors import InvalidParameter

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_iso(text: str) -> int:
    """Microseconds since the epoch (UTC) of one ISO 8601 string; InvalidParameter if it is none."""
    try:
        dt = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise InvalidParameter(f"invalid timestamptz value {text!r}: expected an ISO 8601 timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_column(values, field_name: str) -> np.ndarray:
    """A column of ISO strings as int64 microseconds (one parse per row: the strings carry offsets)."""
    try:
        return np.fromiter((parse_iso(v) for v in values), np.int64, len(values))
    except InvalidParameter as e:
        raise InvalidParameter(f"field {field_name}: {e.message}") from None


def format_column(us: np.ndarray) -> list[str]:
    """int64 microseconds as RFC 3339 UTC strings (vectorised through numpy's datetime64)."""
    text = np.datetime_as_string(np.asarray(us, np.int64).astype("datetime64[us]"), unit="us")
    trimmed = np.char.rstrip(np.char.rstrip(text, "0"), ".")  # the fraction always has a '.' before it
    return [s + "Z" for s in trimmed.tolist()]


_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d{1,6}))?S)?)?", re.ASCII)


def parse_interval(text: str) -> int:
    """An ISO 8601 duration (``P1DT2H30M``, ``PT0.5S``, ``P2W``) as microseconds; years and months
    (calendar lengths) are refused here."""
    s = str(text).strip().upper()
    m = _DURATION.fullmatch(s)
    if m is None or s in ("P", "PT"):
        raise InvalidParameter(f"invalid ISO 8601 duration {text!r}")
    years, months, weeks, days, hours, minutes, seconds, frac = m.groups()
    if years or months:
        raise InvalidParameter(f"INTERVAL {text!r}: years and months are not supported, use days")
    total = (((int(weeks or 0) * 7 + int(days or 0)) * 24 + int(hours or 0)) * 60 + int(minutes or 0)) * 60
    total += int(seconds or 0)
    return total * 1_000_000 + int((frac or "").ljust(6, "0") or 0)

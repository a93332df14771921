"""TIMESTAMPTZ fields (Milvus 2.6, data type 26): ISO 8601 strings in and out, int64 microseconds
since the Unix epoch (UTC) in the column.

In: what pymilvus sends (``string_data``), each string parsed by ``datetime.fromisoformat`` (ISO
8601 with ``Z`` or a ``+hh:mm`` offset, ``T`` or a space between date and time). An offset must lie
in [-12:00, +14:00] (Milvus's ``validateOffset``). A string without an offset is a wall-clock time in
the collection's time zone (``zone_of``: its ``timezone`` property, else its database's, else UTC),
turned into an instant the way Go's ``time.ParseInLocation`` does (``walls_to_utc``).

Out: RFC 3339 as Go's ``time.RFC3339Nano`` writes it, in the reply's zone (the request's
``timezone`` parameter, else the collection's): ``2025-05-01T15:59:59Z``,
``2025-05-01T23:59:59.25+08:00`` (fraction without trailing zeros, ``Z`` wherever the offset is
zero, the offset's seconds dropped). With ``time_fields`` (``"year, month, day"``) a value comes
back as those parts, integers, in that zone (``time_parts``). Offsets come from the tz database
through ``zoneinfo``, looked up once per distinct day of a column (``utc_offsets``).

Filters compare the field with ``ISO '2025-01-01T00:00:00+08:00'`` literals (vecdb.expr.parser; one
without an offset is read in the reply's zone, ``vecdb.expr.local_time``), in UTC, also after adding
or subtracting ``INTERVAL 'P1DT2H'`` durations (weeks to seconds; years and months are refused).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from vecdb.errors import InvalidParameter

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_TEXT = "1970-01-01T00:00:00Z"  # the value a null row holds (its placeholder 0)
_DAY_US = 86_400_000_000
DEFAULT_ZONE = "UTC"  # Milvus's common.DefaultTimezone
# The collection and database property, and the query / search parameter (Milvus's common.TimezoneKey)
ZONE_KEY = "timezone"
TIME_FIELDS_KEY = "time_fields"  # the query / search parameter (Milvus's TimefieldsKey)
_MIN_OFFSET_S, _MAX_OFFSET_S = -12 * 3600, 14 * 3600  # Milvus's (and PostgreSQL's) range of UTC offsets
_PARTS = ("year", "month", "day", "hour", "minute", "second", "microsecond")  # Milvus's common.Tsz*


# --- time zones -----------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _tz(name: str) -> tzinfo | None:
    if name == DEFAULT_ZONE:  # as Go's LoadLocation: no file needed
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found (ZoneInfoNotFoundError is a KeyError), no TZif file
        return None


def check_zone(name: str) -> str:
    """``name`` when it names a zone of the IANA tz database (``Asia/Shanghai``, ``UTC``,
    ``Etc/GMT+8``: the files Go's ``time.LoadLocation`` reads, case as written); InvalidParameter
    with Milvus's words otherwise, the empty name included."""
    if not name or _tz(name) is None:
        raise InvalidParameter(f"unknown or invalid IANA Time Zone ID: {name}")
    return name


def _zone(name: str) -> tzinfo:
    tz = _tz(check_zone(name))
    assert tz is not None
    return tz


def zone_of(collection: Mapping[str, str], database: Mapping[str, str]) -> str:
    """The zone of a collection's TIMESTAMPTZ fields: its ``timezone`` property, else its database's,
    else UTC. Read at each call, so ``alter_database_properties`` reaches collections already made
    (Milvus 2.6 copies the database's zone into a collection when it is created instead, milvus#45538)."""
    return collection.get(ZONE_KEY) or database.get(ZONE_KEY) or DEFAULT_ZONE


def _offset_s(us: int, tz: tzinfo) -> int:
    """The UTC offset (seconds) of ``tz`` at the instant ``us``; 0 beyond the years 1..9999."""
    try:
        off = (_EPOCH + timedelta(microseconds=us)).astimezone(tz).utcoffset()
    except OverflowError:
        return 0
    return 0 if off is None else off.days * 86400 + off.seconds


@lru_cache(maxsize=1 << 16)
def _day_offsets(zone: str, day: int) -> tuple[int, int]:
    """The offsets at the first and at the last microsecond of UTC day ``day``."""
    tz = _zone(zone)
    return _offset_s(day * _DAY_US, tz), _offset_s((day + 1) * _DAY_US - 1, tz)


def utc_offsets(us: np.ndarray, zone: str) -> np.ndarray:
    """int64 UTC offsets (seconds) of ``zone`` at each instant of ``us``: looked up per distinct UTC
    day (cached), per row only on the days that hold a change of offset. (Two changes within one
    day that cancel out would go unseen: the tz database has none.)"""
    us = np.asarray(us, np.int64)
    if not len(us):
        return np.zeros(0, np.int64)
    days, inv = np.unique(np.floor_divide(us, _DAY_US), return_inverse=True)
    bounds = np.array([_day_offsets(zone, d) for d in days.tolist()], np.int64).reshape(-1, 2)
    out = bounds[inv.reshape(-1), 0]
    tz = _zone(zone)
    for i in np.flatnonzero(bounds[inv.reshape(-1), 1] != out).tolist():
        out[i] = _offset_s(int(us[i]), tz)
    return out


def walls_to_utc(wall: np.ndarray, zone: str) -> np.ndarray:
    """The instants of wall-clock times ``wall`` (int64 microseconds as if UTC) in ``zone``, as Go's
    ``time.Date`` finds them: the offset in force at the wall time read as UTC; when it is not zero,
    the offset in force at the instant that gives (the same unless a change of offset lies between).
    A time that a change of offset skips or repeats so gets the one reading Milvus gives it."""
    wall = np.asarray(wall, np.int64)
    if zone == DEFAULT_ZONE or not len(wall):
        return wall
    off = utc_offsets(wall, zone)
    later = utc_offsets(wall - off * 1_000_000, zone)
    return wall - np.where(off != 0, later, 0) * 1_000_000


def _since_epoch(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


# --- in ----------------------------------------------------------------------------------------
def _parse(text: str) -> tuple[int, bool]:
    """(microseconds since the epoch, whether the string had no offset: they are then its wall-clock
    time read as UTC)."""
    try:
        dt = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise InvalidParameter(f"invalid timestamptz value {text!r}: expected an ISO 8601 timestamp") from None
    if dt.tzinfo is None:
        return _since_epoch(dt.replace(tzinfo=UTC)), True
    off = dt.utcoffset()
    secs = 0 if off is None else off.days * 86400 + off.seconds
    if not _MIN_OFFSET_S <= secs <= _MAX_OFFSET_S:  # Go's integer division: the hour towards zero
        raise InvalidParameter(f"UTC offset hour {int(secs / 3600)} is out of the valid range [-12, 14]")
    return _since_epoch(dt), False


def parse_iso(text: str, zone: str = DEFAULT_ZONE) -> int:
    """Microseconds since the epoch (UTC) of one ISO 8601 string, one without an offset read in
    ``zone``; InvalidParameter if it is none, or its offset is out of [-12:00, +14:00]."""
    us, wall = _parse(text)
    return int(walls_to_utc(np.array([us], np.int64), zone)[0]) if wall else us


def parse_column(values, field_name: str, zone: str = DEFAULT_ZONE) -> np.ndarray:
    """A column of ISO strings as int64 microseconds: one parse per row (the strings carry offsets),
    then the ones without an offset read in ``zone`` together (``walls_to_utc``)."""
    try:
        parsed = [_parse(v) for v in values]
    except InvalidParameter as e:
        raise InvalidParameter(f"field {field_name}: {e.message}") from None
    us = np.fromiter((p[0] for p in parsed), np.int64, len(parsed))
    if zone != DEFAULT_ZONE:
        wall = np.fromiter((p[1] for p in parsed), np.bool_, len(parsed))
        if wall.any():
            us[wall] = walls_to_utc(us[wall], zone)
    return us


# --- out ---------------------------------------------------------------------------------------
def _wall_text(us: np.ndarray) -> np.ndarray:
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    return np.char.rstrip(np.char.rstrip(text, "0"), ".")  # the fraction always has a '.' before it


def _offset_text(secs: int) -> str:
    """Go's ``Z07:00``: ``Z`` for a zero offset, else the sign and hh:mm (seconds dropped, towards zero)."""
    if secs == 0:
        return "Z"
    minutes = abs(secs) // 60
    return f"{'-' if secs < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


def format_column(us: np.ndarray, zone: str = DEFAULT_ZONE) -> list[str]:
    """int64 microseconds as RFC 3339 strings in ``zone`` (vectorised through numpy's datetime64)."""
    us = np.asarray(us, np.int64)
    if zone == DEFAULT_ZONE:
        return [s + "Z" for s in _wall_text(us).tolist()]
    if not len(us):
        return []
    off = utc_offsets(us, zone)
    kinds, inv = np.unique(off, return_inverse=True)
    suffix = np.array([_offset_text(k) for k in kinds.tolist()])[inv.reshape(-1)]
    return np.char.add(_wall_text(us + off * 1_000_000), suffix).tolist()


def format_one(us: int, zone: str = DEFAULT_ZONE) -> str:
    """One instant as ``format_column`` writes it."""
    return format_column(np.array([us], np.int64), zone)[0]


def time_parts(us: np.ndarray, zone: str, names: tuple[str, ...]) -> np.ndarray:
    """Milvus's ``time_fields``: an (n, len(names)) int64 array of each instant's parts in ``zone``,
    ``names`` from year, month, day, hour, minute, second, microsecond (any case). An unknown name is
    InvalidParameter in Milvus's words, as in Milvus only when there is a value to take it from."""
    us = np.asarray(us, np.int64)
    keys = [n.lower() for n in names]
    if len(us):
        for name, key in zip(names, keys):
            if key not in _PARTS:
                raise InvalidParameter(
                    f"unsupported field for extraction: {name}, fields should be seprated by ',' or ' '")
    local = us if zone == DEFAULT_ZONE else us + utc_offsets(us, zone) * 1_000_000
    t = local.astype("datetime64[us]")
    tod = local - np.floor_divide(local, _DAY_US) * _DAY_US  # microseconds into the (local) day
    part = {
        "year": lambda: t.astype("datetime64[Y]").astype(np.int64) + 1970,
        "month": lambda: t.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        "day": lambda: (t.astype("datetime64[D]") - t.astype("datetime64[M]")).astype(np.int64) + 1,
        "hour": lambda: tod // 3_600_000_000,
        "minute": lambda: tod // 60_000_000 % 60,
        "second": lambda: tod // 1_000_000 % 60,
        "microsecond": lambda: tod % 1_000_000,
    }
    out = np.empty((len(us), len(keys)), np.int64)
    for j, key in enumerate(keys):
        if len(us):
            out[:, j] = part[key]()
    return out


@dataclass(frozen=True)
class TimeOutput:
    """How a reply writes TIMESTAMPTZ values: RFC 3339 strings in ``zone``, or, with ``fields``, each
    value's parts (``time_parts``), an ARRAY of INT64 per row (Milvus's ``time_fields``)."""

    zone: str = DEFAULT_ZONE
    fields: tuple[str, ...] = ()


UTC_OUTPUT = TimeOutput()


def time_output(params: Mapping[str, str], default_zone: str) -> TimeOutput:
    """A query's or search's ``timezone`` (checked; absent or empty: ``default_zone``, the
    collection's) and ``time_fields`` (names split at commas and spaces, as Go's FieldsFunc)."""
    zone = params.get(ZONE_KEY) or ""
    fields = tuple(p for p in re.split("[, ]", params.get(TIME_FIELDS_KEY) or "") if p)
    return TimeOutput(check_zone(zone) if zone else default_zone, fields)


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

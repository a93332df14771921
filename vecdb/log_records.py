"""Records of the shard log (one channel per collection shard).

The log is the source of truth for data: a record that ``Log.append`` returned
for is acknowledged, and replaying a channel from a checkpoint rebuilds exactly
the state the query nodes had. Three kinds:

- ``InsertRecord``: rows for one partition, primary keys already assigned, one
  timestamp for the whole batch. An insert of a primary key that already exists
  replaces the old row (last write wins); upsert is the same record. Its columns are
  named by field; ``field_ids`` says which field each name meant when it was written
  (a field dropped and another added under its name: ``vecdb.column_defaults.current_columns``).
- ``DeleteRecord``: primary keys to delete at a timestamp.
- ``SealRecord``: everything before it in the channel goes into sealed segments
  (flush); data nodes persist up to here and record it as their checkpoint.

The records of one append (an upsert's delete and insert, an insert's partitions) share one
timestamp; each but the last carries ``more``, so a reader that gets them in two pieces knows the
append is not whole yet (a query node shows it to reads only whole: ``vecdb.querynode.shard``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecdb.column_codec import decode_columns, encode_columns, read_header

_INSERT, _DELETE, _SEAL = b"I", b"D", b"S"


@dataclass
class InsertRecord:
    collection_id: int
    partition_id: int
    ts: int
    num_rows: int
    columns: dict[str, np.ndarray]
    more: bool = False  # more records of its append follow (module doc)
    field_ids: dict[str, int] | None = None  # {field name: field id} when written (None: an older record)


@dataclass
class DeleteRecord:
    collection_id: int
    ts: int
    pks: np.ndarray
    partition_id: int = -1  # -1: every partition
    more: bool = False


@dataclass
class SealRecord:
    collection_id: int
    ts: int
    more: bool = False


Record = InsertRecord | DeleteRecord | SealRecord


def encode(record: Record) -> bytes:
    more = {"m": 1} if record.more else {}
    if isinstance(record, InsertRecord):
        ids = {"f": record.field_ids} if record.field_ids else {}
        extra = {"c": record.collection_id, "p": record.partition_id, "ts": record.ts, **more, **ids}
        return _INSERT + encode_columns(record.columns, record.num_rows, extra)
    if isinstance(record, DeleteRecord):
        extra = {"c": record.collection_id, "p": record.partition_id, "ts": record.ts, **more}
        return _DELETE + encode_columns({"pk": record.pks}, len(record.pks), extra)
    if isinstance(record, SealRecord):
        extra = {"c": record.collection_id, "ts": record.ts, **more}
        return _SEAL + encode_columns({}, 0, extra)
    raise TypeError(type(record))


def decode(payload: bytes | memoryview) -> Record:
    mv = memoryview(payload)
    kind = bytes(mv[:1])
    n, cols, extra = decode_columns(mv[1:])
    more = bool(extra.get("m"))
    if kind == _INSERT:
        return InsertRecord(extra["c"], extra["p"], extra["ts"], n, cols, more, extra.get("f"))
    if kind == _DELETE:
        return DeleteRecord(extra["c"], extra["ts"], cols["pk"], extra["p"], more)
    if kind == _SEAL:
        return SealRecord(extra["c"], extra["ts"], more)
    raise ValueError(f"unknown record kind {kind!r}")


def inserted_rows(payload: bytes | memoryview) -> tuple[int, int] | None:
    """``(partition_id, num_rows)`` of an insert record from its header alone, None for another
    kind: counting a channel's rows without decoding any column."""
    mv = memoryview(payload)
    if bytes(mv[:1]) != _INSERT:
        return None
    n, extra = read_header(mv[1:])
    return extra["p"], n


def record_ts(payload: bytes | memoryview) -> int:
    """A record's timestamp from its header alone (every kind has one; no column is decoded)."""
    return int(read_header(memoryview(payload)[1:])[1]["ts"])

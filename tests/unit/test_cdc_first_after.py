"""vecdb.cdc.log_order's pure parts: finding the first record after a timestamp in a channel (what a
task applies again after a truncate or a partition created again), and what changed since a task's
entry recorded a collection."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.cdc.log_order import changes, first_after, partition_ids
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, encode, record_ts
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryLog


def _channel(timestamps: list[int]) -> MemoryLog:
    wal = MemoryLog()
    for k, ts in enumerate(timestamps):
        kind = k % 3
        rec = (InsertRecord(1, 2, ts, 1, {"id": np.array([k], np.int64)}) if kind == 0 else
               DeleteRecord(1, ts, np.array([k], np.int64)) if kind == 1 else SealRecord(1, ts))
        wal.append("c", encode(rec))
    return wal


def test_record_ts_reads_every_kind_s_timestamp_from_its_header():
    for rec in (InsertRecord(1, 2, 77, 1, {"id": np.array([5], np.int64)}), DeleteRecord(1, 78, np.array([5])),
                SealRecord(1, 79)):
        assert record_ts(encode(rec)) == rec.ts


@pytest.mark.parametrize("n", [1, 2, 3, 10, 100, 1000])
def test_first_after_is_the_first_position_past_the_timestamp_among_those_applied(n):
    stamps = [10 * (i + 1) for i in range(n)]  # position p holds timestamp 10 p
    wal = _channel(stamps)
    reads = []
    real = wal.read
    wal.read = lambda ch, start=1, end=None: (reads.append(start), real(ch, start, end))[1]  # type: ignore[method-assign]
    for applied in {0, 1, n // 2, n - 1, n}:
        for ts in {0, 5, 10, 15, 10 * applied, 10 * applied + 5, 10 * n + 100}:
            expected = next((p for p in range(1, applied + 1) if 10 * p > ts), applied + 1)
            assert first_after(wal, "c", applied, ts) == expected, (applied, ts)
    # a few reads, not one per record: growing steps back, then a binary search
    reads.clear()
    assert first_after(wal, "c", n, 5) == 1
    assert len(reads) <= 2 * n.bit_length() + 2


def test_first_after_none_when_the_log_no_longer_holds_what_it_needs():
    wal = _channel([10 * (i + 1) for i in range(50)])
    wal.truncate_before("c", 21)  # positions 1..20 cut
    assert first_after(wal, "c", 50, 300) == 31  # found among what is left
    assert first_after(wal, "c", 50, 500) == 51  # nothing applied after it
    assert first_after(wal, "c", 50, 100) is None  # 11..20 were applied after 100, and are gone
    assert first_after(wal, "c", 15, 10) is None  # the record at the task's position itself is gone
    assert first_after(wal, "c", 0, 10) == 1  # nothing applied yet


def _info(partitions, truncated_ts=0, key=False) -> CollectionInfo:
    fields = [FieldSchema(name="id", dtype=DataType.INT64, is_primary=True),
              FieldSchema(name="v", dtype=DataType.FLOAT_VECTOR, type_params={"dim": "2"})]
    if key:
        fields.append(FieldSchema(name="k", dtype=DataType.INT64, is_partition_key=True))
    return CollectionInfo(id=1, db="default", name="c", schema=CollectionSchema("c", fields), shards_num=1,
                          consistency_level=0, created_ts=1, truncated_ts=truncated_ts,
                          partitions=[PartitionInfo(pid, name, ts) for name, pid, ts in partitions])


def test_changes_name_a_truncate_and_the_partitions_created_again_with_the_earliest_timestamp():
    before = _info([("_default", 1, 5), ("p1", 2, 6), ("p2", 3, 7)])
    entry = {"truncated_ts": 0, "partitions": partition_ids(before)}
    assert changes(entry, before) == (0, [], None)
    # p1 dropped and created again (id 4, at 50); p3 new; p2 dropped: only p1 is "again"
    after = _info([("_default", 1, 5), ("p1", 4, 50), ("p3", 5, 60)])
    assert changes(entry, after) == (0, ["p1"], 50)
    # and a truncate at 40: records after 40 are applied again
    assert changes(entry, _info([("_default", 1, 5), ("p1", 4, 50)], truncated_ts=40)) == (40, ["p1"], 40)
    # a truncate already applied is not applied again
    assert changes({"truncated_ts": 40, "partitions": partition_ids(before)}, _info(
        [("_default", 1, 5), ("p1", 2, 6), ("p2", 3, 7)], truncated_ts=40)) == (40, [], None)
    # partition key collections: their partitions are the target's own
    keyed = _info([("_default_0", 1, 5)], key=True)
    assert partition_ids(keyed) == {}
    assert changes({"truncated_ts": 0, "partitions": {"_default_0": 9}}, keyed) == (0, [], None)


def test_first_after_stops_at_the_floor_where_the_task_took_the_channel_up():
    wal = _channel([10 * (i + 1) for i in range(50)])
    wal.truncate_before("c", 26)  # 1..25 cut: the task took the channel up at 25 (applied none up to it)
    assert first_after(wal, "c", 30, 100) is None  # without the floor: 25 and before might have been applied
    assert first_after(wal, "c", 30, 100, floor=(25, 0)) == 26
    assert first_after(wal, "c", 30, 270, floor=(25, 0)) == 28
    assert first_after(wal, "c", 25, 100, floor=(25, 0)) == 26  # nothing applied since: nothing again
    assert first_after(wal, "c", 25, 100, last_ts=250, floor=(25, 0)) == 26
    # a floor whose stamp is after the timestamp says nothing (a rewind's floor, before a second change)
    assert first_after(wal, "c", 30, 100, floor=(25, 200)) is None
    # the record at the position cut, no stamp: the next one, if not after the timestamp, answers
    assert first_after(wal, "c", 25, 300) == 26
    assert first_after(wal, "c", 25, 200) is None

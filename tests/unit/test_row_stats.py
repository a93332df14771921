"""Row counts from metadata (vecdb.datanode.row_stats): segments' num_rows at the checkpoint plus the
insert records after it, counted from their headers; incremental per channel; taken again when a
persist moves the checkpoint (and cuts the log) while counting."""

from __future__ import annotations

import numpy as np

from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.datanode.node import DataNode
from vecdb.datanode.row_stats import RowStats
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, encode, inserted_rows
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

CID = 5


class _Ids:
    def __init__(self):
        self.n = 0

    def allocate(self, count: int = 1) -> int:
        self.n += count
        return self.n


def _info() -> CollectionInfo:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
    return CollectionInfo(id=CID, db="default", name="c", schema=schema, shards_num=2, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(10, "_default", 1), PartitionInfo(11, "p1", 1)])


def _insert(pid: int, lo: int, n: int, ts: int = 1) -> bytes:
    return encode(InsertRecord(CID, pid, ts, n, {"id": np.arange(lo, lo + n, dtype=np.int64),
                                                  "v": np.ones((n, 2), np.float32)}))


def test_inserted_rows_reads_the_header_only():
    assert inserted_rows(_insert(11, 0, 7)) == (11, 7)
    assert inserted_rows(encode(DeleteRecord(CID, 2, np.arange(3, dtype=np.int64)))) is None
    assert inserted_rows(encode(SealRecord(CID, 3))) is None


def test_segments_plus_the_log_after_the_checkpoint_by_partition():
    info = _info()
    ch0, ch1 = info.channels
    log, meta = MemoryLog(), MemoryMetaStore()
    dn = DataNode(log, meta, MemoryObjectStore(), _Ids(), truncate=True)
    stats = RowStats(meta, log)
    log.append_batch(ch0, [_insert(10, 0, 100), _insert(11, 100, 30), encode(SealRecord(CID, 2))])
    log.append_batch(ch1, [_insert(10, 200, 50)])
    assert stats.row_count(info) == 180 and stats.row_count(info, {11}) == 30
    dn.persist(info, ch0, 3)  # persisted (and the log cut below): the count stays
    log.append_batch(ch0, [encode(DeleteRecord(CID, 4, np.arange(10, dtype=np.int64))), _insert(10, 300, 5)])
    assert stats.row_count(info) == 185  # deletes count until compaction, as in Milvus
    assert stats.row_count(info, {10}) == 155 and stats.row_count(info, [11]) == 30
    dropped = CollectionInfo(**{**info.__dict__, "partitions": info.partitions[:1]})
    assert stats.row_count(dropped) == 155  # a dropped partition's rows are not counted


def test_reads_only_what_was_appended_since_the_last_call():
    info = _info()
    ch0 = info.channels[0]
    log, meta = MemoryLog(), MemoryMetaStore()
    stats = RowStats(meta, log)
    reads = []
    real = log.read

    def counting_read(channel, start=1, end=None):
        reads.append((start, end))
        return real(channel, start, end)

    log.read = counting_read
    log.append_batch(ch0, [_insert(10, i * 10, 10) for i in range(5)])
    assert stats.row_count(info) == 50
    log.append_batch(ch0, [_insert(10, 50, 10)])
    assert stats.row_count(info) == 60
    assert stats.row_count(info) == 60
    assert reads == [(1, 5), (6, 6)]


def test_counts_again_when_a_persist_moves_the_checkpoint_meanwhile():
    info = _info()
    ch0, ch1 = info.channels
    log, meta = MemoryLog(), MemoryMetaStore()
    dn = DataNode(log, meta, MemoryObjectStore(), _Ids(), truncate=True)
    stats = RowStats(meta, log)
    log.append_batch(ch0, [_insert(10, 0, 40), encode(SealRecord(CID, 2)), _insert(10, 40, 2)])
    real = log.last_position
    raced = []

    def racing_last_position(channel):  # the count read segments and checkpoint 0: a persist comes first
        if channel == ch0 and not raced:
            raced.append(True)
            dn.persist(info, ch0, 2)  # segments of 40 rows, checkpoint 2, the log cut below 3
        return real(channel)

    log.last_position = racing_last_position
    assert stats.row_count(info) == 42 and raced

"""A query node following the log shows an append's records to reads together even when they reach it
in two polls: an upsert is a delete and an insert under one timestamp, and a read between the two
answered without the row (the delete applied, the insert not yet). The writer marks each record but
an append's last (``more``, ``vecdb.log_records``); the node publishes at the last one."""

from __future__ import annotations

import time

import numpy as np

from tests.log_fakes import OneAtATime
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.tso import TimestampOracle
from vecdb.log_records import DeleteRecord, InsertRecord, decode, encode
from vecdb.proxy.writer import ShardWriter
from vecdb.querynode import executor
from vecdb.querynode.node import QueryNode
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore
from vecdb.timestamp import MAX_TIMESTAMP

CH = "c5-s0"


def _info() -> CollectionInfo:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
    return CollectionInfo(id=5, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(0, "_default", 1)])


def _rows(ids, value: float, ts: int) -> InsertRecord:
    ids = np.asarray(ids, np.int64)
    return InsertRecord(5, 0, ts, len(ids), {"id": ids, "v": np.full((len(ids), 2), value, np.float32)})


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_writer_marks_every_record_of_an_append_but_its_last():
    log = MemoryLog()
    writer = ShardWriter(log, TimestampOracle(MemoryMetaStore()), lambda *_: None)
    writer.write({CH: lambda ts: [DeleteRecord(5, ts, np.array([1], np.int64)), _rows([1], 1.0, ts)]})
    writer.write({CH: lambda ts: [_rows([2], 1.0, ts)]})
    assert [decode(p).more for _, p in log.read(CH)] == [True, False, False]
    assert not decode(encode(DeleteRecord(5, 9, np.array([1], np.int64)))).more  # records written before it: whole


def test_an_upsert_reaching_a_follower_in_two_polls_is_seen_whole():
    base = MemoryLog()
    base.append_batch(CH, [encode(_rows([1, 2], 0.0, ts=50))])
    log = OneAtATime(base)
    qn = QueryNode(log, MemoryMetaStore(), MemoryObjectStore(), tail=True)  # type: ignore[arg-type]
    try:
        qn.load(_info())
        shard = qn._by_channel[CH]
        writer = ShardWriter(base, TimestampOracle(MemoryMetaStore()), lambda *_: None)
        writer.write({CH: lambda ts: [DeleteRecord(5, ts, np.array([1], np.int64)), _rows([1], 1.0, ts)]})
        _wait(lambda: shard.applied_position == 2)  # the delete, handed out alone: the insert waits for a release
        time.sleep(0.6)  # longer than a poll's timeout: the node does not give up on the append's rest
        rows = executor.query(shard.snapshot(None), MAX_TIMESTAMP - 1, None, ["id", "v"], "id", None, 0)
        assert dict(zip(rows["id"].tolist(), rows["v"][:, 0].tolist())) == {1: 0.0, 2: 0.0}
        log.release()
        _wait(lambda: shard.published_position == 3)
        rows = executor.query(shard.snapshot(None), MAX_TIMESTAMP - 1, None, ["id", "v"], "id", None, 0)
        assert dict(zip(rows["id"].tolist(), rows["v"][:, 0].tolist())) == {1: 1.0, 2: 0.0}
    finally:
        qn.close()

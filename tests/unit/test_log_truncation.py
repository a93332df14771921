"""The bounded log's rule (vecdb.datanode.flusher.ChannelFlusher.truncate): a channel is cut below
the lowest of its checkpoint and the positions the query nodes holding it applied (``qnpos/``); a
query node further than MAX_FOLLOWER_LAG behind the checkpoint does not hold it back. And a query
node's load that finds the log cut under it loads again from the new checkpoint."""

from __future__ import annotations

import json

from vecdb.datanode import flusher as flusher_mod
from vecdb.datanode.flusher import ChannelFlusher
from vecdb.datanode.node import DataNode
from vecdb.querynode.positions import positions_key
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

CH = "c5-s0"


class _Ids:
    def allocate(self, count: int = 1) -> int:
        return 1


def _flusher():
    log, meta = MemoryLog(), MemoryMetaStore()
    log.append_batch(CH, [b"r"] * 100)
    node = DataNode(log, meta, MemoryObjectStore(), _Ids(), truncate=False)
    return ChannelFlusher(node, log, meta, "dn0"), log, meta


def _first(log) -> int:
    return next(pos for pos, _ in log.read(CH, 1))


def test_cut_below_the_lowest_of_the_checkpoint_and_the_followers(monkeypatch):
    f, log, meta = _flusher()
    try:
        meta.put(f"ckpt/5/{CH}", b"60")
        meta.put(positions_key("qn0"), json.dumps({CH: 80, "c9-s0": 3}).encode())
        meta.put(positions_key("qn1"), json.dumps({CH: 40}).encode())
        assert f.truncate(5, CH) == 41 and _first(log) == 41  # qn1 applied only up to 40
        meta.put(positions_key("qn1"), json.dumps({CH: 95}).encode())
        assert f.truncate(5, CH) == 61 and _first(log) == 61  # now the checkpoint is the lowest
        meta.delete(positions_key("qn0"))
        meta.put(positions_key("qn1"), json.dumps({}).encode())  # nobody holds it: the checkpoint alone
        assert f.truncate(5, CH) == 61
        meta.put(f"ckpt/5/{CH}", b"90")
        monkeypatch.setattr(flusher_mod, "MAX_FOLLOWER_LAG", 20)
        meta.put(positions_key("qn2"), json.dumps({CH: 65}).encode())  # 25 behind: does not hold it back
        assert f.truncate(5, CH) == 91 and _first(log) == 91
    finally:
        f.close()


def test_a_load_that_finds_the_log_cut_loads_from_the_new_checkpoint(monkeypatch, caplog):
    """The checkpoint moves and the log is cut between the load's read of the checkpoint and its read
    of the log: the load starts over from the new checkpoint instead of missing rows."""
    import numpy as np

    from vecdb.catalog_model import CollectionInfo, PartitionInfo
    from vecdb.log_records import InsertRecord, SealRecord, encode
    from vecdb.querynode.node import QueryNode
    from vecdb.schema import CollectionSchema, DataType, FieldSchema

    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
    info = CollectionInfo(id=5, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(0, "_default", 1)])
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()

    def insert(lo: int, ts: int) -> bytes:
        return encode(InsertRecord(5, 0, ts, 10, {"id": np.arange(lo, lo + 10, dtype=np.int64),
                                                 "v": np.ones((10, 2), np.float32)}))
    log.append_batch(CH, [insert(0, 1), encode(SealRecord(5, 2)), insert(10, 3)])
    dn = DataNode(log, meta, objects, _Ids(), truncate=False)
    real_read = log.read
    raced = []

    def racing_read(channel, start=1, end=None):  # the load read checkpoint 0; a flush and a cut come first
        if not raced:
            raced.append(start)
            dn.persist(info, CH, 2)
            log.truncate_before(CH, 3)
        return real_read(channel, start, end)
    monkeypatch.setattr(log, "read", racing_read)
    qn = QueryNode(log, meta, objects)
    try:
        with caplog.at_level("INFO", logger="vecdb.querynode.node"):
            qn.load(info)
        assert "are no longer in the log; loading again from the new checkpoint" in caplog.text
        assert raced == [1]  # the first load read from position 1: cut below 3 by then
        assert qn.num_rows(info) == 20  # 10 from the segment, 10 from the log after it
        assert sorted(len(s.pk_index) for s in qn.collections[5].shards) == [20]
    finally:
        qn.close()
        dn.close()


def test_no_cut_while_a_node_assigned_the_channel_has_not_published_its_position():
    from vecdb.coord.assignment import Assignment, Replica, assign_key

    f, log, meta = _flusher()
    try:
        meta.put(f"ckpt/5/{CH}", b"60")
        meta.put(assign_key(5), Assignment(5, [Replica(1, ["qn0", "qn1"], {CH: "qn0"}, {CH: "qn1"})]).to_json())
        meta.put(positions_key("qn0"), json.dumps({CH: 80}).encode())
        assert f.truncate(5, CH) == 1 and _first(log) == 1  # qn1 (taking the channel over) said nothing yet
        meta.put(positions_key("qn1"), json.dumps({CH: 50}).encode())
        assert f.truncate(5, CH) == 51 and _first(log) == 51
    finally:
        f.close()


def test_no_cut_while_a_node_given_some_of_its_sealed_segments_has_not_published_its_position():
    """A node that serves some sealed segments of a channel it does not lead loads the channel (its
    other rows as stubs) and follows it; cut past what it still needs before its first position,
    it would wait for records that are gone with no later record to show it the gap (a Strong read
    then times out on it)."""
    from vecdb.coord.assignment import Assignment, Replica, assign_key

    f, log, meta = _flusher()
    try:
        meta.put(f"ckpt/5/{CH}", b"60")
        spread = Replica(1, ["qn0", "qn1"], {CH: "qn0"}, segments={CH: {"seg/a/": "qn0", "seg/b/": "qn1"}})
        meta.put(assign_key(5), Assignment(5, [spread]).to_json())
        meta.put(positions_key("qn0"), json.dumps({CH: 80}).encode())
        assert f.truncate(5, CH) == 1 and _first(log) == 1  # qn1 said nothing yet
        meta.put(positions_key("qn1"), json.dumps({CH: 55}).encode())
        assert f.truncate(5, CH) == 56 and _first(log) == 56
    finally:
        f.close()

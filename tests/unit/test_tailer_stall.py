"""A tailer of the log (a cluster query node's or a data node's) that hears nothing while the log's
end is past what it applied looks at the log itself (``vecdb.storage.stall``): the records it waits
for were cut below it (a query node releases the channel, and its assignment loads it again from the
segments), or its follower is stuck (it follows the channel again). Either way a Strong read or a
flush does not wait on it for ever. A stuck follower is what a JetStream consumer opened past a purge
looks like (no later record ever came to show the gap); it is faked here (``tests/log_fakes.py``),
the log underneath is the memory backend."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.log_fakes import FirstFollowerSilent
from vecdb import metrics
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.log_records import InsertRecord, encode
from vecdb.querynode.node import QueryNode
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import stall
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

CH = "c5-s0"


def _info() -> CollectionInfo:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
    return CollectionInfo(id=5, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(0, "_default", 1)])


def _insert(lo: int, ts: int) -> bytes:
    return encode(InsertRecord(5, 0, ts, 10, {"id": np.arange(lo, lo + 10, dtype=np.int64),
                                             "v": np.ones((10, 2), np.float32)}))


@pytest.fixture
def tailing(monkeypatch):
    monkeypatch.setattr(stall, "STALL_SECONDS", 0.3)
    log = MemoryLog()
    log.append_batch(CH, [_insert(0, 1)])
    wrapped = FirstFollowerSilent(log)
    qn = QueryNode(wrapped, MemoryMetaStore(), MemoryObjectStore(), tail=True)  # type: ignore[arg-type]
    qn.load(_info())
    assert qn.applied_positions() == {CH: 1}
    yield log, wrapped, qn
    qn.close()


def _stalls(node_id: str, outcome: str) -> float:
    """``vecdb_log_follower_stall_count`` of ``node_id`` on CH."""
    return metrics.MILVUS.get_sample_value("vecdb_log_follower_stall_count_total",
                                           {"node_id": node_id, "channel_name": CH, "outcome": outcome}) or 0.0


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_records_cut_under_a_silent_tailer_release_the_channel(tailing, caplog):
    log, _, qn = tailing
    before = _stalls(qn.metrics_node_id, "cut")
    with caplog.at_level("ERROR", logger="vecdb.querynode.node"):
        log.append_batch(CH, [_insert(10, 2), _insert(20, 3)])
        log.truncate_before(CH, 4)  # both cut before this node applied them, nothing after them
        _wait(lambda: CH not in qn.applied_positions())
    assert _stalls(qn.metrics_node_id, "cut") == before + 1
    assert "channel c5-s0: records 2..3 were truncated before this node applied them" in caplog.text
    assert not qn.is_loaded(5)  # released: its assignment loads it again from the segments


def test_a_silent_follower_is_replaced_and_the_records_are_applied(tailing, caplog):
    log, wrapped, qn = tailing
    before = _stalls(qn.metrics_node_id, "stuck")
    with caplog.at_level("WARNING", logger="vecdb.querynode.node"):
        log.append_batch(CH, [_insert(10, 2), _insert(20, 3)])
        _wait(lambda: qn.applied_positions() == {CH: 3})
    assert _stalls(qn.metrics_node_id, "stuck") == before + 1
    assert "channel c5-s0: no record from the log for 0 s while 2 is there to apply next" in caplog.text
    assert wrapped.follows[CH] == 2 and qn.num_rows(_info()) == 30


def test_a_quiet_log_is_left_alone(tailing):
    """Nothing past the applied position: silence is right, the follower stays."""
    _, wrapped, qn = tailing
    time.sleep(1.0)  # over three stall periods
    assert wrapped.follows[CH] == 1 and qn.applied_positions() == {CH: 1}


def test_a_data_node_replaces_a_silent_follower_and_persists(monkeypatch, caplog):
    """The data node's tailer runs the same check: the seal record its stuck follower never handed
    out is persisted once it follows the channel again."""
    import json

    from vecdb.coord.catalog import Catalog
    from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
    from vecdb.coord.tso import IdAllocator
    from vecdb.datanode.flusher import ChannelFlusher
    from vecdb.datanode.node import DataNode
    from vecdb.log_records import SealRecord
    from vecdb.storage import segments as sf

    monkeypatch.setattr(stall, "STALL_SECONDS", 0.3)
    meta, log, objects = MemoryMetaStore(), MemoryLog(), MemoryObjectStore()
    catalog = Catalog(meta)
    catalog.add_collection(_info())
    meta.put(f"{DN_ASSIGN_PREFIX}5", json.dumps({CH: "dn0"}).encode())
    wrapped = FirstFollowerSilent(log)
    node = DataNode(wrapped, meta, objects, IdAllocator(meta))  # type: ignore[arg-type]
    flusher = ChannelFlusher(node, wrapped, meta, "dn0")  # type: ignore[arg-type]
    before = _stalls("dn0", "stuck")
    try:
        with caplog.at_level("WARNING", logger="vecdb.datanode.flusher"):
            log.append_batch(CH, [_insert(0, 1), _insert(10, 2), encode(SealRecord(5, 3))])
            _wait(lambda: sf.checkpoint(meta, 5, CH) == 3)
        assert "no record of c5-s0 from the log for 0 s while 1 is there to persist next" in caplog.text
        assert wrapped.follows[CH] == 2 and _stalls("dn0", "stuck") == before + 1
        assert sum(s["num_rows"] for s in sf.list_segments(meta, 5, CH)) == 20
    finally:
        flusher.close()
        node.close()
        catalog.close()


def test_a_tailers_stop_wakes_its_poll_on_an_in_process_log():
    """A tailer polls for ``POLL_SECONDS`` (2 s) and is still stopped at once: ``TailStop`` closes its
    follower, whose close wakes the poll (the memory and WAL logs' ``PollingFollower``); the other
    followers of the log keep waiting."""
    from tests.follower_checks import closing_wakes_a_waiting_poll
    from vecdb.errors import IoFailed
    from vecdb.storage.follow import TailStop

    log = MemoryLog()
    other = log.follow("other", 1)
    stop = TailStop()
    follower = stop.watch(log.follow(CH, 1))
    raised = closing_wakes_a_waiting_poll(follower, close=stop.set)
    assert isinstance(raised, IoFailed) and stop.is_set()
    assert other.poll(timeout=0.2) == []  # (nudged, not ended)
    log.append_batch("other", [_insert(0, 1)])
    assert [p for p, _ in other.poll(timeout=1)] == [1]
    late = log.follow(CH, 1)
    assert stop.watch(late) is late and pytest.raises(IoFailed, late.poll, 0.1)  # watched after set: closed

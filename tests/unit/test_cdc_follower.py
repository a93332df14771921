"""A CDC task is a follower of its source's log (vecdb.cdc.follower): the cluster's data node
(ChannelFlusher.truncate) cuts a channel no further than the lowest position a CDC task applied
(``cdcpos/<task>``), unless that task is more than CDC_RETENTION records behind the checkpoint."""

from __future__ import annotations

import json

from vecdb.cdc import follower
from vecdb.cdc.follower import HOLD_ALL, HOLD_NEW, cdc_floor, cdc_positions_key, hold_new
from vecdb.datanode.flusher import ChannelFlusher
from vecdb.datanode.node import DataNode
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

CH = "c5-s0"


class _Ids:
    def allocate(self, count: int = 1) -> int:
        return 1


def test_a_cdc_task_holds_the_log_back_within_its_retention(monkeypatch, caplog):
    log, meta = MemoryLog(), MemoryMetaStore()
    log.append_batch(CH, [b"r"] * 100)
    f = ChannelFlusher(DataNode(log, meta, MemoryObjectStore(), _Ids(), truncate=False), log, meta, "dn0")
    try:
        meta.put(f"ckpt/5/{CH}", b"60")
        meta.put(cdc_positions_key("t1"), json.dumps({CH: 30, "c9-s0": 2}).encode())
        meta.put(cdc_positions_key("t2"), json.dumps({CH: 45}).encode())
        assert cdc_floor(meta, CH, 60, 5) == 30 and cdc_floor(meta, "c7-s0", 60, 7) is None
        assert f.truncate(5, CH) == 31 and next(p for p, _ in log.read(CH)) == 31
        meta.delete(cdc_positions_key("t1"))  # the task deleted: the next-lowest holds it
        assert f.truncate(5, CH) == 46
        monkeypatch.setattr(follower, "CDC_RETENTION", 10)  # t2 is 15 behind: past the limit, cut anyway
        assert f.truncate(5, CH) == 61
        assert "retention 10" in caplog.text
    finally:
        f.close()


def test_a_task_of_every_collection_holds_the_ones_it_has_not_taken_up_whole():
    """``"*"``: the largest collection id of the task's last catalog pass; a channel it does not list of a
    collection above it (created since) is held from its beginning, one at or below it is not held."""
    meta = MemoryMetaStore()
    meta.put(cdc_positions_key("t1"), json.dumps({CH: 30, HOLD_NEW: 6}).encode())
    assert cdc_floor(meta, CH, 60, 5) == 30
    assert cdc_floor(meta, "c7-s1", 60, 7) == 0  # created after the pass: not cut at all
    assert cdc_floor(meta, "c6-s0", 60, 6) is None  # seen by the pass and not wanted: not held
    hold_new(meta, "t1")  # a task with positions keeps them
    assert json.loads(meta.get(cdc_positions_key("t1")))[CH] == 30
    hold_new(meta, "t2")  # one that has published none holds every channel until it does
    assert meta.get(cdc_positions_key("t2")) == HOLD_ALL and cdc_floor(meta, "c6-s0", 60, 6) == 0

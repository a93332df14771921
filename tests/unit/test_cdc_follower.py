"""A CDC task is a follower of its source's log (vecdb.cdc.follower): the cluster's data node
(ChannelFlusher.truncate) cuts a channel no further than the lowest position a CDC task applied
(``cdcpos/<task>``), unless that task is more than CDC_RETENTION records behind the checkpoint."""

from __future__ import annotations

import json

from vecdb.cdc import follower
from vecdb.cdc.follower import cdc_floor, cdc_positions_key
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
        assert cdc_floor(meta, CH, 60) == 30 and cdc_floor(meta, "c7-s0", 60) is None
        assert f.truncate(5, CH) == 31 and next(p for p, _ in log.read(CH)) == 31
        meta.delete(cdc_positions_key("t1"))  # the task deleted: the next-lowest holds it
        assert f.truncate(5, CH) == 46
        monkeypatch.setattr(follower, "CDC_RETENTION", 10)  # t2 is 15 behind: past the limit, cut anyway
        assert f.truncate(5, CH) == 61
        assert "retention 10" in caplog.text
    finally:
        f.close()

"""How a channel's records become rows, on the memory backends: last write wins by timestamp across
sealed and growing segments (an older snapshot still sees the row it replaced), a record handed out
twice is applied once (a follower opened again from an earlier position), and a data node's persist
that fails half way through its files, tried again, leaves every row once for a query node that
loads the segments and replays the log after the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.tso import IdAllocator
from vecdb.datanode.node import DataNode
from vecdb.errors import IoFailed
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, encode
from vecdb.querynode.node import QueryNode
from vecdb.querynode.shard import Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
CH = "c7-s0"


def _insert(ids, ts: int, value: float) -> InsertRecord:
    ids = np.asarray(ids, np.int64)
    return InsertRecord(7, 1, ts, len(ids), {"id": ids, "v": np.full((len(ids), 2), value, np.float32)})


def _delete(ids, ts: int) -> DeleteRecord:
    return DeleteRecord(7, ts, np.asarray(ids, np.int64))


def _rows(shard: Shard, at: int) -> dict[int, float]:
    """pk -> its vector's first value, of the rows visible at timestamp ``at``."""
    out: dict[int, float] = {}
    for view in shard.snapshot(None):
        seg = view.segment
        vis = seg.visible(at, view.n)
        pks, vals = seg.pks(view.n), seg.column("v", view.n)[:, 0]
        if vis is not None:
            pks, vals = pks[vis], vals[vis]
        for pk, val in zip(pks.tolist(), vals.tolist()):
            assert pk not in out, f"primary key {pk} visible twice at {at}"
            out[pk] = val
    return out


def test_last_write_wins_by_timestamp_across_sealed_and_growing_segments():
    sh = Shard(CH, SCHEMA)
    sh.apply(1, _insert(range(5), ts=100, value=0.0))
    sh.apply(2, SealRecord(7, 150))  # rows 0..4 sealed
    sh.apply(3, _insert([2], ts=200, value=1.0))  # an upsert of a sealed row, into the growing segment
    sh.apply(4, _delete([3], ts=300))
    sh.apply(5, _insert([3, 2], ts=400, value=2.0))  # the deleted key again, and 2 a second time
    assert _rows(sh, 120) == {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}
    assert _rows(sh, 250) == {0: 0.0, 1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0}
    assert _rows(sh, 350) == {0: 0.0, 1: 0.0, 2: 1.0, 4: 0.0}
    assert _rows(sh, 450) == {0: 0.0, 1: 0.0, 2: 2.0, 3: 2.0, 4: 0.0}
    assert sorted(sh.pk_index) == [0, 1, 2, 3, 4]  # one live location per key


def test_records_handed_out_again_are_applied_once():
    sh = Shard(CH, SCHEMA)
    records = [_insert([0, 1], 100, 0.0), _insert([2], 200, 0.0), _delete([0], 300), _insert([0], 400, 5.0)]
    for pos, rec in enumerate(records[:3], start=1):
        sh.apply(pos, rec)
    for pos, rec in enumerate(records, start=1):  # a follower opened again from position 1
        sh.apply(pos, rec)
    assert sh.applied_position == 4
    assert _rows(sh, 1000) == {0: 5.0, 1: 0.0, 2: 0.0}
    assert sum(view.n for view in sh.snapshot(None)) == 4  # rows 0, 1, 2 and the second 0: none doubled


class _FailingPuts(MemoryObjectStore):
    """Object writes fail from the ``fail_at``-th on, until ``heal()``."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.puts, self.fail_at = 0, fail_at

    def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        if self.puts >= self.fail_at:
            raise IoFailed(f"object store unreachable at put {self.puts} (test)")
        super().put(key, data)

    def heal(self) -> None:
        self.fail_at = 10**9


def test_a_persist_failing_half_way_tried_again_leaves_every_row_once():
    info = CollectionInfo(id=7, db="default", name="c", schema=SCHEMA, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(1, "_default", 1)])
    log, meta, objects = MemoryLog(), MemoryMetaStore(), _FailingPuts(fail_at=2)
    log.append_batch(CH, [encode(r) for r in (_insert(range(10), 100, 0.0), _delete([9], 150),
                                                _insert([0], 200, 1.0), SealRecord(7, 250))])
    dn = DataNode(log, meta, objects, IdAllocator(meta))
    try:
        with pytest.raises(IoFailed, match="unreachable at put 2"):
            dn.persist(info, CH, 4)
        assert sf.checkpoint(meta, 7, CH) == 0 and sf.list_segments(meta, 7, CH) == []  # nothing committed
        objects.heal()
        (seg,) = dn.persist(info, CH, 4)
        assert (seg["num_rows"], sf.checkpoint(meta, 7, CH)) == (11, 4)  # both versions of key 0: MVCC
        assert dn.persist(info, CH, 4) == []  # again: already there, nothing written twice
    finally:
        dn.close()
    log.append_batch(CH, [encode(_insert([1, 10], 300, 3.0))])  # after the checkpoint: replayed from the log
    qn = QueryNode(log, meta, objects, tail=True)
    try:
        qn.load(info)
        assert qn.applied_positions() == {CH: 5}
        got = qn.query(info, 10**6, None, None, ["id", "v"], None, 0)
        rows = dict(zip(got["id"].tolist(), got["v"][:, 0].tolist()))
        assert rows == {0: 1.0, 1: 3.0, **{i: 0.0 for i in range(2, 9)}, 10: 3.0}
    finally:
        qn.close()

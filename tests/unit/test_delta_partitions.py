"""A delete with a ``partition_name`` (``DeleteRecord.partition_id``) hits that partition's rows only once
persisted too: the delta file keeps each delete's partition, the query node's load and the compactor
apply it there (files without the column: every partition)."""

from __future__ import annotations

import numpy as np

from tests.unit.test_compaction import CH, CID, Env
from vecdb.log_records import DeleteRecord, encode
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryObjectStore


def test_delta_file_keeps_partitions_and_reads_old_files_as_every_partition():
    store = MemoryObjectStore()
    pks, ts = np.array([1, 2, 3], np.int64), np.array([5, 6, 7], np.uint64)
    sf.write_delta(store, "old", pks, ts)  # no partition: the format files had before
    sf.write_delta(store, "all", pks, ts, np.full(3, -1, np.int64))
    sf.write_delta(store, "scoped", pks, ts, np.array([-1, 4, 9], np.int64))
    for key, want in (("old", [-1, -1, -1]), ("all", [-1, -1, -1]), ("scoped", [-1, 4, 9])):
        p, t, pids = sf.read_delta_scoped(store, key)
        assert p.tolist() == [1, 2, 3] and t.tolist() == [5, 6, 7] and pids.tolist() == want
        assert [a.tolist() for a in sf.read_delta(store, key)] == [[1, 2, 3], [5, 6, 7]]


def _scoped_delete(env: Env, ids, partition: int) -> None:
    env.log.append(CH, encode(DeleteRecord(CID, next(env.ts), env.keys(ids), partition)))


def test_partition_delete_survives_load_and_compaction():
    e = Env(partitions=2)
    try:
        e.insert(range(0, 10), partition=0)
        e.insert(range(10, 20), partition=1)
        e.flush()
        _scoped_delete(e, [5, 11], partition=1)  # 5 is in partition 0: kept
        e.delete([7])  # every partition
        e.flush()
        want = sorted(set(range(20)) - {11, 7})
        assert sorted(e.visible()) == want  # a query node loading the persisted files
        e.dn.compactor.compact_channel(e.info, CH, manual=True)
        assert sorted(e.visible()) == want
        assert sum(s["num_rows"] for s in e.segments()) == len(want)
    finally:
        e.close()

"""Reads at a snapshot older than a load or a compaction, found by the concurrency hunt on a cluster
(``.dev/conchunt/hunt.py``; a Strong query iterator's later pages read at its first page's timestamp).

- A load resolved the persisted deletes against the live version of each key only: a row deleted and
  then written again, both versions and the delete persisted, died when written again, so a read at a
  snapshot between the two (an iterator's pages after a release and load) saw the deleted row.
- A compaction's sources were read in place of its new segment by reads at older snapshots; where the
  channel's sealed segments are spread over two query nodes, the node holding a source in full lets the
  channel go once nothing is placed on it, and the leader holds that source as a stub: every row of it,
  live ones too, was missing from such reads. Now the new segment is read as usual and only the rows it
  lacks come from the sources (``Shard`` module doc).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import start_standalone
from tests.unit.test_spread_read_cut import _rows
from vecdb.log_records import InsertRecord, SealRecord
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import ReadScope, Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.timestamp import MAX_TIMESTAMP

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
CH = "c7-s0"


def _sealed(shard: Shard, ids, ts, value: float, partition_id: int = 1, stub: bool = False,
            prefix: str | None = None) -> Segment:
    ids = np.asarray(ids, np.int64)
    cols = {"id": ids, "v": np.full((len(ids), 2), value, np.float32)}
    seg = shard.add_sealed(lambda slot: Segment.from_columns(
        slot, partition_id, SCHEMA, cols, np.asarray(ts, np.uint64), np.full(len(ids), MAX_TIMESTAMP, np.uint64),
        stub=stub))
    seg.prefix = prefix
    return seg


def _create_t(c, **kwargs) -> None:
    """Collection ``t``: id INT64 key, vec FLOAT_VECTOR dim 2 (FLAT, L2), k INT64; Strong."""
    from pymilvus import DataType

    s = c.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("k", DataType.INT64)
    ip = c.prepare_index_params()
    ip.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection("t", schema=s, index_params=ip, consistency_level="Strong", **kwargs)


# --- a load's persisted deletes ------------------------------------------------------------------
def test_a_persisted_delete_kills_the_version_it_followed_not_only_the_live_one():
    shard = Shard(CH, SCHEMA)
    shard.horizon = MAX_TIMESTAMP
    _sealed(shard, [1, 2, 3], [10, 10, 10], 0.0)  # first versions
    _sealed(shard, [1, 2], [30, 30], 1.0)  # 1 deleted at 20 and written again at 30; 2 upserted at 30
    shard.rebuild_pk_index()
    # 1: deleted at 20; 2: an upsert's delete shares its new row's timestamp; 3: deleted at 40
    shard.apply_deltas(np.asarray([1, 2, 3]), np.asarray([20, 30, 40], np.uint64))
    assert _rows(shard, 15) == {1: 0.0, 2: 0.0, 3: 0.0}
    assert _rows(shard, 25) == {2: 0.0, 3: 0.0}  # was {1: 0.0, ...}: the delete at 20 was not applied
    assert _rows(shard, 35) == {1: 1.0, 2: 1.0, 3: 0.0}
    assert _rows(shard, 45) == {1: 1.0, 2: 1.0}
    assert shard.pk_index.keys() == {1, 2}


def test_a_persisted_delete_of_one_partition_spares_the_versions_of_another():
    shard = Shard(CH, SCHEMA)
    shard.horizon = MAX_TIMESTAMP
    _sealed(shard, [5], [10], 0.0, partition_id=1)
    _sealed(shard, [5], [30], 1.0, partition_id=2)  # the same key written in another partition
    shard.rebuild_pk_index()
    shard.apply_deltas(np.asarray([5, 5]), np.asarray([20, 40], np.uint64), np.asarray([2, 1]))
    assert _rows(shard, 15) == {5: 0.0}  # the delete at 20 named partition 2, where no version was then
    assert _rows(shard, 35) == {5: 1.0}
    assert _rows(shard, 45) == {5: 1.0}  # the delete at 40 named partition 1, whose version died at 30


@pytest.fixture
def standalone(tmp_path):
    from pymilvus import MilvusClient

    srv = start_standalone(str(tmp_path / "d"))
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield client
    client.close()
    srv.stop()


def test_iterator_pages_after_a_reload_do_not_see_rows_deleted_before_its_snapshot(standalone):

    c = standalone
    _create_t(c)

    def rows(ids, k):
        return [{"id": i, "vec": [0.5, float(i)], "k": k} for i in ids]

    c.insert("t", rows(range(100), 0))
    c.flush("t")
    c.delete("t", ids=list(range(80, 90)))
    it = c.query_iterator("t", batch_size=10, filter="id >= 0", output_fields=["id", "k"], consistency_level="Strong")
    got = {r["id"]: r["k"] for r in it.next()}
    c.insert("t", rows(range(80, 90), 1))  # written again after the iterator's snapshot
    c.flush("t")  # both versions and the delete persisted
    c.release_collection("t")
    c.load_collection("t")
    while page := it.next():
        got.update((r["id"], r["k"]) for r in page)
    it.close()
    assert got == {i: 0 for i in range(100) if not 80 <= i < 90}
    assert sorted(r["k"] for r in c.query("t", "id >= 80 and id < 90", output_fields=["k"])) == [1] * 10


# --- a compaction's sources for reads at older snapshots ------------------------------------------
def test_a_read_at_an_older_snapshot_reads_the_new_segment_and_the_rows_it_lacks():
    """The leader of a spread channel holds source A in full and B as a stub (B was served by another
    node, which let the channel go): a read older than the compaction reads the new segment (every live
    row) and the rows of A it lacks; only the rows B lost are gone (they were read in nothing held)."""
    shard = Shard(CH, SCHEMA)
    a = _sealed(shard, [1, 2, 3], [10, 10, 10], 0.0, prefix="a/")
    b = _sealed(shard, [4, 5, 6], [10, 10, 10], 0.0, prefix="b/", stub=True)
    shard.rebuild_pk_index()
    for pos, rec in enumerate([InsertRecord(7, 1, 50, 2, {"id": np.asarray([2, 5], np.int64),  # upserts
                                                          "v": np.ones((2, 2), np.float32)}),
                               SealRecord(7, 60)], start=1):
        shard.apply(pos, rec)
    grown = next(s for s in shard.segments.values() if s not in (a, b))
    grown.prefix = "g/"
    # the compaction at 60: rows 1 3 (of a) 4 6 (of b) 2 5 (of g) alive; a's 2 and b's 5 dropped
    with shard.lock:
        sources = [a, b, grown]
        n_new = 6
        new = Segment.from_columns(shard.reserve_slot(), 1, SCHEMA,
                                   {"id": np.asarray([1, 3, 4, 6, 2, 5], np.int64),
                                    "v": np.asarray([[0, 0]] * 4 + [[1, 1]] * 2, np.float32)},
                                   np.asarray([10, 10, 10, 10, 50, 50], np.uint64),
                                   np.full(n_new, MAX_TIMESTAMP, np.uint64))
        new.prefix = "n/"
        taken = np.asarray([0, 2, 3, 5, 6, 7])  # into a + b + g's rows, in the new segment's order
        shard.replace_segments(sources, new, dropped_ts=50, taken=taken)
        shard.pk_index = {k: (new.slot << 32) + i for i, k in enumerate([1, 3, 4, 6, 2, 5])}
    shard.horizon = MAX_TIMESTAMP
    assert _rows(shard, 70) == {1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0, 5: 1.0, 6: 0.0}
    # before the upserts: a's old row of 2 comes from its source; b's old row of 5 is lost with the stub
    # (every row of b was lost before: 4 and 6 too)
    assert _rows(shard, 40) == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 6: 0.0}
    # the leader's part of a spread read names the new segment as served elsewhere: only lost rows here
    assert _rows(shard, 40, ReadScope(True, frozenset({"n/"}))) == {2: 0.0}
    assert _rows(shard, 40, ReadScope(False, frozenset())) == {2: 0.0}
    assert _rows(shard, 40, ReadScope(False, frozenset({"n/"}))) == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 6: 0.0}
    assert _rows(shard, 70, ReadScope(True, frozenset({"n/"}))) == {}
    # a plan made from this node's report before the swap names source a/, held in full then: refused (its lost
    # rows, a copy under its name, are not its rows; answering with them lost a/'s other rows, 50 of them)
    from vecdb import errors

    with pytest.raises(errors.CollectionNotLoaded, match="not served here"):
        shard.snapshot(None, ReadScope(False, frozenset({"a/"})), 40)


def test_iterator_pages_across_a_compaction_of_a_spread_channel_keep_every_live_row(tmp_path, remote_storage):
    """Cluster: one shard's sealed segments spread over two query nodes; a query iterator's first page,
    then upserts and deletes of a few rows of every segment, a flush and a compaction of them all into
    one segment (the node that held some sources in full lets the channel go), then the other pages at
    the first page's snapshot. Every row untouched is there (whole segments of them were missing); a row
    touched shows its value at the snapshot or, compacted away on the node that let go, is absent."""

    from tests.conftest import start_cluster, wait_until
    from tests.e2e.test_assignment import _rows_per_node

    with start_cluster(remote_storage(), tmp_path, querynodes=("qn0", "qn1"),
                       env={"coord": {"VECDB_QUERYNODE__SPREAD_MIN_ROWS": "0"}}) as cluster:
        c = cluster.client()
        cluster.connect("conchunt")
        _create_t(c, num_shards=1)

        def rows(ids, k):
            return [{"id": i, "vec": [0.5, float(i)], "k": k} for i in ids]

        per, segments = 50, 6
        for b in range(segments):  # one sealed segment per flush
            c.insert("t", rows(range(b * per, (b + 1) * per), 0))
            c.flush("t")
        wait_until(lambda: len(_rows_per_node("conchunt", "t")) == 2, 60, "the sealed segments spread")
        it = c.query_iterator("t", batch_size=20, filter="id >= 0", output_fields=["id", "k"],
                              consistency_level="Strong")
        got = {r["id"]: r["k"] for r in it.next()}
        touched = [i for i in range(per * segments) if i % per in (40, 41, 42)]
        c.upsert("t", rows(touched[::2], 1))
        c.delete("t", ids=touched[1::2])
        c.flush("t")
        job = c.compact("t")
        wait_until(lambda: c.get_compaction_state(job) == "Completed", 60, "the compaction")
        wait_until(lambda: len(_rows_per_node("conchunt", "t")) == 1, 30, "one compacted segment")
        while page := it.next():
            got.update((r["id"], r["k"]) for r in page)
        it.close()
        untouched = set(range(per * segments)) - set(touched)
        assert {i for i in untouched if got.get(i) != 0} == set()
        assert {i: got[i] for i in touched if i in got and got[i] != 0} == {}

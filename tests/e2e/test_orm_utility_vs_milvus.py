"""The pymilvus ORM and ``utility`` calls, run side by side against Milvus 2.3.5 and vecdb: the answers
Milvus gave are the expectations here (partition-scoped deletes after compaction and reload, upsert's
MutationResult counts, hybrid timestamps, ``get_query_segment_info`` states, iterators)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, Partition, utility

from tests.conftest import wait_until
from tests.e2e._helpers import cname, orm  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore:.*ORM-style PyMilvus API")

SEALED, GROWING = 3, 2  # commonpb.SegmentState, as Milvus's query nodes report them


def _collection(orm, name: str, n_default: int = 10, n_p1: int = 10) -> tuple[Collection, np.ndarray]:
    """ids 0..n_default-1 in _default, the next n_p1 in partition p1, flushed, FLAT-indexed, loaded."""
    fields = [FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("f", DataType.DOUBLE),
              FieldSchema("s", DataType.VARCHAR, max_length=32), FieldSchema("vec", DataType.FLOAT_VECTOR, dim=4)]
    c = Collection(name, CollectionSchema(fields), using=orm, consistency_level="Strong")
    c.create_partition("p1")
    n = n_default + n_p1
    vecs = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    ids = list(range(n))
    f = [i / 7 for i in ids]
    s = [f"s{i % 13}" for i in ids]
    c.insert([ids[:n_default], f[:n_default], s[:n_default], vecs[:n_default]])
    Partition(c, "p1").insert([ids[n_default:], f[n_default:], s[n_default:], vecs[n_default:]])
    c.flush()
    c.create_index("vec", {"index_type": "FLAT", "metric_type": "L2"})
    c.load()
    return c, vecs


def _ids(c: Collection) -> list[int]:
    return sorted(r["id"] for r in c.query("id >= 0", output_fields=["id"]))


def _count(c: Collection) -> int:
    return c.query("", output_fields=["count(*)"])[0]["count(*)"]


def _reload(c: Collection) -> None:
    c.release()
    c.load()


def test_partition_delete_keeps_other_partitions_rows(orm, cname):
    """``delete("id in [11, 5]", partition_name="p1")`` deletes 11 (in p1) and not 5 (in _default):
    Milvus 2.3.5 keeps 5 through a flush, a compaction and a reload (count 19, num_entities 19 after
    the compaction). vecdb kept it while loaded but lost it at the next load or compaction (the
    persisted deletes had no partition)."""
    c, _ = _collection(orm, cname)
    want = [i for i in range(20) if i != 11]
    c.delete("id in [11, 5]", partition_name="p1")
    assert _ids(c) == want
    c.flush()
    _reload(c)  # from the persisted segments and deletes
    assert _ids(c) == want
    c.compact()
    c.wait_for_compaction_completed(timeout=60)
    assert c.get_compaction_state().state_name == "Completed"
    assert c.num_entities == 19 and _count(c) == 19
    _reload(c)
    assert _ids(c) == want and _count(c) == 19
    # a delete with no partition still hits every partition
    c.delete("id in [5, 15]")
    c.flush()
    c.compact()
    c.wait_for_compaction_completed(timeout=60)
    _reload(c)
    assert _ids(c) == [i for i in want if i not in (5, 15)] and c.num_entities == 17


def test_upsert_delete_compaction_counts(orm, cname):
    """Upsert (one key there, one new), deletes by pk and by a non-pk filter, a partition-scoped delete:
    after flush and compaction ``num_entities`` is the live count, as Milvus's (vecdb said one less:
    the scoped delete hit the other partition's row)."""
    c, vecs = _collection(orm, cname)
    c.upsert([[1, 99], [0.5, 0.25], ["up", "up2"], vecs[:2]])
    c.delete("id in [2, 3]")
    c.delete("f > 2.6")  # ids 19: f = 19/7 > 2.6
    c.delete("id in [11, 5]", partition_name="p1")
    want = [i for i in range(20) if i not in (2, 3, 19, 11)] + [99]
    assert _ids(c) == sorted(want)
    c.flush()
    c.compact()
    c.wait_for_compaction_completed(timeout=60)
    assert c.num_entities == len(want) == _count(c)
    _reload(c)
    assert _ids(c) == sorted(want)
    assert c.query("id in [1, 99]", output_fields=["f", "s"]) == [
        {"id": 1, "f": 0.5, "s": "up"}, {"id": 99, "f": 0.25, "s": "up2"}]


def test_mutation_results_and_timestamps(orm, cname):
    """Milvus's upsert MutationResult: insert_count = delete_count = upsert_count = the rows sent
    (vecdb said 0 inserted, 0 deleted). Insert, upsert and delete timestamps are hybrid timestamps of
    now (Milvus 2.3.5 answers 0 for a delete's; vecdb gives the write's)."""
    c, vecs = _collection(orm, cname)
    res = c.upsert([[1, 9999], [100.0, 101.0], ["up", "up2"], vecs[:2]])
    assert (res.insert_count, res.delete_count, res.upsert_count) == (2, 2, 2)
    assert list(res.primary_keys) == [1, 9999] and res.succ_count == 2 and res.err_count == 0
    ins = c.insert([[500], [1.0], ["x"], vecs[:1]])
    assert (ins.insert_count, ins.delete_count, ins.upsert_count) == (1, 0, 0)
    dele = c.delete("id in [2, 3, 99999]")
    assert dele.delete_count == 3 and dele.insert_count == 0
    for r in (res, ins, dele):
        assert abs(utility.hybridts_to_unixtime(r.timestamp) - time.time()) < 30
        assert utility.mkts_from_hybridts(r.timestamp, milliseconds=1000) - r.timestamp == 1000 << 18
    assert ins.timestamp > res.timestamp and dele.timestamp > ins.timestamp
    assert c.query("id in [1]", travel_timestamp=res.timestamp) == [{"id": 1}]
    assert c.query("id in [9999]", guarantee_timestamp=res.timestamp, consistency_level="Customized") == [
        {"id": 9999}]


def test_query_segment_info_reports_sealed(orm, cname):
    """Milvus 2.3.5: flushed, loaded segments are state 3 (Sealed) in get_query_segment_info, one per
    partition here with its rows; vecdb said 4 (Flushed). Rows not flushed are a growing (2) segment."""
    c, vecs = _collection(orm, cname, n_default=40, n_p1=10)
    segs = utility.get_query_segment_info(cname, using=orm)
    assert sorted((s.num_rows, s.state) for s in segs) == [(10, SEALED), (40, SEALED)]
    assert all(s.segmentID and s.collectionID and s.partitionID and list(s.nodeIds) for s in segs)
    c.insert([[1000], [1.0], ["x"], vecs[:1]])
    # (a cluster's query node applies the insert from the log just after it is acknowledged)
    wait_until(lambda: sorted((s.num_rows, s.state) for s in utility.get_query_segment_info(cname, using=orm))
               == [(1, GROWING), (10, SEALED), (40, SEALED)], 10, "the growing row listed")


def test_query_segment_info_leaves_out_released_partitions(orm, cname):
    """Milvus lists the loaded segments only: after p1.release() p1's sealed and growing segments are
    gone from get_query_segment_info (vecdb listed them while its reads left them out)."""
    c, vecs = _collection(orm, cname, n_default=40, n_p1=10)
    p1 = Partition(c, "p1")
    p1.insert([[1000, 1001], [1.0, 2.0], ["x", "y"], vecs[:2]])
    c.insert([[2000], [1.0], ["x"], vecs[:1]])

    def listed() -> dict[int, list[tuple[int, int]]]:
        by_part: dict[int, list[tuple[int, int]]] = {}
        for s in utility.get_query_segment_info(cname, using=orm):
            by_part.setdefault(s.partitionID, []).append((s.num_rows, s.state))
        return {k: sorted(v) for k, v in by_part.items()}

    wait_until(lambda: sorted(listed().values()) == [[(1, GROWING), (40, SEALED)], [(2, GROWING), (10, SEALED)]],
               10, "the growing rows listed")  # (a cluster's query node applies them just after they are acknowledged)
    p1.release()
    assert list(listed().values()) == [[(1, GROWING), (40, SEALED)]]
    assert _count(c) == 41


def test_index_load_and_progress_calls(orm, cname):
    """What Milvus 2.3.5 answered for the same calls: index building progress, load state and progress
    (a partition too), wait helpers, list_indexes, replicas, collection metadata."""
    c, _ = _collection(orm, cname, n_default=40, n_p1=10)
    want = {"total_rows": 50, "indexed_rows": 50, "pending_index_rows": 0, "state": "Finished"}
    # a cluster's segment in a hand-over between query nodes counts on both for that moment
    # (QueryNodeRouter.index_state): the answer once the load has settled
    deadline = time.monotonic() + 20
    while (got := utility.index_building_progress(cname, using=orm)) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == want
    assert utility.wait_for_index_building_complete(cname, using=orm, timeout=30) is True
    assert utility.list_indexes(cname, using=orm) == [c.index().index_name]
    assert str(utility.load_state(cname, using=orm)) == "Loaded"
    assert str(utility.load_state(cname, partition_names=["p1"], using=orm)) == "Loaded"
    assert utility.loading_progress(cname, using=orm) == {"loading_progress": "100%"}
    assert utility.loading_progress(cname, partition_names=["p1"], using=orm) == {"loading_progress": "100%"}
    assert utility.wait_for_loading_complete(cname, using=orm, timeout=30) is None
    assert len(c.get_replicas().groups) == 1
    assert [p.name for p in c.partitions] == ["_default", "p1"] and not c.is_empty
    assert c.primary_field.name == "id" and c.num_entities == 50
    assert utility.has_partition(cname, "p1", using=orm) and not utility.has_partition(cname, "nope", using=orm)
    c.release()
    assert str(utility.load_state(cname, using=orm)) == "NotLoad"
    with pytest.raises(Exception, match="not loaded") as e:
        utility.loading_progress(cname, using=orm)
    assert e.value.code == 101


def test_iterators_match_milvus(orm, cname):
    """5,000 rows: query_iterator batches in pk order and search_iterator batches best first, with the
    totals and first rows Milvus 2.3.5 gave for the same data and calls."""
    c, vecs = _collection(orm, cname, n_default=4000, n_p1=1000)

    def batches(it) -> list[list[int]]:
        out = []
        while b := it.next():
            out.append([r["id"] for r in b])
        it.close()
        return out

    got = batches(c.query_iterator(batch_size=100, expr="s == 's3'", output_fields=["id"]))
    flat = [i for b in got for i in b]
    assert flat == [i for i in range(5000) if i % 13 == 3] and max(len(b) for b in got) == 100
    got = batches(c.query_iterator(batch_size=300, limit=1000, expr="id >= 100", output_fields=["id", "s"]))
    assert [len(b) for b in got] == [300, 300, 300, 100] and [i for b in got for i in b] == list(range(100, 1100))
    got = batches(c.query_iterator(batch_size=400, expr="id >= 0", partition_names=["p1"]))
    assert [len(b) for b in got] == [400, 400, 200] and [i for b in got for i in b] == list(range(4000, 5000))

    sp = {"metric_type": "L2", "params": {}}
    it = c.search_iterator(vecs[10:11], "vec", sp, batch_size=100, limit=450)
    hits = []
    while len(b := it.next()):
        hits.append([(h.id, h.distance) for h in b])
    it.close()
    assert [len(b) for b in hits] == [100, 100, 100, 100, 50]
    flat_hits = [h for b in hits for h in b]
    assert flat_hits[0][0] == 10 and len({i for i, _ in flat_hits}) == 450
    dist = [d for _, d in flat_hits]
    assert all(dist[i] <= dist[i + 1] + 1e-4 for i in range(len(dist) - 1))
    ref = np.sort(((vecs - vecs[10]) ** 2).sum(1))[:450]
    np.testing.assert_allclose(dist, ref, rtol=1e-4, atol=1e-4)

"""A read sees each write whole or not at all, while the query node applies the log under it.

A query node reads its shards without their lock while it applies the log's records, so an upsert
applied while a read ran (its new row appended after the read took its segments, its old row marked
deleted at a timestamp below the read's) vanished from that read: a Strong count(*) through one
proxy, while another proxy upserted rows that were all there, answered fewer rows (5,985 of 6,000).
A read now sees a shard as of the last record applied in full before it looked (``Shard.horizon``).
"""

from __future__ import annotations

import threading

import numpy as np
from pymilvus import DataType, MilvusClient

from tests.conftest import start_cluster
from vecdb.log_records import InsertRecord
from vecdb.querynode import executor
from vecdb.querynode.shard import Shard
from vecdb.schema import CollectionSchema, FieldSchema

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])


def _upsert(ids, ts: int, value: float, partition_id: int = 1) -> InsertRecord:
    ids = np.asarray(ids, np.int64)
    return InsertRecord(7, partition_id, ts, len(ids), {"id": ids, "v": np.full((len(ids), 2), value, np.float32)})


def _rows(views, at: int) -> dict[int, float]:
    """pk -> its vector's first value, of the rows a read at ``at`` over ``views`` returns."""
    rows = executor.query(views, at, None, ["id", "v"], "id", None, 0)
    return dict(zip(rows["id"].tolist(), rows["v"][:, 0].tolist()))


def test_an_upsert_applied_during_a_read_is_seen_whole_or_not_at_all():
    shard = Shard("c7-s0", SCHEMA)
    shard.apply(1, _upsert([1, 2, 3], ts=10, value=0.0))
    views = shard.snapshot(None)  # a read took its segments ...
    shard.apply(2, _upsert([1, 2], ts=20, value=1.0))  # ... then the node applied an upsert of two of them
    # the read's timestamp is above the upsert's: without the horizon rows 1 and 2 were deleted and not replaced
    assert executor.count(views, 30, None) == 3
    assert _rows(views, 30) == {1: 0.0, 2: 0.0, 3: 0.0}
    assert _rows(shard.snapshot(None), 30) == {1: 1.0, 2: 1.0, 3: 0.0}  # a read after it: the new rows


def test_the_records_of_one_append_become_visible_together():
    shard = Shard("c7-s0", SCHEMA)
    shard.apply(1, _upsert([1, 2], ts=10, value=0.0, partition_id=1))
    # one upsert into two partitions (a partition key): two records of one timestamp, the second not applied yet
    shard.apply(2, _upsert([1], ts=20, value=1.0, partition_id=1), publish=False)
    views = shard.snapshot(None)
    shard.apply(3, _upsert([2], ts=20, value=1.0, partition_id=2))  # moves row 2 to the other partition
    assert _rows(views, 30) == {1: 0.0, 2: 0.0}
    assert _rows(shard.snapshot(None), 30) == {1: 1.0, 2: 1.0}


def test_strong_counts_on_one_proxy_stay_exact_while_another_proxy_upserts(tmp_path, remote_storage):
    n, dim, name = 3000, 8, "upserted"
    with start_cluster(remote_storage(), tmp_path, querynodes=("qn0",), datanodes=(),
                       proxies=("proxy", "proxy2")) as cluster:
        a, b = cluster.client("proxy"), cluster.client("proxy2")
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("k", DataType.INT64)
        a.create_collection(name, schema=schema, num_shards=4)
        index = a.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        a.create_index(name, index)
        vecs = np.random.default_rng(0).random((n, dim)).astype(np.float32)
        a.insert(name, [{"id": i, "vec": vecs[i].tolist(), "k": 0} for i in range(n)])
        a.load_collection(name)
        stop, writes = threading.Event(), []

        def upsert_on_b():
            rng, k = np.random.default_rng(1), 1
            while not stop.is_set():
                ids = rng.choice(n, 200, replace=False)
                b.upsert(name, [{"id": int(i), "vec": vecs[i].tolist(), "k": k} for i in ids])
                writes.append(k)
                k += 1

        writer = threading.Thread(target=upsert_on_b)
        writer.start()
        try:
            # a filter makes each read look at the rows longer: more upserts land while it does
            counts = [a.query(name, filter="k >= 0 and id >= 0", output_fields=["count(*)"],
                              consistency_level="Strong")[0]["count(*)"] for _ in range(300)]
        finally:
            stop.set()
            writer.join()
        assert len(writes) > 20  # the counts ran while upserts landed
        assert counts == [n] * len(counts), sorted(set(counts))
        rows = a.query(name, filter="id >= 0", output_fields=["id"], limit=n + 10, consistency_level="Strong")
        assert sorted(r["id"] for r in rows) == list(range(n))

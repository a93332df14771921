"""A field added while reads go on: add_collection_field changes the catalog, then refreshes the
query nodes, so a read between asks a node for a column its segments do not have yet; and a segment
built outside the shard lock from files read before the field (a compaction's, a stub's full copy)
lands in a shard that took the field meanwhile. Both failed with ``KeyError`` (a CDC target queried
while the replicator added a field, caught in CI); the node now takes the newer schema first, and
the shard brings such a segment to its schema as it installs it."""

from __future__ import annotations

import dataclasses

import numpy as np

from vecdb.catalog_model import CollectionInfo, PartitionInfo, coll_key
from vecdb.log_records import InsertRecord, encode
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

OLD = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                             FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
NEW = dataclasses.replace(OLD, fields=[*OLD.fields, FieldSchema("score", DataType.INT64, field_id=102, nullable=True,
                                                                default_value=7)], version=1)
CH = "c7-s0"


def _info(schema: CollectionSchema) -> CollectionInfo:
    return CollectionInfo(id=7, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(1, "_default", 1)])


def _columns(ids) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, np.int64)
    return {"id": ids, "v": np.zeros((len(ids), 2), np.float32)}


def test_a_read_with_a_newer_schema_than_the_node_takes_it_first():
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    meta.put(coll_key(7), _info(OLD).to_json())
    log.append_batch(CH, [encode(InsertRecord(7, 1, 100, 3, _columns([1, 2, 3])))])
    qn = QueryNode(log, meta, objects, tail=True)
    try:
        qn.load(_info(OLD))
        meta.put(coll_key(7), _info(NEW).to_json())  # the catalog has the field; this node not yet
        got = qn.query(_info(NEW), 10**6, None, None, ["id", "score"], None, 0)
        assert sorted(got["id"].tolist()) == [1, 2, 3]
        assert got["score"].tolist() == [7, 7, 7]  # rows before the field: its default value
        hits = qn.search(_info(NEW), _spec(), None, ["score"])
        assert hits.columns["score"].ravel().tolist() == [7, 7, 7]
    finally:
        qn.close()


def _spec() -> SearchSpec:
    return SearchSpec(field=OLD.field("v"), queries=np.zeros((1, 2), np.float32), limit=3, offset=0, metric="L2",
                      params={}, ts=10**6)


def test_a_segment_built_under_the_old_schema_gets_the_field_as_the_shard_installs_it():
    shard = Shard(CH, OLD)
    seg = shard.add_sealed(lambda slot: Segment.from_columns(slot, 1, OLD, _columns([1, 2]), np.array([5, 5]),
                                                            np.full(2, np.iinfo(np.uint64).max, np.uint64)))
    # built outside the lock from files read before the field was added ...
    compacted = Segment.from_columns(shard.reserve_slot(), 1, OLD, _columns([1, 2]), np.array([5, 5]),
                                     np.full(2, np.iinfo(np.uint64).max, np.uint64))
    # ... or with the new schema but the old files' columns (the shard's schema read before the lock)
    copied = Segment.from_columns(compacted.slot, 1, NEW, _columns([1, 2]), np.array([5, 5]),
                                  np.full(2, np.iinfo(np.uint64).max, np.uint64))
    with shard.lock:
        for s in shard.segments.values():
            s.take_schema(NEW)
        shard.schema = NEW
        shard.replace_segments([seg], compacted)
    assert compacted.schema.version == 1 and compacted.column("score").tolist() == [7, 7]
    with shard.lock:
        shard.swap(compacted, copied)
    assert shard.segments[copied.slot] is copied and copied.column("score").tolist() == [7, 7]

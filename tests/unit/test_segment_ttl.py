"""A collection's TTL at read time (vecdb.querynode.segment ``visible``, the query node's read views):
rows written more than ``collection.ttl.seconds`` before the read's snapshot are not seen."""

from __future__ import annotations

import numpy as np

from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.querynode import executor
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.timestamp import compose

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])


def _segment(times_ms: list[int]) -> Segment:
    seg = Segment(0, 0, SCHEMA)
    for i, t in enumerate(times_ms):
        seg.append({"id": np.array([i]), "v": np.zeros((1, 2), np.float32)}, 1, compose(t))
    return seg


def test_rows_older_than_the_snapshot_by_the_ttl_are_hidden():
    seg = _segment([1_000, 5_000, 9_000])
    snapshot = compose(10_000)
    assert seg.visible(snapshot, 3) is None  # no TTL: every row, no mask
    np.testing.assert_array_equal(seg.visible(snapshot, 3, compose(5_000)), [False, False, True])
    assert seg.visible(snapshot, 3, compose(500)) is None  # nothing is that old: still no mask
    view = SegmentView(seg, 3, compose(6_000))  # a TTL of 6 s: the row of 1 s expired at 10 s
    np.testing.assert_array_equal(executor.valid_mask(view, snapshot, None), [False, True, True])
    assert executor.count([view], snapshot, None) == 2
    assert executor.count([view], compose(4_000), None) == 1  # an older snapshot: its own bound (its rows so far)


def test_the_ttl_property_as_a_timestamp_span():
    info = CollectionInfo(7, "default", "c", SCHEMA, 1, 0, 1, partitions=[PartitionInfo(0, "_default", 1)])
    assert info.ttl_span == 0
    info.properties["collection.ttl.seconds"] = "60"
    assert info.ttl_span == compose(60_000)
    info.properties["collection.ttl.seconds"] = "0"
    assert info.ttl_span == 0

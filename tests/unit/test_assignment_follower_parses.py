"""A query node's ``AssignmentFollower`` parses each ``assign/`` record once, not every record on each
pass: a pass runs on every change (and every second), and parsing every loaded collection's assignment
(twice) in each made loading N collections quadratic in a ``vecdb standalone --workers`` worker."""

from __future__ import annotations

import time

from tests.conftest import wait_until
from vecdb.catalog_model import CollectionInfo, PartitionInfo, coll_key
from vecdb.coord.assignment import Assignment, Replica, assign_key
from vecdb.querynode.assigned import AssignmentFollower
from vecdb.querynode.node import QueryNode
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

COLLECTIONS = 30
NODE = "qn1"


def _info(cid: int) -> CollectionInfo:
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])
    return CollectionInfo(cid, "default", f"c{cid}", schema, 1, 0, 1, partitions=[PartitionInfo(1, "_default", 1)],
                          loaded=True)


def _assign(meta, cid: int) -> None:
    meta.put(coll_key(cid), _info(cid).to_json())
    meta.put(assign_key(cid), Assignment(cid, [Replica(1, [NODE], {f"c{cid}-s0": NODE})]).to_json())


def test_a_new_assignment_is_the_only_record_parsed_and_an_idle_pass_parses_none():
    log, meta, objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
    for cid in range(1, COLLECTIONS + 1):
        _assign(meta, cid)
    qn = QueryNode(log, meta, objects, tail=True)
    follower = AssignmentFollower(qn, meta, NODE, meta.grant_lease(30))
    try:
        wait_until(lambda: len(qn.channels_held()) == COLLECTIONS, 30, "every assigned channel is loaded")
        assert follower.assignments.parses == COLLECTIONS
        time.sleep(1.5)  # passes run every second with nothing changed: they parse nothing
        assert follower.assignments.parses == COLLECTIONS

        _assign(meta, COLLECTIONS + 1)
        wait_until(lambda: COLLECTIONS + 1 in qn.channels_held(), 30, "the new assignment is loaded")
        assert follower.assignments.parses == COLLECTIONS + 1

        meta.delete(assign_key(3))  # released: the node lets its channel go, parsing nothing
        wait_until(lambda: 3 not in qn.channels_held(), 30, "the released collection's channel goes")
        assert follower.assignments.parses == COLLECTIONS + 1
        assert sorted(qn.channels_held()) == [c for c in range(1, COLLECTIONS + 2) if c != 3]
    finally:
        follower.close()
        qn.close()

"""Log records of a vecdb from before records carried field ids (an upgrade in place replays them):
``vecdb.column_defaults.older_stale`` tells a dropped field's logged column from that of the field added
under its name by the validity mask every nullable field's records carry (a field added is nullable).
tests/e2e/test_upgrade_in_place.py has the real data directory of such a version."""

from __future__ import annotations

import numpy as np

from vecdb.column_defaults import current_columns, older_stale
from vecdb.log_records import InsertRecord, decode, encode
from vecdb.querynode.shard import Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

PK = FieldSchema("id", DataType.INT64, field_id=100, is_primary=True)
VEC = FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)
TAG = FieldSchema("tag", DataType.VARCHAR, field_id=102, max_length=8, nullable=True, default_value="d")
# "score" (INT64, id 103) and "kind" (INT64, id 104) dropped; added again as 105 (INT64) and 106 (VARCHAR)
NEW = CollectionSchema("c", [PK, VEC, TAG, FieldSchema("score", DataType.INT64, field_id=105, nullable=True),
                             FieldSchema("kind", DataType.VARCHAR, field_id=106, max_length=8, nullable=True)],
                       version=4, max_field_id=106)


def _old_record(ids, ts) -> InsertRecord:
    """As an older proxy wrote it before the drops: the dropped fields' columns, no field ids."""
    ids = np.asarray(ids, np.int64)
    n = len(ids)
    tag = np.empty(n, object)
    tag[:] = "t"
    cols = {"id": ids, "v": np.zeros((n, 2), np.float32), "score": ids * 10, "kind": ids * 100,
            "tag": tag, valid_key("tag"): np.ones(n, bool)}
    return decode(encode(InsertRecord(7, 1, ts, n, cols)))  # no "f" in its header: an older version's bytes


def test_an_older_records_dropped_columns_leave_and_its_nullable_ones_stay():
    rec = _old_record([1, 2], 100)
    assert rec.field_ids is None
    assert older_stale(NEW, rec.columns) == {"score", "kind"}
    assert set(current_columns(NEW, rec.columns, None)) == {"id", "v", "tag", valid_key("tag")}


def test_an_older_record_of_the_added_field_keeps_it():
    n = 2
    kind = np.empty(n, object)
    kind[:] = "k"
    cols = {"id": np.arange(n, dtype=np.int64), "v": np.zeros((n, 2), np.float32), "kind": kind,
            valid_key("kind"): np.ones(n, bool)}
    assert current_columns(NEW, cols, None) is cols  # written after the add: its mask is there


def test_an_older_records_replay_reads_null_in_a_field_added_under_a_dropped_ones_name():
    sh = Shard("ch", NEW)
    sh.apply(1, _old_record([1, 2], 100))
    seg = sh.growing[1]
    assert seg.column(valid_key("score")).tolist() == [False, False]
    assert seg.column(valid_key("kind")).tolist() == [False, False]
    assert seg.column("tag").tolist() == ["t", "t"]


def test_a_dropped_nullable_fields_column_of_another_type_leaves():
    """"n" was a nullable INT64, dropped and added again as a nullable VARCHAR: the older record's
    column has a mask either way, its type tells (appended as it is, a query failed with 65535)."""
    schema = CollectionSchema("c", [PK, VEC, FieldSchema("n", DataType.VARCHAR, field_id=103, max_length=8,
                                                         nullable=True)], version=2, max_field_id=103)
    n = 2
    cols = {"id": np.arange(n, dtype=np.int64), "v": np.zeros((n, 2), np.float32), "n": np.array([4, 5], np.int64),
            valid_key("n"): np.ones(n, bool)}
    rec = decode(encode(InsertRecord(7, 1, 100, n, cols)))
    assert set(current_columns(schema, rec.columns, None)) == {"id", "v"}
    sh = Shard("ch", schema)
    sh.apply(1, rec)
    assert sh.growing[1].column(valid_key("n")).tolist() == [False, False]

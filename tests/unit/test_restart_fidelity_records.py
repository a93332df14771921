"""What a log record read again (a restart's replay, a persist) means, as it meant when first applied
(tests/e2e/test_restart_fidelity.py found both): a field dropped and another added under its name
(``vecdb.column_defaults.current_columns``, the record's ``field_ids``), and a record of a partition read
after the partition was dropped (``Shard.drop_partition``). Real shards, segments and records."""

from __future__ import annotations

import numpy as np

from vecdb.column_defaults import current_columns, unknown_columns
from vecdb.log_records import InsertRecord, decode, encode
from vecdb.querynode.shard import Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

PK = FieldSchema("id", DataType.INT64, field_id=100, is_primary=True)
VEC = FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)
OLD = CollectionSchema("c", [PK, VEC, FieldSchema("score", DataType.INT64, field_id=102, nullable=True)])
# "score" dropped (id 102) and added again: id 103
NEW = CollectionSchema("c", [PK, VEC, FieldSchema("score", DataType.INT64, field_id=103, nullable=True)],
                       version=2, max_field_id=103)


def _rec(ids, ts, pid=1, score=None, field_ids=None) -> InsertRecord:
    ids = np.asarray(ids, np.int64)
    cols = {"id": ids, "v": np.zeros((len(ids), 2), np.float32)}
    if score is not None:
        cols.update({"score": np.asarray(score, np.int64), valid_key("score"): np.ones(len(ids), bool)})
    return InsertRecord(7, pid, ts, len(ids), cols, field_ids=field_ids)


def test_an_insert_record_keeps_its_field_ids_through_the_log():
    rec = _rec([1, 2], 100, score=[5, 6], field_ids={"id": 100, "v": 101, "score": 102})
    back = decode(encode(rec))
    assert back.field_ids == {"id": 100, "v": 101, "score": 102}
    assert decode(encode(_rec([1], 100))).field_ids is None  # as records written before they carried them


def test_a_dropped_fields_column_leaves_a_record_read_under_the_new_schema():
    rec = _rec([1, 2], 100, score=[5, 6], field_ids={"id": 100, "v": 101, "score": 102})
    assert set(current_columns(NEW, rec.columns, rec.field_ids)) == {"id", "v"}  # the value and its mask
    assert current_columns(OLD, rec.columns, rec.field_ids) is rec.columns
    assert current_columns(NEW, rec.columns, None) is rec.columns  # no ids: by name, as before
    # a record of the new field, on a node that still has the old schema: the node must re-read it
    assert unknown_columns(OLD, rec.columns, {"id": 100, "v": 101, "score": 103})
    assert not unknown_columns(NEW, rec.columns, {"id": 100, "v": 101, "score": 103})


def test_rows_written_before_a_drop_and_re_add_read_null_there_when_the_log_is_replayed():
    sh = Shard("ch", NEW)
    sh.apply(1, _rec([1, 2], 100, score=[5, 6], field_ids={"id": 100, "v": 101, "score": 102}))
    sh.apply(2, _rec([3], 200, score=[7], field_ids={"id": 100, "v": 101, "score": 103}))
    seg = sh.growing[1]
    assert seg.column(valid_key("score")).tolist() == [False, False, True]
    assert seg.column("score").tolist()[2] == 7


def test_a_record_of_a_dropped_partition_read_after_the_drop_stays_dropped():
    sh = Shard("ch", NEW)
    sh.apply(1, _rec([1, 2], 100, pid=1))
    sh.drop_partition(2)  # dropped before this node read the partition's rows from the log
    sh.apply(2, _rec([3, 4], 90, pid=2))
    assert list(sh.growing) == [1]
    assert sorted(sh.pk_index) == [1, 2]
    assert sh.applied_position == 2

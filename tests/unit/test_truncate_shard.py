"""truncate_collection on a query node's shard (vecdb.querynode.shard ``Shard.truncate``) and a
segment taking fields added to the schema (``Segment.take_schema``): real shards and segments."""

from __future__ import annotations

import numpy as np

from vecdb.log_records import InsertRecord, SealRecord
from vecdb.querynode.shard import Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
                                FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])


def _rec(ids, ts, pid=1):
    ids = np.asarray(ids, np.int64)
    return InsertRecord(7, pid, ts, len(ids), {"id": ids, "v": np.zeros((len(ids), 2), np.float32)})


def _live(shard, at):
    out = []
    for view in shard.snapshot(None):
        vis = view.segment.visible(at, view.n)
        pks = view.segment.pks(view.n)
        out += (pks if vis is None else pks[vis]).tolist()
    return sorted(out)


def test_truncate_drops_old_rows_keeps_later_ones_and_skips_old_records_applied_after():
    sh = Shard("ch", SCHEMA)
    sh.apply(1, _rec(range(0, 10), ts=100))
    sh.apply(2, SealRecord(7, 150))  # a sealed segment of rows 0..9
    sh.apply(3, _rec(range(10, 20), ts=200))  # growing
    sh.apply(4, _rec(range(20, 25), ts=400))  # written after the truncate (ts 300), applied before it
    sh.truncate(300)
    assert _live(sh, 1000) == list(range(20, 25))
    assert len(sh.segments) == 1  # the sealed segment, all older, is gone; the growing one stays
    assert sorted(sh.pk_index) == list(range(20, 25))
    sh.apply(5, _rec(range(30, 35), ts=250))  # written before the truncate, applied after it: gone
    sh.apply(6, _rec([0, 1], ts=500))  # old ids again, after it: kept
    assert _live(sh, 1000) == [0, 1, *range(20, 25)]
    assert sh.applied_position == 6


def test_take_schema_gives_old_rows_null_or_default_and_appends_go_on():
    sh = Shard("ch", SCHEMA)
    sh.apply(1, _rec(range(3), ts=100))
    seg = sh.growing[1]
    new = CollectionSchema.from_dict(SCHEMA.to_dict())
    new.fields += [FieldSchema("n", DataType.INT64, field_id=102, nullable=True),
                   FieldSchema("s", DataType.VARCHAR, field_id=103, max_length=4, nullable=True, default_value="d")]
    new.version = 1
    with sh.lock:
        seg.take_schema(new)
        sh.schema = new
    rec = _rec([3, 4], ts=200)
    rec.columns.update({"n": np.array([7, 8]), valid_key("n"): np.array([True, False]),
                        "s": np.array(["x", "y"], object), valid_key("s"): np.ones(2, bool)})
    sh.apply(2, rec)
    sh.apply(3, _rec([5], ts=300))  # a record without them (written by an older proxy)
    assert seg.column("n").tolist()[:3] == [0, 0, 0] and seg.column("n").tolist()[3] == 7
    assert seg.column(valid_key("n")).tolist() == [False, False, False, True, False, False]
    assert seg.column("s").tolist() == ["d", "d", "d", "x", "y", "d"]
    assert seg.column(valid_key("s")).tolist() == [True] * 6


def test_a_query_node_takes_an_added_field_from_the_catalog_when_a_record_carries_it():
    """A proxy that saw the new schema may send the field before the query nodes were refreshed:
    the node reads the schema from the catalog then, and the rows keep the field's values (rows
    before it read as null), in the growing segment and after a persist and a load."""
    from tests.unit.test_compaction_swap import CH, CID, READ_TS, World
    from vecdb.catalog_model import coll_key

    w = World()
    try:
        w.insert(range(5), "a")
        w.seal_and_persist()
        w.insert(range(5, 8), "b")
        qn = w.node()
        w.info.schema = CollectionSchema.from_dict(w.info.schema.to_dict())
        w.info.schema.fields.append(FieldSchema("n", DataType.INT64, field_id=103, nullable=True))
        w.info.schema.version = 1
        w.meta.put(coll_key(CID), w.info.to_json())  # the catalog has it; the node was not told
        w.ts += 1
        cols = {"id": np.array([8, 9], np.int64), "v": np.zeros((2, 4), np.float32),
                "s": np.array(["c", "c"], object), "n": np.array([80, 90]), valid_key("n"): np.array([True, True])}
        w.append(InsertRecord(CID, 0, w.ts, 2, cols))
        got = qn.query(w.info, READ_TS, None, None, ["id", "n", valid_key("n")], None, 0)
        by_id = dict(zip(got["id"].tolist(), zip(got["n"].tolist(), got[valid_key("n")].tolist())))
        assert by_id[8] == (80, True) and by_id[9] == (90, True)
        assert all(by_id[i][1] is False for i in range(8))
        w.seal_and_persist()
        qn2 = w.node()
        got = qn2.query(w.info, READ_TS, None, None, ["id", "n", valid_key("n")], None, 0)
        assert dict(zip(got["id"].tolist(), got["n"].tolist()))[9] == 90
        assert sorted(got["id"][got[valid_key("n")]].tolist()) == [8, 9]
        assert CH in qn2._by_channel
    finally:
        w.close()

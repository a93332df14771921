"""vecdb.proxy.grouping: Milvus's grouping walk on hand-made windows of hits."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import errors
from vecdb.proxy.grouping import GroupBy, group_fused, group_hits, parse_group_by, parse_group_scorer
from vecdb.schema import CollectionSchema, DataType, FieldSchema

F = FieldSchema("g", DataType.INT64)


def test_groups_in_opening_order_with_their_hits_together():
    values = np.array([1, 2, 1, 3, 2, 1, 4])
    out = group_hits([7], values, window=10, limit=2, offset=0, group=GroupBy(F, 2))
    assert out.rows.tolist() == [0, 2, 1, 4] and out.topks == [4] and out.done == [True]


def test_offset_skips_whole_groups():
    values = np.array([1, 2, 1, 3, 2, 3])
    out = group_hits([6], values, window=6, limit=5, offset=1, group=GroupBy(F, 3))
    assert out.rows.tolist() == [1, 4, 3, 5]


def test_done_flags_decide_whether_the_window_widens():
    values = np.array([1, 2, 1, 3])  # a full window (4 of 4 hits) with group 2 and 3 short of 2 hits
    strict = group_hits([4], values, window=4, limit=3, offset=0, group=GroupBy(F, 2, strict=True))
    loose = group_hits([4], values, window=4, limit=3, offset=0, group=GroupBy(F, 2, strict=False))
    assert (strict.done, loose.done) == ([False], [True])
    ran_dry = group_hits([4], values, window=8, limit=3, offset=0, group=GroupBy(F, 2, strict=True))
    assert ran_dry.done == [True]


def test_several_queries():
    values = np.array(["a", "a", "b", "c", "c"], dtype=object)
    out = group_hits([2, 3], values, window=5, limit=1, offset=0, group=GroupBy(F, 1))
    assert (out.topks, out.rows.tolist()) == ([1, 1], [0, 2])


def test_parse_group_by():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), F,
                                    FieldSchema("f", DataType.FLOAT)])
    g = parse_group_by(schema, {"group_by_field": "g", "group_size": "3", "strict_group_size": "True"}, {},
                       DataType.FLOAT_VECTOR)
    assert (g.field.name, g.size, g.strict) == ("g", 3, True)
    assert parse_group_by(schema, {}, {}, DataType.FLOAT_VECTOR) is None
    with pytest.raises(errors.InvalidParameter, match="Unsupported data type"):
        parse_group_by(schema, {"group_by_field": "f"}, {}, DataType.FLOAT_VECTOR)
    with pytest.raises(errors.InvalidParameter, match="negative"):
        parse_group_by(schema, {"group_by_field": "g", "group_size": "0"}, {}, DataType.FLOAT_VECTOR)
    with pytest.raises(errors.FieldNotFound):
        parse_group_by(schema, {"group_by_field": "x"}, {}, DataType.FLOAT_VECTOR)


def test_group_fused_orders_groups_by_their_score_then_size_then_first_key():
    """A grouped hybrid answer (Milvus's newGroupingIDScores): groups of at most ``size`` of the fused
    hits, ordered by the scorer's value, then the larger group, then the smaller first key."""
    pks = np.array([10, 11, 12, 13, 14, 15], np.int64)
    scores = np.array([0.9, 0.8, 0.5, 0.5, 0.4, 0.1], np.float32)
    values = np.array(["a", "b", "b", "c", "c", "a"], dtype=object)

    def answer(scorer, limit=3, offset=0, size=2):
        topks, rows = group_fused([6], pks, scores, values, size, limit, offset, scorer)
        return topks, pks[rows].tolist()
    assert answer("max") == ([6], [10, 15, 11, 12, 13, 14])  # a 0.9, b 0.8, c 0.5
    assert answer("sum") == ([6], [11, 12, 10, 15, 13, 14])  # b 1.3, a 1.0, c 0.9
    assert answer("avg") == ([6], [11, 12, 10, 15, 13, 14])  # b 0.65, a 0.5, c 0.45
    assert answer("max", limit=1, offset=1) == ([2], [11, 12])
    assert answer("max", size=1) == ([3], [10, 11, 13])
    tie = group_fused([3], np.array([1, 2, 3]), np.array([0.5, 0.5, 0.2], np.float32),
                      np.array([7, 8, 8]), 2, 2, 0, "max")
    assert tie[1].tolist() == [1, 2, 0]  # equal best scores: the larger group (8) first
    assert group_fused([0, 1], pks[:1], scores[:1], values[:1], 1, 5, 0, "max")[0] == [0, 1]
    assert parse_group_scorer({}) == "max" and parse_group_scorer({"rank_group_scorer": "avg"}) == "avg"
    with pytest.raises(errors.InvalidParameter, match="input group scorer type: min is not supported"):
        parse_group_scorer({"rank_group_scorer": "min"})

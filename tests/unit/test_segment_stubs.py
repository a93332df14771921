"""A channel's sealed segments spread over two query nodes (vecdb.coord.assignment ``Replica.segments``):
the leader serves growing rows and the segments it holds in full, another node only the segments
placed on it; each keeps the rest as stubs (keys and timestamps), so deletes and upserts reach every
row. Real data node persist and query node loads on memory stores; answers compared with the
reference the World keeps (tests/unit/test_compaction_swap.py)."""

from __future__ import annotations

import pytest

from tests.unit.test_compaction_swap import CH, CID, READ_TS, World
from vecdb import errors
from vecdb.querynode.node import QueryNode
from vecdb.querynode.shard import ReadScope
from vecdb.storage import segments as sf


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


def _rows(node: QueryNode, w: World, scope: ReadScope | None) -> dict:
    scopes = None if scope is None else {CH: scope}
    cols = node.query(w.info, READ_TS, None, None, ["id", "s"], None, 0, scopes=scopes)
    assert node.count(w.info, READ_TS, None, None, scopes=scopes) == len(cols["id"])
    return dict(zip(cols["id"].tolist(), cols["s"].tolist()))


def leader_and_holder(w: World, holder_compacts: bool = True) -> tuple[str, str, QueryNode, QueryNode]:
    """Two sealed segments (ids 0-99 "a", 100-199 "b"), p0 and p1; a leading node holding both in full
    and a second node holding p1 in full (``holder_compacts`` False: it applies no compaction)."""
    w.insert(range(100), "a")
    w.seal_and_persist()
    w.insert(range(100, 200), "b")
    w.seal_and_persist()
    p0, p1 = [s["prefix"] for s in sf.list_segments(w.meta, CID, CH)]
    leader = w.node()
    holder = QueryNode(w.log, w.meta, w.objects)
    if not holder_compacts:
        holder.compactions.close()
    holder.load(w.info, leader=False, full=lambda ch, prefix: prefix == p1)
    w.nodes.append(holder)
    return p0, p1, leader, holder


def test_a_leader_and_a_holder_answer_together_what_one_node_would(world):
    w = world
    p0, p1, leader, holder = leader_and_holder(w)
    assert holder.full_segments() == {CID: {CH: [p1]}} and not holder.leads(CH)
    assert leader.demote(CID, CH, [p1]) == [p1]
    assert leader.full_segments() == {CID: {CH: [p0]}}

    # writes after the split reach rows wherever they are served: growing rows, deletes, upserts
    w.insert(range(200, 250), "c")
    w.delete([5, 150, 210])
    w.insert([120, 7], "d")  # upserts: 120 lives on the holder, 7 on the leader
    lead_part, hold_part = ReadScope(True, frozenset([p1])), ReadScope(False, frozenset([p1]))
    a, b = _rows(leader, w, lead_part), _rows(holder, w, hold_part)
    assert not set(a) & set(b)
    want = {k: v for k, (_, v) in w.ref.items()}
    assert {**a, **b} == want
    assert b[130] == "b-130" and 120 not in b and 150 not in b  # the new 120 is growing, on the leader
    assert set(b) == set(range(100, 200)) - {120, 150}

    # a part a node does not hold is refused, so a proxy with an older picture plans again
    with pytest.raises(errors.CollectionNotLoaded, match="not served here"):
        _rows(leader, w, ReadScope(True, frozenset()))  # p1 is a stub on the leader
    with pytest.raises(errors.CollectionNotLoaded, match="not led"):
        _rows(holder, w, ReadScope(True, frozenset([p1])))
    with pytest.raises(errors.CollectionNotLoaded, match="not served here"):
        _rows(holder, w, ReadScope(False, frozenset([p0])))

    # the leader takes p1 back (its holder gone): read from the files, deletes marked since kept
    assert leader.promote(CID, CH, [p1]) == [p1]
    assert _rows(leader, w, ReadScope(True, frozenset())) == want
    # and a node that stops leading keeps its growing rows as stubs: nothing of them is read there
    leader.follow_only(CH)
    assert _rows(leader, w, None) == {k: v for k, v in want.items() if k < 200 and k not in (7, 120)}
    # a later insert on a node that does not lead lands as a stub only
    w.insert([300], "e")
    assert 300 not in _rows(holder, w, None) and 300 in w.ref

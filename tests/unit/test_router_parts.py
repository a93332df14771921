"""A channel read in parts on several query nodes (vecdb.proxy.router.QueryNodeRouter.plans): when
another node of the replica still holds in full a sealed segment its leader does not (a hand-over, the
coord placing nothing any more), when a read at an older snapshot asks every node holding the channel,
and the one position each part of such a read waits for, whatever the consistency level."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import wait_until
from tests.unit.test_router import INFO, Node
from vecdb.coord.assignment import Assignment, Replica, assign_key, full_key, serve_key
from vecdb.coord.session import register_node
from vecdb.proxy.consistency import ReadLevel, reading_at
from vecdb.proxy.router import QueryNodeRouter
from vecdb.querynode.shard import ReadScope
from vecdb.storage.memory import MemoryLog, MemoryMetaStore
from vecdb.timestamp import compose


class ScopedNode(Node):
    def count(self, info, ts, flt, parts, wait=None, channels=None, scopes=None, sealed_only=False):
        self.calls.append((list(channels), wait, scopes))
        return len(channels)


@pytest.fixture
def two_nodes():
    """Node "a" leads both channels of INFO's one replica of nodes a and b; nothing is placed on b."""
    meta, log = MemoryMetaStore(), MemoryLog()
    log.append_batch("c7-s0", [b"x", b"y", b"z"])
    nodes = {n: ScopedNode(n) for n in ("a", "b")}
    for n in nodes:
        register_node(meta, "querynode", n, n, 30)
    a = Assignment(INFO.id, [Replica(1, ["a", "b"], {ch: "a" for ch in INFO.channels})])
    meta.put(assign_key(INFO.id), a.to_json())
    meta.put(serve_key("a"), json.dumps({str(INFO.id): {ch: 1 for ch in INFO.channels}}).encode())
    r = QueryNodeRouter(log, meta, connect=lambda address: nodes[address])

    def full(node: str, segs: dict[str, list[str]]) -> None:
        meta.put(full_key(node), json.dumps({str(INFO.id): segs}).encode())
    yield r, nodes, full
    r.close()


def test_a_segment_held_in_full_only_by_a_node_the_coord_no_longer_places_it_on_is_read_there(two_nodes):
    r, nodes, full = two_nodes
    full("a", {"c7-s0": ["s1/"], "c7-s1": []})
    full("b", {"c7-s0": ["s1/", "s2/"]})  # s2 placed on b until now: a still loads it
    wait_until(lambda: r.plans(INFO.id) and len(r.plans(INFO.id)[0]) == 2)
    (plan,) = r.plans(INFO.id)
    assert {n: (chs, scopes) for n, chs, scopes in plan} == {
        "a": (["c7-s0", "c7-s1"], {"c7-s0": ReadScope(True, frozenset({"s2/"}))}),
        "b": (["c7-s0"], {"c7-s0": ReadScope(False, frozenset({"s2/"}))})}
    full("a", {"c7-s0": ["s1/", "s2/"], "c7-s1": []})  # a serves it now: a reads the whole channel again
    wait_until(lambda: len(r.plans(INFO.id)[0]) == 1)
    assert r.plans(INFO.id) == [[("a", ["c7-s0", "c7-s1"], {})]]


def test_a_read_at_an_older_snapshot_asks_every_node_that_holds_the_channel(two_nodes):
    r, nodes, full = two_nodes
    full("a", {"c7-s0": ["s3/"], "c7-s1": []})
    full("b", {"c7-s0": []})  # b holds c7-s0 (a compaction's lost rows, say) and none of its segments in full
    wait_until(lambda: r.plans(INFO.id, every_node=True) and len(r.plans(INFO.id, every_node=True)[0]) == 2)
    assert r.plans(INFO.id) == [[("a", ["c7-s0", "c7-s1"], {})]]  # a read at a recent snapshot: the leader alone
    (plan,) = r.plans(INFO.id, every_node=True)
    assert {n: (chs, scopes) for n, chs, scopes in plan} == {
        "a": (["c7-s0", "c7-s1"], {"c7-s0": ReadScope(True, frozenset())}),
        "b": (["c7-s0"], {"c7-s0": ReadScope(False, frozenset())})}
    old = compose(int((time.time() - 60) * 1000), 0)
    assert r.count(INFO, old, None, None) == 3  # a's two channels and b's part of c7-s0


@pytest.mark.parametrize("level", [ReadLevel.SESSION, ReadLevel.EVENTUALLY])
def test_every_part_of_a_channel_read_on_two_nodes_waits_for_one_position(two_nodes, level):
    """Below Bounded a read waits for nothing on a channel this proxy did not write; read in parts, the
    channel still gets one position (a recent log end) on both nodes, each reading as of it."""
    r, nodes, full = two_nodes
    full("a", {"c7-s0": ["s1/"], "c7-s1": []})
    full("b", {"c7-s0": ["s2/"]})
    wait_until(lambda: r.plans(INFO.id) and len(r.plans(INFO.id)[0]) == 2)
    with reading_at(level):
        assert r.count(INFO, 0, None, None) == 3
    assert nodes["a"].calls[-1][:2] == (["c7-s0", "c7-s1"], {"c7-s0": 3})  # c7-s1, read whole, waits for nothing
    assert nodes["b"].calls[-1][:2] == (["c7-s0"], {"c7-s0": 3})


class DownOnce(ScopedNode):
    """Fails its first read as a killed node does; records each read's snapshot."""

    def __init__(self, name):
        super().__init__(name)
        self.seen: list[int] = []

    def count(self, info, ts, flt, parts, wait=None, channels=None, scopes=None, sealed_only=False):
        self.seen.append(ts)
        if len(self.seen) == 1:
            from vecdb import errors

            raise errors.ServiceUnavailable(f"{self.name} is down")
        return super().count(info, ts, flt, parts, wait, channels, scopes, sealed_only)


@pytest.mark.parametrize("pinned", [False, True])
def test_a_read_tried_again_after_a_node_failed_takes_a_fresh_snapshot_unless_its_client_chose_it(pinned):
    """The node that took a channel over loaded its segments as compacted since the read began, without the
    rows a compaction dropped that the old snapshot sees (a chaos hunt: a Strong count in flight while the
    leader was killed answered 418 of 550 rows). An iterator's page keeps its snapshot."""
    from vecdb.proxy import consistency

    meta, log = MemoryMetaStore(), MemoryLog()
    log.append_batch("c7-s0", [b"x"])
    node = DownOnce("a")
    register_node(meta, "querynode", "a", "a", 30)
    meta.put(assign_key(INFO.id), Assignment(INFO.id, [Replica(1, ["a"], {ch: "a" for ch in INFO.channels})]).to_json())
    meta.put(serve_key("a"), json.dumps({str(INFO.id): {ch: 1 for ch in INFO.channels}}).encode())
    fresh = compose(int(time.time() * 1000), 5)
    r = QueryNodeRouter(log, meta, connect=lambda address: node, fresh_ts=lambda channels: fresh)
    try:
        wait_until(lambda: r.plans(INFO.id))
        old = compose(int(time.time() * 1000) - 3000, 0)
        consistency.pin_snapshot(pinned)
        try:
            with reading_at(ReadLevel.STRONG):
                assert r.count(INFO, old, None, None) == 2
        finally:
            consistency.pin_snapshot(False)
        assert node.seen == [old, old if pinned else fresh]
    finally:
        r.close()

"""QueryNodeRouter's routing rules (vecdb.proxy.router), on stand-in nodes and a memory metadata
store: which nodes a read goes to (the coord's assignment, what each node reports it serves, the
sessions), how the answers are merged, and what a read waits for. Real nodes and a real coord
are exercised in tests/e2e/test_assignment.py and tests/e2e/test_cluster_processes.py."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import wait_until
from vecdb import errors
from vecdb.coord.assignment import Assignment, Replica, assign_key, serve_key
from vecdb.coord.resource_groups import DEFAULT_RESOURCE_GROUP
from vecdb.coord.session import register_node
from vecdb.proxy import router as router_mod
from vecdb.proxy.router import QueryNodeRouter
from vecdb.storage.memory import MemoryLog, MemoryMetaStore

PK = SimpleNamespace(name="id")
INFO = SimpleNamespace(id=7, name="c7", channels=["c7-s0", "c7-s1"], replica_number=1,
                       schema=SimpleNamespace(primary_field=PK))


class Node:
    """A stand-in query node: counts one row per channel it is asked for; query answers its
    channels' names as primary keys."""

    def __init__(self, name):
        self.name, self.up, self.calls, self.closed = name, True, [], False

    def count(self, info, ts, flt, parts, wait=None, channels=None, scopes=None, sealed_only=False):
        if not self.up:
            raise errors.ServiceUnavailable(f"{self.name} is down")
        self.calls.append((list(channels), wait))
        return len(channels)

    def query(self, info, ts, flt, parts, fields, limit, offset, wait=None, channels=None, scopes=None,
              sealed_only=False):
        self.calls.append((list(channels), wait))
        pks = np.array(sorted(int(ch[-1]) * 10 + i for ch in channels for i in range(3)), np.int64)
        return {"id": pks[offset:None if limit is None else offset + limit]}

    def close(self):
        self.closed = True


@pytest.fixture
def cluster(monkeypatch):
    """A router on a memory store; ``start(name)`` registers a stand-in node's session (its address
    is its name); ``assign(*replicas)`` writes the coord's assignment of INFO (each replica a dict
    channel -> owner); ``serve(name, channels)`` writes what a node reports it holds."""
    monkeypatch.setattr(router_mod, "READ_WAIT", 1.0)
    meta, log = MemoryMetaStore(), MemoryLog()
    log.append_batch("c7-s0", [b"a", b"b"])
    nodes: dict[str, Node] = {}
    sessions = {}

    def start(name: str, ttl: float = 30.0):
        nodes[name] = Node(name)
        sessions[name] = register_node(meta, "querynode", name, name, ttl)
        return nodes[name]

    def assign(*replicas):
        a = Assignment(INFO.id, [Replica(i + 1, sorted(set(r.values())), dict(r)) for i, r in enumerate(replicas)])
        meta.put(assign_key(INFO.id), a.to_json())

    def serve(name: str, channels: list[str]):
        meta.put(serve_key(name), json.dumps({str(INFO.id): {ch: 1 for ch in channels}}).encode())

    r = QueryNodeRouter(log, meta, connect=lambda address: nodes[address])
    yield SimpleNamespace(router=r, start=start, assign=assign, serve=serve, sessions=sessions, meta=meta)
    r.close()


def _ready(c, *names):
    for n in names:
        c.start(n)
    wait_until(lambda: c.router.node_ids() == sorted(names))


def test_a_read_goes_to_each_channel_owner_with_its_channels_and_their_positions(cluster):
    c = cluster
    a, b = (c.start(n) for n in ("a", "b"))
    c.assign({"c7-s0": "a", "c7-s1": "b"})
    c.serve("a", ["c7-s0"])
    c.serve("b", ["c7-s1"])
    wait_until(lambda: c.router.plans(INFO.id))
    assert c.router.count(INFO, 1, None, None) == 2  # one row per channel, each counted once
    assert a.calls == [(["c7-s0"], {"c7-s0": 2})] and b.calls == [(["c7-s1"], {"c7-s1": 0})]
    got = c.router.query(INFO, 1, None, None, ["id"], 4, 1)["id"].tolist()
    assert got == [1, 2, 10, 11]  # merged by primary key across the nodes, then offset and limit


def test_replicas_take_reads_in_turn_and_a_replica_not_fully_served_takes_none(cluster):
    c = cluster
    a, b = c.start("a"), c.start("b")
    c.assign({"c7-s0": "a", "c7-s1": "a"}, {"c7-s0": "b", "c7-s1": "b"})
    c.serve("a", ["c7-s0", "c7-s1"])
    c.serve("b", ["c7-s0"])  # still loading c7-s1
    wait_until(lambda: len(c.router.plans(INFO.id)) == 1)
    for _ in range(4):
        c.router.count(INFO, 1, None, None)
    assert len(a.calls) == 4 and not b.calls
    c.serve("b", ["c7-s0", "c7-s1"])
    wait_until(lambda: len(c.router.plans(INFO.id)) == 2)
    for _ in range(4):
        c.router.count(INFO, 1, None, None)
    assert len(a.calls) == 6 and len(b.calls) == 2


def test_a_node_that_does_not_answer_sends_the_read_to_the_other_replica(cluster):
    c = cluster
    a, b = c.start("a"), c.start("b")
    c.assign({"c7-s0": "a", "c7-s1": "a"}, {"c7-s0": "b", "c7-s1": "b"})
    c.serve("a", INFO.channels)
    c.serve("b", INFO.channels)
    wait_until(lambda: len(c.router.plans(INFO.id)) == 2)
    a.up = False
    assert [c.router.count(INFO, 1, None, None) for _ in range(4)] == [2] * 4
    assert len(b.calls) == 4  # a was tried once, then marked down: b answers first from then on
    assert c.router.plans(INFO.id)[0] == [("b", INFO.channels, {})]


def test_a_node_still_loading_a_channel_taken_over_is_a_failover_not_an_unloaded_collection(cluster):
    """The node that took a dead node's channels answers ``CollectionNotLoaded`` until it loaded them;
    past the read's wait the client is told the collection is loaded and its channels are moving,
    with code 2 (a user read 101 "not loaded" of a loaded collection, in a cluster bug hunt)."""
    c = cluster
    a = c.start("a")
    c.assign({"c7-s0": "a", "c7-s1": "a"})
    c.serve("a", INFO.channels)
    wait_until(lambda: c.router.plans(INFO.id))

    def loading(*args, **kwargs):
        raise errors.CollectionNotLoaded("channel 'c7-s0' is not loaded on this query node")

    a.count = loading  # type: ignore[method-assign]
    with pytest.raises(errors.ServiceUnavailable, match="is loaded, but no replica answered within 1 s") as e:
        c.router.count(INFO, 1, None, None)
    assert e.value.code == 2 and "c7-s0" in e.value.message


def test_a_read_waits_for_a_failover_then_gives_up(cluster):
    c = cluster
    c.start("a")
    c.assign({"c7-s0": "a", "c7-s1": "a"})
    c.serve("a", INFO.channels)
    wait_until(lambda: c.router.plans(INFO.id))
    c.sessions["a"].close()  # a's session goes: nothing serves the collection until it is reassigned
    wait_until(lambda: not c.router.plans(INFO.id))
    t0 = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable, match="no replica"):
        c.router.count(INFO, 1, None, None)
    assert time.monotonic() - t0 >= 0.9  # READ_WAIT
    b = c.start("b")

    def failover():
        c.assign({"c7-s0": "b", "c7-s1": "b"})
        c.serve("b", INFO.channels)
    threading.Timer(0.3, failover).start()
    assert c.router.count(INFO, 1, None, None) == 2 and len(b.calls) == 1


def test_load_waits_for_every_replica_and_refuses_more_replicas_than_nodes(cluster, monkeypatch):
    c = cluster
    _ready(c, "a", "b")
    with pytest.raises(errors.InvalidParameter, match="node not enough"):
        c.router.load(SimpleNamespace(**{**vars(INFO), "replica_number": 3}))
    two = SimpleNamespace(**{**vars(INFO), "replica_number": 2})

    def coord_places():
        c.assign({"c7-s0": "a", "c7-s1": "a"}, {"c7-s0": "b", "c7-s1": "b"})
        c.serve("a", INFO.channels)
        time.sleep(0.2)
        c.serve("b", INFO.channels)
    threading.Timer(0.2, coord_places).start()
    t0 = time.monotonic()
    c.router.load(two)
    assert time.monotonic() - t0 >= 0.35 and len(c.router.plans(INFO.id)) == 2
    monkeypatch.setattr(router_mod, "RELEASE_WAIT", 5.0)
    c.router._loaded_in_catalog = lambda cid: False  # the catalog says released (saved before the call)
    threading.Timer(0.2, lambda: [c.meta.delete(serve_key(n)) for n in ("a", "b")]).start()
    c.router.release(INFO.id)  # returns once no node reports the collection
    assert not c.router.plans(INFO.id)


def test_a_local_node_is_called_in_process_and_its_whole_replica_goes_first(cluster):
    """``set_local``: the query node in the proxy's own process (vecdb node) is called through the client
    given, never through ``connect``, and a replica it serves entirely takes every read while it can."""
    c = cluster
    local = Node("b-in-process")
    c.router.set_local("b", local)
    a, b = c.start("a"), c.start("b")  # b's stand-in over "RPC" must never be called
    c.assign({"c7-s0": "a", "c7-s1": "a"}, {"c7-s0": "b", "c7-s1": "b"})
    c.serve("a", INFO.channels)
    c.serve("b", ["c7-s0"])  # the local replica is not served yet: the other one answers
    wait_until(lambda: len(c.router.plans(INFO.id)) == 1)
    assert c.router.count(INFO, 1, None, None) == 2 and len(a.calls) == 1 and not local.calls
    c.serve("b", INFO.channels)
    wait_until(lambda: len(c.router.plans(INFO.id)) == 2)
    assert c.router._batcher._slots() == 1  # one node takes the searches: they merge behind one call in flight
    for _ in range(6):  # no turns: the local replica every time
        assert c.router.count(INFO, 1, None, None) == 2
    assert len(local.calls) == 6 and len(a.calls) == 1 and not b.calls
    assert c.router.plans(INFO.id)[0] == [("b", INFO.channels, {})]
    local.up = False  # the local node fails a read: the other replica answers it
    assert c.router.count(INFO, 1, None, None) == 2 and len(a.calls) == 2
    # set after the node joined: its client over RPC is swapped for the in-process one
    local.up = True
    c.router.set_local("a", a2 := Node("a-in-process"))
    c.router._down_until.clear()
    assert c.router.count(INFO, 1, None, None) == 2 and len(a2.calls) == 1 and len(a.calls) == 2


def test_searches_merge_behind_as_many_calls_as_nodes_take_them(cluster):
    c = cluster
    _ready(c, "a", "b")
    assert c.router._batcher._slots() == 2  # no local node: a call in flight per node before merging


def test_load_waits_a_while_for_the_replicas_beyond_replica_number(cluster, monkeypatch):
    """With a replica per node (querynode.replica_per_node) load waits for the coord's extra replicas to be
    served, up to EXTRA_REPLICA_WAIT, then returns with replica_number served."""
    c = cluster
    monkeypatch.setattr(router_mod, "EXTRA_REPLICA_WAIT", 1.0)
    _ready(c, "a", "b")
    c.assign({"c7-s0": "a", "c7-s1": "a"}, {"c7-s0": "b", "c7-s1": "b"})
    c.serve("a", INFO.channels)
    threading.Timer(0.4, lambda: c.serve("b", INFO.channels)).start()
    t0 = time.monotonic()
    c.router.load(INFO)  # replica_number 1: served at once, b's replica 0.4 s later
    assert 0.35 <= time.monotonic() - t0 < 1.0 and len(c.router.plans(INFO.id)) == 2
    c.meta.delete(serve_key("b"))
    wait_until(lambda: len(c.router.plans(INFO.id)) == 1)
    t0 = time.monotonic()
    c.router.load(INFO)  # b never serves: load returns after EXTRA_REPLICA_WAIT without an error
    assert 0.9 <= time.monotonic() - t0 < 3.0


def test_replicas_and_segment_nodes_as_placed(cluster):
    c = cluster
    _ready(c, "7", "9")
    c.assign({"c7-s0": "7", "c7-s1": "9"})
    wait_until(lambda: c.router.replicas(INFO.id))
    assert c.router.replicas(INFO.id) == [{"id": 1, "nodes": [7, 9], "resource_group": DEFAULT_RESOURCE_GROUP,
                                           "leaders": {"c7-s0": (7, "7"), "c7-s1": (9, "9")}}]
    assert c.router.serving_nodes() == [(7, "7"), (9, "9")]


def test_closing_stops_the_watches_and_closes_the_clients(cluster):
    c = cluster
    a = c.start("a")
    wait_until(lambda: c.router.node_ids() == ["a"])
    c.router.close()
    assert a.closed
    c.start("b")
    time.sleep(0.3)
    assert c.router.node_ids() == []


class CountingLog(MemoryLog):
    """A log that counts the end lookups (a JetStream round trip each in a cluster)."""

    def __init__(self):
        super().__init__()
        self.lookups = 0

    def last_position(self, channel):
        self.lookups += 1
        return super().last_position(channel)


def test_what_a_read_waits_for_by_consistency_level(monkeypatch):
    from vecdb.proxy import consistency
    from vecdb.proxy.consistency import ReadLevel, reading_at

    log, meta = CountingLog(), MemoryMetaStore()
    log.append_batch("c7-s0", [b"a", b"b", b"c"])
    log.append_batch("c7-s1", [b"a"])
    node = Node("n0")
    register_node(meta, "querynode", "n0", "n0", 30)
    placed = Assignment(INFO.id, [Replica(1, ["n0"], {ch: "n0" for ch in INFO.channels})])
    meta.put(assign_key(INFO.id), placed.to_json())
    meta.put(serve_key("n0"), json.dumps({str(INFO.id): {ch: 1 for ch in INFO.channels}}).encode())
    own = {"c7-s0": 2}  # this proxy's writer reached position 2 of c7-s0 and wrote nothing to c7-s1
    r = QueryNodeRouter(log, meta, connect=lambda a: node, written=lambda chs: dict(own))
    wait_until(lambda: r.plans(INFO.id))

    def wait_of(level):
        with reading_at(level):
            r.count(INFO, 0, None, None)
        return node.calls[-1][1]

    assert wait_of(ReadLevel.STRONG) == {"c7-s0": 3, "c7-s1": 1} and log.lookups == 2  # every read looks up the ends
    assert wait_of(ReadLevel.SESSION) == {"c7-s0": 2} and log.lookups == 2  # its own writes: no lookup
    assert wait_of(ReadLevel.EVENTUALLY) == {"c7-s0": 2} and log.lookups == 2
    assert wait_of(ReadLevel.BOUNDED) == {"c7-s0": 3, "c7-s1": 1} and log.lookups == 4
    log.append_batch("c7-s1", [b"b"])
    assert wait_of(ReadLevel.BOUNDED) == {"c7-s0": 3, "c7-s1": 1} and log.lookups == 4  # ends reused within the bound
    monkeypatch.setattr(consistency, "BOUNDED_STALENESS", 0.0)
    time.sleep(0.01)
    assert wait_of(ReadLevel.BOUNDED) == {"c7-s0": 3, "c7-s1": 2} and log.lookups == 6  # then looked up again
    r.close()

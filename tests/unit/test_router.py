"""QueryNodeRouter's routing rules (vecdb.proxy.router), on stand-in nodes: which node a read
goes to, and which nodes it knows from their sessions, is the router's own logic; real nodes are
exercised in tests/e2e/test_cluster_processes.py and tests/e2e/test_querynode_discovery.py."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from tests.conftest import wait_until
from vecdb import errors
from vecdb.coord.session import register_node
from vecdb.proxy import router as router_mod
from vecdb.proxy.router import QueryNodeRouter
from vecdb.storage.memory import MemoryLog, MemoryMetaStore

INFO = SimpleNamespace(id=7, channels=["c0", "c1"])


class Node:
    def __init__(self, name):
        self.name, self.up, self.loaded_ids, self.calls, self.closed = name, True, set(), [], False

    def _check(self):
        if not self.up:
            raise errors.ServiceUnavailable(f"{self.name} is down")

    def loaded(self):
        self._check()
        return sorted(self.loaded_ids)

    def load(self, info):
        self._check()
        self.loaded_ids.add(info.id)

    def count(self, info, ts, flt, parts, wait=None):
        self._check()
        if info.id not in self.loaded_ids:
            raise errors.CollectionNotLoaded("not loaded")
        self.calls.append(wait)
        return self.name

    def release(self, collection_id):
        self._check()
        self.loaded_ids.discard(collection_id)

    def close(self):
        self.closed = True


@pytest.fixture
def setup(monkeypatch):
    monkeypatch.setattr(router_mod, "RETRY_SECONDS", 0.5)
    log = MemoryLog()
    log.append_batch("c0", [b"a", b"b"])
    nodes = [Node("n0"), Node("n1"), Node("n2")]
    by_address = {n.name: n for n in nodes}
    r = QueryNodeRouter(log, addresses=list(by_address), connect=by_address.__getitem__)
    yield r, nodes
    r.close()


def test_reads_go_round_robin_with_the_log_ends_to_wait_for(setup):
    r, nodes = setup
    r.load(INFO)
    assert [r.count(INFO, 1, None, None) for _ in range(6)] == ["n0", "n1", "n2"] * 2
    assert nodes[0].calls[0] == {"c0": 2, "c1": 0}


def test_a_down_node_is_skipped_and_a_node_back_without_the_collection_loads_it(setup):
    r, nodes = setup
    r.load(INFO)
    nodes[1].up = False
    got = [r.count(INFO, 1, None, None) for _ in range(6)]
    assert got == ["n0", "n2", "n2", "n0", "n2", "n2"]  # n1's turns go to the node after it
    nodes[1].up, nodes[1].loaded_ids = True, set()  # restarted: empty
    r._down_until.clear()
    assert [r.count(INFO, 1, None, None) for _ in range(3)] == ["n0", "n1", "n2"]
    assert INFO.id in nodes[1].loaded_ids


def test_all_down_fails_after_retrying_and_loads_need_one_live_node(setup):
    r, nodes = setup
    r.load(INFO)
    for n in nodes:
        n.up = False
    with pytest.raises(errors.ServiceUnavailable):
        r.count(INFO, 1, None, None)
    with pytest.raises(errors.ServiceUnavailable):
        r.load(SimpleNamespace(id=8, channels=[]))
    nodes[2].up = True
    r.load(SimpleNamespace(id=8, channels=[]))  # one node is enough; the others load on first read
    assert r.is_loaded(8) and nodes[2].loaded_ids == {7, 8}


# --- nodes found from their sessions (session/querynode/<id>) -----------------------------------




@pytest.fixture
def cluster(monkeypatch):
    """A router on a memory metadata store; ``start(name)`` registers a stand-in node's session
    (its address is its name) as a query node process does, and returns (node, session)."""
    monkeypatch.setattr(router_mod, "RETRY_SECONDS", 0.5)
    meta, log = MemoryMetaStore(), MemoryLog()
    log.append_batch("c0", [b"a"])
    nodes: dict[str, Node] = {}

    def start(name: str, ttl: float = 30.0, up: bool = True):
        nodes[name] = Node(name)
        nodes[name].up = up
        return nodes[name], register_node(meta, "querynode", name, name, ttl)

    r = QueryNodeRouter(log, meta=meta, connect=lambda address: nodes[address])
    yield r, start, meta
    r.close()


def test_a_node_that_registers_gets_what_the_proxy_loaded_then_reads(cluster):
    r, start, _ = cluster
    assert r.node_ids() == []
    n0, _ = start("n0")
    wait_until(lambda: r.node_ids() == ["n0"])
    r.load(INFO)
    n1, _ = start("n1")  # joins later: loads the collection before it takes reads
    wait_until(lambda: r.node_ids() == ["n0", "n1"])
    assert INFO.id in n1.loaded_ids
    assert sorted(r.count(INFO, 1, None, None) for _ in range(4)) == ["n0", "n0", "n1", "n1"]
    assert r.reads_served() == {"n0": 2, "n1": 2}


def test_a_node_whose_session_goes_gets_no_more_reads(cluster):
    r, start, _ = cluster
    nodes = [start(f"n{i}") for i in range(3)]
    wait_until(lambda: len(r.node_ids()) == 3)
    r.load(INFO)
    nodes[1][1].close()  # a clean stop revokes its session
    wait_until(lambda: r.node_ids() == ["n0", "n2"])
    assert {r.count(INFO, 1, None, None) for _ in range(6)} == {"n0", "n2"}
    assert not nodes[1][0].calls


def test_a_crashed_node_leaves_when_its_lease_expires(cluster):
    r, start, meta = cluster
    start("n0")
    n1, s1 = start("n1", ttl=2)
    wait_until(lambda: len(r.node_ids()) == 2)
    s1._stop.set()  # the process stops renewing (a crash): its session expires within the ttl
    t0 = time.monotonic()
    wait_until(lambda: r.node_ids() == ["n0"])
    print(f"crashed node left the router {time.monotonic() - t0:.2f} s after its last renewal (ttl 2 s)")


def test_a_node_restarted_under_its_id_loads_again(cluster):
    r, start, _ = cluster
    n0, s0 = start("n0")
    wait_until(lambda: r.node_ids() == ["n0"])
    r.load(INFO)
    s0.close()
    wait_until(lambda: r.node_ids() == [])
    n0b, _ = start("n0")  # a new process under the same id: a new client, loaded before its reads
    wait_until(lambda: r.node_ids() == ["n0"])
    assert INFO.id in n0b.loaded_ids and r.count(INFO, 1, None, None) == "n0"


def test_with_no_node_reads_wait_for_one_to_register(cluster, monkeypatch):
    r, start, _ = cluster
    with pytest.raises(errors.ServiceUnavailable):  # none registered: a load has nobody to load
        r.load(INFO)
    assert not r.is_loaded(INFO.id)
    with pytest.raises(errors.ServiceUnavailable):  # nor can a read be served, after RETRY_SECONDS
        r.count(INFO, 1, None, None)
    _, s0 = start("n0")
    wait_until(lambda: r.node_ids() == ["n0"])
    r.load(INFO)
    s0.close()
    wait_until(lambda: r.node_ids() == [])
    monkeypatch.setattr(router_mod, "RETRY_SECONDS", 30.0)
    threading.Timer(0.3, start, ["n1"]).start()
    assert r.count(INFO, 1, None, None) == "n1"  # waited for the node that registered meanwhile


def test_a_node_that_joins_while_down_is_tried_later_and_loads_on_its_first_read(cluster, monkeypatch):
    r, start, _ = cluster
    monkeypatch.setattr(router_mod, "DOWN_SECONDS", 0.3)
    start("n0")
    wait_until(lambda: r.node_ids() == ["n0"])
    r.load(INFO)
    n1, _ = start("n1", up=False)  # registered, but does not answer
    wait_until(lambda: r.node_ids() == ["n0", "n1"])
    assert {r.count(INFO, 1, None, None) for _ in range(4)} == {"n0"}
    n1.up = True
    time.sleep(0.4)
    assert "n1" in {r.count(INFO, 1, None, None) for _ in range(4)}
    assert INFO.id in n1.loaded_ids


def test_closing_stops_the_watch_and_closes_the_clients(cluster):
    r, start, _ = cluster
    n0, _ = start("n0")
    wait_until(lambda: r.node_ids() == ["n0"])
    r.close()
    assert n0.closed
    start("n1")
    time.sleep(0.3)
    assert r.node_ids() == []


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

    log = CountingLog()
    log.append_batch("c0", [b"a", b"b", b"c"])
    log.append_batch("c1", [b"a"])
    node = Node("n0")
    node.loaded_ids.add(INFO.id)
    own = {"c0": 2}  # this proxy's writer reached position 2 of c0 and wrote nothing to c1
    r = QueryNodeRouter(log, addresses=["n0"], connect=lambda a: node, written=lambda chs: dict(own))

    def wait_of(level):
        with reading_at(level):
            r.count(INFO, 0, None, None)
        return node.calls[-1]

    assert wait_of(ReadLevel.STRONG) == {"c0": 3, "c1": 1} and log.lookups == 2  # every read looks up the ends
    assert wait_of(ReadLevel.SESSION) == {"c0": 2} and log.lookups == 2  # its own writes: no lookup
    assert wait_of(ReadLevel.EVENTUALLY) == {"c0": 2} and log.lookups == 2
    assert wait_of(ReadLevel.BOUNDED) == {"c0": 3, "c1": 1} and log.lookups == 4
    log.append_batch("c1", [b"b"])
    assert wait_of(ReadLevel.BOUNDED) == {"c0": 3, "c1": 1} and log.lookups == 4  # ends reused within the bound
    monkeypatch.setattr(consistency, "BOUNDED_STALENESS", 0.0)
    time.sleep(0.01)
    assert wait_of(ReadLevel.BOUNDED) == {"c0": 3, "c1": 2} and log.lookups == 6  # then looked up again
    r.close()

"""QueryNodeRouter's routing rules (vecdb.proxy.router), on stand-in nodes: which node a read
goes to is the router's own logic; real nodes are exercised in tests/e2e/test_cluster_processes.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vecdb import errors
from vecdb.proxy import router as router_mod
from vecdb.proxy.router import QueryNodeRouter
from vecdb.storage.memory import MemoryLog

INFO = SimpleNamespace(id=7, channels=["c0", "c1"])


class Node:
    def __init__(self, name):
        self.name, self.up, self.loaded_ids, self.calls = name, True, set(), []

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


@pytest.fixture
def setup(monkeypatch):
    monkeypatch.setattr(router_mod, "RETRY_SECONDS", 0.5)
    log = MemoryLog()
    log.append_batch("c0", [b"a", b"b"])
    nodes = [Node("n0"), Node("n1"), Node("n2")]
    return QueryNodeRouter(log, [], nodes=nodes), nodes


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

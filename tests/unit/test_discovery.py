"""``SessionWatch`` (vecdb.discovery): the join and leave calls a role's sessions make, on the
memory metadata store, including what a watch that starts over must not repeat."""

from __future__ import annotations

import time

from tests.conftest import wait_until
from vecdb.coord.session import describe_process, register_node
from vecdb.discovery import SessionWatch, session_address
from vecdb.storage.memory import MemoryMetaStore


def _watch(meta):
    calls = []
    w = SessionWatch(meta, "querynode", lambda n, a: calls.append(("join", n, a)),
                     lambda n: calls.append(("leave", n)))
    return w, calls


def test_joins_and_leaves_in_order_and_other_roles_ignored():
    meta = MemoryMetaStore()
    a = register_node(meta, "querynode", "a", "h:1", 30)
    w, calls = _watch(meta)
    assert calls == [("join", "a", "h:1")]  # those there already: before the constructor returns
    b = register_node(meta, "querynode", "b", "h:2", 30)
    p = register_node(meta, "proxy", "p", "h:3", 30)
    a.close()
    wait_until(lambda: len(calls) == 3)
    assert calls[1:] == [("join", "b", "h:2"), ("leave", "a")]
    w.close()
    b.close()
    p.close()
    time.sleep(0.2)
    assert len(calls) == 3  # closed: no more calls


def test_a_start_over_reports_only_what_changed():
    meta = MemoryMetaStore()
    a = register_node(meta, "querynode", "a", "h:1", 30)
    b = register_node(meta, "querynode", "b", "h:2", 30)
    w, calls = _watch(meta)
    w.close()  # stands for a watch that lost its stream; _reset gets what a new scan would
    calls.clear()
    b.close()
    register_node(meta, "querynode", "b", "h:9", 30)  # b restarted elsewhere while nobody watched
    c = register_node(meta, "querynode", "c", "h:3", 30)
    w._reset(meta.scan("session/querynode/"))
    assert calls == [("leave", "b"), ("join", "b", "h:9"), ("join", "c", "h:3")]
    calls.clear()
    w._reset(meta.scan("session/querynode/"))
    assert calls == []  # nothing new: a known node is not joined twice
    a.close()
    c.close()


def test_a_session_without_an_address_is_no_node():
    meta = MemoryMetaStore()
    meta.put("session/querynode/x", describe_process(role="querynode"))
    meta.put("session/querynode/y", b"not json")
    w, calls = _watch(meta)
    assert calls == []
    assert session_address(describe_process(address="h:1")) == "h:1"
    w.close()

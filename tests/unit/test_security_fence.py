"""An RBAC write returns once every live proxy's copy of ``cred/`` has applied it (vecdb.security.view),
bounded: "proxies" are ``Security`` objects with node ids on one memory store, their sessions the keys
``session/proxy/<id>`` that ``vecdb proxy`` holds."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from vecdb.config import SecuritySettings
from vecdb.security import Security
from vecdb.security.view import APPLIED_PREFIX, STAMP_KEY
from vecdb.storage.memory import MemoryMetaStore


@pytest.fixture
def meta():
    m = MemoryMetaStore()
    yield m
    m.close()


@pytest.fixture
def proxies(meta):
    """Two proxies, "a" and "b", both live."""
    made = []
    for node in ("a", "b"):
        made.append(Security(meta, SecuritySettings(authorization_enabled=True), node_id=node, ttl=5))
        meta.put(f"session/proxy/{node}", b"{}")
    yield made
    for s in made:
        s.close()


def test_each_proxy_publishes_the_revision_its_copy_applied(meta, proxies):
    a, b = proxies
    a.roles.create_role("reader")
    assert int(meta.get(APPLIED_PREFIX + "b")) == b.view.revision == a.view.revision  # before the call returned
    assert b.roles.role_exists("reader")
    assert meta.get(STAMP_KEY) is not None  # the write's token, whose event told "a" the write's revision


def test_a_write_returns_only_once_the_other_proxy_applied_it(proxies):
    """"b"'s watch is held up (its copy's lock taken) while "a" grants: the grant returns only after "b"
    applied it, and then "b" allows the call at once."""
    a, b = proxies
    a.roles.create_role("reader")
    a.users.meta.put("cred/user-role/erin/reader", b"{}")
    while "reader" not in b.roles.user_roles("erin"):  # (a write outside the stores: not waited for)
        time.sleep(0.01)
    assert not b.roles.allowed("erin", "default", "Collection", "books", "Search")
    done = threading.Event()
    with b.view._changed:  # b's watch cannot apply anything while this is held
        worker = threading.Thread(target=lambda: (a.roles.operate("reader", "default", "Collection", "books", "Search",
                                                                  "root", grant=True), done.set()))
        worker.start()
        assert not done.wait(0.5), "the grant returned before the other proxy applied it"
    worker.join(5)
    assert done.is_set()
    assert b.roles.allowed("erin", "default", "Collection", "books", "Search")
    a.roles.operate("reader", "default", "Collection", "books", "Search", "root", grant=False)
    assert not b.roles.allowed("erin", "default", "Collection", "books", "Search")  # at once, no sleep


def test_a_proxy_that_does_not_apply_is_waited_for_at_most_the_bound(meta, proxies, caplog):
    a, _ = proxies
    # live, its key held from its start (as every proxy of this version holds it), and never applies anything
    meta.txn(puts={"session/proxy/stuck": b"{}", APPLIED_PREFIX + "stuck": b"0"})
    a.view.fence_wait = 0.5
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, "vecdb.security.view"):
        a.roles.create_role("late")
    assert 0.5 <= time.monotonic() - t0 < 3
    assert a.roles.role_exists("late")  # the call succeeded
    assert "proxies stuck have not applied revision" in caplog.text


def test_a_proxy_whose_process_ends_during_the_wait_is_no_longer_waited_for(meta, proxies):
    a, _ = proxies
    lease = meta.grant_lease(30)
    meta.txn(puts={"session/proxy/dying": b"{}", APPLIED_PREFIX + "dying": b"0"}, lease=lease)
    a.view.fence_wait = 20
    threading.Timer(0.3, meta.revoke_lease, (lease,)).start()
    t0 = time.monotonic()
    a.roles.create_role("outlived")
    assert time.monotonic() - t0 < 5


def test_a_proxy_without_node_id_waits_for_its_own_copy_only(meta):
    """Standalone: the one proxy of its store; a live session key of some other proxy is not waited for."""
    meta.put("session/proxy/stuck", b"{}")
    s = Security(meta, SecuritySettings(authorization_enabled=True))
    try:
        t0 = time.monotonic()
        s.roles.create_role("alone")
        s.roles.operate("alone", "default", "Collection", "books", "Search", "root", grant=True)
        assert time.monotonic() - t0 < 2
        assert [g.privilege for g in s.roles.grants("alone")] == ["Search"]  # its own copy shows it
        assert meta.get(APPLIED_PREFIX + "stuck") is None and not meta.scan(APPLIED_PREFIX)
    finally:
        s.close()


def test_a_refused_write_does_not_wait(meta, proxies):
    a, _ = proxies
    a.roles.create_role("taken")
    meta.put("session/proxy/stuck", b"{}")
    a.view.fence_wait = 5
    t0 = time.monotonic()
    with pytest.raises(Exception, match="already exists"):
        a.roles.create_role("taken")  # compare-and-set failed: nothing to wait for
    assert time.monotonic() - t0 < 1


def test_closing_a_proxy_takes_its_published_revision_away(meta, proxies):
    _, b = proxies
    assert meta.get(APPLIED_PREFIX + "b") is not None
    b.close()
    assert meta.get(APPLIED_PREFIX + "b") is None

"""Several catalogs on one metadata store (the proxies of a cluster): a DDL call that returned on
one is seen by the others, concurrent DDL loses nothing, and the wait for the other proxies
skips dead ones and is bounded for stuck ones. On the memory store and on a real etcd."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from functools import partial

import pytest

from tests.conftest import wait_until
from vecdb import errors
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.catalog import Catalog, CatalogConflict
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.memory import MemoryMetaStore

WAIT = 30.0  # generous bound for anything that should happen at once
wait_until = partial(wait_until, seconds=WAIT)


class Stores:
    """Store clients on one backend: the same MemoryMetaStore, or etcd clients on one key prefix
    (as separate proxy processes have)."""

    def __init__(self, kind: str, etcd_url: str | None):
        self.kind, self.etcd_url, self.prefix = kind, etcd_url, f"t{uuid.uuid4().hex[:12]}/"
        self._memory = MemoryMetaStore() if kind == "memory" else None
        self.opened: list = []
        self.catalogs: list[Catalog] = []

    def store(self):
        s = self._memory if self.kind == "memory" else EtcdMetaStore(self.etcd_url, prefix=self.prefix)
        if s not in self.opened:
            self.opened.append(s)
        return s

    def catalog(self, node_id: str | None, *, live: bool = True, **kw) -> Catalog:
        """A proxy's catalog; ``live``: with a ``session/proxy/<id>`` key as its process would hold."""
        store = self.store()
        if live and node_id is not None:
            store.put(f"session/proxy/{node_id}", b"{}")
        cat = Catalog(store, node_id, **kw)
        self.catalogs.append(cat)
        return cat

    def close(self) -> None:
        for c in self.catalogs:
            c.close()
        for s in self.opened:
            s.close()


@pytest.fixture(params=["memory", "etcd"])
def stores(request):
    url = request.getfixturevalue("etcd_server").url if request.param == "etcd" else None
    s = Stores(request.param, url)
    yield s
    s.close()


_ids = iter(range(1000, 10**9))


def make_info(name: str, db: str = "default") -> CollectionInfo:
    cid = next(_ids)
    schema = CollectionSchema(name, [FieldSchema("id", DataType.INT64, is_primary=True),
                                     FieldSchema("v", DataType.FLOAT_VECTOR, dim=4)])
    return CollectionInfo(id=cid, db=db, name=name, schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(cid + 1, "_default", 1)])




def test_ddl_on_a_is_visible_on_b_when_it_returns(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    a.add_collection(make_info("c1"))
    # no waiting here: the call returned, so b applied it (the fence)
    assert b.version == a.version
    assert [c.name for c in b.list_collections("default")] == ["c1"]
    info = a.get("default", "c1")
    info.partitions.append(PartitionInfo(info.id + 7, "p1", 2))
    a.save(info)
    assert b.get("default", "c1").has_partition("p1")
    a.create_alias("default", "al", "c1")
    assert b.describe_alias("default", "al").id == info.id
    a.rename_collection(info, "default", "c2")
    assert b.get("default", "c2").id == info.id and not b.exists("default", "c1")
    assert b.aliases_of(b.get("default", "c2")) == ["al"]
    a.create_database("db2", 5, 1, {"k": "v"})
    a.alter_database("db2", {"k2": "v2"}, [])
    assert b.database("db2")["properties"] == {"k": "v", "k2": "v2"}
    a.drop_alias("default", "al")
    with pytest.raises(errors.AliasNotFound):
        b.describe_alias("default", "al")


def test_drop_on_b_makes_a_answer_not_found(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    info = make_info("c1")
    a.add_collection(info)
    a.create_alias("default", "al", "c1")
    b.drop_collection(b.get("default", "c1"))
    with pytest.raises(errors.CollectionNotFound):
        a.get("default", "c1")
    with pytest.raises(errors.CollectionNotFound):
        a.get_by_id(info.id)
    with pytest.raises(errors.AliasNotFound):
        a.describe_alias("default", "al")
    assert not a.exists("default", "c1") and a.list_collections("default") == []
    stale = info  # a's handler still holding the object it had
    stale.properties["x"] = "1"
    with pytest.raises(errors.CollectionNotFound):
        a.save(stale)


def _race(*calls):
    """Run the calls at once; each one's result or exception."""
    out: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i, fn):
        start.wait()
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    return out


def test_concurrent_creates_of_one_name_one_wins(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    for round_ in range(5):
        name = f"c{round_}"
        ia, ib = make_info(name), make_info(name)
        out = _race(partial(a.add_collection, ia), partial(b.add_collection, ib))
        failed = [r for r in out if isinstance(r, Exception)]
        assert len(failed) == 1, out
        assert isinstance(failed[0], errors.InvalidParameter) and "already exists" in str(failed[0])
        winner = ia.id if out[0] is None else ib.id
        assert a.get("default", name).id == b.get("default", name).id == winner
        assert len([c for c in a.list_collections("default") if c.name == name]) == 1


def test_concurrent_create_alias_and_collection_of_one_name(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    a.add_collection(make_info("target"))
    out = _race(lambda: a.create_alias("default", "x", "target"), lambda: b.add_collection(make_info("x")))
    assert sum(isinstance(r, Exception) for r in out) == 1, out
    assert a.get("default", "x").id == b.get("default", "x").id


def test_a_stale_alter_is_refused_not_lost(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    a.add_collection(make_info("c"))
    ia, ib = a.get("default", "c"), b.get("default", "c")  # both handlers read the same version
    ia.properties["from_a"] = "1"
    a.save(ia)
    ib.properties["from_b"] = "1"
    with pytest.raises(CatalogConflict) as e:
        b.save(ib)
    assert e.value.retriable
    assert b.get("default", "c").properties == {"from_a": "1"}  # b's failed change is not in its cache
    fresh = b.get("default", "c")  # the client's retry
    fresh.properties["from_b"] = "1"
    b.save(fresh)
    assert a.get("default", "c").properties == {"from_a": "1", "from_b": "1"}


def test_concurrent_alters_lose_no_update(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    a.add_collection(make_info("c"))
    conflicts = []

    def alter(cat, who):
        for i in range(8):
            while True:  # what a client does with a retriable error
                info = cat.get("default", "c")
                info.properties[f"{who}{i}"] = "1"
                info.partitions.append(PartitionInfo(next(_ids), f"{who}{i}", 2))
                try:
                    cat.save(info)
                    break
                except CatalogConflict:
                    conflicts.append(who)

    out = _race(lambda: alter(a, "a"), lambda: alter(b, "b"))
    assert out == [None, None]
    want = {f"{w}{i}" for w in "ab" for i in range(8)}
    for cat in (a, b):
        info = cat.get("default", "c")
        assert set(info.properties) == want
        assert {p.name for p in info.partitions} == want | {"_default"}


def test_concurrent_drops_and_creates_of_aliases(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    a.add_collection(make_info("c"))
    out = _race(*[(lambda cat=cat, i=i: cat.create_alias("default", f"al{i}", "c"))
                  for i in range(6) for cat in (a, b)])
    assert sum(isinstance(r, errors.AliasAlreadyExists) for r in out) == 6, out
    assert a.list_aliases("default", "c") == b.list_aliases("default", "c") == [f"al{i}" for i in range(6)]
    out = _race(lambda: a.drop_collection(a.get("default", "c")), lambda: b.create_alias("default", "late", "c"))
    for cat in (a, b):  # whichever came first, no alias outlives its collection
        assert cat.list_aliases("default", None) == []
        assert not cat.exists("default", "c")


def test_a_dead_proxy_is_not_waited_for(stores):
    a = stores.catalog("a", fence_wait=WAIT)
    a.add_collection(make_info("c0"))
    meta = stores.store()
    meta.put("session/proxy/ghost", b"{}")  # a proxy that never applies anything
    meta.put("catalog/applied/ghost", b"0")
    wait_until(lambda: "ghost" in a._state.proxies)  # a proxy a's watch has not seen yet is not waited for
    done, before = threading.Event(), a.version
    t = threading.Thread(target=lambda: (a.add_collection(make_info("c1")), done.set()))
    start = time.monotonic()
    t.start()
    wait_until(lambda: a.version > before)  # committed, now in the fence
    assert not done.wait(0.2)  # waiting for the ghost
    meta.delete("session/proxy/ghost")  # its session ends: the wait ends with it
    assert done.wait(WAIT)
    assert time.monotonic() - start < WAIT / 2
    start = time.monotonic()
    a.add_collection(make_info("c2"))  # no session: not waited for at all
    assert time.monotonic() - start < WAIT / 2


def test_a_stuck_proxy_bounds_the_wait(stores, caplog):
    a = stores.catalog("a", fence_wait=0.5)
    stores.store().put("session/proxy/stuck", b"{}")
    wait_until(lambda: "stuck" in a._state.proxies)
    caplog.set_level(logging.WARNING, logger="vecdb.coord.catalog_sync")
    start = time.monotonic()
    a.add_collection(make_info("c"))
    took = time.monotonic() - start
    assert 0.5 <= took < WAIT
    assert a.exists("default", "c")
    assert any("stuck" in r.getMessage() for r in caplog.records)


def test_a_miss_rechecks_the_store(stores):
    a = stores.catalog("a")
    b = stores.catalog("b", live=False)  # not waited for: its watch may be behind
    solo = stores.catalog(None)  # no watch: it loaded once
    a.add_collection(make_info("c"))
    a.create_alias("default", "al", "c")
    for cat in (b, solo):
        assert cat.exists("default", "c")
        assert cat.describe_alias("default", "al").name == "c"
    a.create_database("db2", 9, 1, {})
    assert solo.database("db2")["id"] == 9


def test_a_writer_behind_the_store_checks_again(stores):
    a = stores.catalog("a")
    solo = stores.catalog(None)
    a.add_collection(make_info("c"))
    with pytest.raises(errors.InvalidParameter, match="already exists"):
        solo.add_collection(make_info("c"))  # its cache did not have c; the store did
    a.add_collection(make_info("d"))
    solo.create_alias("default", "al", "d")  # refused on its cache (no d), accepted on the store's
    assert a.describe_alias("default", "al").name == "d"


def test_a_miss_the_watch_fills_before_the_recheck_looks_again(stores):
    """The race behind a flaky AliasNotFound: a read misses at version n, the watch applies n+1
    (the change it missed) before the re-check reads the store's version, so the store is no
    newer than the cache any more; the miss was still decided on n, so the read looks again."""
    a = stores.catalog("a")
    solo = stores.catalog(None)  # no fence: a's watch applies its change whenever it comes
    a.add_collection(make_info("d"))
    store_version = a._sync.store_version
    released = []

    def watch_applies_first() -> int:  # the re-check's store read, run after the miss
        if not released:
            released.append(a._lock.release())  # a's watch may apply solo's change now
            wait_until(lambda: a.version >= store_version())
        return store_version()

    a._lock.acquire()  # a's watch cannot apply anything yet
    try:
        solo.create_alias("default", "al", "d")
        missed_at = a.version
        a._sync.store_version = watch_applies_first
        assert a.describe_alias("default", "al").name == "d"
    finally:
        if not released:
            a._lock.release()
        a._sync.store_version = store_version
    assert released and a.version > missed_at  # the race ran as described


def test_applied_version_is_published_and_goes_with_the_catalog(stores):
    a, b = stores.catalog("a"), stores.catalog("b")
    a.add_collection(make_info("c"))
    meta = stores.store()
    assert int(meta.get("catalog/applied/b")) == b.version == a.version
    b.close()
    assert meta.get("catalog/applied/b") is None

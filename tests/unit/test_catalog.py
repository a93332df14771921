"""One catalog on its own (standalone) and the cache's bookkeeping: stores written before the
catalog was versioned, the caller's object surviving its own saves, and a proxy's cache that
fell behind its watch starting over from a scan."""

from __future__ import annotations

import json
import threading

import pytest
from test_catalog_sync import WAIT, make_info, wait_until

from vecdb import errors
from vecdb.coord.catalog import Catalog, CatalogConflict
from vecdb.storage.memory import MemoryMetaStore
from vecdb.storage.watch import DELETE, PUT, WatchEvent


def test_a_store_written_before_versions_loads_and_goes_on():
    meta = MemoryMetaStore()
    info = make_info("old")
    meta.put("db/default", json.dumps({"id": 1, "created_ts": 0, "properties": {}}).encode())
    meta.put(f"coll/{info.id}", info.to_json())
    meta.put("alias/default/al", str(info.id).encode())
    cat = Catalog(meta)
    assert cat.version == 0 and meta.get("catalog/version") is None
    assert cat.describe_alias("default", "al").name == "old"
    cat.add_collection(make_info("new"))
    assert cat.version == 1 and meta.get("catalog/version") == b"1"
    assert [c.name for c in Catalog(meta).list_collections("default")] == ["old", "new"]


def test_saves_keep_the_callers_object_and_reach_the_store():
    meta = MemoryMetaStore()
    cat = Catalog(meta)
    cat.add_collection(make_info("c"))
    info = cat.get("default", "c")
    other_handler = cat.get("default", "c")
    assert other_handler is info
    info.properties["a"] = "1"
    cat.save(info)
    other_handler.properties["b"] = "2"  # the same object: nothing is stale
    cat.save(other_handler)
    assert cat.get("default", "c") is info
    assert Catalog(meta).get("default", "c").properties == {"a": "1", "b": "2"}


def test_in_process_saves_of_one_collection_at_once():
    cat = Catalog(MemoryMetaStore(), "p")
    cat.add_collection(make_info("c"))

    def alter(i):
        info = cat.get("default", "c")
        for j in range(20):
            info.properties[f"{i}-{j}"] = "1"
            cat.save(info)

    threads = [threading.Thread(target=alter, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(cat.get("default", "c").properties) == 80
    cat.close()


def test_refusals_keep_their_errors():
    cat = Catalog(MemoryMetaStore())
    cat.add_collection(make_info("c"))
    with pytest.raises(errors.InvalidParameter, match="already exists"):
        cat.add_collection(make_info("c"))
    with pytest.raises(errors.CollectionNotFound):
        cat.get("default", "nope")
    with pytest.raises(errors.DatabaseNotFound):
        cat.get("nodb", "c")
    with pytest.raises(errors.AliasNotFound):
        cat.alter_alias("default", "nope", "c")
    with pytest.raises(errors.InvalidParameter, match="default database"):
        cat.drop_database("default")
    cat.create_alias("default", "al", "c")
    with pytest.raises(errors.AliasAlreadyExists):
        cat.create_alias("default", "al", "c")
    with pytest.raises(errors.AliasNameConflict):
        cat.create_alias("default", "c", "c")
    with pytest.raises(errors.InvalidParameter, match="conflicts with an existing alias"):
        cat.add_collection(make_info("al"))
    cat.drop_alias("default", "nope")  # nothing to drop: no error, no new version
    version = cat.version
    cat.drop_database("nodb")
    assert cat.version == version


def test_a_cache_that_fell_behind_its_watch_starts_over():
    meta = MemoryMetaStore(watch_backlog=3)
    writer, reader = Catalog(meta, "w"), Catalog(meta, "r")  # no sessions: nobody waits for the reader
    with reader._lock:  # its watch cannot apply anything while more than the backlog happens
        for i in range(10):
            writer.add_collection(make_info(f"c{i}"))
        writer.drop_collection(writer.get("default", "c0"))
    wait_until(lambda: reader.version == writer.version)
    assert sorted(c.name for c in reader.all_collections()) == [f"c{i}" for i in range(1, 10)]
    reader.close()
    writer.close()


def test_a_revision_already_applied_is_not_applied_again():
    from vecdb.coord.catalog_state import CatalogState

    state = CatalogState()
    info = make_info("c")
    state.install(info, info.to_json())
    state.version = 2
    renamed = make_info("x")
    state.apply([WatchEvent(PUT, f"coll/{info.id}", renamed.to_json(), 7), WatchEvent(PUT, "catalog/version", b"2", 7),
                 WatchEvent(DELETE, "session/proxy/p", None, 8), WatchEvent(PUT, "catalog/version", b"3", 9),
                 WatchEvent(PUT, "alias/default/al", str(info.id).encode(), 9)])
    assert state.collections[info.id] is info and state.version == 3
    assert state.aliases == {("default", "al"): info.id}


def test_a_save_that_lost_is_not_left_in_the_cache():
    meta = MemoryMetaStore()
    a, b = Catalog(meta, "a"), Catalog(meta, "b")
    a.add_collection(make_info("c"))
    wait_until(lambda: b.exists("default", "c"))
    stale = b.get("default", "c")
    fresh = a.get("default", "c")
    fresh.properties["a"] = "1"
    a.save(fresh)
    wait_until(lambda: b.get("default", "c") is not stale)
    stale.properties["b"] = "1"
    with pytest.raises(CatalogConflict):
        b.save(stale)
    assert b.get("default", "c").properties == {"a": "1"}
    a.close()
    b.close()


def test_a_collection_is_found_by_name_after_renames_drops_and_aliases():
    """Lookups by name go through an index of names (a server with thousands of collections looked at
    each on every search): renamed, dropped, re-created and aliased collections are found as before."""
    meta = MemoryMetaStore()
    cat = Catalog(meta)
    for i in range(50):
        cat.add_collection(make_info(f"c{i}"))
    first = cat.get("default", "c7")
    cat.rename_collection(first, "default", "renamed")
    assert cat.get("default", "renamed").id == first.id
    assert not cat.exists("default", "c7")
    cat.add_collection(make_info("c7"))  # the old name again: another collection
    assert cat.get("default", "c7").id != first.id
    cat.create_alias("default", "al", "renamed")
    assert cat.get("default", "al").id == first.id
    cat.drop_collection(cat.get("default", "c8"))
    assert not cat.exists("default", "c8")
    with pytest.raises(errors.CollectionNotFound):
        cat.get("default", "c8")
    other = Catalog(meta)  # a second cache of the same store, built by a scan
    assert {c.name: c.id for c in other.list_collections("default")} == {
        c.name: c.id for c in cat.list_collections("default")}
    assert other.get("default", "renamed").id == first.id and other.get("default", "al").id == first.id

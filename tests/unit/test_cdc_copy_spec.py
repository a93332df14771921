"""start "copy" (vecdb.cdc.base_copy): a task spec without the source's Milvus API address is refused
(1100) saying what is missing, over the API too; the task store keeps a collection's pending copy
with its start positions, and forgets it once done, with the collection, or with the task."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from vecdb import errors
from vecdb.cdc.cli import call
from vecdb.cdc.server import CdcService, serve
from vecdb.cdc.task import TaskSpec, TaskStore
from vecdb.storage.memory import MemoryMetaStore

SOURCE = {"log": f"nats://127.0.0.1:{free_port()}", "meta": f"etcd://127.0.0.1:{free_port()}", "namespace": "x"}


def test_start_copy_needs_the_source_uri():
    for source in (SOURCE, {**SOURCE, "uri": ""}, {**SOURCE, "uri": 5}):
        with pytest.raises(errors.InvalidParameter, match="start 'copy'.*source needs a 'uri'") as e:
            TaskSpec(source=source, target={"uri": "http://t:1"}, start="copy").validate()
        assert e.value.code == 1100
    with pytest.raises(errors.InvalidParameter, match="'token' must be a string"):
        TaskSpec(source={**SOURCE, "uri": "http://s:1", "token": 7}, target={"uri": "http://t:1"},
                 start="copy").validate()
    TaskSpec(source={**SOURCE, "uri": "http://s:1", "token": "root:Milvus"}, target={"uri": "http://t:1"},
             start="copy").validate()
    TaskSpec(source=SOURCE, target={"uri": "http://t:1"}, start="now").validate()  # (only copy needs it)
    service = CdcService(MemoryMetaStore())
    httpd = serve(service, "127.0.0.1", 0)
    try:
        code, out = call(f"http://127.0.0.1:{httpd.server_address[1]}", "POST", "/v1/tasks",
                         {"source": SOURCE, "target": {"uri": "http://t:1"}, "start": "copy"})
        assert code == 400 and out["code"] == 1100 and "source needs a 'uri'" in out["error"], out
        assert service.list() == []
    finally:
        httpd.shutdown()
        service.stop()


def test_the_store_keeps_pending_copies_with_the_positions():
    store = TaskStore(MemoryMetaStore())
    store.add_collection("t1", 7, {"db": "default", "name": "a", "target": "a"}, {"c7-s0": 42}, copy=True)
    store.add_collection("t1", 8, {"db": "default", "name": "b", "target": "b"}, {"c8-s0": 0})
    store.add_collection("t1", 9, {"db": "default", "name": "c", "target": "c"}, {"c9-s0": 3}, copy=True)
    assert store.copies("t1") == {7, 9} and store.positions("t1") == {"c7-s0": 42, "c8-s0": 0, "c9-s0": 3}
    store.copy_done("t1", 7)
    assert store.copies("t1") == {9} and store.positions("t1")["c7-s0"] == 42
    store.remove_collection("t1", 9, ["c9-s0"])
    assert store.copies("t1") == set()
    store.add_collection("t1", 10, {"db": "default", "name": "d", "target": "d"}, {"c10-s0": 1}, copy=True)
    store.delete("t1")
    assert store.copies("t1") == set() and store.positions("t1") == {}


def test_positions_read_with_a_stamp_after_them():
    # "<position> <stamp>", as builds of early 2026-12-06 wrote a channel's position (stamps have keys of
    # their own since: STAMP_PREFIX)
    store = TaskStore(MemoryMetaStore())
    store.meta.put("cdc/pos/t1/c5-s0", b"12 449000000000000000")
    store.commit_position("t1", "c6-s0", 7, (449000000000000001, 3, 0))
    assert store.positions("t1") == {"c5-s0": 12, "c6-s0": 7}
    assert store.stamps("t1") == {"c6-s0": (449000000000000001, 3, 0)}

"""Found by a scale hunt of servers with many collections (multi-tenant apps keep one per tenant): work done for
every collection where none is needed.

- An automatic compaction round (every ``compaction.interval``, 10 s) read each owned channel's checkpoint,
  segment and delta lists, collection record and index build records, changed or not: 4.5 metadata reads per
  idle collection per round (1,000 idle collections: 450 reads a second, each an etcd round trip in a
  cluster). Watches of those keys tell the rounds which collections changed
  (``vecdb/datanode/compaction_changes.py``): an idle round reads nothing per collection.
- Looking a collection up by a name that no collection has (every create_collection, every has_collection of
  a missing name, create_alias and alter_alias's check that no collection bears the alias's name) was a pass
  over every collection, and create_collection counted them all through sorted lists per database: creating N
  collections was quadratic (4 ms per create at 100 collections, 12 ms at 2,000).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np

from tests.conftest import wait_until
from tests.e2e._helpers import float_schema
from vecdb.config import CompactionSettings
from vecdb.datanode.node import DataNode
from vecdb.storage import segments as sf

DIM = 4
PER_COLLECTION = ("ckpt/", "seg/", "delta/", "idxbuild/", "coll/")


class CountingMeta:
    """The server's metadata store, counting the reads and writes that the test's own thread makes under the
    per-collection prefixes (the watches' threads are not counted: they are what tells of changes)."""

    def __init__(self, inner):
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.thread = threading.current_thread()

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in ("get", "scan", "scan_revision", "txn"):
            return attr

        def counted(*args, **kwargs):
            key = args[0] if args and isinstance(args[0], str) else ""
            if threading.current_thread() is self.thread and key.startswith(PER_COLLECTION):
                self.calls[key.split("/", 1)[0]] += 1
            return attr(*args, **kwargs)

        return counted


def _collections(client, n: int) -> None:
    schema = float_schema(DIM)
    for i in range(n):
        client.create_collection(f"t{i}", schema=schema, num_shards=1)


def _insert_flush(client, name: str, start: int, rows: int = 20) -> None:
    vecs = np.random.default_rng(start).random((rows, DIM), dtype=np.float32)
    client.insert(name, [{"id": start + i, "vec": vecs[i].tolist()} for i in range(rows)])
    client.flush(name)


def test_an_idle_compaction_round_reads_nothing_per_collection(own_standalone):
    server, client = own_standalone
    _collections(client, 30)
    for i in range(0, 30, 3):  # a segment in some of them
        _insert_flush(client, f"t{i}", 0)
    infos = [server.roles.catalog.get("default", f"t{i}") for i in range(30)]
    owned = {info.channels[0]: info.id for info in infos}
    meta = CountingMeta(server.meta)
    # the server's own compactor is off (tests' settings): a data node of the test's own compacts its channels,
    # as a data node process does; its interval is long, so the test runs the rounds
    node = DataNode(server.wal, meta, server.objects, server.roles.ids, truncate=False,
                    compaction=CompactionSettings(interval=3600, small_rows=1000, max_rows=10_000))
    try:
        node.compactor.start(lambda: owned, watch_requests=False)  # its thread's first round, at once
        wait_until(lambda: len(node.compactor._checked) == len(owned), what="the first round's checks")
        time.sleep(0.5)  # its last check ends (then the thread waits for the interval)
        meta.calls.clear()
        node.compactor._changes.mark(None)  # as after a watch that started over: every channel is checked
        node.compactor.run_once()
        first = sum(meta.calls.values())
        assert first >= 4 * len(owned), meta.calls
        for _ in range(3):
            meta.calls.clear()
            node.compactor.run_once()
            assert sum(meta.calls.values()) == 0, meta.calls  # before: 4-5 reads per collection, every round

        # a collection whose segments change (another process persists them: the server's data node) is
        # checked again, and only it: two small segments are merged by the next round
        _insert_flush(client, "t4", 100)
        _insert_flush(client, "t4", 200)
        channel = infos[4].channels[0]
        wait_until(lambda: len(sf.list_segments(server.meta, infos[4].id, channel)) == 2, what="two segments")

        def merged() -> bool:
            meta.calls.clear()
            node.compactor.run_once()
            return len(sf.list_segments(server.meta, infos[4].id, channel)) == 1

        wait_until(merged, 20, "the changed collection's segments merged by a round")
        meta.calls.clear()
        node.compactor.run_once()
        # at most that channel's reads (its merge's own keys may have marked it once more): one check of one
        # channel reads the checkpoint three times (the signature, then read_state's two) and the record once
        assert meta.calls["ckpt"] <= 3 and meta.calls["coll"] <= 1 and sum(meta.calls.values()) < first / 5, \
            meta.calls

        # a persist by the node itself marks its collection at once (no watch delay); first the marks the
        # watch still brings (the merge's own keys) are drained: one came after the take and was counted here
        def drained() -> bool:
            time.sleep(0.3)
            return node.compactor._changes.take() == set()

        wait_until(drained, 10, "the watch's marks drained")
        node.compactor.changed(infos[7].id)
        meta.calls.clear()
        node.compactor.run_once()
        assert 1 <= meta.calls["ckpt"] <= 2 and meta.calls["coll"] == 1, meta.calls
    finally:
        node.close()


class CountingDict(dict):
    """The catalog's collections, counting the passes over them."""

    passes = 0

    def values(self):
        CountingDict.passes += 1
        return super().values()

    def items(self):
        CountingDict.passes += 1
        return super().items()

    def __iter__(self):
        CountingDict.passes += 1
        return super().__iter__()


def test_creating_and_looking_up_names_makes_no_pass_over_the_collections(own_standalone):
    server, client = own_standalone
    _collections(client, 40)
    state = server.roles.catalog._state
    state.collections = CountingDict(state.collections)
    CountingDict.passes = 0
    for i in range(40, 45):
        client.create_collection(f"t{i}", schema=float_schema(DIM), num_shards=1)
    assert not client.has_collection("missing")
    assert client.has_collection("t44")
    client.create_alias("t3", "tenant3")
    client.alter_alias("t5", "tenant3")
    assert client.describe_alias("tenant3")["collection_name"] == "t5"
    assert client.describe_collection("tenant3")["collection_name"] == "t5"
    client.rename_collection("t6", "t6b")
    assert client.has_collection("t6b") and not client.has_collection("t6")
    client.create_collection("t6", schema=float_schema(DIM), num_shards=1)  # the old name is free again
    assert client.describe_collection("t6")["collection_id"] != client.describe_collection("t6b")["collection_id"]
    client.drop_collection("t7")
    assert not client.has_collection("t7")
    assert CountingDict.passes == 0  # before: one pass (or more) over every collection for each of these
    assert len(client.list_collections()) == 45

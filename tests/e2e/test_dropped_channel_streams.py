"""A dropped collection leaves no JetStream stream behind (real NATS, etcd, S3).

Each channel of a collection is one stream (``vecdb.storage.jetstream_log``); DropCollection deletes
them once. Appends that are no client's write still reach a channel after that: the data node's seal
policy (``vecdb.datanode.flusher``) appends a seal record once the rows it read pass
``datanode.seal_rows``, and with the collection dropped just after the insert that did it, the seal
lands after the delete (seen 0.57 s after it in a churn of 30 drops of a cluster of processes); in
standalone the proxy's seal policy does the same through the flush writer. Such an append made the
stream again, with the seal record in it, and nothing deleted it: a stream, its storage and the
records of a dropped collection kept for good (a WAL directory on the embedded backends). Now an
append never makes the channel of a collection the catalog no longer has
(``vecdb.storage.dropped_channels``): it fails with CollectionNotFound.

The seal is held here until the drop ended, so the race happens every time; the streams are listed
through NATS's own API (nats-py's JetStream manager), not through vecdb's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import server_settings, start_cluster, wait_until
from vecdb.errors import CollectionNotFound
from vecdb.storage.keys import decode_channel

DIM = 4
SEAL_ROWS = 50  # datanode.seal_rows: every insert here passes it in each shard


def _rows(n: int, seed: int, start: int = 0) -> list[dict]:
    vectors = np.random.default_rng(seed).random((n, DIM), dtype=np.float32)
    return [{"id": start + i, "vector": vectors[i].tolist()} for i in range(n)]


def _streams(url: str, namespace: str) -> dict[str, int]:
    """The namespace's JetStream streams (name -> records), as the NATS server lists them."""
    import nats

    async def listing() -> dict[str, int]:
        nc = await nats.connect(url)
        try:
            infos = await nc.jetstream().streams_info()
        finally:
            await nc.close()
        head = _head(namespace)
        return {i.config.name: i.state.messages for i in infos if i.config.name.startswith(head)}

    return asyncio.run(listing())


def _head(namespace: str) -> str:
    return namespace.upper().replace("-", "_") + "_"  # vecdb.storage.backends: the streams' prefix


class HeldSeals:
    """Wraps a seal (``seal(*args)``) of collection ``cid``: each call waits until ``released()`` holds,
    then appends; counts what the appends did."""

    def __init__(self, seal, cid_of, cid: int, released):
        self._seal, self._cid_of, self.cid, self._released = seal, cid_of, cid, released
        self.due: set[str] = set()  # channels whose seal is held
        self.outcomes: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, *args):
        cid, channel = self._cid_of(*args)
        if cid != self.cid:
            return self._seal(*args)
        with self._lock:
            self.due.update(channel)
        wait_until(self._released, 60, "the drop ending")
        try:
            out = self._seal(*args)
        except CollectionNotFound:
            self._record("refused")
            raise
        except Exception:
            self._record("failed")
            raise
        self._record("appended")
        return out

    def _record(self, outcome: str) -> None:
        with self._lock:
            self.outcomes.append(outcome)


@pytest.fixture
def roles(tmp_path, remote_storage):
    """coord, data node (its seal policy at SEAL_ROWS rows), query node and proxy in this process on real
    NATS, etcd and S3: yields (data node, proxy, storage settings)."""
    from vecdb.coord.server import Coord
    from vecdb.datanode.process import DataNodeProcess
    from vecdb.proxy.process import ProxyProcess
    from vecdb.querynode.process import QueryNodeProcess
    from vecdb.storage.backends import open_log, open_meta

    storage = dict(remote_storage(), session_ttl=4)
    tag = uuid.uuid4().hex[:6]

    def settings(name: str):
        s = server_settings(tmp_path / name, storage=storage)
        s.datanode.seal_rows = SEAL_ROWS
        return s

    cs = settings("coord").storage
    meta = open_meta(cs)
    wal = open_log(cs, meta)  # as ``vecdb coord`` opens it
    coord = Coord(meta, session_ttl=4, wal=wal)
    made: list = []
    try:
        made.append(DataNodeProcess(settings("dn"), node_id=f"dn-{tag}"))
        made.append(QueryNodeProcess(settings("qn"), node_id=f"qn-{tag}"))
        made.append(ProxyProcess(settings("px"), node_id=f"px-{tag}"))
        yield made[0], made[2], storage
    finally:
        for p in reversed(made):
            p.stop()
        coord.stop()
        wal.close()
        meta.close()


def test_a_data_node_seal_after_the_drop_makes_no_stream(roles, nats_server):
    datanode, proxy, storage = roles
    ns, url = storage["namespace"], nats_server.url
    c = MilvusClient(uri=f"http://127.0.0.1:{proxy.port}")
    try:
        c.create_collection("kept", dimension=DIM, num_shards=2)
        c.insert("kept", _rows(10, 0))
        c.create_collection("doomed", dimension=DIM, num_shards=2)
        doomed = proxy.roles.catalog.get("default", "doomed")
        kept = {_head(ns) + ch for ch in proxy.roles.catalog.get("default", "kept").channels}
        meta = datanode.backends.meta

        def dropped() -> bool:  # the catalog record, then the streams, are gone: DropCollection ended
            return meta.get(f"coll/{doomed.id}") is None and set(_streams(url, ns)) == kept

        held = HeldSeals(datanode.flusher.seal, lambda cid, channel: (cid, [channel]), doomed.id, dropped)
        datanode.flusher.seal = held
        c.insert("doomed", _rows(3 * SEAL_ROWS, 1))  # past seal_rows in both shards
        wait_until(lambda: held.due == set(doomed.channels), 60, "the data node's seal of both channels")
        c.drop_collection("doomed")

        wait_until(lambda: len(held.outcomes) == 2, 60, "both held seals tried")
        wait_until(lambda: not set(datanode.flusher.channels()) & set(doomed.channels), 30,
                   "the data node stops following the dropped channels")
        time.sleep(2)  # a quiet period: nothing late makes a stream again
        left = _streams(url, ns)
        assert set(left) == kept, f"streams of the dropped collection: {sorted(set(left) - kept)} ({left})"
        assert held.outcomes == ["refused", "refused"]

        c.insert("kept", _rows(5, 2, 100))  # a live collection's appends and seals as before
        c.insert("kept", _rows(3 * SEAL_ROWS, 3, 200))
        assert c.query("kept", "", output_fields=["count(*)"],
                       consistency_level="Strong")[0]["count(*)"] == 15 + 3 * SEAL_ROWS
        wait_until(lambda: len(list(meta.scan(f"seg/{proxy.roles.catalog.get('default', 'kept').id}/"))) >= 2,
                   60, "the data node seals and persists kept")
        assert set(_streams(url, ns)) == kept
    finally:
        c.close()


def test_a_drop_cut_short_after_the_catalog_leaves_no_stream(roles, nats_server):
    """A proxy that dies in DropCollection after the catalog record went (the coord's DDL) and before the
    streams: the data node that persisted the channels deletes them as its followers end."""
    datanode, proxy, storage = roles
    ns, url = storage["namespace"], nats_server.url
    c = MilvusClient(uri=f"http://127.0.0.1:{proxy.port}")
    try:
        c.create_collection("kept", dimension=DIM, num_shards=1)
        c.insert("kept", _rows(10, 0))
        c.create_collection("orphaned", dimension=DIM, num_shards=2)
        c.insert("orphaned", _rows(3 * SEAL_ROWS, 1))
        orphaned = proxy.roles.catalog.get("default", "orphaned")
        kept = {_head(ns) + ch for ch in proxy.roles.catalog.get("default", "kept").channels}
        wait_until(lambda: set(orphaned.channels) <= set(datanode.flusher.channels()), 30,
                   "the data node follows the channels")
        assert {_head(ns) + ch for ch in orphaned.channels} <= set(_streams(url, ns))

        proxy.roles.ddl.drop_collection("default", "orphaned")  # the catalog only: the proxy "died" here
        wait_until(lambda: set(_streams(url, ns)) == kept, 30, "the dropped collection's streams deleted")
        time.sleep(2)  # a quiet period: nothing late makes a stream again
        assert set(_streams(url, ns)) == kept
        assert c.query("kept", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 10
    finally:
        c.close()


@pytest.mark.parametrize("backends", ["remote", "embedded"])
def test_a_standalone_seal_after_the_drop_makes_no_stream(backends, tmp_path, request):
    """Standalone on NATS, etcd and S3, and on its embedded backends (a WAL directory a channel): its
    proxy's seal policy flushes in the background through the in-process flush writer; one held until
    the drop ended makes no channel either (nor the checkpoints its persist wrote under the dropped id)."""
    from vecdb.standalone import Standalone

    storage = request.getfixturevalue("remote_storage")() if backends == "remote" else None
    settings = server_settings(tmp_path / "data", storage=storage)
    settings.datanode.seal_rows = SEAL_ROWS
    if storage is not None:
        url, ns = request.getfixturevalue("nats_server").url, storage["namespace"]

        def channels() -> set[str]:  # as the NATS server lists them
            return {name[len(_head(ns)):] for name in _streams(url, ns)}
    else:
        def channels() -> set[str]:  # as the WAL's directory holds them
            return {decode_channel(e) for e in os.listdir(tmp_path / "data" / "wal") if e.startswith("c")}
    server = Standalone(settings).start()
    c = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
    try:
        c.create_collection("kept", dimension=DIM, num_shards=1)
        c.insert("kept", _rows(10, 0))
        c.create_collection("doomed", dimension=DIM, num_shards=2)
        catalog = server.roles.catalog
        doomed = catalog.get("default", "doomed")
        kept = set(catalog.get("default", "kept").channels)

        def dropped() -> bool:
            return server.meta.get(f"coll/{doomed.id}") is None and channels() == kept

        flush = server.roles.flush
        held = HeldSeals(flush.flush, lambda cid, chs: (cid, list(chs)), doomed.id, dropped)
        flush.flush = held
        c.insert("doomed", _rows(3 * SEAL_ROWS, 1))  # past seal_rows: the seal policy flushes in the background
        wait_until(lambda: held.due == set(doomed.channels), 60, "the seal policy's flush of doomed")
        c.drop_collection("doomed")

        wait_until(lambda: len(held.outcomes) == 1, 60, "the held flush tried")
        time.sleep(2)  # a quiet period: nothing late makes a channel again
        assert channels() == kept, f"channels of the dropped collection: {sorted(channels() - kept)}"
        assert held.outcomes == ["refused"]
        assert not list(server.meta.scan(f"ckpt/{doomed.id}/")) and not list(server.meta.scan(f"seg/{doomed.id}/"))

        c.insert("kept", _rows(3 * SEAL_ROWS, 2, 100))
        assert c.query("kept", "", output_fields=["count(*)"],
                       consistency_level="Strong")[0]["count(*)"] == 10 + 3 * SEAL_ROWS
        assert channels() == kept
    finally:
        c.close()
        server.stop()


def test_a_churn_of_drops_while_seals_are_due_leaves_no_stream(tmp_path, remote_storage, nats_server):
    """Processes (coord, query node, data node, proxy): collections created, written past the data node's
    seal_rows, flushed and dropped at once, round after round; after a quiet period the streams left are
    the live collection's only. (The race is not forced here: it hit about one drop in 30 before.)"""
    storage = remote_storage()
    ns = storage["namespace"]
    env = {"dn0": {"VECDB_DATANODE__SEAL_ROWS": str(SEAL_ROWS)}}
    with start_cluster(storage, tmp_path, env=env) as cluster:
        c = cluster.client()
        c.create_collection("kept", dimension=DIM, num_shards=2)
        c.insert("kept", _rows(10, 0))
        for i in range(10):
            name = f"dropped_{i}"
            c.create_collection(name, dimension=DIM, num_shards=2)
            c.insert(name, _rows(10, i))
            c.flush(name)  # the data node follows the channels by now
            for k in range(4):  # each past seal_rows in both shards: seals due as the drop comes
                c.insert(name, _rows(3 * SEAL_ROWS, 100 * k + i))
            c.drop_collection(name)
        live = next(info for _, raw in cluster.meta.scan("coll/") if (info := json.loads(raw))["name"] == "kept")
        kept = {_head(ns) + f"c{live['id']}-s{s}" for s in range(2)}
        time.sleep(5)  # a quiet period for late appends (a seal, its retry)
        left = _streams(nats_server.url, ns)
        assert set(left) == kept, f"streams of dropped collections: {sorted(set(left) - kept)}"
        assert c.query("kept", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 10
        cluster.stop_all()

"""The coord's flush (vecdb.coord.flush) on the embedded backends (WAL files, the local metadata and
object stores): seal records under one timestamp, in timestamp order with another writer's records
in the same channels; the data node's segments once it persisted them; the channels no data node
process persists handed back to the caller (and persisted by it); a repeat (a retry after a
failover) loses and duplicates no row. Then the same through the coord's ``Flush`` RPC: only the
active coord answers, and a flush goes on through the standby that took over."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from tests.conftest import wait_until
from vecdb import errors
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.catalog import Catalog
from vecdb.coord.client import CoordClient
from vecdb.coord.datanode_assignment import DATANODE_SESSIONS, DN_ASSIGN_PREFIX
from vecdb.coord.ddl_rpc import RemoteDdl
from vecdb.coord.flush import FlushManager, RemoteFlush
from vecdb.coord.server import Coord
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.datanode.flusher import ChannelFlusher
from vecdb.datanode.node import DataNode
from vecdb.log_records import InsertRecord, SealRecord, decode
from vecdb.proxy.writer import ShardWriter
from vecdb.rpc import Client
from vecdb.rpc.gen import coord_pb2
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.local_objects import LocalObjectStore
from vecdb.storage.memory import MemoryLog, MemoryMetaStore
from vecdb.storage.wal import WalLog

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True, field_id=100),
                                FieldSchema("v", DataType.FLOAT_VECTOR, dim=2, field_id=101)])
CID, PID = 100, 101


def _noop(*_) -> None:
    pass


class Env:
    """Embedded backends with one 2-shard collection, a "proxy" writer and the coord's own writer
    (each its own ShardWriter over the same log, as in a cluster)."""

    def __init__(self, tmp_path):
        self.wal = WalLog(str(tmp_path / "wal"))
        self.meta = LocalMetaStore(str(tmp_path / "meta"))
        self.objects = LocalObjectStore(str(tmp_path / "objects"))
        self.catalog = Catalog(self.meta)
        self.info = CollectionInfo(id=CID, db="default", name="c", schema=SCHEMA, shards_num=2, consistency_level=0,
                                   created_ts=1, partitions=[PartitionInfo(PID, "_default", 1)])
        self.catalog.add_collection(self.info)
        self.tso = TimestampOracle(self.meta)
        self.ids = IdAllocator(self.meta)
        self.proxy = ShardWriter(self.wal, self.tso, _noop)
        self.next_id = 0
        self.node: DataNode | None = None
        self.flusher: ChannelFlusher | None = None

    def manager(self, wait: float = 30.0) -> FlushManager:
        """A coord term's manager: a writer of its own, reading the channels' ends at each flush."""
        return FlushManager(ShardWriter(self.wal, self.tso, _noop, refresh_ends=True), self.meta, wait=wait)

    def insert(self, channel: str, n: int) -> None:
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        self.next_id += n
        cols = {"id": ids, "v": np.zeros((n, 2), np.float32)}
        self.proxy.write({channel: lambda ts: [InsertRecord(CID, PID, ts, n, cols)]})

    def start_datanode(self) -> None:
        """A data node process: its session, the channels assigned to it, its flusher following them."""
        self.meta.put(f"{DN_ASSIGN_PREFIX}{CID}", json.dumps({ch: "dn0" for ch in self.info.channels}).encode())
        self.meta.put(f"{DATANODE_SESSIONS}dn0", b"{}")
        self.node = DataNode(self.wal, self.meta, self.objects, self.ids)
        self.flusher = ChannelFlusher(self.node, self.wal, self.meta, "dn0")

    def persisted_ids(self) -> np.ndarray:
        """The primary keys of every persisted segment (each row once if nothing was persisted twice)."""
        cols = [sf.read_segment(self.objects, s["prefix"], SCHEMA, skip={"v"})[0]["id"] for ch in self.info.channels
                for s in sf.list_segments(self.meta, CID, ch)]
        return np.sort(np.concatenate(cols)) if cols else np.zeros(0, np.int64)

    def close(self) -> None:
        if self.flusher is not None:
            self.flusher.close()
        if self.node is not None:
            self.node.close()
        self.catalog.close()
        self.wal.close()
        self.objects.close()
        self.meta.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def test_with_no_data_node_the_seal_records_go_back_to_the_caller_which_persists_them(env):
    ch0, ch1 = env.info.channels
    env.insert(ch0, 30)
    env.insert(ch1, 20)
    done = env.manager().flush(CID, env.info.channels)
    assert done.segment_ids == [] and sorted(done.unpersisted) == [ch0, ch1]
    for ch, pos in done.unpersisted.items():  # each position is this flush's seal record, at one timestamp
        ((p, payload),) = list(env.wal.read(ch, pos))[:1]
        assert p == pos and decode(payload) == SealRecord(CID, done.ts)
    # the caller's fallback: persist in-process up to those records
    node = DataNode(env.wal, env.meta, env.objects, env.ids)
    try:
        rows = sum(s["num_rows"] for ch, pos in done.unpersisted.items() for s in node.persist(env.info, ch, pos))
    finally:
        node.close()
    assert rows == 50
    assert env.persisted_ids().tolist() == list(range(50))


def test_with_a_data_node_the_flush_returns_once_it_persisted_with_its_segments(env):
    ch0, ch1 = env.info.channels
    env.start_datanode()
    env.insert(ch0, 30)
    env.insert(ch1, 20)
    t0 = time.monotonic()
    done = env.manager().flush(CID, env.info.channels)
    print(f"flush of 2 channels through a data node: {(time.monotonic() - t0) * 1000:.0f} ms")
    assert done.unpersisted == {}
    segments = [s for ch in env.info.channels for s in sf.list_segments(env.meta, CID, ch)]
    assert sorted(done.segment_ids) == sorted(s["segment_id"] for s in segments)
    assert sorted(s["num_rows"] for s in segments) == [20, 30]
    assert env.persisted_ids().tolist() == list(range(50))
    # a flush of one channel seals that one only
    env.insert(ch1, 5)
    done = env.manager().flush(CID, [ch1])
    assert len(done.segment_ids) == 1 and sf.list_segments(env.meta, CID, ch0)[-1]["num_rows"] == 30


def test_a_repeated_flush_loses_and_duplicates_no_row(env):
    ch0, ch1 = env.info.channels
    env.start_datanode()
    env.insert(ch0, 10)
    env.insert(ch1, 10)
    first = env.manager()
    done = first.flush(CID, env.info.channels)
    assert len(done.segment_ids) == 2
    again = first.flush(CID, env.info.channels)  # a retry after a lost reply: nothing more to persist
    assert again.segment_ids == [] and again.unpersisted == {} and again.ts > done.ts
    # a coord that wrote its seal records and died before answering; the retry goes to its successor
    env.insert(ch0, 7)
    first.writer.write({ch: lambda ts: [SealRecord(CID, ts)] for ch in env.info.channels})
    env.insert(ch0, 3)  # written between the two tries
    retried = env.manager().flush(CID, env.info.channels)
    assert retried.unpersisted == {}
    wait_until(lambda: len(env.persisted_ids()) == 30, 10, "the data node persisting every seal record")
    assert env.persisted_ids().tolist() == list(range(30))  # each row once
    assert sum(s["num_rows"] for s in sf.list_segments(env.meta, CID, ch0)) == 20


def test_seal_records_keep_each_channel_in_timestamp_order_with_the_proxies_writes(env):
    ch0, ch1 = env.info.channels
    coord = env.manager()
    for _ in range(3):  # each writer appends where the other was the last: the append re-reads the end
        env.insert(ch0, 2)
        env.insert(ch1, 2)
        coord.flush(CID, env.info.channels)
    for ch in env.info.channels:
        stamps = [decode(p).ts for _, p in env.wal.read(ch, 1)]
        assert len(stamps) == 6 and stamps == sorted(stamps) and len(set(stamps)) == 6


class CountingTso:
    def __init__(self, tso):
        self.tso, self.calls = tso, 0

    def allocate(self, count: int = 1) -> int:
        self.calls += 1
        return self.tso.allocate(count)


def test_neither_writer_fails_an_append_on_the_others_records(env):
    """The coord's writer reads the ends before a flush; the proxy's takes the seal positions as the
    ends (``saw``): each append then takes one timestamp, none is refused and taken again."""
    ch0, ch1 = env.info.channels
    proxy_tso, coord_tso = CountingTso(env.tso), CountingTso(env.tso)
    proxy = ShardWriter(env.wal, proxy_tso, _noop)
    coord = FlushManager(ShardWriter(env.wal, coord_tso, _noop, refresh_ends=True), env.meta)
    cols = {"id": np.arange(3, dtype=np.int64), "v": np.zeros((3, 2), np.float32)}

    def insert() -> None:
        proxy.write({ch: lambda ts: [InsertRecord(CID, PID, ts, 3, cols)] for ch in (ch0, ch1)})

    insert()
    for _ in range(3):
        proxy_tso.calls = coord_tso.calls = 0
        done = coord.flush(CID, [ch0, ch1])
        assert coord_tso.calls == 1
        proxy.saw(done.positions)
        insert()
        assert proxy_tso.calls == 1
    done = coord.flush(CID, [ch0, ch1])
    proxy_tso.calls = 0
    insert()  # without the hint: each channel's append finds the seal record, reads the end, takes a new timestamp
    assert proxy_tso.calls == 1 + 2
    for ch in (ch0, ch1):
        stamps = [decode(p).ts for _, p in env.wal.read(ch, 1)]
        assert stamps == sorted(stamps) and len(stamps) == 9  # 5 inserts, 4 seal records


def test_a_flush_goes_back_to_the_caller_when_the_data_nodes_go_and_fails_when_none_persists(env):
    env.start_datanode()
    assert env.flusher is not None and env.node is not None
    env.flusher.close()  # a data node that still has its session but does not persist
    env.flusher = None
    env.insert(env.info.channels[0], 4)
    t0 = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable, match="no data node persisted"):
        env.manager(wait=0.3).flush(CID, env.info.channels)
    assert 0.3 <= time.monotonic() - t0 < 5
    # its session ends during a wait: the channels are the caller's
    threading.Timer(0.3, lambda: env.meta.delete(f"{DATANODE_SESSIONS}dn0")).start()
    done = env.manager().flush(CID, env.info.channels)
    assert done.segment_ids == [] and sorted(done.unpersisted) == sorted(env.info.channels)


# --- through the coord's Flush RPC


@pytest.fixture
def cluster():
    meta, wal = MemoryMetaStore(), MemoryLog()
    made: list = []

    def coord(with_log: bool = True) -> Coord:
        made.append(Coord(meta, session_ttl=2, wal=wal if with_log else None))
        return made[-1]

    yield meta, wal, coord
    for c in reversed(made):
        c.stop()


def test_flush_through_the_coord_rpc_and_through_the_standby_that_took_over(cluster):
    meta, wal, coord = cluster
    first = coord()
    standby = coord()
    assert first.active and not standby.active
    meta.put("session/proxy/a", b"{}")
    catalog = Catalog(meta, "a", ttl=2)
    client = CoordClient(meta, timeout=5)
    try:
        cid = RemoteDdl(client, catalog).create_collection("", "c", SCHEMA, 2, 0, {}, 0)
        channels = catalog.get_by_id(cid).channels
        flush = RemoteFlush(client)
        done = flush.flush(cid, [])  # no channels named: all of them; no data node: the caller's
        assert sorted(done.unpersisted) == sorted(channels) and done.segment_ids == []
        for ch, pos in done.unpersisted.items():
            assert decode(dict(wal.read(ch, pos))[pos]) == SealRecord(cid, done.ts)
        with pytest.raises(errors.CollectionNotFound):
            flush.flush(cid + 12345, [])
        with pytest.raises(errors.InvalidParameter, match="not collection c's"):
            flush.flush(cid, ["someone-elses-channel"])
        direct = Client(standby.address, "coord", timeout=5)  # a standby refuses (retriable)
        try:
            with pytest.raises(errors.ServiceNotReady):
                direct.invoke("Flush", coord_pb2.FlushRequest(collection_id=cid))
        finally:
            direct.close()
        first.stop()  # the standby takes over; the next flush goes there, above the last seal's timestamp
        assert standby.wait_active(10)
        again = flush.flush(cid, channels[:1])
        assert list(again.unpersisted) == channels[:1] and again.ts > done.ts
        assert again.unpersisted[channels[0]] > done.unpersisted[channels[0]]
    finally:
        client.close()
        catalog.close()


def test_a_coord_without_the_shared_log_refuses_flushes_and_the_proxy_writes_them_itself(cluster):
    meta, wal, coord = cluster
    coord(with_log=False)
    meta.put("session/proxy/a", b"{}")
    catalog = Catalog(meta, "a", ttl=2)
    client = CoordClient(meta, timeout=2)
    try:
        cid = RemoteDdl(client, catalog).create_collection("", "c", SCHEMA, 1, 0, {}, 0)
        (channel,) = catalog.get_by_id(cid).channels
        with pytest.raises(errors.Unimplemented, match="no shared log"):
            RemoteFlush(client).flush(cid, [])
        # a proxy's RemoteFlush falls back to its own writer (as before the coord flushed)
        own = FlushManager(ShardWriter(wal, TimestampOracle(MemoryMetaStore()), _noop), meta)
        done = RemoteFlush(client, fallback=own).flush(cid, [channel])
        assert list(done.unpersisted) == [channel]
        assert decode(dict(wal.read(channel, 1))[done.unpersisted[channel]]) == SealRecord(cid, done.ts)
    finally:
        client.close()
        catalog.close()

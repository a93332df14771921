"""The seal policy on the data node that follows a channel (vecdb.datanode.flusher): once the rows
inserted after the channel's last seal record reach ``seal_rows`` it appends a seal record and
persists at it; a flush's seal record starts the count again; a seal that fails is tried again at
the next insert. And the proxy leaves the policy to the data nodes while any runs
(ClusterDataNode.seals_itself)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.conftest import wait_until
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.catalog import Catalog
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.datanode import remote
from vecdb.datanode.flusher import ChannelFlusher
from vecdb.datanode.node import DataNode
from vecdb.datanode.remote import ClusterDataNode
from vecdb.datanode.seal import VARIABLE_FIELD_BYTES, row_bytes, seal_rows_for
from vecdb.log_records import InsertRecord, SealRecord, decode
from vecdb.proxy.writer import ShardWriter
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore


@pytest.mark.parametrize("limits", [{"seal_rows": 100}, {"seal_rows": 10**6, "seal_bytes": 100 * 32}],
                         ids=["rows", "bytes"])
def test_the_data_node_seals_a_channel_at_seal_rows_and_persists_it(limits):
    """By rows, or by bytes: 100 rows of (int64 id, 2-d float vector) are 100 x 32 estimated bytes."""
    meta, wal, objects = MemoryMetaStore(), MemoryLog(), MemoryObjectStore()
    catalog = Catalog(meta)
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                    FieldSchema("v", DataType.FLOAT_VECTOR, dim=2)])
    info = CollectionInfo(id=100, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(101, "_default", 1)])
    catalog.add_collection(info)
    (channel,) = info.channels
    meta.put(f"{DN_ASSIGN_PREFIX}{info.id}", json.dumps({channel: "dn0"}).encode())
    writer = ShardWriter(wal, TimestampOracle(meta), lambda *_: None)
    failing = [True]
    seals = []

    def seal(cid: int, ch: str) -> None:
        seals.append(ch)
        if failing[0]:
            failing[0] = False
            raise ConnectionError("coord not reachable (test)")
        writer.write({ch: lambda ts: [SealRecord(cid, ts)]})

    node = DataNode(wal, meta, objects, IdAllocator(meta))
    assert row_bytes(schema) == 32
    flusher = ChannelFlusher(node, wal, meta, "dn0", seal=seal, **limits)
    next_id = [0]

    def insert(n: int) -> None:
        ids = np.arange(next_id[0], next_id[0] + n, dtype=np.int64)
        next_id[0] += n
        cols = {"id": ids, "v": np.zeros((n, 2), np.float32)}
        writer.write({channel: lambda ts: [InsertRecord(info.id, 101, ts, n, cols)]})

    def persisted_rows() -> int:
        return sum(s["num_rows"] for s in sf.list_segments(meta, info.id, channel))

    try:
        insert(60)
        insert(60)  # 120 >= 100: a seal, which fails (the coord is away) ...
        wait_until(lambda: len(seals) == 1, 10, "first seal try")
        insert(10)  # ... and is tried again here: 130 rows sealed and persisted
        wait_until(lambda: persisted_rows() == 130, 10, "the seal policy's persist")
        assert seals == [channel, channel]
        insert(90)  # 90 after the seal: no seal yet
        writer.write({channel: lambda ts: [SealRecord(info.id, ts)]})  # a flush's seal record
        wait_until(lambda: persisted_rows() == 220, 10, "the flush's persist")
        insert(60)  # the count started again at the flush: 60 < 100
        insert(30)
        time.sleep(1.5)  # the follower polls every 0.5 s: a seal would have been appended by now
        assert persisted_rows() == 220 and len(seals) == 2
        records = [decode(p) for _, p in wal.read(channel, sf.checkpoint(meta, info.id, channel) + 1)]
        assert [type(r).__name__ for r in records] == ["InsertRecord", "InsertRecord"]
    finally:
        flusher.close()
        node.close()
        catalog.close()


def test_segments_are_sized_in_bytes_as_milvus_sizes_them():
    """128 MiB of estimated rows, at most 1M rows: 1M x 128-d floats make 4 segments (Milvus made 4),
    400k GloVe-50d rows one; narrow rows stop at the row cap."""
    from vecdb.config import DataNodeSettings

    d = DataNodeSettings()
    assert (d.seal_bytes, d.seal_rows) == (128 << 20, 1_000_000)

    def schema(*fields):
        return CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), *fields])

    wide = schema(FieldSchema("v", DataType.FLOAT_VECTOR, dim=128))
    assert row_bytes(wide) == 16 + 8 + 512
    assert seal_rows_for(wide, d.seal_rows, d.seal_bytes) == (128 << 20) // 536 == 250_406
    glove = schema(FieldSchema("v", DataType.FLOAT_VECTOR, dim=50))
    assert seal_rows_for(glove, d.seal_rows, d.seal_bytes) > 400_000
    narrow = schema(FieldSchema("v", DataType.BINARY_VECTOR, dim=8))
    assert seal_rows_for(narrow, d.seal_rows, d.seal_bytes) == d.seal_rows
    mixed = schema(FieldSchema("v", DataType.FLOAT16_VECTOR, dim=64),
                   FieldSchema("t", DataType.VARCHAR, max_length=512), FieldSchema("j", DataType.JSON),
                   FieldSchema("b", DataType.BOOL))
    assert row_bytes(mixed) == 16 + 8 + 128 + 2 * VARIABLE_FIELD_BYTES + 1
    assert seal_rows_for(mixed, 10, 1) == 1  # never 0


def test_the_proxy_leaves_the_seal_policy_to_running_data_nodes(monkeypatch):
    meta = MemoryMetaStore()
    node = DataNode(MemoryLog(), meta, MemoryObjectStore(), IdAllocator(meta))
    monkeypatch.setattr(remote, "SEALERS_RECHECK", 0.0)
    cluster = ClusterDataNode(node, meta)
    try:
        assert not node.seals_itself()  # standalone: the proxy's writes seal
        assert not cluster.seals_itself()  # no data node process: the proxy persists and seals
        meta.put("session/datanode/dn0", b"{}")
        assert cluster.seals_itself()
        meta.delete("session/datanode/dn0")
        assert not cluster.seals_itself()
    finally:
        node.close()



@pytest.mark.parametrize("limits", [{"seal_rows": 1000}, {"seal_rows": 10**6, "seal_bytes": 1000 * 34}],
                         ids=["rows", "bytes"])
def test_seal_rows_is_a_setting_the_standalone_proxy_follows(tmp_path, limits):
    """``datanode.seal_rows`` (VECDB_DATANODE__SEAL_ROWS) and ``datanode.seal_bytes``: a standalone server
    seals and persists a channel once that many rows (or that many bytes of rows) are past its
    last seal, with no flush call."""
    from pymilvus import MilvusClient

    from tests.conftest import server_settings
    from vecdb.config import load_settings
    from vecdb.standalone import Standalone

    assert load_settings(env={"VECDB_DATANODE__SEAL_ROWS": "5000"}).datanode.seal_rows == 5000
    assert load_settings(env={"VECDB_DATANODE__SEAL_BYTES": "4096"}).datanode.seal_bytes == 4096
    # the quick-setup schema: id, a 2-d vector and the dynamic field's JSON, {} (its actual 2 bytes,
    # vecdb.datanode.seal.batch_bytes): 16 + 8 + 8 + 2 bytes a row
    settings = server_settings(tmp_path)
    for key, value in limits.items():
        setattr(settings.datanode, key, value)
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    try:
        client.create_collection("s", dimension=2, metric_type="L2")
        for start in range(0, 1500, 300):
            client.insert("s", [{"id": i, "vector": [float(i), 0.0]} for i in range(start, start + 300)])
        def persisted() -> int:
            return sum(json.loads(v)["num_rows"] for _, v in srv.meta.scan("seg/"))

        wait_until(lambda: persisted() >= 1000, 20, "the proxy's seal policy persisting the channel")
        assert persisted() <= 1500
    finally:
        client.close()
        srv.stop()


def test_rows_inserted_before_the_load_are_sealed_at_seal_rows_too(tmp_path):
    """A collection not loaded has no growing rows on the query node to count: the proxy counts what it
    wrote since each channel's last seal, so 2,700 rows inserted before any load are sealed once 1,000
    (``seal_rows``) are, not kept for one segment of everything (seen at 1M rows: one 1M-row HNSW graph)."""
    from pymilvus import DataType, MilvusClient

    from tests.conftest import server_settings
    from vecdb.standalone import Standalone

    settings = server_settings(tmp_path)
    settings.datanode.seal_rows = 1000
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    try:
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
        client.create_collection("unloaded", schema=schema)  # no index: not loaded
        for start in range(0, 2700, 300):
            client.insert("unloaded", [{"id": i, "vector": [float(i), 0.0]} for i in range(start, start + 300)])

        def segments() -> list[int]:
            return [json.loads(v)["num_rows"] for _, v in srv.meta.scan("seg/")]

        # sealed with no flush call (a seal runs in the background: the rows inserted meanwhile go with it)
        wait_until(lambda: sum(segments()) >= 1000, 20, "the proxy's seal policy persisting the channel")
        client.flush("unloaded")
        assert len(segments()) >= 2 and sum(segments()) == 2700
    finally:
        client.close()
        srv.stop()

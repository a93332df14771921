"""The seal policy counts the bytes actually written (vecdb.datanode.seal.batch_bytes): long strings
(TEXT, VARCHAR), JSON, arrays and sparse rows at their size, not a fixed 64 bytes a row, so a channel of
100 KB texts seals after far fewer rows than one of short texts; a schema of fixed-width fields only
counts what the schema says (``row_bytes``), as before. Both places the policy runs: the proxy's
(vecdb.coord.sealer, standalone) and the data node's (vecdb.datanode.flusher, a cluster)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import wait_until
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.catalog import Catalog
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
from vecdb.coord.flush import FlushManager
from vecdb.coord.sealer import Sealer, channel_bytes, row_sizes
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.datanode.flusher import ChannelFlusher
from vecdb.datanode.node import DataNode
from vecdb.datanode.seal import (
    ROW_OVERHEAD,
    batch_bytes,
    fixed_row_bytes,
    is_full,
    row_bytes,
    seal_rows_for,
    variable_row_bytes,
)
from vecdb.log_records import InsertRecord, SealRecord, decode, encode
from vecdb.proxy.writer import ShardWriter
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.sparse import column as sparse_column
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

SEAL_BYTES = 200_000


def _schema(*fields: FieldSchema) -> CollectionSchema:
    return CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                  FieldSchema("v", DataType.FLOAT_VECTOR, dim=2), *fields])


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _text_columns(first: int, n: int, length: int) -> dict[str, np.ndarray]:
    return {"id": np.arange(first, first + n, dtype=np.int64), "v": np.zeros((n, 2), np.float32),
            "t": _objects(["x" * length] * n)}


def test_fixed_width_schemas_count_as_the_schema_estimates():
    """Vector-only rows: nothing measured, the same bytes a row as before (and rows to a seal)."""
    for schema in (_schema(), _schema(FieldSchema("w", DataType.FLOAT_VECTOR, dim=128),
                                      FieldSchema("b", DataType.BINARY_VECTOR, dim=8),
                                      FieldSchema("h", DataType.FLOAT16_VECTOR, dim=64),
                                      FieldSchema("f", DataType.DOUBLE))):
        n = 1000
        cols = {f.name: (np.zeros((n, f.dim), np.float32) if f.dtype.is_vector else np.zeros(n)) for f in schema.fields}
        assert variable_row_bytes(schema, cols, n) is None
        assert fixed_row_bytes(schema) == row_bytes(schema)
        assert batch_bytes(schema, cols, n) == n * row_bytes(schema)
        # the rows that seal a channel: those that reach seal_bytes (seal_rows_for's, or one more)
        limit, per_row = seal_rows_for(schema, 10**6, 128 << 20), row_bytes(schema)
        assert not is_full(limit - 1, (limit - 1) * per_row, 10**6, 128 << 20)
        assert is_full(limit + 1, (limit + 1) * per_row, 10**6, 128 << 20)
    assert row_bytes(_schema()) == ROW_OVERHEAD + 8 + 8 == 32


def test_variable_length_values_count_at_their_size():
    schema = _schema(FieldSchema("t", DataType.TEXT), FieldSchema("s", DataType.VARCHAR, max_length=100, nullable=True),
                     FieldSchema("j", DataType.JSON), FieldSchema("a", DataType.ARRAY, element_type=DataType.INT64,
                                                                   max_capacity=10),
                     FieldSchema("sp", DataType.SPARSE_FLOAT_VECTOR))
    sparse = sparse_column([np.array([1, 2, 3], "<u4").tobytes() + np.ones(3, "<f4").tobytes(),
                            np.array([7], "<u4").tobytes() + np.ones(1, "<f4").tobytes()])
    cols = {"id": np.arange(2, dtype=np.int64), "v": np.zeros((2, 2), np.float32),
            "t": _objects(["a" * 100_000, "bb"]), "s": _objects([None, "hello"]),
            "j": _objects([{"k": 1}, None]), "a": _objects([np.arange(3), np.arange(0)]), "sp": sparse}
    sizes = variable_row_bytes(schema, cols, 2)
    assert sizes is not None
    # text, null varchar, {"k":1}, int64 array, 3 sparse pairs (interleaved or not: 8 bytes a non-zero)
    assert sizes.tolist() == [100_000 + 0 + 7 + 24 + 3 * 8, 2 + 5 + 4 + 0 + 1 * 8]
    assert batch_bytes(schema, cols, 2) == 2 * fixed_row_bytes(schema) + int(sizes.sum())
    # read back from the log record (what a data node measures), the same count
    record = decode(encode(InsertRecord(1, 2, 3, 2, cols)))
    assert isinstance(record, InsertRecord)
    assert batch_bytes(schema, record.columns, 2) == batch_bytes(schema, cols, 2)


def test_texts_count_their_utf8_bytes():
    schema = _schema(FieldSchema("t", DataType.TEXT), FieldSchema("s", DataType.VARCHAR, max_length=100, nullable=True))
    cols = {"id": np.arange(3, dtype=np.int64), "v": np.zeros((3, 2), np.float32),
            "t": _objects(["向量数据库" * 1000, "ascii", "é"]), "s": _objects(["ü", None, "x"])}
    sizes = variable_row_bytes(schema, cols, 3)
    assert sizes is not None and sizes.tolist() == [15_000 + 2, 5 + 0, 2 + 1]


def test_the_bytes_of_a_batch_split_over_channels_add_up():
    schema = _schema(FieldSchema("t", DataType.TEXT))
    cols = {"id": np.arange(4, dtype=np.int64), "v": np.zeros((4, 2), np.float32),
            "t": _objects(["a" * 10, "b" * 20, "c" * 30, "d" * 40])}
    split = {"ch0": [(1, np.array([0, 2]))], "ch1": [(1, np.array([1])), (2, np.array([3]))]}
    fixed = fixed_row_bytes(schema)
    sizes = row_sizes(schema, cols, 4)
    assert channel_bytes(sizes, split) == {"ch0": 2 * fixed + 40, "ch1": 2 * fixed + 60}
    assert channel_bytes(sizes, {"ch0": [(1, None)]}) == {"ch0": batch_bytes(schema, cols, 4)}
    assert row_sizes(schema, {"t": 5}, 4) is None  # type: ignore[dict-item]  # unmeasurable: None
    assert channel_bytes(None, split) is None


class _QueryNode:
    def growing_rows(self, channel: str) -> int:
        return 0

    def is_loaded(self, collection_id: int) -> bool:
        return False


def _info(schema: CollectionSchema) -> CollectionInfo:
    return CollectionInfo(id=100, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(101, "_default", 1)])


@pytest.mark.parametrize("length", [50_000, 10])
def test_the_proxy_seals_long_texts_after_fewer_rows(length):
    """Standalone's policy: 50 KB texts reach 200 KB in 4 rows; 10-byte ones stay one growing segment."""
    meta, wal = MemoryMetaStore(), MemoryLog()
    catalog = Catalog(meta)
    info = _info(_schema(FieldSchema("t", DataType.TEXT)))
    catalog.add_collection(info)
    (channel,) = info.channels
    writer = ShardWriter(wal, TimestampOracle(meta), lambda *_: None)
    datanode = DataNode(wal, meta, MemoryObjectStore(), IdAllocator(meta))
    datanode.seals_itself = lambda: False  # type: ignore[method-assign]
    sealer = Sealer(FlushManager(writer, None), writer, datanode, _QueryNode(), catalog,  # type: ignore[arg-type]
                    seal_rows=10**6, seal_bytes=SEAL_BYTES)
    try:
        for i in range(10):  # a row a write, as the proxy's Insert: the log, then the sealer told
            cols = _text_columns(i, 1, length)
            writer.write({channel: lambda ts, c=cols: [InsertRecord(info.id, 101, ts, 1, c)]})  # type: ignore[misc]
            sealer.wrote(info, {channel: 1}, channel_bytes(row_sizes(info.schema, cols, 1), {channel: [(101, None)]}))
            sealer._background.submit(lambda: None).result(10)  # that write's seal, if any, done
        persisted = [s["num_rows"] for s in sf.list_segments(meta, info.id, channel)]
        if length == 10:
            assert persisted == []  # 10 rows of 42 bytes
        else:
            assert persisted == [4, 4]  # 4 x (50,000 + 32) >= 200,000
    finally:
        sealer.close()
        datanode.close()
        catalog.close()


@pytest.mark.parametrize("length", [50_000, 10])
def test_the_data_node_seals_long_texts_after_fewer_rows(length):
    """A cluster's policy (the data node reads the records back): the same count as the proxy's."""
    meta, wal = MemoryMetaStore(), MemoryLog()
    catalog = Catalog(meta)
    info = _info(_schema(FieldSchema("t", DataType.TEXT)))
    catalog.add_collection(info)
    (channel,) = info.channels
    meta.put(f"{DN_ASSIGN_PREFIX}{info.id}", json.dumps({channel: "dn0"}).encode())
    writer = ShardWriter(wal, TimestampOracle(meta), lambda *_: None)

    seals = []

    def seal(cid: int, ch: str) -> None:
        seals.append(ch)
        writer.write({ch: lambda ts: [SealRecord(cid, ts)]})

    node = DataNode(wal, meta, MemoryObjectStore(), IdAllocator(meta))
    flusher = ChannelFlusher(node, wal, meta, "dn0", seal=seal, seal_rows=10**6, seal_bytes=SEAL_BYTES)

    def persisted() -> list[int]:
        return [s["num_rows"] for s in sf.list_segments(meta, info.id, channel)]

    def insert(first: int, n: int) -> None:
        for i in range(first, first + n):
            cols = _text_columns(i, 1, length)
            writer.write({channel: lambda ts, c=cols: [InsertRecord(info.id, 101, ts, 1, c)]})  # type: ignore[misc]

    try:
        if length == 10:
            insert(0, 10)
            writer.write({channel: lambda ts: [SealRecord(info.id, ts)]})  # a flush: everything in one
            wait_until(lambda: persisted() == [10], 10, "the flush's persist")
            assert seals == []
        else:
            insert(0, 4)  # 4 x (50,000 + 32) >= 200,000: sealed after the 4th row
            wait_until(lambda: persisted() == [4], 10, "the seal policy's persist")
            insert(4, 4)
            wait_until(lambda: persisted() == [4, 4], 10, "the seal policy's second persist")
            assert seals == [channel, channel]
    finally:
        flusher.close()
        node.close()
        catalog.close()

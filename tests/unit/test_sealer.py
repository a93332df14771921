"""The proxy's flush and seal policy (vecdb.coord.sealer) on the memory backends: a real writer, flush
manager and data node; the query node is a stand-in that counts growing rows (or fails to answer,
a fault the real one only shows across a network)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import wait_until
from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.coord.catalog import Catalog
from vecdb.coord.flush import FlushManager
from vecdb.coord.sealer import Sealer
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.datanode.node import DataNode
from vecdb.log_records import InsertRecord
from vecdb.proxy.writer import ShardWriter
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

SEAL_ROWS = 100


class _QueryNode:
    """Holds no collection (not loaded): no growing rows; ``down`` makes it fail to answer."""

    down = False

    def growing_rows(self, channel: str) -> int:
        if self.down:
            raise ConnectionError("query node not reachable (test)")
        return 0

    def is_loaded(self, collection_id: int) -> bool:
        return False


class _Setup:
    def __init__(self, seals_itself: bool = False):
        self.meta, self.wal = MemoryMetaStore(), MemoryLog()
        self.catalog = Catalog(self.meta)
        schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                        FieldSchema("v", DataType.FLOAT_VECTOR, dim=2)])
        self.info = CollectionInfo(id=100, db="default", name="c", schema=schema, shards_num=1,
                                   consistency_level=0, created_ts=1, partitions=[PartitionInfo(101, "_default", 1)])
        self.catalog.add_collection(self.info)
        (self.channel,) = self.info.channels
        self.writer = ShardWriter(self.wal, TimestampOracle(self.meta), lambda *_: None)
        self.datanode = DataNode(self.wal, self.meta, MemoryObjectStore(), IdAllocator(self.meta))
        self.datanode.seals_itself = lambda: seals_itself  # type: ignore[method-assign]
        self.querynode = _QueryNode()
        self.sealer = Sealer(FlushManager(self.writer, None), self.writer, self.datanode, self.querynode,  # type: ignore[arg-type]
                             self.catalog, seal_rows=SEAL_ROWS, seal_bytes=1 << 30)
        self.next_id = 0

    def insert(self, n: int) -> None:
        """As the proxy's insert does: the rows into the log, then the sealer told."""
        cols = {"id": np.arange(self.next_id, self.next_id + n, dtype=np.int64), "v": np.zeros((n, 2), np.float32)}
        self.next_id += n
        self.writer.write({self.channel: lambda ts: [InsertRecord(self.info.id, 101, ts, n, cols)]})
        self.sealer.wrote(self.info, {self.channel: n})

    def settled(self) -> None:
        """Every seal the writes so far started has run (the sealer's one background thread runs them in turn)."""
        self.sealer._background.submit(lambda: None).result(10)

    def persisted(self) -> list[int]:
        return [s["num_rows"] for s in sf.list_segments(self.meta, self.info.id, self.channel)]

    def close(self) -> None:
        self.sealer.close()
        self.datanode.close()
        self.catalog.close()


@pytest.fixture
def setup():
    s = _Setup()
    yield s
    s.close()


def test_rows_past_seal_rows_are_sealed_and_persisted_without_a_flush(setup):
    setup.insert(60)
    setup.settled()
    assert setup.persisted() == [] and setup.sealer.unsealed.get(setup.channel) == 60
    setup.insert(60)  # 120 >= 100
    wait_until(lambda: setup.persisted() == [120], 10, "the automatic seal")
    assert setup.sealer.unsealed.get(setup.channel) == 0  # the count starts again at the seal
    setup.insert(30)
    seg_ids, ts = setup.sealer.flush(setup.info)  # a client's flush persists the rest, at once
    assert setup.persisted() == [120, 30] and len(seg_ids) == 1 and ts > 0


def test_a_seal_check_that_fails_never_fails_the_write_and_the_next_write_seals(setup):
    setup.querynode.down = True
    setup.insert(150)  # past the limit, but the check cannot ask the query node: no seal, no error
    setup.settled()
    assert setup.persisted() == []
    setup.querynode.down = False
    setup.insert(1)  # the rows counted before are still counted: 151 >= 100
    wait_until(lambda: setup.persisted() == [151], 10, "the seal at the next write")


def test_nothing_is_sealed_here_while_data_nodes_seal_their_channels():
    s = _Setup(seals_itself=True)
    try:
        s.insert(250)
        s.settled()
        assert s.persisted() == []
    finally:
        s.close()


def test_a_seal_of_a_dropped_collection_is_skipped(setup):
    setup.catalog.drop_collection(setup.info)
    setup.insert(150)
    setup.settled()
    assert setup.persisted() == []


def test_a_seal_of_a_collection_dropped_and_created_again_under_its_name_is_skipped(setup, caplog):
    """Checked by id: the name now belongs to another collection (other channels), so the dropped one's
    channels are not flushed (in a cluster its log would refuse the seal record: not an error either)."""
    setup.catalog.drop_collection(setup.info)
    again = CollectionInfo(id=200, db="default", name="c", schema=setup.info.schema, shards_num=1,
                           consistency_level=0, created_ts=2, partitions=[PartitionInfo(201, "_default", 2)])
    setup.catalog.add_collection(again)
    setup.insert(150)  # (written through the old info, as by a proxy that had not seen the drop yet)
    setup.settled()
    assert setup.persisted() == [] and sf.list_segments(setup.meta, again.id, again.channels[0]) == []
    assert "automatic seal failed" not in caplog.text

"""Sealed-segment indexes are saved beside the segment files and reused after a restart,
memory-mapped when the collection sets ``mmap.enabled``."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.conftest import free_port, start_standalone

DIM = 16


def _sealed_segments(node, name):
    coll = next(c for c in node.querynode.collections.values() if c.info.name == name)
    return [s for shard in coll.shards for s in shard.segments.values() if s.sealed]


@pytest.mark.parametrize("mmap", [False, True], ids=["in-memory", "mmap"])
def test_index_survives_restart_without_rebuild(tmp_path, mmap):
    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 32})
        props = {"mmap.enabled": "true"} if mmap else {}
        client.create_collection("persist", schema=schema, index_params=idx, properties=props)
        vecs = np.random.default_rng(3).random((6000, DIM), dtype=np.float32)
        client.insert("persist", [{"id": i, "vec": vecs[i]} for i in range(6000)])
        client.flush("persist")
        deadline = time.time() + 30
        while not all("vec" in s.indexes for s in _sealed_segments(node, "persist")) and time.time() < deadline:
            time.sleep(0.05)
        before = client.search("persist", data=[vecs[5]], limit=5, search_params={"params": {"nprobe": 32}})
        client.close()
        node.stop()

        node = start_standalone(tmp_path, port)
        segs = _sealed_segments(node, "persist")
        assert segs and all("vec" in s.indexes for s in segs), "index was not loaded from its file"
        if mmap:
            assert all(not s.column("vec").flags.owndata and isinstance(s.column("vec").base, np.memmap)
                       or isinstance(s.column("vec"), np.memmap) for s in segs)
        client = MilvusClient(f"http://127.0.0.1:{port}")
        after = client.search("persist", data=[vecs[5]], limit=5, search_params={"params": {"nprobe": 32}})
        assert [h["id"] for h in after[0]] == [h["id"] for h in before[0]]
        assert after[0][0]["id"] == 5 and after[0][0]["distance"] < 1e-6
        client.close()
    finally:
        node.stop()


@pytest.mark.parametrize("index_type", ["FLAT", "HNSW"])
def test_describe_index_reports_every_row_indexed_once_built(client, name, index_type):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type=index_type, metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = np.random.default_rng(4).random((3000, DIM), dtype=np.float32)
    client.insert(name, [{"id": i, "vec": vecs[i]} for i in range(3000)])
    client.flush(name)
    deadline = time.time() + 30
    while time.time() < deadline:
        info = client.describe_index(name, "vec")
        if info["indexed_rows"] == info["total_rows"] == 3000 and info["pending_index_rows"] == 0:
            break
        time.sleep(0.05)
    assert (info["indexed_rows"], info["total_rows"], info["pending_index_rows"]) == (3000, 3000, 0)
    assert info["state"] == "Finished"

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


def _vector_collection(client, name, rows, seed, index=None, properties=None):
    """Collection ``name`` (id INT64 pk, vec FLOAT_VECTOR[DIM]) with ``rows`` random vectors,
    flushed; ``index`` = (index type, metric, params) creates (and loads) it with that index."""
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = None
    if index is not None:
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type=index[0], metric_type=index[1], params=index[2])
    client.create_collection(name, schema=schema, index_params=idx, properties=properties or {})
    vecs = np.random.default_rng(seed).random((rows, DIM), dtype=np.float32)
    client.insert(name, [{"id": i, "vec": vecs[i]} for i in range(rows)])
    client.flush(name)
    return vecs


def _wait_segment_indexes(node, name, timeout=30.0):
    deadline = time.time() + timeout
    while not all("vec" in s.indexes for s in _sealed_segments(node, name)) and time.time() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("mmap", [False, True], ids=["in-memory", "mmap"])
def test_index_survives_restart_without_rebuild(tmp_path, mmap):
    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        vecs = _vector_collection(client, "persist", 6000, 3, ("IVF_FLAT", "L2", {"nlist": 32}),
                                  {"mmap.enabled": "true"} if mmap else {})
        _wait_segment_indexes(node, "persist")
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


@pytest.mark.parametrize("index_type,metric,shared", [("FLAT", "L2", True), ("HNSW", "IP", True),
                                                      ("HNSW", "COSINE", False), ("IVF_FLAT", "L2", False)])
def test_sealed_vectors_are_kept_once_when_the_index_holds_them(tmp_path, index_type, metric, shared):
    """FLAT / HNSW (L2, IP) keep the raw vectors: the segment serves its column from the index's
    copy instead of keeping its own; searches and vector output are unchanged."""
    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        vecs = _vector_collection(client, "shared", 4000, 5,
                                  (index_type, metric, {"nlist": 16} if "IVF" in index_type else {}))
        _wait_segment_indexes(node, "shared")
        segs = _sealed_segments(node, "shared")
        assert segs and all("vec" in s.indexes for s in segs)
        for s in segs:
            stored = s.indexes["vec"].raw_vectors()
            if shared:
                assert np.shares_memory(s.column("vec"), stored)
            else:
                assert stored is None and s.column("vec").flags.writeable
        rows = client.query("shared", filter="id in [0, 1234, 3999]", output_fields=["vec"])
        for r in rows:
            np.testing.assert_array_equal(np.asarray(r["vec"], np.float32), vecs[r["id"]])
        hits = client.search("shared", data=[vecs[1234]], limit=3, search_params={"params": {"ef": 64, "nprobe": 16}})
        q = vecs[1234]
        score = {"L2": -((vecs - q) ** 2).sum(1), "IP": vecs @ q,
                 "COSINE": vecs @ q / np.linalg.norm(vecs, axis=1)}[metric]
        assert hits[0][0]["id"] == int(np.argmax(score))
    finally:
        node.stop()


def test_unloaded_collection_is_indexed_before_load_and_load_reuses_the_files(tmp_path):
    """Like Milvus's index nodes: create_index on flushed, unloaded data builds index files, and
    DescribeIndex reports Finished only once they exist; the load then reads them instead of building."""
    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        vecs = _vector_collection(client, "late", 5000, 6)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
        client.create_index("late", idx)  # pymilvus waits for state Finished
        info = client.describe_index("late", "vec")
        assert (info["state"], info["indexed_rows"], info["total_rows"], info["pending_index_rows"]) == (
            "Finished", 5000, 5000, 0)
        files = [p for p in (tmp_path / "objects").rglob("index-*.bin")]
        assert len(files) == 1, files
        built = files[0].stat().st_mtime_ns
        client.load_collection("late")
        segs = _sealed_segments(node, "late")
        assert segs and all("vec" in s.indexes for s in segs), "load did not take the built index"
        assert all(np.shares_memory(s.column("vec"), s.indexes["vec"].raw_vectors()) for s in segs)
        assert files[0].stat().st_mtime_ns == built, "the index was built again at load"
        hits = client.search("late", data=[vecs[77]], limit=1, search_params={"params": {"ef": 32}})
        assert hits[0][0]["id"] == 77
        row = client.query("late", filter="id == 4999", output_fields=["vec"])[0]
        np.testing.assert_array_equal(np.asarray(row["vec"], np.float32), vecs[4999])
    finally:
        node.stop()

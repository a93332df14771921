"""Indexes over a nullable vector field hold its valid rows only (vecdb.index.nullable), through
pymilvus against an in-process standalone server: most vectors null, HNSW and IVF_FLAT with COSINE
and L2; the data node's build of a flushed segment (not loaded), the growing (interim) index, the
query node's build at seal, and the index files read back after a restart. Every search keeps its
recall against exact search over the valid rows, and no null row ever comes back."""

from __future__ import annotations

import numpy as np
from pymilvus import DataType, MilvusClient

from tests.conftest import free_port, start_standalone, wait_until
from vecdb.index.nullable import ValidRowsIndex
from vecdb.schema import valid_key

DIM = 16
NULL_SHARE = 0.8
FIRST = 3000  # flushed before the load: built by the indexer (>= MIN_ROWS_FOR_INDEX)
SECOND = 6000  # growing after the load: past GROWING_INDEX_BATCH, so it gets an interim index
CASES = [("HNSW", "COSINE"), ("HNSW", "L2"), ("IVF_FLAT", "COSINE"), ("IVF_FLAT", "L2")]
SEARCH = {"HNSW": {"ef": 64}, "IVF_FLAT": {"nprobe": 16}}


def _data(n: int):
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((40, DIM)).astype(np.float32)
    vecs = (centers[rng.integers(0, 40, n)] + 0.3 * rng.standard_normal((n, DIM))).astype(np.float32)
    valid = rng.random(n) >= NULL_SHARE
    queries = vecs[rng.integers(0, n, 30)] + 0.1 * rng.standard_normal((30, DIM)).astype(np.float32)
    return vecs, valid, queries


def _name(itype: str, metric: str) -> str:
    return f"nullidx_{itype.lower()}_{metric.lower()}"


def _create(client, itype: str, metric: str) -> None:
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("nv", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    idx = client.prepare_index_params()
    params = {"M": 16, "efConstruction": 100} if itype == "HNSW" else {"nlist": 16}
    idx.add_index(field_name="nv", index_type=itype, metric_type=metric, params=params)
    client.create_collection(_name(itype, metric), schema=schema, index_params=idx)
    client.release_collection(_name(itype, metric))  # the first rows are flushed unloaded


def _insert(client, name: str, vecs, valid, lo: int, hi: int) -> None:
    for s in range(lo, hi, 2000):
        client.insert(name, [{"id": i, "nv": vecs[i].tolist() if valid[i] else None}
                             for i in range(s, min(hi, s + 2000))])


def _exact(vecs, valid, queries, n: int, metric: str, k: int) -> list[set[int]]:
    ids = np.flatnonzero(valid[:n])
    x, q = vecs[ids], queries
    if metric == "COSINE":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        order = np.argsort(-(q @ x.T), axis=1)
    else:
        order = np.argsort(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1), axis=1)
    return [set(ids[row[:k]].tolist()) for row in order]


def _check(client, itype: str, metric: str, vecs, valid, queries, n: int) -> float:
    name, k = _name(itype, metric), 10
    res = client.search(name, data=queries.tolist(), anns_field="nv", limit=k, consistency_level="Strong",
                        search_params={"metric_type": metric, "params": SEARCH[itype]})
    truth = _exact(vecs, valid, queries, n, metric, k)
    found = 0
    for hits, want in zip(res, truth):
        ids = [h["id"] for h in hits]
        assert len(ids) == k
        assert all(valid[i] and i < n for i in ids), "a null row came back"
        assert all(np.isfinite(h["distance"]) for h in hits)
        found += len(set(ids) & want)
    recall = found / (k * len(queries))
    assert recall >= 0.9, f"{name}: recall {recall:.3f} over {n} rows"
    return recall


def _segments(node, name: str):
    qn = node.querynode
    cid = next(c.info.id for c in qn.collections.values() if c.info.name == name)
    return [seg for shard in qn.collections[cid].shards for seg in shard.segments.values()]


def _sealed_indexed(node, name: str) -> bool:
    sealed = [s for s in _segments(node, name) if s.sealed]
    return bool(sealed) and all("nv" in s.indexes for s in sealed)


def _assert_valid_rows_indexes(node, name: str) -> None:
    """Every index of the field holds the valid rows only, mapped to their segment offsets."""
    for seg in _segments(node, name):
        for index in ([seg.indexes["nv"]] if "nv" in seg.indexes else []) + (
                [seg.growing_indexes["nv"]] if "nv" in seg.growing_indexes else []):
            assert isinstance(index, ValidRowsIndex), f"{name}: {index!r}"
            seg_valid = np.asarray(seg.column(valid_key("nv"), index.ntotal), bool)
            assert np.array_equal(index.rows, np.flatnonzero(seg_valid))
            assert index.inner.ntotal == index.nvalid < index.ntotal


def test_null_vectors_stay_out_of_hnsw_and_ivf(tmp_path):
    vecs, valid, queries = _data(FIRST + SECOND)
    port = free_port()
    node = start_standalone(tmp_path, port)
    client = MilvusClient(uri=f"http://127.0.0.1:{port}")
    try:
        for itype, metric in CASES:
            _create(client, itype, metric)
            _insert(client, _name(itype, metric), vecs, valid, 0, FIRST)
            client.flush(_name(itype, metric))
        for itype, metric in CASES:  # flushed unloaded: the indexer builds the files
            name = _name(itype, metric)
            wait_until(lambda n=name: (d := client.describe_index(n, "nv"))["indexed_rows"] == d["total_rows"] > 0,
                       60, f"{name}: index build")
            client.load_collection(name)
            assert _sealed_indexed(node, name)
            _assert_valid_rows_indexes(node, name)
            _check(client, itype, metric, vecs, valid, queries, FIRST)
        for itype, metric in CASES:  # growing rows: an interim index over the valid ones
            name = _name(itype, metric)
            _insert(client, name, vecs, valid, FIRST, FIRST + SECOND)
            wait_until(lambda n=name: any(
                "nv" in s.growing_indexes and s.growing_indexes["nv"].ntotal >= SECOND - 4096
                for s in _segments(node, n)), 60, f"{name}: growing index")
            _assert_valid_rows_indexes(node, name)
            _check(client, itype, metric, vecs, valid, queries, FIRST + SECOND)
        for itype, metric in CASES:  # sealed while loaded: the query node builds (HNSW adopts the interim)
            name = _name(itype, metric)
            client.flush(name)
            wait_until(lambda n=name: _sealed_indexed(node, n) and not any(not s.sealed for s in _segments(node, n)),
                       60, f"{name}: sealed index")
            _assert_valid_rows_indexes(node, name)
            _check(client, itype, metric, vecs, valid, queries, FIRST + SECOND)
    finally:
        client.close()
        node.stop()

    node = start_standalone(tmp_path, port)  # the index files are read back
    client = MilvusClient(uri=f"http://127.0.0.1:{port}")
    try:
        for itype, metric in CASES:
            name = _name(itype, metric)
            client.load_collection(name)
            wait_until(lambda n=name: _sealed_indexed(node, n), 60, f"{name}: index loaded")
            _assert_valid_rows_indexes(node, name)
            _check(client, itype, metric, vecs, valid, queries, FIRST + SECOND)
    finally:
        client.close()
        node.stop()

"""Growing index: unsealed data gets an interim index in the background; search stays right.

Rows not yet covered by the interim index are searched exactly, so a row is
findable the moment its insert is acknowledged.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType

from vecdb.index import brute_force_search

DIM = 16
N = 20_000


def _in_process(server) -> bool:
    """Whether the server's query node is an object here (standalone) rather than a process of a
    ``LocalCluster``: the interim index is the node's internal state, no API reports it."""
    return hasattr(server, "querynode")


def _interim_rows(server, name) -> int:
    qn = server.querynode
    info = next(c.info for c in qn.collections.values() if c.info.name == name)
    return sum(seg.growing_indexes["vec"].ntotal
               for shard in qn.collections[info.id].shards for seg in shard.segments.values()
               if "vec" in seg.growing_indexes)


def _hnsw_collection(client, name, params: dict) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", params=params)
    client.create_collection(name, schema=schema, index_params=idx)


def test_growing_data_is_indexed_in_background_and_search_stays_exact_on_the_tail(server, client, name):
    _hnsw_collection(client, name, {"M": 16, "efConstruction": 100})
    rng = np.random.default_rng(1)
    vecs = rng.random((N, DIM), dtype=np.float32)
    for s in range(0, N, 5000):
        client.insert(name, [{"id": i, "vec": vecs[i]} for i in range(s, s + 5000)])
    if _in_process(server):  # on the cluster only what the client sees is checked
        deadline = time.time() + 30
        while _interim_rows(server, name) < N - 4096 and time.time() < deadline:
            time.sleep(0.1)
        assert _interim_rows(server, name) >= N - 4096, "the interim index did not catch up"

    # A fresh row, certainly outside the interim index, is found at distance 0.
    probe = rng.random(DIM, dtype=np.float32)
    client.insert(name, [{"id": N, "vec": probe}])
    hit = client.search(name, data=[probe], limit=1, search_params={"params": {"ef": 64}})[0][0]
    assert hit["id"] == N and hit["distance"] < 1e-6

    # Deleted rows never come back, interim index or not.
    client.delete(name, ids=list(range(0, 1000)))
    queries = rng.random((20, DIM), dtype=np.float32)
    res = client.search(name, data=queries.tolist(), limit=10, search_params={"params": {"ef": 64}})
    alive = np.arange(1000, N)
    _, truth = brute_force_search(vecs[alive], queries, 10, "L2")
    recall = np.mean([len({h["id"] for h in r} & set(alive[truth[i]].tolist())) / 10 for i, r in enumerate(res)])
    assert all(h["id"] >= 1000 for r in res for h in r)
    assert recall >= 0.9, recall


def test_hnsw_interim_index_is_adopted_at_seal_not_rebuilt(server, client, name):
    if not _in_process(server):
        pytest.skip("looks inside the query node (its interim index object becomes the sealed segment's "
                    "index): a cluster's nodes are processes; the standalone variants cover it")
    _hnsw_collection(client, name, {"M": 8, "efConstruction": 64})
    vecs = np.random.default_rng(2).random((12_000, DIM), dtype=np.float32)
    for s in range(0, 12_000, 4000):
        client.insert(name, [{"id": i, "vec": vecs[i]} for i in range(s, s + 4000)])
    deadline = time.time() + 30
    while _interim_rows(server, name) < 8000 and time.time() < deadline:
        time.sleep(0.05)
    coll = next(c for c in server.querynode.collections.values() if c.info.name == name)
    seg = next(s for shard in coll.shards for s in shard.segments.values())
    interim = seg.growing_indexes["vec"]
    client.flush(name)
    deadline = time.time() + 30
    while "vec" not in seg.indexes and time.time() < deadline:
        time.sleep(0.05)
    assert seg.indexes["vec"] is interim and interim.ntotal == 12_000
    assert "vec" not in seg.growing_indexes
    hit = client.search(name, data=[vecs[11_999]], limit=1)[0][0]
    assert hit["id"] == 11_999 and hit["distance"] < 1e-6

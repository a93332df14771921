"""Answers shaped as Milvus 2.4+ gives them: describe_index's build parameters as top-level keys,
num_partitions counting the _default partition, HNSW range search with a limit above ef."""

from __future__ import annotations

import numpy as np

from tests.e2e._helpers import distances, float_schema, float_vectors

DIM = 8


def test_describe_index_lifts_build_params_to_top_level_keys(client, name):
    client.create_collection(name, schema=float_schema(DIM))
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 200})
    client.create_index(name, idx, sync=False)
    d = client.describe_index(name, "vec")
    assert (d["index_type"], d["metric_type"], d["M"], d["efConstruction"]) == ("HNSW", "L2", "16", "200")
    assert (d["field_name"], d["index_name"]) == ("vec", "vec")
    assert "params" not in d
    assert {"total_rows", "indexed_rows", "pending_index_rows", "state"} <= d.keys()


def test_new_collection_counts_its_default_partition(client, name):
    client.create_collection(name, schema=float_schema(DIM))
    assert client.describe_collection(name)["num_partitions"] == 1
    client.create_partition(name, "p1")
    assert client.describe_collection(name)["num_partitions"] == 2


def test_hnsw_range_search_with_limit_above_ef(client, name):
    client.create_collection(name, schema=float_schema(DIM))
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 200})
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    data = float_vectors(500, DIM, seed=3)
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(500)])
    client.flush(name)
    q = float_vectors(1, DIM, seed=4)
    dist = distances(data, q, "L2")[0]
    radius, low = float(np.quantile(dist, 0.5)), float(np.quantile(dist, 0.1))
    hits = client.search(name, q, limit=100, search_params={
        "metric_type": "L2", "params": {"ef": 64, "radius": radius, "range_filter": low}})[0]
    want = np.flatnonzero((dist >= low) & (dist < radius))
    assert len(hits) == min(100, len(want)) == 100
    got = np.array([h["distance"] for h in hits])
    assert np.all(np.diff(got) >= 0) and got.min() >= low - 1e-4 and got.max() < radius + 1e-4
    # the best hundred inside the range (HNSW is approximate: most of them)
    best = set(want[np.argsort(dist[want])[:100]].tolist())
    assert len(best & {h["id"] for h in hits}) >= 90

"""Index lifecycle as pymilvus users drive it: what describe_index /
index_building_progress count, loaded or not.

Milvus 2.3.5, run: an index's ``total_rows`` / ``indexed_rows`` count the flushed segments only
(datacoord's view); rows still growing (inserted, not flushed) are in neither, whether the collection
is loaded or not. vecdb counted a loaded collection's growing rows as indexed (the query node's view),
so the same collection described 3,000 rows loaded and 0 released.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import wait_until
from tests.e2e._helpers import assert_search_matches, float_schema

DIM = 16
ROWS = 3000
GROWING = 500


def _rows(client: MilvusClient, name: str) -> tuple[int, int, int, str]:
    d = client.describe_index(name, "vec")
    return d["indexed_rows"], d["total_rows"], d["pending_index_rows"], d["state"]


@pytest.mark.parametrize("loaded", [True, False], ids=["loaded", "released"])
def test_index_rows_count_flushed_segments_only_loaded_or_not(uri, loaded):
    client = MilvusClient(uri=uri)
    name = f"idxhunt_rows_{'loaded' if loaded else 'released'}"
    if client.has_collection(name):
        client.drop_collection(name)
    client.create_collection(name, schema=float_schema(DIM))
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 100})
    client.create_index(name, idx, sync=False)
    if loaded:
        client.load_collection(name)
    data = np.random.default_rng(7).standard_normal((ROWS + GROWING, DIM)).astype(np.float32)
    ids = np.arange(ROWS + GROWING)
    try:
        client.insert(name, [{"id": i, "vec": data[i]} for i in range(ROWS)])
        # growing rows only: nothing flushed, nothing to count (Milvus: 0 / 0, Finished)
        assert _rows(client, name) == (0, 0, 0, "Finished")
        client.flush(name)
        wait_until(lambda: _rows(client, name) == (ROWS, ROWS, 0, "Finished"), 60,
                   f"index of the flushed rows: {_rows(client, name)}")
        client.insert(name, [{"id": i, "vec": data[i]} for i in range(ROWS, ROWS + GROWING)])
        # rows growing on top of the flushed ones are not counted either
        assert _rows(client, name) == (ROWS, ROWS, 0, "Finished")
        if not loaded:
            client.load_collection(name)
            assert _rows(client, name) == (ROWS, ROWS, 0, "Finished")
        # ...and a Strong search still sees every acknowledged row, growing ones included
        queries = data[ROWS:ROWS + 5] + 0.01
        hits = client.search(name, queries, limit=10, search_params={"params": {"ef": 200}},
                             consistency_level="Strong")
        assert_search_matches(hits, ids, data, queries, "L2", 10)
    finally:
        client.drop_collection(name)
        client.close()

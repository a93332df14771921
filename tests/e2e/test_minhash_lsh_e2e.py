"""MINHASH_LSH with MHJACCARD (Milvus 2.6) through pymilvus on every deployment: MinHash signatures
computed here with NumPy (64-bit hash values, as datasketch's), stored in a BINARY_VECTOR field,
indexed, searched over sealed and growing rows; near-duplicates come back with the share of equal
hash values as their score, larger first."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

HASHES = 64  # 64 uint64 hash values: dim 4096 bits
DIM = HASHES * 64
SEALED, GROWING = 1100, 40  # a sealed segment big enough to get its index, then growing rows
PRIME = (1 << 61) - 1
INDEX = {"mh_element_bit_width": 64, "mh_lsh_band": 16, "with_raw_data": True}


def signatures(sets: list[set[int]]) -> np.ndarray:
    """(n, DIM // 8) uint8: each set's MinHash (universal hashes mod 2^61-1) as packed uint64s."""
    rng = np.random.default_rng(1)
    a = rng.integers(1, PRIME, HASHES, dtype=np.uint64)
    b = rng.integers(0, PRIME, HASHES, dtype=np.uint64)
    out = np.empty((len(sets), HASHES), np.uint64)
    for j, s in enumerate(sets):
        x = np.fromiter(sorted(s), np.uint64)
        out[j] = ((x[:, None] * a[None, :] + b[None, :]) % np.uint64(PRIME)).min(axis=0)
    return out.view(np.uint8).reshape(len(sets), -1)


def share_equal(x: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(x.view(np.uint64) == q.view(np.uint64)))


def near_duplicate(s: set[int], rng) -> set[int]:
    """``s`` with a tenth of its elements replaced: Jaccard about 0.82."""
    keep = sorted(s)[: len(s) * 9 // 10]
    return set(keep) | set(rng.integers(1 << 30, 1 << 31, len(s) - len(keep)).tolist())


@pytest.fixture
def dedup(client, name):
    """Collection ``name`` (id, sig BINARY_VECTOR[DIM], tag) with SEALED flushed rows and GROWING
    growing ones, indexed MINHASH_LSH and loaded; returns the rows' sets and signatures."""
    rng = np.random.default_rng(5)
    sets = [set(rng.integers(0, 1 << 30, 150).tolist()) for _ in range(SEALED + GROWING)]
    sigs = signatures(sets)
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("sig", DataType.BINARY_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("sig", index_type="MINHASH_LSH", metric_type="MHJACCARD", params=INDEX)
    client.create_collection(name, schema=schema, index_params=idx)
    rows = [{"id": i, "sig": sigs[i].tobytes(), "tag": i % 2} for i in range(len(sets))]
    client.insert(name, rows[:SEALED])
    client.flush(name)
    client.insert(name, rows[SEALED:])
    deadline = time.time() + 60
    while time.time() < deadline:
        info = client.describe_index(name, "sig")
        if info["pending_index_rows"] == 0 and info["state"] == "Finished":
            break
        time.sleep(0.1)
    assert info["index_type"] == "MINHASH_LSH" and info["metric_type"] == "MHJACCARD"
    return sets, sigs


def test_near_duplicates_found_with_their_estimated_jaccard(client, name, dedup):
    sets, sigs = dedup
    rng = np.random.default_rng(9)
    sources = [3, 500, SEALED + 7]  # sealed and growing rows
    queries = signatures([near_duplicate(sets[s], rng) for s in sources])
    res = client.search(name, [q.tobytes() for q in queries], anns_field="sig", limit=3,
                        search_params={"metric_type": "MHJACCARD",
                                       "params": {"mh_search_with_jaccard": True, "refine_k": 6}})
    for q, src in enumerate(sources):
        hits = res[q]
        assert hits[0]["id"] == src
        assert hits[0]["distance"] == pytest.approx(share_equal(sigs[src], queries[q]), abs=1e-6)
        assert hits[0]["distance"] > 0.6
        scores = [h["distance"] for h in hits]
        assert scores == sorted(scores, reverse=True)  # larger is closer
    # an exact copy scores 1.0
    same = client.search(name, [sigs[42].tobytes()], anns_field="sig", limit=1,
                         search_params={"metric_type": "MHJACCARD", "params": {"mh_search_with_jaccard": True}})
    assert same[0][0]["id"] == 42 and same[0][0]["distance"] == pytest.approx(1.0)


def test_lsh_only_hits_and_filters(client, name, dedup):
    sets, sigs = dedup
    rng = np.random.default_rng(10)
    query = signatures([near_duplicate(sets[8], rng)])[0].tobytes()
    res = client.search(name, [query], anns_field="sig", limit=2, search_params={"metric_type": "MHJACCARD"})
    assert res[0][0]["id"] == 8 and res[0][0]["distance"] == pytest.approx(1.0)  # knowhere's "hit" score
    res = client.search(name, [query], anns_field="sig", limit=2, filter="id != 8", output_fields=["tag"],
                        search_params={"metric_type": "MHJACCARD", "params": {"mh_search_with_jaccard": True}})
    assert all(h["id"] != 8 for h in res[0])


def test_refused_metric_range_and_layout(client, name, dedup):
    sets, sigs = dedup
    q = [sigs[0].tobytes()]
    with pytest.raises(MilvusException, match="metric type not match"):
        client.search(name, q, anns_field="sig", limit=1, search_params={"metric_type": "HAMMING"})
    with pytest.raises(MilvusException, match="range search is not supported"):
        client.search(name, q, anns_field="sig", limit=1,
                      search_params={"metric_type": "MHJACCARD", "params": {"radius": 0.5}})
    with pytest.raises(MilvusException, match="search iterator is not supported for metric type MHJACCARD"):
        client.search_iterator(name, q, anns_field="sig", batch_size=5, limit=20,
                               search_params={"metric_type": "MHJACCARD"}).next()
    client.release_collection(name)
    client.drop_index(name, "sig")
    idx = client.prepare_index_params()
    idx.add_index("sig", index_type="MINHASH_LSH", metric_type="MHJACCARD",
                  params={"mh_element_bit_width": 64, "mh_lsh_band": 5})
    with pytest.raises(MilvusException, match="divisible by mh_lsh_band") as e:
        client.create_index(name, idx)
    assert e.value.code == 1100

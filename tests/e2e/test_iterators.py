"""Iterators past Milvus's 16,384 window: every row exactly once, on a fixed snapshot.

Rows inserted while an iterator runs must not appear in it; ties are broken by
primary key so paging never loses or repeats a row.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

N = 50_000
DIM = 8


@pytest.fixture(scope="module")
def big(uri):
    client = MilvusClient(uri=uri)
    name = "iter_big"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("grp", DataType.INT64)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    rng = np.random.default_rng(0)
    # Few distinct vectors: many exact distance ties, which paging must break by primary key.
    palette = rng.random((50, DIM), dtype=np.float32)
    for start in range(0, N, 10_000):
        ids = np.arange(start, start + 10_000)
        client.insert(name, [{"id": int(i), "grp": int(i % 7), "vec": palette[i % 50]} for i in ids])
        if start == 20_000:
            client.flush(name)  # sealed and growing segments both take part
    yield client, name, palette
    client.drop_collection(name)
    client.close()


def _insert_while(client, name, stop: threading.Event, inserted: list) -> None:
    next_id = 10_000_000
    while not stop.is_set():
        rows = [{"id": next_id + j, "grp": 0, "vec": np.zeros(DIM, np.float32)} for j in range(200)]
        client.insert(name, rows)
        inserted.append(next_id)
        next_id += 200


def test_query_iterator_every_row_once_on_a_snapshot(big):
    client, name, _ = big
    stop, inserted = threading.Event(), []
    it = client.query_iterator(name, batch_size=3000, filter="id >= 0", output_fields=["id", "grp"])
    writer = threading.Thread(target=_insert_while, args=(client, name, stop, inserted))
    writer.start()
    seen = []
    try:
        while True:
            page = it.next()
            if not page:
                break
            seen.extend(r["id"] for r in page)
            assert all(r["grp"] == r["id"] % 7 for r in page)
    finally:
        stop.set()
        writer.join()
        it.close()
    assert inserted, "the concurrent writer inserted nothing: the snapshot was not exercised"
    assert len(seen) == len(set(seen)), "a row came back twice"
    assert sorted(seen) == list(range(N)), "rows were lost, or rows written after the start leaked in"
    for start in inserted:
        client.delete(name, filter=f"id >= {start} and id < {start + 200}")


def test_search_iterator_every_row_once_ties_by_pk(big):
    client, name, palette = big
    stop, inserted = threading.Event(), []
    it = client.search_iterator(name, data=[palette[0]], anns_field="vec", batch_size=1000,
                                search_params={"metric_type": "L2"}, output_fields=["id"], limit=25_000)
    writer = threading.Thread(target=_insert_while, args=(client, name, stop, inserted))
    writer.start()
    ids, dists = [], []
    try:
        while True:
            page = it.next()
            if not page:
                break
            ids.extend(h["id"] for h in page)
            dists.extend(h["distance"] for h in page)
    finally:
        stop.set()
        writer.join()
        it.close()
    assert len(ids) == 25_000
    assert len(ids) == len(set(ids)), "a hit came back twice"
    assert all(i < N for i in ids), "a row inserted after the iterator started appeared"
    assert all(a <= b + 1e-5 for a, b in zip(dists, dists[1:])), "distances are not non-decreasing"
    # Exact expectation: rows sorted by (distance to palette[0], id); take the first 25,000.
    all_ids = np.arange(N)
    d = ((palette[all_ids % 50] - palette[0]) ** 2).sum(axis=1)
    expected = all_ids[np.lexsort((all_ids, d))][:25_000]
    assert set(ids) == set(expected.tolist())
    for start in inserted:
        client.delete(name, filter=f"id >= {start} and id < {start + 200}")

"""pymilvus's search_iterator (v2, pymilvus 2.5 and later) against vecdb: the client keeps v2 (no
fallback to v1), pages come in distance order with every row exactly once (ties at page edges broken
by primary key), on the snapshot of the first page, with filters, output fields and a limit; and the
v2 parameters' errors (vecdb.proxy.search_iterator)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.client.search_iterator import SearchIteratorV2
from pymilvus.exceptions import MilvusException

N = 3000
DIM = 4


@pytest.fixture(scope="module")
def collections(uri):
    client = MilvusClient(uri=uri)
    rng = np.random.default_rng(7)
    palette = rng.random((30, DIM), dtype=np.float32)  # 100 rows per vector: ties across every page edge
    spread = rng.standard_normal((N, DIM)).astype(np.float32)
    made = []
    for name, index, metric, vectors in (("it2_flat", "FLAT", "L2", palette[np.arange(N) % 30]),
                                         ("it2_hnsw", "HNSW", "COSINE", spread)):
        if client.has_collection(name):
            client.drop_collection(name)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("grp", DataType.INT64)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type=index, metric_type=metric,
                      params={"M": 16, "efConstruction": 64} if index == "HNSW" else {})
        client.create_collection(name, schema=schema, index_params=idx)
        rows = [{"id": i, "grp": i % 3, "vec": vectors[i].tolist()} for i in range(N)]
        client.insert(name, rows[:2000])
        client.flush(name)  # sealed and growing segments both take part
        client.insert(name, rows[2000:])
        made.append(name)
    yield client, palette, spread
    for name in made:
        client.drop_collection(name)
    client.close()


def _walk(it) -> tuple[list[int], list[float], list[dict]]:
    ids, dists, hits = [], [], []
    while True:
        page = it.next()
        if not page:
            break
        for h in page:
            ids.append(h["id"])
            dists.append(h["distance"])
            hits.append(h)
    it.close()
    return ids, dists, hits


def test_every_row_once_in_distance_then_key_order(collections, caplog):
    client, palette, _ = collections
    with caplog.at_level(logging.WARNING, logger="pymilvus"):
        it = client.search_iterator("it2_flat", [palette[0].tolist()], anns_field="vec", batch_size=128,
                                    output_fields=["grp"])
    assert isinstance(it, SearchIteratorV2)
    assert not [r for r in caplog.records if "Search Iterator V2" in r.getMessage()]  # no fallback to v1
    ids, dists, hits = _walk(it)
    pks = np.arange(N)
    d = ((palette[pks % 30] - palette[0]) ** 2).sum(axis=1)
    assert ids == pks[np.lexsort((pks, d))].tolist()  # every row, once, ties by primary key
    assert all(h["entity"]["grp"] == h["id"] % 3 for h in hits)


def test_a_filter_and_a_limit(collections):
    client, palette, _ = collections
    it = client.search_iterator("it2_flat", [palette[3].tolist()], anns_field="vec", batch_size=50,
                                filter="grp == 1", limit=700)
    ids, dists, _ = _walk(it)
    pks = np.arange(N)
    d = ((palette[pks % 30] - palette[3]) ** 2).sum(axis=1)
    want = pks[pks % 3 == 1]
    assert ids == want[np.lexsort((want, d[want]))][:700].tolist()


def test_an_hnsw_cosine_walk_is_ordered_and_never_repeats(collections):
    client, _, spread = collections
    q = spread[11]
    it = client.search_iterator("it2_hnsw", [q.tolist()], anns_field="vec", batch_size=200)
    ids, dists, _ = _walk(it)
    assert len(ids) == len(set(ids))
    assert all(a >= b - 1e-5 for a, b in zip(dists, dists[1:]))  # similarity: best first
    assert ids[0] == 11
    assert len(ids) >= 0.9 * N  # an approximate index's walk still reaches (nearly) every row


def test_rows_written_after_the_first_page_stay_out(collections):
    client, palette, _ = collections
    it = client.search_iterator("it2_flat", [palette[5].tolist()], anns_field="vec", batch_size=100)
    first = it.next()
    new = [{"id": 10_000 + j, "grp": 0, "vec": palette[5].tolist()} for j in range(50)]  # as close as can be
    client.insert("it2_flat", new)
    try:
        ids = [h["id"] for h in first] + _walk(it)[0]
        assert len(ids) == N == len(set(ids)) and max(ids) < N
    finally:
        client.delete("it2_flat", filter="id >= 10000")


@pytest.mark.parametrize("kwargs, message", [
    ({"search_iter_id": "not-a-uuid"}, "invalid token format"),
    ({"search_iter_last_bound": "near"}, "last bound"),
    ({"offset": 5}, "offset is not permitted"),
    ({"iterator": None}, "both iterator and search_iter_v2"),
    ({"search_iter_batch_size": None}, "batch size is required"),
], ids=["token", "bound", "offset", "no-iterator", "no-batch"])
def test_bad_v2_parameters_are_refused(collections, kwargs, message):
    client, palette, _ = collections
    params = {"iterator": True, "search_iter_v2": True, "search_iter_batch_size": 10, **kwargs}
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(MilvusException, match=message):
        client.search("it2_flat", [palette[0].tolist()], anns_field="vec", limit=10, **params)

"""Query paging as Milvus's proxy reads it (parseQueryParams); search pages over equal distances; a
query iterator whose alias moved.

Milvus reads a query's ``offset`` only together with a ``limit``: without one every matching row
comes back (Milvus 2.3.5, run: 30,000 of 30,000 rows for ``offset=100``). A limit below 1 and a
negative offset are refused ("invalid max query result window, ..."), where vecdb answered no rows.
Pages of ``offset``/``limit`` concatenate to the full ordered result, and ``offset + limit`` past
16,384 is refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

N = 3_000


@pytest.fixture(scope="module")
def paged(uri):
    client = MilvusClient(uri=uri)
    name = "iter_hunt_paging"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("grp", DataType.INT64)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = np.random.default_rng(3).random((N, 4), dtype=np.float32)
    rows = [{"id": i, "grp": i % 3, "vec": vecs[i]} for i in range(N)]
    client.insert(name, rows[:2_000])
    client.flush(name)  # sealed and growing rows both
    client.insert(name, rows[2_000:])
    yield client, name
    client.drop_collection(name)
    client.close()


def _ids(rows) -> list[int]:
    return sorted(r["id"] for r in rows)


def test_query_offset_without_limit_is_ignored(paged):
    client, name = paged
    assert _ids(client.query(name, filter="id >= 0", offset=100)) == list(range(N))
    assert _ids(client.query(name, filter="grp == 1", offset=2_999)) == list(range(1, N, 3))
    # an offset that is no number is not read either, as in Milvus
    assert len(client.query(name, filter="id >= 0", offset="x")) == N


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"limit": 0}, "invalid max query result window, limit [0] is invalid, should be greater than 0"),
    ({"limit": 0, "offset": 5}, "invalid max query result window, limit [0] is invalid, should be greater than 0"),
    ({"limit": -2}, "invalid max query result window, limit [-2] is invalid, should be greater than 0"),
    ({"limit": 10, "offset": -1}, "invalid max query result window, offset [-1] is invalid, should be gte than 0"),
    ({"limit": 1, "offset": 16_384},
     "invalid max query result window, (offset+limit) should be in range [1, 16384], but got 16385"),
])
def test_query_bad_window_refused(paged, kwargs, message):
    client, name = paged
    with pytest.raises(MilvusException) as e:
        client.query(name, filter="id >= 0", **kwargs)
    assert e.value.code == 1100
    assert e.value.message == message
    with pytest.raises(MilvusException) as e:  # an aggregation reads the same parameters
        client.query(name, filter="id >= 0", output_fields=["count(*)"], **kwargs)
    assert e.value.code == 1100


def test_query_pages_concatenate(paged):
    client, name = paged
    full = [r["id"] for r in client.query(name, filter="grp != 2", limit=N)]
    pages: list[int] = []
    for off in range(0, N, 250):
        pages += [r["id"] for r in client.query(name, filter="grp != 2", offset=off, limit=250)]
    assert pages == full
    assert sorted(full) == [i for i in range(N) if i % 3 != 2]


def _two_collections(client, names):
    for n in names:
        if client.has_collection(n):
            client.drop_collection(n)
    for base, n in enumerate(names):
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="FLAT", metric_type="L2")
        client.create_collection(n, schema=schema, index_params=idx)
        client.insert(n, [{"id": base * 100_000 + i, "vec": [float(i), 0.0, 0.0, 0.0]} for i in range(2_500)])


NOT_CONSISTENT = ("Input collection id is not consistent to collectionID in the context,"
                  "alias or database may have changed")


def test_query_iterator_refuses_a_moved_alias(client):
    """pymilvus's query iterator sends the id of the collection it started on: when its alias moves to
    another collection mid-walk, the next page is refused (Milvus's proxy), not served from the other
    collection's rows (vecdb returned 1,000 rows of the first collection, then 2,500 of the second)."""
    names = ("iter_hunt_a", "iter_hunt_b")
    _two_collections(client, names)
    if "iter_hunt_alias" in client.list_aliases(names[0])["aliases"]:
        client.drop_alias("iter_hunt_alias")
    client.create_alias(names[0], "iter_hunt_alias")
    try:
        it = client.query_iterator("iter_hunt_alias", batch_size=1_000)
        first = [r["id"] for r in it.next()]
        assert first == list(range(1_000))
        client.alter_alias(names[1], "iter_hunt_alias")
        with pytest.raises(MilvusException) as e:
            it.next()
        assert e.value.code == 1100
        assert e.value.message == NOT_CONSISTENT
        it.close()
        # a walk started on the alias now reads the second collection, every row once
        it = client.query_iterator("iter_hunt_alias", batch_size=1_000)
        seen = []
        while page := it.next():
            seen += [r["id"] for r in page]
        it.close()
        assert seen == list(range(100_000, 102_500))
    finally:
        client.drop_alias("iter_hunt_alias")
        for n in names:
            client.drop_collection(n)


def test_query_collection_id_param(paged):
    client, name = paged
    own = client.describe_collection(name)["collection_id"]
    assert len(client.query(name, filter="id >= 0", limit=5, collection_id=own)) == 5
    assert len(client.query(name, filter="id >= 0", limit=5, collection_id=0)) == 5  # 0: not checked
    with pytest.raises(MilvusException) as e:
        client.query(name, filter="id >= 0", limit=5, collection_id=own + 1)
    assert (e.value.code, e.value.message) == (1100, NOT_CONSISTENT)
    with pytest.raises(MilvusException) as e:
        client.query(name, filter="id >= 0", limit=5, collection_id="abc")
    assert e.value.code == 1100
    assert e.value.message.startswith("value for collection id is invalid")


@pytest.mark.parametrize(("index", "metric", "pk"), [
    ("FLAT", "L2", DataType.INT64), ("HNSW", "COSINE", DataType.VARCHAR), ("IVF_FLAT", "IP", DataType.INT64),
    ("BIN_FLAT", "HAMMING", DataType.INT64)])
def test_search_offset_pages_with_exact_ties(client, name, index, metric, pk):
    """Rows with equal distances (duplicate vectors, HAMMING's integer distances) whose primary keys are
    not in insertion order: an index cut each tie group at top-k by segment offset, so a page asked with
    a larger ``offset`` took other rows of the group than the page before it (2,912 distinct rows over
    3,000 of pages). Each segment's group at the cut is now searched whole and ordered by key."""
    rng = np.random.default_rng(11)
    binary = metric == "HAMMING"
    schema = client.create_schema(auto_id=False)
    if pk == DataType.VARCHAR:
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
    else:
        schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.BINARY_VECTOR if binary else DataType.FLOAT_VECTOR, dim=64 if binary else 4)
    idx = client.prepare_index_params()
    params = {"IVF_FLAT": {"nlist": 8}, "HNSW": {"M": 8, "efConstruction": 64}}.get(index, {})
    idx.add_index("v", index_type=index, metric_type=metric, params=params)
    client.create_collection(name, schema=schema, index_params=idx)
    n = 6_000
    if binary:
        vecs = rng.integers(0, 256, (n, 8), dtype=np.uint8)
        rows_vec = [v.tobytes() for v in vecs]
    else:
        palette = rng.random((10, 4), dtype=np.float32)
        vecs = palette[np.arange(n) % 10]
        rows_vec = list(vecs)
    key = (lambda i: f"k{i:05d}") if pk == DataType.VARCHAR else int
    order = rng.permutation(n)  # primary keys not in insertion order
    client.insert(name, [{"id": key(i), "v": rows_vec[i]} for i in order[:4_000]])
    client.flush(name)
    client.insert(name, [{"id": key(i), "v": rows_vec[i]} for i in order[4_000:]])
    q = rows_vec[0] if binary else (palette[0] + 0.01).tolist()

    def search(limit, offset=0):
        return [(h["distance"], h["id"]) for h in client.search(
            name, data=[q], anns_field="v", limit=limit, offset=offset, search_params={"metric_type": metric})[0]]

    full = search(2_400)
    pages = [hit for off in range(0, 2_400, 200) for hit in search(200, off)]
    assert len({i for _, i in pages}) == 2_400, "a row came back on two pages"
    assert pages == full
    if binary:  # exact: (distance, primary key)
        dist = np.unpackbits(vecs ^ vecs[0], axis=1).sum(axis=1)
        assert full == [(float(d), int(i)) for d, i in sorted(zip(dist.tolist(), range(n)))[:2_400]]
    else:  # each tie group (one palette vector) in primary key order
        groups: dict[float, list] = {}
        for d, i in full:
            groups.setdefault(d, []).append(i)
        for members in groups.values():  # (VARCHAR keys too, by their text)
            assert members == sorted(members)
        for members in list(groups.values())[:-1]:  # whole groups: every row of that palette vector
            assert len(members) == n // 10

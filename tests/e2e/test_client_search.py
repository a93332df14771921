"""MilvusClient search and query, checked against an exact numpy reference.

FLAT / BIN_FLAT are exact, so ids and distances must equal numpy's brute force
(L2 squared, IP, COSINE similarity, HAMMING bit counts), over sealed and growing
rows together, with deletes and filters applied.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.e2e._helpers import (
    assert_search_matches,
    binary_vectors,
    distances,
    float_schema,
    float_vectors,
    make_collection,
    reference_topk,
)

DIM = 16
N = 600


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_float_search_matches_numpy(client, name, metric):
    make_collection(client, name, float_schema(DIM, extra=(("grp", DataType.INT64, {}),)), metric=metric)
    data = float_vectors(N, DIM, seed=1)
    ids = np.arange(N, dtype=np.int64) * 3 + 1  # ids unlike positions
    rows = [{"id": int(ids[i]), "vec": data[i], "grp": i % 4} for i in range(N)]
    client.insert(name, rows[:400])
    client.flush(name)  # 400 sealed rows, 200 growing
    client.insert(name, rows[400:])
    queries = float_vectors(5, DIM, seed=2)
    hits = client.search(name, queries, limit=10, search_params={"metric_type": metric})
    assert_search_matches(hits, ids, data, queries, metric, 10)

    # filtered: only rows of group 2
    keep = np.arange(N) % 4 == 2
    hits = client.search(name, queries, limit=7, filter="grp == 2", output_fields=["grp"])
    assert_search_matches(hits, ids[keep], data[keep], queries, metric, 7)
    assert all(h["entity"]["grp"] == 2 for row in hits for h in row)

    # deleted rows are gone from results
    best = [row[0].id for row in client.search(name, queries, limit=1)]
    client.delete(name, ids=best)
    alive = ~np.isin(ids, best)
    hits = client.search(name, queries, limit=10)
    assert_search_matches(hits, ids[alive], data[alive], queries, metric, 10)


def test_search_offset_and_round_decimal(client, name):
    make_collection(client, name, float_schema(DIM))
    data = float_vectors(100, DIM, seed=5)
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(100)])
    q = float_vectors(1, DIM, seed=6)
    pos, ref = reference_topk(data, q, "L2", 15)
    page = client.search(name, q, limit=5, offset=10)
    assert [h.id for h in page[0]] == pos[0, 10:15].tolist()
    rounded = client.search(name, q, limit=3, round_decimal=2)
    np.testing.assert_allclose([h.distance for h in rounded[0]], np.round(ref[0, :3], 2), atol=1e-6)


def test_search_fewer_rows_than_limit(client, name):
    make_collection(client, name, float_schema(4))
    client.insert(name, [{"id": i, "vec": [i, 0, 0, 0]} for i in range(3)])
    hits = client.search(name, [[0, 0, 0, 0]], limit=10)
    assert [h.id for h in hits[0]] == [0, 1, 2]
    assert [h.distance for h in hits[0]] == pytest.approx([0.0, 1.0, 4.0])


def test_range_search(client, name):
    make_collection(client, name, float_schema(4))
    client.insert(name, [{"id": i, "vec": [i, 0, 0, 0]} for i in range(10)])
    # L2 keeps range_filter <= d < radius: squared distances 0,1,4,9,16 -> keep 4, 9
    hits = client.search(name, [[0, 0, 0, 0]], limit=10,
                         search_params={"metric_type": "L2", "params": {"radius": 16.0, "range_filter": 4.0}})
    assert [h.id for h in hits[0]] == [2, 3]


def test_binary_hamming_matches_numpy(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("bv", DataType.BINARY_VECTOR, dim=64)
    make_collection(client, name, s, field="bv", index_type="BIN_FLAT", metric="HAMMING")
    data = binary_vectors(300, 64, seed=3)
    client.insert(name, [{"id": i, "bv": data[i].tobytes()} for i in range(300)])
    queries = binary_vectors(4, 64, seed=4)
    hits = client.search(name, [q.tobytes() for q in queries], limit=10, search_params={"metric_type": "HAMMING"})
    assert_search_matches(hits, np.arange(300), data, queries, "HAMMING", 10, atol=0)
    # exact integer distances, best first, and the k-th distance equals numpy's
    ref = np.sort(distances(data, queries, "HAMMING"), axis=1)[:, :10]
    np.testing.assert_array_equal([[h.distance for h in row] for row in hits], ref)


def test_query_filters_and_output(client, name):
    extra = (("age", DataType.INT32, {}), ("name", DataType.VARCHAR, {"max_length": 20}),
             ("score", DataType.DOUBLE, {}), ("tags", DataType.ARRAY, {"element_type": DataType.INT64,
                                                                      "max_capacity": 4}),
             ("info", DataType.JSON, {}))
    make_collection(client, name, float_schema(4, extra=extra))
    rows = [{"id": i, "vec": [i, 1, 1, 1], "age": 20 + i, "name": f"user_{i}", "score": i / 2,
             "tags": [i % 3, 7], "info": {"city": "paris" if i % 2 else "rome", "n": i}} for i in range(20)]
    client.insert(name, rows)

    def ids(expr):
        return sorted(r["id"] for r in client.query(name, filter=expr))

    assert ids("age > 35") == [16, 17, 18, 19]
    assert ids("age in [20, 22] or score == 9.5") == [0, 2, 19]
    assert ids('name like "user_1%"') == [1] + list(range(10, 20))
    assert ids("not (id >= 2)") == [0, 1]
    assert ids("age - id == 20 and id < 3") == [0, 1, 2]
    assert ids('info["city"] == "rome" and info["n"] < 5') == [0, 2, 4]
    assert ids("array_contains(tags, 2)") == [2, 5, 8, 11, 14, 17]
    assert ids("tags[0] == 1 and id < 8") == [1, 4, 7]
    got = client.query(name, filter="id == 3", output_fields=["*"])
    assert len(got) == 1
    r = got[0]
    assert (r["age"], r["name"], r["score"], r["tags"]) == (23, "user_3", 1.5, [0, 7])
    assert r["info"] == {"city": "paris", "n": 3}
    assert list(map(float, r["vec"])) == [3.0, 1.0, 1.0, 1.0]
    assert client.query(name, filter="age >= 30", output_fields=["count(*)"])[0]["count(*)"] == 10
    page = client.query(name, filter="id >= 0", limit=5, offset=5, output_fields=["age"])
    assert len(page) == 5 and {r["age"] - r["id"] for r in page} == {20}


def test_ignore_growing_searches_the_sealed_segments_only(client, name):
    """Milvus's ``ignore_growing`` search parameter (as a keyword or in the search params): rows not yet
    sealed are left out; without it they are found."""
    make_collection(client, name, float_schema(DIM))
    data = float_vectors(150, DIM, seed=4)
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(100)])
    client.flush(name)  # 100 sealed rows
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(100, 150)])  # 50 growing
    q = data[[120]]
    every = client.search(name, q, limit=200, consistency_level="Strong")[0]
    assert len(every) == 150 and every[0]["id"] == 120
    for kwargs in ({"ignore_growing": True}, {"search_params": {"ignore_growing": True}}):
        sealed = client.search(name, q, limit=200, consistency_level="Strong", **kwargs)[0]
        assert sorted(h["id"] for h in sealed) == list(range(100))


def test_ignore_growing_queries_and_counts_the_sealed_segments_only(client, name):
    """A query's ``ignore_growing`` (Milvus 2.3): rows not yet sealed are neither returned nor counted;
    without it they are; a delete of a sealed row still applies."""
    make_collection(client, name, float_schema(DIM))
    data = float_vectors(150, DIM, seed=5)
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(100)])
    client.flush(name)  # 100 sealed rows
    client.insert(name, [{"id": i, "vec": data[i]} for i in range(100, 150)])  # 50 growing
    client.delete(name, ids=[3])

    def ids(**kwargs):
        return sorted(r["id"] for r in client.query(name, "id >= 0", output_fields=["id"], limit=1000,
                                                     consistency_level="Strong", **kwargs))

    def count(**kwargs):
        return client.query(name, "", output_fields=["count(*)"], consistency_level="Strong",
                            **kwargs)[0]["count(*)"]

    assert ids() == [i for i in range(150) if i != 3] and count() == 149
    assert ids(ignore_growing=True) == [i for i in range(100) if i != 3] and count(ignore_growing=True) == 99
    assert ids(ignore_growing=False) == ids()


def test_random_sample_filter_keeps_about_its_share(client, name):
    """RANDOM_SAMPLE (Milvus 2.6) in query and search filters; refused under or (1100)."""
    make_collection(client, name, float_schema(DIM, extra=(("grp", DataType.INT64, {}),)))
    data = float_vectors(4000, DIM, seed=6)
    client.insert(name, [{"id": i, "vec": data[i], "grp": i % 2} for i in range(4000)])
    got = client.query(name, "grp == 1 and RANDOM_SAMPLE(0.25)", output_fields=["grp"], limit=4000,
                       consistency_level="Strong")
    assert 350 < len(got) < 650 and all(r["grp"] == 1 for r in got)
    hits = client.search(name, data[[1]], limit=100, filter="random_sample(0.5)", consistency_level="Strong")[0]
    assert 0 < len(hits) <= 100
    with pytest.raises(Exception) as e:
        client.query(name, "grp == 1 or random_sample(0.1)", limit=10)
    assert getattr(e.value, "code", None) == 1100

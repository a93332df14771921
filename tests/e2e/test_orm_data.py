"""The pymilvus ORM API on data: column- and row-based insert, upsert, delete, search, query, iterators."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, MilvusException

from tests.e2e._helpers import assert_search_matches, cname, float_vectors, orm  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore:.*ORM-style PyMilvus API")

DIM = 8


def _collection(name, using, metric="L2", auto_id=False):
    fields = [
        FieldSchema("pk", DataType.INT64, is_primary=True, auto_id=auto_id),
        FieldSchema("n", DataType.INT32),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM),
    ]
    coll = Collection(name, CollectionSchema(fields), using=using)
    coll.create_index("vec", {"index_type": "FLAT", "metric_type": metric, "params": {}}, sync=False)
    coll.load()
    return coll


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_orm_column_insert_and_search(orm, cname, metric):
    coll = _collection(cname, orm, metric)
    data = float_vectors(300, DIM, seed=11)
    ids = np.arange(300, dtype=np.int64) + 1000
    res = coll.insert([ids.tolist(), list(range(300)), data])
    assert res.insert_count == 300 and list(res.primary_keys) == ids.tolist()
    coll.flush()
    assert coll.num_entities == 300
    queries = float_vectors(3, DIM, seed=12)
    hits = coll.search(queries, "vec", {"metric_type": metric, "params": {}}, limit=6, output_fields=["n"])
    assert_search_matches(hits, ids, data, queries, metric, 6)
    for row in hits:
        for h in row:
            assert h.entity.get("n") == h.id - 1000
    keep = np.arange(300) % 2 == 1
    hits = coll.search(queries, "vec", {"metric_type": metric}, limit=5, expr="n % 2 == 1")
    assert_search_matches(hits, ids[keep], data[keep], queries, metric, 5)


def test_orm_row_insert_upsert_delete_query(orm, cname):
    coll = _collection(cname, orm)
    vecs = float_vectors(11, DIM, seed=1)
    coll.insert([{"pk": i, "n": i, "vec": vecs[i]} for i in range(10)])
    res = coll.upsert([{"pk": i, "n": 100 + i, "vec": vecs[i]} for i in (8, 9, 10)])
    assert res.upsert_count == 3
    res = coll.delete("pk in [0, 1]")
    assert res.delete_count == 2
    rows = coll.query("pk >= 0", output_fields=["n"])
    assert {r["pk"]: r["n"] for r in rows} == {**{i: i for i in range(2, 8)}, 8: 108, 9: 109, 10: 110}
    assert coll.query("", output_fields=["count(*)"])[0]["count(*)"] == 9
    coll.upsert([{"pk": 2, "n": 7}], partial_update=True)
    row = coll.query("pk == 2", output_fields=["n", "vec"])[0]
    assert row["n"] == 7
    np.testing.assert_allclose(np.asarray(row["vec"], np.float32), vecs[2], rtol=1e-6)


def test_orm_auto_id_insert_and_upsert_error(orm, cname):
    coll = _collection(cname, orm, auto_id=True)
    res = coll.insert([[1, 2, 3], float_vectors(3, DIM)])
    pks = list(res.primary_keys)
    assert len(set(pks)) == 3
    with pytest.raises(MilvusException) as e:
        coll.upsert([[pks[0]], [5], float_vectors(1, DIM)])
    assert e.value.code == 1100
    assert sorted(r["n"] for r in coll.query("pk >= 0", output_fields=["n"])) == [1, 2, 3]


def test_orm_query_iterator_reads_every_row_once(orm, cname):
    coll = _collection(cname, orm)
    n = 2500
    vecs = float_vectors(n, DIM, seed=2)
    coll.insert([list(range(n)), list(range(n)), vecs])
    coll.flush()
    it = coll.query_iterator(batch_size=700, expr="n >= 100", output_fields=["n"])
    seen = []
    while True:
        batch = it.next()
        if not batch:
            it.close()
            break
        assert len(batch) <= 700
        seen += [r["pk"] for r in batch]
    assert sorted(seen) == list(range(100, n))

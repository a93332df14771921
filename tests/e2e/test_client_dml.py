"""MilvusClient writes: insert, upsert (full and partial), delete by ids and by filter, get, flush.

Semantics checked: upsert is an atomic delete+insert that keeps the primary key (refused on
auto_id collections); duplicate primary keys resolve last-write-wins, so get, query and
count(*) always agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e._helpers import count, float_schema, float_vectors, make_collection

DIM = 8


@pytest.fixture
def coll(client, name):
    schema = float_schema(DIM, extra=(("val", DataType.INT64, {}), ("tag", DataType.VARCHAR, {"max_length": 16})))
    make_collection(client, name, schema)
    return name


def _rows(ids, val, seed=0):
    vecs = float_vectors(len(ids), DIM, seed)
    return [{"id": int(i), "vec": vecs[k], "val": val, "tag": f"t{val}"} for k, i in enumerate(ids)]


def _state(client, name, ids) -> dict:
    """{id: val} as seen by get, checked against query and count(*)."""
    by_get = {r["id"]: r["val"] for r in client.get(name, ids=list(ids), output_fields=["val"])}
    by_query = {r["id"]: r["val"] for r in client.query(name, filter="id >= 0", output_fields=["val"])}
    assert by_get == {k: v for k, v in by_query.items() if k in set(ids)}
    assert count(client, name) == len(by_query)
    return by_query


def test_insert_get_query(client, coll):
    res = client.insert(coll, _rows(range(100), 1))
    assert res["insert_count"] == 100 and list(res["ids"]) == list(range(100))
    got = client.get(coll, ids=[5, 99, 1000], output_fields=["val", "tag", "vec"])
    assert sorted(r["id"] for r in got) == [5, 99]
    want = float_vectors(100, DIM, 0)
    for r in got:
        np.testing.assert_allclose(np.asarray(r["vec"], np.float32), want[r["id"]], rtol=1e-6)
        assert (r["val"], r["tag"]) == (1, "t1")
    assert count(client, coll) == 100
    assert count(client, coll, filter="id < 10") == 10
    rows = client.query(coll, filter="id in [3, 4, 500]", output_fields=["tag"])
    assert sorted((r["id"], r["tag"]) for r in rows) == [(3, "t1"), (4, "t1")]
    page = client.query(coll, filter="", limit=7, offset=0, output_fields=["val"])
    assert len(page) == 7


def test_duplicate_pk_in_one_batch_last_write_wins(client, coll):
    rows = _rows([1, 2, 1, 3, 1], 0)
    for k, r in enumerate(rows):
        r["val"] = k
    client.insert(coll, rows)
    state = _state(client, coll, [1, 2, 3])
    assert state == {1: 4, 2: 1, 3: 3}
    hits = client.search(coll, [rows[4]["vec"]], limit=5, output_fields=["val"])
    assert [h.id for h in hits[0]].count(1) == 1  # one live row per primary key
    assert next(h for h in hits[0] if h.id == 1)["entity"]["val"] == 4


def test_duplicate_pk_across_inserts_last_write_wins(client, coll):
    client.insert(coll, _rows([1, 2, 3], 10))
    client.insert(coll, _rows([2, 3, 4], 20))
    client.flush(coll)
    client.insert(coll, _rows([3], 30))
    assert _state(client, coll, [1, 2, 3, 4]) == {1: 10, 2: 20, 3: 30, 4: 20}
    client.delete(coll, ids=[3])
    assert _state(client, coll, [1, 2, 3, 4]) == {1: 10, 2: 20, 4: 20}


def test_upsert_replaces_and_inserts(client, coll):
    client.insert(coll, _rows(range(5), 1))
    res = client.upsert(coll, _rows([3, 4, 5], 2, seed=7))
    assert res["upsert_count"] == 3 and list(res["ids"]) == [3, 4, 5]
    assert _state(client, coll, range(6)) == {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
    new_vecs = float_vectors(3, DIM, 7)
    hits = client.search(coll, [new_vecs[0]], limit=1, output_fields=["val"])
    assert hits[0][0].id == 3 and hits[0][0]["entity"]["val"] == 2
    assert hits[0][0].distance == pytest.approx(0.0, abs=1e-4)
    got = client.get(coll, ids=[3], output_fields=["vec"])[0]
    np.testing.assert_allclose(np.asarray(got["vec"], np.float32), new_vecs[0], rtol=1e-6)


def test_upsert_after_flush_keeps_one_row(client, coll):
    client.insert(coll, _rows(range(10), 1))
    client.flush(coll)
    client.upsert(coll, _rows(range(0, 10, 2), 2))
    client.flush(coll)
    client.upsert(coll, _rows([0], 3))
    assert _state(client, coll, range(10)) == {i: (3 if i == 0 else 2 if i % 2 == 0 else 1) for i in range(10)}


def test_upsert_on_auto_id_collection_fails(client, name):
    s = MilvusClient.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    make_collection(client, name, s)
    ids = list(client.insert(name, [{"vec": [1, 2, 3, 4]}])["ids"])
    with pytest.raises(MilvusException) as e:
        client.upsert(name, [{"id": ids[0], "vec": [4, 3, 2, 1]}])
    assert e.value.code == 1100
    assert "auto" in e.value.message.lower() and "upsert" in e.value.message.lower()
    got = client.get(name, ids=ids, output_fields=["vec"])
    assert [list(map(float, r["vec"])) for r in got] == [[1.0, 2.0, 3.0, 4.0]]
    assert count(client, name) == 1


def test_partial_update_changes_only_given_fields(client, coll):
    client.insert(coll, _rows([1, 2], 1))
    before = {r["id"]: r for r in client.get(coll, ids=[1, 2], output_fields=["vec", "val", "tag"])}
    client.upsert(coll, [{"id": 1, "val": 99}], partial_update=True)
    after = {r["id"]: r for r in client.get(coll, ids=[1, 2], output_fields=["vec", "val", "tag"])}
    assert after[1]["val"] == 99 and after[1]["tag"] == "t1"
    np.testing.assert_array_equal(np.asarray(after[1]["vec"]), np.asarray(before[1]["vec"]))
    assert after[2]["val"] == 1
    assert count(client, coll) == 2
    # a flushed row can be partially updated too
    client.flush(coll)
    client.upsert(coll, [{"id": 2, "tag": "new"}], partial_update=True)
    r2 = client.get(coll, ids=[2], output_fields=["val", "tag"])[0]
    assert (r2["val"], r2["tag"]) == (1, "new")


def test_delete_by_ids_and_filter(client, coll):
    client.insert(coll, _rows(range(20), 1))
    res = client.delete(coll, ids=[0, 1, 2, 100])
    assert res["delete_count"] == 4  # as Milvus 2.3: the keys named, present or not
    assert count(client, coll) == 17
    client.flush(coll)
    client.delete(coll, filter="id >= 15 or tag == 'nope'")
    assert sorted(r["id"] for r in client.query(coll, filter="id >= 0")) == list(range(3, 15))
    client.delete(coll, filter="id in [3, 4]")
    assert client.get(coll, ids=[3, 4, 5])[0]["id"] == 5 and len(client.get(coll, ids=[3, 4, 5])) == 1
    # deleted rows never come back from search
    hits = client.search(coll, [float_vectors(20, DIM, 0)[0]], limit=20)
    assert sorted(h.id for h in hits[0]) == list(range(5, 15))
    # re-inserting a deleted key brings it back
    client.insert(coll, _rows([0], 5))
    assert _state(client, coll, [0])[0] == 5


def test_varchar_pk_dml(client, name):
    make_collection(client, name, float_schema(4, pk=DataType.VARCHAR, extra=(("val", DataType.INT64, {}),)))
    client.insert(name, [{"id": k, "vec": [i, 0, 0, 0], "val": i} for i, k in enumerate(["a", "b", "c", "a"])])
    assert {r["id"]: r["val"] for r in client.query(name, filter='id != ""', output_fields=["val"])} == \
        {"a": 3, "b": 1, "c": 2}
    client.upsert(name, [{"id": "b", "vec": [9, 9, 9, 9], "val": 10}])
    client.delete(name, ids=["c"])
    client.delete(name, filter='id like "z%"')
    got = client.get(name, ids=["a", "b", "c"], output_fields=["val"])
    assert {r["id"]: r["val"] for r in got} == {"a": 3, "b": 10}
    assert count(client, name) == 2


def test_flush_makes_sealed_segments(client, coll):
    client.insert(coll, _rows(range(50), 1))
    client.flush(coll)
    client.insert(coll, _rows(range(50, 60), 1, seed=1))
    segs = client.list_persistent_segments(coll)
    assert sum(s.num_rows for s in segs) == 50
    assert count(client, coll) == 60
    # one search sees the sealed and the growing rows
    hits = client.search(coll, [float_vectors(50, DIM, 0)[3], float_vectors(10, DIM, 1)[4]], limit=1)
    assert [hits[0][0].id, hits[1][0].id] == [3, 54]


def test_dynamic_fields(client, name):
    make_collection(client, name, float_schema(4, dynamic=True))
    client.insert(name, [{"id": 1, "vec": [1, 0, 0, 0], "color": "red", "n": 3, "meta": {"k": [1, 2]}},
                         {"id": 2, "vec": [0, 1, 0, 0], "color": "blue"}])
    rows = {r["id"]: r for r in client.query(name, filter="id > 0", output_fields=["color", "n", "meta"])}
    assert rows[1]["color"] == "red" and rows[1]["n"] == 3 and rows[1]["meta"] == {"k": [1, 2]}
    assert rows[2]["color"] == "blue" and "n" not in rows[2]
    assert [r["id"] for r in client.query(name, filter='color == "blue"')] == [2]
    assert [r["id"] for r in client.query(name, filter="meta['k'][1] == 2")] == [1]
    hits = client.search(name, [[1, 0, 0, 0]], limit=2, output_fields=["color"])
    assert [(h.id, h["entity"]["color"]) for h in hits[0]] == [(1, "red"), (2, "blue")]


def test_upsert_is_atomic_for_concurrent_readers(client, coll, uri):
    """While one client upserts the same keys over and over, readers always see each key exactly once."""
    import threading

    keys = list(range(50))
    client.insert(coll, _rows(keys, 0))
    stop = threading.Event()
    errors: list = []

    def writer():
        w = MilvusClient(uri=uri)
        try:
            for v in range(1, 40):
                w.upsert(coll, _rows(keys, v, seed=v))
                if v == 20:
                    w.flush(coll)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            stop.set()
            w.close()

    t = threading.Thread(target=writer)
    t.start()
    observations = 0
    try:
        while not stop.is_set() or observations < 3:
            rows = client.query(coll, filter="id >= 0", output_fields=["val"])
            assert sorted(r["id"] for r in rows) == keys
            # one upsert batch is written under one timestamp: a snapshot sees all of it or none of it
            assert len({r["val"] for r in rows}) == 1
            assert count(client, coll) == len(keys)
            hits = client.search(coll, [float_vectors(1, DIM, 99)[0]], limit=60)
            assert sorted(h.id for h in hits[0]) == keys
            observations += 1
    finally:
        t.join()
    assert not errors, errors
    assert observations >= 3
    # Strong: on a cluster ``client`` may be another proxy than the writer's, and a Bounded read there may
    # be up to a second behind (docs/cluster.md, consistency levels)
    final = client.query(coll, filter="id >= 0", output_fields=["val"], consistency_level="Strong")
    assert {r["val"] for r in final} == {39}

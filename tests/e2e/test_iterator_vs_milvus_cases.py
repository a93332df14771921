"""pymilvus's query and search iterators, case by case against Milvus 2.3.5 (a differential run of
both servers with pymilvus 3.0 and 2.6; no Milvus at test time: its answers are written down here).

Where both agree the numbers below are Milvus's. Where they differ vecdb keeps its own answer, and the
test says why:

- Milvus 2.3.5 ends a query iterator with short pages (its segments' reduce stops early: 30,000 rows at
  batch_size 1000 came back as 30 full pages and pages of 8, 1 and 2 rows); vecdb's pages are full up to
  the last, as pymilvus documents ``batch_size``.
- Milvus 2.3.5 has no iterator snapshot (pymilvus warns "failed to get mvccTs ... use client-side ts"):
  a row deleted or inserted between two ``next()`` calls shows or not by where it falls. vecdb reads
  every page at the first page's timestamp, as Milvus 2.4+ does (pymilvus's ``iterator_session_ts``).
- Milvus 2.3.5 loses the row with the largest INT64 key (9223372036854775807) from a query iterator even
  under a filter that matches it (6 of 7 rows in ``test_extreme_int64_keys``); vecdb returns every row.
- A query iterator's ``next()`` right after ``release()``: Milvus 2.3.5 still answered a page (its
  release lags), vecdb answers 101 "collection not loaded", as Milvus does for a new iterator.
- A partition that does not exist: Milvus 2.3.5 answers 65535 "partition name nope not found", vecdb
  200 "partition not found" (Milvus 2.4+'s ErrPartitionNotFound).

One difference was a vecdb bug, fixed: a query iterator over ``count(*)`` (and any ``count(*)`` query
with a limit) answered a count; Milvus refuses it with "count entities with pagination is not allowed".
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, MilvusClient, MilvusException, connections

N, DIM, M = 30_000, 8, 5_000  # rows of the two big collections; rows of the three metric collections
RNG = np.random.default_rng(7)
VEC = RNG.random((N, DIM), dtype=np.float32)
ORDER = RNG.permutation(N)  # insertion order (the iterators return primary-key order)
V = np.arange(N) % 100
PK = {"int": np.arange(N, dtype=np.int64) * 2, "str": np.array([f"k{i}" for i in range(N)])}
Q = VEC[12345]
L2 = {"metric_type": "L2", "params": {}}


def _schema(varchar: bool) -> CollectionSchema:
    pk = (FieldSchema("pk", DataType.VARCHAR, is_primary=True, max_length=32) if varchar
          else FieldSchema("pk", DataType.INT64, is_primary=True))
    return CollectionSchema([pk, FieldSchema("v", DataType.INT64), FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM)],
                            enable_dynamic_field=True)


def _row(kind: str, i: int) -> dict:
    pk = PK[kind][i]
    return {"pk": str(pk) if kind == "str" else int(pk), "v": int(V[i]), "vec": VEC[i], "dyn": i % 7,
            **({"extra": "x"} if i % 5 == 0 else {})}


def _new(alias: str, name: str, varchar: bool) -> Collection:
    return Collection(name, _schema(varchar), consistency_level="Strong", using=alias)


@pytest.fixture(scope="module")
def orm(uri):
    alias = "iter_vs_milvus"
    connections.connect(alias, uri=uri)
    client = MilvusClient(uri=uri)
    made = []
    for kind in ("int", "str"):
        name = f"itvm_{kind}"
        if client.has_collection(name):
            client.drop_collection(name)
        c = _new(alias, name, kind == "str")
        c.create_partition("p1")
        for lo in range(0, N, 10_000):
            sel = ORDER[lo:lo + 10_000]
            c.insert([_row(kind, i) for i in sel if i % 3], partition_name="_default")
            c.insert([_row(kind, i) for i in sel if i % 3 == 0], partition_name="p1")
            if lo == 10_000:
                c.flush()  # sealed and growing rows both
        c.create_index("vec", {"index_type": "FLAT", "metric_type": "L2", "params": {}})
        c.load()
        made.append(name)
    for metric in ("L2", "IP", "COSINE"):
        name = f"itvm_{metric.lower()}"
        if client.has_collection(name):
            client.drop_collection(name)
        c = _new(alias, name, False)
        c.insert([{"pk": i, "v": int(V[i]), "vec": VEC[i]} for i in range(M)])
        c.flush()
        c.create_index("vec", {"index_type": "FLAT", "metric_type": metric, "params": {}})
        c.load()
        made.append(name)
    yield alias, client
    for name in made:
        client.drop_collection(name)
    client.close()
    connections.disconnect(alias)


def _drain(it) -> tuple[list[int], list]:
    """Page sizes and primary keys (query) or hits (search) of an iterator, to its end."""
    pages, out = [], []
    try:
        while (page := it.next()) is not None and len(page):  # (a v2 search iterator's end: None)
            pages.append(len(page))
            out.extend(page)
    finally:
        it.close()
    return pages, out


def _pks(rows) -> list:
    return [r["pk"] for r in rows]


def _expected(kind: str, mask) -> list:
    return sorted(str(p) if kind == "str" else int(p) for p in PK[kind][mask])


@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("batch", [1000, 16384])
def test_every_pk_once_in_key_order_in_full_pages(orm, kind, batch):
    alias, _ = orm
    pages, rows = _drain(Collection(f"itvm_{kind}", using=alias).query_iterator(
        batch_size=batch, expr="v >= 0", output_fields=["v"]))
    assert _pks(rows) == _expected(kind, np.ones(N, bool))  # (Milvus 2.3.5: the same keys, in this order)
    full, last = divmod(N, batch)
    assert pages == [batch] * full + ([last] if last else [])  # (Milvus 2.3.5: short pages at the end)
    if kind == "int":  # (pk 2i is row i)
        assert [r["v"] for r in rows[:200]] == V[:200].tolist()


@pytest.mark.parametrize("kind", ["int", "str"])
def test_limits_smaller_and_larger_than_the_rows(orm, kind):
    alias, client = orm
    c = Collection(f"itvm_{kind}", using=alias)
    everything = _expected(kind, np.ones(N, bool))
    for batch, limit, pages in ((7, 100, [7] * 14 + [2]), (1000, 2500, [1000, 1000, 500]),
                                (16384, 20000, [16384, 3616]), (1000, 50000, [1000] * 30)):
        got_pages, rows = _drain(c.query_iterator(batch_size=batch, limit=limit, expr="v >= 0"))
        assert got_pages == pages, (batch, limit)
        assert _pks(rows) == everything[:limit]
    pages, rows = _drain(client.query_iterator(f"itvm_{kind}", batch_size=1, limit=30))  # no filter
    assert pages == [1] * 30 and _pks(rows) == everything[:30]
    with pytest.raises(Exception, match="batch size cannot be larger than 16384"):  # (pymilvus's own check)
        c.query_iterator(batch_size=20000)


@pytest.mark.parametrize("kind", ["int", "str"])
def test_filters_dynamic_fields_and_partitions(orm, kind):
    alias, client = orm
    name = f"itvm_{kind}"
    i = np.arange(N)
    for flt, mask in (("v < 10", V < 10), ("v > 1000", np.zeros(N, bool)), ("dyn == 3", i % 7 == 3),
                      ('extra == "x"', i % 5 == 0)):
        pages, rows = _drain(client.query_iterator(name, batch_size=1000, filter=flt))
        assert _pks(rows) == _expected(kind, mask), flt
    assert [len(_expected(kind, m)) for m in (V < 10, i % 7 == 3, i % 5 == 0)] == [3000, 4286, 6000]
    pages, rows = _drain(client.query_iterator(name, batch_size=500, filter="v >= 0", partition_names=["p1"]))
    assert pages == [500] * 20 and _pks(rows) == _expected(kind, i % 3 == 0)
    pages, rows = _drain(Collection(name, using=alias).query_iterator(
        batch_size=1, expr="v == 3 and dyn == 2", output_fields=["v"]))
    assert pages == [1] * 43 and _pks(rows) == _expected(kind, (V == 3) & (i % 7 == 2))
    assert _pks(rows)[0] == (606 if kind == "int" else "k1003")
    with pytest.raises(MilvusException) as err:  # (Milvus 2.3.5: 65535 "partition name nope not found")
        Collection(name, using=alias).query_iterator(batch_size=10, expr="v < 5", partition_names=["nope"]).next()
    assert err.value.code == 200 and "partition not found" in err.value.message


def test_varchar_keys_page_in_byte_order(orm):
    _, client = orm
    pages, rows = _drain(client.query_iterator("itvm_str", batch_size=700, filter='pk >= "k100" and pk < "k200"'))
    keys = _pks(rows)
    assert len(keys) == 11111 and keys[:3] == ["k100", "k1000", "k10000"] and keys[-3:] == ["k19999", "k2", "k20"]
    assert pages == [700] * 15 + [611]


@pytest.mark.parametrize("kind", ["int", "str"])
def test_output_fields(orm, kind):
    _, client = orm
    first = 10 if kind == "int" else "k10005"
    for fields, keys in ((["*"], {"pk", "v", "vec", "dyn", "extra"}), (["vec"], {"pk", "vec"}),
                         (["dyn"], {"pk", "dyn"}), (["vec", "dyn", "extra"], {"pk", "vec", "dyn", "extra"}),
                         (["$meta"], {"pk", "dyn", "extra"}), (None, {"pk"})):
        it = client.query_iterator(f"itvm_{kind}", batch_size=3, filter="v == 5", output_fields=fields)
        row = it.next()[0]
        it.close()
        assert set(row) == keys and row["pk"] == first, fields
        if "vec" in keys:
            i = 5 if kind == "int" else 10005
            np.testing.assert_allclose(row["vec"], VEC[i], rtol=1e-6)


def test_count_star_takes_no_pagination(orm):
    """Milvus (2.3.5 and later) refuses a count with a limit, so a query iterator over count(*) fails
    (2.3.5: 65535, 2.4+: 1100, both "count entities with pagination is not allowed"). vecdb answered it."""
    alias, client = orm
    with pytest.raises(MilvusException) as err:
        client.query_iterator("itvm_int", batch_size=10, output_fields=["count(*)"]).next()
    assert err.value.code == 1100 and "count entities with pagination is not allowed" in err.value.message
    with pytest.raises(MilvusException, match="count entities with pagination is not allowed"):
        client.query("itvm_int", filter="v >= 0", output_fields=["count(*)"], limit=10)
    assert client.query("itvm_int", filter="v >= 0", output_fields=["count(*)"])[0]["count(*)"] == N


def test_rest_count_sends_no_limit(orm, server):
    """Milvus's REST query leaves out its default limit for a lone count(*) (handler_v2's matchCountRule)."""
    body = json.dumps({"collectionName": "itvm_int", "filter": "", "outputFields": ["count(*)"]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_ports[0]}/v2/vectordb/entities/query", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        reply = json.loads(resp.read())
    assert reply["code"] == 0 and reply["data"] == [{"count(*)": N}], reply


def test_offset_then_pages(orm):
    alias, _ = orm
    c = Collection("itvm_int", using=alias)
    assert _pks(_drain(c.query_iterator(batch_size=100, limit=3, offset=10, expr="v >= 0"))[1]) == [20, 22, 24]
    pages, rows = _drain(c.query_iterator(batch_size=7, limit=20, offset=29995, expr="v >= 0"))
    assert pages == [5] and _pks(rows) == [59990, 59992, 59994, 59996, 59998]


@pytest.mark.parametrize("varchar", [False, True])
def test_rows_deleted_or_inserted_between_pages(orm, uri, varchar):
    """vecdb: the first page's snapshot (Milvus 2.4+); Milvus 2.3.5 has none (see the module's doc)."""
    alias, client = orm
    name = f"itvm_mid_{int(varchar)}"
    c = _new(alias, name, varchar)
    kind = "str" if varchar else "int"
    c.insert([_row(kind, i) for i in range(3000)])
    c.create_index("vec", {"index_type": "FLAT", "metric_type": "L2", "params": {}})
    c.load()
    try:
        keys = _expected(kind, np.arange(N) < 3000)
        it = c.query_iterator(batch_size=1000, expr="v >= 0")
        first = _pks(it.next())
        ahead, behind = keys[2000:2010], keys[10:20]
        c.delete(f"pk in {json.dumps(ahead + behind)}")
        new = ["zz1", "k1500x"] if varchar else [10**9, 3001]
        c.insert([{"pk": p, "v": 1, "vec": [0.0] * DIM} for p in new])
        pages, rows = _drain(it)
        seen = first + _pks(rows)
        assert seen == keys and pages == [1000, 1000]
        assert _pks(_drain(c.query_iterator(batch_size=1000, expr="v >= 0"))[1]) == sorted(
            set(keys) - set(ahead + behind) | set(new))
    finally:
        client.drop_collection(name)


def _exact(metric: str, mask=None) -> tuple[np.ndarray, np.ndarray]:
    base = VEC[:M]
    if metric == "L2":
        d = ((base - Q) ** 2).sum(1)
        order = np.argsort(d, kind="stable")
    else:
        d = base @ Q if metric == "IP" else (base @ Q) / (np.linalg.norm(base, axis=1) * np.linalg.norm(Q))
        order = np.argsort(-d, kind="stable")
    if mask is not None:
        order = order[mask[order]]
    return order, d


def _check_walk(hits, metric: str, order: np.ndarray, k: int) -> None:
    ids = [h.id for h in hits]
    dist = np.array([h.distance for h in hits])
    assert len(ids) == len(set(ids)) == k
    assert set(ids) == set(order[:k].tolist())  # recall 1 on FLAT (Milvus 2.3.5 too)
    steps = np.diff(dist)
    assert (steps >= -1e-5).all() if metric == "L2" else (steps <= 1e-5).all()


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_search_iterator_walks_by_distance(orm, metric):
    alias, client = orm
    name = f"itvm_{metric.lower()}"
    c = Collection(name, using=alias)
    param = {"metric_type": metric, "params": {}}
    order, _ = _exact(metric)
    for batch, limit, pages in ((1, 20, [1] * 20), (7, 300, [7] * 42 + [6]), (1000, -1, [1000] * 5),
                                (16384, 3000, [3000])):
        got_pages, hits = _drain(c.search_iterator([Q], "vec", param, batch_size=batch, limit=limit))
        assert got_pages == pages, (batch, limit)
        _check_walk(hits, metric, order, sum(pages))
    pages, hits = _drain(client.search_iterator(name, [Q], batch_size=500, limit=2000, search_params=param))
    assert pages == [500] * 4
    _check_walk(hits, metric, order, 2000)
    low, _ = _exact(metric, V[:M] < 30)
    pages, hits = _drain(client.search_iterator(name, [Q], batch_size=300, limit=1000, filter="v < 30",
                                                search_params=param))
    assert pages == [300, 300, 300, 100]
    _check_walk(hits, metric, low, 1000)
    assert _drain(client.search_iterator(name, [Q], batch_size=300, filter="v > 1000", search_params=param)) == ([], [])


@pytest.mark.parametrize("metric, radius, range_filter, count", [
    ("L2", 0.5, 0.1, 294), ("IP", 1.5, 2.0, 2286), ("COSINE", 0.9, 0.95, 290)])
def test_search_iterator_in_a_range(orm, metric, radius, range_filter, count):
    alias, client = orm
    name = f"itvm_{metric.lower()}"
    order, d = _exact(metric)
    inside = (d < radius) & (d >= range_filter) if metric == "L2" else (d > radius) & (d <= range_filter)
    assert int(inside.sum()) == count  # Milvus 2.3.5's count for the same data
    param = {"metric_type": metric, "params": {"radius": radius, "range_filter": range_filter}}
    for it in (Collection(name, using=alias).search_iterator([Q], "vec", param, batch_size=100),
               client.search_iterator(name, [Q], batch_size=100, search_params=param)):
        pages, hits = _drain(it)
        assert pages == [100] * (count // 100) + [count % 100]
        _check_walk(hits, metric, order[inside[order]], count)


def test_partition_and_dynamic_output_of_a_search_iterator(orm):
    alias, _ = orm
    c = Collection("itvm_int", using=alias)
    pages, hits = _drain(c.search_iterator([Q], "vec", L2, batch_size=1000, limit=5000, partition_names=["p1"],
                                           output_fields=["v", "dyn", "extra"]))
    d = ((VEC - Q) ** 2).sum(1)
    order = np.argsort(d, kind="stable")
    order = order[order % 3 == 0]
    assert pages == [1000] * 5 and {h.id // 2 for h in hits} == set(order[:5000].tolist())
    first = hits[0]
    assert first.id == 24690 and first.entity.get("dyn") == 12345 % 7 and first.entity.get("v") == 45
    with pytest.raises(MilvusException) as err:  # the collection's index is L2
        c.search_iterator([Q], "vec", {"metric_type": "IP", "params": {}}, batch_size=100, limit=300).next()
    assert err.value.code == 1100 and "metric type not match" in err.value.message


@pytest.mark.parametrize("what", ["query", "search"])
def test_next_after_release_is_collection_not_loaded(orm, what):
    alias, _ = orm
    c = Collection("itvm_l2", using=alias)
    it = (c.query_iterator(batch_size=100, expr="v >= 0") if what == "query"
          else c.search_iterator([Q], "vec", L2, batch_size=100, limit=1000))
    assert len(it.next()) == 100
    c.release()
    try:
        with pytest.raises(MilvusException) as err:
            it.next()
        assert err.value.code == 101 and "collection not loaded" in err.value.message
    finally:
        c.load()
    again = _drain(c.query_iterator(batch_size=2000, expr="v >= 0"))[0]
    assert again == [2000, 2000, 1000]  # a new iterator after load reads everything again


def test_extreme_int64_keys(orm):
    alias, client = orm
    name = "itvm_edge"
    c = _new(alias, name, False)
    keys = [-(2**63) + 1, -5, -1, 0, 1, 2**40, 2**63 - 1]
    c.insert([{"pk": p, "v": i, "vec": VEC[i]} for i, p in enumerate(keys)])
    c.create_index("vec", {"index_type": "FLAT", "metric_type": "L2", "params": {}})
    c.load()
    try:
        pages, rows = _drain(c.query_iterator(batch_size=2, expr="v >= 0"))
        assert pages == [2, 2, 2, 1] and _pks(rows) == keys
        c.delete("pk in [-5, 1]")
        left = [-(2**63) + 1, -1, 0, 2**40, 2**63 - 1]
        assert _pks(_drain(client.query_iterator(name, batch_size=2))[1]) == left  # (filter "")
        # the ORM's iterator without an expression filters "pk < 9223372036854775807" itself (pymilvus)
        assert _pks(_drain(c.query_iterator(batch_size=2))[1]) == left[:-1]
    finally:
        client.drop_collection(name)

"""SPARSE_FLOAT_VECTOR fields through pymilvus on every deployment: insert/upsert in pymilvus's
input forms (dicts, lists of (index, value) pairs), SPARSE_INVERTED_INDEX / SPARSE_WAND with IP on
growing, sealed and mixed segments, filters, offset, range search, output fields, query, deletes,
upserts, compaction, mmap, and hybrid search with a dense field, all checked against a brute-force
sparse dot product computed here. Values are multiples of 1/8 so every score is exact in float32
and ties are real: they go to the smaller primary key.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pymilvus
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, RRFRanker

from tests.conftest import wait_until
from tests.e2e._helpers import check_compacted_and_reloaded

DIMS = 300  # sparse dimensions in use
N = 400


def _rows(n: int, seed: int, lo: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(lo, lo + n):
        nnz = int(rng.integers(0, 12))  # some rows are empty
        dims = rng.choice(DIMS, nnz, replace=False)
        vals = rng.integers(1, 16, nnz) / 8.0
        sp = {int(d): float(v) for d, v in zip(dims, vals, strict=True)}
        out.append({"id": i * 3 + 1, "sp": sp if i % 2 else sorted(sp.items(), reverse=True),
                    "dense": rng.random(4).tolist(), "grp": i % 4})
    return out


def _as_dict(sp) -> dict[int, float]:
    return dict(sp) if not isinstance(sp, dict) else sp


def _queries(nq: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{int(d): float(v) for d, v in zip(rng.choice(DIMS, 40, replace=False), rng.integers(1, 16, 40) / 8.0,
                                              strict=True)} for _ in range(nq)]


def _expected(live: dict[int, dict], q: dict, limit: int, offset: int = 0, flt=None,
              radius: float | None = None, range_filter: float | None = None) -> list[tuple[int, float]]:
    """Brute force: rows sharing a dimension with ``q``, by score desc then pk."""
    hits = []
    for pk, row in live.items():
        sp = _as_dict(row["sp"])
        if flt is not None and not flt(row):
            continue
        common = set(sp) & set(q)
        if not common:
            continue
        s = sum(sp[d] * q[d] for d in common)
        if radius is not None and not (s > radius and (range_filter is None or s <= range_filter)):
            continue
        hits.append((pk, s))
    hits.sort(key=lambda t: (-t[1], t[0]))
    return hits[offset:offset + limit]


def _got(res) -> list[list[tuple[int, float]]]:
    return [[(h["id"], h["distance"]) for h in q] for q in res]


def _check(client, name, live, queries, limit=10, **kw):
    flt_expr = kw.pop("filter", "")
    flt = kw.pop("flt", None)
    offset = kw.pop("offset", 0)
    params = kw.pop("params", {})
    res = client.search(name, queries, anns_field="sp", limit=limit, offset=offset, filter=flt_expr,
                        search_params={"metric_type": "IP", "params": params}, consistency_level="Strong")
    want = [_expected(live, q, limit, offset, flt, params.get("radius"), params.get("range_filter"))
            for q in queries]
    got = _got(res)
    assert [[pk for pk, _ in g] for g in got] == [[pk for pk, _ in w] for w in want]
    for g, w in zip(got, want, strict=True):
        assert np.allclose([s for _, s in g], [s for _, s in w], rtol=0, atol=1e-6)
    return res


def _schema():
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("grp", DataType.INT64)
    return schema


def _create(client, name, index_type="SPARSE_INVERTED_INDEX", properties=None):
    client.create_collection(name, schema=_schema(), properties=properties or {})
    idx = client.prepare_index_params()
    idx.add_index(field_name="sp", index_type=index_type, metric_type="IP", params={"drop_ratio_build": 0.0})
    idx.add_index(field_name="dense", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


@pytest.mark.parametrize("index_type", ["SPARSE_INVERTED_INDEX", "SPARSE_WAND"])
def test_sparse_search_growing_sealed_filters_range_output(client, name, index_type):
    _create(client, name, index_type)
    rows = _rows(N, seed=1)
    live = {r["id"]: r for r in rows}
    queries = _queries(4, seed=2)
    client.insert(name, rows[:150])
    _check(client, name, {r["id"]: r for r in rows[:150]}, queries)  # growing only
    client.flush(name)
    client.insert(name, rows[150:])  # sealed + growing
    _check(client, name, live, queries, limit=15)
    _check(client, name, live, queries, limit=7, offset=5)
    _check(client, name, live, queries, filter="grp in [1, 2]", flt=lambda r: r["grp"] in (1, 2))
    _check(client, name, live, queries, limit=50, params={"radius": 1.0, "range_filter": 3.0})
    _check(client, name, live, queries, params={"drop_ratio_search": 0.0})
    # output fields: the sparse rows come back as pymilvus's {index: value} dicts
    res = client.search(name, queries[:1], anns_field="sp", limit=5, output_fields=["sp", "grp"],
                        search_params={"metric_type": "IP"}, consistency_level="Strong")
    for h in res[0]:
        assert h["entity"]["sp"] == pytest.approx(_as_dict(live[h["id"]]["sp"]))
        assert h["entity"]["grp"] == live[h["id"]]["grp"]
    got = client.query(name, "id < 40", output_fields=["sp"], consistency_level="Strong")
    assert {r["id"]: r["sp"] for r in got} == {pk: _as_dict(r["sp"]) for pk, r in live.items() if pk < 40}
    # deletes and upserts, then everything flushed
    dead = [r["id"] for r in rows[::5]]
    client.delete(name, ids=dead)
    for pk in dead:
        live.pop(pk)
    new = _rows(60, seed=9)
    for r, old in zip(new, rows[1::7], strict=False):
        r["id"] = old["id"]
    client.upsert(name, new)
    live.update({r["id"]: r for r in new})
    _check(client, name, live, queries, limit=20)
    client.flush(name)
    _check(client, name, live, queries, limit=20)
    _check(client, name, live, queries, filter="grp == 3", flt=lambda r: r["grp"] == 3)


def test_sparse_compaction_and_mmap(client, name):
    _create(client, name, "SPARSE_WAND", properties={"mmap.enabled": "true"})
    rows = _rows(N, seed=4)
    for lo in range(0, N, 100):
        client.insert(name, rows[lo:lo + 100])
        client.flush(name)
    live = {r["id"]: r for r in rows}
    dead = [r["id"] for r in rows[::3]]
    client.delete(name, ids=dead)
    for pk in dead:
        live.pop(pk)
    client.flush(name)
    queries = _queries(3, seed=5)
    _check(client, name, live, queries, limit=25)
    check_compacted_and_reloaded(client, name, lambda: _check(client, name, live, queries, limit=25))
    got = client.query(name, "id >= 0", output_fields=["sp"], limit=1000, consistency_level="Strong")
    assert {r["id"]: r["sp"] for r in got} == {pk: _as_dict(r["sp"]) for pk, r in live.items()}


def test_hybrid_search_dense_and_sparse_rrf(client, name):
    _create(client, name)
    rows = _rows(200, seed=6)
    client.insert(name, rows[:120])
    client.flush(name)
    client.insert(name, rows[120:])
    live = {r["id"]: r for r in rows}
    q_sp = _queries(1, seed=7)[0]
    q_dense = [0.5, 0.1, 0.9, 0.3]
    k, limit = 60, 8
    sparse_hits = _expected(live, q_sp, 20)
    dense = sorted(((float(np.sum((np.float32(r["dense"]) - np.float32(q_dense)) ** 2)), pk)
                    for pk, r in live.items()))[:20]
    score: dict[int, float] = {}
    for rank, (pk, _) in enumerate(sparse_hits):
        score[pk] = score.get(pk, 0.0) + 1.0 / (k + rank + 1)
    for rank, (_, pk) in enumerate(dense):
        score[pk] = score.get(pk, 0.0) + 1.0 / (k + rank + 1)
    want = sorted(score.items(), key=lambda t: (-t[1], t[0]))[:limit]
    reqs = [AnnSearchRequest([q_sp], "sp", {"metric_type": "IP"}, limit=20),
            AnnSearchRequest([q_dense], "dense", {"metric_type": "L2"}, limit=20)]
    res = client.hybrid_search(name, reqs, RRFRanker(k), limit=limit, output_fields=["sp"])
    assert [h["id"] for h in res[0]] == [pk for pk, _ in want]
    assert np.allclose([h["distance"] for h in res[0]], [s for _, s in want], atol=1e-6)
    assert all(h["entity"]["sp"] == _as_dict(live[h["id"]]["sp"]) for h in res[0])


def test_sparse_range_filter_must_be_above_radius(client, name):
    _create(client, name)
    client.insert(name, _rows(20, seed=15))
    with pytest.raises(MilvusException, match="range_filter must be greater than radius for IP"):
        client.search(name, _queries(1, seed=16), anns_field="sp", limit=5,
                      search_params={"metric_type": "IP", "params": {"radius": 2.0, "range_filter": 1.0}})


def test_scipy_sparse_rows(client, name):
    """pymilvus turns scipy sparse matrices (and 1-row slices) into the same rows as dicts; scipy is
    only needed on the client, so this runs where the test environment has it."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    _create(client, name)
    rows = _rows(60, seed=17)
    m = scipy_sparse.lil_matrix((60, DIMS), dtype=np.float32)
    for i, r in enumerate(rows):
        for d, v in _as_dict(r["sp"]).items():
            m[i, d] = v
    csr = m.tocsr()
    client.insert(name, [{**r, "sp": csr[i]} for i, r in enumerate(rows)])  # one 1-row matrix per row
    live = {r["id"]: r for r in rows}
    q = _queries(1, seed=18)[0]
    qm = scipy_sparse.csr_matrix((list(q.values()), ([0] * len(q), list(q.keys()))), shape=(1, DIMS))
    res = client.search(name, qm, anns_field="sp", limit=10, search_params={"metric_type": "IP"},
                        consistency_level="Strong")
    assert [h["id"] for h in res[0]] == [pk for pk, _ in _expected(live, q, 10)]


def test_sparse_schema_and_index_errors(client, name):
    bad = MilvusClient.create_schema()
    bad.add_field("id", DataType.INT64, is_primary=True)
    bad.add_field("sp", DataType.SPARSE_FLOAT_VECTOR, dim=8)
    with pytest.raises(MilvusException, match="dim should not be specified"):
        client.create_collection(name, schema=bad)
    client.create_collection(name, schema=_schema())
    idx = client.prepare_index_params()
    idx.add_index(field_name="sp", index_type="SPARSE_INVERTED_INDEX", metric_type="L2")
    with pytest.raises(MilvusException, match="supported: \\[IP\\]"):
        client.create_index(name, idx)
    idx = client.prepare_index_params()
    idx.add_index(field_name="sp", index_type="HNSW", metric_type="IP")
    with pytest.raises(MilvusException, match="can't build with this index"):
        client.create_index(name, idx)
    idx = client.prepare_index_params()
    idx.add_index(field_name="sp", index_type="SPARSE_WAND", metric_type="IP", params={"drop_ratio_build": 1.5})
    with pytest.raises(MilvusException, match="drop_ratio_build"):
        client.create_index(name, idx)


def test_sparse_search_iterator_walks_every_hit_in_order(client, name):
    _create(client, name)
    rows = _rows(N, seed=11)
    client.insert(name, rows[:200])
    client.flush(name)
    client.insert(name, rows[200:])
    live = {r["id"]: r for r in rows}
    q = _queries(1, seed=12)[0]
    want = _expected(live, q, N)
    it = client.search_iterator(name, [q], anns_field="sp", batch_size=17, limit=len(want),
                                search_params={"metric_type": "IP"}, consistency_level="Strong")
    got = []
    while True:
        page = it.next()
        if not page:
            break
        got += [(h["id"], h["distance"]) for h in page]
    it.close()
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
    assert sorted(pk for pk, _ in got) == sorted(pk for pk, _ in want)  # each hit once


CLIENT_PYTHON = os.environ.get("VECDB_CLIENT_PYTHON", "")
NEWEST_SCRIPT = r'''
import json, sys
import pymilvus
from pymilvus import DataType, MilvusClient

a = json.load(sys.stdin)
c = MilvusClient(uri=a["uri"])
s = MilvusClient.create_schema()
s.add_field("id", DataType.INT64, is_primary=True)
s.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
c.create_collection(a["name"], schema=s)
idx = c.prepare_index_params()
idx.add_index(field_name="sp", index_type="SPARSE_WAND", metric_type="IP")
c.create_index(a["name"], idx)
c.load_collection(a["name"])
rows = [{"id": r["id"], "sp": {int(k): v for k, v in r["sp"].items()}} for r in a["rows"]]
c.insert(a["name"], rows)
res = c.search(a["name"], [{int(k): v for k, v in a["q"].items()}], anns_field="sp", limit=10,
               search_params={"metric_type": "IP"}, output_fields=["sp"], consistency_level="Strong")
out = {"version": pymilvus.__version__,
       "hits": [[h["id"], h["distance"], {str(k): v for k, v in h["entity"]["sp"].items()}] for h in res[0]]}
print("RESULT " + json.dumps(out))
'''


@pytest.mark.skipif(not CLIENT_PYTHON, reason="VECDB_CLIENT_PYTHON is not set: no virtualenv of the other pymilvus")
def test_newest_pymilvus_sparse(uri, name):
    rows = [{"id": r["id"], "sp": {str(k): v for k, v in _as_dict(r["sp"]).items()}} for r in _rows(150, seed=13)]
    q = _queries(1, seed=14)[0]
    payload = {"uri": uri, "name": name, "rows": rows, "q": {str(k): v for k, v in q.items()}}
    proc = subprocess.run([CLIENT_PYTHON, "-c", NEWEST_SCRIPT], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert out["version"] != pymilvus.__version__, out["version"]  # the other client (Makefile: OTHER_PYMILVUS)
    live = {r["id"]: {"sp": {int(k): v for k, v in r["sp"].items()}} for r in rows}
    want = _expected(live, q, 10)
    assert [h[0] for h in out["hits"]] == [pk for pk, _ in want]
    assert [h[1] for h in out["hits"]] == pytest.approx([s for _, s in want], abs=1e-6)
    assert all({int(k): v for k, v in h[2].items()} == live[h[0]]["sp"] for h in out["hits"])


def test_sealed_postings_are_built_at_load_and_survive_a_restart(tmp_path):
    """Standalone on a data directory: the postings of a sealed segment with a sparse index are
    built in the background when the collection is loaded (not at its first search), with the
    index's drop_ratio_build; after a restart the CSR files load back to the same answers."""
    from tests.conftest import free_port, start_standalone

    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.create_collection("sp_restart", schema=_schema())
        idx = c.prepare_index_params()
        idx.add_index(field_name="sp", index_type="SPARSE_INVERTED_INDEX", metric_type="IP",
                      params={"drop_ratio_build": 0.1})
        idx.add_index(field_name="dense", index_type="FLAT", metric_type="L2")
        c.create_index("sp_restart", idx)
        rows = _rows(300, seed=19)
        c.insert("sp_restart", rows)
        c.flush("sp_restart")
        c.load_collection("sp_restart")

        def segments():
            coll = next(x for x in node.querynode.collections.values() if x.info.name == "sp_restart")
            return [s for shard in coll.shards for s in shard.segments.values() if s.sealed]

        wait_until(lambda: segments() and all("sp" in s.__dict__.get("_sparse_postings", {}) for s in segments()), 30,
                   "postings built without a search")
        cached = [s.__dict__["_sparse_postings"]["sp"] for s in segments()]
        assert all(n == s.n and drop == 0.1 for (n, drop, _), s in zip(cached, segments(), strict=True))
        q = _queries(2, seed=20)
        before = _got(c.search("sp_restart", q, anns_field="sp", limit=10, search_params={"metric_type": "IP"},
                               consistency_level="Strong"))
        assert all(s.__dict__["_sparse_postings"]["sp"][2] is p for s, (_, _, p) in zip(segments(), cached,
                                                                                        strict=True))
        c.close()
        node.stop()
        node = start_standalone(tmp_path, port)
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.load_collection("sp_restart")
        after = _got(c.search("sp_restart", q, anns_field="sp", limit=10, search_params={"metric_type": "IP"},
                              consistency_level="Strong"))
        assert after == before and all(len(h) == 10 for h in after)
        c.close()
    finally:
        node.stop()

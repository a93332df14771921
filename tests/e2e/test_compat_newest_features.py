"""The other pymilvus (2.6, its own virtualenv; the suite runs 3.0) on the newer API (issue 15) against
the session server:
sparse vectors, hybrid search (RRF), grouping, nullable fields and default values, BM25 full-text
search, and a field added to a collection with data. A script runs there as a subprocess and prints
JSON; this test checks it against references computed here (numpy, and the same searches through the
pymilvus 2.6 client of the test process on the same collections).
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pymilvus
import pytest

CLIENT_PYTHON = os.environ.get("VECDB_CLIENT_PYTHON", "")

SCRIPT = r'''
import json, sys
import pymilvus
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker

args = json.load(sys.stdin)
name, dim = args["name"], args["dim"]
c = MilvusClient(uri=args["uri"])
out = {"version": pymilvus.__version__}

# sparse + dense + a nullable and a defaulted field, one collection
s = MilvusClient.create_schema(auto_id=False)
s.add_field("id", DataType.INT64, is_primary=True)
s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
s.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
s.add_field("grp", DataType.INT64)
s.add_field("note", DataType.VARCHAR, max_length=32, nullable=True)
s.add_field("level", DataType.INT64, default_value=7)
idx = c.prepare_index_params()
idx.add_index("dense", index_type="FLAT", metric_type="L2")
idx.add_index("sp", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
c.create_collection(name, schema=s, index_params=idx, consistency_level="Strong")
rows = []
for i, (v, sp) in enumerate(zip(args["dense"], args["sparse"])):
    row = {"id": i, "dense": v, "sp": {int(k): x for k, x in sp.items()}, "grp": i % 5}
    if i % 3:
        row["note"] = f"n{i}"
    if i % 4 == 0:
        row["level"] = i
    rows.append(row)
c.insert(name, rows)
out["sparse"] = [h["id"] for h in c.search(name, [{int(k): x for k, x in args["sparse_q"].items()}], anns_field="sp",
                                            limit=5, search_params={"metric_type": "IP"})[0]]
out["dense"] = [h["id"] for h in c.search(name, [args["dense_q"]], anns_field="dense", limit=10)[0]]
out["sparse10"] = [h["id"] for h in c.search(name, [{int(k): x for k, x in args["sparse_q"].items()}],
                                              anns_field="sp", limit=10, search_params={"metric_type": "IP"})[0]]
reqs = [AnnSearchRequest([args["dense_q"]], "dense", {"metric_type": "L2"}, limit=10),
        AnnSearchRequest([{int(k): x for k, x in args["sparse_q"].items()}], "sp", {"metric_type": "IP"}, limit=10)]
out["hybrid"] = [h["id"] for h in c.hybrid_search(name, reqs, RRFRanker(60), limit=5)[0]]
out["groups"] = [[h["id"], h["entity"]["grp"]] for h in c.search(name, [args["dense_q"]], anns_field="dense", limit=3,
                                                                   group_by_field="grp", output_fields=["grp"])[0]]
got = c.query(name, "id < 5", output_fields=["note", "level"])
out["nulls"] = sorted([r["id"], r["note"], r["level"]] for r in got)
out["is_null"] = c.query(name, "note is null", output_fields=["count(*)"])[0]["count(*)"]
c.add_collection_field(name, "added", DataType.INT64, nullable=True)
c.insert(name, [{"id": 1000, "dense": args["dense"][0], "sp": {1: 1.0}, "grp": 0, "added": 5}])
out["added"] = sorted([r["id"], r["added"]] for r in c.query(name, "id in [0, 1000]", output_fields=["added"]))

# BM25 full-text search
t = MilvusClient.create_schema(auto_id=False)
t.add_field("id", DataType.INT64, is_primary=True)
t.add_field("text", DataType.VARCHAR, max_length=256, enable_analyzer=True)
t.add_field("bm", DataType.SPARSE_FLOAT_VECTOR)
t.add_function(Function("bm25", FunctionType.BM25, input_field_names=["text"], output_field_names=["bm"]))
ti = c.prepare_index_params()
ti.add_index("bm", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
c.create_collection(name + "_text", schema=t, index_params=ti, consistency_level="Strong")
c.insert(name + "_text", [{"id": i, "text": x} for i, x in enumerate(args["texts"])])
out["bm25"] = [[h["id"], h["distance"]] for h in c.search(name + "_text", [args["text_q"]], anns_field="bm", limit=5,
                                                           search_params={"metric_type": "BM25"})[0]]
c.close()
print("RESULT " + json.dumps(out))
'''


@pytest.mark.skipif(not CLIENT_PYTHON, reason="VECDB_CLIENT_PYTHON is not set: no virtualenv of the other pymilvus "
                                              "(run through `make test`, which creates it)")
def test_newest_pymilvus_on_the_newer_api(uri, name, client):
    dim, n = 8, 60
    rng = np.random.default_rng(31)
    dense = rng.random((n, dim), dtype=np.float32)
    sparse = [{str(int(k)): float(v) for k, v in zip(rng.choice(40, 4, replace=False), rng.random(4) + 0.1)}
              for _ in range(n)]
    dense_q = rng.random(dim, dtype=np.float32)
    sparse_q = {"3": 1.0, "7": 0.5, "11": 2.0}
    words = ["apple", "banana", "cherry", "date", "elder", "fig", "grape"]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(40)]
    payload = {"uri": uri, "name": name, "dim": dim, "dense": dense.tolist(), "sparse": sparse,
               "dense_q": dense_q.tolist(), "sparse_q": sparse_q, "texts": texts, "text_q": "cherry fig"}
    proc = subprocess.run([CLIENT_PYTHON, "-c", SCRIPT], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    assert out["version"] != pymilvus.__version__, out["version"]  # the other client (Makefile: OTHER_PYMILVUS)

    # sparse: brute-force dot products (ties by primary key)
    dots = np.array([sum(v * sparse_q.get(k, 0.0) for k, v in row.items()) for row in sparse])
    order = sorted(range(n), key=lambda i: (-dots[i], i))
    assert out["sparse"] == [i for i in order if dots[i] > 0][:5]
    # dense L2 and RRF over the two lists the script read
    dist = ((dense - dense_q) ** 2).sum(1)
    assert out["dense"] == sorted(range(n), key=lambda i: (dist[i], i))[:10]
    rrf: dict[int, float] = {}
    for hits in (out["dense"], out["sparse10"]):
        for rank, pk in enumerate(hits):
            rrf[pk] = rrf.get(pk, 0.0) + 1.0 / (60 + rank + 1)
    assert out["hybrid"] == [pk for pk, _ in sorted(rrf.items(), key=lambda t: (-t[1], t[0]))[:5]]
    # grouping: the best row of each of the 3 best groups
    best: dict[int, int] = {}
    for i in sorted(range(n), key=lambda i: (dist[i], i)):
        best.setdefault(i % 5, i)
    assert out["groups"] == [[pk, pk % 5] for pk in sorted(best.values(), key=lambda i: (dist[i], i))[:3]]
    # nulls and defaults, then a field added to a collection with data
    assert out["nulls"] == [[i, f"n{i}" if i % 3 else None, i if i % 4 == 0 else 7] for i in range(5)]
    assert out["is_null"] == len([i for i in range(n) if i % 3 == 0])
    assert out["added"] == [[0, None], [1000, 5]]
    # BM25: the same search through this process's pymilvus 2.6 client (checked against numpy BM25 in
    # test_full_text) on the same collection
    ref = client.search(name + "_text", ["cherry fig"], anns_field="bm", limit=5,
                        search_params={"metric_type": "BM25"})[0]
    assert [h[0] for h in out["bm25"]] == [h["id"] for h in ref] and len(ref) == 5
    np.testing.assert_allclose([h[1] for h in out["bm25"]], [h["distance"] for h in ref], rtol=1e-5)
    client.drop_collection(name + "_text")

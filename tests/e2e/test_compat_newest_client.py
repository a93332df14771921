"""The other pymilvus (2.6, its own virtualenv; the suite's own client and the server's stubs are
3.0) against the session server.

``VECDB_CLIENT_PYTHON`` names that virtualenv's python (the Makefile sets it). A short
script runs there as a subprocess: create, insert, search, query, upsert, delete,
count, and one rejected insert; it prints JSON that this test checks against numpy.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pymilvus
import pytest

from tests.e2e._helpers import float_vectors, reference_topk

CLIENT_PYTHON = os.environ.get("VECDB_CLIENT_PYTHON", "")

SCRIPT = r'''
import json, sys
import pymilvus
from pymilvus import DataType, MilvusClient, MilvusException

args = json.load(sys.stdin)
name, dim = args["name"], args["dim"]
out = {"version": pymilvus.__version__}
c = MilvusClient(uri=args["uri"])
schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
schema.add_field("id", DataType.INT64, is_primary=True)
schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
schema.add_field("tag", DataType.VARCHAR, max_length=16)
idx = c.prepare_index_params()
idx.add_index("vec", index_type="FLAT", metric_type="L2")
c.create_collection(name, schema=schema, index_params=idx)
out["has"] = c.has_collection(name)
out["fields"] = [f["name"] for f in c.describe_collection(name)["fields"]]
rows = [{"id": i, "vec": v, "tag": "even" if i % 2 == 0 else "odd", "extra": i * 10}
        for i, v in enumerate(args["vectors"])]
out["insert_count"] = c.insert(name, rows)["insert_count"]
hits = c.search(name, args["queries"], limit=5, output_fields=["tag"])
out["search"] = [[[h["id"], h["distance"], h["entity"]["tag"]] for h in row] for row in hits]
out["query"] = sorted([r["id"], r["tag"], r["extra"]]
                      for r in c.query(name, filter="id < 6 and tag == 'even'", output_fields=["tag", "extra"]))
out["upsert_count"] = c.upsert(name, [{"id": 1, "vec": args["vectors"][1], "tag": "up", "extra": -1}])["upsert_count"]
out["after_upsert"] = [[r["id"], r["tag"]] for r in c.get(name, ids=[1], output_fields=["tag"])]
c.delete(name, ids=[0, 2])
c.delete(name, filter="id >= 40")
out["count"] = c.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
try:
    c.insert(name, [{"id": 99, "vec": [0.0] * (dim + 1), "tag": "bad"}])
    out["bad_insert"] = None
except MilvusException as e:
    out["bad_insert"] = e.code
out["count_after_bad"] = c.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
c.close()
print("RESULT " + json.dumps(out))
'''


@pytest.mark.skipif(not CLIENT_PYTHON, reason="VECDB_CLIENT_PYTHON is not set: no virtualenv of the other pymilvus "
                                              "(run through `make test`, which creates it)")
def test_newest_pymilvus_client(uri, name):
    dim, n = 8, 50
    vectors = float_vectors(n, dim, seed=21)
    queries = float_vectors(2, dim, seed=22)
    payload = {"uri": uri, "name": name, "dim": dim, "vectors": vectors.tolist(), "queries": queries.tolist()}
    proc = subprocess.run([CLIENT_PYTHON, "-c", SCRIPT], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])

    assert out["version"] != pymilvus.__version__, out["version"]  # the other client (Makefile: OTHER_PYMILVUS)
    assert out["has"] is True
    assert out["fields"][:3] == ["id", "vec", "tag"]
    assert out["insert_count"] == n
    pos, ref = reference_topk(vectors, queries, "L2", 5)
    for qi, row in enumerate(out["search"]):
        assert [h[0] for h in row] == pos[qi].tolist()
        np.testing.assert_allclose([h[1] for h in row], ref[qi], rtol=1e-4, atol=1e-4)
        assert [h[2] for h in row] == ["even" if i % 2 == 0 else "odd" for i in pos[qi]]
    assert out["query"] == [[0, "even", 0], [2, "even", 20], [4, "even", 40]]
    assert out["upsert_count"] == 1 and out["after_upsert"] == [[1, "up"]]
    assert out["count"] == n - 2 - 10
    assert out["bad_insert"] == 1100
    assert out["count_after_bad"] == out["count"]

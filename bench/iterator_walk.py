"""How long a search iterator takes to walk the nearest ``--rows`` of a collection, through
pymilvus: iterator v2 (``MilvusClient.search_iterator``: the server pages from a token and a last
bound, ``vecdb.proxy.search_iterator``) against v1 (``Collection.search_iterator``: the client pages
with range searches), on one vecdb standalone server. Also checks each walk: rows in distance
order, none twice, and how many of the exact nearest rows it returned.

    python -m bench.iterator_walk --n 100000 --dim 16 --rows 20000 --batch 1000 --index HNSW
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from pymilvus import Collection, DataType, MilvusClient, connections

from bench.servers import VecdbServer

INDEX_PARAMS = {"HNSW": {"M": 30, "efConstruction": 64}, "FLAT": {}, "IVF_FLAT": {"nlist": 128}}
SEARCH_PARAMS = {"HNSW": {"ef": 1000}, "FLAT": {}, "IVF_FLAT": {"nprobe": 16}}  # v1 needs ef >= its batch


def _load(uri: str, n: int, dim: int, index: str) -> tuple[MilvusClient, np.ndarray]:
    c = MilvusClient(uri=uri)
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type=index, metric_type="L2", params=INDEX_PARAMS[index])
    c.create_collection("walk", schema=schema, index_params=idx)
    data = np.random.default_rng(0).random((n, dim), dtype=np.float32)
    for lo in range(0, n, 10_000):
        c.insert("walk", [{"id": i, "vec": data[i]} for i in range(lo, min(n, lo + 10_000))])
    c.flush("walk")
    c.release_collection("walk")
    c.load_collection("walk")
    deadline = time.monotonic() + 600
    while True:  # the sealed segments' index built
        d = c.describe_index("walk", "vec")
        if d.get("indexed_rows") == d.get("total_rows") == n or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return c, data


def _walk(pages) -> tuple[float, list[int], list[float]]:
    ids, dists = [], []
    began = time.perf_counter()
    while True:
        page = pages.next()
        if not page:
            break
        ids += [h["id"] if isinstance(h, dict) else h.id for h in page]
        dists += [h["distance"] if isinstance(h, dict) else h.distance for h in page]
    pages.close()
    return time.perf_counter() - began, ids, dists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--index", default="HNSW", choices=sorted(INDEX_PARAMS))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    server = VecdbServer().start()
    try:
        c, data = _load(server.uri, args.n, args.dim, args.index)
        q = np.random.default_rng(1).random(args.dim, dtype=np.float32)
        exact = set(np.argsort(((data - q) ** 2).sum(1), kind="stable")[:args.rows].tolist())
        connections.connect("walk", uri=server.uri)
        sp = {"metric_type": "L2", "params": SEARCH_PARAMS[args.index]}
        out = {"args": vars(args)}
        for name, make in (
            ("v2", lambda: c.search_iterator("walk", [q.tolist()], batch_size=args.batch, limit=args.rows,
                                             search_params=sp)),
            ("v1", lambda: Collection("walk", using="walk").search_iterator(
                [q.tolist()], "vec", sp, batch_size=args.batch, limit=args.rows)),
        ):
            times = []
            for _ in range(args.repeats):
                seconds, ids, dists = _walk(make())
                times.append(seconds)
            out[name] = {"seconds_median": float(np.median(times)), "seconds": times, "rows": len(ids),
                         "distinct": len(set(ids)), "in_order": bool(np.all(np.diff(dists) >= -1e-6)),
                         "exact_nearest_returned": len(exact & set(ids)) / len(exact)}
            print(name, json.dumps(out[name]), flush=True)
        print(json.dumps(out))
    finally:
        server.stop()


if __name__ == "__main__":
    main()

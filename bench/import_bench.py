"""Bulk import throughput: a standalone server (embedded backends, in this process) imports NumPy
column files (``id.npy``, ``vec.npy``, ``tag.npy``) and, optionally, a row-based JSON file through
pymilvus ``utility.do_bulk_insert``; the time from the call to ImportCompleted (files read and
validated, rows written through the log in batches, the collection flushed), then a check that
count(*) and a searched vector are exact.

Data (fixed seed): ``--rows`` rows of ``--dim`` uniform [0, 1) float32 vectors, INT64 ids 0..n-1,
VARCHAR tags "t<i mod 100>". The collection is loaded (FLAT index), as for an application
importing into a collection it serves. ``--cluster``: the same on a cluster of processes
(tests.conftest.LocalCluster) over NATS, etcd and an in-memory S3 started here.

    python -m bench.import_bench [--rows 1000000 --dim 128 --json-rows 100000] [--cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time

import numpy as np


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _wait(utility, job: int, alias: str):
    from pymilvus import BulkInsertState

    while True:
        st = utility.get_bulk_insert_state(job, using=alias)
        if st.state in (BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed):
            return st
        time.sleep(0.05)


@contextlib.contextmanager
def deployment(kind: str, tmp: str):
    """(pymilvus uri, the object store the files go to) of a standalone server in this process, or of
    a cluster (tests.conftest.LocalCluster: coord, 3 query nodes, a data node, 2 proxies) on NATS,
    etcd and an in-memory S3 (moto) started here."""
    if kind == "standalone":
        from tests.conftest import server_settings
        from vecdb.standalone import Standalone

        srv = Standalone(server_settings(tmp)).start()
        try:
            yield f"http://127.0.0.1:{srv.port}", srv.objects
        finally:
            srv.stop()
        return
    from tests.conftest import LocalCluster
    from vecdb.config import StorageSettings
    from vecdb.storage import servers
    from vecdb.storage.backends import open_objects

    with contextlib.ExitStack() as stack:
        started = {}
        for name in ("nats", "etcd", "s3"):
            os.makedirs(os.path.join(tmp, name))
            started[name] = getattr(servers, f"start_{name}")(os.path.join(tmp, name))
            stack.callback(started[name].stop)
        storage = {"log": started["nats"].url, "meta": "etcd://" + started["etcd"].url.split("://", 1)[1],
                   "objects": "s3://vecdb-bench", "namespace": "bench", "s3_endpoint": started["s3"].url,
                   "s3_access_key": "test", "s3_secret_key": "test"}
        cluster = LocalCluster(os.path.join(tmp, "cluster"), storage)
        stack.callback(cluster.stop)
        objects = open_objects(StorageSettings(**storage, data_dir=os.path.join(tmp, "client")))
        stack.callback(objects.close)
        yield f"http://127.0.0.1:{cluster.port}", objects


def run(rows: int, dim: int, json_rows: int, kind: str = "standalone") -> dict:
    from pymilvus import BulkInsertState, CollectionSchema, DataType, FieldSchema, MilvusClient, connections, utility

    out: dict = {"deployment": kind, "rows": rows, "dim": dim}
    with tempfile.TemporaryDirectory() as tmp, deployment(kind, tmp) as (uri, objects):
        client = MilvusClient(uri=uri)
        connections.connect("bench", uri=uri)
        schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                                   FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
                                   FieldSchema("tag", DataType.VARCHAR, max_length=8)])
        rng = np.random.default_rng(0)
        vecs = rng.random((rows, dim), dtype=np.float32)
        for name, n in (("npy", rows), ("json", json_rows)):
            if not n:
                continue
            client.create_collection(name, schema=schema)
            idx = client.prepare_index_params()
            idx.add_index("vec", index_type="FLAT", metric_type="L2")
            client.create_index(name, idx)
            client.load_collection(name)
            if name == "npy":
                files = {"bench/id.npy": np.arange(n), "bench/vec.npy": vecs[:n],
                         "bench/tag.npy": np.array([f"t{i % 100}" for i in range(n)])}
                for key, arr in files.items():
                    objects.put(key, _npy(arr))
                paths = list(files)
            else:
                body = json.dumps({"rows": [{"id": i, "vec": vecs[i].tolist(), "tag": f"t{i % 100}"}
                                            for i in range(n)]}).encode()
                objects.put("bench/rows.json", body)
                paths = ["bench/rows.json"]
            t0 = time.perf_counter()
            st = _wait(utility, utility.do_bulk_insert(name, files=paths, using="bench"), "bench")
            secs = time.perf_counter() - t0
            assert st.state == BulkInsertState.ImportCompleted, st
            count = client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
            probe = n // 2
            hit = client.search(name, [vecs[probe].tolist()], limit=1, consistency_level="Strong")[0][0]
            assert count == n and hit["id"] == probe, (count, hit)
            out[name] = {"rows": n, "seconds": round(secs, 2), "rows_per_s": round(n / secs),
                         "mb_per_s": round(n * (dim * 4 + 8) / secs / 1e6, 1)}
            client.drop_collection(name)
        client.close()
        connections.disconnect("bench")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--json-rows", type=int, default=100_000)
    ap.add_argument("--cluster", action="store_true", help="a cluster of processes instead of standalone")
    args = ap.parse_args()
    print(json.dumps(run(args.rows, args.dim, args.json_rows, "cluster" if args.cluster else "standalone"), indent=1))


if __name__ == "__main__":
    main()

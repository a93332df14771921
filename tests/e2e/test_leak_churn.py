"""What a resource-leak churn of a standalone server found growing without bound, each kept as a
regression test on the structure that grew (not on timings):

- a collection created, written, indexed, flushed, compacted and dropped left its channels' entries
  behind in the proxy's writer (a lock and the last position per channel), the seal policy's unsealed
  row counts, the data node's per-channel locks, its index builder's pending map (an empty dict per
  collection) and the compactor's per-channel signatures (~0.5 KB a collection, for good);
- the index builder remembered the key of every index file it ever built (segments compacted away or
  dropped included): now a bounded cache;
- every REST request (a thread of its own) left one per-thread cell in each metric tally it added to
  (``vecdb.metric_tally``; ~13 a request): memory and the time of a /metrics scrape grew with every
  request served.
"""

from __future__ import annotations

import gc
import json
import urllib.request

import numpy as np
from pymilvus import DataType, MilvusClient

from tests.conftest import start_standalone, wait_until
from vecdb.datanode import indexer as indexer_module
from vecdb.metric_tally import ThreadTally

DIM = 4


def _rows(n: int, start: int = 0) -> list[dict]:
    vectors = np.random.default_rng(start).random((n, DIM), dtype=np.float32)
    return [{"id": start + i, "vector": vectors[i].tolist()} for i in range(n)]


def _create(client: MilvusClient, name: str, load: bool) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 16})
    client.create_collection(name, schema=schema, index_params=index)
    if not load:
        client.release_collection(name)


def _per_channel_state(server) -> dict[str, int]:
    writer, datanode = server.roles.writer, server.datanode
    return {"writer locks": len(writer._locks), "writer ends": len(writer._last),
            "unsealed rows": len(server.roles.sealer.unsealed._rows),
            "data node locks": len(datanode._locks), "pending builds": len(datanode.indexer._pending),
            "compaction checks": len(datanode.compactor._checked)}


def test_dropped_collections_leave_no_per_channel_state(tmp_path):
    server = start_standalone(str(tmp_path / "data"))
    client = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
    try:
        _create(client, "kept", load=True)
        client.insert("kept", _rows(20))
        client.compact("kept")

        def churn(i: int) -> None:
            name = f"churn_{i}"
            _create(client, name, load=i % 2 == 0)
            client.insert(name, _rows(30, start=100 * i))  # unsealed rows, the writer's channel state
            if i % 3 == 0:
                client.flush(name)  # persisted: the data node's lock, an index build of the unloaded ones
                client.compact(name)  # the compactor's signature of the channel
                client.search(name, [[0.1] * DIM], limit=2) if i % 2 == 0 else None
            client.drop_collection(name)

        churn(0)
        server.datanode.compactor.run_once()  # its round forgets the channels of dropped collections
        baseline = _per_channel_state(server)
        for i in range(1, 25):
            churn(i)
        server.datanode.compactor.run_once()
        after = _per_channel_state(server)
        assert after == baseline, (baseline, after)
        assert all(n <= 2 for n in after.values()), after  # "kept"'s channel (and churn_0's gone too)
        assert client.query("kept", filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"] == 20
    finally:
        client.close()
        server.stop()


def test_the_index_builder_remembers_a_bounded_number_of_files(tmp_path, monkeypatch):
    monkeypatch.setattr(indexer_module, "_BUILT_MAX", 3)
    server = start_standalone(str(tmp_path / "data"))
    client = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
    try:
        _create(client, "unloaded", load=False)  # its segments' indexes are built by the data node
        indexer = server.datanode.indexer
        for i in range(6):
            client.insert("unloaded", _rows(1100, start=10_000 * i))  # over MIN_ROWS_FOR_INDEX: a file each
            client.flush("unloaded")
            wait_until(lambda: not indexer._pending, 30, "the flush's index build did not end")
            assert 0 < len(indexer._built) <= 3, len(indexer._built)
        # every segment's file is built and counted, whether the cache still names it or not
        wait_until(lambda: client.describe_index("unloaded", "vector")["indexed_rows"] == 6600, 30,
                   "the segments' index files are not all counted")
        assert 0 < len(indexer._built) <= 3, len(indexer._built)
        client.load_collection("unloaded")
        assert len(client.search("unloaded", [[0.1] * DIM], limit=3)[0]) == 3
    finally:
        client.close()
        server.stop()


def _tally_cells() -> int:
    return sum(len(o._cells) for o in gc.get_objects() if isinstance(o, ThreadTally))


def test_rest_requests_leave_no_metric_cells(tmp_path):
    server = start_standalone(str(tmp_path / "data"), http=True)
    client = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
    base = f"http://127.0.0.1:{server.http_ports[0]}/v2/vectordb"
    try:
        client.create_collection("rest", dimension=DIM)
        client.insert("rest", _rows(10))

        def rest(path: str, body: dict) -> dict:
            req = urllib.request.Request(f"{base}/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())

        def requests(n: int) -> None:
            for i in range(n):
                assert rest("entities/search", {"collectionName": "rest", "data": [[0.1] * DIM], "limit": 2,
                                                "consistencyLevel": "Strong"})["code"] == 0
                assert rest("entities/query", {"collectionName": "rest", "filter": f"id < {i % 10}"})["code"] == 0
                assert rest("entities/search", {"collectionName": f"nosuch_{i}", "data": [[0.1] * DIM]})["code"] != 0

        requests(10)  # warm-up: every metric child exists
        before = _tally_cells()
        requests(100)  # 300 requests, each on a thread of its own
        assert _tally_cells() <= before + 20, (before, _tally_cells())
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.http_ports[0]}/metrics", timeout=30).read().decode()
        searched = [line for line in text.splitlines()
                    if line.startswith("milvus_proxy_search_vectors_count") and 'collection_name="rest"' in line]
        assert len(searched) == 1 and float(searched[0].rsplit(" ", 1)[1]) == 110.0, searched  # all counted
    finally:
        client.close()
        server.stop()

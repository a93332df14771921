"""The seal policy is the data node's (vecdb.datanode.flusher): in a cluster of processes, inserts
through pymilvus past ``datanode.seal_rows`` rows (set to SEAL_ROWS here) get the channel sealed and
persisted by its data node with no flush call (the proxy no longer asks a query node for the growing
rows). Real NATS, etcd, S3."""

from __future__ import annotations

import json
import time

import numpy as np

from tests.conftest import start_cluster, wait_until

SEAL_ROWS = 20_000  # the data node's datanode.seal_rows (the default seals 2-d rows at 1M, by bytes)
BATCH = 2_500


def test_the_data_node_seals_a_channel_past_seal_rows_without_a_flush(tmp_path, remote_storage):
    env = {"dn0": {"VECDB_DATANODE__SEAL_ROWS": str(SEAL_ROWS)}}
    with start_cluster(remote_storage(), tmp_path, env=env) as cluster:
        meta, c = cluster.meta, cluster.client()
        c.create_collection("big", dimension=2, metric_type="L2", num_shards=1)
        total = SEAL_ROWS + BATCH  # one batch past the threshold
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        for lo in range(0, total, BATCH):
            vecs = rng.random((BATCH, 2), dtype=np.float32)
            c.insert("big", [{"id": lo + i, "vector": v} for i, v in enumerate(vecs)])
        inserted = time.monotonic()

        def persisted() -> int:
            return sum(json.loads(v)["num_rows"] for _, v in meta.scan("seg/"))

        wait_until(lambda: persisted() >= SEAL_ROWS, 60, "the data node's seal policy persisting the channel")
        print(f"{total} rows inserted in {inserted - t0:.1f} s; {persisted()} persisted by the seal policy "
              f"{time.monotonic() - inserted:.1f} s after the last insert, no flush")
        writers = {json.loads(v).get("by") for _, v in meta.scan("seg/")}
        assert writers == {"dn0"}
        assert SEAL_ROWS <= persisted() <= total
        assert c.query("big", "", output_fields=["count(*)"])[0]["count(*)"] == total

"""Garbage collection behind a crash: a standalone server on NATS/etcd/S3 killed inside a compaction,
after the compacted segment's objects are written and before its metadata commit
(``VECDB_FAULT_COMPACT=abort``), leaves objects under a prefix no ``seg/`` key names and a
``gcintent/`` of its dead incarnation; the server started again collects them (vecdb.coord.gc), and
every row is still there exactly once."""

from __future__ import annotations

import json

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import free_port, server_settings, start_vecdb, stop_processes, wait_until
from vecdb.storage.backends import open_backends

DIM = 8
GC_ENV = {"VECDB_GC__INTERVAL": "0.3", "VECDB_GC__GRACE": "1"}


def _rows(ids) -> list[dict]:
    vecs = np.random.default_rng(len(ids)).random((len(ids), DIM), dtype=np.float32)
    return [{"id": int(i), "vector": vecs[k]} for k, i in enumerate(ids)]


def test_a_compaction_killed_before_its_commit_leaves_garbage_the_next_server_collects(tmp_path, remote_storage):
    storage = dict(remote_storage(), session_ttl=2)
    probe = open_backends(server_settings(tmp_path / "probe", None, storage).storage)
    port = free_port()
    procs = []
    c = None
    try:
        procs.append(start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "a",
                                 storage=storage, env={"VECDB_FAULT_COMPACT": "abort", **GC_ENV}))
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.create_collection("docs", dimension=DIM, metric_type="L2", num_shards=1)
        c.insert("docs", _rows(range(0, 100)))
        c.flush("docs")
        c.insert("docs", _rows(range(50, 150)))  # 50 keys upserted as plain inserts: dead rows to compact away
        c.flush("docs")
        try:
            c.compact("docs")
        except Exception:  # noqa: BLE001 (the server may die before it answers)
            pass
        assert procs[0].wait(60) != 0, procs[0].failure("did not abort inside the compaction")
        c.close()
        c = None
        intents = [(k[len("gcintent/"):], json.loads(v)) for k, v in probe.meta.scan("gcintent/")]
        assert intents, "the killed compaction left its intent"
        left = [p for p, _ in intents if probe.objects.list(p)]
        assert left, "the killed compaction left objects under its intent's prefix"
        registered = {json.loads(v)["prefix"] for _, v in probe.meta.scan("seg/")}
        assert not registered & set(left)

        procs.append(start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "b",
                                 storage=storage, env={"VECDB_FAULT_COMPACT": None, **GC_ENV}))
        waited = wait_until(lambda: not probe.meta.scan("gcintent/") and not any(probe.objects.list(p) for p in left),
                            60, "the next server collects the killed compaction's objects and intent")
        print(f"the killed compaction's {len(left)} prefixes collected {waited:.1f} s after the restart was ready")
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.load_collection("docs")
        rows = c.query("docs", "id >= 0", output_fields=["id"], limit=1000)
        assert sorted(r["id"] for r in rows) == list(range(150))
        assert {json.loads(v)["prefix"] for _, v in probe.meta.scan("seg/")}  # its segments still there
    finally:
        if c is not None:
            c.close()
        stop_processes(procs)
        probe.close()

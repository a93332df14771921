"""Compaction through pymilvus (client.compact, get_compaction_state, get_compaction_plans) on every
deployment, and a data node killed inside a compaction (VECDB_FAULT_COMPACT=abort: objects written,
metadata not committed) on real processes over NATS, etcd and S3."""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, server_settings, start_cluster, start_vecdb, stop_processes, wait_until
from tests.e2e._helpers import reader_view
from vecdb.storage.backends import open_meta, open_objects

DIM = 8



def _segments(c: MilvusClient, name: str) -> list:
    return list(c._get_connection().get_persistent_segment_infos(name))


def _write(c: MilvusClient, name: str, vecs: np.ndarray) -> None:
    """Five flushed segments with deletes and upserts among them."""
    for lo in range(0, 1000, 200):
        c.insert(name, [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(lo, lo + 200)])
        c.flush(name)
    c.delete(name, ids=list(range(0, 300, 3)))  # 100 deleted
    c.upsert(name, [{"id": i, "vector": vecs[i + 600], "tag": f"v2-{i}"} for i in range(500, 600)])  # 100 upserted
    c.flush(name)


def test_compact_keeps_every_answer_and_leaves_no_dead_row(client, name):
    c = client
    c.create_collection(name, dimension=DIM, metric_type="L2", num_shards=2)
    vecs = np.random.default_rng(3).random((1200, DIM), dtype=np.float32)
    _write(c, name, vecs)
    before = reader_view(c, name, vecs)
    assert before[0] == 900 and len(_segments(c, name)) == 12  # six flushes of two channels
    merge = c.compact(name)  # (the test server compacts only when asked)
    wait_until(lambda: c.get_compaction_state(merge) == "Completed", 60, "compaction completed")
    assert sorted(len(p.sources) for p in c.get_compaction_plans(merge).plans) == [6, 6]  # one per channel
    segs = _segments(c, name)
    assert len(segs) == 2 and sum(s.num_rows for s in segs) == 900  # deleted and superseded rows gone
    assert reader_view(c, name, vecs) == before
    c.delete(name, ids=[1, 2, 4, 5, 7])  # a dead share below 0.2: only a manual compaction rewrites it
    c.flush(name)
    before = reader_view(c, name, vecs)
    assert before[0] == 895
    compaction_id = c.compact(name)
    assert isinstance(compaction_id, int) and compaction_id > 0
    wait_until(lambda: c.get_compaction_state(compaction_id) == "Completed", 60, "compaction completed")
    plans = c.get_compaction_plans(compaction_id)
    assert plans.state.name == "Completed"
    segs = _segments(c, name)
    assert plans.plans and {p.target for p in plans.plans} <= {s.segmentID for s in segs}
    # every deleted and superseded row is gone from the persisted segments
    assert sum(s.num_rows for s in segs) == 895
    assert len(segs) <= 2  # small segments merged: one per channel
    assert reader_view(c, name, vecs) == before
    # the data stays readable after a release and a load from the compacted segments
    c.release_collection(name)
    c.load_collection(name)
    assert reader_view(c, name, vecs) == before
    c.insert(name, [{"id": 5000, "vector": vecs[0], "tag": "new"}])  # and writes go on
    assert reader_view(c, name, vecs)[0] == 896



def test_unknown_compaction_id_reads_as_completed(client):
    # Milvus's data coordinator: no task with that id means nothing is executing
    assert client.get_compaction_state(987654321) == "Completed"
    assert client.get_compaction_plans(987654321).plans == []


@pytest.mark.parametrize("trigger", ["automatic", "manual"])
def test_data_node_killed_inside_a_compaction(tmp_path, remote_storage, trigger):
    """dn0 aborts inside its first compaction (after the merged segment's objects are written, before
    the metadata commit): the automatic one after a persist, or client.compact's. Every acknowledged
    row stays searchable once, and dn1, taking its channel over, completes the compaction (the
    client's request too: Executing until then); the aborted attempt's objects are orphans with a
    dead intent."""
    storage = dict(remote_storage(), session_ttl=2)
    fast = {"VECDB_COMPACTION__INTERVAL": "0.5", "VECDB_COMPACTION__ENABLED": str(trigger == "automatic").lower()}
    with start_cluster(storage, tmp_path, env={"dn0": {**fast, "VECDB_FAULT_COMPACT": "abort"}}) as cluster, \
            contextlib.closing(open_objects(server_settings(tmp_path / "probe", None, storage).storage)) as objects:
        procs, meta, c = cluster.procs, cluster.meta, cluster.client()
        c.create_collection("docs", dimension=DIM, metric_type="L2", num_shards=1)
        vecs = np.random.default_rng(0).random((1200, DIM), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(200)])
        c.flush("docs")  # one segment: nothing to compact yet
        c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(200, 400)])
        c.delete("docs", ids=list(range(0, 100, 2)))
        c.upsert("docs", [{"id": i, "vector": vecs[i + 1000], "tag": f"v2-{i}"} for i in range(100, 150)])
        c.flush("docs")  # persisted; then the automatic check merges the two segments: dn0 aborts in it
        requested = c.compact("docs") if trigger == "manual" else None  # else dn0 aborts in it
        assert procs["dn0"].wait(30) != 0
        sources = sorted(json.loads(v)["segment_id"] for _, v in meta.scan("seg/"))
        intents = meta.scan("gcintent/")
        assert len(intents) == 1, "the aborted compaction's intent stays"
        orphan = intents[0][0][len("gcintent/"):]
        assert objects.list(orphan), "its objects were written"
        assert not any(json.loads(v)["prefix"] == orphan for _, v in meta.scan("seg/")), "but never registered"
        assert len(meta.scan("seg/")) == 2 and meta.scan("compacted/") == []
        before = reader_view(c, "docs", vecs)
        assert before[0] == 350
        if requested is not None:
            assert c.get_compaction_state(requested) == "Executing"  # until the channel's next owner is done

        cluster.start("dn1", env=fast)
        started = time.monotonic()
        wait_until(lambda: len(meta.scan("seg/")) == 1, 60, "dn1 completed the merge")
        print(f"compaction completed by dn1 {time.monotonic() - started:.1f} s after it started (session ttl 2 s)")
        (seg,) = [json.loads(v) for _, v in meta.scan("seg/")]
        assert seg["by"] == "dn1" and seg["num_rows"] == 350 and len(seg["from"]) == 2
        assert len(meta.scan("compacted/")) == 1
        if requested is not None:
            wait_until(lambda: c.get_compaction_state(requested) == "Completed", 30, "the request completed")
            (plan,) = c.get_compaction_plans(requested).plans
            assert sorted(plan.sources) == sources and plan.target == seg["segment_id"]
        compaction_id = c.compact("docs")  # nothing left to do: completes with no plan
        wait_until(lambda: c.get_compaction_state(compaction_id) == "Completed", 30, "manual compaction")
        assert reader_view(c, "docs", vecs) == before
        # a query node loading afresh reads the compacted segment: every row once
        c.release_collection("docs")
        c.load_collection("docs")
        assert reader_view(c, "docs", vecs) == before


def test_standalone_restarted_after_a_crash_inside_a_compaction_completes_it(tmp_path, remote_storage):
    """A standalone server aborts inside client.compact's compaction; the next server on the same
    storage carries the request out as it starts: Completed, one plan, every row once."""
    storage = dict(remote_storage(), session_ttl=2)
    meta = open_meta(server_settings(tmp_path / "probe", None, storage).storage)
    port = free_port()
    procs = []
    c = None
    try:
        procs.append(start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "a",
                                 storage=storage, env={"VECDB_FAULT_COMPACT": "abort"}))
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.create_collection("docs", dimension=DIM, metric_type="L2", num_shards=1)
        vecs = np.random.default_rng(1).random((300, DIM), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(100)])
        c.flush("docs")
        c.insert("docs", [{"id": i, "vector": vecs[i + 100], "tag": f"v2-{i}"} for i in range(50, 150)])
        c.flush("docs")
        before = reader_view(c, "docs", vecs)
        requested = c.compact("docs")  # answered before the background compaction aborts the server
        assert procs[0].wait(60) != 0, procs[0].failure("did not abort inside the compaction")
        c.close()
        c = None
        assert len(meta.scan("seg/")) == 2

        procs.append(start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "b",
                                 storage=storage, env={"VECDB_FAULT_COMPACT": None}))
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        wait_until(lambda: c.get_compaction_state(requested) == "Completed", 30, "the restarted server completes it")
        (plan,) = c.get_compaction_plans(requested).plans
        (seg,) = [json.loads(v) for _, v in meta.scan("seg/")]
        assert plan.target == seg["segment_id"] and len(plan.sources) == 2 and seg["num_rows"] == 150
        c.load_collection("docs")
        assert reader_view(c, "docs", vecs) == before
    finally:
        if c is not None:
            c.close()
        stop_processes(procs)
        meta.close()

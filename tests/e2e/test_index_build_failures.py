"""Index builds that fail, or kill their process, never take the server down for good.

A failed build is recorded (vecdb.coord.index_builds): DescribeIndex / GetIndexState say
``Failed`` with the reason, the segment is searched exactly, and no restart runs that build
again until the index is dropped and created anew. A build that aborts the process (as FAISS
did on a vector of 1e20 inside k-means) leaves a record that the next start reads as a crash:
the server comes up instead of crash-looping.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from tests.conftest import free_port, start_vecdb
from tests.e2e._helpers import assert_search_matches, float_schema, raw_stub, serving
from vecdb.coord.index_builds import FAULT_ENV

DIM = 8
ROWS = 2000


def _index_state(uri: str, name: str):
    """DescribeIndex's description of ``vec``, once GetIndexState agrees with it (a build may end between
    the two calls)."""
    with raw_stub(uri) as stub:
        for _ in range(50):
            desc = stub.DescribeIndex(milvus_pb2.DescribeIndexRequest(collection_name=name, field_name="vec"))
            state = stub.GetIndexState(milvus_pb2.GetIndexStateRequest(collection_name=name, field_name="vec"))
            assert desc.status.code == 0 and state.status.code == 0
            d = desc.index_descriptions[0]
            if (d.state, d.index_state_fail_reason) == (state.state, state.fail_reason):
                return d
            time.sleep(0.1)
    raise AssertionError(f"DescribeIndex says {d}, GetIndexState {state}")


def _fill(client: MilvusClient, name: str, vectors: np.ndarray) -> None:
    client.create_collection(name, schema=float_schema(DIM))
    client.insert(name, [{"id": i, "vec": v} for i, v in enumerate(vectors)])
    client.flush(name)


def _create_index(client: MilvusClient, name: str) -> None:
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
    client.create_index(name, idx, sync=False)


def _wait_state(uri: str, name: str, want: int, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        d = _index_state(uri, name)
        if d.state == want or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def _assert_exact(client: MilvusClient, name: str, vectors: np.ndarray) -> None:
    queries = vectors[:5] + 0.01
    hits = client.search(name, queries.tolist(), limit=10, search_params={"params": {"nprobe": 1}})
    assert_search_matches(hits, np.arange(len(vectors)), vectors, queries, "L2", 10)


def test_failed_build_is_reported_served_exactly_and_not_retried(tmp_path, monkeypatch):
    vectors = np.random.default_rng(1).standard_normal((ROWS, DIM)).astype(np.float32)
    port = free_port()
    monkeypatch.setenv(FAULT_ENV, "raise")
    with serving(tmp_path, port) as (uri, client):
        _fill(client, "c", vectors)
        _create_index(client, "c")
        d = _wait_state(uri, "c", common_pb2.Failed)
        assert d.state == common_pb2.Failed
        assert "failed on purpose" in d.index_state_fail_reason and "searched exactly" in d.index_state_fail_reason
        assert (d.indexed_rows, d.total_rows, d.pending_index_rows) == (0, ROWS, 0)
        client.load_collection("c")
        _assert_exact(client, "c", vectors)  # nprobe=1 of 8 lists could not find these: it is exact
        assert _index_state(uri, "c").state == common_pb2.Failed

    monkeypatch.delenv(FAULT_ENV)  # the cause is gone, but nothing changed: the build is not retried
    with serving(tmp_path, port) as (uri, client):
        assert _index_state(uri, "c").state == common_pb2.Failed
        _assert_exact(client, "c", vectors)
        # a change (the index dropped and created again) builds afresh
        client.release_collection("c")
        client.drop_index("c", "vec")
        _create_index(client, "c")
        d = _wait_state(uri, "c", common_pb2.Finished)
        assert (d.state, d.indexed_rows, d.index_state_fail_reason) == (common_pb2.Finished, ROWS, "")
        client.load_collection("c")
        hits = client.search("c", vectors[:1].tolist(), limit=1, search_params={"params": {"nprobe": 8}})
        assert hits[0][0]["id"] == 0


def _spawn(data_dir, port: int, fault: str | None) -> subprocess.Popen:
    """A standalone server process on ``data_dir``, with the build fault ``fault`` armed (or none)."""
    return start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data_dir,
                       env={FAULT_ENV: fault})


def test_a_build_that_kills_the_process_is_not_run_again(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    vectors = np.random.default_rng(2).standard_normal((ROWS, DIM)).astype(np.float32)
    procs = []
    try:
        procs.append(_spawn(tmp_path, port, "abort"))
        client = MilvusClient(uri=uri)
        _fill(client, "c", vectors)
        with contextlib.suppress(MilvusException):  # the process may die before it answers
            _create_index(client, "c")  # the background build aborts the process
        assert procs[-1].wait(timeout=60) != 0
        client.close()

        # the same fault is still armed: a retry would kill the new process too
        for _ in range(2):
            procs.append(_spawn(tmp_path, port, "abort"))
            client = MilvusClient(uri=uri)
            d = _index_state(uri, "c")
            assert d.state == common_pb2.Failed and "stopped while building" in d.index_state_fail_reason
            client.load_collection("c")
            _assert_exact(client, "c", vectors)
            time.sleep(0.5)
            assert procs[-1].poll() is None, "the server died again"
            client.close()
            procs[-1].terminate()
            assert procs[-1].wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_stored_vectors_that_overflow_float32_fail_the_build_not_the_server(tmp_path, monkeypatch):
    """A row of 1e20 made FAISS's k-means abort the process at every load. Inserts refuse such rows
    now; one stored before that check (here let in by switching the insert check off) makes the
    build fail with the reason, and the collection is searched exactly."""
    vectors = np.random.default_rng(3).standard_normal((ROWS, DIM)).astype(np.float32)
    vectors[7, 0] = 1e20
    monkeypatch.setattr("vecdb.proxy.fielddata.check_float_vectors", lambda *a, **k: None)
    port = free_port()
    with serving(tmp_path, port) as (uri, client):
        _fill(client, "c", vectors)
        _create_index(client, "c")
        client.load_collection("c")
        d = _wait_state(uri, "c", common_pb2.Failed)
        assert d.state == common_pb2.Failed and "squared L2 norm above 1e+37" in d.index_state_fail_reason
        _assert_exact(client, "c", vectors)
        assert client.query("c", "id == 7", output_fields=["vec"])[0]["vec"][0] == pytest.approx(1e20)
    with serving(tmp_path, port) as (uri, client):  # the restart that used to crash-loop
        assert _index_state(uri, "c").state == common_pb2.Failed
        assert client.query("c", "", output_fields=["count(*)"])[0]["count(*)"] == ROWS

"""Durable jobs (vecdb.jobs) through pymilvus: a bulk import whose runner dies mid-way (the crash tests'
switch ``VECDB_FAULT_IMPORT=abort:2`` SIGKILLs it once the job's second batch is written, before the
third is recorded) is taken over and completed, its rows exactly once: by the same standalone server
started again (auto_id and user keys), and in a cluster by the other proxy. A key written twice counts
once in growing and sealed data (why a rewritten batch replaces); an external collection's refresh cut
short in the middle of a file is taken over without rows twice. (A restore's takeover:
tests/unit/test_restore_takeover.py.)"""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from pymilvus import BulkInsertState, CollectionSchema, DataType, FieldSchema, MilvusClient, connections, utility

from tests.conftest import LocalCluster, free_port, start_vecdb

DIM = 4
FILES, ROWS = 4, 50  # one batch per file: the fault hits after two
ENV = {"VECDB_FAULT_IMPORT": "abort:2", "VECDB_JOBS_HEARTBEAT_S": "0.5"}


def _collection(client: MilvusClient, name: str, auto_id: bool) -> None:
    schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True, auto_id=auto_id),
                               FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM),
                               FieldSchema("val", DataType.INT64)])
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


def _file(i: int, auto_id: bool) -> bytes:
    vecs = np.random.default_rng(i).random((ROWS, DIM), dtype=np.float32)
    rows = [{"vec": vecs[j].tolist(), "val": i * ROWS + j, **({} if auto_id else {"id": i * ROWS + j})}
            for j in range(ROWS)]
    return json.dumps({"rows": rows}).encode()


def _wait(job: int, alias: str, timeout: float = 90) -> BulkInsertState:
    deadline = time.monotonic() + timeout
    while True:
        try:
            st = utility.get_bulk_insert_state(job, using=alias)
            if st.state in (BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed):
                return st
        except Exception:  # noqa: BLE001 - the proxy asked may be the one that died
            pass
        assert time.monotonic() < deadline, "the import did not end"
        time.sleep(0.2)


def _check_rows(client: MilvusClient, name: str, auto_id: bool) -> None:
    total = FILES * ROWS
    n = client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    assert n == total
    rows = client.query(name, "val >= 0", output_fields=["id", "val"], limit=total + 10, consistency_level="Strong")
    ids, vals = [r["id"] for r in rows], [r["val"] for r in rows]
    assert len(set(ids)) == len(ids) == total  # no primary key twice
    assert sorted(vals) == list(range(total))  # every row of the files once
    if not auto_id:
        assert sorted(ids) == list(range(total))


@pytest.mark.parametrize("auto_id", [False, True], ids=["user-keys", "auto-id"])
def test_standalone_killed_mid_import_resumes_it_on_restart(tmp_path, auto_id):
    paths = []
    for i in range(FILES):
        p = tmp_path / f"part{i}.json"
        p.write_bytes(_file(i, auto_id))
        paths.append(str(p))
    port, data = free_port(), tmp_path / "data"
    srv = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data, env=ENV)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        _collection(client, "resumed", auto_id)
        connections.connect("takeover", uri=f"http://127.0.0.1:{port}")
        job = utility.do_bulk_insert("resumed", files=paths, using="takeover")
        assert srv.wait(60) == -9, srv.failure("the fault switch did not kill it")
        connections.disconnect("takeover")
        client.close()
    finally:
        srv.stop()
    srv = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data, env=ENV)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        connections.connect("takeover", uri=f"http://127.0.0.1:{port}")
        st = _wait(job, "takeover")
        assert st.state == BulkInsertState.ImportCompleted, st.infos
        assert st.row_count == FILES * ROWS
        _check_rows(client, "resumed", auto_id)
        assert "took over import job" in srv.output()
        connections.disconnect("takeover")
        client.close()
    finally:
        assert srv.stop() == 0, srv.failure("did not stop cleanly")


def test_cluster_proxy_killed_mid_import_another_proxy_completes_it(remote_storage, tmp_path, monkeypatch):
    from vecdb.config import StorageSettings
    from vecdb.storage.backends import open_objects

    storage = remote_storage()
    objects = open_objects(StorageSettings(**storage, data_dir=str(tmp_path / "objects")))
    prefix = f"takeover-{uuid.uuid4().hex[:8]}"
    for i in range(FILES):
        objects.put(f"{prefix}/part{i}.json", _file(i, True))
    objects.close()
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cluster = LocalCluster(tmp_path / "cluster", storage, proxies=2, querynodes=1)
    try:
        a, b = (MilvusClient(uri=f"http://127.0.0.1:{p}") for p in cluster.ports)
        _collection(a, "taken_over", True)
        connections.connect("proxy0", uri=f"http://127.0.0.1:{cluster.ports[0]}")
        connections.connect("proxy1", uri=f"http://127.0.0.1:{cluster.ports[1]}")
        job = utility.do_bulk_insert("taken_over", files=[f"{prefix}/part{i}.json" for i in range(FILES)],
                                     using="proxy0")
        dead = cluster.procs.pop("proxy0")
        assert dead.wait(60) == -9, dead.failure("the fault switch did not kill it")
        st = _wait(job, "proxy1", timeout=120)  # proxy0's session runs out, then proxy1's sweep claims the job
        assert st.state == BulkInsertState.ImportCompleted, st.infos
        assert st.row_count == FILES * ROWS
        _check_rows(b, "taken_over", True)
        assert "took over import job" in cluster.procs["proxy1"].output()
        for alias in ("proxy0", "proxy1"):
            connections.disconnect(alias)
        a.close()
        b.close()
    finally:
        cluster.stop(check=False)


def test_a_key_written_twice_counts_once_in_growing_and_sealed_data(tmp_path):
    """What makes a rewritten batch replace, not duplicate: two rows with one primary key resolve to the
    one with the later timestamp, whether both are growing, one sealed and one growing, or both sealed."""
    from tests.conftest import start_standalone

    srv = start_standalone(str(tmp_path / "data"))
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
        _collection(client, "twice", False)

        def rows(pks, val):
            return [{"id": int(pk), "vec": [float(pk)] * DIM, "val": val} for pk in pks]

        def state():
            n = client.query("twice", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
            got = client.query("twice", "id >= 0", output_fields=["val"], limit=1000, consistency_level="Strong")
            return n, {r["id"]: r["val"] for r in got}

        client.insert("twice", rows(range(100), 0))
        client.insert("twice", rows(range(90, 100), 1))  # both growing
        n, vals = state()
        assert n == 100 and vals[95] == 1 and vals[5] == 0
        client.flush("twice")
        client.insert("twice", rows(range(50, 150), 2))  # sealed, then growing
        n, vals = state()
        assert n == 150 and vals[60] == 2 and vals[95] == 2 and vals[10] == 0
        client.flush("twice")  # both sealed
        n, vals = state()
        assert n == 150 and vals[60] == 2 and vals[149] == 2 and vals[10] == 0
        client.close()
    finally:
        srv.stop()


class _Died(BaseException):
    """The refresh's runner ends here (its own error handling does not run)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the runner's _Died
def test_a_refresh_cut_short_mid_file_is_taken_over_without_rows_twice(tmp_path, monkeypatch, s3_server):
    """In-process standalone: a refresh's runner ends while it writes a file (after that file's first batch);
    the job, its record made another process's and quiet, is taken over by the server's sweep, which
    reads that file again and writes it under the keys recorded for it: every row of the files once, even
    when the old runner's batch lands after the takeover."""
    import boto3

    from tests.conftest import start_standalone
    from tests.e2e.test_external_collections_e2e import _count, _put, _schema, _source, _spec
    from vecdb import importer
    from vecdb.proxy.rpc_dml import DmlRpcs

    monkeypatch.setenv("VECDB_JOBS_HEARTBEAT_S", "0.2")
    monkeypatch.setattr(importer, "JSON_BATCH_ROWS", 8)  # b.parquet's 20 rows: three batches
    s3 = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    bucket = "takeover-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    _put(s3, bucket, "data/a.parquet", 0, 30)
    srv = start_standalone(str(tmp_path / "data"))
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
        client.create_collection("ext", schema=_schema(client, _source(s3_server, bucket), _spec()))
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="FLAT", metric_type="L2")
        client.create_index("ext", idx)
        client.load_collection("ext")
        first = client.refresh_external_collection("ext")
        deadline = time.monotonic() + 60
        while client.get_refresh_external_collection_progress(first).state != "RefreshCompleted":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        _put(s3, bucket, "data/b.parquet", 100, 20)
        real, writes, died = DmlRpcs._write_rows, [], []

        def dies_in_the_second_batch(self, info, columns, n, partition):
            writes.append(n)
            if len(writes) == 2:
                died.append((self, info, columns, n, partition))
                raise _Died()
            return real(self, info, columns, n, partition)

        monkeypatch.setattr(DmlRpcs, "_write_rows", dies_in_the_second_batch)
        job = client.refresh_external_collection("ext")
        deadline = time.monotonic() + 30
        while len(writes) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        monkeypatch.setattr(DmlRpcs, "_write_rows", real)
        key = f"external/job/{job}"
        record = json.loads(srv.meta.get(key))
        assert record["state"] == 1  # in progress
        record.update(owner="a-process-that-ended", updated_ms=int(time.time() * 1000) - 120_000)
        srv.meta.put(key, json.dumps(record).encode())  # its heartbeat finds it taken over and stops
        deadline = time.monotonic() + 60
        while (info := client.get_refresh_external_collection_progress(job)).state != "RefreshCompleted":
            assert info.state != "RefreshFailed", info.reason
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert json.loads(srv.meta.get(key))["attempts"] == 1
        assert _count(client, "ext") == 50
        rows = client.query("ext", filter="doc_id >= 0", output_fields=["doc_id"], limit=100,
                            consistency_level="Strong")
        assert sorted(r["doc_id"] for r in rows) == list(range(30)) + list(range(100, 120))
        # the old runner, stalled rather than dead, writes its batch late: under the keys the takeover
        # wrote the same rows with, so it replaces them and adds none
        real(*died[0])
        assert _count(client, "ext") == 50
        rows = client.query("ext", filter="doc_id >= 0", output_fields=["doc_id"], limit=100,
                            consistency_level="Strong")
        assert sorted(r["doc_id"] for r in rows) == list(range(30)) + list(range(100, 120))
        client.close()
    finally:
        srv.stop()

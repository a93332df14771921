"""Bulk import (vecdb.importer, vecdb.proxy.rpc_import) through pymilvus on every deployment: JSON
and NumPy files in the object store imported (counts, search and query exact), states to
Completed with progress, a bad file failing the job with the row and the reason and importing
nothing, ListImportTasks, and the REST v2 jobs/import endpoints."""

from __future__ import annotations

import io
import json
import time
import uuid

import numpy as np
import pytest
from pymilvus import BulkInsertState, CollectionSchema, DataType, FieldSchema, MilvusClient, utility

from tests.e2e._helpers import orm  # noqa: F401 - fixture
from tests.e2e.test_rest import post

DIM = 8


@pytest.fixture(scope="module")
def objects(server, tmp_path_factory):
    """The server's object store, where the files to import go."""
    if hasattr(server, "objects"):  # a Standalone
        yield server.objects
        return
    from vecdb.config import StorageSettings
    from vecdb.storage.backends import open_objects

    store = open_objects(StorageSettings(**server.storage, data_dir=str(tmp_path_factory.mktemp("import-s3"))))
    yield store
    store.close()


def _wait(job_id: int, orm_alias: str, timeout: float = 60) -> BulkInsertState:
    deadline = time.monotonic() + timeout
    while True:
        st = utility.get_bulk_insert_state(job_id, using=orm_alias)
        if st.state in (BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed) or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def _collection(client: MilvusClient, name: str, auto_id: bool = False) -> None:
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=auto_id),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM),
        FieldSchema("tag", DataType.VARCHAR, max_length=16),
        FieldSchema("score", DataType.FLOAT, nullable=True),
    ], enable_dynamic_field=True)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _rows(n: int, start: int = 0) -> tuple[list[dict], np.ndarray]:
    vecs = np.random.default_rng(start).random((n, DIM), dtype=np.float32)
    rows = [{"id": start + i, "vec": vecs[i].tolist(), "tag": f"t{(start + i) % 5}",
             "score": None if i % 4 == 0 else float(i), "extra": i * 2} for i in range(n)]
    return rows, vecs


def test_json_import_completes_and_rows_are_exact(client, name, orm, objects):  # noqa: F811
    _collection(client, name)
    rows, vecs = _rows(1500)
    prefix = f"imports/{uuid.uuid4().hex}"
    objects.put(f"{prefix}/a.json", json.dumps({"rows": rows[:1000]}).encode())
    objects.put(f"{prefix}/b.json", json.dumps(rows[1000:]).encode())  # a top-level list, as newer writers do
    job = utility.do_bulk_insert(name, files=[f"{prefix}/a.json", f"{prefix}/b.json"], using=orm)
    st = _wait(job, orm)
    assert st.state == BulkInsertState.ImportCompleted, st
    assert st.row_count == 1500 and st.progress == 100 and st.infos["failed_reason"] == ""
    assert st.infos["collection"] == name and st.files == f"{prefix}/a.json,{prefix}/b.json"
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 1500
    hits = client.search(name, [vecs[1234].tolist()], limit=1, output_fields=["tag", "extra", "score"],
                         consistency_level="Strong")[0]
    assert hits[0]["id"] == 1234 and hits[0]["entity"]["tag"] == "t4" and hits[0]["entity"]["extra"] == 2468
    assert hits[0]["entity"]["score"] == pytest.approx(1234.0)
    got = client.query(name, "id in [0, 1, 1004]", output_fields=["score", "tag"], consistency_level="Strong")
    assert {r["id"]: r["score"] for r in got} == {0: None, 1: 1.0, 1004: None}
    tasks = utility.list_bulk_insert_tasks(collection_name=name, using=orm)
    assert [t.task_id for t in tasks] == [job] and tasks[0].state == BulkInsertState.ImportCompleted


def test_numpy_import_with_auto_id_and_dynamic_field(client, name, orm, objects):  # noqa: F811
    _collection(client, name, auto_id=True)
    n = 2000
    vecs = np.random.default_rng(7).random((n, DIM), dtype=np.float32)
    prefix = f"imports/{uuid.uuid4().hex}"
    files = {"vec.npy": vecs, "tag": np.array([f"t{i % 5}" for i in range(n)]),
             "$meta.npy": np.array([json.dumps({"k": i}) for i in range(n)])}
    for fname, arr in files.items():
        objects.put(f"{prefix}/{fname if fname.endswith('.npy') else fname + '.npy'}", _npy(arr))
    paths = [f"{prefix}/vec.npy", f"{prefix}/tag.npy", f"{prefix}/$meta.npy"]
    objects.put(f"{prefix}/id.npy", _npy(np.arange(n)))  # the auto-generated primary key given: refused
    st = _wait(utility.do_bulk_insert(name, files=paths + [f"{prefix}/id.npy"], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed and "auto-generated" in st.failed_reason, st.failed_reason
    st = _wait(utility.do_bulk_insert(name, files=paths, using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted and st.row_count == n, st
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == n
    hit = client.search(name, [vecs[777].tolist()], limit=1, output_fields=["tag", "k", "score"],
                        consistency_level="Strong")[0][0]
    assert hit["distance"] == pytest.approx(0.0, abs=1e-5)
    assert hit["entity"]["tag"] == "t2" and hit["entity"]["k"] == 777 and hit["entity"]["score"] is None
    ids = [r["id"] for r in client.query(name, "tag == 't0'", output_fields=["id"], consistency_level="Strong")]
    assert len(ids) == n // 5 and len(set(ids)) == len(ids)  # auto_id keys, all distinct


def test_a_bad_file_fails_the_job_and_imports_nothing(client, name, orm, objects):  # noqa: F811
    _collection(client, name)
    rows, _ = _rows(50)
    rows[37]["vec"] = rows[37]["vec"][:5]  # a 5-dim vector in an 8-dim field
    prefix = f"imports/{uuid.uuid4().hex}"
    objects.put(f"{prefix}/good.json", json.dumps({"rows": _rows(20, 100)[0]}).encode())
    objects.put(f"{prefix}/bad.json", json.dumps({"rows": rows}).encode())
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/good.json", f"{prefix}/bad.json"], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed and st.row_count == 0, st
    assert "bad.json" in st.failed_reason and "row 37" in st.failed_reason, st.failed_reason
    # NumPy: files of different lengths; a missing file
    objects.put(f"{prefix}/id.npy", _npy(np.arange(10)))
    objects.put(f"{prefix}/vec.npy", _npy(np.zeros((9, DIM), np.float32)))
    objects.put(f"{prefix}/tag.npy", _npy(np.array(["x"] * 10)))
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/{f}.npy" for f in ("id", "vec", "tag")], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed and "9 rows" in st.failed_reason, st.failed_reason
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/nothere.json"], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed and "does not exist" in st.failed_reason
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 0
    with pytest.raises(Exception, match="unexpected file type"):
        utility.do_bulk_insert(name, files=[f"{prefix}/x.csv2"], using=orm)
    with pytest.raises(Exception, match="collection not found"):
        utility.do_bulk_insert("no_such_" + name, files=[f"{prefix}/good.json"], using=orm)
    assert len(utility.list_bulk_insert_tasks(collection_name=name, using=orm)) == 3


def _pymilvus_bulk_import():
    """pymilvus.bulk_writer's REST client functions (bulk_import, get_import_progress, list_import_jobs);
    loaded from its file: the package itself needs pymilvus[bulk_writer]'s extras (pyarrow, minio, ...)."""
    import importlib.util
    from pathlib import Path

    import pymilvus

    path = Path(pymilvus.__file__).parent / "bulk_writer" / "bulk_import.py"
    spec = importlib.util.spec_from_file_location("pymilvus_bulk_import", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pymilvus_bulk_writer_rest_functions(server, client, name, objects):
    """The REST client that pymilvus.bulk_writer ships, on files as its LocalBulkWriter writes them
    (JSON {"rows": [...]}, NumPy <field>.npy with $meta.npy JSON strings)."""
    bi = _pymilvus_bulk_import()
    url = f"http://127.0.0.1:{server.http_ports[0]}"
    _collection(client, name)
    rows, vecs = _rows(200)
    prefix = f"imports/{uuid.uuid4().hex}"
    objects.put(f"{prefix}/1.json", json.dumps({"rows": rows[:100]}, indent=2).encode())
    for field, arr in {"id": np.arange(100, 200), "vec": vecs[100:], "tag": np.array([r["tag"] for r in rows[100:]]),
                       "score": np.arange(100, 200, dtype=np.float32),
                       "$meta": np.array([json.dumps({"extra": r["extra"]}) for r in rows[100:]])}.items():
        objects.put(f"{prefix}/2/{field}.npy", _npy(arr))
    npy = [f"{prefix}/2/{f}.npy" for f in ("id", "vec", "tag", "score", "$meta")]
    job_id = bi.bulk_import(url=url, collection_name=name, files=[[f"{prefix}/1.json"], npy]).json()["data"]["jobId"]
    deadline = time.monotonic() + 60
    while (progress := bi.get_import_progress(url=url, job_id=job_id).json()["data"])["state"] not in (
            "Completed", "Failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert progress["state"] == "Completed" and progress["importedRows"] == 200, progress["reason"]
    records = bi.list_import_jobs(url=url, collection_name=name).json()["data"]["records"]
    assert [(r["jobId"], r["state"]) for r in records] == [(job_id, "Completed")]
    got = client.query(name, "id in [5, 150]", output_fields=["vec", "tag", "score", "extra"],
                       consistency_level="Strong")
    by_id = {r["id"]: r for r in got}
    assert by_id[5]["tag"] == "t0" and by_id[5]["extra"] == 10 and by_id[5]["score"] == 5.0
    assert by_id[150]["tag"] == "t0" and by_id[150]["extra"] == 300 and by_id[150]["score"] == 150.0
    np.testing.assert_allclose(by_id[150]["vec"], vecs[150], rtol=1e-6)
    with pytest.raises(Exception, match="does not exist"):
        bi.get_import_progress(url=url, job_id="1")


def test_rest_import_jobs(server, client, name, objects):
    port = server.http_ports[0]
    _collection(client, name)
    rows, vecs = _rows(300)
    key = f"imports/{uuid.uuid4().hex}/rows.json"
    objects.put(key, json.dumps({"rows": rows}).encode())
    status, body = post(port, "jobs/import/create", {"collectionName": name, "files": [[key]]})
    assert status == 200 and body["code"] == 0, body
    job_id = body["data"]["jobId"]
    deadline = time.monotonic() + 60
    while True:
        _, prog = post(port, "jobs/import/get_progress", {"jobId": job_id})
        assert prog["code"] == 0, prog
        if prog["data"]["state"] in ("Completed", "Failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    data = prog["data"]
    assert data["state"] == "Completed" and data["progress"] == 100 and data["importedRows"] == 300, data
    assert data["totalRows"] == 300 and data["collectionName"] == name and data["details"][0]["fileName"] == key
    _, desc = post(port, "jobs/import/describe", {"jobId": job_id})
    assert desc["data"]["state"] == "Completed"
    _, listed = post(port, "jobs/import/list", {"collectionName": name})
    assert [(r["jobId"], r["state"], r["progress"]) for r in listed["data"]["records"]] == [(job_id, "Completed", 100)]
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 300
    _, missing = post(port, "jobs/import/get_progress", {"jobId": "12345"})
    assert missing["code"] != 0 and "does not exist" in missing["message"]
    _, bad = post(port, "jobs/import/create", {"collectionName": name, "files": []})
    assert bad["code"] != 0


def test_jobs_and_imported_rows_survive_a_restart(tmp_path, monkeypatch):
    """Standalone: a finished job is still listed after a restart (the metadata store), the rows were
    sealed by the import's flush, and a local absolute path works on the embedded object store. The
    job holds no validated rows between its passes here (HOLD_BYTES 1): files are read again to write."""
    from pymilvus import connections

    from tests.conftest import start_standalone
    from vecdb import importer

    monkeypatch.setattr(importer, "HOLD_BYTES", 1)

    rows, vecs = _rows(300)
    local = tmp_path / "rows.json"
    local.write_text(json.dumps({"rows": rows}))
    srv = start_standalone(str(tmp_path / "data"))
    port = srv.port
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        _collection(client, "imported")
        connections.connect("restart", uri=f"http://127.0.0.1:{port}")
        job = utility.do_bulk_insert("imported", files=[str(local)], using="restart")
        assert _wait(job, "restart").state == BulkInsertState.ImportCompleted
        connections.disconnect("restart")
        client.close()
    finally:
        srv.stop()
    srv = start_standalone(str(tmp_path / "data"), port=port)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        connections.connect("restart", uri=f"http://127.0.0.1:{port}")
        st = utility.get_bulk_insert_state(job, using="restart")
        assert st.state == BulkInsertState.ImportCompleted and st.row_count == 300
        assert [t.task_id for t in utility.list_bulk_insert_tasks(collection_name="imported", using="restart")] == [job]
        count = client.query("imported", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
        assert count == 300
        assert client.search("imported", [vecs[42].tolist()], limit=1)[0][0]["id"] == 42
        connections.disconnect("restart")
        client.close()
    finally:
        srv.stop()


def test_partitions_partition_keys_and_richer_types(client, name, orm, objects):  # noqa: F811
    """A named partition; a partition-key collection (rows hashed to its partitions, a partition name
    refused); ARRAY, JSON and sparse vector fields from JSON rows."""
    schema = CollectionSchema([
        FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=16),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM),
        FieldSchema("sp", DataType.SPARSE_FLOAT_VECTOR),
        FieldSchema("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4),
        FieldSchema("doc", DataType.JSON),
    ])
    client.create_collection(name, schema=schema)
    client.create_partition(name, "p1")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    idx.add_index("sp", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_index(name, idx)
    client.load_collection(name)
    rng = np.random.default_rng(3)
    rows = [{"id": f"k{i}", "vec": rng.random(DIM).tolist(),
             "sp": {str(i % 7): 1.0 + i, "100": 0.5} if i % 2 else {"indices": [i % 7, 100], "values": [1.0 + i, 0.5]},
             "tags": [i, i + 1], "doc": {"i": i, "even": i % 2 == 0}} for i in range(40)]
    key = f"imports/{uuid.uuid4().hex}/rich.json"
    objects.put(key, json.dumps({"rows": rows}).encode())
    st = _wait(utility.do_bulk_insert(name, files=[key], partition_name="p1", using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted and st.partition_name == "p1", st
    got = client.query(name, "array_contains(tags, 11) and doc['even'] == false", output_fields=["tags", "doc"],
                       partition_names=["p1"], consistency_level="Strong")
    assert [(r["id"], r["tags"], r["doc"]) for r in got] == [("k11", [11, 12], {"i": 11, "even": False})]
    assert client.query(name, "", output_fields=["count(*)"], partition_names=["_default"],
                        consistency_level="Strong")[0]["count(*)"] == 0
    hits = client.search(name, [{3: 1.0}], anns_field="sp", limit=3, search_params={"metric_type": "IP"},
                         consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == ["k38", "k31", "k24"]  # rows with dimension 3, by weight
    with pytest.raises(Exception, match="partition"):
        utility.do_bulk_insert(name, files=[key], partition_name="nope", using=orm)


def test_partition_key_collection(client, name, orm, objects):  # noqa: F811
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM),
        FieldSchema("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True),
    ], num_partitions=4)
    client.create_collection(name, schema=schema, num_partitions=4)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    prefix = f"imports/{uuid.uuid4().hex}"
    n = 400
    objects.put(f"{prefix}/id.npy", _npy(np.arange(n)))
    objects.put(f"{prefix}/vec.npy", _npy(np.random.default_rng(1).random((n, DIM), dtype=np.float32)))
    objects.put(f"{prefix}/tenant.npy", _npy(np.array([f"t{i % 10}" for i in range(n)])))
    files = [f"{prefix}/{f}.npy" for f in ("id", "vec", "tenant")]
    st = _wait(utility.do_bulk_insert(name, files=files, using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted, st
    for t in ("t0", "t7"):
        got = client.query(name, f"tenant == '{t}'", output_fields=["id"], consistency_level="Strong")
        assert sorted(r["id"] for r in got) == list(range(int(t[1:]), n, 10))
    with pytest.raises(Exception, match="partition key"):
        utility.do_bulk_insert(name, files=files, partition_name="_default", using=orm)


def test_int8_vectors_from_numpy(client, name, orm, objects):  # noqa: F811
    schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                               FieldSchema("v", DataType.INT8_VECTOR, dim=DIM)])
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
    client.create_index(name, idx)
    client.load_collection(name)
    vecs = np.random.default_rng(5).integers(-128, 128, (100, DIM), dtype=np.int8)
    prefix = f"imports/{uuid.uuid4().hex}"
    objects.put(f"{prefix}/id.npy", _npy(np.arange(100)))
    objects.put(f"{prefix}/v.npy", _npy(vecs))
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/id.npy", f"{prefix}/v.npy"], using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted, st
    got = client.query(name, "id in [3, 77]", output_fields=["v"], consistency_level="Strong")
    assert {r["id"]: np.frombuffer(r["v"][0], np.int8).tolist() if isinstance(r["v"], list) and
            isinstance(r["v"][0], bytes) else np.asarray(r["v"]).tolist() for r in got} == {
        3: vecs[3].tolist(), 77: vecs[77].tolist()}


def test_parquet_import_as_pymilvus_writers_write_it(client, name, orm, objects):  # noqa: F811
    """A Parquet file as pymilvus's BulkFileType.PARQUET writer lays it out (vectors as lists, nulls as
    nulls, the dynamic field as a JSON string column ``$meta``): rows exact; a file that is not Parquet
    fails the job with the reason and imports nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _collection(client, name)
    rows, vecs = _rows(700)
    table = pa.table({"id": pa.array([r["id"] for r in rows], pa.int64()),
                      "vec": pa.array([r["vec"] for r in rows], pa.list_(pa.float32())),
                      "tag": [r["tag"] for r in rows],
                      "score": pa.array([r["score"] for r in rows], pa.float32()),
                      "$meta": [json.dumps({"extra": r["extra"]}) for r in rows]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=256)
    prefix = f"imports/{uuid.uuid4().hex}"
    objects.put(f"{prefix}/rows.parquet", buf.getvalue())
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/rows.parquet"], using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted and st.row_count == 700, st
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 700
    hits = client.search(name, [vecs[345].tolist()], limit=1, output_fields=["tag", "extra", "score"],
                         consistency_level="Strong")[0]
    assert hits[0]["id"] == 345 and hits[0]["entity"]["tag"] == "t0" and hits[0]["entity"]["extra"] == 690
    assert hits[0]["entity"]["score"] == pytest.approx(345.0)  # row 345 of 700: a value (every 4th is null)
    got = client.query(name, "id in [0, 1, 4]", output_fields=["score"], consistency_level="Strong")
    assert {r["id"]: r["score"] for r in got} == {0: None, 1: 1.0, 4: None}
    objects.put(f"{prefix}/bad.parquet", b"not parquet at all")
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/bad.parquet"], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed and "failed to read the parquet file" in st.infos["failed_reason"]
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 700

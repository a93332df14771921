"""Bulk import edge cases found by a bug hunt, through pymilvus: a JSON row's ``$meta`` spread into the
dynamic field (it was dropped), NumPy files of one field given twice or empty, a string field holding a
number named in the reason, a collection dropped in the middle of a job failing it (it ended
"Completed" with its rows gone), and a JSON file large enough that decoding it whole held the GIL past
the server's session lease (the standalone server stopped itself)."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from pymilvus import BulkInsertState, MilvusClient, connections, utility

from tests.conftest import free_port, start_vecdb
from tests.e2e._helpers import orm  # noqa: F401 - fixture
from tests.e2e.test_bulk_import import DIM, _collection, _npy, _wait, objects  # noqa: F401 - fixture


def _count(client: MilvusClient, name: str) -> int:
    return client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def _row(i: int, **extra) -> dict:
    return {"id": i, "vec": [float(i)] * DIM, "tag": f"t{i % 5}", **extra}


def test_json_meta_key_goes_into_the_dynamic_field(client, name, orm, objects):  # noqa: F811
    """Milvus's combineDynamicRow: "$meta" (an object or a JSON string of one) and the keys outside the
    schema together make the dynamic field; a key in both, or a "$meta" that is no object, fails the job."""
    _collection(client, name)
    prefix = f"imports/{uuid.uuid4().hex}"
    rows = [_row(0, **{"$meta": {"k": 0}}, z=10), _row(1, **{"$meta": json.dumps({"k": 1})}), _row(2, z=12)]
    objects.put(f"{prefix}/meta.json", json.dumps({"rows": rows}).encode())
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/meta.json"], using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted and st.row_count == 3, st
    got = {r["id"]: (r.get("k"), r.get("z")) for r in
           client.query(name, "id >= 0", output_fields=["k", "z"], consistency_level="Strong")}
    assert got == {0: (0, 10), 1: (1, None), 2: (None, 12)}
    assert [r["id"] for r in client.query(name, "k == 1", consistency_level="Strong")] == [1]
    for bad, words in (({"$meta": {"z": 1}, "z": 2}, "duplicated key is not allowed, key=z"),
                       ({"$meta": [1, 2]}, "illegal value for dynamic field, not a JSON object")):
        key = f"{prefix}/bad{uuid.uuid4().hex[:6]}.json"
        objects.put(key, json.dumps([_row(10), _row(11, **bad)]).encode())
        st = _wait(utility.do_bulk_insert(name, files=[key], using=orm), orm)
        assert st.state == BulkInsertState.ImportFailed and f"row 1: {words}" in st.failed_reason, st.failed_reason
    assert _count(client, name) == 3


def test_numpy_field_given_twice_or_an_empty_file_fails_naming_the_file(client, name, orm, objects):  # noqa: F811
    _collection(client, name)
    prefix = f"imports/{uuid.uuid4().hex}"
    n = 10
    for d, start in (("a", 0), ("b", 100)):
        objects.put(f"{prefix}/{d}/id.npy", _npy(np.arange(start, start + n)))
    objects.put(f"{prefix}/a/vec.npy", _npy(np.zeros((n, DIM), np.float32)))
    objects.put(f"{prefix}/a/tag.npy", _npy(np.array(["x"] * n)))
    files = [f"{prefix}/a/{f}.npy" for f in ("id", "vec", "tag")]
    # two id.npy: the second silently replaced the first (rows 100..109 imported)
    st = _wait(utility.do_bulk_insert(name, files=files + [f"{prefix}/b/id.npy"], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed, st
    assert st.failed_reason == f"duplicated numpy file for the field id: {prefix}/b/id.npy"
    objects.put(f"{prefix}/c/id.npy", b"")  # an empty file: the reason named no file ("No data left in file")
    st = _wait(utility.do_bulk_insert(name, files=[f"{prefix}/c/id.npy"] + files[1:], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed, st
    assert st.failed_reason.startswith(f"failed to read the numpy file {prefix}/c/id.npy"), st.failed_reason
    assert _count(client, name) == 0


def test_a_string_field_holding_a_number_is_named(client, name, orm, objects):  # noqa: F811
    _collection(client, name)
    key = f"imports/{uuid.uuid4().hex}/num.json"
    objects.put(key, json.dumps([_row(0), _row(1, tag=5)]).encode())
    st = _wait(utility.do_bulk_insert(name, files=[key], using=orm), orm)
    assert st.state == BulkInsertState.ImportFailed, st
    assert st.failed_reason == (f"failed to import the file {key}: row 1: expected type 'VarChar' for field 'tag', "
                                "got type 'int' with value '5'")  # was "bad argument type for built-in operation"
    assert _count(client, name) == 0


def test_a_collection_dropped_during_the_import_fails_the_job(tmp_path, monkeypatch):
    """The job checked its collection only when it began: dropped (and created again under its name) in
    the middle of the writes, the job ended Completed with every row counted and none anywhere."""
    from tests.conftest import start_standalone
    from vecdb import importer

    monkeypatch.setattr(importer, "JSON_BATCH_ROWS", 5)  # many batches: time to drop it mid-way
    srv = start_standalone(str(tmp_path / "data"))
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
        connections.connect("dropped", uri=f"http://127.0.0.1:{srv.port}")
        _collection(client, "victim")
        srv.objects.put("imports/rows.json", json.dumps([_row(i) for i in range(3000)]).encode())
        job = utility.do_bulk_insert("victim", files=["imports/rows.json"], using="dropped")
        deadline = time.monotonic() + 60
        while (st := utility.get_bulk_insert_state(job, using="dropped")).row_count == 0:
            assert st.state != BulkInsertState.ImportFailed and time.monotonic() < deadline, st
            time.sleep(0.01)
        assert st.state == BulkInsertState.ImportStarted, st  # written in part
        client.drop_collection("victim")
        _collection(client, "victim")  # the same name, another collection
        st = _wait(job, "dropped")
        assert st.state == BulkInsertState.ImportFailed, st
        assert st.failed_reason == "collection victim was dropped during the import", st.failed_reason
        assert 0 < st.row_count < 3000
        assert _count(client, "victim") == 0  # nothing went into the new collection
        connections.disconnect("dropped")
        client.close()
    finally:
        srv.stop()


def test_a_large_json_file_does_not_stop_the_server(tmp_path):
    """A standalone server process on a 2 s session lease: decoding a ~100 MB JSON file in one
    json.loads held the GIL past the lease on a loaded machine, the session lapsed and the server
    stopped itself ("the storage session was lost"). Now it imports it and stays up."""
    n, dim = 40_000, 128
    vecs = np.random.default_rng(0).random((n, dim), dtype=np.float32)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"rows": [{"id": i, "vec": vecs[i].tolist()} for i in range(n)]}))
    port = free_port()
    srv = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "data",
                      env={"VECDB_STORAGE__SESSION_TTL": "2"})
    try:
        from pymilvus import CollectionSchema, DataType, FieldSchema

        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        connections.connect("big", uri=f"http://127.0.0.1:{port}")
        client.create_collection("big", schema=CollectionSchema([
            FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim)]))
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="FLAT", metric_type="L2")
        client.create_index("big", idx)
        client.load_collection("big")
        job = utility.do_bulk_insert("big", files=[str(path)], using="big")
        deadline = time.monotonic() + 240
        while True:  # (pymilvus retries a server that is gone for minutes: look at the process first)
            assert srv.poll() is None, srv.failure("stopped during the import")
            st = utility.get_bulk_insert_state(job, using="big", timeout=10)
            if st.state in (BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed):
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st.state == BulkInsertState.ImportCompleted and st.row_count == n, st
        assert _count(client, "big") == n
        assert client.search("big", [vecs[12345].tolist()], limit=1)[0][0]["id"] == 12345
        connections.disconnect("big")
        client.close()
    finally:
        srv.stop(60)


@pytest.mark.parametrize("form", ["list", "rows"])
def test_json_forms_with_a_partition_and_nulls(client, name, orm, objects, form):  # noqa: F811
    """Both JSON forms into a named partition; a nullable field null or left out; counts per partition."""
    _collection(client, name)
    client.create_partition(name, "p1")
    rows = [_row(i, score=None if i % 2 else float(i)) if i % 3 else _row(i) for i in range(30)]
    key = f"imports/{uuid.uuid4().hex}/rows.json"
    objects.put(key, json.dumps(rows if form == "list" else {"rows": rows}).encode())
    st = _wait(utility.do_bulk_insert(name, files=[key], partition_name="p1", using=orm), orm)
    assert st.state == BulkInsertState.ImportCompleted and st.row_count == 30 and st.partition_name == "p1", st
    assert client.query(name, "", output_fields=["count(*)"], partition_names=["p1"],
                        consistency_level="Strong")[0]["count(*)"] == 30
    got = {r["id"]: r["score"] for r in client.query(name, "id in [0, 1, 2, 3]", output_fields=["score"],
                                                       consistency_level="Strong")}
    assert got == {0: None, 1: None, 2: 2.0, 3: None}

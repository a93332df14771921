"""vecdb.importer: file grouping and types, JSON / JSON lines rows, NumPy columns checked against the
schema (the e2e tests, tests/e2e/test_bulk_import.py, run whole jobs through pymilvus)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from vecdb import errors, importer
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryObjectStore


def _schema(auto_id: bool = False) -> CollectionSchema:
    return CollectionSchema(name="c", fields=[
        FieldSchema(name="id", dtype=DataType.INT64, is_primary=True, auto_id=auto_id, field_id=100),
        FieldSchema(name="v", dtype=DataType.FLOAT16_VECTOR, dim=4, field_id=101),
        FieldSchema(name="n", dtype=DataType.INT8, field_id=102),
        FieldSchema(name="s", dtype=DataType.VARCHAR, max_length=8, field_id=103),
    ])


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr))
    return buf.getvalue()


def test_files_group_by_kind_and_unknown_kinds_are_refused():
    assert importer.group_files(["a.json", "x/id.npy", "b.jsonl", "x/v.npy"]) == [
        ["a.json"], ["b.jsonl"], ["x/id.npy", "x/v.npy"]]
    with pytest.raises(errors.InvalidParameter, match="import request is empty"):
        importer.group_files([])
    with pytest.raises(errors.InvalidParameter, match="unexpected file type"):
        importer.group_files(["a.csv"])
    assert importer.group_files(["a.parquet", "b.json"]) == [["a.parquet"], ["b.json"]]
    with pytest.raises(errors.InvalidParameter, match="only one file"):
        importer.check_groups([["a.parquet", "b.parquet"]])
    with pytest.raises(errors.InvalidParameter, match="only one file"):
        importer.check_groups([["a.json", "b.json"]])


def test_json_and_json_lines_rows():
    assert importer.json_rows(b'{"rows": [{"a": 1}]}', "f.json") == [{"a": 1}]
    assert importer.json_rows(b'[{"a": 1}, {"a": 2}]', "f.json") == [{"a": 1}, {"a": 2}]
    assert importer.json_rows(b'{"a": 1}\n\n{"a": 2}\n', "f.jsonl") == [{"a": 1}, {"a": 2}]
    with pytest.raises(errors.InvalidParameter, match="row 1 is not an object"):
        importer.json_rows(b'[{"a": 1}, 2]', "f.json")
    with pytest.raises(errors.InvalidParameter, match="failed to parse"):
        importer.json_rows(b'{"rows": [', "f.json")


def test_numpy_columns_convert_and_check_against_the_schema():
    vecs = np.arange(12, dtype=np.float16).reshape(3, 4)
    files = {"d/id.npy": _npy(np.array([1, 2, 3], np.int32)), "d/v.npy": _npy(vecs.view(np.uint8)),
             "d/n.npy": _npy(np.array([1, -2, 3])), "d/s.npy": _npy(np.array(["a", "bb", "c"]))}
    cols, n = importer.numpy_columns(_schema(), files)
    assert n == 3 and cols["id"].dtype == np.int64 and cols["n"].dtype == np.int8
    np.testing.assert_array_equal(cols["v"], vecs)  # half-precision vectors stored as their bytes
    assert cols["s"].tolist() == ["a", "bb", "c"]
    with pytest.raises(errors.InvalidParameter, match="out of"):
        importer.numpy_columns(_schema(), {**files, "d/n.npy": _npy(np.array([1, 2, 300]))})
    with pytest.raises(errors.InvalidParameter, match="has dim 4"):
        importer.numpy_columns(_schema(), {**files, "d/v.npy": _npy(np.zeros((3, 5), np.float32))})
    with pytest.raises(errors.InvalidParameter, match="2 rows"):
        importer.numpy_columns(_schema(), {**files, "d/s.npy": _npy(np.array(["a", "b"]))})
    with pytest.raises(errors.InvalidParameter, match="no numpy file for the field n"):
        importer.numpy_columns(_schema(), {k: v for k, v in files.items() if k != "d/n.npy"})
    with pytest.raises(errors.InvalidParameter, match="auto-generated"):
        importer.numpy_columns(_schema(auto_id=True), files)
    with pytest.raises(errors.InvalidParameter, match="not in the schema"):
        importer.numpy_columns(_schema(), {**files, "d/other.npy": _npy(np.zeros(3))})
    with pytest.raises(errors.InvalidParameter, match="needs strings"):
        importer.numpy_columns(_schema(), {**files, "d/s.npy": _npy(np.zeros(3))})


def test_files_are_read_from_the_object_store_and_local_paths_only_when_allowed(tmp_path):
    store = MemoryObjectStore()
    store.put("in/a.json", b"[]")
    assert importer.read_object(store, "/in/a.json", local_files=False) == b"[]"
    local = tmp_path / "b.json"
    local.write_text(json.dumps([{"a": 1}]))
    assert importer.read_object(store, str(local), local_files=True) == local.read_bytes()
    with pytest.raises(errors.InvalidParameter, match="does not exist"):
        importer.read_object(store, str(local), local_files=False)
    with pytest.raises(errors.InvalidParameter, match="does not exist"):
        importer.read_object(store, "in/../../etc/passwd", local_files=False)


def test_jobs_in_the_metadata_store_and_a_stale_unfinished_job_is_taken_over_not_failed():
    from vecdb.storage.memory import MemoryMetaStore

    jobs = importer.JobStore(MemoryMetaStore())
    a = importer.ImportJob(id=7, db="default", collection="c", collection_id=1, partition="", files=[["a.json"]])
    b = importer.ImportJob(id=9, db="default", collection="d", collection_id=2, partition="", files=[["b.json"]],
                           state=importer.COMPLETED)
    jobs.put(a)
    jobs.put(b)
    assert jobs.get(7).state == importer.PENDING and jobs.get(8) is None
    assert [j.id for j in jobs.list("default")] == [7, 9] and [j.id for j in jobs.list("default", 2)] == [9]
    assert jobs.list("other") == []
    a.owner = "a-process-that-ended"
    a.updated_ms -= 61_000  # its runner stopped beating a while ago (past the default VECDB_JOBS_STALE_S)
    jobs.meta.put("import/7", a.to_json())
    assert jobs.get(7).state == importer.PENDING  # not Failed: it waits to be taken over (vecdb.jobs)
    assert [k for k, _ in jobs.stale(set())] == ["import/7"]  # finished jobs never go stale
    assert jobs.get(9).state == importer.COMPLETED


def test_the_record_beats_while_a_step_runs(monkeypatch):
    from vecdb import jobs as durable
    from vecdb.storage.memory import MemoryMetaStore

    monkeypatch.setenv(durable.HEARTBEAT_ENV, "0.02")
    jobs = importer.JobStore(MemoryMetaStore())
    job = importer.ImportJob(id=1, db="default", collection="c", collection_id=1, partition="", files=[["a"]])
    rec = jobs.create(job).start_heartbeat()
    first = jobs.get(1).updated_ms
    import time

    time.sleep(0.2)
    rec.close()
    assert jobs.get(1).updated_ms > first


def test_int8_vectors_from_numpy():
    schema = CollectionSchema(name="c", fields=[
        FieldSchema(name="id", dtype=DataType.INT64, is_primary=True, field_id=100),
        FieldSchema(name="v", dtype=DataType.INT8_VECTOR, dim=4, field_id=101)])
    vecs = np.arange(-4, 4, dtype=np.int8).reshape(2, 4)
    cols, n = importer.numpy_columns(schema, {"id.npy": _npy(np.array([1, 2])), "v.npy": _npy(vecs)})
    assert n == 2 and cols["v"].dtype == np.int8
    np.testing.assert_array_equal(cols["v"], vecs)
    with pytest.raises(errors.InvalidParameter, match="needs int8"):
        importer.numpy_columns(schema, {"id.npy": _npy(np.array([1, 2])), "v.npy": _npy(vecs.astype(np.float32))})

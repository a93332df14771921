"""External collections (Milvus 3.0; vecdb.external_spec, vecdb.external_tables, vecdb.proxy.rpc_external)
through pymilvus on every deployment: parquet files written with pyarrow into a bucket of the session's
S3 server, an external collection over them, refreshed (the job's progress to RefreshCompleted),
indexed, loaded and read (count, query, search, get by ``__virtual_pk__``); a file added, then one
removed, and a refresh each: the rows follow the files; a bad file fails the job; the refusals
(writes, sources, specs, schemas, refreshes)."""

from __future__ import annotations

import io
import json
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

DIM = 4


@pytest.fixture(scope="module")
def s3(s3_server):
    import boto3

    return boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


@pytest.fixture
def bucket(s3):
    b = "ext-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=b)
    return b


def _spec(fmt: str = "parquet", **extfs: str) -> str:
    return json.dumps({"format": fmt, "extfs": {"cloud_provider": "minio", "region": "us-east-1",
                                                "access_key_id": "test", "access_key_value": "test",
                                                "use_ssl": "false", **extfs}})


def _source(s3_server, bucket: str, prefix: str = "data") -> str:
    return f"s3://{s3_server.url.split('://', 1)[1]}/{bucket}/{prefix}/"


def _put(s3, bucket: str, key: str, start: int, n: int) -> None:
    rng = np.random.default_rng(start)
    table = pa.table({
        "doc_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
        "embedding": pa.array(rng.random((n, DIM), dtype=np.float32).tolist(), pa.list_(pa.float32())),
        "title": pa.array([f"t{i}" for i in range(start, start + n)]),
        "ignored": pa.array(np.zeros(n, np.int32)),  # an unmapped column
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())


def _schema(client: MilvusClient, source: str, spec: str):
    schema = client.create_schema(external_source=source, external_spec=spec)
    schema.add_field("doc_id", DataType.INT64, external_field="doc_id")
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM, external_field="embedding")
    schema.add_field("title", DataType.VARCHAR, max_length=32, external_field="title")
    return schema


def _refresh(client: MilvusClient, name: str, timeout: float = 60, **kw):
    job_id = client.refresh_external_collection(name, **kw)
    assert job_id > 0
    deadline = time.monotonic() + timeout
    while True:
        info = client.get_refresh_external_collection_progress(job_id)
        if info.state in ("RefreshCompleted", "RefreshFailed") or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def _count(client: MilvusClient, name: str) -> int:
    return client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def test_refresh_reads_the_files_and_follows_them(client, name, s3, s3_server, bucket):
    _put(s3, bucket, "data/a.parquet", 0, 30)
    _put(s3, bucket, "data/sub/nested.parquet", 1000, 5)  # a sub-folder: not read
    s3.put_object(Bucket=bucket, Key="data/readme.txt", Body=b"not parquet")
    client.create_collection(name, schema=_schema(client, _source(s3_server, bucket), _spec()))

    desc = client.describe_collection(name)
    assert desc["external_source"] == _source(s3_server, bucket)
    assert json.loads(desc["external_spec"])["format"] == "parquet"
    assert "test" not in json.loads(desc["external_spec"])["extfs"].values()  # its keys never described
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields["__virtual_pk__"]["is_primary"] and fields["__virtual_pk__"]["auto_id"]
    assert fields["vec"]["external_field"] == "embedding"
    assert fields["title"].get("nullable") and fields["doc_id"].get("nullable")

    info = _refresh(client, name)
    assert info.state == "RefreshCompleted", info.reason
    assert info.progress == 100 and info.collection_name == name
    assert info.end_time >= info.start_time > 0
    assert "test" not in json.loads(info.external_spec)["extfs"].values()  # credentials redacted

    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    assert _count(client, name) == 30
    rows = client.query(name, filter="doc_id == 7", output_fields=["doc_id", "title", "__virtual_pk__"],
                        consistency_level="Strong")
    assert [(r["doc_id"], r["title"]) for r in rows] == [(7, "t7")]
    got = client.get(name, ids=[rows[0]["__virtual_pk__"]], output_fields=["title"])
    assert [g["title"] for g in got] == ["t7"]
    vec = np.random.default_rng(0).random((30, DIM), dtype=np.float32)[3].tolist()
    hits = client.search(name, [vec], limit=1, output_fields=["doc_id"], consistency_level="Strong")[0]
    assert hits[0]["entity"]["doc_id"] == 3

    _put(s3, bucket, "data/b.parquet", 100, 20)  # a file added
    assert _refresh(client, name).state == "RefreshCompleted"
    assert _count(client, name) == 50
    s3.delete_object(Bucket=bucket, Key="data/a.parquet")  # a file removed
    info = _refresh(client, name)
    assert info.state == "RefreshCompleted", info.reason
    assert _count(client, name) == 20
    assert client.query(name, filter="doc_id < 100", output_fields=["doc_id"], consistency_level="Strong") == []
    it = client.query_iterator(name, batch_size=7, filter="", output_fields=["doc_id"])
    seen = []
    while batch := it.next():
        seen += [r["doc_id"] for r in batch]
    it.close()
    assert sorted(seen) == list(range(100, 120))

    jobs = client.list_refresh_external_collection_jobs(name)
    assert len(jobs) == 3 and jobs[0].job_id > jobs[1].job_id > jobs[2].job_id  # newest first
    assert info.job_id in [j.job_id for j in client.list_refresh_external_collection_jobs()]

    with pytest.raises(MilvusException, match="insert operation is not supported for external collection") as e:
        client.insert(name, [{"doc_id": 1, "vec": [0.0] * DIM, "title": "x"}])
    assert e.value.code == 1100
    with pytest.raises(MilvusException, match="delete operation is not supported for external collection"):
        client.delete(name, filter="doc_id == 100")
    with pytest.raises(MilvusException, match="upsert operation is not supported for external collection"):
        client.upsert(name, [{"__virtual_pk__": 1, "doc_id": 1, "vec": [0.0] * DIM, "title": "x"}])
    with pytest.raises(MilvusException, match="add field operation is not supported for external collection"):
        client.add_collection_field(name, "extra", DataType.INT64, nullable=True)
    with pytest.raises(MilvusException, match="create partition operation is not supported"):
        client.create_partition(name, "p1")
    with pytest.raises(MilvusException, match="collection.external_source"):
        client.alter_collection_properties(name, {"collection.external_source": "s3://x/y/"})


def test_refresh_failures_and_a_new_source(client, name, s3, s3_server, bucket):
    client.create_collection(name, schema=_schema(client, _source(s3_server, bucket, "empty"), _spec()))
    info = _refresh(client, name)  # an empty prefix
    assert info.state == "RefreshCompleted", info.reason
    with pytest.raises(MilvusException, match="both"):
        client.refresh_external_collection(name, external_source=_source(s3_server, bucket))
    bad = pa.table({"doc_id": pa.array([1, 2], pa.int64()), "title": pa.array(["a", "b"])})  # no embedding
    buf = io.BytesIO()
    pq.write_table(bad, buf)
    s3.put_object(Bucket=bucket, Key="bad/x.parquet", Body=buf.getvalue())
    info = _refresh(client, name, external_source=_source(s3_server, bucket, "bad"), external_spec=_spec())
    assert info.state == "RefreshFailed" and "embedding" in info.reason
    # a failed refresh keeps the pair the collection had
    assert client.describe_collection(name)["external_source"] == _source(s3_server, bucket, "empty")
    typed = pa.table({"doc_id": pa.array(["x", "y"]), "embedding": pa.array([[0.0] * DIM] * 2),
                      "title": pa.array(["a", "b"])})  # doc_id: strings for an INT64 field
    buf = io.BytesIO()
    pq.write_table(typed, buf)
    s3.put_object(Bucket=bucket, Key="typed/x.parquet", Body=buf.getvalue())
    info = _refresh(client, name, external_source=_source(s3_server, bucket, "typed"), external_spec=_spec())
    assert info.state == "RefreshFailed" and "typed/x.parquet" in info.reason and "doc_id" in info.reason, info
    info = _refresh(client, name, external_source=_source(s3_server, "no-such-" + bucket), external_spec=_spec())
    assert info.state == "RefreshFailed" and "bucket" in info.reason
    _put(s3, bucket, "good/a.parquet", 0, 10)
    info = _refresh(client, name, external_source=_source(s3_server, bucket, "good"), external_spec=_spec())
    assert info.state == "RefreshCompleted", info.reason
    assert info.external_source == _source(s3_server, bucket, "good")
    assert client.describe_collection(name)["external_source"] == _source(s3_server, bucket, "good")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    assert _count(client, name) == 10
    client.truncate_collection(name)  # every row gone; the next refresh reads every file again
    assert _count(client, name) == 0
    assert _refresh(client, name).state == "RefreshCompleted"
    assert _count(client, name) == 10
    assert client.describe_collection(name)["external_source"] == _source(s3_server, bucket, "good")


def test_one_refresh_at_a_time(client, name, s3, s3_server, bucket):
    for i in range(8):
        _put(s3, bucket, f"data/{i}.parquet", 100 * i, 50)
    client.create_collection(name, schema=_schema(client, _source(s3_server, bucket), _spec()))
    first = client.refresh_external_collection(name)
    try:
        second = client.refresh_external_collection(name)
    except MilvusException as e:
        assert "still running" in str(e)
    else:  # the first one was done already
        assert client.get_refresh_external_collection_progress(first).state in ("RefreshCompleted", "RefreshFailed")
        first = second
    deadline = time.monotonic() + 60
    while client.get_refresh_external_collection_progress(first).state not in ("RefreshCompleted", "RefreshFailed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_not_an_external_collection_is_refused(client, name):
    client.create_collection(name, dimension=DIM)
    with pytest.raises(MilvusException, match="not an external collection"):
        client.refresh_external_collection(name)
    with pytest.raises(MilvusException):
        client.refresh_external_collection("no_such_" + name)


@pytest.mark.parametrize("source,spec,message", [
    ("http://127.0.0.1:9000/b/p/", None, r'external_source scheme "http" is not allowed; allowed schemes'),
    ("s3://ak:sk@127.0.0.1:9000/b/p/", None, "must not embed credentials in the URL"),
    ("b/p/", None, "explicit scheme"),
    ("gs://b/p/", None, "not supported by vecdb yet"),
    (None, _spec("lance-table"), "format lance-table is not supported by vecdb yet"),
    (None, _spec("csv"), 'unsupported format "csv"'),
    (None, json.dumps({"format": "parquet", "extfs": {"password": "x"}}), 'extfs key "password" is not allowed'),
    (None, _spec(use_ssl="yes"), "use_ssl"),
    (None, "{not json", "invalid external spec JSON"),
])
def test_bad_sources_and_specs_are_refused(client, name, s3_server, source, spec, message):
    schema = _schema(client, source or _source(s3_server, "b"), spec or _spec())
    with pytest.raises(MilvusException, match=message) as e:
        client.create_collection(name, schema=schema)
    assert e.value.code == 1100


def _with_pk(schema):
    schema.add_field("id", DataType.INT64, is_primary=True, external_field="id")


def _unmapped(schema):
    schema.add_field("extra", DataType.INT32)


def _duplicate(schema):
    schema.add_field("title2", DataType.VARCHAR, max_length=8, external_field="title")


def _reserved(schema):
    schema.add_field("__virtual_pk__", DataType.INT64, external_field="vpk")


@pytest.mark.parametrize("change,message", [
    (_with_pk, "does not support primary key field id"),
    (_unmapped, "field 'extra' in external collection .* must have external_field mapping"),
    (_duplicate, "duplicate external_field"),
    (_reserved, "__virtual_pk__.* is reserved for internal use"),
])
def test_bad_schemas_are_refused(client, name, s3_server, change, message):
    schema = _schema(client, _source(s3_server, "b"), _spec())
    change(schema)
    with pytest.raises(MilvusException, match=message):
        client.create_collection(name, schema=schema)


def test_virtual_pk_is_reserved_everywhere(client, name):
    schema = client.create_schema()
    schema.add_field("__virtual_pk__", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    with pytest.raises(MilvusException, match="reserved for internal use"):
        client.create_collection(name, schema=schema)


def test_external_collection_takes_one_shard(client, name, s3_server):
    with pytest.raises(MilvusException, match="ShardsNum=2"):
        client.create_collection(name, schema=_schema(client, _source(s3_server, "b"), _spec()), num_shards=2)


def test_cdc_skips_external_collections(tmp_path, remote_storage, s3, s3_server, caplog):
    """A CDC task (vecdb.cdc) replicates the plain collections of its source and skips the external ones,
    with a log line; ``verify`` leaves them out."""
    import logging

    from tests.conftest import start_standalone
    from tests.e2e.test_cdc import replicating
    from vecdb.cdc.task import new_task_id

    bucket = "ext-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=bucket)
    _put(s3, bucket, "data/a.parquet", 0, 10)
    caplog.set_level(logging.INFO, logger="vecdb.cdc.replicator")
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcext" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        c.create_collection("ext", schema=_schema(c, _source(s3_server, bucket), _spec()))
        assert _refresh(c, "ext").state == "RefreshCompleted"
        c.create_collection("plain", dimension=DIM)
        c.insert("plain", [{"id": i, "vector": [float(i)] * DIM} for i in range(20)])
        stream.wait_equal(60, "the plain collection not replicated")
        assert t.has_collection("plain") and not t.has_collection("ext")
        assert any("skips external collection default.ext" in r.getMessage() for r in caplog.records)
        assert stream.rep.progress.last_error == ""

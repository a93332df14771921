"""Clustering keys through pymilvus: a schema that declares one is taken and described, invalid ones are
refused as Milvus refuses them, and ``client.compact(is_clustering=True)`` rewrites the sealed segments
into segments of one key range each (a server of its own with small segments shows the ranges), the
query nodes serve them, and every read answers as before, deletes and upserts included."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from tests.conftest import free_port, server_settings, wait_until
from tests.e2e._helpers import cname, orm, raw_stub, reader_view  # noqa: F401 - fixtures
from vecdb.standalone import Standalone
from vecdb.storage import segments as sf

DIM = 8


def _schema(key_type: DataType = DataType.INT64):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    schema.add_field("k", key_type, is_clustering_key=True, **({"max_length": 16} if key_type == DataType.VARCHAR
                                                                else {}))
    return schema


def _create(c: MilvusClient, name: str, shards: int = 1, key_type: DataType = DataType.INT64) -> None:
    idx = c.prepare_index_params()
    idx.add_index("vector", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=_schema(key_type), index_params=idx, num_shards=shards)


def _key(n: int, key_type: DataType):
    return f"k{n:03d}" if key_type == DataType.VARCHAR else n


def _rows(ids, vecs: np.ndarray, tag: str, key_type: DataType = DataType.INT64) -> list[dict]:
    return [{"id": i, "vector": vecs[i], "tag": f"{tag}-{i}", "k": _key(i * 37 % 500, key_type)} for i in ids]


def _write(c: MilvusClient, name: str, vecs: np.ndarray, key_type: DataType = DataType.INT64) -> None:
    """Four flushed batches over two partitions, deletes and upserts among them, and more of both
    after the last flush (in memory when the compaction runs)."""
    c.create_partition(name, "p1")
    for lo in range(0, 800, 200):
        c.insert(name, _rows(range(lo, lo + 200), vecs, "v1", key_type), partition_name="p1" if lo % 400 else None)
        c.flush(name)
    c.delete(name, ids=list(range(0, 800, 9)))
    c.upsert(name, _rows(range(100, 140), vecs, "v2", key_type))
    c.flush(name)
    c.delete(name, ids=list(range(700, 720)))
    c.upsert(name, _rows(range(150, 160), vecs, "v3", key_type))
    c.insert(name, _rows(range(800, 850), vecs, "v1", key_type))


def _answers(c: MilvusClient, name: str, vecs: np.ndarray, key_type: DataType = DataType.INT64) -> tuple:
    """reader_view, and filtered reads on the clustering key (query, count, search)."""
    q = (lambda n: f'"{_key(n, key_type)}"') if key_type == DataType.VARCHAR else str
    out = [reader_view(c, name, vecs)]
    for expr in (f"k == {q(259)}", f"k in [{q(1)}, {q(222)}, {q(481)}]", f"{q(100)} <= k < {q(180)}",
                 f"k > {q(470)} or k < {q(20)}", f"k != {q(37)} and id < 300"):
        rows = c.query(name, expr, output_fields=["id", "tag", "k"], limit=16384, consistency_level="Strong")
        n = c.query(name, expr, output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
        hits = c.search(name, vecs[:3].tolist(), filter=expr, limit=10, consistency_level="Strong")
        out.append((n, sorted((r["id"], r["tag"], r["k"]) for r in rows),
                    [[(h["id"], round(h["distance"], 4)) for h in hq] for hq in hits]))
    return tuple(out)


def _persisted(c: MilvusClient, name: str) -> list[int]:
    return sorted(s.segmentID for s in c._get_connection().get_persistent_segment_infos(name))


def _served(c: MilvusClient, name: str) -> list[int]:
    """The sealed segments the query nodes serve (one a cluster's node hands over to another is
    reported by both for a moment)."""
    return sorted({s.segmentID for s in c._get_connection().get_query_segment_info(name) if s.state != 2})


def _compact_clustering(c: MilvusClient, name: str) -> int:
    job = c.compact(name, is_clustering=True)
    assert job > 0
    wait_until(lambda: c.get_compaction_state(job) == "Completed", 60, "clustering compaction completed")
    return job


# --- every deployment ----------------------------------------------------------------------------
def test_a_clustering_key_is_described(client, name):
    _create(client, name)
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert fields["k"].get("is_clustering_key") is True
    assert not fields["tag"].get("is_clustering_key")


def test_the_orm_declares_it_too(orm, cname):  # noqa: F811
    fields = [FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("vector", DataType.FLOAT_VECTOR, dim=DIM),
              FieldSchema("k", DataType.VARCHAR, max_length=8)]
    coll = Collection(cname, CollectionSchema(fields, clustering_key_field="k"), using=orm)
    again = Collection(cname, using=orm)
    assert [f.name for f in again.schema.fields if f.is_clustering_key] == ["k"]
    assert coll.schema.fields[2].is_clustering_key


def _raw_create(uri: str, name: str, extra) -> tuple[int, str]:
    pb = schema_pb2.CollectionSchema(name=name)
    pb.fields.add(name="id", data_type=schema_pb2.Int64, is_primary_key=True)
    pb.fields.add(name="v", data_type=schema_pb2.FloatVector).type_params.add(key="dim", value="4")
    extra(pb)
    with raw_stub(uri) as stub:
        st = stub.CreateCollection(milvus_pb2.CreateCollectionRequest(collection_name=name,
                                                                     schema=pb.SerializeToString()))
    return st.code, st.reason


@pytest.mark.parametrize("extra,code,message", [
    (lambda pb: pb.fields.add(name="j", data_type=schema_pb2.JSON, is_clustering_key=True), 105,
     "clustering key field j has unsupported data type JSON"),
    (lambda pb: (pb.fields.add(name="a", data_type=schema_pb2.Int64, is_clustering_key=True),
                 pb.fields.add(name="b", data_type=schema_pb2.Int32, is_clustering_key=True)), 105,
     "there are more than one clustering key, field name = a, b"),
    (lambda pb: setattr(pb.fields[1], "is_clustering_key", True), 107, "vector clustering key not allowed"),
], ids=["json", "two", "vector"])
def test_invalid_clustering_keys_are_refused_as_milvus_does(client, uri, name, extra, code, message):
    got_code, reason = _raw_create(uri, name, extra)
    assert got_code == code and message in reason, (got_code, reason)
    assert not client.has_collection(name)


def test_clustering_compaction_without_a_clustering_key_does_nothing_as_in_milvus(client, name):
    client.create_collection(name, dimension=DIM)
    client.insert(name, [{"id": 1, "vector": [0.1] * DIM}])
    client.flush(name)
    job = client.compact(name, is_clustering=True)  # Milvus: compaction id -1, no plan
    assert job == -1
    assert client.get_compaction_state(job) == "Completed"


def test_clustering_compaction_keeps_every_answer(client, name):
    c = client
    _create(c, name, shards=2)
    vecs = np.random.default_rng(4).random((900, DIM), dtype=np.float32)
    _write(c, name, vecs)
    before = _answers(c, name, vecs)
    job = _compact_clustering(c, name)
    assert c.get_compaction_plans(job).state.name == "Completed"
    persisted = _persisted(c, name)
    try:
        wait_until(lambda: _served(c, name) == persisted, 30, "query nodes serve the clustered segments")
    except AssertionError:  # what they serve instead, for the log
        print(f"persisted {persisted}, served: {c._get_connection().get_query_segment_info(name)}")
        raise
    assert _answers(c, name, vecs) == before
    c.delete(name, ids=[101, 102, 803])
    c.upsert(name, _rows([104, 805], vecs[::-1].copy(), "v4"))
    after = _answers(c, name, vecs)
    assert after[0][0] == before[0][0] - 3  # 104 and 805 were there already
    c.flush(name)
    c.release_collection(name)
    c.load_collection(name)
    assert _answers(c, name, vecs) == after


# --- a server of its own: small clustered segments ----------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    settings = server_settings(tmp_path_factory.mktemp("clustering"))
    settings.http.port = free_port()
    settings.compaction.clustering_rows = 100
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    yield srv, client
    client.close()
    srv.stop()


@pytest.mark.parametrize("key_type", [DataType.INT64, DataType.VARCHAR], ids=["int64", "varchar"])
def test_segments_hold_key_ranges_after_a_clustering_compaction(small, key_type):
    srv, c = small
    name = f"clustered_{key_type.name.lower()}"
    _create(c, name, key_type=key_type)
    vecs = np.random.default_rng(8).random((900, DIM), dtype=np.float32)
    _write(c, name, vecs, key_type)
    before = _answers(c, name, vecs, key_type)
    sources = _persisted(c, name)
    job = _compact_clustering(c, name)
    info = srv.roles.catalog.get("default", name)
    segs = [s for ch in info.channels for s in sf.list_segments(srv.meta, info.id, ch)]
    assert sorted(s["segment_id"] for s in segs) == _persisted(c, name) and not set(sources) & set(_persisted(c, name))
    plans = c.get_compaction_plans(job).plans
    assert {p.target for p in plans} == {s["segment_id"] for s in segs}  # one entry per new segment
    for pid in {s["partition_id"] for s in segs}:
        mine = sorted((s for s in segs if s["partition_id"] == pid), key=lambda s: s["cluster"]["min"])
        assert len(mine) >= 3 and all(0 < s["num_rows"] <= 100 for s in mine)
        assert all(a["cluster"]["max"] < b["cluster"]["min"] for a, b in zip(mine, mine[1:]))  # ranges apart
        for s in mine:  # the rows of each segment lie in its range, sorted by the key
            cols, _ = sf.read_segment(srv.objects, s["prefix"], info.schema)
            keys = list(cols["k"])
            assert keys == sorted(keys) and (keys[0], keys[-1]) == (s["cluster"]["min"], s["cluster"]["max"])
    wait_until(lambda: _served(c, name) == _persisted(c, name), 30, "the query node serves the clustered segments")
    assert _answers(c, name, vecs, key_type) == before
    # a filter on the key reads only the segments whose range it meets
    shard = srv.querynode.collections[info.id].shards[0]
    from vecdb.expr.filter import compile_filter
    from vecdb.querynode.executor import pruned
    from vecdb.querynode.shard import SegmentView

    q = f'"{_key(259, key_type)}"' if key_type == DataType.VARCHAR else "259"
    flt = compile_filter(f"k == {q}", info.schema)
    sealed = [s for s in shard.segments.values() if s.sealed]
    assert sum(not pruned(SegmentView(s, s.n), flt) for s in sealed) <= 2 < len(sealed)
    # nothing left to cluster; reads unchanged after a release and a load
    again = c.compact(name, is_clustering=True)
    wait_until(lambda: c.get_compaction_state(again) == "Completed", 60, "second clustering compaction completed")
    assert c.get_compaction_plans(again).plans == []
    c.release_collection(name)
    c.load_collection(name)
    assert _answers(c, name, vecs, key_type) == before


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/vectordb/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_rest_create_and_describe_carry_the_clustering_key(small):
    srv, c = small
    port = srv.settings.http.port
    schema = {"fields": [{"fieldName": "id", "dataType": "Int64", "isPrimary": True},
                         {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": 4}},
                         {"fieldName": "k", "dataType": "Int32", "isClusteringKey": True}]}
    assert _post(port, "collections/create", {"collectionName": "rest_ck", "schema": schema})["code"] == 0
    described = _post(port, "collections/describe", {"collectionName": "rest_ck"})["data"]
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["k"]["clusteringKey"] is True and fields["id"]["clusteringKey"] is False
    reply = _post(port, "collections/compact", {"collectionName": "rest_ck", "isClustering": True})
    assert reply["code"] == 0 and reply["data"]["compactionID"] > 0
    with pytest.raises(MilvusException):
        c.compact("no_such_collection", is_clustering=True)

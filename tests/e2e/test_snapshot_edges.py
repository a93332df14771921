"""Snapshot edges (docs/snapshots.md) through pymilvus 3.0.2 on every deployment: names as Milvus checks
them (a snapshot's and a restore's target collection: 1100 at the call, no job that fails later); a
restore keeps what the source's schema holds beyond plain fields (a BM25 function and its sparse output,
dynamic fields, a partition key, a nullable field, scalar and sparse indexes); snapshots taken while a
writer inserts, deletes, upserts, flushes and compacts each restore one prefix of its writes; a snapshot
outlives its collection."""

from __future__ import annotations

import threading
import time

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from tests.conftest import wait_until


def _restored(client: MilvusClient, snapshot: str, source: str, target: str) -> None:
    job = client.restore_snapshot(snapshot, source_collection_name=source, target_collection_name=target)

    def done() -> bool:
        state = client.get_restore_snapshot_state(job)
        assert state.state != "RestoreSnapshotFailed", state.reason
        return state.state == "RestoreSnapshotCompleted"

    wait_until(done, 60, "restore not completed")
    client.load_collection(target)


def _count(client: MilvusClient, name: str, expr: str = "") -> int:
    return client.query(name, filter=expr, output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


@pytest.mark.parametrize("bad", ["a/b", "<x>", "1abc", "a b", "x" * 256])
def test_a_snapshot_name_follows_milvus_rules(client: MilvusClient, name: str, bad: str):
    client.create_collection(name, dimension=4)
    with pytest.raises(MilvusException) as e:
        client.create_snapshot(bad, name)
    assert e.value.code == 1100 and "snapshot name" in e.value.message
    assert client.list_snapshots(collection_name=name) == []
    client.create_snapshot("_ok_1", name)
    assert client.list_snapshots(collection_name=name) == ["_ok_1"]
    client.drop_snapshot("_ok_1", name)


def test_a_restore_into_an_invalid_name_is_refused_at_once(client: MilvusClient, name: str):
    client.create_collection(name, dimension=4)
    client.create_snapshot("s", name)
    try:
        for bad in ("bad name!", "a/b", "1x"):
            with pytest.raises(MilvusException) as e:
                client.restore_snapshot("s", source_collection_name=name, target_collection_name=bad)
            assert e.value.code == 1100 and "Invalid collection name" in e.value.message
            assert not [j for j in client.list_restore_snapshot_jobs() if j.collection_name == bad]
    finally:
        client.drop_snapshot("s", name)


def _rich(client: MilvusClient, name: str) -> None:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("text", DataType.VARCHAR, max_length=256, enable_analyzer=True)
    schema.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("cat", DataType.VARCHAR, max_length=16, is_partition_key=True)
    schema.add_field("price", DataType.DOUBLE, nullable=True)
    schema.add_function(Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sp"]))
    params = client.prepare_index_params()
    params.add_index("v", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 32})
    params.add_index("sp", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    params.add_index("price", index_type="STL_SORT")
    client.create_collection(name, schema=schema, index_params=params, num_partitions=3)
    words = ["apple banana", "cherry date", "apple cherry", "elder fig", "grape apple"]
    client.insert(name, [{"id": i, "v": [i % 7 + 1, 1, i % 3, 0.5], "text": f"{words[i % 5]} w{i}",
                          "cat": f"c{i % 4}", "price": None if i % 10 == 0 else i * 1.5, "extra": {"k": i}}
                         for i in range(300)])
    client.delete(name, ids=[1, 2, 3])
    client.flush(name)


def _view(client: MilvusClient, name: str) -> dict:
    rows = client.query(name, filter="id >= 0", output_fields=["id", "v", "text", "cat", "price", "extra"],
                        limit=1000, consistency_level="Strong")
    return {
        "rows": sorted((r["id"], tuple(r["v"]), r["text"], r["cat"], r["price"], r["extra"]["k"]) for r in rows),
        "bm25": [h["id"] for h in client.search(name, data=["apple cherry"], anns_field="sp", limit=8,
                                                  search_params={"metric_type": "BM25"},
                                                  consistency_level="Strong")[0]],
        "dynamic": _count(client, name, "extra['k'] >= 150"),
        "key": _count(client, name, 'cat == "c1"'),
        "null": _count(client, name, "price is null"),
        "range": _count(client, name, "price > 100"),
    }


def test_a_restore_keeps_functions_dynamic_fields_partition_key_and_indexes(client: MilvusClient, name: str):
    _rich(client, name)
    client.create_snapshot("rich", name)
    target = name + "_back"
    try:
        _restored(client, "rich", name, target)
        client.load_collection(name)
        want = _view(client, name)
        assert len(want["rows"]) == 297 and want["null"] == 30 and want["key"] == 74
        assert _view(client, target) == want
        described = client.describe_collection(target)
        assert described["enable_dynamic_field"] and described["num_partitions"] == 3
        assert [f["name"] for f in described["functions"]] == ["bm"]
        assert sorted(client.list_indexes(target)) == ["price", "sp", "v"]
        assert client.list_partitions(target) == client.list_partitions(name)
        # the restored collection computes its function for new rows too
        client.insert(target, [{"id": 1000, "v": [1, 1, 1, 1], "text": "zebra", "cat": "c0", "price": 1.0}])
        hits = client.search(target, data=["zebra"], anns_field="sp", limit=3, search_params={"metric_type": "BM25"},
                             consistency_level="Strong")[0]
        assert [h["id"] for h in hits] == [1000]
    finally:
        client.drop_snapshot("rich", name)
        if client.has_collection(target):
            client.drop_collection(target)


def _states(ops: list[tuple[str, list[int]]]):
    """Every state the writes of ``ops`` passed through, first to last: {id: b}."""
    cur: dict[int, int] = {}
    yield tuple(sorted(cur.items()))
    for op, ids in ops:
        for i in ids:
            if op == "ins":
                cur[i] = i // 10
            elif op == "del":
                cur.pop(i, None)
            else:
                cur[i] = -(i // 10)
        yield tuple(sorted(cur.items()))


def test_snapshots_taken_while_writing_each_restore_a_prefix_of_the_writes(server, client: MilvusClient,
                                                                          name: str):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("b", DataType.INT64)
    params = client.prepare_index_params()
    params.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=params, shards_num=1)
    ops: list[tuple[str, list[int]]] = []
    stop = threading.Event()
    failed: list[BaseException] = []

    def writer() -> None:
        w = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
        try:
            b = 0
            while not stop.is_set():
                ids = list(range(10 * b, 10 * b + 10))
                w.insert(name, [{"id": i, "v": [i, 1, 1, 1], "b": b} for i in ids])
                ops.append(("ins", ids))
                if b:
                    gone = [i for i in range(10 * (b - 1), 10 * b) if i % 2 == 0]
                    w.delete(name, ids=gone)
                    ops.append(("del", gone))
                if b % 3 == 0:
                    w.upsert(name, [{"id": 10 * b + 1, "v": [0, 0, 0, 0], "b": -b}])
                    ops.append(("ups", [10 * b + 1]))
                if b % 5 == 0:
                    w.flush(name)
                if b % 17 == 0:
                    w.compact(name)
                b += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            failed.append(e)
        finally:
            w.close()

    t = threading.Thread(target=writer)
    t.start()
    snaps = []
    try:
        for k in range(3):
            time.sleep(1.0)
            client.create_snapshot(f"k{k}", name)
            snaps.append(f"k{k}")
    finally:
        stop.set()
        t.join(60)
    assert not failed, failed
    states = set(_states(ops))
    try:
        sizes = []
        for snap in snaps:
            target = f"{name}_{snap}"
            _restored(client, snap, name, target)
            rows = client.query(target, filter="id >= 0", output_fields=["b"], limit=16_000, consistency_level="Strong")
            got = tuple(sorted((r["id"], r["b"]) for r in rows))
            assert got in states, f"{snap}: {len(got)} rows, no state the writes passed through"
            assert _count(client, target) == len(got)
            sizes.append(len(got))
            client.drop_collection(target)
        assert sizes == sorted(sizes) and sizes[-1] > 0
    finally:
        for snap in snaps:
            client.drop_snapshot(snap, name)


def test_a_snapshot_outlives_its_collection(client: MilvusClient, name: str):
    client.create_collection(name, dimension=4)
    client.insert(name, [{"id": i, "vector": [i, 1, 1, 1]} for i in range(50)])
    client.delete(name, ids=[0, 1])
    client.flush(name)
    client.create_snapshot("kept", name)
    client.drop_collection(name)
    target = name + "_back"
    try:
        assert client.list_snapshots(collection_name=name) == ["kept"]
        assert client.describe_snapshot("kept", collection_name=name).collection_name == name
        with pytest.raises(MilvusException) as e:
            client.create_snapshot("again", name)
        assert e.value.code == 100
        _restored(client, "kept", name, target)
        assert _count(client, target) == 48
    finally:
        client.drop_snapshot("kept", name)
        if client.has_collection(target):
            client.drop_collection(target)
    with pytest.raises(MilvusException) as e:
        client.list_snapshots(collection_name=name)
    assert e.value.code == 100


def test_a_collection_being_restored_is_not_snapshotted(server, client: MilvusClient, name: str):
    """A restore job still Pending or Executing into a collection: ``create_snapshot`` of it is refused
    (106, as a load is), for it holds only part of the rows yet. The job is recorded as a restore whose
    runner is alive would record it (the standalone's own store), so the test needs no timing."""
    from vecdb.coord.session import INCARNATION
    from vecdb.coord.snapshots import COMPLETED, EXECUTING, JOB_PREFIX, RestoreJob

    meta = getattr(getattr(server, "backends", None), "meta", None)
    if meta is None:
        pytest.skip("needs the in-process standalone's metadata store")
    client.create_collection(name, dimension=4)
    cid = client.describe_collection(name)["collection_id"]
    job = RestoreJob(id=cid + 1, snapshot_name="s", source_db="default", source_collection="src", db="default",
                     collection=name, state=EXECUTING, progress=40, collection_id=cid,
                     owner=INCARNATION)  # this process's (the server's): no sweeper takes it over
    key = f"{JOB_PREFIX}{job.id}"
    meta.put(key, job.to_json())
    try:
        with pytest.raises(MilvusException) as e:
            client.create_snapshot("mid", name)
        assert e.value.code == 106 and "snapshot it once the restore completes" in e.value.message
        assert client.list_snapshots(collection_name=name) == []
        job.state = COMPLETED
        meta.put(key, job.to_json())
        client.create_snapshot("after", name)
        assert client.list_snapshots(collection_name=name) == ["after"]
        client.drop_snapshot("after", name)
    finally:
        meta.delete(key)

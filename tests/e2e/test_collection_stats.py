"""get_collection_stats / get_partition_stats from metadata (vecdb.datanode.row_stats): Milvus's
row_count (the segments' rows, persisted and not yet persisted; deleted rows counted until
compaction), the same loaded or not, and nothing is loaded to answer, on every deployment."""

from __future__ import annotations

import time

import numpy as np

from tests.e2e._helpers import count, float_schema, float_vectors, make_collection


def _stats(client, name: str, partition: str | None = None) -> int:
    if partition is None:
        return client.get_collection_stats(name)["row_count"]
    return client.get_partition_stats(name, partition)["row_count"]


def _columns(ids: np.ndarray, dim: int, seed: int = 0) -> list[dict]:
    vecs = float_vectors(len(ids), dim, seed)
    return [{"id": int(i), "vec": v} for i, v in zip(ids.tolist(), vecs)]


def test_row_count_rule_loaded_and_unloaded(client, name):
    make_collection(client, name, float_schema(4), num_shards=2)
    client.create_partition(name, "p1")
    client.insert(name, _columns(np.arange(0, 30), 4))
    client.insert(name, _columns(np.arange(30, 50), 4), partition_name="p1")
    client.flush(name)  # persisted: 30 + 20
    client.insert(name, _columns(np.arange(50, 57), 4))  # in the log after the checkpoint
    assert _stats(client, name) == 57
    client.flush(name)  # persisting moves rows from the log to segments (compaction may merge them): 57 still
    assert _stats(client, name) == 57 and _stats(client, name, "_default") == 37
    # not flushed after this, so compaction cannot drop the deleted or superseded rows during the test
    client.delete(name, ids=[0, 1, 2, 31])  # counted until compaction, as in Milvus
    client.upsert(name, _columns(np.arange(3, 8), 4, seed=1))  # the new versions count too
    expected = {None: 57 + 5, "_default": 37 + 5, "p1": 20}
    assert count(client, name) == 57 - 4
    for part, rows in expected.items():
        assert _stats(client, name, part) == rows
    client.release_collection(name)
    for part, rows in expected.items():  # the same answers unloaded, and nothing gets loaded
        assert _stats(client, name, part) == rows
    assert client.get_load_state(name)["state"].name == "NotLoad"
    client.drop_partition(name, "p1")  # a dropped partition's rows go with it
    assert _stats(client, name) == expected["_default"]


def test_unloaded_million_rows_answers_in_milliseconds(client, name):
    dim, batch, total, unflushed = 4, 200_000, 1_000_000, 2_345
    make_collection(client, name, float_schema(dim), load=False, num_shards=2)
    client.create_partition(name, "p1")
    rng = np.random.default_rng(7)
    start = time.perf_counter()
    for lo in range(0, total, batch):
        ids = np.arange(lo, lo + batch)
        vecs = rng.standard_normal((batch, dim), dtype=np.float32)
        client.insert(name, [{"id": int(i), "vec": v} for i, v in zip(ids.tolist(), vecs)],
                      partition_name="p1" if lo == 0 else "_default")
    client.flush(name)
    client.insert(name, _columns(np.arange(total, total + unflushed), dim))  # past the checkpoint
    print(f"\n1,000,000 rows inserted and flushed, {unflushed} more inserted: {time.perf_counter() - start:.1f} s")
    assert client.get_load_state(name)["state"].name == "NotLoad"
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        rows = _stats(client, name)
        timings.append(time.perf_counter() - t0)
        assert rows == total + unflushed
    t0 = time.perf_counter()
    p1 = _stats(client, name, "p1")
    part_time = time.perf_counter() - t0
    assert p1 == batch and _stats(client, name, "_default") == total - batch + unflushed
    print(f"get_collection_stats of an unloaded collection of {total + unflushed:,} rows: first "
          f"{timings[0] * 1000:.1f} ms, best {min(timings) * 1000:.1f} ms; "
          f"get_partition_stats {part_time * 1000:.1f} ms")
    # generous (the speed target is the bench's): the median, a busy machine can stretch one call past 0.2 s
    assert sorted(timings)[len(timings) // 2] < 0.2 and max(timings) < 1.0 and part_time < 1.0
    assert client.get_load_state(name)["state"].name == "NotLoad"


def test_deleted_rows_leave_the_count_with_compaction(client, name):
    """Milvus's rule end to end: deleted and superseded rows count until compaction rewrites their
    segments, then row_count is the live count."""
    make_collection(client, name, float_schema(4), num_shards=2)
    client.insert(name, _columns(np.arange(0, 40), 4))
    client.flush(name)
    client.delete(name, ids=list(range(0, 20)))
    client.upsert(name, _columns(np.arange(20, 25), 4, seed=1))
    client.flush(name)  # deltas persisted
    job = client.compact(name)
    deadline = time.monotonic() + 60
    while client.get_compaction_state(job) != "Completed":
        assert time.monotonic() < deadline, "compaction did not complete within 60 s"
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while _stats(client, name) != 20:  # automatic compaction after the flush may still be swapping
        assert time.monotonic() < deadline, f"row_count {_stats(client, name)} after compaction, 20 live"
        time.sleep(0.1)
    assert count(client, name) == 20
    client.release_collection(name)
    assert _stats(client, name) == 20

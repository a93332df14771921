"""Invariants of reads under concurrent writes, flushes and compactions (a standalone server, pymilvus).

A query iterator reads every page at its first page's snapshot (pymilvus passes that page's
``session_ts`` back as the guarantee timestamp). A compaction's new segment holds only the rows alive
at its position, so once a query node swapped its sources for it, the rows upserted (or deleted)
after the iterator began were gone for the iterator's later pages: their old versions were compacted
away and their new versions are newer than its snapshot. An iterator over 4,000 rows skipped up to
365 rows that existed the whole time, while another client upserted, flushed and compacted. A query
node now keeps a compaction's sources for reads at older snapshots (``Shard.replace_segments``).
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.conftest import free_port, start_vecdb, wait_until
from tests.e2e._helpers import compact
from vecdb.querynode import shard as shard_module

DIM = 4


def _schema():
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("k", DataType.INT64)
    return schema


def _rows(ids, k: int) -> list[dict]:
    ids = list(ids)
    vecs = np.random.default_rng(len(ids) + k).random((len(ids), DIM), dtype=np.float32)
    return [{"id": int(i), "vec": vecs[j].tolist(), "k": k} for j, i in enumerate(ids)]


def _create(c: MilvusClient, name: str, n: int, shards: int = 1) -> None:
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=_schema(), index_params=idx, num_shards=shards)
    c.insert(name, _rows(range(n), 0))
    c.flush(name)
    c.load_collection(name)


def _count(c: MilvusClient, name: str, flt: str = "") -> int:
    return c.query(name, flt, output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def _compact_and_swap(server, c: MilvusClient, name: str) -> None:
    """A compaction of ``name``, waited for until the query node swapped its segments."""
    follower = server.querynode.compactions
    before = follower.swapped
    compact(c, name)
    wait_until(lambda: follower.swapped > before, 30, "the query node did not swap the compacted segments")


@pytest.mark.parametrize("keep", ["kept", "not kept"])
def test_a_query_iterator_sees_every_row_across_a_compaction(own_standalone, keep, monkeypatch):
    server, c = own_standalone
    if keep == "not kept":  # the sources forgotten at once: what the query node did before
        monkeypatch.setattr(shard_module, "RETIRED_KEEP_S", 0.0)
    _create(c, "it", 2000)
    it = c.query_iterator("it", batch_size=500, filter="id >= 0", output_fields=["id", "k"],
                          consistency_level="Strong")
    seen = [r["id"] for r in it.next()]
    assert seen == list(range(500))
    # after the iterator's snapshot: the rest upserted, some deleted, all persisted and compacted
    c.upsert("it", _rows(range(1000, 2000), 1))
    c.delete("it", ids=list(range(500, 600)))
    c.flush("it")
    _compact_and_swap(server, c, "it")
    while page := it.next():
        seen.extend(r["id"] for r in page)
    it.close()
    assert len(seen) == len(set(seen))  # none twice
    if keep == "not kept":  # the rows upserted after its snapshot: old versions compacted away
        assert set(range(1000, 2000)).isdisjoint(seen)
        return
    assert sorted(seen) == list(range(2000))  # its snapshot, whole
    # a read at the present sees the present
    assert _count(c, "it") == 1900
    assert _count(c, "it", "k == 1") == 1000


def test_a_search_at_an_older_snapshot_sees_the_rows_a_compaction_dropped(own_standalone):
    """A search at a guarantee timestamp before an upsert (a search iterator's later pages pin one so)
    finds the rows' old versions after the compaction that dropped them."""
    server, c = own_standalone
    _create(c, "s", 300)
    first = c.query("s", "", output_fields=["count(*)"], consistency_level="Strong")
    assert first[0]["count(*)"] == 300
    it = c.search_iterator("s", [[0.5] * DIM], batch_size=100, limit=300, output_fields=["k"],
                           consistency_level="Strong")
    page = it.next()
    assert len(page) == 100
    seen = [h["id"] for h in page]
    c.upsert("s", _rows(range(300), 1))
    c.flush("s")
    _compact_and_swap(server, c, "s")
    while page := it.next():
        seen.extend(h["id"] for h in page)
        assert all(h["entity"]["k"] == 0 for h in page)  # the versions of its snapshot
    it.close()
    assert sorted(seen) == list(range(300))


def test_strong_reads_stay_exact_while_a_fixed_key_set_is_upserted_flushed_and_compacted(own_standalone):
    """5,000 keys upserted over and over by two clients while a third flushes and compacts: every
    Strong count(*) is 5,000, every Strong full query lists each key once, searches never repeat a key."""
    server, c = own_standalone
    n, uri = 5000, f"http://127.0.0.1:{server.port}"
    _create(c, "ups", n, shards=2)
    stop, errors, upserts = threading.Event(), [], [0]

    def run(fn):
        def wrapped():
            try:
                fn(MilvusClient(uri=uri, dedicated=True))
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append(repr(e))
        return threading.Thread(target=wrapped)

    def upsert(seed):
        def go(w):
            rng, k = np.random.default_rng(seed), seed * 1_000_000
            while not stop.is_set():
                k += 1
                w.upsert("ups", _rows(rng.choice(n, 400, replace=False), k))
                upserts[0] += 1
        return go

    def admin(w):
        while not stop.is_set():
            w.flush("ups")
            compact(w, "ups")

    threads = [run(upsert(1)), run(upsert(2)), run(admin)]
    for t in threads:
        t.start()
    try:
        counts, bad = [], []
        rng = np.random.default_rng(3)
        for i in range(60):
            counts.append(_count(c, "ups", "" if i % 2 else "k >= 0"))
            rows = c.query("ups", "id >= 0", output_fields=["id"], limit=n + 10, consistency_level="Strong")
            ids = [r["id"] for r in rows]
            if len(ids) != n or len(set(ids)) != n:
                bad.append((len(ids), len(set(ids))))
            for hits in c.search("ups", rng.random((2, DIM)).tolist(), limit=50, consistency_level="Strong"):
                got = [h["id"] for h in hits]
                if len(got) != 50 or len(set(got)) != 50:
                    bad.append(("search", len(got), len(set(got))))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert upserts[0] > 10  # the reads ran while upserts landed
    assert counts == [n] * len(counts), sorted(set(counts))
    assert not bad, bad[:10]


def test_deleted_keys_stay_deleted_across_compaction_and_a_kill(tmp_path):
    """Keys deleted (acknowledged) never come back: not after a compaction, not after kill -9 and a
    restart, not after a compaction again; the keys acknowledged as inserted are all there."""
    port, data = free_port(), tmp_path / "data"
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data)
    try:
        c = MilvusClient(uri=f"http://127.0.0.1:{port}", dedicated=True, timeout=30)
        _create(c, "d", 3000, shards=2)
        deleted = list(range(0, 3000, 3))
        for i in range(0, len(deleted), 200):  # deletes by ids and by filter, flushed in between
            part = deleted[i:i + 200]
            if i % 400:
                c.delete("d", filter=f"id in {part}")
            else:
                c.delete("d", ids=part)
            assert c.query("d", f"id in {part}", output_fields=["id"], consistency_level="Strong") == []
            if i == 600:
                c.flush("d")
        c.insert("d", _rows(range(3000, 3100), 2))  # acknowledged, never flushed: in the log only
        live = sorted(set(range(3100)) - set(deleted))

        def check(client):
            assert client.query("d", f"id in {deleted}", output_fields=["id"], consistency_level="Strong") == []
            ids = [r["id"] for r in client.query("d", "id >= 0", output_fields=["id"], limit=5000,
                                                 consistency_level="Strong")]
            assert sorted(ids) == live
            assert _count(client, "d") == len(live)

        check(c)
        c.flush("d")
        compact(c, "d")
        check(c)
        c.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data)
        c = MilvusClient(uri=f"http://127.0.0.1:{port}", dedicated=True, timeout=30)
        c.load_collection("d")
        check(c)
        compact(c, "d")
        check(c)
        c.close()
    finally:
        proc.stop()

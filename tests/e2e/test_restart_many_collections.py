"""A standalone restart's work grows linearly with the collections it holds.

A multi-tenant server holds thousands of collections and restarts after every upgrade or crash. What its
start reads of the metadata is counted (not timed) over a data directory holding 0, 4, 8 and 12
collections of the same mix (loaded and released, indexed and not, flushed segments and a growing tail
in the log): each 4 more collections must cost the same reads, and no key may be read more often with
more collections. A per-collection scan of a whole prefix (every collection's segments), or a key read
again for each collection, shows here as a count that grows faster than the collections. Also: what was
loaded comes back loaded and searchable, what was released stays released.
"""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.conftest import server_settings
from vecdb.storage.local_meta import LocalMetaStore

DIM = 8
ROWS = 10
INDEXES = {0: ("FLAT", {}), 1: ("IVF_FLAT", {"nlist": 4}), 3: ("HNSW", {"M": 8, "efConstruction": 16})}
LOADED = (0, 3)


class MetaReads:
    """The metadata reads of this thread (the start's own; background threads left out): calls, keys read
    by ``get`` and keys returned by scans."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.gets = 0
        self.scans = 0
        self.scanned = 0  # keys every scan returned, summed
        self.per_key: Counter[str] = Counter()  # reads of each key (got or scanned)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        get, scan = LocalMetaStore.get, LocalMetaStore.scan_revision

        def counted_get(store, key):
            if threading.get_ident() == self.thread:
                self.gets += 1
                self.per_key[key] += 1
            return get(store, key)

        def counted_scan(store, prefix):
            pairs, revision = scan(store, prefix)
            if threading.get_ident() == self.thread:
                self.scans += 1
                self.scanned += len(pairs)
                self.per_key.update(k for k, _ in pairs)
            return pairs, revision

        monkeypatch.setattr(LocalMetaStore, "get", counted_get)
        monkeypatch.setattr(LocalMetaStore, "scan_revision", counted_scan)

    def totals(self) -> tuple[int, int, int]:
        return self.gets, self.scans, self.scanned


def _rows(i: int, batch: int) -> list[dict]:
    rng = np.random.default_rng(i * 10 + batch)
    return [{"id": batch * 1000 + j, "v": rng.random(DIM, dtype=np.float32).tolist()} for j in range(ROWS)]


def _make(c: MilvusClient, i: int) -> None:
    """Collection ``c<i>``, of kind ``i % 4``: 0 FLAT, two segments and a growing tail, loaded; 1 IVF_FLAT,
    two segments, released; 2 no index, a segment and a growing tail; 3 HNSW, one segment, loaded."""
    name, kind = f"c{i}", i % 4
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection(name, schema=schema, num_shards=1)
    for batch in range(2 if kind in (0, 1) else 1):
        c.insert(name, _rows(i, batch))
        c.flush(name)
    if kind in INDEXES:
        index_type, params = INDEXES[kind]
        ip = c.prepare_index_params()
        ip.add_index("v", index_type=index_type, metric_type="L2", params=params)
        c.create_index(name, ip)
    if kind in LOADED:
        c.load_collection(name)
    if kind in (0, 2):
        c.insert(name, _rows(i, 2))  # acknowledged, in the log only: replayed by the restart


def _counted_start(data_dir, monkeypatch: pytest.MonkeyPatch):
    from vecdb.standalone import Standalone

    reads = MetaReads()
    with monkeypatch.context() as m:
        reads.install(m)
        node = Standalone(server_settings(data_dir)).start()
    return node, reads


def _check_restored(node, n: int) -> None:
    c = MilvusClient(f"http://127.0.0.1:{node.port}")
    try:
        assert sorted(c.list_collections()) == sorted(f"c{i}" for i in range(n))
        for i in range(n):
            state = c.get_load_state(f"c{i}")["state"].name
            assert state == ("Loaded" if i % 4 in LOADED else "NotLoad"), (i, state)
            if i % 4 in LOADED:
                rows = 3 * ROWS if i % 4 == 0 else ROWS
                got = c.query(f"c{i}", filter="id >= 0", output_fields=["id"], consistency_level="Strong")
                assert len(got) == rows, (i, len(got))
                hits = c.search(f"c{i}", [_rows(i, 0)[0]["v"]], limit=1, consistency_level="Strong")
                assert hits[0][0]["id"] == 0, (i, hits)
    finally:
        c.close()


def test_restart_reads_grow_linearly_with_collections(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    counts: list[MetaReads] = []
    n = 0
    for _ in range(4):
        node, reads = _counted_start(data_dir, monkeypatch)
        counts.append(reads)
        try:
            _check_restored(node, n)
            if len(counts) < 4:
                c = MilvusClient(f"http://127.0.0.1:{node.port}")
                for i in range(n, n + 4):
                    _make(c, i)
                c.close()
                n += 4
        finally:
            node.stop()

    totals = [r.totals() for r in counts]  # (gets, scans, keys scanned) at 0, 4, 8 and 12 collections
    print(f"start's metadata reads (gets, scans, keys scanned) at 0/4/8/12 collections: {totals}")
    steps = [tuple(b - a for a, b in zip(lo, hi)) for lo, hi in zip(totals[1:], totals[2:])]
    assert steps[0] == steps[1], f"each 4 more collections cost other reads: {totals}"
    assert all(s > 0 for s in steps[0]), totals  # the counting saw the start's reads
    # no key is read more often because there are more collections (a per-collection read of a shared key)
    most = [max(r.per_key.values()) for r in counts]
    assert most[1] == most[2] == most[3], f"the most reads of one key, at 0/4/8/12 collections: {most}"

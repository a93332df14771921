"""Garbage collection of the object store (vecdb.coord.gc) through pymilvus, on standalone over the
embedded backends, standalone over NATS/etcd/S3, and a cluster of processes (the active coord runs
it): collections with data, deletes, flushes, an index and a partition; orphans made by hand as a
crash would leave them; drop a partition and the index: the garbage goes and what metadata still
references stays (a load counts every row); drop every collection: the object store holds no data
object and the metadata no key of theirs."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.conftest import LocalCluster, server_settings, wait_until
from vecdb import metrics
from vecdb.storage.backends import open_backends

DIM = 8
# compaction's grace too: files of compacted-away segments are named by gc/ records with an "after"
GC_ENV = {"VECDB_GC__INTERVAL": "0.3", "VECDB_GC__GRACE": "1", "VECDB_COMPACTION__GC_GRACE": "1"}


class Deployment:
    def __init__(self, uri: str, meta, objects, stop, in_process: bool):
        self.uri, self.meta, self.objects, self._stop, self.in_process = uri, meta, objects, stop, in_process

    def stop(self) -> None:
        self._stop()


@pytest.fixture(scope="module", params=["embedded", "remote", "cluster"])
def deployment(request, tmp_path_factory):
    from vecdb.standalone import Standalone

    storage = request.getfixturevalue("remote_storage")() if request.param != "embedded" else None
    data_dir = tmp_path_factory.mktemp(f"gc-{request.param}")
    if request.param == "cluster":
        saved = {k: os.environ.get(k) for k in GC_ENV}
        os.environ.update(GC_ENV)  # the processes' environment: the coord's gc settings
        try:
            cluster = LocalCluster(data_dir, storage, proxies=1, querynodes=1, datanodes=1)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        probe = open_backends(server_settings(data_dir / "probe", None, storage).storage)

        def stop() -> None:
            cluster.stop()
            probe.close()

        d = Deployment(f"http://127.0.0.1:{cluster.port}", probe.meta, probe.objects, stop, False)
    else:
        settings = server_settings(data_dir, storage=storage)
        settings.gc.interval, settings.gc.grace = float(GC_ENV["VECDB_GC__INTERVAL"]), float(GC_ENV["VECDB_GC__GRACE"])
        if hasattr(settings, "compaction"):
            settings.compaction.gc_grace = 1.0
        server = Standalone(settings).start()
        d = Deployment(f"http://127.0.0.1:{server.port}", server.meta, server.objects, server.stop, True)
    yield d
    d.stop()


def _collected() -> dict[str, float]:
    """milvus_datacoord_gc_object_count of a standalone server in this process, by kind."""
    return {s.labels["kind"]: s.value for m in metrics.MILVUS.collect() if m.name == "milvus_datacoord_gc_object_count"
            for s in m.samples if s.name.endswith("_total") and s.labels.get("node_id") == metrics.STANDALONE}


def _data_objects(objects) -> list[str]:
    return [k for k in objects.list("") if k.startswith(("segments/", "deltas/"))]


def _create(c: MilvusClient, name: str) -> int:
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection(name, schema=schema, num_shards=1)
    return c.describe_collection(name)["collection_id"]


def _rows(start: int, n: int) -> list[dict]:
    vecs = np.random.default_rng(start).random((n, DIM), dtype=np.float32)
    return [{"id": start + i, "v": vecs[i]} for i in range(n)]


def _gone(objects, keys) -> bool:
    left = set(_data_objects(objects))
    return not any(k in left or any(o.startswith(k) for o in left) for k in keys)


def test_gc_collects_orphans_and_dropped_data_and_keeps_what_is_referenced(deployment):
    meta, objects = deployment.meta, deployment.objects
    before = _collected()  # in this process: a standalone's (a cluster's coord counts in its own)
    c = MilvusClient(uri=deployment.uri)
    try:
        cid = _create(c, "gc_a")
        other = _create(c, "gc_b")
        ch = f"c{cid}-s0"
        c.create_partition("gc_a", "p1")
        c.insert("gc_a", _rows(0, 1100))
        c.insert("gc_a", _rows(5000, 300), partition_name="p1")
        c.insert("gc_b", _rows(0, 200))
        c.flush("gc_a")
        c.delete("gc_a", ids=list(range(50)))
        c.insert("gc_a", _rows(2000, 100))
        c.flush("gc_a")
        c.flush("gc_b")
        ip = c.prepare_index_params()
        ip.add_index("v", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 16})
        c.create_index("gc_a", ip)
        c.load_collection("gc_a")  # the 1,100-row segment gets its index file (whoever builds it)
        wait_until(lambda: any("/index-" in k for k in objects.list(f"segments/{cid}/")), 60,
                   "an index file is written")
        c.release_collection("gc_a")
        p1 = next(p["id"] for p in json.loads(meta.get(f"coll/{cid}"))["partitions"] if p["name"] == "p1")
        p1_segments = {seg["prefix"] for _, v in meta.scan(f"seg/{cid}/")
                       if (seg := json.loads(v))["partition_id"] == p1}
        assert p1_segments
        index_files = [k for k in objects.list(f"segments/{cid}/") if "/index-" in k]

        # what crashes leave: files of a persist never committed (at or below the checkpoint), a delta
        # file the same, a compaction's output whose writer died (its intent names a dead incarnation)
        ckpt = int(meta.get(f"ckpt/{cid}/{ch}"))
        orphan = f"segments/{cid}/{ch}/{ckpt:020d}-999999/"
        objects.put(orphan + "_ts.npy", b"x")
        objects.put(orphan + "101.npy", b"x")
        orphan_delta = f"deltas/{cid}/{ch}/{1:020d}.vcol"
        objects.put(orphan_delta, b"x")
        dead = f"segments/{cid}/{ch}/{ckpt:020d}-999998-c1/"
        objects.put(dead + "_ts.npy", b"x")
        meta.put(f"gcintent/{dead}", json.dumps({"incarnation": "a-process-that-died"}).encode())

        c.drop_partition("gc_a", "p1")
        c.drop_index("gc_a", "v")
        garbage = [orphan, orphan_delta, dead, *p1_segments, *index_files]
        waited = wait_until(lambda: _gone(objects, garbage), 60, "the garbage is collected")
        print(f"orphans, a dropped partition's segments and a dropped index's files collected {waited:.1f} s "
              f"after the drops (gc interval {GC_ENV['VECDB_GC__INTERVAL']} s, grace {GC_ENV['VECDB_GC__GRACE']} s)")
        assert meta.get(f"gcintent/{dead}") is None
        if deployment.in_process:  # (a pass counts what it deleted once it is done: a moment after the deletes)
            moved: dict = {}

            def counted() -> bool:
                moved.update({kind: n - before.get(kind, 0) for kind, n in _collected().items()})
                return moved.get("orphan_segment", 0) >= 3 and moved.get("orphan_delta", 0) >= 1 and \
                    moved.get("dropped_index", 0) >= 1

            try:
                wait_until(counted, 10, "the pass's deletes counted")
            except AssertionError as e:
                raise AssertionError(f"{e}: {moved}") from None
        # what the metadata references stays: every row still loads and counts
        c.create_index("gc_a", ip)
        c.load_collection("gc_a")
        assert c.query("gc_a", "", output_fields=["count(*)"])[0]["count(*)"] == 1100 - 50 + 100
        c.release_collection("gc_a")

        # a persist that raced the drop: files and keys of a collection no longer in the catalog
        for name in c.list_collections():
            c.drop_collection(name)
        late = f"segments/{other}/c{other}-s0/{10**9:020d}-1/"
        objects.put(late + "_ts.npy", b"x")
        meta.put(f"seg/{other}/c{other}-s0/{10**9:020d}-1", json.dumps({"prefix": late, "partition_id": 1}).encode())
        meta.put(f"ckpt/{other}/c{other}-s0", b"1")

        def clean() -> bool:
            keys = [k for p in ("seg/", "delta/", "ckpt/", "idxbuild/", "gc/", "compacted/", "gcintent/")
                    for k, _ in meta.scan(p)]
            return not _data_objects(objects) and not keys

        start = time.monotonic()
        try:
            wait_until(clean, 60, "the object store is empty of data")
        except AssertionError:
            left = _data_objects(objects)
            keys = [k for p in ("seg/", "delta/", "ckpt/", "idxbuild/", "gc/", "compacted/", "gcintent/")
                    for k, _ in meta.scan(p)]
            raise AssertionError(f"after dropping every collection, {len(left)} data objects remain: {left[:50]}; "
                                 f"metadata keys: {keys[:50]}") from None
        print(f"every data object gone {time.monotonic() - start:.1f} s after dropping every collection")
    finally:
        c.close()

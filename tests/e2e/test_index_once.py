"""Each segment's index is built once, by the data node that owns its channel, never by the query
nodes (vecdb.datanode.index_scheduler): real processes (coord, two query nodes, a data node, a
proxy) on NATS, etcd and S3 through pymilvus. With replica_number=2 both query nodes hold every
segment; they search it exactly while the data node builds (a build slowed on purpose:
VECDB_FAULT_INDEX_BUILD=sleep), then load the finished file and serve it from there
(GetQuerySegmentInfo's indexID on both nodes), answers the same before, during and after. The
build records and the data node's build counter say one build per segment; the query nodes' counter
says none. A compaction's segment is indexed the same way (once, by the data node; the query nodes
swap to it, then to its file). An unloaded collection is indexed the same way, and its load serves
the files at once."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from pymilvus import DataType, MilvusClient, utility

from tests.conftest import start_cluster, wait_until
from tests.e2e.test_metrics import Scrape, _get
from vecdb.coord import index_builds
from vecdb.coord.index_builds import FAULT_ENV

DIM, SEGMENT_ROWS, SEGMENTS, BUILD_SECONDS = 8, 1500, 2, 6
NO_COMPACTION = {"VECDB_COMPACTION__ENABLED": "false"}  # the segments stay as flushed unless asked


def _create(c: MilvusClient, name: str) -> None:
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    index = c.prepare_index_params()
    index.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 16})
    c.create_collection(name, schema=schema, index_params=index, num_shards=1)
    c.release_collection(name)


def _fill(c: MilvusClient, name: str, vecs: np.ndarray) -> None:
    for lo in range(0, len(vecs), SEGMENT_ROWS):  # one sealed segment per flush, above MIN_ROWS_FOR_INDEX
        c.insert(name, [{"id": i, "vec": vecs[i]} for i in range(lo, lo + SEGMENT_ROWS)])
        c.flush(name)


def _search(c: MilvusClient, name: str, queries: np.ndarray) -> list[list[int]]:
    hits = c.search(name, queries.tolist(), limit=10, search_params={"params": {"nprobe": 16}},
                    consistency_level="Strong")
    return [[h["id"] for h in q] for q in hits]


def _sealed(alias: str, name: str) -> list:
    """The sealed segments the query nodes hold (Milvus's state 4: flushed)."""
    return [s for s in utility.get_query_segment_info(name, using=alias) if s.state == 3]


def _records(meta, cid: int, index_id: int) -> list[tuple[str, dict]]:
    prefix = index_builds.index_prefix(cid, index_id)
    return [(k[len(prefix):], json.loads(v)) for k, v in meta.scan(prefix)]


def test_each_segment_is_indexed_once_by_the_data_node_and_served_from_its_file(tmp_path, remote_storage):
    alias = "index-once"
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path, querynodes=("qn0", "qn1"),
                       http=("qn0", "qn1", "dn0"),
                       env={"dn0": {FAULT_ENV: f"sleep:{BUILD_SECONDS}",  # the window before each file
                                    **NO_COMPACTION}}) as cluster:  # compaction below, by request
        meta, http = cluster.meta, cluster.http_ports
        for q in ("qn0", "qn1"):
            wait_until(lambda q=q: _get(http[q], "/healthz")[0] == 200, 60, f"{q} is ready")
        c = cluster.client()
        cluster.connect(alias)
        _create(c, "docs")
        c.load_collection("docs", replica_number=2)
        cid = c.describe_collection("docs")["collection_id"]
        vecs = np.random.default_rng(0).random((SEGMENTS * SEGMENT_ROWS, DIM), dtype=np.float32)
        queries = vecs[::300] + 0.01
        expected = np.argsort(((queries[:, None, :] - vecs[None, :, :]) ** 2).sum(-1), axis=1)[:, :10].tolist()
        before_metrics = {q: Scrape(http[q]) for q in ("qn0", "qn1", "dn0")}

        flushed = time.monotonic()
        _fill(c, "docs", vecs)
        # both nodes hold both segments (once they applied the seal records), searched exactly while the
        # data node builds (slowed on purpose)
        wait_until(lambda: sum(len(s.nodeIds) for s in _sealed(alias, "docs")) == 2 * SEGMENTS, 10,
                   "the query nodes do not both hold both sealed segments")
        segs = _sealed(alias, "docs")
        assert sum(s.num_rows * len(s.nodeIds) for s in segs) == 2 * len(vecs)
        assert all(s.indexID == 0 for s in segs), "a query node serves an index before the data node built it"
        assert time.monotonic() - flushed < BUILD_SECONDS  # still inside the build's window
        before = _search(c, "docs", queries)
        assert before == expected

        answers: list = []
        stop = threading.Event()
        cluster.at_close(stop.set)

        def read():  # reads all along the switch
            while not stop.is_set():
                answers.append(_search(c, "docs", queries))
        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: (s := _sealed(alias, "docs")) and all(x.indexID != 0 for x in s)
                   and sum(len(x.nodeIds) for x in s) == 2 * SEGMENTS, 60,
                   "the query nodes never served the data node's index files")
        stop.set()
        reader.join(30)
        print(f"both query nodes serve both segments from their files {time.monotonic() - flushed:.1f} s after the "
              f"flushes (builds slowed to {BUILD_SECONDS} s each); {len(answers)} searches during the switch")
        segs = _sealed(alias, "docs")
        index_id = segs[0].indexID
        assert len(segs) == SEGMENTS and all(len(s.nodeIds) == 2 for s in segs)  # one segment id, both nodes
        assert all(a == expected for a in answers), "an answer changed during the switch"
        assert _search(c, "docs", queries) == before

        # one finished build record per segment, by dn0; no other build ran
        recs = _records(meta, cid, index_id)
        assert sorted((r["state"], r["by"], r["rows"]) for _, r in recs) == [("finished", "dn0", SEGMENT_ROWS)] * 2
        assert len({k.rsplit("/", 1)[0] for k, _ in recs}) == SEGMENTS
        after_metrics = {q: Scrape(http[q]) for q in ("qn0", "qn1", "dn0")}
        moved = {q: after_metrics[q].value("milvus_indexnode_index_task_count", status="success")
                 - before_metrics[q].value("milvus_indexnode_index_task_count", status="success")
                 for q in after_metrics}
        assert moved == {"qn0": 0, "qn1": 0, "dn0": SEGMENTS}, moved
        desc = c.describe_index("docs", "vec")
        assert (desc["indexed_rows"], desc["total_rows"], desc["state"]) == (3000, 3000, "Finished"), desc

        # a compaction merges the two: its segment is indexed once by dn0, and served from that file
        compacted_at = time.monotonic()
        job = c.compact("docs")
        wait_until(lambda: c.get_compaction_state(job) == "Completed", 60, "the compaction never completed")
        wait_until(lambda: [(s.num_rows, len(s.nodeIds), s.indexID != 0) for s in _sealed(alias, "docs")]
                   == [(len(vecs), 2, True)], 60, "the query nodes never served the compacted segment's file")
        print(f"compacted segment served from its file on both query nodes {time.monotonic() - compacted_at:.1f} s "
              f"after client.compact (its build slowed to {BUILD_SECONDS} s)")
        assert _search(c, "docs", queries) == expected
        recs = _records(meta, cid, index_id)
        assert sorted((r["state"], r["by"]) for _, r in recs) == [("finished", "dn0")] * 3, recs
        assert len({k.rsplit("/", 1)[0] for k, _ in recs}) == 3 and sum("-c" in k for k, _ in recs) == 1
        moved_dn = Scrape(http["dn0"]).value("milvus_indexnode_index_task_count", status="success") \
            - before_metrics["dn0"].value("milvus_indexnode_index_task_count", status="success")
        assert moved_dn == SEGMENTS + 1

        # an unloaded collection: indexed by the data node the same way; its load serves the files
        _create(c, "cold")
        _fill(c, "cold", vecs)
        cold_id = c.describe_collection("cold")["collection_id"]
        wait_until(lambda: c.describe_index("cold", "vec")["state"] == "Finished", 60, "cold is never indexed")
        # (the state counts a file once it is written; its record follows at once)
        wait_until(lambda: len(meta.scan(index_builds.collection_prefix(cold_id))) == SEGMENTS, 10, "no records")
        cold_recs = [json.loads(v) for _, v in meta.scan(index_builds.collection_prefix(cold_id))]
        assert sorted((r["state"], r["by"]) for r in cold_recs) == [("finished", "dn0")] * SEGMENTS, cold_recs
        c.load_collection("cold", replica_number=2)
        segs = _sealed(alias, "cold")
        assert segs and all(s.indexID != 0 for s in segs) and sum(len(s.nodeIds) for s in segs) == 2 * SEGMENTS
        assert _search(c, "cold", queries) == expected
        assert len(list(meta.scan(index_builds.collection_prefix(cold_id)))) == SEGMENTS  # loading built nothing


def test_a_data_node_killed_in_the_middle_of_a_build_leaves_it_to_the_next_owner(tmp_path, remote_storage):
    """kill -9 of the data node while it builds (slowed to 60 s) and with a second build queued: the
    other data node takes the channel over, builds the interrupted segment once more
    (``retry_after_crash``: a crash is taken for the build's only when it happens twice) and the
    queued one, and the query node serves both from the files; nothing is reported failed."""
    alias = "index-once-kill"
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path,
                       env={"dn0": {FAULT_ENV: "sleep:60", **NO_COMPACTION}}) as cluster:
        meta, c = cluster.meta, cluster.client()
        cluster.connect(alias)
        _create(c, "docs")
        c.load_collection("docs")
        cid = c.describe_collection("docs")["collection_id"]
        vecs = np.random.default_rng(1).random((SEGMENTS * SEGMENT_ROWS, DIM), dtype=np.float32)
        _fill(c, "docs", vecs)
        wait_until(lambda: any(json.loads(v)["state"] == "running"
                               for _, v in meta.scan(index_builds.collection_prefix(cid))), 20, "dn0 never builds")
        cluster.start("dn1", env=NO_COMPACTION)
        killed = cluster.kill("dn0")
        wait_until(lambda: (s := _sealed(alias, "docs")) and len(s) == SEGMENTS and all(x.indexID for x in s), 60,
                   "the query node never served the segments' files after the take-over")
        print(f"kill -9 of the building data node: both segments served from dn1's files "
              f"{time.monotonic() - killed:.1f} s later (session ttl 2 s)")
        recs = [json.loads(v) for _, v in meta.scan(index_builds.collection_prefix(cid))]
        assert sorted((r["state"], r["by"]) for r in recs) == [("finished", "dn1")] * SEGMENTS, recs
        desc = c.describe_index("docs", "vec")
        assert (desc["indexed_rows"], desc["total_rows"], desc["state"]) == (3000, 3000, "Finished"), desc
        queries = vecs[::300] + 0.01
        expected = np.argsort(((queries[:, None, :] - vecs[None, :, :]) ** 2).sum(-1), axis=1)[:, :10].tolist()
        assert _search(c, "docs", queries) == expected

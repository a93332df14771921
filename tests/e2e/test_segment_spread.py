"""A collection of one shard still spreads over a replica's query nodes: its sealed segments are
placed on the nodes (vecdb.coord.assignment ``Replica.segments``), the channel's leader keeps the
growing rows, and every node keeps the rows it does not serve as stubs so deletes and upserts reach
them. Tested as processes (``vecdb coord``, ``vecdb querynode`` x2 then x3, ``vecdb proxy``) on NATS,
etcd and S3 through pymilvus (with a data node, which builds every segment's index file):

- each node holds about half of the sealed rows (rows and RSS printed); answers (search, query,
  count) equal the exact ones, after deletes and upserts of rows on either node and with growing
  rows on top;
- ``kill -9`` of the node that does not lead the channel, with a segment pinned there by hand
  (``load_balance``), under a steady search load: complete answers again within 10 s (printed), the
  survivor serves every sealed segment;
- a third node that starts later takes segments without any restart.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from pymilvus import Collection, DataType, MilvusClient, utility

from tests.conftest import start_cluster, wait_until
from tests.e2e.test_assignment import _exact, _rows_per_node, _rss_mib
from vecdb.discovery import node_number

DIM, BATCH, BATCHES = 16, 2000, 6  # segments of 2,000 rows: indexed (over MIN_ROWS_FOR_INDEX)
EVERY_LIST = {"params": {"nprobe": 8}}


def test_the_sealed_segments_of_one_shard_spread_over_the_nodes_of_a_replica(tmp_path, remote_storage):
    stop = threading.Event()
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path, querynodes=("qn0", "qn1"),
                       env={"coord": {"VECDB_QUERYNODE__SPREAD_MIN_ROWS": "10000"}}) as cluster:
        uri, c = cluster.uri(), cluster.client()
        cluster.connect("spread")
        cluster.at_close(stop.set)
        number = {q: node_number(q) for q in ("qn0", "qn1", "qn2")}

        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("tag", DataType.INT64)
        index = c.prepare_index_params()
        # IVF_FLAT probing every list answers exactly, and its files are built per segment (and loaded by
        # whichever node serves the segment)
        index.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
        c.create_collection("docs", schema=schema, index_params=index, num_shards=1)
        rows = BATCH * BATCHES
        data = np.random.default_rng(0).random((rows, DIM), dtype=np.float32)
        tags = np.arange(rows) % 7
        for lo in range(0, rows, BATCH):  # one sealed segment per flush
            c.insert("docs", [{"id": i, "vec": data[i], "tag": int(tags[i])} for i in range(lo, lo + BATCH)])
            c.flush("docs")
        alive = np.ones(rows, bool)
        queries = data[[5, 2500, 5999]] + 0.01

        def check_answers():
            ids = np.flatnonzero(alive)
            count = c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
            assert count == len(ids)
            want = ids[_exact(data[ids], queries, 10)].tolist()
            got = c.search("docs", data=queries.tolist(), limit=10, output_fields=["tag"], search_params=EVERY_LIST,
                           consistency_level="Strong")
            assert [[h["id"] for h in hits] for hits in got] == want
            assert all(h["entity"]["tag"] == tags[h["id"]] for hits in got for h in hits)
            hit = c.query("docs", "tag == 3", output_fields=["tag"], consistency_level="Strong")
            assert sorted(r["id"] for r in hit) == [i for i in ids.tolist() if tags[i] == 3]

        def spread() -> bool:
            held = _rows_per_node("spread", "docs")
            return (sum(held.values()) == alive.sum() and set(held) == {number["qn0"], number["qn1"]}
                    and all(0.25 * rows <= n <= 0.75 * rows for n in held.values()))

        # the sealed rows spread over both nodes; answers exact
        wait_until(spread, 30)
        held = _rows_per_node("spread", "docs")
        rss = {q: _rss_mib(cluster.procs[q].pid) for q in ("qn0", "qn1")}
        print(f"one shard, replica 1: sealed rows per node {dict(held)}, RSS MiB {rss}")
        check_answers()
        # every sealed segment is searched with its index on the node that serves it
        wait_until(lambda: all(s.index_name for s in utility.get_query_segment_info("docs", using="spread")), 60,
                   f"{utility.get_query_segment_info('docs', using='spread')}")
        progress = c.describe_index("docs", "vec")
        assert progress["indexed_rows"] == progress["total_rows"] == rows, progress

        # deletes and upserts reach rows on either node; growing rows on top of the sealed ones
        gone = list(range(0, rows, 97))
        c.delete("docs", ids=gone)
        alive[gone] = False
        moved = list(range(1, rows, 101))
        data[moved] = np.random.default_rng(1).random((len(moved), DIM), dtype=np.float32)
        tags[moved] = 6
        c.upsert("docs", [{"id": i, "vec": data[i], "tag": 6} for i in moved])
        alive[moved] = True
        extra = np.random.default_rng(2).random((500, DIM), dtype=np.float32)
        data = np.concatenate([data, extra])
        tags = np.concatenate([tags, np.arange(rows, rows + 500) % 7])
        alive = np.concatenate([alive, np.ones(500, bool)])
        c.insert("docs", [{"id": rows + i, "vec": extra[i], "tag": int(tags[rows + i])} for i in range(500)])
        check_answers()

        # kill -9 a node under a steady search load: complete answers again within 10 s
        a = c.describe_collection("docs")
        want = np.flatnonzero(alive)[_exact(data[alive], queries, 10)].tolist()
        complete: list[float] = []

        def reader():
            reads = MilvusClient(uri=uri)
            while not stop.is_set():
                began = time.monotonic()
                try:
                    got = reads.search("docs", data=queries.tolist(), limit=10, search_params=EVERY_LIST,
                                       consistency_level="Strong")
                    ok = [[h["id"] for h in hits] for hits in got] == want
                except Exception:  # noqa: BLE001 (a search may fail while segments move)
                    ok = False
                if ok:
                    complete.append(began)
            reads.close()
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        wait_until(lambda: len(complete) >= 3, 30)
        leaders = {n for r in _replicas("docs") for n in r}
        victim = "qn1" if leaders == {number["qn0"]} else "qn0"
        survivor = "qn0" if victim == "qn1" else "qn1"
        # first pin one of the survivor's sealed segments on the victim by hand (load_balance): the pin
        # must go with the node, and the segment come back to the survivor
        sealed = [s for s in utility.get_query_segment_info("docs", using="spread") if s.state == 3]
        moved_seg = next(s.segmentID for s in sealed if s.nodeIds == [number[survivor]])
        utility.load_balance("docs", number[survivor], [number[victim]], [moved_seg], using="spread")
        assert [s.nodeIds for s in utility.get_query_segment_info("docs", using="spread")
                if s.segmentID == moved_seg] == [[number[victim]]]
        killed_at = cluster.kill(victim)
        wait_until(lambda: any(b > killed_at for b in complete), 30)
        recovery = min(b for b in complete if b > killed_at) - killed_at
        print(f"kill -9 of {victim} (not the leader, holding a segment pinned there; collection "
              f"{a['collection_name']}): complete answers again {recovery:.2f} s later")
        assert recovery < 10
        stop.set()
        t.join(30)
        check_answers()
        wait_until(lambda: {n for s in utility.get_query_segment_info("docs", using="spread") if s.state == 3
                            for n in s.nodeIds} == {number[survivor]}, 30, "the survivor serves every sealed segment")

        # a node that starts later takes segments, without any restart
        cluster.start("qn2")
        wait_until(lambda: number["qn2"] in _rows_per_node("spread", "docs"), 60)
        check_answers()
        print(f"after qn2 joined: sealed rows per node {dict(_rows_per_node('spread', 'docs'))}")


def _replicas(name: str) -> list[list[int]]:
    """The leader node ids of each replica's channels."""
    return [[s.shard_leader for s in g.shards] for g in Collection(name, using="spread").get_replicas().groups]

"""Data nodes as processes (``vecdb datanode``): the coord gives each channel to one data node
(vecdb.coord.datanode_assignment), which persists it at every seal record; a flush through the
proxy returns once the data node moved the checkpoint. Killed, a data node's channels go to the
other one; with none left the proxy persists itself. Real processes on NATS, etcd and S3 through
pymilvus; the segments' metadata says who wrote them."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import numpy as np

from tests.conftest import start_cluster, wait_until
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX

DIM = 8


def _writers(meta) -> list:
    """Who wrote each persisted segment (a data node's or a proxy's node id), in position order."""
    segs = [json.loads(v) for _, v in meta.scan("seg/")]
    return [s.get("by") for s in sorted(segs, key=lambda s: s["position"])]


def test_data_nodes_persist_flushes_fail_over_and_the_proxy_stands_in(tmp_path, remote_storage):
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path, datanodes=("dn0", "dn1")) as cluster:
        procs, meta, c = cluster.procs, cluster.meta, cluster.client()
        c.create_collection("docs", dimension=DIM, metric_type="L2", num_shards=2)
        vecs = np.random.default_rng(0).random((3000, DIM), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(1000)])

        wait_until(lambda: sorted(n for _, v in meta.scan(DN_ASSIGN_PREFIX) for n in json.loads(v).values())
                   == ["dn0", "dn1"], 20, "each data node owns one of the two channels")
        c.flush("docs")
        assert sorted(_writers(meta)) == ["dn0", "dn1"]  # each channel persisted by its data node
        assert c.query("docs", "", output_fields=["count(*)"])[0]["count(*)"] == 1000

        procs["dn0"].kill()  # its channel goes to dn1 once its session expires
        procs["dn0"].wait(5)
        killed = time.monotonic()
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(1000, 2000)])
        c.flush("docs")  # waits for dn1 to take the channel over and persist it
        print(f"flush after kill -9 of a data node returned {time.monotonic() - killed:.2f} s after the kill "
              "(session ttl 2 s)")
        assert _writers(meta)[2:] == ["dn1", "dn1"]

        procs["dn1"].send_signal(signal.SIGTERM)  # no data node left: the proxy persists itself
        assert procs["dn1"].wait(15) == 0
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(2000, 3000)])
        c.flush("docs")
        assert _writers(meta)[4:] == ["proxy", "proxy"]  # persisted by the proxy, which names itself
        assert c.query("docs", "", output_fields=["count(*)"])[0]["count(*)"] == 3000
        hits = c.search("docs", data=[vecs[2500].tolist()], limit=1)[0]
        assert hits[0]["id"] == 2500


def _first_position(log, channel: str) -> int:
    """The first position the channel still holds (0 when empty)."""
    return next((pos for pos, _ in log.read(channel, 1)), 0)


def test_the_log_is_truncated_below_what_every_follower_applied(tmp_path, remote_storage):
    """The data node cuts each channel below its checkpoint and what the query nodes applied; a
    query node that starts (or restarts) afterwards loads from the segments and the rest of the log."""
    from tests.conftest import server_settings
    from vecdb.storage.backends import open_log

    storage = dict(remote_storage(), session_ttl=2)
    with start_cluster(storage, tmp_path) as cluster, \
            contextlib.closing(open_log(server_settings(tmp_path / "probe", None, storage).storage)) as wal:
        c = cluster.client()
        c.create_collection("docs", dimension=DIM, metric_type="L2")
        channel = f"c{c.describe_collection('docs')['collection_id']}-s0"
        vecs = np.random.default_rng(1).random((2000, DIM), dtype=np.float32)
        for lo in range(0, 1500, 500):
            c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(lo, lo + 500)])
            c.flush("docs")
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(1500, 2000)])  # growing, in the log only
        assert c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 2000
        last = wal.last_position(channel)
        took = wait_until(lambda: _first_position(wal, channel) > 1, 20, "the log is never truncated")
        first = _first_position(wal, channel)
        print(f"log of {channel}: positions {first}..{last} kept (truncated {took:.1f} s after the last write)")
        assert 1 < first <= last

        cluster.kill("qn0")  # a node that starts now finds part of the log gone: it loads the segments
        cluster.start("qn1")
        assert c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 2000
        hits = c.search("docs", data=[vecs[1700].tolist(), vecs[100].tolist()], limit=1)
        assert [h[0]["id"] for h in hits] == [1700, 100]


def test_a_data_node_killed_in_the_middle_of_a_flush_loses_nothing_and_repeats_nothing(tmp_path, remote_storage):
    """The data node owning the channel dies inside the persist (its segment files written, its
    metadata not committed: VECDB_FAULT_PERSIST=abort); the other data node takes the channel over
    and the flush returns with every acknowledged row searchable once."""
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path,
                       env={"dn0": {"VECDB_FAULT_PERSIST": "abort"}}) as cluster:
        procs, meta, c = cluster.procs, cluster.meta, cluster.client()
        c.create_collection("docs", dimension=DIM, metric_type="L2")
        wait_until(lambda: [n for _, v in meta.scan(DN_ASSIGN_PREFIX) for n in json.loads(v).values()] == ["dn0"],
                   20, "dn0 owns the channel")
        cluster.start("dn1")  # joins later: dn0 keeps the channel while it lives
        vecs = np.random.default_rng(2).random((3000, DIM), dtype=np.float32)
        for lo in range(0, 3000, 1000):
            c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(lo, lo + 1000)])
        c.upsert("docs", [{"id": i, "vector": vecs[i]} for i in range(10)])  # a second version of 10 rows
        c.delete("docs", ids=[20, 21])
        t0 = time.monotonic()
        c.flush("docs")  # dn0 aborts inside the persist; dn1 takes over once dn0's session expires
        took = time.monotonic() - t0
        assert procs["dn0"].wait(5) != 0  # it died in the persist
        print(f"flush with the owning data node killed inside it: returned after {took:.2f} s (session ttl 2 s)")
        segs = [json.loads(v) for _, v in meta.scan("seg/")]
        assert [s.get("by") for s in segs] == ["dn1"] and segs[0]["num_rows"] == 3010
        assert c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 2998
        got = c.query("docs", "id < 12", output_fields=["id"], consistency_level="Strong")
        assert sorted(r["id"] for r in got) == list(range(12))  # one row per key, the upserted ones once
        cluster.kill("qn0")  # a node that loads only the persisted state sees the same
        cluster.start("qn1")
        assert c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 2998
        hits = c.search("docs", data=[vecs[2999].tolist()], limit=2)[0]
        assert hits[0]["id"] == 2999

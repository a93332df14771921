"""Faults of the multi-process cluster left from an earlier hunt, each kept as a regression test:
real processes (``vecdb coord``, ``querynode``, ``datanode``, ``proxy``) on NATS, etcd and S3,
driven by pymilvus.

- a manual compaction whose data node dies before carrying it out: before the fix its state stayed
  Executing forever (nobody carried out the request's channels). Now the data node that takes the
  channels over carries it out; with none alive ``compaction.timeout`` s after the request, each
  channel left is a failed plan and the state reads Completed (Milvus's data coordinator ends a plan
  whose data node went away), so ``wait_for_compaction_completed`` returns.
- describe_index's ``indexed_rows`` and ``total_rows`` while segments move between query nodes: a
  segment both nodes held for a moment counted twice (the nodes answered sums; now they list their
  segments and the proxy counts each once).
- describe_replica after a query node dies in the middle of a load (two replicas of one node each):
  the dead node's replica was shown with no node and no shard; now only replicas with a live node
  are shown (with their live nodes), the emptied one again once a joining node takes it.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException, utility
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from tests.conftest import RoleProcesses, start_cluster, wait_until
from vecdb.discovery import node_number

TTL = 2  # session ttl (s)
DIM = 8


def _vectors(ids: list[int]) -> list[list[float]]:
    a = np.asarray(ids, dtype=np.float32)[:, None]
    return (np.sin(a * np.arange(1, DIM + 1, dtype=np.float32) * 0.37) + a * 1e-3).tolist()


def _create(c: MilvusClient, name: str, shards: int = 2) -> None:
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    index = c.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=schema, index_params=index, num_shards=shards)


def _insert(c: MilvusClient, name: str, ids: list[int]) -> None:
    c.insert(name, [{"id": i, "vec": v} for i, v in zip(ids, _vectors(ids))])


def _compaction_state(c: MilvusClient, compaction_id: int):
    """The raw reply (pymilvus's CompactionState has no failed plan count)."""
    stub = c._get_connection()._stub
    return stub.GetCompactionState(milvus_pb2.GetCompactionStateRequest(compactionID=compaction_id), timeout=30)


def _count(c: MilvusClient, name: str) -> int:
    return c.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def test_a_compaction_whose_data_node_dies_completes_on_the_next_or_fails_in_bounded_time(tmp_path, remote_storage):
    cl = RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path)
    stopped = None
    try:
        cl.start("coord")
        cl.start("qn0")
        cl.start("dn0")
        cl.start("proxy", env={"VECDB_COMPACTION__TIMEOUT": "8"})
        c = cl.client()
        _create(c, "docs")
        _insert(c, "docs", list(range(400)))
        c.flush("docs")
        c.delete("docs", ids=list(range(0, 400, 5)))  # a dead row in every segment: a manual compaction rewrites it
        c.flush("docs")
        assert _count(c, "docs") == 320

        # the data node stops before it carries the request out, and dies
        stopped = cl.procs["dn0"]
        stopped.send_signal(signal.SIGSTOP)
        first = c.compact("docs")  # its session still lives: the request is the data nodes'
        cl.kill("dn0")
        stopped = None
        time.sleep(TTL + 2)
        reply = _compaction_state(c, first)
        assert reply.state == common_pb2.Executing and reply.executingPlanNo == 2

        # a data node joins: it takes the channels over and carries the request out
        cl.start("dn1")
        wait_until(lambda: _compaction_state(c, first).state == common_pb2.Completed, 60,
                   "the compaction did not complete on the data node that joined")
        reply = _compaction_state(c, first)
        assert reply.completedPlanNo >= 2 and reply.failedPlanNo == 0 and reply.executingPlanNo == 0
        assert _count(c, "docs") == 320

        # the same again with no data node coming back: after compaction.timeout (8 s) the state reads
        # Completed with each channel a failed plan (a client waiting for it returns)
        c.delete("docs", ids=[1, 2, 3])
        c.flush("docs")
        stopped = cl.procs["dn1"]
        stopped.send_signal(signal.SIGSTOP)
        second = c.compact("docs")
        asked = time.monotonic()
        cl.kill("dn1")
        stopped = None
        assert _compaction_state(c, second).state == common_pb2.Executing
        wait_until(lambda: _compaction_state(c, second).state == common_pb2.Completed, 60,
                   "the compaction stayed Executing with no data node alive")
        waited = time.monotonic() - asked
        reply = _compaction_state(c, second)
        assert reply.state == common_pb2.Completed
        assert reply.failedPlanNo == 2 and reply.executingPlanNo == 0 and reply.completedPlanNo == 0
        assert 7 <= waited < 30, waited
        assert _count(c, "docs") == 317  # nothing lost: the proxies persist and read without a data node
    finally:
        if stopped is not None:
            stopped.send_signal(signal.SIGCONT)
        cl.close()


def test_index_rows_count_a_segment_once_while_it_moves_between_query_nodes(tmp_path, remote_storage):
    """describe_index's indexed and total rows while sealed segments go back and forth between two query
    nodes (``load_balance``: the target loads a segment before the source lets it go, so both hold it for
    a moment). Before the fix the proxy summed the nodes' counts and a segment on both counted twice
    (total_rows above the collection's rows, indexed_rows too)."""
    rows, batch = 8000, 2000  # segments of 2,000 rows: indexed (over MIN_ROWS_FOR_INDEX)
    env = {"coord": {"VECDB_QUERYNODE__SPREAD_MIN_ROWS": "1000"}}
    with start_cluster(dict(remote_storage(), session_ttl=TTL), tmp_path, querynodes=("qn0", "qn1"),
                       env=env) as cl:
        c = cl.client()
        cl.connect("handover")
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        index = c.prepare_index_params()
        index.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
        c.create_collection("docs", schema=schema, index_params=index, num_shards=1)
        for lo in range(0, rows, batch):  # one sealed segment per flush
            _insert(c, "docs", list(range(lo, lo + batch)))
            c.flush("docs")
        wait_until(lambda: c.describe_index("docs", "vec")["indexed_rows"] == rows, 60, "the indexes not built")
        number = {q: node_number(q) for q in ("qn0", "qn1")}
        wait_until(lambda: {n for s in utility.get_query_segment_info("docs", using="handover")
                            for n in s.nodeIds} == set(number.values()), 30, "the segments did not spread")

        samples: list[tuple[int, int]] = []
        stop = threading.Event()

        def poll() -> None:
            reads = MilvusClient(uri=cl.uri())
            while not stop.is_set():
                d = reads.describe_index("docs", "vec")
                samples.append((d["indexed_rows"], d["total_rows"]))
            reads.close()

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        moved = 0
        try:
            for _ in range(6):  # every sealed segment to the other node, and back
                for s in utility.get_query_segment_info("docs", using="handover"):
                    if len(s.nodeIds) != 1:  # still on both nodes (the last move's hand-over)
                        continue
                    (src,) = s.nodeIds
                    dst = number["qn1"] if src == number["qn0"] else number["qn0"]
                    try:
                        utility.load_balance("docs", src, [dst], [s.segmentID], using="handover")
                        moved += 1
                    except MilvusException as e:  # the listing was a moment old: the segment left src since
                        if "not found in source node" not in e.message:
                            raise
        finally:
            stop.set()
            t.join(30)
        assert moved >= 6 and len(samples) > 20, (moved, samples)
        wrong = [s for s in samples if s != (rows, rows)]
        assert not wrong, f"{len(wrong)} of {len(samples)} samples not ({rows}, {rows}): {sorted(set(wrong))[:5]}"


def test_describe_replica_lists_live_nodes_after_a_query_node_dies_mid_load(tmp_path, remote_storage):
    """Two replicas of one node each; one node is killed while the load goes on. Before the fix
    describe_replica showed the dead node's replica with no node and no shard; now it shows the
    replicas that serve (each with its live node leading every shard), and the emptied replica again
    once a new node joins it."""
    with start_cluster(dict(remote_storage(), session_ttl=TTL), tmp_path, querynodes=("qn0", "qn1")) as cl:
        c = cl.client()
        _create(c, "docs")
        for lo in range(0, 20000, 5000):
            _insert(c, "docs", list(range(lo, lo + 5000)))
        c.flush("docs")
        c.release_collection("docs")
        number = {q: node_number(q) for q in ("qn0", "qn1", "qn2")}
        loading = threading.Thread(target=lambda: c.load_collection("docs", replica_number=2, timeout=60), daemon=True)
        loading.start()
        time.sleep(0.05)
        cl.kill("qn0")
        loading.join(90)

        def shown() -> list[tuple[tuple[int, ...], dict[str, int]]]:
            return [(tuple(r.group_nodes), {s.channel_name: s.shard_leader for s in r.shards})
                    for r in c.describe_replica("docs")]

        # the dead node's session ends (TTL): the replica it served is not shown empty
        wait_until(lambda: all(number["qn0"] not in nodes for nodes, _ in shown()), 30, f"{shown()}")
        time.sleep(TTL + 1)  # the coord re-planned long since
        replicas = shown()
        assert replicas and all(nodes for nodes, _ in replicas), replicas
        assert [nodes for nodes, _ in replicas] == [(number["qn1"],)], replicas
        (_, leaders), = replicas
        assert set(leaders.values()) == {number["qn1"]} and len(leaders) == 2, leaders
        assert _count(c, "docs") == 20000

        # a new node joins: it takes the emptied replica, which shows it
        cl.start("qn2")
        wait_until(lambda: sorted(nodes for nodes, _ in shown()) == sorted([(number["qn1"],), (number["qn2"],)]), 60,
                   f"{shown()}")
        wait_until(lambda: all(set(leaders.values()) == set(nodes) and len(leaders) == 2
                               for nodes, leaders in shown()), 60, f"{shown()}")
        assert _count(c, "docs") == 20000


def test_a_flush_with_the_coord_hung_fails_soon_as_unavailable_or_finishes_when_it_resumes(tmp_path, remote_storage):
    """A flush sent while the only coord is stopped (SIGSTOP: it holds its connections, answers
    nothing). Before the fix the proxy's call waited its whole 130 s (the coord's wait for the data
    nodes plus a margin), and then again while no coord was there, before failing; now it is given up
    once the coord's session ends, and the flush fails with a retriable not-ready/unavailable error well
    within the client's timeout. A coord resumed before its session ends answers the flush."""
    with start_cluster(dict(remote_storage(), session_ttl=TTL), tmp_path) as cl:
        c = cl.client()
        _create(c, "docs")
        _insert(c, "docs", list(range(100)))
        coord = cl.procs["coord"]
        try:
            # resumed at once (its session still lives): the flush finishes
            coord.send_signal(signal.SIGSTOP)
            done: list[object] = []
            flushing = threading.Thread(target=lambda: done.append(c.flush("docs", timeout=60)), daemon=True)
            flushing.start()
            time.sleep(0.5)
            coord.send_signal(signal.SIGCONT)
            flushing.join(60)
            assert not flushing.is_alive() and done == [None], done

            # stopped for good: the flush fails soon, with a retriable error saying so
            _insert(c, "docs", list(range(100, 200)))
            coord.send_signal(signal.SIGSTOP)
            _flush_fails_within(c, timeout=60, bound=40)
            # a client with a shorter timeout hears why before its deadline (not a deadline of its own)
            _flush_fails_within(c, timeout=6, bound=6)
        finally:
            coord.send_signal(signal.SIGCONT)
        # the coord back: the rows written meanwhile are flushed and counted
        wait_until(lambda: _flushed(c), 60, "no flush once the coord resumed")
        assert _count(c, "docs") == 200


def _flush_fails_within(c: MilvusClient, timeout: float, bound: float) -> None:
    """A flush of ``docs`` (client ``timeout``) with the coord stopped fails within ``bound`` seconds,
    with a retriable error naming the coord."""
    began = time.monotonic()
    try:
        c.flush("docs", timeout=timeout)
        raise AssertionError("a flush with the coord stopped succeeded")
    except MilvusException as e:
        failed, error = time.monotonic() - began, e
    assert failed < bound, f"the flush failed only after {failed:.1f} s: {error!r}"
    assert error.code in (1, 2) and "coord" in error.message, (error.code, error.message)
    print(f"flush (timeout {timeout} s) with the coord stopped: failed after {failed:.1f} s: {error.code} "
          f"{error.message}")


def _flushed(c: MilvusClient) -> bool:
    try:
        c.flush("docs", timeout=20)
        return True
    except MilvusException:
        return False

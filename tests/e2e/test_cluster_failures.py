"""Failures of a whole cluster, as real processes (``vecdb coord``, ``vecdb querynode``,
``vecdb proxy``) on NATS, etcd and S3, through pymilvus; each test prints what it measured:

- ``kill -9`` of the active coord (a standby waiting) while one client inserts through proxy A
  and another creates, uses and drops small collections through proxy B: the standby takes over
  within 10 s, both clients only wait (no error), no acknowledged insert is lost, and the insert
  timestamps keep increasing across the failover;
- ``kill -9`` of a proxy: searches and inserts through the other one go on without an error;
- every process stopped (SIGTERM) and started again on the same data: a collection that was
  loaded is Loaded and answers search and query with all its rows (flushed or not) without a new
  load call.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import numpy as np
from pymilvus import Collection, DataType, MilvusClient, connections
from pymilvus.client.types import LoadState

from tests.conftest import RoleProcesses, wait_until

TTL = 2  # session ttl (s): a kill -9ed process's session ends this long after its last renewal
DIM = 8


def _schema(c: MilvusClient):
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    index = c.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    return schema, index


def _vectors(ids) -> list[list[float]]:
    """A vector per id, the same on every call (so the exact answers are known)."""
    ids = np.asarray(list(ids), dtype=np.int64)
    return (np.sin(np.outer(ids + 1, np.arange(1, DIM + 1) * 0.37)) + ids[:, None] * 1e-3).astype(np.float32).tolist()


def _count(c: MilvusClient, name: str, filter: str = "") -> int:
    return c.query(name, filter=filter, output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


class Loop:
    """Calls ``step(i)`` in a loop on a thread; records (start, end, result) of each success and
    (time, exception) of each failure; the loop goes on after a failure."""

    def __init__(self, step):
        self.step = step
        self.done: list[tuple[float, float, object]] = []
        self.failures: list[tuple[float, BaseException]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for i in itertools.count():
            if self._stop.is_set():
                return
            t0 = time.monotonic()
            try:
                result = self.step(i)
            except Exception as e:  # noqa: BLE001 (the test reports it)
                self.failures.append((time.monotonic(), e))
                time.sleep(0.05)
                continue
            self.done.append((t0, time.monotonic(), result))

    def first_started_after(self, t: float, timeout: float = 30) -> tuple[float, float, object]:
        """The first success of a call that began after ``t`` (waits for it)."""
        def found():
            return next((d for d in list(self.done) if d[0] > t), None)
        wait_until(lambda: found() is not None or len(self.failures) > 20, timeout,
                   f"no success after the event; failures: {self.failures[-3:]}")
        hit = found()
        assert hit is not None, f"no success after the event; failures: {self.failures[-3:]}"
        return hit

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the loop is stuck in a call"


def test_kill_9_of_the_active_coord_under_inserts_and_ddl(tmp_path, remote_storage):
    cl = RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path)
    alias = "fail_coord_" + uuid.uuid4().hex[:6]
    loops: list[Loop] = []
    a = b = None
    try:
        cl.start("coord0", "coord", ready="(active)")
        cl.start("coord1", "coord", ready="(standby)")
        for q in ("qn0", "qn1"):
            cl.start(q, "querynode")
        for p in ("proxyA", "proxyB"):
            cl.start(p, "proxy")
        a, b = MilvusClient(uri=cl.uri("proxyA")), MilvusClient(uri=cl.uri("proxyB"))
        schema, index = _schema(a)
        a.create_collection("docs", schema=schema, index_params=index, num_shards=2)
        connections.connect(alias, uri=cl.uri("proxyA"))
        docs = Collection("docs", using=alias)

        batch = 20

        def insert(i: int):  # through proxy A (the ORM: its MutationResult carries the timestamp)
            ids = list(range(i * batch, (i + 1) * batch))
            r = docs.insert([{"id": k, "vec": v} for k, v in zip(ids, _vectors(ids))])
            assert r.insert_count == batch and sorted(r.primary_keys) == ids
            return r.timestamp, ids

        ddl_calls: list[tuple[float, float]] = []  # (start, end) of each create and drop that succeeded

        def timed(call, *args, **kwargs):
            t0 = time.monotonic()
            call(*args, **kwargs)
            ddl_calls.append((t0, time.monotonic()))

        def ddl(i: int):  # through proxy B: create (index + load), write, read back, drop
            name = f"ddl_{i}"
            timed(b.create_collection, name, dimension=4, consistency_level="Strong")
            b.insert(name, [{"id": 7, "vector": [0.1, 0.2, 0.3, float(i)]}])
            got = b.query(name, filter="id >= 0", output_fields=["id"])
            assert got == [{"id": 7}], got
            timed(b.drop_collection, name)
            return name

        loops = [Loop(insert), Loop(ddl)]
        inserts, ddls = loops
        wait_until(lambda: len(inserts.done) >= 5 and len(ddls.done) >= 2, 30, "the clients made no progress")

        killed = cl.kill("coord0")
        write = inserts.first_started_after(killed)[1] - killed
        wait_until(lambda: any(s > killed for s, _ in ddl_calls) or len(ddls.failures) > 20, 30,
                   f"no DDL after the kill; failures: {ddls.failures[-3:]}")
        ddl_after = min(e for s, e in ddl_calls if s > killed) - killed
        ddl_acked = min(e for s, e in ddl_calls if e > killed) - killed  # maybe one in flight at the kill
        # the clients' view of the gap: the slowest call in flight at the kill or begun after it
        stall_w = max(end - start for start, end, _ in inserts.done if end > killed)
        stall_d = max(e - s for s, e in ddl_calls if e > killed)
        print(f"\nkill -9 of the active coord (session ttl {TTL} s): the first insert begun after the kill "
              f"was acknowledged {write:.2f} s after it; the first create/drop collection acknowledged after "
              f"it {ddl_acked:.2f} s after it, the first one begun after it {ddl_after:.2f} s after it (a drop "
              f"waits ~2 s for the nodes' release grace); the longest insert across the failover took "
              f"{stall_w:.2f} s, the longest create/drop {stall_d:.2f} s")
        assert write < 10 and ddl_after < 10
        # writes and DDL go on after the takeover
        after_w, after_d = len(inserts.done), len(ddls.done)
        wait_until(lambda: len(inserts.done) >= after_w + 5 and len(ddls.done) >= after_d + 2, 30,
                   "the clients stopped making progress after the failover")
        for loop in loops:
            loop.stop()

        assert not inserts.failures and not ddls.failures, (inserts.failures[:3], ddls.failures[:3])
        stamps = [r[0] for _, _, r in inserts.done]
        assert all(x < y for x, y in itertools.pairwise(stamps)), "an insert timestamp went back across the failover"
        before = [r[0] for s, e, r in inserts.done if e < killed]
        assert before and min(r[0] for s, e, r in inserts.done if s > killed) > max(before)
        acked = sorted(k for _, _, r in inserts.done for k in r[1])
        assert acked == list(range(len(acked)))  # one thread: every batch in turn, each acknowledged
        assert _count(a, "docs") == len(acked) == _count(b, "docs")
        got = a.query("docs", filter=f"id in {acked[-3:]}", output_fields=["id"], consistency_level="Strong")
        assert sorted(r["id"] for r in got) == acked[-3:]
        assert a.list_collections() == ["docs"] and b.list_collections() == ["docs"]  # every DDL round dropped its own
        print(f"{len(acked)} acknowledged rows all counted (Strong, through both proxies); {len(stamps)} insert "
              f"timestamps strictly increasing; {len(ddls.done)} DDL rounds, no client error")
    finally:
        for loop in loops:
            loop._stop.set()
        for c in (a, b):
            if c is not None:
                c.close()
        connections.disconnect(alias)
        cl.close()


def test_kill_9_of_a_proxy_leaves_the_other_unaffected(tmp_path, remote_storage):
    cl = RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path)
    loops: list[Loop] = []
    a = b = None
    try:
        cl.start("coord", "coord")
        cl.start("qn0", "querynode")
        for p in ("proxyA", "proxyB"):
            cl.start(p, "proxy")
        a, b = MilvusClient(uri=cl.uri("proxyA")), MilvusClient(uri=cl.uri("proxyB"))
        schema, index = _schema(a)
        a.create_collection("docs", schema=schema, index_params=index, num_shards=2)
        base = list(range(200))
        a.insert("docs", [{"id": k, "vec": v} for k, v in zip(base, _vectors(base))])
        probe = _vectors([42])

        def through_a(i: int):  # proxy A: an insert, then a search that must find row 42 first
            ids = list(range(10_000 + 10 * i, 10_000 + 10 * (i + 1)))
            assert a.insert("docs", [{"id": k, "vec": v} for k, v in zip(ids, _vectors(ids))])["insert_count"] == 10
            hits = a.search("docs", data=probe, limit=3, consistency_level="Strong")[0]
            assert hits[0]["id"] == 42, hits
            return ids

        def through_b(i: int):  # proxy B is busy too when it is killed
            ids = list(range(100_000 + 10 * i, 100_000 + 10 * (i + 1)))
            b.insert("docs", [{"id": k, "vec": v} for k, v in zip(ids, _vectors(ids))])
            b.search("docs", data=probe, limit=3)
            return ids

        loops = [Loop(through_a), Loop(through_b)]
        la, lb = loops
        wait_until(lambda: len(la.done) >= 15 and len(lb.done) >= 5, 30, "the clients made no progress")
        killed = cl.kill("proxyB")
        lb._stop.set()  # (its client fails from now on: nothing more to learn from it)
        n_at_kill = len(la.done)
        time.sleep(TTL + 1.5)  # past the end of B's session: A no longer sees it as a live proxy
        wait_until(lambda: len(la.done) >= n_at_kill + 10, 30, "proxy A stopped making progress")
        # a DDL through A once B's session is gone (a dead proxy is not waited for)
        t0 = time.monotonic()
        a.create_collection("after_kill", dimension=4)
        a.drop_collection("after_kill")
        ddl_s = time.monotonic() - t0
        for loop in loops:
            loop.stop()

        assert not la.failures, la.failures[:3]  # no error at all through A, during or after the kill
        before = [e - s for s, e, _ in la.done if e < killed]
        after = [e - s for s, e, _ in la.done if e >= killed]
        print(f"\nkill -9 of proxy B: through proxy A {len(before)} insert+search rounds before, {len(after)} "
              f"during/after, no error; round time median {np.median(before) * 1e3:.0f} ms before, "
              f"{np.median(after) * 1e3:.0f} ms after, longest after {max(after) * 1e3:.0f} ms; a DDL "
              f"(create + load + drop) through A {ddl_s:.2f} s after B's session ended")
        assert len(after) >= 10
        acked_a = [k for _, _, ids in la.done for k in ids]
        assert _count(a, "docs", "id >= 10000 and id < 100000") == len(acked_a)
        acked_b = sum(len(ids) for _, _, ids in lb.done)
        total = _count(a, "docs")  # B's rows: every acknowledged one, maybe the batch in flight at the kill
        assert 200 + len(acked_a) + acked_b <= total <= 200 + len(acked_a) + acked_b + 10
    finally:
        for loop in loops:
            loop._stop.set()
        for c in (a, b):
            if c is not None:
                c.close()
        cl.close()


def test_a_full_restart_keeps_a_loaded_collection_serving(tmp_path, remote_storage):
    cl = RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path)  # one namespace for both runs
    names = ("coord", "qn0", "qn1", "proxy")
    c = None

    def start_all() -> None:
        cl.start("coord", "coord")
        cl.start("qn0", "querynode")
        cl.start("qn1", "querynode")
        cl.start("proxy", "proxy")

    try:
        start_all()
        c = MilvusClient(uri=cl.uri("proxy"))
        schema, index = _schema(c)
        c.create_collection("docs", schema=schema, index_params=index, num_shards=2)
        c.create_collection("idle", schema=schema, index_params=index)  # created, then released
        c.release_collection("idle")
        flushed, unflushed = list(range(0, 300)), list(range(300, 360))
        c.insert("docs", [{"id": k, "vec": v} for k, v in zip(flushed, _vectors(flushed))])
        c.flush("docs")
        c.insert("docs", [{"id": k, "vec": v} for k, v in zip(unflushed, _vectors(unflushed))])
        c.delete("docs", ids=[5, 305])
        want = {k: c.search("docs", data=_vectors([k]), limit=3, consistency_level="Strong")[0] for k in (17, 333)}
        assert [h["id"] for h in want[17]][0] == 17 and [h["id"] for h in want[333]][0] == 333
        assert _count(c, "docs") == 358
        c.close()
        c = None

        t0 = time.monotonic()
        cl.stop_all()
        stopped = time.monotonic() - t0
        t0 = time.monotonic()
        start_all()
        started = time.monotonic() - t0
        c = MilvusClient(uri=cl.uri("proxy"))
        t0 = time.monotonic()
        assert c.get_load_state("docs")["state"] == LoadState.Loaded  # no load call
        assert c.get_load_state("idle")["state"] == LoadState.NotLoad
        assert _count(c, "docs") == 358  # the flushed rows and those only in the log, less the deletes
        answered = time.monotonic() - t0
        for k in (17, 333):
            got = c.search("docs", data=_vectors([k]), limit=3, consistency_level="Strong")[0]
            assert [(h["id"], round(h["distance"], 4)) for h in got] == \
                [(h["id"], round(h["distance"], 4)) for h in want[k]]
        got = c.query("docs", filter="id in [4, 5, 6, 304, 305, 306, 359]", output_fields=["id"])
        assert sorted(r["id"] for r in got) == [4, 6, 304, 306, 359]
        print(f"\nfull restart (coord, 2 query nodes, proxy): stopped in {stopped:.2f} s, started again in "
              f"{started:.2f} s; Loaded and a complete Strong count(*) {answered:.2f} s after the proxy was "
              f"ready, without a load call; {len(names)} processes, 358 rows (60 never flushed)")
        # and it still takes writes
        c.insert("docs", [{"id": 1000, "vec": _vectors([1000])[0]}])
        assert _count(c, "docs") == 359
    finally:
        if c is not None:
            c.close()
        cl.close()

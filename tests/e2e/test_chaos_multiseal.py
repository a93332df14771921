"""Found by the chaos hunt (kill -9 of one cluster process at a time): a Strong count(*) answered more rows
than were ever written (146 where at most 136 could be).

Two flushes waited on the data node, which was killed; once its session ended each proxy persisted its
channels itself, racing, and the persist at the later seal record covered both. It wrote one segment,
named by the later seal record, where every query node had sealed two (one per seal record). With the
channel's sealed segments spread (``querynode.spread_min_rows`` 0), the coord placed that segment on the
other query node, which loaded it from its files in full (the rows of both seal records), while the
channel's leader still held the first seal record's segment under a name the plan did not name: both
read those rows. Queries hid it (the proxy merges rows by primary key), counts summed them. Data nodes now
cut a segment at each seal record a persist covers (``vecdb/datanode/node.py``), as the query nodes seal.

Real processes (coord, two query nodes, a data node, two proxies) on NATS, etcd and S3, driven by pymilvus.
"""

from __future__ import annotations

import json
import signal
import threading
import time

from pymilvus import DataType, MilvusClient

from tests.conftest import RoleProcesses, wait_until

TTL = 2.0
ENV = {"VECDB_QUERYNODE__SPREAD_MIN_ROWS": "0"}


def _rows(lo: int, hi: int) -> list[dict]:
    return [{"id": i, "vec": [float(i % 7), 1.0, 2.0, float(i)]} for i in range(lo, hi)]


def _segments(cl: RoleProcesses) -> list[tuple[int, int]]:
    return sorted((json.loads(v)["position"], json.loads(v)["num_rows"]) for _, v in cl.meta.scan("seg/"))


def test_a_persist_covering_two_seal_records_is_counted_once(tmp_path, remote_storage):
    cl = RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path)
    stopped = None
    try:
        for name in ("coord", "qn0", "qn1", "dn0", "proxy0", "proxy1"):  # (the coord places the segments)
            # proxy0 is held below longer than a session ttl of 2 s, and a process whose session was lost exits
            cl.start(name, env=dict(ENV, VECDB_STORAGE__SESSION_TTL="30") if name == "proxy0" else ENV)
        c0, c1 = cl.client("proxy0"), cl.client("proxy1")
        s = c0.create_schema(auto_id=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        ip = c0.prepare_index_params()
        ip.add_index("vec", index_type="FLAT", metric_type="L2")
        c0.create_collection("k", schema=s, index_params=ip, num_shards=1, consistency_level="Strong")
        c0.insert("k", _rows(0, 100))
        c0.flush("k")  # persisted by dn0

        cl.kill("dn0")  # the next flushes wait for its session to end, then their proxies persist
        c0.insert("k", _rows(100, 150))
        errors: list[str] = []

        def flush(c: MilvusClient) -> None:
            try:
                c.flush("k", timeout=60)
            except Exception as e:  # noqa: BLE001 (asserted below)
                errors.append(repr(e)[:300])

        first = threading.Thread(target=flush, args=(c0,))
        first.start()
        time.sleep(0.5)  # its seal record is written; proxy0 is held until proxy1 persisted past it
        stopped = cl.procs["proxy0"]
        stopped.send_signal(signal.SIGSTOP)
        c1.insert("k", _rows(150, 200))
        second = threading.Thread(target=flush, args=(c1,))
        second.start()
        second.join(60)
        stopped.send_signal(signal.SIGCONT)
        stopped = None
        first.join(60)
        assert not errors, errors

        # a segment per seal record, as each query node sealed them (before: (6, 100), both in one)
        segs = _segments(cl)
        assert [n for _, n in segs] == [100, 50, 50], segs

        # the placed segment served in full by the node that does not lead the channel: every Strong read
        # counts each row once (before: 250 for 200 rows, for as long as the segments stayed so)
        def full_on_both() -> bool:
            fulls = [json.loads(v) for _, v in cl.meta.scan("qnfull/")]
            return len(fulls) == 2 and all(any(chs for chs in f.values()) for f in fulls)
        wait_until(full_on_both, 30, "the segments were not spread over both query nodes")
        end = time.monotonic() + 4
        reads = 0
        while time.monotonic() < end:
            for c in (c0, c1):
                count = c.query("k", filter="", output_fields=["count(*)"])[0]["count(*)"]
                ids = [r["id"] for r in c.query("k", filter="id >= 0", output_fields=["id"], limit=1000)]
                assert (count, len(ids), len(set(ids))) == (200, 200, 200)
                reads += 1
        assert reads >= 4
    finally:
        if stopped is not None:
            stopped.send_signal(signal.SIGCONT)
        cl.close()

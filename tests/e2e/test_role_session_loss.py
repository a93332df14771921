"""A cluster role whose session was lost (its lease expired while it was stalled: SIGSTOP longer than the
session ttl, as a hung host or an etcd out of reach that long) stops and exits 1 on waking, and started
again by its supervisor it registers again and serves. Before, a query node, data node or proxy in that
state stayed up for good, /healthz 503 "session ... lost", never registered again: the coord had dropped
its replica and channels, and in the chaos hunt (.dev/chaos, pauses) every query node ended so and no
read was served, while a proxy in that state went on answering clients from a stale view."""

from __future__ import annotations

import signal
import time

from pymilvus import DataType

from tests.conftest import RoleProcesses, wait_until

TTL = 2.0


def test_a_query_node_and_a_proxy_stalled_past_their_ttl_exit_and_come_back(tmp_path, remote_storage):
    cl = RoleProcesses(dict(remote_storage(), session_ttl=TTL), tmp_path)
    try:
        for name in ("coord", "qn0", "dn0", "proxy", "proxy1"):
            cl.start(name)
        c = cl.client()
        s = c.create_schema(auto_id=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        ip = c.prepare_index_params()
        ip.add_index("vec", index_type="FLAT", metric_type="L2")
        c.create_collection("k", schema=s, index_params=ip, consistency_level="Strong")
        c.insert("k", [{"id": i, "vec": [float(i), 1.0, 2.0, 3.0]} for i in range(50)])

        for name in ("qn0", "proxy1"):
            proc = cl.procs[name]
            proc.send_signal(signal.SIGSTOP)
            time.sleep(TTL * 2 + 2)  # its lease expires
            proc.send_signal(signal.SIGCONT)
            wait_until(lambda proc=proc: proc.poll() is not None, 30, f"{name} stayed up with its session lost")
            assert proc.returncode == 1, proc.failure(f"{name} exit code")
            assert "its session session/" in proc.output() and "was lost: stopping (exit 1)" in proc.output()
            cl.procs.pop(name)
            cl.start(name)  # what a supervisor does: it registers again under the same id

        c1 = cl.client("proxy1")
        wait_until(lambda: _count(c1) == 50, 60, "the query node started again serves no reads")
        assert _count(c) == 50
    finally:
        cl.close()


def _count(c) -> int | None:
    try:
        return c.query("k", filter="", output_fields=["count(*)"])[0]["count(*)"]
    except Exception:  # noqa: BLE001 - not served yet
        return None

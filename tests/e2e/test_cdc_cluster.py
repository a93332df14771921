"""CDC from a cluster (coord, three query nodes, a data node, two proxies on NATS/etcd/S3) into a
standalone on the embedded backends, through the CDC service process and its HTTP API: the mixed
DDL+DML stream of test_cdc arrives and ``vecdb cdc verify`` (the command) reports equality; a flush
on the cluster (its data node truncates the log) keeps what the task still needs."""

from __future__ import annotations

import subprocess
import sys

from pymilvus import MilvusClient

from tests.conftest import LocalCluster, free_port, start_standalone, start_vecdb, stop_processes, wait_until
from tests.e2e.test_cdc import _equal, _rows, mixed_stream
from vecdb.cdc.cli import call
from vecdb.cdc.task import new_task_id


def test_cluster_to_standalone(tmp_path, remote_storage):
    storage = remote_storage("cdccl" + new_task_id())
    cluster = LocalCluster(tmp_path / "cluster", storage, querynodes=1, proxies=1)
    target = start_standalone(str(tmp_path / "dst"))
    su, tu = f"http://127.0.0.1:{cluster.port}", f"http://127.0.0.1:{target.port}"
    cport = free_port()
    url = f"http://127.0.0.1:{cport}"
    procs = []
    try:
        procs.append(start_vecdb("cdc", "--port", str(cport), "--data-dir", str(tmp_path / "cdc")))
        code, out = call(url, "POST", "/v1/tasks", {"id": "cl", "source": storage, "target": {"uri": tu}})
        assert code == 200, out
        c = MilvusClient(uri=su)
        mixed_stream(c)
        c.insert("plain", _rows(range(3000, 3400), seed=9))
        c.flush("plain")
        seen: list = []

        def caught_up() -> bool:
            code, t = call(url, "GET", "/v1/tasks/cl")
            seen[:] = [t, _equal(su, tu)]
            return t.get("lag_records") == 0 and not seen[1]

        try:
            wait_until(caught_up, 120, "target never equal")
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        r = subprocess.run([sys.executable, "-m", "vecdb", "cdc", "verify", "--source", su, "--target", tu],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip().endswith("EQUAL"), r.stdout + r.stderr
        assert "default.plain: equal" in r.stdout and "db2.other: equal" in r.stdout
        # and it says so when they differ
        MilvusClient(uri=tu).delete("plain", ids=[3001])
        r = subprocess.run([sys.executable, "-m", "vecdb", "cdc", "verify", "--source", su, "--target", tu,
                            "--collection", "plain"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "1 primary keys missing on the target, e.g. [3001]" in r.stdout, r.stdout
    finally:
        stop_processes(procs)
        target.stop()
        cluster.stop(check=False)

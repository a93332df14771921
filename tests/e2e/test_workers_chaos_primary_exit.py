"""kill -9 of the primary of ``vecdb standalone --workers 2`` while a Strong read waits in a worker for its
query node to apply the log: the workers (SIGTERM by PR_SET_PDEATHSIG) exit within a few seconds, not at
the end of the read's wait (30 s), which the log, gone with the primary, would never have ended.

Found by the workers chaos hunt (.dev/wchaos): a worker outlived the primary by 24 and 30+ s, its main
thread joining, at exit, a gRPC handler thread still in ``Shard.wait_applied``; the server's restart
had to wait for it (the port, the data directory) and a client of that worker got no answer meanwhile.
A query node lagging behind the log is made here by a hook in the server's processes (sitecustomize on
PYTHONPATH, ``VECDB_TEST_LAGGING_READS``): a Strong read there waits for positions the log never reaches.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time

from pymilvus import MilvusClient

from tests.conftest import free_ports, start_vecdb, stop_processes, wait_until
from tests.e2e._helpers import worker_pid

HOOK = textwrap.dedent('''
    import os

    if os.environ.get("VECDB_TEST_LAGGING_READS") == "1":
        from vecdb.proxy import consistency, router
        from vecdb.proxy.consistency import ReadLevel

        _end = router.QueryNodeRouter._end

        def _behind(self, info):
            end = _end(self, info)
            if consistency.current() == ReadLevel.STRONG:  # as if the query node were far behind the log
                end = {ch: pos + 1_000_000 for ch, pos in end.items()}
            return end

        router.QueryNodeRouter._end = _behind
''')


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_workers_exit_promptly_when_the_primary_dies_under_a_strong_read(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    base = free_ports(3)
    port, wport = base, base + 1
    env = {"VECDB_STORAGE__SESSION_TTL": "4", "VECDB_PROXY__WORKER_PORT": str(wport),
           "VECDB_TEST_LAGGING_READS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    server = start_vecdb("standalone", "--port", str(port), "--http-port", "0", "--workers", "2",
                         data_dir=tmp_path / "data", env=env, timeout=120)
    clients: list[MilvusClient] = []
    workers: list[int | None] = []
    try:
        a = MilvusClient(uri=f"http://127.0.0.1:{wport}", dedicated=True)
        clients.append(a)
        a.create_collection("docs", dimension=4, consistency_level="Strong")
        a.insert("docs", [{"id": i, "vector": [0.1 * i] * 4} for i in range(10)])
        workers = [worker_pid(server.pid, i) for i in range(2)]
        assert None not in workers

        b = MilvusClient(uri=f"http://127.0.0.1:{wport + 1}", dedicated=True, timeout=120)
        clients.append(b)
        answered: list[str] = []

        def strong_read():
            try:
                b.query("docs", filter="", output_fields=["count(*)"], consistency_level="Strong")
                answered.append("answered")
            except Exception as e:  # noqa: BLE001 - any failure: the server went away under it
                answered.append(f"failed: {e}")

        reader = threading.Thread(target=strong_read, daemon=True)
        reader.start()
        time.sleep(2.0)
        assert not answered  # waiting in worker 1's query node for positions it has not applied

        t0 = time.monotonic()
        server.kill()
        server.wait(10)
        wait_until(lambda: all(_gone(pid) for pid in workers), 60, "a worker outlived the primary by a minute")
        took = time.monotonic() - t0
        assert took < 10, f"the workers outlived the primary by {took:.1f} s"
        reader.join(30)
        assert answered and answered[0].startswith("failed")
    finally:
        for c in clients:
            c.close()
        stop_processes([server])
        for pid in workers:
            if pid is not None and not _gone(pid):
                os.kill(pid, signal.SIGKILL)

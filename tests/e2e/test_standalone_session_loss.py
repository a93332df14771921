"""A ``vecdb standalone`` process on etcd/NATS/S3 that loses its storage session (stalled longer than
the session's ttl: SIGSTOP) stops, so that no two servers write the same data, and exits 1 once its
stop has ended (the main thread waits for the stop under way; it used to return at once, exit 0, and
cut the stop short). The next server on the namespace has every acknowledged row."""

from __future__ import annotations

import os
import signal
import time

from pymilvus import MilvusClient

from tests.conftest import free_port, start_vecdb


def test_a_standalone_that_loses_its_storage_session_stops_and_exits_1(tmp_path, remote_storage):
    storage = dict(remote_storage(), session_ttl=2)
    port = free_port()
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "a",
                       storage=storage)
    try:
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.create_collection("docs", dimension=4, consistency_level="Strong")
        c.insert("docs", [{"id": i, "vector": [float(i), 1.0, 2.0, 3.0]} for i in range(50)])
        c.close()
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(5)  # past the ttl: etcd lets the lease go
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(60) == 1, proc.failure("did not exit 1")
        out = proc.output()
        assert "the storage session was lost; stopping" in out, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    again = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "b",
                        storage=storage)
    try:
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.load_collection("docs")
        assert c.query("docs", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 50
        c.close()
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0

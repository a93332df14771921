"""``vecdb standalone --workers 2``: a worker that the primary starts again (after a kill -9) leaves the temp
files of the puts in progress in the shared data directory alone; the primary, which owns the directory,
removes a crash's leftovers as it starts.

Found by the workers chaos hunt (.dev/wchaos): every process opening the embedded object store removed every
``.tmp-*`` file under it, so a worker's restart made the primary's data node fail its persist ("persisting
... failed; starting over") and its compactor fail a round, and would fail an index upload or an import file
put in another process (FileNotFoundError on the rename, IoFailed).
"""

from __future__ import annotations

import os
import re
import signal
import threading

from tests.conftest import free_ports, start_vecdb, stop_processes, wait_until
from tests.e2e._helpers import worker_pid
from vecdb.storage.local_objects import LocalObjectStore


def _start(data_dir, port: int):
    return start_vecdb("standalone", "--port", str(port), "--http-port", "0", "--workers", "2", data_dir=data_dir,
                       env={"VECDB_STORAGE__SESSION_TTL": "4"}, timeout=120)


def _temp_files(root) -> list[str]:
    return sorted(f for _, _, files in os.walk(root) for f in files if f.startswith(".tmp-"))


def test_a_restarted_worker_keeps_the_puts_in_progress(tmp_path):
    data = tmp_path / "data"
    port = free_ports(2)
    procs = []
    release = threading.Event()
    put_thread = None
    try:
        server = _start(data, port)
        procs.append(server)
        # a put in progress in another process of the directory (here this one's, as a test places import
        # files; the primary's data node persisting, a worker uploading an index file, likewise)
        objects = LocalObjectStore(str(data / "objects"))
        written = threading.Event()
        result: list[str] = []

        def payload():
            yield b"x" * 4096
            written.set()
            release.wait(60)
            yield b"y" * 4096

        def put():
            try:
                objects.put("import/big.bin", payload())
                result.append("ok")
            except Exception as e:  # noqa: BLE001 - the failure is the finding
                result.append(f"{type(e).__name__}: {e}")

        put_thread = threading.Thread(target=put)
        put_thread.start()
        assert written.wait(10)
        temp = _temp_files(data / "objects")
        assert len(temp) == 1
        pid0 = worker_pid(server.pid, 0)
        assert pid0 is not None
        os.kill(pid0, signal.SIGKILL)
        wait_until(lambda: re.search(r"standalone worker 0 \([^)]*\.1\) serving on", server.output()), 90,
                   "worker 0 was not started again")
        assert _temp_files(data / "objects") == temp  # the restarted worker left it alone
        release.set()
        put_thread.join(30)
        assert result == ["ok"]
        assert objects.get("import/big.bin") == b"x" * 4096 + b"y" * 4096
        objects.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, server.failure("did not stop cleanly")

        # a crash's leftover: the primary (the directory's owner) removes it as it starts
        leftover = data / "objects" / "import" / ".tmp-deadbeef"
        leftover.write_bytes(b"partial")
        again = _start(data, port)
        procs.append(again)
        assert not leftover.exists()
    finally:
        release.set()
        if put_thread is not None:
            put_thread.join(30)
        stop_processes(procs)

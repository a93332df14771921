"""A standalone server killed (SIGKILL) in the middle of an operation, then started again on the same data.

An index build cut short by a kill from outside (kill -9, the OOM killer, a power cut) is built once
more by the next run, so the index ends ``Finished`` (it used to stay ``Failed`` for good: "a native
crash is assumed"); a build killed a second time is refused, so a build that takes its process down
cannot crash-loop the server. A build that crashes the process natively (its fatal-signal stacks
written: vecdb.native_crashes) is refused at once (tests/e2e/test_index_build_failures.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, start_vecdb
from tests.e2e._helpers import float_schema
from vecdb.coord.index_builds import FAULT_ENV

DIM = 8
ROWS = 3000


def _spawn(data_dir, port: int, fault: str | None, storage: dict | None = None):
    return start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data_dir,
                       storage=storage, env={FAULT_ENV: fault})


def _kill_mid_build(data_dir, port: int, client_setup=None, storage: dict | None = None) -> None:
    """A server whose index builds take 60 s, killed once a build of ``vec`` is under way."""
    proc = _spawn(data_dir, port, "sleep:60", storage)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        if client_setup is not None:
            client_setup(client)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 40})
        client.create_index("c", idx, sync=False)
        deadline = time.monotonic() + 20
        while not _running_builds(data_dir, storage):  # the build's record is written: it is under way
            assert time.monotonic() < deadline, "no index build started"
            time.sleep(0.1)
        client.close()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _running_builds(data_dir, storage: dict | None = None) -> set[bytes]:
    """The runs (incarnations) that wrote a ``running`` build record (one is written before each build
    starts: vecdb.coord.index_builds): from etcd, or as the embedded metadata store's files hold them
    (read from the files, as the server holds the store)."""
    found: set[bytes] = set()
    if storage is not None:
        from vecdb.config import StorageSettings
        from vecdb.storage.backends import open_meta

        meta = open_meta(StorageSettings(**storage, data_dir=str(data_dir)))
        try:
            return {json.loads(raw)["incarnation"].encode() for _, raw in meta.scan("idxbuild/") if b'"running"' in raw}
        finally:
            meta.close()
    for name in ("snapshot.db", "journal.log"):
        try:
            with open(os.path.join(data_dir, "meta", name), "rb") as f:
                found.update(re.findall(rb'"state": "running", "incarnation": "([0-9a-f]+)"', f.read()))
        except FileNotFoundError:
            pass
    return found


def _fill(client: MilvusClient) -> np.ndarray:
    vectors = np.random.default_rng(3).standard_normal((ROWS, DIM)).astype(np.float32)
    client.create_collection("c", schema=float_schema(DIM))
    client.insert("c", [{"id": i, "vec": v} for i, v in enumerate(vectors)])
    client.flush("c")
    return vectors


def _index(client: MilvusClient, want: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = client.describe_index("c", "vec")
        if d["state"] == want or time.monotonic() > deadline:
            return d
        time.sleep(0.2)


@pytest.mark.parametrize("backends", ["embedded", "remote"])
def test_an_index_build_killed_from_outside_is_built_again_on_restart(tmp_path, backends, request):
    port = free_port()
    storage = request.getfixturevalue("remote_storage")() if backends == "remote" else None
    vectors = None

    def setup(client):
        nonlocal vectors
        vectors = _fill(client)

    _kill_mid_build(tmp_path, port, setup, storage)
    proc = _spawn(tmp_path, port, None, storage)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        d = _index(client, "Finished")
        assert (d["state"], d["indexed_rows"], d["total_rows"]) == ("Finished", ROWS, ROWS), d
        client.load_collection("c")
        assert client.query("c", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == ROWS
        hits = client.search("c", [vectors[7].tolist()], limit=3, search_params={"params": {"ef": 64}})
        assert hits[0][0]["id"] == 7
        client.close()
    finally:
        assert proc.stop() == 0, proc.failure("did not stop cleanly")


def test_a_build_killed_twice_is_refused_not_crash_looped(tmp_path):
    port = free_port()
    _kill_mid_build(tmp_path, port, _fill)
    before = _running_builds(tmp_path)
    # the second run builds it again (its collection is not loaded: the data node's builder) and is killed too
    proc = _spawn(tmp_path, port, "sleep:60")
    try:
        deadline = time.monotonic() + 20
        while not _running_builds(tmp_path) - before:
            assert time.monotonic() < deadline, "the second run did not build the index again"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = _spawn(tmp_path, port, None)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}")
        d = _index(client, "Failed")
        assert d["state"] == "Failed", d
        client.load_collection("c")  # served by exact search
        assert client.query("c", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == ROWS
        client.close()
    finally:
        assert proc.stop() == 0, proc.failure("did not stop cleanly")


def test_a_native_crash_is_told_from_a_kill_and_its_stacks_reach_the_next_log(tmp_path):
    import subprocess
    import sys

    from vecdb import native_crashes

    def run(code: str) -> tuple[str, int]:
        """A process that arms the records in ``tmp_path`` and runs ``code``: its incarnation and exit status
        (its log: ``logged``)."""
        script = ("import sys, logging; logging.basicConfig(); from vecdb import native_crashes; "
                  "from vecdb.coord.session import INCARNATION; "
                  f"native_crashes.arm(sys.argv[1]); print(INCARNATION, flush=True); {code}")
        p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
        logged.append(p.stderr)
        return p.stdout.split()[0], p.returncode

    logged: list[str] = []

    aborted, rc = run("import os; os.abort()")
    assert rc == -signal.SIGABRT
    killed, rc = run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert rc == -signal.SIGKILL
    clean, rc = run("pass")
    assert rc == 0
    assert native_crashes.died_natively(str(tmp_path), aborted)
    assert not native_crashes.died_natively(str(tmp_path), killed)
    assert not native_crashes.died_natively(str(tmp_path), clean)
    assert "Fatal Python error: Aborted" not in logged[0]  # the stacks went to the record, not stderr
    assert "died of a native crash" in logged[1] and "Fatal Python error: Aborted" in logged[1]
    assert "died of a native crash" not in logged[2]  # logged once
    _, rc = run("pass")
    assert rc == 0 and "died of a native crash" not in logged[3]
    assert native_crashes.died_natively(str(tmp_path), aborted)
    assert os.path.exists(os.path.join(native_crashes.directory(str(tmp_path)), aborted + native_crashes.REPORTED))

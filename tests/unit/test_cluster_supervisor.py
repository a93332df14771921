"""`vecdb cluster up`'s supervisor (``localcluster.supervise``): a vecdb role whose process is gone is
started again with its recorded command, after a backoff that doubles while it keeps exiting soon after
its start; a command holding the data dir's lock goes first; the supervisor ends when `down` takes the
cluster's state away. Fake roles (a sleeping Python) stand for the real ones: the e2e test of
`vecdb cluster` runs the real supervisor over a real cluster."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest

from tests.conftest import wait_until
from vecdb import localcluster
from vecdb.localcluster import Proc


def _pid(data_dir, name: str) -> int:
    return next(p.pid for p in localcluster.load_state(str(data_dir)) or [] if p.name == name)


@pytest.fixture
def fake_cluster(tmp_path, monkeypatch):
    monkeypatch.delenv("VECDB_SECURITY__CLUSTER_SECRET", raising=False)
    monkeypatch.delenv("VECDB_SECURITY__CLUSTER_SECRET_FILE", raising=False)
    monkeypatch.setattr(localcluster, "RESTART_BACKOFF", (0.2, 0.8))
    data_dir = tmp_path / "cluster"
    (data_dir / "logs").mkdir(parents=True)
    (data_dir / "backends.json").write_text(json.dumps({"s3_access_key": "k", "s3_secret_key": "s",
                                                        "cluster_secret": "c" * 32}))
    role = Proc("querynode", "querynode1", 0, 1, [sys.executable, "-c", "import time; time.sleep(600)"],
                str(data_dir / "logs" / "querynode1.log"), "")
    procs = [Proc("s3", "s3", 0, 1, ["weed"], str(data_dir / "logs" / "s3.log"), "", url="http://127.0.0.1:1"),
             localcluster._launch(str(data_dir), role, dict(os.environ), "up"),
             Proc("supervisor", "supervisor", os.getpid(), 0, [], str(data_dir / "logs" / "supervisor.log"), "")]
    localcluster._save_state(str(data_dir), procs, {"secret_from_env": False})
    lines: list[str] = []
    ended: list[int] = []
    thread = threading.Thread(target=lambda: ended.append(localcluster.supervise(str(data_dir), poll=0.05,
                                                                                out=lines.append)), daemon=True)
    thread.start()
    try:
        yield data_dir, lines
    finally:
        state = localcluster.load_state(str(data_dir)) or []
        os.remove(data_dir / "cluster.json")  # what `down` does last: the supervisor ends
        thread.join(10)
        for p in state:
            if p.role == "querynode" and localcluster.running(p):
                os.kill(p.pid, signal.SIGKILL)
                localcluster._how_it_ended(p.pid)
    assert ended == [0] and "is down" in lines[-1]


def test_a_gone_role_is_started_again_with_a_growing_backoff(fake_cluster):
    data_dir, lines = fake_cluster
    first = _pid(data_dir, "querynode1")
    os.kill(first, signal.SIGKILL)
    # (its new pid is recorded just before the supervisor says so)
    wait_until(lambda: _pid(data_dir, "querynode1") != first and len(lines) >= 3, 20, "the role was not started again")
    second = _pid(data_dir, "querynode1")
    p = next(p for p in localcluster.load_state(str(data_dir)) or [] if p.name == "querynode1")
    assert localcluster.running(p) and p.command[-1] == "import time; time.sleep(600)"
    assert "supervisor ready on " in lines[0]
    assert f"querynode1 (pid {first}) is gone (killed by SIGKILL): starting it again in 0.2 s" in lines[1]
    assert lines[2].endswith(f"querynode1 started again (pid {second})")
    log = (data_dir / "logs" / "querynode1.log").read_text()
    assert "vecdb cluster supervise: " in log  # the role's log says who started it again
    os.kill(second, signal.SIGKILL)  # gone again soon after its start: twice as long a wait
    wait_until(lambda: _pid(data_dir, "querynode1") != second, 20, "the role was not started again")
    assert f"querynode1 (pid {second}) is gone (killed by SIGKILL): starting it again in 0.4 s" in lines[3]


def test_a_command_on_the_data_dir_goes_first(fake_cluster):
    data_dir, lines = fake_cluster
    first = _pid(data_dir, "querynode1")
    with localcluster._locked(str(data_dir)):  # a `restart` or `down` under way
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: any("is gone" in line for line in lines), 20, "the supervisor did not see it gone")
        time.sleep(1.0)  # past its backoff (0.2 s): the supervisor tries, and waits for the lock
        assert _pid(data_dir, "querynode1") == first and len(lines) == 2
    wait_until(lambda: _pid(data_dir, "querynode1") != first, 20, "the role was not started once the lock was free")

"""CDC under failures: the CDC service (``vecdb cdc``, its own process, tasks in its local store)
replicates a source (a standalone, or a cluster of processes) on NATS/etcd/S3 into a target
standalone on the embedded backends while a writer keeps inserting, upserting and deleting. The
service is killed with SIGKILL at random moments five times, the target is stopped for a while, the
source is restarted: afterwards ``verify`` finds both sides equal (no primary key missing or doubled,
every field equal), and the API and /metrics said what the task was doing meanwhile (the target's
error while it was down)."""

from __future__ import annotations

import random
import signal
import threading
import time
import urllib.request

import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException

from tests.conftest import LocalCluster, free_port, start_standalone, start_vecdb, stop_processes, wait_until
from vecdb.cdc.cli import call
from vecdb.cdc.task import new_task_id
from vecdb.cdc.verify import Unreachable, verify

DIM = 8


class Writer(threading.Thread):
    """Inserts, upserts and deletes on ``coll`` until stopped; rides over a restarting source."""

    def __init__(self, uri: str):
        super().__init__(daemon=True)
        self.uri, self.stop, self.batches, self.failures = uri, threading.Event(), 0, 0

    def run(self) -> None:
        rng = random.Random(7)
        c = MilvusClient(uri=self.uri)
        nxt = 0
        while not self.stop.is_set():
            try:
                n = rng.randint(20, 80)
                ids = list(range(nxt, nxt + n))
                vecs = np.random.default_rng(nxt).random((n, DIM), dtype=np.float32)
                c.insert("coll", [{"id": i, "vector": vecs[k].tolist(), "v": i} for k, i in enumerate(ids)])
                nxt += n
                old = rng.sample(range(nxt), min(10, nxt))
                c.upsert("coll", [{"id": i, "vector": [0.1] * DIM, "v": -i} for i in old[:5]])
                c.delete("coll", ids=old[5:])
                self.batches += 1
            except Exception:  # noqa: BLE001 (the source restarting)
                self.failures += 1
                time.sleep(0.3)
                try:
                    c = MilvusClient(uri=self.uri)
                except Exception:  # noqa: BLE001
                    pass
            time.sleep(0.05)


def _get(url: str, task: str) -> dict:
    code, out = call(url, "GET", f"/v1/tasks/{task}")
    assert code == 200, out
    return out


def _start_source(kind: str, data_dir, port: int, storage: dict):
    if kind == "cluster":
        return LocalCluster(data_dir, storage, port=port, proxies=1, querynodes=1)
    return start_standalone(str(data_dir), port=port, storage=storage)


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_cdc_survives_kills_a_down_target_and_a_source_restart(tmp_path, remote_storage, kind):
    storage = remote_storage("cdccrash" + new_task_id())
    sport, tport, cport = free_port(), free_port(), free_port()
    source = _start_source(kind, tmp_path / "src", sport, storage)
    target = start_standalone(str(tmp_path / "dst"), port=tport)
    su, tu = f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{tport}"
    url = f"http://127.0.0.1:{cport}"
    procs: list = []

    def start_cdc():
        p = start_vecdb("cdc", "--port", str(cport), "--data-dir", str(tmp_path / "cdc"), ready=" ready on ")
        procs.append(p)
        return p

    writer = Writer(su)
    try:
        cdc = start_cdc()
        c = MilvusClient(uri=su)
        c.create_collection("coll", dimension=DIM, auto_id=False, num_shards=2)
        code, out = call(url, "POST", "/v1/tasks", {"id": "t1", "source": storage, "target": {"uri": tu},
                                                    "start": "earliest"})
        assert code == 200 and out["state"] == "running", out
        writer.start()
        rng = random.Random(3)
        for _ in range(5):  # SIGKILL at random moments, then a new service on the same store
            time.sleep(rng.uniform(0.5, 2.0))
            cdc.send_signal(signal.SIGKILL)
            cdc.wait()
            cdc = start_cdc()
        # the last service follows the source again (on a loaded machine each restart takes seconds)
        wait_until(lambda: _get(url, "t1").get("channels"), 60, "the restarted task never followed the source")
        # the target down for a while: the task says so, and catches up once it is back
        target.stop()
        try:
            wait_until(lambda: _get(url, "t1").get("last_error") and _get(url, "t1")["lag_records"] > 0, 60,
                       "the task never reported the target down and its growing lag")
        except AssertionError as e:
            raise AssertionError(f"{e}: {_get(url, 't1')}") from None
        down = _get(url, "t1")
        assert down["state"] == "running" and down["lag_records"] > 0, down
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'vecdb_cdc_error{task="t1"} 1.0' in metrics, metrics[-2000:]
        time.sleep(2)
        target = start_standalone(str(tmp_path / "dst"), port=tport)
        # the source restarted under the writer
        source.stop()
        source = _start_source(kind, tmp_path / "src", sport, storage)
        time.sleep(2)
        writer.stop.set()
        writer.join(30)
        assert writer.batches > 10, writer.batches
        seen: list = []

        def equal() -> bool:
            t = _get(url, "t1")
            try:
                seen[:] = [t, verify(su, tu)]
            except (MilvusException, Unreachable) as e:  # the restarted source not answering yet, or recovering
                seen[:] = [t, str(e)]
                return False
            return t["lag_records"] == 0 and not any(seen[1].values())

        try:
            wait_until(equal, 120, "the target never caught up")
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        n = MilvusClient(uri=tu).query("coll", filter="", output_fields=["count(*)"])[0]["count(*)"]
        assert n > 0 and seen[0]["state"] == "running" and not seen[0]["last_error"], seen
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'vecdb_cdc_lag_records{task="t1"} 0.0' in metrics
        assert 'vecdb_cdc_task_state{state="running",task="t1"} 1.0' in metrics
        # pause says why, resume goes on; delete forgets the task
        code, out = call(url, "POST", "/v1/tasks/t1/pause", {"reason": "maintenance"})
        assert code == 200 and out["state"] == "paused" and out["reason"] == "maintenance", out
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'vecdb_cdc_task_state{state="paused",task="t1"} 1.0' in metrics
        assert 'vecdb_cdc_lag_records{task="t1"}' not in metrics  # not measured while paused: no series, not a 0
        code, out = call(url, "POST", "/v1/tasks/t1/resume")
        assert code == 200 and out["state"] == "running", out
        code, out = call(url, "DELETE", "/v1/tasks/t1")
        assert code == 200
        code, out = call(url, "GET", "/v1/tasks/t1")
        assert code == 404 and out["code"] == 1100, (code, out)
    finally:
        writer.stop.set()
        stop_processes(procs)
        source.stop()
        target.stop()

"""Coord failover as real processes: two ``vecdb coord`` on one etcd namespace, the second a
standby; kill -9 the active one under a client calling in a loop through ``CoordClient`` (which
knows no address, only the metadata store): the standby takes over within 10 s, the client sees
only a delay, and its timestamps keep increasing. Then a clean stop hands over at once."""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
import uuid

from tests.conftest import free_port, spawn_vecdb
from vecdb.coord.client import CoordClient, RemoteTimestampOracle
from vecdb.storage.etcd_meta import EtcdMetaStore

TTL = 2


class Caller:
    """Allocates timestamps through a CoordClient in a loop on a thread; records (time, ts, address)."""

    def __init__(self, client: CoordClient):
        self.client, self.tso = client, RemoteTimestampOracle(client)
        self.got: list[tuple[float, int, str]] = []
        self.failures: list[BaseException] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._done.is_set():
                ts = self.tso.allocate()
                self.got.append((time.monotonic(), ts, self.client.address))
                time.sleep(0.002)
        except BaseException as e:  # noqa: BLE001 (the test reports it)
            self.failures.append(e)

    def first_answer_from(self, address: str, after: float, timeout: float) -> float:
        """Seconds from ``after`` to the first answer from ``address`` given after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.failures:
            for t, _, addr in list(self.got):
                if t > after and addr == address:
                    return t - after
            time.sleep(0.05)
        raise AssertionError(f"no answer from {address} within {timeout} s; failures: {self.failures}")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(30)


def test_standby_coord_process_takes_over_after_kill_9(etcd_server, tmp_path):
    ns = "t" + uuid.uuid4().hex[:12]
    storage = {"namespace": ns, "session_ttl": TTL}
    meta_flag = ("--meta-store", "etcd://" + etcd_server.url.split("://", 1)[1])
    ports = [free_port(), free_port()]
    addresses = [f"127.0.0.1:{p}" for p in ports]
    procs: dict[int, subprocess.Popen] = {}

    def start(i: int, role: str) -> None:
        procs[i] = spawn_vecdb(storage, tmp_path / f"coord{i}", "coord", "--port", str(ports[i]), *meta_flag,
                               ready=f"vecdb coord ready on {addresses[i]} ({role})")

    meta = EtcdMetaStore(etcd_server.url, prefix=f"{ns}/")
    client = CoordClient(meta)
    caller = None
    try:
        start(0, "active")
        start(1, "standby")
        caller = Caller(client)
        caller.first_answer_from(addresses[0], 0, 30)
        time.sleep(0.5)

        procs[0].kill()  # kill -9: its session stays until its lease runs out (ttl 2 s)
        killed = time.monotonic()
        procs[0].wait(10)
        takeover = caller.first_answer_from(addresses[1], killed, 30)
        print(f"\nkill -9 of the active coord: the standby answered {takeover:.2f} s later (session ttl {TTL} s)")
        assert takeover < 10

        start(0, "standby")  # the crashed one comes back as the standby
        time.sleep(0.5)
        procs[1].send_signal(signal.SIGTERM)  # a clean stop ends the session at once
        stopped = time.monotonic()
        assert procs[1].wait(15) == 0
        handover = caller.first_answer_from(addresses[0], stopped, 30)
        print(f"clean stop of the active coord: the standby answered {handover:.2f} s later")
        time.sleep(0.3)
        caller.stop()
        assert not caller.failures, caller.failures  # a delay, never an error
        stamps = [ts for _, ts, _ in caller.got]
        assert all(a < b for a, b in itertools.pairwise(stamps)), "a timestamp went back across a failover"
        print(f"{len(stamps)} timestamps through both failovers, strictly increasing")
    finally:
        if caller is not None:
            caller.stop()
        client.close()
        meta.close()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

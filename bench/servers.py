"""Start and stop the servers under test, each as a process of its own.

- ``VecdbServer``: ``python -m vecdb standalone`` (waits for its "ready" line).
- ``VecdbCluster``: a vecdb cluster on loopback: NATS (JetStream), etcd and an S3 server
  (``vecdb.storage.servers``), then ``python -m vecdb coord``, N ``python -m vecdb querynode``
  (default 2) and one ``python -m vecdb proxy``, storage given as ``VECDB_STORAGE__*``
  variables; the processes find each other through their sessions. The client talks to the
  proxy. CPU and peak RSS are sums over the vecdb processes; ``cpu_breakdown()`` and
  ``rss_breakdown()`` give every process, backends included.
- ``BareServer``: ``python -m bench.bare_server`` (FAISS behind the stubs).
- ``MilvusStandalone``: Milvus 2.3.5 from PyPI ``milvus`` (``milvus.MilvusServer``),
  on free ports, with its embedded etcd moved off 2379/2380 by an
  ``ETCD_CONFIG_PATH`` file. After a stop its bind check fails for about a
  minute on the same ports (TIME_WAIT), which is why every start picks new ports.

Every server gets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead
of spinning: on 2 cores spinning steals the client's CPU). ``peak_rss_mb()``
reads VmHWM from /proc/<pid>/status of the server process; ``cpu_seconds()``
its user + system CPU time (all threads) from /proc/<pid>/stat. Stop is by PID:
SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SERVER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_vmhwm_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of a live process in MiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def read_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, all its threads (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the ")" closing the command name: field 3 (state) is index 0, so
    # utime (14) and stime (15) are indexes 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux's /proc/<pid>/task/<pid>/children), in start order."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return sorted(int(c) for c in f.read().split())
    except OSError:
        return []


def parse_cpus(spec: str) -> set[int]:
    """``"0-7,12"`` -> {0, ..., 7, 12} (taskset's list syntax)."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def pin_tree(pid: int, cpus: set[int]) -> int:
    """Every thread of ``pid`` and of its descendants onto ``cpus`` (threads and processes they start
    later inherit it); the threads pinned."""
    pinned, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += _children(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cpus)
                pinned += 1
            except OSError:  # a thread that ended meanwhile
                pass
    return pinned


def _stop_pid(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class _PythonServer:
    """A Python server child process that prints a line containing 'ready'."""

    name = "?"

    def __init__(self, workdir: str | None = None):
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.workdir, "server.log")

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> _PythonServer:
        env = dict(os.environ, **SERVER_ENV)
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=repo)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path) as f:
                if any("ready" in line for line in f):
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready in {timeout:.0f} s: {self.tail()}")

    def tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def peak_rss_mb(self) -> float | None:
        return read_vmhwm_mb(self.pid) if self.proc else None

    def cpu_seconds(self) -> float | None:
        return read_cpu_seconds(self.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)
            self._log.close()
        shutil.rmtree(os.path.join(self.workdir, "data"), ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class VecdbServer(_PythonServer):
    name = "vecdb"

    def __init__(self, workdir: str | None = None, log_level: str = "WARNING"):
        super().__init__(workdir)
        self.log_level = log_level

    def command(self) -> list[str]:
        return [sys.executable, "-m", "vecdb", "--log-level", self.log_level, "standalone",
                "--data-dir", os.path.join(self.workdir, "data"), "--port", str(self.port),
                "--http-port", "0"]


class BareServer(_PythonServer):
    name = "bare"

    def __init__(self, workdir: str | None = None, workers: int = 4):
        super().__init__(workdir)
        self.workers = workers

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.bare_server", "--port", str(self.port),
                "--workers", str(self.workers)]


class MilvusStandalone:
    """Milvus 2.3.5 standalone (embedded etcd, local storage, rocksmq) from PyPI."""

    name = "milvus"

    def __init__(self, workdir: str | None = None, extra_config: dict | None = None):
        """``extra_config``: more settings for ``MilvusServerConfig.set``: a template item
        (``{"authorization_enabled": True}``) or a dotted milvus.yaml key."""
        self.workdir = workdir or tempfile.mkdtemp(prefix="bench-milvus-")
        self.port = free_port()
        self.server = None
        self.extra_config = dict(extra_config or {})

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.server.server_proc.pid

    def start(self, wait: bool = True) -> MilvusStandalone:
        """Start Milvus; ``wait=False``: return once its process is started, without waiting for its
        health check (``wait_started()`` does that later), so its ~30 s start can overlap other work.
        MilvusServer's start changes the working directory and ``os.environ`` for a moment, so start
        it from the main thread before any other thread spawns processes; ``wait_started`` is safe in
        any thread."""
        try:
            from milvus import MilvusServer, MilvusServerConfig
        except ImportError as e:
            raise RuntimeError("Milvus 2.3.5 is not installed: pip install 'milvus==2.3.5' "
                               "(or the project's bench extra)") from e
        etcd_client, etcd_peer = free_port(), free_port()
        etcd_yaml = os.path.join(self.workdir, "embed-etcd.yaml")
        with open(etcd_yaml, "w") as f:
            f.write(f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
                    f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
                    f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
                    f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
                    f"initial-cluster: default=http://127.0.0.1:{etcd_peer}\n")
        saved = {k: os.environ.get(k) for k in ("ETCD_CONFIG_PATH", *SERVER_ENV)}
        os.environ["ETCD_CONFIG_PATH"] = etcd_yaml  # MilvusServer copies os.environ at start
        os.environ.update(SERVER_ENV)
        try:
            self.server = MilvusServer(MilvusServerConfig(), wait_for_started=wait)
            self.server.set_base_dir(os.path.join(self.workdir, "milvus"))
            # Every listening port fresh, not Milvus's defaults (19529, 21123, ...):
            # another Milvus on this machine must not collide with this one.
            ports = {k: free_port() for k in self.server.config.configurable_items if k.endswith("_port")}
            ports.update(proxy_port=self.port, etcd_port=etcd_client)
            self.server.config.update(**ports)
            for key, value in self.extra_config.items():
                self.server.config.set(key, value)
            self.server.webservice_port = free_port()  # /healthz + metrics, else 9091 upwards
            self.server.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return self

    def wait_started(self, timeout: float = 180.0) -> MilvusStandalone:
        """After ``start(wait=False)``: wait until Milvus's /healthz says OK (TimeoutError after ``timeout``
        seconds, RuntimeError at once if it exited)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.server.webservice_port}/healthz"
        deadline = time.time() + timeout
        while time.time() < deadline:
            code = self.server.server_proc.poll()
            if code is not None:
                raise RuntimeError(f"Milvus exited with {code} before its health check passed: {self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if "OK" in resp.read().decode("utf-8", "replace"):
                        time.sleep(1.0)  # as MilvusServer.wait_started does: ready a moment after /healthz
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Milvus not healthy in {timeout:.0f} s: {self.tail()}")

    def peak_rss_mb(self) -> float | None:
        return read_vmhwm_mb(self.pid) if self.server and self.server.server_proc else None

    def cpu_seconds(self) -> float | None:
        return read_cpu_seconds(self.pid) if self.server and self.server.server_proc else None

    def stop(self) -> None:
        if self.server is not None and self.server.server_proc is not None:
            proc = self.server.server_proc
            # Milvus logs "All cleanup done" then aborts (exit -6) on SIGTERM, or
            # lingers past the grace period and is killed: harmless either way.
            _stop_pid(proc, grace=5.0)
            self.server.server_proc = None
            self.server.stop()  # closes its log files
        self._kill_leftovers()
        shutil.rmtree(os.path.join(self.workdir, "milvus"), ignore_errors=True)

    def _kill_leftovers(self, grace: float = 5.0) -> None:
        """Stop any process still running this instance's own binary copy.

        Seen once after a start that timed out: a milvus process of this
        instance, re-parented to init, outlived the stop of the PID we started.
        The binary path contains this instance's unique work dir, so only its
        processes match.
        """
        exe = os.path.join(self.workdir, "milvus", "bin", "milvus")
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0", 1)[0].decode(errors="replace")
            except OSError:
                continue
            if argv0 == exe:
                pids.append(int(entry))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            live = []
            for pid in pids:
                try:
                    os.kill(pid, sig)
                    live.append(pid)
                except ProcessLookupError:
                    pass
            deadline = time.time() + grace
            while live and time.time() < deadline:
                live = [p for p in live if os.path.exists(f"/proc/{p}")]
                time.sleep(0.1)
            pids = live

    def tail(self, n: int = 20) -> str:
        path = os.path.join(self.workdir, "milvus", "logs", "milvus-stderr.log")
        try:
            with open(path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class VecdbCluster:
    """coord + ``querynodes`` query nodes + one proxy, each ``python -m vecdb <role>`` in its own
    process, on NATS, etcd and S3 servers of its own (started here, on free loopback ports).

    Start order: the backends (each waits for its health check), the coord, the query nodes,
    the proxy; each vecdb process is waited for until its log has its "ready" line (the session
    is registered before that line, so the proxy finds the coord and every query node at its
    start). ``stop()`` ends everything started, in reverse order, whatever failed, and may be
    called more than once; a failed ``start()`` stops what it had started before raising.
    """

    name = "vecdb-cluster"

    def __init__(self, workdir: str | None = None, querynodes: int = 2, log_level: str = "WARNING",
                 proxy_workers: int = 1, worker_port: int = 0):
        self.workdir = workdir or tempfile.mkdtemp(prefix="bench-vecdb-cluster-")
        self.querynodes = querynodes
        self.proxy_workers = proxy_workers  # vecdb proxy --workers: its worker processes count as proxy.w<i>
        self.worker_port = worker_port  # --worker-port: worker i also alone on worker_port + i
        self.replicas = querynodes  # every query node serves reads: a replica each (vecdb.coord.assignment)
        self.log_level = log_level
        self.port = free_port()
        self.namespace = "bench" + os.urandom(4).hex()
        self.backends: list = []  # vecdb.storage.servers.ServerProcess, start order
        self.procs: list[tuple[str, subprocess.Popen, str]] = []  # (role name, process, log path)
        self._logs: list = []

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The proxy's: the process the client talks to (what ``--profile`` samples)."""
        return next(p.pid for name, p, _ in self.procs if name == "proxy")

    def storage_env(self) -> dict:
        nats, etcd, s3 = (b.url for b in self.backends)
        storage = {"log": nats, "meta": "etcd://" + etcd.split("://", 1)[1], "objects": "s3://vecdb-bench",
                   "namespace": self.namespace, "s3_endpoint": s3, "s3_access_key": "test",
                   "s3_secret_key": "test"}
        return {f"VECDB_STORAGE__{k.upper()}": str(v) for k, v in storage.items()}

    def _spawn(self, name: str, argv: list[str], env: dict) -> None:
        log_path = os.path.join(self.workdir, f"{name}.log")
        log = open(log_path, "w")
        self._logs.append(log)
        cmd = [sys.executable, "-m", "vecdb", "--log-level", self.log_level, *argv,
               "--data-dir", os.path.join(self.workdir, "data", name)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=REPO)
        self.procs.append((name, proc, log_path))

    def _wait_ready(self, names: list[str], deadline: float) -> None:
        waiting = [(n, p, lp) for n, p, lp in self.procs if n in names]
        while waiting:
            for item in list(waiting):
                name, proc, log_path = item
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name}: {name} exited with {proc.returncode}: {self._tail_of(log_path)}")
                with open(log_path) as f:
                    if any("ready" in line for line in f):
                        waiting.remove(item)
            if waiting and time.time() > deadline:
                raise TimeoutError(f"{self.name}: {', '.join(n for n, _, _ in waiting)} not ready: {self.tail()}")
            time.sleep(0.05)

    def start(self, timeout: float = 120.0) -> VecdbCluster:
        from vecdb.storage import servers

        deadline = time.time() + timeout
        try:
            for kind in ("nats", "etcd", "s3"):
                self.backends.append(getattr(servers, f"start_{kind}")(os.path.join(self.workdir, kind)))
            env = dict(os.environ, **SERVER_ENV, **self.storage_env())
            env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
            self._spawn("coord", ["coord", "--port", "0"], env)
            self._wait_ready(["coord"], deadline)
            qns = [f"qn{i}" for i in range(self.querynodes)]
            for name in qns:
                self._spawn(name, ["querynode", "--port", "0", "--node-id", name], env)
            self._wait_ready(qns, deadline)
            self._spawn("proxy", ["proxy", "--port", str(self.port), "--node-id", "proxy0",
                                  *(["--workers", str(self.proxy_workers)] if self.proxy_workers > 1 else []),
                                  *(["--worker-port", str(self.worker_port)] if self.worker_port else [])], env)
            self._wait_ready(["proxy"], deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def vecdb_pids(self) -> dict[str, int]:
        """Each vecdb process's pid by role name; a proxy's worker processes (``--workers``) as ``proxy.w<i>``
        after it (its own pid, the parent's, is ``proxy``)."""
        out = {}
        for name, p, _ in self.procs:
            out[name] = p.pid
            if name == "proxy" and self.proxy_workers > 1:
                for i, pid in enumerate(_children(p.pid)):
                    out[f"proxy.w{i}"] = pid
        return out

    def backend_pids(self) -> dict[str, int]:
        return {b.name: b.proc.pid for b in self.backends}

    def cpu_breakdown(self) -> dict[str, float | None]:
        """CPU seconds of every process (vecdb roles, then nats/etcd/s3)."""
        pids = {**self.vecdb_pids(), **self.backend_pids()}
        return {name: read_cpu_seconds(pid) for name, pid in pids.items()}

    def rss_breakdown(self) -> dict[str, float | None]:
        """Peak RSS (VmHWM, MiB) of every process (vecdb roles, then nats/etcd/s3)."""
        pids = {**self.vecdb_pids(), **self.backend_pids()}
        return {name: read_vmhwm_mb(pid) for name, pid in pids.items()}

    @staticmethod
    def _sum(values) -> float | None:
        values = list(values)
        return None if not values or any(v is None for v in values) else sum(values)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the vecdb processes together (backends not included)."""
        return self._sum(read_cpu_seconds(pid) for pid in self.vecdb_pids().values())

    def peak_rss_mb(self) -> float | None:
        """Sum of the vecdb processes' peaks (backends not included; see ``rss_breakdown``)."""
        return self._sum(read_vmhwm_mb(pid) for pid in self.vecdb_pids().values())

    @staticmethod
    def _tail_of(path: str, n: int = 20) -> str:
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def tail(self, n: int = 8) -> str:
        parts = [f"[{name}]\n{self._tail_of(lp, n)}" for name, _, lp in self.procs]
        parts += [f"[{b.name}]\n{self._tail_of(b.log_path, n)}" for b in self.backends if not b.alive()]
        return "".join(parts)

    def stop(self) -> None:
        """Proxy first, then the query nodes, the coord, and the backends; idempotent."""
        try:
            procs = [p for _, p, _ in reversed(self.procs)]
            for p in procs:  # SIGTERM to all at once, then wait: the roles stop in parallel
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                _stop_pid(p, grace=10.0)
        finally:
            for b in reversed(self.backends):
                try:
                    b.stop()
                except Exception:  # keep stopping the others
                    pass
            for log in self._logs:
                log.close()
            self._logs = []
            shutil.rmtree(os.path.join(self.workdir, "data"), ignore_errors=True)
            for kind in ("nats", "etcd", "s3"):
                shutil.rmtree(os.path.join(self.workdir, kind, "jetstream"), ignore_errors=True)
                shutil.rmtree(os.path.join(self.workdir, kind, "etcd"), ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


SERVERS = {"vecdb": VecdbServer, "vecdb-cluster": VecdbCluster, "bare": BareServer, "milvus": MilvusStandalone}

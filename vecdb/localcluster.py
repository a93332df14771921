"""``vecdb cluster up|status|restart|down``: a whole cluster on this machine, in one command.

``up`` starts, on 127.0.0.1, the three backends (NATS with JetStream, etcd, SeaweedFS as a
persistent S3 server: ``vecdb.storage.servers``) and then ``vecdb coord``, N ``vecdb querynode``
and P ``vecdb proxy``, each a detached process (a session of its own, output to
``DATA_DIR/logs/<name>.log``) that outlives the command. It returns once every proxy answers
pymilvus. Everything the cluster keeps is under ``DATA_DIR``: ``nats/`` (JetStream), ``etcd/``,
``s3/`` (SeaweedFS), and a cache directory per vecdb process, so ``up`` after ``down`` on the
same directory finds the data again.

Two files say what is there:

- ``DATA_DIR/cluster.json``, the state of a running cluster: every process started, in start
  order, with its role, pid, port, exact command line, log file, start time and the kernel's
  start tick of the pid. ``down`` signals a pid only while ``/proc/<pid>/cmdline`` is still that
  command line (and its start tick the recorded one), so a pid the system reused for something
  else is never killed. ``down`` removes the file once everything is stopped.
- ``DATA_DIR/backends.json``, kept across ``down``: the backends' ports, the S3 credentials and the
  cluster secret the vecdb processes require of each other's internal RPC (generated at the first
  ``up``, file mode 0600; a VECDB_SECURITY__CLUSTER_SECRET[_FILE] given is used instead). A later
  ``up`` reuses them (a port taken meanwhile is replaced by a free one), so the servers come back as
  they were.

``up`` ends by starting ``vecdb cluster supervise`` (recorded as ``supervisor``, stopped first by
``down``): it starts again, as ``restart`` would, a vecdb role whose process is gone (a crash, a kill, a
node that exits after losing its session: a laptop that slept), waiting 1 s before the first try and
twice as long after each exit within a minute of its start, up to 60 s; each restart is a line of
``logs/supervisor.log``. The backends are not restarted (``down`` then ``up``). ``up --no-supervise``
starts none.

The module is the local cluster's wiring, as ``vecdb/standalone.py`` is standalone's: it owns no
role, it starts processes of the roles. ``cli.py`` only parses the flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

STATE_FILE = "cluster.json"
BACKENDS_FILE = "backends.json"
BUCKET = "vecdb"
HOST = "127.0.0.1"
HTTP_SERVES = "REST API, /webui/, /metrics, /healthz"  # what a proxy serves on its HTTP port (http_port)
# down stops the roles before the backends they use: proxies (they write), query nodes, the coord,
# then the servers (S3 before etcd and NATS: nothing writes to it once the roles are gone)
# (the supervisor first: it would start the others again)
STOP_ORDER = ("supervisor", "proxy", "querynode", "datanode", "coord", "s3", "etcd", "nats")
# seconds between SIGTERM and SIGKILL (SeaweedFS hangs on SIGTERM: SERVICES.md says ~3 s)
GRACE = {"supervisor": 5.0, "proxy": 10.0, "querynode": 10.0, "datanode": 10.0, "coord": 10.0, "s3": 3.0,
         "etcd": 5.0, "nats": 5.0}
BACKENDS = ("nats", "etcd", "s3")
READY_TIMEOUT = 60.0
LOCK_WAIT = 15.0  # seconds a command waits for another one (or the supervisor's restart) on the same data dir
RESTART_BACKOFF = (1.0, 60.0)  # the supervisor's first and longest wait before starting a gone role again
STABLE = 60.0  # a role that ran this long before it went is waited for RESTART_BACKOFF[0] again

Out = Callable[[str], None]


class ClusterError(Exception):
    """What went wrong, said for the user (the CLI prints it and exits 1)."""


class Busy(ClusterError):
    """Another ``vecdb cluster`` command holds the data dir's lock."""


@dataclass
class Proc:
    role: str  # nats, etcd, s3, coord, querynode, datanode, proxy
    name: str  # unique: the log file's name
    pid: int
    port: int  # the one that matters to a user (the client port of a backend, the gRPC port of a role)
    command: list[str]
    log: str
    started: str  # local time, ISO 8601
    start_ticks: int | None = None  # /proc/<pid>/stat field 22: tells a reused pid apart
    url: str = ""
    extra: dict = field(default_factory=dict)
    http_port: int = 0  # a vecdb role's /healthz and /metrics, a proxy's REST API and /webui/ too (0: none, a backend)


# --- processes: is this pid still the process we started? ---------------------------------------


def _cmdline(pid: int) -> list[str] | None:
    """The pid's argv, None when there is no such process or it is a zombie (empty cmdline)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        if os.path.isdir("/proc/self"):
            return None
        return _cmdline_ps(pid)
    if not raw:
        return None
    return [a.decode(errors="surrogateescape") for a in raw.removesuffix(b"\0").split(b"\0")]


def _cmdline_ps(pid: int) -> list[str] | None:
    """Without /proc (macOS): ps's view, split on spaces (compared as one string then)."""
    try:
        out = subprocess.run(["ps", "-p", str(pid), "-o", "args="], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text.split(" ") if out.returncode == 0 and text else None


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": field 3 (state) is index 0
    return int(fields[19]) if len(fields) > 19 else None


def running(p: Proc) -> bool:
    """True while ``p.pid`` is alive and still runs ``p.command`` (and started at the recorded tick)."""
    argv = _cmdline(p.pid)
    if argv is None:
        return False
    if os.path.isdir("/proc/self"):
        if argv != p.command:
            return False
    elif " ".join(argv) != " ".join(p.command):
        return False
    return p.start_ticks is None or _start_ticks(p.pid) in (None, p.start_ticks)


def _stop(procs: list[Proc], grace: float) -> list[Proc]:
    """SIGTERM to each that still runs its command, SIGKILL after ``grace`` s; the ones left running."""
    alive = [p for p in procs if running(p)]
    for p in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    for sig, wait in ((signal.SIGKILL, grace), (None, 5.0)):
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if running(p)]
        if sig is None:
            break
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)
    return alive


# --- files ------------------------------------------------------------------------------------------


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json(path: str, data: dict, mode: int = 0o644) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(data_dir: str) -> list[Proc] | None:
    state = _read_json(os.path.join(data_dir, STATE_FILE))
    return None if state is None else [Proc(**p) for p in state["processes"]]


def _save_state(data_dir: str, procs: list[Proc], info: dict) -> None:
    _write_json(os.path.join(data_dir, STATE_FILE), {**info, "processes": [asdict(p) for p in procs]})


@contextlib.contextmanager
def _locked(data_dir: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One ``up``, ``restart``, ``down`` or supervisor's restart at a time per data dir (waiting up to
    ``wait`` s for the one under way)."""
    with open(os.path.join(data_dir, "cluster.lock"), "w") as f:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"another `vecdb cluster` command is working on {data_dir}") from None
                time.sleep(0.1)
        yield


def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections of a stopped server in TIME_WAIT do not count: the servers
    set SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# --- pymilvus ----------------------------------------------------------------------------------------


def milvus_answers(port: int, timeout: float = 5.0) -> str | None:
    """None when the proxy on ``port`` answers ``list_collections``, else why not."""
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect((HOST, port))
        except OSError as e:
            return f"port closed ({e.strerror or e})"
    try:
        from pymilvus import MilvusClient  # type: ignore[import-untyped]

        mode, tls = _tls()
        client = MilvusClient(uri=f"{'https' if mode else 'http'}://{HOST}:{port}", timeout=timeout, **_credentials(),
                              **tls)
        try:
            client.list_collections()
        finally:
            client.close()
    except Exception as e:  # noqa: BLE001 - any failure is "does not answer", with its reason
        return f"{type(e).__name__}: {e}"
    return None


def _credentials() -> dict[str, str]:
    """root's token when the proxies require one (VECDB_SECURITY__AUTHORIZATION_ENABLED, the same
    variables they read; root's password as at a first start), else none: docs/security.md."""
    if os.environ.get("VECDB_SECURITY__AUTHORIZATION_ENABLED", "").strip().lower() not in ("1", "true", "yes", "on"):
        return {}
    return {"token": "root:" + os.environ.get("VECDB_SECURITY__ROOT_PASSWORD", "Milvus")}


def _tls() -> tuple[int, dict[str, str]]:
    """The roles' tls.mode and how pymilvus connects to them, from the VECDB_TLS__* variables they read
    (docs/security.md): mode 1 trusts tls.ca_pem_path (else the server's certificate); mode 2 also
    presents the server's certificate and key as the client's (signed by the same CA)."""
    env = os.environ
    mode = int(env.get("VECDB_TLS__MODE", "0") or 0)
    if not mode:
        return 0, {}
    cert, key, ca = (env.get(f"VECDB_TLS__{k}", "") for k in ("SERVER_PEM_PATH", "SERVER_KEY_PATH", "CA_PEM_PATH"))
    name = {"server_name": env["VECDB_TLS__INTERNAL_SERVER_NAME"]} if env.get("VECDB_TLS__INTERNAL_SERVER_NAME") else {}
    if mode == 1:
        return 1, {"server_pem_path": ca or cert, **name}
    return 2, {"ca_pem_path": ca, "client_pem_path": cert, "client_key_path": key, **name}


def healthz(port: int, timeout: float = 2.0) -> tuple[bool, str]:
    """A role's /healthz on ``port``: (True, "OK ...") on 200, else (False, the status and reason). Over
    TLS when the roles serve it (``_tls``: whether the port is up, not who serves it, so unverified)."""
    import ssl
    import urllib.error
    import urllib.request

    mode, tls = _tls()
    context = None
    if mode:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if mode == 2:
            context.load_cert_chain(tls["client_pem_path"], tls["client_key_path"])
    try:
        with urllib.request.urlopen(f"{'https' if mode else 'http'}://{HOST}:{port}/healthz", timeout=timeout,
                                    context=context) as r:
            return True, r.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        return False, f"{e.code}: {e.read().decode(errors='replace').strip()}"
    except OSError as e:
        return False, f"no answer ({e})"


# --- up -------------------------------------------------------------------------------------------------


def _backend_config(data_dir: str) -> dict:
    """backends.json: ports and credentials, the same as last time where the port is still free."""
    from vecdb.storage.servers import SEAWEEDFS_PORTS, free_port

    path = os.path.join(data_dir, BACKENDS_FILE)
    old = _read_json(path) or {}
    taken: set[int] = set()

    def port(key: str) -> int:
        p = old.get("ports", {}).get(key)
        if not (isinstance(p, int) and p not in taken and _port_free(p)):
            p = free_port()
            while p in taken:
                p = free_port()
        taken.add(p)
        return p

    keys = ["nats", "nats_monitor", "etcd", "etcd_peer", *(f"s3_{n}" for n in SEAWEEDFS_PORTS)]
    config = {"ports": {k: port(k) for k in keys},
              "s3_access_key": old.get("s3_access_key") or "vecdb" + secrets.token_hex(4),
              "s3_secret_key": old.get("s3_secret_key") or secrets.token_urlsafe(24),
              # internal RPC between the vecdb processes requires it (security.cluster_secret)
              "cluster_secret": old.get("cluster_secret") or secrets.token_urlsafe(32)}
    _write_json(path, config, mode=0o600)
    return config


def _record(role: str, name: str, proc: subprocess.Popen, port: int, log: str, url: str = "") -> Proc:
    assert isinstance(proc.args, list), "started with an argv list"
    command = [os.fsdecode(a) for a in proc.args]
    return Proc(role, name, proc.pid, port, command, log, _now(), _start_ticks(proc.pid), url)


def _make_bucket(url: str, config: dict, timeout: float = 20.0) -> None:
    """The bucket exists and takes a write (SeaweedFS's first write waits for a volume)."""
    import boto3
    import botocore.config

    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id=config["s3_access_key"], aws_secret_access_key=config["s3_secret_key"],
                      config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
    deadline = time.monotonic() + timeout
    while True:
        try:
            try:
                s3.head_bucket(Bucket=BUCKET)
            except s3.exceptions.ClientError:
                s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="cluster-up-probe", Body=b"ok")
            s3.delete_object(Bucket=BUCKET, Key="cluster-up-probe")
            return
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            if time.monotonic() > deadline:
                raise ClusterError(f"the S3 server at {url} does not take writes: {e}") from e
            time.sleep(0.2)


def _spawn_role(data_dir: str, logs: str, role: str, name: str, port: int, args: list[str], env: dict) -> Proc:
    """``vecdb <role>`` detached, on ``port`` and a free /healthz and /metrics port of its own."""
    from vecdb.storage.servers import free_port

    log = os.path.join(logs, f"{name}.log")
    cache = os.path.join(data_dir, name)
    os.makedirs(cache, exist_ok=True)
    http_port = free_port()
    cmd = [sys.executable, "-m", "vecdb", role, "--data-dir", cache, "--host", HOST, "--port", str(port),
           "--http-port", str(http_port), *args]
    return _launch(data_dir, Proc(role, name, 0, port, cmd, log, "", http_port=http_port), env, "up")


def _launch(data_dir: str, p: Proc, env: dict, verb: str) -> Proc:
    """``p.command`` started detached (a session of its own, output appended to ``p.log``): ``p`` with
    the new process's pid."""
    with open(p.log, "ab") as f:
        f.write(f"--- {_now()} vecdb cluster {verb}: {' '.join(p.command)}\n".encode())
        f.flush()
        proc = subprocess.Popen(p.command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=data_dir, start_new_session=True)
        q = _record(p.role, p.name, proc, p.port, p.log)
        q.http_port = p.http_port
        q.extra["log_offset"] = f.tell()
    proc.returncode = 0  # not ours to reap: it outlives this command (keeps Popen.__del__ quiet)
    return q


def _secret_from_env() -> bool:
    """Whether this command's environment gives the cluster secret (else backends.json's is used)."""
    env = os.environ
    return bool(env.get("VECDB_SECURITY__CLUSTER_SECRET") or env.get("VECDB_SECURITY__CLUSTER_SECRET_FILE"))


def _role_env(s3_url: str, config: dict) -> dict:
    """The environment of a vecdb role: the S3 server and its credentials, the cluster secret (one the
    caller's environment gives is kept)."""
    env = dict(os.environ, VECDB_STORAGE__S3_ENDPOINT=s3_url, VECDB_STORAGE__S3_REGION="us-east-1",
               VECDB_STORAGE__S3_ACCESS_KEY=config["s3_access_key"],
               VECDB_STORAGE__S3_SECRET_KEY=config["s3_secret_key"])
    if not env.get("VECDB_SECURITY__CLUSTER_SECRET") and not env.get("VECDB_SECURITY__CLUSTER_SECRET_FILE"):
        env["VECDB_SECURITY__CLUSTER_SECRET"] = config["cluster_secret"]
    return env


def _wait_ready(procs: list[Proc], timeout: float = READY_TIMEOUT) -> None:
    """Until each process's log has its " ready on " line (written after its session is registered)."""
    waiting = list(procs)
    deadline = time.monotonic() + timeout
    while waiting:
        for p in list(waiting):
            with open(p.log, "rb") as f:
                f.seek(p.extra.get("log_offset", 0))
                if b" ready on " in f.read():
                    waiting.remove(p)
                    continue
            if not running(p) and (how := _how_it_ended(p.pid)) is not None:
                raise ClusterError(f"{p.name} exited{how} before it was ready; end of {p.log}:\n{_tail(p.log)}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(p.name for p in waiting)
            raise ClusterError(f"not ready after {timeout:.0f} s: {names}; end of {waiting[0].log}:\n"
                               f"{_tail(waiting[0].log)}")
        time.sleep(0.05)


def _how_it_ended(pid: int) -> str | None:
    """" (exit status 1)", " (killed by SIGKILL)": how a child of this command that exited ended (a
    process killed from outside, or by a crash in native code, leaves no line in its log), reaping it;
    None while that child has not ended (one in the middle of exiting, or under a load that keeps its
    command line unreadable a while, is no zombie yet: asked again on the next poll); "" for a process
    that is not this command's child."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ""
    if done != pid:
        return None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f" (killed by {signal.Signals(sig).name})"
        except ValueError:
            return f" (killed by signal {sig})"
    return f" (exit status {os.waitstatus_to_exitcode(status)})"


def _wait_milvus(procs: list[Proc], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        while (why := milvus_answers(p.port)) is not None:
            if not running(p) and (how := _how_it_ended(p.pid)) is not None:
                raise ClusterError(f"{p.name} exited{how}; end of {p.log}:\n{_tail(p.log)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{p.name} on port {p.port} does not answer pymilvus: {why}")
            time.sleep(0.2)


def up(data_dir: str, proxies: int = 1, querynodes: int = 1, port: int = 19530, datanodes: int | None = None,
       supervise: bool = True, out: Out = print) -> int:
    """Starts the cluster (see the module docstring); 0 once every proxy answers, 1 if one was running."""
    from vecdb.storage import servers
    from vecdb.storage.servers import free_port

    if proxies < 1 or querynodes < 1:
        raise ClusterError("--proxies and --querynodes must be at least 1")
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    with _locked(data_dir):
        state = load_state(data_dir)
        if state is not None:
            alive = [p for p in state if running(p)]
            if alive:
                out(f"a cluster is already running from {data_dir} ({len(alive)} of {len(state)} processes alive): "
                    f"see `vecdb cluster status --data-dir {data_dir}`, stop it with `vecdb cluster down`")
                return 1
            out(f"{STATE_FILE} in {data_dir} names no running process (left by a crash or a reboot): starting afresh")
            os.remove(os.path.join(data_dir, STATE_FILE))
        proxy_ports = [port + i for i in range(proxies)]
        if proxy_ports[-1] > 65535:
            raise ClusterError(f"--port {port} with {proxies} proxies goes past port 65535 (proxy i gets port+i-1)")
        busy = [p for p in proxy_ports if not _port_free(p)]
        if busy:
            raise ClusterError(f"port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} already in use "
                               f"(choose another with --port)")
        logs = os.path.join(data_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        config = _backend_config(data_dir)
        ports = config["ports"]
        started: list[Proc] = []
        info = {"data_dir": data_dir, "started": _now(), "proxies": proxies, "querynodes": querynodes,
                "port": port, "secret_from_env": _secret_from_env()}  # (``restart`` needs the same one)
        t0 = time.monotonic()
        try:
            # the backends at once (SeaweedFS takes ~3 s, the others well under 1 s)
            s3_ports = {n: ports[f"s3_{n}"] for n in servers.SEAWEEDFS_PORTS}
            starts = {
                "nats": lambda: servers.start_nats(os.path.join(data_dir, "nats"), ports["nats"],
                                                   ports["nats_monitor"], log_dir=logs),
                "etcd": lambda: servers.start_etcd(data_dir, ports["etcd"], ports["etcd_peer"], log_dir=logs),
                "s3": lambda: servers.start_seaweedfs(os.path.join(data_dir, "s3"), config["s3_access_key"],
                                                      config["s3_secret_key"], s3_ports, log_dir=logs),
            }
            with ThreadPoolExecutor(3) as pool:
                futures = {name: pool.submit(f) for name, f in starts.items()}
                errors = []
                for name, fut in futures.items():
                    try:
                        srv = fut.result()
                    except Exception as e:  # noqa: BLE001 - every failure reported, then all stopped
                        errors.append(f"{name}: {e}")
                        continue
                    srv.proc.returncode = 0  # not ours to reap (see _spawn_role)
                    client_port = int(srv.url.rsplit(":", 1)[1])  # the one a client uses (S3's, not the master's)
                    started.append(_record(name, name, srv.proc, client_port, srv.log_path, srv.url))
                _save_state(data_dir, started, info)
                if errors:
                    raise ClusterError("a backend did not start: " + "\n".join(errors))
            urls = {p.role: p.url for p in started}
            _make_bucket(urls["s3"], config)
            flags = ["--log-store", urls["nats"], "--meta-store", "etcd://" + urls["etcd"].split("://", 1)[1],
                     "--object-store", f"s3://{BUCKET}"]
            env = _role_env(urls["s3"], config)
            # the coord's gc needs the objects, its flushes the log (their seal records)
            roles = [_spawn_role(data_dir, logs, "coord", "coord", free_port(),
                                 ["--log-store", flags[1], "--meta-store", flags[3], "--object-store", flags[5]], env)]
            roles += [_spawn_role(data_dir, logs, "querynode", f"querynode{i}", free_port(),
                                  ["--node-id", f"qn{i}", *flags], env) for i in range(1, querynodes + 1)]
            roles += [_spawn_role(data_dir, logs, "datanode", f"datanode{i}", free_port(),
                                  ["--node-id", f"dn{i}", *flags], env) for i in range(1, (datanodes or 0) + 1)]
            started += roles
            _save_state(data_dir, started, info)
            _wait_ready(roles)
            px = [_spawn_role(data_dir, logs, "proxy", f"proxy{i}", p, ["--node-id", f"proxy{i}", *flags], env)
                  for i, p in enumerate(proxy_ports, 1)]
            started += px
            _save_state(data_dir, started, info)
            _wait_ready(px)
            _wait_milvus(px)
            if supervise:
                started.append(_launch(data_dir, Proc("supervisor", "supervisor", 0, 0, [
                    sys.executable, "-m", "vecdb", "cluster", "supervise", "--data-dir", data_dir],
                    os.path.join(logs, "supervisor.log"), ""), dict(os.environ), "up"))
        except BaseException:
            left = _stop_all(started, out=lambda _: None)
            if not left:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(data_dir, STATE_FILE))
            raise
        for p in started:
            p.extra.pop("log_offset", None)
        _save_state(data_dir, started, info)
    out(f"vecdb cluster up in {time.monotonic() - t0:.1f} s: {proxies} prox{'ies' if proxies > 1 else 'y'}, "
        f"{querynodes} query node{'s' if querynodes > 1 else ''}, {datanodes or 0} data node"
        f"{'' if datanodes == 1 else 's'}, data in {data_dir}")
    for p in started:
        if p.role == "proxy":
            scheme = "https" if _tls()[0] else "http"  # TLS: see docs/security.md for pymilvus's arguments
            out(f"  Milvus API   {scheme}://{HOST}:{p.port}   (pymilvus: MilvusClient(\"{scheme}://{HOST}:{p.port}\"))")
            out(f"    its HTTP   {scheme}://{HOST}:{p.http_port}   ({HTTP_SERVES})")
    out(f"  NATS {urls['nats']}   etcd {urls['etcd']}   S3 {urls['s3']} (bucket {BUCKET})")
    if supervise:
        out("  a role that exits is started again (logs/supervisor.log)")
    out(f"  logs in {logs}; `vecdb cluster status --data-dir {data_dir}`, `vecdb cluster down --data-dir {data_dir}`")
    return 0


# --- restart, down, status ------------------------------------------------------------------------------


def restart(data_dir: str, names: list[str], out: Out = print) -> int:
    """Stops the named vecdb roles that still run and starts them again as ``up`` did (same command,
    ports, data and log; the S3 credentials and cluster secret from backends.json); 0 once each is ready
    (a proxy: once it answers pymilvus)."""
    data_dir = os.path.abspath(data_dir)
    if not os.path.isdir(data_dir):  # (its lock file could not be made: a traceback)
        out(f"no cluster running from {data_dir} (no such directory)")
        return 1
    with _locked(data_dir):
        procs = load_state(data_dir)
        if procs is None:
            out(f"no cluster running from {data_dir} (no {STATE_FILE})")
            return 1
        by_name = {p.name: p for p in procs}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ClusterError(f"no process named {', '.join(unknown)} in the cluster of {data_dir} (its processes: "
                               f"{', '.join(by_name)})")
        chosen = [by_name[n] for n in dict.fromkeys(names)]
        backends = [p.name for p in chosen if p.role in BACKENDS]
        if backends:
            raise ClusterError(f"{', '.join(backends)}: a backend restarts with the whole cluster "
                               f"(`vecdb cluster down` then `up` on the same --data-dir)")
        info, env = _restart_env(data_dir, procs)
        still = _stop(chosen, max(GRACE[p.role] for p in chosen))
        if still:
            raise ClusterError(f"{', '.join(p.name for p in still)} did not stop (pid "
                               f"{', '.join(str(p.pid) for p in still)}); nothing was started")
        fresh = {p.name: _launch(data_dir, p, env, "restart") for p in chosen}
        procs = [fresh.get(p.name, p) for p in procs]
        _save_state(data_dir, procs, info)
        t0 = time.monotonic()
        _wait_ready(list(fresh.values()))
        _wait_milvus([p for p in fresh.values() if p.role == "proxy"])
        for p in fresh.values():
            p.extra.pop("log_offset", None)
        _save_state(data_dir, procs, info)
    for p in fresh.values():
        out(f"  {p.name:<12} pid {p.pid:<8} restarted")
    out(f"ready in {time.monotonic() - t0:.1f} s")
    return 0




def _restart_env(data_dir: str, procs: list[Proc]) -> tuple[dict, dict]:
    """The cluster's recorded info and the environment a role is started again with (as ``up`` started
    it: the S3 server and credentials, the cluster secret); ClusterError when that cannot be made."""
    s3 = next((p.url for p in procs if p.role == "s3"), "")
    config = _read_json(os.path.join(data_dir, BACKENDS_FILE))
    if not s3 or config is None:
        raise ClusterError(f"{STATE_FILE} names no S3 server, or {BACKENDS_FILE} is missing, in {data_dir}")
    info = {k: v for k, v in (_read_json(os.path.join(data_dir, STATE_FILE)) or {}).items() if k != "processes"}
    if info.get("secret_from_env", False) != _secret_from_env():  # the others would refuse its internal RPC
        up_had, now = ("had", "lacks") if info.get("secret_from_env") else ("lacked", "has")
        raise ClusterError(f"`up` {up_had} VECDB_SECURITY__CLUSTER_SECRET[_FILE] in its environment and this "
                           f"command {now} it: the roles restarted would hold another cluster secret than the "
                           "others (their internal RPC refused); restart with the environment `up` had")
    return info, _role_env(s3, config)


def supervise(data_dir: str, poll: float = 1.0, out: Out = print) -> int:
    """``vecdb cluster supervise`` (started by ``up``, see the module's doc): until ``down`` takes the
    cluster's state away (or another supervisor is recorded), starts again each vecdb role whose process
    is gone, after its backoff, under the data dir's lock (a ``restart`` or ``down`` under way goes
    first; the state is read again there, so a role they started is left alone)."""
    data_dir = os.path.abspath(data_dir)
    me = os.getpid()
    failures: dict[str, int] = {}
    due: dict[str, float] = {}  # name -> when to start it again
    seen: dict[str, tuple[int, float]] = {}  # name -> (the pid last seen running, since when)
    out(f"{_now()} supervisor ready on {data_dir}")  # (what `restart` waits for, as of a role)
    while True:
        procs = load_state(data_dir)
        if procs is None or not any(p.role == "supervisor" and p.pid == me for p in procs):
            out(f"{_now()} the cluster of {data_dir} is down (or supervised by another process): exiting")
            return 0
        now = time.monotonic()
        for p in procs:
            if p.role in BACKENDS or p.role == "supervisor":
                continue
            if running(p):
                if seen.get(p.name, (0, 0.0))[0] != p.pid:
                    seen[p.name] = (p.pid, now)
                continue
            if p.name not in due:
                how = _how_it_ended(p.pid)  # its exit status when this process started it
                if how is None:
                    continue  # a child of this process in the middle of exiting: gone at the next pass
                lived = now - seen.get(p.name, (0, now))[1]
                failures[p.name] = failures.get(p.name, 0) + 1 if 0 < lived < STABLE else 1
                wait = min(RESTART_BACKOFF[1], RESTART_BACKOFF[0] * 2 ** (failures[p.name] - 1))
                out(f"{_now()} {p.name} (pid {p.pid}) is gone{how}: starting it again in {wait:g} s")
                due[p.name] = now + wait
        ready = [name for name, at in due.items() if now >= at]
        if ready:
            try:
                started = time.monotonic()
                for name, pid in _restart_gone(data_dir, ready, due, out).items():
                    # its life counts from here: one that dies before a pass saw it running (a crash at
                    # start, with the 1 s poll) waited 1 s again each time instead of longer and longer
                    seen[name] = (pid, started)
            except Busy:
                pass  # a command on the data dir: the next pass
            except ClusterError as e:  # (backends.json gone, another secret: said, tried again after the backoff)
                out(f"{_now()} cannot start {', '.join(ready)} again: {e}")
        time.sleep(poll)


def _restart_gone(data_dir: str, names: list[str], due: dict[str, float], out: Out) -> dict[str, int]:
    """The roles ``names`` started again where they are still gone, under the lock; name -> new pid."""
    with _locked(data_dir, wait=0.0):
        procs = load_state(data_dir)
        if procs is None:
            return {}
        gone = [p for p in procs if p.name in names and not running(p)]
        for name in names:
            due.pop(name, None)  # (one running again, started by `restart`, is left as it is)
        if not gone:
            return {}
        info, env = _restart_env(data_dir, procs)
        fresh = {p.name: _launch(data_dir, p, env, "supervise") for p in gone}
        for p in fresh.values():
            p.extra.pop("log_offset", None)
        _save_state(data_dir, [fresh.get(p.name, p) for p in procs], info)
    for p in fresh.values():
        out(f"{_now()} {p.name} started again (pid {p.pid})")
    return {p.name: p.pid for p in fresh.values()}


def _stop_all(procs: list[Proc], out: Out) -> list[Proc]:
    """Stops ``procs`` tier by tier in STOP_ORDER; the ones still running after SIGKILL."""
    left: list[Proc] = []
    for role in STOP_ORDER:
        tier = [p for p in procs if p.role == role]
        if not tier:
            continue
        gone = [p for p in tier if not running(p)]
        still = _stop(tier, GRACE[role])
        left += still
        for p in tier:
            what = "already gone" if p in gone else "STILL RUNNING" if p in still else "stopped"
            out(f"  {p.name:<12} pid {p.pid:<8} {what}")
    return left


def down(data_dir: str, out: Out = print) -> int:
    data_dir = os.path.abspath(data_dir)
    if not os.path.isdir(data_dir):
        out(f"no cluster in {data_dir} (no such directory)")
        return 1
    with _locked(data_dir):
        procs = load_state(data_dir)
        if procs is None:
            out(f"no cluster state in {data_dir} ({STATE_FILE} missing): nothing to stop")
            return 1
        out(f"stopping the cluster of {data_dir}")
        left = _stop_all(procs, out)
        if left:
            out(f"{len(left)} process(es) did not stop; {STATE_FILE} kept")
            return 1
        os.remove(os.path.join(data_dir, STATE_FILE))
    out("cluster down (data kept: `vecdb cluster up` on the same --data-dir finds it again)")
    return 0


def status(data_dir: str, out: Out = print) -> int:
    """One line per recorded process; 0 when every one runs, every role's /healthz says 200 and every
    proxy answers pymilvus."""
    data_dir = os.path.abspath(data_dir)
    procs = load_state(data_dir) if os.path.isdir(data_dir) else None
    if procs is None:
        out(f"no cluster running from {data_dir} (no {STATE_FILE})")
        return 1
    healthy = True
    out(f"cluster of {data_dir}")
    out(f"  {'name':<12} {'role':<10} {'pid':<8} {'port':<6} {'state':<6} since")
    for p in procs:
        alive = running(p)
        line = f"  {p.name:<12} {p.role:<10} {p.pid:<8} {p.port:<6} {'alive' if alive else 'DEAD':<6} {p.started}"
        if p.http_port and alive:
            ok, text = healthz(p.http_port)
            line += f"  healthz: {text if ok else 'UNHEALTHY ' + text}"
            healthy &= ok
        if p.role == "proxy" and alive:
            why = milvus_answers(p.port)
            line += "  pymilvus: " + ("answers" if why is None else f"NO ANSWER ({why})")
            healthy &= why is None
        if p.role == "proxy" and p.http_port:
            line += f"  HTTP {HOST}:{p.http_port} ({HTTP_SERVES})"
        healthy &= alive
        out(line)
    return 0 if healthy else 1

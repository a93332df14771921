"""deploy/docker-compose.cluster.yml run without Docker: every vecdb service of the file started as a process
on 127.0.0.1 with the file's own command and environment (on top of the image's ENV), its addresses moved to
loopback (the backend services become the test session's real NATS, etcd and S3 servers; each role gets free
ports instead of its container's), in the file's start order, each one started only once its dependencies pass
the file's own health check. Then pymilvus against the proxy: what a user of the compose file would do, and a
flush that the file's data node persists (the segments' metadata in etcd names it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import free_port, vecdb_command
from tests.deploy._deploy import COMPOSE_CLUSTER, compose_env, image_env, load_compose, run_python_healthcheck
from vecdb.config import load_settings
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
from vecdb.storage.backends import open_meta


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _start_order(services: dict) -> list[str]:
    """The order compose starts them in: each after everything it depends on."""
    order: list[str] = []
    while len(order) < len(services):
        ready = sorted(n for n, s in services.items()
                       if n not in order and set(s.get("depends_on") or {}) & set(services) <= set(order))
        assert ready, "depends_on has a cycle"
        order += ready
    return order


class Translated:
    """One compose service as a local process: the backends' service addresses replaced by the local
    servers', listening on 127.0.0.1, a free gRPC and HTTP port, a data directory of its own."""

    def __init__(self, name: str, service: dict, backends: dict[str, str], data_dir, namespace: str):
        self.name = name

        def local(value: str) -> str:
            return re.sub(r"(?<=//)([\w-]+):(\d+)", lambda m: backends.get(m.group(1), m.group(0)), value)

        self.env = {k: local(v) for k, v in {**image_env(), **compose_env(service)}.items()}
        assert self.env["VECDB_STORAGE__DATA_DIR"] == "/var/lib/vecdb"
        self.env["VECDB_STORAGE__DATA_DIR"] = str(data_dir / name)
        self.env["VECDB_STORAGE__NAMESPACE"] = namespace  # the servers are shared with other tests
        argv = [local(a) for a in service["command"]]
        self.ports: dict[str, int] = {}
        for flag in ("--host", "--port", "--http-port"):
            i = argv.index(flag)
            if flag == "--host":
                assert argv[i + 1] == "0.0.0.0"
                argv[i + 1] = "127.0.0.1"
            else:
                self.ports[flag] = free_port()
                argv[i + 1] = str(self.ports[flag])
        self.argv = argv
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and ":9091/healthz" in test[3]
        self.check = test[3].replace(":9091/", f":{self.ports['--http-port']}/")
        self.log = data_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VECDB_")}
        env.update(self.env)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(vecdb_command(*self.argv),
                                         env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_healthy(self, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        while run_python_healthcheck(self.check) != 0:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited:\n{self.output()}"
            assert time.monotonic() - t0 < timeout, f"{self.name} not healthy in {timeout} s:\n{self.output()}"
            time.sleep(0.2)
        return time.monotonic() - t0

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def test_compose_cluster_serves_pymilvus_with_its_own_commands_and_environment(
        tmp_path, nats_server, etcd_server, s3_server):
    doc = load_compose(COMPOSE_CLUSTER)
    roles = {n: s for n, s in doc["services"].items() if s.get("image") == "vecdb:latest"}
    servers = {"nats": nats_server.url, "etcd": etcd_server.url, "minio": s3_server.url}
    backends = {n: servers[n].split("://", 1)[1] for n in doc["services"] if n not in roles}
    assert set(backends) == set(servers), "the file's backends are NATS, etcd and MinIO"
    namespace = "compose" + uuid.uuid4().hex[:8]
    procs = {n: Translated(n, roles[n], backends, tmp_path, namespace) for n in _start_order(roles)}
    try:
        for proc in procs.values():
            for dep in roles[proc.name].get("depends_on") or {}:  # compose's service_healthy, for real
                if dep in procs:
                    assert run_python_healthcheck(procs[dep].check) == 0, f"{proc.name} started before {dep}"
            proc.start()
            proc.wait_healthy()
        http = {n: p.ports["--http-port"] for n, p in procs.items()}
        assert _get(http["coord-1"], "/healthz") == (200, "OK active")
        assert _get(http["coord-2"], "/healthz") == (200, "OK standby")
        for name in ("querynode-1", "querynode-2", "datanode-1", "proxy"):
            assert _get(http[name], "/healthz")[0] == 200

        client = MilvusClient(uri=f"http://127.0.0.1:{procs['proxy'].ports['--port']}")
        try:
            client.create_collection("compose_docs", dimension=8, metric_type="L2")
            vecs = np.random.default_rng(7).random((300, 8), dtype=np.float32)
            result = client.insert("compose_docs", [{"id": i, "vector": vecs[i], "tag": f"t{i % 3}"}
                                                    for i in range(300)])
            assert result["insert_count"] == 300
            hits = client.search("compose_docs", data=[vecs[42], vecs[7]], limit=3, output_fields=["tag"])
            assert [h[0]["id"] for h in hits] == [42, 7] and hits[0][0]["entity"]["tag"] == "t0"
            assert hits[0][0]["distance"] < 1e-5 < hits[0][1]["distance"]
            assert client.query("compose_docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
            filtered = client.search("compose_docs", data=[vecs[42]], limit=5, filter='tag == "t1"',
                                     output_fields=["tag"])[0]
            assert len(filtered) == 5 and all(h["entity"]["tag"] == "t1" for h in filtered)

            # a flush returns once the channel's data node persisted it: the file's datanode-1, which the coord
            # gave the channel, wrote every segment ("by"), as the metadata store the roles share says
            client.flush("compose_docs")
            meta = open_meta(load_settings(None, env=procs["datanode-1"].env).storage)
            try:
                segments = [json.loads(v) for _, v in meta.scan("seg/")]
                owners = {n for _, v in meta.scan(DN_ASSIGN_PREFIX) for n in json.loads(v).values()}
            finally:
                meta.close()
            assert segments and sum(s["num_rows"] for s in segments) == 300, segments
            assert {s.get("by") for s in segments} == {"datanode-1"}, segments
            assert owners == {"datanode-1"}
            assert client.query("compose_docs", filter="", output_fields=["count(*)"],
                                consistency_level="Strong")[0]["count(*)"] == 300
            assert client.search("compose_docs", data=[vecs[42]], limit=1)[0][0]["id"] == 42
        finally:
            client.close()
        # the metrics carry the node id and role the file gives each node
        for name, node_id, role in (("proxy", "proxy-1", "proxy"), ("datanode-1", "datanode-1", "datanode")):
            status, metrics = _get(http[name], "/metrics")
            assert status == 200 and f'vecdb_node_info{{node_id="{node_id}",role="{role}"}} 1.0' in metrics, name
    finally:
        for proc in reversed(procs.values()):
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        codes = {}
        for proc in procs.values():
            if proc.proc is None:
                continue
            try:
                codes[proc.name] = proc.proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.proc.kill()
                codes[proc.name] = "killed after 20 s"
    assert all(c == 0 for c in codes.values()), {n: (c, procs[n].output()) for n, c in codes.items() if c != 0}

"""Internal RPC of a cluster authenticated by the cluster secret (``security.cluster_secret``).

A cluster of processes (coord, query node, data node, proxy) on NATS, etcd and S3 with the secret
set serves pymilvus as usual. A raw gRPC call to the query node's Search, the coord's
AllocTimestamp or the data node's port without the credential, or with a wrong one, is refused
with UNAUTHENTICATED; with it, the query node answers the search. A proxy without the secret, or a
node, query node or data node with a wrong one, exits 1 at start, saying the coord refused its
credential, and never joins; so does a query node under the id of one that is alive.
The secret is in no log line and no metric. With tls.internal the roles also talk over mutual TLS:
a plain-text call or a certificate from another CA is refused.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
import uuid

import grpc
import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, server_settings, spawn_vecdb, stop_processes, vecdb_command
from vecdb import errors, timestamp
from vecdb.rpc import Client
from vecdb.rpc.columns import fill_column, read_search_reply
from vecdb.rpc.gen import coord_pb2, querynode_pb2
from vecdb.rpc.gen.coord_pb2_grpc import CoordServicer
from vecdb.rpc.transport import SECRET_KEY, _credential


def _raw(address: str, path: str, request, metadata=None) -> bytes:
    """One call on a bare channel, the reply undecoded."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
        return call(request, metadata=metadata, timeout=10)


def _refused(address: str, path: str, request, metadata=None) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _raw(address, path, request, metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
    assert "cluster credential" in err.value.details()


def _environ(storage: dict, env: dict) -> dict[str, str]:
    """This process's environment with ``storage`` as VECDB_STORAGE__* and ``env`` (None: removed)."""
    environ = dict(os.environ, **{f"VECDB_STORAGE__{k.upper()}": str(v) for k, v in storage.items()})
    for key, value in env.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


def _exits_1(storage: dict, tmp_path, env: dict, role: str, *args: str) -> str:
    """``vecdb <role> <args>`` on the cluster's storage with ``env`` ends with exit status 1 before saying it
    is ready, and one line on stderr, which is returned."""
    res = subprocess.run([*vecdb_command(role, *args), "--data-dir", str(tmp_path / f"exits-{role}")],
                         capture_output=True, text=True, timeout=60, env=_environ(storage, env))
    assert res.returncode == 1 and " ready on " not in res.stdout, (role, res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, (role, res.stderr)
    return res.stderr.strip()


def _session_keys(tmp_path, storage: dict) -> list[str]:
    from vecdb.storage.backends import open_meta

    meta = open_meta(server_settings(tmp_path / "look", storage=storage).storage)
    try:
        return [key for key, _ in meta.scan("session/")]
    finally:
        meta.close()


def test_internal_rpc_needs_the_cluster_secret(tmp_path, remote_storage):
    secret = "s3cr3t-" + uuid.uuid4().hex
    (tmp_path / "secret").write_text(secret + "\n")
    storage = dict(remote_storage(), session_ttl=2)
    env = {"VECDB_SECURITY__CLUSTER_SECRET": secret}
    coord_port, qn_port, dn_port, qn_http = free_port(), free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(spawn_vecdb(storage, tmp_path / "coord", "coord", "--port", str(coord_port), env=env))
        # the query node reads it from a file (a mounted Kubernetes Secret), the others from the environment
        procs.append(spawn_vecdb(storage, tmp_path / "qn", "querynode", "--port", str(qn_port), "--node-id", "qn0",
                                 "--http-port", str(qn_http), "--cluster-secret-file", str(tmp_path / "secret")))
        procs.append(spawn_vecdb(storage, tmp_path / "dn", "datanode", "--port", str(dn_port), env=env))
        proxy_port = free_port()
        procs.append(spawn_vecdb(storage, tmp_path / "proxy", "proxy", "--port", str(proxy_port), env=env))

        c = MilvusClient(uri=f"http://127.0.0.1:{proxy_port}")
        c.create_collection("docs", dimension=4, metric_type="L2", consistency_level="Strong")
        vecs = np.random.default_rng(0).random((300, 4), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(300)])
        c.flush("docs")  # the data node persists it
        c.insert("docs", [{"id": 1000, "vector": vecs[3]}])
        assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 301
        assert c.search("docs", data=[vecs[42]], limit=1)[0][0]["id"] == 42
        collection_id = c.describe_collection("docs")["collection_id"]
        c.close()

        # the query node's Search, as a proxy sends it
        search = querynode_pb2.SearchRequest(field="vector", limit=3, metric="L2", params_json="{}")
        search.scope.collection_id = collection_id
        search.scope.ts = timestamp.compose(timestamp.now_ms() + 60_000)
        fill_column(search.queries, vecs[42:43])
        qn = f"127.0.0.1:{qn_port}"
        _refused(qn, "/vecdb.internal.QueryNode/Search", search)
        _refused(qn, "/vecdb.internal.QueryNode/Search", search, [(SECRET_KEY, _credential("wrong"))])
        _refused(qn, "/vecdb.internal.QueryNode/Search", search, [(SECRET_KEY, secret)])  # the digest, not it
        client = Client(qn, "querynode", secret=secret)
        try:
            _, pks, _, _ = read_search_reply(client.invoke_encoded("Search", search))
            assert pks[0] == 42
        finally:
            client.close()
        # the coord's allocator and the data node's port alike
        _refused(f"127.0.0.1:{coord_port}", "/vecdb.internal.Coord/AllocTimestamp", coord_pb2.AllocRequest(count=1))
        coord = Client(f"127.0.0.1:{coord_port}", "coord", secret=secret)
        try:
            ts = coord.invoke("AllocTimestamp", coord_pb2.AllocRequest(count=1)).ts
            assert abs(timestamp.physical_ms(ts) - timestamp.now_ms()) < 60_000
        finally:
            coord.close()
        _refused(f"127.0.0.1:{dn_port}", "/vecdb.internal.DataNode/Anything", coord_pb2.AllocRequest())
        with pytest.raises(grpc.RpcError) as err:  # with the credential it gets as far as the method
            _raw(f"127.0.0.1:{dn_port}", "/vecdb.internal.DataNode/Anything", coord_pb2.AllocRequest(),
                 [(SECRET_KEY, _credential(secret))])
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED

        # a proxy without the secret, a node, query node or data node with a wrong one: the coord refuses
        # their credential, so each exits 1 at start saying so in one line (not "ready", then every call
        # refused, or the coord's calls to it refused), and never joins
        no_secret = {"VECDB_SECURITY__CLUSTER_SECRET": None, "VECDB_SECURITY__CLUSTER_SECRET_FILE": None}
        wrong = dict(no_secret, VECDB_SECURITY__CLUSTER_SECRET="not-the-cluster-secret")
        for role, role_env in (("proxy", no_secret), ("node", wrong), ("querynode", wrong), ("datanode", no_secret)):
            line = _exits_1(storage, tmp_path, role_env, role, "--port", str(free_port()), "--node-id", f"rogue-{role}")
            assert line == f"vecdb: the coord at 127.0.0.1:{coord_port} refused this process's " \
                "cluster credential: start it with the cluster's secret (VECDB_SECURITY__CLUSTER_SECRET or " \
                "--cluster-secret-file, the same in every process of the cluster)", (role, line)
        assert not [key for key in _session_keys(tmp_path, storage) if "rogue-" in key]
        # a second query node under the live one's id (the right secret): refused once the first one's session
        # has not gone within two ttl, in one line naming the holder; the first one still serves
        line = _exits_1(storage, tmp_path, env, "querynode", "--port", str(free_port()), "--node-id", "qn0")
        assert line == f"vecdb: node id qn0 is in use: session/querynode/qn0 is held by another process (address " \
            f"127.0.0.1:{qn_port}, host {socket.gethostname()}, pid {procs[1].pid}); stop it, or start this one " \
            "with another --node-id", line

        # refusals are counted per service; the secret is in no metric and no log
        with urllib.request.urlopen(f"http://127.0.0.1:{qn_http}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert secret not in metrics and _credential(secret) not in metrics
        refused_line = next(line for line in metrics.splitlines()
                            if line.startswith('vecdb_internal_rpc_refused_total{service="querynode"}'))
        assert float(refused_line.split()[-1]) >= 3
    finally:
        stop_processes(procs)
    for proc in procs:
        text = proc.output()
        assert secret not in text and _credential(secret) not in text, proc.name


def test_a_wrong_secret_is_refused_in_process_and_named_in_no_error():
    from vecdb.rpc import serve
    from vecdb.rpc.transport import REFUSED

    secret = "in-process-" + uuid.uuid4().hex
    server, port = serve("coord", _Alloc(), secret=secret)
    try:
        before = REFUSED.labels("coord")._value.get()
        good = Client(f"127.0.0.1:{port}", "coord", secret=secret)
        assert good.invoke("AllocID", coord_pb2.AllocRequest(count=1)).id == 7
        good.close()
        for other in ("", "not-" + secret):
            bad = Client(f"127.0.0.1:{port}", "coord", secret=other)
            with pytest.raises(errors.InternalError) as err:
                bad.invoke("AllocID", coord_pb2.AllocRequest(count=1))
            bad.close()
            assert "cluster credential" in str(err.value) and secret not in str(err.value)
        assert REFUSED.labels("coord")._value.get() == before + 2
    finally:
        server.stop(0)


class _Alloc(CoordServicer):  # the generated base answers UNIMPLEMENTED for the coord's other methods
    def AllocTimestamp(self, request, context):
        return coord_pb2.AllocTimestampReply(ts=1)

    def AllocID(self, request, context):
        return coord_pb2.AllocIDReply(id=7)


def test_internal_rpc_over_mutual_tls(tmp_path, remote_storage):
    """tls.internal: the roles serve and call each other over mutual TLS with the one certificate (and the
    secret); a plain-text call, or one with a certificate from another CA, fails in the handshake."""
    from tests.e2e._certs import make_certs
    from vecdb.config import TlsSettings
    from vecdb.rpc.transport import InternalTls

    certs = make_certs(tmp_path / "certs")
    secret = "s3cr3t-" + uuid.uuid4().hex
    tls = dict(VECDB_TLS__INTERNAL="true", VECDB_TLS__SERVER_PEM_PATH=certs.server_pem,
               VECDB_TLS__SERVER_KEY_PATH=certs.server_key, VECDB_TLS__CA_PEM_PATH=certs.ca,
               VECDB_TLS__INTERNAL_SERVER_NAME="localhost")
    env = {"VECDB_SECURITY__CLUSTER_SECRET": secret, **tls}
    storage = dict(remote_storage(), session_ttl=2)
    coord_port, qn_port, proxy_port = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(spawn_vecdb(storage, tmp_path / "coord", "coord", "--port", str(coord_port), env=env))
        procs.append(spawn_vecdb(storage, tmp_path / "qn", "querynode", "--port", str(qn_port), env=env))
        procs.append(spawn_vecdb(storage, tmp_path / "dn", "datanode", "--port", "0", env=env))
        procs.append(spawn_vecdb(storage, tmp_path / "proxy", "proxy", "--port", str(proxy_port), env=env))
        c = MilvusClient(uri=f"http://127.0.0.1:{proxy_port}")  # the Milvus port: tls.mode 0, plain
        c.create_collection("docs", dimension=4, metric_type="L2", consistency_level="Strong")
        vecs = np.random.default_rng(0).random((100, 4), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(100)])
        c.flush("docs")
        assert c.search("docs", data=[vecs[42]], limit=1)[0][0]["id"] == 42
        assert c.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 100
        c.close()

        request = coord_pb2.AllocRequest(count=1)
        with pytest.raises(grpc.RpcError) as err:  # plain text, even with the credential
            _raw(f"127.0.0.1:{coord_port}", "/vecdb.internal.Coord/AllocTimestamp", request,
                 [(SECRET_KEY, _credential(secret))])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        rogue = InternalTls(TlsSettings(internal=True, server_pem_path=str(certs.rogue_client_pem),
                                        server_key_path=str(certs.rogue_client_key), ca_pem_path=str(certs.ca),
                                        internal_server_name="localhost"))
        with pytest.raises(errors.ServiceUnavailable):  # a certificate the roles' CA did not sign
            Client(f"127.0.0.1:{coord_port}", "coord", timeout=3, secret=secret, tls=rogue).invoke(
                "AllocTimestamp", request)
        good = InternalTls(TlsSettings(internal=True, server_pem_path=str(certs.client_pem),
                                       server_key_path=str(certs.client_key), ca_pem_path=str(certs.ca),
                                       internal_server_name="localhost"))
        coord = Client(f"127.0.0.1:{coord_port}", "coord", secret=secret, tls=good)
        try:
            assert coord.invoke("AllocTimestamp", request).ts > 0
            with pytest.raises(errors.InternalError, match="cluster credential"):  # TLS, but no secret
                Client(f"127.0.0.1:{coord_port}", "coord", secret="", tls=good).invoke("AllocTimestamp", request)
        finally:
            coord.close()
    finally:
        stop_processes(procs)


def test_rotated_internal_certificates_reach_new_connections_without_a_restart(tmp_path):
    """tls.internal follows its files as the Milvus port does: after a rotation (certificate, key and CA
    written over them) new connections are served with the new set and a caller of the old CA is refused,
    an open connection goes on, and the process's own new channels present the new certificate."""
    import os
    import shutil

    from tests.e2e._certs import Certs, make_certs
    from vecdb.config import TlsSettings
    from vecdb.rpc import serve
    from vecdb.rpc.transport import InternalTls

    old, new = make_certs(tmp_path / "old"), make_certs(tmp_path / "new")
    live = tmp_path / "live"
    live.mkdir()

    def install(certs: Certs) -> None:
        for source, name in ((certs.server_pem, "server.pem"), (certs.server_key, "server.key"), (certs.ca, "ca.pem")):
            shutil.copy(source, live / (name + ".tmp"))
            os.replace(live / (name + ".tmp"), live / name)

    def tls_of(pem, key, ca) -> InternalTls:
        return InternalTls(TlsSettings(internal=True, server_pem_path=str(pem), server_key_path=str(key),
                                       ca_pem_path=str(ca), internal_server_name="localhost"))

    install(old)
    own = tls_of(live / "server.pem", live / "server.key", live / "ca.pem")
    server, port = serve("coord", _Alloc(), secret="s", tls=own)
    address, request = f"127.0.0.1:{port}", coord_pb2.AllocRequest(count=1)
    opened = Client(address, "coord", secret="s", tls=tls_of(old.client_pem, old.client_key, old.ca))
    try:
        assert opened.invoke("AllocID", request).id == 7
        install(new)
        fresh = Client(address, "coord", secret="s", tls=tls_of(new.client_pem, new.client_key, new.ca))
        assert fresh.invoke("AllocID", request).id == 7
        fresh.close()
        stale = Client(address, "coord", secret="s", timeout=3, tls=tls_of(old.client_pem, old.client_key, old.ca))
        with pytest.raises(errors.ServiceUnavailable):  # neither signed by the CA served now, nor trusting it
            stale.invoke("AllocID", request)
        stale.close()
        assert opened.invoke("AllocID", request).id == 7  # the connection made before goes on
        mine = Client(address, "coord", secret="s", tls=own)  # the process's own calls: the new set
        assert mine.invoke("AllocID", request).id == 7
        mine.close()
    finally:
        opened.close()
        server.stop(0)

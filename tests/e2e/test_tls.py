"""TLS on the Milvus API port and the HTTP port, through pymilvus, as Milvus's tlsMode 1 and 2.

Certificates are made here (``tests/e2e/_certs.py``). One-way TLS: pymilvus with ``secure=True``,
``server_pem_path`` and ``server_name`` reads and writes; a plain-text client cannot connect.
Mutual TLS: a client with a certificate signed by the server's CA connects (with authentication
on too: then it also needs its user and password); one without a certificate, or with one from
another CA, is refused in the handshake. The HTTP port (/healthz, /metrics) is TLS alike. The
``vecdb standalone`` flags set it all up; a bad setting stops the start with a clear error. The
other pymilvus (2.6, under ``make test``; the suite runs 3.0) connects and is refused the same.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pymilvus
import pytest
from pymilvus import MilvusClient, MilvusException

from tests.conftest import free_port, server_settings, start_vecdb
from tests.e2e._certs import Certs, make_certs

DIM = 4


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _start(data_dir, certs: Certs, mode: int, auth: bool = False):
    from vecdb.standalone import Standalone

    settings = server_settings(data_dir)
    settings.http.port = free_port()
    settings.tls.mode = mode
    settings.tls.server_pem_path, settings.tls.server_key_path = str(certs.server_pem), str(certs.server_key)
    settings.tls.ca_pem_path = str(certs.ca)
    settings.security.authorization_enabled = auth
    return Standalone(settings).start()


@pytest.fixture(scope="module")
def one_way(tmp_path_factory, certs):
    node = _start(tmp_path_factory.mktemp("tls1"), certs, 1)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def mutual(tmp_path_factory, certs):
    node = _start(tmp_path_factory.mktemp("tls2"), certs, 2, auth=True)
    yield node
    node.stop()


def _workload(c: MilvusClient, name: str) -> None:
    """Create, insert, search and query: the data goes both ways over the connection."""
    c.create_collection(name, dimension=DIM, metric_type="L2", consistency_level="Strong")
    vecs = np.random.default_rng(1).random((50, DIM), dtype=np.float32)
    c.insert(name, [{"id": i, "vector": vecs[i]} for i in range(50)])
    assert c.search(name, data=[vecs[7]], limit=1)[0][0]["id"] == 7
    assert c.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 50


def _refused(uri: str, **kwargs) -> MilvusException:
    with pytest.raises(MilvusException) as err:
        MilvusClient(uri=uri, timeout=3, dedicated=True, **kwargs)
    assert "Fail connecting to server" in err.value.message
    return err.value


def test_one_way_tls_serves_pymilvus_with_the_servers_certificate(one_way, certs):
    uri = f"https://127.0.0.1:{one_way.port}"
    # server_pem_path: the certificate to trust (the CA's here); server_name: a name in the certificate
    c = MilvusClient(uri=uri, server_pem_path=str(certs.ca), server_name="localhost", dedicated=True)
    try:
        _workload(c, "tls_one_way")
    finally:
        c.close()
    # the same with the http:// scheme and secure=True, and trusting the server's own certificate
    c = MilvusClient(uri=f"http://127.0.0.1:{one_way.port}", secure=True, server_pem_path=str(certs.server_pem),
                     server_name="localhost", dedicated=True)
    try:
        assert "tls_one_way" in c.list_collections()
    finally:
        c.close()


def test_one_way_tls_refuses_plain_text_and_untrusted_certificates(one_way, certs):
    _refused(f"http://127.0.0.1:{one_way.port}")
    # the client does not trust the server's certificate (another CA's): refused by the client
    _refused(f"https://127.0.0.1:{one_way.port}", server_pem_path=str(certs.rogue_client_pem),
             server_name="localhost")
    # a name that is not in the certificate
    _refused(f"https://127.0.0.1:{one_way.port}", server_pem_path=str(certs.ca), server_name="elsewhere.example")


def test_mutual_tls_with_auth_needs_the_client_certificate_and_the_password(mutual, certs):
    uri = f"https://127.0.0.1:{mutual.port}"
    with_cert = dict(ca_pem_path=str(certs.ca), client_pem_path=str(certs.client_pem),
                     client_key_path=str(certs.client_key), server_name="localhost")
    c = MilvusClient(uri=uri, user="root", password="Milvus", dedicated=True, **with_cert)
    try:
        _workload(c, "tls_mutual")
    finally:
        c.close()
    # a certificate but a wrong password, or none: authentication still refuses
    _refused(uri, user="root", password="wrong-password", **with_cert)
    _refused(uri, **with_cert)
    # the right password, but no client certificate (one-way TLS from the client's side)
    _refused(uri, user="root", password="Milvus", server_pem_path=str(certs.ca), server_name="localhost")
    # a client certificate from a CA the server does not trust
    _refused(uri, user="root", password="Milvus", ca_pem_path=str(certs.ca),
             client_pem_path=str(certs.rogue_client_pem), client_key_path=str(certs.rogue_client_key),
             server_name="localhost")
    # plain text
    _refused(f"http://127.0.0.1:{mutual.port}", user="root", password="Milvus")


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5, context=context) as reply:
        return reply.status, reply.read().decode()


def _client_context(certs: Certs, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert:
        ctx.load_cert_chain(str(certs.client_pem), str(certs.client_key))
    return ctx


def test_http_port_is_tls_too(one_way, mutual, certs):
    # one-way: https with the CA answers, plain http gets no answer
    status, text = _get(f"https://localhost:{one_way.settings.http.port}/healthz", _client_context(certs, False))
    assert (status, text) == (200, "OK")
    status, text = _get(f"https://localhost:{one_way.settings.http.port}/metrics", _client_context(certs, False))
    assert status == 200 and "vecdb_node_info" in text
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(f"http://localhost:{one_way.settings.http.port}/healthz")
    # mutual: only with a client certificate
    status, _ = _get(f"https://localhost:{mutual.settings.http.port}/healthz", _client_context(certs, True))
    assert status == 200
    with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
        _get(f"https://localhost:{mutual.settings.http.port}/healthz", _client_context(certs, False))
    # the server still answers after the refused handshakes
    assert _get(f"https://localhost:{mutual.settings.http.port}/healthz", _client_context(certs, True))[0] == 200


def test_standalone_command_line_flags_turn_on_mutual_tls(tmp_path, certs):
    port, http_port = free_port(), free_port()
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", str(http_port), "--tls-mode", "2",
                       "--tls-cert", str(certs.server_pem), "--tls-key", str(certs.server_key),
                       "--tls-ca", str(certs.ca), data_dir=tmp_path / "data")
    try:
        c = MilvusClient(uri=f"https://localhost:{port}", ca_pem_path=str(certs.ca),
                         client_pem_path=str(certs.client_pem), client_key_path=str(certs.client_key), dedicated=True)
        try:
            _workload(c, "tls_cli")
        finally:
            c.close()
        _refused(f"https://localhost:{port}", server_pem_path=str(certs.ca))
        assert _get(f"https://localhost:{http_port}/healthz", _client_context(certs, True))[0] == 200
    finally:
        proc.stop()


def test_bad_tls_settings_stop_the_start_with_a_clear_error(tmp_path, certs):
    from vecdb.security.tls import TlsConfigError
    from vecdb.standalone import Standalone

    cases = [
        (dict(mode=1), "tls.server_pem_path is required"),
        (dict(mode=1, server_pem_path=str(certs.server_pem), server_key_path=str(tmp_path / "missing.key")),
         "tls.server_key_path: cannot read"),
        # a key that is not the certificate's
        (dict(mode=1, server_pem_path=str(certs.server_pem), server_key_path=str(certs.client_key)),
         "not a certificate and its key"),
        (dict(mode=2, server_pem_path=str(certs.server_pem), server_key_path=str(certs.server_key)),
         "tls.ca_pem_path is required"),
    ]
    for i, (tls, message) in enumerate(cases):
        settings = server_settings(tmp_path / f"d{i}")
        for key, value in tls.items():
            setattr(settings.tls, key, value)
        node = Standalone(settings)
        try:
            with pytest.raises(TlsConfigError, match=message) as err:
                node.start()
            assert "PRIVATE KEY" not in str(err.value)
        finally:
            node.stop()


CLIENT_PYTHON = os.environ.get("VECDB_CLIENT_PYTHON", "")  # the other pymilvus (2.6), see test_compat_newest_client
NEWEST_CLIENT = r'''
import json, sys
import pymilvus
from pymilvus import MilvusClient, MilvusException

p = json.loads(sys.stdin.read())
out = {"version": pymilvus.__version__}


def connects(uri, **kw):
    try:
        c = MilvusClient(uri=uri, timeout=5, dedicated=True, **kw)
    except MilvusException:
        return False
    try:
        c.list_collections()
        return True
    finally:
        c.close()


mutual = dict(ca_pem_path=p["ca"], client_pem_path=p["client_pem"], client_key_path=p["client_key"],
              server_name="localhost", user="root", password="Milvus")
out["one_way"] = connects("https://127.0.0.1:%d" % p["one_way"], server_pem_path=p["ca"], server_name="localhost")
out["one_way_plain"] = connects("http://127.0.0.1:%d" % p["one_way"])
out["mutual"] = connects("https://127.0.0.1:%d" % p["mutual"], **mutual)
out["mutual_without_certificate"] = connects("https://127.0.0.1:%d" % p["mutual"], server_pem_path=p["ca"],
                                             server_name="localhost", user="root", password="Milvus")
print("RESULT " + json.dumps(out))
'''


@pytest.mark.skipif(not CLIENT_PYTHON, reason="VECDB_CLIENT_PYTHON is not set: no virtualenv of the other pymilvus "
                                              "(run through `make test`, which creates it)")
def test_newest_pymilvus_connects_over_tls_the_same(one_way, mutual, certs):
    payload = {"one_way": one_way.port, "mutual": mutual.port, "ca": str(certs.ca),
               "client_pem": str(certs.client_pem), "client_key": str(certs.client_key)}
    proc = subprocess.run([CLIENT_PYTHON, "-c", NEWEST_CLIENT], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    assert out["version"] != pymilvus.__version__, out["version"]  # the other client (Makefile: OTHER_PYMILVUS)
    assert out == {"version": out["version"], "one_way": True, "one_way_plain": False, "mutual": True,
                   "mutual_without_certificate": False}


def test_a_bad_setting_on_the_command_line_exits_2_with_its_message(tmp_path, certs):
    tls = start_vecdb("standalone", "--port", "0", "--http-port", "0", "--tls-mode", "2", "--tls-cert",
                      str(certs.server_pem), "--tls-key", str(certs.server_key), data_dir=tmp_path / "s", ready=None)
    secret = start_vecdb("querynode", "--port", "0", "--cluster-secret-file", str(tmp_path / "missing"),
                         data_dir=tmp_path / "q", ready=None)
    assert tls.wait(60) == 2 and secret.wait(60) == 2
    assert tls.output().strip().endswith("vecdb standalone: tls.ca_pem_path is required for TLS (tls.mode 1 or 2, "
                                         "tls.internal)"), tls.output()
    assert "vecdb querynode: security.cluster_secret_file: cannot read " in secret.output()
    assert "Traceback" not in tls.output() + secret.output()


def test_rotated_certificate_files_serve_new_connections(tmp_path):
    """New certificate, key and CA written over the files (as cert-manager or a rotation script does) serve
    the next connections on both ports without a restart; open connections go on; a half-written set (a
    certificate without its key) keeps the previous one in use."""
    import shutil

    from vecdb.standalone import Standalone

    old, new = make_certs(tmp_path / "old"), make_certs(tmp_path / "new")
    live = tmp_path / "live"
    live.mkdir()

    def install(certs: Certs, *names: str) -> None:
        for name in names:  # each file written beside, then renamed over: a reader never sees half a file
            source = {"server.pem": certs.server_pem, "server.key": certs.server_key, "ca.pem": certs.ca}[name]
            shutil.copy(source, live / (name + ".tmp"))
            os.replace(live / (name + ".tmp"), live / name)

    install(old, "server.pem", "server.key", "ca.pem")
    settings = server_settings(tmp_path / "data")
    settings.http.port = free_port()
    settings.tls.mode = 2
    settings.tls.server_pem_path, settings.tls.server_key_path = str(live / "server.pem"), str(live / "server.key")
    settings.tls.ca_pem_path = str(live / "ca.pem")
    node = Standalone(settings).start()
    uri, health = f"https://127.0.0.1:{node.port}", f"https://localhost:{settings.http.port}/healthz"

    def client_of(certs: Certs) -> dict:
        return dict(ca_pem_path=str(certs.ca), client_pem_path=str(certs.client_pem),
                    client_key_path=str(certs.client_key), server_name="localhost")

    try:
        opened = MilvusClient(uri=uri, dedicated=True, **client_of(old))
        opened.create_collection("rotated", dimension=DIM)
        assert _get(health, _client_context(old, True))[0] == 200

        install(new, "server.pem", "server.key", "ca.pem")
        fresh = MilvusClient(uri=uri, dedicated=True, **client_of(new))
        assert fresh.list_collections() == ["rotated"]
        fresh.close()
        _refused(uri, **client_of(old))  # the old CA neither signs the new server certificate nor is trusted
        assert opened.list_collections() == ["rotated"]  # the connection made before goes on
        assert _get(health, _client_context(new, True))[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            _get(health, _client_context(old, True))

        install(old, "server.pem")  # half a rotation: the old certificate beside the new key
        again = MilvusClient(uri=uri, dedicated=True, **client_of(new))  # the new set still serves
        assert again.list_collections() == ["rotated"]
        again.close()
        assert _get(health, _client_context(new, True))[0] == 200
        opened.close()
    finally:
        node.stop()

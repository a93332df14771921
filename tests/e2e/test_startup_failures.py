"""The known reasons a server cannot start, each said in one line (``vecdb.startup``).

A standalone serves; a second one on its data directory, one on its gRPC port and one on its HTTP
port each exit 1 at once with one ``vecdb: ...`` line on stderr naming what failed, no traceback, and
the first one still answers. The cluster roles share the start-up code: a query node on a port in
use (its internal gRPC) and a proxy on an HTTP port in use fail the same way. With ``--workers`` the parent
asks for the Milvus port once before it starts any worker (they bind it with SO_REUSEPORT, which another
server's SO_REUSEPORT socket would not refuse): one line, whoever holds the port. An IPv6 wildcard host
(``::``, ``[::]``) serves both ports.
"""

from __future__ import annotations

import socket
import subprocess
import urllib.request

import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, free_ports, start_vecdb, stop_processes, vecdb_command

IN_USE = "address already in use"


def _fails(*args: str, data_dir) -> str:
    """``vecdb <args> --data-dir <data_dir>`` ends (well within the timeout: nothing left running) with
    exit status 1 and one line on stderr, which is returned."""
    res = subprocess.run([*vecdb_command(*args), "--data-dir", str(data_dir)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout and " ready on " not in res.stdout, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vecdb: "), res.stderr
    return lines[0]


def test_a_second_server_on_a_held_data_dir_or_port_says_which_in_one_line(tmp_path):
    port, http = free_port(), free_port()
    first = start_vecdb("standalone", "--port", str(port), "--http-port", str(http), data_dir=tmp_path / "a")
    try:
        line = _fails("standalone", "--port", str(free_port()), "--http-port", str(free_port()),
                      data_dir=tmp_path / "a")
        assert line == f"vecdb: data directory {tmp_path / 'a'} is in use by another vecdb process"
        line = _fails("standalone", "--port", str(port), "--http-port", str(free_port()), data_dir=tmp_path / "b")
        assert line == f"vecdb: cannot listen on 127.0.0.1:{port} (gRPC): {IN_USE}"
        line = _fails("standalone", "--port", str(free_port()), "--http-port", str(http), data_dir=tmp_path / "c")
        assert line == f"vecdb: cannot listen on 127.0.0.1:{http} (HTTP: REST, /metrics, /healthz, /webui): {IN_USE}"
        # the cluster roles: a query node's internal gRPC port, a proxy's HTTP port
        line = _fails("querynode", "--port", str(port), "--node-id", "qn-x", data_dir=tmp_path / "qn")
        assert line == f"vecdb: cannot listen on 127.0.0.1:{port} (internal gRPC, querynode): {IN_USE}"
        line = _fails("proxy", "--port", str(free_port()), "--http-port", str(http), data_dir=tmp_path / "px")
        assert line == f"vecdb: cannot listen on 127.0.0.1:{http} (HTTP: REST, /metrics, /healthz, /webui): {IN_USE}"
        # the first server was left alone
        client = MilvusClient(f"http://127.0.0.1:{port}")
        assert client.list_collections() == []
        client.close()
    finally:
        stop_processes([first])


def test_workers_on_a_port_in_use_fail_in_one_line(tmp_path):
    """``--workers 2`` on the port of a one-process standalone, and on the port of another ``--workers 2``
    standalone (another data directory: SO_REUSEPORT on both would have let the kernel split the clients
    between two databases): exit 1, one line, no worker's copy of it, no gRPC log line; the first serves on."""
    port = free_ports(1)
    expected = f"vecdb: cannot listen on 127.0.0.1:{port} (gRPC): {IN_USE}"
    first = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "one")
    try:
        assert _fails("standalone", "--port", str(port), "--http-port", "0", "--workers", "2",
                      data_dir=tmp_path / "a") == expected
        assert _fails("proxy", "--port", str(port), "--workers", "2", data_dir=tmp_path / "px") == expected
    finally:
        stop_processes([first])
    first = start_vecdb("standalone", "--port", str(port), "--http-port", "0", "--workers", "2",
                        data_dir=tmp_path / "two", timeout=120)
    try:
        assert _fails("standalone", "--port", str(port), "--http-port", "0", "--workers", "2",
                      data_dir=tmp_path / "b") == expected
        client = MilvusClient(f"http://127.0.0.1:{port}")
        client.create_collection("still", dimension=4)
        assert client.list_collections() == ["still"]
        client.close()
    finally:
        stop_processes([first])


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("host", ["::", "[::]"])
def test_an_ipv6_wildcard_host_serves_both_ports(tmp_path, host):
    port, http = free_ports(2), free_port()
    server = start_vecdb("standalone", "--host", host, "--port", str(port), "--http-port", str(http),
                         data_dir=tmp_path)
    try:
        assert f"vecdb standalone ready on [::]:{port} " in server.output()
        with urllib.request.urlopen(f"http://[::1]:{http}/healthz", timeout=10) as reply:
            assert reply.read() == b"OK"
        client = MilvusClient(f"http://127.0.0.1:{port}")  # the IPv6 wildcard takes IPv4 clients too
        client.create_collection("v6", dimension=4)
        assert client.list_collections() == ["v6"]
        client.close()
    finally:
        stop_processes([server])

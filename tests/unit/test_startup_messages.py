"""``vecdb.startup``: the known start-up failures as one line each (a port held, a data directory held)."""

from __future__ import annotations

import socket

import pytest

from vecdb import startup
from vecdb.storage.fsutil import lock_dir, unlock_dir


def test_a_port_another_socket_listens_on_is_named_with_the_reason():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(startup.StartupFailed) as err:
            startup.check_free("127.0.0.1", port, startup.GRPC)
        assert str(err.value) == f"cannot listen on 127.0.0.1:{port} (gRPC): address already in use"
        # after gRPC's bare "Failed to bind": the same reason, asked of the system
        assert str(startup.cannot_listen("127.0.0.1", port, startup.INTERNAL_GRPC)) == \
            f"cannot listen on 127.0.0.1:{port} (internal gRPC): address already in use"
    startup.check_free("127.0.0.1", port, startup.GRPC)  # closed: free again
    startup.check_free("127.0.0.1", 0, startup.GRPC)  # any free port: nothing to check


def test_a_data_directory_another_instance_holds_is_named(tmp_path):
    fd = lock_dir(str(tmp_path / "meta"), "metadata directory")
    try:
        with pytest.raises(startup.StartupFailed, match=f"^data directory {tmp_path} is in use by another vecdb "
                                                        f"process$"):
            with startup.data_dir(str(tmp_path)):
                lock_dir(str(tmp_path / "meta"), "metadata directory")
    finally:
        unlock_dir(fd)


def test_a_name_that_does_not_resolve_says_why_in_words():
    """A getaddrinfo code is no errno (``os.strerror(-2)`` is "unknown error -2"): its own text is the reason,
    and ``check_free`` says it before gRPC logs its own lines."""
    with pytest.raises(socket.gaierror) as gai:
        socket.getaddrinfo("nosuch.invalid", 80)
    failed = startup.cannot_listen("nosuch.invalid", 9091, startup.HTTP_PROBES, gai.value)
    assert str(failed).startswith("cannot listen on nosuch.invalid:9091 (HTTP: /healthz, /metrics): ")
    reason = str(failed).split(": ", 2)[-1]
    assert "unknown error" not in reason and reason == gai.value.strerror[:1].lower() + gai.value.strerror[1:]
    with pytest.raises(startup.StartupFailed, match=f"^cannot listen on nosuch.invalid:9 \\(gRPC\\): {reason}$"):
        startup.check_free("nosuch.invalid", 9, startup.GRPC)


def test_ipv6_hosts_are_bracketed_and_listened_on_as_ipv6():
    assert startup.host_port("::", 19530) == "[::]:19530"
    assert startup.host_port("[::]", 19530) == "[::]:19530"
    assert startup.host_port("::1", 5) == "[::1]:5"
    assert startup.host_port("127.0.0.1", 5) == "127.0.0.1:5" and startup.host_port("db.local", 5) == "db.local:5"
    assert startup.address_family("::") == startup.address_family("[::]") == socket.AF_INET6
    assert startup.address_family("") == startup.address_family("0.0.0.0") == socket.AF_INET
    assert startup.address_family("127.0.0.1") == socket.AF_INET


def test_a_node_id_is_said_in_use_only_when_another_process_holds_it():
    from vecdb.coord.session import register_node
    from vecdb.errors import ServiceUnavailable
    from vecdb.process import register_session
    from vecdb.storage.memory import MemoryMetaStore

    meta = MemoryMetaStore()
    holder = register_node(meta, "querynode", "qn-1", "10.0.0.9:21123", ttl=1)
    try:
        with pytest.raises(startup.StartupFailed, match=r"^node id qn-1 is in use: session/querynode/qn-1 is held "
                                                        r"by another process \(address 10.0.0.9:21123, host "):
            register_session(meta, "querynode", "qn-1", "10.0.0.1:1", ttl=1)  # waits 2 ttl + 2 s
    finally:
        holder.close()

    class Unreachable(MemoryMetaStore):
        def grant_lease(self, ttl):
            raise ServiceUnavailable("etcd is unreachable")

    with pytest.raises(ServiceUnavailable, match="^etcd is unreachable$"):  # not "in use": nobody holds it
        register_session(Unreachable(), "querynode", "qn-2", "10.0.0.1:1", ttl=1)

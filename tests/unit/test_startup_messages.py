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

"""A process starting while its metadata store is out of reach waits for it, bounded
(``vecdb.process.wait_for_metadata``): a standalone primary's worker whose first call to the primary's
storage failed on a loaded machine exited, and ended the whole ``--workers`` server (the workers chaos
hunt, .dev/wchaos, seed 11)."""

from __future__ import annotations

import threading
import time

import pytest

from vecdb.errors import IoFailed
from vecdb.process import wait_for_metadata
from vecdb.storage.backend_server import serve_backends
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.remote import RemoteMetaStore
from vecdb.storage.servers import free_port


def test_a_metadata_store_that_comes_up_late_is_waited_for(tmp_path):
    port = free_port()
    local = LocalMetaStore(str(tmp_path / "meta"))
    local.put("session/coord", b'{"address": "127.0.0.1:1"}')
    started: list = []

    def serve_later():
        time.sleep(1.5)
        started.append(serve_backends(local, None, port=port)[0])

    late = threading.Thread(target=serve_later)
    late.start()
    client = RemoteMetaStore(f"vecdb://127.0.0.1:{port}", timeout=2)
    try:
        with pytest.raises(IoFailed):  # a plain call does not wait
            client.get("session/coord")
        t0 = time.monotonic()
        wait_for_metadata(client, budget=20)
        assert time.monotonic() - t0 >= 0.5  # it did wait, until the server answered
        assert client.get("session/coord") == b'{"address": "127.0.0.1:1"}'
    finally:
        late.join()
        client.close()
        for server in started:
            server.stop(0)
        local.close()


def test_a_metadata_store_that_never_answers_is_an_error_after_the_budget():
    client = RemoteMetaStore(f"vecdb://127.0.0.1:{free_port()}", timeout=1)
    try:
        t0 = time.monotonic()
        with pytest.raises(IoFailed):
            wait_for_metadata(client, budget=1.5)
        assert 1.4 <= time.monotonic() - t0 < 10
    finally:
        client.close()

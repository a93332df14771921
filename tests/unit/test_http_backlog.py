"""The HTTP port's listen backlog is ``vecdb.http.BACKLOG``, not socketserver's 5: with 5, 200 REST clients
connecting at once on 2 cores saw connections reset and 1 s stalls (dropped SYNs retried). Checked with the
accept loop stopped, so every connection waits in the backlog: 64 all get in. The CDC service's API too."""

from __future__ import annotations

import socket

from tests.conftest import free_port
from vecdb import http


def _sixty_four_connect(port: int, server) -> None:
    server.shutdown()  # no more accepts; the socket still listens
    conns = []
    try:
        for _ in range(64):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))  # a dropped SYN: timeout
        assert len(conns) == 64 <= http.BACKLOG
    finally:
        for c in conns:
            c.close()
        server.server_close()


def test_connections_beyond_five_wait_in_the_backlog():
    port = free_port()
    _sixty_four_connect(port, http.start_http("127.0.0.1", port, lambda: (True, "OK"), "standalone", "standalone"))


def test_the_cdc_api_too():
    from vecdb.cdc.server import CdcService, serve
    from vecdb.storage.memory import MemoryMetaStore

    port = free_port()
    service = CdcService(MemoryMetaStore())
    try:
        _sixty_four_connect(port, serve(service, "127.0.0.1", port))
    finally:
        service.stop()

"""The HTTP port reads a POST's body only up to ``MAX_BODY_BYTES`` (the Milvus API port's message limit):
a larger ``Content-Length`` or chunked total is refused 413 before its bytes are read, and a length that
is no number 400. Before, the handler read what ``Content-Length`` said into one buffer: 100 GB announced
and two bytes sent was a MemoryError traceback and a dropped connection; a few GB, that much memory held."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import free_port
from vecdb import http


class Recorder:
    """The REST side of the HTTP port: records each body it is handed."""

    def __init__(self):
        self.bodies: list[bytes] = []

    def handle_bytes(self, path, body, headers):
        self.bodies.append(body)
        return 200, b'{"code":0}'

    def handle_get(self, path, headers):
        return 404, b"", {}


@pytest.fixture
def port_and_api():
    api, port = Recorder(), free_port()
    server = http.start_http("127.0.0.1", port, lambda: (True, "OK"), "standalone", "standalone", rest=lambda: api)
    yield port, api
    server.shutdown()
    server.server_close()


def _exchange(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /v2/vectordb/collections/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}\r\n".encode()
                  + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply.split(b"\r\n\r\n", 1)[1]


def test_an_announced_body_over_the_limit_is_refused_unread(port_and_api):
    port, api = port_and_api
    status, body = _exchange(port, f"Content-Length: {100 * 10**9}\r\n")
    assert status == 413
    reply = json.loads(body)
    assert reply["code"] == 1102 and f"{100 * 10**9} bytes exceeds the limit of {http.MAX_BODY_BYTES}" \
        in reply["message"]
    status, _ = _exchange(port, f"Content-Length: {http.MAX_BODY_BYTES + 1}\r\n")
    assert status == 413
    assert api.bodies == []


def test_a_chunked_body_over_the_limit_is_refused_at_the_chunk_that_passes_it(port_and_api):
    port, api = port_and_api
    status, body = _exchange(port, "Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n%x\r\n" % (http.MAX_BODY_BYTES,))
    assert status == 413 and json.loads(body)["code"] == 1102
    assert api.bodies == []


@pytest.mark.parametrize("head, said", [("Content-Length: abc\r\n", b"invalid Content-Length 'abc'"),
                                        ("Content-Length: -1\r\n", b"invalid Content-Length '-1'"),
                                        ("Transfer-Encoding: chunked\r\n", b"malformed chunked encoding")])
def test_a_length_that_is_no_number_is_400(port_and_api, head, said):
    port, api = port_and_api
    status, body = _exchange(port, head, b"-5\r\n{}\r\n0\r\n\r\n" if "chunked" in head else b"{}")
    assert (status, body) == (400, said)
    assert api.bodies == []


def test_bodies_within_the_limit_are_read_whole(port_and_api):
    port, api = port_and_api
    assert _exchange(port, "Content-Length: 2\r\n", b"{}") == (200, b'{"code":0}')
    assert _exchange(port, "Transfer-Encoding: chunked\r\n", b"1\r\n{\r\n1;x=y\r\n}\r\n0\r\n\r\n")[0] == 200
    assert api.bodies == [b"{}", b"{}"]

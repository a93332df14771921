"""Shared fixtures: a real vecdb standalone server driven by the real pymilvus client."""

from __future__ import annotations

import socket
import uuid

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_standalone(data_dir: str, port: int | None = None):
    from vecdb.config import Settings
    from vecdb.standalone import Standalone

    settings = Settings()
    settings.storage.data_dir = str(data_dir)
    settings.proxy.port = port or free_port()
    settings.http.port = 0
    return Standalone(settings).start()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    node = start_standalone(tmp_path_factory.mktemp("vecdb-data"))
    yield node
    node.stop()


@pytest.fixture(scope="session")
def uri(server) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def client(uri):
    from pymilvus import MilvusClient

    c = MilvusClient(uri=uri)
    yield c
    c.close()


@pytest.fixture
def name(client):
    """A fresh collection name, dropped after the test."""
    n = "c_" + uuid.uuid4().hex[:12]
    yield n
    if client.has_collection(n):
        client.drop_collection(n)

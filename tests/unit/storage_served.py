"""The embedded stores served in this process (``backend_server.serve_backends``) and a
``vecdb://`` client of them: the "remote" kind of the storage conformance harnesses. Closing the
client also stops the server and closes the served store, as a restart of the primary would."""

from __future__ import annotations

from vecdb.storage.backend_server import BackendServer, serve_backends
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.remote import RemoteLog, RemoteMetaStore
from vecdb.storage.wal import WalLog


class ServedMetaStore(RemoteMetaStore):
    """A client of a ``LocalMetaStore`` served on a port of its own."""

    def __init__(self, path: str, compact_bytes: int = 4 << 20, **kw):
        self.local = LocalMetaStore(path, compact_bytes, **kw)
        self.server: BackendServer
        self.server, port = serve_backends(self.local, None)
        self.url = f"vecdb://127.0.0.1:{port}"
        super().__init__(self.url)

    def client(self) -> RemoteMetaStore:
        """Another client of the same served store."""
        return RemoteMetaStore(self.url)

    def close(self) -> None:
        super().close()
        self.server.stop(0)
        self.local.close()


class ServedLog(RemoteLog):
    """A client of a ``WalLog`` served on a port of its own."""

    def __init__(self, path: str, segment_bytes: int = 64 << 20):
        self.local = WalLog(path, segment_bytes)
        self.server: BackendServer
        self.server, port = serve_backends(None, self.local)
        self.url = f"vecdb://127.0.0.1:{port}"
        super().__init__(self.url)

    def close(self) -> None:
        super().close()
        self.server.stop(0)
        self.local.close()

"""TLS on the Milvus API port and the HTTP port, from ``TlsSettings`` (Milvus's ``tlsMode``).

- mode 0: plain text (the default, as Milvus).
- mode 1: one-way TLS: the server presents ``server_pem_path`` / ``server_key_path``; pymilvus
  connects with ``secure=True, server_pem_path=<the server's certificate or its CA>,
  server_name=<a name in the certificate>``.
- mode 2: mutual TLS: clients must also present a certificate signed by ``ca_pem_path``
  (pymilvus: ``secure=True, client_pem_path, client_key_path, ca_pem_path, server_name``).

A plain-text client to a TLS port, or a client without a certificate under mode 2, fails its
handshake: it never reaches a handler. The files are read (and checked: they parse, the key
matches the certificate) at start; a bad setting is a ``TlsConfigError`` naming the setting and
the file, never the key's contents.

Rotation: before each new connection's handshake the files' modification times are looked at
(``CertificateFiles``: three ``stat`` calls); once they changed and the new set is valid, new
connections get the new certificate, key and CA, and the connections already open keep theirs. A
set that is not valid yet (a certificate written before its key) keeps the previous one in use,
with one warning, until the files change again.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path

import grpc

from vecdb.config import SettingError, TlsSettings

log = logging.getLogger(__name__)


class TlsConfigError(SettingError):
    """A TLS setting that cannot be used (missing, unreadable or mismatched files)."""


def _read(path: str, setting: str) -> bytes:
    if not path:
        raise TlsConfigError(f"tls.{setting} is required for TLS (tls.mode 1 or 2, tls.internal)")
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TlsConfigError(f"tls.{setting}: cannot read {path}: {e.strerror}") from None


def enabled(tls: TlsSettings | None) -> bool:
    return tls is not None and tls.mode > 0


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """A server-side context for ``tls`` (mode 1 or 2); checks the files as it loads them."""
    _read(tls.server_pem_path, "server_pem_path")
    _read(tls.server_key_path, "server_key_path")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.server_pem_path, tls.server_key_path)
    except ssl.SSLError as e:
        raise TlsConfigError(f"tls.server_pem_path {tls.server_pem_path} and tls.server_key_path "
                             f"{tls.server_key_path}: not a certificate and its key ({e.reason})") from None
    if tls.mode == 2:
        _read(tls.ca_pem_path, "ca_pem_path")
        try:
            ctx.load_verify_locations(cafile=tls.ca_pem_path)
        except ssl.SSLError as e:
            raise TlsConfigError(f"tls.ca_pem_path {tls.ca_pem_path}: not a CA certificate ({e.reason})") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class CertificateFiles:
    """The certificate, key and (mode 2) CA of ``tls`` as last loaded and checked, reloaded by
    ``refresh`` once the files changed on disk and the new set is valid (``version`` counts the
    loads). One per set of files in a process (``certificate_files``): the Milvus port and the HTTP
    port follow the same files."""

    def __init__(self, tls: TlsSettings):
        self.tls = tls
        self._paths = [tls.server_pem_path, tls.server_key_path] + ([tls.ca_pem_path] if tls.mode == 2 else [])
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.version = 0
        # (context, certificate, key, CA): replaced as one, so a reader never mixes two sets
        self.loaded: tuple[ssl.SSLContext, bytes, bytes, bytes | None] = self._load()

    def _stat(self) -> tuple:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._paths:
            try:
                st = os.stat(path)
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _load(self) -> tuple[ssl.SSLContext, bytes, bytes, bytes | None]:
        context = ssl_context(self.tls)
        ca = _read(self.tls.ca_pem_path, "ca_pem_path") if self.tls.mode == 2 else None
        return (context, _read(self.tls.server_pem_path, "server_pem_path"),
                _read(self.tls.server_key_path, "server_key_path"), ca)

    def refresh(self) -> int:
        """Reload the files if they changed since the last look and are valid; the current version."""
        stamp = self._stat()
        if stamp == self._stamp:
            return self.version
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp  # a set that fails is tried again only once the files change again
                try:
                    loaded = self._load()
                except TlsConfigError as e:
                    log.warning("the TLS files changed but cannot be used (%s); new connections keep the previous "
                                "certificate until they change again", e)
                else:
                    self.loaded = loaded
                    self.version += 1
                    log.info("TLS certificate files reloaded (%s): new connections use them", self.tls.server_pem_path)
            return self.version


_files: dict[tuple, CertificateFiles] = {}
_files_lock = threading.Lock()


def certificate_files(tls: TlsSettings) -> CertificateFiles:
    """The process's ``CertificateFiles`` for ``tls``'s files (checked now: a ``TlsConfigError`` if unusable)."""
    key = (tls.mode, tls.server_pem_path, tls.server_key_path, tls.ca_pem_path if tls.mode == 2 else "")
    with _files_lock:
        files = _files.get(key)
        if files is None:
            files = _files[key] = CertificateFiles(tls)
        else:
            files.refresh()
        return files


def server_credentials(tls: TlsSettings | None) -> grpc.ServerCredentials | None:
    """The gRPC server credentials for ``tls``, following the files (``CertificateFiles``); None for
    mode 0 (plain text)."""
    if not enabled(tls):
        return None
    assert tls is not None
    files = certificate_files(tls)  # the files exist, parse and match: a clear error here, not grpc's at bind time

    def configuration():
        _, cert, key, ca = files.loaded
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    applied = files.version

    def fetch():  # grpc asks before each new connection's handshake; None keeps the current one
        nonlocal applied
        try:
            version = files.refresh()
            if version == applied:
                return None
            applied = version
            return configuration()
        except Exception:  # noqa: BLE001 - never fail a handshake over the reload itself
            log.exception("reloading the TLS files failed; keeping the current certificate")
            return None

    return grpc.dynamic_ssl_server_credentials(configuration(), fetch, require_client_authentication=tls.mode == 2)


def _mutual(tls: TlsSettings) -> TlsSettings:
    return TlsSettings(mode=2, server_pem_path=tls.server_pem_path, server_key_path=tls.server_key_path,
                       ca_pem_path=tls.ca_pem_path)


def internal_credentials(tls: TlsSettings) -> tuple[grpc.ServerCredentials, Callable[[], grpc.ChannelCredentials]]:
    """``tls.internal``: mutual TLS between a cluster's roles, each serving and calling with the one
    certificate and key and requiring its peer's to be signed by ``ca_pem_path`` (a certificate with
    an extended key usage needs both serverAuth and clientAuth). The server follows the files as the
    Milvus port does (a rotation reaches new connections without a restart); the second value gives
    the channel credentials of the files as they are now, for each new channel."""
    mutual = _mutual(tls)
    server = server_credentials(mutual)  # checks the files: present, parse, match
    assert server is not None
    files = certificate_files(mutual)
    made: list = [None, None]  # (version, credentials) last made

    def channel() -> grpc.ChannelCredentials:
        version = files.refresh()
        if made[0] != version:
            _, cert, key, ca = files.loaded
            made[:] = [version, grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                             certificate_chain=cert)]
        return made[1]

    return server, channel


def add_port(server: grpc.Server, address: str, tls: TlsSettings | None) -> int:
    """``server.add_secure_port`` with ``tls``'s credentials, or ``add_insecure_port`` under mode 0."""
    credentials = server_credentials(tls)
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


class TlsHTTPServer(ThreadingHTTPServer):
    """An HTTP server whose connections are TLS. The handshake runs in the connection's own thread
    (a client that connects and says nothing holds up only itself); a failed one (plain HTTP, no
    client certificate under mode 2) closes the connection without a log line."""

    daemon_threads = True

    def __init__(self, address, handler, files: CertificateFiles):
        self.files = files
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        assert isinstance(request, socket.socket)
        request.settimeout(30)
        self.files.refresh()
        try:
            conn = self.files.loaded[0].wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()  # wrap_socket took over the connection: closing ``request`` would not close it

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away mid-request: no report
            super().handle_error(request, client_address)

"""Open the three storage backends a node runs on, from its settings.

``storage.log``: ``wal`` (files under the data dir) or ``nats://host:port[,nats://...]``
(JetStream). ``storage.meta``: ``local`` or ``etcd://host:port``. ``storage.objects``:
``local`` or ``s3://bucket[/prefix]`` (endpoint and credentials from ``storage.s3_*`` or
boto3's usual environment variables; a remote store caches the files it maps under
``<data dir>/cache``). ``storage.namespace`` keeps several vecdb deployments apart on shared
servers (stream names, etcd keys and object prefixes start with it).

``storage.meta`` / ``storage.log`` = ``vecdb://host:port``: the metadata store / the log another
process of the node serves (``vecdb.storage.backend_server.serve_backends``: a primary that opened
the embedded ``local`` store and ``wal`` log, for its worker processes; ``vecdb.storage.remote``).
The namespace is the serving process's own: these clients add no prefix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from vecdb.errors import InvalidParameter
from vecdb.storage.base import Log, MetaStore, ObjectStore


@dataclass
class Backends:
    log: Log
    meta: MetaStore
    objects: ObjectStore
    file_resources: Any = None  # the registry installed over them (vecdb.file_resources), forgotten on close

    def close(self) -> None:
        if self.file_resources is not None:
            from vecdb import file_resources

            file_resources.uninstall(self.file_resources)
        for b in (self.log, self.meta, self.objects):
            b.close()


def _namespace(storage) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", storage.namespace):
        raise InvalidParameter(f"invalid storage.namespace {storage.namespace!r}: letters, digits, '_' and '-' only")
    return storage.namespace


def open_meta(storage) -> MetaStore:
    """Just the metadata store (what the coord needs)."""
    return _open_meta(storage.meta, os.path.abspath(storage.data_dir), _namespace(storage))


def open_objects(storage) -> ObjectStore:
    """Just the object store (what the coord's garbage collection needs besides the metadata)."""
    return _open_objects(storage, os.path.abspath(storage.data_dir), _namespace(storage))


def open_log(storage, meta: MetaStore | None = None) -> Log:
    """Just the log (what a CDC task reads of its source, besides the metadata). ``meta``: the deployment's
    metadata store, for a log that appends (see ``_open_log``)."""
    return _open_log(storage, os.path.abspath(storage.data_dir), _namespace(storage), meta)


def open_backends(storage) -> Backends:
    """``storage``: a ``vecdb.config.StorageSettings``. Opens in order, closes what opened on failure."""
    root = os.path.abspath(storage.data_dir)
    ns = _namespace(storage)
    opened: list = []
    try:
        opened.append(_open_meta(storage.meta, root, ns))
        opened.append(_open_objects(storage, root, ns))
        opened.append(_open_log(storage, root, ns, opened[0]))
    except BaseException:
        for b in opened:
            b.close()
        raise
    meta, objects, log = opened
    backends = Backends(log, meta, objects)
    # the file resources this node's analyzers read (vecdb.file_resources)
    from vecdb import file_resources

    backends.file_resources = file_resources.install(meta, objects)
    return backends


def _make_data_dir(root: str) -> None:
    """The data directory, created if missing; one that cannot be (a file there, no permission, a
    read-only disk): ``StartupFailed`` saying so, which ``vecdb`` prints in one line (no traceback)."""
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        from vecdb.startup import StartupFailed

        raise StartupFailed(f"cannot use data directory {root}: {e.strerror or e}") from None


def _open_log(storage, root: str, ns: str, meta: MetaStore | None = None) -> Log:
    """With ``meta``, an append never makes a dropped collection's channel again (a JetStream stream, a WAL
    directory; ``vecdb.storage.dropped_channels``): appends that race a drop (a seal, a flush) left one for
    good."""
    url = storage.log
    dropped = None
    if meta is not None:
        from functools import partial

        from vecdb.catalog_model import channel_dropped

        dropped = partial(channel_dropped, meta)
    if url == "wal":
        from vecdb.storage.wal import WalLog

        _make_data_dir(root)
        return WalLog(os.path.join(root, "wal"), segment_bytes=storage.wal_segment_bytes,
                      reserve_bytes=storage.disk_reserve_bytes, channel_dropped=dropped)
    if url.startswith(("nats://", "tls://")):
        from vecdb.storage.jetstream_log import JetStreamLog

        return JetStreamLog(url.split(","), prefix=ns.upper().replace("-", "_"), replicas=storage.log_replicas,
                            channel_dropped=dropped)
    if url.startswith("vecdb://"):
        from vecdb.storage.remote import RemoteLog

        return RemoteLog(url)
    raise InvalidParameter(f"invalid storage.log {url!r}: 'wal', nats://host:port or vecdb://host:port")


def _open_meta(url: str, root: str, ns: str) -> MetaStore:
    if url == "local":
        from vecdb.storage.local_meta import LocalMetaStore

        _make_data_dir(root)
        return LocalMetaStore(os.path.join(root, "meta"))
    if url.startswith("etcd://"):
        from vecdb.storage.etcd_meta import EtcdMetaStore

        return EtcdMetaStore(url[len("etcd://"):], prefix=f"{ns}/")
    if url.startswith("vecdb://"):
        from vecdb.storage.remote import RemoteMetaStore

        return RemoteMetaStore(url)
    raise InvalidParameter(f"invalid storage.meta {url!r}: 'local', etcd://host:port or vecdb://host:port")


def _open_objects(storage, root: str, ns: str) -> ObjectStore:
    url = storage.objects
    if url == "local":
        from vecdb.storage.local_objects import LocalObjectStore

        _make_data_dir(root)
        # a standalone primary's worker (its metadata or log served by the primary, vecdb://) shares the primary's
        # directory: the primary removes a crash's temp files as it starts, before any worker; a worker doing so
        # as it starts again would remove the puts in progress of the primary and the other workers
        served = storage.meta.startswith("vecdb://") or storage.log.startswith("vecdb://")
        return LocalObjectStore(os.path.join(root, "objects"), reserve_bytes=storage.disk_reserve_bytes,
                                clean_temp=not served)
    if url.startswith("s3://"):
        from vecdb.storage.s3_objects import S3ObjectStore

        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise InvalidParameter(f"invalid storage.objects {url!r}: s3://bucket[/prefix]")
        prefix = "/".join(p for p in (prefix.strip("/"), ns) if p)
        return S3ObjectStore(bucket, endpoint_url=storage.s3_endpoint or None, prefix=prefix,
                             region=storage.s3_region or None, access_key=storage.s3_access_key or None,
                             secret_key=storage.s3_secret_key or None, cache_dir=os.path.join(root, "cache"))
    raise InvalidParameter(f"invalid storage.objects {url!r}: 'local' or s3://bucket[/prefix]")

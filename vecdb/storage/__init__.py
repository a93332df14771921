"""Storage backends: log, metadata, object store.

Protocols in ``base``; embedded implementations ``WalLog``,
``LocalMetaStore``, ``LocalObjectStore``; in-memory references in ``memory``.
"""

from vecdb.storage.base import Log, MetaStore, ObjectStore
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.local_objects import LocalObjectStore
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore
from vecdb.storage.wal import WalLog

__all__ = [
    "Log",
    "MetaStore",
    "ObjectStore",
    "WalLog",
    "LocalMetaStore",
    "LocalObjectStore",
    "MemoryLog",
    "MemoryMetaStore",
    "MemoryObjectStore",
]

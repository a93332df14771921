"""vecdb.storage.backends: the log alone (``open_log``, what a CDC task opens of its source through
``vecdb.cdc.replicator.open_source``) is the same log ``open_backends`` opens, with the same checks."""

from __future__ import annotations

import pytest

from vecdb.cdc.replicator import open_source
from vecdb.config import StorageSettings
from vecdb.errors import InvalidParameter
from vecdb.storage.backends import open_backends, open_log


def test_open_log_reads_what_open_backends_wrote(tmp_path):
    storage = StorageSettings(data_dir=str(tmp_path))
    backends = open_backends(storage)
    try:
        backends.meta.put("coll/1", b"{}")  # first: no log makes a channel of a collection the catalog lacks
        assert backends.log.append_batch("c1-s0", [b"a", b"b"]) == [1, 2]
    finally:
        backends.close()
    log = open_log(storage)
    try:
        assert list(log.read("c1-s0")) == [(1, b"a"), (2, b"b")]
    finally:
        log.close()
    meta, wal = open_source(storage.model_dump())  # a CDC task's source: its metadata and its log
    try:
        assert meta.get("coll/1") == b"{}" and wal.last_position("c1-s0") == 2
    finally:
        wal.close()
        meta.close()


def test_open_log_checks_the_namespace_and_the_url(tmp_path):
    with pytest.raises(InvalidParameter, match="namespace"):
        open_log(StorageSettings(data_dir=str(tmp_path), namespace="a/b"))
    with pytest.raises(InvalidParameter, match="storage.log"):
        open_log(StorageSettings(data_dir=str(tmp_path), log="kafka://x"))

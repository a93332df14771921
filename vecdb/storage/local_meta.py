"""``LocalMetaStore``: the embedded ``MetaStore``, a dict plus a journal.

Layout::

    <dir>/LOCK          flock: one process at a time
    <dir>/snapshot.db   one framed record: every (key, value) at some moment, in key order
    <dir>/journal.log   framed records with seq 1, 2, ...: one per write or txn

Every write is one journal record, fsync'd before the in-memory dict changes
and before the call returns; a txn is one record, so it is all-or-nothing.
On open the snapshot is loaded and the journal replayed; a torn journal tail
(a write cut short by a crash, never acknowledged) is cut off with a warning,
and a bad record followed by a valid one raises ``IoFailed``. Then, and
whenever the journal outgrows ``max(compact_bytes, snapshot size)``, the
state is compacted: the snapshot is written to a temp file, fsync'd and
renamed over the old one, and only then is the journal emptied. A crash
between the two replays the old journal over the new snapshot, which gives
the same state: each journal op sets its keys regardless of what was there.
A compaction that cannot write (a full disk) removes its temp file and leaves
the journal as it is, on open too: the store opens on a full disk (the torn
tail is cut first: shrinking a file needs no space) and compacts on a later write.

Revisions (``watch``): every record that changes keys carries the store's revision after it,
and so does the snapshot; a lease ending (which changes only memory: leased keys are
journaled as deleted) writes a record of just its revision. So a reopened store goes on
above every revision it handed out (unless that last record failed to write, which is
logged). The changes themselves are kept in memory only (``ChangeFeed``): a watch cannot
resume across a restart, which is moot since one process at a time opens the directory.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vecdb.errors import IoFailed, LeaseExpired
from vecdb.storage import framing
from vecdb.storage.base import MetaStoreMethods
from vecdb.storage.fsutil import datasync, fsync_dir, lock_dir, unlock_dir, write_all
from vecdb.storage.keys import check_expect, check_meta_key, check_payload, check_prefix
from vecdb.storage.leases import LeaseMethods, LeaseTable
from vecdb.storage.watch import WATCH_BACKLOG, ChangeFeed, FeedMethods

log = logging.getLogger(__name__)

_PUT, _DELETE, _DELETE_PREFIX, _REVISION = 1, 2, 3, 4  # _REVISION: the key is the revision in decimal
_OP = struct.Struct("<BI")  # op, key length
_LEN = struct.Struct("<I")

SNAPSHOT = "snapshot.db"
JOURNAL = "journal.log"


def _encode_ops(delete_prefixes: list[str], deletes: list[str], puts: dict[str, bytes]) -> bytes:
    parts: list[bytes] = []
    for op, keys in ((_DELETE_PREFIX, delete_prefixes), (_DELETE, deletes)):
        for k in keys:
            kb = k.encode("utf-8")
            parts += (_OP.pack(op, len(kb)), kb)
    for k, v in puts.items():
        kb = k.encode("utf-8")
        parts += (_OP.pack(_PUT, len(kb)), kb, _LEN.pack(len(v)), v)
    return b"".join(parts)


def _revision_op(revision: int) -> bytes:
    digits = b"%d" % revision
    return _OP.pack(_REVISION, len(digits)) + digits


def _decode_ops(buf: bytes, path: str):
    """Yield (op, key, value|None) from an encoded record payload."""
    off, n = 0, len(buf)
    try:
        while off < n:
            op, klen = _OP.unpack_from(buf, off)
            off += _OP.size
            key = buf[off : off + klen].decode("utf-8")
            off += klen
            value = None
            if op == _PUT:
                (vlen,) = _LEN.unpack_from(buf, off)
                off += _LEN.size
                value = buf[off : off + vlen]
                off += vlen
            elif op == _REVISION and not key.isdigit():
                raise ValueError(f"bad revision {key!r}")
            elif op not in (_DELETE, _DELETE_PREFIX, _REVISION):
                raise ValueError(f"unknown op {op}")
            if off > n:
                raise ValueError("record overruns its payload")
            yield op, key, value
    except (struct.error, ValueError) as e:
        raise IoFailed(f"undecodable metadata record in {path}: {e}") from e


@dataclass(frozen=True)
class StoredFiles:
    """What ``replay_files`` read: the files' sizes (0: absent), the journal's whole records and where
    its torn tail starts (None: none)."""

    snapshot_size: int
    journal_size: int
    journal_records: int
    torn_at: int | None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise IoFailed(f"cannot read {path}: {e}") from e


def replay_files(path_dir: str, apply: Callable[[Iterator[tuple[int, str, bytes | None]]], None]) -> StoredFiles:
    """Hand ``apply`` the operations of a store directory's files, in order: the snapshot's, then each
    whole record of the journal's (a torn tail, a write in flight, is left out). Takes no lock: the
    store opens with it (``LocalMetaStore._load``), ``read_keys`` (a reader beside the owner) without."""
    snap_path, jpath = os.path.join(path_dir, SNAPSHOT), os.path.join(path_dir, JOURNAL)
    snapshot = _read(snap_path)
    if snapshot is not None:
        res = framing.parse_at(snapshot, 0)
        if res is None or res[2] != len(snapshot):
            raise IoFailed(f"corrupt metadata snapshot {snap_path}")
        apply(_decode_ops(snapshot[res[1] : res[2]], snap_path))
    journal = _read(jpath) or b""
    scan = framing.scan(journal, jpath, 1)
    for _, a, b in scan.records:
        apply(_decode_ops(journal[a:b], jpath))
    return StoredFiles(len(snapshot or b""), len(journal), len(scan.records), scan.end if scan.torn else None)


def read_keys(path_dir: str) -> dict[str, bytes]:
    """The keys a store directory's files hold (``replay_files``), read without the owner's lock, for a
    read-only look (``vecdb inspect``) beside a running server. Keys put with a lease live in the
    owner's memory only: not here."""
    data: dict[str, bytes] = {}

    def apply(ops) -> None:
        for op, key, value in ops:
            if op == _PUT:
                data[key] = value
            elif op == _DELETE:
                data.pop(key, None)
            elif op == _DELETE_PREFIX:
                for k in [k for k in data if k.startswith(key)]:
                    del data[k]

    replay_files(path_dir, apply)
    return data


class LocalMetaStore(FeedMethods, LeaseMethods, MetaStoreMethods):
    """The embedded ``MetaStore`` (see module docstring). Thread-safe; one
    process per directory. Watchers read a ``ChangeFeed`` of the last ``watch_backlog`` events."""

    def __init__(self, path_dir: str, compact_bytes: int = 4 << 20, watch_backlog: int = WATCH_BACKLOG):
        self._dir = os.path.abspath(path_dir)
        self._compact_bytes = compact_bytes
        self._lock = threading.Lock()
        self._data: dict[str, bytes] = {}
        self._keys: list[str] = []  # sorted keys of _data, for prefix scans
        self._leases = LeaseTable()  # keys put with a lease are in memory only (see txn)
        self._feed = ChangeFeed(watch_backlog)
        self._stored_revision = 0  # the highest revision read from the files (see _apply)
        self._fd: int | None = None
        self._closed = False
        self._lock_fd = lock_dir(self._dir, "metadata directory")
        try:
            self._load()
        except BaseException:
            if self._fd is not None:
                os.close(self._fd)
            unlock_dir(self._lock_fd)
            raise

    # --- open / compact ---------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def _load(self) -> None:
        stored = replay_files(self._dir, self._apply)
        if stored.torn_at is not None:
            log.warning("metadata journal %s: cutting %d bytes of torn tail at offset %d",
                        self._path(JOURNAL), stored.journal_size - stored.torn_at, stored.torn_at)
        jpath = self._path(JOURNAL)
        try:
            self._fd = os.open(jpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise IoFailed(f"cannot open {jpath}: {e}") from e
        self._snapshot_size = stored.snapshot_size
        self._seq = stored.journal_records
        self._journal_size = stored.journal_size
        self._feed.restore(self._stored_revision)
        if stored.torn_at is not None:
            self._cut_journal(stored.torn_at)
        if stored.journal_size or self._snapshot_size == 0:
            try:
                self._compact()
            except IoFailed as e:  # a full disk: the journal holds everything, open on it
                log.error("%s; the journal is kept and compacted on a later write", e)

    def _cut_journal(self, size: int) -> None:
        """Cut the torn tail off, so the next record follows the last whole one (shrinking a file
        needs no free space: this works on a full disk, where the compaction may not)."""
        try:
            os.ftruncate(self._journal_fd(), size)
            datasync(self._journal_fd())
        except OSError as e:
            raise IoFailed(f"cannot cut the torn tail of {self._path(JOURNAL)}: {e}") from e
        self._journal_size = size

    def _compact(self) -> None:
        """Write the whole state as the snapshot, then empty the journal."""
        owned = self._leases.attached()  # in memory only: never in the snapshot
        # in key order: the next open's sorted-key inserts (``_apply``) are then appends; in the order the keys
        # were first put, each one moved the keys sorted after it, and an open took O(keys^2) (160,000 keys:
        # a third of the open's CPU)
        payload = _revision_op(self._feed.revision) + _encode_ops(
            [], [], {k: self._data[k] for k in self._keys if k not in owned})
        record = framing.encode(0, payload)
        tmp = self._path(SNAPSHOT + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, record)
                datasync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # a full disk: give back what the partial snapshot took
                raise
            finally:
                os.close(fd)
            os.replace(tmp, self._path(SNAPSHOT))
            fsync_dir(self._dir)
            self._snapshot_size = len(record)
            journal = self._journal_fd()
            os.ftruncate(journal, 0)
            # the next record must be seq 1 at offset 0 whatever happens next
            self._journal_size = 0
            self._seq = 0
            datasync(journal)
        except OSError as e:
            raise IoFailed(f"metadata compaction in {self._dir} failed: {e}") from e

    # --- reads --------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        check_meta_key(key)
        with self._lock:
            self._live()
            return self._data.get(key)

    def scan_revision(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        check_prefix(prefix)
        with self._lock:
            self._live()
            lo = bisect.bisect_left(self._keys, prefix)
            hi = self._prefix_end(prefix, lo)
            return [(k, self._data[k]) for k in self._keys[lo:hi]], self._feed.revision

    def _prefix_end(self, prefix: str, lo: int) -> int:
        keys, hi = self._keys, lo
        while hi < len(keys) and keys[hi].startswith(prefix):
            hi += 1
        return hi

    # --- writes -------------------------------------------------------------------

    def txn(
        self,
        puts: dict[str, bytes] | None = None,
        deletes: list[str] | None = None,
        delete_prefixes: list[str] | None = None,
        expect: dict[str, bytes | None] | None = None,
        lease: int | None = None,
    ) -> bool:
        """A put with a ``lease`` is journaled as a delete of the key: it lives in memory until
        the lease ends, and a restart (which ends every lease of this process) finds it absent."""
        puts = {check_meta_key(k): check_payload(v) for k, v in (puts or {}).items()}
        deletes = [check_meta_key(k) for k in deletes or []]
        delete_prefixes = [check_prefix(p) for p in delete_prefixes or []]
        expect = check_expect(expect)
        if lease is None:
            payload = _encode_ops(delete_prefixes, deletes, puts)
        else:
            payload = _encode_ops(delete_prefixes, deletes + list(puts), {})
        with self._lock:
            self._live()
            if any(self._data.get(k) != v for k, v in expect.items()):
                return False
            if not (puts or deletes or delete_prefixes):
                return True
            if lease is not None and not self._leases.alive(lease):
                raise LeaseExpired(f"lease {lease} expired or does not exist")
            gone = self._doomed(delete_prefixes, deletes, puts)
            if not (gone or puts):  # deletes of absent keys: no change, no revision
                return True
            self._write(_revision_op(self._feed.revision + 1) + payload)
            self._leases.detach_changed({} if lease is not None else puts, deletes, delete_prefixes)
            self._apply(_decode_ops(payload, "<txn>"))
            if lease is not None:
                self._apply((_PUT, k, v) for k, v in puts.items())
                self._leases.attach(puts, lease)
            self._feed.publish(gone, puts)
            self._maybe_compact()
            return True

    def _doomed(self, delete_prefixes: list[str], deletes: list[str], puts: dict[str, bytes]) -> list[str]:
        """Under the lock: the present keys a txn deletes and does not put again, sorted."""
        gone = {k for k in deletes if k in self._data}
        for p in delete_prefixes:
            lo = bisect.bisect_left(self._keys, p)
            gone.update(self._keys[lo : self._prefix_end(p, lo)])
        return sorted(gone.difference(puts))

    def _write(self, payload: bytes) -> None:
        """Under the lock: append one durable journal record."""
        record = framing.encode(self._seq + 1, payload)
        journal = self._journal_fd()
        try:
            write_all(journal, record)
            datasync(journal)
        except OSError as e:
            try:
                os.ftruncate(journal, self._journal_size)
            except OSError:
                pass
            raise IoFailed(f"metadata journal write failed: {e}") from e
        self._seq += 1
        self._journal_size += len(record)

    def _maybe_compact(self) -> None:
        if self._journal_size >= max(self._compact_bytes, self._snapshot_size):
            try:
                self._compact()
            except IoFailed as e:  # the changes themselves are durable; retried on the next write
                log.error("%s", e)

    def _forget(self, keys) -> None:
        """Drop the keys of an ended lease from memory (the journal has them deleted already), as
        one change whose revision is journaled."""
        gone = sorted(k for k in keys if k in self._data)
        if not gone:
            return
        try:
            self._write(_revision_op(self._feed.revision + 1))
        except IoFailed as e:  # the keys go anyway; only a restart before the next write could reuse the revision
            log.error("%s", e)
        self._apply((_DELETE, k, None) for k in gone)
        self._feed.publish(gone, {})
        self._maybe_compact()

    def _apply(self, ops) -> None:
        data, keys = self._data, self._keys
        for op, key, value in ops:
            if op == _PUT:
                if key not in data:
                    bisect.insort(keys, key)
                data[key] = value
            elif op == _DELETE:
                if data.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
            elif op == _REVISION:
                self._stored_revision = max(self._stored_revision, int(key))
            else:
                lo = bisect.bisect_left(keys, key)
                hi = self._prefix_end(key, lo)
                for k in keys[lo:hi]:
                    del data[k]
                del keys[lo:hi]

    # --- lifecycle ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise IoFailed("metadata store is closed")

    def _journal_fd(self) -> int:
        """Under the lock, once opened and until closed: the journal's file descriptor."""
        assert self._fd is not None, "the journal is open from the constructor until close"
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            finally:
                unlock_dir(self._lock_fd)

    def __enter__(self) -> LocalMetaStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

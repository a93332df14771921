"""``WalLog``: the embedded ``Log``, append-only files on local disk.

Layout::

    <root>/LOCK                                  flock: one process at a time
    <root>/<encoded channel>/<first position:020d>.wal
    <root>/.drop-<hex>/                          a channel being dropped

Channel names are encoded reversibly (``keys.encode_channel``). Each file
holds records with consecutive positions (framing in ``framing``), starting
at the position in its name; a new file starts when the active one would grow
past ``segment_bytes`` (a single larger batch still goes in one file).

Durability and group commit: a writer stamps positions and writes its records
under the channel's lock, then waits until an fsync covers them. If no fsync
is running it runs one itself (releasing the lock meanwhile); records written
while it runs are covered by the next one, so N concurrent appenders share
fsyncs instead of paying N. Readers only see records an fsync has covered
(``last_position`` likewise), so nothing read can vanish after a crash.

Recovery on open scans the last file of each channel. A torn or bad record
at the tail (no valid record after it) was never acknowledged: the file is
cut back to the last good record, with a warning. A bad record followed by a
valid one is corruption and raises ``IoFailed`` naming the file and offset.
Older files were fsync'd before the next one was created; ``read`` checks
their CRCs as it goes and raises ``IoFailed`` on damage. (After a power loss
the filesystem may persist a later page of the last, unacknowledged batch
without an earlier one; that shows up as corruption too: refusing to start is
preferred over guessing.)

A full disk: an append that would leave less than ``reserve_bytes`` free on
the disk is refused before a byte is written ("disk full", ``IoFailed``), so
the metadata store beside it keeps room; one that hits ENOSPC itself is cut
back to the last whole record and refused. Neither fails the channel: appends
work again once space is freed.

``truncate_before`` deletes whole files, never the active one, so the
position counter survives restarts. Dropping a channel renames its directory
away first, so a crash mid-drop cannot leave a channel with a lower last
position. Given ``channel_dropped``, an append never makes a dropped
collection's channel again (``vecdb.storage.dropped_channels``): the catalog is
read under the lock that ``drop_channel`` takes, and a drop deletes the catalog
record before its channels.
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import threading
import uuid
import zlib
from collections.abc import Iterator

from vecdb.errors import InvalidParameter, IoFailed
from vecdb.storage import framing
from vecdb.storage.dropped_channels import DroppedCheck, is_dropped, refused
from vecdb.storage.follow import AppendSignal, PollingFollower
from vecdb.storage.fsutil import check_free_space, datasync, fsync_dir, lock_dir, unlock_dir, write_all
from vecdb.storage.keys import (
    check_channel,
    check_expected_last,
    check_payload,
    check_position,
    check_read,
    decode_channel,
    encode_channel,
)

log = logging.getLogger(__name__)

_SUFFIX = ".wal"
_DROP_PREFIX = ".drop-"
_READ_BUFFER = 1 << 20


def _file_name(first: int) -> str:
    return f"{first:020d}{_SUFFIX}"


class _Channel:
    """State of one channel; every field is guarded by ``cond``."""

    def __init__(self, name: str, path: str):
        self.name = name
        self.dir = path
        self.cond = threading.Condition(threading.Lock())
        self.files: list[int] = []  # first positions of the files, ascending
        self.fd: int | None = None  # the active (last) file, O_APPEND
        self.size = 0  # bytes in the active file
        self.last = 0  # last written position
        self.durable = 0  # last fsync'd position (what readers see)
        self.syncing = False  # an fsync of ``fd`` is running without the lock
        self.failed: OSError | None = None  # a write/fsync failed: refuse further appends
        self.dropped = False
        self.closed = False

    def path(self, first: int) -> str:
        return os.path.join(self.dir, _file_name(first))


class WalLog:
    """The embedded ``Log`` (see module docstring). Thread-safe; one process
    per ``root_dir``."""

    def __init__(self, root_dir: str, segment_bytes: int = 64 << 20, reserve_bytes: int = 0,
                 channel_dropped: DroppedCheck | None = None):
        """``reserve_bytes``: an append that would leave less free on the disk is refused ("disk full").
        ``channel_dropped(channel)``: whether the channel's collection was dropped (its channel is then not
        made again; see the module docstring). None: any channel is made."""
        self._channel_dropped = channel_dropped
        if isinstance(segment_bytes, bool) or not isinstance(segment_bytes, int) or segment_bytes <= 0:
            raise InvalidParameter(f"segment_bytes must be a positive int, got {segment_bytes!r}")
        self._root = os.path.abspath(root_dir)
        self._segment_bytes = segment_bytes
        self._reserve = reserve_bytes
        self._lock = threading.Lock()  # guards _channels/_closed; taken before any channel's cond
        self._channels: dict[str, _Channel] = {}
        self._closed = False
        self.appended = AppendSignal()  # wakes followers
        self._lock_fd = lock_dir(self._root, "WAL directory")
        try:
            self._open_channels()
        except BaseException:
            self._close_fds()
            unlock_dir(self._lock_fd)
            raise

    # --- recovery -----------------------------------------------------------

    def _open_channels(self) -> None:
        for entry in sorted(os.listdir(self._root)):
            path = os.path.join(self._root, entry)
            if entry.startswith(_DROP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                continue
            name = decode_channel(entry)
            if name is None or not os.path.isdir(path):
                continue
            ch = _Channel(name, path)
            if self._recover(ch):
                self._channels[name] = ch

    def _recover(self, ch: _Channel) -> bool:
        firsts = []
        for f in os.listdir(ch.dir):
            stem = f[: -len(_SUFFIX)]
            if f.endswith(_SUFFIX) and len(stem) == 20 and stem.isdigit():
                firsts.append(int(stem))
        if not firsts:
            try:
                os.rmdir(ch.dir)  # created, then crashed before the first record
            except OSError:
                pass
            return False
        firsts.sort()
        first = firsts[-1]
        path = ch.path(first)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            res = framing.scan(data, path, first)
            if res.torn:
                log.warning(
                    "WAL %s: cutting %d bytes of torn/invalid tail at offset %d",
                    path,
                    len(data) - res.end,
                    res.end,
                )
                os.truncate(path, res.end)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            if res.torn:
                datasync(fd)
        except OSError as e:
            raise IoFailed(f"cannot recover WAL file {path}: {e}") from e
        ch.files = firsts
        ch.fd = fd
        ch.size = res.end
        ch.last = ch.durable = first + len(res.records) - 1
        return True

    # --- appends ------------------------------------------------------------

    def append(self, channel: str, payload: bytes) -> int:
        return self.append_batch(channel, [payload])[0]

    def append_batch(self, channel: str, payloads: list[bytes], expect_last: int | None = None) -> list[int]:
        check_channel(channel)
        batch = framing.Batch([check_payload(p) for p in payloads])
        if not len(batch):
            self._check_open()
            return []
        nbytes = len(batch.buf)
        while True:
            ch = self._get_or_create(channel)
            with ch.cond:
                if ch.dropped:
                    continue  # dropped between lookup and lock: start over on a new channel
                first = self._prepare_write(ch, nbytes)
                if first is None:
                    continue
                check_expected_last(channel, first - 1, expect_last)
                self._write(ch, batch.stamp(first))
                ch.last = first + len(batch) - 1
                self._wait_durable(ch, ch.last)
            self.appended.fire(channel)
            return list(range(first, first + len(batch)))

    def _get_or_create(self, channel: str) -> _Channel:
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
            if ch is None:
                if is_dropped(self._channel_dropped, channel):
                    raise refused(channel)
                path = os.path.join(self._root, encode_channel(channel))
                try:
                    os.makedirs(path, exist_ok=True)
                    fsync_dir(self._root)
                except OSError as e:
                    raise IoFailed(f"cannot create WAL channel directory {path}: {e}") from e
                ch = self._channels[channel] = _Channel(channel, path)
            return ch

    def _prepare_write(self, ch: _Channel, nbytes: int) -> int | None:
        """Under ch.cond: roll the file if needed; return the next position,
        or None when the channel was dropped meanwhile."""
        while True:
            if ch.closed:
                raise IoFailed("WAL is closed")
            if ch.dropped:
                return None
            if ch.failed is not None:
                raise IoFailed(f"WAL channel {ch.name!r} failed earlier and refuses writes: {ch.failed}")
            need_roll = ch.fd is None or (ch.size > 0 and ch.size + nbytes > self._segment_bytes)
            if not need_roll:
                return ch.last + 1
            if ch.syncing:
                ch.cond.wait()  # the running fsync uses ch.fd; then re-check everything
                continue
            self._roll(ch)
            return ch.last + 1

    def _roll(self, ch: _Channel) -> None:
        first = ch.last + 1
        try:
            if ch.fd is not None:
                if ch.durable < ch.last:
                    datasync(ch.fd)
                    ch.durable = ch.last
                    ch.cond.notify_all()
                os.close(ch.fd)
                ch.fd = None
            fd = os.open(ch.path(first), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            try:
                fsync_dir(ch.dir)
            except OSError:
                os.close(fd)
                raise
        except OSError as e:
            ch.failed = e
            ch.cond.notify_all()
            raise IoFailed(f"cannot start WAL file {ch.path(first)}: {e}") from e
        ch.fd = fd
        ch.size = 0
        ch.files.append(first)

    def _write(self, ch: _Channel, data: bytearray) -> None:
        fd = ch.fd
        assert fd is not None, "appends go to an open channel"
        try:
            check_free_space(fd, len(data), self._reserve, f"WAL append to channel {ch.name!r}")
            write_all(fd, data)
        except OSError as e:
            try:  # keep the file a run of whole records
                os.ftruncate(fd, ch.size)
            except OSError:
                ch.failed = e
            raise IoFailed(f"WAL write to channel {ch.name!r} failed: {e}") from e
        ch.size += len(data)

    def _wait_durable(self, ch: _Channel, target: int) -> None:
        """Under ch.cond: return once an fsync covers ``target``."""
        while ch.durable < target:
            if ch.dropped:
                raise IoFailed(f"WAL channel {ch.name!r} was dropped during the append")
            if ch.failed is not None:
                raise IoFailed(f"WAL fsync of channel {ch.name!r} failed: {ch.failed}")
            if ch.closed:
                raise IoFailed("WAL was closed before the append was flushed")
            if ch.syncing:
                ch.cond.wait()
                continue
            ch.syncing = True
            upto, fd = ch.last, ch.fd
            assert fd is not None, "neither closed nor dropped: the channel has its file"
            ch.cond.release()
            err = None
            try:
                datasync(fd)
            except OSError as e:
                err = e
            finally:
                ch.cond.acquire()
                ch.syncing = False
                if err is not None:
                    ch.failed = err  # after a failed fsync the page cache can't be trusted
                else:
                    ch.durable = max(ch.durable, upto)
                ch.cond.notify_all()

    # --- reads ----------------------------------------------------------------

    def read(self, channel: str, start: int = 1, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        check_read(channel, start, end)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
        if ch is None:
            return iter(())
        with ch.cond:
            limit = ch.durable if end is None else min(end, ch.durable)
            files = list(ch.files)
        start = max(start, 1)
        if limit < start or not files:
            return iter(())
        i = max(bisect.bisect_right(files, start) - 1, 0)
        return self._read_files(ch.dir, files[i:], start, limit)

    @staticmethod
    def _read_files(dir_path: str, files: list[int], start: int, limit: int) -> Iterator[tuple[int, bytes]]:
        for idx, first in enumerate(files):
            if first > limit:
                return
            path = os.path.join(dir_path, _file_name(first))
            try:
                f = open(path, "rb", buffering=_READ_BUFFER)
            except FileNotFoundError:
                continue  # truncated (or dropped) meanwhile: skipped silently
            except OSError as e:
                raise IoFailed(f"cannot read WAL file {path}: {e}") from e
            with f:
                expected, off = first, 0
                while expected <= limit:
                    header = f.read(framing.HEADER_SIZE)
                    if len(header) < framing.HEADER_SIZE:
                        break
                    magic, length, seq, crc = framing.HEADER.unpack(header)
                    if magic != framing.MAGIC or seq != expected:
                        raise IoFailed(f"corrupt WAL record in {path} at offset {off}")
                    if seq < start:
                        f.seek(length, os.SEEK_CUR)
                    else:
                        payload = f.read(length)
                        if len(payload) != length or framing.record_crc(
                            length, seq, zlib.crc32(payload)
                        ) != crc:
                            raise IoFailed(f"corrupt WAL record in {path} at offset {off}")
                        yield seq, payload
                    off += framing.HEADER_SIZE + length
                    expected += 1
                if expected <= limit:
                    nxt = files[idx + 1] if idx + 1 < len(files) else None
                    if nxt != expected:
                        raise IoFailed(
                            f"WAL file {path} ends at position {expected - 1} (offset {off}); "
                            f"expected records up to {limit if nxt is None else nxt - 1}"
                        )

    def follow(self, channel: str, start: int = 1) -> PollingFollower:
        check_channel(channel)
        check_position(start, "start")
        self._check_open()
        return PollingFollower(self, channel, start)

    def last_position(self, channel: str) -> int:
        check_channel(channel)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
        if ch is None:
            return 0
        with ch.cond:
            return ch.durable

    # --- maintenance ------------------------------------------------------------

    def truncate_before(self, channel: str, position: int) -> None:
        check_channel(channel)
        check_position(position)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
        if ch is None:
            return
        with ch.cond:
            if ch.dropped or ch.closed:
                return
            # file k holds positions [files[k], files[k+1]); the active file stays
            n = 0
            while n + 1 < len(ch.files) and ch.files[n + 1] <= position:
                n += 1
            if n == 0:
                return
            doomed, ch.files = ch.files[:n], ch.files[n:]
            try:
                for first in doomed:  # oldest first: a crash leaves a suffix
                    try:
                        os.unlink(ch.path(first))
                    except FileNotFoundError:
                        pass
                fsync_dir(ch.dir)
            except OSError as e:
                raise IoFailed(f"cannot truncate WAL channel {ch.name!r}: {e}") from e

    def channels(self) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(self._channels)

    def drop_channel(self, channel: str) -> None:
        check_channel(channel)
        with self._lock:
            self._check_open()
            ch = self._channels.get(channel)
            if ch is None:
                return
            with ch.cond:
                while ch.syncing:
                    ch.cond.wait()
                ch.dropped = True
                ch.cond.notify_all()
                if ch.fd is not None:
                    os.close(ch.fd)
                    ch.fd = None
                del self._channels[channel]
                tomb = os.path.join(self._root, _DROP_PREFIX + uuid.uuid4().hex)
                try:
                    os.rename(ch.dir, tomb)
                    fsync_dir(self._root)
                except OSError as e:
                    raise IoFailed(f"cannot drop WAL channel {channel!r}: {e}") from e
        shutil.rmtree(tomb, ignore_errors=True)

    def close(self) -> None:
        """Flush what was written, close the files, release the directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._close_fds()
            finally:
                unlock_dir(self._lock_fd)

    def _close_fds(self) -> None:
        for ch in self._channels.values():
            with ch.cond:
                while ch.syncing:
                    ch.cond.wait()
                ch.closed = True
                if ch.fd is not None:
                    try:
                        if ch.durable < ch.last and ch.failed is None:
                            datasync(ch.fd)
                            ch.durable = ch.last
                    except OSError as e:
                        ch.failed = e
                        log.error("WAL channel %r: final fsync failed: %s", ch.name, e)
                    finally:
                        os.close(ch.fd)
                        ch.fd = None
                ch.cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise IoFailed("WAL is closed")

    def __enter__(self) -> WalLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Small durable-file helpers (POSIX) used by the embedded backends."""

from __future__ import annotations

import fcntl
import os

from vecdb.errors import DirectoryInUse, IoFailed

# fdatasync flushes file data plus the metadata needed to read it back
# (including a grown size), which is all an append or a fresh file needs.
datasync = getattr(os, "fdatasync", os.fsync)


def fsync_dir(path: str) -> None:
    """Make entries created, renamed or removed in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data) -> None:
    """os.write until every byte is written (any C-contiguous buffer)."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def check_free_space(fd: int, nbytes: int, reserve: int, what: str) -> None:
    """Refuse (IoFailed, "disk full") a write of ``nbytes`` to ``fd`` that would leave less than
    ``reserve`` bytes free on its filesystem: the log and the object store stop short of a full disk
    so the metadata journal (a restart, DDL, a flush's commit) always has room. One fstatvfs call."""
    if reserve <= 0:
        return
    st = os.fstatvfs(fd)
    if st.f_blocks == 0:  # a filesystem that reports no size (ramfs, tmpfs size=0, some FUSE): nothing to keep
        return
    free = st.f_bavail * st.f_frsize
    if free - nbytes < reserve:
        raise IoFailed(f"disk full: {what} of {nbytes} bytes refused, {free} bytes free on the data disk and "
                       f"{reserve} kept for metadata (storage.disk_reserve_bytes; No space left on device)")


def file_chunks(path: str, size: int = 1 << 20):
    """A file's bytes in ``size``-byte chunks (streams a file into ``ObjectStore.put``)."""
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def makedirs_durable(path: str) -> None:
    """os.makedirs, fsyncing the parent of every directory it creates."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
        fsync_dir(os.path.dirname(d))


def lock_dir(path: str, what: str) -> int:
    """Create ``path`` if need be and take an exclusive lock on ``path``/LOCK, for the life of the
    returned fd, so two processes never open the same store. Raises DirectoryInUse (an IoFailed)
    if held, IoFailed if the directory cannot be created."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise IoFailed(f"cannot create {what} {path}: {e}") from e
    fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryInUse(f"{what} {path} is already open (LOCK held by another process or instance)") from None
    return fd


def unlock_dir(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

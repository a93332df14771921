"""``LocalObjectStore``: the embedded ``ObjectStore``, one file per object.

Key "a/b/c" is the file ``<root>/a/b/c``, so ``local_path`` can hand it to
``np.load(mmap_mode='r')``. ``put`` writes ``.tmp-<hex>`` in the target
directory, fsyncs it, renames it over the key and fsyncs the directory: a
reader sees the old object, the new one, or none, never a part. Leftover
temp files (a crash mid-put) are never listed, and removed on open by the
directory's owner (``clean_temp``): not by a process that shares the directory
with it (a standalone primary's worker, ``vecdb.storage.backends``), whose
start would remove the puts in progress of the others. A put that
would leave less than ``reserve_bytes`` free on the disk is refused ("disk
full", ``IoFailed``) and its temp file removed, as on ENOSPC.

Filesystem limit: a key cannot also be a "directory" of other keys (S3 allows
"a" and "a/b" together; here that put raises ``InvalidParameter``).
Deleting the last object of a directory removes the empty directory.
"""

from __future__ import annotations

import os
import threading
import uuid

from vecdb.errors import InvalidParameter, IoFailed, KeyNotFound
from vecdb.storage.fsutil import check_free_space, fsync_dir, makedirs_durable, write_all
from vecdb.storage.keys import check_object_key, check_prefix, payload_parts

_TMP = ".tmp-"


class LocalObjectStore:
    """The embedded ``ObjectStore`` (see module docstring). Thread-safe."""

    def __init__(self, root_dir: str, reserve_bytes: int = 0, clean_temp: bool = True):
        """``reserve_bytes``: a put that would leave less free on the disk is refused ("disk full").
        ``clean_temp``: remove the temp files a crash left (False: another process owns the directory,
        and its temp files may be puts in progress)."""
        self._root = os.path.abspath(root_dir)
        self._reserve = reserve_bytes
        self._closed = False
        self._lock = threading.Lock()  # guards directory removal against puts in this process
        try:
            os.makedirs(self._root, exist_ok=True)
            for dirpath, _, files in os.walk(self._root) if clean_temp else ():
                for f in files:
                    if f.startswith(_TMP):
                        os.unlink(os.path.join(dirpath, f))
        except OSError as e:
            raise IoFailed(f"cannot open object store {self._root}: {e}") from e

    def _path(self, key: str) -> str:
        check_object_key(key)
        self._check_open()
        return os.path.join(self._root, *key.split("/"))

    def put(self, key: str, data) -> None:
        path = self._path(key)
        d = os.path.dirname(path)
        tmp = os.path.join(d, f"{_TMP}{uuid.uuid4().hex}")
        try:
            with self._lock:  # no empty-directory cleanup between mkdir and create
                makedirs_durable(d)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except (NotADirectoryError, FileExistsError):
            raise InvalidParameter(
                f"object key {key!r} conflicts with an existing object (a prefix of it is a key)") from None
        except OSError as e:
            raise IoFailed(f"cannot write object {key!r}: {e}") from e
        try:
            try:
                for part in payload_parts(data):
                    check_free_space(fd, part.nbytes, self._reserve, f"object {key!r}")
                    write_all(fd, part)
                os.fsync(fd)
            finally:
                os.close(fd)
            if os.path.isdir(path):
                raise InvalidParameter(f"object key {key!r} conflicts with existing keys under {key + '/'!r}")
            os.replace(tmp, path)
            fsync_dir(d)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise IoFailed(f"cannot write object {key!r}: {e}") from e
            raise

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(f"object not found: {key}") from None
        except OSError as e:
            raise IoFailed(f"cannot read object {key!r}: {e}") from e

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def local_path(self, key: str) -> str | None:
        path = self._path(key)
        if not os.path.isfile(path):
            raise KeyNotFound(f"object not found: {key}")
        return path

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        self._check_open()
        base = self._root
        if "/" in prefix:
            dirpart = prefix.rsplit("/", 1)[0]
            try:
                check_object_key(dirpart)
            except InvalidParameter:
                return []  # no valid key can start with it (and it must not escape the root)
            base = os.path.join(self._root, *dirpart.split("/"))
        keys = []
        for dirpath, _, files in os.walk(base):
            rel = os.path.relpath(dirpath, self._root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for f in files:
                key = rel + f
                if not f.startswith(_TMP) and key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        return keys

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        except OSError as e:
            raise IoFailed(f"cannot delete object {key!r}: {e}") from e
        self._after_delete({os.path.dirname(path)})

    def delete_prefix(self, prefix: str) -> None:
        dirs = set()
        for key in self.list(prefix):
            path = os.path.join(self._root, *key.split("/"))
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise IoFailed(f"cannot delete object {key!r}: {e}") from e
            dirs.add(os.path.dirname(path))
        self._after_delete(dirs)

    def _after_delete(self, dirs: set[str]) -> None:
        """fsync the directories, then remove the ones left empty (deepest first)."""
        try:
            for d in dirs:
                fsync_dir(d)
        except OSError as e:
            raise IoFailed(f"cannot sync object store directory: {e}") from e
        with self._lock:
            for d in sorted(dirs, key=len, reverse=True):
                while d != self._root and d.startswith(self._root + os.sep):
                    try:
                        os.rmdir(d)
                    except OSError:
                        break  # not empty (or already gone)
                    d = os.path.dirname(d)

    def _check_open(self) -> None:
        if self._closed:
            raise IoFailed("object store is closed")

    def close(self) -> None:
        self._closed = True

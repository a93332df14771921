"""One index, one file.

Layout::

    [FAISS index, optional, at offset 0][arrays, 64-byte aligned][JSON meta][u64 meta length][b"VECDBIX1"]

FAISS's readers stop at the end of the index and ignore what follows, so the
FAISS part can be read (and memory-mapped, IO_FLAG_MMAP | IO_FLAG_MMAP_IFC)
straight from the file. Arrays are raw C-order bytes, loaded with
``np.fromfile`` or mapped with ``np.memmap``. The file is written next to its
final name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import faiss
import numpy as np

from vecdb.errors import IoFailed

MAGIC = b"VECDBIX1"
FORMAT_VERSION = 1
_ALIGN = 64
_TAIL = struct.Struct("<Q8s")


def write_index_file(
    path: str,
    meta: dict[str, Any],
    faiss_index: Any = None,
    binary: bool = False,
    arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``meta`` (JSON-able), an optional FAISS index and named arrays to ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        if faiss_index is not None:
            (faiss.write_index_binary if binary else faiss.write_index)(faiss_index, tmp)
        else:
            open(tmp, "wb").close()
        with open(tmp, "ab") as f:
            table = _write_arrays(f, arrays or {}, {})
            _write_tail(f, {**meta, "format": FORMAT_VERSION, "faiss": None if faiss_index is None else
                            ("binary" if binary else "float"), "arrays": table})
        os.replace(tmp, path)
    except OSError as e:
        raise IoFailed(f"cannot write index file {path}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_meta(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size < _TAIL.size:
                raise IoFailed(f"{path} is not a vecdb index file")
            f.seek(size - _TAIL.size)
            length, magic = _TAIL.unpack(f.read(_TAIL.size))
            if magic != MAGIC or length > size - _TAIL.size:
                raise IoFailed(f"{path} is not a vecdb index file")
            f.seek(size - _TAIL.size - length)
            meta = json.loads(f.read(length))
    except OSError as e:
        raise IoFailed(f"cannot read index file {path}: {e}") from e
    if meta.get("format") != FORMAT_VERSION:
        raise IoFailed(f"{path}: unsupported index file format {meta.get('format')}")
    return meta


def append_to_index_file(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Add ``arrays`` and ``meta`` keys to a written index file, in place: its tail (JSON meta, length,
    magic) is cut off, the arrays are appended after the ones it has and a new tail is written. For
    a file not yet renamed into place (``ValidRowsIndex.save``): a reader must never see it half done."""
    old = read_meta(path)
    clash = (set(arrays) & set(old["arrays"])) | (set(meta) & set(old))
    if clash:
        raise ValueError(f"index file {path} already has {sorted(clash)}")
    try:
        with open(path, "r+b") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(size - _TAIL.size)
            length, _ = _TAIL.unpack(f.read(_TAIL.size))
            end = size - _TAIL.size - length
            f.truncate(end)
            f.seek(end)
            table = _write_arrays(f, arrays, dict(old["arrays"]))
            _write_tail(f, {**old, **meta, "arrays": table})
    except OSError as e:
        raise IoFailed(f"cannot write index file {path}: {e}") from e


def _write_arrays(f, arrays: dict[str, np.ndarray], table: dict[str, Any]) -> dict[str, Any]:
    """Append ``arrays`` to the file ``f`` at its position, each aligned to ``_ALIGN``; ``table`` with
    their entries (offset, dtype, shape) added."""
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        pos = f.tell()
        pad = (-pos) % _ALIGN
        f.write(b"\0" * pad)
        table[name] = {"offset": pos + pad, "dtype": a.dtype.str, "shape": list(a.shape)}
        f.write(a.data.cast("B") if a.size else b"")
    return table


def _write_tail(f, meta: dict[str, Any]) -> None:
    """The file's tail: its JSON metadata, then the metadata's length and the magic."""
    body = json.dumps(meta).encode()
    f.write(body)
    f.write(_TAIL.pack(len(body), MAGIC))


def _no_prefetch_threads(index) -> None:
    """Mapped IVF lists come back as OnDiskInvertedLists, which start 32 prefetch threads on every
    search (measured: 2.8 ms instead of 0.6 ms per nq=1 IVF_FLAT search); the page cache is the
    prefetcher we want."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError, AttributeError):
        return
    if ivf.invlists is None:  # (not seen: an IVF index owns its lists) nothing to prefetch
        return
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if hasattr(lists, "prefetch_nthread"):
        lists.prefetch_nthread = 0


def read_index_file(path: str, mmap: bool = False,
                    meta: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any, dict[str, np.ndarray]]:
    """Return (meta, FAISS index or None, arrays); with ``mmap`` nothing big is copied into RAM. ``meta``: the
    file's ``read_meta``, when the caller read it already."""
    meta = read_meta(path) if meta is None else meta
    index = None
    if meta["faiss"] is not None:
        reader = faiss.read_index_binary if meta["faiss"] == "binary" else faiss.read_index
        # IO_FLAG_MMAP_IFC maps flat codes in place; IVF inverted lists can only be
        # mapped through a plain file reader (IO_FLAG_MMAP alone), so fall back to that.
        attempts = [faiss.IO_FLAG_MMAP | faiss.IO_FLAG_MMAP_IFC, faiss.IO_FLAG_MMAP] if mmap else [0]
        for n, flags in enumerate(attempts):
            try:
                index = reader(path, flags)
                break
            except RuntimeError as e:
                if n == len(attempts) - 1:
                    raise IoFailed(f"cannot read FAISS index from {path}: {e}") from e
        if mmap:
            _no_prefetch_threads(index)
    arrays = {}
    for name, info in meta["arrays"].items():
        dtype, shape = np.dtype(info["dtype"]), tuple(info["shape"])
        count = int(np.prod(shape))
        if count == 0:
            arrays[name] = np.empty(shape, dtype=dtype)
        elif mmap:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=info["offset"], shape=shape)
        else:
            arrays[name] = np.fromfile(path, dtype=dtype, count=count, offset=info["offset"]).reshape(shape)
    return meta, index, arrays

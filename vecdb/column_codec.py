"""A compact binary form for a set of columns: used by log records and segment files.

Layout: ``b"VCOL"`` | u32 header length | JSON header | 64-byte aligned buffers.
Fixed-width columns (numbers, bools, vectors) are raw little-endian buffers and
decode with ``np.frombuffer`` (no copy). Object columns (VARCHAR, JSON, ARRAY)
are one JSON document each (``json`` is C-accelerated; no pickle, so a file from
an untrusted bucket cannot run code). Sparse vector columns (``bytes`` per row) are
two raw buffers: the non-zeros of each row (uint32) and all the rows' pairs. Ragged vector
columns (ARRAY_OF_VECTOR: a 2-D array per row) are two raw buffers too: each row's element count
(int64) and all the rows' vectors as one ``(elements, dim)`` block, which decodes to views.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from vecdb.errors import IoFailed
from vecdb.sparse import pack as sparse_pack
from vecdb.sparse import unpack as sparse_unpack

MAGIC = b"VCOL"
_ALIGN = 64


def json_default(o):
    """``json.dumps``'s ``default`` for numpy values inside object columns (arrays, scalars)."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot encode {type(o).__name__}")


def encode_columns(columns: Mapping[str, np.ndarray], n: int, extra: dict | None = None) -> bytes:
    """Encode columns of length ``n``; ``extra`` is a small JSON-able dict kept in the header."""
    parts: list = []
    cols = []
    offset = 0
    for name, arr in columns.items():
        buf: bytes | memoryview
        desc: dict[str, Any]
        if arr.dtype == object and len(arr) and isinstance(arr[0], bytes):  # sparse vectors
            nnz, blob = sparse_pack(arr)
            pad = (-(offset + len(nnz) * 4)) % 8
            buf = nnz.tobytes() + b"\0" * pad + blob
            desc = {"name": name, "kind": "sparse", "rows": len(nnz), "blob_at": len(nnz) * 4 + pad}
        elif arr.dtype == object and len(arr) and isinstance(arr[0], np.ndarray) and arr[0].ndim == 2:
            counts, block = ragged_block(arr)
            head = counts.astype("<i8").tobytes()
            buf = head + np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).tobytes()
            desc = {"name": name, "kind": "ragged", "rows": len(counts), "dtype": block.dtype.newbyteorder("<").str,
                    "dim": int(block.shape[1])}
        elif arr.dtype == object:
            elem = None
            values = arr.tolist()
            if values and isinstance(values[0], np.ndarray):
                elem = str(values[0].dtype) if values[0].dtype != object else "str"
                values = [v.tolist() for v in values]
            buf = json.dumps(values, ensure_ascii=False, default=json_default).encode()
            desc = {"name": name, "kind": "json", "elem": elem}
        else:
            a = np.ascontiguousarray(arr)
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            buf = a.data.cast("B") if a.size else b""  # (a view with a 0 in its shape cannot be cast)
            desc = {"name": name, "kind": "raw", "dtype": a.dtype.str, "shape": list(a.shape)}
        pad = (-offset) % _ALIGN
        if pad:
            parts.append(b"\0" * pad)
            offset += pad
        desc["offset"], desc["length"] = offset, len(buf)
        parts.append(buf)
        offset += len(buf)
        cols.append(desc)
    header = json.dumps({"n": n, "cols": cols, "extra": extra or {}}).encode()
    head = MAGIC + struct.pack("<I", len(header)) + header
    head += b"\0" * ((-len(head)) % _ALIGN)
    return b"".join([head, *parts])


def decode_columns(data: bytes | memoryview) -> tuple[int, dict[str, np.ndarray], dict]:
    """Return ``(n, columns, extra)``; fixed-width columns are views into ``data``."""
    mv = memoryview(data)
    if bytes(mv[:4]) != MAGIC:
        raise IoFailed("not a vecdb column block (bad magic)")
    (hlen,) = struct.unpack_from("<I", mv, 4)
    header = json.loads(bytes(mv[8 : 8 + hlen]))
    base = 8 + hlen + ((-(8 + hlen)) % _ALIGN)
    out: dict[str, np.ndarray] = {}
    for c in header["cols"]:
        raw = mv[base + c["offset"] : base + c["offset"] + c["length"]]
        if c["kind"] == "raw":
            out[c["name"]] = np.frombuffer(raw, dtype=np.dtype(c["dtype"])).reshape(c["shape"])
        elif c["kind"] == "sparse":
            at = c["blob_at"]
            nnz = np.frombuffer(raw[: c["rows"] * 4], dtype="<u4")
            out[c["name"]] = sparse_unpack(nnz, raw[at:])
        elif c["kind"] == "ragged":
            counts = np.frombuffer(raw[: c["rows"] * 8], dtype="<i8")
            block = np.frombuffer(raw[c["rows"] * 8:], dtype=np.dtype(c["dtype"])).reshape(-1, c["dim"])
            out[c["name"]] = ragged_rows(counts, block)
        else:
            values = json.loads(bytes(raw))
            elem = c.get("elem")
            if elem is not None:
                dt = object if elem == "str" else np.dtype(elem)
                values = [np.asarray(v, dtype=dt) for v in values]
            out[c["name"]] = object_array(values)
    return header["n"], out, header.get("extra", {})


def read_header(data: bytes | memoryview) -> tuple[int, dict]:
    """``(n, extra)`` of a column block from its header alone (no column is decoded)."""
    mv = memoryview(data)
    if bytes(mv[:4]) != MAGIC:
        raise IoFailed("not a vecdb column block (bad magic)")
    (hlen,) = struct.unpack_from("<I", mv, 4)
    header = json.loads(bytes(mv[8 : 8 + hlen]))
    return header["n"], header.get("extra", {})


def ragged_block(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(element count per row, all rows' elements as one block) of a column of 2-D arrays."""
    rows = col.tolist()
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    return counts, np.concatenate(rows, axis=0)


def ragged_rows(counts: np.ndarray, block: np.ndarray) -> np.ndarray:
    """The column of 2-D arrays (views into ``block``) that ``ragged_block`` split."""
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends[:-1]]
    return object_array([block[a:b] for a, b in zip(starts, ends)])


def object_array(values: list) -> np.ndarray:
    """A 1-D object array holding each value as one element (never broadcast:
    a list of equal-length lists stays a list of lists)."""
    return np.fromiter(values, dtype=object, count=len(values))

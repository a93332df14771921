"""The internal RPC message: ``b"VMSG"`` | u32 header length | JSON header | 64-byte aligned buffers.

``pack(meta, arrays)``: ``meta`` is a JSON-able dict, ``arrays`` numpy arrays of any shape.
Fixed-width arrays travel as raw little-endian bytes and come back through ``np.frombuffer``
(no copy, read-only); one-dimensional object arrays (strings, JSON values) as JSON lists.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from vecdb.errors import InvalidParameter

MAGIC = b"VMSG"
_HEAD = struct.Struct("<4sI")
_ALIGN = 64


def pack(meta: dict | None = None, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    descs, parts, offset = [], [], 0
    for name, arr in (arrays or {}).items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            buf = json.dumps(arr.tolist(), ensure_ascii=False).encode()
            descs.append({"name": name, "kind": "json", "shape": list(arr.shape), "offset": offset, "size": len(buf)})
        else:
            a = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (which would make 0-d 1-d)
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            buf = memoryview(a.reshape(-1)).cast("B") if a.size else b""
            descs.append({"name": name, "kind": "raw", "dtype": a.dtype.str, "shape": list(a.shape),
                          "offset": offset, "size": len(buf)})
        parts.append(buf)
        pad = -len(buf) % _ALIGN
        if pad:
            parts.append(b"\0" * pad)
        offset += len(buf) + pad
    header = json.dumps({"meta": meta or {}, "arrays": descs}).encode()
    head = _HEAD.pack(MAGIC, len(header)) + header
    head += b"\0" * (-len(head) % _ALIGN)
    return b"".join([head, *parts])


def unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        magic, hlen = _HEAD.unpack_from(data, 0)
        if magic != MAGIC:
            raise ValueError("not a vecdb RPC message")
        header = json.loads(bytes(data[_HEAD.size:_HEAD.size + hlen]))
        base = _HEAD.size + hlen
        base += -base % _ALIGN
        arrays = {}
        for d in header["arrays"]:
            start = base + d["offset"]
            if d["kind"] == "json":
                values = json.loads(bytes(data[start:start + d["size"]]))
                out = np.empty(len(values), dtype=object)
                out[:] = values
                arrays[d["name"]] = out.reshape(d["shape"])
            else:
                dtype = np.dtype(d["dtype"])
                count = int(np.prod(d["shape"], dtype=np.int64))
                if count == 0:
                    arrays[d["name"]] = np.empty(d["shape"], dtype)
                    continue
                arrays[d["name"]] = np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(d["shape"])
        return header["meta"], arrays
    except (ValueError, KeyError, TypeError, struct.error) as e:
        raise InvalidParameter(f"malformed internal RPC message: {e}") from e

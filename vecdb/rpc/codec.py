"""The internal RPC message: the column block of ``vecdb.columnar`` (the log's and the segment
files' format), with the call's JSON-able ``meta`` in its header.

``pack(meta, arrays)``: ``arrays`` are numpy arrays of one or more dimensions. Fixed-width
ones travel as raw little-endian bytes and come back through ``np.frombuffer`` (no copy,
read-only); one-dimensional object arrays (strings, JSON values, per-row ARRAY values) as JSON.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from vecdb.columnar import decode_columns, encode_columns
from vecdb.errors import InvalidParameter, IoFailed


def pack(meta: dict | None = None, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    return encode_columns({name: np.asarray(a) for name, a in (arrays or {}).items()}, 0, meta or {})


def unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        _, arrays, meta = decode_columns(data)
        return meta, arrays
    except (IoFailed, ValueError, KeyError, TypeError, IndexError, struct.error, json.JSONDecodeError) as e:
        raise InvalidParameter(f"malformed internal RPC message: {e}") from e

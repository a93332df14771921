"""numpy arrays as ``Column`` messages (proto/common.proto) and back.

Fixed-width arrays of any shape travel as their raw little-endian buffer and come back through
``np.frombuffer`` (read-only, no per-row work). One-dimensional object arrays (VARCHAR, JSON,
per-row ARRAY values) travel as one JSON document (a repeated string field next to a large
bytes field makes protobuf's encoder 20x slower); per-row arrays come back as arrays of their
dtype.

Two ways to write them: ``fill_column`` sets a ``Column`` field of a message being built (for
small arrays: query vectors); ``column_wire`` / ``embed`` give a message's encoded bytes as parts
to join, the raw buffers included as they are, for replies that carry many rows: protobuf would
copy each buffer three times (to bytes, into the message, into the encoding), ``b"".join`` once.
The bytes are the same protobuf encoding (fields of a message may come in any order), read with
the generated ``FromString``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import numpy as np

from vecdb.column_codec import json_default, object_array
from vecdb.errors import InvalidParameter
from vecdb.rpc.gen.common_pb2 import Column, JsonValues, NamedColumn
from vecdb.rpc.gen.querynode_pb2 import QueryReply, SearchReply

Parts = list[bytes | memoryview]


def _fixed(arr: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(arr)
    return a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a


def _json(values: list) -> tuple[bytes, str]:
    """(the JSON document of an object column's values, the dtype of its rows' arrays or "")."""
    elem = ""
    if values and isinstance(values[0], bytes):  # sparse vector rows (vecdb.sparse), as hex strings
        return json.dumps([v.hex() for v in values]).encode(), "sparse"
    if values and isinstance(values[0], np.ndarray):
        dt = values[0].dtype
        # strings: numpy's fixed width would be the first row's, so each row gets its own
        elem = "str" if dt.kind == "O" else "<U" if dt.kind == "U" else dt.str
    return json.dumps(values, ensure_ascii=False, default=json_default).encode(), elem


def fill_column(col: Column, arr: np.ndarray) -> Column:
    """Write ``arr`` into ``col`` (a field of the message being built: set in place, a message
    passed to a constructor would be copied whole)."""
    a = np.asarray(arr)
    if a.dtype != object:
        a = _fixed(a)
        col.dtype = a.dtype.str
        col.shape[:] = a.shape
        col.raw = a.tobytes()
        return col
    values = a.tolist()
    col.shape[:] = [len(values)]
    col.json.doc, col.json.elem_dtype = _json(values)
    return col


def to_column(arr: np.ndarray) -> Column:
    return fill_column(Column(), arr)


def from_column(col: Column) -> np.ndarray:
    try:
        if col.WhichOneof("values") != "json":  # raw, or unset: an empty array of the dtype
            return np.frombuffer(col.raw, dtype=np.dtype(col.dtype)).reshape(tuple(col.shape))
        values = json.loads(col.json.doc)
        elem = col.json.elem_dtype
        if elem == "sparse":
            return object_array([bytes.fromhex(v) for v in values])
        if elem:
            dt = object if elem == "str" else np.dtype(elem)
            values = [np.asarray(v, dtype=dt) for v in values]
        return object_array(values)
    except (ValueError, TypeError) as e:  # (json's errors are ValueErrors)
        raise InvalidParameter(f"malformed column in an internal RPC message: {e}") from e


def fill_named(target, columns: Mapping[str, np.ndarray]) -> None:
    """Append ``columns`` to ``target``, a repeated NamedColumn field, in their order."""
    for name, a in columns.items():
        named = target.add()
        named.name = name
        fill_column(named.column, a)


def from_named(columns: Iterable[NamedColumn]) -> dict[str, np.ndarray]:
    return {c.name: from_column(c.column) for c in columns}


# --- the encoded form, buffers not copied

def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def embed(field_number: int, parts: Parts) -> Parts:
    """``parts`` (an encoded message, or a bytes value) as the length-delimited field
    ``field_number`` of the enclosing message."""
    return [_varint(field_number << 3 | 2) + _varint(sum(_nbytes(p) for p in parts)), *parts]


def _nbytes(p: bytes | memoryview) -> int:
    return p.nbytes if isinstance(p, memoryview) else len(p)


def column_wire(arr: np.ndarray) -> Parts:
    """The encoded ``Column`` of ``arr``, as ``to_column(arr).SerializeToString()`` would give it."""
    a = np.asarray(arr)
    if a.dtype == object:
        doc, elem = _json(a.tolist())
        head = Column(shape=[len(a)]).SerializeToString()
        return [head, *embed(4, [JsonValues(elem_dtype=elem).SerializeToString(), *embed(1, [doc])])]
    a = _fixed(a)
    head = Column(dtype=a.dtype.str, shape=a.shape).SerializeToString()
    buf: bytes | memoryview = a.data.cast("B") if a.size else b""  # (a view with a 0 in its shape cannot be cast)
    return [head, *embed(3, [buf])]


def named_wire(field_number: int, columns: Mapping[str, np.ndarray]) -> Parts:
    """``columns`` as the repeated NamedColumn field ``field_number``, in their order."""
    parts: Parts = []
    for name, a in columns.items():
        parts += embed(field_number, [NamedColumn(name=name).SerializeToString(), *embed(2, column_wire(a))])
    return parts


# --- reading encoded replies: arrays as views of the received bytes

def _read_varint(buf: memoryview, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, value or start, end or -1) of each field of the message in buf[start:end]:
    a varint's value, a length-delimited field's span; fixed-width fields are skipped."""
    i = start
    while i < end:
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
            yield number, value, -1
        elif wire == 2:
            n, i = _read_varint(buf, i)
            if i + n > end:
                raise ValueError("a field runs past its message")
            yield number, i, i + n
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
    if i != end:
        raise ValueError("a field runs past its message")


def _ints(buf: memoryview, a: int, b: int) -> list[int]:
    """A repeated integer field's values: packed (a span), or one unpacked value (b == -1)."""
    if b == -1:
        return [a]
    out = []
    while a < b:
        v, a = _read_varint(buf, a)
        out.append(v)
    return out


def _column_at(buf: memoryview, start: int, end: int) -> np.ndarray:
    dtype, shape, raw, doc, elem = "", [], None, None, ""
    for number, a, b in _fields(buf, start, end):
        if number == 1:
            dtype = str(buf[a:b], "utf-8")
        elif number == 2:
            shape += _ints(buf, a, b)
        elif number == 3:
            raw, doc = buf[a:b], None
        elif number == 4:
            raw, doc = None, b""
            for n2, a2, b2 in _fields(buf, a, b):
                if n2 == 1:
                    doc = bytes(buf[a2:b2])
                elif n2 == 2:
                    elem = str(buf[a2:b2], "utf-8")
    if doc is None:
        return np.frombuffer(raw if raw is not None else b"", dtype=np.dtype(dtype)).reshape(shape)
    return from_column(Column(shape=shape, json=JsonValues(doc=doc, elem_dtype=elem)))


def _named_at(buf: memoryview, start: int, end: int) -> tuple[str, np.ndarray]:
    name, column = "", None
    for number, a, b in _fields(buf, start, end):
        if number == 1:
            name = str(buf[a:b], "utf-8")
        elif number == 2:
            column = _column_at(buf, a, b)
    if column is None:
        raise ValueError(f"column {name!r} has no values")
    return name, column


def _malformed(e: Exception) -> InvalidParameter:
    return InvalidParameter(f"malformed internal RPC reply: {type(e).__name__}: {e}")


# below this, protobuf's parser (C) and a copy of each buffer beat walking the fields in Python
_VIEW_FROM = 64 << 10


def read_search_reply(data: bytes) -> tuple[list[int], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(topks, pks, scores, columns) of an encoded SearchReply; fixed-width arrays of a large one
    are views of ``data`` (``SearchReply.FromString`` would copy each buffer twice)."""
    if len(data) < _VIEW_FROM:
        reply = SearchReply.FromString(data)
        return list(reply.topks), from_column(reply.pks), from_column(reply.scores), from_named(reply.columns)
    buf = memoryview(data)
    topks: list[int] = []
    pks = scores = np.empty(0)
    columns: dict[str, np.ndarray] = {}
    try:
        for number, a, b in _fields(buf, 0, len(buf)):
            if number == 1:
                topks += _ints(buf, a, b)
            elif number == 2:
                pks = _column_at(buf, a, b)
            elif number == 3:
                scores = _column_at(buf, a, b)
            elif number == 4:
                name, column = _named_at(buf, a, b)
                columns[name] = column
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise _malformed(e) from e
    return topks, pks, scores, columns


def read_query_reply(data: bytes) -> dict[str, np.ndarray]:
    """The columns of an encoded QueryReply, fixed-width ones of a large one as views of ``data``."""
    if len(data) < _VIEW_FROM:
        return from_named(QueryReply.FromString(data).columns)
    buf = memoryview(data)
    columns: dict[str, np.ndarray] = {}
    try:
        for number, a, b in _fields(buf, 0, len(buf)):
            if number == 1:
                name, column = _named_at(buf, a, b)
                columns[name] = column
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise _malformed(e) from e
    return columns

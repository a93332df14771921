"""How large a channel's rows since its last seal are, and when that seals it: the seal policy's size.

Milvus sizes segments in bytes (``dataCoord.segment.maxSize`` 512 MB, growing segments sealed at
``sealProportion`` of it); vecdb seals a channel once the rows written after its last seal record reach
``datanode.seal_bytes`` of row size, and at most ``datanode.seal_rows`` rows (``is_full``). So wide rows
make segments of fewer rows and narrow ones of more: 1M x 128-d float vectors become 4 segments of
about 250,000 rows (Milvus made 4 of 160k-305k), 400,000 GloVe-50d rows one; rows with 100 KB texts
segments of about 1,300 rows.

A batch's size (``batch_bytes``, ``variable_row_bytes``) is its fixed-width fields at their width from
the schema (a vector at its dimension's bytes) plus ``ROW_OVERHEAD`` a row (its timestamp and its share
of the record), and the actual bytes of what the batch holds for the rest: a string's length (VARCHAR,
TEXT, GEOMETRY; one ``map(len)`` a column), a sparse row's packed pairs (8 bytes a non-zero), an
array's or a struct array's elements (``nbytes``), a JSON value's encoded length, a null nothing. The
proxy (``vecdb.coord.sealer``: standalone, a cluster without data node processes) measures the columns
it writes, a data node (``vecdb.datanode.flusher``) the records it reads back: the same columns, the
same count. ``row_bytes`` is the schema's estimate alone (``VARIABLE_FIELD_BYTES`` a variable field):
what a batch nobody measured counts, and what import batches are sized by.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from operator import attrgetter, is_

import numpy as np
import orjson

from vecdb.schema import CollectionSchema, DataType, FieldSchema

VARIABLE_FIELD_BYTES = 64
ROW_OVERHEAD = 16
_FIXED = {DataType.BOOL: 1, DataType.INT8: 1, DataType.INT16: 2, DataType.INT32: 4, DataType.FLOAT: 4,
          DataType.INT64: 8, DataType.DOUBLE: 8, DataType.TIMESTAMPTZ: 8}
_PER_DIM = {DataType.FLOAT_VECTOR: 4.0, DataType.FLOAT16_VECTOR: 2.0, DataType.BFLOAT16_VECTOR: 2.0,
            DataType.INT8_VECTOR: 1.0, DataType.BINARY_VECTOR: 0.125}
_NBYTES = attrgetter("nbytes")


def field_bytes(f: FieldSchema) -> int:
    if f.dtype in _FIXED:
        return _FIXED[f.dtype]
    if f.dtype in _PER_DIM:
        return max(1, int(f.dim * _PER_DIM[f.dtype] + 0.5))
    return VARIABLE_FIELD_BYTES


def row_bytes(schema: CollectionSchema) -> int:
    """Estimated bytes of one row of ``schema`` (a variable-length field at ``VARIABLE_FIELD_BYTES``)."""
    return ROW_OVERHEAD + sum(field_bytes(f) for f in schema.fields)


def fixed_fields(schema: CollectionSchema) -> tuple[int, frozenset[str]]:
    """(bytes a row of the fields the schema sizes, plus ``ROW_OVERHEAD``; their names)."""
    fixed = [f for f in schema.fields if f.dtype in _FIXED or f.dtype in _PER_DIM]
    return ROW_OVERHEAD + sum(field_bytes(f) for f in fixed), frozenset(f.name for f in fixed)


def fixed_row_bytes(schema: CollectionSchema) -> int:
    """Bytes a row of the fields the schema sizes (numbers, dense vectors), ``ROW_OVERHEAD`` included:
    all of ``row_bytes`` for a schema without variable-length fields."""
    return fixed_fields(schema)[0]


def _object_sizes(col: np.ndarray) -> np.ndarray:
    """Bytes of each row of an object column (a null: 0), without a Python loop over the rows: one
    ``map(len)`` for strings (``nbytes`` for arrays, the encoded length for JSON); nulls are looked
    for only where that fails."""
    n = len(col)
    first = col[0]
    try:
        if isinstance(first, bytes):  # a sparse row's packed pairs
            return np.fromiter(map(len, col), np.int64, n)
        if isinstance(first, str):  # VARCHAR, TEXT, GEOMETRY: UTF-8 bytes (str.isascii is O(1))
            sizes = np.fromiter(map(len, col), np.int64, n)
            wide = ~np.fromiter(map(str.isascii, col), bool, n)
            if wide.any():
                sizes[wide] = np.fromiter(map(len, map(str.encode, col[wide])), np.int64, int(wide.sum()))
            return sizes
        if isinstance(first, np.ndarray):  # ARRAY, a struct array's sub-field
            if first.dtype != object:
                return np.fromiter(map(_NBYTES, col), np.int64, n)
            return np.fromiter(map(len, map(orjson.dumps, map(np.ndarray.tolist, col))), np.int64, n)
        if first is not None:  # JSON: its encoded length (orjson: C)
            return np.fromiter(map(len, map(orjson.dumps, col)), np.int64, n)
    except (TypeError, AttributeError, orjson.JSONEncodeError):
        pass  # nulls among the values, or mixed ones
    nulls = np.fromiter(map(is_, col, repeat(None)), bool, n)
    if nulls.any():
        out = np.zeros(n, np.int64)
        if not nulls.all():
            out[~nulls] = _object_sizes(col[~nulls])
        return out
    try:
        return np.fromiter(map(len, map(orjson.dumps, col)), np.int64, n)
    except (TypeError, orjson.JSONEncodeError):  # a value orjson cannot encode: the schema's estimate
        return np.full(n, VARIABLE_FIELD_BYTES, np.int64)


def variable_row_bytes(schema: CollectionSchema, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray | None:
    """Bytes of each of the ``n`` rows of ``columns`` beyond ``fixed_row_bytes``: the columns of fields the
    schema does not size, measured; None when every column is one it sizes."""
    _, fixed = fixed_fields(schema)
    out: np.ndarray | None = None
    for name, col in columns.items():
        if name in fixed or len(col) != n or not n:
            continue
        if col.dtype == object:
            sizes = _object_sizes(col)
        else:  # fixed-width after all (a validity mask, a field the cached schema lacks): its width
            sizes = np.full(n, col.nbytes // n, np.int64)
        out = sizes if out is None else out + sizes
    return out


def batch_bytes(schema: CollectionSchema, columns: Mapping[str, np.ndarray], n: int) -> int:
    """Bytes of a batch of ``n`` rows (an insert record's): ``n * fixed_row_bytes`` plus its variable-length
    values' actual sizes."""
    sizes = variable_row_bytes(schema, columns, n)
    return n * fixed_row_bytes(schema) + (int(sizes.sum()) if sizes is not None else 0)


def is_full(rows: int, nbytes: int, seal_rows: int, seal_bytes: int) -> bool:
    """Whether a channel with ``rows`` rows of ``nbytes`` bytes since its last seal record gets sealed:
    ``seal_bytes`` worth, or ``seal_rows`` rows whatever their size."""
    return rows >= seal_rows or nbytes >= seal_bytes


def seal_rows_for(schema: CollectionSchema, seal_rows: int, seal_bytes: int) -> int:
    """Rows of ``row_bytes`` each that seal a channel: ``seal_bytes`` worth, at most ``seal_rows`` (the rows
    of a schema without variable-length fields that ``is_full`` seals at)."""
    return max(1, min(seal_rows, seal_bytes // row_bytes(schema)))

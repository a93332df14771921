"""How many rows of a channel make a segment: the seal policy's size.

Milvus sizes segments in bytes (``dataCoord.segment.maxSize`` 512 MB, growing segments sealed at
``sealProportion`` of it); vecdb seals a channel once the rows written after its last seal record reach
``datanode.seal_bytes`` of estimated row size, and at most ``datanode.seal_rows`` rows. So wide rows
make segments of fewer rows and narrow ones of more: 1M x 128-d float vectors become 4 segments of
about 250,000 rows (Milvus made 4 of 160k-305k), 400,000 GloVe-50d rows one.

The estimate comes from the schema: fixed-width fields at their width, a vector at its dimension's
bytes; VARCHAR, JSON, ARRAY and sparse vectors, whose size the schema does not bound usefully, at
``VARIABLE_FIELD_BYTES``; plus ``ROW_OVERHEAD`` (the row's timestamp and its share of the record).
"""

from __future__ import annotations

from vecdb.schema import CollectionSchema, DataType, FieldSchema

VARIABLE_FIELD_BYTES = 64
ROW_OVERHEAD = 16
_FIXED = {DataType.BOOL: 1, DataType.INT8: 1, DataType.INT16: 2, DataType.INT32: 4, DataType.FLOAT: 4,
          DataType.INT64: 8, DataType.DOUBLE: 8, DataType.TIMESTAMPTZ: 8}
_PER_DIM = {DataType.FLOAT_VECTOR: 4.0, DataType.FLOAT16_VECTOR: 2.0, DataType.BFLOAT16_VECTOR: 2.0,
            DataType.INT8_VECTOR: 1.0, DataType.BINARY_VECTOR: 0.125}


def field_bytes(f: FieldSchema) -> int:
    if f.dtype in _FIXED:
        return _FIXED[f.dtype]
    if f.dtype in _PER_DIM:
        return max(1, int(f.dim * _PER_DIM[f.dtype] + 0.5))
    return VARIABLE_FIELD_BYTES


def row_bytes(schema: CollectionSchema) -> int:
    """Estimated bytes of one row of ``schema``."""
    return ROW_OVERHEAD + sum(field_bytes(f) for f in schema.fields)


def seal_rows_for(schema: CollectionSchema, seal_rows: int, seal_bytes: int) -> int:
    """Rows after a channel's last seal record that seal it: ``seal_bytes`` worth, at most ``seal_rows``."""
    return max(1, min(seal_rows, seal_bytes // row_bytes(schema)))

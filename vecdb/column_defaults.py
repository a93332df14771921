"""Column buffers in the representation documented in :mod:`vecdb.schema`, shared by the roles."""

from __future__ import annotations

import numpy as np

from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, DataType, valid_key

VALID_PREFIX = valid_key("")


def empty_column(field, n: int) -> np.ndarray:
    """An empty column buffer of the schema's column representation (see vecdb.schema)."""
    dt = field.dtype
    if dt == DataType.FLOAT_VECTOR:
        return np.empty((n, field.dim), np.float32)
    if dt == DataType.BINARY_VECTOR:
        return np.empty((n, field.dim // 8), np.uint8)
    if dt == DataType.FLOAT16_VECTOR:
        return np.empty((n, field.dim), np.float16)
    if dt == DataType.BFLOAT16_VECTOR:
        return np.empty((n, field.dim), np.uint16)
    if dt == DataType.INT8_VECTOR:
        return np.empty((n, field.dim), np.int8)
    return np.empty(n, SCALAR_DTYPES.get(dt, object))


SCALAR_DTYPES = {
    DataType.BOOL: np.bool_, DataType.INT8: np.int8, DataType.INT16: np.int16,
    DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.FLOAT: np.float32,
    DataType.DOUBLE: np.float64, DataType.TIMESTAMPTZ: np.int64,
}


def output_column(schema: CollectionSchema, name: str, n: int = 0) -> np.ndarray:
    """An empty result column ``name``: a field, or a nullable field's validity mask."""
    field = schema.field(name)
    if field is None and name.startswith(VALID_PREFIX):
        return np.empty(n, np.bool_)
    return empty_column(field, n)


def absent_column(field, count: int) -> np.ndarray:
    """The column of ``count`` rows written without ``field`` (before it was added to the schema):
    its default value in every row, else the null placeholder (0, false, "", JSON null, an empty
    array) under a validity mask of False (``absent_mask``)."""
    dt = field.dtype
    col: np.ndarray
    if dt.is_vector:  # a nullable vector added later (Milvus 3.0): the null placeholder (vector_placeholder)
        return vector_placeholder(field, count)
    if dt in SCALAR_DTYPES:
        col = np.zeros(count, SCALAR_DTYPES[dt])
    else:
        col = np.empty(count, object)
        if dt in (DataType.VARCHAR, DataType.TEXT, DataType.GEOMETRY):  # GEOMETRY: vecdb.geometry.NULL_TEXT
            col[:] = ""
        elif dt == DataType.ARRAY:
            elem = field.element_type
            col.fill(np.empty(0, object if elem == DataType.VARCHAR else SCALAR_DTYPES.get(elem, object)))
        elif dt == DataType.ARRAY_OF_VECTOR:  # a struct added later (add_collection_struct_field): no vectors
            col.fill(np.empty((0, field.dim), np.float32))
    if field.default_value is not None:
        col[:] = field.default_value
    return col


def vector_placeholder(field, count: int) -> np.ndarray:
    """``count`` rows of a nullable vector field's null placeholder: zeros (an empty row for a sparse
    vector, object ``b""``), under a validity mask of False. An index may hold them; a search masks
    them out (vecdb.querynode.executor)."""
    if field.dtype == DataType.SPARSE_FLOAT_VECTOR:
        col = np.empty(count, object)
        col[:] = b""
        return col
    out = empty_column(field, count)
    out[...] = 0
    return out


def absent_mask(field, count: int) -> np.ndarray:
    """The validity mask of ``absent_column``: every row valid when the field has a default value."""
    return np.full(count, field.default_value is not None, np.bool_)


def unknown_columns(schema: CollectionSchema, columns, field_ids: dict[str, int] | None = None) -> bool:
    """Whether a batch carries a column (or validity mask) of a field ``schema`` lacks: one added
    to the collection after ``schema`` was read (``field_ids``, the batch's {name: field id}: also
    one added under the name of a field dropped since ``schema`` was read)."""
    if field_ids and max(field_ids.values()) >= schema.next_field_id():
        return True
    return any(schema.field(k[len(VALID_PREFIX):] if k.startswith(VALID_PREFIX) else k) is None for k in columns)


def current_columns(schema: CollectionSchema, columns: dict, field_ids: dict[str, int] | None) -> dict:
    """A logged batch's columns that hold ``schema``'s fields. A batch written before a field was
    dropped (drop_collection_field) and another added under its name holds the dropped field's
    values under that name: they leave (with its validity mask), so its rows read the new field as
    rows written before it was added do (``missing_column``). ``field_ids``: the batch's {name: field
    id} when written (None: a batch of a version before batches carried them, logged before an
    upgrade: ``older_stale``)."""
    if not field_ids:
        stale = older_stale(schema, columns)
    else:
        ids = {f.name: f.field_id for f in schema.fields}
        stale = {name for name, fid in field_ids.items() if ids.get(name, fid) != fid}
    if not stale:
        return columns
    return {k: v for k, v in columns.items()
            if (k[len(VALID_PREFIX):] if k.startswith(VALID_PREFIX) else k) not in stale}


def older_stale(schema: CollectionSchema, columns: dict) -> set[str]:
    """The names in a batch without field ids (an older version's) that held a field dropped since:
    those of a nullable field the batch has no validity mask for, and those whose column is not of the
    field's kind of representation (``empty_column``: text against numbers, another vector shape). A
    nullable field's batches always carry its mask, and a field added under a dropped one's name is
    nullable (Milvus's rule), so a value
    column without one was written for the earlier, not nullable, field of that name. (A dropped
    nullable field re-added under its name with its type cannot be told apart there: taken by name.)"""
    stale = set()
    for name, col in columns.items():
        if name.startswith(VALID_PREFIX):
            continue
        f = schema.field(name)
        if f is None:
            continue
        want = empty_column(f, 0)
        if (f.nullable and VALID_PREFIX + name not in columns) or _another_kind(col.dtype, want.dtype) \
                or col.shape[1:] != want.shape[1:]:
            stale.add(name)
    return stale


def _another_kind(have: np.dtype, want: np.dtype) -> bool:
    """Values of ``have`` that cannot be the field's (``want``): text or objects against numbers, bools
    against others. Widths are not compared (an INT32 field's values may come as int64, which a segment
    casts), so only a field re-added with another kind of type tells a column apart."""
    return (have.kind in "OUS") != (want.kind in "OUS") or (have.kind == "b") != (want.kind == "b")


def missing_column(schema: CollectionSchema, name: str, count: int, columns) -> np.ndarray:
    """Column ``name`` (a field or a validity mask) of a batch of ``count`` rows that left it out:
    a field added to the schema after the batch was written reads as ``absent_column`` (its mask
    as ``absent_mask`` when the batch has no value column for it either); otherwise
    ``default_column``."""
    fname = name[len(VALID_PREFIX):] if name.startswith(VALID_PREFIX) else name
    field = schema.field(fname)
    if field is not None and (field.nullable or field.default_value is not None or field.struct_name) \
            and fname not in columns:  # a struct's sub-field: the struct was added after (no struct)
        return absent_mask(field, count) if name != fname else absent_column(field, count)
    return default_column(name, count)


def default_column(name: str, count: int) -> np.ndarray:
    """Values for a column a batch left out: the dynamic field defaults to ``{}`` per row, a validity
    mask to every row valid."""
    if name.startswith(VALID_PREFIX):
        return np.ones(count, np.bool_)
    if name == DYNAMIC_FIELD:
        col = np.empty(count, object)
        for i in range(count):
            col[i] = {}
        return col
    raise KeyError(f"missing column {name}")

"""Requests: Milvus ``FieldData`` to numpy columns (insert validation), output fields, query vectors.

Replies go the other way in :mod:`vecdb.proxy.fieldencode`.

Columns follow the representation documented in :mod:`vecdb.schema` (one numpy
array per field, vectors 2-D, VARCHAR/JSON/ARRAY as object arrays).

Insert rules (``columns_from_field_data``), matching the Milvus 2.3+ proxy:

- ``num_rows`` must be > 0 and every column must hold exactly ``num_rows`` rows.
- Every schema field must be sent, except an auto_id primary key (which must
  *not* be sent: the caller assigns ids) and the dynamic field (absent means
  ``{}`` per row). With ``partial_update`` only the primary key is required.
- The FieldData's data type and payload must match the schema; vector ``dim``
  must equal the schema dim. A FLOAT16/BFLOAT16 field also accepts float32
  ``float_vector`` data (pymilvus sends that for plain float lists) and converts.
- Float/float16/bfloat16 vectors and FLOAT/DOUBLE scalars reject NaN and +-inf
  (Milvus checks all of them since 2.4; ARRAY elements are not checked, as in Milvus).
- Float and bfloat16 vectors also reject a row whose squared L2 norm exceeds
  ``vecdb.vectors_check.MAX_SQUARED_NORM`` (1e37): finite values such as 1e20
  overflow float32 distance arithmetic and crash FAISS's k-means. Milvus has no
  such check (float16 cannot get there: its max is 65504).
- INT8/INT16 travel as int32 and must fit their range (also inside ARRAYs).
- VARCHAR ``max_length`` counts UTF-8 *bytes* (Go ``len``), as Milvus does.
- ARRAY rows: element payload must match the element type, length <= max_capacity.
- Array-of-struct fields (Milvus 2.6) come as one ``ArrayOfStruct`` FieldData holding a FieldData
  per sub-field (ARRAY, or ARRAY_OF_VECTOR: ``vectors.vector_array``, one VectorField per row);
  each sub-field is checked as a field of its own (``chunks[text]``), and every sub-field of a row
  must hold as many elements as the others. A null struct (no struct in the row) is marked on the
  sub-fields' ``valid_data`` (pymilvus 3.0) or on the ArrayOfStruct FieldData's own: taken for a
  nullable struct, refused (1100) for another.
- GEOMETRY values: WKT (or WKB) that parses, kept as normalized WKT (``vecdb.geometry``).
- JSON values: valid JSON (and so valid UTF-8), at most ``JSON_MAX_LENGTH`` bytes and
  ``JSON_MAX_DEPTH`` levels of nesting each. The dynamic
  field must hold JSON objects that use neither ``$meta`` nor a static field
  name as a key.
- Nothing is converted partially: a failure raises before any column is returned.

Vectors decode without per-row Python work: ``np.frombuffer`` over the bytes
payloads (the resulting arrays are read-only views) and ``np.array`` over the
repeated float payload (upb hands numpy a buffer; no Python floats are made).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from google.protobuf.message import DecodeError
from pymilvus.grpc_gen import common_pb2, schema_pb2

from vecdb import bm25, minhash_function, sparse, timestamptz
from vecdb.analyzer import Analyzer
from vecdb.column_codec import object_array
from vecdb.column_defaults import absent_column, vector_placeholder
from vecdb.errors import FieldNotFound, InvalidParameter
from vecdb.limits import LIMITS
from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, DataType, FieldSchema, FunctionType, valid_key
from vecdb.vectors_check import check_float_vectors

JSON_MAX_LENGTH = 65536  # Milvus common.JSONMaxLength default, bytes per JSON value
# Nesting limit of a JSON value (arrays and objects). Milvus has none of its own (Go's
# decoder stops at 10000 levels); vecdb stores rows with orjson, whose encoder gives up
# past 254 levels, and the write-ahead log and segment formats wrap a value in a few
# levels of their own. 128 leaves that margin and is far deeper than real documents.
JSON_MAX_DEPTH = 128
# orjson reads an integer outside [-2**63, 2**64) as a float: 18446744073709551616 would come back
# as 1.8446744073709552e+19. Milvus keeps the JSON text, so such an integer reads back as written.
# Only a value holding a run of 19+ digits can hold one; those are read again by ``json``, exactly.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")

_SCALAR_ATTR = {
    DataType.BOOL: "bool_data",
    DataType.INT8: "int_data",
    DataType.INT16: "int_data",
    DataType.INT32: "int_data",
    DataType.INT64: "long_data",
    DataType.FLOAT: "float_data",
    DataType.DOUBLE: "double_data",
    DataType.VARCHAR: "string_data",
    DataType.TEXT: "string_data",  # no max_length: any length the request carries (Milvus 3.0)
    DataType.TIMESTAMPTZ: "string_data",  # ISO 8601 strings (vecdb.timestamptz)
    DataType.GEOMETRY: "geometry_wkt_data",  # WKT strings (vecdb.geometry); WKB geometry_data is taken too
    DataType.JSON: "json_data",
    DataType.ARRAY: "array_data",
}
_VECTOR_ATTR = {
    DataType.FLOAT_VECTOR: "float_vector",
    DataType.BINARY_VECTOR: "binary_vector",
    DataType.FLOAT16_VECTOR: "float16_vector",
    DataType.BFLOAT16_VECTOR: "bfloat16_vector",
    DataType.INT8_VECTOR: "int8_vector",
}
# numpy dtype of fixed-width scalar columns and of ARRAY elements
_NP_DTYPE: dict[DataType, type[np.generic]] = {
    DataType.BOOL: np.bool_,
    DataType.INT8: np.int8,
    DataType.INT16: np.int16,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.FLOAT: np.float32,
    DataType.DOUBLE: np.float64,
}
# types whose packed wire encoding is their raw little-endian bytes (see merge_packed)
_PACKED_DTYPE: dict[DataType, str | type[np.generic]] = {
    DataType.FLOAT: "<f4", DataType.DOUBLE: "<f8", DataType.BOOL: np.uint8,
}
_INT_RANGE = {DataType.INT8: (-128, 127), DataType.INT16: (-32768, 32767)}
_PT = common_pb2.PlaceholderType
# field type -> {placeholder type: numpy dtype of the raw bytes}
_PLACEHOLDER_DTYPES: dict[DataType, dict[int, type[np.generic]]] = {
    DataType.FLOAT_VECTOR: {_PT.FloatVector: np.float32},
    DataType.FLOAT16_VECTOR: {_PT.Float16Vector: np.float16, _PT.FloatVector: np.float32},
    DataType.BFLOAT16_VECTOR: {_PT.BFloat16Vector: np.uint16, _PT.FloatVector: np.float32},
    DataType.BINARY_VECTOR: {_PT.BinaryVector: np.uint8},
    DataType.INT8_VECTOR: {_PT.Int8Vector: np.int8},
    DataType.SPARSE_FLOAT_VECTOR: {_PT.SparseFloatVector: np.uint8},
}
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _type_name(dtype: int) -> str:
    try:
        return schema_pb2.DataType.Name(dtype)
    except ValueError:
        return str(dtype)


def _rows_mismatch(name: str, got: int, want: int) -> InvalidParameter:
    return InvalidParameter(f"the num_rows ({got}) of field ({name}) is not equal to passed num_rows ({want})")


def _type_mismatch(field: FieldSchema, need: str, got: str | None) -> InvalidParameter:
    return InvalidParameter(
        f"{_type_name(field.dtype)} field ({field.name}) is illegal, array type mismatch: "
        f"need {need}, got {got or 'nil'}"
    )


# --------------------------------------------------------------------------
# insert: FieldData -> columns
# --------------------------------------------------------------------------
def columns_from_field_data(
    schema: CollectionSchema, fields_data, num_rows: int, *, partial_update: bool = False,
    zone: str = timestamptz.DEFAULT_ZONE,
) -> dict[str, np.ndarray]:
    """Validate and convert an insert/upsert payload into columns keyed by field name.

    The primary key column is absent when ``schema.auto_id`` (the caller assigns
    ids); a pk sent for an auto_id collection is rejected, except with
    ``partial_update`` (an upsert, which must name the rows it updates). Missing
    non-pk fields are an error unless ``partial_update``, where only the pk is
    required and missing fields are simply absent. The dynamic field (``$meta``,
    dicts) is filled with empty dicts when dynamic fields are on and none was sent
    (not under ``partial_update``). Keys come back in schema order. ``zone``: the collection's time
    zone, in which a TIMESTAMPTZ string without an offset is read.
    """
    if num_rows <= 0:
        raise InvalidParameter(f"invalid num_rows ({num_rows}): num_rows should be greater than 0")
    pk = schema.primary_field
    sent: dict[str, tuple[FieldSchema, Any]] = {}  # name -> (field, its FieldData message)
    if schema.struct_fields:
        fields_data = _with_struct_sub_fields(schema, fields_data, num_rows)
    for fd in fields_data:
        name = DYNAMIC_FIELD if fd.is_dynamic else fd.field_name
        field = schema.field(name) if name else schema.field_by_id(fd.field_id)
        if field is None:
            if name == DYNAMIC_FIELD:
                raise InvalidParameter(
                    f"without dynamic schema enabled, the field name cannot be set to {DYNAMIC_FIELD}"
                )
            raise FieldNotFound(f"field {name or fd.field_id} not exist in collection {schema.name}")
        if field.name in sent:
            raise InvalidParameter(f"duplicated field {field.name} found")
        if field.is_function_output:
            raise InvalidParameter(f"not support manually specifying the function output field {field.name}")
        sent[field.name] = (field, fd)

    if schema.auto_id and pk.name in sent and not partial_update:
        raise InvalidParameter(f"can not assign primary field data when auto id enabled {pk.name}")
    for field in schema.fields:
        if field.name in sent or field.is_dynamic or field.is_function_output:
            continue
        if (field.nullable or field.has_default) and not partial_update:
            continue  # filled below: every row null, or the default value
        if _struct_left_out(schema, field, sent) and not partial_update:
            continue  # a nullable struct (add_collection_struct_field) sent by no sub-field: no struct, below
        if field.is_primary:
            if partial_update:
                raise InvalidParameter(f"must assign pk when upsert, primary field: {pk.name}")
            if schema.auto_id:
                continue
        elif partial_update:
            continue
        raise InvalidParameter(f"fieldSchema({field.name}) has no corresponding fieldData pass in")

    static_names = frozenset(f.name for f in schema.fields if not f.is_dynamic)
    columns: dict[str, np.ndarray] = {}
    for name, (field, fd) in sent.items():
        st = schema.struct(field.struct_name) if field.struct_name else None
        if st is not None and st.nullable and (len(fd.valid_data) or getattr(fd, "struct_valid", None) is not None):
            columns[name] = _decode_null_structs(field, fd, num_rows, static_names, zone)  # null rows: no struct
            continue
        mask = _valid_mask(field, fd, num_rows)
        if fd.type and fd.type != field.dtype:
            raise InvalidParameter(
                f"the data type of field ({field.name}) is {_type_name(fd.type)}, "
                f"but the schema type is {_type_name(field.dtype)}"
            )
        if field.dtype.is_vector and mask is not None:
            columns[name] = _decode_null_vectors(field, fd, num_rows, mask)
        elif field.dtype.is_vector:
            columns[name] = _decode_vectors(field, fd, num_rows)
        elif field.dtype == DataType.ARRAY_OF_VECTOR:
            columns[name] = _decode_vector_arrays(field, fd, num_rows)
        elif mask is None:
            columns[name] = _decode_scalars(field, fd, num_rows, static_names, zone)
        else:
            columns[name] = _decode_with_nulls(field, fd, num_rows, mask, static_names, zone)
        if field.nullable or field.has_default:
            _fill_nulls(columns, field, num_rows, mask)
    for st in schema.struct_fields:
        _check_struct_lengths(st.name, [(f.sub_name, columns[f.name]) for f in schema.sub_fields(st.name)
                                        if f.name in columns])
    if not partial_update:  # fields left out: null, or their default value, in every row
        for field in schema.fields:
            if field.name not in columns and (field.nullable or field.has_default
                                              or _struct_left_out(schema, field, sent)):
                _fill_left_out(columns, field, num_rows)
    columns.update(function_output_columns(schema, columns))
    dyn = schema.dynamic_field
    if dyn is not None and dyn.name not in columns and not partial_update:
        columns[dyn.name] = _empty_dicts(num_rows)
    out = {}
    for f in schema.fields:
        if f.name in columns:
            out[f.name] = columns[f.name]
            if f.nullable:
                out[valid_key(f.name)] = columns[valid_key(f.name)]
    return out


def function_output_columns(schema: CollectionSchema, columns: dict) -> dict[str, np.ndarray]:
    """The function output columns ``columns`` let the server compute (BM25: the input text's term
    frequencies, vecdb.analyzer; MinHash: its signature); none for a function whose input is absent."""
    out = {}
    for fn in schema.functions:
        tf = (minhash_function.signature_column(schema, fn, columns) if fn.type == FunctionType.MINHASH
              else bm25.term_frequencies(schema, fn, columns))
        if tf is not None:
            out[fn.output_field_names[0]] = tf
    return out


def left_out_columns(schema: CollectionSchema, names: list[str], n: int) -> dict[str, np.ndarray]:
    """The columns (with validity masks) of ``n`` rows inserted without the fields ``names``, as an insert
    that leaves them out writes them: null or the default value, no struct for a nullable struct's
    sub-field, ``{}`` for the dynamic field. InvalidParameter naming those a row cannot go without
    (function outputs are left to ``function_output_columns``)."""
    fields = [f for f in schema.fields if f.name in names and not f.is_function_output]
    required = [f.name for f in fields if not (f.nullable or f.has_default or f.is_dynamic or _struct_left_out(
        schema, f, {}))]
    if required:
        raise InvalidParameter(f"must provide every field that is neither nullable nor has a default value; "
                               f"missing {required}")
    out: dict[str, np.ndarray] = {}
    for f in fields:
        if f.is_dynamic:
            out[f.name] = _empty_dicts(n)
        else:
            _fill_left_out(out, f, n)
    return out


def _fill_left_out(columns: dict, field: FieldSchema, n: int) -> None:
    """The column of a field ``n`` rows leave out, put in ``columns``: null, or its default value (with its
    validity mask), where it may be; else no struct (a nullable struct's sub-field)."""
    if field.nullable or field.has_default:
        columns[field.name] = null_column(field, n)
        _fill_nulls(columns, field, n, np.zeros(n, np.bool_))
    else:
        columns[field.name] = absent_column(field, n)


def _empty_dicts(n: int) -> np.ndarray:
    """The dynamic field of ``n`` rows that send none: an empty object each (each its own)."""
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = {}
    return out


class _SubFieldData:
    """A struct sub-field's FieldData under the name the schema knows it by (``chunks[text]``), with the
    rows its struct's own ``valid_data`` marks null (``struct_valid``; None when it marks none)."""

    def __init__(self, fd, name: str, struct_valid: np.ndarray | None = None):
        self._fd, self.field_name, self.struct_valid = fd, name, struct_valid

    def __getattr__(self, attr: str):
        return getattr(self._fd, attr)


def _with_struct_sub_fields(schema: CollectionSchema, fields_data, n: int) -> list:
    """``fields_data`` with each array-of-struct FieldData replaced by its sub-fields' FieldData. The
    struct FieldData's own ``valid_data`` marks rows that hold no struct: taken for a nullable struct
    (every sub-field null there), refused for another, as a null of any non-nullable field is."""
    out: list = []
    for fd in fields_data:
        st = schema.struct(fd.field_name) if not fd.is_dynamic else None
        if st is None:
            if fd.type == DataType.ARRAY_OF_STRUCT:
                raise FieldNotFound(f"field {fd.field_name} not exist in collection {schema.name}")
            out.append(fd)
            continue
        if fd.WhichOneof("field") != "struct_arrays":
            raise InvalidParameter(f"struct array field ({st.name}) is illegal, need struct_arrays data, "
                                   f"got {fd.WhichOneof('field') or 'nil'}")
        struct_valid = _struct_valid(st, fd, n)
        for sub in fd.struct_arrays.fields:
            plain = sub.field_name
            if plain.startswith(st.name + "[") and plain.endswith("]"):
                plain = plain[len(st.name) + 1:-1]
            full = f"{st.name}[{plain}]"
            if schema.field(full) is None:
                raise FieldNotFound(f"field {plain} not exist in struct array field {st.name}")
            out.append(_SubFieldData(sub, full, struct_valid))
    return out


def _struct_valid(st, fd, n: int) -> np.ndarray | None:
    """The rows an ArrayOfStruct FieldData's ``valid_data`` marks as holding a struct; None when it marks
    none null (or is empty). A null in a struct that is not nullable: InvalidParameter."""
    if not len(fd.valid_data):
        return None
    if len(fd.valid_data) != n:
        raise InvalidParameter(
            f"the length of valid_data of field({st.name}) is wrong: {len(fd.valid_data)}, num_rows: {n}")
    valid = np.array(fd.valid_data, dtype=np.bool_)
    if valid.all():
        return None
    if not st.nullable:
        raise InvalidParameter(f"field ({st.name}) is not nullable, but null values were passed")
    return valid


def _decode_null_structs(field: FieldSchema, fd, n: int, static_names: frozenset[str], zone: str) -> np.ndarray:
    """A sub-field of a nullable struct (add_collection_struct_field) sent with ``valid_data``, as
    pymilvus 3.0 sends it: a null row (no struct) holds an empty list. The values come one per row or
    one per valid row only."""
    valid = np.asarray(fd.valid_data, np.bool_) if len(fd.valid_data) else np.ones(n, np.bool_)
    if len(valid) != n:
        raise _rows_mismatch(field.name, len(valid), n)
    out = _decode_sub_field_rows(field, fd, n, valid, static_names, zone)
    struct_valid = getattr(fd, "struct_valid", None)
    if struct_valid is not None:  # the struct itself null in these rows (its FieldData's valid_data)
        out[~struct_valid] = absent_column(field, int((~struct_valid).sum()))
    return out


def _decode_sub_field_rows(field: FieldSchema, fd, n: int, valid: np.ndarray, static_names: frozenset[str],
                           zone: str) -> np.ndarray:
    vectors = field.dtype == DataType.ARRAY_OF_VECTOR
    count = len(fd.vectors.vector_array.data) if vectors else len(fd.scalars.array_data.data)
    if count not in (n, int(valid.sum())):
        raise _rows_mismatch(field.name, count, int(valid.sum()))
    out = absent_column(field, n)
    if not count:  # every row null: pymilvus sends no values at all
        return out
    got = (_decode_vector_arrays(field, fd, count) if vectors
           else _decode_scalars(field, fd, count, static_names, zone))
    at = np.flatnonzero(valid)
    for j, i in enumerate(at):
        out[i] = got[i if count == n else j]
    return out


def _struct_left_out(schema: CollectionSchema, field: FieldSchema, sent) -> bool:
    """Whether ``field`` is a sub-field of a nullable struct (added to the collection with data) that
    the request left out whole: its rows hold no struct."""
    st = schema.struct(field.struct_name) if field.struct_name else None
    return st is not None and st.nullable and not any(f.name in sent for f in schema.sub_fields(st.name))


def _check_struct_lengths(struct_name: str, cols: list[tuple[str, np.ndarray]]) -> None:
    """Every sub-field of a row holds one element per struct: as many as the others."""
    if len(cols) < 2:
        return
    first_name, first = cols[0]
    want = np.fromiter((len(v) for v in first.tolist()), np.int64, len(first))
    for name, col in cols[1:]:
        got = np.fromiter((len(v) for v in col.tolist()), np.int64, len(col))
        bad = np.flatnonzero(got != want)
        if len(bad):
            i = int(bad[0])
            raise InvalidParameter(
                f"the number of elements ({int(got[i])}) of sub-field {name} of struct array field {struct_name} "
                f"at row {i} is not equal to that of sub-field {first_name} ({int(want[i])})")


def _decode_vector_arrays(field: FieldSchema, fd, n: int) -> np.ndarray:
    """An ARRAY_OF_VECTOR sub-field: each row a ``(elements, dim)`` float32 array, at most max_capacity
    elements, every vector checked as an inserted FLOAT_VECTOR is."""
    name, dim, cap = field.name, field.dim, field.max_capacity
    va = fd.vectors.vector_array if fd.WhichOneof("field") == "vectors" else None
    if va is None or fd.vectors.WhichOneof("data") != "vector_array":
        raise _type_mismatch(field, "vector_array", fd.vectors.WhichOneof("data") if va is not None else None)
    if va.dim and va.dim != dim:
        raise InvalidParameter(f"the dim ({va.dim}) of field data({name}) is not equal to schema dim ({dim})")
    if va.element_type and va.element_type != field.element_type:
        raise InvalidParameter(f"the element type ({_type_name(va.element_type)}) of field data({name}) is not "
                               f"equal to schema element type ({_type_name(field.element_type)})")
    if len(va.data) != n:
        raise _rows_mismatch(name, len(va.data), n)
    rows = []
    for i, row in enumerate(va.data):
        kind = row.WhichOneof("data")
        if kind not in (None, "float_vector"):
            raise InvalidParameter(f"array of vector field ({name}) is illegal, need float_vector, got {kind} "
                                   f"at row {i}")
        flat = np.array(row.float_vector.data, dtype=np.float32)
        if flat.size % dim:
            raise InvalidParameter(
                f"the length ({flat.size}) of float data of field ({name}) at row {i} should divide the dim ({dim})")
        if flat.size // dim > cap:
            raise InvalidParameter(
                f"the length ({flat.size // dim}) of {i}th array of field ({name}) exceeds max capacity ({cap})")
        rows.append(flat.reshape(-1, dim))
    check_float_vectors(np.concatenate(rows) if rows else np.empty((0, dim), np.float32), name)
    return object_array(rows)  # (never broadcast: rows of one shape stay one array each)


def _valid_mask(field: FieldSchema, fd, n: int) -> np.ndarray | None:
    """The rows ``fd.valid_data`` marks as holding a value; None when it marks none null (or is empty).
    Nulls are for nullable fields and fields with a default value (Milvus 2.5)."""
    valid = fd.valid_data
    if not len(valid):
        return None
    if len(valid) != n:
        raise InvalidParameter(
            f"the length of valid_data of field({field.name}) is wrong: {len(valid)}, num_rows: {n}")
    mask = np.array(valid, dtype=np.bool_)
    if mask.all():
        return None
    if not (field.nullable or field.has_default):
        raise InvalidParameter(f"field ({field.name}) is not nullable, but null values were passed")
    return mask


def null_column(field: FieldSchema, n: int) -> np.ndarray:
    """A column of ``n`` null rows: the placeholder a null row holds under its validity mask (0, false,
    "", JSON null, an empty array), so that every column keeps one type."""
    dt = field.dtype
    if dt.is_vector:  # a nullable vector (Milvus 3.0): zeros, an empty sparse row
        return vector_placeholder(field, n)
    if dt in _NP_DTYPE:
        return np.zeros(n, _NP_DTYPE[dt])
    if dt == DataType.TIMESTAMPTZ:  # int64 microseconds
        return np.zeros(n, np.int64)
    out = np.empty(n, dtype=object)
    if dt in (DataType.VARCHAR, DataType.TEXT, DataType.GEOMETRY):  # GEOMETRY: vecdb.geometry.NULL_TEXT
        out[:] = ""
    elif dt == DataType.ARRAY:
        empty = np.empty(0, dtype=object if field.element_type == DataType.VARCHAR else _NP_DTYPE[field.element_type])
        out.fill(empty)  # one shared read-only placeholder
    return out  # JSON: None


def _decode_with_nulls(field: FieldSchema, fd, n: int, mask: np.ndarray, static_names: frozenset[str],
                       zone: str) -> np.ndarray:
    """A column with null rows. pymilvus sends only the valid rows' values (as Milvus expects); a
    payload of all ``n`` rows (placeholders at the null ones) is taken too."""
    attr = _SCALAR_ATTR[field.dtype]
    kind = fd.scalars.WhichOneof("data") if fd.WhichOneof("field") == "scalars" else None
    if kind != attr and not (field.dtype == DataType.GEOMETRY and kind == "geometry_data"):
        raise _type_mismatch(field, attr, kind)
    sent = len(getattr(fd.scalars, kind).data)
    valid = int(np.count_nonzero(mask))
    if sent == n and field.dtype in (DataType.GEOMETRY, DataType.ARRAY):  # the null rows' placeholders
        col = null_column(field, n)  # need not be WKT, nor hold an array's data
        rows = [v for v, ok in zip(getattr(fd.scalars, kind).data, mask.tolist()) if ok]
        geometry = field.dtype == DataType.GEOMETRY
        col[mask] = (_decode_geometry(field, rows, kind) if geometry
                     else _decode_arrays(field, rows, np.flatnonzero(mask).tolist()))
        return col
    if sent == n:
        return _decode_scalars(field, fd, n, static_names, zone)
    if sent != valid:
        raise InvalidParameter(
            f"the num_rows ({sent}) of field ({field.name}) is not equal to the number of valid rows "
            f"({valid}) nor to passed num_rows ({n})")
    values = _decode_scalars(field, fd, valid, static_names, zone)
    col = null_column(field, n)
    col[mask] = values
    return col


def _decode_null_vectors(field: FieldSchema, fd, n: int, mask: np.ndarray) -> np.ndarray:
    """A nullable vector column with null rows (Milvus 3.0). pymilvus sends the valid rows' vectors
    only (a compact payload, as Milvus expects: none at all when every row is null); a payload of all
    ``n`` rows (placeholders at the null ones) is taken too. A null row holds ``null_column``'s
    placeholder."""
    valid = int(np.count_nonzero(mask))
    col = null_column(field, n)
    sent = _vector_rows_sent(field, fd)
    if not valid and sent == 0:
        return col
    if sent == n and n != valid:
        values = _decode_vectors(field, fd, n)[mask]
    else:
        values = _decode_vectors(field, fd, valid)
    col[mask] = values
    return col


def _vector_rows_sent(field: FieldSchema, fd) -> int:
    """How many rows a vector FieldData holds (-1 when that cannot be told: its decoding then says why)."""
    if fd.WhichOneof("field") != "vectors":
        return 0
    kind = fd.vectors.WhichOneof("data")
    if kind is None:
        return 0
    if kind == "sparse_float_vector":
        return len(fd.vectors.sparse_float_vector.contents)
    dim = field.dim
    if kind == "float_vector":
        return len(fd.vectors.float_vector.data) // dim if dim else -1
    raw = getattr(fd.vectors, kind)
    width = {DataType.BINARY_VECTOR: dim // 8, DataType.INT8_VECTOR: dim}.get(field.dtype, dim * 2)
    return len(raw) // width if width else -1


def _fill_nulls(columns: dict, field: FieldSchema, n: int, mask: np.ndarray | None) -> None:
    """Null rows (``mask`` False) of a field with a default value take it; a nullable field gets its
    validity mask column (every row valid once the default is in)."""
    name = field.name
    if mask is not None and field.has_default:
        col = columns[name]
        if not col.flags.writeable:
            col = col.copy()
        col[~mask] = field.default_value
        columns[name] = col
        mask = None
    if field.nullable:
        columns[valid_key(name)] = np.ones(n, np.bool_) if mask is None else mask


def _decode_vectors(field: FieldSchema, fd, n: int) -> np.ndarray:
    dim, name = field.dim, field.name
    kind = fd.vectors.WhichOneof("data") if fd.WhichOneof("field") == "vectors" else None
    if field.dtype == DataType.SPARSE_FLOAT_VECTOR:
        if kind != "sparse_float_vector":
            raise _type_mismatch(field, "sparse_float_vector", kind)
        rows = fd.vectors.sparse_float_vector.contents
        if len(rows) != n:
            raise _rows_mismatch(name, len(rows), n)
        return sparse.validate_rows(rows, name)
    expected = _VECTOR_ATTR[field.dtype]
    from_f32 = kind == "float_vector" and field.dtype in (DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR)
    if kind != expected and not from_f32:
        raise _type_mismatch(field, expected, kind)
    if fd.vectors.dim and fd.vectors.dim != dim:
        raise InvalidParameter(
            f"the dim ({fd.vectors.dim}) of field data({name}) is not equal to schema dim ({dim})"
        )
    if kind == "float_vector":
        flat = np.array(fd.vectors.float_vector.data, dtype=np.float32)
        if flat.size % dim:
            raise InvalidParameter(
                f"the length ({flat.size}) of float data of field ({name}) should divide the dim ({dim})"
            )
        if flat.size // dim != n:
            raise _rows_mismatch(name, flat.size // dim, n)
        vecs: np.ndarray = flat.reshape(n, dim)
        if field.dtype == DataType.FLOAT_VECTOR:
            check_float_vectors(vecs, name)
            return vecs
        _check_finite(name, vecs)  # before rounding: a negative NaN's bits would wrap to 0
        if field.dtype == DataType.FLOAT16_VECTOR:
            with np.errstate(over="ignore"):
                vecs = vecs.astype(np.float16)
            _check_finite(name, vecs, " (out of float16 range)")
        else:
            vecs = float32_to_bfloat16(vecs)
            check_float_vectors(vecs, name)  # bfloat16 has float32's range: the norm bound applies
        return vecs

    raw = getattr(fd.vectors, expected)  # kind == expected from here on
    dtype: type[np.generic]
    if field.dtype == DataType.BINARY_VECTOR:
        width, dtype = dim // 8, np.uint8
    elif field.dtype == DataType.INT8_VECTOR:
        width, dtype = dim, np.int8
    else:
        width, dtype = dim, (np.float16 if field.dtype == DataType.FLOAT16_VECTOR else np.uint16)
    row_bytes = width * np.dtype(dtype).itemsize
    if len(raw) % row_bytes:
        raise InvalidParameter(
            f"the length ({len(raw)} bytes) of {kind} data of field ({name}) is not a multiple of "
            f"the row size ({row_bytes} bytes for dim {dim})"
        )
    if len(raw) // row_bytes != n:
        raise _rows_mismatch(name, len(raw) // row_bytes, n)
    vecs = np.frombuffer(raw, dtype=dtype).reshape(n, width)
    if field.dtype == DataType.FLOAT16_VECTOR:
        _check_finite(name, vecs)
    elif field.dtype == DataType.BFLOAT16_VECTOR:
        check_float_vectors(vecs, name)
    return vecs


def _check_finite(name: str, vecs: np.ndarray, why: str = "", kind: str = "vector") -> None:
    ok = np.isfinite(vecs)
    if not ok.all():
        row = int(np.flatnonzero(~ok.all(axis=1))[0])
        value = vecs[row][~ok[row]][0]
        raise InvalidParameter(
            f"the {row}th {kind} of field ({name}) contains NaN or infinity{why}: "
            f"value '{value}' is not a number or infinity"
        )


def float32_to_bfloat16(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even); returns the raw uint16 bits."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def _decode_scalars(field: FieldSchema, fd, n: int, static_names: frozenset[str],
                    zone: str = timestamptz.DEFAULT_ZONE) -> np.ndarray:
    attr = _SCALAR_ATTR[field.dtype]
    kind = fd.scalars.WhichOneof("data") if fd.WhichOneof("field") == "scalars" else None
    if kind != attr and not (field.dtype == DataType.GEOMETRY and kind == "geometry_data"):
        raise _type_mismatch(field, attr, kind)
    data = getattr(fd.scalars, kind).data
    if len(data) != n:
        raise _rows_mismatch(field.name, len(data), n)
    dt = field.dtype
    if dt == DataType.GEOMETRY:
        return _decode_geometry(field, data, kind)
    if dt == DataType.TIMESTAMPTZ:
        return timestamptz.parse_column(data, field.name, zone)
    if dt in _NP_DTYPE:
        return _decode_fixed(dt, data, f"field ({field.name})", check_finite=True)
    if dt == DataType.VARCHAR:
        values = list(data)
        _check_varchar_lengths(values, field.max_length, lambda i, ln: (
            f"length of varchar field {field.name} exceeds max length, row number: {i}, "
            f"length: {ln}, max length: {field.max_length}"
        ))
        return _object_array(values)
    if dt == DataType.TEXT:
        return _object_array(list(data))
    if dt == DataType.JSON:
        return _decode_json(field, data, static_names)
    return _decode_arrays(field, data)


def _decode_geometry(field: FieldSchema, data, kind: str) -> np.ndarray:
    """GEOMETRY rows as the column keeps them (vecdb.geometry): WKT (``geometry_wkt_data``, what
    pymilvus sends) or WKB (``geometry_data``), each parsed, any that isn't one refused (1100)."""
    from vecdb import geometry  # noqa: PLC0415 - shapely only where a geometry field is

    if kind == "geometry_data":
        return geometry.from_wkb(list(data), field.name)
    return geometry.normalize_wkt(list(data), field.name)


def _decode_fixed(dt: DataType, data, where: str, check_finite: bool = False) -> np.ndarray:
    if dt in _INT_RANGE:
        raw = np.array(data, dtype=np.int32)
        lo, hi = _INT_RANGE[dt]
        bad = (raw < lo) | (raw > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidParameter(
                f"the {i}th element ({int(raw[i])}) of {where} out of range: [{lo}, {hi}]"
            )
        return raw.astype(_NP_DTYPE[dt])
    arr = np.array(data, dtype=_NP_DTYPE[dt])
    if check_finite and dt in (DataType.FLOAT, DataType.DOUBLE):
        ok = np.isfinite(arr)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise InvalidParameter(
                f"value of float {where} at row {i} is NaN or infinity: "
                f"value '{arr[i]}' is not a number or infinity"
            )
    return arr


def _check_varchar_lengths(values: list[str], max_length: int, message: Callable[[int, int], str]) -> None:
    """Milvus limits VARCHAR by UTF-8 byte length; a str of c code points takes c..4c bytes."""
    if not values:
        return
    lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if int(lens.max()) * 4 <= max_length:
        return
    for i in np.flatnonzero(lens * 4 > max_length).tolist():
        s = values[i]
        nbytes = len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))
        if nbytes > max_length:
            raise InvalidParameter(message(i, nbytes))


def _object_array(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _decode_json(field: FieldSchema, data, static_names: frozenset[str]) -> np.ndarray:
    out = np.empty(len(data), dtype=object)
    loads = orjson.loads
    for i, raw in enumerate(data):
        if len(raw) > JSON_MAX_LENGTH:
            if field.is_dynamic:
                raise InvalidParameter(
                    f"the length ({len(raw)}) of dynamic field exceeds max length ({JSON_MAX_LENGTH})"
                )
            raise InvalidParameter(
                f"the length ({len(raw)}) of json field ({field.name}) exceeds max length ({JSON_MAX_LENGTH})"
            )
        try:
            value = loads(raw)
        except orjson.JSONDecodeError as e:  # also invalid UTF-8
            what = "dynamic field" if field.is_dynamic else f"json field ({field.name})"
            raise InvalidParameter(f"invalid JSON in {what} at row {i}: {e}") from None
        # a value cannot nest deeper than it has brackets: counting them is C-speed
        if raw.count(b"[") + raw.count(b"{") > JSON_MAX_DEPTH and _json_depth(value) > JSON_MAX_DEPTH:
            what = "dynamic field" if field.is_dynamic else f"json field ({field.name})"
            raise InvalidParameter(
                f"the JSON value of {what} at row {i} is nested more than {JSON_MAX_DEPTH} levels deep"
            )
        if _LONG_DIGITS.search(raw):
            value = _exact_ints(raw, value, field, i)
        if field.is_dynamic:
            if not isinstance(value, dict):
                raise InvalidParameter(
                    f"invalid dynamic field data at row {i}, only json map is supported, "
                    f"got {type(value).__name__}"
                )
            if DYNAMIC_FIELD in value:
                raise InvalidParameter(f"cannot set json key to: {DYNAMIC_FIELD}")
            clash = static_names & value.keys()
            if clash:
                raise InvalidParameter(
                    f"dynamic field name cannot include the static field name: {sorted(clash)[0]}"
                )
        out[i] = value
    return out


def _exact_ints(raw: bytes, value, field: FieldSchema, i: int):
    """``raw`` (valid JSON, as orjson read it into ``value``) read by ``json``, whose integers are
    exact at any size; an integer over Python's 4,300 digits is refused."""
    try:
        return json.loads(raw)
    except ValueError as e:
        what = "dynamic field" if field.is_dynamic else f"json field ({field.name})"
        raise InvalidParameter(f"invalid JSON in {what} at row {i}: {e}") from None


def _json_depth(value) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` and ``{}`` are 1); iterative."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _decode_arrays(field: FieldSchema, data, row_numbers: list[int] | None = None) -> np.ndarray:
    """``data`` (ScalarField rows) as an object column of 1-D arrays; ``row_numbers``: each row's number
    in the insert (errors name it), where ``data`` leaves out null rows."""
    et = field.element_type
    attr = _SCALAR_ATTR[et]
    cap = field.max_capacity
    parent = data  # repeated ScalarField
    out = np.empty(len(parent), dtype=object)
    is_str = et == DataType.VARCHAR
    empty = np.empty(0, dtype=object if is_str else _NP_DTYPE[et])
    for i, row in enumerate(parent):
        kind = row.WhichOneof("data")
        at = i if row_numbers is None else row_numbers[i]  # the row's number in the insert
        if kind is None and field.struct_name:  # a struct sub-field's row of no structs
            out[i] = empty.copy()
            continue
        if kind != attr:  # no data at all (None): Milvus 2.3.5's proxy crashes on it (nil pointer)
            raise InvalidParameter(
                f"array field ({field.name}) is illegal, insert data does not match: "
                f"need {_type_name(et)} array, got {kind or 'nil'} at row {at}"
            )
        values = getattr(row, attr).data
        if len(values) > cap:
            raise InvalidParameter(
                f"the length ({len(values)}) of {at}th array of field ({field.name}) exceeds max capacity ({cap})"
            )
        if is_str:
            strs = list(values)
            def message(j: int, ln: int, row: int = at) -> str:
                return (f'length of VarChar array field "{field.name}" exceeds max length, row number: {row}, '
                        f"array index: {j}, length: {ln}, max length: {field.max_length}")
            _check_varchar_lengths(strs, field.max_length, message)
            out[i] = _object_array(strs)
        else:
            out[i] = _decode_fixed(et, values, f"array field ({field.name}) row {i}")
    return out


# --------------------------------------------------------------------------
# output fields and query vectors
# --------------------------------------------------------------------------
def resolve_output_fields(schema: CollectionSchema, requested: list[str]) -> tuple[list[str], list[str]]:
    """Apply Milvus's output-field rules; returns ``(schema_fields, dynamic_keys)``.

    ``'*'`` means every schema field (in schema order) but a BM25 function's output
    (Milvus's ``CanRetrieveRawFieldData``: rows read with ``'*'`` can be inserted
    again, pymilvus refusing a function output) and, with dynamic fields on, all of
    ``$meta`` (``dynamic_keys == ['*']``); naming ``$meta`` does the same. Naming a
    BM25 output returns its term frequencies (Milvus refuses it). A name that is no
    schema field is a dynamic key when dynamic fields are on (it must be a plain
    identifier: sub-keys are not supported), else
    ``FieldNotFound("field <x> not exist")``. ``schema_fields`` never contains
    ``$meta`` and keeps the request's order without duplicates. The primary key
    is not added here; ``count(*)`` must be handled before calling this.
    """
    dynamic = schema.enable_dynamic_field and schema.dynamic_field is not None
    names: dict[str, None] = {}
    keys: dict[str, None] = {}
    all_meta = False
    for raw in requested:
        name = raw.strip()
        if name == "*":
            for f in schema.fields:
                if not f.is_hidden and not (f.is_function_output and schema.bm25_function_of(f.name)):
                    names[f.name] = None
            all_meta = all_meta or dynamic
            continue
        field = schema.field(name)
        if field is not None:
            if field.is_dynamic:
                all_meta = True
            else:
                names[name] = None
        elif schema.struct(name) is not None:  # an array-of-struct field: all its sub-fields
            for f in schema.sub_fields(name):
                names[f.name] = None
        elif not dynamic:
            raise FieldNotFound(f"field {name} not exist")
        elif not _IDENT_RE.match(name):
            raise InvalidParameter(f"parse output field name failed: {name}")
        else:
            keys[name] = None
    return list(names), (["*"] if all_meta else list(keys))


def nq_invalid(nq: int) -> InvalidParameter:
    """A search's number of query vectors outside [1, max_nq], in Milvus's words (proxy
    ``validateNQLimit`` wrapped by the search task's ``"%s [%d] is invalid, %w"``)."""
    return InvalidParameter(f"nq [{nq}] is invalid, nq (number of search vector per search request) should be in "
                            f"range [1, {LIMITS.max_nq}], but got {nq}")


def parse_placeholder_group(data: bytes, field: FieldSchema,
                            analyzer: Analyzer | minhash_function.MinHashEncoder | None = None) -> np.ndarray:
    """Decode search vectors from ``common_pb2.PlaceholderGroup`` bytes.

    Returns ``(nq, dim)`` (binary: ``(nq, dim // 8)``) in the field's column
    dtype; read-only when no conversion was needed. Float32 query vectors are
    converted for FLOAT16/BFLOAT16 fields (pymilvus sends them for float lists).

    Float query vectors get the insert rule (``check_float_vectors``: finite, squared
    norm <= 1e37, and within float16's range for a FLOAT16 field). Milvus takes any
    query vector and answers NaN distances, which cannot be ordered and are no JSON
    for the HTTP API; vecdb refuses them with InvalidParameter instead.
    """
    if not field.dtype.is_vector and field.dtype != DataType.ARRAY_OF_VECTOR:
        raise InvalidParameter(f"field ({field.name}) is not a vector field, cannot search on it")
    try:
        group = common_pb2.PlaceholderGroup.FromString(data)
    except DecodeError:
        raise InvalidParameter("failed to parse the search vectors (placeholder group)") from None
    if len(group.placeholders) != 1:
        raise InvalidParameter(f"expected one placeholder, got {len(group.placeholders)}")
    ph = group.placeholders[0]
    values = ph.values
    nq = len(values)
    if not 1 <= nq <= LIMITS.max_nq:
        raise nq_invalid(nq)
    if analyzer is not None and ph.type == _PT.VarChar:  # text on a BM25 / MinHash output field: its query rows
        return analyzer.query_rows([v.decode("utf-8", "replace") for v in values])
    if field.dtype == DataType.ARRAY_OF_VECTOR:  # an array-of-struct vector sub-field
        if ph.type == _PT.FloatVector:  # plain vectors: element-level search (vecdb.element_search)
            row_bytes = field.dim * 4
            bad = next((len(v) for v in values if len(v) != row_bytes), None)
            if bad is not None:
                raise InvalidParameter(f"the dim ({bad // 4}) of search vectors is not equal to schema dim "
                                       f"({field.dim}) of field ({field.name})")
            vecs = np.frombuffer(b"".join(values), dtype="<f4").reshape(nq, field.dim)
            check_float_vectors(vecs, field.name, "search vector")
            return vecs
        if ph.type != _PT.EmbListFloatVector:
            raise InvalidParameter(
                f"search on the struct array vector field ({field.name}) needs EmbeddingList queries "
                "(placeholder EmbListFloatVector) or plain float vectors (element-level search)")
        from vecdb import emb_list  # noqa: PLC0415

        return emb_list.parse_queries(values, field)
    allowed = _PLACEHOLDER_DTYPES[field.dtype]
    if ph.type not in allowed:
        try:
            got = _PT.Name(ph.type)
        except ValueError:
            got = str(ph.type)
        raise InvalidParameter(
            f"the type of search vectors ({got}) does not match the type of field "
            f"({field.name}): {_type_name(field.dtype)}"
        )
    if field.dtype == DataType.SPARSE_FLOAT_VECTOR:  # (nq,) object array of rows, checked as at insert
        return sparse.validate_rows(values, field.name, "sparse float search vector")
    dtype = np.dtype(allowed[ph.type])
    dim = field.dim
    width = dim // 8 if field.dtype == DataType.BINARY_VECTOR else dim
    row_bytes = width * dtype.itemsize
    if set(map(len, values)) != {row_bytes}:  # checked in C; the loop below runs only on an error
        bad = next(len(v) for v in values if len(v) != row_bytes)
        got_dim = bad // dtype.itemsize * (8 if field.dtype == DataType.BINARY_VECTOR else 1)
        raise InvalidParameter(
            f"the dim ({got_dim}) of search vectors is not equal to schema dim ({dim}) "
            f"of field ({field.name})"
        )
    buf = values[0] if nq == 1 else b"".join(values)
    vecs = np.frombuffer(buf, dtype=dtype).reshape(nq, width)
    if field.dtype in (DataType.BINARY_VECTOR, DataType.INT8_VECTOR):
        return vecs
    check_float_vectors(vecs, field.name, "search vector")
    if dtype == np.float32 and field.dtype == DataType.FLOAT16_VECTOR:
        with np.errstate(over="ignore"):
            vecs = vecs.astype(np.float16)
        _check_finite(field.name, vecs, " (out of float16 range)", "search vector")
    elif dtype == np.float32 and field.dtype == DataType.BFLOAT16_VECTOR:
        vecs = float32_to_bfloat16(vecs)
        check_float_vectors(vecs, field.name, "search vector")
    return vecs

"""Upsert ``field_ops`` (pymilvus 2.6 ``client.upsert(..., field_ops={"tags": FieldOp.array_append()})``):
per-field partial-update operators on ARRAY fields, applied to the row's current array instead of
replacing it, as Milvus's proxy merges them (MEP "Array Field Partial Update Operators"):

- ARRAY_APPEND: the current elements, then the sent ones (duplicates and order kept); the result
  may not exceed the field's ``max_capacity``;
- ARRAY_REMOVE: the current elements without every one equal to any sent element (order kept);
- REPLACE: the default (the sent array replaces the row's).

Any non-REPLACE op makes the upsert a partial update. A row whose primary key does not exist yet
starts from an empty array. Refused (1100): an op without a field name, twice for one field, on a
field that is not in the schema, not an ARRAY or not sent, on a nullable ARRAY field (not supported
here yet), or an unknown op.
"""

from __future__ import annotations

import numpy as np
from pymilvus.grpc_gen import schema_pb2

from vecdb import errors
from vecdb.schema import CollectionSchema, DataType

_OP = schema_pb2.FieldPartialUpdateOp.OpType
APPEND, REMOVE = _OP.Value("ARRAY_APPEND"), _OP.Value("ARRAY_REMOVE")


def _type_name(dt: DataType) -> str:
    try:
        return schema_pb2.DataType.Name(int(dt))
    except ValueError:
        return dt.name


def parse_field_ops(schema: CollectionSchema, request) -> dict[str, int]:
    """The request's non-REPLACE ops by field name, checked against the schema."""
    ops: dict[str, int] = {}
    sent = {fd.field_name for fd in request.fields_data}
    for item in getattr(request, "field_ops", ()):
        name, op = item.field_name, int(item.op)
        if not name:
            raise errors.InvalidParameter("field_ops: field_name is required")
        if op not in (APPEND, REMOVE, _OP.Value("REPLACE")):
            raise errors.InvalidParameter(f"field_ops: unsupported partial update op {op} for field {name!r}")
        if name in ops:
            raise errors.InvalidParameter(f"field_ops: duplicate op for field {name!r}")
        f = schema.field(name)
        if f is None:
            raise errors.InvalidParameter(f"field_ops: field {name!r} not found in the collection schema")
        if op == _OP.Value("REPLACE"):
            continue
        op_name = _OP.Name(op)
        if f.dtype != DataType.ARRAY:
            raise errors.InvalidParameter(
                f"op {op_name} requires Array field, but field \"{name}\" is {_type_name(f.dtype)}")
        if f.nullable:
            raise errors.InvalidParameter(f"op {op_name} on the nullable Array field \"{name}\" is not supported")
        if name not in sent:
            raise errors.InvalidParameter(f"op {op_name} on field \"{name}\": the upsert does not send the field")
        ops[name] = op
    return ops


def apply_field_ops(schema: CollectionSchema, ops: dict[str, int], columns: dict, base: dict,
                    exists: np.ndarray) -> None:
    """Replace ``columns[name]`` (the sent arrays) by each op's result over ``base[name]`` (the current
    arrays of the rows, aligned with ``columns``; rows where ``exists`` is False start empty)."""
    for name, op in ops.items():
        f = schema.field(name)
        assert f is not None, "parse_field_ops checked it"
        sent, cur = columns[name], base[name]
        out = np.empty(len(sent), dtype=object)
        if op == APPEND:
            # one concatenation per row: an ARRAY column holds one array object per row
            out[:] = [np.concatenate((c, s)) if e else s for c, s, e in zip(cur, sent, exists.tolist(), strict=True)]
            lengths = np.fromiter(map(len, out), np.int64, len(out))
            if f.max_capacity and len(lengths) and int(lengths.max()) > f.max_capacity:
                row = int(np.argmax(lengths > f.max_capacity))
                raise errors.InvalidParameter(
                    f"the length ({int(lengths[row])}) of the array field ({name}) after ARRAY_APPEND exceeds "
                    f"max capacity ({f.max_capacity}) at row {row}")
        else:
            out[:] = [c[~np.isin(c, s)] if e else s[:0] for c, s, e in zip(cur, sent, exists.tolist(), strict=True)]
        columns[name] = out

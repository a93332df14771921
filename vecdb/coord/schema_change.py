"""Milvus 3.0's ``AlterCollectionSchema`` on an existing collection: the coord's rules.

pymilvus 3.0 sends it for ``drop_collection_field`` (a field by name or id), ``drop_function_field``
(a BM25 or MinHash function together with its output field) and ``add_function_field`` (a BM25 or
MinHash function with its new output field and that field's index); ``AddCollectionStructField``
(``add_collection_struct_field``) comes here too, as an add of a nullable array-of-struct field and
its sub-fields (``SchemaChange.add_struct``). ``apply`` checks a change
against the collection as the coord holds it and makes it: a new schema object, its version moved
by one; a dropped field's index dropped with it; ``max_field_id`` kept so no dropped field's id is
given again (its column stays in old segment files, read by id, until a compaction rewrites them).

The rules and their messages are Milvus's (its proxy's ``validateDropField`` /
``validateDropFunction`` and rootcoord's ``buildSchemaForDrop*`` / ``validateAlterSchemaAddFunctionPlan``,
all ``ErrParameterInvalid``, 1100). Rows written before a function field was added get its output
computed from their input wherever they are read (``vecdb.function_columns``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vecdb import errors
from vecdb.catalog_model import CollectionInfo, IndexInfo
from vecdb.limits import LIMITS
from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, FieldSchema, FunctionSchema, FunctionType, StructArrayField

_OUTPUT_DROPPABLE = (FunctionType.BM25, FunctionType.MINHASH)


@dataclass
class SchemaChange:
    """One action of an ``AlterCollectionSchema`` request, as the proxy parsed it: a drop (of
    ``drop_field`` / ``drop_field_id``, or of function ``drop_function``) or an add (``add_field``,
    the output of ``add_function``, with ``index``: index_name, index_type, metric_type, params)."""

    drop_field: str = ""
    drop_field_id: int = 0
    drop_function: str = ""
    drop_function_outputs: bool = False
    add_field: FieldSchema | None = None
    add_function: FunctionSchema | None = None
    index: dict[str, Any] = field(default_factory=dict)
    # AddCollectionStructField (Milvus 3.0): a nullable array-of-struct field and its sub-fields
    add_struct: StructArrayField | None = None
    add_struct_fields: list[FieldSchema] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"drop_field": self.drop_field, "drop_field_id": self.drop_field_id,
                "drop_function": self.drop_function, "drop_function_outputs": self.drop_function_outputs,
                "add_field": self.add_field.to_dict() if self.add_field else None,
                "add_function": self.add_function.to_dict() if self.add_function else None,
                "index": self.index,
                **({"add_struct": self.add_struct.to_dict(),
                    "add_struct_fields": [f.to_dict() for f in self.add_struct_fields]} if self.add_struct else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchemaChange:
        return cls(d.get("drop_field", ""), d.get("drop_field_id", 0), d.get("drop_function", ""),
                   d.get("drop_function_outputs", False),
                   FieldSchema.from_dict(d["add_field"]) if d.get("add_field") else None,
                   FunctionSchema.from_dict(d["add_function"]) if d.get("add_function") else None,
                   dict(d.get("index") or {}),
                   StructArrayField.from_dict(d["add_struct"]) if d.get("add_struct") else None,
                   [FieldSchema.from_dict(f) for f in d.get("add_struct_fields", ())])

    @property
    def is_drop(self) -> bool:
        return bool(self.drop_field or self.drop_field_id or self.drop_function)


def apply(info: CollectionInfo, change: SchemaChange, new_id: int, ts: int, *, retry: bool = False) -> list[int]:
    """Make ``change`` on ``info`` (its schema replaced by a new object, so readers of the old keep it
    whole); returns the ids of the indexes dropped with a field. ``new_id``: the added index's id,
    ``ts``: the change's timestamp. A repeat (``retry``) that finds the change made answers []."""
    schema = CollectionSchema.from_dict(info.schema.to_dict())
    if change.is_drop:
        if retry and _already_dropped(info.schema, change):
            return []
        gone = _drop_function(schema, change) if change.drop_function else _drop_field(schema, change)
    elif change.add_struct is not None:
        if retry and info.schema.struct(change.add_struct.name) is not None:
            return []
        gone = set()
        _add_struct_field(schema, change)
    else:
        if retry and change.add_field is not None and _same_add(info.schema, change):
            return []
        gone = set()
        _add_function_field(schema, change, info.name)
    schema.max_field_id = max([schema.max_field_id, *(f.field_id for f in info.schema.fields)])
    schema.version += 1
    schema.update_ts = ts
    info.schema = schema
    dropped = [i.index_id for i in info.indexes if i.field_name in gone]
    info.indexes = [i for i in info.indexes if i.field_name not in gone]
    if change.add_field is not None and change.index:
        ix = change.index
        name = ix.get("index_name") or change.add_field.name
        if any(i.index_name == name for i in info.indexes):
            raise errors.IndexDuplicate(f"index name {name} already exists on another field")
        info.indexes.append(IndexInfo(new_id, name, change.add_field.name, ix["index_type"], ix["metric_type"],
                                      dict(ix.get("params") or {}), ts, user_params=dict(ix.get("user_params") or {})))
    return dropped


# --- drops ---------------------------------------------------------------------------------------
def _target(schema: CollectionSchema, change: SchemaChange) -> FieldSchema:
    if change.drop_field_id:
        f = schema.field_by_id(change.drop_field_id)
        st = next((s for s in schema.struct_fields if s.field_id == change.drop_field_id), None)
        if st is not None:
            return FieldSchema(name=st.name, dtype=schema.sub_fields(st.name)[0].dtype, field_id=st.field_id)
        if f is None:
            raise errors.InvalidParameter(f"field not found: {change.drop_field_id}")
        return f
    name = change.drop_field
    st = schema.struct(name)
    if st is not None:
        return FieldSchema(name=st.name, dtype=schema.sub_fields(st.name)[0].dtype, field_id=st.field_id)
    f = schema.field(name)
    if f is None:
        if name == DYNAMIC_FIELD:
            raise errors.InvalidParameter(f"cannot drop system field: {name}")
        raise errors.InvalidParameter(f"field not found: {name}")
    return f


def _drop_field(schema: CollectionSchema, change: SchemaChange) -> set[str]:
    f = _target(schema, change)
    name = f.name
    if schema.struct(name) is not None:  # a whole array-of-struct field: the struct and its sub-fields
        gone = {s.name for s in schema.sub_fields(name)}
        if not [v for v in schema.indexed_vector_fields if v.name not in gone]:
            raise errors.InvalidParameter(
                f"cannot drop struct array field {name}: it would leave no vector field in the collection")
        schema.struct_fields = [s for s in schema.struct_fields if s.name != name]
        schema.fields = [x for x in schema.fields if x.name not in gone]
        return gone
    if f.struct_name:
        raise errors.InvalidParameter(f"cannot drop sub-field of struct array field: {f.struct_name}.{f.sub_name}")
    if f.is_dynamic:
        raise errors.InvalidParameter(
            f"cannot drop dynamic field: {name}, use AlterCollection to disable dynamic schema instead")
    if f.is_primary:
        raise errors.InvalidParameter(f"cannot drop primary key field: {name}")
    if f.is_partition_key:
        raise errors.InvalidParameter(f"cannot drop partition key field: {name}")
    if f.is_clustering_key:
        raise errors.InvalidParameter(f"cannot drop clustering key field: {name}")
    for fn in schema.functions:
        if name in fn.input_field_names:
            raise errors.InvalidParameter(f"field is referenced by function {fn.name} as input")
        if name in fn.output_field_names:
            raise errors.InvalidParameter(f"field is referenced by function {fn.name} as output, drop function first")
    for other in schema.fields:  # vecdb's own: another field's multi-analyzer picks analyzers by this one
        if _by_field(other) == name:
            raise errors.InvalidParameter(f"field is referenced by the multi analyzer of field {other.name}")
    if f.dtype.is_vector and [v.name for v in schema.indexed_vector_fields] == [name]:
        raise errors.InvalidParameter(f"cannot drop the last vector field: {name}")
    schema.fields = [x for x in schema.fields if x.name != name]
    return {name}


def _by_field(f: FieldSchema) -> str:
    try:
        multi = json.loads(f.type_params.get("multi_analyzer_params", "") or "{}")
    except ValueError:
        return ""
    return str(multi.get("by_field", "")) if isinstance(multi, dict) else ""


def _drop_function(schema: CollectionSchema, change: SchemaChange) -> set[str]:
    name = change.drop_function
    fn = schema.function(name)
    if fn is None:
        raise errors.InvalidParameter(f"function not found: {name}")
    if not change.drop_function_outputs:
        if fn.type == FunctionType.BM25:
            raise errors.InvalidParameter(
                f"BM25 function must be dropped with its output field in drop_function_field interface: {name}")
        raise errors.InvalidParameter(
            "detaching a function without dropping its output field is not supported; drop_function always "
            f"removes the function together with its output field: {name}")
    if fn.type not in _OUTPUT_DROPPABLE:
        raise errors.InvalidParameter(f"only BM25 and MinHash functions support dropping output fields: {name}")
    gone = set(fn.output_field_names)
    if not [v for v in schema.indexed_vector_fields if v.name not in gone]:
        raise errors.InvalidParameter(f"cannot drop function {name}: it would leave no vector field in the collection")
    schema.functions = [x for x in schema.functions if x.name != name]
    schema.fields = [x for x in schema.fields if x.name not in gone]
    return gone


def _already_dropped(schema: CollectionSchema, change: SchemaChange) -> bool:
    if change.drop_function:
        return schema.function(change.drop_function) is None
    if change.drop_field_id:
        return schema.field_by_id(change.drop_field_id) is None and not any(
            s.field_id == change.drop_field_id for s in schema.struct_fields)
    return schema.field(change.drop_field) is None and schema.struct(change.drop_field) is None


# --- adds ----------------------------------------------------------------------------------------
def _add_function_field(schema: CollectionSchema, change: SchemaChange, collection: str) -> None:
    """The function and its output field (both checked by the proxy: ``vecdb.proxy.rpc_schema_change``),
    checked again against this schema: names still free, the input still there."""
    f, fn = change.add_field, change.add_function
    if f is None or fn is None:
        raise errors.InvalidParameter("add_function_field needs both the output field and the function")
    if schema.field(f.name) is not None or schema.struct(f.name) is not None:
        raise errors.InvalidParameter(f"duplicate field name: {f.name}")
    if schema.function(fn.name) is not None:
        raise errors.InvalidParameter(f"duplicate function name: {fn.name}")
    for i in fn.input_field_names:
        if schema.field(i) is None:
            raise errors.InvalidParameter(f"function input field {i} not found in collection {collection}")
    added = FieldSchema.from_dict(f.to_dict())
    added.field_id = schema.next_field_id()
    added.is_function_output = True
    at = next((i for i, x in enumerate(schema.fields) if x.is_dynamic), len(schema.fields))
    schema.fields.insert(at, added)
    schema.functions.append(FunctionSchema.from_dict(fn.to_dict()))


def _add_struct_field(schema: CollectionSchema, change: SchemaChange) -> None:
    """A nullable array-of-struct field (checked by the proxy: ``vecdb.struct_fields.added_struct_field``),
    checked again against this schema: its name still free, the field count within the limit. The
    struct and its sub-fields get their ids here (above every id given), the sub-fields go before
    ``$meta``. Rows written before read every sub-field as an empty list (``vecdb.column_defaults``)."""
    st = change.add_struct
    assert st is not None
    if not st.nullable:
        raise errors.InvalidParameter(f"added field must be nullable, please check it, field name = {st.name}")
    if not change.add_struct_fields:
        raise errors.InvalidParameter(f"struct array field {st.name} has no sub-fields")
    if schema.field(st.name) is not None or schema.struct(st.name) is not None or st.name == DYNAMIC_FIELD:
        raise errors.InvalidParameter(f"duplicate field name: {st.name}")
    if len(schema.fields) + len(change.add_struct_fields) > LIMITS.max_fields:
        raise errors.InvalidParameter(f"maximum field's number should be limited to {LIMITS.max_fields}")
    added = StructArrayField.from_dict(st.to_dict())
    added.field_id = schema.next_field_id()
    subs = []
    for i, f in enumerate(change.add_struct_fields):
        sub = FieldSchema.from_dict(f.to_dict())
        sub.field_id, sub.struct_name = added.field_id + 1 + i, added.name
        subs.append(sub)
    at = next((i for i, x in enumerate(schema.fields) if x.is_dynamic), len(schema.fields))
    schema.fields[at:at] = subs
    schema.struct_fields.append(added)


def _same_add(schema: CollectionSchema, change: SchemaChange) -> bool:
    assert change.add_field is not None
    there, fn = schema.field(change.add_field.name), change.add_function
    return there is not None and there.is_function_output and fn is not None and schema.function(fn.name) is not None

"""Array-of-struct fields (Milvus 2.6) over the REST API v2 (``vecdb.proxy.rest``): JSON to the schema
proto, rows to sub-field columns, search data to embedding lists.

The shapes are Milvus's ("Array of Structs" page, its cURL examples; its REST handler
``internal/distributed/proxy/httpserver/struct_array_v2.go``):

- collections/create: ``schema.structArrayFields`` (``structFields`` too, the name Milvus's newer
  handler reads): ``[{name, description, elementTypeParams {max_capacity}, fields [{fieldName,
  dataType, elementTypeParams}]}]``. A sub-field's ``dataType`` is its element's (``VarChar``,
  ``FloatVector``); it becomes an ARRAY of it, or an ARRAY_OF_VECTOR for a vector, with the
  struct's ``max_capacity``, as pymilvus sends it. ``vecdb.struct_fields`` then checks it all.
- insert / upsert: the struct field of a row is a JSON list of objects, one per struct, each
  holding every sub-field (keys that name no sub-field are ignored, as Milvus's handler does).
  The sub-fields become the columns ``chunks[text]``, ``chunks[emb]`` that the gRPC path's
  encoder (``fieldencode``) turns into one ArrayOfStruct FieldData, checked by the server as a
  pymilvus insert is.
- search: ``annsField`` ``chunks[emb]`` (``chunks.emb``, Milvus's handler's form, is taken too)
  and ``data`` a list of embedding lists, each a list of vectors; a plain list of vectors is one
  embedding list. They travel as pymilvus's ``EmbListFloatVector`` placeholder.
"""

from __future__ import annotations

import json

import numpy as np
from pymilvus.grpc_gen import schema_pb2

from vecdb.column_codec import object_array
from vecdb.errors import InvalidParameter
from vecdb.schema import CollectionSchema, DataType, FieldSchema, struct_sub_field_name

_VECTORS = frozenset({schema_pb2.FloatVector, schema_pb2.Float16Vector, schema_pb2.BFloat16Vector,
                      schema_pb2.Int8Vector, schema_pb2.BinaryVector, schema_pb2.SparseFloatVector})


BAD_FORMAT = 1801  # Milvus's REST: a body its JSON binding refuses (ErrIncorrectParameterFormat)


class JsonTypeError(Exception):
    """A JSON value of the wrong type where Milvus's REST handler binds a typed Go field: the binding's
    1801 "can only accept json format request" (``vecdb.proxy.rest`` turns it into that reply)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def json_bool(obj: dict, key: str, where: str = "") -> bool:
    """``obj[key]`` a JSON boolean (false when absent or null), as Milvus's REST binds a Go ``bool``:
    ``"false"`` (a string) is refused, not read as true."""
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise JsonTypeError(f"{where}{key} must be a JSON boolean, got {json.dumps(value)}")
    return value


def param_text(value) -> str:
    """A JSON type param as the string Milvus keeps: objects as JSON, booleans lower case."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_struct_fields(pb: schema_pb2.CollectionSchema, spec: dict) -> None:
    """The array-of-struct fields of a create's ``schema`` into ``pb.struct_array_fields``."""
    structs = spec.get("structArrayFields") or spec.get("structFields") or []
    if not isinstance(structs, list) or not all(isinstance(s, dict) for s in structs):
        raise InvalidParameter("schema.structArrayFields is a list of objects")
    for st in structs:
        name = st.get("name") or st.get("fieldName") or ""
        params = dict(st.get("elementTypeParams") or {})
        capacity = params.pop("max_capacity", st.get("maxCapacity"))
        spb = pb.struct_array_fields.add(name=name, description=st.get("description", ""))
        for key, value in params.items():
            spb.type_params.add(key=key, value=param_text(value))
        for f in st.get("fields") or []:
            spb.fields.append(_sub_field(f, capacity))


def _sub_field(f: dict, capacity) -> schema_pb2.FieldSchema:
    try:
        dtype = schema_pb2.DataType.Value(f["dataType"])
        element = schema_pb2.DataType.Value(f["elementDataType"]) if f.get("elementDataType") else 0
    except ValueError as e:
        raise InvalidParameter(f"invalid data type of struct sub-field {f.get('fieldName')}: {e}") from None
    if dtype not in (schema_pb2.Array, schema_pb2.ArrayOfVector):  # the element's type, as pymilvus takes it
        dtype, element = (schema_pb2.ArrayOfVector if dtype in _VECTORS else schema_pb2.Array), dtype
    if f.get("defaultValue") is not None:
        raise InvalidParameter(f"default value is not supported for struct field, field name = {f['fieldName']}")
    where = f"schema.structArrayFields[].fields[{f['fieldName']}]."
    fpb = schema_pb2.FieldSchema(name=f["fieldName"], data_type=dtype, element_type=element,
                                 description=f.get("description", ""), nullable=json_bool(f, "nullable", where),
                                 is_primary_key=json_bool(f, "isPrimary", where),
                                 is_partition_key=json_bool(f, "isPartitionKey", where),
                                 is_clustering_key=json_bool(f, "isClusteringKey", where))
    params = dict(f.get("elementTypeParams") or {})
    if capacity is not None:
        params.setdefault("max_capacity", capacity)
    for key, value in params.items():
        fpb.type_params.add(key=key, value=param_text(value))
    return fpb


def vector_sub_fields(pb: schema_pb2.CollectionSchema) -> set[str]:
    """The names (``chunks[emb]``) of the vector sub-fields of ``pb``'s struct fields: a load needs an
    index on each."""
    return {struct_sub_field_name(s.name, f.name) for s in pb.struct_array_fields for f in s.fields
            if f.data_type == schema_pb2.ArrayOfVector}


def describe_json(pb: schema_pb2.CollectionSchema) -> list[dict]:
    """A described schema's struct fields in the shape a create takes them (sub-fields by their element type)."""
    out = []
    for s in pb.struct_array_fields:
        params = {kv.key: kv.value for f in s.fields[:1] for kv in f.type_params if kv.key == "max_capacity"}
        params.update({kv.key: kv.value for kv in s.type_params})
        out.append({"name": s.name, "id": s.fieldID, "description": s.description, "elementTypeParams": params,
                    "fields": [{"name": f.name, "id": f.fieldID, "description": f.description,
                                "type": schema_pb2.DataType.Name(f.element_type),
                                "params": [{"key": kv.key, "value": kv.value} for kv in f.type_params
                                           if kv.key != "max_capacity"]} for f in s.fields]})
    return out


def struct_columns(schema: CollectionSchema, rows: list[dict], partial: bool = False) -> dict[str, np.ndarray]:
    """The sub-field columns (``chunks[text]``: a list per row; ``chunks[emb]``: an ``(elements, dim)``
    float32 array per row) of the rows' struct fields. A row without the field, an element that is no
    object or lacks a sub-field, a vector of another dim: ValueError (the caller's 1804).
    ``partial`` (a partial update): a struct field no row holds is left out."""
    out: dict[str, np.ndarray] = {}
    for st in schema.struct_fields:
        if partial and not any(st.name in row for row in rows):
            continue
        subs = schema.sub_fields(st.name)
        cols: dict[str, list] = {f.name: [] for f in subs}
        for i, row in enumerate(rows):
            if st.name not in row:
                raise ValueError(f"field {st.name} is required, missing in row {i}")
            value = row[st.name]
            if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
                raise ValueError(f"struct array field {st.name} expects a JSON array of objects (row {i})")
            for f in subs:
                j = next((j for j, e in enumerate(value) if f.sub_name not in e), None)
                if j is not None:
                    raise ValueError(f"struct array field {st.name} element #{j} missing sub-field {f.sub_name} "
                                     f"(row {i})")
                elements = [e[f.sub_name] for e in value]
                cols[f.name].append(_vectors(f, elements, i) if f.dtype == DataType.ARRAY_OF_VECTOR else elements)
        out.update({name: object_array(values) for name, values in cols.items()})
    return out


def _vectors(f: FieldSchema, elements: list, row: int) -> np.ndarray:
    """One row of a vector sub-field: its elements' vectors as one ``(elements, dim)`` float32 array."""
    if not elements:
        return np.empty((0, f.dim), np.float32)
    if not all(isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
               for v in elements):
        raise ValueError(f"sub-field {f.sub_name} of row {row}: a vector is a list of numbers")
    bad = next((len(v) for v in elements if len(v) != f.dim), None)
    if bad is not None:
        raise ValueError(f"sub-field {f.name} vector dim mismatch: expect {f.dim}, got {bad} (row {row})")
    return np.asarray(elements, np.float32)


def anns_name(schema: CollectionSchema, anns: str) -> str:
    """``chunks.emb`` (Milvus's REST form) as the sub-field's name ``chunks[emb]``; any other name as it is."""
    struct, dot, sub = anns.partition(".")
    if dot and schema.field(anns) is None and schema.struct(struct) is not None:
        return struct_sub_field_name(struct, sub)
    return anns


def embedding_lists(data: list, field: FieldSchema) -> list[bytes]:
    """A search's ``data`` on a vector sub-field as the float32 bytes of each embedding list (a list
    of vectors of the field's dim; a plain list of vectors is one)."""
    if data and isinstance(data[0], list) and data[0] and not isinstance(data[0][0], list):
        data = [data]  # one embedding list
    out = []
    for i, vectors in enumerate(data):
        if not isinstance(vectors, list) or not vectors or not all(
                isinstance(v, list) and len(v) == field.dim for v in vectors):
            raise InvalidParameter(f"the {i}th embedding list of the search is not a non-empty list of vectors "
                                   f"of dim {field.dim} (field {field.name})")
        try:
            out.append(np.asarray(vectors, np.float32).tobytes())
        except (TypeError, ValueError):
            raise InvalidParameter(f"the {i}th embedding list of the search holds a value that is no number "
                                   f"(field {field.name})") from None
    return out

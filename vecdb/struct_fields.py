"""Array-of-struct fields (Milvus 2.6): parsing and checking ``struct_array_fields`` of a schema proto.

A struct field ``chunks`` whose structs hold ``text`` (VARCHAR) and ``emb`` (FLOAT_VECTOR) becomes,
as inside Milvus, the sub-fields ``chunks[text]`` (ARRAY of VARCHAR) and ``chunks[emb]``
(ARRAY_OF_VECTOR of FLOAT_VECTOR), each a column of its own with one row per entity and one element
per struct (see :mod:`vecdb.schema` for the column representation). The checks follow Milvus's
proxy (``ValidateStructArrayField``, ``ValidateFieldsInStruct``, ``validateDimension``,
``getMaxCapacityPerRow``) and give its messages (1100). What vecdb does not do yet is refused
with 105: vector sub-fields of a type other than FLOAT_VECTOR.
"""

from __future__ import annotations

import json

from vecdb.errors import IllegalSchema, InvalidParameter
from vecdb.limits import LIMITS
from vecdb.schema import (
    ARRAY_ELEMENT_TYPES,
    DYNAMIC_FIELD,
    MAX_ARRAY_CAPACITY,
    MAX_VARCHAR_LENGTH,
    CollectionSchema,
    DataType,
    FieldSchema,
    StructArrayField,
    struct_sub_field_name,
    validate_field_name,
)

_FIXED_DIM_VECTORS = frozenset({DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR,
                                DataType.INT8_VECTOR, DataType.BINARY_VECTOR})


def _proto_name(value: int) -> str:
    from pymilvus.grpc_gen import schema_pb2  # noqa: PLC0415 - the model itself needs no protobuf

    try:
        return schema_pb2.DataType.Name(value)
    except ValueError:
        return str(value)


def _param_value(raw: str) -> str:
    """pymilvus writes a struct sub-field's type params as JSON (``json.dumps``): ``8``, ``"8"``, ``true``."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text
    return text


def parse_struct_fields(pb, collection_name: str, first_id: int,
                        taken: set[str]) -> tuple[list[StructArrayField], list[FieldSchema]]:
    """The array-of-struct fields of ``pb`` (``schema_pb2.CollectionSchema``) and their sub-fields,
    checked; ids from ``first_id`` on (each struct, then its sub-fields). ``taken``: the top-level
    field names, which a struct's name may not repeat."""
    structs: list[StructArrayField] = []
    subs: list[FieldSchema] = []
    next_id = first_id
    names = set(taken)
    for spb in pb.struct_array_fields:
        name = spb.name
        validate_field_name(name)
        if name in names:
            raise InvalidParameter(f"duplicated field name {name} found")
        names.add(name)
        if not len(spb.fields):
            raise InvalidParameter(f"struct array field {name} has no sub-fields")
        st = StructArrayField(name=name, field_id=next_id, description=spb.description,
                              type_params={kv.key: _param_value(kv.value) for kv in spb.type_params})
        st.nullable = bool(spb.nullable)  # (Milvus 3.0) its sub-fields then carry the struct's flag
        next_id += 1
        own: set[str] = set()
        for fpb in spb.fields:
            f = _sub_field(fpb, name, collection_name, next_id, st.nullable)
            if f.name in own:
                raise InvalidParameter(f"duplicated field name {f.name} found")
            own.add(f.name)
            next_id += 1
            if st.max_capacity and f.max_capacity != st.max_capacity:
                raise InvalidParameter(
                    "all sub-fields in struct array field must have the same max_capacity: "
                    f"structName={name}, subFieldName={f.sub_name}, max_capacity={f.max_capacity}, "
                    f"expected={st.max_capacity}")
            st.max_capacity = f.max_capacity
            subs.append(f)
        structs.append(st)
    if len(subs) + len(taken) > LIMITS.max_fields:
        raise IllegalSchema(f"maximum field's number should be limited to {LIMITS.max_fields}")
    return structs, subs


def added_struct_field(schema: CollectionSchema, spb) -> tuple[StructArrayField, list[FieldSchema]]:
    """The array-of-struct field ``spb`` (``schema_pb2.StructArrayFieldSchema``) of an
    ``add_collection_struct_field`` (Milvus 3.0) on ``schema``, checked as at create, and nullable as
    Milvus requires of any field added to a collection with data: rows written before it, and rows
    that leave it out, hold no struct (an empty list in every sub-field). pymilvus marks each
    sub-field nullable with the struct; that is the struct's nullability, taken as such. Ids are the
    coord's to give (``vecdb.coord.schema_change``)."""
    from pymilvus.grpc_gen import schema_pb2  # noqa: PLC0415 - the model itself needs no protobuf

    name = spb.name
    if not spb.nullable:
        raise InvalidParameter(f"added field must be nullable, please check it, field name = {name}")
    if schema.field(name) is not None or schema.struct(name) is not None or name == DYNAMIC_FIELD:
        raise InvalidParameter(f"duplicate field name: {name}")
    one = schema_pb2.CollectionSchema()
    copy = one.struct_array_fields.add()
    copy.CopyFrom(spb)
    for sub in copy.fields:
        sub.nullable = False  # the struct's own flag, which pymilvus repeats on every sub-field
    taken = {f.name for f in schema.fields if not f.struct_name} | {st.name for st in schema.struct_fields}
    structs, subs = parse_struct_fields(one, schema.name, schema.next_field_id(), taken)
    for f in subs:  # (create refuses these in the schema's analyzer checks, which an add does not run; a
        # sub-field taken here made every later add_function_field and REST search of the collection fail)
        if f.type_params.get("enable_match", "").strip().lower() == "true" and not f.enable_analyzer:
            raise InvalidParameter(f"field {f.name} is set to enable match but not enable analyzer")
        if f.enable_analyzer:
            raise InvalidParameter(f"enable_analyzer is only for VARCHAR fields (and TEXT), field {f.name} is "
                                   f"{_proto_name(int(f.dtype))}")
    if len(schema.fields) + len(subs) > LIMITS.max_fields:
        raise InvalidParameter(f"maximum field's number should be limited to {LIMITS.max_fields}")
    structs[0].nullable = True
    return structs[0], subs


def _sub_field(fpb, struct_name: str, collection_name: str, field_id: int,
               struct_nullable: bool = False) -> FieldSchema:
    plain = fpb.name
    prefix = struct_name + "["
    if plain.startswith(prefix) and plain.endswith("]"):  # already in its stored form
        plain = plain[len(prefix):-1]
    validate_field_name(plain)
    full = struct_sub_field_name(struct_name, plain)
    if fpb.is_primary_key:
        raise InvalidParameter(f"primary key is not supported for struct field, field name = {plain}")
    if fpb.autoID:
        raise InvalidParameter(f"autoID is not supported for struct field, field name = {plain}")
    if fpb.nullable and not struct_nullable:
        raise InvalidParameter(
            "sub-field in non-nullable struct cannot be nullable individually, set nullable on the struct "
            f"instead: structName={struct_name}, subFieldName={plain}")
    for flag, what in ((fpb.is_partition_key, "partition key"), (fpb.is_clustering_key, "clustering key"),
                       (fpb.is_dynamic, "dynamic field"), (fpb.is_function_output, "function output")):
        if flag:
            raise InvalidParameter(f"{what} is not supported for struct field, field name = {plain}")
    if fpb.HasField("default_value") and fpb.default_value.WhichOneof("data") is not None:
        raise InvalidParameter(f"default value is not supported for struct field, field name = {plain}")
    if fpb.data_type not in (DataType.ARRAY, DataType.ARRAY_OF_VECTOR):
        raise InvalidParameter(f"fields in StructArrayField can only be array or array of struct, but field "
                               f"{plain} is {_proto_name(fpb.data_type)}")
    params = {kv.key: _param_value(kv.value) for kv in fpb.type_params}
    f = FieldSchema(name=full, dtype=DataType(fpb.data_type), field_id=field_id, description=fpb.description,
                    type_params=params, struct_name=struct_name)
    try:
        f.element_type = DataType(fpb.element_type)
    except ValueError:
        f.element_type = DataType.NONE
    if f.dtype == DataType.ARRAY:
        if f.element_type not in ARRAY_ELEMENT_TYPES:
            raise InvalidParameter(f"element type {_proto_name(fpb.element_type)} is not supported, "
                                   f"field name = {plain}")
        if f.element_type == DataType.VARCHAR:
            f.max_length = _max_length(params, plain, collection_name)
    else:
        if f.element_type not in _FIXED_DIM_VECTORS:
            raise InvalidParameter(f"Unsupported element type {_proto_name(fpb.element_type)} of ArrayOfVector "
                                   f"field {plain}, only fixed dimension vector types are supported")
        if f.element_type != DataType.FLOAT_VECTOR:
            raise IllegalSchema(f"ArrayOfVector of {_proto_name(fpb.element_type)} (field {plain}) is not "
                                "supported by vecdb yet: FloatVector sub-fields are")
        f.dim = _dim(params, plain)
    f.max_capacity = _max_capacity(params, plain, collection_name)
    return f


def _dim(params: dict[str, str], name: str) -> int:
    if "dim" not in params:
        raise InvalidParameter(f"dimension is not defined in field type params of field {name}, check type "
                               "param `dim` for vector field")
    try:
        dim = int(params["dim"])
    except ValueError:
        raise InvalidParameter(f"the value for dim of field {name} must be an integer") from None
    if not 2 <= dim <= LIMITS.max_dim:
        raise InvalidParameter(f"invalid dimension: {dim}. should be in range 2 ~ {LIMITS.max_dim}")
    return dim


def _max_length(params: dict[str, str], name: str, collection_name: str) -> int:
    if "max_length" not in params:
        raise InvalidParameter(
            f"type param(max_length) should be specified for the field({name}) of collection {collection_name}")
    try:
        n = int(params["max_length"])
    except ValueError:
        raise InvalidParameter(f"the value for max_length of field {name} must be an integer") from None
    if not 0 < n <= MAX_VARCHAR_LENGTH:
        raise InvalidParameter(f"the maximum length specified for the field({name}) should be in "
                               f"(0, {MAX_VARCHAR_LENGTH}], but got {n} instead")
    return n


def _max_capacity(params: dict[str, str], name: str, collection_name: str) -> int:
    if "max_capacity" not in params:
        raise InvalidParameter(
            f"type param(max_capacity) should be specified for array field {name} of collection {collection_name}")
    try:
        n = int(params["max_capacity"])
    except ValueError:
        raise InvalidParameter(f"the value for max_capacity of field {name} must be an integer") from None
    if not 0 < n <= MAX_ARRAY_CAPACITY:
        raise InvalidParameter(f"the maximum capacity specified for a Array should be in (0, {MAX_ARRAY_CAPACITY}]")
    return n

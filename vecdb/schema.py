"""Collection schemas: vecdb's own model, validation, and proto conversion.

The model is plain dataclasses so every role can use it without protobuf;
``from_proto``/``to_proto`` convert from/to pymilvus's ``schema_pb2``, and
``to_dict``/``from_dict`` give the JSON form kept in the metadata store.

Column representation (the contract between fielddata, segments, the
expression evaluator and the indexes) — one numpy array per field, length n:

==================  ==========================================================
BOOL                ``np.bool_``
INT8/16/32/64       ``np.int8`` / ``np.int16`` / ``np.int32`` / ``np.int64``
FLOAT / DOUBLE      ``np.float32`` / ``np.float64``
VARCHAR             object array of ``str``
TEXT                object array of ``str``, as VARCHAR, with no ``max_length`` (Milvus 3.0:
                    long text; no scalar operator, index nor key on it, see vecdb.text_field)
JSON                object array of parsed Python values (dict, list, ...);
                    the dynamic field ``$meta`` is a JSON column of dicts
ARRAY               object array of 1-D numpy arrays of the element type
                    (VARCHAR elements: object arrays of ``str``)
FLOAT_VECTOR        ``float32`` 2-D ``(n, dim)``
BINARY_VECTOR       ``uint8`` 2-D ``(n, dim // 8)``
FLOAT16_VECTOR      ``float16`` 2-D ``(n, dim)``
BFLOAT16_VECTOR     ``uint16`` 2-D ``(n, dim)`` (raw bfloat16 bits)
INT8_VECTOR         ``int8`` 2-D ``(n, dim)`` (Milvus 2.6; searched as float32)
GEOMETRY            object array of ``str``: each row's WKT as vecdb writes it
                    (Milvus 2.6; normalized at insert, vecdb.geometry)
SPARSE_FLOAT_VECTOR object array of ``bytes``, one per row: (uint32 index, float32
                    value) little-endian pairs, indices increasing (vecdb.sparse)
ARRAY_OF_VECTOR     object array of 2-D ``float32`` arrays ``(elements, dim)``: the vector
                    sub-field of an array-of-struct field (vecdb.emb_list)
==================  ==========================================================

An array-of-struct field (Milvus 2.6, ``struct_array_fields`` in the proto) is kept as Milvus
keeps it inside: each sub-field is a field of its own named ``struct[sub]`` (``struct_name`` set),
an ARRAY of its scalar type or an ARRAY_OF_VECTOR, one row per entity holding one element per
struct; ``CollectionSchema.struct_fields`` holds the struct-level part (name, id, capacity).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from vecdb.errors import IllegalSchema, InvalidParameter, VectorClusteringKeyNotAllowed
from vecdb.limits import LIMITS
from vecdb.timestamptz import DEFAULT_ZONE, format_one, parse_iso

DYNAMIC_FIELD = "$meta"
# the field a collection with ``enable_namespace`` (Milvus 3.0) keeps each row's namespace in, in the
# default ``namespace.mode`` (partition_key): a VARCHAR partition key the server fills from the
# request's ``namespace``, hidden from clients as ``$meta`` is (vecdb.namespaces)
NAMESPACE_FIELD = "$namespace_id"
# the primary key the server adds to an external collection (Milvus 3.0; vecdb.external_tables): an INT64
# auto_id key given to each row a refresh reads from the source files; reserved in every collection
VIRTUAL_PK_FIELD = "__virtual_pk__"
MAX_VARCHAR_LENGTH = 65535
MAX_ARRAY_CAPACITY = 4096
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COLLECTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARTITION_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


class DataType(IntEnum):
    """Values equal to ``schema_pb2.DataType``."""

    NONE = 0
    BOOL = 1
    INT8 = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    FLOAT = 10
    DOUBLE = 11
    STRING = 20
    VARCHAR = 21
    ARRAY = 22
    JSON = 23
    GEOMETRY = 24  # WKT strings, normalized at insert (vecdb.geometry)
    TEXT = 25  # long strings without max_length (Milvus 3.0; vecdb.text_field)
    TIMESTAMPTZ = 26  # int64 microseconds since the epoch, UTC (vecdb.timestamptz)
    BINARY_VECTOR = 100
    FLOAT_VECTOR = 101
    FLOAT16_VECTOR = 102
    BFLOAT16_VECTOR = 103
    SPARSE_FLOAT_VECTOR = 104
    INT8_VECTOR = 105
    ARRAY_OF_VECTOR = 106  # a vector sub-field of an array-of-struct field, never a field of its own
    ARRAY_OF_STRUCT = 200  # the FieldData type of an array-of-struct field (its sub-fields inside)

    @property
    def is_vector(self) -> bool:
        return self in VECTOR_TYPES

    @property
    def is_integer(self) -> bool:
        return self in (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)

    @property
    def is_numeric(self) -> bool:
        return self.is_integer or self in (DataType.FLOAT, DataType.DOUBLE)


VECTOR_TYPES = frozenset(
    {DataType.BINARY_VECTOR, DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR,
     DataType.SPARSE_FLOAT_VECTOR, DataType.INT8_VECTOR}
)
SCALAR_TYPES = frozenset(
    {
        DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64,
        DataType.FLOAT, DataType.DOUBLE, DataType.VARCHAR, DataType.JSON, DataType.ARRAY,
        DataType.TIMESTAMPTZ, DataType.GEOMETRY, DataType.TEXT,
    }
)
ARRAY_ELEMENT_TYPES = frozenset(
    {
        DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64,
        DataType.FLOAT, DataType.DOUBLE, DataType.VARCHAR,
    }
)


@dataclass
class FieldSchema:
    name: str
    dtype: DataType
    field_id: int = 0
    description: str = ""
    is_primary: bool = False
    auto_id: bool = False
    is_partition_key: bool = False
    is_dynamic: bool = False
    dim: int = 0
    max_length: int = 0
    element_type: DataType = DataType.NONE
    max_capacity: int = 0
    type_params: dict[str, str] = field(default_factory=dict)
    nullable: bool = False
    default_value: bool | int | float | str | None = None  # None: no default value; TIMESTAMPTZ: microseconds
    is_function_output: bool = False  # filled by a schema function (BM25), never sent by clients
    # rows are grouped by this field's value ranges in a clustering compaction (vecdb.datanode.compactor)
    is_clustering_key: bool = False
    struct_name: str = ""  # set on a sub-field of an array-of-struct field (named ``struct[sub]``)
    external_field: str = ""  # an external collection's field: the source files' column it reads

    @property
    def sub_name(self) -> str:
        """A struct sub-field's own name (``sub`` of ``struct[sub]``); any other field's name."""
        return self.name[len(self.struct_name) + 1:-1] if self.struct_name else self.name

    @property
    def is_hidden(self) -> bool:
        """A field the server keeps for itself (``$meta``, ``$namespace_id``): not in a described schema,
        nor among ``*``'s output fields."""
        return self.is_dynamic or self.name == NAMESPACE_FIELD

    @property
    def enable_analyzer(self) -> bool:
        return self.type_params.get("enable_analyzer", "").strip().lower() == "true"

    @property
    def has_default(self) -> bool:
        return self.default_value is not None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["dtype"] = int(self.dtype)
        d["element_type"] = int(self.element_type)
        if not self.is_clustering_key:  # written only when set: a record the previous version reads
            del d["is_clustering_key"]
        if not self.struct_name:
            del d["struct_name"]
        if not self.external_field:
            del d["external_field"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldSchema:
        d = {k: v for k, v in d.items() if k in _FIELD_KEYS}  # a newer version's keys are left out
        d["dtype"] = DataType(d["dtype"])
        d["element_type"] = DataType(d.get("element_type", 0))
        return cls(**d)


_FIELD_KEYS = frozenset(FieldSchema.__dataclass_fields__)


def struct_sub_field_name(struct_name: str, sub: str) -> str:
    """The name a struct's sub-field goes by among the schema's fields (Milvus's
    ``typeutil.ConcatStructFieldName``): ``chunks[emb]``, also how searches name it (anns_field)."""
    return f"{struct_name}[{sub}]"


@dataclass
class StructArrayField:
    """The struct-level part of an array-of-struct field; its sub-fields are in ``CollectionSchema.fields``
    (``struct_name`` set). Every sub-field has the struct's ``max_capacity``."""

    name: str
    field_id: int = 0
    description: str = ""
    max_capacity: int = 0
    type_params: dict[str, str] = field(default_factory=dict)
    # added to a collection with data (Milvus 3.0 add_collection_struct_field): rows that leave it
    # out, and rows written before, hold no struct (every sub-field an empty list)
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if not self.nullable:  # written only when set: a record the previous version reads
            del d["nullable"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StructArrayField:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class FunctionType(IntEnum):
    """Values equal to ``schema_pb2.FunctionType`` (MinHash: 4, Milvus 3.0's, a name pymilvus 2.6's
    proto lacks); vecdb runs BM25 and MinHash."""

    UNKNOWN = 0
    BM25 = 1
    MINHASH = 4


@dataclass
class FunctionSchema:
    """A schema function (Milvus 2.5): BM25 turns its input VARCHAR field's text into the term
    frequencies stored in its output SPARSE_FLOAT_VECTOR field (vecdb.analyzer, vecdb.bm25); MinHash
    (Milvus 3.0) into the MinHash signature stored in its output BINARY_VECTOR (vecdb.minhash_function)."""

    name: str
    type: FunctionType
    input_field_names: list[str]
    output_field_names: list[str]
    description: str = ""
    function_id: int = 0
    params: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["type"] = int(self.type)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FunctionSchema:
        d = dict(d)
        d["type"] = FunctionType(d["type"])
        return cls(**d)


@dataclass
class CollectionSchema:
    name: str
    fields: list[FieldSchema]
    description: str = ""
    enable_dynamic_field: bool = False
    functions: list[FunctionSchema] = field(default_factory=list)
    version: int = 0  # moves by one with each field added (add_collection_field), as Milvus's schema version
    update_ts: int = 0  # the timestamp of the last field added or altered (0: none since created)
    struct_fields: list[StructArrayField] = field(default_factory=list)  # array-of-struct fields (Milvus 2.6)
    # the largest field id ever given (Milvus's max_field_id): a dropped field's id is never given
    # again, since old segment files still hold a column under it (0: no field dropped yet)
    max_field_id: int = 0
    enable_namespace: bool = False  # Milvus 3.0: writes and reads name a namespace (vecdb.namespaces)
    # Milvus 3.0 external collections: where the rows come from (a URL of parquet files) and how to read
    # them (a JSON spec); vecdb.external_spec checks them, vecdb.external_tables refreshes from them
    external_source: str = ""
    external_spec: str = ""

    @property
    def is_external(self) -> bool:
        return bool(self.external_source)

    def struct(self, name: str) -> StructArrayField | None:
        """The array-of-struct field named ``name``, if any."""
        return next((s for s in self.struct_fields if s.name == name), None)

    def sub_fields(self, struct_name: str) -> list[FieldSchema]:
        """The sub-fields of array-of-struct field ``struct_name``, in schema order."""
        return [f for f in self.fields if f.struct_name == struct_name]

    def bm25_function_of(self, output_name: str) -> FunctionSchema | None:
        """The BM25 function whose output is field ``output_name``, if any."""
        return next((fn for fn in self.functions
                     if fn.type == FunctionType.BM25 and output_name in fn.output_field_names), None)

    def minhash_function_of(self, output_name: str) -> FunctionSchema | None:
        """The MinHash function whose output is field ``output_name``, if any."""
        return next((fn for fn in self.functions
                     if fn.type == FunctionType.MINHASH and output_name in fn.output_field_names), None)

    def function(self, name: str) -> FunctionSchema | None:
        """The schema function named ``name``, if any."""
        return next((fn for fn in self.functions if fn.name == name), None)

    # --- lookups -------------------------------------------------------
    @property
    def primary_field(self) -> FieldSchema:
        return next(f for f in self.fields if f.is_primary)

    @property
    def auto_id(self) -> bool:
        return self.primary_field.auto_id

    @property
    def vector_fields(self) -> list[FieldSchema]:
        return [f for f in self.fields if f.dtype.is_vector]

    @property
    def indexed_vector_fields(self) -> list[FieldSchema]:
        """The fields a load needs an index on: vector fields and the vector sub-fields of array-of-struct
        fields (Milvus 2.6 indexes every one of them)."""
        return [f for f in self.fields if f.dtype.is_vector or f.dtype == DataType.ARRAY_OF_VECTOR]

    @property
    def partition_key_field(self) -> FieldSchema | None:
        return next((f for f in self.fields if f.is_partition_key), None)

    @property
    def clustering_key_field(self) -> FieldSchema | None:
        return next((f for f in self.fields if f.is_clustering_key), None)

    @property
    def dynamic_field(self) -> FieldSchema | None:
        return next((f for f in self.fields if f.is_dynamic), None)

    def field(self, name: str) -> FieldSchema | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def next_field_id(self) -> int:
        """The id a field added now gets: above every field's, and every dropped field's."""
        return max([self.max_field_id, *(f.field_id for f in self.fields),
                    *(st.field_id for st in self.struct_fields)]) + 1

    def field_by_id(self, field_id: int) -> FieldSchema | None:
        for f in self.fields:
            if f.field_id == field_id:
                return f
        return None

    # --- persistence ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "enable_dynamic_field": self.enable_dynamic_field,
            "fields": [f.to_dict() for f in self.fields],
            **({"functions": [fn.to_dict() for fn in self.functions]} if self.functions else {}),
            **({"version": self.version} if self.version else {}),
            **({"update_ts": self.update_ts} if self.update_ts else {}),
            **({"struct_fields": [s.to_dict() for s in self.struct_fields]} if self.struct_fields else {}),
            **({"max_field_id": self.max_field_id} if self.max_field_id else {}),
            **({"enable_namespace": True} if self.enable_namespace else {}),
            **({"external_source": self.external_source} if self.external_source else {}),
            **({"external_spec": self.external_spec} if self.external_spec else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionSchema:
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            enable_dynamic_field=d.get("enable_dynamic_field", False),
            fields=[FieldSchema.from_dict(f) for f in d["fields"]],
            functions=[FunctionSchema.from_dict(fn) for fn in d.get("functions", ())],
            version=d.get("version", 0),
            update_ts=d.get("update_ts", 0),
            struct_fields=[StructArrayField.from_dict(s) for s in d.get("struct_fields", ())],
            max_field_id=d.get("max_field_id", 0),
            enable_namespace=d.get("enable_namespace", False),
            external_source=d.get("external_source", ""),
            external_spec=d.get("external_spec", ""),
        )

    # --- proto ---------------------------------------------------------
    @classmethod
    def from_proto(cls, pb, collection_name: str, zone: str = DEFAULT_ZONE) -> CollectionSchema:
        """Build and validate a schema from ``schema_pb2.CollectionSchema``.

        Assigns field ids (100, 101, ...) like Milvus and appends the hidden
        ``$meta`` JSON field when the dynamic field is enabled. ``zone``: the
        collection's time zone, in which a TIMESTAMPTZ default value without an
        offset is read.
        """
        from vecdb.struct_fields import parse_struct_fields  # (it imports this module)

        _refuse_unsupported_schema(pb)
        fields: list[FieldSchema] = []
        for i, fpb in enumerate(pb.fields):
            _refuse_unsupported_field(fpb)
            if fpb.name == NAMESPACE_FIELD:
                raise IllegalSchema(f"field name {NAMESPACE_FIELD} is reserved: the server adds it to a collection "
                                    f"with enable_namespace")
            if fpb.name == VIRTUAL_PK_FIELD:
                raise InvalidParameter(f"field name {json.dumps(VIRTUAL_PK_FIELD)} is reserved for internal use and "
                                       "cannot be used in user schemas")
            params = {kv.key: kv.value for kv in fpb.type_params}
            f = FieldSchema(
                name=fpb.name,
                dtype=_data_type(fpb.data_type, fpb.name),
                field_id=100 + i,
                description=fpb.description,
                is_primary=fpb.is_primary_key,
                auto_id=fpb.autoID or (fpb.is_primary_key and pb.autoID),
                is_partition_key=fpb.is_partition_key,
                is_dynamic=fpb.is_dynamic,
                element_type=_data_type(fpb.element_type, fpb.name) if fpb.element_type else DataType.NONE,
                type_params=params,
                is_clustering_key=fpb.is_clustering_key,
                external_field=getattr(fpb, "external_field", ""),
            )
            _refuse_struct_only_type(f)
            _parse_type_params(f, params)
            _parse_null_and_default(f, fpb, zone)
            fields.append(f)
        structs, subs = parse_struct_fields(pb, collection_name, 100 + len(fields) + 1,
                                            {f.name for f in fields})
        schema = cls(
            name=collection_name,
            description=pb.description,
            enable_dynamic_field=pb.enable_dynamic_field,
            fields=[f for f in fields if not f.is_dynamic] + subs,
            struct_fields=structs,
            enable_namespace=getattr(pb, "enable_namespace", False),
            external_source=getattr(pb, "external_source", ""),
            external_spec=getattr(pb, "external_spec", ""),
        )
        if schema.is_external or schema.external_spec:
            _prepare_external(schema, pb, collection_name)
        elif any(f.external_field for f in fields):
            raise InvalidParameter("external_field is only for the fields of an external collection "
                                   "(one with external_source)")
        _check_clustering_key(fields, collection_name)
        schema.functions = _parse_functions(pb, schema)
        if schema.enable_dynamic_field:
            schema.fields.append(
                FieldSchema(
                    name=DYNAMIC_FIELD, dtype=DataType.JSON, field_id=100 + len(fields),
                    is_dynamic=True, description="dynamic schema",
                )
            )
        schema.validate()
        return schema

    def to_proto(self, pb, zone: str = DEFAULT_ZONE) -> None:
        """Fill a ``schema_pb2.CollectionSchema`` message in place.

        The hidden ``$meta`` field is left out, as Milvus does: clients add it
        themselves when ``enable_dynamic_field`` is set. A TIMESTAMPTZ default
        value is written as an RFC 3339 string in ``zone`` (the collection's)."""
        pb.name = self.name
        pb.description = self.description
        pb.enable_dynamic_field = self.enable_dynamic_field
        pb.autoID = self.auto_id
        pb.version = self.version
        if self.enable_namespace:
            pb.enable_namespace = True
        if self.external_source:
            pb.external_source, pb.external_spec = self.external_source, self.external_spec
        for f in self.fields:
            if f.is_hidden or f.struct_name:
                continue
            fpb = pb.fields.add()
            fpb.fieldID = f.field_id
            fpb.name = f.name
            fpb.data_type = int(f.dtype)
            fpb.description = f.description
            fpb.is_primary_key = f.is_primary
            fpb.autoID = f.auto_id
            fpb.is_partition_key = f.is_partition_key
            fpb.is_dynamic = f.is_dynamic
            if f.element_type != DataType.NONE:
                fpb.element_type = int(f.element_type)
            for k, v in f.type_params.items():
                kv = fpb.type_params.add()
                kv.key, kv.value = k, str(v)
            if f.nullable:
                fpb.nullable = True
            if f.dtype == DataType.TIMESTAMPTZ and f.default_value is not None:  # kept as microseconds
                fpb.default_value.string_data = format_one(int(f.default_value), zone)
            elif f.default_value is not None:
                setattr(fpb.default_value, DEFAULT_VALUE_ATTR[f.dtype], f.default_value)
            if f.is_function_output:
                fpb.is_function_output = True
            if f.is_clustering_key:
                fpb.is_clustering_key = True
            if f.external_field:
                fpb.external_field = f.external_field
        for fn in self.functions:
            out = pb.functions.add()
            out.name, out.id, out.description, out.type = fn.name, fn.function_id, fn.description, int(fn.type)
            out.input_field_names.extend(fn.input_field_names)
            out.output_field_names.extend(fn.output_field_names)
            out.input_field_ids.extend(self.field(n).field_id for n in fn.input_field_names)  # type: ignore[union-attr]
            out.output_field_ids.extend(self.field(n).field_id for n in fn.output_field_names)  # type: ignore[union-attr]
            for k, v in fn.params.items():
                out.params.add(key=k, value=v)
        for st in self.struct_fields:  # sub-fields by their own names, as Milvus's describe gives them
            spb = pb.struct_array_fields.add(fieldID=st.field_id, name=st.name, description=st.description,
                                             nullable=st.nullable)
            for k, v in st.type_params.items():
                spb.type_params.add(key=k, value=v)
            for f in self.sub_fields(st.name):
                sub = spb.fields.add(fieldID=f.field_id, name=f.sub_name, data_type=int(f.dtype),
                                     element_type=int(f.element_type), description=f.description,
                                     nullable=st.nullable)  # as Milvus (and pymilvus's inserts) have it
                for k, v in f.type_params.items():
                    sub.type_params.add(key=k, value=str(v))

    # --- validation ----------------------------------------------------
    def validate(self) -> None:
        validate_collection_name(self.name)
        if not self.fields:
            raise IllegalSchema("schema has no fields")
        if len(self.fields) > LIMITS.max_fields:
            raise IllegalSchema(f"maximum field's number should be limited to {LIMITS.max_fields}")
        names = set()
        for f in self.fields:
            if not f.is_hidden:
                validate_field_name(f.sub_name)  # a struct's sub-field: its own name (``chunks[text]``: text)
            if f.name in names:
                raise IllegalSchema(f"duplicated field name {f.name}")
            names.add(f.name)
        primaries = [f for f in self.fields if f.is_primary]
        if len(primaries) != 1:
            raise IllegalSchema(
                "primary key is not specified" if not primaries else "there are more than one primary key"
            )
        pk = primaries[0]
        if pk.dtype not in (DataType.INT64, DataType.VARCHAR):
            raise IllegalSchema("the data type of primary key should be Int64 or VarChar")
        for f in self.fields:
            if f.auto_id and not f.is_primary:
                raise IllegalSchema(f"only primary field can speficy AutoID with True, field name = {f.name}")
        if not self.vector_fields and not any(f.dtype == DataType.ARRAY_OF_VECTOR for f in self.fields):
            raise IllegalSchema("schema does not contain vector field")
        pkeys = [f for f in self.fields if f.is_partition_key]
        if len(pkeys) > 1:
            raise IllegalSchema("there are more than one partition key")
        for f in pkeys:
            if f.is_primary:
                raise IllegalSchema("the partition key field must not be primary field")
            if f.dtype not in (DataType.INT64, DataType.VARCHAR):
                raise IllegalSchema("the data type of partition key should be Int64 or VarChar")


def added_field(schema: CollectionSchema, fpb, zone: str = DEFAULT_ZONE) -> FieldSchema:
    """The field ``fpb`` (``schema_pb2.FieldSchema``) of an ``add_collection_field`` on ``schema``,
    checked as Milvus 2.6 checks it: a new name, nullable (rows written before read as null, or as
    its default value when it has one), a scalar type or (Milvus 3.0) a vector (null in the rows
    before it: a search never returns them), never a primary, partition or clustering key, nor a
    function's output. Its id is the schema's largest plus one; ``field_id`` and the
    place in ``schema.fields`` are the coord's to set (``vecdb.coord.ddl``). ``zone``: the
    collection's time zone (a TIMESTAMPTZ default value without an offset is read in it)."""
    _refuse_unsupported_field(fpb)
    name = fpb.name
    validate_field_name(name)
    if schema.field(name) is not None or name == DYNAMIC_FIELD:
        raise InvalidParameter(f"duplicate field name: {name}")
    if fpb.is_primary_key:
        raise InvalidParameter(f"not support to add pk field, field name = {name}")
    if fpb.is_partition_key:
        raise InvalidParameter(f"not support to add partition key field, field name = {name}")
    if fpb.is_clustering_key:  # Milvus 2.6 takes one, when the collection has none yet
        if _data_type(fpb.data_type, name) not in CLUSTERING_KEY_TYPES:
            raise InvalidParameter(f"clustering key field {name} has unsupported data type "
                                   f"{_proto_type_name(_data_type(fpb.data_type, name))}")
        if schema.clustering_key_field is not None:
            raise InvalidParameter(f"already has another clustering key field, field name: {name}")
    if fpb.is_dynamic or fpb.is_function_output:
        raise InvalidParameter(f"not support to add a dynamic or function output field, field name = {name}")
    if not fpb.nullable:
        raise InvalidParameter(f"added field must be nullable, please check it, field name = {name}")
    params = {kv.key: kv.value for kv in fpb.type_params}
    f = FieldSchema(
        name=name, dtype=_data_type(fpb.data_type, name), description=fpb.description,
        element_type=_data_type(fpb.element_type, name) if fpb.element_type else DataType.NONE,
        type_params=params, is_clustering_key=fpb.is_clustering_key)
    _refuse_struct_only_type(f)
    if f.enable_analyzer or params.get("enable_match", "").strip().lower() == "true":
        raise _not_yet(f"an added field with an analyzer ({name})")
    if f.dtype.is_vector and f.dtype != DataType.SPARSE_FLOAT_VECTOR and "dim" not in params:  # (Milvus 3.0)
        raise InvalidParameter(f"vector field must have dimension specified, field name = {name}")
    _parse_type_params(f, params)
    _parse_null_and_default(f, fpb, zone)
    if len(schema.fields) + 1 > LIMITS.max_fields:  # counted as CollectionSchema.validate counts
        raise InvalidParameter(f"maximum field's number should be limited to {LIMITS.max_fields}")
    return f


ALTERABLE_FIELD_PROPERTIES = ("max_length", "max_capacity", "mmap.enabled")
_FIELD_PROPERTY_ALIASES = {"mmap_enabled": "mmap.enabled"}  # the name Milvus's API reference uses


def altered_field(f: FieldSchema, properties: dict[str, str], delete_keys: list[str]) -> FieldSchema:
    """A copy of ``f`` with the properties of an ``alter_collection_field`` applied, as Milvus 2.6
    allows them: ``max_length`` of a VARCHAR field (or ARRAY of VARCHAR), ``max_capacity`` of an
    ARRAY field, ``mmap.enabled`` (a hint kept in the field's type params, shown by describe);
    ``delete_keys`` may name ``mmap.enabled`` only. Anything else is refused (InvalidParameter)."""
    out = FieldSchema.from_dict(f.to_dict())
    out.type_params = dict(f.type_params)
    if f.is_primary or f.is_partition_key:  # Milvus: set at create, never altered
        raise InvalidParameter(f"the {'primary' if f.is_primary else 'partition key'} field {f.name} "
                               "can not be altered")
    properties = {_FIELD_PROPERTY_ALIASES.get(k, k): v for k, v in properties.items()}
    delete_keys = [_FIELD_PROPERTY_ALIASES.get(k, k) for k in delete_keys]
    for key in [*properties, *delete_keys]:
        if key not in ALTERABLE_FIELD_PROPERTIES:
            raise InvalidParameter(f"{key} does not allow update in collection field param")
    for key, value in properties.items():
        if key == "max_length":
            if not (f.dtype == DataType.VARCHAR or f.element_type == DataType.VARCHAR):
                raise InvalidParameter(f"{f.name} can not modify the maxlength for non-string types")
            try:
                n = int(value)
            except ValueError:
                raise InvalidParameter(f"max_length of field {f.name} must be an integer, got {value!r}") from None
            if not 1 <= n <= MAX_VARCHAR_LENGTH:
                raise InvalidParameter(f"{value} exceeds the maximum allowed value {MAX_VARCHAR_LENGTH}"
                                       if n > 0 else f"max_length of field {f.name} should be greater than 0")
            out.max_length, out.type_params["max_length"] = n, str(n)
        elif key == "max_capacity":
            if f.dtype != DataType.ARRAY:
                raise InvalidParameter(f"{f.name} can not modify the maxcapacity for non-array types")
            try:
                n = int(value)
            except ValueError:
                raise InvalidParameter(f"max_capacity of field {f.name} must be an integer, got {value!r}") from None
            if not 1 <= n <= MAX_ARRAY_CAPACITY:
                raise InvalidParameter(
                    f"the maximum capacity specified for a Array should be in (0, {MAX_ARRAY_CAPACITY}]")
            out.max_capacity, out.type_params["max_capacity"] = n, str(n)
        else:  # mmap.enabled
            if value.strip().lower() not in ("true", "false"):
                raise InvalidParameter(f"invalid mmap.enabled value: {value}, expected true or false")
            out.type_params[key] = value.strip().lower()
    for key in delete_keys:
        if key != "mmap.enabled":
            raise InvalidParameter(f"{key} cannot be deleted from a field's params")
        out.type_params.pop(key, None)
    return out


# Parts of the schema proto vecdb does not implement yet. Each is refused at create time:
# dropping it silently would give a collection that behaves differently from the one asked
# for (functions never run, ...). ``nullable`` and ``default_value`` are taken (see
# _parse_null_and_default), BM25 functions and analyzers too (_parse_functions). Proto parts not
# listed are taken or harmless to ignore: fieldID and state (the server assigns them),
# index_params (unused by Milvus at create), the schema's dbName (the request's db
# applies), version, properties, and type params that are storage hints (mmap_enabled).
# (multi_analyzer_params is taken since vecdb.analyzer.MultiAnalyzer; none is refused here now.)
_UNSUPPORTED_TEXT_PARAMS: tuple[str, ...] = ()


def _not_yet(what: str) -> IllegalSchema:
    return IllegalSchema(f"{what} is not supported by vecdb yet")


def _refuse_unsupported_schema(pb) -> None:
    other = [f.name or "?" for f in pb.functions if f.type not in (FunctionType.BM25, FunctionType.MINHASH)]
    if other:
        raise _not_yet(f"collection schema functions other than BM25 (embedding functions: {', '.join(other)})")


def _prepare_external(schema: CollectionSchema, pb, collection_name: str) -> None:
    """An external collection (Milvus 3.0) checked as Milvus's proxy checks it: its source and spec
    (vecdb.external_spec), every user field mapped to a column of its own, no key fields, no dynamic
    field, no struct, no sparse vector; then every scalar field made nullable (a file may lack a value)
    and the INT64 auto_id primary key ``__virtual_pk__`` added, the key each row a refresh reads gets."""
    from vecdb.external_spec import check_external  # noqa: PLC0415

    check_external(schema.external_source, schema.external_spec)
    if pb.enable_dynamic_field:
        raise InvalidParameter(f"external collection {collection_name} does not support dynamic field")
    if pb.struct_array_fields:
        raise InvalidParameter(f"external collection {collection_name} does not support struct fields")
    if pb.autoID:
        raise InvalidParameter(f"external collection {collection_name} does not support auto id")
    if pb.functions:
        raise InvalidParameter(f"external collection {collection_name} does not support functions")
    if getattr(pb, "enable_namespace", False):
        raise InvalidParameter(f"external collection {collection_name} does not support namespace")
    columns: dict[str, str] = {}
    for f in schema.fields:
        if f.is_primary:
            raise InvalidParameter(f"external collection {collection_name} does not support primary key field "
                                   f"{f.name}")
        if f.is_partition_key:
            raise InvalidParameter(f"external collection {collection_name} does not support partition key field "
                                   f"{f.name}")
        if f.is_clustering_key:
            raise InvalidParameter(f"external collection {collection_name} does not support clustering key field "
                                   f"{f.name}")
        if f.auto_id:
            raise InvalidParameter(f"external collection {collection_name} does not support auto id")
        if f.dtype == DataType.SPARSE_FLOAT_VECTOR:
            raise InvalidParameter(f"external collection {collection_name} does not support sparse vector field "
                                   f"{f.name}")
        if not f.external_field:
            raise InvalidParameter(f"field '{f.name}' in external collection {collection_name} must have "
                                   "external_field mapping")
        if f.external_field in columns:
            raise InvalidParameter(f"duplicate external_field {json.dumps(f.external_field)}: fields "
                                   f"{columns[f.external_field]} and {f.name} of external collection "
                                   f"{collection_name} map the same column")
        columns[f.external_field] = f.name
        if not f.dtype.is_vector:
            f.nullable = True
    if not schema.vector_fields:
        raise InvalidParameter(f"external collection {collection_name} must have at least one vector field")
    schema.fields.append(FieldSchema(name=VIRTUAL_PK_FIELD, dtype=DataType.INT64, field_id=100 + len(schema.fields),
                                     is_primary=True, auto_id=True))


def _refuse_struct_only_type(f: FieldSchema) -> None:
    """ARRAY_OF_VECTOR is for a struct's sub-fields only (Milvus's validateFieldType, 1100)."""
    if f.dtype in (DataType.ARRAY_OF_VECTOR, DataType.ARRAY_OF_STRUCT):
        raise InvalidParameter(f"array of vector can only be in the struct array field, field name: {f.name}")


def _refuse_unsupported_field(fpb) -> None:
    name = fpb.name
    for kv in fpb.type_params:
        if kv.key in _UNSUPPORTED_TEXT_PARAMS and kv.value.strip().lower() not in ("", "false"):
            raise _not_yet(f"type param {kv.key} of field ({name}) (text analysis and match)")


# The types a clustering key may have (Milvus's typeutil.IsClusteringKeyType); a FloatVector one is
# refused with 107 all the same, as Milvus does unless common.enableVectorClusteringKey is set.
CLUSTERING_KEY_TYPES = frozenset({DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT,
                                  DataType.DOUBLE, DataType.VARCHAR, DataType.FLOAT_VECTOR})


def _proto_type_name(dt: DataType) -> str:
    return _PROTO_TYPE_NAMES.get(dt, dt.name)


def _check_clustering_key(fields: list[FieldSchema], collection_name: str) -> None:
    """At most one clustering key, of a type Milvus's createCollectionTask.validateClusteringKey takes
    (105), never a vector (107, Milvus's default)."""
    first: FieldSchema | None = None
    for f in fields:
        if not f.is_clustering_key:
            continue
        if f.dtype not in CLUSTERING_KEY_TYPES:
            raise IllegalSchema(f"clustering key field {f.name} has unsupported data type {_proto_type_name(f.dtype)}")
        if f.dtype.is_vector:
            raise VectorClusteringKeyNotAllowed(f"vector clustering key not allowed[collection={collection_name}]")
        if first is not None:
            raise IllegalSchema(f"there are more than one clustering key, field name = {first.name}, {f.name}")
        first = f


def _check_multi_analyzer(schema: CollectionSchema, f: FieldSchema, collection_name: str) -> None:
    """A field's ``multi_analyzer_params``, checked as Milvus's ``validateAnalyzer`` and
    ``validateMultiAnalyzerParams`` do (their messages; 1100 here, where Milvus answers 65535): no
    ``enable_match`` with it, no ``analyzer_params`` beside it, ``by_field`` an existing VARCHAR field,
    the analyzers valid, one of them ``default`` (vecdb.analyzer.parse_multi_params)."""
    from vecdb.analyzer import parse_multi_params  # (vecdb.analyzer imports vecdb.sparse, not the schema)

    if f.type_params.get("enable_match", "").strip().lower() == "true":
        raise InvalidParameter(f"multi analyzer now only support for bm25, but now field {f.name} enable match")
    if "analyzer_params" in f.type_params:
        raise InvalidParameter(f"field {f.name} analyzer params should be none if has multi analyzer params")
    multi = parse_multi_params(f.type_params["multi_analyzer_params"], f.name)
    by = schema.field(multi.by_field)
    if by is None or by.is_dynamic:
        raise InvalidParameter(f"multi analyzer dependent field {json.dumps(multi.by_field)} not exist in "
                               f"collection {collection_name}")
    if by.dtype != DataType.VARCHAR:
        raise InvalidParameter(f"multi analyzer params now only support by string field, but field {by.name} is "
                               "not string")


def _parse_functions(pb, schema: CollectionSchema) -> list[FunctionSchema]:
    """BM25 and MinHash functions, checked as Milvus's validateFunction does (1100 with its messages); each
    output field is marked ``is_function_output``. Analyzer params are checked on every field that
    enables the analyzer (vecdb.analyzer.parse_params)."""
    from vecdb.analyzer import parse_params  # (vecdb.analyzer imports vecdb.sparse, not the schema)

    for f in schema.fields:
        if f.type_params.get("enable_match", "").strip().lower() == "true" and not f.enable_analyzer:
            raise InvalidParameter(f"field {f.name} is set to enable match but not enable analyzer")
        if f.enable_analyzer:
            if f.dtype not in (DataType.VARCHAR, DataType.TEXT):
                raise InvalidParameter(f"enable_analyzer is only for VARCHAR fields (and TEXT), field {f.name} is "
                                       f"{_PROTO_TYPE_NAMES.get(f.dtype, f.dtype.name)}")
            if "multi_analyzer_params" in f.type_params:
                _check_multi_analyzer(schema, f, pb.name)
            else:
                parse_params(f.type_params.get("analyzer_params"), f.name)
    out: list[FunctionSchema] = []
    used_names: set[str] = set()
    used_outputs: set[str] = set()
    for fpb in pb.functions:
        name = fpb.name
        inputs, outputs = list(fpb.input_field_names), list(fpb.output_field_names)
        if not name:
            raise InvalidParameter("function name cannot be empty")
        if not inputs:
            raise InvalidParameter(f"function input field names cannot be empty, function: {name}")
        if not outputs:
            raise InvalidParameter(f"function output field names cannot be empty, function: {name}")
        for i in inputs:
            if not i:
                raise InvalidParameter(f"function input field name cannot be empty string, function: {name}")
            if inputs.count(i) > 1:
                raise InvalidParameter("each function input field should be used exactly once in the same "
                                       f"function, function: {name}, input field: {i}")
        for o in outputs:
            if not o:
                raise InvalidParameter(f"function output field name cannot be empty string, function: {name}")
            if o in inputs:
                raise InvalidParameter("a single field cannot be both input and output in the same function, "
                                       f"function: {name}, field: {o}")
            if outputs.count(o) > 1:
                raise InvalidParameter("each function output field should be used exactly once in the same "
                                       f"function, function: {name}, output field: {o}")
        minhash = fpb.type == FunctionType.MINHASH
        kind = "MinHash" if minhash else "BM25"
        if len(fpb.params) and not minhash:
            raise InvalidParameter("BM25 function accepts no params")
        if name in used_names:
            raise InvalidParameter(f"duplicate function name: {name}")
        used_names.add(name)
        in_fields = []
        for i in inputs:
            inf = schema.field(i)
            if inf is None:
                raise InvalidParameter(f"function input field not found: {i}")
            if inf.nullable and minhash:  # (a null BM25 input has no terms: Milvus 2.5.x / 2.6 take it)
                raise InvalidParameter(f"function input field cannot be nullable: function {name}, field {i}")
            in_fields.append(inf)
        if len(in_fields) != 1 or in_fields[0].dtype not in (DataType.VARCHAR, DataType.TEXT):
            got = _PROTO_TYPE_NAMES.get(in_fields[0].dtype, in_fields[0].dtype.name)
            raise InvalidParameter(
                f"{kind} function input field must be a {'VARCHAR/TEXT' if minhash else 'VARCHAR'} field, got "
                f"{len(in_fields)} field with type {got}")
        if not minhash and not in_fields[0].enable_analyzer:
            raise InvalidParameter("BM25 function input field must set enable_analyzer to true")
        out_fields = []
        for o in outputs:
            outf = schema.field(o)
            if outf is None:
                raise InvalidParameter(f"function output field not found: {o}")
            if outf.is_primary:
                raise InvalidParameter(f"function output field cannot be primary key: function {name}, field {o}")
            if outf.is_partition_key or outf.is_clustering_key:
                raise InvalidParameter("function output field cannot be partition key or clustering key: "
                                       f"function {name}, field {o}")
            if outf.nullable:
                raise InvalidParameter(f"function output field cannot be nullable: function {name}, field {o}")
            if o in used_outputs:
                raise InvalidParameter(f"duplicate function output field: function {name}, field {o}")
            used_outputs.add(o)
            out_fields.append(outf)
        if len(out_fields) != 1:
            raise InvalidParameter(f"{kind} function only need 1 output field, but got {len(out_fields)}")
        want = DataType.BINARY_VECTOR if minhash else DataType.SPARSE_FLOAT_VECTOR
        if out_fields[0].dtype != want:
            raise InvalidParameter(f"{kind} function output field must be a "
                                   f"{'BinaryVector' if minhash else 'SparseFloatVector'} field, but got "
                                   f"{_PROTO_TYPE_NAMES.get(out_fields[0].dtype, out_fields[0].dtype.name)}")
        params = {kv.key: kv.value for kv in fpb.params}
        if minhash:
            _check_minhash(params, in_fields[0], out_fields[0])
        out_fields[0].is_function_output = True
        out.append(FunctionSchema(name=name, type=FunctionType(fpb.type), input_field_names=inputs,
                                  output_field_names=outputs, description=fpb.description,
                                  function_id=100 + len(out), params=params))
    return out


def _check_minhash(params: dict[str, str], in_field: FieldSchema, out_field: FieldSchema) -> None:
    """A MinHash function's params against its output dim (Milvus's ValidateMinHashFunction, 1100), and
    the analyzer its word tokens come from (the input's ``analyzer_params``, with or without
    ``enable_analyzer``, as Milvus's runner builds it)."""
    from vecdb.analyzer import parse_params  # noqa: PLC0415
    from vecdb.minhash_function import parse_spec  # noqa: PLC0415

    if not parse_spec(params, out_field.name, out_field.dim).char_level:
        parse_params(in_field.type_params.get("analyzer_params"), in_field.name)


# The ValueField member a default value of each field type travels in (Milvus's checkFieldSchema);
# JSON, ARRAY and vector fields take no default value.
DEFAULT_VALUE_ATTR = {
    DataType.BOOL: "bool_data", DataType.INT8: "int_data", DataType.INT16: "int_data",
    DataType.INT32: "int_data", DataType.INT64: "long_data", DataType.FLOAT: "float_data",
    DataType.DOUBLE: "double_data", DataType.VARCHAR: "string_data",
    DataType.TIMESTAMPTZ: "string_data",  # ISO 8601, kept as int64 microseconds (Milvus: timestamptz_data)
    DataType.GEOMETRY: "string_data",  # WKT, kept as vecdb.geometry normalizes it
}
_DEFAULT_KIND_NAME = {"bool_data": "DataType_Bool", "int_data": "DataType_Int", "long_data": "DataType_Int64",
                      "float_data": "DataType_Float", "double_data": "DataType_Double",
                      "string_data": "DataType_VarChar", "bytes_data": "DataType_Bytes",
                      "timestamptz_data": "DataType_Timestamptz"}
_SMALL_INT_RANGE = {DataType.INT8: (-128, 127), DataType.INT16: (-32768, 32767),
                    DataType.INT32: (-(2**31), 2**31 - 1)}


def valid_key(name: str) -> str:
    """The key of a nullable field's validity mask (bool per row, False: null) among a batch's or a
    segment's columns. ``$`` cannot start a field name, so it never clashes with a field."""
    return "$valid." + name


# Milvus 3.0 (pkg/util/typeutil/nullable_vector.go IsSupportedNullableVectorType): the vector types a
# field may be nullable of. A null row's vector is stored as a placeholder (zeros; an empty sparse row)
# under the field's validity mask, and a search never returns it.
NULLABLE_VECTOR_TYPES = frozenset({
    DataType.FLOAT_VECTOR, DataType.BINARY_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR,
    DataType.INT8_VECTOR, DataType.SPARSE_FLOAT_VECTOR})


def _parse_null_and_default(f: FieldSchema, fpb, zone: str = DEFAULT_ZONE) -> None:
    """``nullable`` and ``default_value`` as Milvus 2.5 takes them: scalar fields only, never the
    primary key (nor the partition key for nullable), a default value of the field's type. A
    TIMESTAMPTZ one (Milvus 2.6) is an ISO 8601 string, one without an offset read in ``zone``
    (the collection's), kept as int64 microseconds (or sent as them, ``timestamptz_data``)."""
    name = f.name
    if fpb.nullable:
        if f.is_primary:
            raise InvalidParameter(f"primary field not support null, name:{name}")
        if f.dtype.is_vector and f.dtype not in NULLABLE_VECTOR_TYPES:
            type_name = _PROTO_TYPE_NAMES.get(f.dtype, f.dtype.name)
            raise InvalidParameter(f"vector type not support null, type:{type_name}, name:{name}")
        if f.is_partition_key:
            raise InvalidParameter(f"partition key field not support nullable, name:{name}")
        f.nullable = True
    if not fpb.HasField("default_value"):
        return
    kind = fpb.default_value.WhichOneof("data")
    if kind is None:  # an empty ValueField: no default value
        return
    if f.is_primary:
        raise InvalidParameter(f"primary field not support default_value, name:{name}")
    want = DEFAULT_VALUE_ATTR.get(f.dtype)
    if want is None:
        type_name = _PROTO_TYPE_NAMES.get(f.dtype, f.dtype.name)
        raise InvalidParameter(f"type not support default_value, type:{type_name}, name:{name}")
    if kind != want and not (f.dtype == DataType.TIMESTAMPTZ and kind == "timestamptz_data"):
        raise InvalidParameter(
            f"invalid parameter[expected={_DEFAULT_KIND_NAME.get(kind, kind)}][actual=not match]: "
            f"default value type mismatches field schema type, field: {name}")
    value = getattr(fpb.default_value, kind)
    if f.dtype == DataType.TIMESTAMPTZ and kind == "string_data":
        try:
            value = parse_iso(value, zone)
        except InvalidParameter as e:
            raise InvalidParameter(f"invalid default value of field, name: {name}, err: {e.message}") from None
    if f.dtype == DataType.GEOMETRY:  # a WKT string, normalized as an inserted value is
        from vecdb.geometry import normalize_wkt  # (shapely, only where a geometry field is)

        try:
            value = normalize_wkt([value], name)[0]
        except InvalidParameter as e:
            raise InvalidParameter(f"invalid default value of field, name: {name}, err: {e.message}") from None
    if f.dtype in _SMALL_INT_RANGE:
        lo, hi = _SMALL_INT_RANGE[f.dtype]
        if not lo <= value <= hi:
            raise InvalidParameter(
                f"default value out of range, field: {name}, value: {value}, range: [{lo}, {hi}]")
    if f.dtype == DataType.VARCHAR and len(value.encode("utf-8", "surrogatepass")) > f.max_length:
        raise InvalidParameter(
            f"the length ({len(value.encode('utf-8', 'surrogatepass'))}) of string exceeds max length "
            f"({f.max_length}), field: {name}")
    if f.dtype in (DataType.FLOAT, DataType.DOUBLE) and not math.isfinite(value):
        # Milvus 2.3.5 stores them; an inserted NaN or ±inf is refused (Milvus 2.4+), so is a default
        raise InvalidParameter(f"default value of field {name} is NaN or infinity: {value}")
    f.default_value = value


_PROTO_TYPE_NAMES = {
    DataType.FLOAT_VECTOR: "FloatVector", DataType.BINARY_VECTOR: "BinaryVector",
    DataType.FLOAT16_VECTOR: "Float16Vector", DataType.BFLOAT16_VECTOR: "BFloat16Vector",
    DataType.SPARSE_FLOAT_VECTOR: "SparseFloatVector", DataType.INT8_VECTOR: "Int8Vector",
    DataType.JSON: "JSON", DataType.ARRAY: "Array",
    DataType.BOOL: "Bool", DataType.INT8: "Int8", DataType.INT16: "Int16", DataType.INT32: "Int32",
    DataType.INT64: "Int64", DataType.FLOAT: "Float", DataType.DOUBLE: "Double", DataType.VARCHAR: "VarChar",
    DataType.TIMESTAMPTZ: "Timestamptz", DataType.GEOMETRY: "Geometry", DataType.TEXT: "Text",
}


def _data_type(value: int, name: str) -> DataType:
    try:
        dt = DataType(value)
    except ValueError:
        raise IllegalSchema(f"field {name}: data type {value} is not supported") from None
    if dt in (DataType.NONE, DataType.STRING):
        raise IllegalSchema(f"field {name}: data type {dt.name} is not supported")
    return dt


def _int_param(params: dict[str, str], key: str, field_name: str) -> int | None:
    if key not in params:
        return None
    try:
        return int(params[key])
    except ValueError:
        raise IllegalSchema(f"field {field_name}: {key} must be an integer, got {params[key]!r}") from None


def _parse_type_params(f: FieldSchema, params: dict[str, str]) -> None:
    if f.dtype == DataType.SPARSE_FLOAT_VECTOR:  # no dim: any uint32 index below 2^32-1
        if "dim" in params:
            raise IllegalSchema(f"dim should not be specified for the sparse vector field {f.name}")
    elif f.dtype.is_vector:
        dim = _int_param(params, "dim", f.name)
        if dim is None:
            raise IllegalSchema(f"dimension is not defined in field type params of field {f.name}")
        if not 1 <= dim <= LIMITS.max_dim:
            raise IllegalSchema(f"invalid dimension: {dim}. should be in range 1 ~ {LIMITS.max_dim}")
        if f.dtype == DataType.BINARY_VECTOR and dim % 8:
            raise IllegalSchema(f"invalid dimension: {dim}. binary vector dimension should be multiple of 8")
        f.dim = dim
    if f.dtype == DataType.VARCHAR or (f.dtype == DataType.ARRAY and f.element_type == DataType.VARCHAR):
        ml = _int_param(params, "max_length", f.name)
        if ml is None:
            raise IllegalSchema(f"type param(max_length) should be specified for varChar field({f.name})")
        if not 1 <= ml <= MAX_VARCHAR_LENGTH:
            raise IllegalSchema(
                f"the maximum length specified for a VarChar field({f.name}) should be in (0, {MAX_VARCHAR_LENGTH}]"
            )
        f.max_length = ml
    if f.dtype == DataType.ARRAY:
        if f.element_type not in ARRAY_ELEMENT_TYPES:
            raise IllegalSchema(f"field {f.name}: element type {f.element_type.name} is not supported in ARRAY")
        cap = _int_param(params, "max_capacity", f.name)
        if cap is None:
            raise IllegalSchema(f"type param(max_capacity) should be specified for array field {f.name}")
        if not 1 <= cap <= MAX_ARRAY_CAPACITY:
            raise IllegalSchema(f"the maximum capacity specified for a Array should be in (0, {MAX_ARRAY_CAPACITY}]")
        f.max_capacity = cap


def validate_collection_name(name: str, what: str = "collection name") -> None:
    if not name:
        raise InvalidParameter(f"{what} should not be empty")
    if len(name) > 255:
        raise InvalidParameter(f"the length of {what} must be not greater than limit 255")
    if not _COLLECTION_NAME_RE.match(name):
        raise InvalidParameter(
            f"Invalid {what}: {name}. {what} can only contain numbers, letters and underscores, "
            "and must start with a letter or underscore"
        )


def validate_partition_name(name: str) -> None:
    """As a collection name, but it may start with a digit too (Milvus's validatePartitionTag)."""
    if name and len(name) <= 255 and _PARTITION_NAME_RE.match(name):
        return
    if name and len(name) <= 255:
        raise InvalidParameter(
            f"Invalid partition name: {name}. partition name can only contain numbers, letters and underscores")
    validate_collection_name(name, "partition name")


def validate_field_name(name: str) -> None:
    if not name or len(name) > 255 or not _NAME_RE.match(name):
        raise IllegalSchema(
            f"Invalid field name: {name!r}. Field name can only contain numbers, letters and underscores, "
            "and must start with a letter or underscore"
        )

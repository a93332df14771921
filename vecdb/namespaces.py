"""Namespaces (Milvus 3.0): tenants sharing one collection, each write and read naming its own.

A collection created with ``enable_namespace`` (pymilvus: ``create_schema(enable_namespace=True)``)
takes a ``namespace`` on every insert, upsert, search, query and hybrid search, and keeps each
namespace's rows apart. How, its ``namespace.mode`` property says (fixed at create):

- ``partition_key`` (the default): the server adds a hidden VARCHAR partition key, ``$namespace_id``
  (``vecdb.schema.NAMESPACE_FIELD``), fills it with the request's namespace for every row written,
  and ANDs ``$namespace_id == "<namespace>"`` into a read's filter. Any number of namespaces, none
  created beforehand; the collection may have no partition key of its own.
- ``partition``: each namespace is a partition of its name, made with ``CreateNamespace`` (or
  ``create_partition``); a write goes to it, a read covers it alone. The namespace RPCs
  (``Create/Describe/Drop/HasNamespace``, ``ListNamespaces``, ``GetNamespaceStats``) serve this mode.

A read or write that leaves the namespace out on such a collection is refused, as one naming a
namespace on a collection without them is (1100), so one tenant's request never sees another's rows
by mistake. A delete may leave it out (Milvus's too): it then deletes what its filter matches in
every namespace; naming one deletes only there.
"""

from __future__ import annotations

from pymilvus.grpc_gen import schema_pb2

from vecdb import errors
from vecdb.expr.parser import parse
from vecdb.schema import MAX_VARCHAR_LENGTH, NAMESPACE_FIELD, CollectionSchema, DataType, FieldSchema

MODE_KEY = "namespace.mode"
PARTITION_KEY_MODE = "partition_key"
PARTITION_MODE = "partition"
MODES = (PARTITION_KEY_MODE, PARTITION_MODE)
FIXED_PROPERTIES = (MODE_KEY,)  # set at create only (alter_collection_properties refuses them)
PARTITION_NAMES_WITH_NAMESPACE = "not support manually specifying the partition names if namespace is used"


def prepare(schema: CollectionSchema, properties: dict[str, str]) -> None:
    """At create: check the namespace settings, and in ``partition_key`` mode add ``$namespace_id``."""
    mode = properties.get(MODE_KEY)
    if not schema.enable_namespace:
        if mode is not None:
            raise errors.InvalidParameter(f"{MODE_KEY} is set but the schema does not enable namespace "
                                          f"(create_schema(enable_namespace=True))")
        return
    mode = (mode or PARTITION_KEY_MODE).strip()
    if mode not in MODES:
        raise errors.InvalidParameter(f"invalid {MODE_KEY} value: {mode}, expected {' or '.join(MODES)}")
    if mode != PARTITION_KEY_MODE:
        return
    if schema.partition_key_field is not None:
        raise errors.InvalidParameter("namespace is not supported with partition key mode: the collection's "
                                      f"field {schema.partition_key_field.name} is a partition key")
    schema.fields.append(FieldSchema(
        name=NAMESPACE_FIELD, dtype=DataType.VARCHAR, field_id=schema.next_field_id(), is_partition_key=True,
        max_length=MAX_VARCHAR_LENGTH, type_params={"max_length": str(MAX_VARCHAR_LENGTH)},
        description="namespace"))


def mode_of(schema: CollectionSchema, properties: dict[str, str]) -> str | None:
    """The collection's namespace mode; None without namespaces."""
    if not schema.enable_namespace:
        return None
    return properties.get(MODE_KEY, PARTITION_KEY_MODE).strip() or PARTITION_KEY_MODE


def of_request(info, request, *, required: bool = True) -> str | None:
    """The namespace a request names (None: none), checked against collection ``info`` (a
    ``CollectionInfo``): required there when it has namespaces (unless ``required`` is off: a
    delete), refused where it has none."""
    given = request.HasField("namespace") if "namespace" in request.DESCRIPTOR.fields_by_name else False
    mode = mode_of(info.schema, info.properties)
    if mode is None:
        if given:
            raise errors.InvalidParameter(f"namespace is not enabled in collection {info.name}: create it with "
                                          f"enable_namespace to write and read by namespace")
        return None
    if not given:
        if required:
            raise errors.InvalidParameter(f"collection {info.name} has namespace enabled: the request must name "
                                          f"a namespace")
        return None
    ns = request.namespace
    if mode == PARTITION_MODE:
        from vecdb.schema import validate_collection_name

        validate_collection_name(ns, "namespace name")
    elif not ns:
        raise errors.InvalidParameter("namespace should not be empty")
    elif len(ns.encode()) > MAX_VARCHAR_LENGTH:
        raise errors.InvalidParameter(f"the length of namespace exceeds {MAX_VARCHAR_LENGTH} bytes")
    return ns


def scoped_expr(info, ns: str | None, expr: str) -> str:
    """A read's (or delete's) filter narrowed to namespace ``ns`` (``partition_key`` mode)."""
    if ns is None or mode_of(info.schema, info.properties) != PARTITION_KEY_MODE:
        return expr
    literal = '"' + ns.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    cond = f"{NAMESPACE_FIELD} == {literal}"
    if not (expr or "").strip():
        return cond
    parse(expr)  # a whole expression on its own (else refused), so the parentheses hold all of it
    return f"({cond}) and ({expr})"


def scoped_partitions(info, ns: str | None, names) -> list[str]:
    """The partitions a read (or delete) names, with namespace ``ns`` (``partition`` mode: its own)."""
    names = [n for n in names if n]
    if ns is None or mode_of(info.schema, info.properties) != PARTITION_MODE:
        return names
    if any(n != ns for n in names):
        raise errors.InvalidParameter(PARTITION_NAMES_WITH_NAMESPACE)
    return [ns]


def write_partition(info, ns: str | None, partition_name: str) -> str:
    """The partition an insert or upsert names, with namespace ``ns`` (``partition`` mode: its own)."""
    if ns is None or mode_of(info.schema, info.properties) != PARTITION_MODE:
        return partition_name
    if partition_name and partition_name != ns:
        raise errors.InvalidParameter(f'partition name "{partition_name}" mismatches namespace "{ns}"')
    return ns


def fill_column(info, ns: str | None, request) -> None:
    """Add ``$namespace_id`` to an insert's or upsert's columns (``partition_key`` mode): ``ns`` for
    every row. Rows that already carry the field must all hold ``ns``."""
    if ns is None or mode_of(info.schema, info.properties) != PARTITION_KEY_MODE:
        return
    for fd in request.fields_data:
        if fd.field_name == NAMESPACE_FIELD:
            values = fd.scalars.string_data.data
            if not fd.scalars.HasField("string_data") or any(v != ns for v in values):
                raise errors.InvalidParameter(f"the {NAMESPACE_FIELD} values mismatch namespace {ns!r}")
            return
    fd = request.fields_data.add(type=schema_pb2.VarChar, field_name=NAMESPACE_FIELD)
    fd.scalars.string_data.data.extend([ns] * request.num_rows)

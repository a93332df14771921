"""The target of a CDC task, written through pymilvus: a target collection's schema as the source's
(``target_schema``, ``field_kwargs``), an insert record's rows as pymilvus takes them (``rows_of``,
``by_namespace``), their upsert (``upsert_rows``), and the endpoint itself, one MilvusClient per
database (``Target``). Nothing here knows a task's state (``vecdb.cdc.replicator`` does)."""

from __future__ import annotations

import json
from typing import Any

import grpc
import numpy as np

from vecdb import namespaces, timestamptz
from vecdb.catalog_model import DEFAULT_DB, CollectionInfo
from vecdb.log_records import InsertRecord
from vecdb.schema import DYNAMIC_FIELD, NAMESPACE_FIELD, CollectionSchema, DataType, FieldSchema, valid_key

TARGET_TIMEOUT = 30.0  # seconds: connecting to the target, and each upsert or delete of rows there


def target_schema(schema: CollectionSchema):
    """The pymilvus schema of a target collection: the source's, with auto_id off (ids are copied)."""
    from pymilvus import DataType as PDataType  # type: ignore[import-untyped]
    from pymilvus import MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=schema.enable_dynamic_field,
                                   description=schema.description,
                                   **({"enable_namespace": True} if schema.enable_namespace else {}))
    for f in schema.fields:
        if f.is_hidden or f.struct_name:  # ($namespace_id: the target's own, filled from each upsert's namespace)
            continue
        s.add_field(f.name, PDataType(int(f.dtype)), is_primary=f.is_primary, auto_id=False,
                    description=f.description, **field_kwargs(f))
    for st in schema.struct_fields:  # array-of-struct fields: each sub-field as its element type
        struct = MilvusClient.create_struct_field_schema()
        for f in schema.sub_fields(st.name):
            sub = FieldSchema.from_dict({**f.to_dict(), "dtype": int(f.element_type), "element_type": 0})
            struct.add_field(f.sub_name, PDataType(int(f.element_type)), description=f.description,
                             **field_kwargs(sub))
        s.add_field(st.name, PDataType.ARRAY, element_type=PDataType.STRUCT, struct_schema=struct,
                    max_capacity=st.max_capacity, description=st.description,
                    **({"nullable": True} if st.nullable else {}))  # (one added later: add_collection_struct_field)
    for fn in schema.functions:  # the target computes its BM25 / MinHash outputs itself from the copied text
        from pymilvus import Function, FunctionType

        s.add_function(Function(fn.name, FunctionType(int(fn.type)), fn.input_field_names, fn.output_field_names,
                                description=fn.description, params=dict(fn.params) or None))
    return s


def field_kwargs(f) -> dict[str, Any]:
    """The pymilvus keyword arguments (``add_field``, ``add_collection_field``) of a field's type
    params, nullability, default value and analyzer."""
    from pymilvus import DataType as PDataType

    kw: dict[str, Any] = {}
    if f.dtype.is_vector and f.dtype != DataType.SPARSE_FLOAT_VECTOR:
        kw["dim"] = f.dim
    if f.dtype == DataType.VARCHAR or (f.dtype == DataType.ARRAY and f.element_type == DataType.VARCHAR):
        kw["max_length"] = f.max_length
    if f.dtype == DataType.ARRAY:
        kw["element_type"] = PDataType(int(f.element_type))
        kw["max_capacity"] = f.max_capacity
    if f.is_partition_key:
        kw["is_partition_key"] = True
    if f.is_clustering_key:
        kw["is_clustering_key"] = True
    if f.nullable:
        kw["nullable"] = True
    if f.dtype == DataType.TIMESTAMPTZ and f.default_value is not None:  # microseconds: as an ISO string
        kw["default_value"] = timestamptz.format_one(int(f.default_value))
    elif f.default_value is not None:
        kw["default_value"] = f.default_value
    if f.enable_analyzer:  # full text (BM25): the analyzer travels with the field
        kw["enable_analyzer"] = True
        if f.type_params.get("analyzer_params"):
            kw["analyzer_params"] = json.loads(f.type_params["analyzer_params"])
        if f.type_params.get("multi_analyzer_params"):
            kw["multi_analyzer_params"] = json.loads(f.type_params["multi_analyzer_params"])
        if f.type_params.get("enable_match", "").strip().lower() == "true":  # text_match on the target too
            kw["enable_match"] = True
    return kw


def rows_of(schema: CollectionSchema, columns: dict[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    """pymilvus rows of an insert record's columns (vecdb.schema's column representation)."""
    names, values = [], []
    for f in schema.fields:
        col = columns.get(f.name)
        if col is None or f.is_hidden or f.is_function_output or f.struct_name:  # (the target's function
            continue  # fills it; a struct's sub-fields go in below; the target fills $namespace_id too)
        if f.dtype in (DataType.BINARY_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR):
            raw = np.ascontiguousarray(col).tobytes()  # pymilvus takes each row's raw bytes for these
            width = len(raw) // n if n else 0
            vals: list = [raw[i * width:(i + 1) * width] for i in range(n)]
        elif f.dtype == DataType.INT8_VECTOR:  # pymilvus takes np.int8 rows
            vals = list(np.asarray(col, np.int8))
        elif f.dtype == DataType.TIMESTAMPTZ:  # ISO strings, as pymilvus sends them
            vals = timestamptz.format_column(col)
        elif f.dtype == DataType.ARRAY:
            vals = [np.asarray(a).tolist() for a in col]
        else:
            vals = col.tolist()
        valid = columns.get(valid_key(f.name)) if f.nullable else None
        if valid is not None and not valid.all():  # a null travels as None
            for i in np.flatnonzero(~np.asarray(valid, bool)).tolist():
                vals[i] = None
        names.append(f.name)
        values.append(vals)
    rows = [dict(zip(names, vals)) for vals in zip(*values)] if values else [{} for _ in range(n)]
    for st in schema.struct_fields:  # a list of {sub-field: value} per row, as pymilvus takes it
        subs = [(f.sub_name, columns[f.name].tolist()) for f in schema.sub_fields(st.name) if f.name in columns]
        if subs:
            for i, row in enumerate(rows):
                cells = [(sub, np.asarray(col[i]).tolist()) for sub, col in subs]
                row[st.name] = [dict(zip([c[0] for c in cells], vals)) for vals in zip(*[c[1] for c in cells])]
    meta = columns.get(DYNAMIC_FIELD)
    if meta is not None and schema.enable_dynamic_field:
        for row, extra in zip(rows, meta.tolist()):
            if extra:
                row.update(extra)
    return rows


def by_namespace(info: CollectionInfo, rec: InsertRecord, rows: list[dict], partition: str):
    """``(namespace, rows)`` groups of an insert record's rows (vecdb.namespaces): one group with no
    namespace where the collection has none; by ``$namespace_id`` in partition_key mode; the
    partition's name in partition mode."""
    mode = namespaces.mode_of(info.schema, info.properties)
    if mode is None:
        return [(None, rows)]
    if mode == namespaces.PARTITION_MODE:
        return [(partition, rows)]
    col = np.asarray(rec.columns[NAMESPACE_FIELD], dtype=object)
    return [(ns, [rows[i] for i in np.flatnonzero(col == ns).tolist()]) for ns in np.unique(col).tolist()]


def upsert_rows(client, name: str, rows: list[dict], partition_name: str, namespace: str | None,
                timeout: float) -> None:
    """``client.upsert`` of ``rows``; with a ``namespace``, which pymilvus 3.0.2's ``upsert`` does not
    send, the request pymilvus builds goes with it (its stub, the client's database)."""
    if namespace is None:  # (with a deadline: pymilvus's calls have none, and a target that stops answering
        # without closing the connection held the task in the call for good, its lag and error not reported)
        client.upsert(name, rows, partition_name=partition_name, timeout=timeout)
        return
    from pymilvus.client.call_context import _api_level_md  # type: ignore[import-untyped]
    from pymilvus.client.utils import check_status  # type: ignore[import-untyped]

    conn = client._get_connection()
    ctx = client._generate_call_context()
    request = conn._prepare_row_upsert_request(name, rows, partition_name, timeout=timeout, context=ctx)
    request.namespace = namespace
    check_status(conn._stub.Upsert(request, timeout=timeout, metadata=_api_level_md(ctx)).status)


def pk_literal(key: Any, is_str: bool) -> str:
    """A primary key as a filter literal: a VARCHAR one double-quoted with Go/C escapes (JSON's, which
    Milvus's and vecdb's parsers read: ``\\"``, ``\\\\``, ``\\n``, ``\\u0001``), non-ASCII as it is."""
    return json.dumps(str(key), ensure_ascii=False) if is_str else str(int(key))


DELETE_KEYS = 10_000  # keys per delete call at most
DELETE_FILTER_CHARS = 256 << 10  # and characters of their literals (a filter's length is bounded: 1 MiB in vecdb)


def delete_rows(client, name: str, schema: CollectionSchema, ids: list, partition_name: str | None,
                timeout: float) -> None:
    """``client.delete`` of the rows whose primary keys are ``ids``, through filters of escaped literals
    (``DELETE_KEYS`` keys and ``DELETE_FILTER_CHARS`` characters each at most): pymilvus's
    ``delete(ids=...)`` quotes a VARCHAR key with ``'`` and no escapes, so a key holding a quote or a
    backslash made the target refuse the delete, and the task retried it for ever."""
    pk = schema.primary_field
    is_str = pk.dtype == DataType.VARCHAR
    kw = {"partition_name": partition_name} if partition_name else {}
    batch: list[str] = []
    chars = 0
    for literal in (pk_literal(k, is_str) for k in ids):
        if batch and (len(batch) == DELETE_KEYS or chars + len(literal) > DELETE_FILTER_CHARS):
            client.delete(name, filter=f"{pk.name} in [{', '.join(batch)}]", timeout=timeout, **kw)
            batch, chars = [], 0
        batch.append(literal)
        chars += len(literal) + 2
    if batch:
        client.delete(name, filter=f"{pk.name} in [{', '.join(batch)}]", timeout=timeout, **kw)


class Target:
    """The target endpoint: one MilvusClient per database."""

    def __init__(self, uri: str, token: str = "", timeout: float | None = None, headers: dict[str, str] | None = None):
        self.uri, self.token = uri, token
        self.timeout = TARGET_TIMEOUT if timeout is None else timeout  # connecting, and each write of rows
        self.headers = dict(headers or {})  # gRPC metadata every call carries (vecdb.cdc.replicate_config.HEADER)
        self._clients: dict[str, Any] = {}

    def client(self, db: str):
        c = self._clients.get(db)
        if c is None:
            from pymilvus import MilvusClient

            # with headers: a connection of its own (pymilvus shares one per uri and token otherwise)
            c = MilvusClient(uri=self.uri, token=self.token, db_name=db or DEFAULT_DB, timeout=self.timeout,
                             **({"dedicated": True} if self.headers else {}))
            if self.headers:
                _add_headers(c, self.headers)
            self._clients[db] = c
        return c

    def ensure_database(self, db: str) -> None:
        if db in ("", DEFAULT_DB):
            return
        c = self.client(DEFAULT_DB)
        if db not in c.list_databases():
            c.create_database(db)

    def forget(self, db: str) -> None:
        c = self._clients.pop(db, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        for c in self._clients.values():
            try:
                c.close()
            except Exception:  # noqa: BLE001 (closing a broken connection)
                pass
        self._clients.clear()


def _add_headers(client, headers: dict[str, str]) -> None:
    """Every later call of ``client`` (a dedicated connection) carries ``headers`` as gRPC metadata."""
    from pymilvus.client import interceptor  # type: ignore[import-untyped]
    from pymilvus.grpc_gen import milvus_pb2_grpc

    conn = client._get_connection()
    adder = interceptor.header_adder_interceptor(list(headers), list(headers.values()))
    conn._final_channel = grpc.intercept_channel(conn._final_channel, adder)
    conn._stub = milvus_pb2_grpc.MilvusServiceStub(conn._final_channel)

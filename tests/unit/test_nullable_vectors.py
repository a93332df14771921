"""Nullable vector fields (Milvus 3.0, ``IsSupportedNullableVectorType``): the schema takes them (and
add_collection_field), the insert payload pymilvus 3.0.2 builds (valid_data and the valid rows'
vectors only) decodes to placeholder rows under a validity mask, a search never returns a null row
(exact, HNSW, sparse), the reply is compact again as pymilvus reads it, and ``is null`` on a
vector field is refused as Milvus 3.0's parser refuses it."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.client import field_data_extractors
from pymilvus.client.abstract import CollectionSchema as PyCollectionSchema
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb.column_defaults import absent_column, absent_mask
from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.index import create_index
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.fieldencode import field_data_from_columns
from vecdb.querynode import executor
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.schema import NULLABLE_VECTOR_TYPES, CollectionSchema, DataType, added_field, valid_key
from vecdb.timestamp import MAX_TIMESTAMP

DIM = 4


def _field(name, dt, nullable=False, **params) -> schema_pb2.FieldSchema:
    f = schema_pb2.FieldSchema(name=name, data_type=int(dt), nullable=nullable)
    for k, v in params.items():
        f.type_params.add(key=k, value=str(v))
    return f


def _schema() -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    pb.fields.add().CopyFrom(_field("v", DataType.FLOAT_VECTOR, dim=DIM))
    pb.fields.add().CopyFrom(_field("nv", DataType.FLOAT_VECTOR, nullable=True, dim=DIM))
    pb.fields.add().CopyFrom(_field("bv", DataType.BINARY_VECTOR, nullable=True, dim=16))
    pb.fields.add().CopyFrom(_field("hv", DataType.FLOAT16_VECTOR, nullable=True, dim=DIM))
    pb.fields.add().CopyFrom(_field("iv", DataType.INT8_VECTOR, nullable=True, dim=DIM))
    pb.fields.add().CopyFrom(_field("sp", DataType.SPARSE_FLOAT_VECTOR, nullable=True))
    return CollectionSchema.from_proto(pb, "c")


def _fields_info(schema):
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    return [f.dict() for f in PyCollectionSchema(resp).fields]


def _rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        r: dict = {"id": i, "v": [float(i), 1.0, 0.0, 0.0]}
        if i % 2:
            r.update(nv=[float(i), 2.0, 0.0, 1.0], bv=bytes([i, 255 - i]),
                     hv=np.array([i, 1, 2, 3], np.float16), iv=np.array([i, -1, 2, 3], np.int8),
                     sp={i: 1.0, 40: 0.5})
        elif i % 4:
            r.update(nv=None, bv=None, hv=None, iv=None, sp=None)  # explicit None; others leave them out
        out.append(r)
    return out


def _columns(schema, rows):
    req = Prepare.row_insert_param("c", rows, "", _fields_info(schema))
    return columns_from_field_data(schema, req.fields_data, req.num_rows), req


# ---------------------------------------------------------------- schema
def test_the_nullable_vector_types_of_milvus_3():
    schema = _schema()
    for name in ("nv", "bv", "hv", "iv", "sp"):
        assert schema.field(name).nullable
    assert {f.dtype for f in schema.fields if f.nullable} <= NULLABLE_VECTOR_TYPES
    assert CollectionSchema.from_dict(schema.to_dict()) == schema
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    assert {f.name for f in resp.schema.fields if f.nullable} == {"nv", "bv", "hv", "iv", "sp"}


def test_a_nullable_primary_key_and_a_default_on_a_vector_are_refused():
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True, nullable=True)
    pb.fields.add().CopyFrom(_field("v", DataType.FLOAT_VECTOR, nullable=True, dim=DIM))
    with pytest.raises(InvalidParameter, match="primary field not support null"):
        CollectionSchema.from_proto(pb, "c")
    pb.fields[0].nullable = False
    pb.fields[1].default_value.float_data = 1.0
    with pytest.raises(InvalidParameter, match="type not support default_value, type:FloatVector"):
        CollectionSchema.from_proto(pb, "c")


def test_add_collection_field_takes_a_nullable_vector():
    schema = _schema()
    f = added_field(schema, _field("later", DataType.FLOAT_VECTOR, nullable=True, dim=8))
    assert f.nullable and f.dim == 8 and f.dtype == DataType.FLOAT_VECTOR
    assert added_field(schema, _field("later_sp", DataType.SPARSE_FLOAT_VECTOR, nullable=True)).nullable
    with pytest.raises(InvalidParameter, match="added field must be nullable"):
        added_field(schema, _field("later", DataType.FLOAT_VECTOR, dim=8))
    with pytest.raises(InvalidParameter, match="vector field must have dimension specified"):
        added_field(schema, _field("later", DataType.FLOAT_VECTOR, nullable=True))


def test_rows_written_before_an_added_vector_read_null():
    f = _schema().field("nv")
    col = absent_column(f, 3)
    assert col.shape == (3, DIM) and col.dtype == np.float32 and not col.any()
    assert not absent_mask(f, 3).any()
    sp = absent_column(_schema().field("sp"), 2)
    assert sp.tolist() == [b"", b""]


# ---------------------------------------------------------------- insert payloads
def test_pymilvus_sends_a_compact_payload_decoded_to_placeholders():
    schema = _schema()
    cols, req = _columns(schema, _rows(8))
    nv = next(fd for fd in req.fields_data if fd.field_name == "nv")
    assert list(nv.valid_data) == [i % 2 == 1 for i in range(8)]
    assert len(nv.vectors.float_vector.data) == 4 * DIM  # only the valid rows' vectors
    valid = np.arange(8) % 2 == 1
    for name in ("nv", "bv", "hv", "iv", "sp"):
        assert cols[valid_key(name)].tolist() == valid.tolist(), name
    assert np.array_equal(cols["nv"][valid], [[i, 2.0, 0.0, 1.0] for i in range(1, 8, 2)])
    assert not cols["nv"][~valid].any() and cols["nv"].dtype == np.float32
    assert cols["bv"].shape == (8, 2) and cols["bv"][3].tolist() == [3, 252] and not cols["bv"][~valid].any()
    assert cols["hv"].dtype == np.float16 and cols["hv"][5].tolist() == [5, 1, 2, 3]
    assert cols["iv"].dtype == np.int8 and cols["iv"][1].tolist() == [1, -1, 2, 3]
    assert [len(r) for r in cols["sp"].tolist()] == [0, 16, 0, 16, 0, 16, 0, 16]
    assert cols["v"].shape == (8, DIM) and valid_key("v") not in cols


def test_every_row_null_sends_no_vectors():
    schema = _schema()
    cols, req = _columns(schema, [{"id": 1, "v": [0.0] * DIM, "nv": None, "sp": None}, {"id": 2, "v": [1.0] * DIM}])
    assert not cols[valid_key("nv")].any() and cols["nv"].shape == (2, DIM)
    assert not cols[valid_key("sp")].any() and cols["sp"].tolist() == [b"", b""]


def test_a_full_length_payload_is_taken_and_a_wrong_count_refused():
    schema = _schema()
    _, req = _columns(schema, _rows(4))
    fds = list(req.fields_data)
    nv = next(fd for fd in fds if fd.field_name == "nv")
    full = np.zeros((4, DIM), np.float32)
    full[1], full[3] = [1, 2, 0, 1], [3, 2, 0, 1]
    nv.vectors.float_vector.data[:] = full.ravel().tolist()
    cols = columns_from_field_data(schema, fds, 4)
    assert np.array_equal(cols["nv"], full)
    nv.vectors.float_vector.data[:] = [1.0] * (3 * DIM)  # neither 2 valid rows nor 4 rows
    with pytest.raises(InvalidParameter, match="num_rows"):
        columns_from_field_data(schema, fds, 4)


def test_a_null_for_a_required_vector_is_refused():
    schema = _schema()
    _, req = _columns(schema, _rows(2))
    fds = list(req.fields_data)
    v = next(fd for fd in fds if fd.field_name == "v")
    v.valid_data.extend([True, False])
    with pytest.raises(InvalidParameter, match=r"field \(v\) is not nullable"):
        columns_from_field_data(schema, fds, 2)


# ---------------------------------------------------------------- replies
def test_the_reply_is_compact_and_pymilvus_reads_none():
    schema = _schema()
    cols, _ = _columns(schema, _rows(6))
    fds = {fd.field_name: fd for fd in field_data_from_columns(schema, cols, ["nv", "bv", "sp", "v"])}
    assert list(fds["nv"].valid_data) == [False, True, False, True, False, True]
    assert len(fds["nv"].vectors.float_vector.data) == 3 * DIM
    assert len(fds["bv"].vectors.binary_vector) == 3 * 2
    assert len(fds["sp"].vectors.sparse_float_vector.contents) == 3
    assert not len(fds["v"].valid_data) and len(fds["v"].vectors.float_vector.data) == 6 * DIM
    for i in range(6):
        got = field_data_extractors.decode_cell(fds["nv"], i)
        sp = field_data_extractors.decode_cell(fds["sp"], i)
        if i % 2:
            assert list(got) == [float(i), 2.0, 0.0, 1.0] and sp == {i: 1.0, 40: 0.5}
        else:
            assert got is None and sp is None
    # every row null: no vectors at all
    none = {k: (v[:1] if k != valid_key("nv") else np.zeros(1, bool)) for k, v in cols.items()}
    fd = field_data_from_columns(schema, none, ["nv"])[0]
    assert list(fd.valid_data) == [False] and not len(fd.vectors.float_vector.data)
    assert field_data_extractors.decode_cell(fd, 0) is None


# ---------------------------------------------------------------- search
def _views(n=64, index=False):
    schema = _schema()
    cols, _ = _columns(schema, _rows(n))
    views = []
    sealed = Segment.from_columns(1, 1, schema, cols, np.ones(n, np.uint64), np.full(n, MAX_TIMESTAMP, np.uint64))
    if index:
        hnsw = create_index("HNSW", "L2", DIM, {"M": 8, "efConstruction": 40}, DataType.FLOAT_VECTOR)
        hnsw.build(np.ascontiguousarray(cols["nv"]))  # the placeholders in the index too
        sealed.indexes["nv"] = hnsw
    views.append(SegmentView(sealed, n))
    growing = Segment(2, 1, schema)
    more, _ = _columns(schema, [dict(r, id=r["id"] + 1000) for r in _rows(n)])
    growing.append(more, n, 1)
    views.append(SegmentView(growing, n))
    return schema, views


@pytest.mark.parametrize("index", [False, True])
@pytest.mark.parametrize("field,query", [("nv", [0.0, 0.0, 0.0, 0.0]), ("bv", bytes([0, 0])),
                                         ("hv", [0.0, 0.0, 0.0, 0.0]), ("iv", [0, 0, 0, 0])])
def test_a_search_never_returns_a_null_row(index, field, query):
    schema, views = _views(index=index and field == "nv")
    f = schema.field(field)
    metric = "HAMMING" if field == "bv" else "L2"
    if field == "bv":
        q = np.frombuffer(query, np.uint8).reshape(1, -1)
    else:
        q = np.asarray([query], {"hv": np.float16, "iv": np.int8}.get(field, np.float32))
    spec = SearchSpec(field=f, queries=q, limit=200, offset=0, metric=metric, params={"ef": 200}, ts=10)
    hits = executor.search(views, spec, "id", ["id"])
    got = set(hits.pks.tolist())
    assert got == {i for i in range(64) if i % 2} | {i + 1000 for i in range(64) if i % 2}


def test_a_sparse_search_never_returns_a_null_row():
    schema, views = _views()
    f = schema.field("sp")
    rows = views[0].segment.column("sp")
    spec = SearchSpec(field=f, queries=rows[1:2], limit=200, offset=0, metric="IP", params={}, ts=10)
    hits = executor.search(views, spec, "id", ["id"])
    assert hits.pks.size and all(p % 2 for p in hits.pks.tolist())


def test_is_null_on_a_vector_field_is_refused():
    schema = _schema()
    for expr in ("nv is null", "nv is not null", "v is null"):
        with pytest.raises(InvalidParameter, match="IsNull/IsNotNull operations are not supported on vector fields"):
            compile_filter(expr, schema)


# ---------------------------------------------------------------- REST rows, bulk import (JSON, parquet)
def test_json_rows_with_null_vectors():
    from vecdb.proxy.rest import field_data_to_rows, rows_to_field_data

    schema = _schema()
    rows = [{"id": 1, "v": [0.0] * DIM, "nv": [1.0, 2.0, 3.0, 4.0], "sp": {"7": 1.5}, "bv": [1, 2]},
            {"id": 2, "v": [0.0] * DIM, "nv": None, "sp": None},
            {"id": 3, "v": [0.0] * DIM}]
    fds = rows_to_field_data(schema, rows)
    cols = columns_from_field_data(schema, fds, 3)
    assert cols[valid_key("nv")].tolist() == [True, False, False] and cols["nv"][0].tolist() == [1, 2, 3, 4]
    assert cols[valid_key("sp")].tolist() == [True, False, False] and cols["sp"][1] == b""
    assert cols[valid_key("bv")].tolist() == [True, False, False] and cols["bv"][0].tolist() == [1, 2]
    assert not cols[valid_key("hv")].any()
    back = field_data_to_rows(field_data_from_columns(schema, cols, ["id", "nv", "bv"]))
    assert back == [{"id": 1, "nv": [1.0, 2.0, 3.0, 4.0], "bv": [1, 2]}, {"id": 2, "nv": None, "bv": None},
                    {"id": 3, "nv": None, "bv": None}]


def test_cdc_rows_carry_a_null_vector_as_none():
    from vecdb.cdc.target import rows_of

    schema = _schema()
    cols, _ = _columns(schema, _rows(4))
    rows = rows_of(schema, cols, 4)
    assert [r["nv"] is None for r in rows] == [True, False, True, False]
    assert rows[1]["nv"] == [1.0, 2.0, 0.0, 1.0] and rows[2]["bv"] is None and rows[3]["bv"] == bytes([3, 252])

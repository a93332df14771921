"""Milvus 3.0's TEXT field type: the schema rules its text.md lists (no max_length, nullable, never a
primary / partition / clustering key, an ARRAY element nor a default value; enable_analyzer and
enable_match, a BM25 or MinHash input), insert payloads as pymilvus builds them (rows past VARCHAR's
65,535 bytes), the filter language (text_match / phrase_match only; every scalar operator refused,
1100), the refused user index, and the column codec and import paths a TEXT column goes through."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pymilvus.client.abstract import CollectionSchema as PyCollectionSchema
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import column_codec, importer
from vecdb.errors import IllegalSchema, InvalidParameter
from vecdb.expr import compile_filter
from vecdb.index.scalar import validate_scalar_index
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.fieldencode import field_data_from_columns
from vecdb.schema import CollectionSchema, DataType, FunctionType, valid_key

LONG = "word " * 30_000  # 150 KB


def _field(name, dt=DataType.TEXT, nullable=False, **params) -> schema_pb2.FieldSchema:
    f = schema_pb2.FieldSchema(name=name, data_type=int(dt), nullable=nullable)
    for k, v in params.items():
        f.type_params.add(key=k, value=str(v))
    return f


def _pb(*extra, pk=DataType.INT64) -> schema_pb2.CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=int(pk), is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="2")
    for f in extra:
        pb.fields.add().CopyFrom(f)
    return pb


def _schema() -> CollectionSchema:
    return CollectionSchema.from_proto(_pb(
        _field("body", enable_analyzer="true", enable_match="true"),
        _field("note", nullable=True, enable_analyzer="true", enable_match="true"),
        _field("raw", nullable=True),
    ), "c")


# ---------------------------------------------------------------- schema
def test_schema_takes_text_without_max_length_and_round_trips():
    schema = _schema()
    body = schema.field("body")
    assert body.dtype == DataType.TEXT and body.max_length == 0 and body.enable_analyzer
    assert schema.field("note").nullable
    assert CollectionSchema.from_dict(schema.to_dict()) == schema
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    assert [f.data_type for f in resp.schema.fields[2:]] == [schema_pb2.Text] * 3
    assert not any(kv.key == "max_length" for kv in resp.schema.fields[2].type_params)


def test_text_refused_as_key_element_or_with_default():
    with pytest.raises(IllegalSchema, match="primary key should be Int64 or VarChar"):
        CollectionSchema.from_proto(_pb(pk=DataType.TEXT), "c")
    with pytest.raises(IllegalSchema, match="partition key should be Int64 or VarChar"):
        f = _field("t")
        f.is_partition_key = True
        CollectionSchema.from_proto(_pb(f), "c")
    with pytest.raises(IllegalSchema, match="clustering key field t has unsupported data type Text"):
        f = _field("t")
        f.is_clustering_key = True
        CollectionSchema.from_proto(_pb(f), "c")
    with pytest.raises(IllegalSchema, match="element type TEXT is not supported in ARRAY"):
        f = _field("t", DataType.ARRAY, max_capacity=4)
        f.element_type = DataType.TEXT
        CollectionSchema.from_proto(_pb(f), "c")
    with pytest.raises(InvalidParameter, match="type not support default_value, type:Text") as e:
        f = _field("t", nullable=True)
        f.default_value.string_data = "x"
        CollectionSchema.from_proto(_pb(f), "c")
    assert e.value.code == 1100


def test_bm25_and_minhash_take_a_text_input():
    pb = _pb(_field("body", enable_analyzer="true"), _field("sparse", DataType.SPARSE_FLOAT_VECTOR),
             _field("sig", DataType.BINARY_VECTOR, dim=512))
    pb.functions.add(name="bm", type=FunctionType.BM25, input_field_names=["body"], output_field_names=["sparse"])
    pb.functions.add(name="mh", type=FunctionType.MINHASH, input_field_names=["body"], output_field_names=["sig"])
    schema = CollectionSchema.from_proto(pb, "c")
    assert [fn.input_field_names for fn in schema.functions] == [["body"], ["body"]]
    assert schema.field("sparse").is_function_output and schema.field("sig").is_function_output


# ---------------------------------------------------------------- insert payloads and columns
def _columns(schema, rows):
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    info = [f.dict() for f in PyCollectionSchema(resp).fields]
    req = Prepare.row_insert_param("c", rows, "", info)
    return columns_from_field_data(schema, req.fields_data, req.num_rows)


ROWS = [
    {"id": 1, "v": [0.0, 1.0], "body": "the quick brown fox", "note": "a note", "raw": LONG},
    {"id": 2, "v": [0.0, 1.0], "body": "lazy dog sleeps", "note": None, "raw": None},
    {"id": 3, "v": [0.0, 1.0], "body": LONG, "note": "brown Fox", "raw": ""},
]


def test_insert_takes_long_text_and_nulls_and_encodes_back():
    schema = _schema()
    cols = _columns(schema, ROWS)
    assert cols["body"].dtype == object and cols["body"][2] == LONG and len(LONG.encode()) > 65535
    assert cols[valid_key("note")].tolist() == [True, False, True] and cols["note"][1] == ""
    out = field_data_from_columns(schema, cols, ["body", "note"], None)
    by = {fd.field_name: fd for fd in out}
    assert by["body"].type == schema_pb2.Text and list(by["body"].scalars.string_data.data)[2] == LONG
    assert list(by["note"].valid_data) == [True, False, True]


def test_column_codec_round_trips_a_text_column():
    col = np.empty(2, object)
    col[:] = [LONG, "é ü 中文"]
    back = column_codec.decode_columns(column_codec.encode_columns({"t": col}, 2))[1]["t"]
    assert back.tolist() == col.tolist()


def test_numpy_import_reads_text_strings():
    schema = _schema()
    buf = io.BytesIO()
    np.save(buf, np.array(["alpha", LONG]))
    assert importer._numpy_column(schema.field("body"), np.load(io.BytesIO(buf.getvalue())), "body.npy").tolist() \
        == ["alpha", LONG]


# ---------------------------------------------------------------- filters
def _eval(expr: str) -> list[int]:
    schema = _schema()
    cols = _columns(schema, ROWS)
    return [int(i) + 1 for i in np.flatnonzero(compile_filter(expr, schema).evaluate(cols, 3))]


@pytest.mark.parametrize("expr,ids", [
    ("text_match(body, 'fox')", [1]),
    ("TEXT_MATCH(body, 'dog word')", [2, 3]),
    ("phrase_match(body, 'quick brown')", [1]),
    ("text_match(note, 'fox')", [3]),
    ("not text_match(note, 'fox')", [1]),  # the null row: unknown, false
    ("text_match(body, 'fox') or id == 2", [1, 2]),
])
def test_text_match_and_phrase_match(expr, ids):
    assert _eval(expr) == ids


@pytest.mark.parametrize("expr", [
    "body == 'x'", "body != 'x'", "body < 'b'", "body >= 'b'", "body in ['a']", "body not in ['a']",
    "body like 'a%'", "body is null", "note is not null", "'a' < body <= 'z'", "raw == ''",
])
def test_scalar_operators_refused_on_text(expr):
    with pytest.raises(InvalidParameter, match="does not support scalar filter operators") as e:
        compile_filter(expr, _schema())
    assert e.value.code == 1100


def test_match_needs_enable_match():
    with pytest.raises(InvalidParameter, match='field "raw" does not enable match'):
        compile_filter("text_match(raw, 'x')", _schema())


# ---------------------------------------------------------------- indexes
@pytest.mark.parametrize("index_type", ["INVERTED", "AUTOINDEX", "BITMAP", "Trie", "STL_SORT", "NGRAM"])
def test_user_scalar_index_refused_on_text(index_type):
    with pytest.raises(InvalidParameter, match="TEXT field does not support user-created scalar index") as e:
        validate_scalar_index(index_type, _schema().field("body"), {})
    assert e.value.code == 1100


def test_fuzzy_match_on_text_needs_its_option():  # text_match_fuzzy: tests/unit/test_text_match_fuzzy.py
    with pytest.raises(InvalidParameter, match="max_edit_distance") as e:
        compile_filter("text_match_fuzzy(body, 'fox')", _schema())
    assert e.value.code == 1100
    assert _eval("text_match_fuzzy(body, 'fxo', max_edit_distance=1)") == [1]
    assert _eval("text_match_fuzzy(note, 'brwn', max_edit_distance=1)") == [3]

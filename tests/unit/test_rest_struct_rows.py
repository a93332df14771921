"""Array-of-struct fields over the REST API (vecdb.proxy.rest_structs and rest.py's row conversions):
a REST schema parses to the schema pymilvus's gives, REST rows decode to the columns of pymilvus's
insert, reply columns come back as lists of objects, search data as embedding lists."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.grpc_gen import common_pb2

from tests.unit.test_struct_array import DIM, insert_request, proto_of, rows, user_schema
from vecdb.errors import InvalidParameter
from vecdb.proxy import rest_structs
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.fieldencode import field_data_from_columns
from vecdb.proxy.rest import _collection_schema, _placeholders, field_data_to_rows, rows_to_field_data
from vecdb.schema import CollectionSchema


def rest_spec(cap: int = 3) -> dict:
    return {"schema": {"fields": [{"fieldName": "id", "dataType": "Int64", "isPrimary": True},
                                  {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}}],
                       "structArrayFields": [{"name": "chunks", "elementTypeParams": {"max_capacity": cap}, "fields": [
                           {"fieldName": "text", "dataType": "VarChar", "elementTypeParams": {"max_length": 8}},
                           {"fieldName": "score", "dataType": "Float"},
                           {"fieldName": "emb", "dataType": "FloatVector", "elementTypeParams": {"dim": DIM}}]}]}}


def rest_schema(cap: int = 3) -> CollectionSchema:
    return CollectionSchema.from_proto(_collection_schema("c", rest_spec(cap))[0], "c")


def test_rest_schema_is_pymilvus_schema():
    want = CollectionSchema.from_proto(proto_of(user_schema(5)), "c")
    got = rest_schema(5)
    assert [f.to_dict() for f in got.fields] == [f.to_dict() for f in want.fields]
    assert [s.to_dict() for s in got.struct_fields] == [s.to_dict() for s in want.struct_fields]
    pb = _collection_schema("c", rest_spec())[0]
    assert rest_structs.vector_sub_fields(pb) == {"chunks[emb]"}
    (described,) = rest_structs.describe_json(pb)
    assert described["elementTypeParams"] == {"max_capacity": "3"}
    assert [(f["name"], f["type"]) for f in described["fields"]] == [
        ("text", "VarChar"), ("score", "Float"), ("emb", "FloatVector")]


def test_rest_rows_decode_as_pymilvus_insert():
    schema = rest_schema()
    data = rows(4)
    got = columns_from_field_data(schema, rows_to_field_data(schema, data), len(data))
    want = columns_from_field_data(schema, list(insert_request(schema, data).fields_data), len(data))
    assert set(got) == set(want)
    for name in ("chunks[text]", "chunks[score]"):
        assert [list(r) for r in got[name]] == [list(r) for r in want[name]]
    for g, w in zip(got["chunks[emb]"], want["chunks[emb]"]):
        np.testing.assert_array_equal(g, w)


def test_reply_columns_to_rows():
    schema = rest_schema()
    data = rows(3) + [{"id": 3, "v": [0.0] * DIM, "chunks": []}]
    columns = columns_from_field_data(schema, rows_to_field_data(schema, data), len(data))
    fds = field_data_from_columns(schema, columns, ["id", "chunks[text]", "chunks[emb]"])
    out = field_data_to_rows(fds)
    assert [r["id"] for r in out] == [0, 1, 2, 3] and out[3]["chunks"] == []
    for r, want in zip(out, data):
        assert [c["text"] for c in r["chunks"]] == [c["text"] for c in want["chunks"]]
        assert set(c for e in r["chunks"] for c in e) <= {"text", "emb"}
        np.testing.assert_allclose([c["emb"] for c in r["chunks"]] or np.empty((0, DIM)),
                                   [c["emb"] for c in want["chunks"]] or np.empty((0, DIM)), rtol=1e-6)


@pytest.mark.parametrize("bad, words", [
    ({"text": "a", "score": 1.0}, "missing sub-field emb"),
    ({"text": "a", "score": 1.0, "emb": [0.1] * (DIM + 1)}, "dim mismatch"),
    ({"text": "a", "score": 1.0, "emb": [True] * DIM}, "list of numbers")])
def test_bad_struct_rows(bad, words):
    with pytest.raises(ValueError, match=words):
        rest_structs.struct_columns(rest_schema(), [{"id": 1, "v": [0.0] * DIM, "chunks": [bad]}])


def test_embedding_lists_and_anns_names():
    schema = rest_schema()
    field = schema.field("chunks[emb]")
    q = np.arange(2 * DIM, dtype=np.float32).reshape(2, DIM)
    assert rest_structs.embedding_lists(q.tolist(), field) == [q.tobytes()]  # a bare list of vectors: one list
    assert rest_structs.embedding_lists([q.tolist(), q[:1].tolist()], field) == [q.tobytes(), q[:1].tobytes()]
    group = common_pb2.PlaceholderGroup.FromString(_placeholders(field, [q.tobytes()]))
    assert group.placeholders[0].type == common_pb2.EmbListFloatVector
    for bad in ([[]], [[[0.0] * (DIM - 1)]], [[["x"] * DIM]]):
        with pytest.raises(InvalidParameter):
            rest_structs.embedding_lists(bad, field)
    assert rest_structs.anns_name(schema, "chunks.emb") == "chunks[emb]"
    assert rest_structs.anns_name(schema, "chunks[emb]") == "chunks[emb]"
    assert rest_structs.anns_name(schema, "v") == "v"

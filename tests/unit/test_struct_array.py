"""Array-of-struct fields (Milvus 2.6): schema parsing and checks, insert decoding, the ragged column
codec, output encoding, MAX_SIM scores against a row-by-row reference, CDC rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pymilvus import DataType as PDataType
from pymilvus import MilvusClient
from pymilvus.client.abstract import CollectionSchema as DescribedSchema
from pymilvus.client.entity_helper import extract_struct_array_from_column_data
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import emb_list
from vecdb.cdc.target import rows_of, target_schema
from vecdb.column_codec import decode_columns, encode_columns, object_array
from vecdb.errors import IllegalSchema, InvalidParameter
from vecdb.proxy.fielddata import columns_from_field_data, resolve_output_fields
from vecdb.proxy.fieldencode import field_data_from_columns
from vecdb.schema import CollectionSchema, DataType

DIM = 4


def user_schema(cap: int = 3, vec_type=PDataType.FLOAT_VECTOR):
    s = MilvusClient.create_schema()
    s.add_field("id", PDataType.INT64, is_primary=True)
    s.add_field("v", PDataType.FLOAT_VECTOR, dim=DIM)
    st = MilvusClient.create_struct_field_schema()
    st.add_field("text", PDataType.VARCHAR, max_length=8)
    st.add_field("score", PDataType.FLOAT)
    st.add_field("emb", vec_type, dim=DIM)
    s.add_field("chunks", PDataType.ARRAY, element_type=PDataType.STRUCT, struct_schema=st, max_capacity=cap)
    return s


def proto_of(s) -> schema_pb2.CollectionSchema:
    return schema_pb2.CollectionSchema.FromString(Prepare.create_collection_request("c", s).schema)


def vecdb_schema(cap: int = 3) -> CollectionSchema:
    return CollectionSchema.from_proto(proto_of(user_schema(cap)), "c")


def insert_request(schema: CollectionSchema, rows: list[dict]):
    pb = schema_pb2.CollectionSchema()
    schema.to_proto(pb)
    described = DescribedSchema(milvus_pb2.DescribeCollectionResponse(schema=pb)).dict()
    return Prepare.row_insert_param("c", rows, "", described["fields"], described["struct_array_fields"])


def rows(n: int = 3):
    rng = np.random.default_rng(1)
    return [{"id": i, "v": [0.5] * DIM,
             "chunks": [{"text": f"t{i}{j}", "score": j * 0.5, "emb": rng.standard_normal(DIM).tolist()}
                        for j in range(i % 3 + 1)]} for i in range(n)]


def test_schema_keeps_struct_sub_fields_as_milvus_does():
    cs = vecdb_schema()
    assert [f.name for f in cs.fields] == ["id", "v", "chunks[text]", "chunks[score]", "chunks[emb]"]
    emb = cs.field("chunks[emb]")
    assert (emb.dtype, emb.element_type, emb.dim, emb.max_capacity) == (
        DataType.ARRAY_OF_VECTOR, DataType.FLOAT_VECTOR, DIM, 3)
    assert cs.field("chunks[text]").max_length == 8 and cs.struct("chunks").max_capacity == 3
    assert CollectionSchema.from_dict(cs.to_dict()) == cs
    pb = schema_pb2.CollectionSchema()
    cs.to_proto(pb)
    assert [f.name for f in pb.fields] == ["id", "v"]
    (st,) = pb.struct_array_fields
    assert [f.name for f in st.fields] == ["text", "score", "emb"] and st.fieldID == cs.struct("chunks").field_id
    assert CollectionSchema.from_proto(pb, "c").fields == cs.fields  # describe's form parses back the same


def test_a_nullable_struct_at_create_takes_its_sub_fields_nullable_flags_and_round_trips():
    """pymilvus 3.0 marks every sub-field of a nullable struct nullable (the struct's flag); describe
    gives the same back, so a describe -> create round trip (CDC's target) must parse it too."""
    pb = proto_of(user_schema())
    pb.struct_array_fields[0].nullable = True
    for sub in pb.struct_array_fields[0].fields:
        sub.nullable = True
    cs = CollectionSchema.from_proto(pb, "c")
    assert cs.struct("chunks").nullable
    out = schema_pb2.CollectionSchema()
    cs.to_proto(out)
    again = CollectionSchema.from_proto(out, "c")
    assert again.struct("chunks").nullable and [f.name for f in again.fields] == [f.name for f in cs.fields]
    assert CollectionSchema.from_proto(proto_of(target_schema(cs)), "c").struct("chunks").nullable


def test_schema_refusals():
    pb = proto_of(user_schema())
    pb.struct_array_fields[0].fields[0].nullable = True
    with pytest.raises(InvalidParameter, match="cannot be nullable individually"):
        CollectionSchema.from_proto(pb, "c")
    pb = proto_of(user_schema())
    pb.struct_array_fields[0].fields[1].type_params[-1].value = "5"  # max_capacity of "score"
    with pytest.raises(InvalidParameter, match="must have the same max_capacity"):
        CollectionSchema.from_proto(pb, "c")
    pb = proto_of(user_schema())
    pb.struct_array_fields[0].name = "v"
    with pytest.raises(InvalidParameter, match="duplicated field name v"):
        CollectionSchema.from_proto(pb, "c")
    pb = proto_of(user_schema())
    del pb.struct_array_fields[0].fields[:]
    with pytest.raises(InvalidParameter, match="has no sub-fields"):
        CollectionSchema.from_proto(pb, "c")
    with pytest.raises(IllegalSchema, match="not supported by vecdb yet"):  # 105: not built yet
        CollectionSchema.from_proto(proto_of(user_schema(vec_type=PDataType.FLOAT16_VECTOR)), "c")
    pb = proto_of(user_schema())
    pb.fields.add(name="loose", data_type=DataType.ARRAY_OF_VECTOR, element_type=DataType.FLOAT_VECTOR)
    with pytest.raises(InvalidParameter, match="array of vector can only be in the struct array field"):
        CollectionSchema.from_proto(pb, "c")


def test_insert_decodes_sub_fields_and_checks_them():
    cs = vecdb_schema()
    data = rows()
    req = insert_request(cs, data)
    cols = columns_from_field_data(cs, req.fields_data, req.num_rows)
    assert [len(x) for x in cols["chunks[text]"]] == [1, 2, 3]
    assert cols["chunks[emb]"][2].shape == (3, DIM) and cols["chunks[emb]"][2].dtype == np.float32
    np.testing.assert_allclose(cols["chunks[emb]"][1][1], data[1]["chunks"][1]["emb"], rtol=1e-6)
    assert cols["chunks[text]"][2].tolist() == ["t20", "t21", "t22"]
    too_many = rows()
    too_many[0]["chunks"] *= 4
    req = insert_request(cs, too_many)
    with pytest.raises(InvalidParameter, match="exceeds max capacity"):
        columns_from_field_data(cs, req.fields_data, req.num_rows)
    req = insert_request(cs, rows())
    req.fields_data[-1].struct_arrays.fields[2].vectors.vector_array.data[1].float_vector.data.extend([0.0] * DIM)
    with pytest.raises(InvalidParameter, match="number of elements"):
        columns_from_field_data(cs, req.fields_data, req.num_rows)


def test_ragged_columns_round_trip_the_codec():
    col = object_array([np.arange(8, dtype=np.float32).reshape(2, DIM), np.empty((0, DIM), np.float32),
                        np.ones((3, DIM), np.float32)])
    n, out, _ = decode_columns(encode_columns({"chunks[emb]": col}, 3))
    assert n == 3 and [r.shape for r in out["chunks[emb]"]] == [(2, DIM), (0, DIM), (3, DIM)]
    for a, b in zip(out["chunks[emb]"], col):
        np.testing.assert_array_equal(a, b)


def test_output_is_one_struct_field_data_as_pymilvus_reads_it():
    cs = vecdb_schema()
    data = rows()
    req = insert_request(cs, data)
    cols = columns_from_field_data(cs, req.fields_data, req.num_rows)
    names, _ = resolve_output_fields(cs, ["chunks"])
    assert names == ["chunks[text]", "chunks[score]", "chunks[emb]"]
    (fd,) = field_data_from_columns(cs, cols, names)
    assert fd.field_name == "chunks" and fd.type == DataType.ARRAY_OF_STRUCT
    got = extract_struct_array_from_column_data(fd.struct_arrays, 2)
    assert [c["text"] for c in got] == ["t20", "t21", "t22"]
    np.testing.assert_allclose(got[1]["emb"], data[2]["chunks"][1]["emb"], rtol=1e-6)
    (fd,) = field_data_from_columns(cs, cols, ["chunks[text]"])
    assert extract_struct_array_from_column_data(fd.struct_arrays, 1) == [{"text": "t10"}, {"text": "t11"}]


def _reference(queries, lists, metric):
    out = np.zeros((len(queries), len(lists)))
    for i, q in enumerate(queries):
        for j, e in enumerate(lists):
            if not len(e):
                continue  # an empty list never matches
            if metric in ("MAX_SIM", "MAX_SIM_COSINE"):
                qn, en = (q / np.linalg.norm(q, axis=1, keepdims=True), e / np.linalg.norm(e, axis=1, keepdims=True))
                out[i, j] = (qn @ en.T).max(axis=1).sum()
            elif metric == "MAX_SIM_IP":
                out[i, j] = (q @ e.T).max(axis=1).sum()
            else:
                out[i, j] = ((q[:, None] - e[None]) ** 2).sum(-1).min(axis=1).sum()
    return out


@pytest.mark.parametrize("metric", ["MAX_SIM", "MAX_SIM_COSINE", "MAX_SIM_IP", "MAX_SIM_L2"])
def test_max_sim_matches_a_row_by_row_reference(metric, monkeypatch):
    rng = np.random.default_rng(3)
    lists = [rng.standard_normal((int(rng.integers(0, 5)), DIM)).astype(np.float32) for _ in range(50)]
    queries = [rng.standard_normal((m, DIM)).astype(np.float32) for m in (1, 2, 5)]
    monkeypatch.setattr(emb_list, "_CHUNK", 7)  # several chunks of rows
    seg = SimpleNamespace(sealed=True, column=lambda name, n: object_array(lists[:n]))
    field = vecdb_schema().field("chunks[emb]")
    mask = rng.random(50) < 0.7
    spec = SimpleNamespace(queries=object_array(queries), metric=metric, field=field)
    d, o = emb_list.segment_search(SimpleNamespace(segment=seg, n=50), spec, 6, mask)
    ref = _reference(queries, lists, metric)
    ok = [j for j in range(50) if mask[j] and len(lists[j])]
    for i in range(len(queries)):
        want = sorted(ok, key=lambda j: ref[i, j] if metric == "MAX_SIM_L2" else -ref[i, j])[:6]
        assert o[i].tolist() == want
        np.testing.assert_allclose(d[i], ref[i, want], rtol=1e-4, atol=1e-4)


def test_cdc_rows_and_schema_carry_structs():
    cs = vecdb_schema()
    data = rows()
    req = insert_request(cs, data)
    cols = columns_from_field_data(cs, req.fields_data, req.num_rows)
    out = rows_of(cs, cols, 3)
    assert [c["text"] for c in out[2]["chunks"]] == ["t20", "t21", "t22"]
    again = columns_from_field_data(cs, insert_request(cs, out).fields_data, 3)
    for a, b in zip(again["chunks[emb]"], cols["chunks[emb]"]):
        np.testing.assert_array_equal(a, b)
    target = CollectionSchema.from_proto(proto_of(target_schema(cs)), "c")
    assert target.fields == cs.fields and target.struct_fields == cs.struct_fields

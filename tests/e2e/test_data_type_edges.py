"""Data-type edges through pymilvus, checked against what Milvus does (2.3.5 run side by side; newer
types against Milvus's proxy sources, ``internal/proxy/validate_util.go``):

- BFLOAT16 vectors are searched on their values: growing rows were scanned with their raw bfloat16
  bits cast to floats as integers (0x3F80, 1.0, read as 16256.0), so every distance was wrong until
  the rows were sealed and indexed. FLOAT16 alongside, as the control.
- FLOAT16 / BFLOAT16 / BINARY / INT8 vectors of the wrong byte length, INT8 / INT16 values out of
  range (also in ARRAYs), VARCHAR (and ARRAY of VARCHAR elements) longer than ``max_length`` in UTF-8
  *bytes*, as Milvus's Go ``len`` counts them: 1100, nothing written.
- JSON fields hold any JSON value (lists, numbers, strings, booleans, as Milvus 2.4+; 2.3.5 refused
  all but objects) and filters read them; the dynamic field takes objects only.
- INT64 keys at both ends of the range and the empty VARCHAR key: insert, get, query, upsert, delete.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from tests.e2e._helpers import assert_search_matches, count, matching_ids, raw_stub

DIM = 8
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 values -> bfloat16 bits (truncated: the values below are bfloat16-exact anyway)."""
    return (np.ascontiguousarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _widen_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _refused(fn, message: str, code: int = 1100) -> None:
    with pytest.raises(MilvusException) as e:
        fn()
    assert e.value.code == code and message in e.value.message, e.value


def _vector_collection(client, name, dtype, metric: str, dim: int = DIM) -> None:
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", dtype, dim=dim)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="BIN_FLAT" if dtype == DataType.BINARY_VECTOR else "FLAT", metric_type=metric)
    client.create_collection(name, schema=s, index_params=idx)


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
@pytest.mark.parametrize("dtype", [DataType.BFLOAT16_VECTOR, DataType.FLOAT16_VECTOR])
def test_half_precision_search_matches_reference_growing_and_sealed(client, name, dtype, metric):
    rng = np.random.default_rng(5)
    if dtype == DataType.BFLOAT16_VECTOR:
        bits = _bf16_bits(rng.standard_normal((200, DIM)))
        data, rows = _widen_bf16(bits), [b.tobytes() for b in bits]
        queries = _widen_bf16(_bf16_bits(rng.standard_normal((4, DIM))))
    else:
        half = rng.standard_normal((200, DIM)).astype(np.float16)
        data, rows = half.astype(np.float32), [h.tobytes() for h in half]
        queries = rng.standard_normal((4, DIM)).astype(np.float16).astype(np.float32)
    _vector_collection(client, name, dtype, metric)
    client.insert(name, [{"id": i, "v": v} for i, v in enumerate(rows)])
    ids = np.arange(len(data))

    def check():  # float lists (bfloat16 / float16-exact values): pymilvus sends them as float32 queries
        hits = client.search(name, queries.tolist(), limit=10, search_params={"metric_type": metric},
                             consistency_level="Strong")
        assert_search_matches(hits, ids, data, queries, metric, 10)

    check()  # growing rows: an exact scan
    client.flush(name)
    client.release_collection(name)
    client.load_collection(name)
    check()  # sealed rows: the FLAT index
    got = client.query(name, "id in [0, 199]", output_fields=["v"])
    assert {r["id"]: r["v"][0] for r in got} == {0: rows[0], 199: rows[199]}  # the bytes as inserted


def test_bfloat16_range_search_on_growing_rows(client, name):
    bits = _bf16_bits(np.array([[1.0] * DIM, [2.0] * DIM, [4.0] * DIM]))
    _vector_collection(client, name, DataType.BFLOAT16_VECTOR, "L2")
    client.insert(name, [{"id": i, "v": b.tobytes()} for i, b in enumerate(bits)])
    hits = client.search(name, [[1.0] * DIM], limit=10, consistency_level="Strong",
                         search_params={"metric_type": "L2", "params": {"radius": 10.0}})[0]
    # squared L2 from all-ones: 0 and 8 (2.0 everywhere); 72 (4.0) is outside the radius
    assert [(h["id"], h["distance"]) for h in hits] == [(0, 0.0), (1, 8.0)]


@pytest.mark.parametrize(("dtype", "width"), [(DataType.FLOAT16_VECTOR, 2), (DataType.BFLOAT16_VECTOR, 2),
                                              (DataType.INT8_VECTOR, 1), (DataType.BINARY_VECTOR, 1 / 8)])
def test_vectors_of_the_wrong_byte_length_are_refused(client, name, dtype, width):
    dim = 16
    _vector_collection(client, name, dtype, "HAMMING" if dtype == DataType.BINARY_VECTOR else "L2", dim)
    row = int(dim * width)
    for n in sorted({row - 1, row + 1, 2 * row + 1}):
        _refused(lambda n=n: client.insert(name, [{"id": 1, "v": b"\x01" * n}]),
                 f"of field (v) is not a multiple of the row size ({row} bytes for dim {dim})")
    client.insert(name, [{"id": 2, "v": b"\x01" * row}])
    assert count(client, name, consistency_level="Strong") == 1


def test_binary_vector_dim_must_be_a_multiple_of_8(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("b", DataType.BINARY_VECTOR, dim=12)
    _refused(lambda: client.create_collection(name, schema=s),
             "binary vector dimension should be multiple of 8", code=105)


def _scalar_collection(client, name) -> None:
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("i8", DataType.INT8)
    s.add_field("i16", DataType.INT16)
    s.add_field("s", DataType.VARCHAR, max_length=4)
    s.add_field("a8", DataType.ARRAY, element_type=DataType.INT8, max_capacity=3)
    s.add_field("as", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=3, max_length=3)
    s.add_field("b", DataType.BOOL)
    s.add_field("d", DataType.DOUBLE)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)


_OK = {"vec": [0.1, 0.2], "i8": 0, "i16": 0, "s": "", "a8": [], "as": [], "b": False, "d": 0.0}


@pytest.mark.parametrize(("bad", "message"), [
    ({"i8": 200}, "the 0th element (200) of field (i8) out of range: [-128, 127]"),
    ({"i8": -129}, "the 0th element (-129) of field (i8) out of range: [-128, 127]"),
    ({"i16": 40000}, "the 0th element (40000) of field (i16) out of range: [-32768, 32767]"),
    ({"d": float("nan")}, "value of float field (d) at row 0 is NaN or infinity"),
    ({"d": float("-inf")}, "value of float field (d) at row 0 is NaN or infinity"),
    ({"a8": [1, 200]}, "the 1th element (200) of array field (a8) row 0 out of range: [-128, 127]"),
    ({"a8": [1, 2, 3, 4]}, "the length (4) of 0th array of field (a8) exceeds max capacity (3)"),
    ({"s": "ééé"}, "length of varchar field s exceeds max length, row number: 0, length: 6, max length: 4"),
    ({"s": "😀x"}, "length of varchar field s exceeds max length, row number: 0, length: 5, max length: 4"),
    ({"as": ["abc", "éé"]}, 'length of VarChar array field "as" exceeds max length, row number: 0, array index: 1, '
                            "length: 4, max length: 3"),
])
def test_values_out_of_their_type_are_refused(client, name, bad, message):
    _scalar_collection(client, name)
    _refused(lambda: client.insert(name, [{**_OK, "id": 1, **bad}]), message)
    _refused(lambda: client.upsert(name, [{**_OK, "id": 1, **bad}]), message)
    assert count(client, name, consistency_level="Strong") == 0


def test_values_at_the_edges_of_their_type_read_back(client, name):
    _scalar_collection(client, name)
    rows = [{**_OK, "id": 1, "i8": -128, "i16": 32767, "s": "éé", "a8": [127, -128], "as": ["abc", "é"], "b": True,
             "d": 1.7976931348623157e308},
            {**_OK, "id": 2, "i8": 127, "i16": -32768, "s": "😀", "a8": [], "as": [""], "d": 5e-324},
            {**_OK, "id": 3, "s": "a\x00", "d": 0.1}]
    client.insert(name, rows)
    got = client.query(name, "id > 0", output_fields=list(_OK), consistency_level="Strong")
    assert sorted(({k: r[k] for k in ["id", *_OK] if k != "vec"} for r in got), key=lambda r: r["id"]) == \
        [{k: r[k] for k in ["id", *_OK] if k != "vec"} for r in rows]
    assert matching_ids(client, name, "b == true") == [1]
    assert matching_ids(client, name, "b == false") == [2, 3]
    assert matching_ids(client, name, "b != true") == [2, 3]
    assert matching_ids(client, name, "d == 0.1") == [3]
    assert matching_ids(client, name, "d > 1e308") == [1]
    assert matching_ids(client, name, 's == "éé"') == [1]
    assert matching_ids(client, name, "i8 == 128") == []


def test_json_fields_hold_any_json_value_and_filters_read_them(client, name, uri):
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("j", DataType.JSON)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    values = [{"k": 1}, [1, 2, 3], 5, '"s"', True, {"k": [1, 2]}, [{"k": 1}], 2.5, {"k": "1"}, [], {}]
    client.insert(name, [{"id": i, "vec": [0.1, 0.2], "j": v} for i, v in enumerate(values)])
    got = {r["id"]: r["j"] for r in client.query(name, "id >= 0", output_fields=["j"], consistency_level="Strong")}
    assert got == {i: ("s" if v == '"s"' else v) for i, v in enumerate(values)}
    for expr, want in [('j["k"] == 1', [0]), ("j[0] == 1", [1]), ("j == 5", [2]), ("j > 1", [2, 7]),
                       ('j == "s"', [3]), ("j == true", [4]), ("json_contains(j, 1)", [1]),
                       ('json_contains(j["k"], 1)', [5]), ('j[0]["k"] == 1', [6]), ("array_length(j) == 3", [1]),
                       ('exists j["k"]', [0, 5, 8]), ('j["k"] in [1, "1"]', [0, 8])]:
        assert matching_ids(client, name, expr) == want, expr
    # the dynamic field takes JSON objects only (Milvus: "cannot unmarshal array into Go value of type map")
    with raw_stub(uri) as stub:
        fields = [
            schema_pb2.FieldData(field_name="id", type=DataType.INT64,
                                 scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=[99]))),
            schema_pb2.FieldData(field_name="vec", type=DataType.FLOAT_VECTOR, vectors=schema_pb2.VectorField(
                dim=2, float_vector=schema_pb2.FloatArray(data=[0.1, 0.2]))),
            schema_pb2.FieldData(field_name="j", type=DataType.JSON,
                                 scalars=schema_pb2.ScalarField(json_data=schema_pb2.JSONArray(data=[b"{}"])))]
        for meta, message in [(b"[1]", "only json map is supported, got list"),
                              (b"5", "only json map is supported, got int"),
                              (b'{"a": 1}{"b": 2}', "invalid JSON in dynamic field at row 0")]:
            dyn = schema_pb2.FieldData(field_name="$meta", type=DataType.JSON, is_dynamic=True,
                                       scalars=schema_pb2.ScalarField(json_data=schema_pb2.JSONArray(data=[meta])))
            r = stub.Insert(milvus_pb2.InsertRequest(collection_name=name, num_rows=1, fields_data=[*fields, dyn]))
            assert r.status.code == 1100 and message in r.status.reason, r.status
        bad_j = schema_pb2.FieldData(field_name="j", type=DataType.JSON,
                                     scalars=schema_pb2.ScalarField(json_data=schema_pb2.JSONArray(data=[b'{"a":NaN}'])))
        r = stub.Insert(milvus_pb2.InsertRequest(collection_name=name, num_rows=1, fields_data=[*fields[:2], bad_j]))
        assert r.status.code == 1100 and "invalid JSON in json field (j) at row 0" in r.status.reason, r.status
    assert count(client, name, consistency_level="Strong") == len(values)


def test_int64_keys_at_both_ends_and_the_empty_varchar_key(client, name):
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("t", DataType.VARCHAR, max_length=4)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=s, index_params=idx)
    client.insert(name, [{"id": k, "vec": [0.1, 0.2], "t": "a"} for k in (I64_MAX, I64_MIN, 0, -1)])
    assert sorted(r["id"] for r in client.get(name, ids=[I64_MAX, I64_MIN])) == [I64_MIN, I64_MAX]
    assert matching_ids(client, name, f"id == {I64_MAX}") == [I64_MAX]  # Milvus 2.3.5: none
    assert matching_ids(client, name, f"id > {I64_MAX - 1}") == [I64_MAX]
    assert matching_ids(client, name, f"id in [{I64_MAX}, {I64_MIN}]") == [I64_MIN, I64_MAX]
    client.upsert(name, [{"id": k, "vec": [0.3, 0.2], "t": "b"} for k in (I64_MAX, I64_MIN)])
    got = client.query(name, f"id >= {I64_MIN}", output_fields=["t"], consistency_level="Strong")
    assert sorted((r["id"], r["t"]) for r in got) == [(I64_MIN, "b"), (-1, "a"), (0, "a"), (I64_MAX, "b")]
    client.delete(name, ids=[I64_MAX])
    client.delete(name, filter=f"id in [{I64_MIN}]")
    assert matching_ids(client, name, f"id >= {I64_MIN}") == [-1, 0]

    pk_str = name + "_s"
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=4)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("t", DataType.VARCHAR, max_length=4)
    client.create_collection(pk_str, schema=s, index_params=idx)
    try:
        client.insert(pk_str, [{"id": k, "vec": [0.1, 0.2], "t": "a"} for k in ("", " ", "a", "\x00")])
        assert [r["id"] for r in client.get(pk_str, ids=[""])] == [""]
        assert [r["id"] for r in client.query(pk_str, 'id == ""', consistency_level="Strong")] == [""]
        client.upsert(pk_str, [{"id": "", "vec": [0.3, 0.2], "t": "b"}])
        got = client.query(pk_str, 'id != "zz"', output_fields=["t"], consistency_level="Strong")
        assert sorted((r["id"], r["t"]) for r in got) == [("", "b"), ("\x00", "a"), (" ", "a"), ("a", "a")]
        client.delete(pk_str, ids=[""])
        assert sorted(r["id"] for r in client.query(pk_str, 'id != "zz"', consistency_level="Strong")) == \
            ["\x00", " ", "a"]
    finally:
        client.drop_collection(pk_str)

"""FieldData <-> columns: round trips through pymilvus's own encoders/parsers, and validation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pymilvus.client.abstract import CollectionSchema as PyCollectionSchema
from pymilvus.client.grpc_handler import GrpcHandler
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vecdb.errors import FieldNotFound, InvalidParameter
from vecdb.proxy.fielddata import (
    JSON_MAX_DEPTH,
    JSON_MAX_LENGTH,
    columns_from_field_data,
    float32_to_bfloat16,
    parse_placeholder_group,
    resolve_output_fields,
)
from vecdb.proxy.fieldencode import field_data_from_columns
from vecdb.proxy.results import query_results
from vecdb.schema import CollectionSchema
from vecdb.schema import DataType as D
from vecdb.vectors_check import MAX_SQUARED_NORM, check_float_vectors, invalid_rows

# ---------------------------------------------------------------- helpers


def make_schema(specs, dynamic=False, auto_id=False, name="c") -> CollectionSchema:
    """specs: (name, dtype, {type params}) with the first one the primary key."""
    pb = schema_pb2.CollectionSchema(name=name, enable_dynamic_field=dynamic)
    for i, (fname, dt, params) in enumerate(specs):
        f = pb.fields.add(name=fname, data_type=int(dt), is_primary_key=(i == 0), autoID=(i == 0 and auto_id))
        params = dict(params)
        if "element_type" in params:
            f.element_type = int(params.pop("element_type"))
        for k, v in params.items():
            f.type_params.add(key=k, value=str(v))
    return CollectionSchema.from_proto(pb, name)


def fields_info(schema: CollectionSchema) -> list[dict]:
    """What pymilvus's insert path gets from DescribeCollection (Milvus hides $meta)."""
    resp = milvus_pb2.DescribeCollectionResponse()
    schema.to_proto(resp.schema)
    return [f.dict() for f in PyCollectionSchema(resp).fields if not f.is_dynamic]


def insert_request(schema, rows, **kw):
    return Prepare.row_insert_param(
        "c", rows, "", fields_info(schema), enable_dynamic=schema.enable_dynamic_field, **kw
    )


class _Stub:
    def __init__(self, reply):
        self.reply, self.request = reply, None

    def Query(self, request, timeout=None, metadata=None):
        self.request = request
        return self.reply

    Search = Query


def pymilvus_query(reply, output_fields):
    """Parse a QueryResults with pymilvus's real client code (GrpcHandler.query on a fake stub)."""
    h = GrpcHandler.__new__(GrpcHandler)
    h._address = "fake:19530"
    h._stub = _Stub(reply)
    return [dict(r) for r in h.query("c", "id >= 0", output_fields=output_fields)]


ALL = [
    ("id", D.INT64, {}),
    ("b", D.BOOL, {}),
    ("i8", D.INT8, {}),
    ("i16", D.INT16, {}),
    ("i32", D.INT32, {}),
    ("i64", D.INT64, {}),
    ("f", D.FLOAT, {}),
    ("d", D.DOUBLE, {}),
    ("s", D.VARCHAR, {"max_length": 16}),
    ("j", D.JSON, {}),
    ("ai", D.ARRAY, {"element_type": D.INT16, "max_capacity": 4}),
    ("as_", D.ARRAY, {"element_type": D.VARCHAR, "max_capacity": 3, "max_length": 4}),
    ("ad", D.ARRAY, {"element_type": D.DOUBLE, "max_capacity": 3}),
    ("ab", D.ARRAY, {"element_type": D.BOOL, "max_capacity": 3}),
    ("fv", D.FLOAT_VECTOR, {"dim": 8}),
    ("bv", D.BINARY_VECTOR, {"dim": 16}),
    ("hv", D.FLOAT16_VECTOR, {"dim": 4}),
    ("bf", D.BFLOAT16_VECTOR, {"dim": 4}),
]


def all_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append({
            "id": 1000 + i,
            "b": bool(i % 2),
            "i8": [-128, 127, 5][i % 3],
            "i16": -30000 + i,
            "i32": 2**31 - 1 - i,
            "i64": -(2**62) + i,
            "f": float(np.float32(1.5 + i)),
            "d": 1e300 / (i + 1),
            "s": ["", "héllo", "é" * 8, "x" * 16][i % 4],
            "j": [{"a": i, "nested": {"k": [1, 2]}}, [1, "two"], 3.5, True, {"s": "é"}, 0][i % 6],
            "ai": list(range(i % 5)),
            "as_": ["ab", "ñ", "wxyz"][: i % 4],
            "ad": [0.5 * i] * (i % 4),
            "ab": [True, False][: i % 3],
            "fv": rng.random(8, dtype=np.float32),
            "bv": rng.integers(0, 256, 2, dtype=np.uint8).tobytes(),
            "hv": rng.random(4).astype(np.float16),
            "bf": float32_to_bfloat16(rng.random(4, dtype=np.float32)).tobytes(),
            "color": ["red", "blue"][i % 2],
            "size": i,
        })
    return rows


@pytest.fixture(scope="module")
def full():
    schema = make_schema(ALL, dynamic=True)
    rows = all_rows(12)
    req = insert_request(schema, rows)
    return schema, rows, req


# ---------------------------------------------------------------- round trips


def test_insert_columns_have_schema_dtypes_and_values(full):
    schema, rows, req = full
    cols = columns_from_field_data(schema, req.fields_data, req.num_rows)
    assert list(cols) == [f.name for f in schema.fields]
    n = len(rows)
    expect_dtypes = {
        "id": np.int64, "b": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32,
        "i64": np.int64, "f": np.float32, "d": np.float64, "s": object, "j": object,
        "fv": np.float32, "bv": np.uint8, "hv": np.float16, "bf": np.uint16,
    }
    for name, dt in expect_dtypes.items():
        assert cols[name].dtype == dt, name
        assert len(cols[name]) == n
    assert cols["fv"].shape == (n, 8) and cols["bv"].shape == (n, 2)
    assert cols["hv"].shape == (n, 4) and cols["bf"].shape == (n, 4)
    for i, r in enumerate(rows):
        for name in ("id", "b", "i8", "i16", "i32", "i64", "f", "d", "s", "j"):
            assert cols[name][i] == r[name], (name, i)
        np.testing.assert_array_equal(cols["fv"][i], r["fv"])
        assert cols["bv"][i].tobytes() == r["bv"]
        np.testing.assert_array_equal(cols["hv"][i], r["hv"])
        assert cols["bf"][i].tobytes() == r["bf"]
        assert cols["ai"][i].dtype == np.int16 and cols["ai"][i].tolist() == r["ai"]
        assert cols["as_"][i].dtype == object and cols["as_"][i].tolist() == r["as_"]
        assert cols["ad"][i].dtype == np.float64 and cols["ad"][i].tolist() == r["ad"]
        assert cols["ab"][i].dtype == np.bool_ and cols["ab"][i].tolist() == r["ab"]
        assert cols["$meta"][i] == {"color": r["color"], "size": r["size"]}


def test_round_trip_through_pymilvus_query_parser(full):
    schema, rows, req = full
    cols = columns_from_field_data(schema, req.fields_data, req.num_rows)
    names, keys = resolve_output_fields(schema, ["*"])
    parsed = pymilvus_query(query_results(schema, cols, names, keys, "c"), ["*"])
    assert len(parsed) == len(rows)
    for got, r in zip(parsed, rows):
        for name in ("id", "b", "i8", "i16", "i32", "i64", "d", "s", "j", "ai", "as_", "ad", "ab",
                     "color", "size"):
            assert got[name] == r[name], name
        assert got["f"] == pytest.approx(r["f"])
        np.testing.assert_array_equal(np.asarray(got["fv"], np.float32), r["fv"])
        assert got["bv"] == [r["bv"]]
        np.testing.assert_array_equal(np.frombuffer(got["hv"][0], np.float16), r["hv"])
        assert got["bf"] == [r["bf"]]


def test_dynamic_keys_only_requested_ones_come_back(full):
    schema, rows, req = full
    cols = columns_from_field_data(schema, req.fields_data, req.num_rows)
    names, keys = resolve_output_fields(schema, ["i8", "color"])
    assert (names, keys) == (["i8"], ["color"])
    fds = field_data_from_columns(schema, cols, names, keys)
    meta = fds[-1]
    assert meta.is_dynamic and meta.field_name == "$meta" and meta.type == D.JSON
    assert [json.loads(b) for b in meta.scalars.json_data.data] == [{"color": r["color"]} for r in rows]
    parsed = pymilvus_query(query_results(schema, cols, names, keys, "c"), ["i8", "color"])
    assert parsed == [{"id": r["id"], "i8": r["i8"], "color": r["color"]} for r in rows]


def test_column_based_insert_round_trip():
    schema = make_schema([("pk", D.VARCHAR, {"max_length": 8}), ("age", D.INT16, {}),
                          ("v", D.FLOAT_VECTOR, {"dim": 3})])
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    entities = [
        {"name": "pk", "type": D.VARCHAR, "values": ["a", "b", "c", "d"]},
        {"name": "age", "type": D.INT16, "values": [1, -2, 3, 32767]},
        {"name": "v", "type": D.FLOAT_VECTOR, "values": list(vecs)},
    ]
    req = Prepare.batch_insert_param("c", entities, "", fields_info(schema))
    cols = columns_from_field_data(schema, req.fields_data, req.num_rows)
    assert cols["pk"].tolist() == ["a", "b", "c", "d"]
    assert cols["age"].tolist() == [1, -2, 3, 32767] and cols["age"].dtype == np.int16
    np.testing.assert_array_equal(cols["v"], vecs)
    parsed = pymilvus_query(query_results(schema, cols, ["age", "v"], [], "c"), ["age", "v"])
    assert [p["pk"] for p in parsed] == ["a", "b", "c", "d"]
    assert [list(p["v"]) for p in parsed] == vecs.tolist()


def test_float_lists_for_float16_and_bfloat16_fields_are_converted():
    schema = make_schema([("id", D.INT64, {}), ("h", D.FLOAT16_VECTOR, {"dim": 2}),
                          ("bf", D.BFLOAT16_VECTOR, {"dim": 2})])
    req = insert_request(schema, [{"id": 1, "h": [0.5, 1.25], "bf": [1.0, -2.5]}])
    cols = columns_from_field_data(schema, req.fields_data, 1)
    assert cols["h"].dtype == np.float16 and cols["h"].tolist() == [[0.5, 1.25]]
    # bfloat16 1.0 = 0x3F80, -2.5 = 0xC020
    assert cols["bf"].dtype == np.uint16 and cols["bf"].tolist() == [[0x3F80, 0xC020]]


def test_bfloat16_rounding_is_nearest_even():
    # bfloat16 ulp at 1.0 is 2^-7: ties go to the even neighbour, others to the nearest
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7 + 2**-9, 1 + 2**-7 + 2**-8 + 2**-10], dtype=np.float32)
    assert float32_to_bfloat16(x).tolist() == [0x3F80, 0x3F82, 0x3F81, 0x3F82]


def test_auto_id_pk_is_absent_and_must_not_be_sent():
    schema = make_schema([("id", D.INT64, {}), ("v", D.FLOAT_VECTOR, {"dim": 2})], auto_id=True)
    req = insert_request(schema, [{"v": [1.0, 2.0]}, {"v": [3.0, 4.0]}])
    cols = columns_from_field_data(schema, req.fields_data, 2)
    assert list(cols) == ["v"]
    req = insert_request(schema, [{"id": 5, "v": [1.0, 2.0]}])
    with pytest.raises(InvalidParameter, match="can not assign primary field data when auto id enabled id"):
        columns_from_field_data(schema, req.fields_data, 1)


def test_dynamic_field_missing_is_filled_with_empty_dicts():
    schema = make_schema([("id", D.INT64, {}), ("v", D.FLOAT_VECTOR, {"dim": 2})], dynamic=True)
    req = insert_request(schema, [{"id": 1, "v": [1.0, 2.0]}, {"id": 2, "v": [1.0, 2.0]}])
    fds = [fd for fd in req.fields_data if not fd.is_dynamic]
    cols = columns_from_field_data(schema, fds, 2)
    assert cols["$meta"].tolist() == [{}, {}] and cols["$meta"][0] is not cols["$meta"][1]


def test_missing_field_and_partial_update():
    schema = make_schema([("id", D.INT64, {}), ("age", D.INT32, {}), ("v", D.FLOAT_VECTOR, {"dim": 2})])
    req = insert_request(schema, [{"id": 1, "age": 3, "v": [1.0, 2.0]}])
    without_age = [fd for fd in req.fields_data if fd.field_name != "age"]
    with pytest.raises(InvalidParameter, match=r"fieldSchema\(age\) has no corresponding fieldData pass in"):
        columns_from_field_data(schema, without_age, 1)
    cols = columns_from_field_data(schema, without_age, 1, partial_update=True)
    assert list(cols) == ["id", "v"]
    only_age = [fd for fd in req.fields_data if fd.field_name == "age"]
    with pytest.raises(InvalidParameter, match="must assign pk when upsert"):
        columns_from_field_data(schema, only_age, 1, partial_update=True)
    up = Prepare.row_upsert_param("c", [{"id": 7, "age": 9}], "", fields_info(schema), partial_update=True)
    cols = columns_from_field_data(schema, up.fields_data, up.num_rows, partial_update=True)
    assert {k: v.tolist() for k, v in cols.items()} == {"id": [7], "age": [9]}


# ---------------------------------------------------------------- validation

SMALL = [
    ("id", D.INT64, {}),
    ("age", D.INT8, {}),
    ("i16", D.INT16, {}),
    ("f", D.FLOAT, {}),
    ("d", D.DOUBLE, {}),
    ("s", D.VARCHAR, {"max_length": 4}),
    ("j", D.JSON, {}),
    ("arr", D.ARRAY, {"element_type": D.INT8, "max_capacity": 2}),
    ("sarr", D.ARRAY, {"element_type": D.VARCHAR, "max_capacity": 2, "max_length": 2}),
    ("vec", D.FLOAT_VECTOR, {"dim": 8}),
    ("h", D.FLOAT16_VECTOR, {"dim": 2}),
    ("bf", D.BFLOAT16_VECTOR, {"dim": 2}),
    ("bv", D.BINARY_VECTOR, {"dim": 8}),
]


def small_row(i=0, **over):
    row = {
        "id": i, "age": 1, "i16": 2, "f": 0.5, "d": 0.25, "s": "ab", "j": {"k": 1},
        "arr": [1], "sarr": ["x"], "vec": [0.1] * 8, "h": np.array([1, 2], np.float16),
        "bf": np.array([0x3F80, 0x3F80], np.uint16).tobytes(), "bv": b"\x0f",
    }
    row.update(over)
    return row


@pytest.fixture(scope="module")
def small():
    return make_schema(SMALL), make_schema(SMALL, dynamic=True)


def fds_of(schema, rows):
    req = insert_request(schema, rows)
    return list(req.fields_data), req.num_rows


def field(fds, name):
    return next(fd for fd in fds if fd.field_name == name)


def test_valid_small_rows_convert(small):
    fds, n = fds_of(small[0], [small_row(0), small_row(1)])
    cols = columns_from_field_data(small[0], fds, n)
    assert cols["id"].tolist() == [0, 1] and cols["age"].dtype == np.int8


def test_num_rows_zero_and_length_mismatch(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row(i) for i in range(4)])
    with pytest.raises(InvalidParameter, match="num_rows should be greater than 0"):
        columns_from_field_data(schema, fds, 0)
    del field(fds, "age").scalars.int_data.data[-1]
    with pytest.raises(InvalidParameter,
                       match=r"the num_rows \(3\) of field \(age\) is not equal to passed num_rows \(4\)"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(i) for i in range(4)])
    with pytest.raises(InvalidParameter,
                       match=r"the num_rows \(4\) of field \(\w+\) is not equal to passed num_rows \(5\)"):
        columns_from_field_data(schema, fds, 5)
    vec = field(fds, "vec").vectors.float_vector.data
    del vec[-8:]
    with pytest.raises(InvalidParameter, match=r"the num_rows \(3\) of field \(vec\)"):
        columns_from_field_data(schema, fds, 4)
    bv = field(fds, "bv")
    bv.vectors.binary_vector = bv.vectors.binary_vector[:-1]
    with pytest.raises(InvalidParameter, match=r"the num_rows \(3\) of field \(bv\)"):
        columns_from_field_data(schema, [f for f in fds if f.field_name != "vec"] + [_vec_field(4)], 4)


def _vec_field(n, dim=8):
    fd = schema_pb2.FieldData(field_name="vec", type=D.FLOAT_VECTOR)
    fd.vectors.dim = dim
    fd.vectors.float_vector.data.extend([0.0] * n * dim)
    return fd


def test_unknown_field_duplicate_and_meta_without_dynamic(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row()])
    extra = schema_pb2.FieldData(field_name="zzz", type=D.INT64)
    extra.scalars.long_data.data.append(1)
    with pytest.raises(FieldNotFound, match="zzz"):
        columns_from_field_data(schema, fds + [extra], n)
    with pytest.raises(InvalidParameter, match="duplicated field age"):
        columns_from_field_data(schema, fds + [field(fds, "age")], n)
    meta = schema_pb2.FieldData(field_name="$meta", type=D.JSON, is_dynamic=True)
    meta.scalars.json_data.data.append(b"{}")
    with pytest.raises(InvalidParameter, match="without dynamic schema enabled"):
        columns_from_field_data(schema, fds + [meta], n)


def test_wrong_data_type(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row()])
    bad = schema_pb2.FieldData(field_name="age", type=D.VARCHAR)
    bad.scalars.string_data.data.append("1")
    others = [fd for fd in fds if fd.field_name != "age"]
    with pytest.raises(InvalidParameter, match=r"data type of field \(age\) is VarChar, but the schema type is Int8"):
        columns_from_field_data(schema, others + [bad], n)
    bad = schema_pb2.FieldData(field_name="age", type=D.INT8)
    bad.scalars.long_data.data.append(1)
    with pytest.raises(InvalidParameter, match="array type mismatch: need int_data, got long_data"):
        columns_from_field_data(schema, others + [bad], n)
    bad = schema_pb2.FieldData(field_name="vec", type=D.FLOAT_VECTOR)
    bad.vectors.dim = 8
    bad.vectors.binary_vector = b"\0"
    with pytest.raises(InvalidParameter, match="need float_vector, got binary_vector"):
        columns_from_field_data(schema, [fd for fd in fds if fd.field_name != "vec"] + [bad], n)


def test_vector_dim_mismatch(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row(vec=[0.1] * 16)])
    with pytest.raises(InvalidParameter, match=r"the dim \(16\) of field data\(vec\) is not equal to schema dim \(8\)"):
        columns_from_field_data(schema, fds, n)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_rejected_in_float_vectors_and_scalars(small, value):
    schema = small[0]
    for over, pattern in [
        ({"vec": [0.1] * 7 + [value]}, r"the 1th vector of field \(vec\) contains NaN or infinity"),
        ({"f": value}, r"value of float field \(f\) at row 1 is NaN or infinity"),
        ({"d": value}, r"value of float field \(d\) at row 1 is NaN or infinity"),
        ({"h": np.array([0, value], np.float16)}, r"the 1th vector of field \(h\) contains NaN or infinity"),
    ]:
        fds, n = fds_of(schema, [small_row(0), small_row(1, **over)])
        with pytest.raises(InvalidParameter, match=pattern):
            columns_from_field_data(schema, fds, n)
    bits = np.array([0x3F80, np.float32(value).view(np.uint32) >> 16], np.uint16).tobytes()
    fds, n = fds_of(schema, [small_row(0, bf=bits)])
    with pytest.raises(InvalidParameter, match=r"the 0th vector of field \(bf\) contains NaN or infinity"):
        columns_from_field_data(schema, fds, n)


def test_vectors_overflowing_float32_arithmetic_rejected(small):
    """A finite 1e20 squares past float32's max: FAISS's k-means crashed on such rows."""
    schema = small[0]
    fds, n = fds_of(schema, [small_row(0), small_row(1, vec=[0.1] * 7 + [1e20])])
    with pytest.raises(InvalidParameter, match=(
            r"the 1th vector of field \(vec\) is too large: its squared L2 norm 1e\+40 exceeds 1e\+37")):
        columns_from_field_data(schema, fds, n)
    # the bound is on the whole row: each component fine, their sum of squares not
    spread = [float(np.sqrt(MAX_SQUARED_NORM / 8) * 1.01)] * 8
    fds, n = fds_of(schema, [small_row(0, vec=spread)])
    with pytest.raises(InvalidParameter, match=r"the 0th vector of field \(vec\) is too large"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0, vec=[float(np.sqrt(MAX_SQUARED_NORM / 8) * 0.99)] * 8)])
    assert columns_from_field_data(schema, fds, n)["vec"].shape == (1, 8)
    # bfloat16 has float32's range: raw bits and float lists both
    big = np.float32(1e20).view(np.uint32) >> 16
    fds, n = fds_of(schema, [small_row(0, bf=np.array([0x3F80, big], np.uint16).tobytes())])
    with pytest.raises(InvalidParameter, match=r"the 0th vector of field \(bf\) is too large"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0, bf=[1.0, 2.0]), small_row(1, bf=[1.0, -3e19])])
    with pytest.raises(InvalidParameter, match=r"the 1th vector of field \(bf\) is too large"):
        columns_from_field_data(schema, fds, n)


def test_vector_check_function():
    v = np.ones((6, 4), np.float32)
    assert invalid_rows(v).tolist() == [] and invalid_rows(np.zeros((0, 4), np.float32)).tolist() == []
    v[1, 2], v[3, 0], v[4] = np.nan, 1e19, 1.6e18  # row 4: 4 * 2.56e36 = 1.02e37
    assert invalid_rows(v).tolist() == [1, 3, 4]
    assert invalid_rows(v.astype(np.float64)).tolist() == [1, 3, 4]
    assert invalid_rows(float32_to_bfloat16(v)).tolist() == [1, 3, 4]
    assert invalid_rows(np.full((2, 4), 65504, np.float16)).tolist() == []
    # one row at a time (a search's query: the one-row path) gives the same verdicts, and no numpy warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rows in (v, v.astype(np.float64), float32_to_bfloat16(v)):
            assert [i for i in range(6) if invalid_rows(rows[i:i + 1]).tolist() == [0]] == [1, 3, 4]
        for value in (np.inf, -np.inf, 3.4e38):
            assert invalid_rows(np.full((1, 4), value, np.float32)).tolist() == [0]
        assert invalid_rows(np.full((1, 4), 1.1e18, np.float32)).tolist() == []  # 4.84e36: under the bound
    with pytest.raises(InvalidParameter, match=r"the 1th search vector of field \(x\) contains NaN or infinity: "
                                               r"value 'nan' is not a number or infinity"):
        check_float_vectors(v, "x", "search vector")
    with pytest.raises(InvalidParameter, match=r"the 0th vector of field \(x\) is too large: .* 1\.024e\+37"):
        check_float_vectors(v[4:], "x")


def test_float16_overflow_from_float_list_rejected(small):
    fds, n = fds_of(small[0], [small_row(h=[1.0, 1e6])])
    with pytest.raises(InvalidParameter, match="out of float16 range"):
        columns_from_field_data(small[0], fds, n)


def test_varchar_max_length_counts_utf8_bytes(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row(s="éé")])  # 2 chars, 4 bytes: fits max_length 4
    assert columns_from_field_data(schema, fds, n)["s"].tolist() == ["éé"]
    fds, n = fds_of(schema, [small_row(0), small_row(1, s="abé")])  # 3 chars, 4 bytes... fits
    columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0), small_row(1, s="aéé")])  # 3 chars, 5 bytes
    with pytest.raises(InvalidParameter,
                       match="length of varchar field s exceeds max length, row number: 1, length: 5, max length: 4"):
        columns_from_field_data(schema, fds, n)


def test_int8_int16_out_of_range(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row(0), small_row(1, age=128)])
    with pytest.raises(InvalidParameter, match=r"the 1th element \(128\) of field \(age\) out of range: \[-128, 127\]"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0, i16=-32769)])
    with pytest.raises(InvalidParameter, match=r"\(-32769\) of field \(i16\) out of range: \[-32768, 32767\]"):
        columns_from_field_data(schema, fds, n)


def test_array_validation(small):
    schema = small[0]
    fds, n = fds_of(schema, [small_row(0), small_row(1, arr=[1, 2, 3])])
    with pytest.raises(InvalidParameter,
                       match=r"the length \(3\) of 1th array of field \(arr\) exceeds max capacity \(2\)"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0, arr=[1, 200])])
    with pytest.raises(InvalidParameter, match=r"the 1th element \(200\) of array field \(arr\) row 0 out of range"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0, sarr=["ok", "abc"])])
    with pytest.raises(InvalidParameter,
                       match='VarChar array field "sarr" exceeds max length, row number: 0, array index: 1, length: 3'):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0)])
    arr = field(fds, "arr")
    arr.scalars.array_data.data[0].Clear()
    arr.scalars.array_data.data[0].long_data.data.append(1)
    with pytest.raises(InvalidParameter, match="need Int8 array, got long_data at row 0"):
        columns_from_field_data(schema, fds, n)
    fds, n = fds_of(schema, [small_row(0, arr=[])])
    assert columns_from_field_data(schema, fds, n)["arr"][0].tolist() == []


def test_json_validation(small):
    schema, dyn_schema = small
    fds, n = fds_of(schema, [small_row(0)])
    field(fds, "j").scalars.json_data.data[0] = b"{not json"
    with pytest.raises(InvalidParameter, match=r"invalid JSON in json field \(j\) at row 0"):
        columns_from_field_data(schema, fds, n)
    big = {"k": "x" * JSON_MAX_LENGTH}
    fds, n = fds_of(schema, [small_row(0, j=big)])
    too_long = rf"the length \({JSON_MAX_LENGTH + 8}\) of json field \(j\) exceeds max length \({JSON_MAX_LENGTH}\)"
    with pytest.raises(InvalidParameter, match=too_long):
        columns_from_field_data(schema, fds, n)
    field(fds, "j").scalars.json_data.data[0] = b'"\xed\xa0\x80"'  # a UTF-16 surrogate: no UTF-8
    with pytest.raises(InvalidParameter, match=r"invalid JSON in json field \(j\) at row 0: str is not valid UTF-8"):
        columns_from_field_data(schema, fds, n)
    for depth, ok in ((JSON_MAX_DEPTH, True), (JSON_MAX_DEPTH + 1, False), (1000, False)):
        nested = b'{"a": ' * (depth - 1) + b"[]" + b"}" * (depth - 1)
        field(fds, "j").scalars.json_data.data[0] = nested
        if ok:
            assert columns_from_field_data(schema, fds, n)["j"][0]["a"]["a"]
        else:
            with pytest.raises(InvalidParameter, match=(
                    rf"the JSON value of json field \(j\) at row 0 is nested more than {JSON_MAX_DEPTH} levels deep")):
                columns_from_field_data(schema, fds, n)
    # many brackets side by side are not depth
    field(fds, "j").scalars.json_data.data[0] = b"[" + b",".join([b"[]"] * 1000) + b"]"
    assert len(columns_from_field_data(schema, fds, n)["j"][0]) == 1000
    fds, n = fds_of(schema, [small_row(0, j=[1, "a"])])  # non-dynamic JSON may be any JSON value
    assert columns_from_field_data(schema, fds, n)["j"][0] == [1, "a"]

    fds, n = fds_of(dyn_schema, [small_row(0, extra=1)])
    meta = next(fd for fd in fds if fd.is_dynamic)
    assert columns_from_field_data(dyn_schema, fds, n)["$meta"][0] == {"extra": 1}
    for raw, pattern in [
        (b"[1, 2]", "only json map is supported, got list"),
        (b'{"$meta": 1}', "cannot set json key to: \\$meta"),
        (b'{"age": 1}', "dynamic field name cannot include the static field name: age"),
        (b"nope", "invalid JSON in dynamic field at row 0"),
        (b'{"k": "' + b"x" * JSON_MAX_LENGTH + b'"}', "of dynamic field exceeds max length"),
        (b'{"k": "\xff"}', "invalid JSON in dynamic field at row 0: str is not valid UTF-8"),
        (b'{"k": ' + b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH + b"}",
         f"the JSON value of dynamic field at row 0 is nested more than {JSON_MAX_DEPTH} levels deep"),
    ]:
        meta.scalars.json_data.data[0] = raw
        with pytest.raises(InvalidParameter, match=pattern):
            columns_from_field_data(dyn_schema, fds, n)


def test_null_values_rejected(small):
    fds, n = fds_of(small[0], [small_row(0), small_row(1)])
    field(fds, "age").valid_data.extend([True, False])
    with pytest.raises(InvalidParameter, match=r"field \(age\) is not nullable"):
        columns_from_field_data(small[0], fds, n)


# ---------------------------------------------------------------- output fields


def test_resolve_output_fields(small):
    schema, dyn = small
    assert resolve_output_fields(schema, ["*"]) == ([f.name for f in schema.fields], [])
    assert resolve_output_fields(dyn, ["*", "age"]) == ([f.name for f in schema.fields], ["*"])
    assert resolve_output_fields(dyn, [" s ", "age", "s", "color", "color"]) == (["s", "age"], ["color"])
    assert resolve_output_fields(dyn, ["$meta", "color"]) == ([], ["*"])
    assert resolve_output_fields(dyn, []) == ([], [])
    with pytest.raises(FieldNotFound, match="field color not exist"):
        resolve_output_fields(schema, ["color"])
    with pytest.raises(FieldNotFound, match=r"field \$meta not exist"):
        resolve_output_fields(schema, ["$meta"])
    with pytest.raises(InvalidParameter, match="parse output field name failed"):
        resolve_output_fields(dyn, ['color["x"]'])


def test_field_data_from_columns_whole_meta_and_unknown_field(small):
    dyn = small[1]
    cols = {"age": np.array([1, 2], np.int8), "$meta": np.array([{"a": 1}, {"b": [2]}], dtype=object)}
    fds = field_data_from_columns(dyn, cols, ["age", "$meta"])
    assert [fd.field_name for fd in fds] == ["age", "$meta"]
    assert list(fds[0].scalars.int_data.data) == [1, 2] and fds[0].field_id == dyn.field("age").field_id
    assert [json.loads(b) for b in fds[1].scalars.json_data.data] == [{"a": 1}, {"b": [2]}]
    fds = field_data_from_columns(dyn, cols, ["age"], ["zz"])
    assert list(fds[1].scalars.json_data.data) == [b"{}", b"{}"]
    with pytest.raises(FieldNotFound):
        field_data_from_columns(dyn, cols, ["nope"])
    with pytest.raises(FieldNotFound):
        field_data_from_columns(small[0], cols, ["$meta"])


def test_empty_columns_still_parse(small):
    schema = small[0]
    cols = {f.name: _empty_col(f) for f in schema.fields}
    names, keys = resolve_output_fields(schema, ["*"])
    assert pymilvus_query(query_results(schema, cols, names, keys, "c"), ["*"]) == []


def _empty_col(f):
    if f.dtype.is_vector:
        width = f.dim // 8 if f.dtype == D.BINARY_VECTOR else f.dim
        return np.zeros((0, width), {D.FLOAT_VECTOR: np.float32, D.FLOAT16_VECTOR: np.float16}.get(f.dtype, np.uint16))
    return np.empty(0, dtype=object)


# ---------------------------------------------------------------- search vectors


def _group(data, **kw):
    return Prepare._prepare_placeholder_str(data, **kw)


def test_placeholder_float_vectors(small):
    vec_field = small[0].field("vec")
    q = np.arange(24, dtype=np.float32).reshape(3, 8)
    for data in (q.tolist(), list(q), [row.astype(np.float64) for row in q]):
        out = parse_placeholder_group(_group(data), vec_field)
        assert out.dtype == np.float32 and out.shape == (3, 8)
        np.testing.assert_array_equal(out, q)
    one = parse_placeholder_group(_group([q[0].tolist()]), vec_field)
    assert one.shape == (1, 8)


def test_placeholder_half_and_binary(small):
    schema = small[0]
    h, bf, bv = schema.field("h"), schema.field("bf"), schema.field("bv")
    q16 = np.array([[0.5, 2.0], [1.0, -1.0]], np.float16)
    out = parse_placeholder_group(_group(list(q16)), h)
    assert out.dtype == np.float16 and out.tolist() == q16.tolist()
    out = parse_placeholder_group(_group([[0.5, 2.0]]), h)  # float32 lists are converted
    assert out.dtype == np.float16 and out.tolist() == [[0.5, 2.0]]
    out = parse_placeholder_group(_group([[1.0, -2.5]]), bf)
    assert out.dtype == np.uint16 and out.tolist() == [[0x3F80, 0xC020]]
    raw = np.array([[0x3F80, 0x4000]], np.uint16)
    group = common_pb2.PlaceholderGroup()
    group.placeholders.add(tag="$0", type=common_pb2.PlaceholderType.BFloat16Vector, values=[raw.tobytes()])
    assert parse_placeholder_group(group.SerializeToString(), bf).tolist() == raw.tolist()
    out = parse_placeholder_group(_group([b"\x01", b"\xff"]), bv)
    assert out.dtype == np.uint8 and out.tolist() == [[1], [255]]


def test_placeholder_errors(small):
    schema = small[0]
    vec = schema.field("vec")
    with pytest.raises(InvalidParameter, match=r"the dim \(4\) of search vectors is not equal to schema dim \(8\)"):
        parse_placeholder_group(_group([[0.1] * 8, [0.1] * 4]), vec)
    # rows checked one by one, not by the total: 12 + 4 floats are two rows' bytes, still refused (first bad row)
    with pytest.raises(InvalidParameter, match=r"the dim \(12\) of search vectors is not equal to schema dim \(8\)"):
        parse_placeholder_group(_group([[0.1] * 12, [0.1] * 4]), vec)
    with pytest.raises(InvalidParameter, match=r"BinaryVector\) does not match the type of field \(vec\): FloatVector"):
        parse_placeholder_group(_group([b"\x01"]), vec)
    with pytest.raises(InvalidParameter, match="not a vector field"):
        parse_placeholder_group(_group([[0.1] * 8]), schema.field("age"))
    empty = common_pb2.PlaceholderGroup()
    empty.placeholders.add(tag="$0", type=common_pb2.PlaceholderType.FloatVector)
    with pytest.raises(InvalidParameter, match=r"nq \[0\] is invalid, nq \(number of search vector per search "
                                               r"request\) should be in range \[1, 16384\], but got 0"):
        parse_placeholder_group(empty.SerializeToString(), vec)
    with pytest.raises(InvalidParameter, match="failed to parse"):
        parse_placeholder_group(b"\xff\xff\xff", vec)


@pytest.mark.parametrize("value,why", [(float("nan"), "contains NaN or infinity"),
                                       (float("-inf"), "contains NaN or infinity"),
                                       (1e20, "is too large: its squared L2 norm 1e\\+40")])
def test_placeholder_rejects_vectors_distances_cannot_take(small, value, why):
    schema = small[0]
    q = [[0.1] * 8, [0.1] * 7 + [value]]
    with pytest.raises(InvalidParameter, match=rf"the 1th search vector of field \(vec\) {why}"):
        parse_placeholder_group(_group(q), schema.field("vec"))
    with pytest.raises(InvalidParameter, match=rf"the 0th search vector of field \(bf\) {why}"):
        parse_placeholder_group(_group([[1.0, value]]), schema.field("bf"))
    with pytest.raises(InvalidParameter, match=rf"the 0th search vector of field \(h\) {why}"):
        parse_placeholder_group(_group([[1.0, value]]), schema.field("h"))
    with pytest.raises(InvalidParameter, match=r"the 0th search vector of field \(h\) contains NaN or infinity "
                                               r"\(out of float16 range\): value 'inf'"):
        parse_placeholder_group(_group([[1.0, 1e6]]), schema.field("h"))
    raw = np.array([[0x3F80, np.float32(value).view(np.uint32) >> 16]], np.uint16)
    group = common_pb2.PlaceholderGroup()
    group.placeholders.add(tag="$0", type=common_pb2.PlaceholderType.BFloat16Vector, values=[raw.tobytes()])
    with pytest.raises(InvalidParameter, match=rf"the 0th search vector of field \(bf\) {why.split(':')[0]}"):
        parse_placeholder_group(group.SerializeToString(), schema.field("bf"))  # truncated bits: ~9.9e39

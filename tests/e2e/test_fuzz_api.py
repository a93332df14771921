"""Bounded fuzzing of the write, read and DDL requests, sent as raw protobuf over gRPC.

Two kinds of input per request type (Insert, Upsert, Delete, Search, Query, CreateCollection,
CreateIndex):

- hostile but well-formed: the right collection and field names with wrong types and lengths,
  wrong dims, huge or negative numbers, NaN/inf/1e20 vectors, expressions from a small
  grammar with random literals, random search/index params and schemas;
- garbage: every proto field random (``proto_message``), and random bytes that happen to
  parse as the request.

The oracle (``call``): the reply is a Milvus error or success, never code 65535 (the
autouse ``no_unexpected_errors`` fixture counts those too) nor gRPC INTERNAL/UNKNOWN; the
server answers a health check after every example; a bystander collection nobody writes to
keeps its checksum. Hypothesis is derandomized with no example database, so a run is
reproducible and writes nothing into the repository.
"""

from __future__ import annotations

import hashlib
import json
import math

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymilvus import DataType, MilvusClient
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

from tests.conftest import start_standalone
from tests.e2e._helpers import float_vectors

UNEXPECTED = 65535
FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
FEW = settings(FUZZ, max_examples=150)

TARGET, SCRATCH, BYSTANDER = "fz_target", "fz_scratch", "fz_bystander"
DIM, BDIM = 8, 16
# name -> (pymilvus type, add_field kwargs) of the target collection; "id" is the primary key
TARGET_FIELDS = {
    "vec": (DataType.FLOAT_VECTOR, {"dim": DIM}),
    "bvec": (DataType.BINARY_VECTOR, {"dim": BDIM}),
    "b": (DataType.BOOL, {}),
    "i8": (DataType.INT8, {}),
    "i32": (DataType.INT32, {}),
    "i64": (DataType.INT64, {}),
    "f": (DataType.FLOAT, {}),
    "d": (DataType.DOUBLE, {}),
    "s": (DataType.VARCHAR, {"max_length": 16}),
    "j": (DataType.JSON, {}),
    "arr": (DataType.ARRAY, {"element_type": DataType.INT64, "max_capacity": 4}),
    "sarr": (DataType.ARRAY, {"element_type": DataType.VARCHAR, "max_capacity": 4, "max_length": 8}),
}
FIELD_NAMES = ["id", *TARGET_FIELDS, "$meta", "dyn", "nope", ""]
COLLECTIONS = [TARGET, SCRATCH, "nope", "", "bad name!", "x" * 300]
# mostly the loaded target, so requests get past the name checks to the data
COLLECTION = st.one_of(st.just(TARGET), st.just(TARGET), st.sampled_from(COLLECTIONS))


# --- the server and its collections ------------------------------------------------------
def _target_schema():
    schema = MilvusClient.create_schema(enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    for fname, (dtype, kwargs) in TARGET_FIELDS.items():
        schema.add_field(fname, dtype, **kwargs)
    return schema


def _target_rows(n: int, start: int = 0) -> list[dict]:
    vecs = float_vectors(n, DIM, seed=start % 2**32)
    return [{"id": start + i, "vec": vecs[i].tolist(), "bvec": bytes([i % 256, 255 - i % 256]), "b": i % 2 == 0,
             "i8": i % 100, "i32": i * 7, "i64": i * 1000, "f": i / 3, "d": i / 7, "s": f"s{i}",
             "j": {"a": i, "b": [i, "x"], "c": {"d": i % 3}}, "arr": [i, i + 1], "sarr": ["a", f"{i % 9}"],
             "dyn": i % 5} for i in range(n)]


def _index(client: MilvusClient, name: str) -> None:
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    if name != BYSTANDER:
        idx.add_index(field_name="bvec", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_index(name, idx, sync=False)


def bystander_checksum(client: MilvusClient) -> str:
    """A hash of every row of the bystander collection (primary key, vector and scalars)."""
    rows = client.query(BYSTANDER, filter="id >= 0", output_fields=["id", "vec", "s", "j"], limit=1000)
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r["id"]):
        vec = np.asarray(row["vec"], np.float32).tobytes()
        h.update(json.dumps([row["id"], row["s"], row["j"]], sort_keys=True).encode() + vec)
    return f"{len(rows)}:{h.hexdigest()}"


class Fuzzed:
    """The server under fuzz: a raw stub, a pymilvus client, and the bystander's checksum."""

    def __init__(self, server):
        self.server = server
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.stub = milvus_pb2_grpc.MilvusServiceStub(self.channel)
        self.client = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
        for name in (TARGET, SCRATCH):
            self.client.create_collection(name, schema=_target_schema())
            self.client.insert(name, _target_rows(64))
        _index(self.client, TARGET)
        self.client.load_collection(TARGET)
        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        schema.add_field("s", DataType.VARCHAR, max_length=32)
        schema.add_field("j", DataType.JSON)
        self.client.create_collection(BYSTANDER, schema=schema)
        vecs = float_vectors(100, 4, seed=7)
        self.client.insert(BYSTANDER, [{"id": i, "vec": vecs[i].tolist(), "s": f"row{i}", "j": {"k": i}}
                                       for i in range(100)])
        _index(self.client, BYSTANDER)
        self.client.load_collection(BYSTANDER)
        self.checksum = bystander_checksum(self.client)

    def close(self) -> None:
        self.client.close()
        self.channel.close()


@pytest.fixture(scope="module")
def fz(tmp_path_factory):
    server = start_standalone(tmp_path_factory.mktemp("fuzz"))
    fuzzed = Fuzzed(server)
    yield fuzzed
    fuzzed.close()
    server.stop()


@pytest.fixture
def intact(fz):
    """After the test: the server is healthy and the bystander unchanged."""
    yield fz
    assert_healthy(fz)
    assert bystander_checksum(fz.client) == fz.checksum


# --- the oracle ------------------------------------------------------------------------
def call(fz: Fuzzed, method: str, request) -> None:
    """Send ``request``; the reply must be success or a Milvus error, and the server must still
    answer a health check."""
    try:
        reply = getattr(fz.stub, method)(request, timeout=60)
    except grpc.RpcError as err:
        # RESOURCE_EXHAUSTED (message too large) and the like are grpc's own, fine
        assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                  grpc.StatusCode.DEADLINE_EXCEEDED), (method, err, request)
    else:
        st_ = reply if isinstance(reply, common_pb2.Status) else reply.status
        assert st_.code != UNEXPECTED, (method, st_.reason, request)
    assert_healthy(fz)


def assert_healthy(fz: Fuzzed) -> None:
    health = fz.stub.CheckHealth(milvus_pb2.CheckHealthRequest(), timeout=30)
    assert health.status.code == 0 and health.isHealthy


# --- building blocks ---------------------------------------------------------------------
INT64 = st.integers(-2**63, 2**63 - 1)
HOSTILE_INTS = st.sampled_from([0, 1, -1, 2, 7, 8, 9, 16, 127, 128, 255, 256, 2**15, 2**31 - 1, 2**31, -2**31,
                                2**32, 2**53 + 1, 2**63 - 1, -2**63])
INTS = st.one_of(HOSTILE_INTS, st.integers(-1000, 1000), INT64)
FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1e20, -1e20, 1e-45, 3.4e38, math.nan, math.inf, -math.inf]),
                   st.floats(width=32))
NAMES = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(["", "a" * 40, "\x00", "'", '"', "\\", "é" * 20]))
NUMBER_TEXT = st.one_of(INTS.map(str), FLOATS.map(str), st.sampled_from(["", "abc", "1e9", "0x10", " 5", "5.5",
                                                                        "99999999999999999999999", "true"]))


def jsons(depth: int = 2):
    """Any JSON value: what a JSON field, a JSON literal or a params value may hold."""
    scalar = st.one_of(st.none(), st.booleans(), INTS, st.floats(allow_nan=False, allow_infinity=False), TEXT)
    return st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(NAMES, inner, max_size=3)),
                        max_leaves=6)


def json_bytes():
    return st.one_of(jsons().map(lambda v: json.dumps(v).encode()), st.binary(max_size=12),
                     st.sampled_from([b"", b"NaN", b"1e999", b"{", b'{"a":', b"\xff\xfe", b"[" * 200 + b"]" * 200]))


# --- expressions: a small grammar with random literals and operators ----------------------
def literals():
    return st.one_of(INTS.map(str), FLOATS.map(repr), TEXT.map(json.dumps), st.sampled_from(["true", "false", "null"]),
                     st.lists(INTS.map(str), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
                     st.sampled_from(["{x}", "{arr}", "{}", "[]"]))


def operands():
    json_path = st.tuples(st.sampled_from(["j", "$meta", "dyn"]),
                          st.lists(st.one_of(TEXT.map(json.dumps), st.integers(-2, 5).map(str)), max_size=2)
                          ).map(lambda t: t[0] + "".join(f"[{k}]" for k in t[1]))
    return st.one_of(st.sampled_from(FIELD_NAMES[:-1]), json_path, literals())


def expressions():
    typed = st.tuples(st.sampled_from(["i8", "i32", "i64", "f", "d", "id", "dyn", "j['a']", "arr[0]", "j['c']['d']",
                                       "arr[9]", "j['b'][0]", "i8 + i32", "f * 2", "i64 % 7", "id / 0", "i64 % 0"]),
                      st.sampled_from(["==", "!=", "<", ">=", "in", "not in"]),
                      st.one_of(st.integers(-3, 70).map(str), st.sampled_from(["0.5", "1e308", "-1e400", "[1, 2]",
                                                                               "[]", '"s1"', "true", "{x}"])))
    like = st.tuples(st.sampled_from(["s", "j['b'][1]", "sarr[0]", "dyn"]),
                     st.sampled_from(['"s%"', '"%1"', '"_"', '"%"', '"\\%"', '"[a-z]*"', '"%%%"', "1"]))
    atom = st.one_of(
        typed.map(" ".join), typed.map(" ".join), like.map(lambda t: f"{t[0]} like {t[1]}"),
        st.tuples(operands(), st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "like", "in", "not in", "+", "-", "*",
                                               "/", "%", "**", "&&", "||", "=", "<>"]), operands()).map(" ".join),
        st.tuples(operands(), st.sampled_from(["<", "<="]), st.sampled_from(FIELD_NAMES[:-1]),
                  st.sampled_from(["<", "<="]), operands()).map(" ".join),
        st.tuples(st.sampled_from(["json_contains", "json_contains_all", "json_contains_any", "array_contains",
                                   "array_contains_all", "array_contains_any", "array_length", "exists", "nosuch",
                                   "text_match", "like"]),
                  st.lists(operands(), max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        operands().map(lambda o: f"{o} is null"),
        operands().map(lambda o: f"exists {o}"),
    )
    exprs = st.recursive(atom, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "&&", "||"]), inner).map(" ".join),
        inner.map(lambda e: f"not ({e})"),
        inner.map(lambda e: f"({e})"),
    ), max_leaves=4)
    # mostly the grammar; sometimes any text, or a pathological classic
    classics = ["", "id > 0", "(((", 'exists "\\ud800\\udc00"', 's == "\\udfff"',
                "id in [" + ",".join(["1"] * 500) + "]", "-" * 100 + "1", "not " * 300 + "true",
                "(" * 300 + "1" + ")" * 300]
    return st.one_of(exprs, exprs, exprs, TEXT, st.sampled_from(classics))


def template_values():
    scalar = st.one_of(st.booleans().map(lambda v: schema_pb2.TemplateValue(bool_val=v)),
                       INT64.map(lambda v: schema_pb2.TemplateValue(int64_val=v)),
                       FLOATS.map(lambda v: schema_pb2.TemplateValue(float_val=v)),
                       TEXT.map(lambda v: schema_pb2.TemplateValue(string_val=v)),
                       st.lists(INT64, max_size=3).map(lambda v: schema_pb2.TemplateValue(
                           array_val=schema_pb2.TemplateArrayValue(long_data=schema_pb2.LongArray(data=v)))),
                       st.lists(TEXT, max_size=3).map(lambda v: schema_pb2.TemplateValue(
                           array_val=schema_pb2.TemplateArrayValue(string_data=schema_pb2.StringArray(data=v)))),
                       st.just(schema_pb2.TemplateValue()))
    return st.dictionaries(st.sampled_from(["x", "arr", "", "id"]), scalar, max_size=2)


def kv(keys, values=None):
    """Key-value pairs: the given keys (sampled) with hostile values, sometimes a random key."""
    values = st.one_of(NUMBER_TEXT, TEXT) if values is None else values
    pair = st.tuples(st.one_of(keys, TEXT), values)
    return st.lists(pair, max_size=6).map(lambda ps: [common_pb2.KeyValuePair(key=k, value=v) for k, v in ps])


def params_json(keys):
    """A JSON object of the given keys with hostile values, or a string that is no JSON object."""
    value = st.one_of(INTS, FLOATS.filter(lambda f: not math.isnan(f)), TEXT, st.booleans(), st.none(), jsons())
    obj = st.dictionaries(st.one_of(st.sampled_from(keys), TEXT), value, max_size=4)
    return st.one_of(obj.map(json.dumps), st.sampled_from(["", "[]", "1", "null", "{", '{"nprobe": NaN}',
                                                          '{"ef": Infinity}']), TEXT)


CONSISTENCY = st.one_of(st.sampled_from([0, 1, 2, 3, 4]), st.integers(-5, 2**31 - 1))
TIMESTAMPS = st.one_of(st.just(0), st.integers(0, 2**64 - 1))


# --- field data --------------------------------------------------------------------------
SCALAR_TYPES = {"Bool": "bool_data", "Int8": "int_data", "Int16": "int_data", "Int32": "int_data",
                "Int64": "long_data", "Float": "float_data", "Double": "double_data", "VarChar": "string_data",
                "String": "string_data", "JSON": "json_data", "Array": "array_data"}
SCHEMA_TYPE = {"id": "Int64", "vec": "FloatVector", "bvec": "BinaryVector", "b": "Bool", "i8": "Int8",
               "i32": "Int32", "i64": "Int64", "f": "Float", "d": "Double", "s": "VarChar", "j": "JSON",
               "arr": "Array", "sarr": "Array", "$meta": "JSON", "dyn": "Int64", "nope": "Int64", "": "Int64"}
DTYPES = [v.name for v in schema_pb2.DataType.DESCRIPTOR.values]
VECTOR_DTYPES = {"FloatVector", "BinaryVector", "Float16Vector", "BFloat16Vector", "SparseFloatVector", "Int8Vector"}


def _scalar_values(kind: str, n: int):
    """A ScalarField of ``kind`` (the oneof member) holding ``n`` hostile values."""
    one = {"bool_data": st.booleans(), "int_data": st.one_of(st.integers(-2**31, 2**31 - 1), st.integers(-200, 200)),
           "long_data": INTS, "float_data": FLOATS, "double_data": st.one_of(FLOATS, st.floats()),
           "string_data": TEXT}
    if kind == "json_data":
        return st.lists(json_bytes(), min_size=n, max_size=n).map(
            lambda v: schema_pb2.ScalarField(json_data=schema_pb2.JSONArray(data=v)))
    if kind == "array_data":
        inner = st.one_of(st.tuples(st.sampled_from(["long_data", "int_data", "string_data", "double_data"]),
                                    st.integers(0, 5)).flatmap(lambda t: _scalar_values(*t)),
                          st.just(schema_pb2.ScalarField()))
        return st.tuples(st.lists(inner, min_size=n, max_size=n), st.sampled_from(DTYPES)).map(
            lambda t: schema_pb2.ScalarField(array_data=schema_pb2.ArrayArray(
                data=t[0], element_type=schema_pb2.DataType.Value(t[1]))))
    array_type = {"bool_data": schema_pb2.BoolArray, "int_data": schema_pb2.IntArray, "long_data": schema_pb2.LongArray,
                  "float_data": schema_pb2.FloatArray, "double_data": schema_pb2.DoubleArray,
                  "string_data": schema_pb2.StringArray}[kind]
    return st.lists(one[kind], min_size=n, max_size=n).map(
        lambda v: schema_pb2.ScalarField(**{kind: array_type(data=v)}))


@st.composite
def vector_field(draw, dtype: str, n: int):
    """A VectorField claiming ``dtype`` for ``n`` rows: right or wrong dim, length and values."""
    dim = draw(st.one_of(st.sampled_from([DIM, BDIM]), HOSTILE_INTS.filter(lambda d: -2**63 <= d < 2**63)))
    real = draw(st.one_of(st.just(DIM if dtype != "BinaryVector" else BDIM), st.integers(0, 20)))
    if dtype == "FloatVector":
        count = draw(st.one_of(st.just(n * real), st.integers(0, 40)))
        return schema_pb2.VectorField(dim=dim, float_vector=schema_pb2.FloatArray(
            data=draw(st.lists(FLOATS, min_size=count, max_size=count))))
    if dtype == "SparseFloatVector":
        rows = draw(st.lists(st.binary(max_size=24), max_size=3))
        return schema_pb2.VectorField(dim=dim, sparse_float_vector=schema_pb2.SparseFloatArray(contents=rows, dim=dim))
    member = {"BinaryVector": "binary_vector", "Float16Vector": "float16_vector", "BFloat16Vector": "bfloat16_vector",
              "Int8Vector": "int8_vector"}.get(dtype, "binary_vector")
    size = n * real // 8 if member == "binary_vector" else n * real * (1 if member == "int8_vector" else 2)
    return schema_pb2.VectorField(dim=dim, **{member: draw(st.one_of(st.binary(min_size=size, max_size=size),
                                                                    st.binary(max_size=40)))})


@st.composite
def field_data(draw, name: str, n: int):
    """Column ``name`` for ``n`` rows, usually of its schema's type, sometimes of any other."""
    claimed = draw(st.one_of(st.just(SCHEMA_TYPE.get(name, "Int64")), st.sampled_from(DTYPES)))
    rows = draw(st.one_of(st.just(n), st.integers(0, 6)))
    fd = schema_pb2.FieldData(type=schema_pb2.DataType.Value(claimed), field_name=name,
                              is_dynamic=draw(st.booleans()) if name in ("$meta", "dyn") else False)
    if claimed not in VECTOR_DTYPES:
        kind = draw(st.one_of(st.just(SCALAR_TYPES.get(claimed, "long_data")),
                              st.sampled_from(sorted(set(SCALAR_TYPES.values())))))
        fd.scalars.CopyFrom(draw(_scalar_values(kind, rows)))
    else:
        fd.vectors.CopyFrom(draw(vector_field(claimed, rows)))
    if draw(st.integers(0, 9)) == 0:
        fd.valid_data.extend(draw(st.lists(st.booleans(), max_size=6)))
    return fd


def sometimes(good, hostile: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` most of the time, so the other knobs' hostile values get past the first checks."""
    return st.integers(0, 9).flatmap(lambda roll: hostile if roll >= 8 else st.just(good))


def good_column(name: str, n: int, first_id: int) -> schema_pb2.FieldData:
    """Column ``name`` of ``n`` well-formed target rows, primary keys from ``first_id``."""
    rows = _target_rows(n, first_id)
    dtype = schema_pb2.DataType.Value(SCHEMA_TYPE[name])
    values = [row[name] for row in rows]
    if name == "vec":
        return schema_pb2.FieldData(type=dtype, field_name=name, vectors=schema_pb2.VectorField(
            dim=DIM, float_vector=schema_pb2.FloatArray(data=[x for v in values for x in v])))
    if name == "bvec":
        return schema_pb2.FieldData(type=dtype, field_name=name, vectors=schema_pb2.VectorField(
            dim=BDIM, binary_vector=b"".join(values)))
    if name in ("arr", "sarr"):
        kind, array = ("long_data", schema_pb2.LongArray) if name == "arr" else ("string_data", schema_pb2.StringArray)
        return schema_pb2.FieldData(type=dtype, field_name=name, scalars=schema_pb2.ScalarField(
            array_data=schema_pb2.ArrayArray(data=[schema_pb2.ScalarField(**{kind: array(data=v)}) for v in values],
                                             element_type=schema_pb2.Int64 if name == "arr" else schema_pb2.VarChar)))
    if name == "j":
        return schema_pb2.FieldData(type=dtype, field_name=name, scalars=schema_pb2.ScalarField(
            json_data=schema_pb2.JSONArray(data=[json.dumps(v).encode() for v in values])))
    kind = SCALAR_TYPES[SCHEMA_TYPE[name]]
    array = {"bool_data": schema_pb2.BoolArray, "int_data": schema_pb2.IntArray, "long_data": schema_pb2.LongArray,
             "float_data": schema_pb2.FloatArray, "double_data": schema_pb2.DoubleArray,
             "string_data": schema_pb2.StringArray}[kind]
    return schema_pb2.FieldData(type=dtype, field_name=name,
                                scalars=schema_pb2.ScalarField(**{kind: array(data=values)}))


@st.composite
def columns(draw):
    """Well-formed columns of the target for a few rows, then a few of them replaced by hostile
    ones, dropped, doubled, or joined by unknown ones."""
    n = draw(sometimes(3, st.integers(0, 5)))
    first_id = draw(st.one_of(st.integers(1000, 10**6), INTS.filter(lambda v: -2**63 <= v < 2**63 - 10)))
    cols = {name: good_column(name, n, first_id) for name in ["id", *TARGET_FIELDS]}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["id", *TARGET_FIELDS]))
        action = draw(st.sampled_from(["hostile", "hostile", "hostile", "drop", "double", "unknown"]))
        if action == "hostile":
            cols[name] = draw(field_data(name, n))
        elif action == "drop":
            cols.pop(name, None)
        elif action == "double":
            cols[name + "#2"] = draw(field_data(name, n))
        else:
            extra = draw(st.sampled_from(["$meta", "dyn", "nope", ""]))
            cols[extra] = draw(field_data(extra, n))
    return n, list(cols.values())


# --- generic messages: every proto field random --------------------------------------------
_INT_RANGES = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
               FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
               FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
               FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
               FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def _field_value(field: FieldDescriptor, depth: int):
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return proto_message(field.message_type, depth + 1)
    if t == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(COLLECTIONS + FIELD_NAMES), TEXT, expressions())
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=48)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return FLOATS
    if t == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 400))
    lo, hi = _INT_RANGES[t]
    return st.one_of(HOSTILE_INTS.filter(lambda v: lo <= v <= hi), st.integers(lo, hi))


def proto_message(descriptor, depth: int = 0):
    """Any message of ``descriptor``: each field absent or random, recursing a few levels."""
    cls = message_factory.GetMessageClass(descriptor)
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None and depth >= 3:
            continue  # deep enough: bounded size
        value = _field_value(field, depth)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, val = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            value = st.dictionaries(_field_value(key, depth), _field_value(val, depth), max_size=2)
        elif field.is_repeated:
            value = st.lists(value, max_size=3 if depth else 4)
        fields[field.name] = value

    if not fields:
        return st.just(cls())

    @st.composite
    def build(draw):
        chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=len(fields), unique=True))
        msg = cls()
        for name in chosen:
            value = draw(fields[name])
            field = descriptor.fields_by_name[name]
            if isinstance(value, dict):
                for k, v in value.items():
                    if hasattr(v, "DESCRIPTOR"):
                        getattr(msg, name)[k].CopyFrom(v)
                    else:
                        getattr(msg, name)[k] = v
            elif field.is_repeated:
                getattr(msg, name).extend(value)
            elif field.message_type is not None:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return build()


def parsed_bytes(cls):
    """Random bytes, and bytes of a real request with a few bytes flipped, that parse as ``cls``."""
    def parse(data):
        try:
            return cls.FromString(data)
        except Exception:  # noqa: BLE001 - what does not parse is grpc's (test_grpc_garbage.py)
            return None
    return st.binary(max_size=80).map(parse).filter(lambda m: m is not None)


REQUEST = {"Insert": milvus_pb2.InsertRequest, "Upsert": milvus_pb2.UpsertRequest, "Delete": milvus_pb2.DeleteRequest,
           "Search": milvus_pb2.SearchRequest, "Query": milvus_pb2.QueryRequest,
           "CreateCollection": milvus_pb2.CreateCollectionRequest, "CreateIndex": milvus_pb2.CreateIndexRequest}


def _point_at_target(msg, collection: str):
    """Most garbage goes to a real collection, so it gets past the name check."""
    if hasattr(msg, "collection_name") and msg.collection_name not in ("", "nope"):
        msg.collection_name = collection
    if hasattr(msg, "db_name"):
        msg.db_name = ""
    return msg


# --- the tests ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(REQUEST))
def test_garbage_requests(intact, method):
    """Every proto field random, or random bytes that parse: a Milvus error or success."""
    fz = intact
    cls = REQUEST[method]
    collection = SCRATCH if method in ("CreateCollection", "CreateIndex", "Delete") else TARGET

    @FEW
    @given(st.one_of(proto_message(cls.DESCRIPTOR), parsed_bytes(cls)))
    def run(request):
        call(fz, method, _point_at_target(request, collection))
        _cleanup(fz, method)

    run()


@pytest.mark.parametrize("method", ["Insert", "Upsert"])
def test_hostile_writes(intact, method):
    fz = intact
    cls = REQUEST[method]

    @FUZZ
    @given(sometimes(TARGET, st.sampled_from(COLLECTIONS)), columns(),
           sometimes(None, INTS.filter(lambda v: 0 <= v < 2**32)), sometimes("", st.sampled_from(["_default", "nope"])))
    def run(collection, cols, num_rows, partition):
        n, fields = cols
        call(fz, method, cls(collection_name=collection, fields_data=fields, partition_name=partition,
                             num_rows=n if num_rows is None else num_rows))

    run()


def test_hostile_deletes(intact):
    fz = intact

    @FUZZ
    @given(COLLECTION, expressions(), st.sampled_from(["", "_default", "nope"]),
           template_values(), CONSISTENCY)
    def run(collection, expr, partition, templates, consistency):
        request = milvus_pb2.DeleteRequest(collection_name=collection, expr=expr, partition_name=partition,
                                           consistency_level=consistency)
        for k, v in templates.items():
            request.expr_template_values[k].CopyFrom(v)
        call(fz, "Delete", request)

    run()


def _placeholder_values():
    """Serialized query vectors: right or wrong type, dim and values."""
    floats = st.integers(0, 20).flatmap(lambda d: st.lists(FLOATS, min_size=d, max_size=d)).map(
        lambda v: np.asarray(v, np.float32).tobytes())
    exact = st.lists(FLOATS, min_size=DIM, max_size=DIM).map(lambda v: np.asarray(v, np.float32).tobytes())
    return st.lists(st.one_of(exact, floats, st.binary(max_size=40)), max_size=3)


@st.composite
def placeholder_group(draw):
    types = [v.number for v in common_pb2.PlaceholderType.DESCRIPTOR.values]
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag=draw(st.sampled_from(["$0", "$0", "", "$1"])),
        type=draw(st.one_of(st.sampled_from([101, 101, 100, *types]), st.integers(-3, 400))),
        values=draw(_placeholder_values())) for _ in range(draw(st.integers(0, 2)))])
    return draw(st.one_of(st.just(group.SerializeToString()), st.binary(max_size=40)))


SEARCH_KEYS = st.sampled_from(["anns_field", "topk", "metric_type", "params", "round_decimal", "offset",
                               "ignore_growing", "group_by_field", "group_size", "strict_group_size", "limit",
                               "iterator", "search_iter_v2", "search_iter_batch_size", "radius", "range_filter"])
SEARCH_PARAMS = ["nprobe", "ef", "radius", "range_filter", "search_list", "level", "drop_ratio_search",
                 "max_empty_result_buckets", "page_retain_order", "itopk_size"]


@st.composite
def search_params(draw):
    pairs = {"anns_field": draw(st.sampled_from(["vec", "vec", "bvec", "i64", "", "nope", "j"])),
             "topk": draw(NUMBER_TEXT), "metric_type": draw(st.sampled_from(["L2", "IP", "COSINE", "HAMMING",
                                                                            "JACCARD", "", "l2", "nope"])),
             "params": draw(params_json(SEARCH_PARAMS))}
    pairs = {k: v for k, v in pairs.items() if draw(st.integers(0, 5)) > 0}
    extra = draw(kv(SEARCH_KEYS, st.one_of(NUMBER_TEXT, st.sampled_from(FIELD_NAMES), TEXT)))
    return [common_pb2.KeyValuePair(key=k, value=v) for k, v in pairs.items()] + extra


def _good_vector() -> bytes:
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.FloatVector, values=[float_vectors(1, DIM, seed=3)[0].tobytes()])])
    return group.SerializeToString()


GOOD_SEARCH_PARAMS = [common_pb2.KeyValuePair(key=k, value=v) for k, v in
                      {"anns_field": "vec", "topk": "5", "metric_type": "L2", "params": "{}"}.items()]


def test_hostile_searches(intact):
    """A good search (target, one vector, top 5) with some of its parts hostile."""
    fz = intact

    @FUZZ
    @given(sometimes(TARGET, st.sampled_from(COLLECTIONS)), sometimes("", expressions()),
           sometimes(_good_vector(), placeholder_group()), sometimes(GOOD_SEARCH_PARAMS, search_params()),
           sometimes([], st.lists(st.sampled_from([*FIELD_NAMES, "*", "count(*)", "%"]), max_size=3)),
           sometimes(1, st.one_of(st.integers(0, 3), HOSTILE_INTS.filter(lambda v: -2**63 <= v < 2**63))),
           sometimes([], st.lists(st.sampled_from(["_default", "nope", ""]), max_size=2)),
           sometimes(0, CONSISTENCY), sometimes(0, TIMESTAMPS), sometimes({}, template_values()),
           sometimes(1, st.sampled_from([0, 7])))
    def run(collection, expr, placeholders, params, output, nq, partitions, consistency, ts, templates, dsl_type):
        request = milvus_pb2.SearchRequest(
            collection_name=collection, dsl=expr, placeholder_group=placeholders, dsl_type=dsl_type,
            search_params=params, output_fields=output, nq=nq, partition_names=partitions,
            consistency_level=consistency, guarantee_timestamp=ts)
        for k, v in templates.items():
            request.expr_template_values[k].CopyFrom(v)
        call(fz, "Search", request)

    run()


QUERY_KEYS = st.sampled_from(["limit", "offset", "ignore_growing", "reduce_stop_for_best", "iterator",
                              "collection_id", "order_by_fields", "timezone"])


def test_hostile_queries(intact):
    fz = intact

    @FUZZ
    @given(sometimes(TARGET, st.sampled_from(COLLECTIONS)), expressions(),
           st.lists(st.sampled_from([*FIELD_NAMES, "*", "count(*)", "COUNT(*)", "count(id)", "j['a']"]), max_size=3),
           sometimes([common_pb2.KeyValuePair(key="limit", value="10")], kv(QUERY_KEYS)),
           sometimes([], st.lists(st.sampled_from(["_default", "nope", ""]), max_size=2)), sometimes(0, CONSISTENCY),
           sometimes(0, TIMESTAMPS), sometimes({}, template_values()))
    def run(collection, expr, output, params, partitions, consistency, ts, templates):
        request = milvus_pb2.QueryRequest(collection_name=collection, expr=expr, output_fields=output,
                                          query_params=params, partition_names=partitions,
                                          consistency_level=consistency, guarantee_timestamp=ts)
        for k, v in templates.items():
            request.expr_template_values[k].CopyFrom(v)
        call(fz, "Query", request)

    run()


NEW_COLLECTIONS = ["fz_new", "fz_new2"]
TYPE_PARAM_KEYS = st.sampled_from(["dim", "max_length", "max_capacity", "mmap.enabled", "analyzer_params",
                                   "enable_match", "max_length "])


@st.composite
def field_schema(draw):
    data_type = draw(st.one_of(st.sampled_from([v.number for v in schema_pb2.DataType.DESCRIPTOR.values]),
                               st.integers(-3, 400)))
    return schema_pb2.FieldSchema(
        name=draw(st.one_of(st.sampled_from(["id", "vec", "x", "y", "", "1bad", "$meta", "a" * 300, "id"]), TEXT)),
        data_type=data_type, is_primary_key=draw(st.booleans()), autoID=draw(st.booleans()),
        type_params=draw(kv(TYPE_PARAM_KEYS)), index_params=draw(kv(TYPE_PARAM_KEYS)),
        element_type=draw(st.sampled_from([v.number for v in schema_pb2.DataType.DESCRIPTOR.values])),
        is_partition_key=draw(st.integers(0, 5)) == 0, is_dynamic=draw(st.integers(0, 5)) == 0,
        nullable=draw(st.integers(0, 5)) == 0, fieldID=draw(st.integers(0, 3)))


@st.composite
def collection_schema(draw):
    """Usually a primary key and a vector (so it gets past the first checks), then anything."""
    base = []
    if draw(st.integers(0, 3)) > 0:
        base = [schema_pb2.FieldSchema(name="id", data_type=schema_pb2.Int64, is_primary_key=True),
                schema_pb2.FieldSchema(name="vec", data_type=schema_pb2.FloatVector,
                                       type_params=[common_pb2.KeyValuePair(key="dim", value="8")])]
    schema = schema_pb2.CollectionSchema(
        name=draw(st.sampled_from([*NEW_COLLECTIONS, "", "other"])), autoID=draw(st.booleans()),
        enable_dynamic_field=draw(st.booleans()), fields=base + draw(st.lists(field_schema(), max_size=4)),
        properties=draw(kv(st.sampled_from(["collection.ttl.seconds", "mmap.enabled", "partitionkey.isolation"]))))
    return draw(st.one_of(st.just(schema.SerializeToString()), st.just(schema.SerializeToString()),
                          st.binary(max_size=40)))


def _cleanup(fz: Fuzzed, method: str) -> None:
    """Undo what a fuzzed DDL request may have created, so examples stay independent and small."""
    if method == "CreateCollection":
        for name in NEW_COLLECTIONS:
            if fz.client.has_collection(name):
                fz.client.drop_collection(name)
    elif method == "CreateIndex":
        for index in fz.client.list_indexes(SCRATCH):
            fz.client.drop_index(SCRATCH, index)


def test_hostile_create_collection(intact):
    fz = intact

    @FUZZ
    @given(st.sampled_from([*NEW_COLLECTIONS, *NEW_COLLECTIONS, "", "bad name", "x" * 300, TARGET]),
           collection_schema(),
           st.one_of(st.integers(0, 3), HOSTILE_INTS.filter(lambda v: -2**31 <= v < 2**31)),
           kv(st.sampled_from(["collection.ttl.seconds", "mmap.enabled", "collection.replica.number"])),
           CONSISTENCY, st.one_of(st.integers(0, 3), HOSTILE_INTS.filter(lambda v: -2**63 <= v < 2**63)))
    def run(name, schema, shards, properties, consistency, partitions):
        call(fz, "CreateCollection", milvus_pb2.CreateCollectionRequest(
            collection_name=name, schema=schema, shards_num=shards, properties=properties,
            consistency_level=consistency, num_partitions=partitions))
        _cleanup(fz, "CreateCollection")

    run()
    assert fz.client.describe_collection(TARGET)["fields"][0]["name"] == "id"


INDEX_TYPES = ["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN", "SCANN", "AUTOINDEX", "BIN_FLAT",
               "BIN_IVF_FLAT", "INVERTED", "STL_SORT", "Trie", "BITMAP", "GPU_CAGRA", "GPU_IVF_FLAT", "", "nope",
               "flat"]
INDEX_PARAMS = ["nlist", "M", "efConstruction", "m", "nbits", "nprobe", "with_raw_data", "intermediate_graph_degree",
                "graph_degree", "search_list_size", "pq_dims", "refine", "refine_type", "sq_type"]


def _index_params():
    """The sizes an index takes, kept small where a big one would only be slow (a 64-row
    collection: nlist and M above that are clamped or refused by the checks under test)."""
    return st.one_of(params_json(INDEX_PARAMS), st.dictionaries(
        st.sampled_from(INDEX_PARAMS), st.one_of(st.integers(-2, 300), st.sampled_from(["8", "abc", 1.5, None, True])),
        max_size=4).map(json.dumps))


def test_hostile_create_index(intact):
    fz = intact

    @FUZZ
    @given(st.sampled_from([SCRATCH, SCRATCH, SCRATCH, "nope", ""]),
           st.sampled_from(["vec", "vec", "bvec", "i64", "s", "j", "arr", "b", "f", "nope", "", "$meta"]),
           st.sampled_from(INDEX_TYPES), st.sampled_from(["L2", "IP", "COSINE", "HAMMING", "JACCARD", "", "nope"]),
           _index_params(), kv(st.sampled_from(["mmap.enabled", "index_type", "json_cast_type", "json_path"])),
           st.sampled_from(["", "idx", "_default_idx", "bad name", "x" * 300]))
    def run(collection, field, index_type, metric, params, extra, index_name):
        pairs = [common_pb2.KeyValuePair(key="index_type", value=index_type),
                 common_pb2.KeyValuePair(key="metric_type", value=metric),
                 common_pb2.KeyValuePair(key="params", value=params), *extra]
        call(fz, "CreateIndex", milvus_pb2.CreateIndexRequest(collection_name=collection, field_name=field,
                                                              extra_params=pairs, index_name=index_name))
        _cleanup(fz, "CreateIndex")

    run()


@pytest.mark.parametrize("method", ["Query", "Delete"])
def test_error_quoting_a_lone_surrogate(intact, method):
    """An escape in an expression that decodes to a lone surrogate (no UTF-8) comes back in a
    Milvus error, not as gRPC UNKNOWN from a Status that cannot be encoded (found by the fuzz)."""
    cls = REQUEST[method]
    request = cls(collection_name=TARGET, expr='exists "\\ud800\\udc00"')
    reply = getattr(intact.stub, method)(request, timeout=30)
    assert reply.status.code == 1100 and "ud800" in reply.status.reason, reply.status


@pytest.mark.unexpected_errors_expected
def test_the_oracle_sees_unexpected_errors():
    """The tripwire the fuzz tests (and every e2e test) rely on counts a 65535 reply."""
    from vecdb.proxy import status

    before = sum(status.unexpected_errors().values())
    reply = status.from_exception(RuntimeError("a bug"))
    assert reply.code == UNEXPECTED and reply.error_code == common_pb2.UnexpectedError
    assert sum(status.unexpected_errors().values()) == before + 1

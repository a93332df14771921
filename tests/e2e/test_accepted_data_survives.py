"""What an insert accepts is stored and read back exactly: through the log replay of a kill -9, a
clean restart, the seal to segment files, index builds, compaction and a reload (the rule behind
the incident where one accepted insert crash-looped the server). Bad input is refused at the door:
tests/e2e/test_bad_input*.py.

Edge values of every type: integers at their bounds, VARCHAR at max_length in bytes (multi-byte
UTF-8, emoji, NUL), JSON with integers past 64 bits (Milvus keeps the JSON text; orjson read them as
floats), bare JSON scalars and odd dynamic keys, arrays at capacity, nullable fields all null,
defaults, FLOAT16 / BFLOAT16 subnormals, sparse rows at index 2**32-2 and empty, VARCHAR primary
keys that are empty or unicode; and filters on them (-9223372036854775808 is a literal, as in Milvus).
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import grpc
import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc, schema_pb2

from tests.conftest import free_port, start_standalone, start_vecdb, wait_until
from tests.e2e._helpers import compact, serving

DIM = 8
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _vec(i: int) -> list[float]:
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32).tolist()


def _bf16(values) -> bytes:
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


# --- the collections and their rows ---------------------------------------------------------
def _scalar_schema():
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("i8", DataType.INT8)
    s.add_field("i16", DataType.INT16)
    s.add_field("i32", DataType.INT32)
    s.add_field("i64", DataType.INT64)
    s.add_field("f", DataType.FLOAT)
    s.add_field("d", DataType.DOUBLE)
    s.add_field("s", DataType.VARCHAR, max_length=8)
    s.add_field("j", DataType.JSON)
    s.add_field("arr", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4)
    s.add_field("sarr", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=3, max_length=4)
    s.add_field("ns", DataType.VARCHAR, max_length=8, nullable=True)
    s.add_field("ni", DataType.INT64, nullable=True)
    s.add_field("nj", DataType.JSON, nullable=True)
    s.add_field("dfs", DataType.VARCHAR, max_length=8, default_value="dé")
    return s


def _scalar_rows() -> list[dict]:
    base = {"i8": 0, "i16": 0, "i32": 0, "i64": 0, "f": 0.0, "d": 0.0, "s": "", "j": {}, "arr": [], "sarr": [],
            "ns": None, "ni": None, "nj": None, "dfs": "x"}
    edge = [
        {"i8": 127, "i16": 32767, "i32": 2**31 - 1, "i64": I64_MAX},
        {"i8": -128, "i16": -32768, "i32": -(2**31), "i64": I64_MIN},
        {"s": "éééé"}, {"s": "😀😀"}, {"s": "a\x00b\x00"}, {"s": "\uffff\n\t"},  # 8 bytes each
        {"f": 3.4028234663852886e38, "d": 1.7976931348623157e308}, {"f": 1e-45, "d": 5e-324}, {"f": -0.0},
        {"j": {"a": I64_MIN, "b": I64_MAX, "c": 2**64 - 1}}, {"j": {"a": 1e308, "b": 5e-324}},
        {"j": json.loads("[" * 100 + "]" * 100)}, {"j": {"é": 1, "😀": {"\x00": 2}, "": 3, "a.b": 4, '"q"': 5}},
        {"j": []}, {"j": 5}, {"j": True}, {"j": [1, "a", None, {"x": []}]}, {"j": 1.5},
        {"arr": [I64_MAX, I64_MIN, 0, 1]}, {"sarr": ["abcd", "éé", "😀"]}, {"sarr": ["", "", ""]},
        {"ns": "é", "ni": I64_MIN, "nj": {"k": None}}, {"dyn.a": 1, "dyn[0]": 2, 'q"k': 3, "é": {"x": 1}, "": 4},
        {"dfs": None},  # the default
    ]
    return [{"id": i, "vec": _vec(i), **base, **e} for i, e in enumerate(edge)]


# JSON texts pymilvus cannot send (it refuses integers past 64 bits): sent as raw FieldData
RAW_JSON = {100: b'{"a": 18446744073709551616}', 101: b'{"a": -9223372036854775809}',
            102: b'{"a": [123456789012345678901234567890, 1]}', 103: b'99999999999999999999'}
RAW_META = {104: b'{"big": 18446744073709551616}'}


_RAW_SCALARS = [("i8", schema_pb2.Int8, "int_data", 0), ("i16", schema_pb2.Int16, "int_data", 0),
                ("i32", schema_pb2.Int32, "int_data", 0), ("i64", schema_pb2.Int64, "long_data", 0),
                ("f", schema_pb2.Float, "float_data", 0.0), ("d", schema_pb2.Double, "double_data", 0.0),
                ("s", schema_pb2.VarChar, "string_data", "")]


def _raw_json_insert(uri: str) -> None:
    def fd(name, b, dynamic=False):
        return schema_pb2.FieldData(type=schema_pb2.JSON, field_name=name, is_dynamic=dynamic,
                                    scalars=schema_pb2.ScalarField(json_data=schema_pb2.JSONArray(data=[b])))

    channel = grpc.insecure_channel(uri.removeprefix("http://"))
    stub = milvus_pb2_grpc.MilvusServiceStub(channel)
    try:
        for pk, j, meta in [*((pk, b, b"{}") for pk, b in RAW_JSON.items()),
                            *((pk, b"{}", b) for pk, b in RAW_META.items())]:
            fields = [schema_pb2.FieldData(type=schema_pb2.Int64, field_name="id", scalars=schema_pb2.ScalarField(
                long_data=schema_pb2.LongArray(data=[pk]))),
                schema_pb2.FieldData(type=schema_pb2.FloatVector, field_name="vec", vectors=schema_pb2.VectorField(
                    dim=DIM, float_vector=schema_pb2.FloatArray(data=_vec(pk))))]
            for name, dtype, kind, value in _RAW_SCALARS:
                scalars = schema_pb2.ScalarField()
                getattr(scalars, kind).data.append(value)
                fields.append(schema_pb2.FieldData(type=dtype, field_name=name, scalars=scalars))
            for name, et in (("arr", schema_pb2.Int64), ("sarr", schema_pb2.VarChar)):
                row = schema_pb2.ScalarField()
                (row.long_data if et == schema_pb2.Int64 else row.string_data).SetInParent()  # an empty array
                empty = schema_pb2.ArrayArray(element_type=et, data=[row])
                fields.append(schema_pb2.FieldData(type=schema_pb2.Array, field_name=name,
                                                   scalars=schema_pb2.ScalarField(array_data=empty)))
            fields += [fd("j", j), fd("$meta", meta, True)]
            st = stub.Insert(milvus_pb2.InsertRequest(collection_name="sc", fields_data=fields, num_rows=1)).status
            assert st.code == 0, st
    finally:
        channel.close()


def _vector_rows() -> list[dict]:
    values = [[1.0] * DIM, [6e-8] * DIM, [65504.0] * DIM, [-65504.0, 0, 0, 0, 0, 0, 0, 1e-7], [0.0] * DIM,
              [1e-40] * DIM, [1e18] * DIM]
    rows = []
    for i, v in enumerate(values):
        half = np.asarray(v if i < 5 else [1.0] * DIM, np.float16)  # 1e-40 and 1e18 are bf16-only values
        rows.append({"id": i, "h": half, "bf": _bf16(v), "bv": bytes([i, 255 - i]),
                     "sv": [{0: 1.0}, {2**32 - 2: 1.0}, {1: 0.0}, {1: 2.5}, {i: 0.5 for i in range(0, 4000, 2)},
                            {5: 1e38}, {}][i]})
    return rows


def _create(c: MilvusClient) -> None:
    c.create_collection("sc", schema=_scalar_schema())
    c.insert("sc", _scalar_rows())
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection("vpk", schema=s)
    c.insert("vpk", [{"id": k, "vec": _vec(1000 + n)} for n, k in enumerate(VARCHAR_KEYS)])
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("h", DataType.FLOAT16_VECTOR, dim=DIM)
    s.add_field("bf", DataType.BFLOAT16_VECTOR, dim=DIM)
    s.add_field("bv", DataType.BINARY_VECTOR, dim=16)
    s.add_field("sv", DataType.SPARSE_FLOAT_VECTOR)
    c.create_collection("vv", schema=s)
    c.insert("vv", _vector_rows())
    # the same key many times in one upsert: the last one stays
    c.upsert("sc", [{**_scalar_rows()[0], "id": 500, "i32": k} for k in range(50)])


VARCHAR_KEYS = ["", "a", "x" * 16, "é" * 8, "😀" * 4, "\x00", "a\x00b", "a\x00", " ", "'", '"', "\\", "%", "a'b\"c",
                "\uffff"]


def _indexes(c: MilvusClient) -> None:
    plans = [("sc", "vec", "HNSW", "L2", {"M": 8, "efConstruction": 32}), ("sc", "i8", "STL_SORT", None, {}),
             ("sc", "i16", "INVERTED", None, {}), ("sc", "i32", "BITMAP", None, {}),
             ("sc", "i64", "STL_SORT", None, {}),
             ("sc", "d", "STL_SORT", None, {}), ("sc", "s", "TRIE", None, {}), ("sc", "arr", "INVERTED", None, {}),
             ("sc", "sarr", "BITMAP", None, {}), ("sc", "ni", "STL_SORT", None, {}),
             ("sc", "j", "INVERTED", None, {"json_cast_type": "double", "json_path": "j['a']"}),
             ("sc", "dfs", "NGRAM", None, {"min_gram": 1, "max_gram": 2}),
             ("vpk", "vec", "IVF_FLAT", "L2", {"nlist": 4}), ("vpk", "id", "TRIE", None, {}),
             ("vv", "h", "HNSW", "L2", {"M": 8, "efConstruction": 32}), ("vv", "bf", "IVF_SQ8", "IP", {"nlist": 2}),
             ("vv", "bv", "BIN_IVF_FLAT", "HAMMING", {"nlist": 2}), ("vv", "sv", "SPARSE_INVERTED_INDEX", "IP", {})]
    for coll, field, index_type, metric, params in plans:
        idx = c.prepare_index_params()
        metric_kw = {"metric_type": metric} if metric else {}
        idx.add_index(field_name=field, index_type=index_type, params=params, **metric_kw)
        c.create_index(coll, idx, sync=False)


# --- what a reader sees ------------------------------------------------------------------
def _raw_json_rows(uri: str) -> dict[int, tuple[bytes, bytes]]:
    """The stored JSON texts of the raw rows (json field, dynamic field), as the server returns them."""
    channel = grpc.insecure_channel(uri.removeprefix("http://"))
    try:
        r = milvus_pb2_grpc.MilvusServiceStub(channel).Query(milvus_pb2.QueryRequest(
            collection_name="sc", expr="id >= 100 and id < 200", output_fields=["id", "j", "$meta"]))
    finally:
        channel.close()
    assert r.status.code == 0, r.status
    cols = {fd.field_name: fd for fd in r.fields_data}
    ids = list(cols["id"].scalars.long_data.data)
    metas = next(fd for fd in r.fields_data if fd.is_dynamic).scalars.json_data.data
    return dict(zip(ids, zip(cols["j"].scalars.json_data.data, metas)))


def _state(c: MilvusClient, uri: str) -> dict:
    rows = c.query("sc", filter="id < 100 or id >= 200", output_fields=["*"], consistency_level="Strong")
    sc = {r["id"]: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in rows}
    vpk = sorted(r["id"] for r in c.query("vpk", filter="", output_fields=["id"], limit=100,
                                          consistency_level="Strong"))
    vv = {}
    for r in c.query("vv", filter="id >= 0", output_fields=["*"], consistency_level="Strong"):
        vv[r["id"]] = (bytes(r["h"][0]), bytes(r["bf"][0]), bytes(r["bv"][0]),
                       {int(k): float(v) for k, v in dict(r["sv"]).items()})
    return {"sc": sc, "raw": _raw_json_rows(uri), "vpk": vpk, "vv": vv}


def _expected() -> dict:
    sc = {}
    for row in _scalar_rows():
        want = dict(row)
        want["f"] = float(np.float32(row["f"]))
        want["vec"] = np.asarray(row["vec"], np.float32).tolist()
        if row["dfs"] is None:
            want["dfs"] = "dé"
        dynamic = {k: v for k, v in row.items() if k not in _scalar_schema_names()}
        for k in dynamic:
            want[k] = dynamic[k]
        sc[row["id"]] = want
    sc[500] = {**sc[0], "id": 500, "i32": 49}
    raw = {pk: (b.replace(b" ", b""), b"{}") for pk, b in RAW_JSON.items()}
    raw.update({pk: (b"{}", b.replace(b" ", b"")) for pk, b in RAW_META.items()})
    vv = {r["id"]: (r["h"].tobytes(), r["bf"], r["bv"], {k: float(np.float32(v)) for k, v in r["sv"].items()})
          for r in _vector_rows()}
    return {"sc": sc, "raw": raw, "vpk": sorted(VARCHAR_KEYS), "vv": vv}


def _scalar_schema_names() -> set[str]:
    return {f.name for f in _scalar_schema().fields}


def _assert_exact(c: MilvusClient, uri: str, when: str) -> None:
    got, want = _state(c, uri), _expected()
    for part in want:
        if part == "sc":
            assert got["sc"].keys() == want["sc"].keys(), when
            for pk, row in want["sc"].items():
                assert got["sc"][pk] == row, f"{when}: row {pk}"
        else:
            assert got[part] == want[part], f"{when}: {part}"
    # the filters that name the edge values find their rows
    assert [r["id"] for r in c.query("sc", filter="i64 == -9223372036854775808", output_fields=["id"])] == [1]
    assert {r["id"] for r in c.query("sc", filter='s == "a\\x00b\\x00" or s == "😀😀"', output_fields=["id"])} == {3, 4}
    assert {r["id"] for r in c.query("sc", filter='j["a"] > 1e19 and j["a"] < 1e20', output_fields=["id"])} == {100}
    assert [r["id"] for r in c.query("vpk", filter='id == ""', output_fields=["id"])] == [""]
    hits = c.search("vv", [{2**32 - 2: 1.0}], anns_field="sv", limit=3, search_params={"metric_type": "IP"})[0]
    assert [h["id"] for h in hits] == [1]


def _wait_indexes(c: MilvusClient) -> None:
    for coll in ("sc", "vpk", "vv"):
        for name in c.list_indexes(coll):
            wait_until(lambda coll=coll, name=name: c.describe_index(coll, name)["state"] == "Finished", 60,
                       f"index {coll}.{name} built")


def test_edge_values_read_back_exactly_through_seal_indexes_compaction_and_restarts(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path)
    c = MilvusClient(uri=uri)
    try:
        _create(c)
        _raw_json_insert(uri)
        _indexes(c)
        for coll in ("sc", "vpk", "vv"):
            c.load_collection(coll)
        _assert_exact(c, uri, "growing")
        for coll in ("sc", "vpk", "vv"):
            c.flush(coll)
        _wait_indexes(c)
        _assert_exact(c, uri, "sealed and indexed")
        for coll in ("sc", "vpk", "vv"):
            compact(c, coll)
        _assert_exact(c, uri, "compacted")
        c.close()
        os.kill(proc.pid, signal.SIGKILL)  # the replay of the log and the segment files
        proc.wait()
        proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path)
        c = MilvusClient(uri=uri)
        _assert_exact(c, uri, "after kill -9")
        c.close()
        assert proc.stop() == 0, proc.failure("did not stop cleanly")
        proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path)
        c = MilvusClient(uri=uri)
        _assert_exact(c, uri, "after a clean restart")
        for coll in ("sc", "vpk", "vv"):
            c.release_collection(coll)
            c.load_collection(coll)
        _assert_exact(c, uri, "after a reload")
        assert "Traceback" not in proc.output(), proc.failure("logged a traceback")
    finally:
        c.close()
        proc.stop()


# --- INT64_MIN as a filter literal ----------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("accepted")) as uri_and_client:
        yield uri_and_client


def test_int64_min_is_a_filter_literal_as_in_milvus(served):
    """Milvus's parser reads -9223372036854775808 as INT64_MIN (the literal 9223372036854775808 alone
    is out of range): a row holding it can be queried and deleted by expression."""
    _, c = served
    name = "acc_i64min"
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("v", DataType.INT64)
    s.add_field("j", DataType.JSON)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=s, index_params=idx)
    c.insert(name, [{"id": I64_MIN, "vec": _vec(0), "v": I64_MIN, "j": {"a": I64_MIN}},
                    {"id": 1, "vec": _vec(1), "v": I64_MAX, "j": {"a": 1}}])
    q = {"output_fields": ["id"], "consistency_level": "Strong"}
    assert [r["id"] for r in c.query(name, filter="v == -9223372036854775808", **q)] == [I64_MIN]
    assert [r["id"] for r in c.query(name, filter="v in [-9223372036854775808, 5]", **q)] == [I64_MIN]
    assert [r["id"] for r in c.query(name, filter='j["a"] == -9223372036854775808', **q)] == [I64_MIN]
    assert [r["id"] for r in c.query(name, filter="v > -9223372036854775808", **q)] == [1]
    for bad in ("v == 9223372036854775808", "v == --9223372036854775808", "v == 1 - 9223372036854775808"):
        with pytest.raises(MilvusException) as e:
            c.query(name, filter=bad, **q)
        assert e.value.code == 1100 and "integer 9223372036854775808 out of int64 range" in e.value.message, bad
    c.delete(name, filter="id == -9223372036854775808")
    assert [r["id"] for r in c.query(name, filter="id < 100", **q)] == [1]
    c.delete(name, filter="v == 9223372036854775807 or id == -9223372036854775808")
    assert c.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 0


# --- REST output of what was accepted -----------------------------------------------------
def test_rest_reads_back_sparse_vectors_and_big_json_integers(tmp_path):
    """A sparse vector output field made the REST query and get answer no rows at all (its column
    counted 0 rows); Milvus writes each row as an object of index: value."""
    node = start_standalone(str(tmp_path), http=True)
    c = MilvusClient(uri=f"http://127.0.0.1:{node.port}")

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{node.http_ports[0]}/v2/vectordb/{path}",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert reply["code"] == 0, reply
        return reply["data"]

    try:
        s = MilvusClient.create_schema(enable_dynamic_field=True)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
        s.add_field("sv", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("j", DataType.JSON)
        idx = c.prepare_index_params()
        idx.add_index("vec", index_type="FLAT", metric_type="L2")
        idx.add_index("sv", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        c.create_collection("r", schema=s, index_params=idx)
        post("entities/insert", {"collectionName": "r", "data": [
            {"id": 1, "vec": [1, 2], "sv": {"3": 0.5, "4294967294": 0.25}, "j": {"a": 2**64}, "big": -(10**20)},
            {"id": 2, "vec": [2, 1], "sv": {}, "j": {"a": 1}}]})
        want = [{"id": 1, "vec": [1.0, 2.0], "sv": {"3": 0.5, "4294967294": 0.25}, "j": {"a": 2**64}, "big": -(10**20)},
                {"id": 2, "vec": [2.0, 1.0], "sv": {}, "j": {"a": 1}}]
        wait_until(lambda: len(post("entities/query", {"collectionName": "r", "filter": "id > 0",
                                                       "outputFields": ["id"]})) == 2, 20, "rows visible")
        got = post("entities/query", {"collectionName": "r", "filter": "id > 0", "outputFields": ["*"]})
        assert sorted(got, key=lambda r: r["id"]) == want
        assert post("entities/get", {"collectionName": "r", "id": [1], "outputFields": ["*"]}) == want[:1]
        hits = post("entities/search", {"collectionName": "r", "data": [[1, 2]], "annsField": "vec", "limit": 1,
                                        "outputFields": ["sv", "j"]})
        assert [(h["id"], h["sv"], h["j"]) for h in hits] == [(1, want[0]["sv"], want[0]["j"])]
    finally:
        c.close()
        node.stop()


def test_scalar_nan_inf_and_float16_overflow_are_refused(served):
    """What vecdb refuses instead of storing (NaN and infinity in FLOAT / DOUBLE fields, a double that
    overflows a FLOAT, infinity in a FLOAT16 vector): 1100, nothing written."""
    _, c = served
    name = "acc_refused"
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("h", DataType.FLOAT16_VECTOR, dim=2)
    s.add_field("f", DataType.FLOAT)
    s.add_field("d", DataType.DOUBLE)
    idx = c.prepare_index_params()
    idx.add_index("h", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=s, index_params=idx)
    ok = {"id": 1, "h": np.ones(2, np.float16), "f": 0.0, "d": 0.0}
    for bad, message in (({"f": float("nan")}, "value of float field (f) at row 0 is NaN or infinity"),
                         ({"d": float("-inf")}, "value of float field (d) at row 0 is NaN or infinity"),
                         ({"f": 1e39}, "value of float field (f) at row 0 is NaN or infinity"),
                         ({"h": np.array([np.inf, 1], np.float16)},
                          "the 0th vector of field (h) contains NaN or infinity")):
        with pytest.raises(MilvusException) as e:
            c.insert(name, [{**ok, **bad}])
        assert e.value.code == 1100 and message in e.value.message, e.value
    assert c.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 0


# --- strings ending in NUL ------------------------------------------------------------------
def test_strings_ending_in_nul_are_values_of_their_own(served, caplog):
    """NumPy compares a bare str as ``np.str_``, which drops trailing NULs: ``s == "x\\x00"`` matched
    the row "x" (and a delete by that filter deleted it), grouping merged "x", "x\\x00" and "x\\x00\\x00",
    and a query node matched a compacted segment's rows to the wrong source rows and kept the old
    segments (an ERROR). Milvus keeps and compares them as written."""
    _, c = served
    name = "acc_nul"
    keys = ["x", "x\x00", "x\x00\x00", "\x00", ""]
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=8)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("s", DataType.VARCHAR, max_length=8)
    s.add_field("arr", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=2, max_length=4)
    s.add_field("j", DataType.JSON)
    s.add_field("v", DataType.INT64)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=s, index_params=idx)
    c.insert(name, [{"id": k, "vec": _vec(i), "s": k, "arr": [k], "j": {"k": k}, "v": i} for i, k in enumerate(keys)])
    c.insert(name, [{"id": "y", "vec": _vec(9), "s": "y", "arr": ["y"], "j": {"k": "y"}, "v": 9}])
    q = {"output_fields": ["id"], "consistency_level": "Strong"}

    def ids(flt: str, **params) -> list:
        return sorted(r["id"] for r in c.query(name, filter=flt, filter_params=params, **q))

    def check(when: str) -> None:
        for k in keys:
            for flt in ("id == {k}", "s == {k}", "s in [{k}]", 'j["k"] == {k}', "array_contains(arr, {k})",
                        "array_contains_all(arr, [{k}])"):
                assert ids(flt, k=k) == [k], (when, flt, k)
        assert ids('s == "x\\x00" or s == "\\x00"') == ["\x00", "x\x00"], when
        assert ids("s > {k} and s < {m}", k="x", m="x\x00\x00") == ["x\x00"], when
        groups = c.query(name, filter='id != "y"', output_fields=["s", "count(*)", "sum(v)"], group_by_fields=["s"],
                         consistency_level="Strong")
        assert sorted((g["s"], g["count(*)"], g["sum(v)"]) for g in groups) == sorted(
            (k, 1, i) for i, k in enumerate(keys)), when
        got = c.query(name, filter='id != "y"', output_fields=["min(s)", "max(s)"], consistency_level="Strong")
        assert (got[0]["min(s)"], got[0]["max(s)"]) == ("", "x\x00\x00"), when

    check("growing")
    c.flush(name)
    c.delete(name, filter='s == "y"')
    with caplog.at_level("ERROR", logger="vecdb.querynode.compaction"):
        compact(c, name)
    assert not [r for r in caplog.records if r.name == "vecdb.querynode.compaction"], caplog.text
    check("compacted")
    c.delete(name, filter='s == "x\\x00"')  # that row only
    assert ids('id != "q"') == sorted(k for k in keys if k != "x\x00")

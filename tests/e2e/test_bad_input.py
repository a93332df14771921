"""Bad input never takes the server down (issue 9): each request is refused with the right
code and message, nothing is written, and the collection stays usable.

One embedded standalone server for the module. Requests pymilvus would refuse itself are sent
over the raw gRPC stub so the server's own checks run.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from pymilvus import DataType, MilvusException
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from tests.e2e._helpers import count, float_schema, make_collection, raw_stub, serving

DIM = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One standalone server for the module, and a client of it."""
    with serving(tmp_path_factory.mktemp("bad_input")) as uri_and_client:
        yield uri_and_client


@pytest.fixture(scope="module")
def uri(served):
    return served[0]


@pytest.fixture(scope="module")
def client(served):
    return served[1]


@pytest.fixture
def name():
    return "bad_" + uuid.uuid4().hex[:10]


def _rows(start: int, n: int, seed: int = 0) -> list[dict]:
    vecs = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return [{"id": start + i, "vec": vecs[i].tolist(), "j": {"i": start + i}} for i in range(n)]


@pytest.fixture
def coll(client, name):
    schema = float_schema(DIM, extra=(("j", DataType.JSON, {}),))
    make_collection(client, name, schema)
    client.insert(name, _rows(0, 10))
    return name


def _raises(code: int, fn, *args, **kwargs) -> str:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value
    return e.value.message


# --- vectors -----------------------------------------------------------------------
def test_vector_overflowing_float32_is_refused_and_collection_stays_usable(client, name):
    """A finite 1e20 crashed FAISS's k-means at the IVF_FLAT build (and every restart)."""
    make_collection(client, name, float_schema(DIM, extra=(("j", DataType.JSON, {}),)), index_type="IVF_FLAT",
                    load=False)
    bad = _rows(0, 3)
    bad[1]["vec"][3] = 1e20
    msg = _raises(1100, client.insert, name, bad)
    assert "the 1th vector of field (vec) is too large: its squared L2 norm 1e+40 exceeds 1e+37" in msg
    msg = _raises(1100, client.upsert, name, bad)
    assert "the 1th vector of field (vec) is too large" in msg
    rows = _rows(0, 300)
    client.insert(name, rows)
    client.flush(name)
    client.load_collection(name)
    assert count(client, name) == 300
    hits = client.search(name, [rows[7]["vec"]], limit=3, search_params={"params": {"nprobe": 128}})
    assert hits[0][0]["id"] == 7 and hits[0][0]["distance"] == pytest.approx(0, abs=1e-4)


@pytest.mark.parametrize("value,why", [(float("nan"), "contains NaN or infinity"),
                                       (1e20, "is too large: its squared L2 norm 1e+40")])
def test_query_vector_nan_or_overflowing_is_refused(client, coll, value, why):
    q = [0.5] * DIM
    q[2] = value
    msg = _raises(1100, client.search, coll, [[0.1] * DIM, q], limit=2)
    assert f"the 1th search vector of field (vec) {why}" in msg
    assert len(client.search(coll, [[0.1] * DIM], limit=2)[0]) == 2


# --- search parameters -------------------------------------------------------------
@pytest.mark.parametrize("params,message", [
    ({"radius": "abc"}, "Type conflict in json: param 'radius' ('abc') should be a number"),
    ({"radius": "inf"}, "param 'radius' ('inf') should be a finite number"),
    ({"radius": True}, "param 'radius' (True) should be a number"),
    ({"range_filter": [1], "radius": 1}, "param 'range_filter' ([1]) should be a number"),
    ({"radius": 1, "range_filter": "nan"}, "param 'range_filter' ('nan') should be a finite number"),
])
def test_range_search_bounds_must_be_finite_numbers(client, coll, params, message):
    msg = _raises(1100, client.search, coll, [[0.1] * DIM], limit=2, search_params={"params": params})
    assert message in msg


def test_round_decimal_and_topk_limits(client, coll, uri):
    hits = client.search(coll, [[0.1] * DIM], limit=2, round_decimal=6)
    assert len(hits[0]) == 2
    # pymilvus checks these itself: send them raw
    rd_message = "round_decimal [{}] is invalid, should be -1 or an integer in range [0, 6]"
    for extra, message in ((("round_decimal", "1000000000"), rd_message.format(1000000000)),
                           (("round_decimal", "7"), rd_message.format(7)),
                           (("round_decimal", "-2"), rd_message.format(-2)),
                           (("round_decimal", "x"), rd_message.format("x")),
                           (("topk", "16385"), "topk [16385] is invalid"),
                           (("topk", "9" * 5000), "is invalid, it should be an integer"),
                           (("offset", "-1"), "top k [2] + offset [-1] is invalid")):
        kv = {"anns_field": "vec", "topk": "2", "metric_type": "L2", "params": "{}", "round_decimal": "-1"}
        kv[extra[0]] = extra[1]
        req = milvus_pb2.SearchRequest(
            collection_name=coll, dsl_type=common_pb2.DslType.BoolExprV1, nq=1,
            placeholder_group=Prepare._prepare_placeholder_str([[0.1] * DIM]),
            search_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in kv.items()])
        with raw_stub(uri) as stub:
            st = stub.Search(req).status
        assert st.code == 1100 and message in st.reason, (extra, st)


def test_search_params_limits_through_the_client(client, name):
    make_collection(client, name, float_schema(DIM), index_type="HNSW", metric="L2")
    client.insert(name, [{k: v for k, v in r.items() if k != "j"} for r in _rows(0, 20)])
    msg = _raises(1100, client.search, name, [[0.1] * DIM], limit=2, search_params={"params": {"ef": 50000000}})
    assert "param 'ef' (50000000) should be in range [1, 32768]" in msg
    hits = client.search(name, [[0.1] * DIM], limit=2, search_params={"params": {"ef": 32768}})
    assert len(hits[0]) == 2


def test_build_param_limits(client, name):
    client.create_collection(name, schema=float_schema(DIM))
    for index_type, params, message in (("HNSW", {"M": 16, "efConstruction": 2**31 - 1}, "efConstruction out of range"),
                                        ("IVF_FLAT", {"nlist": 65537}, "nlist out of range: [1, 65536]")):
        idx = client.prepare_index_params()
        idx.add_index(field_name="vec", index_type=index_type, metric_type="L2", params=params)
        assert message in _raises(1100, client.create_index, name, idx)
    assert client.list_indexes(name) == []


def test_gpu_index_without_gpu_is_refused_at_create(client, name):
    from vecdb.index import gpu_available

    if gpu_available():
        pytest.skip("this machine has a GPU")
    client.create_collection(name, schema=float_schema(DIM))
    for index_type in ("GPU_CAGRA", "GPU_BRUTE_FORCE", "GPU_IVF_FLAT", "GPU_IVF_PQ"):
        idx = client.prepare_index_params()
        idx.add_index(field_name="vec", index_type=index_type, metric_type="L2",
                      params={"m": 4} if index_type == "GPU_IVF_PQ" else {})
        msg = _raises(701, client.create_index, name, idx)
        assert f"GPU index {index_type} needs a GPU; none is available on this server" in msg
    assert client.list_indexes(name) == []


# --- schema ------------------------------------------------------------------------
def _create_raw(uri, name, schema, num_partitions: int) -> common_pb2.Status:
    req = Prepare.create_collection_request(name, schema)  # pymilvus refuses num_partitions < 1 itself
    req.num_partitions = num_partitions
    with raw_stub(uri) as stub:
        return stub.CreateCollection(req)


def test_num_partitions_rules(client, uri, name):
    schema = float_schema(DIM, extra=(("k", DataType.INT64, {"is_partition_key": True}),))
    for n, message in ((-5, "the specified partitions should be greater than 0 if partition key is used"),
                       (4097, "partition number (4097) exceeds max configuration (4096)")):
        st = _create_raw(uri, name, schema, num_partitions=n)
        assert st.code == 1100 and message in st.reason, st
        assert not client.has_collection(name)
    st = _create_raw(uri, name, float_schema(DIM), num_partitions=4)
    assert st.code == 1100 and "num_partitions should only be specified with partition key field enabled" in st.reason
    assert not client.has_collection(name)


def test_schema_functions_are_refused(client, uri, name):
    pb = schema_pb2.CollectionSchema(name=name)
    pb.fields.add(name="id", data_type=schema_pb2.Int64, is_primary_key=True)
    pb.fields.add(name="v", data_type=schema_pb2.FloatVector).type_params.add(key="dim", value="4")
    pb.functions.add(name="emb", input_field_names=["id"], output_field_names=["v"])
    with raw_stub(uri) as stub:
        st = stub.CreateCollection(milvus_pb2.CreateCollectionRequest(collection_name=name,
                                                                     schema=pb.SerializeToString()))
    assert st.code == 105 and "collection schema functions" in st.reason and "not supported by vecdb yet" in st.reason
    assert not client.has_collection(name)


# --- JSON ----------------------------------------------------------------------------
def test_json_nested_too_deep_or_not_utf8_is_refused(client, coll, uri):
    row = _rows(100, 1)[0]
    row["j"] = json.loads('{"a": ' * 200 + "1" + "}" * 200)
    msg = _raises(1100, client.insert, coll, [row])
    assert "the JSON value of json field (j) at row 0 is nested more than 128 levels deep" in msg

    def raw_insert(json_bytes: bytes) -> common_pb2.Status:  # what the client cannot send
        fields = [
            schema_pb2.FieldData(type=schema_pb2.Int64, field_name="id",
                                 scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=[100]))),
            schema_pb2.FieldData(type=schema_pb2.FloatVector, field_name="vec", vectors=schema_pb2.VectorField(
                dim=DIM, float_vector=schema_pb2.FloatArray(data=[0.1] * DIM))),
            schema_pb2.FieldData(type=schema_pb2.JSON, field_name="j",
                                 scalars=schema_pb2.ScalarField(json_data=schema_pb2.JSONArray(data=[json_bytes]))),
        ]
        with raw_stub(uri) as stub:
            return stub.Insert(milvus_pb2.InsertRequest(collection_name=coll, fields_data=fields, num_rows=1)).status

    st = raw_insert(b'{"a": ' * 1000 + b"1" + b"}" * 1000)
    assert st.code == 1100 and "is nested more than 128 levels deep" in st.reason, st
    st = raw_insert(b'{"a": "\xff"}')
    assert st.code == 1100 and "invalid JSON in json field (j) at row 0: str is not valid UTF-8" in st.reason
    assert count(client, coll) == 10
    row["j"] = json.loads('{"a": ' * 127 + "1" + "}" * 127)  # 127 levels: fine
    client.insert(coll, [row])
    assert count(client, coll) == 11

"""Errors through the real client: the Milvus 2.3 code, a clear message, and nothing half-written.

Codes (Milvus merr): 100 collection not found, 101 collection not loaded, 200 partition
not found, 700 index not found, 1100 invalid parameter, 1102 parameter too large,
1700 field not found. Where pymilvus refuses a request itself (ParamError /
DataNotMatchException), the same bad request is also sent by hand over the gRPC stub so
the server's own check is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client.prepare import Prepare
from pymilvus.exceptions import DataNotMatchException, ParamError
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from tests.conftest import free_port
from tests.e2e._helpers import count, float_schema, make_collection, raw_stub

DIM = 4
GOOD = [{"id": i, "vec": [float(i), 1.0, 2.0, 3.0], "s": "ok"} for i in range(3)]


@pytest.fixture
def coll(client, name):
    make_collection(client, name, float_schema(DIM, extra=(("s", DataType.VARCHAR, {"max_length": 5}),)))
    client.insert(name, GOOD)
    return name


def _raises(code: int, fn, *args, **kwargs) -> MilvusException:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value
    assert e.value.message
    return e.value


# --- raw requests ---------------------------------------------------------------
def _int64(name, values):
    return schema_pb2.FieldData(type=schema_pb2.Int64, field_name=name,
                                scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=values)))


def _varchar(name, values):
    return schema_pb2.FieldData(type=schema_pb2.VarChar, field_name=name,
                                scalars=schema_pb2.ScalarField(string_data=schema_pb2.StringArray(data=values)))


def _floatvec(name, rows, dim=DIM):
    flat = np.asarray(rows, np.float32).ravel().tolist()
    return schema_pb2.FieldData(type=schema_pb2.FloatVector, field_name=name, vectors=schema_pb2.VectorField(
        dim=dim, float_vector=schema_pb2.FloatArray(data=flat)))


def _raw_insert(uri, coll, fields, num_rows) -> common_pb2.Status:
    with raw_stub(uri) as stub:
        req = milvus_pb2.InsertRequest(collection_name=coll, fields_data=fields, num_rows=num_rows)
        return stub.Insert(req).status


def _assert_unchanged(client, name):
    assert count(client, name) == len(GOOD)
    assert sorted(r["id"] for r in client.query(name, filter="id >= 0")) == [r["id"] for r in GOOD]


# --- insert validation ------------------------------------------------------------
def test_wrong_dimension(client, coll, uri):
    rows = [{"id": 10, "vec": [1.0] * DIM, "s": "a"}, {"id": 11, "vec": [1.0] * (DIM + 1), "s": "b"}]
    err = _raises(1100, client.insert, coll, rows)
    assert "dim" in err.message
    st = _raw_insert(uri, coll, [_int64("id", [10]), _varchar("s", ["a"]), _floatvec("vec", [[1.0] * 3], dim=3)], 1)
    assert st.code == 1100 and "dim" in st.reason
    _assert_unchanged(client, coll)
    # a query vector of the wrong dimension is refused too
    err = _raises(1100, client.search, coll, [[1.0] * (DIM + 2)], limit=1)
    assert "dim" in err.message


def test_wrong_type(client, coll, uri):
    with pytest.raises(DataNotMatchException):  # pymilvus checks rows against the schema itself
        client.insert(coll, [{"id": "x", "vec": [1.0] * DIM, "s": "a"}])
    # the server's check: a VarChar column for the INT64 primary key
    st = _raw_insert(uri, coll, [_varchar("id", ["x"]), _varchar("s", ["a"]), _floatvec("vec", [[1.0] * DIM])], 1)
    assert st.code == 1100 and "id" in st.reason
    # a float vector column sent for a VARCHAR field
    st = _raw_insert(uri, coll, [_int64("id", [20]), _floatvec("s", [[1.0] * DIM]), _floatvec("vec", [[1.0] * DIM])], 1)
    assert st.code == 1100 and "s" in st.reason
    _assert_unchanged(client, coll)


def test_missing_field(client, coll, uri):
    with pytest.raises(DataNotMatchException):
        client.insert(coll, [{"id": 30, "vec": [1.0] * DIM}])
    st = _raw_insert(uri, coll, [_int64("id", [30]), _floatvec("vec", [[1.0] * DIM])], 1)
    assert st.code == 1100 and "s" in st.reason
    # an unknown field (no dynamic schema) is field-not-found
    st = _raw_insert(uri, coll, [_int64("id", [30]), _varchar("s", ["a"]), _floatvec("vec", [[1.0] * DIM]),
                                 _int64("ghost", [1])], 1)
    assert st.code == 1700 and "ghost" in st.reason
    # columns of different lengths
    st = _raw_insert(uri, coll, [_int64("id", [30, 31]), _varchar("s", ["a"]), _floatvec("vec", [[1.0] * DIM] * 2)], 2)
    assert st.code == 1100
    _assert_unchanged(client, coll)


def test_overlong_varchar(client, coll):
    rows = [{"id": 40, "vec": [1.0] * DIM, "s": "12345"}, {"id": 41, "vec": [1.0] * DIM, "s": "123456"}]
    err = _raises(1100, client.insert, coll, rows)
    assert "max length" in err.message or "max_length" in err.message
    # max_length counts UTF-8 bytes, as in Milvus: 3 x "é" = 6 bytes > 5
    _raises(1100, client.insert, coll, [{"id": 42, "vec": [1.0] * DIM, "s": "ééé"}])
    _raises(1100, client.upsert, coll, [{"id": 0, "vec": [1.0] * DIM, "s": "toolong"}])
    _assert_unchanged(client, coll)
    assert client.get(coll, ids=[0], output_fields=["s"])[0]["s"] == "ok"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf_vectors(client, coll, bad):
    rows = [{"id": 50, "vec": [1.0] * DIM, "s": "a"}, {"id": 51, "vec": [1.0, bad, 1.0, 1.0], "s": "b"}]
    err = _raises(1100, client.insert, coll, rows)
    assert "NaN" in err.message or "inf" in err.message.lower()
    _raises(1100, client.upsert, coll, rows)
    _assert_unchanged(client, coll)


def test_nan_in_float_scalar(client, name):
    make_collection(client, name, float_schema(DIM, extra=(("f", DataType.FLOAT, {}),)))
    _raises(1100, client.insert, name, [{"id": 1, "vec": [1.0] * DIM, "f": float("nan")}])
    assert count(client, name) == 0


def test_empty_batch(client, coll, uri):
    # pymilvus sends nothing for an empty list; the server refuses num_rows == 0 itself
    assert client.insert(coll, [])["insert_count"] == 0
    st = _raw_insert(uri, coll, [_int64("id", []), _varchar("s", []), _floatvec("vec", [])], 0)
    assert st.code == 1100 and "num_rows" in st.reason
    _assert_unchanged(client, coll)


def test_oversize_request(tmp_path):
    from vecdb.config import Settings
    from vecdb.standalone import Standalone

    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    settings.proxy.port = free_port()
    settings.proxy.max_request_bytes = 20_000
    settings.http.port = 0
    node = Standalone(settings).start()
    c = MilvusClient(uri=f"http://127.0.0.1:{node.port}")
    try:
        make_collection(c, "big", float_schema(64))
        small = [{"id": i, "vec": [0.5] * 64} for i in range(10)]  # ~2.6 kB
        assert c.insert("big", small)["insert_count"] == 10
        large = [{"id": 100 + i, "vec": [0.5] * 64} for i in range(200)]  # ~51 kB
        err = _raises(1102, c.insert, "big", large)
        assert "20000" in err.message
        _raises(1102, c.upsert, "big", large)
        assert count(c, "big") == 10
    finally:
        c.close()
        node.stop()


def test_unknown_partition(client, coll):
    _raises(200, client.insert, coll, [{"id": 60, "vec": [1.0] * DIM, "s": "a"}], partition_name="nope")
    _raises(200, client.query, coll, filter="id >= 0", partition_names=["nope"])
    _assert_unchanged(client, coll)


# --- collections, loading, indexes -----------------------------------------------------
def test_unknown_collection(client, uri):
    _raises(100, client.insert, "no_such_coll", [{"id": 1, "vec": [1.0] * DIM}])
    _raises(100, client.search, "no_such_coll", [[1.0] * DIM])
    _raises(100, client.query, "no_such_coll", filter="id > 0")
    _raises(100, client.describe_collection, "no_such_coll")
    _raises(100, client.load_collection, "no_such_coll")
    st = _raw_insert(uri, "no_such_coll", [_int64("id", [1]), _floatvec("vec", [[1.0] * DIM])], 1)
    assert st.code == 100 and "no_such_coll" in st.reason


def test_search_and_query_before_load(client, coll):
    client.release_collection(coll)
    err = _raises(101, client.search, coll, [[1.0] * DIM], limit=1)
    assert coll in err.message
    _raises(101, client.query, coll, filter="id >= 0")


def test_index_missing_at_load(client, name, uri):
    client.create_collection(name, schema=float_schema(DIM))
    err = _raises(700, client.load_collection, name)
    assert "index" in err.message
    assert client.describe_index(name, "vec") is None  # pymilvus maps code 700 to None
    with raw_stub(uri) as stub:
        resp = stub.DescribeIndex(milvus_pb2.DescribeIndexRequest(collection_name=name, index_name="vec"))
        assert resp.status.code == 700
    client.insert(name, [{"id": 1, "vec": [1.0] * DIM}])  # writes work without an index
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    assert count(client, name) == 1


def test_field_not_found(client, coll):
    client.load_collection(coll)
    err = _raises(1700, client.search, coll, [[1.0] * DIM], anns_field="ghost", limit=1)
    assert "ghost" in err.message
    err = _raises(1700, client.query, coll, filter="id >= 0", output_fields=["ghost"])
    assert "ghost" in err.message


def test_drop_default_partition(client, coll):
    err = _raises(1100, client.drop_partition, coll, "_default")
    assert "default" in err.message
    assert "_default" in client.list_partitions(coll)
    _assert_unchanged(client, coll)


@pytest.mark.parametrize("bad", ["1abc", "a-b", "a b", "x" * 256])
def test_bad_collection_name(client, bad):
    err = _raises(1100, client.create_collection, bad, dimension=DIM)
    assert "name" in err.message
    assert not client.has_collection(bad)


def test_empty_collection_name_is_refused_by_pymilvus(client, uri):
    with pytest.raises((ParamError, MilvusException)):
        client.create_collection("", dimension=DIM)
    with raw_stub(uri) as stub:
        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
        req = Prepare.create_collection_request("placeholder", schema)
        req.collection_name = ""
        assert stub.CreateCollection(req).code == 1100


def test_duplicate_collection(client, coll):
    # the same name with a different schema is refused; the existing collection is untouched
    err = _raises(1100, client.create_collection, coll, dimension=DIM + 4)
    assert coll in err.message
    assert client.describe_collection(coll)["fields"][1]["params"]["dim"] == DIM
    _assert_unchanged(client, coll)


def test_upsert_auto_id_and_bad_filter(client, name, uri):
    s = MilvusClient.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    make_collection(client, name, s)
    client.insert(name, [{"vec": [1.0] * DIM}])
    _raises(1100, client.upsert, name, [{"id": 1, "vec": [1.0] * DIM}])
    _raises(1100, client.query, name, filter="id >>> 3")
    with pytest.raises(ParamError):
        client.delete(name, filter="")  # pymilvus refuses an empty filter; so does the server:
    with raw_stub(uri) as stub:
        st = stub.Delete(milvus_pb2.DeleteRequest(collection_name=name, expr="")).status
        assert st.code == 1100
    assert count(client, name) == 1

"""Search/query replies, parsed by pymilvus's real client code."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus.client.grpc_handler import GrpcHandler
from pymilvus.client.search_result import SearchResult
from pymilvus.grpc_gen import schema_pb2

from vecdb.errors import InternalError
from vecdb.proxy.results import ids_proto, query_results, round_scores, search_results
from vecdb.schema import CollectionSchema
from vecdb.schema import DataType as D


def make_schema(pk_type=D.INT64, dynamic=True) -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c", enable_dynamic_field=dynamic)
    pk = pb.fields.add(name="pk", data_type=int(pk_type), is_primary_key=True)
    if pk_type == D.VARCHAR:
        pk.type_params.add(key="max_length", value="16")
    pb.fields.add(name="age", data_type=int(D.INT32))
    title = pb.fields.add(name="title", data_type=int(D.VARCHAR))
    title.type_params.add(key="max_length", value="32")
    tags = pb.fields.add(name="tags", data_type=int(D.ARRAY), element_type=int(D.INT64))
    tags.type_params.add(key="max_capacity", value="4")
    vec = pb.fields.add(name="vec", data_type=int(D.FLOAT_VECTOR))
    vec.type_params.add(key="dim", value="2")
    return CollectionSchema.from_proto(pb, "c")


class _Stub:
    def __init__(self, reply):
        self.reply = reply

    def Search(self, request, timeout=None, metadata=None):
        return self.reply

    Query = Search


def _handler(reply) -> GrpcHandler:
    h = GrpcHandler.__new__(GrpcHandler)
    h._address = "fake:19530"
    h._stub = _Stub(reply)
    return h


def pymilvus_search(reply, output_fields, round_decimal=-1):
    return _handler(reply).search(
        collection_name="c", anns_field="vec", param={"metric_type": "L2"}, limit=3,
        data=[[0.0, 0.0]], output_fields=output_fields, round_decimal=round_decimal,
    )


def hits_columns(n, offset=0):
    idx = np.arange(offset, offset + n)
    return {
        "pk": idx.astype(np.int64),
        "age": (idx * 10).astype(np.int32),
        "title": np.array([f"t{i}" for i in idx], dtype=object),
        "tags": _objects([np.arange(i % 3, dtype=np.int64) for i in idx]),
        "vec": np.stack([idx, -idx], axis=1).astype(np.float32),
        "$meta": _objects([{"color": f"c{i}", "w": i / 2} for i in idx]),
    }


def _objects(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_search_uneven_topks_ids_distances_entities():
    schema = make_schema()
    topks = [2, 0, 3]
    cols = hits_columns(5)
    scores = np.array([0.5, 0.75, 0.1, 0.2, 0.3], np.float32)
    reply = search_results(schema, 3, topks, cols["pk"], scores, cols, ["age", "title", "tags", "vec"], ["color"])
    res = reply.results
    assert (res.num_queries, res.top_k, list(res.topks), res.primary_field_name) == (3, 3, topks, "pk")
    assert list(res.output_fields) == ["age", "title", "tags", "vec", "color"]

    parsed = pymilvus_search(reply, ["age", "title", "tags", "vec", "color"])
    assert [len(h) for h in parsed] == topks
    flat = [hit for hits in parsed for hit in hits]
    assert [hit["pk"] for hit in flat] == [0, 1, 2, 3, 4]
    assert [hit["distance"] for hit in flat] == pytest.approx(scores.tolist())
    assert parsed[2].ids == [2, 3, 4]
    for i, hit in enumerate(flat):
        assert hit["entity"] == {
            "age": 10 * i, "title": f"t{i}", "tags": list(range(i % 3)),
            "vec": pytest.approx([float(i), float(-i)]), "color": f"c{i}",
        }


def test_search_all_dynamic_keys_and_varchar_pks():
    schema = make_schema(pk_type=D.VARCHAR)
    cols = hits_columns(3)
    cols["pk"] = np.array(["a", "b", "c"], dtype=object)
    reply = search_results(schema, 2, [1, 2], cols["pk"], np.zeros(3, np.float32), cols, ["age"], ["*"])
    assert list(reply.results.output_fields) == ["age", "$meta"]
    assert list(reply.results.ids.str_id.data) == ["a", "b", "c"]
    parsed = pymilvus_search(reply, ["age", "*"])
    assert parsed[1].ids == ["b", "c"]
    assert parsed[1][1]["entity"] == {"age": 20, "color": "c2", "w": 1.0}


def test_search_without_output_fields_and_empty_result():
    schema = make_schema()
    cols = hits_columns(2)
    reply = search_results(schema, 1, [2], cols["pk"], np.array([1.0, 2.0], np.float32), {}, [], [])
    assert len(reply.results.fields_data) == 0
    parsed = pymilvus_search(reply, [])
    assert parsed[0].ids == [0, 1] and parsed[0][0]["entity"] == {}
    empty = {k: v[:0] for k, v in cols.items()}
    reply = search_results(schema, 2, [0, 0], empty["pk"], np.zeros(0, np.float32), empty, ["age", "vec"], ["color"])
    parsed = pymilvus_search(reply, ["age", "vec", "color"])
    assert [len(h) for h in parsed] == [0, 0]
    assert reply.results.ids.HasField("int_id")


def test_round_decimal_half_away_from_zero():
    schema = make_schema()
    cols = hits_columns(4)
    scores = np.array([0.125, -0.125, 0.123456, 2.5], np.float32)
    reply = search_results(schema, 1, [4], cols["pk"], scores, cols, [], [], round_decimal=2)
    assert list(reply.results.scores) == pytest.approx([0.13, -0.13, 0.12, 2.5])
    reply = search_results(schema, 1, [4], cols["pk"], scores, cols, [], [], round_decimal=0)
    assert list(reply.results.scores) == [0.0, -0.0, 0.0, 3.0]
    reply = search_results(schema, 1, [4], cols["pk"], scores, cols, [], [])
    assert list(reply.results.scores) == pytest.approx([0.125, -0.125, 0.123456, 2.5])
    assert round_scores(np.array([1.23456], np.float32), 3).tolist() == pytest.approx([1.235])


def test_inconsistent_search_input_is_internal_error():
    schema = make_schema()
    cols = hits_columns(3)
    with pytest.raises(InternalError):
        search_results(schema, 2, [1, 1], cols["pk"], np.zeros(3, np.float32), cols, [], [])
    with pytest.raises(InternalError):
        search_results(schema, 3, [1, 2], cols["pk"], np.zeros(3, np.float32), cols, [], [])


def test_ids_proto():
    ids = ids_proto(np.array([3, -1, 2**62], np.int64), D.INT64)
    assert ids.WhichOneof("id_field") == "int_id" and list(ids.int_id.data) == [3, -1, 2**62]
    ids = ids_proto(np.array(["x", "é"], dtype=object), D.VARCHAR)
    assert ids.WhichOneof("id_field") == "str_id" and list(ids.str_id.data) == ["x", "é"]
    assert ids_proto(np.zeros(0, np.int64), D.INT64).HasField("int_id")


def test_query_results_put_pk_first_and_parse():
    schema = make_schema()
    cols = hits_columns(3)
    reply = query_results(schema, cols, ["title", "age"], ["w"], "c")
    assert reply.collection_name == "c"
    assert [fd.field_name for fd in reply.fields_data] == ["pk", "title", "age", "$meta"]
    assert list(reply.output_fields) == ["pk", "title", "age", "w"]
    rows = [dict(r) for r in _handler(reply).query("c", "pk >= 0", output_fields=["title", "age", "w"])]
    assert rows == [{"pk": i, "title": f"t{i}", "age": 10 * i, "w": i / 2} for i in range(3)]


def test_search_result_class_directly_parses_reply():
    schema = make_schema()
    cols = hits_columns(4)
    reply = search_results(schema, 2, [3, 1], cols["pk"], np.arange(4, dtype=np.float32), cols, ["age"], ["color"])
    res = SearchResult(reply.results)
    assert [h.ids for h in res] == [[0, 1, 2], [3]]
    assert res[1][0]["entity"] == {"age": 30, "color": "c3"}


def test_build_speed_nq100_k10_two_scalar_fields():
    """Budget: PERFORMANCE.md measured ~0.1 ms for a bare nq=100 result; with two
    output columns the build should stay well under a millisecond or two."""
    schema = make_schema(dynamic=False)
    n = 1000
    cols = {"pk": np.arange(n, dtype=np.int64), "age": np.arange(n, dtype=np.int32),
            "title": np.array([f"title-{i}" for i in range(n)], dtype=object)}
    scores = np.random.default_rng(0).random(n, dtype=np.float32)
    topks = [10] * 100
    args = (schema, 100, topks, cols["pk"], scores, cols, ["age", "title"], [])
    search_results(*args)
    best = min(_timed(lambda: search_results(*args)) for _ in range(20))
    print(f"search_results nq=100 k=10, 2 scalar fields: {best * 1e3:.3f} ms")
    assert best < 0.01


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_merge_packed_appends_and_handles_multibyte_keys():
    from vecdb.proxy.fieldencode import merge_packed

    res = schema_pb2.SearchResultData()
    res.scores.extend([9.0])
    merge_packed(res, schema_pb2.SearchResultData.DESCRIPTOR.fields_by_name["scores"].number,
                 np.array([0.5, -1.25], "<f4"))
    assert list(res.scores) == [9.0, 0.5, -1.25]
    fd = schema_pb2.FieldData()
    merge_packed(fd.scalars.bool_data, 1, np.array([True, False, True]).view(np.uint8))
    assert list(fd.scalars.bool_data.data) == [True, False, True]
    fd = schema_pb2.FieldData()
    merge_packed(fd.scalars.double_data, 1, np.zeros(0, "<f8"))
    assert fd.scalars.WhichOneof("data") == "double_data" and len(fd.scalars.double_data.data) == 0
    # 300 floats = 1200 bytes: a two-byte length varint
    many = np.linspace(-1, 1, 300, dtype="<f4")
    fd = schema_pb2.FieldData()
    merge_packed(fd.vectors.float_vector, 1, many)
    assert np.array(fd.vectors.float_vector.data, np.float32).tolist() == many.tolist()
    # field number 16 needs a two-byte key
    from vecdb.proxy.fieldencode import _varint

    assert _varint(16 << 3 | 2) == b"\x82\x01" and _varint(1200) == b"\xb0\x09"

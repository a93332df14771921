"""Internal RPC (vecdb.rpc): the generated modules match proto/, numpy columns as Column
messages, errors crossing as their own class, the dict form of the coord's calls."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import errors
from vecdb.column_codec import object_array
from vecdb.rpc import Client, columns, serve
from vecdb.rpc.columns import (
    column_wire,
    embed,
    fill_named,
    from_column,
    from_named,
    named_wire,
    read_query_reply,
    read_search_reply,
    to_column,
)
from vecdb.rpc.gen import common_pb2, coord_pb2, querynode_pb2
from vecdb.rpc.gen.coord_pb2_grpc import CoordServicer
from vecdb.rpc.gen.querynode_pb2_grpc import QueryNodeServicer
from vecdb.rpc.protogen import differences
from vecdb.storage.servers import free_port

rng = np.random.default_rng(0)
ARRAYS = {
    "vectors": rng.random((7, 5), dtype=np.float32),
    "ids": np.arange(7, dtype=np.int64),
    "mask": np.array([True, False, True]),
    "big_endian": np.arange(3, dtype=">i4"),
    "float16": rng.random((3, 4)).astype(np.float16),
    "not_contiguous": rng.random((6, 6))[:, ::2],
    "names": np.array(["a", "日本", ""], dtype=object),
    "json": np.array([{"k": [1, 2]}, None, 3.5], dtype=object),
    "empty": np.empty((0, 4), np.float32),
    "empty_names": np.array([], dtype=object),
    "rows_of_arrays": object_array([np.arange(3, dtype=np.int32), np.arange(1, dtype=np.int32)]),
    "rows_of_strings": object_array([np.array(["a", "bcd"]), np.array(["xyzzy"])]),
    "big": rng.random((200, 128), dtype=np.float32),  # over 64 KiB
}


def test_generated_modules_match_the_protos():
    """vecdb/rpc/gen is what `python -m vecdb.rpc.protogen` makes of proto/ (regenerated here)."""
    assert differences() == [], "vecdb/rpc/gen is stale: run python -m vecdb.rpc.protogen"


def test_generated_modules_import_beside_pymilvus_stubs():
    from pymilvus.grpc_gen import common_pb2 as milvus_common  # holds "common.proto" in the same pool

    assert common_pb2.DESCRIPTOR.name == "vecdb/internal/common.proto" != milvus_common.DESCRIPTOR.name
    assert querynode_pb2.DESCRIPTOR.services_by_name["QueryNode"].full_name == "vecdb.internal.QueryNode"


def _same(got: np.ndarray, want: np.ndarray, name: str):
    want = np.asarray(want)
    assert got.shape == want.shape, name
    if want.dtype != object:
        assert got.dtype == want.dtype.newbyteorder("<") and np.array_equal(got, want), name
    elif name.startswith("rows_of"):  # per-row arrays come back as arrays of their type
        assert [r.dtype.kind for r in got] == [r.dtype.kind for r in want], name
        assert [r.tolist() for r in got] == [r.tolist() for r in want], name
    else:
        assert list(got) == list(want), name


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_columns_round_trip_arrays_of_any_shape(name):
    want = ARRAYS[name]
    msg = common_pb2.Column.FromString(to_column(want).SerializeToString())
    _same(from_column(msg), want, name)
    if want.dtype != object:
        assert not from_column(msg).flags.writeable  # np.frombuffer over the message's bytes
    # the encoded form with buffers not copied is the same message
    assert common_pb2.Column.FromString(b"".join(column_wire(want))) == msg


@pytest.mark.parametrize("views_from", [0, 1 << 40], ids=["walked", "parsed"])
def test_encoded_replies_equal_the_messages_protobuf_builds(monkeypatch, views_from):
    """The replies encoded with buffers joined as they are parse as the messages protobuf builds;
    read back (large ones walked, fixed-width arrays as views; small ones parsed by protobuf),
    both encodings give the arrays."""
    monkeypatch.setattr(columns, "_VIEW_FROM", views_from)
    want = querynode_pb2.SearchReply(topks=[3, 4, 300])
    want.pks.CopyFrom(to_column(ARRAYS["ids"]))
    want.scores.CopyFrom(to_column(ARRAYS["vectors"][:, 0]))
    fill_named(want.columns, ARRAYS)
    wire = b"".join([querynode_pb2.SearchReply(topks=[3, 4, 300]).SerializeToString(),
                     *embed(2, column_wire(ARRAYS["ids"])), *embed(3, column_wire(ARRAYS["vectors"][:, 0])),
                     *named_wire(4, ARRAYS)])
    assert querynode_pb2.SearchReply.FromString(wire) == want
    for data in (wire, want.SerializeToString()):
        topks, pks, scores, cols = read_search_reply(data)
        assert topks == [3, 4, 300]
        _same(pks, ARRAYS["ids"], "pks")
        _same(scores, ARRAYS["vectors"][:, 0].copy(), "scores")
        assert list(cols) == list(ARRAYS)  # in their order
        for name, arr in ARRAYS.items():
            _same(cols[name], arr, name)
        if views_from == 0:
            assert np.shares_memory(cols["vectors"], np.frombuffer(data, np.uint8))

    query = querynode_pb2.QueryReply()
    fill_named(query.columns, ARRAYS)
    assert querynode_pb2.QueryReply.FromString(b"".join(named_wire(1, ARRAYS))) == query
    for data in (b"".join(named_wire(1, ARRAYS)), query.SerializeToString()):
        cols = read_query_reply(data)
        assert list(cols) == list(ARRAYS)
        for name, arr in ARRAYS.items():
            _same(cols[name], arr, name)
    assert from_named(query.columns).keys() == ARRAYS.keys()


@pytest.mark.parametrize("bad", [b"\x12\x05ab", b"\xff", b"\x0b", b"\x22\x02\x12\x00"])
def test_a_malformed_reply_is_invalid_parameter(monkeypatch, bad):
    monkeypatch.setattr(columns, "_VIEW_FROM", 0)
    with pytest.raises(errors.InvalidParameter):
        read_search_reply(bad)
    with pytest.raises(errors.InvalidParameter):
        read_query_reply(b"\x0a" + bytes([len(bad)]) + bad)


def test_a_malformed_column_is_invalid_parameter():
    with pytest.raises(errors.InvalidParameter):
        from_column(common_pb2.Column(dtype="<f4", shape=[3], raw=b"\0" * 5))
    with pytest.raises(errors.InvalidParameter):
        from_column(common_pb2.Column(shape=[1], json=common_pb2.JsonValues(doc=b"[1,")))


class StandIn(QueryNodeServicer):
    """Some of the query node's methods: the rest answer UNIMPLEMENTED."""

    def Count(self, request, context):
        if request.scope.collection_id == 0:
            raise errors.CollectionNotLoaded(f"collection {request.scope.collection_id} is not loaded: 日本")
        if request.scope.collection_id == 1:
            raise ZeroDivisionError("a bug")
        return querynode_pb2.CountReply(count=sum(request.scope.wait.values()))

    def Query(self, request, context):  # an encoded reply
        return b"".join(named_wire(1, {f: np.arange(3) * len(f) for f in request.output_fields}))


@pytest.fixture
def querynode():
    server, port = serve("querynode", StandIn())
    client = Client(f"127.0.0.1:{port}", "querynode")
    yield client
    client.close()
    server.stop(0)


def _count(collection_id: int, **wait) -> querynode_pb2.CountRequest:
    return querynode_pb2.CountRequest(scope=querynode_pb2.ReadScope(collection_id=collection_id, wait=wait))


def test_typed_calls_and_encoded_replies(querynode):
    assert querynode.invoke("Count", _count(5, a=2, b=3)).count == 5
    request = querynode_pb2.QueryRequest(output_fields=["x", "yy"])
    reply = querynode.invoke("Query", request)
    assert {k: v.tolist() for k, v in from_named(reply.columns).items()} == {"x": [0, 1, 2], "yy": [0, 2, 4]}
    encoded = querynode.invoke_encoded("Query", request)
    assert querynode_pb2.QueryReply.FromString(encoded) == reply
    with pytest.raises(errors.CollectionNotLoaded):  # errors cross the same way
        querynode.invoke_encoded("Count", _count(0))
    with pytest.raises(errors.Unimplemented):
        querynode.invoke_encoded("NoSuchMethod", common_pb2.Empty())


def test_handler_errors_reach_the_caller_as_the_same_class(querynode):
    with pytest.raises(errors.CollectionNotLoaded, match="collection 0 is not loaded: 日本") as e:
        querynode.invoke("Count", _count(0))
    assert e.value.code == errors.CollectionNotLoaded.code
    with pytest.raises(errors.InternalError, match="Count: ZeroDivisionError: a bug"):
        querynode.invoke("Count", _count(1))
    with pytest.raises(errors.Unimplemented):  # not served by this servicer
        querynode.invoke("Loaded", common_pb2.Empty())
    with pytest.raises(errors.Unimplemented):  # not in the service at all
        querynode.invoke("NoSuchMethod", common_pb2.Empty())
    assert querynode.invoke("Count", _count(5, a=1)).count == 1  # still serving


def test_the_dict_form_checks_fields_against_the_message():
    seen = []

    def alloc(request, context):
        seen.append(request.HasField("count") and request.count)
        if request.HasField("count") and request.count < 1:
            raise errors.InvalidParameter(f"invalid count {request.count}")
        return coord_pb2.AllocTimestampReply(ts=7)

    # the generated servicer answers UNIMPLEMENTED for the methods not overridden
    server, port = serve("coord", type("Coord", (CoordServicer,), {"AllocTimestamp": staticmethod(alloc)})())
    client = Client(f"127.0.0.1:{port}", "coord")
    try:
        assert client.call("AllocTimestamp", {})[0] == {"ts": 7} and seen == [False]
        assert client.call("AllocTimestamp", {"count": 3}) == ({"ts": 7}, {}) and seen[-1] == 3
        with pytest.raises(errors.InvalidParameter, match="invalid count 0"):  # 0 is sent: the field is optional
            client.call("AllocTimestamp", {"count": 0})
        for bad in ({"count": "many"}, {"count": 1.5}, {"cnt": 1}):
            with pytest.raises(errors.InvalidParameter):
                client.call("AllocTimestamp", bad)
        with pytest.raises(errors.InvalidParameter):
            client.call("AllocTimestamp", {}, {"x": np.ones(2)})
        with pytest.raises(errors.Unimplemented):
            client.call("NoSuchMethod", {})
    finally:
        client.close()
        server.stop(0)


def test_unreachable_server_is_service_unavailable():
    with pytest.raises(errors.ServiceUnavailable):
        Client(f"127.0.0.1:{free_port()}", "coord", timeout=2).call("AllocID", {})
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", "nosuchservice")

"""Internal RPC: the message codec and the gRPC transport (vecdb.rpc)."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import errors
from vecdb.rpc import Client, serve
from vecdb.rpc.codec import pack, unpack
from vecdb.storage.servers import free_port


def test_codec_round_trips_arrays_of_any_shape_without_copies():
    rng = np.random.default_rng(0)
    arrays = {
        "vectors": rng.random((7, 5), dtype=np.float32),
        "ids": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "big_endian": np.arange(3, dtype=">i4"),
        "names": np.array(["a", "日本", ""], dtype=object),
        "json": np.array([{"k": [1, 2]}, None, 3.5], dtype=object),
        "empty": np.empty((0, 4), np.float32),
        "rows_of_arrays": np.array([np.arange(3, dtype=np.int32), np.arange(1, dtype=np.int32)], dtype=object),
    }
    data = pack({"op": "search", "nested": {"k": [1, 2]}}, arrays)
    meta, got = unpack(data)
    assert meta == {"op": "search", "nested": {"k": [1, 2]}}
    for name, want in arrays.items():
        assert got[name].shape == np.asarray(want).shape
        if want.dtype != object:
            assert got[name].dtype == np.asarray(want).dtype.newbyteorder("<")
        if name == "rows_of_arrays":  # per-row ARRAY values come back as arrays of their type
            assert [r.dtype for r in got[name]] == [np.int32, np.int32]
            assert [r.tolist() for r in got[name]] == [[0, 1, 2], [0]]
        else:
            assert np.array_equal(got[name], want) if want.dtype != object else list(got[name]) == list(want)
    assert got["vectors"].base is not None  # a view of the message, not a copy
    assert unpack(pack()) == ({}, {})


@pytest.mark.parametrize("bad", [b"", b"XXXX\0\0\0\0", pack({"a": 1})[:10], b"VCOL\xff\xff\xff\x7f{"])
def test_codec_refuses_malformed_messages(bad):
    with pytest.raises(errors.InvalidParameter):
        unpack(bad)


@pytest.fixture
def echo_server():
    def add(meta, arrays):
        return {"sum": float(arrays["x"].sum()) + meta["plus"]}, {"doubled": arrays["x"] * 2}

    def refuse(meta, arrays):
        raise errors.CollectionNotFound(f"collection {meta['name']!r} not found")

    def crash(meta, arrays):
        raise ZeroDivisionError("a bug")

    server, port = serve("test", {"Add": add, "Refuse": refuse, "Crash": crash})
    client = Client(f"127.0.0.1:{port}", "test")
    yield client
    client.close()
    server.stop(0)


def test_calls_carry_meta_and_arrays_both_ways(echo_server):
    result, arrays = echo_server.call("Add", {"plus": 1}, {"x": np.arange(4, dtype=np.float32)})
    assert result == {"sum": 7.0}
    assert np.array_equal(arrays["doubled"], [0, 2, 4, 6]) and arrays["doubled"].dtype == np.float32


def test_handler_errors_reach_the_caller_as_the_same_class(echo_server):
    with pytest.raises(errors.CollectionNotFound, match="'c1' not found") as e:
        echo_server.call("Refuse", {"name": "c1"})
    assert e.value.code == errors.CollectionNotFound.code
    with pytest.raises(errors.InternalError, match="ZeroDivisionError: a bug"):
        echo_server.call("Crash")
    with pytest.raises(errors.Unimplemented):
        echo_server.call("NoSuchMethod")
    assert echo_server.call("Add", {"plus": 0}, {"x": np.ones(2)})[0] == {"sum": 2.0}  # still serving


def test_unreachable_server_is_service_unavailable():
    with pytest.raises(errors.ServiceUnavailable):
        Client(f"127.0.0.1:{free_port()}", "test", timeout=2).call("Add", {"plus": 0})

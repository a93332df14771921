"""The largest log record: JetStream's file store refuses a stored message of 32 MiB or more whatever
``max_payload`` allows, so ``JetStreamLog`` refuses such a record itself, as an input error that says so
(the server answered an atomic batch with one "atomic publish batch is incomplete"), and the proxy
writes a larger insert as pieces of at most ``RECORD_BYTES`` (``vecdb.proxy.rpc_dml._pieces``)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.proxy.rpc_dml import RECORD_BYTES, _key_pieces, _pieces
from vecdb.storage.jetstream_log import STORE_MAX_RECORD, JetStreamLog


def test_jetstream_refuses_a_record_the_file_store_cannot_hold(nats_server):
    log = JetStreamLog(nats_server.url, prefix="t" + uuid.uuid4().hex[:12])
    try:
        assert log._nc.max_payload > 32 << 20  # the servers vecdb starts: 64 MiB, so max_payload is not what refuses
        with pytest.raises(InvalidParameter, match="32 MiB"):
            log.append_batch("c", [b"ok", b"x" * (32 << 20)])
        assert log.last_position("c") == 0  # nothing of the batch written
        big = b"y" * STORE_MAX_RECORD  # the largest it takes is stored whole
        assert log.append_batch("c", [b"ok", big]) == [1, 2]
        assert [(pos, len(data)) for pos, data in log.read("c")] == [(1, 2), (2, STORE_MAX_RECORD)]
    finally:
        log.close()


def test_pieces_are_consecutive_and_bounded():
    sizes = np.full(1_000, 40_000, np.int64)
    sizes[500] = RECORD_BYTES + 1  # a row larger than a piece goes alone
    pieces = _pieces(3, None, 1_000, sizes)
    rows = np.concatenate([r for _, r in pieces])
    assert rows.tolist() == list(range(1_000)) and {pid for pid, _ in pieces} == {3}
    assert all(sizes[r].sum() <= RECORD_BYTES or len(r) == 1 for _, r in pieces)
    assert [len(r) for _, r in pieces if 500 in r] == [1]
    # a channel's share of the rows (indices into the batch) keeps its order and indices
    some = np.arange(0, 1_000, 3)
    got = np.concatenate([r for _, r in _pieces(1, some, 1_000, sizes)])
    assert got.tolist() == some.tolist()


def test_a_deletes_keys_go_in_bounded_pieces():
    ints = np.arange(5_000_000, dtype=np.int64)
    pieces = _key_pieces(ints)
    assert [len(p) for p in pieces] == [RECORD_BYTES // 8, RECORD_BYTES // 8, 5_000_000 - RECORD_BYTES // 4]
    assert np.array_equal(np.concatenate(pieces), ints)
    keys = np.array(["k" * 1_000_000, "é" * 3_000_000, "x", "big" * 3_000_000, "y"], dtype=object)
    pieces = _key_pieces(keys)  # counted at 4 bytes a character: 4 MB, 12 MB, ..., 36 MB alone
    assert [p.tolist() for p in pieces] == [keys[:3].tolist(), keys[3:4].tolist(), keys[4:].tolist()]
    assert [len(p) for p in _key_pieces(np.array(["a", "b"], dtype=object))] == [2]

"""``JetStreamLog`` (real NATS) and ``WalLog`` with ``channel_dropped`` (``vecdb.storage.dropped_channels``;
the metadata in memory): an append never makes a dropped collection's channel, and makes a live
collection's missing channel as always."""

from __future__ import annotations

import uuid
from functools import partial

import pytest

from vecdb.catalog_model import channel_collection, channel_dropped, coll_key
from vecdb.errors import CollectionNotFound, IoFailed
from vecdb.storage.jetstream_log import JetStreamLog
from vecdb.storage.memory import MemoryMetaStore
from vecdb.storage.wal import WalLog

LIVE, DROPPED = "c7-s0", "c8-s1"


class Guarded:
    """A log whose channels' collections are read from ``meta`` (collection 7 lives, 8 was dropped);
    ``delete``/``listing``: a channel deleted and the channels listed behind its back (JetStream: by a
    second client on the same streams, another process; WAL: by the log itself, one process a directory)."""

    def __init__(self, kind: str, request, tmp_path):
        self.meta = MemoryMetaStore()
        self.meta.put(coll_key(7), b"{}")
        check = partial(channel_dropped, self.meta)
        if kind == "jetstream":
            url, prefix = request.getfixturevalue("nats_server").url, "t" + uuid.uuid4().hex[:12]
            self.log = JetStreamLog(url, prefix=prefix, channel_dropped=check)
            self.other = JetStreamLog(url, prefix=prefix)
        else:
            self.log = self.other = WalLog(str(tmp_path / "wal"), channel_dropped=check)
        self.delete, self.listing = self.other.drop_channel, self.other.channels

    def close(self) -> None:
        for ch in self.listing():
            self.delete(ch)
        self.other.close()
        self.log.close()


@pytest.fixture(params=["jetstream", "wal"])
def guarded(request, tmp_path):
    g = Guarded(request.param, request, tmp_path)
    yield g
    g.close()


def test_channel_names_hold_their_collection_id():
    assert channel_collection("c450000000000000001-s0") == 450000000000000001
    assert [channel_collection(n) for n in ("c7-s", "x7-s0", "c7-s0x", "c-s0", "a")] == [None] * 5
    meta = MemoryMetaStore()
    meta.put(coll_key(7), b"{}")
    assert [channel_dropped(meta, n) for n in (LIVE, DROPPED, "a")] == [False, True, False]


def test_an_append_to_a_dropped_collections_channel_makes_no_channel(guarded):
    log = guarded.log
    with pytest.raises(CollectionNotFound):
        log.append(DROPPED, b"seal")
    with pytest.raises(CollectionNotFound):
        log.append_batch(DROPPED, [b"a", b"b"], expect_last=0)
    assert log.append(LIVE, b"x") == 1
    assert log.append("any-name", b"y") == 1  # not a collection's channel: made as always
    assert guarded.listing() == ["any-name", LIVE]


def test_a_channel_deleted_after_its_collection_was_dropped_is_not_made_again(guarded):
    """The race the e2e test provokes: the log knew the channel, the collection is dropped (catalog, then
    channel; JetStream: by another process), then an append (a data node's seal)."""
    log, meta = guarded.log, guarded.meta
    meta.put(coll_key(8), b"{}")
    assert log.append_batch(DROPPED, [b"insert"]) == [1]
    meta.delete(coll_key(8))
    guarded.delete(DROPPED)
    with pytest.raises(CollectionNotFound):
        log.append(DROPPED, b"seal")
    assert guarded.listing() == []
    assert log.last_position(DROPPED) == 0


def test_a_drop_between_the_check_and_the_stream_deletes_the_stream_made(nats_server, tmp_path, request):
    """JetStream: the catalog said live before the stream was made and dropped after: the drop's delete may
    have come first, so the append deletes what it made. (The WAL reads the catalog under the lock its
    drop takes.)"""
    g = Guarded("jetstream", request, tmp_path)
    try:
        answers = iter([False, True])
        g.log._channel_dropped = lambda channel: next(answers)
        with pytest.raises(CollectionNotFound):
            g.log.append(DROPPED, b"seal")
        assert g.listing() == []
    finally:
        g.close()


def test_a_live_collections_missing_channel_is_made_again(guarded):
    """A channel gone while its collection lives (a NATS server that lost its store) is made by the next
    append, as before: positions start over."""
    log = guarded.log
    assert log.append_batch(LIVE, [b"a", b"b"]) == [1, 2]
    guarded.delete(LIVE)
    assert log.append(LIVE, b"c") == 1
    assert [p for p, _ in log.read(LIVE)] == [1]


def test_an_unreadable_catalog_makes_the_channel(guarded):
    """Metadata trouble never fails a write the log would take: the channel is made, as without the check."""
    log = guarded.log

    def broken(channel: str) -> bool:
        raise IoFailed("etcd is down")

    log._channel_dropped = broken
    assert log.append(DROPPED, b"x") == 1
    assert guarded.listing() == [DROPPED]

"""Races between a flush and what reads or repeats it, on a standalone server's own backends.

- Two data nodes persisting one channel (in a cluster every proxy still hosts one): the
  checkpoint moves by compare-and-set, so the one that loses starts over from the winner's
  checkpoint instead of persisting the same records again.
- A query node loading while a flush commits: segments, deltas and the checkpoint are read as
  one flush left them, so the rows of the new segment are neither missed nor doubled.
- An insert whose rows are in the log is acknowledged even when the seal check that follows
  it fails (a client would otherwise retry and duplicate its auto_id rows).
"""

from __future__ import annotations

import numpy as np

from tests.e2e._helpers import count, float_schema, make_collection
from vecdb.datanode.node import DataNode
from vecdb.querynode.node import QueryNode
from vecdb.storage import segments as sf

DIM = 4


def _two_inserts(server, client) -> tuple:
    """A one-shard collection with two insert records of 50 rows: (info, channel, positions)."""
    make_collection(client, "c", float_schema(DIM), load=False, num_shards=1)
    info = server.roles.catalog.get("default", "c")
    channel = info.channels[0]
    positions = []
    for start in (0, 50):
        rows = [{"id": i, "vec": [float(i)] * DIM} for i in range(start, start + 50)]
        client.insert("c", rows)
        positions.append(server.wal.last_position(channel))
    return info, channel, positions


def _persisted_rows(server, info, channel) -> int:
    return sum(s["num_rows"] for s in sf.list_segments(server.meta, info.id, channel))


def test_a_data_node_that_lost_the_checkpoint_race_does_not_persist_records_twice(own_standalone):
    server, client = own_standalone
    info, channel, (p1, p2) = _two_inserts(server, client)
    other = DataNode(server.wal, server.meta, server.objects, server.roles.ids, truncate=False)
    mine = DataNode(server.wal, server.meta, server.objects, server.roles.ids, truncate=False)
    read = mine._read_records

    def read_while_the_other_persists(ch, start, upto):
        out = read(ch, start, upto)  # this attempt reads from checkpoint 0...
        if start == 0:
            other.persist(info, ch, p1)  # ...while another data node persists the first record
        return out

    mine._read_records = read_while_the_other_persists
    segments = mine.persist(info, channel, p2)
    assert [s["num_rows"] for s in segments] == [50]  # started over from the other's checkpoint
    assert _persisted_rows(server, info, channel) == 100
    assert sf.checkpoint(server.meta, info.id, channel) == p2
    listed = {key.rsplit("/", 1)[0] + "/" for key in server.objects.list(f"segments/{info.id}/{channel}/")}
    assert listed == {s["prefix"] for s in sf.list_segments(server.meta, info.id, channel)}  # no orphans
    other.close()
    mine.close()


def test_a_load_during_a_flush_reads_segments_and_checkpoint_together(own_standalone, monkeypatch):
    server, client = own_standalone
    info, channel, (_, p2) = _two_inserts(server, client)
    flusher = DataNode(server.wal, server.meta, server.objects, server.roles.ids, truncate=False)
    list_deltas = sf.list_deltas
    flushed = []

    def deltas_while_a_flush_commits(meta, collection_id, ch):
        if not flushed:  # the segment list was read before this flush, the checkpoint after it
            flushed.extend(flusher.persist(info, ch, p2))
        return list_deltas(meta, collection_id, ch)

    monkeypatch.setattr(sf, "list_deltas", deltas_while_a_flush_commits)
    node = QueryNode(server.wal, server.meta, server.objects)
    try:
        node.load(info)
        assert [s["num_rows"] for s in flushed] == [100]
        assert node.num_rows(info) == 100
    finally:
        node.close()
        flusher.close()


def test_an_insert_in_the_log_is_acknowledged_when_the_seal_check_fails(own_standalone, monkeypatch):
    server, client = own_standalone
    make_collection(client, "c", float_schema(DIM))

    def unreachable(channel):
        raise ConnectionError("query node unreachable")

    monkeypatch.setattr(server.querynode, "growing_rows", unreachable)
    vecs = np.ones((10, DIM), np.float32)
    result = client.insert("c", [{"id": i, "vec": v} for i, v in enumerate(vecs)])
    assert result["insert_count"] == 10
    monkeypatch.undo()
    assert count(client, "c") == 10

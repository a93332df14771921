"""Found by the chaos hunt (kill -9 of one cluster process at a time, 3 shards, 2 replicas): a segment
registered in the metadata without its files. No query node could load the channel any more ("object not
found ... _ts.npy", retried forever), so the collection never loaded again and its compactions failed.

With the data node killed, two proxies persisted a channel in-process. One persisted from an old checkpoint
past several seal records and lost the compare-and-set on the checkpoint to the other, which had persisted
the first of them. The loser then looked up which of its segment prefixes were registered and deleted the
others; between the look and the delete, the winner persisted the next seal record: it wrote the same keys
(a segment's prefix is named by its seal record) and registered them, and the loser's delete removed them.
A persist that loses the race now leaves its files to the garbage collector (``vecdb/datanode/node.py``).

On a standalone server's own backends, two ``DataNode``s persisting one channel, the interleaving forced.
"""

from __future__ import annotations

from tests.e2e._helpers import count, float_schema, make_collection
from vecdb.datanode.node import DataNode
from vecdb.storage import segments as sf

DIM = 4


class _RacingObjects:
    """An object store that runs ``before`` (another process's persist) before its first delete."""

    def __init__(self, objects, before):
        self._objects, self._before = objects, before

    def __getattr__(self, name):
        return getattr(self._objects, name)

    def _first(self) -> None:
        if self._before is not None:
            before, self._before = self._before, None
            before()

    def delete_prefix(self, prefix):
        self._first()
        return self._objects.delete_prefix(prefix)

    def delete(self, key):
        self._first()
        return self._objects.delete(key)


def test_a_persist_that_lost_the_race_keeps_the_files_another_registers_meanwhile(own_standalone):
    server, client = own_standalone
    make_collection(client, "c", float_schema(DIM), load=False, num_shards=1)
    info = server.roles.catalog.get("default", "c")
    channel = info.channels[0]
    positions = []
    for start in (0, 50):
        client.insert("c", [{"id": i, "vec": [float(i)] * DIM} for i in range(start, start + 50)])
        positions.append(server.wal.last_position(channel))
    p1, p2 = positions
    winner = DataNode(server.wal, server.meta, server.objects, server.roles.ids, truncate=False)
    # the winner persists (p1, p2] while the loser cleans up after its lost compare-and-set
    loser = DataNode(server.wal, server.meta, _RacingObjects(server.objects, lambda: winner.persist(info, channel, p2)),
                     server.roles.ids, truncate=False)
    read = loser._read_records

    def read_while_the_winner_persists(ch, start, upto):
        out = read(ch, start, upto)  # the loser reads (0, p2]...
        if start == 0:
            winner.persist(info, ch, p1)  # ...while the winner persists (0, p1]: the loser's commit fails
        return out

    loser._read_records = read_while_the_winner_persists
    try:
        loser.persist(info, channel, p2)
        winner.persist(info, channel, p2)  # (a no-op once the channel is persisted to p2)
        segments = sf.list_segments(server.meta, info.id, channel)
        assert sorted((s["position"], s["num_rows"]) for s in segments) == [(p1, 50), (p2, 50)]
        assert sf.checkpoint(server.meta, info.id, channel) == p2
        # every registered segment has its files (before: the one at p2 had none)
        assert all(list(server.objects.list(s["prefix"])) for s in segments), \
            [(s["prefix"], list(server.objects.list(s["prefix"]))) for s in segments]
        client.load_collection("c", timeout=60)
        assert count(client, "c", consistency_level="Strong") == 100
        got = client.query("c", filter="id >= 0", output_fields=["id"], limit=1000)
        assert sorted(r["id"] for r in got) == list(range(100))
    finally:
        winner.close()
        loser.close()

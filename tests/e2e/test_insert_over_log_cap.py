"""An insert larger than the largest message NATS JetStream stores.

A file-backed JetStream stream stores no message of 32 MiB or more (nats-server's file store,
whatever ``max_payload`` allows), and an insert was one log record per channel and partition: a
36 MB insert (1,200 chunks of 30 kB text, a RAG workload's batch) that standalone on the embedded log
took failed on the distributed backends with code 1001 "atomic publish batch is incomplete" (found by
a bug hunt, 2026-12-08). The proxy now writes such a batch as several records of one append
(``vecdb.proxy.rpc_dml.RECORD_BYTES``), visible together, a repeated key's last row winning as in one
record. Runs on every server of the suite (the JetStream ones are where it failed).
"""

from __future__ import annotations

from pymilvus import DataType

from tests.e2e._helpers import count, float_schema, float_vectors, make_collection

DIM = 8
ROWS = 1_200
TEXT = 30_000  # 1,200 rows of 30 kB: 36 MB, past the 32 MiB a stored JetStream message may have


def _text(i: int, version: int) -> str:
    return (f"{i}:{version}:" * (TEXT // 4))[:TEXT]


def test_insert_past_the_stored_message_cap(client, name):
    schema = float_schema(DIM, extra=(("chunk", DataType.VARCHAR, {"max_length": 65_535}),))
    make_collection(client, name, schema)
    vecs = float_vectors(ROWS + 1, DIM, seed=3)
    rows = [{"id": i, "vec": vecs[i], "chunk": _text(i, 0)} for i in range(ROWS)]
    rows.append({"id": 7, "vec": vecs[ROWS], "chunk": _text(7, 1)})  # key 7 again, last: it wins
    assert sum(len(r["chunk"]) for r in rows) > 32 << 20

    assert client.insert(name, rows)["insert_count"] == ROWS + 1  # as Milvus counts a repeated key
    assert count(client, name, consistency_level="Strong") == ROWS
    got = client.query(name, filter="id in [0, 7, 599, 600, 1199]", output_fields=["chunk"],
                       consistency_level="Strong")
    assert {r["id"]: r["chunk"] for r in got} == {0: _text(0, 0), 7: _text(7, 1), 599: _text(599, 0),
                                                  600: _text(600, 0), 1199: _text(1199, 0)}

    client.flush(name)  # the pieces persisted: the same rows from the sealed segment
    assert count(client, name, consistency_level="Strong") == ROWS
    hits = client.search(name, data=[vecs[ROWS].tolist()], limit=1, output_fields=["chunk"],
                         consistency_level="Strong")[0]
    assert hits[0]["id"] == 7 and hits[0]["entity"]["chunk"] == _text(7, 1)


def test_a_delete_in_several_records_deletes_every_key(client, name, monkeypatch):
    """A delete's keys go in pieces of at most ``RECORD_BYTES`` too (2M int64 keys each, one
    append): pieces of 8 keys here (in-process servers), every key of every piece deleted at once,
    by list and by filter."""
    from vecdb.proxy import rpc_dml

    monkeypatch.setattr(rpc_dml, "RECORD_BYTES", 64)
    make_collection(client, name, float_schema(DIM))
    vecs = float_vectors(100, DIM, seed=4)
    client.insert(name, [{"id": i, "vec": vecs[i]} for i in range(100)])
    assert client.delete(name, ids=list(range(0, 100, 3)))["delete_count"] == 34
    assert client.delete(name, filter="id >= 50")["delete_count"] == 50 - 17
    left = client.query(name, filter="id >= 0", output_fields=["id"], consistency_level="Strong")
    assert sorted(r["id"] for r in left) == [i for i in range(50) if i % 3]

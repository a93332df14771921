"""Concurrent one-query searches answer as the same searches one at a time.

On the cluster the proxy merges concurrent nq=1 searches of the same kind into one query node call
(vecdb.proxy.batching); every deployment must give each search exactly the answer it gives it
alone: ids, distances, order among equal distances, output fields, with a filter and without,
with an offset, over sealed and growing rows."""

from __future__ import annotations

import threading

import numpy as np
from pymilvus import DataType

from tests.e2e._helpers import float_schema, make_collection

DIM = 8
N = 1500
THREADS = 8


def _answers(hits) -> list:
    return [[(h["id"], h["distance"], h["entity"].get("grp"), h["entity"].get("tag")) for h in one] for one in hits]


def test_concurrent_searches_answer_as_sequential_ones(client, name):
    make_collection(client, name, float_schema(DIM, extra=(("grp", DataType.INT64, {}),
                                                           ("tag", DataType.VARCHAR, {"max_length": 16}))))
    rng = np.random.default_rng(5)
    data = rng.integers(-2, 3, size=(N, DIM)).astype(np.float32)  # few distinct vectors: many ties
    rows = [{"id": int(i) * 7 + 3, "vec": data[i], "grp": int(i % 5), "tag": f"t{i % 11}"} for i in range(N)]
    client.insert(name, rows[:1000])
    client.flush(name)  # sealed rows and growing ones
    client.insert(name, rows[1000:])
    queries = np.concatenate([data[:24], rng.standard_normal((24, DIM)).astype(np.float32)])
    kinds = [dict(limit=10), dict(limit=5, filter="grp in [1, 3]"),
             dict(limit=4, search_params={"metric_type": "L2", "offset": 3})]

    def search(i: int):
        kind = kinds[i % len(kinds)]
        return _answers(client.search(name, queries[i:i + 1], output_fields=["grp", "tag"], **kind))

    alone = [search(i) for i in range(len(queries))]
    assert all(len(a[0]) > 0 for a in alone)
    together: list = [None] * len(queries)
    failures: list = []

    def worker(w: int):
        try:
            for _ in range(3):  # several rounds, so calls overlap in many ways
                for i in range(w, len(queries), THREADS):
                    got = search(i)
                    if together[i] is not None and together[i] != got:
                        failures.append((i, together[i], got))
                    together[i] = got
        except Exception as e:  # noqa: BLE001 (reported below)
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
    for i in range(len(queries)):
        assert together[i] == alone[i], (i, kinds[i % len(kinds)])

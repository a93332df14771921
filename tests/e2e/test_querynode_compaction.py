"""Query nodes follow compaction, through pymilvus on every deployment (standalone embedded, standalone
on JetStream/etcd/S3, a cluster of processes): after ``client.compact`` the query nodes serve the
compacted segment (GetQuerySegmentInfo lists exactly the persisted segments), with deletes and upserts
made after the compaction's checkpoint kept, and every answer equal to the one before."""

from __future__ import annotations

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import wait_until
from tests.e2e._helpers import reader_view

DIM = 8



def _sealed_served(c: MilvusClient, name: str) -> list[int]:
    """The segment ids of the sealed segments the query nodes serve."""
    return sorted(s.segmentID for s in c._get_connection().get_query_segment_info(name) if s.state != 2)  # 2: growing


def _persisted(c: MilvusClient, name: str) -> list[int]:
    return sorted(s.segmentID for s in c._get_connection().get_persistent_segment_infos(name))


def test_query_nodes_serve_the_compacted_segment_with_every_answer_kept(client, name):
    c = client
    c.create_collection(name, dimension=DIM, metric_type="L2", num_shards=1)
    vecs = np.random.default_rng(5).random((2000, DIM), dtype=np.float32)
    for lo in range(0, 900, 300):
        c.insert(name, [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(lo, lo + 300)])
        c.flush(name)
    c.delete(name, ids=list(range(0, 300, 5)))
    c.upsert(name, [{"id": i, "vector": vecs[i + 1000], "tag": f"v2-{i}"} for i in range(300, 360)])
    c.flush(name)
    # after the checkpoint the compaction reads: deletes and upserts of persisted rows, new rows
    c.delete(name, ids=list(range(600, 640)))
    c.upsert(name, [{"id": i, "vector": vecs[i + 1000], "tag": f"v3-{i}"} for i in range(640, 660)])
    c.insert(name, [{"id": i, "vector": vecs[i], "tag": f"v1-{i}"} for i in range(900, 950)])
    before = reader_view(c, name, vecs, 6, 12)
    assert before[0] == 950 - 60 - 40

    compaction_id = c.compact(name)
    wait_until(lambda: c.get_compaction_state(compaction_id) == "Completed", 60, "compaction completed")
    persisted = _persisted(c, name)
    assert len(persisted) == 1
    # the query nodes swap their segments for the compacted one on their own
    wait_until(lambda: _sealed_served(c, name) == persisted, 30, "query nodes serve the compacted segment")
    assert reader_view(c, name, vecs, 6, 12) == before

    # the pk index points into the compacted segment: deletes and upserts of its rows go on working
    c.delete(name, ids=[1, 2, 3, 301])
    c.upsert(name, [{"id": 302, "vector": vecs[1999], "tag": "v4"}])
    after = reader_view(c, name, vecs, 6, 12)
    assert after[0] == before[0] - 4 and after[1][302][0] == "v4" and 301 not in after[1]
    c.flush(name)
    c.release_collection(name)
    c.load_collection(name)
    assert reader_view(c, name, vecs, 6, 12) == after

"""A flush is the coord's (vecdb.coord.flush): through either proxy of a cluster it persists the rows
written through that proxy (and the other's), with segments in GetPersistentSegmentInfo and rows
counted; on the cluster those segments are the data node's (the proxy persists only while no data
node lives). The same on standalone, through its one port."""

from __future__ import annotations

import json

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import server_settings
from vecdb.coord.datanode_assignment import DATANODE_SESSIONS
from vecdb.storage.backends import open_meta

DIM = 4


def _segments(c: MilvusClient, name: str) -> dict[int, int]:
    """segment id -> rows, from GetPersistentSegmentInfo."""
    return {s.segmentID: s.num_rows for s in c._get_connection().get_persistent_segment_infos(name)}


def test_a_flush_through_each_proxy_persists(server, name, tmp_path):
    ports = getattr(server, "ports", [server.port])
    clients = [MilvusClient(uri=f"http://127.0.0.1:{p}") for p in ports]
    vecs = np.random.default_rng(3).random((100 * len(clients), DIM), dtype=np.float32)
    try:
        clients[0].create_collection(name, dimension=DIM, metric_type="L2", num_shards=2)
        seen: dict[int, int] = {}
        for i, c in enumerate(clients):
            ids = range(100 * i, 100 * (i + 1))
            c.insert(name, [{"id": k, "vector": vecs[k]} for k in ids])
            c.flush(name)
            segs = _segments(c, name)
            new = {s: n for s, n in segs.items() if s not in seen}
            assert sum(new.values()) == 100, (i, segs, seen)  # this flush's rows, in segments of its own
            assert sum(segs.values()) == 100 * (i + 1)
            seen = segs
            for other in clients:  # every proxy lists the same segments and counts every row
                assert _segments(other, name) == segs
                assert other.get_collection_stats(name)["row_count"] == 100 * (i + 1)
                got = other.query(name, "", output_fields=["count(*)"], consistency_level="Strong")
                assert got[0]["count(*)"] == 100 * (i + 1)
        c = clients[-1]
        c.flush(name)  # nothing new: no segment more, no row twice
        assert _segments(c, name) == seen
        if hasattr(server, "storage"):  # the cluster: the data node persisted them, not a proxy
            meta = open_meta(server_settings(tmp_path / "probe", None, server.storage).storage)
            try:
                datanodes = {k[len(DATANODE_SESSIONS):] for k, _ in meta.scan(DATANODE_SESSIONS)}
                writers = {json.loads(v).get("by") for k, v in meta.scan("seg/")
                           if json.loads(v)["segment_id"] in seen}
                assert datanodes and writers <= datanodes, (writers, datanodes)
            finally:
                meta.close()
    finally:
        for c in clients:
            c.close()

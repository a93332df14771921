"""A cluster query node follows the catalog's collection records (``vecdb.querynode.assigned``):
a DDL change the coord committed reaches the nodes that hold the collection even when the proxy
that asked for it never told them (it died between the coord's answer and its own refresh of
the nodes). Real coord, query node, data node and proxy processes on NATS, etcd and S3; the change
is made the way a proxy makes it (``RemoteDdl`` over ``CoordClient``), minus the proxy's refresh."""

from __future__ import annotations

import time

import numpy as np

from tests.conftest import start_cluster, wait_until
from vecdb.catalog_model import TTL_PROPERTY
from vecdb.coord.client import CoordClient
from vecdb.coord.ddl_rpc import RemoteDdl

DIM = 8


class _NoCatalog:
    """RemoteDdl waits for its proxy's catalog to reach the coord's version; there is no proxy here."""

    def wait_version(self, version: int, timeout: float) -> bool:
        return True


def test_a_collection_ttl_set_through_the_coord_alone_reaches_the_query_node(tmp_path, remote_storage):
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path) as cluster:
        c = cluster.client()
        c.create_collection("docs", dimension=DIM, metric_type="L2", consistency_level="Strong")
        vecs = np.random.default_rng(0).random((200, DIM), dtype=np.float32)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(200)])
        assert len(c.query("docs", "id >= 0", limit=1000)) == 200
        time.sleep(1.5)  # the rows are now older than the TTL about to be set

        coord = CoordClient(cluster.meta)
        try:
            RemoteDdl(coord, _NoCatalog()).alter_collection("default", "docs", {TTL_PROPERTY: "1"}, [])
        finally:
            coord.close()
        wait_until(lambda: c.query("docs", "id >= 0", limit=1000) == [], 15,
                   "the query node did not take the TTL the coord committed")
        c.insert("docs", [{"id": 1000, "vector": vecs[0]}])  # a row within the TTL is read
        assert [r["id"] for r in c.query("docs", "id >= 0", limit=1000)] == [1000]

"""/metrics of the coord and of a data node, as processes, after a known workload: the coord's
id allocations (``milvus_rootcoord_id_alloc_count``) move by the auto ids handed out and its
latest timestamp (``milvus_rootcoord_timestamp``) by the writes; the data node counts one flush
per persisted seal (``milvus_datanode_flush_buffer_op_count``, ``milvus_datanode_save_latency``).
A query node's /healthz says 200 only once it holds what it was assigned. (The proxy's and query
node's counters: tests/e2e/test_metrics.py.)"""

from __future__ import annotations

import json

import numpy as np
from pymilvus import DataType

from tests.conftest import start_cluster, wait_until
from tests.e2e.test_metrics import Scrape, _get, _moved


def test_coord_and_data_node_metrics_move_by_the_workload(tmp_path, remote_storage):
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path, http=("coord", "qn0", "dn0")) as cluster:
        http = cluster.http_ports
        wait_until(lambda: _get(http["qn0"], "/healthz")[0] == 200, 60, "the query node is ready")
        c = cluster.client()
        schema = c.create_schema(auto_id=True)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        index = c.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        c.create_collection("docs", schema=schema, index_params=index)
        coord_address = json.loads(cluster.meta.get("session/coord"))["address"]

        before = {r: Scrape(http[r]) for r in ("coord", "dn0")}
        vecs = np.random.default_rng(0).random((300, 4), dtype=np.float32)
        for lo in (0, 100, 200):
            c.insert("docs", [{"vec": v} for v in vecs[lo:lo + 100]])
        c.flush("docs")
        c.insert("docs", [{"vec": v} for v in vecs[:50]])
        c.flush("docs")
        after = {r: Scrape(http[r]) for r in ("coord", "dn0")}
        ids = _moved(before["coord"], after["coord"], "milvus_rootcoord_id_alloc_count", node_id=coord_address)
        # 350 auto ids, plus one segment id per persisted segment (two flushes, one partition each)
        assert ids == 350 + 2, after["coord"].text
        assert after["coord"].value("milvus_rootcoord_timestamp", node_id=coord_address) > \
            before["coord"].value("milvus_rootcoord_timestamp", node_id=coord_address)
        assert _moved(before["dn0"], after["dn0"], "milvus_datanode_flush_buffer_op_count",
                      node_id="dn0", status="success") == 2
        assert _moved(before["dn0"], after["dn0"], "milvus_datanode_save_latency_count", node_id="dn0") == 2
        assert after["dn0"].value("vecdb_node_info", role="datanode", node_id="dn0") == 1

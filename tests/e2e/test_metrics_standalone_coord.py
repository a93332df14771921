"""A standalone's /metrics fills the coord's allocation metrics as a cluster's coord does
(tests/e2e/test_metrics_coord_datanode.py): ``milvus_rootcoord_id_alloc_count`` moves by the auto ids
handed out, ``milvus_rootcoord_timestamp`` is the latest timestamp (hybrid, physical ms << 18) and grows
with the writes; both under node_id "standalone" (vecdb.metrics.watch_allocators)."""

from __future__ import annotations

import time

from pymilvus import DataType, MilvusClient

from tests.conftest import start_standalone
from tests.e2e.test_metrics import Scrape, _moved
from vecdb.timestamp import physical_ms


def test_a_standalone_counts_its_ids_and_shows_its_latest_timestamp(tmp_path):
    node = start_standalone(str(tmp_path), http=True)
    client = MilvusClient(f"http://127.0.0.1:{node.port}")
    try:
        schema = client.create_schema(auto_id=True)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        index = client.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        client.create_collection("docs", schema=schema, index_params=index)
        port = node.http_ports[0]
        before = Scrape(port)
        assert before.count("milvus_rootcoord_id_alloc_count", node_id="standalone") == 1, before.text
        for lo in range(0, 300, 100):
            client.insert("docs", [{"vec": [float(i), 0.0, 0.0, 1.0]} for i in range(lo, lo + 100)])
        client.insert("docs", [{"vec": [0.5, 0.5, 0.5, 0.5]} for _ in range(50)])
        after = Scrape(port)
        assert _moved(before, after, "milvus_rootcoord_id_alloc_count", node_id="standalone") == 350, after.text
        ts_before = before.value("milvus_rootcoord_timestamp", node_id="standalone")
        ts_after = after.value("milvus_rootcoord_timestamp", node_id="standalone")
        assert ts_after > ts_before > 0
        assert abs(physical_ms(int(ts_after)) - time.time() * 1000) < 60_000  # its physical part: now, in ms
    finally:
        client.close()
        node.stop()

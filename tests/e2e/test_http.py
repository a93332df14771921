"""/healthz and /metrics beside the gRPC port."""

from __future__ import annotations

import urllib.request

from pymilvus import MilvusClient

from tests.conftest import free_port


def test_healthz_and_metrics(tmp_path):
    from vecdb.config import Settings
    from vecdb.standalone import Standalone

    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    settings.proxy.port, settings.http.port = free_port(), free_port()
    node = Standalone(settings).start()
    try:
        base = f"http://127.0.0.1:{settings.http.port}"
        assert urllib.request.urlopen(f"{base}/healthz").read() == b"OK"
        client = MilvusClient(f"http://127.0.0.1:{node.port}")
        client.list_collections()
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        # Milvus's names, exactly (no prometheus-client "_total"), node_id "standalone"
        line = next(x for x in metrics.splitlines() if x.startswith(
            'milvus_proxy_req_count{function_name="ShowCollections",node_id="standalone",status="success"}'))
        assert float(line.split()[-1]) >= 1
        assert "# TYPE milvus_proxy_req_count counter" in metrics
        assert 'milvus_proxy_req_latency_bucket{function_name="ShowCollections",le="1.0",node_id="standalone"}' \
            in metrics
        client.close()
    finally:
        node.stop()

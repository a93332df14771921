"""/healthz and /metrics of the cluster roles: a query node and a proxy in this process (embedded
backends), a coord's health states, and ``vecdb querynode --http-port`` as a real process.
200 "OK" only while the role is ready; 503 with the reason while it is not (session lost, stopping)."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request

from tests.conftest import free_port, server_settings, spawn_vecdb, wait_until


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()




def test_querynode_healthz_turns_503_when_its_session_is_lost_and_when_stopping(tmp_path):
    from vecdb.querynode.process import QueryNodeProcess

    settings = server_settings(tmp_path, storage={"session_ttl": 1})
    settings.http.port = http = free_port()
    node = QueryNodeProcess(settings, node_id="qn-h")
    try:
        assert _get(http, "/healthz") == (200, "OK")
        status, metrics = _get(http, "/metrics")
        assert status == 200
        assert 'vecdb_node_info{node_id="qn-h",role="querynode"} 1.0' in metrics
        node.backends.meta.revoke_lease(node.session.lease)  # as if the store expired it
        wait_until(lambda: _get(http, "/healthz")[0] == 503, 10.0)
        status, body = _get(http, "/healthz")
        assert "session/querynode/qn-h lost" in body, body
    finally:
        node.stop()
    assert node.health() == (False, "stopping")


def test_proxy_metrics_show_its_requests(tmp_path, remote_storage):
    from pymilvus import MilvusClient

    from vecdb.coord.server import Coord
    from vecdb.proxy.process import ProxyProcess
    from vecdb.storage.backends import open_meta

    settings = server_settings(tmp_path, storage=remote_storage())
    meta = open_meta(settings.storage)
    coord = Coord(meta, session_ttl=2)
    settings.http.port = http = free_port()
    proxy = None
    try:
        proxy = ProxyProcess(settings, node_id="px-h")
        assert _get(http, "/healthz") == (200, "OK")
        client = MilvusClient(f"http://127.0.0.1:{proxy.port}")
        client.list_collections()
        client.close()
        status, metrics = _get(http, "/metrics")
        assert status == 200
        assert 'milvus_proxy_req_count{function_name="ShowCollections",node_id="px-h",status="success"} 1.0' \
            in metrics
        assert 'vecdb_node_info{node_id="px-h",role="proxy"} 1.0' in metrics
    finally:
        if proxy is not None:
            proxy.stop()
        coord.stop()
        meta.close()


def test_coord_health_says_active_or_standby():
    from vecdb.coord.server import Coord
    from vecdb.storage.memory import MemoryMetaStore

    meta = MemoryMetaStore()
    active, standby = Coord(meta, session_ttl=2), Coord(meta, session_ttl=2)
    try:
        assert active.health() == (True, "OK active")
        assert standby.health() == (True, "OK standby")
        active.stop()
        assert active.health() == (False, "stopping")
        assert standby.wait_active(10)
        assert standby.health() == (True, "OK active")
    finally:
        active.stop()
        standby.stop()


def test_querynode_process_serves_http_port(tmp_path):
    http = free_port()
    proc = spawn_vecdb({}, tmp_path, "querynode", "--port", "0", "--node-id", "qn-p", "--http-port", str(http))
    try:
        assert _get(http, "/healthz") == (200, "OK")
        metrics = _get(http, "/metrics")[1]
        assert 'vecdb_node_info{node_id="qn-p",role="querynode"} 1.0' in metrics
        # the node's own metrics carry the id it was started with (Milvus's name and labels)
        assert 'milvus_querynode_collection_num{node_id="qn-p"} 0.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)

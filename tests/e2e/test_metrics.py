"""/metrics, /healthz and GetMetrics of the cluster roles (coord, a query node and a proxy in this
process, each on its own HTTP port, on NATS, etcd and S3), after a known workload through pymilvus:

- the proxy's Milvus-named counters moved by exactly the calls made and the vectors written and
  searched (``milvus_proxy_req_count`` total / success / fail, ``milvus_proxy_req_latency``,
  ``milvus_proxy_insert_vectors_count``, ``milvus_proxy_search_vectors_count``, ...), each labelled
  with the proxy's node id;
- the query node's: one search request per search, the entities (live rows) and segments it holds per
  collection (growing, then sealed after a flush), its consumer lag 0 once a Strong read returned;
- one index build after the flush, the proxy's (no data node runs): its build counter and its finished
  build record name the proxy's node id, the query node builds none;
- ``GetMetrics`` (``system_info``) lists the coord, the query node and the proxy with their ids;
- ``/healthz`` of a query node and of a proxy turns 503 when their NATS server stops and 200 once it
  is back, then the same for their etcd server (private servers, so no other test sees them go).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.grpc_gen import milvus_pb2

from tests.conftest import free_port, server_settings, start_standalone, wait_until
from vecdb.coord import index_builds
from vecdb.discovery import node_number

DIM, BATCHES, BATCH, SEARCHES, NQ, QUERIES, DELETED = 8, 3, 400, 5, 2, 2, 10
ROWS = BATCHES * BATCH  # over MIN_ROWS_FOR_INDEX (1024): the sealed segment gets an index built
LIVE = ROWS - DELETED
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:  # not listening (yet)
        return 0, str(e)


class Scrape:
    """One /metrics page: ``value(name, **labels)`` sums the samples of ``name`` whose labels
    include ``labels``."""

    def __init__(self, port: int):
        status, text = _get(port, "/metrics")
        assert status == 200, text
        self.text = text
        self.samples: dict[str, list[tuple[dict, float]]] = defaultdict(list)
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            self.samples[m.group(1)].append((dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))

    def value(self, name: str, **labels) -> float:
        return sum(v for have, v in self.samples.get(name, []) if all(have.get(k) == str(x) for k, x in labels.items()))

    def count(self, name: str, **labels) -> int:
        """Number of samples of ``name`` matching ``labels``."""
        return sum(1 for have, _ in self.samples.get(name, []) if all(have.get(k) == str(x) for k, x in labels.items()))


def _moved(before: Scrape, after: Scrape, name: str, **labels) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


@pytest.fixture
def roles(tmp_path, remote_storage):
    """coord, query node "qn-<x>" and proxy "px-<x>" in this process; yields (coord, node, proxy)."""
    from vecdb.coord.server import Coord
    from vecdb.proxy.process import ProxyProcess
    from vecdb.querynode.process import QueryNodeProcess
    from vecdb.storage.backends import open_meta

    storage = dict(remote_storage(), session_ttl=6)  # (nothing here waits for an expiry: room for a loaded machine)
    tag = uuid.uuid4().hex[:6]
    meta = open_meta(server_settings(tmp_path / "coord", storage=storage).storage)
    coord = Coord(meta, session_ttl=6)
    node = proxy = None
    try:
        qs = server_settings(tmp_path / "qn", storage=storage)
        qs.http.port = free_port()
        node = QueryNodeProcess(qs, node_id=f"qn-{tag}")
        ps = server_settings(tmp_path / "px", storage=storage)
        ps.http.port = free_port()
        proxy = ProxyProcess(ps, node_id=f"px-{tag}")
        yield coord, node, proxy
    finally:
        for p in (proxy, node):
            if p is not None:
                p.stop()
        coord.stop()
        meta.close()


def test_counters_move_by_exactly_the_workload_and_get_metrics_lists_every_role(roles):
    coord, node, proxy = roles
    px, qn = proxy.node_id, node.node_id
    qn_http, px_http = node.http.server_address[1], proxy.http.server_address[1]
    client = MilvusClient(f"http://127.0.0.1:{proxy.port}")
    name = "m_" + uuid.uuid4().hex[:10]
    try:
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        index = client.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        client.create_collection(name, schema=schema, index_params=index, num_shards=1)  # loads it
        cid = client.describe_collection(name)["collection_id"]
        data = np.random.default_rng(7).random((ROWS, DIM), dtype=np.float32)

        p0, q0 = Scrape(px_http), Scrape(qn_http)
        for b in range(BATCHES):
            rows = range(b * BATCH, (b + 1) * BATCH)
            client.insert(name, [{"id": i, "vec": data[i]} for i in rows])
        for s in range(SEARCHES):
            hits = client.search(name, data[s * NQ:(s + 1) * NQ], limit=3, consistency_level="Strong")
            assert [h[0]["id"] for h in hits] == list(range(s * NQ, (s + 1) * NQ))
        client.delete(name, ids=list(range(ROWS - DELETED, ROWS)))
        for _ in range(QUERIES):
            assert client.query(name, "id >= 0", output_fields=["count(*)"],
                                consistency_level="Strong")[0]["count(*)"] == LIVE
        with pytest.raises(Exception, match="can.t find collection"):
            client.describe_collection("no_such_" + name)
        p1, q1 = Scrape(px_http), Scrape(qn_http)

        # the proxy: every call counted once under its function, labelled with the proxy's id
        for fn, calls in (("Insert", BATCHES), ("Search", SEARCHES), ("Query", QUERIES), ("Delete", 1)):
            assert _moved(p0, p1, "milvus_proxy_req_count", node_id=px, function_name=fn, status="total") == calls
            assert _moved(p0, p1, "milvus_proxy_req_count", node_id=px, function_name=fn, status="success") == calls
            assert _moved(p0, p1, "milvus_proxy_req_count", node_id=px, function_name=fn, status="fail") == 0
            assert _moved(p0, p1, "milvus_proxy_req_latency_count", node_id=px, function_name=fn) == calls
        assert _moved(p0, p1, "milvus_proxy_req_count", node_id=px, function_name="DescribeCollection",
                      status="fail") == 1
        assert _moved(p0, p1, "milvus_proxy_insert_vectors_count", node_id=px, db_name="default",
                      collection_name=name) == ROWS
        assert _moved(p0, p1, "milvus_proxy_delete_vectors_count", node_id=px, db_name="default",
                      collection_name=name) == DELETED
        assert _moved(p0, p1, "milvus_proxy_search_vectors_count", node_id=px, db_name="default",
                      collection_name=name) == SEARCHES * NQ
        assert _moved(p0, p1, "milvus_proxy_received_nq", node_id=px, query_type="search",
                      collection_name=name) == SEARCHES * NQ
        assert _moved(p0, p1, "milvus_proxy_received_nq", node_id=px, query_type="query",
                      collection_name=name) == QUERIES
        assert _moved(p0, p1, "milvus_proxy_sq_latency_count", node_id=px, query_type="search",
                      collection_name=name) == SEARCHES
        assert _moved(p0, p1, "milvus_proxy_mutation_latency_count", node_id=px, msg_type="insert",
                      collection_name=name) == BATCHES
        assert "# TYPE milvus_proxy_req_count counter" in p1.text  # Milvus's name, not "..._total"
        assert p1.count("milvus_proxy_req_count_total") == 0

        # the query node: one request per search (it owns the one channel), what it holds, no lag
        assert _moved(q0, q1, "milvus_querynode_sq_req_count", node_id=qn, query_type="search",
                      status="success") == SEARCHES
        assert _moved(q0, q1, "milvus_querynode_sq_req_latency_count", node_id=qn, query_type="search") == SEARCHES
        assert _moved(q0, q1, "milvus_querynode_sq_req_count", node_id=qn, query_type="count",
                      status="success") == QUERIES
        assert q1.value("milvus_querynode_entity_num", node_id=qn, collection_id=cid, collection_name=name,
                        segment_state="Growing") == LIVE  # deleted rows are no entities
        assert q1.value("milvus_querynode_entity_num", node_id=qn, collection_id=cid, segment_state="Sealed") == 0
        assert q1.value("milvus_querynode_segment_num", node_id=qn, collection_id=cid, segment_state="Growing") == 1
        assert q1.count("vecdb_querynode_consume_lag", node_id=qn, collection_id=cid) == 1
        assert q1.value("vecdb_querynode_consume_lag", node_id=qn, collection_id=cid) == 0
        assert q1.value("vecdb_querynode_applied_position", node_id=qn, collection_id=cid) >= BATCHES
        assert q1.value("milvus_querynode_collection_num", node_id=qn) >= 1

        # a flush: the rows become one sealed segment, whose index is built once: with no data node running,
        # by the proxy that persists (vecdb.datanode.remote.ClusterIndexer); a query node builds none in a
        # cluster (the roles share this process's registry: the count over every node id is the builds)
        client.flush(name)
        wait_until(lambda: Scrape(qn_http).value("milvus_querynode_entity_num", node_id=qn, collection_id=cid,
                                                 segment_state="Sealed") == LIVE, 20, "rows sealed on the node")
        wait_until(lambda: _moved(q0, Scrape(qn_http), "milvus_indexnode_index_task_count",
                                  status="success") == 1, 30, "one index built")
        q2 = Scrape(qn_http)
        assert _moved(q0, q2, "milvus_indexnode_index_task_count", node_id=qn) == 0
        # the build is the proxy's: its metrics and its finished record name the proxy's node id
        assert _moved(q0, q2, "milvus_indexnode_index_task_count", node_id=px, status="success") == 1
        records = [json.loads(v) for _, v in proxy.backends.meta.scan(index_builds.collection_prefix(cid))]
        assert [(r["state"], r["by"]) for r in records] == [("finished", px)], records
        assert q2.value("milvus_querynode_entity_num", node_id=qn, collection_id=cid, segment_state="Growing") == 0
        assert q2.value("milvus_querynode_segment_num", node_id=qn, collection_id=cid, segment_state="Sealed") == 1
        assert _moved(q0, q2, "milvus_indexnode_build_index_latency_count") == 1

        # GetMetrics through pymilvus's connection: every live role, with its role and ids
        stub = client._get_connection()._stub
        reply = stub.GetMetrics(milvus_pb2.GetMetricsRequest(request=json.dumps({"metric_type": "system_info"})),
                                timeout=10)
        assert reply.status.code == 0, reply.status.reason
        assert reply.component_name == f"proxy{node_number(px)}"
        nodes = {(n["infos"]["type"], n["infos"]["node_id"]): n for n in json.loads(reply.response)["nodes_info"]}
        assert ("proxy", px) in nodes and ("querynode", qn) in nodes and ("mixcoord", coord.address) in nodes, nodes
        assert nodes[("proxy", px)]["infos"]["id"] == node_number(px)
        assert nodes[("proxy", px)]["infos"]["name"] == f"proxy{node_number(px)}"
        assert nodes[("querynode", qn)]["identifier"] == node_number(qn)
        assert nodes[("proxy", px)]["infos"]["hardware_infos"]["cpu_core_count"] >= 1
        targets = {(e["target_type"], e["connected_identifier"]) for e in nodes[("proxy", px)]["connected"]}
        assert ("querynode", node_number(qn)) in targets
        assert ("mixcoord", nodes[("mixcoord", coord.address)]["identifier"]) in targets
        bad = stub.GetMetrics(milvus_pb2.GetMetricsRequest(request=json.dumps({"metric_type": "nonsense"})),
                              timeout=10)
        assert bad.status.code != 0 and "unsupported metric type" in bad.status.reason
    finally:
        if client.has_collection(name):
            client.drop_collection(name)
        client.close()


def test_get_metrics_on_a_standalone_lists_it_once_under_its_one_number(tmp_path):
    """A standalone answers ``system_info`` as Milvus's does: one node, "standalone1", with its pid and
    hardware, under the number GetComponentStates gives it too (1); its /metrics node_id stays
    "standalone" (the ``node_id`` field says so)."""
    node = start_standalone(str(tmp_path), http=True)
    client = MilvusClient(f"http://127.0.0.1:{node.port}")
    try:
        stub = client._get_connection()._stub
        reply = stub.GetMetrics(milvus_pb2.GetMetricsRequest(request=json.dumps({"metric_type": "system_info"})),
                                timeout=10)
        assert reply.status.code == 0, reply.status.reason
        assert reply.component_name == "standalone1"
        nodes = json.loads(reply.response)["nodes_info"]
        assert [(n["infos"]["type"], n["identifier"], n["infos"]["name"]) for n in nodes] == \
            [("standalone", 1, "standalone1")], nodes
        infos = nodes[0]["infos"]
        assert infos["pid"] > 0 and infos["hardware_infos"]["cpu_core_count"] >= 1, infos
        assert infos["node_id"] == "standalone" and infos["system_info"]["deploy_mode"] == "STANDALONE"
        states = stub.GetComponentStates(milvus_pb2.GetComponentStatesRequest(), timeout=10)
        assert states.state.nodeID == infos["id"] == 1
        status, text = _get(node.http_ports[0], "/metrics")
        assert status == 200 and 'node_id="standalone"' in text
    finally:
        client.close()
        node.stop()


def test_healthz_follows_the_nats_and_etcd_servers(tmp_path, s3_server):
    """A query node holding a channel and a proxy, on NATS and etcd servers of this test's own: each
    server stopped turns both /healthz to 503 with the reason, started again (same data, same port)
    back to 200; while NATS is down /metrics still answers at once (no lag is looked up)."""
    from vecdb.coord.server import Coord
    from vecdb.proxy.process import ProxyProcess
    from vecdb.querynode.process import QueryNodeProcess
    from vecdb.storage import servers
    from vecdb.storage.backends import open_meta

    nats = servers.start_nats(str(tmp_path / "nats"))
    etcd = servers.start_etcd(str(tmp_path / "etcd"))
    meta = coord = node = proxy = client = None
    try:
        storage = {"log": nats.url, "meta": "etcd://" + etcd.url.split("://", 1)[1], "objects": "s3://vecdb-e2e",
                   "namespace": "h" + uuid.uuid4().hex[:10], "s3_endpoint": s3_server.url,
                   "s3_access_key": "test", "s3_secret_key": "test", "session_ttl": 2}
        meta = open_meta(server_settings(tmp_path / "coord", storage=storage).storage)
        coord = Coord(meta, session_ttl=2)
        qs, ps = server_settings(tmp_path / "qn", storage=storage), server_settings(tmp_path / "px", storage=storage)
        qs.http.port, ps.http.port = free_port(), free_port()
        node = QueryNodeProcess(qs, node_id="qn-b" + uuid.uuid4().hex[:4])
        proxy = ProxyProcess(ps, node_id="px-b" + uuid.uuid4().hex[:4])
        ports = {"querynode": qs.http.port, "proxy": ps.http.port}
        client = MilvusClient(f"http://127.0.0.1:{proxy.port}")
        client.create_collection("h", dimension=DIM, num_shards=1)
        client.insert("h", [{"id": i, "vector": [float(i)] * DIM} for i in range(10)])
        assert client.query("h", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 10

        def all_healthy() -> bool:
            return all(_get(p, "/healthz") == (200, "OK") for p in ports.values())

        def lag_samples() -> int:
            return Scrape(ports["querynode"]).count("vecdb_querynode_consume_lag", node_id=node.node_id)

        assert all_healthy() and lag_samples() == 1

        nats.stop()
        took = wait_until(lambda: all(_get(p, "/healthz")[0] == 503 for p in ports.values()), 15,
                          "503 from both once NATS is gone")
        for role, port in ports.items():
            status, body = _get(port, "/healthz")
            assert status == 503 and "NATS" in body, (role, body)
        t0 = time.monotonic()
        assert lag_samples() == 0  # not looked up while the log is unreachable
        # a lookup would wait out the JetStream request timeout (10 s) per channel; the scrape itself took
        # up to 2.7 s on a loaded CI machine (the in-process roles' reconnect loops share the GIL)
        assert time.monotonic() - t0 < 6
        print(f"NATS stopped: /healthz 503 after {took:.2f} s")
        nats = servers.start_nats(str(tmp_path / "nats"), port=nats.ports[0], monitor_port=nats.ports[1])
        took = wait_until(all_healthy, 20, "200 from both once NATS is back")
        print(f"NATS back: /healthz 200 after {took:.2f} s")
        client.insert("h", [{"id": 10, "vector": [1.0] * DIM}])
        assert client.query("h", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 11
        assert lag_samples() == 1

        etcd.stop()
        took = wait_until(lambda: all(_get(p, "/healthz")[0] == 503 for p in ports.values()), 15,
                          "503 from both once etcd is gone")
        for role, port in ports.items():
            status, body = _get(port, "/healthz")
            assert status == 503 and "not renewed" in body, (role, body)
        print(f"etcd stopped: /healthz 503 after {took:.2f} s")
        etcd = servers.start_etcd(str(tmp_path / "etcd"), port=etcd.ports[0], peer_port=etcd.ports[1])
        took = wait_until(all_healthy, 20, "200 from both once etcd is back")
        print(f"etcd back: /healthz 200 after {took:.2f} s")
    finally:
        if client is not None:
            client.close()
        for p in (proxy, node, coord):
            if p is not None:
                p.stop()
        if meta is not None:
            meta.close()
        nats.stop()
        etcd.stop()

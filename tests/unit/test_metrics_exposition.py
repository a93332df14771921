"""vecdb.metrics and vecdb.logs on their own: what the ``rpc`` decorator counts and what it costs,
the exposition with Milvus's exact names, and the one-line log format with role, node id and a
level per role."""

from __future__ import annotations

import io
import logging
import time
import uuid
from types import SimpleNamespace

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb import errors, logs, metrics
from vecdb.config import LogSettings
from vecdb.proxy import status
from vecdb.proxy.base import rpc


def _sample(name: str, **labels) -> float:
    return metrics.MILVUS.get_sample_value(name, labels) or 0.0


class _Service:
    def __init__(self, node_id: int, component: str = "proxy"):
        self.r = SimpleNamespace(node_id=node_id, component=component, quota=None)

    def plain(self, request, context):
        return milvus_pb2.BoolResponse(status=status.success(), value=True)

    @rpc(milvus_pb2.BoolResponse)
    def HasCollection(self, request, context):  # noqa: N802 - a Milvus RPC's name
        return milvus_pb2.BoolResponse(status=status.success(), value=True)

    @rpc(milvus_pb2.BoolResponse)
    def HasPartition(self, request, context):  # noqa: N802
        if request.partition_name == "raise":
            raise errors.CollectionNotFound("can't find collection")
        # an error answered without raising counts as a failure too
        return milvus_pb2.BoolResponse(status=common_pb2.Status(code=100, reason="no"))


def test_each_call_counts_total_then_success_or_fail_under_the_node_id():
    number = 900_000 + uuid.uuid4().int % 1000
    metrics.name_node(number, "px-unit")
    svc = _Service(number)
    req = milvus_pb2.HasPartitionRequest(collection_name="c")
    for _ in range(3):
        assert svc.HasCollection(milvus_pb2.HasCollectionRequest(), None).value
    svc.HasPartition(milvus_pb2.HasPartitionRequest(partition_name="raise"), None)
    assert svc.HasPartition(req, None).status.code == 100
    count = "milvus_proxy_req_count_total"  # prometheus-client's sample name; /metrics shows Milvus's
    assert _sample(count, node_id="px-unit", function_name="HasCollection", status="total") == 3
    assert _sample(count, node_id="px-unit", function_name="HasCollection", status="success") == 3
    assert _sample(count, node_id="px-unit", function_name="HasPartition", status="total") == 2
    assert _sample(count, node_id="px-unit", function_name="HasPartition", status="fail") == 2
    assert _sample(count, node_id="px-unit", function_name="HasPartition", status="success") == 0
    assert _sample("milvus_proxy_req_latency_count", node_id="px-unit", function_name="HasCollection") == 3
    # standalone: its node is "standalone", whatever number it has
    _Service(1, "standalone").HasCollection(milvus_pb2.HasCollectionRequest(), None)
    assert _sample(count, node_id="standalone", function_name="HasCollection", status="success") >= 1


def test_the_decorator_costs_a_few_microseconds_per_call():
    """Measured on a tight loop: the decorated call minus the same call undecorated. A search costs
    hundreds of microseconds at least (a FLAT nq=1 search in standalone: ~0.3-1 ms), so this must stay
    in the low microseconds."""
    svc = _Service(12345)
    req = milvus_pb2.HasCollectionRequest(collection_name="x")
    n = 50_000

    def per_call(fn) -> float:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(n):
                fn(req, None)
            best = min(best, (time.perf_counter() - t) / n)
        return best

    plain, decorated = per_call(svc.plain), per_call(svc.HasCollection)
    overhead_us = (decorated - plain) * 1e6
    print(f"rpc decorator: {overhead_us:.2f} us per call (undecorated call {plain * 1e6:.2f} us)")
    assert overhead_us < 25, overhead_us


def test_exposition_uses_milvus_names_exactly():
    node = "n-" + uuid.uuid4().hex[:6]
    metrics.PROXY_REQ_COUNT.labels(node, 'Odd"Name\\', metrics.SUCCESS).inc(2)
    metrics.PROXY_REQ_LATENCY.labels(node, "Search").observe(3.0)
    text = metrics.exposition().decode()
    assert "# TYPE milvus_proxy_req_count counter\n" in text
    assert f'milvus_proxy_req_count{{function_name="Odd\\"Name\\\\",node_id="{node}",status="success"}} 2.0' in text
    assert "milvus_proxy_req_count_total" not in text and "_created" not in text.split("# HELP milvus_")[1]
    assert f'milvus_proxy_req_latency_bucket{{function_name="Search",le="2.0",node_id="{node}"}} 0.0' in text
    assert f'milvus_proxy_req_latency_bucket{{function_name="Search",le="4.0",node_id="{node}"}} 1.0' in text
    assert "# TYPE milvus_querynode_entity_num gauge\n" in text
    assert "process_cpu_seconds_total" in text or "python_info" in text  # prometheus-client's own still there


def test_log_lines_name_role_and_node_on_one_line():
    out = io.StringIO()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        logs.setup("querynode", "INFO", stream=out)
        logs.set_node("querynode", "qn-7")
        log = logging.getLogger("vecdb.test")
        log.debug("hidden")
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            log.exception("it failed")
        lines = out.getvalue().splitlines()
        assert len(lines) == 1, lines  # the traceback and the message's break stay on the line
        assert " ERROR [querynode qn-7] vecdb.test: it failed\\nTraceback" in lines[0]
        assert "ValueError: boom\\nsecond line" in lines[0]
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


def test_log_level_per_role():
    s = LogSettings(level="warning", querynode="debug")
    assert logs.level_for("querynode", None, s) == "DEBUG"
    assert logs.level_for("proxy", None, s) == "WARNING"
    assert logs.level_for("proxy", "error", s) == "ERROR"  # --log-level wins
    assert logs.level_for("coord", None, LogSettings()) == "INFO"
    from vecdb.config import load_settings

    env = load_settings(env={"VECDB_LOG__PROXY": "DEBUG", "VECDB_LOG__LEVEL": "ERROR"}).log
    assert logs.level_for("proxy", None, env) == "DEBUG" and logs.level_for("datanode", None, env) == "ERROR"

"""CheckHealth and GetComponentStates say whether reads can be served: a cluster proxy with no
query node serving is not healthy, and says why (on stand-in roles: the handlers' own logic)."""

from __future__ import annotations

from types import SimpleNamespace

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb.proxy.rpc_admin import AdminRpcs


def _proxy(nodes: list[tuple[int, str]]) -> AdminRpcs:
    roles = SimpleNamespace(component="proxy", node_id=42, quota=None, ddl=SimpleNamespace(), flush=SimpleNamespace(),
                            sealer=SimpleNamespace(), segment_moves=SimpleNamespace(),
                            datanode=SimpleNamespace(indexer=SimpleNamespace()),
                            querynode=SimpleNamespace(serving_nodes=lambda: nodes))
    return AdminRpcs(roles)


def test_a_proxy_without_query_nodes_is_unhealthy_and_says_why():
    rpcs = _proxy([])
    health = rpcs.CheckHealth(milvus_pb2.CheckHealthRequest(), None)
    assert (health.status.code, health.isHealthy) == (0, False)
    assert health.reasons == ["no query node is serving (none has a session)"]
    states = rpcs.GetComponentStates(milvus_pb2.GetComponentStatesRequest(), None)
    assert (states.state.role, states.state.nodeID, states.state.state_code) == ("proxy", 42, common_pb2.Abnormal)
    assert list(states.subcomponent_states) == []


def test_a_proxy_lists_the_query_nodes_it_reads_from():
    rpcs = _proxy([(7, "a:1"), (9, "b:2")])
    assert rpcs.CheckHealth(milvus_pb2.CheckHealthRequest(), None).isHealthy is True
    states = rpcs.GetComponentStates(milvus_pb2.GetComponentStatesRequest(), None)
    assert states.state.state_code == common_pb2.Healthy
    assert [(s.nodeID, s.role) for s in states.subcomponent_states] == [(7, "querynode"), (9, "querynode")]

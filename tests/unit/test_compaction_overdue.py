"""A ``client.compact`` request that no data node carries out (``vecdb.datanode.remote``): while none
lives, its channels fail ``compaction.timeout`` seconds after the request, read as failed plans and a
Completed state; while one lives they wait for it; a failed channel is not carried out later."""

from __future__ import annotations

import json

from tests.unit.test_compaction import CH, CID, Env
from vecdb.coord.datanode_assignment import DATANODE_SESSIONS
from vecdb.datanode import segment_listing
from vecdb.datanode.compactor import COMPLETED, request_compaction, request_key
from vecdb.datanode.remote import ClusterDataNode


def _request(env: Env, compaction_id: int, age: float) -> None:
    request_compaction(env.meta, compaction_id, env.info)
    key = request_key(CID, compaction_id)
    rec = json.loads(env.meta.get(key))
    rec["at"] -= age
    env.meta.put(key, json.dumps(rec).encode())


def test_channels_fail_after_the_timeout_only_while_no_data_node_lives():
    env = Env(timeout=30)
    cluster = ClusterDataNode(env.dn, env.meta)
    _request(env, 1, age=5)  # young: still executing
    _request(env, 2, age=60)  # overdue
    young, old = cluster.compaction(1), cluster.compaction(2)
    assert (segment_listing.executing(young), segment_listing.failed(young)) == (len(env.info.channels), 0)
    assert (segment_listing.executing(old), segment_listing.failed(old)) == (0, len(env.info.channels))
    # written back, as completed and failed (a node of the previous version reads it as done)
    assert json.loads(env.meta.get(request_key(CID, 2)))["channels"][CH] == {"state": COMPLETED, "plans": [],
                                                                           "failed": True}

    _request(env, 3, age=60)
    env.meta.put(f"{DATANODE_SESSIONS}dn0", b"{}")  # a data node lives: it will carry the request out
    assert segment_listing.executing(cluster.compaction(3)) == len(env.info.channels)
    n = len(env.info.channels)
    assert [segment_listing.executing(r) for r in cluster.compactions(CID)] == [n, 0, n]


def test_a_failed_channel_is_not_carried_out_later():
    env = Env(timeout=30)
    _request(env, 4, age=60)
    ClusterDataNode(env.dn, env.meta).compaction(4)
    env.dn.compactor.carry_out(CID, 4)
    assert json.loads(env.meta.get(request_key(CID, 4)))["channels"][CH] == {"state": COMPLETED, "plans": [],
                                                                           "failed": True}

"""Which nodes hold a loaded collection, as pymilvus asks it (``Collection.get_replicas``,
``utility.get_query_segment_info``): real node ids, the same in both answers. In a cluster the
coord places the replica on the query nodes (each shard led by one of them); standalone is node 1.
The placement itself is tested with separate processes in test_assignment.py."""

from __future__ import annotations

import time

import pytest
from pymilvus import Collection, MilvusException, utility

from tests.e2e._helpers import float_schema, make_collection, orm  # noqa: F401 - fixture

DIM = 4


def test_replicas_and_segment_nodes_name_the_nodes_that_serve(server, client, name, orm):  # noqa: F811
    make_collection(client, name, float_schema(DIM), num_shards=2)
    client.insert(name, [{"id": i, "vec": [float(i)] * DIM} for i in range(20)])
    client.flush(name)
    # a cluster's nodes apply the log asynchronously: a Strong read waits until they have it all
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 20
    replicas = Collection(name, using=orm).get_replicas()
    groups = replicas.groups
    assert len(groups) == 1  # replica_number 1
    g = groups[0]
    assert g.group_nodes and all(node > 0 for node in g.group_nodes)
    assert len(g.shards) == 2  # one shard replica per channel, led by a node of the replica
    assert all(s.shard_leader in g.group_nodes and list(s.shard_nodes) == [s.shard_leader] for s in g.shards)
    nodes = set(g.group_nodes)
    if not hasattr(server, "ports"):  # standalone
        assert nodes == {1} and g.id == 1
    deadline = time.monotonic() + 30
    while True:  # segment info is not a read with a consistency level: the nodes answer as they are
        segments = utility.get_query_segment_info(name, using=orm)
        if sum(s.num_rows for s in segments) == 20 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert segments and sum(s.num_rows for s in segments) == 20
    leaders = {s.shard_leader for s in g.shards}
    for s in segments:  # each segment is held by the node leading its shard, once per replica
        assert len(s.nodeIds) == 1 and s.nodeID == s.nodeIds[0] and s.nodeID in leaders

def test_replicas_of_an_unloaded_collection_are_refused(client, name, orm):  # noqa: F811
    make_collection(client, name, float_schema(DIM), load=False)
    with pytest.raises(MilvusException) as err:
        Collection(name, using=orm).get_replicas()
    assert err.value.code == 101

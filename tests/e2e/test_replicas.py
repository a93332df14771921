"""Which nodes hold a loaded collection, as pymilvus asks it (``Collection.get_replicas``,
``utility.get_query_segment_info``): real node ids, the same in both answers. Every query node
of a cluster holds a whole copy (a replica of its own, leading every shard); standalone is node 1."""

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
    assert len(groups) >= 1
    for g in groups:
        assert len(g.group_nodes) == 1
        node = g.group_nodes[0]
        assert node > 0 and g.id == node
        assert len(g.shards) == 2  # one shard replica per channel, led by that node
        assert all(s.shard_leader == node and list(s.shard_nodes) == [node] for s in g.shards)
    nodes = {g.group_nodes[0] for g in groups}
    if not hasattr(server, "ports"):  # standalone
        assert nodes == {1}
    deadline = time.monotonic() + 30
    while True:  # segment info is not a read with a consistency level: any node answers as it is
        segments = utility.get_query_segment_info(name, using=orm)
        if sum(s.num_rows for s in segments) == 20 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert segments and sum(s.num_rows for s in segments) == 20
    for s in segments:
        assert set(s.nodeIds) == nodes and s.nodeID in nodes


def test_replicas_of_an_unloaded_collection_are_refused(client, name, orm):  # noqa: F811
    make_collection(client, name, float_schema(DIM), load=False)
    with pytest.raises(MilvusException) as err:
        Collection(name, using=orm).get_replicas()
    assert err.value.code == 101

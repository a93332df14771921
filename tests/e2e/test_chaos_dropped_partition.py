"""Found by the chaos hunt (seed 21, 2 shards, 2 replicas, kill -9 of one process at a time): a row of a
dropped partition answered again by Strong queries and iterators 14 s after the drop, on one replica only,
from the moment a ``load_collection`` loaded the whole collection again until the next ``release_partitions``.

A query node that restarted loaded its channels with the partition still in the catalog it read; the
partition was released and dropped meanwhile, and the proxy's DropPartition RPC reached the node while it
was still loading (nothing registered yet: ``QueryNode.drop_partition`` did nothing) or did not reach it at
all (a node the proxy did not know yet, or one that did not answer). The node kept the partition's rows for
as long as it held the channel: hidden while the loaded partitions were a list (reads name them), answered
once the whole collection was loaded (reads name none). A node now drops the partitions the catalog no
longer has after each load and each refresh from the catalog (``vecdb/querynode/node.py``), which its
assignment follower runs whenever the collection's record changes.

On a standalone server's own backends, a second query node (as a cluster's), the interleaving forced.
"""

from __future__ import annotations

from tests.e2e._helpers import count, float_schema, make_collection
from vecdb.querynode.node import QueryNode

DIM = 4


def _with_partition(server, client):
    """Collection ``c`` (one shard): 10 rows in _default, in partition ``p`` 5 flushed and 5 growing;
    (info, p's id)."""
    make_collection(client, "c", float_schema(DIM), num_shards=1)
    client.create_partition("c", "p")
    client.load_partitions("c", ["p"])
    client.insert("c", [{"id": i, "vec": [float(i)] * DIM} for i in range(10)])
    client.insert("c", [{"id": 1000 + i, "vec": [1.0] * DIM} for i in range(5)], partition_name="p")
    client.flush("c")
    client.insert("c", [{"id": 2000 + i, "vec": [2.0] * DIM} for i in range(5)], partition_name="p")
    info = server.roles.catalog.get("default", "c")
    return info, info.partition("p").id


def _drop(client) -> None:
    client.release_partitions("c", ["p"])
    client.drop_partition("c", "p")


def _partitions(node: QueryNode, info) -> set[int]:
    return {s.partition_id for sh in node.collections[info.id].shards for s in sh.segments.values() if s.n}


def test_a_partition_dropped_while_a_node_loads_is_gone_from_it(own_standalone):
    server, client = own_standalone
    info, pid = _with_partition(server, client)
    node = QueryNode(server.wal, server.meta, server.objects, tail=True)
    load_shard = node._load_shard

    def load_while_the_partition_is_dropped(*args, **kwargs):
        shard = load_shard(*args, **kwargs)  # the partition's segment and records taken: it was live then
        _drop(client)
        node.drop_partition(info.id, pid)  # the proxy's RPC, while the node has not registered the channel yet
        return shard

    node._load_shard = load_while_the_partition_is_dropped  # type: ignore[method-assign]
    try:
        node.load(info)
        assert pid not in _partitions(node, info)
        assert node.num_rows(info) == 10
        # the whole collection loaded again: reads name no partition, and answer no row of the dropped one
        client.load_collection("c")
        assert count(client, "c") == 10
        assert node.count(info, 2**63, None, None) == 10
        # a record of the dropped partition applied after the load stays out too
        assert pid in node.collections[info.id].shards[0].dropped_partitions
    finally:
        node.close()


def test_a_node_the_drop_did_not_reach_drops_the_partition_when_it_follows_the_catalog(own_standalone):
    server, client = own_standalone
    info, pid = _with_partition(server, client)
    node = QueryNode(server.wal, server.meta, server.objects, tail=True)
    try:
        node.load(info)
        assert node.num_rows(info) == 20
        _drop(client)  # the server's proxy tells its own query node only, as a proxy that does not reach this one
        assert pid in _partitions(node, info)
        node.refresh_from_store(info.id)  # its assignment follower, on the collection record's change
        assert pid not in _partitions(node, info)
        assert node.count(info, 2**63, None, None) == 10
    finally:
        node.close()

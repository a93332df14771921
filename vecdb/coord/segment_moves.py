"""Manual segment moves (Milvus's ``LoadBalance``, pymilvus ``utility.load_balance``): which sealed
segments go from a query node to which other nodes of its replica.

``choose_moves`` checks a request as Milvus's query coord does and picks each segment's node; the
roles apply it: a cluster's coord pins the segments to their nodes (``Replica.pinned`` in
``vecdb.coord.assignment``, kept while the node stays in the replica and the segment exists, never
moved back by the automatic balance) and answers once the new nodes serve them; a standalone
server has one node, so every valid request moves nothing (``LocalSegmentMoves``).

Node numbers are what clients see (``vecdb.discovery.node_number``); segment ids are the data
nodes' (``GetQuerySegmentInfo``). Only sealed segments move: a channel's growing rows stay with
the node that leads it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.discovery import node_number
from vecdb.roles import QueryNodeRole
from vecdb.rpc.gen import coord_pb2 as pb

if TYPE_CHECKING:
    from vecdb.coord.assignment import AssignmentManager
    from vecdb.coord.client import CoordClient

MOVE_WAIT = 60.0  # seconds the coord waits for the new nodes to serve the segments (a load and its index)
REPLY_MARGIN = 5.0


def choose_moves(collection_id: int, replicas: Sequence[Sequence[int]], held: dict[int, dict[int, int]],
                 source: int, targets: Sequence[int], segment_ids: Sequence[int]) -> dict[int, int]:
    """Segment id -> the node it moves to. ``replicas``: each replica's nodes; ``held``: node ->
    segment id -> rows, the sealed segments each node serves in full. No ``targets``: every other
    node of the source's replica; no ``segment_ids``: every sealed segment the source serves. Each
    segment goes to the target serving the fewest sealed rows then (the biggest segment first).
    Raises NodeNotFound (a source in no replica, a target outside the source's) and
    SegmentNotFound (a segment the source does not serve), with Milvus's messages."""
    replica = next((r for r in replicas if source in r), None)
    if replica is None:
        raise errors.NodeNotFound(f"source node not found in any replica of collection {collection_id}: "
                                  f"node not found[node={source}]")
    for node in targets:
        if node not in replica:
            raise errors.NodeNotFound(f"destination node not found in the same replica: node not found[node={node}]")
    mine = held.get(source, {})
    for segment_id in segment_ids:
        if segment_id not in mine:
            raise errors.SegmentNotFound(f"segment {segment_id} not found in source node {source}")
    to = [n for n in dict.fromkeys(targets or replica) if n != source]
    if not to:
        return {}
    load = {n: sum(held.get(n, {}).values()) for n in to}
    out: dict[int, int] = {}
    for segment_id in sorted(dict.fromkeys(segment_ids or mine), key=lambda s: (-mine[s], s)):
        node = min(to, key=lambda n: (load[n], n))
        out[segment_id] = node
        load[node] += mine[segment_id]
    return out


class LocalSegmentMoves:
    """``SegmentMover`` of a standalone server: its one node serves every segment, so a request is
    checked (Milvus's errors) and moves nothing, as Milvus's standalone answers."""

    def __init__(self, querynode: QueryNodeRole):
        self.querynode = querynode

    def move_segments(self, info: CollectionInfo, source: int, targets: Sequence[int],
                      segment_ids: Sequence[int]) -> None:
        replicas = [r["nodes"] for r in self.querynode.replicas(info.id)]
        sealed = {s["segment_id"]: s["num_rows"] for s in self.querynode.segment_infos(info) if s.get("segment_id")}
        held = {n: sealed for r in replicas for n in r}
        choose_moves(info.id, replicas, held, source, targets, segment_ids)


class CoordSegmentMoves:
    """The active coord's side: a request checked against what the query nodes report serving
    (``qnfull/``) and the persisted segments (``seg/``), the segments pinned through the
    assignment manager, then a wait until each target serves its segments and the source let them
    go (``vecdb.querynode.assigned``: after its release grace)."""

    def __init__(self, manager: AssignmentManager):
        self.manager = manager

    def move(self, collection_id: int, source: int, targets: Sequence[int], segment_ids: Sequence[int],
             wait: float = MOVE_WAIT) -> dict[int, int]:
        """Segment id -> the node number it moved to."""
        a = self.manager.assignment(collection_id)
        if a is None:
            raise errors.CollectionNotLoaded(f"collection not loaded[collection={collection_id}]")
        ids = {node_number(n): n for r in a.replicas for n in r.nodes}
        sealed = self.manager.sealed_segments(collection_id)
        reports = self.manager.full_reports()
        held: dict[int, dict[int, int]] = {}
        for number, node in ids.items():
            for prefixes in reports.get(node, {}).get(collection_id, {}).values():
                for p in prefixes:
                    if p in sealed:
                        held.setdefault(number, {})[int(sealed[p]["segment_id"])] = int(sealed[p]["num_rows"])
        moves = choose_moves(collection_id, [[node_number(n) for n in r.nodes] for r in a.replicas], held,
                             source, targets, segment_ids)
        if not moves:
            return {}
        by_id = {int(seg["segment_id"]): seg for seg in sealed.values()}
        replica = a.replica_of(ids[source])
        assert replica is not None  # choose_moves found the source in a replica
        pins: dict[str, dict[str, str]] = {}
        for segment_id, number in moves.items():
            seg = by_id[segment_id]
            pins.setdefault(seg["channel"], {})[seg["prefix"]] = ids[number]
        self.manager.pin(collection_id, replica.id, pins)
        deadline = time.monotonic() + wait
        while not self._moved(collection_id, ids[source], pins):
            if time.monotonic() > deadline:
                raise errors.ServiceUnavailable(
                    f"segments {sorted(moves)} of collection {collection_id} not moved within {wait:.0f} s: "
                    f"their new nodes do not serve them yet (they stay pinned there)")
            time.sleep(0.1)
        return moves

    def _moved(self, collection_id: int, source: str, pins: dict[str, dict[str, str]]) -> bool:
        reports = self.manager.full_reports()

        def serves(node: str, ch: str, prefix: str) -> bool:
            return prefix in reports.get(node, {}).get(collection_id, {}).get(ch, [])
        return all(serves(node, ch, p) and not serves(source, ch, p)
                   for ch, segs in pins.items() for p, node in segs.items())


class RemoteSegmentMoves:
    """``SegmentMover`` of a cluster proxy: the active coord's ``MoveSegments``."""

    def __init__(self, coord: CoordClient, wait: float = MOVE_WAIT):
        self._coord, self.wait = coord, wait

    def move_segments(self, info: CollectionInfo, source: int, targets: Sequence[int],
                      segment_ids: Sequence[int]) -> None:
        request = pb.MoveSegmentsRequest(collection_id=info.id, source=source, targets=list(targets),
                                         segment_ids=list(segment_ids), wait_seconds=self.wait)

        def attempt(client: Any, timeout: float) -> pb.MoveSegmentsReply:
            return client.invoke("MoveSegments", request, self.wait + REPLY_MARGIN)
        self._coord.retrying(attempt)

"""What ``client.list_segments`` and ``client.list_compaction_tasks`` read (pymilvus 3.0): a
collection's segments with a Milvus state each, and its compactions' plans, from the metadata the
data nodes keep, so that any proxy of a cluster answers as a standalone server does.

Segments (Milvus's ``GetPersistentSegmentInfo`` with its ``states`` filter):

- every ``seg/`` key is a **Flushed** segment: a persist writes a sealed segment's files and then
  registers it in one step, so vecdb has no Sealed or Flushing segment to show. Its level is L1, or
  L2 for what a clustering compaction wrote (``"cluster"`` in its value), as in Milvus; its
  ``compaction_from`` the ids of the segments it was compacted from (``from_ids``: segments a
  compaction wrote before those ids were recorded show none);
- a segment compacted away is **Dropped** while the ``compacted/`` record of its compaction lives
  (garbage collection deletes it with the sources' files, ``compaction.gc_grace`` seconds after the
  compaction): Milvus too keeps a dropped segment's metadata until its garbage collection. Records
  written before they named their sources' ids and rows (``sources``) show no dropped segment;
- rows not persisted yet are in the log, not in a segment: Growing lists nothing.

No ``states`` asked: Milvus's legacy filter, Sealed, Flushing and Flushed (the live segments).

Compactions (Milvus's ``GetCompactionStateWithPlans``): by id, one ``client.compact`` request; by
collection (``compactionID`` 0 and a collection name), every request record still kept
(``compaction.keep_requests``). A plan: its source segment ids, its target (one entry per new segment
of a clustering plan), partition, channel, kind (mix, or clustering) and the request's id as trigger.
A channel not done yet has no plans to show (vecdb plans a channel when it compacts it); it makes the
state Executing. A channel that no data node carried out within ``compaction.timeout`` while none lived
(``vecdb.datanode.remote``) is a failed plan, and done.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pymilvus.grpc_gen import common_pb2

from vecdb.storage.base import MetaStore

GROWING, SEALED, FLUSHED, FLUSHING, DROPPED = (common_pb2.Growing, common_pb2.Sealed, common_pb2.Flushed,
                                               common_pb2.Flushing, common_pb2.Dropped)
LEGACY_STATES = frozenset({SEALED, FLUSHING, FLUSHED})  # Milvus's proxy filter when none is asked
L1, L2 = common_pb2.L1, common_pb2.L2

# vecdb's plan kinds as Milvus's compaction types: merge and rewrite are both Milvus's mix compaction
# (a force merge is a mix compaction in Milvus too); an L0 compaction (client.compact(is_l0=True)) is
# Milvus's Level0Delete: vecdb's rewrites the segments its persisted deletes hit
MIX, CLUSTERING = common_pb2.CompactionTypeMix, common_pb2.CompactionTypeClustering
L0_DELETE = common_pb2.CompactionTypeLevel0Delete
TASK_COMPLETED = common_pb2.CompactionTaskStateCompleted


def live_segment(channel: str, seg: dict[str, Any]) -> dict[str, Any]:
    """A ``seg/`` value as a listed segment."""
    return {"segment_id": seg["segment_id"], "partition_id": seg["partition_id"], "num_rows": seg["num_rows"],
            "state": FLUSHED, "level": L2 if "cluster" in seg else L1, "channel": channel,
            "compaction_from": list(seg.get("from_ids") or ())}


def dropped_segments(records: Iterable[tuple[str, bytes]], live_ids: set[int]) -> list[dict[str, Any]]:
    """The sources named by ``compacted/<cid>/<channel>/<segment id>`` records, as Dropped segments
    (none that a ``seg/`` key still registers; each once)."""
    out: dict[int, dict[str, Any]] = {}
    for key, raw in records:
        try:
            channel = key.split("/")[2]
            rec = json.loads(raw)
            for src in rec.get("sources") or ():
                sid = int(src["segment_id"])
                if sid not in live_ids:
                    out.setdefault(sid, {"segment_id": sid, "partition_id": int(src["partition_id"]),
                                         "num_rows": int(src["num_rows"]), "state": DROPPED,
                                         "level": L2 if src.get("cluster") else L1, "channel": channel,
                                         "compaction_from": []})
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # a malformed record (the query nodes log it): nothing to list from it
    return list(out.values())


def list_segments(meta: MetaStore, collection_id: int, channels: Iterable[str],
                  states: Iterable[int] = ()) -> list[dict[str, Any]]:
    """The collection's segments in ``states`` (empty: ``LEGACY_STATES``), live ones first."""
    wanted = set(states) or LEGACY_STATES
    live = [live_segment(ch, json.loads(v)) for ch in channels for _, v in meta.scan(f"seg/{collection_id}/{ch}/")]
    out = [s for s in live if s["state"] in wanted]
    if DROPPED in wanted:
        out += dropped_segments(meta.scan(f"compacted/{collection_id}/"), {s["segment_id"] for s in live})
    return out


def request_plans(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The plans of a compaction request record (``vecdb.datanode.compactor.request_compaction``),
    its completed channels' (a record of an older version: sources and target only)."""
    options = record.get("options") or {}
    if options.get("target_mb"):  # a force merge takes precedence (it is a mix compaction in Milvus)
        kind = MIX
    elif options.get("l0"):
        kind = L0_DELETE
    else:
        kind = CLUSTERING if record.get("clustering") else MIX
    out = []
    for channel, entry in sorted(record["channels"].items()):
        if entry["state"] != "completed":
            continue
        for p in entry["plans"]:
            out.append({"sources": list(p["sources"]), "target": p["target"], "plan_id": p.get("plan", p["target"]),
                        "trigger_id": record["compaction_id"], "collection_id": record["collection_id"],
                        "partition_id": p.get("partition_id", 0), "channel": channel, "type": kind,
                        "state": TASK_COMPLETED})
    return out


def executing(record: dict[str, Any] | None) -> int:
    """How many of a request's channels are not done (each counts as one executing plan)."""
    if record is None:
        return 0
    return sum(1 for c in record["channels"].values() if c["state"] != "completed")


def failed(record: dict[str, Any] | None) -> int:
    """How many of a request's channels no data node carried out in time (each counts as one failed
    plan, as Milvus's data coordinator counts a plan whose data node went away)."""
    if record is None:
        return 0
    return sum(1 for c in record["channels"].values() if c.get("failed"))


def collection_requests(meta: MetaStore, collection_id: int) -> list[dict[str, Any]]:
    """The request records of a collection still kept, oldest first."""
    records = [json.loads(raw) for _, raw in meta.scan(f"compaction/{collection_id}/")]
    return sorted(records, key=lambda r: r["compaction_id"])

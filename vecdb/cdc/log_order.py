"""Source changes a CDC task applies at their place in the log order, not as catalog state.

The catalog pass (``vecdb.cdc.replicator``) makes the target match the source's catalog, and the
log's records are applied as they come; the two are not ordered with each other. That is enough for
most DDL, but not for three changes whose effect on rows depends on when each record was written:

- ``truncate_collection`` at ``T``: the source drops every row written at or before ``T`` and keeps
  the later ones. On the target: the collection is emptied, and the records of its channels after
  ``T`` are applied (again); records at or before ``T`` are never applied (a proxy that took its
  timestamp before ``T`` may append after the truncate: the source drops that record too).
- a partition dropped and created again under its name (a new partition id): the old one's rows are
  gone, the new one starts empty. On the target: the partition is dropped and created, and the
  records after the new partition's creation are applied (again).
- ``rename_collection``: the target collection is renamed (database included), not copied into a
  new one; names swapped between two passes go through a temporary name.

Why "again" works: a channel is in timestamp order (``vecdb.coord.flush``: every append expects
the channel's end), so the records after a timestamp are a suffix of the channel, and a suffix
applied a second time in order ends with each primary key at its last change, as applying it once
does. The task knows the change one catalog pass after it was made, so it may have applied some
records after ``T`` already: they are found by reading the timestamps in the log back from the
task's position (``first_after``: a few reads, a binary search) and the channel is rewound to the
first of them; the target's change, the new positions and the change's record in the task's store
(``truncated_ts`` and the partition ids in the collection's entry) are written before any record
is applied again, the last two in one step, so a crash in between makes the next run do it all
again, to the same end. A target without ``TruncateCollection`` (Milvus before 2.6) has the
collection dropped and created again instead. When the log no longer holds a record that would have to be applied again
(cut below the task's position), the collection is emptied and copied again through the source's
Milvus API (``vecdb.cdc.base_copy``) when the task has ``source.uri``; without it the task fails
with the re-sync recipe.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from vecdb.catalog_model import CollectionInfo
from vecdb.log_records import record_ts
from vecdb.storage.base import Log

log = logging.getLogger(__name__)


def first_after(wal: Log, channel: str, applied: int, ts: int, last_ts: int | None = None,
                floor: tuple[int, int] = (0, 0)) -> int | None:
    """The position of the first record after timestamp ``ts`` among the channel's records up to
    ``applied`` (``applied + 1`` when there is none: nothing to apply again); None when the log no
    longer holds a record that answer needs. ``last_ts``: a timestamp no record the task applied up to
    ``applied`` is after, when the caller knows one (its stamp: the log may be cut there); ``floor``:
    ``(position, stamp)``, no record the task applied up to that position is after that stamp (where it
    took the channel up: the records before it, maybe cut, were never applied)."""
    low = floor[0] if floor[1] <= ts else 0  # (no record up to it is to be applied again)
    if applied <= low:
        return applied + 1

    def ts_at(pos: int) -> int | None:
        return stamp_at(wal, channel, pos)

    top = last_ts if last_ts is not None else ts_at(applied)
    if top is None:  # cut there, no stamp: the record after it, if not after ts, says none before it is
        after = ts_at(applied + 1)
        return applied + 1 if after is not None and after <= ts else None
    if top <= ts:
        return applied + 1
    hi, step = applied, 1  # the record at hi is after ts; look back in growing steps for one that is not
    while True:
        lo = hi - step
        if lo <= low:
            lo = low  # (the floor, or 0: before the channel's first record)
            break
        t = ts_at(lo)
        if t is None:  # cut there: the channel's oldest record left decides
            lo = oldest(wal, channel, lo, hi)
            t = ts_at(lo)
            if t is None or t > ts:
                return None
        if t <= ts:
            break
        hi, step = lo, step * 2
    while hi - lo > 1:  # records in timestamp order: the first after ts lies in (lo, hi]
        mid = (lo + hi) // 2
        t = ts_at(mid)
        if t is None:
            return None
        lo, hi = (mid, hi) if t <= ts else (lo, mid)
    return hi


def stamp_at(wal: Log, channel: str, position: int) -> int | None:
    """The timestamp of the record at ``position``; None when the log does not hold it (or 0 is asked)."""
    for _, payload in wal.read(channel, position, position) if position > 0 else ():
        return record_ts(payload)
    return None


def oldest(wal: Log, channel: str, cut: int, held: int) -> int:
    """The oldest position the log holds in ``(cut, held]``, knowing ``cut`` is cut and ``held`` held
    (a log is cut from its beginning: what it holds is one run)."""
    while held - cut > 1:
        mid = (cut + held) // 2
        if any(True for _ in wal.read(channel, mid, mid)):
            held = mid
        else:
            cut = mid
    return held


def empty_collection(client, name: str) -> bool:
    """Every row of the target collection gone: ``truncate_collection``; on a target without it
    (Milvus before 2.6) the collection is dropped, and True returned: the caller creates it again
    (as the catalog pass does: schema, partitions, indexes, aliases, load state)."""
    try:
        client.truncate_collection(name)
        return False
    except grpc.RpcError as e:  # (pymilvus raises an unknown method's status as it is)
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
    drop_collection(client, name)
    return True


def drop_collection(client, name: str) -> None:
    """A target collection dropped, its aliases first (``drop_aliases``)."""
    drop_aliases(client, name)
    client.drop_collection(name)


def drop_aliases(client, name: str) -> None:
    """The aliases of a target collection dropped: a target may refuse to drop or rename a collection
    that has some (the catalog pass sets them again where they still belong)."""
    listed = client.list_aliases(name)
    for a in listed.get("aliases", []) if isinstance(listed, dict) else listed:
        client.drop_alias(a)


def recreate_partition(client, name: str, partition: str, loaded: bool) -> None:
    """The target partition dropped (released first) and created again empty; loaded when the
    source's is."""
    if partition in client.list_partitions(name):
        drop_partition(client, name, partition)
    client.create_partition(name, partition)
    if loaded:
        client.load_partitions(name, [partition])


def drop_partition(client, name: str, partition: str) -> None:
    """A target partition dropped (released first: a loaded partition cannot be dropped)."""
    client.release_partitions(name, [partition])
    client.drop_partition(name, partition)


def partition_ids(info: CollectionInfo) -> dict[str, int]:
    """The partitions a task tracks by id (none for a partition key: its partitions are the target's own)."""
    if info.schema.partition_key_field is not None:
        return {}
    return {p.name: p.id for p in info.partitions}


def changes(entry: dict[str, Any], info: CollectionInfo) -> tuple[int, list[str], int | None]:
    """What the source did since the task's entry recorded it: ``(truncated_ts, partitions created
    again under their names, the timestamp after which records are applied again or None)``."""
    since: int | None = None
    truncated = int(entry.get("truncated_ts", 0))
    if info.truncated_ts > truncated:
        truncated, since = info.truncated_ts, info.truncated_ts
    had = entry.get("partitions") or {}
    again = [p for p in info.partitions if p.name in had and int(had[p.name]) != p.id]
    if again and info.schema.partition_key_field is None:
        first = min(p.created_ts for p in again)
        since = first if since is None else min(since, first)
    else:
        again = []
    return truncated, [p.name for p in again], since

"""Row counts of collections and partitions from metadata (``GetCollectionStatistics``,
``GetPartitionStatistics``), loading nothing.

The rule is Milvus's: ``row_count`` is the number of rows the collection's (or partition's)
segments hold, as its data coordinator sums the segments' row counts from its metadata
(``meta.GetNumRowsOfCollection``, growing segments included). So a deleted row, or the old
version of an upserted one, is still counted until compaction rewrites its segment without it;
``count(*)`` is the exact live count. The same rule answers whether the collection is loaded or
not, through any proxy of a cluster.

Per shard channel, consistently at one checkpoint:

- persisted rows: the ``num_rows`` of the channel's segments (``seg/<collection>/<channel>/``,
  ``vecdb.storage.segments``), registered with the checkpoint in one transaction;
- rows not persisted yet: the insert records in the log after the checkpoint, counted from each
  record's header (``vecdb.log_records.inserted_rows``; no column is decoded). Each proxy keeps per
  channel the counts of the records it already read, so a call reads only the records appended
  since its last one and forgets those at or below the checkpoint. A seal record bounds how many
  records follow the checkpoint (flush and the proxies' seal policy).

A persist can move the checkpoint while the count is taken (and the log may then be cut below the
new one): the checkpoint is read before and after, and the count is taken again when it moved.
Rows of dropped partitions are not counted (their segments go with them; their records in the log
are left out by partition id).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.log_records import inserted_rows
from vecdb.storage import segments as sf
from vecdb.storage.base import Log, MetaStore

ATTEMPTS = 20  # counts taken again while persists keep moving the checkpoint


@dataclass
class _Tail:
    """Insert records of one channel after its checkpoint that this proxy already counted."""

    checkpoint: int = 0
    read_to: int = 0  # last position read
    records: list[tuple[int, int, int]] = field(default_factory=list)  # (position, partition, rows)


class RowStats:
    def __init__(self, meta: MetaStore, wal: Log):
        self.meta, self.log = meta, wal
        self._lock = threading.Lock()
        self._tails: dict[tuple[int, str], _Tail] = {}

    def row_count(self, info: CollectionInfo, partition_ids: Iterable[int] | None = None) -> int:
        """Rows of the collection's segments (of ``partition_ids`` only, if given): see the module."""
        live = {p.id for p in info.partitions}
        wanted = live if partition_ids is None else live & set(partition_ids)
        return sum(self._channel_rows(info.id, ch, wanted) for ch in info.channels)

    def _channel_rows(self, cid: int, channel: str, partitions: set[int]) -> int:
        for _ in range(ATTEMPTS):
            ckpt = sf.checkpoint(self.meta, cid, channel)
            persisted = sum(s["num_rows"] for s in sf.list_segments(self.meta, cid, channel)
                            if s["partition_id"] in partitions)
            if sf.checkpoint(self.meta, cid, channel) != ckpt:
                continue
            pending = self._pending(cid, channel, ckpt, partitions)
            if pending is not None and sf.checkpoint(self.meta, cid, channel) == ckpt:
                return persisted + pending
        raise errors.ServiceUnavailable(f"channel {channel}: the checkpoint kept moving while its rows were counted")

    def _pending(self, cid: int, channel: str, ckpt: int, partitions: set[int]) -> int | None:
        """Rows inserted into ``partitions`` after ``ckpt``; None if the log no longer holds them
        all (cut below a newer checkpoint meanwhile)."""
        with self._lock:
            tail = self._tails.get((cid, channel))
            if tail is None or ckpt < tail.checkpoint:
                tail = self._tails[(cid, channel)] = _Tail(ckpt, ckpt)
            elif ckpt > tail.checkpoint:
                tail.records = [r for r in tail.records if r[0] > ckpt]
                tail.checkpoint, tail.read_to = ckpt, max(tail.read_to, ckpt)
            end = self.log.last_position(channel)
            if end > tail.read_to:
                expect = tail.read_to + 1
                new = []
                for pos, payload in self.log.read(channel, expect, end):
                    if pos != expect:
                        return None  # cut under us: the caller reads the new checkpoint
                    expect += 1
                    ins = inserted_rows(payload)
                    if ins is not None:
                        new.append((pos, *ins))
                if expect != end + 1:
                    return None
                tail.records.extend(new)
                tail.read_to = end
            return sum(n for _, pid, n in tail.records if pid in partitions)

    def forget(self, collection_id: int) -> None:
        """Drop what is kept of a collection (dropped)."""
        with self._lock:
            for key in [k for k in self._tails if k[0] == collection_id]:
                del self._tails[key]

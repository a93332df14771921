"""One shard of a loaded collection on a query node: segments plus a primary-key index.

The shard applies log records in channel order. The primary-key index maps each
live primary key to a locator ``slot << 32 | offset``. Inserting a key that is
already live marks the old row deleted at the new row's timestamp, so a key has
at most one visible row at any snapshot (last write wins; upsert is the same).

Reads do not take the shard's lock, so a read must not see a record half applied, nor the deletes
of a record applied while it reads without that record's rows (an upsert's old row gone and its
new one not there yet: a count one short). Records sit in a channel in timestamp order (an append
takes a timestamp above the channel's last one; the records of one append share one), so the shard
publishes ``horizon``, the timestamp of the last record applied in full (with every record of its
append that came in the same poll), and a read looks at the shard as of ``min(its snapshot,
horizon)`` (``SegmentView.horizon``, taken before the segments): a record applied later is invisible
to it whole, its rows and its deletes alike. A Strong read waited for its positions first, so the
horizon already covers every write acknowledged before it began.

A channel whose sealed segments are spread over several nodes is read on each of them, and their
horizons differ (each applies the log at its own pace): an upsert applied on the node holding the old
row's segment and not yet on the leader holding the new row's growing segment showed neither row.
So a scoped read (``ReadScope``) with a position to wait for looks at its channel as of that position
(``cut_at``): the timestamp of the last append complete at or before it, the same on every node, since
each applies the same records; the proxy waits for one position per channel on all of them.

A compaction's new segment holds only the rows alive at its position: a row deleted (or upserted
over) before it is gone, though a read pinned at an older snapshot (a query iterator's pages, which
all read at its first page's timestamp; a Strong read whose timestamp was taken before the swap)
still sees it. ``replace_segments`` keeps the sources, with the newest delete timestamp among the
rows they lost (``Retired``), for ``RETIRED_KEEP_S`` seconds, and a read whose snapshot is below it
looks at the sources in place of the new segments (``snapshot(ts=)``): the rows of the sources and
of the new segments agree for every snapshot at or above that timestamp, and deletes applied after
the swap have larger timestamps than any such read's.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from vecdb import errors
from vecdb.column_defaults import current_columns
from vecdb.log_records import DeleteRecord, InsertRecord, Record, SealRecord
from vecdb.querynode.segment import Segment
from vecdb.schema import CollectionSchema
from vecdb.storage.segments import segment_prefix
from vecdb.timestamp import MAX_TIMESTAMP

_OFFSET_BITS = 32
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
OFFSET_BITS = _OFFSET_BITS  # a locator is ``slot << OFFSET_BITS | offset``
RETIRED_KEEP_S = 120.0  # how long a read pinned at a snapshot older than a compaction still sees its sources
GROUP_ENDS_KEPT = 4096  # appends whose end position a shard remembers for ``cut_at``


@dataclass
class SegmentView:
    """A segment and the row count a reader may look at (rows appended later are ignored); ``ttl``:
    its collection's TTL as a timestamp span (0: none), rows older than the snapshot by more are
    expired."""

    segment: Segment
    n: int
    ttl: int = 0
    horizon: int = MAX_TIMESTAMP  # changes with a later timestamp were applied after the view was taken


@dataclass(frozen=True)
class Retired:
    """Sealed segments a compaction replaced (``old``) by ``new``: a read whose snapshot is below
    ``dropped_ts`` (the newest delete timestamp among the rows ``new`` lacks) reads ``old`` instead."""

    old: tuple[Segment, ...]
    new: tuple[Segment, ...]
    dropped_ts: int
    until: float  # time.monotonic() after which it is forgotten


class Shard:
    def __init__(self, channel: str, schema: CollectionSchema):
        self.channel = channel
        self.schema = schema
        self.lock = threading.RLock()
        self._applied = threading.Condition(self.lock)  # notified when applied_position moves
        self.segments: dict[int, Segment] = {}
        self.growing: dict[int, Segment] = {}  # partition id -> growing segment
        # drop_partition: a record of one read from the log after the drop stays dropped (ids are never reused)
        self.dropped_partitions: set[int] = set()
        self.pk_index: dict = {}
        self.applied_position = 0
        self.applied_ts = 0
        self.horizon = 0  # what reads may see (module doc): published after each record, or group of records
        self.published_position = 0  # the last position ``horizon`` covers (what ``wait_applied`` waits for)
        self._next_slot = 0
        self.on_seal: Callable[[Shard, list[Segment]], None] | None = None  # for index building
        # The channel's leader serves its growing rows and every sealed segment it holds in full; a
        # node that serves only some sealed segments of the channel (``vecdb.coord.assignment``)
        # keeps the rest, and the rows still growing, as stubs (keys and timestamps).
        self.leader = True
        self.truncated_ts = 0  # truncate_collection: rows written at or before it are gone (``truncate``)
        self.retired: tuple[Retired, ...] = ()  # compactions' sources, for reads at older snapshots (module doc)
        # (position, applied_ts) at the last record of each recent append, in position order (``cut_at``);
        # replaced, never trimmed in place, so a lock-free reader's bisect sees a consistent list
        self._group_ends: list[tuple[int, int]] = []

    # --- writes -----------------------------------------------------------
    def apply(self, position: int, record: Record, publish: bool = True) -> None:
        """Apply the record at ``position``; ``publish=False``: reads do not see it yet (more records of
        its append follow: ``publish()`` after the last one)."""
        with self.lock:
            if position <= self.applied_position:
                if publish and self.published_position < self.applied_position:
                    self._publish()
                return  # already applied (replay overlap)
            if isinstance(record, InsertRecord):
                self._insert(record)
            elif isinstance(record, DeleteRecord):
                self._delete(record.pks, record.ts, record.partition_id)
            elif isinstance(record, SealRecord):
                self.seal_growing(lambda pid: segment_prefix(record.collection_id, self.channel, position, pid))
            self._applied_through(position, record)
            if publish:
                self._publish()

    def skip(self, position: int, record: Record) -> None:
        """Count the record at ``position`` applied without applying it (a dropped partition's rows)."""
        with self.lock:
            if position > self.applied_position:
                self._applied_through(position, record)

    def _applied_through(self, position: int, record: Record) -> None:
        self.applied_position = position
        self.applied_ts = max(self.applied_ts, record.ts)
        if not record.more:
            ends = self._group_ends
            ends.append((position, self.applied_ts))
            if len(ends) > 2 * GROUP_ENDS_KEPT:
                self._group_ends = ends[-GROUP_ENDS_KEPT:]

    def publish(self, ts: int = 0) -> None:
        """Let reads see every change applied so far (and at or below ``ts``: a shard just loaded, whose
        segments and deltas came from the files rather than from records)."""
        with self.lock:
            self._publish(max(ts, max((s.max_ts for s in self.segments.values()), default=0)))

    def _publish(self, ts: int = 0) -> None:
        self.horizon = max(self.horizon, self.applied_ts, ts)
        self.published_position = self.applied_position
        self._applied.notify_all()

    def cut_at(self, position: int) -> int | None:
        """The timestamp a read of this channel as of log ``position`` looks at: that of the last append
        whose records all sit at or before it (every node following the channel tells the same); None
        when this shard does not know (it loaded past that position, or it is older than what it keeps)."""
        ends = self._group_ends
        i = bisect.bisect_right(ends, (position, MAX_TIMESTAMP)) - 1
        return ends[i][1] if i >= 0 else None

    def wait_applied(self, position: int, timeout: float) -> bool:
        """Wait until the records up to ``position`` are applied and reads see them; False on timeout."""
        with self._applied:
            return self._applied.wait_for(lambda: self.published_position >= position, timeout)

    def _new_segment(self, partition_id: int) -> Segment:
        seg = Segment(self._next_slot, partition_id, self.schema, stub=not self.leader)
        self.segments[seg.slot] = seg
        self._next_slot += 1
        return seg

    def add_sealed(self, seg_factory) -> Segment:
        """Register a sealed segment built by ``seg_factory(slot)`` (restart / load)."""
        with self.lock:
            seg = seg_factory(self._next_slot)
            self._next_slot += 1
            self.segments[seg.slot] = seg
            return seg

    def reserve_slot(self) -> int:
        """A slot for a segment built outside the lock (``replace_segments``)."""
        with self.lock:
            self._next_slot += 1
            return self._next_slot - 1

    def replace_segments(self, old: list[Segment], new: Segment | list[Segment] | None, dropped_ts: int = 0) -> None:
        """Swap sealed segments for ``new`` (slots from ``reserve_slot``; several: a clustering
        compaction's), or for none: a compaction (``vecdb.querynode.compaction``). The dict is replaced
        whole, in one assignment: a reader's snapshot lists either the old segments or the new ones. The
        caller holds the lock and points the primary-key index at the new segments' live rows.
        ``dropped_ts``: the newest delete timestamp among the rows of ``old`` that ``new`` lacks (or that
        an earlier compaction, whose new segments are among ``old``, dropped); reads at older snapshots
        keep reading ``old`` for ``RETIRED_KEEP_S`` s (module doc)."""
        added = [] if new is None else new if isinstance(new, list) else [new]
        segments = dict(self.segments)
        for seg in old:
            del segments[seg.slot]
        for seg in added:
            segments[seg.slot] = seg
        now = time.monotonic()
        kept = tuple(r for r in self.retired if r.until > now)
        # a source an earlier compaction made, kept still, lacks the rows that one dropped: a read old
        # enough to undo it must undo this one first (``_as_of``), whatever this one dropped itself
        slots = {s.slot for s in old}
        dropped_ts = max([dropped_ts, *(r.dropped_ts for r in kept if any(n.slot in slots for n in r.new))])
        if dropped_ts and old and RETIRED_KEEP_S > 0:
            kept += (Retired(tuple(old), tuple(added), dropped_ts, now + RETIRED_KEEP_S),)
        self.retired = kept
        self.segments = segments

    def prune_retired(self, now: float | None = None) -> None:
        """Forget the compactions' sources kept past their time (at ``now``, a ``time.monotonic()``)."""
        with self.lock:
            now = time.monotonic() if now is None else now
            self.retired = tuple(r for r in self.retired if r.until > now)

    def swap(self, old: Segment, new: Segment) -> None:
        """Put ``new`` in ``old``'s slot (the same rows: a stub for a full segment or the other way);
        the caller holds the lock. The dict is replaced whole, as in ``replace_segments``."""
        assert new.slot == old.slot and self.segments.get(old.slot) is old
        self.segments = {**self.segments, old.slot: new}
        if self.growing.get(old.partition_id) is old:
            self.growing[old.partition_id] = new

    def follow_only(self) -> None:
        """This node no longer leads the channel: its growing rows become stubs (and later ones too)."""
        with self.lock:
            self.leader = False
            for seg in list(self.growing.values()):
                if not seg.stub:
                    self.swap(seg, seg.stubbed())

    def full_prefixes(self) -> list[str]:
        """The sealed segments held in full (what this node serves of the channel besides growing rows)."""
        return sorted(s.prefix for s in list(self.segments.values()) if s.sealed and not s.stub and s.prefix)

    def served_rows(self) -> int:
        """Live rows this node serves of the channel (its stubs' rows are served elsewhere)."""
        segs = list(self.segments.values())
        if not any(s.stub for s in segs):
            return len(self.pk_index)
        return sum(s.alive_count() for s in segs if not s.stub)

    def truncate(self, ts: int) -> None:
        """truncate_collection at ``ts``: segments whose rows are all that old go, rows that old in the
        others die at ``ts``, and records that old applied later are skipped (``_insert``)."""
        with self.lock:
            self.truncated_ts = max(self.truncated_ts, ts)
            keep = {slot: s for slot, s in self.segments.items() if s.max_ts > ts}
            for seg in keep.values():
                seg.mark_deleted(np.flatnonzero(seg.ts() <= np.uint64(ts)), ts)
            self.growing = {pid: s for pid, s in self.growing.items() if s.slot in keep}
            self.retired = ()  # a read at an older snapshot sees the truncation's survivors (no sources)
            self.segments = keep
            self.pk_index = {}
            self.rebuild_pk_index()
            self.horizon = max(self.horizon, ts)  # the rows it killed are gone for every read from now

    def _insert(self, rec: InsertRecord) -> None:
        if rec.ts <= self.truncated_ts or rec.partition_id in self.dropped_partitions:
            return  # written before a truncate_collection, or to a dropped partition, applied after it: gone
        pks = rec.columns[self.schema.primary_field.name]
        seg = self.growing.get(rec.partition_id)
        if seg is None:
            seg = self.growing[rec.partition_id] = self._new_segment(rec.partition_id)
        start = seg.append(current_columns(self.schema, rec.columns, rec.field_ids), rec.num_rows, rec.ts)
        offsets = np.arange(start, start + rec.num_rows, dtype=np.int64)
        # Duplicates inside the batch: the last occurrence wins.
        _, last_rev = np.unique(pks[::-1], return_index=True)
        keep = rec.num_rows - 1 - last_rev
        if len(keep) != rec.num_rows:
            dead = np.ones(rec.num_rows, bool)
            dead[keep] = False
            seg.mark_deleted(offsets[dead], rec.ts)
            pks, offsets = pks[keep], offsets[keep]
        keys = pks.tolist()
        self._mark_locators_deleted(list(map(self.pk_index.get, keys)), rec.ts)
        locators = ((seg.slot << _OFFSET_BITS) + offsets).tolist()
        self.pk_index.update(zip(keys, locators))

    def _delete(self, pks: np.ndarray, ts: int, partition_id: int = -1) -> int:
        keys = pks.tolist()
        found = [(k, loc) for k, loc in zip(keys, map(self.pk_index.get, keys)) if loc is not None]
        if partition_id != -1:
            found = [(k, loc) for k, loc in found if self.segments[loc >> _OFFSET_BITS].partition_id == partition_id]
        self._mark_locators_deleted([loc for _, loc in found], ts)
        for k, _ in found:
            del self.pk_index[k]
        return len(found)

    def _mark_locators_deleted(self, locators: list, ts: int) -> None:
        locs = np.fromiter((loc for loc in locators if loc is not None), dtype=np.int64)
        if not len(locs):
            return
        slots = locs >> _OFFSET_BITS
        offsets = locs & _OFFSET_MASK
        for slot in np.unique(slots).tolist():
            self.segments[slot].mark_deleted(offsets[slots == slot], ts)

    def seal_growing(self, prefix_of=None) -> list[Segment]:
        """Freeze the growing segments; ``prefix_of(partition_id)`` names their files (the data node
        writes them under the same prefix, derived from the seal record's position)."""
        with self.lock:
            sealed = [s for s in self.growing.values() if s.n]
            for seg in sealed:
                seg.seal()
                if prefix_of is not None:
                    seg.prefix = prefix_of(seg.partition_id)
            for seg in list(self.growing.values()):
                if not seg.n:
                    self.segments.pop(seg.slot, None)
            self.growing.clear()
        if sealed and self.on_seal is not None:
            self.on_seal(self, sealed)
        return sealed

    def drop_partition(self, partition_id: int) -> None:
        with self.lock:
            self.dropped_partitions.add(partition_id)
            dead = [s for s in self.segments.values() if s.partition_id == partition_id]
            for seg in dead:
                seg.mark_deleted(np.arange(seg.n), 0)
                self.segments.pop(seg.slot)
            self.growing.pop(partition_id, None)
            self.retired = tuple(r for r in self.retired if all(s.partition_id != partition_id for s in r.old))
            dead_slots = {s.slot for s in dead}
            self.pk_index = {k: v for k, v in self.pk_index.items() if (v >> _OFFSET_BITS) not in dead_slots}

    # --- restart ----------------------------------------------------------
    def rebuild_pk_index(self) -> None:
        """After loading sealed segments: resolve duplicate keys (newest ts wins) and index live rows."""
        with self.lock:
            segs = list(self.segments.values())
            if not segs:
                return
            pks = np.concatenate([s.pks() for s in segs])
            ts = np.concatenate([s.ts() for s in segs])
            alive = np.concatenate([s.del_ts() for s in segs]) == np.iinfo(np.uint64).max
            locs = np.concatenate([(s.slot << _OFFSET_BITS) + np.arange(s.n, dtype=np.int64) for s in segs])
            idx = np.flatnonzero(alive)
            pks, ts, locs = pks[idx], ts[idx], locs[idx]
            order = np.lexsort((ts, pks)) if pks.dtype != object else _lexsort_obj(pks, ts)
            pks, ts, locs = pks[order], ts[order], locs[order]
            last = np.ones(len(pks), bool)
            if len(pks) > 1:
                last[:-1] = pks[1:] != pks[:-1]
            stale = np.flatnonzero(~last)
            if len(stale):
                # each stale row dies at the timestamp of the next version of its key
                self._mark_by_locs(locs[stale], ts[stale + 1])
            self.pk_index = dict(zip(pks[last].tolist(), locs[last].tolist()))

    def apply_deltas(self, pks: np.ndarray, ts: np.ndarray, partition_ids: np.ndarray | None = None) -> None:
        """Apply persisted deletes: a delete hits the live version of its key if that is older (and in
        the delete's partition, when it names one: ``partition_ids`` -1 or None, any)."""
        pids = [-1] * len(pks) if partition_ids is None else partition_ids.tolist()
        with self.lock:
            for key, t, pid in zip(pks.tolist(), ts.tolist(), pids):
                loc = self.pk_index.get(key)
                if loc is None:
                    continue
                seg = self.segments[loc >> _OFFSET_BITS]
                if pid != -1 and seg.partition_id != pid:
                    continue
                off = loc & _OFFSET_MASK
                if int(seg.ts()[off]) < t:
                    seg.mark_deleted(np.array([off]), t)
                    del self.pk_index[key]

    def _mark_by_locs(self, locs: np.ndarray, ts: np.ndarray) -> None:
        slots = locs >> _OFFSET_BITS
        for slot in np.unique(slots).tolist():
            m = slots == slot
            self.segments[slot].mark_deleted(locs[m] & _OFFSET_MASK, ts[m])

    # --- reads ------------------------------------------------------------
    def snapshot(self, partition_ids: set[int] | None, scope: ReadScope | None = None,
                 ts: int | None = None) -> list[SegmentView]:
        """Lock-free: rows appended after the reader's timestamp are hidden by MVCC anyway, and
        ``segments`` is only ever replaced or grown by whole-item operations (list() copies it
        atomically under the GIL). Stubs are never read. ``scope``: the part of the channel a
        proxy reads here when the channel's sealed segments are spread over several nodes
        (``CollectionNotLoaded`` when this node does not hold that part: the proxy planned with an older
        picture and plans again). ``ts``: the read's snapshot timestamp, for a compaction's sources
        (module doc; a scoped read names the segments it reads and gets those)."""
        horizon = self.horizon  # before the segments: what is applied after it is not seen (module doc)
        if scope is not None and scope.position:
            cut = self.cut_at(scope.position)
            if cut is not None:
                horizon = min(horizon, cut)
        segs = list(self.segments.values())
        retired = self.retired  # after the segments: a swap sets it before them, so new segments come with theirs
        if retired and retired[0].until <= time.monotonic() and self.lock.acquire(blocking=False):
            try:  # their memory goes now, not at the next swap (a read never waits for the lock)
                self.prune_retired()
            finally:
                self.lock.release()
        held: list[Segment] = segs
        undone: tuple[Retired, ...] = ()
        if ts is not None and retired:
            segs, undone = _as_of(segs, retired, ts)
        segs = [s for s in segs if s.n]
        if scope is not None:
            segs = scope.select(self, segs, held, undone)
        return [SegmentView(s, s.n, horizon=horizon) for s in segs
                if not s.stub and (partition_ids is None or s.partition_id in partition_ids)]


def at_positions(scopes: Mapping[str, ReadScope] | None,
                 wait: Mapping[str, int] | None) -> dict[str, ReadScope] | None:
    """``scopes`` with the position each channel's read waited for (``wait``): each reads as of it."""
    if not scopes:
        return None
    wait = wait or {}
    return {ch: replace(s, position=wait.get(ch, 0)) for ch, s in scopes.items()}


@dataclass(frozen=True)
class ReadScope:
    """The part of a channel one node reads: ``rest=True`` (the channel's leader): everything it
    holds but the sealed segments named (served by other nodes); ``rest=False``: only the sealed
    segments named."""

    rest: bool
    prefixes: frozenset[str]
    position: int = 0  # the log position the read waited for on this channel (0: none): it reads as of it

    def select(self, shard: Shard, segs: list[Segment], held: list[Segment],
               undone: tuple[Retired, ...] = ()) -> list[Segment]:
        """``segs`` (of ``held``, the shard's segments) this node reads. The leader refuses a plan that
        names a sealed segment it does not hold at all, full or stub: one it compacted away (it reads
        the compacted segment, which holds that one's rows) or has not sealed yet (its rows are still
        growing here); another node holding it still would read those rows twice.

        ``undone``: the compactions a read at an older snapshot undoes (``_as_of``; ``segs`` has their
        sources in place of their new segments). The plan names today's segments, so a compaction's new
        segment named here stands for its sources, and each node reads the sources it holds in full,
        named or not: every sealed segment is held in full by one node of a replica, and a read at an
        older snapshot asks every node of the replica that follows the channel (the proxy's
        ``plans(every_node=True)``), those that hold nothing named today too."""
        sources = {o.slot for r in undone for o in r.old}
        if self.rest:
            if not shard.leader:
                raise errors.CollectionNotLoaded(f"channel {shard.channel} is not led by this query node")
            unknown = self.prefixes - {s.prefix for s in held if s.sealed}
            if unknown:
                raise errors.CollectionNotLoaded(f"channel {shard.channel}: segments {sorted(unknown)} are not "
                                                 f"segments of it here (compacted away or not sealed yet)")
            out = [s for s in segs if s.prefix not in self.prefixes or not s.sealed or s.slot in sources]
            stale = [s.prefix for s in out if s.stub and s.sealed and s.slot not in sources]
            if stale:
                raise errors.CollectionNotLoaded(f"channel {shard.channel}: segments {stale} are not served here "
                                                 f"any more; read them where they moved")
            return out
        out = [s for s in segs if s.sealed and not s.stub and (s.prefix in self.prefixes or s.slot in sources)]
        translated = {n.prefix for r in undone for n in r.new}
        missing = self.prefixes - {s.prefix for s in out} - translated
        if missing:
            raise errors.CollectionNotLoaded(f"channel {shard.channel}: segments {sorted(missing)} are not served "
                                             f"here")
        return out


def _as_of(segs: list[Segment], retired: tuple[Retired, ...], ts: int) -> tuple[list[Segment], tuple[Retired, ...]]:
    """``segs`` as a read at ``ts`` must see them: each compaction (newest first) that dropped rows a
    read at ``ts`` still sees, and whose new segments are all in ``segs``, undone; and those undone."""
    by_slot = {s.slot: s for s in segs}
    now = time.monotonic()
    undone = []
    for r in reversed(retired):
        if ts < r.dropped_ts and r.until > now and all(by_slot.get(n.slot) is n for n in r.new):
            for n in r.new:
                del by_slot[n.slot]
            by_slot.update((o.slot, o) for o in r.old)
            undone.append(r)
    return list(by_slot.values()), tuple(undone)


def _lexsort_obj(pks: np.ndarray, ts: np.ndarray) -> np.ndarray:
    order = sorted(range(len(pks)), key=lambda i: (pks[i], int(ts[i])))
    return np.asarray(order, dtype=np.int64)

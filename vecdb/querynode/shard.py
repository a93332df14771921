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
still sees it. ``replace_segments`` keeps those rows, the sources' rows the new segments lack
(``Retired.lost``: each source held in full with the rows the new segments took dead), with the newest
delete timestamp among them, for ``RETIRED_KEEP_S`` seconds, and a read whose snapshot is below it looks
at them besides the new segments (``snapshot(ts=)``): the new segments hold every other row a read at
any snapshot may see (a lost row's key has no version in them that such a read sees), and deletes
applied after the swap have larger timestamps than any such read's. The new segments are read as
usual: a source held here only as a stub (served by another node, which may let the channel go once
nothing is placed on it) loses only its lost rows, never a live one (reading the sources in place of
the new segments lost every row of such a source).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from vecdb import errors, str_keys
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
    ``dropped_ts`` (the newest delete timestamp among the rows ``new`` lacks) reads ``lost`` too: the
    sources held in full here with only those rows alive (the others dead at 0; ``_lost_rows``)."""

    old: tuple[Segment, ...]
    new: tuple[Segment, ...]
    dropped_ts: int
    until: float  # time.monotonic() after which it is forgotten
    lost: tuple[Segment, ...] = ()


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
        self.closed = False  # its node closed (``close``): nothing is applied any more, no read waits for it
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
        """Wait until the records up to ``position`` are applied and reads see them; False on timeout, and at
        once when the shard is closed (``close``)."""
        with self._applied:
            self._applied.wait_for(lambda: self.published_position >= position or self.closed, timeout)
            return self.published_position >= position

    def close(self) -> None:
        """Its node stops: the reads waiting for records to be applied stop waiting (the thread of a Strong
        read in flight would otherwise hold the process's exit for up to its timeout, 30 s, when the log is
        gone: a standalone primary killed under its workers' reads)."""
        with self._applied:
            self.closed = True
            self._applied.notify_all()

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

    def replace_segments(self, old: list[Segment], new: Segment | list[Segment] | None, dropped_ts: int = 0,
                         taken: np.ndarray | None = None) -> None:
        """Swap sealed segments for ``new`` (slots from ``reserve_slot``; several: a clustering
        compaction's), or for none: a compaction (``vecdb.querynode.compaction``). The dict is replaced
        whole, in one assignment: a reader's snapshot lists either the old segments or the new ones. The
        caller holds the lock and points the primary-key index at the new segments' live rows.
        ``dropped_ts``: the newest delete timestamp among the rows of ``old`` that ``new`` lacks; reads at
        older snapshots also read those rows for ``RETIRED_KEEP_S`` s (module doc): the rows not in ``taken``
        (indexes into the rows of ``old`` concatenated in order: those the new segments took; None: none)."""
        added = [] if new is None else new if isinstance(new, list) else [new]
        segments = dict(self.segments)
        for seg in old:
            del segments[seg.slot]
        for seg in added:
            seg.follow(self.schema)
            segments[seg.slot] = seg
        now = time.monotonic()
        # each compaction's lost rows stand alone: an earlier one's are in none of this one's sources
        kept = tuple(r for r in self.retired if r.until > now)
        if dropped_ts and old and RETIRED_KEEP_S > 0:
            kept += (Retired(tuple(old), tuple(added), dropped_ts, now + RETIRED_KEEP_S, _lost_rows(old, taken)),)
        self.retired = kept
        self.segments = segments

    def prune_retired(self, now: float | None = None) -> None:
        """Forget the compactions' sources kept past their time (at ``now``, a ``time.monotonic()``)."""
        with self.lock:
            now = time.monotonic() if now is None else now
            self.retired = tuple(r for r in self.retired if r.until > now)

    def keeps_lost_rows(self) -> bool:
        """Whether a compaction's lost rows are still kept for reads at older snapshots (``Retired.lost``,
        for ``RETIRED_KEEP_S``)."""
        now = time.monotonic()
        return any(r.lost and r.until > now for r in self.retired)

    def swap(self, old: Segment, new: Segment) -> None:
        """Put ``new`` in ``old``'s slot (the same rows: a stub for a full segment or the other way);
        the caller holds the lock. The dict is replaced whole, as in ``replace_segments``."""
        assert new.slot == old.slot and self.segments.get(old.slot) is old
        new.follow(self.schema)
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
        """Apply persisted deletes (after ``rebuild_pk_index``): a delete at ``t`` kills every version of its
        key written before ``t`` (in the delete's partition, when it names one: ``partition_ids`` -1 or None,
        any), at ``t`` unless it died earlier. Not the live version only: a version deleted and then written
        again, both persisted, died at the delete, not when written again (a read at a snapshot between the
        two, a query iterator's page after a reload, saw the deleted row)."""
        if not len(pks):
            return
        d_ts = np.asarray(ts, np.uint64)
        d_pid = np.full(len(d_ts), -1, np.int64) if partition_ids is None else np.asarray(partition_ids, np.int64)
        with self.lock:
            segs = [s for s in self.segments.values() if s.n]
            if not segs:
                return
            r_pk = np.concatenate([s.pks() for s in segs])
            r_ts = np.concatenate([s.ts() for s in segs]).astype(np.uint64)
            r_pid = np.concatenate([np.full(s.n, s.partition_id, np.int64) for s in segs])
            r_loc = np.concatenate([(s.slot << _OFFSET_BITS) + np.arange(s.n, dtype=np.int64) for s in segs])
            keys = np.concatenate([r_pk, np.asarray(pks, dtype=r_pk.dtype)])
            if keys.dtype == object:
                keys = str_keys.sortable(keys)
            codes = np.unique(keys, return_inverse=True)[1].reshape(-1)
            r_code, d_code = codes[:len(r_pk)], codes[len(r_pk):]
            killed = []
            for pid in np.unique(d_pid).tolist():
                rows = np.flatnonzero(r_pid == pid) if pid != -1 else np.arange(len(r_pk))
                dels = np.flatnonzero(d_pid == pid)
                hit, at = _first_delete_after(r_code[rows], r_ts[rows], d_code[dels], d_ts[dels])
                self._mark_by_locs(r_loc[rows[hit]], at)
                killed.append(rows[hit])
            rows = np.concatenate(killed)
            for key, loc in zip(r_pk[rows].tolist(), r_loc[rows].tolist()):
                if self.pk_index.get(key) == loc:  # the live version died
                    del self.pk_index[key]

    def _mark_by_locs(self, locs: np.ndarray, ts: np.ndarray) -> None:
        slots = locs >> _OFFSET_BITS
        for slot in np.unique(slots).tolist():
            m = slots == slot
            self.segments[slot].mark_deleted(locs[m] & _OFFSET_MASK, ts[m])

    # --- reads ------------------------------------------------------------
    def snapshot(self, partition_ids: set[int] | None, scope: ReadScope | None = None,
                 ts: int | None = None, whole: bool = False) -> list[SegmentView]:
        """Lock-free: rows appended after the reader's timestamp are hidden by MVCC anyway, and
        ``segments`` is only ever replaced or grown by whole-item operations (list() copies it
        atomically under the GIL). Stubs are never read. ``scope``: the part of the channel a
        proxy reads here when the channel's sealed segments are spread over several nodes
        (``CollectionNotLoaded`` when this node does not hold that part: the proxy planned with an older
        picture and plans again). ``ts``: the read's snapshot timestamp, for a compaction's sources
        (module doc; a scoped read names the segments it reads and gets those). ``whole``: a read of the
        whole channel (no ``scope``), which a sealed segment held only as a stub here would leave short of its
        rows (a hand-over to this node still loading it, which the proxy did not see): refused
        (``CollectionNotLoaded``: the proxy plans again, with the node that holds it in full, or waits)."""
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
        if whole and scope is None and self.leader and (stubs := [s.prefix for s in segs if s.stub and s.sealed]):
            raise errors.CollectionNotLoaded(f"channel {self.channel}: segments {stubs} are not held in full here "
                                             f"yet; read them where they are")
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

        ``undone``: the compactions whose lost rows a read at an older snapshot reads besides today's
        segments (``_as_of``; ``segs`` has them, ``Retired.lost``). Each node reads the lost rows it holds,
        named or not: a read at an older snapshot asks every node of the replica that follows the channel
        (the proxy's ``plans(every_node=True)``), those that hold nothing named today too."""
        sources = {o.slot for r in undone for o in r.lost}
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
        # a segment named must be held in full today: a compaction's lost rows of it (a copy with its prefix)
        # are not its rows (the proxy planned with this node's report from before the swap)
        missing = self.prefixes - {s.prefix for s in held if s.sealed and not s.stub}
        if missing:
            raise errors.CollectionNotLoaded(f"channel {shard.channel}: segments {sorted(missing)} are not served "
                                             f"here")
        return out


def _as_of(segs: list[Segment], retired: tuple[Retired, ...], ts: int) -> tuple[list[Segment], tuple[Retired, ...]]:
    """``segs`` as a read at ``ts`` must see them: with the lost rows (``Retired.lost``) of each compaction
    that dropped rows a read at ``ts`` still sees, and whose sources are gone from ``segs`` (a snapshot
    taken before the swap has the sources themselves); and those compactions."""
    slots = {s.slot for s in segs}
    now = time.monotonic()
    undone = tuple(r for r in retired if ts < r.dropped_ts and r.until > now and r.lost
                   and not any(o.slot in slots for o in r.old))
    return [*segs, *(o for r in undone for o in r.lost)], undone


def _lost_rows(old: list[Segment], taken: np.ndarray | None) -> tuple[Segment, ...]:
    """Each segment of ``old`` held in full, as a copy whose rows in ``taken`` (indexes into the rows of
    ``old`` concatenated) are dead at 0: the rows a compaction's new segments lack. The copy shares the
    columns, timestamps and indexes (a vector index's hits on dead rows are masked like any)."""
    out = []
    lo = 0
    taken = np.empty(0, np.int64) if taken is None else np.asarray(taken, np.int64)
    for seg in old:
        hi = lo + seg.n
        if not seg.stub:
            mine = taken[(taken >= lo) & (taken < hi)] - lo
            if len(mine) < seg.n:
                copy = Segment.__new__(Segment)
                copy.__dict__.update(seg.__dict__)
                copy._del_ts = seg.del_ts().copy()
                copy.mark_deleted(mine, 0)
                out.append(copy)
        lo = hi
    return tuple(out)


def _lexsort_obj(pks: np.ndarray, ts: np.ndarray) -> np.ndarray:
    order = sorted(range(len(pks)), key=lambda i: (pks[i], int(ts[i])))
    return np.asarray(order, dtype=np.int64)


def _first_delete_after(r_code: np.ndarray, r_ts: np.ndarray, d_code: np.ndarray,
                        d_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows (key codes ``r_code``, timestamps ``r_ts``) and deletes (``d_code``, ``d_ts``): the rows that a
    delete of their key with a larger timestamp hits, and the first such delete's timestamp for each. One
    sort of both: by key, timestamp, a delete before a row of the same timestamp (an upsert's delete and its
    new row share one), so each row's next delete in that order is the first one after it."""
    n_r = len(r_code)
    kind = np.concatenate([np.ones(n_r, np.int8), np.zeros(len(d_code), np.int8)])
    code = np.concatenate([r_code, d_code])
    order = np.lexsort((kind, np.concatenate([r_ts, d_ts]), code))
    total = len(order)
    is_del = order >= n_r
    pos = np.where(is_del, np.arange(total), total)
    nxt = np.minimum.accumulate(pos[::-1])[::-1]  # the nearest delete at or after each place
    at_row = np.flatnonzero(~is_del)
    j = nxt[at_row]
    has = j < total
    rows, dels = order[at_row[has]], order[j[has]] - n_r
    same = r_code[rows] == d_code[dels]
    return rows[same], d_ts[dels[same]]

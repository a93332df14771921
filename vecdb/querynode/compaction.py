"""A query node follows compaction: it swaps its in-memory segments for the compacted one.

A compaction (``vecdb.datanode.compactor``) of a channel commits, in one metadata transaction, a new
segment made of the rows of its source segments still alive at position ``P`` (the checkpoint it
read), and ``compacted/<cid>/<channel>/<new segment id>`` = ``{"from": [source prefixes], "to": new
prefix or null, "position": P, "at": ...}``. A query node that holds the channel and has applied it
up to ``P`` replaces the source segments it holds by the new one:

- it reads the new segment's columns (memory-mapped when the collection asks for mmap) and its index
  files, if any, as a load does, outside the shard lock;
- it finds each new row's source row by ``(pk, ts)`` (one sort over both, no per-row Python) and
  builds the segment, rows taking their source row's delete timestamp (a row deleted after ``P`` in
  memory stays deleted at the same timestamp), still outside the lock; under it, deletes that came
  meanwhile are carried over, the primary-key index points the keys of live rows at the new
  segment, and the shard's segment dict is replaced whole (``Shard.replace_segments``): a reader's
  snapshot holds either the sources or the new segment, never both and never neither. Readers that
  took their snapshot before keep the old segments until they finish; then nothing references them.

A clustering compaction's record names several new segments (``"to"`` and ``"more"``, in key order):
their rows are matched together against the sources and the sources swapped for them all at once.
``"to": null`` (no row survived) drops the sources, which must all be dead here. Where the channel's
sealed segments are spread over a replica's nodes (``vecdb.coord.assignment``), a node holds some
sources in full and the others as stubs, and its assignment follower promotes or demotes them as the
coord stops placing them, which is as soon as the compaction commits; a source held in full is not
demoted before its swap (``pending_sources``: the swap copies the rows the new segment lacks, for
reads at older snapshots), and the swap takes each source as its slot holds it then (the same rows,
in full or as a stub). A record whose
sources this node does not hold (it loaded the channel after the compaction, or the partition was
dropped) is ignored. Where a persist covered several seal records (flushes racing), this node
sealed several segments where the data node wrote one: the ones no seg/ key names join the sources
when they hold rows of the new segment. Records are applied in position order, so a chain of
compactions is followed link by link; a record whose new segment is gone already is skipped and
its sources stand for its prefix in later records. When the rows do not match (a row of the new
segment without a source, a live source row missing from it), or a record's sources are held only
in part (the record that made the others was refused, or collected before this node applied it),
the node keeps its own segments, which are still right, and says so in the log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vecdb import errors, str_keys
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import OFFSET_BITS, Shard
from vecdb.storage import segments as sf
from vecdb.storage.watch import PUT, PrefixWatch, WatchEvent
from vecdb.timestamp import MAX_TIMESTAMP

if TYPE_CHECKING:
    from vecdb.querynode.node import QueryNode

log = logging.getLogger(__name__)

COMPACTED_PREFIX = "compacted/"
# how often records waiting for their shard to apply their position are looked at again
WAIT_INTERVAL = 0.2
IDLE_INTERVAL = 5.0
# a record whose swap keeps failing (an unreadable file) is tried again later and later (up to 10 s
# apart), and given up after this many tries (about 2.5 minutes): the node keeps its sources
MAX_TRIES = 20


@dataclass(frozen=True)
class CompactionRecord:
    key: str
    channel: str
    sources: tuple[str, ...]
    target: str | None
    position: int
    more: tuple[str, ...] = ()  # a clustering compaction's other new segments

    @property
    def targets(self) -> tuple[str, ...]:
        return () if self.target is None else (self.target, *self.more)

    @property
    def collection_id(self) -> int:
        return int(self.key.split("/")[1])

    @property
    def segment_id(self) -> int | None:
        last = self.key.rsplit("/", 1)[1]
        return int(last) if last.isdigit() else None

    @classmethod
    def parse(cls, key: str, raw: bytes) -> CompactionRecord | None:
        """``compacted/<cid>/<channel>/<segment id>`` and its JSON; None (logged) when malformed."""
        try:
            parts = key.split("/")
            doc = json.loads(raw)
            int(parts[1])
            return cls(key, parts[2], tuple(doc["from"]), doc["to"], int(doc["position"]), tuple(doc.get("more") or ()))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            log.error("ignoring malformed compaction record %s: %s", key, e)
            return None


@dataclass
class _Built:
    """One new segment of a record, read, matched against the sources and built outside the shard lock,
    with the delete timestamps its rows had then (a delete meanwhile is applied under the lock)."""

    segment: Segment
    picked: np.ndarray  # the new rows that take their source row's delete timestamp
    take: np.ndarray  # their source rows (into the sources' rows, concatenated)
    live: np.ndarray  # the new rows alive when it was built
    keys: list  # their primary keys
    locators: list  # and locators


@dataclass
class _Prepared:
    sources: list[Segment]
    built: list[_Built]  # one per new segment of the record


def match_rows(sources: list[Segment], pks: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row ``(pks[i], ts[i])`` of a compacted segment, the index of the source row with the
    same primary key and timestamp among the sources' rows concatenated in order (the last such row
    when several share them: the one an insert batch's duplicates let win), or -1 when none. And
    which rows are superseded: rows after which another row of the new segment has the same
    ``(pk, ts)`` (the last one stands for the source row; the others are dead). One sort of both
    sets of keys; VARCHAR keys are sorted as fixed-width strings (numpy compares those in C)."""
    src_pk = np.concatenate([s.pks() for s in sources]) if sources else pks[:0]
    src_ts = np.concatenate([s.ts() for s in sources]) if sources else np.empty(0, np.uint64)
    n_src, n_new = len(src_pk), len(pks)
    all_pk = np.concatenate([src_pk, pks])
    if all_pk.dtype == object:
        all_pk = str_keys.sortable(all_pk)  # ("x" and "x\x00" stay two keys)
    all_ts = np.concatenate([src_ts.astype(np.uint64), np.asarray(ts, np.uint64)])
    # lexsort is stable: within one (pk, ts), the source rows in their order, then the new rows in theirs
    order = np.lexsort((all_ts, all_pk))
    total = len(order)
    if not n_new:
        return np.full(0, -1, np.int64), np.zeros(0, bool)
    p, t = all_pk[order], all_ts[order]
    is_new = order >= n_src
    idx = np.arange(total)
    starts = np.ones(total, bool)
    starts[1:] = (p[1:] != p[:-1]) | (t[1:] != t[:-1])
    del p, t
    group_start = np.maximum.accumulate(np.where(starts, idx, 0))
    last_src = np.maximum.accumulate(np.where(is_new, -1, idx))
    is_last = np.ones(total, bool)
    is_last[:-1] = starts[1:]
    new_at = np.flatnonzero(is_new)
    matched = last_src[new_at] >= group_start[new_at]
    src_index = np.full(n_new, -1, np.int64)
    superseded = np.zeros(n_new, bool)
    row = order[new_at] - n_src  # the new row of each sorted new element
    src_index[row[matched]] = order[last_src[new_at][matched]]
    superseded[row] = ~is_last[new_at]
    return src_index, superseded


class CompactionFollower:
    """Watches ``compacted/`` for a query node and applies the records to the shards it holds."""

    def __init__(self, node: QueryNode):
        self.node = node
        self._records: dict[str, CompactionRecord] = {}
        self._records_lock = threading.Lock()
        self._lock = threading.Lock()  # one pass at a time
        self._start_lock = threading.Lock()
        self._done: weakref.WeakKeyDictionary[Shard, set[str]] = weakref.WeakKeyDictionary()
        self._lost: dict[str, tuple[str, ...]] = {}  # new prefix gone before it was read -> its sources
        self._failures: dict[str, tuple[int, float]] = {}  # record key -> (failed tries, next try at)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._watch: PrefixWatch | None = None
        self._thread: threading.Thread | None = None
        self.swapped = 0  # records applied (a swap or a drop), for tests and logs

    # --- life ------------------------------------------------------------------------
    def start(self) -> None:
        """Start following (a node starts on its first load: one that loads nothing needs no thread).
        The watch is opened on the thread, again after a failure: a load never fails for it."""
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="compaction-swap", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        with self._start_lock:
            self._stop.set()
            self._wake.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        if self._watch is not None:
            self._watch.close()

    def _reset(self, pairs: list[tuple[str, bytes]]) -> None:
        records = {k: r for k, v in pairs if (r := CompactionRecord.parse(k, v)) is not None}
        with self._records_lock:
            self._records = records
        self._wake.set()

    def _events(self, events: list[WatchEvent]) -> None:
        with self._records_lock:
            for ev in events:
                if ev.kind == PUT:
                    assert ev.value is not None
                    rec = CompactionRecord.parse(ev.key, ev.value)
                    if rec is not None:
                        self._records[ev.key] = rec
                else:
                    self._records.pop(ev.key, None)
        self._wake.set()

    def _run(self) -> None:
        waiting = False
        while not self._stop.is_set():
            if self._watch is None:
                try:
                    self._watch = PrefixWatch(self.node.meta, COMPACTED_PREFIX, self._reset, self._events,
                                              name="compaction-watch")
                except Exception as e:  # noqa: BLE001 (the store is unreachable: try again)
                    log.warning("cannot watch %s: %s; trying again", COMPACTED_PREFIX, e)
                    self._stop.wait(1.0)
                    continue
            self._wake.wait(WAIT_INTERVAL if waiting else IDLE_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                waiting = self.process() > 0
            except Exception:  # noqa: BLE001 (keep following; the shard's own segments stay right)
                log.exception("applying compaction records failed")
                waiting = True
        if self._watch is not None:
            self._watch.close()

    # --- applying ----------------------------------------------------------------------
    def process(self) -> int:
        """Apply every record whose shard is held here and has applied its position; returns how many
        records still wait (for their position, or for the rest of their sources)."""
        with self._lock:
            for held in list(self.node._by_channel.values()):
                if held.retired and held.retired[0].until <= time.monotonic():
                    held.prune_retired()  # sources kept past RETIRED_KEEP_S go even while no read comes
            with self._records_lock:
                records = sorted(self._records.values(), key=lambda r: (r.position, r.segment_id or 0, r.key))
            waiting = 0
            for rec in records:
                shard = self.node._by_channel.get(rec.channel)
                if shard is None:
                    continue
                done = self._done.setdefault(shard, set())
                if rec.key in done:
                    continue
                if shard.applied_position < rec.position:
                    waiting += 1
                    continue
                tries, next_at = self._failures.get(rec.key, (0, 0.0))
                if time.monotonic() < next_at:
                    waiting += 1
                    continue
                try:
                    outcome = self._apply(shard, rec)
                except Exception:  # noqa: BLE001 (store trouble: tried again; the shard's segments stay right)
                    tries += 1
                    log.exception("compaction %s: swap failed (%d of %d tries)", rec.key, tries, MAX_TRIES)
                    self._failures[rec.key] = (tries, time.monotonic() + min(WAIT_INTERVAL * 2 ** tries, 10.0))
                    outcome = False if tries >= MAX_TRIES else None
                if outcome is None:
                    waiting += 1
                else:
                    done.add(rec.key)
                    self._failures.pop(rec.key, None)
            keys = {r.key for r in records}  # records collected since are forgotten
            for done in self._done.values():
                done &= keys
            self._failures = {k: v for k, v in self._failures.items() if k in keys}
            return waiting

    def pending_sources(self, channel: str) -> set[str]:
        """The source segments of ``channel``'s compactions not applied here yet: a node that holds one in full
        keeps it so until the swap, which copies the rows the new segment lacks for reads at older snapshots
        (``Shard.retired``); the coord stops placing sources as the compaction commits."""
        shard = self.node._by_channel.get(channel)
        if shard is None:
            return set()
        done = self._done.get(shard, set())
        with self._records_lock:
            recs = [r for r in self._records.values() if r.channel == channel and r.key not in done]
        return {p for r in recs for p in r.sources}

    def _sources(self, rec: CompactionRecord) -> list[str]:
        """The record's source prefixes, a lost new segment's own sources standing for its prefix."""
        out: list[str] = []
        todo = list(rec.sources)
        while todo:
            prefix = todo.pop(0)
            if prefix in self._lost:
                todo[:0] = self._lost[prefix]
            elif prefix not in out:  # the lost segments of one clustering compaction share their sources
                out.append(prefix)
        return out

    def _apply(self, shard: Shard, rec: CompactionRecord) -> bool | None:
        """True: swapped; False: nothing to do here (ignored, or refused and logged); None: try later."""
        by_prefix = {s.prefix: s for s in list(shard.segments.values()) if s.sealed and s.prefix is not None}
        prefixes = self._sources(rec)
        held = [by_prefix[p] for p in prefixes if p in by_prefix]
        if not held:
            return False  # loaded after the compaction (or the partition is gone): nothing to swap
        if len(held) < len(prefixes):
            missing = {p for p in prefixes if p not in by_prefix}
            done = self._done.get(shard, set())
            with self._records_lock:
                pending = any(missing.intersection(r.targets) and r.key not in done for r in self._records.values())
            if pending:
                return None  # a chain: the record that makes the other sources comes first
            # The record that made the other sources was refused here, or collected before this node
            # applied it (it lagged past the grace period). The node keeps its own segments, still right.
            log.warning("compaction %s: this node holds only %d of its %d sources; keeping its segments", rec.key,
                        len(held), len(prefixes))
            return False
        if rec.target is None:
            return self._drop(shard, rec, held)
        try:
            prepared = self._prepare(shard, rec, held)
        except errors.KeyNotFound as e:  # collected already: a later record names its sources
            log.warning("compacted segment %s is gone before this node read it (%s); keeping %s", rec.target,
                        e, rec.sources)
            for target in rec.targets:
                self._lost[target] = tuple(prefixes)
            return False
        if prepared is None:
            return False
        return self._swap(shard, rec, prepared)

    def _drop(self, shard: Shard, rec: CompactionRecord, held: list[Segment]) -> bool:
        with shard.lock:
            current = _now_held(shard, held)
            if current is None:
                log.info("compaction %s: its sources left this node meanwhile", rec.key)
                return False
            held = current
            alive = sum(s.alive_count() for s in held)
            if alive:
                log.error("compaction %s: no row of %s is alive at %d, but %d are here; keeping them", rec.key,
                          rec.sources, rec.position, alive)
                return False
            shard.replace_segments(held, None, _dropped_ts(np.concatenate([s.del_ts() for s in held]), []))
        self.swapped += 1
        self._evict_cached(rec, held)
        log.info("channel %s: dropped %d compacted-away segments (%s)", rec.channel, len(held), rec.key)
        return True

    def _prepare(self, shard: Shard, rec: CompactionRecord, held: list[Segment]) -> _Prepared | None:
        assert rec.target is not None
        coll = self.node.collections.get(rec.collection_id)
        if coll is None:
            return None
        info = coll.info
        mmap = self.node.mmap(info)
        # a node that does not lead the channel keeps the new segment as a stub: the leader serves it
        # until the coord places it (vecdb.coord.assignment)
        stub = not shard.leader
        reads = []
        for prefix in rec.targets:
            rows = len(sf.read_segment(self.node.objects, prefix, info.schema,
                                       skip=[f.name for f in info.schema.fields])[1])
            reads.append(self.node._read_sealed(info, prefix, rows, mmap, stub))
        pk_name = info.schema.primary_field.name
        if len(reads) == 1:
            pks, ts = reads[0][0][pk_name], reads[0][1]
        else:  # a clustering compaction's segments: matched against the sources together
            pks = np.concatenate([np.asarray(columns[pk_name]) for columns, _, _ in reads])
            ts = np.concatenate([np.asarray(t, np.uint64) for _, t, _ in reads])
        src_index, superseded = match_rows(held, pks, ts)
        unmatched = (src_index < 0) & ~superseded
        if unmatched.any():
            # A persist that covered several seal records (two flushes racing) wrote one segment where
            # this node sealed several: the others hold the rest of the rows, under prefixes no seg/ key
            # names. They join the sources when they hold some of the new segment's rows.
            extras = self._unregistered(shard, rec, held)
            if extras:
                src_index, superseded = match_rows(held + extras, pks, ts)
                bounds = np.cumsum([0] + [s.n for s in held + extras])
                hit = np.zeros(bounds[-1], bool)
                hit[src_index[src_index >= 0]] = True
                used = [s for i, s in enumerate(extras, len(held)) if hit[bounds[i]:bounds[i + 1]].any()]
                if used:
                    held = held + used
                    src_index, superseded = match_rows(held, pks, ts)
                    unmatched = (src_index < 0) & ~superseded
        if unmatched.any():
            log.error("compaction %s: %d rows of %s have no source row here; keeping %s", rec.key,
                      int(unmatched.sum()), rec.target, rec.sources)
            return None
        picked = np.flatnonzero(~superseded)
        take = src_index[picked]
        del_ts = np.asarray(ts, np.uint64).copy()  # a superseded row is dead from its start
        del_ts[picked] = np.concatenate([s.del_ts() for s in held])[take]
        built = []
        lo = 0
        for i, (prefix, (columns, seg_ts, indexes)) in enumerate(zip(rec.targets, reads)):
            hi = lo + len(seg_ts)
            seg = Segment.from_columns(shard.reserve_slot(), held[0].partition_id, shard.schema, columns, seg_ts,
                                       del_ts[lo:hi], stub=stub)
            seg.segment_id, seg.prefix = rec.segment_id if i == 0 else _compacted_id(prefix), prefix
            seg.indexes.update(indexes)
            mine = (picked >= lo) & (picked < hi)
            live = np.flatnonzero(seg.del_ts() == MAX_TIMESTAMP)
            built.append(_Built(seg, picked[mine] - lo, take[mine], live, *_index_entries(seg, live)))
            lo = hi
        return _Prepared(held, built)

    def _evict_cached(self, rec: CompactionRecord, gone: list[Segment]) -> None:
        """Drop the local cache copies of the swapped-out segments' files: nothing reads them again
        here, and the collector deletes the objects, not this node's copies."""
        coll = self.node.collections.get(rec.collection_id)
        if coll is not None:
            self.node.evict_cached(coll.info, gone)

    def _unregistered(self, shard: Shard, rec: CompactionRecord, held: list[Segment]) -> list[Segment]:
        """Sealed segments of the sources' partition, at or below their position, that no seg/ key and
        no known compaction record names: rows this node sealed apart that were persisted together."""
        cid = rec.collection_id
        registered = {json.loads(v)["prefix"] for _, v in self.node.meta.scan(f"seg/{cid}/{rec.channel}/")}
        with self._records_lock:
            named = {p for r in self._records.values() for p in (*r.sources, *r.targets)}
        top = max(_position(s.prefix) for s in held if s.prefix is not None)
        return [s for s in list(shard.segments.values())
                if s.sealed and s.prefix is not None and s not in held and s.partition_id == held[0].partition_id
                and s.prefix not in registered and s.prefix not in named and _position(s.prefix) <= top]

    def _swap(self, shard: Shard, rec: CompactionRecord, p: _Prepared) -> bool:
        with shard.lock:
            current = _now_held(shard, p.sources)
            if current is None:
                log.info("compaction %s: its sources left this node meanwhile", rec.key)
                return False
            p.sources = current  # a source promoted or demoted since it was read: the same rows
            src_del = np.concatenate([s.del_ts() for s in p.sources])
            for b in p.built:
                now = src_del[b.take]
                changed = np.flatnonzero(now != b.segment.del_ts()[b.picked])
                if len(changed):  # deleted since the segment was built
                    b.segment.mark_deleted(b.picked[changed], now[changed])
                    b.live = np.flatnonzero(b.segment.del_ts() == MAX_TIMESTAMP)
                    b.keys, b.locators = _index_entries(b.segment, b.live)
            src_live = int(np.count_nonzero(src_del == MAX_TIMESTAMP))
            live = sum(len(b.live) for b in p.built)
            if live != src_live:
                log.error("compaction %s: %d rows are alive in %s here, %d in %s; keeping them", rec.key, src_live,
                          rec.sources, live, rec.targets)
                return False
            taken = [b.take for b in p.built]
            shard.replace_segments(p.sources, [b.segment for b in p.built], _dropped_ts(src_del, taken),
                                   np.concatenate(taken))
            for b in p.built:
                shard.pk_index.update(zip(b.keys, b.locators))
        self.swapped += 1
        log.info("channel %s: %d segments swapped for compacted %s (%d rows, %d alive)", rec.channel,
                 len(p.sources), ", ".join(rec.targets), sum(b.segment.n for b in p.built), live)
        self._evict_cached(rec, p.sources)
        coll = self.node.collections.get(rec.collection_id)
        unindexed = [b.segment for b in p.built if not b.segment.indexes]
        if coll is not None and unindexed:
            self.node._schedule_index(coll.info, unindexed)
        return True


def _dropped_ts(src_del: np.ndarray, taken: list[np.ndarray]) -> int:
    """The newest delete timestamp among the source rows (delete timestamps ``src_del``) that no new
    segment took (``taken``: the source rows each one took): a read at an older snapshot still sees
    some of them, and reads the sources (``Shard.replace_segments``). 0 when none was dropped."""
    dropped = np.ones(len(src_del), bool)
    for take in taken:
        dropped[take] = False
    dead = src_del[dropped]
    dead = dead[dead != MAX_TIMESTAMP]
    return int(dead.max()) if len(dead) else 0


def _compacted_id(prefix: str) -> int | None:
    """The segment id in a compacted segment's prefix ``segments/<cid>/<channel>/<position>-<pid>-c<id>/``."""
    last = prefix.rstrip("/").rsplit("/", 1)[1].rsplit("-c", 1)
    return int(last[1]) if len(last) == 2 and last[1].isdigit() else None


def _position(prefix: str) -> int:
    """The log position in a segment prefix ``segments/<cid>/<channel>/<position>-<partition>[-c<id>]/``."""
    return int(prefix.rstrip("/").rsplit("/", 1)[1].split("-", 1)[0])


def _index_entries(seg: Segment, live: np.ndarray) -> tuple[list, list]:
    """The primary-key index entries of a segment's ``live`` rows: keys and locators."""
    return seg.pks()[live].tolist(), ((seg.slot << OFFSET_BITS) + live).tolist()


def _now_held(shard: Shard, segments: list[Segment]) -> list[Segment] | None:
    """Under the shard lock: ``segments`` as the shard holds them now, or None when one is gone (a release,
    a partition drop or another swap took it meanwhile). A segment promoted from a stub or demoted to one
    meanwhile (the node's assignment follower, ``Shard.swap``: the same slot, rows and delete timestamps)
    is still held: its slot holds the new object. A node whose channel is spread over a replica does that
    as soon as the coord stops placing the sources, which is when the compaction commits."""
    out = []
    for seg in segments:
        now = shard.segments.get(seg.slot)
        if now is None or now.prefix != seg.prefix or now.n != seg.n:
            return None
        out.append(now)
    return out


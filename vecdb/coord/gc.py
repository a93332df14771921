"""Garbage collection of the object store: the one place that deletes what no metadata needs.

``GarbageCollector`` runs a pass every ``interval`` seconds: in the active coord of a cluster
(started and ended with its term, its metadata writes fenced by the coord's session) and
in-process in a standalone server. Each pass lists the object store once (``list("")``: one
listing per pass, however many segments), then reads the metadata it judges by, and deletes:

- what ``gc/<cid>/<id>`` records name (``{"prefixes", "keys", "after"}``: a compaction's source
  segments and obsolete delta objects) once ``after`` (unix seconds) passed, then the record and
  every ``compacted/<cid>/<channel>/<segment id>`` record whose ``from`` names those prefixes;
- orphans, once found garbage in every pass for ``grace`` seconds (the clock starts over when a
  pass finds one needed again; it is kept in memory, so a new coord starts it over):
  - segment objects ``segments/<cid>/<ch>/<position>-<pid>[-c<id>]/`` whose prefix no ``seg/`` key
    registers and no ``gc/`` record names, at a position at or below the channel's checkpoint,
    without a ``gcintent/<prefix>`` of a live incarnation (a compaction writing it): what a crash
    between upload and commit leaves, or a persist that lost its compare-and-set;
  - delta objects ``deltas/<cid>/<ch>/<position>.vcol`` at or below the checkpoint that no
    ``delta/`` key registers and no ``gc/`` record names;
  - intents of dead incarnations (after the objects under their prefix);
  - a dropped collection's everything (its id has no ``coll/`` key): objects, and the metadata
    keys ``seg/``, ``delta/``, ``ckpt/``, ``idxbuild/``, ``gc/``, ``compacted/``, ``gcintent/``,
    ``compaction/`` under its id (what a drop interrupted by a crash leaves);
  - a dropped partition's segments (``seg/`` keys of a partition id the collection no longer has:
    the key first, then its objects);
  - index files ``index-<field>-<index>.bin`` and index build records of index ids the collection
    no longer has, and the build records of segments no ``seg/`` key registers any more;
  - ``snapshot_pin/`` records whose TTL passed (they pin nothing any more);
  - given the log (``wal``), in a pass over everything: the log channels of dropped collections (a
    drop deletes them after its catalog record: a proxy that died between the two left them).

Nothing a snapshot names is deleted (``vecdb.coord.snapshots.pinned_files``: the segment prefixes and
delta objects of live snapshots and unexpired pins, read after the ``gc/`` records): a compaction's
sources, a dropped partition's or collection's files stay while pinned, then go as orphans or with
their dropped collection.

Nothing a reader may still need is deleted: an object registered by a ``seg/`` or ``delta/`` key
of a live collection and partition is never an orphan, the grace (or a record's ``after``) lies
between something becoming garbage and its deletion, and the order of the reads makes a write that
races a pass look needed, never garbage. Objects are listed first, then the metadata is read:
checkpoints, intents, index build records, segments, deltas, records, catalog, sessions last. An
object in the listing was written before any of them was read, so a persist committed meanwhile
shows its segment registered or its position above the checkpoint read; a compaction shows its
intent or its registered segment (its commit puts one and deletes the other at once); a build
record is written after its segment was registered; a new collection, partition or index shows in
the catalog, read after everything it could have written; an intent's writer that lives shows in
the sessions read after it. Something it cannot read (a collection record, a seg key, an intent)
protects whatever it could concern.

Drops still delete their data at once (``DataNode.drop_collection``/``drop_partition``); the
collector is the safety net behind them, behind persists and behind compactions.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from functools import partial

from vecdb import metrics
from vecdb.catalog_model import channel_collection
from vecdb.coord import index_builds
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.coord.gc_changes import INTENT_PREFIX, GcChanges, collection_of
from vecdb.coord.session import live_incarnations
from vecdb.coord.snapshots import expired_pins, pinned_files
from vecdb.storage.base import Log, MetaStore, ObjectStore

log = logging.getLogger(__name__)

GC_PREFIX = "gc/"
COMPACTED_PREFIX = "compacted/"
SEGMENTS, DELTAS = "segments/", "deltas/"
# A pass over more changed collections than this reads everything instead: by collection it costs two
# listings and nine reads each, against one listing and a dozen scans.
SCOPED_MAX = 64

# what made objects garbage: the ``kind`` label of milvus_datacoord_gc_object_count
COMPACTED = "compacted"  # named by a gc/ record
ORPHAN_SEGMENT = "orphan_segment"
ORPHAN_DELTA = "orphan_delta"
DROPPED_COLLECTION = "dropped_collection"
DROPPED_PARTITION = "dropped_partition"
DROPPED_INDEX = "dropped_index"


class Fenced(Exception):
    """The coord's session changed: this collector may no longer write."""


def intent_key(prefix: str) -> str:
    """The key that marks ``prefix`` (a segment prefix) as being written (see the module doc)."""
    return INTENT_PREFIX + prefix


def _collection_of(candidate: tuple[str, str]) -> int | None:
    """The collection a candidate (``_candidates``' key) belongs to; None for a pin (of no one collection)."""
    kind, name = candidate
    if kind == "pin":
        return None
    return _int(name) if kind == "collection" else collection_of(name)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _position(segment_dir: str) -> int | None:
    """``<position:020d>-<pid>[-c<id>]`` -> position."""
    return _int(segment_dir.split("-", 1)[0])


def _index_id(file_name: str) -> int | None:
    """``index-<field>-<index>.bin`` -> index id; None for other files."""
    if not (file_name.startswith("index-") and file_name.endswith(".bin")):
        return None
    parts = file_name[:-4].split("-")
    return _int(parts[2]) if len(parts) == 3 else None


def _json(raw: bytes, key: str) -> dict | None:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("gc: ignoring malformed %s: %r", key, raw[:200])
        return None
    return value


class _Snapshot:
    """One pass's view: the object listing, then the metadata (read in the order the module doc
    gives), indexed for the checks. ``cids``: the collections the pass judges (None: all): only their
    objects and keys are listed and read (snapshots, pins and sessions are read whole either way)."""

    def __init__(self, meta: MetaStore, objects: ObjectStore, cids: set[int] | None = None, wal: Log | None = None):
        self.scope = cids
        # the log's channels (a pass over everything, given the log): listed before the catalog is read
        self.channels = wal.channels() if wal is not None and cids is None else []
        if cids is None:
            self.objects = objects.list("")
        else:
            self.objects = sorted(key for c in sorted(cids) for top in (SEGMENTS, DELTAS)
                                  for key in objects.list(f"{top}{c}/"))
        self.object_set = set(self.objects)

        def scan(prefix: str) -> list[tuple[str, bytes]]:
            """The keys under ``prefix`` of the collections judged (each under ``<prefix><cid>/``)."""
            if cids is None:
                return meta.scan(prefix)
            return [pair for c in sorted(cids) for pair in meta.scan(f"{prefix}{c}/")]

        self.ckpt: dict[tuple[int, str], int] = {}
        self.collection_ids: set[int] = set()  # ids any object or metadata key names
        for key, raw in scan("ckpt/"):
            _, cid_text, ch = (key.split("/", 2) + ["", ""])[:3]
            if (c := _int(cid_text)) is not None and (pos := _int(raw.decode(errors="replace"))) is not None:
                self.ckpt[(c, ch)] = pos
                self.collection_ids.add(c)
        self.intents: dict[str, tuple[str, str | None]] = {}  # segment prefix -> (intent key, incarnation)
        for key, raw in scan(INTENT_PREFIX + SEGMENTS) if cids is not None else meta.scan(INTENT_PREFIX):
            value = _json(raw, key)
            # one it cannot read protects its prefix (as a live writer's would)
            incarnation = (value or {}).get("incarnation")
            self.intents[key[len(INTENT_PREFIX):]] = (key, incarnation if isinstance(incarnation, str) else None)
        # before the segments: a build record is written after its segment was registered
        self.build_records = [key for key, _ in scan(index_builds.ROOT)]
        self.segs: dict[str, dict] = {}  # seg key -> segment info
        self.unreadable: set[tuple[str, str]] = set()  # (collection id, channel) with a seg key it cannot read
        seg_pairs = scan("seg/")
        for key, raw in seg_pairs:
            if (value := _json(raw, key)) is not None and isinstance(value.get("prefix"), str):
                self.segs[key] = value
            else:  # the prefix it registers is unknown: no orphan is judged in its channel
                parts = key.split("/") + ["", ""]
                self.unreadable.add((parts[1], parts[2]))
        self.registered = Counter(s.get("prefix") for s in self.segs.values())  # prefix -> seg keys naming it
        self.delta_keys = {key: raw.decode(errors="replace") for key, raw in scan("delta/")}
        self.registered_deltas = set(self.delta_keys.values())
        self.records: dict[str, dict] = {}  # gc/ key -> record
        for key, raw in scan(GC_PREFIX):
            if (value := _json(raw, key)) is not None:
                self.records[key] = value
        self.doomed_prefixes = {p for r in self.records.values() for p in r.get("prefixes") or ()}
        self.doomed_keys = {k for r in self.records.values() for k in r.get("keys") or ()}
        self.compacted: dict[str, set[str]] = {}  # compacted/ key -> its "from" prefixes
        for key, raw in scan(COMPACTED_PREFIX):
            value = _json(raw, key)
            self.compacted[key] = set((value or {}).get("from") or ())
        # the catalog: collection id -> (partition ids, index ids); None for a record it cannot read
        # (nothing of that collection is judged then)
        self.collections: dict[int, tuple[set[int], set[int]] | None] = {}
        catalog = meta.scan(COLL_PREFIX) if cids is None else [
            (key, record) for c in sorted(cids) if (record := meta.get(key := f"{COLL_PREFIX}{c}")) is not None]
        for key, raw in catalog:
            if (cid := _int(key[len(COLL_PREFIX):])) is None:
                continue
            info = _json(raw, key)
            try:
                self.collections[cid] = ({p["id"] for p in info["partitions"]},
                                         {i["index_id"] for i in info["indexes"]}) if info is not None else None
            except (KeyError, TypeError):
                log.warning("gc: %s is not a collection record I can read: its collection is left alone", key)
                self.collections[cid] = None
        # what snapshots name (vecdb.coord.snapshots): never deleted, whatever else says it is garbage
        self.pinned_prefixes, self.pinned_keys = pinned_files(meta)
        self.expired_pins = expired_pins(meta)
        self.live = live_incarnations(meta)
        listed = [k for k in self.objects if k.startswith((SEGMENTS, DELTAS))]
        for keys in (listed, [k for k, _ in seg_pairs], self.delta_keys, self.records, self.compacted,
                     self.build_records, self.intents):
            for key in keys:
                parts = key.split("/", 3)
                at = 2 if key.startswith(INTENT_PREFIX) else 1
                if len(parts) > at and (c := _int(parts[at])) is not None:
                    self.collection_ids.add(c)


class GarbageCollector:
    """Deletes garbage on a thread (``start``): every ``interval`` seconds a pass over the collections whose
    metadata changed (``vecdb.coord.gc_changes``), those with garbage waiting out its grace and those with a
    ``gc/`` record come due, skipped when there are none; every ``full_interval`` seconds a pass over
    everything. ``run_once``: one pass over everything."""

    def __init__(self, meta: MetaStore, objects: ObjectStore, interval: float = 10.0, grace: float = 60.0,
                 fence: dict[str, bytes] | None = None, node_id: str = metrics.STANDALONE,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 full_interval: float = 3600.0, wal: Log | None = None):
        """``fence``: keys that must hold these values for its metadata writes (a coord's session);
        ``wal``: the log, whose channels of dropped collections a pass over everything deletes;
        ``clock`` times the grace and the full passes, ``wall`` is compared with the records' ``after``
        and the pins' expiry (tests set both)."""
        self.meta, self.objects, self.wal = meta, objects, wal
        self.interval, self.grace, self.full_interval = float(interval), float(grace), float(full_interval)
        self.fence: dict[str, bytes | None] | None = dict(fence) if fence else None
        self.node_id = node_id
        self._clock, self._wall = clock, wall
        self._first_seen: dict[tuple[str, str], float] = {}  # candidate -> when a pass first found it garbage
        self._waiting: dict[int, float] = {}  # collection id -> the earliest "after" of its gc/ records not yet due
        self._full_at: float | None = None  # clock() of the last pass over everything
        self._pins_checked_ms = 0  # wall ms up to which the pins' expiry was looked at
        self.changes: GcChanges | None = None
        self.passes: Counter[str] = Counter()  # "full", "scoped", "skipped" (the idle-cost test counts them)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time

    def watch_changes(self) -> GarbageCollector:
        """Follow the metadata's changes (``run_due``'s scope): ``start`` does."""
        if self.changes is None:
            self.changes = GcChanges(self.meta)
        return self

    def start(self) -> GarbageCollector:
        self.watch_changes()
        self._thread = threading.Thread(target=self._run, name="gc", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        if self.changes is not None:
            self.changes.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_due()
            except Fenced as e:
                log.info("gc: %s", e)
            except Exception:  # noqa: BLE001 (the store failed...: the next pass tries again)
                log.exception("gc: a pass failed; the next one tries again")

    # --- a pass

    def run_due(self) -> Counter[str] | None:
        """The pass that is due (see the class doc): the objects deleted, by kind; None when none was due.
        Without ``watch_changes``, a pass over everything."""
        if self.changes is None:
            return self.run_once()
        now, wall_ms = self._clock(), int(self._wall() * 1000)
        cids = self.changes.take()
        if (cids is None or self._full_at is None or now - self._full_at >= self.full_interval
                or self.changes.pin_expired(self._pins_checked_ms, wall_ms)):
            scope = None
        else:
            wall = self._wall()
            scope = cids | {c for c, after in self._waiting.items() if after <= wall}
            scope |= {c for cand in list(self._first_seen) if (c := _collection_of(cand)) is not None}
            if not scope and not self._first_seen:
                self.passes["skipped"] += 1
                return None
            if len(scope) > SCOPED_MAX:  # a pass over everything reads less than this many by collection
                scope = None
        self._pins_checked_ms = wall_ms
        try:
            return self._pass(scope)
        except BaseException:
            self.changes.mark(scope)  # judged again by the next pass
            raise

    def run_once(self) -> Counter[str]:
        """One pass over everything; the number of objects deleted, by kind."""
        return self._pass(None)

    def _pass(self, scope: set[int] | None) -> Counter[str]:
        """One pass over the collections of ``scope`` (None: all of them)."""
        with self._lock:
            self._check_fence()
            if scope is None:
                self._full_at = self._clock()
            self.passes["full" if scope is None else "scoped"] += 1
            snap = _Snapshot(self.meta, self.objects, scope, self.wal)
            done: Counter[str] = Counter()
            self._records(snap, done)
            self._drop_channels(snap, done)
            candidates = self._candidates(snap)
            now = self._clock()
            # what this pass did not judge keeps its clock (a pass judges the pins whatever its scope)
            kept = {} if scope is None else {c: t for c, t in self._first_seen.items()
                                             if (cid := _collection_of(c)) is not None and cid not in scope}
            self._first_seen = {**kept, **{c: self._first_seen.get(c, now) for c in candidates}}
            for cand, act in candidates.items():
                if self._stop.is_set():
                    break
                if now - self._first_seen[cand] >= self.grace:
                    act(done)
                    self._first_seen.pop(cand, None)
            metrics.GC_RUN_COUNT.labels(self.node_id).inc()
            for kind, n in done.items():
                metrics.GC_OBJECT_COUNT.labels(self.node_id, kind).inc(n)
            if done:
                log.info("gc: deleted %s", ", ".join(f"{n} {kind}" for kind, n in sorted(done.items())))
            return done

    def pending(self) -> int:
        """How many things the last pass found garbage and kept for their grace."""
        return len(self._first_seen)

    def _check_fence(self) -> None:
        for key, value in (self.fence or {}).items():
            if self.meta.get(key) != value:
                raise Fenced(f"{key} changed: this coord is no longer active")

    def _meta_delete(self, deletes: Iterable[str] = (), prefixes: Iterable[str] = ()) -> None:
        deletes, prefixes = list(deletes), list(prefixes)
        if not deletes and not prefixes:
            return
        if not self.meta.txn(deletes=deletes, delete_prefixes=prefixes, expect=self.fence):
            raise Fenced("the coord's session changed: this coord is no longer active")

    def _under(self, snap: _Snapshot, prefix: str) -> list[str]:
        """The listed objects under ``prefix`` (the listing is sorted)."""
        lo = bisect.bisect_left(snap.objects, prefix)
        hi = lo
        while hi < len(snap.objects) and snap.objects[hi].startswith(prefix):
            hi += 1
        return snap.objects[lo:hi]

    def _delete_prefix(self, snap: _Snapshot, prefix: str) -> int:
        n = len(self._under(snap, prefix))
        if n:
            self.objects.delete_prefix(prefix)
        return n

    def _delete_unpinned(self, snap: _Snapshot, prefix: str) -> int:
        """The listed objects under ``prefix`` but those of pinned segments and deltas."""
        if not any(p.startswith(prefix) for p in snap.pinned_prefixes) and \
                not any(k.startswith(prefix) for k in snap.pinned_keys):
            return self._delete_prefix(snap, prefix)
        n = 0
        for obj in self._under(snap, prefix):
            if obj not in snap.pinned_keys and obj.rsplit("/", 1)[0] + "/" not in snap.pinned_prefixes:
                self.objects.delete(obj)
                n += 1
        return n

    def _records(self, snap: _Snapshot, done: Counter[str]) -> None:
        """``gc/`` records whose ``after`` passed: their objects, then the records (and the
        ``compacted/`` records of the same prefixes)."""
        wall = self._wall()
        waiting = {} if snap.scope is None else {c: t for c, t in self._waiting.items() if c not in snap.scope}
        for key, rec in snap.records.items():
            try:
                after = float(rec.get("after", 0))
            except (TypeError, ValueError):
                after = 0.0
            if after > wall:
                if (cid := _int(key.split("/")[1])) is not None:  # (gc/<cid>/<id>) judged again once due
                    waiting[cid] = min(after, waiting.get(cid, after))
                continue
            prefixes = set(rec.get("prefixes") or ())
            for prefix in sorted(prefixes - snap.pinned_prefixes):  # a pinned one: an orphan once unpinned
                if prefix in snap.registered or not prefix.startswith(SEGMENTS) or not prefix.endswith("/"):
                    log.warning("gc: %s names %s, which a segment still registers (or no segment prefix): kept",
                                key, prefix)
                    continue
                done[COMPACTED] += self._delete_prefix(snap, prefix)
            for obj in sorted(set(rec.get("keys") or ()) - snap.pinned_keys):
                if obj in snap.registered_deltas or not obj.startswith(DELTAS):
                    log.warning("gc: %s names %s, which a delta key still registers: kept", key, obj)
                    continue
                if obj in snap.object_set:
                    self.objects.delete(obj)
                    done[COMPACTED] += 1
            swapped = [k for k, sources in snap.compacted.items() if sources & prefixes]
            self._meta_delete([key, *swapped])
        self._waiting = waiting

    def _candidates(self, snap: _Snapshot) -> dict[tuple[str, str], Callable[[Counter[str]], None]]:
        """Everything this pass finds garbage (but records), each with what deletes it."""
        out: dict[tuple[str, str], Callable[[Counter[str]], None]] = {}
        dropped = {c for c in snap.collection_ids if c not in snap.collections}
        for cid in sorted(dropped):
            out[("collection", str(cid))] = partial(self._drop_collection, snap, cid)
        # dropped partitions: the seg key, then its objects
        judged = {cid: c for cid, c in snap.collections.items() if c is not None}
        for key, seg in snap.segs.items():
            seg_cid, pid = _int(key.split("/")[1]), seg.get("partition_id")
            if seg_cid in judged and isinstance(pid, int) and pid not in judged[seg_cid][0]:
                out[("seg", key)] = partial(self._drop_segment, snap, key, seg)
        # segment objects: orphans by prefix, index files of dropped indexes
        prefixes: dict[str, list[str]] = defaultdict(list)
        for obj in snap.objects:
            parts = obj.split("/")
            if obj.startswith(SEGMENTS) and len(parts) == 5:
                prefixes["/".join(parts[:4]) + "/"].append(parts[4])
            elif obj.startswith(DELTAS) and len(parts) == 4:
                delta_cid, pos = _int(parts[1]), _int(parts[3].split(".", 1)[0])
                if (delta_cid in judged and pos is not None and pos <= snap.ckpt.get((delta_cid, parts[2]), 0)
                        and obj not in snap.registered_deltas and obj not in snap.doomed_keys
                        and obj not in snap.pinned_keys):
                    out[("delta", obj)] = partial(self._delete_object, obj, ORPHAN_DELTA)
        for prefix, files in prefixes.items():
            _, c, ch, seg_dir, _ = prefix.split("/")
            prefix_cid = _int(c)
            if (prefix_cid is None or prefix_cid not in judged or prefix in snap.doomed_prefixes
                    or (c, ch) in snap.unreadable or prefix in snap.pinned_prefixes):
                continue
            if prefix in snap.registered:
                indexes = judged[prefix_cid][1]
                for f in files:
                    if (index_id := _index_id(f)) is not None and index_id not in indexes:
                        obj = prefix + f
                        out[("index", obj)] = partial(self._delete_object, obj, DROPPED_INDEX)
                continue
            pos = _position(seg_dir)
            if pos is None or pos > snap.ckpt.get((prefix_cid, ch), 0):
                continue  # a persist may be writing it
            intent = snap.intents.get(prefix)
            if intent is not None and (intent[1] is None or intent[1] in snap.live):
                continue  # a compaction is writing it
            out[("prefix", prefix)] = partial(self._drop_orphan, snap, prefix)
        # intents of dead writers without objects (or whose prefix was registered)
        for prefix, (key, incarnation) in snap.intents.items():
            intent_cid = _int(prefix.split("/")[1]) if prefix.count("/") >= 2 else None
            if (intent_cid in judged and incarnation is not None and incarnation not in snap.live
                    and ("prefix", prefix) not in out):
                out[("intent", key)] = partial(self._forget, [key], [])
        # index build records of dropped indexes
        stale = set()
        for key in snap.build_records:
            parts = key.split("/")
            build_cid, index_id = (_int(parts[1]), _int(parts[2])) if len(parts) > 3 else (None, None)
            if (build_cid is not None and index_id is not None and build_cid in judged
                    and index_id not in judged[build_cid][1]):
                stale.add(index_builds.index_prefix(build_cid, index_id))
        # build records of segments gone (compacted away, dropped): registered by no seg key, and
        # their objects named by no pending record
        for key in snap.build_records:
            parts = key.split("/")
            if len(parts) != 6 or (build_cid := _int(parts[1])) is None or build_cid not in judged:
                continue
            segment = f"{SEGMENTS}{build_cid}/{parts[3]}/{parts[4]}/"
            if segment not in snap.registered and segment not in snap.doomed_prefixes:
                stale.add(f"{index_builds.ROOT}{'/'.join(parts[1:5])}/")
        for prefix in sorted(stale):
            out[("idxbuild", prefix)] = partial(self._forget, [], [prefix])
        for key in snap.expired_pins:
            out[("pin", key)] = partial(self._forget, [key], [])
        return out

    def _forget(self, deletes: list[str], prefixes: list[str], done: Counter[str]) -> None:
        self._meta_delete(deletes, prefixes)

    def _drop_channels(self, snap: _Snapshot, done: Counter[str]) -> None:
        """The log channels of collections the catalog does not have (read after the channels were listed:
        a channel is made only while its collection is there, ids are never used again, and nothing makes
        a dropped collection's channel again): what a drop interrupted between its catalog record and its
        channels leaves, when no data node followed them to delete them after it."""
        wal = self.wal
        if wal is None:
            return
        for ch in snap.channels:
            cid = channel_collection(ch)
            if cid is None or cid in snap.collections:
                continue
            self._check_fence()
            wal.drop_channel(ch)
            done["log_channel"] += 1

    def _delete_object(self, obj: str, kind: str, done: Counter[str]) -> None:
        self.objects.delete(obj)
        done[kind] += 1

    def _drop_orphan(self, snap: _Snapshot, prefix: str, done: Counter[str]) -> None:
        done[ORPHAN_SEGMENT] += self._delete_prefix(snap, prefix)
        intent = snap.intents.get(prefix)
        if intent is not None:
            self._meta_delete([intent[0]])

    def _drop_segment(self, snap: _Snapshot, key: str, seg: dict, done: Counter[str]) -> None:
        self._meta_delete([key])
        prefix = seg.get("prefix")
        if (isinstance(prefix, str) and prefix.startswith(SEGMENTS) and snap.registered[prefix] == 1
                and prefix not in snap.pinned_prefixes):
            done[DROPPED_PARTITION] += self._delete_prefix(snap, prefix)

    def _drop_collection(self, snap: _Snapshot, cid: int, done: Counter[str]) -> None:
        """Objects first, then the metadata (a crash in between leaves keys that name the id: the
        next pass finds it again)."""
        n = self._delete_unpinned(snap, f"{SEGMENTS}{cid}/") + self._delete_unpinned(snap, f"{DELTAS}{cid}/")
        done[DROPPED_COLLECTION] += n
        self._meta_delete(prefixes=[f"seg/{cid}/", f"delta/{cid}/", f"ckpt/{cid}/", index_builds.collection_prefix(cid),
                                    f"{GC_PREFIX}{cid}/", f"{COMPACTED_PREFIX}{cid}/",
                                    f"{INTENT_PREFIX}{SEGMENTS}{cid}/", f"compaction/{cid}/"])

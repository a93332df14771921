"""Compaction of a channel's persisted segments, as Milvus's data coordinator does it.

Kinds of plan, made from the segment list and the rows' primary keys and timestamps:

- **merge**: the small segments of one partition (fewer live rows than ``small_rows``, a quarter of
  the seal size by default) become one, up to ``max_rows`` live rows;
- **rewrite**: a segment whose dead share passes ``dead_ratio`` (Milvus's 0.2) is written again
  without its dead rows (a manual compaction rewrites every segment with a dead row);
- **cluster** (``client.compact(is_clustering=True)`` on a collection with a clustering key): the
  segments of one partition become segments of at most ``clustering_rows`` live rows each, sorted by
  the clustering key and cut between key ranges (null keys last), so that each holds one range of
  it (``"cluster"`` in their ``seg/`` value: the key's min and max). The query nodes skip a segment
  whose range a filter excludes (``vecdb.expr.prune``). Such segments are never merged with others,
  only rewritten alone (Milvus's L2 segments, kept out of its mix compactions); a partition whose
  segments all come from one and have no dead row is left as it is;
- **force** (``client.compact(target_size=)``, ``client.optimize``: Milvus's force merge): a
  partition's segments become as few as may be of at most the target size each (``_force_plans``,
  ``_size_parts``: bytes as the seal policy counts them), like a clustering plan's several new
  segments but cut in row order.

A manual compaction's ``CompactionOptions`` choose among them (a force merge; an L0 compaction, which
rewrites alone each segment with a dead row; some segments, a partition, a channel only).

A row is dead when a persisted delete (a delta at or below the checkpoint) of its key has a larger
timestamp (a delete with a ``partition_name``: a row of that partition), or when a row of the same
key with a larger timestamp is in any persisted segment of the channel (upserts are plain inserts;
within one insert batch the last occurrence wins): what the query node resolves at load
(``Shard.rebuild_pk_index``, ``Shard.apply_deltas``); or, in a collection with a TTL
(``collection.ttl.seconds``), when it is older than the TTL (no read sees it any more; a TTL
collection's channels are checked again every ``TTL_CHECK_MS`` even unchanged). Live
rows keep their timestamps.

A compaction of one channel commits in ONE metadata transaction that expects the checkpoint and
every source ``seg/`` key unchanged (a persist or another process's compaction meanwhile: its
objects are deleted and it plans again): the new ``seg/`` keys (with ``from`` and ``deltas_upto``),
the sources' keys and the delta keys it made obsolete gone, a ``compacted/`` record per plan for the
query nodes to swap their segments, a ``gc/`` record naming the objects to delete after a grace,
and the ``gcintent/`` keys (put before the first object is written) gone. A crash before the commit
leaves only objects under a new prefix that no ``seg/`` key names, with an intent of a dead
incarnation: garbage collection removes them.

Triggers: after each persist and every ``interval`` seconds (a channel whose segment and delta
lists and index builds did not change since its last check is not read again: watches of those keys
tell a round which collections changed, ``vecdb.datanode.compaction_changes``, so an idle channel
costs no metadata read), and on demand. An automatic check leaves out the segments whose vector
index is still to be built (Milvus's ``indexBasedCompaction``, ``Compactor.waiting_for_index``); a
manual one takes them too. On demand: ``client.compact`` puts ``compaction/<collection id>/<compaction
id>`` with a state per channel (and its options, when any), which the data node owning the channel
carries out (any proxy answers ``get_compaction_state`` from it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from vecdb import errors
from vecdb.catalog_model import CollectionInfo, coll_key, read_collection
from vecdb.config import CompactionSettings
from vecdb.coord import index_builds, session
from vecdb.datanode.compaction_changes import ChangedCollections
from vecdb.datanode.indexer import file_built_fields
from vecdb.datanode.seal import fixed_fields, fixed_row_bytes, variable_row_bytes
from vecdb.schema import CollectionSchema, FieldSchema, valid_key
from vecdb.storage import segments as sf
from vecdb.storage.base import MetaStore
from vecdb.storage.watch import Mirror
from vecdb.timestamp import compose, now_ms

if TYPE_CHECKING:
    from vecdb.datanode.node import DataNode

log = logging.getLogger(__name__)

# A test switch for the crash tests: "abort" kills the process inside a compaction, after its objects
# are written and before its metadata is committed. Never set in production.
FAULT_ENV = "VECDB_FAULT_COMPACT"

REQUEST_PREFIX = "compaction/"
PENDING, EXECUTING, COMPLETED = "pending", "executing", "completed"

_NEVER = np.iinfo(np.uint64).max
TTL_CHECK_MS = 60_000  # a TTL collection's channels are planned again this often (rows expire meanwhile)
FORCE_GROUP = 3  # a force merge plan's sources: live bytes up to this many target sizes


def request_key(collection_id: int, compaction_id: int) -> str:
    return f"{REQUEST_PREFIX}{collection_id}/{compaction_id}"


def compacted_prefix(source_prefix: str, position: int, partition_id: int, segment_id: int) -> str:
    """``segments/<cid>/<channel>/<position:020d>-<pid>-c<segment id>/`` beside its sources."""
    base = source_prefix.rstrip("/").rsplit("/", 1)[0]
    return f"{base}/{position:020d}-{partition_id}-c{segment_id}/"


MB = 1 << 20


@dataclass(frozen=True)
class CompactionOptions:
    """What a ``client.compact`` request narrows or asks beyond the default manual compaction (Milvus's
    ``ManualCompactionRequest``; the proxy validates them, ``vecdb.proxy.rpc_compaction``):

    - ``target_mb`` (``target_size``, MB; ``client.optimize``): a force merge, each partition's segments
      of a channel merged into as few as may be of at most that size each; above ``safe_bytes()`` it
      is that (Milvus's "auto" size: ``optimize()`` without a size sends the largest int64);
    - ``l0`` (``is_l0=True``): vecdb has no L0 segments (deletes persist as delta files beside the
      segments): every segment a persisted delete or a newer version of a key hits is rewritten
      without those rows, alone (no merge), clustered ones too, which is what Milvus's L0 compaction
      does to the segments its deletes hit; the delta files go once no segment needs them;
    - ``segment_ids``, ``partition_id``, ``channel``: only those segments, that partition, that
      channel (the segments named are merged, up to ``max_rows`` live rows a segment).

    The request record keeps only what is set (``to_record``), so a record without options reads as
    before."""

    target_mb: int = 0
    l0: bool = False
    segment_ids: tuple[int, ...] = ()
    partition_id: int = 0
    channel: str = ""

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.target_mb:
            out["target_mb"] = self.target_mb
        if self.l0:
            out["l0"] = True
        if self.segment_ids:
            out["segment_ids"] = list(self.segment_ids)
        if self.partition_id:
            out["partition_id"] = self.partition_id
        if self.channel:
            out["channel"] = self.channel
        return out

    @classmethod
    def from_record(cls, req: dict[str, Any]) -> CompactionOptions:
        o = req.get("options") or {}
        return cls(int(o.get("target_mb", 0)), bool(o.get("l0", False)), tuple(o.get("segment_ids", ())),
                   int(o.get("partition_id", 0)), str(o.get("channel", "")))

    def target_bytes(self, safe: int) -> int:
        """The force merge's size limit in bytes: ``target_mb``, at most ``safe`` (0: no force merge)."""
        return 0 if self.target_mb <= 0 else min(self.target_mb * MB, safe)


def safe_bytes(floor: int = 0) -> int:
    """The largest segment a force merge writes, whatever size it is asked for: a sixteenth of this
    machine's memory, as a plan holds up to ``FORCE_GROUP`` of them and their copies (Milvus: the
    smallest query and data node's memory over a factor, halved in a standalone where they share one
    machine), at least ``floor``."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 << 30
    return max(floor, memory // 16)


@dataclass
class Plan:
    partition_id: int
    sources: list[dict]  # segment infos, by position
    seg_keys: list[str]  # their seg/ keys
    keep: list[np.ndarray]  # per source: the offsets of its live rows
    kind: str  # "merge", "rewrite", "cluster" or "force" (a force merge's)
    segment_id: int = 0  # of the new segment (allocated when executed)
    limit_bytes: int = 0  # a force merge's: each new segment at most this many bytes (its rows cut there)
    target: dict | None = None  # the new segment's info; None when no row survives
    more: list[dict] = field(default_factory=list)  # a clustering plan's other new segments, in key order

    @property
    def live_rows(self) -> int:
        return int(sum(len(k) for k in self.keep))

    @property
    def targets(self) -> list[dict]:
        return [self.target, *self.more] if self.target else []


V = TypeVar("V")


class ChannelCache(Generic[V]):
    """Values read once from segment and delta files (which never change), by object key
    (``segments/<collection>/<channel>/...``, ``deltas/<collection>/<channel>/...``), grouped by channel:
    a check forgets the gone ones of its own channel without going through every channel's. A flat dict
    made each check go through all of them: a round over 2,000 channels (every one, the first after a
    start) went through millions of keys, growing with the square of the channels."""

    def __init__(self) -> None:
        self._by_channel: dict[str, dict[str, V]] = {}  # channel -> object key -> value

    @staticmethod
    def _channel(key: str) -> str:
        return key.split("/", 3)[2]

    def get(self, key: str) -> V | None:
        return self._by_channel.get(self._channel(key), {}).get(key)

    def put(self, key: str, value: V) -> V:
        self._by_channel.setdefault(self._channel(key), {})[key] = value
        return value

    def forget(self, channel: str, keep: AbstractSet[str]) -> None:
        """Drop the channel's keys not in ``keep``."""
        cached = self._by_channel.get(channel, {})
        for key in [k for k in list(cached) if k not in keep]:
            cached.pop(key, None)

    def keep_channels(self, owned: Mapping[str, int]) -> None:
        """Drop every key of the channels not in ``owned``."""
        for channel in [c for c in list(self._by_channel) if c not in owned]:
            self._by_channel.pop(channel, None)


@dataclass
class ChannelState:
    """One channel's persisted state, read consistently (the checkpoint did not move meanwhile)."""

    checkpoint_raw: bytes | None
    checkpoint: int
    segments: dict[str, dict]  # seg key -> info
    raw: dict[str, bytes]  # seg key -> its value as read (the txn expects it)
    deltas: dict[str, str]  # delta key -> object key
    signature: tuple = field(default=())


class Compactor:
    def __init__(self, node: DataNode, settings: CompactionSettings | None = None):
        self.node = node
        self.meta: MetaStore = node.meta
        self.settings = settings or CompactionSettings()
        self._pk_cache: ChannelCache[tuple[np.ndarray, np.ndarray]] = ChannelCache()  # segment prefix -> (pks, ts)
        # delta key -> (pks, ts, pids)
        self._delta_cache: ChannelCache[tuple[np.ndarray, np.ndarray, np.ndarray]] = ChannelCache()
        self._size_cache: ChannelCache[float] = ChannelCache()  # segment prefix -> its bytes (_segment_bytes)
        # segment prefix -> an index file without a build record is there
        self._file_cache: ChannelCache[bool] = ChannelCache()
        self._checked: dict[str, tuple] = {}  # channel -> signature of its last automatic check
        self._ttl_checked: dict[str, int] = {}  # a TTL collection's channel -> TTL_CHECK_MS period of its last check
        self._changes: ChangedCollections | None = None  # which collections changed since the last round (start)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mirror: Mirror | None = None
        self._owned: Callable[[], dict[str, int]] = dict

    # --- planning ---------------------------------------------------------------
    def read_state(self, collection_id: int, channel: str) -> ChannelState:
        """A persist moves the checkpoint; another process's compaction changes the segment list
        without moving it: both are read again after the deltas, until neither moved."""
        while True:
            raw_ckpt = self.meta.get(f"ckpt/{collection_id}/{channel}")
            seg_pairs = self.meta.scan(f"seg/{collection_id}/{channel}/")
            delta_pairs = self.meta.scan(f"delta/{collection_id}/{channel}/")
            if (self.meta.scan(f"seg/{collection_id}/{channel}/") == seg_pairs
                    and self.meta.get(f"ckpt/{collection_id}/{channel}") == raw_ckpt):
                break
        return ChannelState(
            raw_ckpt, int(raw_ckpt) if raw_ckpt else 0,
            {k: json.loads(v) for k, v in seg_pairs}, dict(seg_pairs),
            {k: v.decode() for k, v in delta_pairs},
            (raw_ckpt, tuple(k for k, _ in seg_pairs), tuple(k for k, _ in delta_pairs)))

    def _pks(self, info: CollectionInfo, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """Primary keys and timestamps of a segment (segments never change: cached by prefix)."""
        got = self._pk_cache.get(prefix)
        if got is None:
            pk = info.schema.primary_field.name
            cols, ts = sf.read_segment(self.node.objects, prefix, info.schema,
                                       skip=[f.name for f in info.schema.fields if f.name != pk])
            got = self._pk_cache.put(prefix, (np.asarray(cols[pk]), np.asarray(ts, np.uint64)))
        return got

    def live_rows(self, info: CollectionInfo, state: ChannelState) -> dict[str, np.ndarray]:
        """seg key -> boolean mask of its live rows, over the segments of live partitions."""
        partitions = {p.id for p in info.partitions}
        keys = [k for k, s in state.segments.items() if s["partition_id"] in partitions]
        if not keys:
            return {}
        parts = [self._pks(info, state.segments[k]["prefix"]) for k in keys]
        pks = np.concatenate([p for p, _ in parts])
        ts = np.concatenate([t for _, t in parts])
        n = len(pks)
        dpks, dts, dpids = [], [], []
        for obj in state.deltas.values():
            got = self._delta_cache.get(obj)
            if got is None:  # delta files never change either
                p, t, pid = sf.read_delta_scoped(self.node.objects, obj)
                got = self._delta_cache.put(obj, (np.asarray(p, dtype=pks.dtype), np.asarray(t, np.uint64), pid))
            dpks.append(got[0])
            dts.append(got[1])
            dpids.append(got[2])
        allkeys = np.concatenate([pks, *dpks]) if dpks else pks
        uniq, inv = np.unique(allkeys, return_inverse=True)
        inv = inv.reshape(-1)
        codes = inv[:n]
        # the newest version of each key: the largest ts, and of those the last row (one insert
        # batch, one segment, rows in order: the last occurrence wins)
        newest = np.zeros(len(uniq), np.uint64)
        np.maximum.at(newest, codes, ts)
        at_newest = np.flatnonzero(ts == newest[codes])
        last = np.full(len(uniq), -1, np.int64)
        np.maximum.at(last, codes[at_newest], at_newest)
        alive = last[codes] == np.arange(n)
        if dpks:
            d_codes, d_ts, d_pids = inv[n:], np.concatenate(dts), np.concatenate(dpids)
            row_pids = np.repeat([state.segments[k]["partition_id"] for k in keys], [len(p) for p, _ in parts])
            for pid in np.unique(d_pids).tolist():  # -1: every partition; else that partition's rows only
                sel = d_pids == pid
                deleted_at = np.zeros(len(uniq), np.uint64)
                np.maximum.at(deleted_at, d_codes[sel], d_ts[sel])
                hit = deleted_at[codes] > ts
                alive &= ~hit if pid == -1 else ~(hit & (row_pids == pid))
        if info.ttl_span:  # expired: older than the TTL (as every read masks them)
            alive &= ts > np.uint64(max(0, compose(now_ms()) - info.ttl_span))
        bounds = np.cumsum([0] + [len(p) for p, _ in parts])
        return {k: alive[bounds[i]:bounds[i + 1]] for i, k in enumerate(keys)}

    def plan(self, info: CollectionInfo, state: ChannelState, manual: bool = False,
             clustering: bool = False, options: CompactionOptions | None = None,
             skip: AbstractSet[str] = frozenset()) -> list[Plan]:
        """``clustering``: one "cluster" plan per partition of a collection with a clustering key;
        ``options``: a manual compaction's (``CompactionOptions``), which take precedence over it;
        ``skip``: segment keys left out of every plan (``waiting_for_index``)."""
        s = self.settings
        o = options or CompactionOptions()
        masks = self.live_rows(info, state)
        by_partition: dict[int, list[str]] = {}
        for key in sorted(masks, key=lambda k: (state.segments[k]["position"], k)):
            seg = state.segments[key]
            if key in skip or ((o.partition_id and seg["partition_id"] != o.partition_id)
                    or (o.segment_ids and seg["segment_id"] not in o.segment_ids)):
                continue
            by_partition.setdefault(seg["partition_id"], []).append(key)
        limit = o.target_bytes(safe_bytes()) if o.target_mb else 0
        if limit:
            return [p for pid, keys in by_partition.items() for p in self._force_plans(info, pid, keys, state, masks,
                                                                                         limit)]
        if o.l0:  # every segment with a dead row, rewritten alone
            return [self._plan(pid, [k], state, masks, "rewrite") for pid, keys in by_partition.items()
                    for k in keys if not masks[k].all()]
        cluster_key = info.schema.clustering_key_field if clustering else None
        plans = []
        for pid, keys in by_partition.items():
            if o.segment_ids:  # the segments named: merged (Milvus's force signal packs them all)
                plans += self._merge_plans(pid, keys, state, masks, dirty=True)
                continue
            if cluster_key is not None:
                if not all(state.segments[k].get("cluster", {}).get("field") == cluster_key.name
                           and masks[k].all() for k in keys):  # else clustered already, with no dead row
                    plans.append(self._plan(pid, keys, state, masks, "cluster"))
                continue
            live = {k: int(masks[k].sum()) for k in keys}
            dirty = {k for k in keys if (len(masks[k]) - live[k]) > (0 if manual else s.dead_ratio * len(masks[k]))}
            groups = _pack([k for k in keys if live[k] < s.small_rows and "cluster" not in state.segments[k]],
                           live, s.max_rows)
            merged: set[str] = set()
            for g in groups:
                if len(g) > 1 or g[0] in dirty:
                    plans.append(self._plan(pid, g, state, masks, "merge" if len(g) > 1 else "rewrite"))
                    merged.update(g)
            for k in keys:
                if k in dirty and k not in merged:
                    plans.append(self._plan(pid, [k], state, masks, "rewrite"))
        return plans

    def _merge_plans(self, pid: int, keys: list[str], state: ChannelState, masks: dict[str, np.ndarray],
                     dirty: bool) -> list[Plan]:
        """``keys`` merged in position order, up to ``max_rows`` live rows a plan; a group of one
        segment is rewritten when it has a dead row (``dirty``), else left as it is."""
        groups = _pack(keys, {k: int(masks[k].sum()) for k in keys}, self.settings.max_rows)
        return [self._plan(pid, g, state, masks, "merge" if len(g) > 1 else "rewrite") for g in groups
                if len(g) > 1 or (dirty and not masks[g[0]].all())]

    def _force_plans(self, info: CollectionInfo, pid: int, keys: list[str], state: ChannelState,
                     masks: dict[str, np.ndarray], limit: int) -> list[Plan]:
        """A force merge of one partition's segments of the channel. In position order, sources are
        grouped while their live bytes (``_segment_bytes``, the live share of it) stay within
        ``FORCE_GROUP`` times ``limit``, as Milvus packs a force merge's inputs up to three target
        sizes; each plan's live rows are cut where their measured bytes make even parts of at most
        ``limit`` (``_size_parts``). A group with no dead row that would come out in as many segments
        as went in is left as it is (a lone segment within the limit above all). Clustered segments are
        left out, as Milvus leaves its L2 segments out of a force merge."""
        est = {k: self._segment_bytes(info, state.segments[k]) * float(masks[k].mean()) if len(masks[k]) else 0.0
               for k in keys if "cluster" not in state.segments[k]}
        out = []
        for g in _pack(list(est), est, FORCE_GROUP * limit):
            size = sum(est[k] for k in g)
            if all(masks[k].all() for k in g) and max(1, -(-int(size) // limit)) >= len(g):
                continue
            p = self._plan(pid, g, state, masks, "force")
            p.limit_bytes = limit
            out.append(p)
        return out

    def _segment_bytes(self, info: CollectionInfo, seg: dict) -> float:
        """A segment's bytes as the seal policy counts them (``vecdb.datanode.seal``): what a force merge
        recorded (``"bytes"``), else its fixed-width fields at their width and its variable-length values
        measured, read once (segments never change: cached by prefix)."""
        if seg.get("bytes"):
            return float(seg["bytes"])
        got = self._size_cache.get(seg["prefix"])
        if got is None:
            fixed_bytes, fixed = fixed_fields(info.schema)
            got = float(fixed_bytes * seg["num_rows"])
            if len(fixed) < len(info.schema.fields):
                cols, ts = sf.read_segment(self.node.objects, seg["prefix"], info.schema, skip=fixed)
                variable = variable_row_bytes(info.schema, cols, len(ts))
                got += float(variable.sum()) if variable is not None else 0.0
            self._size_cache.put(seg["prefix"], got)
        return got

    @staticmethod
    def _plan(pid: int, keys: list[str], state: ChannelState, masks: dict[str, np.ndarray], kind: str) -> Plan:
        return Plan(pid, [state.segments[k] for k in keys], keys, [np.flatnonzero(masks[k]) for k in keys], kind)

    # --- execution --------------------------------------------------------------
    def compact_channel(self, info: CollectionInfo, channel: str, manual: bool = False,
                        tries: int = 5, clustering: bool = False,
                        options: CompactionOptions | None = None) -> list[Plan]:
        """Plan and carry out the compaction of one channel; the plans committed ([] when nothing
        called for one). Under the channel's persist lock; planned again when the metadata changed
        under it (another process persisted or compacted the channel)."""
        automatic = not manual and options is None
        for _ in range(tries):
            with self.node._locks[channel]:
                state = self.read_state(info.id, channel)
                over = self._builds_over(info, channel)
                self._checked[channel] = state.signature + _ttl_period(info) + (over,)
                if info.ttl_span:
                    self._ttl_checked[channel] = now_ms() // TTL_CHECK_MS
                else:
                    self._ttl_checked.pop(channel, None)
                skip = self.waiting_for_index(info, state, over) if automatic else frozenset()
                plans = self.plan(info, state, manual, clustering, options, skip)
                self._forget_cached(info, channel, state)
                if not plans:
                    return []
                if self._execute(info, channel, state, plans):
                    self._forget_cached(info, channel, state, plans)
                    break
        else:
            raise errors.ServiceUnavailable(f"channel {channel}: its segments kept changing under the compaction")
        if info.indexes and not info.loaded and any(p.target for p in plans):
            self.node.indexer.schedule(info)  # a loaded collection's query nodes index what they hold
        return plans

    def _forget_cached(self, info: CollectionInfo, channel: str, state: ChannelState,
                       plans: list[Plan] | None = None) -> None:
        """Drop the cached keys of the channel's segments that are gone or go now."""
        listed = {s["prefix"] for s in state.segments.values()} - {s["prefix"] for p in plans or [] for s in p.sources}
        for cache in (self._pk_cache, self._size_cache, self._file_cache):
            cache.forget(channel, listed)
        self._delta_cache.forget(channel, set(state.deltas.values()))

    def _execute(self, info: CollectionInfo, channel: str, state: ChannelState, plans: list[Plan]) -> bool:
        """Write the plans' segments and commit them in one txn; False (objects deleted) when the
        checkpoint or a source changed meanwhile."""
        cid, now = info.id, time.time()
        written: list[str] = []
        intents: list[str] = []
        puts: dict[str, bytes] = {}
        for p in plans:
            p.segment_id = self.node.ids.allocate()
            position = max(s["position"] for s in p.sources)
            if p.live_rows == 0:
                p.target = None
                continue
            columns, ts = self._gather(info, p)
            key = info.schema.clustering_key_field
            clustered = key is not None and (p.kind == "cluster" or "cluster" in p.sources[0])
            sizes: list[int] = []
            if p.kind == "cluster":
                parts: list[tuple[dict, np.ndarray]] = _cluster_parts(info.schema, columns, ts,
                                                                      self.settings.clustering_rows)
            elif p.limit_bytes:
                parts, sizes = _size_parts(info.schema, columns, ts, p.limit_bytes)
            else:
                parts = [(columns, ts)]
            for i, (cols, part_ts) in enumerate(parts):
                sid = p.segment_id if i == 0 else self.node.ids.allocate()
                prefix = compacted_prefix(p.sources[0]["prefix"], position, p.partition_id, sid)
                intent = f"gcintent/{prefix}"
                self.meta.put(intent, json.dumps({"incarnation": session.INCARNATION}).encode())
                intents.append(intent)
                written.append(prefix)
                sf.write_segment(self.node.objects, prefix, info.schema, cols, part_ts)
                target = {"segment_id": sid, "partition_id": p.partition_id, "num_rows": int(len(part_ts)),
                          "prefix": prefix, "position": position, "from": [s["prefix"] for s in p.sources],
                          "from_ids": [s["segment_id"] for s in p.sources], "deltas_upto": state.checkpoint}
                if clustered:
                    assert key is not None
                    target["cluster"] = _key_range(key, cols)
                if sizes:  # a force merge measured its rows: what its next planning estimates by
                    target["bytes"] = sizes[i]
                if self.node.node_id is not None:
                    target["by"] = self.node.node_id
                if i == 0:
                    p.target = target
                else:
                    p.more.append(target)
                puts[f"seg/{cid}/{channel}/{position:020d}-{p.partition_id}-c{sid}"] = json.dumps(target).encode()
        sources = {k for p in plans for k in p.seg_keys}
        remaining = [s for k, s in state.segments.items() if k not in sources] + [t for p in plans for t in p.targets]
        obsolete = [k for k in state.deltas if _delta_obsolete(int(k.rsplit("/", 1)[1]), remaining)]
        for p in plans:
            record: dict[str, Any] = {"from": [s["prefix"] for s in p.sources],
                                      "to": p.target["prefix"] if p.target else None,
                                      # what list_segments shows as Dropped until the record goes
                                      "sources": [{k: s[k] for k in ("segment_id", "partition_id", "num_rows")}
                                                  | ({"cluster": True} if "cluster" in s else {})
                                                  for s in p.sources]}
            if p.more:  # a clustering plan's other segments: a query node swaps the sources for them all
                record["more"] = [t["prefix"] for t in p.more]
            puts[f"compacted/{cid}/{channel}/{p.segment_id}"] = json.dumps(
                {**record, "position": state.checkpoint, "at": now}).encode()
        puts[f"gc/{cid}/{uuid.uuid4().hex}"] = json.dumps({
            "prefixes": [s["prefix"] for p in plans for s in p.sources],
            "keys": [state.deltas[k] for k in obsolete], "after": now + self.settings.gc_grace}).encode()
        expect: dict[str, bytes | None] = {f"ckpt/{cid}/{channel}": state.checkpoint_raw}
        expect.update({k: state.raw[k] for k in sources})
        if os.environ.get(FAULT_ENV) == "abort":  # crash tests: objects written, metadata not committed
            os.abort()
        if not self.meta.txn(puts=puts, deletes=sorted(sources) + obsolete + intents, expect=expect):
            log.info("channel %s changed under its compaction; planning again", channel)
            for prefix in written:
                self.node.objects.delete_prefix(prefix)
            self.meta.txn(deletes=intents)
            return False
        log.info("compacted %s: %s", channel, "; ".join(
            f"{p.kind} {[s['segment_id'] for s in p.sources]} -> "
            f"{[t['segment_id'] for t in p.targets] if p.more else p.segment_id if p.target else None} "
            f"({p.live_rows} rows)" for p in plans))
        return True

    def _gather(self, info: CollectionInfo, p: Plan) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
        """The live rows of a plan's sources: column chunks (one per source) and their timestamps."""
        columns: dict[str, list[np.ndarray]] = {f.name: [] for f in info.schema.fields}  # and validity masks
        ts_parts = []
        for src, keep in zip(p.sources, p.keep):
            if not len(keep):
                continue
            cols, ts = sf.read_segment(self.node.objects, src["prefix"], info.schema, mmap=True)
            for name, col in cols.items():
                columns.setdefault(name, []).append(np.asarray(col)[keep])
            ts_parts.append(np.asarray(ts, np.uint64)[keep])
        return columns, np.concatenate(ts_parts)

    # --- triggers ---------------------------------------------------------------
    def maybe_compact(self, info: CollectionInfo, channel: str) -> list[Plan]:
        """The automatic check: plans only when the channel's segments or deltas changed since its last
        check, or an index build of its segments ended (what waited for it may be merged now), or, with
        a TTL, a ``TTL_CHECK_MS`` period went by (rows expire as time passes)."""
        state_sig = self._signature(info.id, channel) + _ttl_period(info) + (self._builds_over(info, channel),)
        if self._checked.get(channel) == state_sig:
            return []
        return self.compact_channel(info, channel)

    def waiting_for_index(self, info: CollectionInfo, state: ChannelState,
                          over: frozenset[tuple[int, str]]) -> frozenset[str]:
        """The segments an automatic compaction leaves alone for now, as Milvus's
        ``dataCoord.compaction.indexBasedCompaction`` does: those of at least ``MIN_ROWS_FOR_INDEX`` rows
        whose index of some vector field is not built yet (no build of it ``over``, no file either: data
        written before builds were recorded). Merging a segment whose build is under way throws that build
        away for one of the merged segment: a collection flushed after every small insert had each new
        segment merged into the last merge's result, rewritten whole each time (hundreds of times over for
        100-row flushes) and never indexed while the flushes went on. A manual compaction takes them all."""
        fields = file_built_fields(info)
        if not fields:
            return frozenset()
        waiting = set()
        for key, seg in state.segments.items():
            if seg["num_rows"] < sf.MIN_ROWS_FOR_INDEX:
                continue
            prefix = seg["prefix"]
            if all((idx.index_id, prefix) in over for idx, _ in fields):
                continue
            if not self._file_cache.get(prefix):
                self._file_cache.put(prefix, all(
                    (idx.index_id, prefix) in over or self.node.objects.exists(sf.index_key(prefix, f.field_id,
                                                                                            idx.index_id))
                    for idx, f in fields))
            if not self._file_cache.get(prefix):
                waiting.add(key)
        return frozenset(waiting)

    def _builds_over(self, info: CollectionInfo, channel: str) -> frozenset[tuple[int, str]]:
        """(index id, segment prefix) of the channel's index builds that are over (``index_builds.settled``)."""
        if not file_built_fields(info):
            return frozenset()
        mine = f"segments/{info.id}/{channel}/"
        return frozenset(b for b in index_builds.settled(self.meta, info.id) if b[1].startswith(mine))

    def _signature(self, collection_id: int, channel: str) -> tuple:
        raw = self.meta.get(f"ckpt/{collection_id}/{channel}")
        return (raw, tuple(k for k, _ in self.meta.scan(f"seg/{collection_id}/{channel}/")),
                tuple(k for k, _ in self.meta.scan(f"delta/{collection_id}/{channel}/")))

    def start(self, owned: Callable[[], dict[str, int]], watch_requests: bool = True) -> None:
        """Compact, in a background thread, the channels ``owned()`` names (channel -> collection id):
        requests first, then the automatic check (when enabled). ``watch_requests``: wake when a
        request is put by another process (a cluster's proxy)."""
        self._owned = owned
        if self.settings.enabled:  # the rounds' automatic checks skip the collections these saw no change of
            self._changes = ChangedCollections(self.meta)
        if watch_requests:
            self._mirror = Mirror(self.meta, REQUEST_PREFIX, self.wake)
        self._thread = threading.Thread(target=self._run, name="compactor", daemon=True)
        self._wake.set()  # a first round at once: requests a crash left unfinished, segments persisted meanwhile
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def wake(self) -> None:
        self._wake.set()

    def changed(self, collection_id: int) -> None:
        """This process changed the collection's segments (a persist): a round checks it now (without
        waiting for the watch to tell)."""
        if self._changes is not None:
            self._changes.mark({collection_id})
        self._wake.set()

    def carry_out(self, collection_id: int, compaction_id: int) -> None:
        """Carry out a request's channels here and now (a process that owns them all)."""
        key = request_key(collection_id, compaction_id)
        raw = self.meta.get(key)
        if raw is None:
            return
        req = json.loads(raw)
        for channel, st in req["channels"].items():
            if st["state"] != COMPLETED:
                self._carry_out(key, collection_id, channel, req.get("clustering", False),
                                CompactionOptions.from_record(req))

    def _run(self) -> None:
        interval = self.settings.interval or 1.0
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 (store trouble: the next round tries again)
                log.exception("compaction round failed")

    def run_once(self) -> None:
        """One round over the owned channels: pending requests, then the automatic check."""
        owned = self._owned()
        requests = self.meta.scan(REQUEST_PREFIX)
        for key, raw in requests:
            req = json.loads(raw)
            for channel, st in req["channels"].items():
                if st["state"] != COMPLETED and owned.get(channel) == req["collection_id"] and not self._stop.is_set():
                    self._carry_out(key, req["collection_id"], channel, req.get("clustering", False),
                                    CompactionOptions.from_record(req))
        # the cached keys of channels no longer owned (moved, dropped)
        for cache in (self._pk_cache, self._delta_cache, self._size_cache, self._file_cache):
            cache.keep_channels(owned)
        for checked in (self._checked, self._ttl_checked):
            for channel in [c for c in list(checked) if c not in owned]:
                checked.pop(channel, None)
        if not self.settings.enabled:
            return
        changed = self._changes.take() if self._changes is not None else None  # None: every collection
        period = now_ms() // TTL_CHECK_MS
        try:
            for channel, cid in owned.items():
                if self._stop.is_set():
                    return
                if (changed is not None and cid not in changed and channel in self._checked
                        and self._ttl_checked.get(channel, period) == period):
                    continue  # nothing of it changed since its last check: not read again
                try:
                    self.maybe_compact(read_collection(self.meta, cid), channel)
                except errors.CollectionNotFound:
                    continue
        except BaseException:
            if self._changes is not None:  # the channels not checked yet are checked by the next round
                self._changes.mark(changed)
            raise

    def _carry_out(self, key: str, cid: int, channel: str, clustering: bool = False,
                   options: CompactionOptions | None = None) -> None:
        try:
            info = read_collection(self.meta, cid)
        except errors.CollectionNotFound:
            self.meta.delete(key)  # dropped: nobody asks for its state any more
            return
        update_request(self.meta, key, channel, EXECUTING)
        plans = self.compact_channel(info, channel, manual=True, clustering=clustering, options=options)
        update_request(self.meta, key, channel, COMPLETED, [  # a clustering plan: one entry per new segment
            {"sources": [s["segment_id"] for s in p.sources], "target": target, "plan": p.segment_id,
             "partition_id": p.partition_id}
            for p in plans for target in [p.segment_id, *(t["segment_id"] for t in p.more)]])

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._mirror is not None:
            self._mirror.close()
        if self._thread is not None:
            self._thread.join(10)
        if self._changes is not None:
            self._changes.close()


def _pack(keys: list[str], weight: Mapping[str, float], cap: float) -> list[list[str]]:
    """``keys`` in their order cut into runs whose weights add up to at most ``cap`` (a key heavier than
    it makes a run alone): the groups of a merge (live rows) and of a force merge (live bytes)."""
    groups: list[list[str]] = []
    group: list[str] = []
    total = 0.0
    for k in keys:
        if group and total + weight[k] > cap:
            groups.append(group)
            group, total = [], 0.0
        group.append(k)
        total += weight[k]
    if group:
        groups.append(group)
    return groups


def _whole(column: np.ndarray | list[np.ndarray]) -> np.ndarray:
    return column if not isinstance(column, list) else column[0] if len(column) == 1 else np.concatenate(column)


def _sorted_by_key(key: FieldSchema, columns: dict) -> np.ndarray:
    """The rows' order by the clustering key: ascending (Python's order for VARCHAR), null keys last."""
    values = _whole(columns[key.name])
    mask = columns.get(valid_key(key.name))
    rows = np.arange(len(values)) if mask is None else np.flatnonzero(_whole(mask))
    if values.dtype == object:
        order = np.asarray(sorted(rows.tolist(), key=values.__getitem__), np.int64)
    else:
        order = rows[np.argsort(values[rows], kind="stable")]
    if mask is None:
        return order
    return np.concatenate([order, np.flatnonzero(~_whole(mask))])


def _cut(run: np.ndarray, limit: int) -> list[int]:
    """Where to cut ``len(run)`` rows sorted by key (``run``: the id of each row's key, not decreasing)
    into parts of at most ``limit`` rows, as even as may be: a cut moves past the rows that share the
    key before it where the part stays within ``limit``, so that parts hold ranges that do not overlap."""
    n = len(run)
    size = -(-n // -(-n // limit)) if n else 0  # ceil(n / parts), parts = ceil(n / limit)
    cuts = [0]
    while n - cuts[-1] > limit:
        at = cuts[-1] + size
        end = int(np.searchsorted(run, run[at - 1], side="right"))
        cuts.append(end if end - cuts[-1] <= limit else at)
    return [*cuts, n]


def _cluster_parts(schema: CollectionSchema, columns: dict, ts: np.ndarray,
                   limit: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """A clustering plan's live rows sorted by the clustering key and cut into parts (columns, ts) of at
    most ``limit`` rows, each a range of the key."""
    key = schema.clustering_key_field
    assert key is not None
    whole = {name: _whole(col) for name, col in columns.items()}  # each column's chunks joined once
    order = _sorted_by_key(key, whole)
    values = whole[key.name][order]
    mask = whole.get(valid_key(key.name))
    valid = None if mask is None else mask[order]
    change = np.ones(len(order), bool)
    if len(order) > 1:
        change[1:] = values[1:] != values[:-1]
        if valid is not None:
            change[1:] |= valid[1:] != valid[:-1]
    cuts = _cut(np.cumsum(change), limit)
    ts = np.asarray(ts)
    parts = []
    for lo, hi in zip(cuts, cuts[1:]):
        rows = order[lo:hi]
        parts.append(({name: col[rows] for name, col in whole.items()}, ts[rows]))
    return parts


def _size_parts(schema: CollectionSchema, columns: dict, ts: np.ndarray,
                limit: int) -> tuple[list[tuple[dict[str, np.ndarray], np.ndarray]], list[int]]:
    """A force merge plan's live rows cut, in order, into as few parts as may be of at most ``limit``
    bytes each (a row larger than it alone), as even as may be, and each part's bytes. A row's bytes
    are what the seal policy counts (``vecdb.datanode.seal``): its fixed-width fields at their width,
    its variable-length values at their actual size."""
    whole = {name: _whole(col) for name, col in columns.items()}
    n = len(ts)
    sizes = np.full(n, fixed_row_bytes(schema), np.int64)
    variable = variable_row_bytes(schema, whole, n)
    if variable is not None:
        sizes += variable
    cum = np.cumsum(sizes)
    total = int(cum[-1]) if n else 0
    count = max(1, -(-total // limit))
    # cut near even shares of the bytes; a part over the limit there (wide rows) is cut again
    cuts = [0, *np.searchsorted(cum, [total * k // count for k in range(1, count)], side="right").tolist(), n]
    bounds = [0]
    for lo, hi in zip(cuts, cuts[1:]):
        start = lo
        while start < hi:
            base = int(cum[start - 1]) if start else 0
            end = min(hi, max(start + 1, int(np.searchsorted(cum, base + limit, side="right"))))
            bounds.append(end)
            start = end
    ts = np.asarray(ts)
    parts, part_bytes = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        if hi > lo:
            parts.append(({name: col[lo:hi] for name, col in whole.items()}, ts[lo:hi]))
            part_bytes.append(int(cum[hi - 1] - (cum[lo - 1] if lo else 0)))
    return parts, part_bytes


def _key_range(key: FieldSchema, columns: dict) -> dict[str, Any]:
    """The ``"cluster"`` entry of a segment a clustering compaction wrote: the key's smallest and largest
    value (None when every key is null), and how many keys are null."""
    values = _whole(columns[key.name])
    mask = columns.get(valid_key(key.name))
    if mask is not None:
        values = values[_whole(mask)]
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    out: dict[str, Any] = {"field": key.name, "min": None, "max": None}
    if len(values):
        lo, hi = (min(values), max(values)) if values.dtype == object else (values.min(), values.max())
        out["min"], out["max"] = (v.item() if isinstance(v, np.generic) else v for v in (lo, hi))
    if mask is not None:
        out["nulls"] = int(len(_whole(mask)) - np.count_nonzero(_whole(mask)))
    return out


def _ttl_period(info: CollectionInfo) -> tuple:
    """Part of a channel's check signature: the ``TTL_CHECK_MS`` period now, for a collection with a TTL."""
    return (now_ms() // TTL_CHECK_MS,) if info.ttl_span else ()


def _delta_obsolete(position: int, remaining: list[dict]) -> bool:
    """A delta at ``position`` is obsolete once every remaining segment its deletes could hit (those at
    or below it: a persist writes the segment and the delta of the same records at one position)
    folded it in."""
    return all(s.get("deltas_upto", 0) >= position for s in remaining if s["position"] <= position)


# --- requests (client.compact) ---------------------------------------------------
def request_compaction(meta: MetaStore, compaction_id: int, info: CollectionInfo, keep: float = 3600.0,
                       clustering: bool = False, options: CompactionOptions | None = None) -> None:
    """Put the request record the owning data nodes carry out (``clustering``: a clustering compaction;
    ``options``: a force merge, an L0 compaction, some segments, a partition or a channel only: a
    channel other than ``options.channel`` gets no state, so none carries it out); drops finished ones
    older than ``keep`` and those of collections dropped since (nobody carries them out)."""
    now = time.time()
    for key, raw in meta.scan(REQUEST_PREFIX):
        req = json.loads(raw)
        finished = all(c["state"] == COMPLETED for c in req["channels"].values())
        if (finished and now - req.get("at", now) > keep) or meta.get(coll_key(req["collection_id"])) is None:
            meta.txn(deletes=[key], expect={key: raw})
    extra = (options or CompactionOptions()).to_record()
    channels = [ch for ch in info.channels if not extra.get("channel") or ch == extra["channel"]]
    meta.put(request_key(info.id, compaction_id), json.dumps({
        "collection_id": info.id, "compaction_id": compaction_id, "at": now,
        **({"clustering": True} if clustering else {}),  # only when set: the previous version reads the record
        **({"options": extra} if extra else {}),
        "channels": {ch: {"state": PENDING, "plans": []} for ch in channels}}).encode())


def fail_overdue(meta: MetaStore, record: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``record`` with its channels not done ``timeout`` s after the request marked failed (in the store
    too): what a reader of the state does while no data node lives to carry them out. A failed channel
    is ``completed`` with ``"failed": true`` (no plans), so that a node of the previous version reads it
    as done (a rolling upgrade) rather than executing for good, or carries it out again."""
    if time.time() - record.get("at", time.time()) < timeout:
        return record
    key = request_key(record["collection_id"], record["compaction_id"])
    while True:  # the stored record, not ``record`` (read earlier: a channel may have completed since)
        raw = meta.get(key)
        if raw is None:
            return record
        req = json.loads(raw)
        late = [ch for ch, entry in req["channels"].items() if entry["state"] != COMPLETED]
        if not late:
            return req
        for channel in late:
            req["channels"][channel].update(state=COMPLETED, failed=True)
        if meta.txn(puts={key: json.dumps(req).encode()}, expect={key: raw}):
            log.warning("compaction %s: no data node carried out channels %s within %.0f s: failed",
                        record["compaction_id"], ", ".join(late), timeout)
            return req


def update_request(meta: MetaStore, key: str, channel: str, state: str, plans: list | None = None) -> None:
    """Set one channel's state (and plans) in a request record by compare-and-set."""
    while True:
        raw = meta.get(key)
        if raw is None:
            return
        req = json.loads(raw)
        entry = req["channels"].get(channel)
        if entry is not None and entry["state"] == state and (plans is None or entry.get("plans") == plans):
            # unchanged: not written again. A write wakes the compactors that watch the requests, the writer's
            # own too: a round that failed (a source segment's files gone) woke itself and failed again, in a loop
            return
        entry = req["channels"].setdefault(channel, {"state": PENDING, "plans": []})
        entry["state"] = state
        if plans is not None:
            entry["plans"] = plans
        if meta.txn(puts={key: json.dumps(req).encode()}, expect={key: raw}):
            return


def compaction_state(meta: MetaStore, compaction_id: int) -> dict[str, Any] | None:
    """A request's record (any collection), None when unknown."""
    suffix = f"/{compaction_id}"
    for key, raw in meta.scan(REQUEST_PREFIX):
        if key.endswith(suffix):
            return json.loads(raw)
    return None

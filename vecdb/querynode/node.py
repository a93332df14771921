"""Query node: holds loaded collections (sealed + growing segments) and answers reads.

Loading a collection = reading its sealed segments and delta files, resolving
primary keys, then replaying the log from the data node's checkpoint. After
that, records arrive through ``deliver`` in channel order.

Sealed-segment indexes: standalone, the node builds them itself (``build_indexes``).
A cluster's query node never builds: the data node owning the channel builds each
segment's index once (``vecdb.datanode.index_scheduler``) and records the finished
file (``idxbuild/``, ``vecdb.coord.index_builds``). The node watches those records;
until a segment's file is there it searches the segment with what it has (its
interim index, else exactly), then loads the file (memory-mapped when the
collection says mmap) and switches the segment to it in one assignment, so reads
never wait and never miss a row.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from vecdb import bm25, errors, metrics, sparse
from vecdb.catalog_model import CollectionInfo, IndexInfo, read_collection
from vecdb.column_defaults import output_column, unknown_columns
from vecdb.coord import index_builds
from vecdb.coord.index_builds import BuildRefused, IndexBuilds
from vecdb.datanode.indexer import file_built
from vecdb.expr import ngram_like
from vecdb.group_partials import PartialSpec, fetched
from vecdb.index import array_elements, create_index, json_path, load_index, new_index, ngram
from vecdb.index import scalar as scalar_index
from vecdb.index.nullable import ValidRowsIndex, index_valid_rows
from vecdb.log_records import InsertRecord, Record, decode
from vecdb.querynode import executor
from vecdb.querynode.compaction import CompactionFollower
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import ReadScope, SegmentView, Shard
from vecdb.roles import RowFilter
from vecdb.schema import DataType, valid_key
from vecdb.storage import segments as sf
from vecdb.storage import stall
from vecdb.storage.base import Log, MetaStore, ObjectStore
from vecdb.storage.follow import POLL_SECONDS, TailStop
from vecdb.storage.watch import PUT, PrefixWatch, WatchEvent
from vecdb.top_rows import Order, TopSpec

log = logging.getLogger(__name__)

# Exact indexes get no interim index while growing (exact search is what they promise). A sealed
# FLAT segment is served by a FAISS flat index that holds the column (shared with the segment for
# L2/IP, see Segment.share_column): about 5x faster than numpy at nq=1. BIN_FLAT searches the
# segment's own codes with FAISS's popcount kernels: nothing to build.
# Sparse indexes are postings the executor builds and keeps on the segment (vecdb.sparse): no file.
_NO_INTERIM = ("FLAT", "BIN_FLAT", "SPARSE_INVERTED_INDEX", "SPARSE_WAND")
_NO_BUILD = ("BIN_FLAT", "SPARSE_INVERTED_INDEX", "SPARSE_WAND")
STANDALONE_NODE_ID = 1
# Growing segments get an interim HNSW index once this many rows are not covered by it.
GROWING_INDEX_BATCH = 4096
GROWING_INDEX_PARAMS = {"M": 16, "efConstruction": 100}
# A node that does not build looks over its sealed segments for finished index files this often
# (in memory, against the watched records: a backstop for segments added after their record came).
ADOPT_SWEEP_SECONDS = 5.0


class LoadedCollection:
    def __init__(self, info: CollectionInfo, shards: list[Shard]):
        self.info = info
        self.shards = shards

    def snapshot(self, partition_ids: set[int] | None, channels: Sequence[str] | None = None,
                 scopes: Mapping[str, ReadScope] | None = None, reading: bool = False,
                 ts: int | None = None) -> list[SegmentView]:
        """The segments of every shard held, or of ``channels`` only (each must be held here: a
        proxy that planned a read with an older assignment gets ``CollectionNotLoaded`` and plans
        again); ``scopes``: the part of a channel to read, where its sealed segments are spread over
        several nodes (``ReadScope``); ``reading``: a read of ``channels`` without a scope for a channel
        this node does not lead is refused (``CollectionNotLoaded``: the proxy planned it with an older
        picture); ``ts``: the read's snapshot timestamp (``Shard.snapshot``)."""
        scopes = scopes or {}
        if channels is None:
            return [v for s in self.shards for v in s.snapshot(partition_ids, scopes.get(s.channel), ts, reading)]
        if reading:
            led_elsewhere = [s.channel for s in self.shards if s.channel in channels and not s.leader
                             and s.channel not in scopes]
            if led_elsewhere:  # this node holds only some sealed segments of them: a whole-channel read is not its
                raise errors.CollectionNotLoaded(f"channels {led_elsewhere} of collection {self.info.name} are led by "
                                                 f"another query node")
        by_channel = {s.channel: s for s in self.shards}
        missing = [ch for ch in channels if ch not in by_channel]
        if missing:
            raise errors.CollectionNotLoaded(f"channels {missing} of collection {self.info.name} are not "
                                             f"loaded on this query node")
        return [v for ch in channels for v in by_channel[ch].snapshot(partition_ids, scopes.get(ch), ts, reading)]


class _LivePartitions:
    """The partitions of ``info`` a load takes rows of: those of the catalog, read again (once per
    unknown id) for a partition created after ``info`` was read, whose rows the log and the files may
    hold already (it was skipped as a dropped one's: its acknowledged rows invisible until a reload)."""

    def __init__(self, meta, info: CollectionInfo):
        self._meta, self._id = meta, info.id
        self._ids = {p.id for p in info.partitions}
        self._asked: set[object] = set()

    def __contains__(self, partition_id: object) -> bool:
        if partition_id not in self._ids and partition_id not in self._asked:
            self._asked.add(partition_id)
            try:
                self._ids |= {p.id for p in read_collection(self._meta, self._id).partitions}
            except errors.CollectionNotFound:
                pass  # dropped meanwhile: the load fails further on, or its shard goes with the collection
        return partition_id in self._ids


class QueryNode:
    """Serves the collections it loaded. Standalone, its writer hands it every record as it is
    acknowledged (``deliver``); with ``tail=True`` (a query node in its own process) it follows
    the loaded channels in the log instead, and ``wait_applied`` is how a reader waits for the
    writes it must see."""

    def __init__(self, wal: Log, meta: MetaStore, objects: ObjectStore, index_threads: int = 1, tail: bool = False,
                 build_indexes: bool | None = None, mmap_sealed: bool = False):
        """``build_indexes``: build sealed segments' indexes here (default: unless ``tail``, i.e.
        standalone); otherwise load the files the data nodes build (see the module doc). ``mmap_sealed``:
        map every sealed segment's files, whatever the collection says (``querynode.mmap_sealed``)."""
        self.mmap_sealed = mmap_sealed
        self.log = wal
        self.meta = meta
        self.objects = objects
        self._tail = tail
        self._tailers: dict[str, TailStop] = {}  # channel -> stop flag of its follower thread
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # refresh_from_store: read and apply as one step
        self.collections: dict[int, LoadedCollection] = {}
        self._by_channel: dict[str, Shard] = {}
        self._builder = ThreadPoolExecutor(max_workers=index_threads, thread_name_prefix="index-build")
        self._interim = ThreadPoolExecutor(max_workers=1, thread_name_prefix="growing-index")
        self._interim_busy: set[int] = set()  # id() of segments with a pending interim task
        self.builds = IndexBuilds(meta)
        self.build_indexes = not tail if build_indexes is None else build_indexes
        # (collection id, index id, segment prefix) -> (record key, index file key) of finished builds
        self._ready: dict[tuple[int, int, str], tuple[str, str, int | None]] = {}
        self._ready_lock = threading.Lock()
        self._adopting: set[tuple[int, str]] = set()  # (id(segment), field name) whose file is being loaded
        self._unusable: set[str] = set()  # index files that did not fit their segment (not tried again)
        self._closed = threading.Event()
        self._ready_watch: PrefixWatch | None = None
        if not self.build_indexes:
            self._ready_watch = PrefixWatch(meta, index_builds.ROOT, self._ready_reset, self._ready_events,
                                            name="index files")
            threading.Thread(target=self._sweep_ready, name="index-files-sweep", daemon=True).start()
        # the node_id label of its metrics (a query node process sets its own id: vecdb.process)
        self.metrics_node_id = metrics.STANDALONE
        metrics.track_querynode(self)  # entities, segments and log lag are read when /metrics is scraped
        # swaps the segments of held channels for compacted ones (started by the first load)
        self.compactions = CompactionFollower(self)

    # --- load / release ---------------------------------------------------------
    def load(self, info: CollectionInfo, channels: Sequence[str] | None = None, leader: bool = True,
             full: Callable[[str, str], bool] | None = None) -> None:
        """Load sealed data and replay the log tail of every channel of ``info``, or of ``channels``
        (a cluster's query node holds the channels the coord assigned it; a collection's channels
        may come one load at a time). Channels held already stay as they are. The caller blocks
        writers to the channels (standalone; a tailing node follows the log instead).

        ``full(channel, segment prefix)``: whether to hold a sealed segment in full (None: all); the
        others are loaded as stubs (keys and timestamps). ``leader=False``: growing rows as stubs
        too (the node serves only some sealed segments of the channels)."""
        with self._lock:
            coll = self.collections.get(info.id)
            have = set() if coll is None else {s.channel for s in coll.shards}
            todo = [ch for ch in (info.channels if channels is None else channels) if ch not in have]
            if coll is not None and not todo:
                return
            shards = [self._load_shard_whole(info, ch, leader, full) for ch in todo]
            if coll is None:
                coll = self.collections[info.id] = LoadedCollection(info, shards)
            else:
                coll.info = info
                coll.shards = [*coll.shards, *shards]  # replaced whole: readers iterate without the lock
            for shard in shards:
                self._by_channel[shard.channel] = shard
                if self._tail:
                    self._start_tailer(shard)
            for shard in shards:
                self._schedule_index(info, list(shard.segments.values()))
        self._drop_gone_partitions(info.id)
        self.compactions.start()
        self.compactions.wake()

    def _start_tailer(self, shard: Shard) -> None:
        stop = self._tailers[shard.channel] = TailStop()
        threading.Thread(target=self._follow, args=(shard, stop), name=f"tail-{shard.channel}", daemon=True).start()

    def _follow(self, shard: Shard, stop: TailStop) -> None:
        """Apply the channel's records from the log as they are acknowledged, until released."""
        follower = stop.watch(self.log.follow(shard.channel, shard.applied_position + 1))
        watch = stall.StallWatch(self.log, shard.channel)  # records cut below it, or a stuck follower
        try:
            while not stop.is_set():
                try:
                    records = follower.poll(timeout=POLL_SECONDS)
                    if not records and shard.published_position < shard.applied_position:
                        shard.publish()  # an append's rest did not come (its writer died between batches)
                    if records:
                        watch.heard()
                    elif (first := watch.check(shard.applied_position)) is not None:
                        cut = first > shard.applied_position + 1
                        metrics.count_stall(self.metrics_node_id, shard.channel, cut)
                        if cut:
                            self._truncated_under(shard, first)
                            return
                        log.warning("channel %s: no record from the log for %.0f s while %d is there to apply "
                                    "next; following it again", shard.channel, stall.STALL_SECONDS, first)
                        again = self.log.follow(shard.channel, shard.applied_position + 1)
                        follower.close()
                        follower = stop.watch(again)
                except errors.IoFailed as e:  # the log is unreachable: keep trying, reads wait meanwhile
                    if stop.is_set():  # released or closed meanwhile (a stopping process closes its log next)
                        break
                    log.warning("following %s: %s", shard.channel, e)
                    stop.wait(0.5)
                    continue
                decoded = [(pos, decode(payload)) for pos, payload in records]
                for i, (pos, record) in enumerate(decoded):
                    if pos > shard.applied_position + 1:  # truncated past what this node applied: reload
                        shard.publish()
                        self._truncated_under(shard, pos)
                        return
                    # the records of one append (one timestamp; each but its last ``more``) become visible together
                    last = i + 1 == len(decoded) or decoded[i + 1][1].ts != record.ts
                    self.deliver(shard.channel, pos, record, publish=last)
        finally:
            follower.close()

    def _truncated_under(self, shard: Shard, first: int) -> None:
        """Records from the shard's applied position + 1 to ``first`` - 1 are gone from the log."""
        log.error("channel %s: records %d..%d were truncated before this node applied them (it fell behind the "
                  "log's retention); it releases the channel, which its assignment loads again from the segments",
                  shard.channel, shard.applied_position + 1, first - 1)
        self.release(_collection_id(shard.channel), [shard.channel])

    def applied_positions(self) -> dict[str, int]:
        """channel -> the last log position applied, for every channel held (the log may be truncated
        below the lowest of these and the checkpoint: vecdb.datanode.flusher)."""
        return {ch: shard.applied_position for ch, shard in list(self._by_channel.items())}

    def wait_applied(self, positions: dict[str, int], timeout: float = 30.0) -> None:
        """Block until each channel's records up to its position are applied (a Strong read's
        guarantee, with the positions its writes reached); ``ServiceUnavailable`` on timeout."""
        deadline = time.monotonic() + timeout
        for channel, position in positions.items():
            shard = self._by_channel.get(channel)
            if shard is None:
                raise errors.CollectionNotLoaded(f"channel {channel!r} is not loaded on this query node")
            if not shard.wait_applied(position, max(deadline - time.monotonic(), 0)):
                if shard.closed:
                    raise errors.ServiceUnavailable(f"channel {channel!r}: this query node is stopping")
                raise errors.ServiceUnavailable(f"channel {channel!r}: position {position} not applied within "
                                                f"{timeout} s (at {shard.applied_position})")

    def _load_shard_whole(self, info: CollectionInfo, channel: str, leader: bool = True,
                          full: Callable[[str, str], bool] | None = None, tries: int = 5) -> Shard:
        """``_load_shard``, again when the log was truncated under it (a flush moved the checkpoint
        and the log was cut below it after this load read the old one: the new one covers the gap),
        or when a segment or delta object it lists is gone (a compaction replaced it after this load
        read the metadata, and garbage collection deleted it: the new metadata lists what replaced it)."""
        for _ in range(tries):
            try:
                return self._load_shard(info, channel, leader, full)
            except _Truncated as e:
                log.info("loading %s: %s; loading again from the new checkpoint", channel, e)
            except (errors.KeyNotFound, FileNotFoundError) as e:
                log.info("loading %s: an object is gone (%s); loading again from new metadata", channel, e)
        return self._load_shard(info, channel, leader, full)

    def _load_shard(self, info: CollectionInfo, channel: str, leader: bool = True,
                    full: Callable[[str, str], bool] | None = None) -> Shard:
        shard = Shard(channel, info.schema)
        shard.leader = leader
        shard.on_seal = lambda sh, segs, cid=info.id: self._on_seal(cid, segs)
        live = _LivePartitions(self.meta, info)
        mmap = self.mmap(info)
        start, seg_infos, delta_keys = sf.persisted_state(self.meta, info.id, channel)
        for seg_info in seg_infos:
            if seg_info["partition_id"] not in live:
                continue
            stub = full is not None and not full(channel, seg_info["prefix"])
            columns, ts, indexes = self._read_sealed(info, seg_info["prefix"], seg_info["num_rows"], mmap, stub)
            never_deleted = np.full(len(ts), np.iinfo(np.uint64).max, np.uint64)
            seg = shard.add_sealed(partial(Segment.from_columns, partition_id=seg_info["partition_id"],
                                           schema=info.schema, columns=columns, ts=ts, del_ts=never_deleted,
                                           stub=stub))
            seg.segment_id = seg_info["segment_id"]
            seg.prefix = seg_info["prefix"]
            seg.indexes.update(indexes)
        if info.truncated_ts:  # truncate_collection: older rows gone, the log's skipped
            shard.truncate(info.truncated_ts)
        shard.rebuild_pk_index()
        deltas = [sf.read_delta_scoped(self.objects, key) for key in delta_keys]
        deltas = [d for d in deltas if len(d[1])]
        deleted_up_to = 0
        if deltas:  # all at once: each delete against every version of its key (``Shard.apply_deltas``)
            shard.apply_deltas(*(np.concatenate(cols) for cols in zip(*deltas)))
            deleted_up_to = max(int(d[1].max()) for d in deltas)
        shard.applied_position = start
        for pos, payload in self.log.read(channel, start + 1):
            if pos != shard.applied_position + 1:
                raise _Truncated(f"records {shard.applied_position + 1}..{pos - 1} are no longer in the log")
            rec = decode(payload)
            if isinstance(rec, InsertRecord) and rec.partition_id not in live:
                shard.skip(pos, rec)  # rows of a dropped partition stay dropped
                continue
            shard.apply(pos, rec)
        shard.publish(deleted_up_to)  # the files' rows and deletes, and the records after them: all there
        return shard

    def mmap(self, info: CollectionInfo) -> bool:
        """Whether sealed segments of ``info`` are read memory-mapped: the collection's ``mmap.enabled``, or
        this node's ``mmap_sealed``."""
        return self.mmap_sealed or info.properties.get("mmap.enabled", "false").lower() == "true"

    def _read_sealed(self, info: CollectionInfo, prefix: str, rows: int, mmap: bool,
                     stub: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
        """(columns, row timestamps, indexes by field name) of a sealed segment's files; a ``stub``
        reads the primary keys only."""
        if stub:
            pk = info.schema.primary_field.name
            columns, ts = sf.read_segment(self.objects, prefix, info.schema,
                                          skip=[f.name for f in info.schema.fields if f.name != pk])
            return columns, ts, {}
        indexes = self._load_saved_indexes(info, prefix, rows, mmap)
        # an index that keeps the raw vectors serves the column too: that file is not read at all
        shared = {name: v for name, ix in indexes.items() if (v := ix.raw_vectors()) is not None}
        columns, ts = sf.read_segment(self.objects, prefix, info.schema, mmap=mmap, skip=shared)
        columns.update(shared)
        for name in shared:  # a nullable vector's mask is the segment's own, never in its index
            f = info.schema.field(name)
            if f is not None and f.nullable:
                columns[valid_key(name)] = sf.read_valid(self.objects, prefix, f, len(ts), mmap)
        return columns, ts, indexes

    # --- sealed segments spread over a replica's nodes ------------------------------
    def full_segments(self) -> dict[int, dict[str, list[str]]]:
        """collection id -> {channel: the sealed segments held in full} of every shard held."""
        with self._lock:
            return {cid: {s.channel: s.full_prefixes() for s in coll.shards} for cid, coll in self.collections.items()}

    def sealed_prefixes(self, channel: str) -> list[str]:
        """Every sealed segment of ``channel`` held, in full or as a stub."""
        shard = self._by_channel.get(channel)
        return [] if shard is None else sorted(s.prefix for s in list(shard.segments.values()) if s.sealed and s.prefix)

    def leads(self, channel: str) -> bool:
        shard = self._by_channel.get(channel)
        return shard is not None and shard.leader

    def keeps_history(self, channel: str) -> bool:
        """Whether ``channel``'s shard holds rows a compaction dropped that reads at older snapshots still
        see (``Shard.retired``, for ``RETIRED_KEEP_S``): a node that no longer serves the channel otherwise
        keeps it for those reads (a query iterator's later pages) until they expire."""
        shard = self._by_channel.get(channel)
        return shard is not None and shard.keeps_lost_rows()

    def follow_only(self, channel: str) -> None:
        """Stop leading ``channel``: keep its growing rows as stubs (another node leads it now)."""
        shard = self._by_channel.get(channel)
        if shard is not None:
            shard.follow_only()

    def promote(self, collection_id: int, channel: str, prefixes: Sequence[str]) -> list[str]:
        """Hold these sealed segments of ``channel`` in full (read from their files; stubs so far):
        the ones promoted. A segment whose files hold other rows than its stub here (two flushes
        raced: this node sealed it apart) stays a stub, and the log says so."""
        shard = self._by_channel.get(channel)
        coll = self.collections.get(collection_id)
        if shard is None or coll is None:
            return []
        info = coll.info
        mmap = self.mmap(info)
        done = []
        for prefix in prefixes:
            stub = next((s for s in shard.segments.values() if s.prefix == prefix and s.stub and s.sealed), None)
            if stub is None:
                continue
            columns, ts, indexes = self._read_sealed(info, prefix, stub.n, mmap)
            pk = info.schema.primary_field.name
            if len(ts) != stub.n or not np.array_equal(ts, stub.ts()) or not np.array_equal(columns[pk], stub.pks()):
                log.warning("channel %s: the files of segment %s hold other rows than this node sealed; "
                            "it stays served where it is", channel, prefix)
                continue
            seg = Segment.from_columns(stub.slot, stub.partition_id, info.schema, columns, ts, stub.del_ts())
            seg.segment_id, seg.prefix = stub.segment_id, prefix
            seg.indexes.update(indexes)
            with shard.lock:
                if shard.segments.get(stub.slot) is not stub:
                    continue  # compacted away meanwhile
                seg.adopt_deletes(stub)
                shard.swap(stub, seg)
            done.append(prefix)
        if done:
            self._schedule_index(info, [s for s in shard.segments.values() if s.prefix in done])
        return done

    def demote(self, collection_id: int, channel: str, prefixes: Sequence[str]) -> list[str]:
        """Keep only keys and timestamps of these sealed segments of ``channel`` (served elsewhere now):
        the ones demoted. Readers in flight keep the columns until they finish."""
        shard = self._by_channel.get(channel)
        coll = self.collections.get(collection_id)
        if shard is None or coll is None:
            return []
        gone = []
        with shard.lock:
            for seg in list(shard.segments.values()):
                if seg.sealed and not seg.stub and seg.prefix in prefixes:
                    shard.swap(seg, seg.stubbed())
                    gone.append(seg)
        self.evict_cached(coll.info, gone)
        return [s.prefix for s in gone if s.prefix]

    def release(self, collection_id: int, channels: Sequence[str] | None = None) -> None:
        """Release the collection, or only its ``channels`` (the collection goes with its last one)."""
        with self._lock:
            coll = self.collections.get(collection_id)
            if coll is None:
                return
            gone = [s for s in coll.shards if channels is None or s.channel in channels]
            coll.shards = [s for s in coll.shards if s not in gone]
            if not coll.shards:
                del self.collections[collection_id]
            for shard in gone:
                self._by_channel.pop(shard.channel, None)
                stop = self._tailers.pop(shard.channel, None)
                if stop is not None:
                    stop.set()
        self.evict_cached(coll.info, [seg for shard in gone for seg in shard.segments.values()])

    def evict_cached(self, info: CollectionInfo, segments: Sequence[Segment]) -> None:
        """Drop the local cache copies (an S3 store's) of ``segments``' files (columns and index files):
        after a release or a compaction swap nothing here reads them again; a reader in flight keeps its
        mapping (the file goes when it closes), and a later load fetches them again."""
        evict = getattr(self.objects, "evict_local", None)
        if evict is None:
            return
        names = sf.npy_names(info.schema)
        for idx in info.indexes:
            field = info.schema.field(idx.field_name)
            if field is not None:
                names.append(sf.index_key("", field.field_id, idx.index_id))
        keys = [f"{s.prefix}{name}" for s in segments if s.prefix is not None for name in names]
        try:
            evict(keys)
        except OSError as e:  # the copies stay; nothing else depends on it
            log.warning("cannot drop cached copies of %d segments of %s: %s", len(segments), info.name, e)

    def channels_held(self) -> dict[int, dict[str, int]]:
        """collection id -> {channel: live rows} of every shard held (what this node serves)."""
        with self._lock:
            return {cid: {s.channel: s.served_rows() for s in coll.shards} for cid, coll in self.collections.items()}

    def is_loaded(self, collection_id: int) -> bool:
        return collection_id in self.collections

    def refresh_from_store(self, collection_id: int) -> None:
        """``refresh_info`` with the collection's record as the metadata store holds it now. Every
        refresh of a node that has a store goes this way (a proxy's after its DDL, the catalog
        follower's, an insert's unknown field), one at a time: of two refreshes racing, the one that
        read later applies later, so a node never goes back to an older record."""
        with self._refresh_lock:
            held = self._partitions_held(collection_id)  # before the read (``_drop_gone_partitions``)
            info = read_collection(self.meta, collection_id)
            self.refresh_info(info)
            self._drop_partitions_not_in(info, held)

    def _partitions_held(self, collection_id: int) -> set[int]:
        coll = self.collections.get(collection_id)
        return set() if coll is None else {s.partition_id for sh in coll.shards for s in list(sh.segments.values())}

    def _drop_gone_partitions(self, collection_id: int) -> None:
        """Drop from the shards held the partitions the catalog no longer has. The proxy's DropPartition
        reaches only the nodes it knows, and one loading then holds nothing yet (``load`` registers its
        shards at the end, from a catalog read before the drop): such a node kept the dropped partition's
        rows for as long as it held the channel, hidden while the loaded partitions were a list, answered
        again once the whole collection was loaded (chaos finding 5). The partitions held are taken before
        the catalog is read: rows of one created after the read are not here yet (ids are never reused)."""
        held = self._partitions_held(collection_id)
        if not held:
            return
        try:
            info = read_collection(self.meta, collection_id)
        except errors.CollectionNotFound:
            return  # dropped meanwhile: its shards go with it
        self._drop_partitions_not_in(info, held)

    def _drop_partitions_not_in(self, info: CollectionInfo, held: set[int]) -> None:
        for partition_id in sorted(held - {p.id for p in info.partitions}):
            log.info("collection %s: partition %d is dropped; its rows go from this node", info.name, partition_id)
            self.drop_partition(info.id, partition_id)

    def refresh_info(self, info: CollectionInfo) -> None:
        coll = self.collections.get(info.id)
        if coll is not None:
            for shard in coll.shards:  # fields added (add_collection_field): every segment gets them
                if info.truncated_ts > shard.truncated_ts:  # truncate_collection
                    shard.truncate(info.truncated_ts)
                if shard.schema.version != info.schema.version:
                    with shard.lock:  # a compaction's sources kept for older snapshots follow too (Shard.retired)
                        for seg in [*shard.segments.values(), *(o for r in shard.retired for o in (*r.old, *r.lost))]:
                            seg.take_schema(info.schema)
                        shard.schema = info.schema
            coll.info = info

    # --- log delivery -------------------------------------------------------------
    def deliver(self, channel: str, position: int, record: Record, publish: bool = True) -> None:
        """Apply a channel's record; ``publish=False``, or a record whose append goes on (``more``):
        reads see it with the next one published (``Shard.publish``)."""
        shard = self._by_channel.get(channel)
        if shard is not None:
            if isinstance(record, InsertRecord) and unknown_columns(shard.schema, record.columns, record.field_ids):
                self._follow_schema(record.collection_id)  # a field added: a proxy sent it before our refresh
            shard.apply(position, record, publish and not record.more)
            if isinstance(record, InsertRecord):
                seg = shard.growing.get(record.partition_id)
                if seg is not None:
                    self._maybe_grow_index(channel, seg)

    def _follow_schema(self, collection_id: int) -> None:
        """Take the collection's schema from the catalog now (``refresh_info``): an insert carries a
        field added after this node's schema, sent by a proxy that saw the change before the proxy
        that made it refreshed the query nodes."""
        try:
            self.refresh_from_store(collection_id)
        except errors.VecdbError as e:
            log.warning("cannot read collection %d's schema: %s", collection_id, e)

    # --- growing (interim) indexes --------------------------------------------------
    def _interim_fields(self, info: CollectionInfo) -> list:
        """(field, index info) of the float vector fields that get an interim index while growing."""
        out = []
        for idx in info.indexes:
            field = info.schema.field(idx.field_name)
            if (field is not None and field.dtype.is_vector and field.dtype.name != "BINARY_VECTOR"
                    and idx.index_type not in _NO_INTERIM and not idx.index_type.startswith("GPU")):
                out.append((field, idx))
        return out

    def _maybe_grow_index(self, channel: str, seg: Segment) -> None:
        coll = self.collections.get(_collection_id(channel))
        if coll is None or id(seg) in self._interim_busy or seg.stub:
            return
        fields = self._interim_fields(coll.info)
        if not fields:
            return
        covered = min((seg.growing_indexes[f.name].ntotal if f.name in seg.growing_indexes else 0)
                      for f, _ in fields)
        if seg.n - covered >= GROWING_INDEX_BATCH:
            self._interim_busy.add(id(seg))
            self._interim.submit(self._grow_index, seg, fields)

    def _grow_index(self, seg: Segment, fields) -> None:
        """Index rows appended since the last pass, until caught up; inserts never wait for this.

        When the collection's index is HNSW, the interim index is built with the same parameters,
        so at seal time it is adopted as the sealed index (caught up, not rebuilt)."""
        try:
            while True:
                behind = 0
                for field, idx in fields:
                    with seg.index_lock:
                        if field.name in seg.indexes:
                            continue  # the sealed index is ready; no interim one is needed
                        index = seg.growing_indexes.get(field.name)
                        if index is None:
                            n = seg.n
                            index = create_index("HNSW", idx.metric_type, field.dim, _interim_params(idx),
                                                 field.dtype)
                            # a nullable field's null rows stay out of it (vecdb.index.nullable)
                            index = index_valid_rows(index, np.ascontiguousarray(seg.column(field.name, n)),
                                                     _validity(seg, field, 0, n), always=field.nullable)
                            seg.growing_indexes[field.name] = index
                        else:
                            _catch_up(index, seg, field.name)
                        behind = max(behind, seg.n - index.ntotal)
                if behind < GROWING_INDEX_BATCH:
                    return
        except Exception:  # the exact path still answers correctly
            log.exception("growing index update failed")
        finally:
            self._interim_busy.discard(id(seg))

    def drop_partition(self, collection_id: int, partition_id: int) -> None:
        coll = self.collections.get(collection_id)
        if coll:
            for shard in coll.shards:
                shard.drop_partition(partition_id)

    def growing_rows(self, channel: str) -> int:
        shard = self._by_channel.get(channel)
        return sum(s.n for s in shard.growing.values()) if shard else 0

    def serving_nodes(self) -> list[tuple[int, str]]:
        """The one node of a standalone server (Milvus numbers it 1 too)."""
        return [(STANDALONE_NODE_ID, "local")]

    def replicas(self, collection_id: int) -> list[dict]:
        """Standalone: one replica, this node leading every channel it holds."""
        coll = self.collections.get(collection_id)
        if coll is None:
            return []
        return [{"id": STANDALONE_NODE_ID, "nodes": [STANDALONE_NODE_ID],
                 "leaders": {s.channel: (STANDALONE_NODE_ID, "local") for s in coll.shards}}]

    def segment_infos(self, info: CollectionInfo, channels: Sequence[str] | None = None) -> list[dict]:
        """Each segment held; ``index_id`` / ``index_name``: the vector index it is searched with (0 / ""
        while it has none: growing, or sealed with its index not built or not loaded yet)."""
        coll = self._collection(info)
        self._learn_segment_ids(coll, channels)
        out = []
        for v in coll.snapshot(None, channels):
            idx = next((i for i in info.indexes if i.field_name in v.segment.indexes), None)
            out.append({"segment_id": v.segment.segment_id or 0, "partition_id": v.segment.partition_id,
                        "num_rows": v.n, "state": 3 if v.segment.sealed else 2,
                        "index_id": idx.index_id if idx else 0, "index_name": idx.index_name if idx else ""})
        return out

    def _learn_segment_ids(self, coll: LoadedCollection, channels: Sequence[str] | None) -> None:
        """Sealed here from the log, a segment learns its id once a data node persisted it (its ``seg/``
        record, found by the prefix both derive from the seal record); a cluster's node learns it as it
        loads the persisted segments, or with its index file."""
        for shard in coll.shards:
            if channels is not None and shard.channel not in channels:
                continue
            unknown = [s for s in list(shard.segments.values()) if s.sealed and s.segment_id is None and s.prefix]
            if unknown:
                ids = {r["prefix"]: r["segment_id"] for r in sf.list_segments(self.meta, coll.info.id, shard.channel)}
                for seg in unknown:
                    seg.segment_id = ids.get(seg.prefix)

    # --- indexes ------------------------------------------------------------------
    def schedule_indexes(self, info: CollectionInfo) -> None:
        coll = self.collections.get(info.id)
        if coll is not None:
            coll.info = info
            for shard in coll.shards:
                self._schedule_index(info, [s for s in shard.segments.values() if s.sealed])

    def _on_seal(self, collection_id: int, segments: list[Segment]) -> None:
        """Runs inside the write path: it only schedules work and never raises."""
        coll = self.collections.get(collection_id)
        if coll is None:
            return
        try:
            self._schedule_index(coll.info, segments)
        except RuntimeError:  # shutting down: the next load builds the index
            log.info("index build not scheduled: query node is closing")

    def _schedule_index(self, info: CollectionInfo, segments: list[Segment]) -> None:
        segments = [s for s in segments if not s.stub]  # served elsewhere
        self._warm_sparse(info, segments)
        self._warm_scalar(info, segments)
        if not self.build_indexes:  # the data node builds; switch to the files that are there
            self._adopt_ready({info.id})
            return
        for idx in info.indexes:
            field = info.schema.field(idx.field_name)
            if field is None or not field.dtype.is_vector or idx.index_type in _NO_BUILD:
                continue
            for seg in segments:
                if seg.n >= sf.MIN_ROWS_FOR_INDEX and field.name not in seg.indexes:
                    self._builder.submit(self._build_index, info, idx, field, seg)

    def _warm_sparse(self, info: CollectionInfo, segments: list[Segment]) -> None:
        """A sparse index is postings kept on the segment (vecdb.sparse), built at its first search
        otherwise: build them in the background when a sealed segment is loaded, sealed or indexed."""
        for idx in info.indexes:
            field = info.schema.field(idx.field_name)
            if field is None or idx.index_type not in sparse.SPARSE_INDEX_TYPES:
                continue
            drop = float(idx.params.get("drop_ratio_build", 0.0))
            for seg in segments:
                if seg.sealed:
                    self._builder.submit(_warm_postings, seg, field.name, drop)

    def _warm_scalar(self, info: CollectionInfo, segments: list[Segment]) -> None:
        """A scalar index (INVERTED, BITMAP, STL_SORT, Trie, AUTOINDEX) on a BOOL, numeric or VARCHAR
        field: each sealed segment's column sorted once, in the background, which filters on the
        field then read (vecdb.index.scalar); until it is there they scan. On an ARRAY field: its
        elements sorted (vecdb.index.array_elements). NGRAM: ``_warm_ngram``; an INVERTED index on a
        JSON path: ``_warm_json_path``."""
        for idx in info.indexes:
            field = info.schema.field(idx.field_name)
            if field is None or field.dtype.is_vector:
                continue
            if idx.index_type == "NGRAM":  # (a VARCHAR field's column is sorted too, below)
                self._warm_ngram(info, idx, field, segments)
            if field.dtype == DataType.JSON and idx.index_type in ("INVERTED", "AUTOINDEX"):
                self._warm_json_path(info, idx, segments)
            elif field.dtype == DataType.ARRAY and idx.index_type in array_elements.ARRAY_INDEX_TYPES:
                self._submit_sealed(segments, field.name, _warm_array_index, field.name)
            elif scalar_index.accelerates(field):
                self._submit_sealed(segments, field.name, _warm_scalar_index, field.name)

    def _submit_sealed(self, segments: list[Segment], column: str, warm, *args) -> None:
        """``warm(segment, *args)`` in the background for each sealed segment here holding ``column``."""
        for seg in segments:
            if seg.sealed and not seg.stub and column in seg.column_names():
                self._builder.submit(warm, seg, *args)

    def _warm_json_path(self, info: CollectionInfo, idx: IndexInfo, segments: list[Segment]) -> None:
        """A JSON path index: each sealed segment's values at the path that hold the cast type, sorted
        in the background, which comparisons with a constant of that type then read
        (vecdb.index.json_path); until then, and for the cast types it does not keep, they scan."""
        path = ngram_like.index_key(info.schema, idx.field_name, idx.params)
        cat = json_path.cast_category(idx.params)
        if path is None or cat is None:
            return
        self._submit_sealed(segments, path[0], _warm_json_path_index, (*path, cat))

    def _warm_ngram(self, info: CollectionInfo, idx: IndexInfo, field, segments: list[Segment]) -> None:
        """An NGRAM index: each sealed segment's n-gram postings of the field (or its JSON path), built
        in the background, which ``like`` filters then read (vecdb.index.ngram); until then they scan."""
        key = ngram_like.index_key(info.schema, idx.field_name, idx.params)
        if key is None:
            return
        grams = int(idx.params["min_gram"]), int(idx.params["max_gram"])
        self._submit_sealed(segments, key[0], _warm_ngram_index, key, grams, field.dtype != DataType.VARCHAR)

    def _build_index(self, info, idx, field, seg: Segment) -> None:
        """Build (or adopt the interim HNSW), save the file, then publish: once DescribeIndex counts a
        segment as indexed, a restart finds its index file instead of building again. The build runs
        under a record (``IndexBuilds``): one that failed or killed the process before is not run again."""
        try:
            with seg.index_lock:
                if field.name in seg.indexes:
                    return  # scheduled twice (seal and a new index description): built already
                with metrics.timed(metrics.INDEX_BUILD_LATENCY, metrics.INDEX_TASK_COUNT, self.metrics_node_id):
                    index = self.builds.run(info.id, idx.index_id, seg.prefix, seg.n,
                                            lambda: self._new_sealed_index(idx, field, seg))
                index.freeze()
                if seg.prefix is not None:
                    key = sf.index_key(seg.prefix, field.field_id, idx.index_id)
                    try:
                        sf.save_index(self.objects, index, key)
                        self.builds.finish(info.id, idx.index_id, seg.prefix, seg.n, key,
                                           segment_id=seg.segment_id)  # the file is whole (as a data node says)
                        if idx.index_type == "DISKANN":  # served from its file, mapped (vecdb.index.faiss_quantized)
                            index = self._read_index(key, True)
                            index.freeze()
                    except Exception:  # still serve it; the next load builds it again
                        if self._closed.is_set():  # a build that outlived close(): its stores are closed
                            log.info("index of segment %s not saved: the node stopped", seg.segment_id)
                        else:
                            log.exception("cannot save the index of segment %s", seg.segment_id)
                # the column first: whoever sees the index also sees its one copy of the vectors
                seg.share_column(field.name, index.raw_vectors())
                seg.indexes[field.name] = index
                seg.growing_indexes.pop(field.name, None)
        except BuildRefused as e:  # recorded before: the segment stays on exact search
            log.warning("index of segment %s not built: %s", seg.prefix, e.reason)
        except Exception:  # recorded as failed; the segment stays on exact search, still correct
            log.exception("index build failed for segment %s", seg.prefix or seg.segment_id)

    @staticmethod
    def _new_sealed_index(idx, field, seg: Segment):
        interim = seg.growing_indexes.get(field.name)
        if interim is not None and idx.index_type == "HNSW":
            _catch_up(interim, seg, field.name)  # built like the real one: adopt it
            return interim
        n = seg.n
        return new_index(idx, field, seg.column(field.name, n), _validity(seg, field, 0, n))

    # --- finished index files (a node that does not build) ---------------------------
    def _ready_reset(self, pairs: list[tuple[str, bytes]]) -> None:
        ready = {}
        for key, raw in pairs:
            entry = _finished_entry(key, raw)
            if entry is not None:
                ready[entry[0]] = entry[1]
        with self._ready_lock:
            self._ready = ready
        self._adopt_ready()

    def _ready_events(self, events: list[WatchEvent]) -> None:
        touched = set()
        with self._ready_lock:
            for ev in events:
                if ev.kind == PUT:
                    assert ev.value is not None
                    entry = _finished_entry(ev.key, ev.value)
                    if entry is not None:
                        self._ready[entry[0]] = entry[1]
                        touched.add(entry[0][0])
                elif (parsed := index_builds.parse_key(ev.key)) is not None:
                    old = self._ready.get(parsed)
                    if old is not None and old[0] == ev.key:
                        del self._ready[parsed]
        if touched:
            self._adopt_ready(touched)

    def _sweep_ready(self) -> None:
        while not self._closed.wait(ADOPT_SWEEP_SECONDS):
            try:
                self._adopt_ready()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("looking for finished index files failed")

    def _adopt_ready(self, collection_ids: set[int] | None = None) -> None:
        """Start loading the finished index file of every sealed segment held without its index."""
        if self.build_indexes:
            return
        with self._ready_lock:
            ready = dict(self._ready)
        if not ready:
            return
        for cid, coll in list(self.collections.items()):
            if collection_ids is not None and cid not in collection_ids:
                continue
            info = coll.info
            targets = [(idx, f) for idx in info.indexes if (f := info.schema.field(idx.field_name)) is not None
                       and f.dtype.is_vector and file_built(idx.index_type)]
            mmap = self.mmap(info)
            for shard in coll.shards:
                for seg in list(shard.segments.values()):
                    if not seg.sealed or seg.prefix is None or seg.stub:
                        continue
                    for idx, field in targets:
                        entry = ready.get((cid, idx.index_id, seg.prefix))
                        token = (id(seg), field.name)
                        if entry is None or field.name in seg.indexes or entry[1] in self._unusable:
                            continue
                        with self._ready_lock:  # the watch's thread and the sweep's both get here
                            if token in self._adopting:
                                continue
                            self._adopting.add(token)
                        try:
                            self._builder.submit(self._adopt_file, seg, field, entry, mmap or _mapped(idx), token)
                        except RuntimeError:  # closing
                            self._adopting.discard(token)
                            return

    def _adopt_file(self, seg: Segment, field, entry: tuple[str, str, int | None], mmap: bool,
                    token: tuple[int, str]) -> None:
        """Load a finished index file and switch ``seg`` to it: until the one assignment below, reads
        use the interim index or exact search; after it, the file's index."""
        _, key, segment_id = entry
        try:
            index = self._read_index(key, mmap)
            if index.ntotal != seg.n:
                log.warning("index %s holds %d rows, its segment %d: the segment stays on exact search",
                            key, index.ntotal, seg.n)
                self._unusable.add(key)
                return
            index.freeze()
            with seg.index_lock:
                if field.name in seg.indexes:
                    return
                seg.share_column(field.name, index.raw_vectors())  # as in the build: before the index shows
                seg.indexes[field.name] = index
                seg.growing_indexes.pop(field.name, None)
                if seg.segment_id is None and segment_id is not None:
                    seg.segment_id = segment_id
            log.info("segment %s serves its %s index from %s", seg.prefix, field.name, key)
        except errors.KeyNotFound:  # the segment went (compacted, dropped) with its files
            log.info("index file %s is gone", key)
        except Exception:  # the segment stays on exact search, still correct
            log.exception("cannot load index %s", key)
            self._unusable.add(key)
        finally:
            self._adopting.discard(token)

    def _load_saved_indexes(self, info: CollectionInfo, prefix: str, rows: int, mmap: bool) -> dict:
        """Index files built before (by the data node's indexer, or by this node before a restart),
        by field name; memory-mapped when the collection or the index asks for mmap. A file that does not cover
        exactly the segment's ``rows`` is ignored (the index is built again)."""
        out = {}
        for idx in info.indexes:
            field = info.schema.field(idx.field_name)
            if field is None or not field.dtype.is_vector:
                continue
            key = sf.index_key(prefix, field.field_id, idx.index_id)
            if not self.objects.exists(key):
                continue
            try:
                index = self._read_index(key, mmap or _mapped(idx))
                if index.ntotal != rows:
                    log.warning("index %s holds %d rows, its segment %d; it will be rebuilt", key, index.ntotal, rows)
                    continue
                index.freeze()
                out[field.name] = index
            except Exception:  # rebuilt in the background instead
                log.exception("cannot load index %s; it will be rebuilt", key)
        return out

    def _read_index(self, key: str, mmap: bool):
        path = self.objects.local_path(key)  # a remote store with a cache gives its local copy
        if path is not None:
            return load_index(path, mmap=mmap)
        with tempfile.NamedTemporaryFile(prefix="vecdb-index-") as f:  # no local copy: read it whole
            f.write(self.objects.get(key))
            f.flush()
            return load_index(f.name, mmap=False)

    def index_state(self, collection_id: int, field_name: str,
                    channels: Sequence[str] | None = None) -> tuple[int, int]:
        """(rows indexed or not needing an index, total rows) for index progress, over the sealed
        segments only: growing rows are in neither count, as Milvus's datacoord counts flushed
        segments only and as the released collection's progress (the segment files) counts them, so
        describe_index says the same loaded or not."""
        segments = self.index_segments(collection_id, field_name, channels)
        return sum(s[2] for s in segments), sum(s[1] for s in segments)

    def index_segments(self, collection_id: int, field_name: str,
                       channels: Sequence[str] | None = None) -> list[tuple[int, int, int]]:
        """``index_state`` per sealed segment: (segment id, rows, rows indexed or needing no index); id 0
        for a segment not persisted yet (the proxy counts a persisted one once over the nodes holding it)."""
        coll = self.collections.get(collection_id)
        if coll is None:
            return []
        idx = coll.info.index_for_field(field_name)
        field = coll.info.schema.field(field_name)
        # a scalar index is finished at once: filters scan until a segment's is built (vecdb.index.scalar)
        exact = idx is None or idx.index_type in _NO_BUILD or field is None or not field.dtype.is_vector
        out = []
        for view in coll.snapshot(None, channels):
            if not view.segment.sealed:
                continue
            done = exact or view.n < sf.MIN_ROWS_FOR_INDEX or field_name in view.segment.indexes
            out.append((view.segment.segment_id or 0, view.n, view.n if done else 0))
        return out

    # --- reads ------------------------------------------------------------------
    def _collection(self, info: CollectionInfo) -> LoadedCollection:
        coll = self.collections.get(info.id)
        if coll is None:
            raise errors.CollectionNotLoaded(f"collection not loaded[collection={info.name}]")
        return coll

    def _read_views(self, info: CollectionInfo, partition_ids: set[int] | None, channels: Sequence[str] | None,
                    scopes: Mapping[str, ReadScope] | None, *, sealed_only: bool = False,
                    ts: int | None = None) -> list[SegmentView]:
        """What a read of ``info`` at snapshot ``ts`` looks at (``LoadedCollection.snapshot``; ``sealed_only``:
        not the growing segments), each view with the collection's TTL (rows older than the read's snapshot
        by more are expired, as Milvus's segcore masks them)."""
        coll = self._collection(info)
        if info.schema.version > coll.info.schema.version:
            # the reader saw a field added before this node took it: add_collection_field changes the
            # catalog, then refreshes the nodes, and a read between asks for the new field's column
            self.refresh_from_store(info.id)
        views = coll.snapshot(partition_ids, channels, scopes, reading=True, ts=ts)
        if sealed_only:
            views = [v for v in views if v.segment.sealed]
        span = info.ttl_span
        return [SegmentView(v.segment, v.n, span, v.horizon) for v in views] if span else views

    @metrics.querynode_read("search")
    def search(self, info: CollectionInfo, spec: executor.SearchSpec, partition_ids: set[int] | None,
               output_fields: Sequence[str], channels: Sequence[str] | None = None,
               scopes: Mapping[str, ReadScope] | None = None) -> executor.Hits:
        """Over every channel held, or over ``channels`` (a proxy's share of a sharded read), or the
        part of them ``scopes`` names."""
        views = self._read_views(info, partition_ids, channels, scopes, ts=spec.ts or None)
        hits = executor.search(views, spec, info.schema.primary_field.name, output_fields)
        for name in output_fields:
            if name not in hits.columns or not len(hits.pks):
                hits.columns[name] = output_column(info.schema, name)
        return hits

    def bm25_statistics(self, info: CollectionInfo, spec: executor.SearchSpec, partition_ids: set[int] | None,
                        channels: Sequence[str] | None = None,
                        scopes: Mapping[str, ReadScope] | None = None) -> dict:
        """``vecdb.bm25.statistics`` over what ``search`` with the same arguments reads."""
        return bm25.statistics(self._read_views(info, partition_ids, channels, scopes, ts=spec.ts or None), spec)

    @metrics.querynode_read("query")
    def query(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              output_fields: Sequence[str], limit: int | None, offset: int,
              channels: Sequence[str] | None = None, scopes: Mapping[str, ReadScope] | None = None,
              *, sealed_only: bool = False) -> dict[str, np.ndarray]:
        views = self._read_views(info, partition_ids, channels, scopes, sealed_only=sealed_only, ts=ts)
        if not views:
            return {n: output_column(info.schema, n) for n in output_fields}
        return executor.query(views, ts, flt, output_fields, info.schema.primary_field.name, limit, offset)

    @metrics.querynode_read("query")
    def query_partials(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                       spec: PartialSpec, channels: Sequence[str] | None = None,
                       scopes: Mapping[str, ReadScope] | None = None, *,
                       sealed_only: bool = False) -> dict[str, np.ndarray]:
        """A query aggregation's per-group partials over the rows ``query`` would return
        (``vecdb.group_partials``): what the proxy merges instead of every matching row."""
        views = self._read_views(info, partition_ids, channels, scopes, sealed_only=sealed_only, ts=ts)
        empty = {n: output_column(info.schema, n) for n in fetched(info.schema, spec)}
        return executor.aggregate(views, ts, flt, info.schema, spec, empty)

    @metrics.querynode_read("query")
    def query_top(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
                  output_fields: Sequence[str], order: Order, limit: int, offset: int,
                  channels: Sequence[str] | None = None, scopes: Mapping[str, ReadScope] | None = None, *,
                  sealed_only: bool = False) -> dict[str, np.ndarray]:
        """A plain query's ORDER BY with a limit: the rows ``query`` would return, ordered by ``order``
        (ties by primary key; ``vecdb.top_rows``), ``offset`` skipped, at most ``limit``; asked by the
        proxy with offset 0, ``output_fields`` holding the sort columns (``TopSpec.columns``) its merge
        reads."""
        views = self._read_views(info, partition_ids, channels, scopes, sealed_only=sealed_only, ts=ts)
        if not views:
            return {n: output_column(info.schema, n) for n in output_fields}
        cols = executor.query_top(views, ts, flt, output_fields, TopSpec.of(info.schema, order, limit + offset))
        return {n: c[offset:] for n, c in cols.items()} if offset else cols

    @metrics.querynode_read("count")
    def count(self, info: CollectionInfo, ts: int, flt: RowFilter | None, partition_ids: set[int] | None,
              channels: Sequence[str] | None = None, scopes: Mapping[str, ReadScope] | None = None,
              *, sealed_only: bool = False) -> int:
        views = self._read_views(info, partition_ids, channels, scopes, sealed_only=sealed_only, ts=ts)
        return executor.count(views, ts, flt)

    def num_rows(self, info: CollectionInfo) -> int:
        coll = self.collections.get(info.id)
        return sum(len(s.pk_index) for s in coll.shards) if coll else 0

    def close(self) -> None:
        self._closed.set()
        for shard in list(self._by_channel.values()):  # Strong reads waiting on a channel: answered now
            shard.close()
        if self._ready_watch is not None:
            self._ready_watch.close()
        metrics.untrack_querynode(self)
        self.compactions.close()
        for stop in self._tailers.values():
            stop.set()
        self._builder.shutdown(wait=False, cancel_futures=True)
        self._interim.shutdown(wait=False, cancel_futures=True)
        self.builds.close()


def _mapped(idx: IndexInfo) -> bool:
    """Whether the index's own ``mmap.enabled`` (alter_index_properties) asks for its files memory-mapped."""
    return idx.properties.get("mmap.enabled", "").strip().lower() == "true"


class _Truncated(Exception):
    """The log no longer holds records a load needs (truncated below a newer checkpoint)."""


def _finished_entry(key: str, raw: bytes) -> tuple[tuple[int, int, str], tuple[str, str, int | None]] | None:
    """A finished build record -> ((collection id, index id, segment prefix), (record key, file key,
    segment id)); None for any other record."""
    if b'"finished"' not in raw:
        return None
    parsed = index_builds.parse_key(key)
    rec = json.loads(raw)
    if parsed is None or rec.get("state") != index_builds.FINISHED:
        return None
    return parsed, (key, rec["key"], rec.get("segment_id"))


def _interim_params(idx) -> dict:
    """Growing segments use the collection's own HNSW parameters, else a light default HNSW."""
    return idx.params if idx.index_type == "HNSW" else GROWING_INDEX_PARAMS


def _validity(seg: Segment, field, lo: int, hi: int) -> np.ndarray | None:
    """Rows [lo, hi) of a nullable vector field's validity mask; None for a field that is not nullable."""
    if not field.nullable:
        return None
    return np.asarray(seg.column(valid_key(field.name), hi)[lo:hi], bool)


def _catch_up(index, seg: Segment, field_name: str) -> None:
    n = seg.n
    if n > index.ntotal:
        rows = np.ascontiguousarray(seg.column(field_name, n)[index.ntotal:n])
        if isinstance(index, ValidRowsIndex):  # a nullable field's index: its null rows stay out
            field = seg.schema.field(field_name)
            index.add(rows, _validity(seg, field, index.ntotal, n) if field is not None else None)
        else:
            index.add(rows)


def _collection_id(channel: str) -> int:
    """Channels are named ``c<collection id>-s<shard>``."""
    return int(channel[1:channel.index("-")])


def _warm_scalar_index(seg: Segment, name: str) -> None:
    try:
        scalar_index.build_segment_scalar_index(seg, name)
    except Exception:  # filters on the field scan instead
        log.exception("scalar index of segment %s not built", seg.segment_id)


def _warm_array_index(seg: Segment, name: str) -> None:
    try:
        array_elements.build_segment_array_index(seg, name)
    except Exception:  # array_contains filters on the field scan instead
        log.exception("ARRAY index of segment %s not built", seg.segment_id)


def _warm_json_path_index(seg: Segment, key: tuple) -> None:
    try:
        json_path.build_segment_json_index(seg, key)
    except Exception:  # filters on the path scan instead
        log.exception("JSON path index of segment %s not built", seg.segment_id)


def _warm_ngram_index(seg: Segment, key: tuple, grams: tuple[int, int], json: bool) -> None:
    try:
        ngram.build_segment_ngram_index(
            seg, key, *grams, lambda: ngram_like.indexed_strings(seg.column(key[0]), key[1], json))
    except Exception:  # like filters on the field scan instead
        log.exception("ngram index of segment %s not built", seg.segment_id)


def _warm_postings(seg: Segment, name: str, drop_ratio_build: float) -> None:
    try:
        sparse.segment_postings(seg, name, seg.n, drop_ratio_build)
    except Exception:  # the first search builds them instead
        log.exception("sparse postings of segment %s not built", seg.segment_id)

"""Data node: turns a channel's log into sealed segment files.

``persist(info, channel, upto)`` reads the channel from its checkpoint to ``upto``
(a seal record's position), writes one segment per partition and seal record plus a
delta file for the deletes, then registers them and moves the checkpoint in one
metadata transaction, and finally lets the log drop what is now in files. A crash at
any point leaves either the old checkpoint (the log still has everything) or the new
one (the files have everything): nothing acknowledged is lost.

A persist that covers several seal records (two flushes racing, or waiting on a data node
that died, persisted by the proxy whose seal record is the later) cuts a segment at each of
them, as every query node following the channel sealed it (``Shard.apply``): the files of a
segment hold the rows a query node holds under its name. One segment for all of them, named by
the last, held rows the query nodes hold under the earlier names too, so a node serving it
in full and the channel's leader, which reads everything but the segments named, both
counted those rows.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from vecdb.catalog_model import CollectionInfo
from vecdb.cdc.follower import cdc_floor
from vecdb.column_defaults import current_columns, missing_column
from vecdb.config import CompactionSettings
from vecdb.coord import index_builds
from vecdb.coord.snapshots import delete_unpinned
from vecdb.datanode import segment_listing
from vecdb.datanode.compactor import CompactionOptions, Compactor, compaction_state, request_compaction
from vecdb.datanode.indexer import SegmentIndexer
from vecdb.datanode.row_stats import RowStats
from vecdb.function_columns import function_output
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, decode
from vecdb.roles import IdSource
from vecdb.schema import CollectionSchema, valid_key
from vecdb.storage import segments as sf
from vecdb.storage.base import Log, MetaStore, ObjectStore

log = logging.getLogger(__name__)

# A test switch for the crash tests: "abort" kills the process inside a persist, after its files are
# written and before its metadata is committed (as a kill -9 in the middle of a flush would). Never
# set in production.
FAULT_ENV = "VECDB_FAULT_PERSIST"


class DataNode:
    def __init__(self, wal: Log, meta: MetaStore, objects: ObjectStore, ids: IdSource, index_threads: int = 1,
                 truncate: bool = True, node_id: str | None = None, compaction: CompactionSettings | None = None):
        """``truncate``: discard flushed records from the log. Only where every reader of the log
        is in this process (standalone); in a cluster, query nodes that follow the channels may
        not have applied them yet (docs/cluster.md)."""
        self.truncate = truncate
        self.node_id = node_id  # a data node process's or a cluster proxy's: recorded in the segments it writes ("by")
        self.ids = ids
        self.log = wal
        self.meta = meta
        self.objects = objects
        self.indexer = SegmentIndexer(meta, objects, index_threads, node_id)
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self.compactor = Compactor(self, compaction)  # started by the process that owns channels
        self.stats = RowStats(meta, wal)

    def persist(self, info: CollectionInfo, channel: str, upto: int) -> list[dict]:
        """Persist records in (checkpoint, upto]; returns the new segments' infos.

        The checkpoint moves by compare-and-set: when another process persisted the channel
        meanwhile (a data node and a proxy that persists itself, or two data nodes while a channel
        moves), this attempt's metadata is not committed, its files are left to the garbage
        collector, and it starts over from the new checkpoint, so no record is persisted twice.
        Object keys are named by ``upto`` (a seal record's position): a process that persists up to
        the same record writes the same rows under the same keys, so nothing deletes them here."""
        with self._locks[channel]:
            while True:
                segments = self._persist_once(info, channel, upto)
                if segments is not None:
                    self.compactor.changed(info.id)  # the automatic compaction check
                    return segments

    def _persist_once(self, info: CollectionInfo, channel: str, upto: int) -> list[dict] | None:
        """One attempt of ``persist``; None when the checkpoint moved under it."""
        ckpt_key = f"ckpt/{info.id}/{channel}"
        raw_start = self.meta.get(ckpt_key)
        start = int(raw_start) if raw_start else 0
        if upto <= start:
            return []
        inserts, deletes = self._read_records(channel, start, upto)
        puts: dict[str, bytes] = {}
        segments = []
        live_partitions = {p.id for p in info.partitions}
        for (end, pid), recs in sorted(inserts.items()):
            if pid not in live_partitions:
                continue  # partition dropped meanwhile
            # written before a truncate: gone; a dropped field's column under a re-added field's name: left out
            recs = [replace(r, columns=current_columns(info.schema, r.columns, r.field_ids))
                    for r in recs if r.ts > info.truncated_ts]
            if not recs:
                continue
            prefix = sf.segment_prefix(info.id, channel, end, pid)
            columns = {f.name: _chunks(info.schema, recs, f.name) for f in info.schema.fields}
            columns.update({valid_key(f.name): _chunks(info.schema, recs, valid_key(f.name))
                            for f in info.schema.fields if f.nullable})
            ts = np.concatenate([np.full(r.num_rows, r.ts, np.uint64) for r in recs])
            sf.write_segment(self.objects, prefix, info.schema, columns, ts)
            seg = {"segment_id": self.ids.allocate(), "partition_id": pid, "num_rows": len(ts),
                   "prefix": prefix, "position": end}
            if self.node_id is not None:
                seg["by"] = self.node_id
            segments.append(seg)
            puts[f"seg/{info.id}/{channel}/{end:020d}-{pid}"] = json.dumps(seg).encode()
        if deletes:
            key = f"deltas/{info.id}/{channel}/{upto:020d}.vcol"
            sf.write_delta(self.objects, key, np.concatenate([pks for pks, _, _ in deletes]),
                           np.concatenate([ts for _, ts, _ in deletes]),
                           np.concatenate([pids for _, _, pids in deletes]))
            puts[f"delta/{info.id}/{channel}/{upto:020d}"] = key.encode()
        puts[ckpt_key] = str(upto).encode()
        if os.environ.get(FAULT_ENV) == "abort":  # crash tests: files written, metadata not committed
            os.abort()
        if not self.meta.txn(puts=puts, expect={ckpt_key: raw_start}):
            # The files written are left where they are, for the garbage collector (vecdb.coord.gc: what
            # no seg/ or delta/ key registers at or below the checkpoint): their keys are named by seal
            # records, so a process persisting the channel now (the winner's next persist, a third one)
            # may be writing the same keys to register them, and a delete here of what is not registered
            # yet could remove them a moment after it registered them: a segment without its files,
            # which no query node can load (found by the chaos hunt).
            log.info("channel %s was persisted by another process meanwhile; starting over", channel)
            return None
        if self.truncate:  # no further than a CDC task following the channel applied (vecdb.cdc.follower)
            floor = cdc_floor(self.meta, channel, upto, info.id)
            self.log.truncate_before(channel, upto + 1 if floor is None else min(upto, floor) + 1)
        return segments

    def _read_records(self, channel: str, start: int, upto: int):
        """The channel's records in (start, upto]: inserts by (the position of the seal record that ends
        their segment, partition), deletes as (pks, ts, partition ids) arrays (-1: every partition)."""
        inserts: dict[tuple[int, int], list[InsertRecord]] = defaultdict(list)
        deletes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        unsealed: dict[int, list[InsertRecord]] = defaultdict(list)  # since the last seal record read
        for pos, payload in self.log.read(channel, start + 1, upto):
            rec = decode(payload)
            if isinstance(rec, InsertRecord):
                unsealed[rec.partition_id].append(rec)
            elif isinstance(rec, DeleteRecord):
                deletes.append((rec.pks, np.full(len(rec.pks), rec.ts, np.uint64),
                                np.full(len(rec.pks), rec.partition_id, np.int64)))
            elif isinstance(rec, SealRecord):
                for pid, recs in unsealed.items():
                    inserts[(pos, pid)] = recs
                unsealed = defaultdict(list)
        for pid, recs in unsealed.items():  # (``upto`` is a seal record's: none is left but a caller's own)
            inserts[(upto, pid)] = recs
        return inserts, deletes

    def compact(self, info: CollectionInfo, clustering: bool = False, options: CompactionOptions | None = None) -> int:
        """client.compact: put a request record (``vecdb.datanode.compactor``) and carry it out, by
        this process's compactor when it runs, else in a thread now; returns the compaction id."""
        compaction_id = self.ids.allocate()
        request_compaction(self.meta, compaction_id, info, self.compactor.settings.keep_requests, clustering, options)
        if self.compactor.running:
            self.compactor.wake()
        else:
            threading.Thread(target=self.compactor.carry_out, args=(info.id, compaction_id), name="compaction",
                             daemon=True).start()
        return compaction_id

    def compaction(self, compaction_id: int) -> dict | None:
        """A compaction request's record (state and plans per channel); None when unknown."""
        return compaction_state(self.meta, compaction_id)

    def compactions(self, collection_id: int) -> list[dict]:
        """The collection's compaction request records still kept, oldest first."""
        return segment_listing.collection_requests(self.meta, collection_id)

    def segment_list(self, info: CollectionInfo, states: Iterable[int] = ()) -> list[dict]:
        """The collection's segments with a Milvus state each (``vecdb.datanode.segment_listing``)."""
        return segment_listing.list_segments(self.meta, info.id, info.channels, states)

    def close(self) -> None:
        self.compactor.close()
        self.indexer.close()

    def segments(self, info: CollectionInfo) -> list[dict]:
        return [s for ch in info.channels for s in sf.list_segments(self.meta, info.id, ch)]

    def row_count(self, info: CollectionInfo, partition_ids: Iterable[int] | None = None) -> int:
        return self.stats.row_count(info, partition_ids)

    def seals_itself(self) -> bool:
        """The in-process data node does not follow the log: the proxy's writes apply the seal policy
        (``vecdb.coord.sealer``)."""
        return False

    def drop_collection(self, info: CollectionInfo) -> None:
        self.stats.forget(info.id)
        for channel in info.channels:
            with self._locks[channel]:
                # what a snapshot names stays (vecdb.coord.snapshots); the collector deletes it once unpinned
                delete_unpinned(self.meta, self.objects, f"segments/{info.id}/{channel}/")
                delete_unpinned(self.meta, self.objects, f"deltas/{info.id}/{channel}/")
                self.meta.txn(delete_prefixes=[f"seg/{info.id}/{channel}/", f"delta/{info.id}/{channel}/"],
                              deletes=[f"ckpt/{info.id}/{channel}"])
                self.log.drop_channel(channel)
            self.forget_channel(channel)
        self.meta.txn(delete_prefixes=[index_builds.collection_prefix(info.id)])

    def forget_channel(self, channel: str) -> None:
        """A dropped collection's channel: its lock goes (a channel's name is never used again: it names its
        collection's id); a data node process calls it when it stops following the channel, since
        ``drop_collection`` runs in the proxy that handled the drop."""
        self._locks.pop(channel, None)

    def forget_index_builds(self, collection_id: int, index_ids: Iterable[int]) -> None:
        """A dropped index's build records go with it (a new index gets a new id and builds afresh)."""
        self.meta.txn(delete_prefixes=[index_builds.index_prefix(collection_id, i) for i in index_ids])

    def truncate_collection(self, info: CollectionInfo, ts: int) -> None:
        """truncate_collection: the sealed segments whose rows were all written at or before ``ts``
        go (metadata, then files); one that also holds later rows (persisted while the truncate ran)
        stays, its older rows dropped where it is read (``truncated_ts``). Persists after this skip
        records at or before ``info.truncated_ts``."""
        self.stats.forget(info.id)
        for channel in info.channels:
            with self._locks[channel]:
                doomed = {}
                for k, v in self.meta.scan(f"seg/{info.id}/{channel}/"):
                    seg = json.loads(v)
                    row_ts = sf.read_ts(self.objects, seg["prefix"])
                    if not len(row_ts) or int(row_ts.max()) <= ts:
                        doomed[k] = seg
                self.meta.txn(deletes=list(doomed))
                for seg in doomed.values():
                    delete_unpinned(self.meta, self.objects, seg["prefix"])

    def drop_partition(self, info: CollectionInfo, partition_id: int) -> None:
        for channel in info.channels:
            with self._locks[channel]:
                doomed = {k: seg for k, v in self.meta.scan(f"seg/{info.id}/{channel}/")
                          if (seg := json.loads(v))["partition_id"] == partition_id}
                # the keys first: a segment listed is never one whose files are gone (a compaction planning
                # meanwhile, a crash between the two steps); files left by a crash are the collector's
                self.meta.txn(deletes=list(doomed))
                for seg in doomed.values():
                    delete_unpinned(self.meta, self.objects, seg["prefix"])


def _chunks(schema: CollectionSchema, recs: list[InsertRecord], name: str) -> list[np.ndarray]:
    """One column of a run of insert records, chunk per record (written without concatenating); a
    record written before its field was added holds nulls (or the default) there."""
    return [r.columns[name] if name in r.columns else _absent(schema, name, r) for r in recs]


def _absent(schema: CollectionSchema, name: str, rec: InsertRecord) -> np.ndarray:
    """A record's column it was written without: a function's output added since (add_function_field)
    computed from its input, a field added since null or its default."""
    col = function_output(schema, name, rec.columns)
    return missing_column(schema, name, rec.num_rows, rec.columns) if col is None else col

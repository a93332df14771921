"""One CDC task at work: the source's catalog replayed on the target as DDL, the source's log
channels replayed as DML, each channel's applied position committed after the target acknowledged.

DDL is replayed by reconciling state, not by replaying calls: whenever the source's catalog
version moves, the task reads the source catalog (``db/``, ``coll/``, ``alias/``) and makes the
target match it for the collections it replicates (``vecdb.cdc.catalog_sync``, a mixin of
``Replicator``). What is written to the target goes through pymilvus (``vecdb.cdc.target``).

DML: each channel of each replicated collection is followed in the source log from the task's
position; consecutive records of one kind are batched (inserts of one partition without a primary
key twice, deletes) and applied in log order, inserts and upserts as upserts by primary key and
deletes by primary key, so applying a record a second time after a crash changes nothing. The
channel's position is committed only after the target acknowledged the batch. A gap in a channel
(the log was truncated past the task's position: beyond ``CDC_RETENTION`` records, see
``vecdb.datanode.flusher``) fails the task loudly: it cannot be replayed, only re-synced.

With start ``copy``, a collection the task takes up that already exists on the source is first
copied (``vecdb.cdc.base_copy``): its channels' end positions are recorded, its rows copied through
the source's Milvus API, and only then are its channels applied from those positions.

Any other failure (the target is down, refuses a call, the source is unreachable) is retried with
backoff (0.5 s doubling to 10 s) from the committed positions; the task keeps its state ``running``
and reports the error as ``last_error`` until a pass succeeds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from vecdb import timestamp
from vecdb.catalog_model import DEFAULT_DB, CollectionInfo
from vecdb.cdc import log_order
from vecdb.cdc.catalog_sync import CatalogSync
from vecdb.cdc.follower import HOLD_NEW, cdc_positions_key
from vecdb.cdc.target import Target, by_namespace, delete_rows, rows_of, upsert_rows
from vecdb.cdc.task import FAILED, PAUSED, RUNNING, Task, TaskFailed, TaskStore
from vecdb.column_defaults import current_columns
from vecdb.log_records import DeleteRecord, InsertRecord, decode
from vecdb.schema import CollectionSchema
from vecdb.storage import stall
from vecdb.storage.base import Follower, Log, MetaStore

log = logging.getLogger(__name__)
# (task id, collection id) of the external collections a task skips, each logged once
_EXTERNAL_SKIPPED: set[tuple[str, int]] = set()

BATCH_ROWS = 2000  # rows per upsert call
PUBLISH_SECONDS = 1.0
REPORT_SECONDS = 0.25  # how often lag is measured
IDLE_WAIT = 0.05  # seconds a pass that found no record waits before the next
# a log that hears its channels' tips (JetStream, ``heard_last``): a channel's end for the lag report comes
# from them, and from the log itself this often (a tip is at most once)
END_LOOK_SECONDS = 60.0


class _CopiedAgain(Exception):
    """A gap in a channel made its collection be copied again: what was read of it is left."""


@dataclass
class Progress:
    """What a running task reports (API and /metrics)."""

    state: str = RUNNING
    reason: str = ""
    last_error: str = ""
    last_error_at: float = 0.0
    applied_records: int = 0
    applied_rows: int = 0
    lag_records: int = 0
    lag_seconds: float = 0.0
    channels: dict[str, dict[str, int]] = field(default_factory=dict)
    copying: str = ""  # start "copy": the collection ("db.name") whose base copy runs now
    copy_pending: int = 0  # collections whose base copy is still to do (that one included)
    copied_rows: int = 0  # rows base-copied by this run of the task
    reported_at: float = 0.0  # when lag was last measured (time.time(); 0: not yet)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- the source ------------------------------------------------------------------------------------

def open_source(source: dict[str, Any]) -> tuple[MetaStore, Log]:
    from vecdb.config import StorageSettings
    from vecdb.storage import backends

    storage = StorageSettings(**{k: v for k, v in source.items() if k not in ("uri", "token")})  # (base copy's)
    meta = backends.open_meta(storage)
    try:
        wal = backends.open_log(storage)
    except BaseException:
        meta.close()
        raise
    return meta, wal


def read_catalog(meta: MetaStore) -> tuple[dict[int, CollectionInfo], dict[str, dict[str, str]],
                                          dict[tuple[str, str], int]]:
    """The source's collections, databases (name -> properties) and aliases."""
    colls = {int(k[len("coll/"):]): CollectionInfo.from_json(v) for k, v in meta.scan("coll/")}
    dbs = {k[len("db/"):]: dict(json.loads(v).get("properties") or {}) for k, v in meta.scan("db/")}
    aliases = {}
    for k, v in meta.scan("alias/"):
        db, _, alias = k[len("alias/"):].partition("/")
        aliases[(db, alias)] = int(v)
    return colls, dbs, aliases


# --- the task ----------------------------------------------------------------------------------

@dataclass
class _Tail:
    """A channel this task follows: its follower of the source log and that follower's stall check."""

    follower: Follower
    watch: stall.StallWatch


class Replicator(CatalogSync):
    """Runs one task on a thread of its own until ``stop()``; ``progress`` says how it goes."""

    def __init__(self, task: Task, store: TaskStore, on_change=None, source: tuple[MetaStore, Log] | None = None):
        """``source``: the source's metadata store and log, already open in this process (a deployment
        replicating itself, ``vecdb.cdc.replicate_manager``): borrowed, never closed here; None: opened
        from the task's ``source`` settings."""
        self.task, self.store = task, store
        self.on_change = on_change  # called with the task when it stops by itself (failed)
        self._borrowed = source
        self.progress = Progress(state=task.state, reason=task.reason)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._meta: MetaStore | None = None
        self._log: Log | None = None
        self._target: Target | None = None
        self._tails: dict[str, _Tail] = {}
        self._channel_coll: dict[str, int] = {}
        self._colls: dict[int, CollectionInfo] = {}
        # the task's entry of each replicated collection (TaskStore.collections): where it is on the
        # target, the truncate and partitions applied (vecdb.cdc.log_order)
        self._entries: dict[int, dict[str, Any]] = {}
        self._db_properties: dict[str, dict[str, str]] = {}  # what the target was given, per database
        self._positions: dict[str, int] = {}
        self._last_ts: dict[str, int] = {}  # per channel: the timestamp of the last record applied (its stamp)
        self._ends: dict[str, tuple[stall.Look, int]] = {}  # per channel: the last look at its end, and that end
        self._floors: dict[str, tuple[int, int]] = {}  # per channel: (position, stamp) where the task took it up
        self._published: bytes | None = None
        self._published_at = 0.0
        self._seen_id = -1  # the largest collection id of the last whole catalog pass (HOLD_NEW)
        from vecdb.cdc.base_copy import BaseCopy

        self._copy = BaseCopy(self)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Replicator:
        self._thread = threading.Thread(target=self._run, name=f"cdc {self.task.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._open()
                self._session()
            except TaskFailed as e:
                log.error("cdc task %s failed: %s", self.task.id, e)
                self.task.state, self.task.reason = FAILED, str(e)
                self.progress.state, self.progress.reason = FAILED, str(e)
                try:
                    self.store.put(self.task)
                except Exception:  # noqa: BLE001 (reported in the API anyway)
                    log.exception("cdc task %s: cannot record its failure", self.task.id)
                if self.on_change is not None:
                    self.on_change(self.task)
                break
            except Exception as e:  # noqa: BLE001 (target down, source unreachable: retried)
                self.progress.last_error = f"{type(e).__name__}: {e}"[:2000]
                self.progress.last_error_at = time.time()
                log.warning("cdc task %s: %s; retrying in %.1f s", self.task.id, self.progress.last_error, backoff)
                self._close_followers()
                if self._target is not None:
                    self._target.close()
                try:
                    if self._log is not None:
                        self._report()  # the lag keeps growing while the target is down
                except Exception:  # noqa: BLE001 (the source is down too)
                    pass
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            break
        self._close()

    def _open(self) -> None:
        self._positions = self.store.positions(self.task.id)
        stamps = self.store.stamps(self.task.id)
        self._last_ts = {ch: st[0] for ch, st in stamps.items()}
        self._floors = {ch: (st[1], st[2]) for ch, st in stamps.items()}
        if self._meta is None:
            self._meta, self._log = self._borrowed or open_source(self.task.spec.source)
            self._ends = {}
        if self._target is None:
            t = self.task.spec.target
            self._target = Target(t["uri"], t.get("token", ""), headers=t.get("headers"))

    def _close_followers(self) -> None:
        for tail in self._tails.values():
            tail.follower.close()
        self._tails.clear()

    def _close(self) -> None:
        self._close_followers()
        self._copy.close()
        if self._target is not None:
            self._target.close()
        if self._borrowed is None:
            for b in (self._log, self._meta):
                if b is not None:
                    b.close()
        self._meta = self._log = None

    # --- the loop ----------------------------------------------------------------------------
    def _session(self) -> None:
        assert self._meta is not None and self._log is not None
        version: bytes | None | int = -1
        report_due = 0.0
        while not self._stop.is_set():
            v = self._meta.get("catalog/version")
            if v != version:
                self._sync_catalog()
                version = v
            busy = False
            for ch in list(self._tails):
                if self._channel_coll.get(ch) not in self._copy.pending:  # (applied once its base copy is done)
                    busy |= self._pump(ch)
            busy |= self._copy.step()
            if time.monotonic() >= report_due:  # last_position is a round trip per channel on JetStream
                self._report()
                report_due = time.monotonic() + REPORT_SECONDS
            self._publish()
            self.progress.last_error = self._copy.problem  # a whole pass succeeded ("", or why a copy waits)
            if not busy:  # (each poll above waits for nothing: one pass over 1,000 channels took 20 s)
                self._stop.wait(IDLE_WAIT if self._tails else 0.2)

    def _pump(self, ch: str) -> bool:
        """Apply what the channel has now (up to a few thousand records); whether there was any."""
        try:
            return self._pump_records(ch)
        except _CopiedAgain:  # (a gap: its collection is copied again, its channels follow from their ends)
            return True

    def _pump_records(self, ch: str) -> bool:
        tail = self._tails[ch]
        records = tail.follower.poll(timeout=0, max_records=2048)
        if not records:
            self._check_stall(ch)
            return False
        tail.watch.heard()
        cid = self._channel_coll[ch]
        info = self._colls[cid]
        start = self.task.spec.start
        applied = self._positions.get(ch, 0)
        # a collection with a TTL: rows already expired on the source are not copied (the target would
        # write them with new timestamps and show them again for a whole TTL)
        expired_at = timestamp.compose(timestamp.now_ms()) - info.ttl_span if info.ttl_span else 0
        cut = int(self._entries.get(cid, {}).get("truncated_ts", 0))
        batch: list = []  # consecutive records of one kind: ("I", pid, [InsertRecord]) / ("D", pid, [pks])
        last_pos = applied
        for pos, payload in records:
            if pos != applied + 1 and not (applied == 0 and start != "now"):
                self._gap(ch, applied, pos)
            applied = pos
            rec = decode(payload)
            self._last_ts[ch] = rec.ts
            if (isinstance(start, int) and not isinstance(start, bool) and getattr(rec, "ts", 0) < start) or \
                    rec.ts <= cut:  # (before the task's start; written before a truncate_collection: gone)
                last_pos = pos
                continue
            if isinstance(rec, InsertRecord) and rec.ts > expired_at:
                if not self._add_insert(batch, info, rec):
                    self._flush(info, batch)
                    batch.clear()
                    self._add_insert(batch, info, rec)
            elif isinstance(rec, DeleteRecord):
                if batch and batch[-1][0] == "D" and batch[-1][1] == rec.partition_id:
                    batch[-1][2].append(rec.pks)
                else:
                    batch.append(["D", rec.partition_id, [rec.pks]])
            last_pos = pos
        self._flush(info, batch)
        self.store.commit_position(self.task.id, ch, last_pos, (self._last_ts[ch], *self._floors.get(ch, (0, 0))))
        self._positions[ch] = last_pos
        self.progress.applied_records += len(records)
        return True

    def _add_insert(self, batch: list, info: CollectionInfo, rec: InsertRecord) -> bool:
        """Append ``rec`` to the batch's last insert group when that keeps each primary key once."""
        pk = info.schema.primary_field.name
        if batch and batch[-1][0] == "I" and batch[-1][1] == rec.partition_id:
            group = batch[-1][2]
            pks = np.concatenate([r.columns[pk] for r in group] + [rec.columns[pk]])
            if len(np.unique(pks)) != len(pks) or sum(r.num_rows for r in group) >= BATCH_ROWS:
                return False
            group.append(rec)
            return True
        if batch and batch[-1][0] == "I":
            return False  # another partition: keep log order, apply what came first
        batch.append(["I", rec.partition_id, [rec]])
        return True

    def _flush(self, info: CollectionInfo, batch: list) -> None:
        assert self._target is not None
        db, entry = self._place(info)
        c = self._target.client(db)
        pkey = info.schema.partition_key_field is not None
        for kind, pid, items in batch:
            pname = self._partition_name(info, pid)
            if kind == "I":
                if pname is None:
                    continue  # its partition was dropped on the source (and so on the target)
                pname = "" if pkey else pname
                for rec in items:
                    schema = self._schema_of(info, rec)  # a dropped field's values under a re-added name: left out
                    rows = rows_of(schema, current_columns(schema, rec.columns, rec.field_ids), rec.num_rows)
                    for ns, part in by_namespace(info, rec, rows, pname):
                        for i in range(0, len(part), BATCH_ROWS):
                            upsert_rows(c, entry, part[i:i + BATCH_ROWS], pname, ns, self._target.timeout)
                    self.progress.applied_rows += rec.num_rows
            else:
                pks = np.concatenate(items)
                if not len(pks):
                    continue
                if pid != -1 and pname is None:
                    continue
                part = pname if pid != -1 and pname and not pkey else None
                delete_rows(c, entry, info.schema, pks.tolist(), part, self._target.timeout)
        batch.clear()

    def _schema_of(self, info: CollectionInfo, rec: InsertRecord) -> CollectionSchema:
        """The schema ``rec`` was written with. A record naming a field the last catalog pass did not
        see (added on the source since; the catalog pass is not ordered with the log) re-reads the
        collection and adds the field on the target before its rows go there."""
        names = {f.name for f in info.schema.fields}
        newer = rec.field_ids and max(rec.field_ids.values()) >= info.schema.next_field_id()  # re-added under a name
        if not newer and all(k.startswith("$") or k in names for k in rec.columns):
            return info.schema
        fresh = self._reread(info.id)
        if fresh is None:
            return info.schema
        self._sync_known(fresh)
        return fresh.schema

    def _partition_name(self, info: CollectionInfo, pid: int) -> str | None:
        if pid == -1:
            return ""
        for p in info.partitions:
            if p.id == pid:
                return p.name
        fresh = self._reread(info.id)  # a partition created after the last catalog pass
        if fresh is not None:
            for p in fresh.partitions:
                if p.id == pid:
                    self._sync_known(fresh)
                    self._record_new_partition(fresh, p.name, pid)
                    return p.name
        return None

    def _record_new_partition(self, info: CollectionInfo, name: str, pid: int) -> None:
        """A partition the task's entry did not know, created on the target for a record in it (before the
        next catalog pass), recorded by id before any row goes there: if the task stops and the name is
        dropped and created again meanwhile, the next pass sees another id and the old rows go. (A name the
        entry knows keeps its recorded id: the catalog pass compares it, ``log_order.changes``.)"""
        entry = self._entries.get(info.id)
        if entry is None or "partitions" not in entry or name in entry["partitions"] \
                or name not in log_order.partition_ids(info):
            return
        entry["partitions"] = {**entry["partitions"], name: pid}
        self.store.add_collection(self.task.id, info.id, entry, {})

    def _reread(self, cid: int) -> CollectionInfo | None:
        assert self._meta is not None
        raw = self._meta.get(f"coll/{cid}")
        if raw is None:
            return None
        info = self._colls[cid] = CollectionInfo.from_json(raw)
        return info

    def _target_of(self, info: CollectionInfo) -> str:
        return self.task.spec.target_name(info.db, info.name)

    def _place(self, info: CollectionInfo) -> tuple[str, str]:
        """The target database and collection a source collection is replicated into: the task's entry's
        (a rename on the source moves it in the next catalog pass, ``_follow_renames``)."""
        entry = self._entries.get(info.id)
        return (entry["db"], entry["target"]) if entry else (info.db, self._target_of(info))

    # --- DDL -----------------------------------------------------------------------------------
    def _sync_catalog(self) -> None:
        assert self._meta is not None and self._log is not None and self._target is not None
        colls, dbs, aliases = read_catalog(self._meta)
        spec, tid = self.task.spec, self.task.id
        wanted = {cid: info for cid, info in colls.items() if spec.wants(info.db, info.name)}
        for cid in [cid for cid, info in wanted.items() if info.schema.is_external]:
            # an external collection's rows come from its source files (vecdb.external_tables): not replicated
            if (tid, cid) not in _EXTERNAL_SKIPPED:
                _EXTERNAL_SKIPPED.add((tid, cid))
                log.info("cdc task %s skips external collection %s.%s: its data comes from its source files",
                         tid, wanted[cid].db, wanted[cid].name)
            del wanted[cid]
        known = self._entries = self.store.collections(tid)
        self._settle_moves()
        ours = self.store.databases(tid)
        for db, properties in dbs.items():
            if db != DEFAULT_DB:
                self._target.ensure_database(db)
                if db not in ours:
                    self.store.add_database(tid, db)
            self._sync_database_properties(db, properties)
        for cid in [cid for cid in known if cid not in wanted]:
            entry = known.pop(cid)
            c = self._target.client(entry["db"])
            if c.has_collection(entry["target"]):
                log_order.drop_collection(c, entry["target"])
                log.info("cdc task %s dropped %s.%s on the target", tid, entry["db"], entry["target"])
            channels = [ch for ch, owner in self._channel_coll.items() if owner == cid] or \
                [f"c{cid}-s{i}" for i in range(64)]
            for ch in channels:
                tail = self._tails.pop(ch, None)
                if tail is not None:
                    tail.follower.close()
                self._channel_coll.pop(ch, None)
                self._positions.pop(ch, None)
            self.store.remove_collection(tid, cid, channels)
        self._follow_renames({cid: info for cid, info in wanted.items() if cid in known})
        for db in sorted(ours - set(dbs)):  # dropped on the source (its collections were dropped above)
            try:
                if db in self._target.client(DEFAULT_DB).list_databases():
                    self._target.client(DEFAULT_DB).drop_database(db)
                    log.info("cdc task %s dropped database %s on the target", tid, db)
            except Exception as e:  # noqa: BLE001 (it holds collections this task did not create: kept)
                log.warning("cdc task %s: database %s was dropped on the source, not on the target: %s", tid, db, e)
            self._target.forget(db)
            self._db_properties.pop(db, None)
            self.store.remove_database(tid, db)
        created_ms = self.task.created * 1000
        for cid, info in sorted(wanted.items()):
            if cid not in known:
                fresh = timestamp.physical_ms(info.created_ts) >= created_ms
                if fresh and spec.start == "copy" and self._log_cut(info):
                    fresh = False  # created while the task was stopped, its log cut since: copied as well
                if spec.start in ("now", "copy") and not fresh:  # (copy: the positions before the copy)
                    start = {ch: self._log.last_position(ch) for ch in info.channels}
                else:
                    start = {ch: 0 for ch in info.channels}
                known[cid] = {"db": info.db, "name": info.name, "target": self._target_of(info),
                              "truncated_ts": info.truncated_ts, "partitions": log_order.partition_ids(info)}
                self._take_positions(cid, start, spec.start == "copy" and not fresh, {ch: 0 for ch in start})
            else:
                self._apply_changes(info)
            self._colls[cid] = info
            try:
                self._sync_known(info)
            except _CopiedAgain:
                pass  # (copied again from the channels' ends: taken up below)
            self._record_partitions(info)
        self._sync_aliases(wanted, aliases)
        self._copy.take(self.store.copies(tid) & set(wanted))
        for cid, info in wanted.items():
            for ch in info.channels:
                if ch not in self._tails:
                    self._channel_coll[ch] = cid
                    try:
                        self._check_gap(ch, self._positions.get(ch, 0))
                    except _CopiedAgain:
                        pass  # (from the channel's end now)
                    applied = self._positions.get(ch, 0)
                    self._tails[ch] = _Tail(self._log.follow(ch, applied + 1), stall.StallWatch(self._log, ch))
        top = max(colls, default=0)
        if top > self._seen_id:  # every collection up to it taken up (or not wanted)
            self._seen_id, self._published_at = top, 0.0

    def _check_stall(self, ch: str) -> None:
        """After a silent poll: the channel's follower is opened again when it stalled with records after
        the task's position in the log (``vecdb.storage.stall``); records cut past it fail the task."""
        assert self._log is not None
        applied = self._positions.get(ch, 0)
        tail = self._tails[ch]
        first = tail.watch.check(applied)
        if first is None:
            return
        if first > applied + 1 and not (applied == 0 and self.task.spec.start != "now"):
            try:
                self._gap(ch, applied, first)
            except _CopiedAgain:
                return
        log.warning("cdc task %s: no record of %s from the source log for %.0f s while %d is there to apply "
                    "next; following it again", self.task.id, ch, stall.STALL_SECONDS, first)
        again = self._log.follow(ch, applied + 1)
        tail.follower.close()
        tail.follower = again

    def _log_cut(self, info: CollectionInfo) -> bool:
        """Whether the log of one of the collection's channels no longer holds its first record (the
        source persisted its rows and cut it): following it from its beginning would miss them."""
        assert self._log is not None
        return any(self._log.last_position(ch) > 0 and not any(True for _ in self._log.read(ch, 1, 1))
                   for ch in info.channels)

    def _check_gap(self, ch: str, applied: int) -> None:
        """Fail when the log no longer holds the record after ``applied`` though it has later ones (cut
        past the task): found here when the channel is (re)opened, in ``_pump`` as records come."""
        assert self._log is not None
        if applied == 0 and self.task.spec.start != "now":
            return  # from the beginning: whatever the log still holds
        if self._log.last_position(ch) > applied and not any(True for _ in self._log.read(ch, applied + 1,
                                                                                           applied + 1)):
            self._gap(ch, applied, None)

    def _gap(self, ch: str, applied: int, pos: int | None) -> NoReturn:
        """The log was cut past the task's position on ``ch``: with ``source.uri``, the channel's collection
        is copied again (``_lost``; raises ``_CopiedAgain``); without, the task fails."""
        where = f"the source log no longer holds {ch} from position {applied + 1}" + \
            (f" (the next record is {pos})" if pos is not None else "") + \
            ": it was truncated past this task's position (retention limit)"
        self._lost(self._colls.get(self._channel_coll.get(ch, -1)), where)
        raise _CopiedAgain()

    def _sync_known(self, info: CollectionInfo) -> None:
        """``_sync_one`` of a collection the task has an entry of. When the target had lost the collection
        after the task made it there (dropped outside the task, a target restored from an old backup),
        ``_sync_one`` made it again, empty, and the rows applied before are lost (the task went on applying
        the later records only: 1 row of 31 on the target, reported as caught up): ``_lost``, raising
        ``_CopiedAgain`` once it is copied again."""
        had = self._entries.get(info.id, {}).get("created", False)
        if self._sync_one(info) and had:
            db, name = self._place(info)
            self._lost(info, f"{db}.{name} was gone from the target (dropped there outside this task): the rows "
                             "replicated into it are lost")
            raise _CopiedAgain()

    def _lost(self, info: CollectionInfo | None, why: str) -> None:
        """What the target needs of ``info`` is no longer in the source log (``why``): with ``source.uri``,
        the collection is copied again (``_copy_again``); without, the task fails, saying how to re-sync."""
        if info is not None and self._can_copy(info):
            self._copy_again(info, why)
            return
        raise TaskFailed(
            f"{why}. Re-sync: delete the task, drop the collection on the target and create the task again with "
            "start=copy (a base copy through the source's Milvus API, source.uri) or start=earliest; a task with "
            "source.uri copies the collection again by itself")

    def _can_copy(self, info: CollectionInfo) -> bool:
        """Whether the collection can be copied again through the source's Milvus API: the task has
        ``source.uri``, and its rows can be read (``BaseCopy.readable``)."""
        return bool(self.task.spec.source.get("uri")) and self._copy.readable(info)

    def _copy_again(self, info: CollectionInfo, why: str, applied: dict[str, Any] | None = None) -> None:
        """The collection emptied on the target and copied again through the source's Milvus API
        (``vecdb.cdc.base_copy``), its channels followed from their ends (recorded with its entry and a
        copy mark in one step): what the log can no longer give."""
        assert self._target is not None and self._log is not None
        self._empty(info)
        self._entries[info.id].update(applied or {})  # (the change, recorded with the positions and copy mark only)
        positions = {ch: self._log.last_position(ch) for ch in info.channels}
        self._take_positions(info.id, positions, True, {ch: 0 for ch in positions})
        self._follow_from(positions)
        self._copy.restart(info.id)
        log.warning("cdc task %s: %s; %s.%s is emptied on the target and copied again through the source's Milvus "
                    "API", self.task.id, why, info.db, info.name)

    def _take_positions(self, cid: int, positions: dict[str, int], copy: bool, stamps: dict[str, int]) -> None:
        """The collection's entry and its channels' new positions recorded in one step, each with its stamp
        (a timestamp no record the task applied up to the position is after; 0 where it applied none: a
        collection taken up, or copied), also the channel's floor (``TaskStore.stamps``); the positions
        published as the task's follower floor at once (a rewind holds the source's log back from there)."""
        # each channel's floor: the position itself with its stamp, unless the one it has says more (a lower
        # stamp: a rewind keeps the floor where the task took the channel up)
        floors = {}
        for ch, p in positions.items():
            old = self._floors.get(ch)
            floors[ch] = old if old is not None and old[0] <= p and old[1] < stamps[ch] else (p, stamps[ch])
        self.store.add_collection(self.task.id, cid, self._entries[cid], positions, copy=copy,
                                  stamps={ch: (stamps[ch], *floors[ch]) for ch in positions})
        self._positions.update(positions)
        self._last_ts.update(stamps)
        self._floors.update(floors)
        self._published_at = 0.0
        self._publish()

    def _empty(self, info: CollectionInfo) -> None:
        """The collection's target emptied (``log_order.empty_collection``; created again if it was
        dropped for that)."""
        assert self._target is not None
        db, name = self._place(info)
        if log_order.empty_collection(self._target.client(db), name):
            self._sync_one(info)
            self._sync_aliases({info.id: info}, read_catalog(self._meta)[2] if self._meta is not None else {})

    def _follow_from(self, positions: dict[str, int]) -> None:
        """The channels followed (those open now) from after their new positions."""
        assert self._log is not None
        for ch, pos in positions.items():
            tail = self._tails.get(ch)
            if tail is not None:
                tail.follower.close()
                tail.follower = self._log.follow(ch, pos + 1)

    def _apply_changes(self, info: CollectionInfo) -> None:
        """A truncate or a partition created again under its name on the source since the task's entry
        recorded the collection: applied at its place in the log order (``vecdb.cdc.log_order``); the
        partitions created and dropped otherwise recorded in the entry."""
        assert self._target is not None and self._log is not None
        tid, entry = self.task.id, self._entries[info.id]
        parts = log_order.partition_ids(info)
        if "truncated_ts" not in entry:  # recorded by an older version, which applied no truncate: one that may
            # have met records it applied (made since the task exists, or a task from the log's beginning) is
            # applied now; the partitions' ids are taken as they are
            t = info.truncated_ts
            hit = t and (timestamp.physical_ms(t) >= self.task.created * 1000 or self.task.spec.start not in
                         ("now", "copy"))
            entry.update(truncated_ts=0 if hit else t, partitions=parts)
            self.store.add_collection(tid, info.id, entry, {})
        truncated, again, since = log_order.changes(entry, info)
        if since is None:
            return  # (partitions created or dropped: recorded once the target has them, _record_partitions)
        # a base copy to do (pending before the pass takes them up) begins again; one that cannot read the
        # collection's rows (namespaces in partition_key mode) copies nothing: the log's way, below
        copying = self._copy.readable(info) and (info.id in self._copy.pending or info.id in self.store.copies(tid))
        rewind: dict[str, int] | None = {}
        if not copying:  # the records after the change applied already: applied again
            firsts = {ch: log_order.first_after(self._log, ch, self._positions.get(ch, 0), since,
                                                self._last_ts.get(ch), self._floors.get(ch, (0, 0)))
                      for ch in info.channels}
            rewind = None if None in firsts.values() else \
                {ch: q - 1 for ch, q in firsts.items() if q is not None and q <= self._positions.get(ch, 0)}
        what = "a truncate" if truncated > int(entry["truncated_ts"]) else f"partitions created again {again}"
        if copying or rewind is None:
            if not self._can_copy(info):
                raise TaskFailed(
                    f"{info.db}.{info.name} was truncated or had a partition created again on the source, and the "
                    "source log no longer holds the records this task applied after that change: it cannot be "
                    "applied. Re-sync: delete the task, drop the collection on the target and create the task again "
                    "with start=copy (a base copy through the source's Milvus API, source.uri); with source.uri, a "
                    "task copies such a collection again by itself")
            self._copy_again(info, f"{what} during its base copy" if copying else
                             f"{what} after records the log no longer holds were applied",
                             {"truncated_ts": truncated, "partitions": parts})
            return
        db, name = self._place(info)
        c = self._target.client(db)
        if truncated > int(entry["truncated_ts"]):
            self._empty(info)
        else:
            for p in again:
                log_order.recreate_partition(c, name, p, info.partition_loaded(info.partition(p).id))
        # a partition dropped on the source stays recorded until the target's is dropped too (_record_partitions)
        entry.update(truncated_ts=truncated, partitions={**entry.get("partitions", {}), **parts})
        self._take_positions(info.id, rewind, False, {ch: since for ch in rewind})
        self._follow_from(rewind)
        log.info("cdc task %s applied %s of %s.%s on the target (channels rewound to %s)", self.task.id, what,
                 info.db, info.name, rewind)

    def _record_partitions(self, info: CollectionInfo) -> None:
        """The source's partitions (``log_order.partition_ids``) in the task's entry, once the catalog pass
        made the target's match them. Not before: a name dropped on the source leaves the entry only once
        its target partition is dropped, so that when the pass stops in between (a crash, the target
        down) and the name is created again on the source, the new id differs from the one recorded and
        the old partition's rows go (``log_order.changes``) rather than stay under the name."""
        entry = self._entries.get(info.id)
        parts = log_order.partition_ids(info)
        if entry is not None and "partitions" in entry and entry["partitions"] != parts:
            entry["partitions"] = parts
            self.store.add_collection(self.task.id, info.id, entry, {})

    # --- reporting ---------------------------------------------------------------------------------
    def _report(self) -> None:
        assert self._log is not None
        lag, chans = 0, {}
        oldest = None
        heard_last = getattr(self._log, "heard_last", None)
        now = time.monotonic()
        for ch in sorted(set(self._channel_coll) | set(self._positions)):
            last = self._channel_end(ch, heard_last, now)
            applied = self._positions.get(ch, 0)
            chans[ch] = {"applied": applied, "last": last}
            if last > applied:
                lag += last - applied
                ts = self._last_ts.get(ch)
                ms = timestamp.physical_ms(ts) if ts else self.task.created * 1000
                oldest = ms if oldest is None else min(oldest, ms)
        self.progress.lag_records = lag
        self.progress.lag_seconds = 0.0 if oldest is None else max(0.0, (time.time() * 1000 - oldest) / 1000)
        self.progress.channels = chans
        self.progress.reported_at = time.time()
        if self.progress.state != PAUSED:
            self.progress.state = RUNNING

    def _channel_end(self, ch: str, heard_last, now: float) -> int:
        """The channel's last position: asked of the log (a round trip on JetStream, every
        ``REPORT_SECONDS`` for every channel: 1,000 channels were 4,000 requests a second), or, where
        the log hears tips, the highest of its last look and the tips heard since, looking again
        every ``END_LOOK_SECONDS`` and after a reconnect (tips sent meanwhile were lost)."""
        assert self._log is not None
        heard = heard_last(ch) if heard_last is not None else None
        look, end = self._ends.get(ch, (None, 0))
        if heard is not None and stall.look_stands(look, heard, now, END_LOOK_SECONDS):
            return max(end, heard.last)
        last = self._log.last_position(ch)
        if heard is not None:
            self._ends[ch] = (stall.Look(heard.epoch, now), last)
        return last

    def _publish(self) -> None:
        """The task's applied positions as a follower of the source log (``cdcpos/<task>``): the source's
        data nodes truncate a channel no further than what this task applied (see ``vecdb.datanode.flusher``)."""
        assert self._meta is not None
        now = time.monotonic()
        if now - self._published_at < PUBLISH_SECONDS:
            return
        positions: dict[str, int] = dict(sorted(self._positions.items()))  # (every channel, followed yet or not)
        if "*" in self.task.spec.collections:  # and the channels of collections created since the last pass
            positions[HOLD_NEW] = self._seen_id
        raw = json.dumps(positions).encode()
        if raw != self._published:
            self._meta.put(cdc_positions_key(self.task.id), raw)
            self._published = raw
        self._published_at = now


def unpublish(source: dict[str, Any], task_id: str) -> None:
    """Take a deleted task's follower positions off the source (its log may be truncated past them)."""
    meta, wal = open_source(source)
    try:
        meta.delete(cdc_positions_key(task_id))
    finally:
        wal.close()
        meta.close()

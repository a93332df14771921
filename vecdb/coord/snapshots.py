"""Collection snapshots (Milvus 3.0's ``CreateSnapshot`` ... ``RestoreSnapshot``): a point-in-time
record of a collection's metadata and of the sealed files that hold its persisted rows, and its
restore into a new collection.

A snapshot is one metadata record ``snapshot/<db>/<collection>/<name>`` (names are unique per
collection, as in Milvus): the collection's ``CollectionInfo`` at creation (schema, partitions,
indexes, properties), and per channel the persisted state one flush left (read as the query nodes
read it, ``vecdb.storage.segments.persisted_state``: checkpoint, ``seg/`` infos, delta objects), plus the finished index
files of those segments. Nothing is copied at creation (Milvus: "metadata only, in milliseconds"),
and nothing is flushed: rows still growing are not in it (call ``flush`` first, as Milvus advises).

Pinning. The files a snapshot names stay while it lives: the garbage collector
(``vecdb.coord.gc``) and the data node's drops (``vecdb.datanode.node``) skip every prefix and delta
object that ``pinned_files`` returns, the union over live snapshots and unexpired
``snapshot_pin/<id>`` records (``PinSnapshotData``, which copies the snapshot's file list so that a
pin outlives a drop of its snapshot; the collector deletes a pin record once it expired). A
compaction of the source goes on: it writes new files and its sources stay, unregistered, until no
snapshot names them; the collector then deletes them as orphans after its grace. A snapshot
outlives a drop of its collection (its files stay pinned): it is still listed, described and
restorable by the collection's name until ``drop_snapshot``.

Restore is a job ``snapshot_restore/<id>`` (Pending, Executing, Completed, Failed), a durable job
(``vecdb.jobs``: its runner's heartbeat; one whose runner ended is taken over by another process, which
drops the collection the ended run had created, with what it had copied, and restores again from the
start), run on a thread of the process that took the request: a new
collection through the DDL role (schema with its field ids, shards, consistency, properties, then
the user partitions and the indexes, new ids for both), then per segment its files copied under the
new collection's prefix (index files renamed to the new index ids, their finished build records
written, so nothing is built again), and the segments, one merged delta per channel and the build
records registered in one metadata transaction per channel. Restored segments sit at log position 0
of the new, empty channels (their checkpoint stays 0, so a query node replays the new log from its
start); their ``deltas_upto`` is -1, so a compaction of the new collection deletes the restored delta
only once it rewrote every restored segment (``vecdb.datanode.compactor._delta_obsolete``). Objects
are written under a ``gcintent/`` key of this process, which keeps the collector off them until the
commit. The restored collection is not loaded. A job that fails drops the collection it created.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vecdb import errors
from vecdb.catalog_model import DEFAULT_DB, DEFAULT_PARTITION, CollectionInfo
from vecdb.coord import index_builds
from vecdb.coord.session import INCARNATION
from vecdb.jobs import JobKind, JobLost, JobStore, Record, from_record, heartbeat_s
from vecdb.roles import CatalogRole, DdlRole, IdSource, TimestampSource
from vecdb.schema import CollectionSchema, validate_collection_name
from vecdb.storage import segments as sf
from vecdb.storage.base import MetaStore, ObjectStore

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "snapshot/"  # snapshot/<db>/<collection>/<name> -> Snapshot.to_json()
PIN_PREFIX = "snapshot_pin/"  # snapshot_pin/<pin id> -> {"prefixes", "keys", "expires_ms"}
JOB_PREFIX = "snapshot_restore/"  # snapshot_restore/<job id> -> RestoreJob.to_json()

PENDING, EXECUTING, COMPLETED, FAILED = "Pending", "Executing", "Completed", "Failed"
DEFAULT_PIN_TTL_S = 3600  # a pin without a TTL lasts this long (Milvus's server default is configurable)


def snapshot_key(db: str, collection: str, name: str) -> str:
    return f"{SNAPSHOT_PREFIX}{db or DEFAULT_DB}/{collection}/{name}"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Snapshot:
    name: str
    description: str
    db: str
    collection: str
    collection_id: int
    create_ts: int  # hybrid timestamp taken at creation
    created_ms: int
    info: dict[str, Any]  # the collection's CollectionInfo (to_json) at creation
    channels: list[dict[str, Any]]  # per shard: {"checkpoint", "segments": [seg info], "deltas": [object key]}
    index_files: dict[str, dict[str, str]] = field(default_factory=dict)  # segment prefix -> index id -> key
    compaction_protection_until_ms: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Snapshot:
        return cls(**json.loads(raw))

    def collection_info(self) -> CollectionInfo:
        return CollectionInfo.from_json(json.dumps(self.info).encode())

    def files(self) -> tuple[set[str], set[str]]:
        """(segment prefixes, delta object keys) it names."""
        prefixes = {s["prefix"] for ch in self.channels for s in ch["segments"] if isinstance(s.get("prefix"), str)}
        return prefixes, {k for ch in self.channels for k in ch["deltas"]}


@dataclass
class RestoreJob:
    id: int
    snapshot_name: str
    source_db: str
    source_collection: str
    db: str  # target
    collection: str  # target
    state: str = PENDING
    progress: int = 0
    reason: str = ""
    start_ms: int = field(default_factory=_now_ms)
    end_ms: int = 0
    updated_ms: int = field(default_factory=_now_ms)
    collection_id: int = 0
    owner: str = ""
    attempts: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RestoreJob:
        return from_record(cls, raw)

    @property
    def time_cost_ms(self) -> int:
        return (self.end_ms or _now_ms()) - self.start_ms


def pinned_files(meta: MetaStore, now_ms: int | None = None) -> tuple[set[str], set[str]]:
    """(segment prefixes, delta object keys) that live snapshots and unexpired pins name: what no
    drop or garbage collection may delete. A record it cannot read pins nothing (logged)."""
    prefixes: set[str] = set()
    keys: set[str] = set()
    for key, raw in meta.scan(SNAPSHOT_PREFIX):
        try:
            p, k = Snapshot.from_json(raw).files()
        except (ValueError, TypeError, KeyError):
            log.warning("snapshots: %s is not a snapshot record I can read", key)
            continue
        prefixes |= p
        keys |= k
    now = _now_ms() if now_ms is None else now_ms
    for key, raw in meta.scan(PIN_PREFIX):
        try:
            pin = json.loads(raw)
            if int(pin["expires_ms"]) > now:
                prefixes |= set(pin["prefixes"])
                keys |= set(pin["keys"])
        except (ValueError, TypeError, KeyError):
            log.warning("snapshots: %s is not a pin record I can read", key)
    return prefixes, keys


def expired_pins(meta: MetaStore, now_ms: int | None = None) -> list[str]:
    """The ``snapshot_pin/`` records whose time passed: they pin nothing (``pinned_files``), and the
    garbage collector deletes them (each holds its snapshot's whole file list; none was ever deleted
    but by ``unpin``)."""
    now = _now_ms() if now_ms is None else now_ms
    out = []
    for key, raw in meta.scan(PIN_PREFIX):
        try:
            if int(json.loads(raw)["expires_ms"]) <= now:
                out.append(key)
        except (ValueError, TypeError, KeyError):
            continue  # pinned_files logs it
    return out


def delete_unpinned(meta: MetaStore, objects: ObjectStore, prefix: str) -> None:
    """``objects.delete_prefix(prefix)``, but the objects of pinned segments and deltas stay."""
    pinned_prefixes, pinned_keys = pinned_files(meta)
    if not any(p.startswith(prefix) for p in pinned_prefixes) and not any(k.startswith(prefix) for k in pinned_keys):
        objects.delete_prefix(prefix)
        return
    for key in objects.list(prefix):
        if key not in pinned_keys and not any(key.startswith(p) for p in pinned_prefixes):
            objects.delete(key)


def is_pinned(meta: MetaStore, segment_prefix: str) -> bool:
    return segment_prefix in pinned_files(meta)[0]


class SnapshotManager:
    """Snapshots and their restore over the metadata and object stores every process of a
    deployment shares; catalog changes go through ``ddl`` (the coord's DDL in a cluster)."""

    def __init__(self, meta: MetaStore, objects: ObjectStore, catalog: CatalogRole, ddl: DdlRole,
                 ids: IdSource, tso: TimestampSource):
        self.meta, self.objects, self.catalog, self.ddl, self.ids, self.tso = meta, objects, catalog, ddl, ids, tso
        self._threads: dict[int, threading.Thread] = {}
        self.restores = JobStore(meta, JOB_PREFIX, lambda r: r.get("state") in (PENDING, EXECUTING))

    # --- snapshots ------------------------------------------------------------------
    def create(self, db: str, collection: str, name: str, description: str = "",
               compaction_protection_seconds: int = 0) -> Snapshot:
        db = db or DEFAULT_DB
        _check_name(name)
        info = self.catalog.get(db, collection)  # CollectionNotFound
        refuse_while_restoring(self.meta, info, "snapshot it")  # 106: part of its segments, no index yet
        key = snapshot_key(db, info.name, name)
        if self.meta.get(key) is not None:
            raise errors.InvalidParameter(f"snapshot already exists[snapshot={name}][collection={info.name}]")
        channels: list[dict[str, Any]] = []
        for ch in info.channels:
            start, segments, deltas = sf.persisted_state(self.meta, info.id, ch)
            channels.append({"checkpoint": start, "segments": segments, "deltas": deltas})
        prefixes = {s["prefix"] for ch in channels for s in ch["segments"] if s.get("prefix")}
        index_files: dict[str, dict[str, str]] = {}
        for (index_id, prefix), obj in index_builds.finished(self.meta, info.id).items():
            if prefix in prefixes:
                index_files.setdefault(prefix, {})[str(index_id)] = obj
        now = _now_ms()
        snap = Snapshot(name=name, description=description, db=db, collection=info.name, collection_id=info.id,
                        create_ts=self.tso.allocate(), created_ms=now, info=json.loads(info.to_json()),
                        channels=channels, index_files=index_files,
                        compaction_protection_until_ms=now + 1000 * max(0, compaction_protection_seconds))
        if not self.meta.txn(puts={key: snap.to_json()}, expect={key: None}):
            raise errors.InvalidParameter(f"snapshot already exists[snapshot={name}][collection={info.name}]")
        return snap

    def get(self, db: str, collection: str, name: str) -> Snapshot:
        if not name:
            raise errors.InvalidParameter("snapshot name should not be empty")
        raw = self.meta.get(snapshot_key(db, collection, name))
        if raw is None:
            self._collection_or_snapshots(db, collection)
            raise errors.InvalidParameter(f"snapshot not found[snapshot={name}][collection={collection}]")
        return Snapshot.from_json(raw)

    def _collection_or_snapshots(self, db: str, collection: str) -> None:
        """CollectionNotFound when neither the collection nor a snapshot of that name exists."""
        if not self.catalog.exists(db or DEFAULT_DB, collection) and not self.meta.scan(
                f"{SNAPSHOT_PREFIX}{db or DEFAULT_DB}/{collection}/"):
            raise errors.CollectionNotFound(f"collection not found[database={db or DEFAULT_DB}]"
                                            f"[collection={collection}]")

    def names(self, db: str, collection: str = "") -> list[str]:
        """Names of the database's snapshots (of one collection when named), oldest first."""
        db = db or DEFAULT_DB
        self.catalog.database(db)  # DatabaseNotFound
        if collection:
            self._collection_or_snapshots(db, collection)
        prefix = f"{SNAPSHOT_PREFIX}{db}/{collection}/" if collection else f"{SNAPSHOT_PREFIX}{db}/"
        snaps = [Snapshot.from_json(raw) for _, raw in self.meta.scan(prefix)]
        return [s.name for s in sorted(snaps, key=lambda s: (s.create_ts, s.name))]

    def drop(self, db: str, collection: str, name: str) -> None:
        """Idempotent, as Milvus's drops are: a snapshot that is not there is no error."""
        self._collection_or_snapshots(db, collection)
        self.meta.txn(deletes=[snapshot_key(db, collection, name)])

    # --- pins -----------------------------------------------------------------------
    def pin(self, db: str, collection: str, name: str, ttl_seconds: int = 0) -> int:
        snap = self.get(db, collection, name)
        prefixes, keys = snap.files()
        pin_id = self.ids.allocate()
        expires = _now_ms() + 1000 * (ttl_seconds or DEFAULT_PIN_TTL_S)
        self.meta.put(f"{PIN_PREFIX}{pin_id}", json.dumps(
            {"snapshot": snapshot_key(db, collection, name), "prefixes": sorted(prefixes), "keys": sorted(keys),
             "expires_ms": expires}).encode())
        return pin_id

    def unpin(self, pin_id: int) -> None:
        key = f"{PIN_PREFIX}{pin_id}"
        if self.meta.get(key) is None:
            raise errors.InvalidParameter(f"snapshot pin not found[pinID={pin_id}]")
        self.meta.delete(key)

    # --- restore --------------------------------------------------------------------
    def restore(self, name: str, source_db: str, source_collection: str, target_db: str, target_collection: str,
                wait: bool = False) -> RestoreJob:
        """Check what can be checked, record the job and start it (``wait``: run it here)."""
        source_db, target_db = source_db or DEFAULT_DB, target_db or source_db or DEFAULT_DB
        validate_collection_name(target_collection)  # 1100 now, not a job that fails (Milvus's PreExecute)
        snap = self.get(source_db, source_collection, name)
        self.catalog.database(target_db)  # DatabaseNotFound
        if self.catalog.exists(target_db, target_collection):
            raise errors.InvalidParameter(f"collection already exists: {target_collection}")
        job = RestoreJob(id=self.ids.allocate(), snapshot_name=name, source_db=source_db,
                         source_collection=snap.collection, db=target_db, collection=target_collection)
        rec = self.restores.create(job)
        if wait:
            self._run(rec, snap)
        else:
            t = threading.Thread(target=self._run, args=(rec, snap), name=f"restore-{job.id}", daemon=True)
            self._threads[job.id] = t
            t.start()
        return job

    def restore_job_kind(self) -> JobKind:
        """Restores as the job sweeper resumes them (``vecdb.proxy.job_sweep``)."""
        return JobKind("restore", self.restores, RestoreJob.from_json, self._resume, _fail)

    def _resume(self, rec: Record) -> None:
        """Carry on a restore whose runner ended: from a clean state (the collection it had created, with
        whatever it had copied, dropped), then from the start."""
        job = rec.job
        try:
            snap = self.get(job.source_db, job.source_collection, job.snapshot_name)
            self._clean(job)
        except JobLost:
            return
        except Exception as e:  # noqa: BLE001 - any failure fails the job, with its reason
            _fail(rec, str(getattr(e, "message", e)))
            return
        job.collection_id, job.progress = 0, 0
        self._run(rec, snap)

    def _clean(self, job: RestoreJob) -> None:
        """Drop what an ended run of ``job`` made: its target collection when this job created it (the id it
        recorded), and the files and records under that collection's id. A collection of that name without
        the recorded id is not the job's (a client may have created it after the run ended, before it
        recorded an id): the job fails, the collection stays."""
        cid = job.collection_id
        if self.catalog.exists(job.db, job.collection):
            info = self.catalog.get(job.db, job.collection)
            if not cid or info.id != cid:
                raise errors.InvalidParameter(f"collection already exists: {job.collection}")
            cid = info.id
            self.ddl.drop_collection(job.db, job.collection)
        if cid:
            self._drop_files(cid)

    def _drop_files(self, cid: int) -> None:
        for prefix in (f"segments/{cid}/", f"deltas/{cid}/"):
            self.objects.delete_prefix(prefix)
        self.meta.txn(delete_prefixes=[f"seg/{cid}/", f"delta/{cid}/", index_builds.collection_prefix(cid),
                                       f"gcintent/segments/{cid}/"])

    def wait(self, job_id: int, timeout: float = 60.0) -> RestoreJob:
        t = self._threads.get(job_id)
        if t is not None:
            t.join(timeout)
        return self.job(job_id)

    def job(self, job_id: int) -> RestoreJob:
        raw = self.restores.raw(job_id)
        if raw is None:
            raise errors.InvalidParameter(f"restore snapshot job not found[jobID={job_id}]")
        return RestoreJob.from_json(raw)

    def jobs(self, db: str, collection: str = "") -> list[RestoreJob]:
        """The restore jobs into the database (into one target collection when named)."""
        db = db or DEFAULT_DB
        out = [RestoreJob.from_json(raw) for _, raw in self.restores.scan()]
        return sorted((j for j in out if j.db == db and (not collection or j.collection == collection)),
                      key=lambda j: j.id)

    def _run(self, rec: Record, snap: Snapshot) -> None:
        job = rec.job
        rec.start_heartbeat()
        try:
            self._restore(rec, snap)
        except JobLost:
            log.warning("restore job %d: taken over by another process; this one stops", job.id)
        finally:
            rec.close()

    def _restore(self, rec: Record, snap: Snapshot) -> None:
        job = rec.job
        job.state = EXECUTING
        rec.put()
        created = False
        try:
            info = self._create_collection(job, snap)
            created = True
            job.collection_id = info.id
            rec.put()  # the id, so that a run taken over drops this collection (RestoreJob._clean)
            self._copy_data(rec, snap, info)
            job.state, job.progress = COMPLETED, 100
        except JobLost:
            raise
        except Exception as e:  # noqa: BLE001 - any failure fails the job, with its reason
            log.exception("restore job %d failed", job.id)
            job.state, job.reason = FAILED, str(getattr(e, "message", e))
            if created:
                self._undo(job)
        job.end_ms = _now_ms()
        rec.put()

    def _undo(self, job: RestoreJob) -> None:
        try:
            self.ddl.drop_collection(job.db, job.collection)
            self._drop_files(job.collection_id)
        except Exception:  # noqa: BLE001 - the collector removes what a dropped collection left
            log.exception("restore job %d: undo", job.id)

    def _create_collection(self, job: RestoreJob, snap: Snapshot) -> CollectionInfo:
        src = snap.collection_info()
        schema = CollectionSchema.from_dict({**src.schema.to_dict(), "name": job.collection})
        self.ddl.create_collection(job.db, job.collection, schema, src.shards_num, src.consistency_level,
                                   dict(src.properties), src.num_partitions)
        if src.schema.partition_key_field is None:
            for p in src.partitions:
                if p.name != DEFAULT_PARTITION:
                    self.ddl.create_partition(job.db, job.collection, p.name)
        for idx in src.indexes:
            self.ddl.create_index(job.db, job.collection, idx.field_name, idx.index_name, idx.index_type,
                                  idx.metric_type, dict(idx.params), dict(idx.user_params), dict(idx.properties))
        return self.catalog.get(job.db, job.collection)

    def _copy_data(self, rec: Record, snap: Snapshot, info: CollectionInfo) -> None:
        job = rec.job
        src = snap.collection_info()
        pids = {p.id: info.partition(p.name).id for p in src.partitions}
        by_name = {i.index_name: i for i in info.indexes}  # (created above under the snapshot's names)
        index_ids = {str(i.index_id): by_name.get(i.index_name) for i in src.indexes}
        total = sum(len(ch["segments"]) for ch in snap.channels) or 1
        done = 0
        last_beat = time.monotonic()
        for channel, part in zip(info.channels, snap.channels):
            puts: dict[str, bytes] = {}
            intents: list[str] = []
            for seg in part["segments"]:
                pid = pids.get(seg["partition_id"])
                if pid is None or not seg.get("prefix"):
                    continue
                sid = self.ids.allocate()
                seg_dir = f"{0:020d}-{pid}-r{sid}"
                prefix = f"segments/{info.id}/{channel}/{seg_dir}/"
                intent = f"gcintent/{prefix}"
                self.meta.put(intent, json.dumps({"incarnation": INCARNATION}).encode())
                intents.append(intent)
                renamed = self._copy_segment(info, seg["prefix"], prefix, snap.index_files.get(seg["prefix"], {}),
                                             index_ids)
                for index_id, key, rows in renamed:
                    rec_key = index_builds.segment_records_prefix(info.id, index_id, prefix) + INCARNATION
                    puts[rec_key] = json.dumps({"state": index_builds.FINISHED, "incarnation": INCARNATION,
                                                "rows": rows, "key": key, "segment_id": sid}).encode()
                puts[f"seg/{info.id}/{channel}/{seg_dir}"] = json.dumps(
                    {"segment_id": sid, "partition_id": pid, "num_rows": seg["num_rows"], "prefix": prefix,
                     "position": 0, "deltas_upto": -1,
                     **({"cluster": seg["cluster"]} if "cluster" in seg else {})}).encode()
                done += 1
                job.progress = min(99, int(100 * done / total))
                if time.monotonic() - last_beat > heartbeat_s() / 2:
                    rec.put()
                    last_beat = time.monotonic()
            if part["deltas"]:
                pks, tss, dpids = zip(*(sf.read_delta_scoped(self.objects, k) for k in part["deltas"]))
                # a partition-scoped delete keeps its partition, renumbered (-2: one not restored, no row's)
                old_pids = np.concatenate(dpids)
                scoped = np.full(len(old_pids), -1, np.int64)
                for old in np.unique(old_pids[old_pids != -1]).tolist():
                    scoped[old_pids == old] = pids.get(old, -2)
                key = f"deltas/{info.id}/{channel}/{0:020d}.vcol"
                sf.write_delta(self.objects, key, np.concatenate(pks), np.concatenate(tss), scoped)
                puts[f"delta/{info.id}/{channel}/{0:020d}"] = key.encode()
            if puts:  # fenced by the job's record: a run taken over registers nothing (vecdb.jobs.Record.commit)
                rec.commit(puts, intents)

    def _copy_segment(self, info: CollectionInfo, source: str, target: str, index_files: dict[str, str],
                      index_ids: dict[str, Any]) -> list[tuple[int, str, int]]:
        """Copy a segment's files; its finished index files under the new index ids. The copied
        index files: (new index id, object key, rows)."""
        skip = set(index_files.values())
        for key in self.objects.list(source):
            if key not in skip and not key[len(source):].startswith("index-"):
                self.objects.put(target + key[len(source):], self.objects.get(key))
        rows = len(sf.read_ts(self.objects, source))
        out = []
        for old_id, key in index_files.items():
            new = index_ids.get(old_id)
            if new is None:
                continue
            f = info.schema.field(new.field_name)
            if f is None:
                continue
            dest = sf.index_key(target, f.field_id, new.index_id)
            self.objects.put(dest, self.objects.get(key))
            out.append((new.index_id, dest, rows))
        return out


def refuse_while_restoring(meta: MetaStore, info: CollectionInfo, action: str = "load it") -> None:
    """CollectionOnRecovering (106) when a restore job still runs into ``info`` (Pending or Executing):
    until it completes the collection has no index yet, or only part of its segments, so a load then
    would fail for want of an index or serve part of the rows (Milvus's docs: poll
    get_restore_snapshot_state until RestoreSnapshotCompleted, then load). One scan of the restore job
    records (a few keys), once per load (and per ``create_snapshot``: a snapshot then would hold part of
    the rows, and restore them as if whole)."""
    for _, raw in meta.scan(JOB_PREFIX):
        job = RestoreJob.from_json(raw)
        if job.state in (PENDING, EXECUTING) and job.db == info.db and job.collection == info.name \
                and job.collection_id in (0, info.id):
            raise errors.CollectionOnRecovering(
                f"collection {info.name} is being restored by job {job.id} ({job.state}, {job.progress}%): "
                f"{action} once the restore completes (get_restore_snapshot_state({job.id}))")


def _fail(rec: Record, reason: str) -> None:
    job = rec.job
    job.state, job.reason, job.end_ms = FAILED, reason, _now_ms()
    rec.put_last()


def _check_name(name: str) -> None:
    """Milvus's rule for snapshot names (``ValidateSnapshotName``: a collection name's): letters, digits and
    underscores, not starting with a digit, at most 255 characters. A '/' would also nest the name's record
    under another key of ``snapshot/<db>/<collection>/``."""
    if not name or not name.strip():
        raise errors.InvalidParameter("snapshot name should not be empty")
    validate_collection_name(name, "snapshot name")

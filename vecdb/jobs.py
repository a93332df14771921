"""Durable jobs: the records of long-running jobs (bulk import, snapshot restore, external refresh)
in the metadata store, who runs each, and the takeover of a job whose runner ended.

A job is one JSON record ``<prefix><id>`` holding, beside its kind's own fields, ``owner`` (the
incarnation of the process running it, ``vecdb.coord.session.INCARNATION``), ``updated_ms`` (its
last write) and ``attempts`` (how often it was taken over). Its runner rewrites it after each step
and at least every ``heartbeat_s()`` meanwhile (``Record``), each write a compare-and-put on the
value it last wrote: a runner whose record was taken over from it (it stalled past ``stale_s()``)
finds out at its next write (``JobLost``) and stops, so two runners never both carry a job on.

Rules (``JobStore.is_stale``): an unfinished job is stale, its runner taken for dead, when its record
was not rewritten for ``stale_s()``, or when its owner holds no session (the process ended:
``vecdb.coord.session.live_incarnations``) and the record is older than two heartbeats. A stale job is
taken over with ``JobStore.claim``: a compare-and-put of the record's last value that makes the
claimer its owner, so of any number of processes claiming one job exactly one wins. Stale jobs are
resumed oldest first (by id). A job is taken over at most ``MAX_ATTEMPTS`` times; when its runner ends
once more it is failed instead (a job that kills every process running it must not go round the
cluster for ever).

Timings come from the environment, read when used (tests shorten them): ``VECDB_JOBS_HEARTBEAT_S``
(default 5) and ``VECDB_JOBS_STALE_S`` (default 60). A finished job (completed or failed) is kept
``VECDB_JOBS_RETENTION_S`` (default 10800, Milvus's ``dataCoord.import.taskRetention``) after its last
write, then deleted by the sweepers (``JobStore.trim``): its state is no longer answered, as in Milvus.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vecdb.coord.session import INCARNATION, live_incarnations
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "VECDB_JOBS_HEARTBEAT_S"
STALE_ENV = "VECDB_JOBS_STALE_S"
RETENTION_ENV = "VECDB_JOBS_RETENTION_S"
TRIM_EVERY_S = 60.0  # how often a sweeper deletes the finished jobs past their retention
MAX_ATTEMPTS = 3


def heartbeat_s() -> float:
    """How often a running job's record is rewritten at least (seconds)."""
    return float(os.environ.get(HEARTBEAT_ENV, "5"))


def stale_s() -> float:
    """A record not rewritten for this long is stale, whatever its owner (seconds)."""
    return float(os.environ.get(STALE_ENV, "60"))


def retention_s() -> float:
    """How long a finished job's record is kept after its last write (seconds)."""
    return float(os.environ.get(RETENTION_ENV, "10800"))


def now_ms() -> int:
    return int(time.time() * 1000)


def from_record(cls: Any, raw: bytes) -> Any:
    """A kind's dataclass from its record; fields it does not know (another version's) left out."""
    d = json.loads(raw)
    return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class JobLost(Exception):
    """The job's record changed under its runner: another process took it over (or it was removed)."""


class DurableJob(Protocol):
    """What a kind's job record offers (a dataclass with these fields and ``to_json``)."""

    id: int
    owner: str
    updated_ms: int
    attempts: int

    def to_json(self) -> bytes: ...


class JobStore:
    """One kind's job records under ``prefix``; ``unfinished(record)`` says from a record (the JSON
    object) whether its job is still to run."""

    def __init__(self, meta: MetaStore, prefix: str, unfinished: Callable[[dict[str, Any]], bool]):
        self.meta, self.prefix, self._unfinished = meta, prefix, unfinished

    def key(self, job_id: int) -> str:
        return f"{self.prefix}{job_id}"

    def create(self, job: DurableJob) -> Record:
        """Record a new job, owned by this process (its writes then go through the returned ``Record``;
        its heartbeat starts with ``Record.start_heartbeat``)."""
        job.owner, job.updated_ms = INCARNATION, now_ms()
        raw = job.to_json()
        self.meta.put(self.key(job.id), raw)
        return Record(self, job, raw)

    def raw(self, job_id: int) -> bytes | None:
        return self.meta.get(self.key(job_id))

    def scan(self) -> list[tuple[str, bytes]]:
        return self.meta.scan(self.prefix)

    def is_stale(self, record: dict[str, Any], live: set[str], at_ms: int | None = None) -> bool:
        """Whether ``record``'s job is unfinished and its runner taken for dead (``live``: the
        incarnations that hold a session now)."""
        if not self._unfinished(record):
            return False
        age = (now_ms() if at_ms is None else at_ms) - int(record.get("updated_ms", 0))
        if age > stale_s() * 1000:
            return True
        owner = record.get("owner", "")
        return owner != INCARNATION and owner not in live and age > 2 * heartbeat_s() * 1000

    def stale(self, live: set[str] | None = None) -> list[tuple[str, bytes]]:
        """The stale jobs' (key, record), in the order to resume them: oldest (smallest id) first."""
        live = live_incarnations(self.meta) if live is None else live
        out = []
        for key, raw in self.scan():
            try:
                record = json.loads(raw)
            except ValueError:
                log.warning("jobs: %s is not a job record I can read", key)
                continue
            if self.is_stale(record, live):
                out.append((int(record.get("id", 0)), key, raw))
        return [(key, raw) for _, key, raw in sorted(out)]

    def trim(self) -> int:
        """Delete the finished jobs whose record was last written more than ``retention_s()`` ago (each a
        compare-and-delete of the value read: a sweeper of another process may trim at once); how many."""
        cutoff = now_ms() - retention_s() * 1000
        gone = 0
        for key, raw in self.scan():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not self._unfinished(record) and int(record.get("updated_ms", 0)) < cutoff:
                gone += bool(self.meta.txn(deletes=[key], expect={key: raw}))
        return gone

    def claim(self, key: str, raw: bytes) -> bytes | None:
        """Take the job over: its record with this process as owner and one more attempt, put only if
        the record still holds ``raw`` (compare-and-put). The new value, or None when another process
        changed it first (it claimed the job, or its runner was alive after all)."""
        record = json.loads(raw)
        record.update(owner=INCARNATION, attempts=int(record.get("attempts", 0)) + 1, updated_ms=now_ms())
        new = json.dumps(record).encode()
        return new if self.meta.txn(puts={key: new}, expect={key: raw}) else None


class Record:
    """A running job's record, written by its one runner: ``put`` after each step (a compare-and-put on
    the value it last wrote; ``JobLost`` once another process took the job over), a heartbeat every
    ``heartbeat_s()`` meanwhile (so a long step does not look like a dead runner), ``close`` ends it."""

    def __init__(self, store: JobStore, job: DurableJob, raw: bytes):
        self.store, self.raw = store, raw
        self.job: Any = job  # the kind's dataclass (ImportJob, RestoreJob, RefreshJob)
        self.key = store.key(job.id)
        self.lost = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._beat: threading.Thread | None = None

    def start_heartbeat(self) -> Record:
        self._beat = threading.Thread(target=self._heartbeat, name=f"job-{self.job.id}-heartbeat", daemon=True)
        self._beat.start()
        return self

    def put(self) -> None:
        with self._lock:
            self._put()

    def commit(self, puts: dict[str, bytes], deletes: list[str]) -> None:
        """``puts`` and ``deletes`` together with the job's record, in one transaction that expects the
        record as this runner last wrote it: a runner taken over meanwhile writes none of them
        (``JobLost``), so what it commits can never land after a new runner cleaned up."""
        with self._lock:
            self._put(puts, deletes)

    def _put(self, puts: dict[str, bytes] | None = None, deletes: list[str] | None = None) -> None:
        if self.lost:
            raise JobLost(f"job {self.job.id} was taken over by another process")
        self.job.owner, self.job.updated_ms = INCARNATION, now_ms()
        new = self.job.to_json()
        if not self.store.meta.txn(puts={**(puts or {}), self.key: new}, deletes=deletes or [],
                                   expect={self.key: self.raw}):
            self.lost = True
            raise JobLost(f"job {self.job.id} was taken over by another process")
        self.raw = new

    def put_last(self) -> None:
        """The job's last write (its end or failure), logged instead of raised when another process
        took the job over meanwhile or the store is gone (stopping)."""
        try:
            self.put()
        except JobLost:
            log.warning("job %s: taken over by another process; its end here is not recorded", self.key)
        except Exception:  # noqa: BLE001 - the store is gone (stopping)
            log.exception("job %s: its end could not be recorded", self.key)

    def close(self) -> None:
        self._done.set()

    def _heartbeat(self) -> None:
        while not self._done.wait(heartbeat_s()):
            try:
                with self._lock:
                    if not self._done.is_set():
                        self._put()
            except JobLost:
                log.warning("job %s: taken over by another process; this runner stops at its next step",
                            self.key)
                return
            except Exception:  # noqa: BLE001 - the next beat or step retries
                pass



@dataclass
class JobKind:
    """One kind of job as the sweeper resumes it: its store, how a record reads (``load``), how a
    claimed job runs to its end on the calling thread (``run``), how one given up on ends (``fail``)."""

    name: str
    store: JobStore
    load: Callable[[bytes], Any]
    run: Callable[[Record], None]
    fail: Callable[[Record, str], None]


class JobSweeper:
    """Takes over the stale jobs of every kind (``JobStore.stale``, oldest first; ``JobStore.claim``
    makes one process of many the winner) and runs each on a thread of its own: once at ``start`` (a
    standalone server carries on its previous run's jobs) and every ``interval`` seconds after (in a
    cluster every proxy sweeps; default ``heartbeat_s()``)."""

    def __init__(self, kinds: list[JobKind], interval: float | None = None):
        self.kinds, self.interval = kinds, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runners: list[threading.Thread] = []

    def start(self) -> JobSweeper:
        self._thread = threading.Thread(target=self._loop, name="job-sweeper", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        trimmed = 0.0
        while not self._stop.is_set():
            try:
                self.sweep()
                if time.monotonic() - trimmed >= TRIM_EVERY_S:
                    trimmed = time.monotonic()
                    for kind in self.kinds:
                        kind.store.trim()
            except Exception:  # noqa: BLE001 - the store is unreachable now: the next sweep retries
                log.exception("jobs: sweep failed")
            if self._stop.wait(self.interval or heartbeat_s()):
                return

    def sweep(self) -> list[threading.Thread]:
        """Claim every stale job now; the threads started for the ones this process won."""
        started = []
        live: set[str] | None = None
        for kind in self.kinds:
            if self._stop.is_set():
                break
            live = live_incarnations(kind.store.meta) if live is None else live
            for key, raw in kind.store.stale(live):
                new = kind.store.claim(key, raw)
                if new is None:
                    continue  # another process won it
                rec = Record(kind.store, kind.load(new), new)
                if rec.job.attempts > MAX_ATTEMPTS:
                    kind.fail(rec, f"the {kind.name} stopped: the processes running it ended "
                                   f"{rec.job.attempts} times")
                    continue
                log.warning("jobs: took over %s job %d (attempt %d) from a process that ended", kind.name,
                         rec.job.id, rec.job.attempts)
                t = threading.Thread(target=kind.run, args=(rec,), name=f"{kind.name}-{rec.job.id}", daemon=True)
                t.start()
                started.append(t)
        self.runners = [t for t in self.runners if t.is_alive()] + started
        return started

    def close(self) -> None:
        """Stop sweeping (jobs running here go on until the process ends; another process takes them over)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

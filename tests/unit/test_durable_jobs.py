"""The durable job store (vecdb.jobs) on the memory metadata store: stale detection (a quiet record, a
runner whose process holds no session), the claim (of two claimers exactly one wins, also from threads
racing), resume order, the fenced writes of a runner taken over, and the sweeper carrying a job on and
giving up on one that ended too often."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass

import pytest

from vecdb import jobs
from vecdb.coord.session import INCARNATION
from vecdb.storage.memory import MemoryMetaStore


@dataclass
class Job:
    id: int
    state: str = "Running"
    step: int = 0
    owner: str = ""
    updated_ms: int = 0
    attempts: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Job:
        return cls(**json.loads(raw))


def _store(meta=None) -> jobs.JobStore:
    return jobs.JobStore(meta or MemoryMetaStore(), "test_job/", lambda r: r["state"] == "Running")


def _orphan(store: jobs.JobStore, job_id: int, age_ms: int, owner: str = "ended", state: str = "Running") -> None:
    job = Job(id=job_id, state=state, owner=owner, updated_ms=jobs.now_ms() - age_ms)
    store.meta.put(store.key(job_id), job.to_json())


def test_stale_when_quiet_past_stale_s_or_its_owner_holds_no_session(monkeypatch):
    monkeypatch.setenv(jobs.HEARTBEAT_ENV, "1")
    monkeypatch.setenv(jobs.STALE_ENV, "30")
    store = _store()
    _orphan(store, 1, age_ms=500)  # owner gone, but written within two heartbeats: maybe still starting
    _orphan(store, 2, age_ms=5_000)  # owner gone, quiet for 5 heartbeats
    _orphan(store, 3, age_ms=5_000, owner="alive")  # owner holds a session: not stale yet
    _orphan(store, 4, age_ms=31_000, owner="alive")  # ... until quiet for stale_s whatever the owner
    _orphan(store, 5, age_ms=99_000, state="Completed")  # finished: never stale
    _orphan(store, 6, age_ms=5_000, owner=INCARNATION)  # this process's own
    assert [k for k, _ in store.stale({"alive", INCARNATION})] == ["test_job/2", "test_job/4"]


def test_resume_order_is_oldest_job_first():
    store = _store()
    for job_id in (30, 4, 17):
        _orphan(store, job_id, age_ms=120_000)
    assert [k for k, _ in store.stale(set())] == ["test_job/4", "test_job/17", "test_job/30"]


def test_of_two_claimers_one_wins():
    store = _store()
    _orphan(store, 1, age_ms=120_000)
    (key, raw), = store.stale(set())
    first = store.claim(key, raw)
    second = store.claim(key, raw)  # the same stale value, read before the first claim
    assert first is not None and second is None
    record = json.loads(store.meta.get(key))
    assert record["owner"] == INCARNATION and record["attempts"] == 1
    assert store.stale(set()) == []  # claimed: fresh again


def test_claim_race_from_threads_has_exactly_one_winner():
    store = _store()
    _orphan(store, 1, age_ms=120_000)
    (key, raw), = store.stale(set())
    barrier = threading.Barrier(8)
    won: list[bytes | None] = []

    def claim():
        barrier.wait()
        won.append(store.claim(key, raw))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(w is not None for w in won) == 1


def test_a_runner_taken_over_fails_its_next_write_and_the_new_owner_carries_on():
    store = _store()
    rec = store.create(Job(id=1))
    rec.job.step = 1
    rec.put()
    raw = store.meta.get(store.key(1))
    assert store.claim(store.key(1), raw) is not None  # another process took it over (say, the first stalled)
    rec.job.step = 2
    with pytest.raises(jobs.JobLost):
        rec.put()
    assert json.loads(store.meta.get(store.key(1)))["step"] == 1  # the old runner wrote nothing more


def test_the_sweeper_resumes_a_stale_job_and_gives_up_after_max_attempts(monkeypatch):
    monkeypatch.setenv(jobs.HEARTBEAT_ENV, "0.05")
    meta = MemoryMetaStore()
    store = _store(meta)
    ran: list[int] = []
    failed: list[tuple[int, str]] = []

    def run(rec: jobs.Record) -> None:
        rec.job.state = "Done"
        rec.job.step = 99
        rec.put()
        ran.append(rec.job.id)

    def fail(rec: jobs.Record, reason: str) -> None:
        rec.job.state = "Failed"
        rec.put()
        failed.append((rec.job.id, reason))

    _orphan(store, 1, age_ms=120_000)
    poison = Job(id=2, owner="ended", updated_ms=jobs.now_ms() - 120_000, attempts=jobs.MAX_ATTEMPTS)
    meta.put(store.key(2), poison.to_json())
    _orphan(store, 3, age_ms=0)  # fresh: left alone
    sweeper = jobs.JobSweeper([jobs.JobKind("test", store, Job.from_json, run, fail)])
    for t in sweeper.sweep():
        t.join(5)
    assert ran == [1] and [j for j, _ in failed] == [2] and "ended 4 times" in failed[0][1]
    assert json.loads(meta.get(store.key(1)))["state"] == "Done"
    assert json.loads(meta.get(store.key(3)))["state"] == "Running"
    time.sleep(0.2)  # job 3's owner holds no session and it is quiet past two heartbeats: stale now
    assert [t.join(5) for t in sweeper.sweep()] == [None] and ran == [1, 3]
    assert sweeper.sweep() == []  # nothing left


def test_finished_jobs_are_trimmed_after_their_retention(monkeypatch):
    """Milvus keeps a finished import job for dataCoord.import.taskRetention; so does vecdb
    (VECDB_JOBS_RETENTION_S): then the record goes, an unfinished one never does."""
    store = _store()
    old, fresh, running = Job(1, "Completed"), Job(2, "Failed"), Job(3)
    for job in (old, fresh, running):
        store.create(job)
    raw = json.loads(store.raw(1))
    raw["updated_ms"] -= 20_000
    store.meta.put(store.key(1), json.dumps(raw).encode())
    running_raw = json.loads(store.raw(3))
    running_raw["updated_ms"] -= 20_000
    store.meta.put(store.key(3), json.dumps(running_raw).encode())
    monkeypatch.setenv(jobs.RETENTION_ENV, "10")
    assert store.trim() == 1
    assert store.raw(1) is None and store.raw(2) is not None and store.raw(3) is not None
    monkeypatch.setenv(jobs.RETENTION_ENV, "0")
    time.sleep(0.01)
    assert store.trim() == 1 and store.raw(2) is None and store.raw(3) is not None


def test_a_commit_is_fenced_by_the_job_record():
    """What a runner registers (a restore's segment records) goes in one transaction with its record:
    once another process took the job over, none of it lands (the new runner may have cleaned up)."""
    store = _store()
    rec = store.create(Job(id=1))
    rec.commit({"seg/1/a": b"x"}, [])
    assert store.meta.get("seg/1/a") == b"x"
    store.meta.put("gcintent/b", b"i")
    assert store.claim(store.key(1), store.meta.get(store.key(1))) is not None
    with pytest.raises(jobs.JobLost):
        rec.commit({"seg/1/b": b"y"}, ["gcintent/b"])
    assert store.meta.get("seg/1/b") is None and store.meta.get("gcintent/b") == b"i"

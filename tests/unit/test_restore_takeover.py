"""A snapshot restore whose process ended part way (vecdb.coord.snapshots on the memory backends) is
taken over by the job sweeper (vecdb.jobs): the collection the ended run created, with the files it
had copied, is dropped and the restore runs again from the start, to Completed, the same job id, one
target collection holding the snapshot's rows once and no file of the ended run left."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_snapshots import _live_ids, _persist, env  # noqa: F401 - fixture
from vecdb import jobs
from vecdb.coord.snapshots import COMPLETED, EXECUTING, FAILED, SnapshotManager


class _Died(BaseException):
    """The process running the job ends here (nothing of the job's own error handling runs)."""


def test_a_restore_cut_short_is_dropped_and_run_again_by_the_process_taking_it_over(env, monkeypatch):  # noqa: F811
    meta, objects, catalog, ddl, snaps = env
    _persist(meta, objects, catalog, 5, range(10))
    _persist(meta, objects, catalog, 8, range(10, 15), partition="p1", deletes=[0, 1])
    snaps.create("default", "src", "s1")
    real = SnapshotManager._copy_segment
    calls = []

    def dies_on_the_second_segment(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Died()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SnapshotManager, "_copy_segment", dies_on_the_second_segment)
    with pytest.raises(_Died):
        snaps.restore("s1", "default", "src", "default", "dst", wait=True)
    monkeypatch.setattr(SnapshotManager, "_copy_segment", real)
    (key, raw), = meta.scan("snapshot_restore/")
    record = json.loads(raw)
    half = catalog.get("default", "dst")
    assert record["state"] == EXECUTING and record["collection_id"] == half.id
    assert objects.list(f"segments/{half.id}/")  # the first segment's files, copied
    record.update(owner="a-process-that-ended", updated_ms=jobs.now_ms() - 120_000)
    meta.put(key, json.dumps(record).encode())

    sweeper = jobs.JobSweeper([snaps.restore_job_kind()])
    runners = sweeper.sweep()
    assert len(runners) == 1
    runners[0].join(30)
    job = snaps.job(record["id"])
    assert (job.state, job.progress, job.attempts) == (COMPLETED, 100, 1), job.reason
    dst = catalog.get("default", "dst")
    assert dst.id != half.id and dst.id == job.collection_id
    assert _live_ids(meta, objects, catalog, "dst") == list(range(2, 15))
    assert objects.list(f"segments/{half.id}/") == [] and meta.scan(f"seg/{half.id}/") == []
    assert meta.scan(f"gcintent/segments/{half.id}/") == []
    assert sorted(c.name for c in catalog.list_collections("default")) == ["dst", "src"]


def test_a_takeover_never_drops_a_collection_the_ended_run_did_not_create(env, monkeypatch):  # noqa: F811
    """The ended run died before it created its target (no collection id recorded); a client then created a
    collection of that name: the takeover fails the job and leaves that collection alone."""
    meta, objects, catalog, ddl, snaps = env
    _persist(meta, objects, catalog, 5, range(10))
    snaps.create("default", "src", "s1")

    def dies_before_creating(self, *args, **kwargs):
        raise _Died()

    real = SnapshotManager._create_collection
    monkeypatch.setattr(SnapshotManager, "_create_collection", dies_before_creating)
    with pytest.raises(_Died):
        snaps.restore("s1", "default", "src", "default", "dst", wait=True)
    monkeypatch.setattr(SnapshotManager, "_create_collection", real)
    (key, raw), = meta.scan("snapshot_restore/")
    record = json.loads(raw)
    assert record["state"] == EXECUTING and record["collection_id"] == 0
    mine = catalog.get("default", "src").schema
    ddl.create_collection("default", "dst", type(mine).from_dict({**mine.to_dict(), "name": "dst"}), 1, 0, {}, 0)
    users = catalog.get("default", "dst").id
    record.update(owner="a-process-that-ended", updated_ms=jobs.now_ms() - 120_000)
    meta.put(key, json.dumps(record).encode())

    runners = jobs.JobSweeper([snaps.restore_job_kind()]).sweep()
    for t in runners:
        t.join(30)
    job = snaps.job(record["id"])
    assert job.state == FAILED and "already exists" in job.reason
    assert catalog.get("default", "dst").id == users  # the client's collection, still there

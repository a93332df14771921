"""A load of a collection a snapshot restore still runs into is refused with Milvus's
CollectionOnRecovering (106), naming the job (vecdb.coord.snapshots.refuse_while_restoring), instead
of "there is no vector index" (the restore creates the index after the collection) or a load of part
of its segments; once the job completed or failed, and for other collections, nothing is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vecdb import errors
from vecdb.coord.snapshots import COMPLETED, EXECUTING, FAILED, JOB_PREFIX, PENDING, RestoreJob, refuse_while_restoring
from vecdb.storage.memory import MemoryMetaStore


def _job(meta: MemoryMetaStore, job_id: int, state: str, collection: str = "docs_back", cid: int = 0) -> None:
    job = RestoreJob(job_id, "daily", "default", "docs", "default", collection, state=state, progress=40,
                     collection_id=cid)
    meta.put(f"{JOB_PREFIX}{job_id}", job.to_json())


def test_load_refused_while_restoring():
    meta = MemoryMetaStore()
    info = SimpleNamespace(db="default", name="docs_back", id=7)
    refuse_while_restoring(meta, info)  # no job: nothing to say
    for state in (PENDING, EXECUTING):
        _job(meta, 3, state, cid=7 if state == EXECUTING else 0)
        with pytest.raises(errors.CollectionOnRecovering) as e:
            refuse_while_restoring(meta, info)
        assert e.value.code == 106
        assert str(e.value).startswith("collection docs_back is being restored by job 3 (") and \
            "load it once the restore completes" in str(e.value)
    for state in (COMPLETED, FAILED):
        _job(meta, 3, state, cid=7)
        refuse_while_restoring(meta, info)
    _job(meta, 4, EXECUTING, collection="other")
    _job(meta, 5, EXECUTING, cid=99)  # an older restore's collection of the same name, dropped since
    refuse_while_restoring(meta, info)

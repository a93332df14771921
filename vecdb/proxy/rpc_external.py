"""RPCs: external collections' refreshes (Milvus 3.0: ``RefreshExternalCollection``,
``GetRefreshExternalCollectionProgress``, ``ListRefreshExternalCollectionJobs``; pymilvus
``refresh_external_collection`` and friends).

A refresh is a job (``vecdb.external_tables``: its record in the metadata store, one at a time per
collection) run in a thread of the proxy that took the request: it lists the parquet files directly
under the collection's prefix, reads and checks every file that is new (or changed: another size or
ETag) before writing anything (a file that lacks a mapped column, or holds a value that does not
convert, fails the job and nothing is written), deletes the rows of the files gone (or changed), then
writes the new files' rows as inserts through the log, each row with a fresh ``__virtual_pk__``, and
flushes. A job whose process ended is taken over by another (``vecdb.jobs``, ``vecdb.proxy.job_sweep``):
a file's keys are recorded (the file marked ``partial``) before its rows are written, and a refresh
taken over reads a partial file again and writes its rows under the same keys (a row written twice
under one key replaces, so a stalled old runner's late batch adds nothing), or deletes its rows when the
file changed meanwhile. Unlike Milvus, which shows a
refresh's rows after a release and load, a loaded collection shows them at once, as it shows any
insert.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from pymilvus.grpc_gen import milvus_pb2

from vecdb import errors
from vecdb.external_spec import parse_external
from vecdb.external_tables import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    RefreshJob,
    RefreshStore,
    SourceFiles,
    file_rows,
)
from vecdb.jobs import JobKind, JobLost, Record
from vecdb.proxy import status
from vecdb.proxy.base import rpc
from vecdb.proxy.rpc_collections import CollectionRpcs
from vecdb.proxy.rpc_dml import DmlRpcs
from vecdb.proxy.rpc_import import row_batches
from vecdb.request_db import db_of

log = logging.getLogger(__name__)


class ExternalRpcs(CollectionRpcs, DmlRpcs):
    def start_refresh(self, db: str, collection: str, source: str, spec: str) -> RefreshJob:
        info = self.collection(db, collection)
        if not info.schema.is_external:
            raise errors.InvalidParameter(f"collection {info.name} is not an external collection")
        if bool(source) != bool(spec):
            raise errors.InvalidParameter("external_source and external_spec must be both given (to replace the "
                                          "collection's) or both left out")
        replace = bool(source)
        if replace:
            parse_external(source, spec)  # InvalidParameter
        else:
            source, spec = self.external_pair(info)
        job = RefreshJob(id=self.r.ids.allocate(1), db=info.db, collection=info.name, collection_id=info.id,
                         external_source=source, external_spec=spec, replace=replace)
        store = self.refresh_store()
        rec = store.start(job)
        threading.Thread(target=self._run_refresh, args=(rec,), name=f"refresh-{job.id}", daemon=True).start()
        return job

    def refresh_job_kind(self) -> JobKind:
        """Refreshes as the job sweeper resumes them (``vecdb.proxy.job_sweep``)."""
        return JobKind("refresh", self.refresh_store().jobs, RefreshJob.from_json, self._run_refresh, _fail_refresh)

    def _run_refresh(self, rec: Record) -> None:
        """Run (or carry on, when taken over) the refresh of ``rec`` to its end, on this thread."""
        job = rec.job
        store = self.refresh_store()
        rec.start_heartbeat()
        try:
            self._refresh(store, rec)
            job.state, job.progress = COMPLETED, 100
        except JobLost:
            log.warning("refresh job %d: taken over by another process; this one stops", job.id)
            rec.close()
            return
        except Exception as e:  # noqa: BLE001 - every failure ends the job with its reason
            if not isinstance(e, errors.VecdbError):
                log.exception("refresh job %d failed", job.id)
            job.state, job.reason = FAILED, getattr(e, "message", None) or str(e)
        rec.close()
        _finish(store, rec)

    def _refresh(self, store: RefreshStore, rec: Record) -> None:
        job = rec.job
        info = self.collection(job.db, job.collection)
        if info.id != job.collection_id:
            raise errors.CollectionNotFound(f"collection {job.collection} was dropped during the refresh")
        job.state = IN_PROGRESS
        rec.put()
        target = parse_external(job.external_source, job.external_spec)
        files = SourceFiles(target)
        listed = {f"s3://{target.bucket}/{k}": (k, meta) for k, meta in files.list().items()}
        state = store.state(info.id)
        held: dict[str, dict] = state.get("files", {})

        def same(p: str) -> bool:
            return p in listed and {"size": held[p]["size"], "etag": held[p]["etag"]} == listed[p][1]

        # a file being written when a run ended (taken over) and unchanged since is written again under the
        # keys recorded for it (a row written twice under one key replaces, so a stalled old runner's late
        # batch adds nothing); one changed or gone has its rows deleted
        resume = {p for p, meta in held.items() if meta.get("partial") and same(p)}
        gone = [p for p in held if p not in resume and (held[p].get("partial") or not same(p))]
        new = sorted(p for p in listed if p not in held or p in gone or p in resume)
        # pass 1: read and check every new file before writing anything
        zone = self.zone_of(info)
        batches: dict[str, list[tuple[dict, int]]] = {}
        for i, path in enumerate(new):
            rows = file_rows(info.schema, files.read(listed[path][0]), path)
            batches[path] = row_batches(info.schema, rows, path, zone) if rows else []
            if path in resume and [b - a for a, b in held[path]["pks"]] != [n for _, n in batches[path]]:
                resume.discard(path)  # cut into other batches than its keys were recorded for: new keys
                gone.append(path)
            job.progress = 50 * (i + 1) // len(new)
            rec.put()
        # the rows of the files gone (or changed)
        for path in gone:
            pks = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in held[path]["pks"]] or
                                 [np.empty(0, np.int64)])
            if len(pks):
                self._delete_pks(info, pks)
            job.rows_deleted += len(pks)
            del held[path]
            store.put_state(info.id, state)
        # pass 2: the new rows as inserts, each file's keys recorded with it (as partial) before they are written
        total = sum(n for b in batches.values() for _, n in b)
        pk = info.schema.primary_field.name
        for path in new:
            ranges = []
            file_batches = batches.pop(path)
            recorded = held[path]["pks"] if path in resume else [[None, None]] * len(file_batches)
            for (columns, n), (start, _) in zip(file_batches, recorded):
                self._assign_pks(info, columns, n, start)
                first = int(columns[pk][0])
                ranges.append([first, first + n])
            entry = {"size": listed[path][1]["size"], "etag": listed[path][1]["etag"], "pks": ranges}
            held[path] = {**entry, "partial": True}
            state["files"] = held
            store.put_state(info.id, state)
            rec.put()  # still its runner: a run taken over must not write on
            for columns, n in file_batches:
                rec.put()  # a run taken over (it stalled past the stale limit) stops before its next batch
                self._write_rows(info, columns, n, "")
                job.rows_added += n
                job.progress = 50 + 49 * job.rows_added // max(1, total)
            held[path] = entry
            store.put_state(info.id, state)
            rec.put()
        if job.replace:
            state["source"], state["spec"] = job.external_source, job.external_spec
        state["files"] = held
        store.put_state(info.id, state)
        if new or gone:
            try:  # seal what was written, as an import does
                self.sealer.flush(self.collection(job.db, job.collection))
            except Exception as e:  # noqa: BLE001 - the rows are durable in the log
                log.warning("refresh job %d: every row is written; the flush after it failed (%s)", job.id, e)

    # --- the RPCs ------------------------------------------------------------------------
    @rpc(milvus_pb2.RefreshExternalCollectionResponse)
    def RefreshExternalCollection(self, request, context):
        job = self.start_refresh(db_of(request, context), request.collection_name, request.external_source,
                                 request.external_spec)
        return milvus_pb2.RefreshExternalCollectionResponse(status=status.success(), job_id=job.id)

    @rpc(milvus_pb2.GetRefreshExternalCollectionProgressResponse)
    def GetRefreshExternalCollectionProgress(self, request, context):
        job = self.refresh_store().get(request.job_id)
        if job is None:
            raise errors.InvalidParameter(f"refresh job {request.job_id} not found")
        return milvus_pb2.GetRefreshExternalCollectionProgressResponse(
            status=status.success(), job_info=milvus_pb2.RefreshExternalCollectionJobInfo(**job.info()))

    @rpc(milvus_pb2.ListRefreshExternalCollectionJobsResponse)
    def ListRefreshExternalCollectionJobs(self, request, context):
        db = db_of(request, context)
        cid = self.collection(db, request.collection_name).id if request.collection_name else None
        jobs = self.refresh_store().list(db, cid)
        return milvus_pb2.ListRefreshExternalCollectionJobsResponse(
            status=status.success(), jobs=[milvus_pb2.RefreshExternalCollectionJobInfo(**j.info()) for j in jobs])


def _finish(store: RefreshStore, rec: Record) -> None:
    try:
        store.finish(rec)
    except JobLost:
        log.warning("refresh job %d: taken over by another process; its end here is not recorded", rec.job.id)
    except Exception:  # noqa: BLE001 - the store is gone (stopping)
        log.exception("refresh job %d: its end could not be recorded", rec.job.id)


def _fail_refresh(rec: Record, reason: str) -> None:
    rec.job.state, rec.job.reason = FAILED, reason
    _finish(RefreshStore(rec.store.meta), rec)

"""RPCs: bulk import (``Import``, ``GetImportState``, ``ListImportTasks``; pymilvus
``utility.do_bulk_insert`` and friends), run by the proxy that takes the request.

A job (``vecdb.importer``) is recorded in the metadata store, then run in a thread of this
proxy: every file is read and validated against the schema first (the same checks as an
insert: types, dims, primary keys, auto_id, dynamic fields, nullable and default values), so a
bad file fails the job with the file, the row and the reason and nothing is written; then the
rows go in as inserts through the log in batches (auto_id keys assigned, routed to shards and
partitions, the seal policy applied), and the collection is flushed, so the rows end as sealed
segments, visible to loaded collections as any insert is.

A job is durable (``vecdb.jobs``): one whose process ended is taken over by another (a standalone
server when it starts again, any proxy of a cluster: ``vecdb.proxy.job_sweep``), which checks the files
again and writes on from the batch recorded in flight (``importer.ImportJob.cursor``), that batch again
with the same primary keys, so every row of the files is there once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vecdb import errors, importer, jobs
from vecdb.catalog_model import DEFAULT_PARTITION
from vecdb.external_tables import refuse_write
from vecdb.importer import COMPLETED, FAILED, IMPORTING, PENDING, ImportJob, JobStore
from vecdb.jobs import JobKind
from vecdb.proxy import status
from vecdb.proxy.base import PARTITION_KEY_NAMES, kv_dict, rpc
from vecdb.proxy.fielddata import columns_from_field_data
from vecdb.proxy.fieldencode import field_data_from_columns
from vecdb.proxy.quota import admit_collection
from vecdb.proxy.rpc_dml import DmlRpcs
from vecdb.request_db import db_of
from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, DataType

log = logging.getLogger(__name__)

_STATES = {PENDING: common_pb2.ImportPending, IMPORTING: common_pb2.ImportStarted,
           COMPLETED: common_pb2.ImportCompleted, FAILED: common_pb2.ImportFailed}


class ImportRpcs(DmlRpcs):
    def _jobs(self) -> JobStore:
        return JobStore(self.stores()[0])

    def start_import(self, db: str, collection: str, partition: str, groups: list[list[str]]) -> ImportJob:
        """Record a job for ``groups`` (see ``importer.group_files``) and start it; checks what can be
        checked before any file is read (the collection, the partition, the file types)."""
        info = self.collection(db, collection)
        admit_collection(self.r, "Import", None, None, info)  # database.force.deny.writing
        refuse_write(info.schema, "import", info.name)  # an external collection's rows come from its files
        if info.schema.partition_key_field is not None:
            if partition:
                raise errors.InvalidParameter(PARTITION_KEY_NAMES)
        else:
            info.partition(partition or DEFAULT_PARTITION)  # PartitionNotFound
        importer.check_groups(groups)
        job = ImportJob(id=self.r.ids.allocate(1), db=db, collection=info.name, collection_id=info.id,
                        partition=partition, files=groups)
        rec = self._jobs().create(job)
        threading.Thread(target=self._run_import, args=(rec,), name=f"import-{job.id}", daemon=True).start()
        return job

    def import_job_kind(self) -> JobKind:
        """Bulk import as the job sweeper resumes it (``vecdb.proxy.job_sweep``)."""
        return JobKind("import", self._jobs(), ImportJob.from_json, self._run_import, _fail_import)

    def get_import_job(self, job_id: int) -> ImportJob:
        job = self._jobs().get(job_id)
        if job is None:
            raise errors.InvalidParameter(f"import job does not exist[jobID={job_id}]")
        return job

    def list_import_jobs(self, db: str, collection: str) -> list[ImportJob]:
        cid = self.collection(db, collection).id if collection else None
        return self._jobs().list(db, cid)

    # --- the job -------------------------------------------------------------------------
    def _run_import(self, rec: jobs.Record) -> None:
        """Run (or carry on, when taken over) the job of ``rec`` to its end, on this thread."""
        job = rec.job
        rec.start_heartbeat()
        try:
            self._import(rec)
        except jobs.JobLost:
            log.warning("import job %d: taken over by another process; this one stops", job.id)
        except Exception as e:  # noqa: BLE001 - every failure ends the job with its reason
            if not isinstance(e, errors.VecdbError):
                log.exception("import job %d failed", job.id)
            _fail_import(rec, getattr(e, "message", None) or str(e))
        finally:
            rec.close()

    def _import(self, rec: jobs.Record) -> None:
        job = rec.job
        _, objects = self.stores()
        local_files = self.r.component == "standalone" and hasattr(objects, "_root")
        info = self._live_collection(job)
        job.state, job.total_rows = IMPORTING, 0  # a job taken over checks (and counts) every file again
        rec.put()
        zone = self.zone_of(info)  # TIMESTAMPTZ strings without an offset are read in it
        # pass 1: read and validate every file before writing anything; the validated batches are
        # kept up to HOLD_BYTES, the groups past it read and converted again in pass 2
        kept: list[list[tuple[dict, int]] | None] = []
        held, nfiles, read = 0, sum(len(g) for g in job.files), 0
        for group in job.files:
            batches = self._read_group(info.schema, objects, group, local_files, zone)
            size = sum(_nbytes(cols) for cols, _ in batches)
            kept.append(batches if held + size <= importer.HOLD_BYTES else None)
            held += size if kept[-1] is not None else 0
            read += len(group)
            job.total_rows += sum(n for _, n in batches)
            job.progress = 50 * read // nfiles
            rec.put()
            del batches
        self._write_batches(rec, info, objects, local_files, zone, kept)
        self._live_collection(job)  # dropped while the last batch was written: failed, not completed
        try:  # seal what was written (Milvus's imports end as sealed segments)
            job.segment_ids, _ = self.sealer.flush(self.collection(job.db, job.collection))
        except Exception as e:  # noqa: BLE001 - the rows are durable in the log: the seal policy seals them later
            log.warning("import job %d: every row is written; the flush after it failed (%s)", job.id, e)
        job.state, job.progress, job.complete_ms = COMPLETED, 100, int(time.time() * 1000)
        rec.put()

    def _write_batches(self, rec: jobs.Record, info, objects, local_files: bool, zone: str,
                       kept: list[list[tuple[dict, int]] | None]) -> None:
        """Pass 2: the rows as inserts through the log, from the job's cursor on (``ImportJob``): each
        batch recorded in flight, with its primary keys, before it is written."""
        job = rec.job
        start = job.cursor or {"group": 0, "batch": 0, "rows": 0}
        written = int(start.get("rows", 0))
        pk = info.schema.primary_field
        fault = importer.fault_after() if job.attempts == 0 else None
        for g, (group, held_batches) in enumerate(zip(job.files, kept)):
            if g < start["group"]:
                continue
            if held_batches is None:
                held_batches = self._read_group(info.schema, objects, group, local_files, zone)
            for b, (columns, n) in enumerate(held_batches):
                if g == start["group"] and b < start["batch"]:
                    continue
                # the collection as it is now: one dropped (or dropped and created again) or a partition
                # dropped meanwhile fails the job (its rows went nowhere; it used to end "Completed")
                info = self._live_collection(job)
                cursor: dict = {"group": g, "batch": b, "rows": written}
                if pk.auto_id:  # the in-flight batch's keys again, else new ones
                    first = start.get("pk") if (g, b) == (start["group"], start["batch"]) else None
                    cursor["pk"] = self._assign_pks(info, columns, n, None if first is None else int(first))
                job.cursor, job.imported_rows = cursor, written
                rec.put()  # recorded before it is written (one metadata write per batch)
                try:
                    self._write_rows(info, columns, n, job.partition)
                except errors.CollectionNotFound:  # the log refused its dropped channel: dropped just now
                    self._live_collection(job)
                    raise
                written += n
                if fault is not None and _batches_written(g, b, kept) >= fault:
                    os.kill(os.getpid(), signal.SIGKILL)  # crash tests (importer.FAULT_ENV): written, next unrecorded
                job.imported_rows = written
                job.progress = 50 + 49 * written // max(1, job.total_rows)
        job.cursor = {"group": len(job.files), "batch": 0, "rows": written}
        job.imported_rows = written

    def _live_collection(self, job: ImportJob):
        """The job's collection now; CollectionNotFound when it was dropped since the job began (or
        dropped and created again under its name: another collection)."""
        try:
            info = self.collection(job.db, job.collection)
        except errors.CollectionNotFound:
            info = None
        if info is None or info.id != job.collection_id:
            raise errors.CollectionNotFound(f"collection {job.collection} was dropped during the import")
        return info

    @staticmethod
    def _read_group(schema: CollectionSchema, objects, group: list[str], local_files: bool,
                    zone: str) -> list[tuple[dict, int]]:
        """One file group as validated insert batches (raises on the first bad row); ``zone``: the
        collection's time zone."""
        data = {p: importer.read_object(objects, p, local_files) for p in group}
        kind = importer.file_kind(group[0])
        if kind == "npy":
            return _numpy_batches(schema, data, zone)
        path = group[0]
        rows = importer.parquet_rows(schema, data.pop(path), path) if kind == "parquet" else \
            importer.json_rows(data.pop(path), path)
        return row_batches(schema, importer.merge_dynamic(schema, rows, path), path, zone)

    # --- the RPCs ------------------------------------------------------------------------
    @rpc(milvus_pb2.ImportResponse)
    def Import(self, request, context):
        options = kv_dict(request.options)
        if options.get("backup", "").lower() == "true":
            raise errors.InvalidParameter("importing a backup (options backup=true) is not supported")
        job = self.start_import(db_of(request, context), request.collection_name, request.partition_name,
                                importer.group_files(list(request.files)))
        return milvus_pb2.ImportResponse(status=status.success(), tasks=[job.id])

    @rpc(milvus_pb2.GetImportStateResponse)
    def GetImportState(self, request, context):
        try:
            job = self.get_import_job(request.task)
        except errors.InvalidParameter:  # Milvus 2.3.5 answers an unknown task with its etcd miss (1000)
            raise errors.KeyNotFound(f"key not found[key=importtask/{request.task}]") from None
        return _state_reply(job)

    @rpc(milvus_pb2.ListImportTasksResponse)
    def ListImportTasks(self, request, context):
        jobs = self.list_import_jobs(db_of(request, context), request.collection_name)
        if request.limit > 0:
            jobs = jobs[-request.limit:]
        return milvus_pb2.ListImportTasksResponse(status=status.success(), tasks=[_state_reply(j) for j in jobs])


def _state_reply(job: ImportJob) -> milvus_pb2.GetImportStateResponse:
    """As Milvus 2.4's proxy answers: the state, the imported rows, and infos with the files,
    collection, partition, progress_percent and failed_reason."""
    infos = {"files": ",".join(p for g in job.files for p in g), "collection": job.collection,
             "partition": job.partition or DEFAULT_PARTITION, "progress_percent": str(job.progress),
             "failed_reason": job.reason}
    return milvus_pb2.GetImportStateResponse(
        status=status.success(), state=_STATES[job.state], row_count=job.imported_rows, id=job.id,
        collection_id=job.collection_id, segment_ids=job.segment_ids, create_ts=job.create_ms // 1000,
        infos=[common_pb2.KeyValuePair(key=k, value=v) for k, v in infos.items()])


def _fail_import(rec: jobs.Record, reason: str) -> None:
    job = rec.job
    job.state, job.reason, job.complete_ms = FAILED, reason, int(time.time() * 1000)
    rec.put_last()


def _batches_written(group: int, batch: int, kept: list) -> int:
    """How many batches of the job come up to and including ``(group, batch)`` (the crash tests' count)."""
    before = sum(len(k) if k is not None else 0 for k in kept[:group])
    return before + batch + 1


def _nbytes(columns: dict) -> int:
    return sum(c.nbytes if c.dtype != object else 64 * len(c) for c in columns.values())


def _validated(schema: CollectionSchema, fields: list, n: int, zone: str) -> dict:
    return columns_from_field_data(schema, fields, n, zone=zone)


def row_batches(schema: CollectionSchema, rows: list[dict], path: str, zone: str) -> list[tuple[dict, int]]:
    """JSON rows (of a file at ``path``) as checked insert columns, ``(columns, rows)`` per batch of
    ``importer.JSON_BATCH_ROWS``; a bad row fails them all, naming the file, the row and why (bulk
    import; an external collection's refresh)."""
    from vecdb.proxy.rest import rows_to_field_data

    pk = schema.primary_field
    out = []
    for start in range(0, len(rows), importer.JSON_BATCH_ROWS):
        part = rows[start:start + importer.JSON_BATCH_ROWS]
        try:
            if pk.auto_id and any(pk.name in row for row in part):
                raise errors.InvalidParameter(f"the primary key '{pk.name}' is auto-generated, no need to provide")
            fields = rows_to_field_data(schema, part, quoted_numbers=False)
            out.append((_validated(schema, fields, len(part), zone), len(part)))
        except (errors.VecdbError, KeyError, TypeError, ValueError) as e:
            row, reason = _first_bad_row(schema, part, e, zone)
            raise errors.InvalidParameter(f"failed to import the file {path}: row {start + row}: {reason}") from None
    return out


def _first_bad_row(schema: CollectionSchema, rows: list[dict], batch_error: Exception,
                   zone: str) -> tuple[int, str]:
    """The first row of a failed batch that fails alone, and why (only on the error path)."""
    from vecdb.proxy.rest import rows_to_field_data

    pk = schema.primary_field
    for i, row in enumerate(rows):
        try:
            if pk.auto_id and pk.name in row:
                raise errors.InvalidParameter(f"the primary key '{pk.name}' is auto-generated, no need to provide")
            _validated(schema, rows_to_field_data(schema, [row], quoted_numbers=False), 1, zone)
        except TypeError as e:  # (the encoder's words name no field: "bad argument type for built-in operation")
            return i, _wrong_string(schema, row) or _reason(e)
        except (errors.VecdbError, KeyError, ValueError) as e:
            return i, _reason(e)
    return 0, _reason(batch_error)


def _wrong_string(schema: CollectionSchema, row: dict) -> str | None:
    """Milvus's JSON import words for a string field of ``row`` holding no string, if one does."""
    for f in schema.fields:
        value = row.get(f.name)
        if f.dtype in (DataType.VARCHAR, DataType.TEXT) and value is not None and not isinstance(value, str):
            return (f"expected type '{schema_pb2.DataType.Name(int(f.dtype))}' for field '{f.name}', "
                    f"got type '{type(value).__name__}' with value '{value}'")
    return None


def _reason(e: Exception) -> str:
    msg = getattr(e, "message", None) or str(e)
    return msg.strip("'\"") if isinstance(e, KeyError) else msg


def _numpy_batches(schema: CollectionSchema, files: dict[str, bytes], zone: str) -> list[tuple[dict, int]]:
    columns, n = importer.numpy_columns(schema, files)
    if not n:
        return []
    names = [f.name for f in schema.fields if f.name in columns and not f.is_dynamic]
    dynamic = ["*"] if DYNAMIC_FIELD in columns else None
    row_bytes = sum(c.nbytes // max(1, len(c)) if c.dtype != object else 64 for c in columns.values())
    out = []
    where = ", ".join(os.path.basename(p) for p in files)
    for start, end in importer.row_batches(n, row_bytes):
        part = {k: v[start:end] for k, v in columns.items()}
        try:
            fields = field_data_from_columns(schema, part, names, dynamic)
            out.append((_validated(schema, fields, end - start, zone), end - start))
        except errors.VecdbError as e:
            raise errors.InvalidParameter(f"failed to import the numpy files {where} (rows {start}-{end - 1}): "
                                          f"{e.message}") from None
    return out

"""RPCs: collection snapshots (Milvus 3.0: ``CreateSnapshot``, ``DescribeSnapshot``, ``ListSnapshots``,
``DropSnapshot``, ``RestoreSnapshot``, ``GetRestoreSnapshotState``, ``ListRestoreSnapshotJobs``,
``PinSnapshotData``, ``UnpinSnapshotData``). Thin: the logic is ``vecdb.coord.snapshots``, over the
stores every process shares, its catalog changes through the DDL role (the coord's in a cluster);
a restore job runs on a thread of the proxy that took the request (one whose process ended is taken
over and run again from a clean state by another: ``vecdb.jobs``, ``vecdb.proxy.job_sweep``).
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2

from vecdb.coord.snapshots import COMPLETED, EXECUTING, FAILED, PENDING, RestoreJob, SnapshotManager
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of

_STATES = {PENDING: milvus_pb2.RestoreSnapshotPending, EXECUTING: milvus_pb2.RestoreSnapshotExecuting,
           COMPLETED: milvus_pb2.RestoreSnapshotCompleted, FAILED: milvus_pb2.RestoreSnapshotFailed}


class SnapshotRpcs(ServiceBase):
    def snapshots(self) -> SnapshotManager:
        manager = getattr(self, "_snapshot_manager", None)
        if manager is None:
            manager = SnapshotManager(*self.stores(), self.r.catalog, self.ddl, self.r.ids, self.r.tso)
            self._snapshot_manager = manager
        return manager

    @rpc()
    def CreateSnapshot(self, request, context):
        self.snapshots().create(db_of(request, context), request.collection_name, request.name,
                                request.description, request.compaction_protection_seconds)
        return status.success()

    @rpc(milvus_pb2.DescribeSnapshotResponse)
    def DescribeSnapshot(self, request, context):
        snap = self.snapshots().get(db_of(request, context), request.collection_name, request.name)
        info = snap.collection_info()
        return milvus_pb2.DescribeSnapshotResponse(
            status=status.success(), name=snap.name, description=snap.description, collection_name=snap.collection,
            partition_names=[p.name for p in info.partitions], create_ts=snap.created_ms,
            s3_location=f"snapshot/{snap.db}/{snap.collection}/{snap.name}")

    @rpc(milvus_pb2.ListSnapshotsResponse)
    def ListSnapshots(self, request, context):
        names = self.snapshots().names(db_of(request, context), request.collection_name)
        return milvus_pb2.ListSnapshotsResponse(status=status.success(), snapshots=names)

    @rpc()
    def DropSnapshot(self, request, context):
        self.snapshots().drop(db_of(request, context), request.collection_name, request.name)
        return status.success()

    @rpc(milvus_pb2.RestoreSnapshotResponse)
    def RestoreSnapshot(self, request, context):
        db = db_of(request, context)
        job = self.snapshots().restore(request.name, db, request.collection_name,
                                       request.target_db_name or db, request.target_collection_name)
        return milvus_pb2.RestoreSnapshotResponse(status=status.success(), job_id=job.id)

    @rpc(milvus_pb2.GetRestoreSnapshotStateResponse)
    def GetRestoreSnapshotState(self, request, context):
        job = self.snapshots().job(request.job_id)
        return milvus_pb2.GetRestoreSnapshotStateResponse(status=status.success(), info=_job_info(job))

    @rpc(milvus_pb2.ListRestoreSnapshotJobsResponse)
    def ListRestoreSnapshotJobs(self, request, context):
        jobs = self.snapshots().jobs(db_of(request, context), request.collection_name)
        return milvus_pb2.ListRestoreSnapshotJobsResponse(status=status.success(), jobs=[_job_info(j) for j in jobs])

    @rpc(milvus_pb2.PinSnapshotDataResponse)
    def PinSnapshotData(self, request, context):
        pin_id = self.snapshots().pin(db_of(request, context), request.collection_name, request.name,
                                      request.ttl_seconds)
        return milvus_pb2.PinSnapshotDataResponse(status=status.success(), pin_id=pin_id)

    @rpc()
    def UnpinSnapshotData(self, request, context):
        self.snapshots().unpin(request.pin_id)
        return status.success()


def _job_info(job: RestoreJob) -> milvus_pb2.RestoreSnapshotInfo:
    return milvus_pb2.RestoreSnapshotInfo(
        job_id=job.id, snapshot_name=job.snapshot_name, db_name=job.db, collection_name=job.collection,
        state=_STATES.get(job.state, milvus_pb2.RestoreSnapshotNone), progress=job.progress, reason=job.reason,
        start_time=job.start_ms, time_cost=job.time_cost_ms)

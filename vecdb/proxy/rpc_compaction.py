"""RPCs: ManualCompaction, GetCompactionState, GetCompactionStateWithPlans (``client.compact``,
``get_compaction_state``, ``get_compaction_plans``). ``client.compact(is_clustering=True)``
(``majorCompaction``) asks for a clustering compaction of a collection with a clustering key.

The request's other fields, read as Milvus's data coordinator reads them (``ManualCompaction``), in
this order of precedence (``vecdb.datanode.compactor.CompactionOptions`` says what each does):

- ``target_size`` (MB; ``client.compact(target_size=)``, ``client.optimize()``) not 0: a force merge.
  Below the seal size (``datanode.seal_bytes``, Milvus's ``dataCoord.segment.maxSize``), negative
  included, it is refused with 1100 "targetSize N MB should be greater than or equal to configMaxSize
  M MB"; a size above what the data node's memory allows (``optimize()`` without a size sends the
  largest int64) is that allowance;
- ``l0Compaction`` (``is_l0=True``): the segments hit by persisted deletes rewritten without them;
- ``majorCompaction``: a clustering compaction;
- else the default manual compaction, narrowed by ``segment_ids`` (each must be a persisted segment of
  the collection that is not a clustering compaction's, in the partition and channel asked if any;
  else 5 "not all segment ids provided could be compacted", as Milvus), ``partition_id`` and
  ``channel`` (which Milvus reads only here). A partition or a channel the collection does not have
  selects nothing: compaction id -1 and no plan, as Milvus answers when it made no task.

An external collection (Milvus 3.0) refuses the first three with 1100 "compaction is not supported for
external collection", as Milvus's data coordinator does.

A manual compaction is a request record in the metadata store (``vecdb.datanode.compactor``) with
a state per channel, which the data node owning each channel carries out (standalone: the
in-process one); any proxy answers the state from the record. As in Milvus's data coordinator, a
compaction id that no record has (never made, or dropped with its collection or after
``compaction.keep_requests``) reads as Completed with no plans; until a channel is done it counts
as one executing plan, then its plans count as completed. A cluster's channel whose data node died
goes to the data node that takes the channel over; with none alive ``compaction.timeout`` seconds
after the request, it counts as one failed plan (``vecdb.datanode.remote``), and the request reads
Completed, as Milvus's data coordinator ends a plan whose data node went away.
"""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.datanode import segment_listing
from vecdb.datanode.compactor import MB, CompactionOptions
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.proxy.quota import admit_database
from vecdb.request_db import db_of


def _summary(records: list[dict]) -> tuple[int, int, int, int, list]:
    """(state, executing plans, completed plans, failed plans, merge infos) of request records (none:
    Completed)."""
    executing = sum(segment_listing.executing(r) for r in records)
    failed = sum(segment_listing.failed(r) for r in records)
    infos = [milvus_pb2.CompactionMergeInfo(**p) for r in records for p in segment_listing.request_plans(r)]
    return (common_pb2.Executing if executing else common_pb2.Completed), executing, len(infos), failed, infos


def _one(record: dict | None) -> list[dict]:
    return [] if record is None else [record]


class CompactionRpcs(ServiceBase):
    @rpc(milvus_pb2.ManualCompactionResponse)
    def ManualCompaction(self, request, context):
        if request.collection_name:
            info = self.collection(db_of(request, context), request.collection_name)
        else:
            info = self.r.catalog.get_by_id(request.collectionID)
        admit_database(self.r, "ManualCompaction", request, context, info.db)  # database.force.deny.compaction
        options = self._options(info, request)
        clustering = options is not None and request.majorCompaction and not options.target_mb and not options.l0
        if options is None or (clustering and info.schema.clustering_key_field is None):
            # client.compact(is_clustering=True) on a collection without a clustering key: Milvus's data
            # coordinator triggers nothing (clusteringCompactionPolicy.triggerOneCollection) and answers
            # success with compaction id -1 and no plan; get_compaction_state(-1) then reads Completed
            return milvus_pb2.ManualCompactionResponse(status=status.success(), compactionID=-1,
                                                       compactionPlanCount=0)
        compaction_id = self.r.datanode.compact(info, clustering=clustering, options=options)
        channels = [ch for ch in info.channels if not options.channel or ch == options.channel]
        return milvus_pb2.ManualCompactionResponse(status=status.success(), compactionID=compaction_id,
                                                   compactionPlanCount=len(channels))

    def _options(self, info: CollectionInfo, request) -> CompactionOptions | None:
        """The request's options, validated (the module docstring); None when they select no segment."""
        if (request.target_size or request.l0Compaction or request.majorCompaction) and info.schema.external_source:
            # Milvus's CompactionTriggerManager.ManualTrigger, which these three go through
            raise errors.InvalidParameter("compaction is not supported for external collection")
        if request.target_size:
            floor = -(-self.r.seal_bytes // MB)
            if request.target_size * MB < self.r.seal_bytes:
                raise errors.InvalidParameter(f"targetSize {request.target_size} MB should be greater than or "
                                              f"equal to configMaxSize {floor} MB")
            return CompactionOptions(target_mb=request.target_size)
        if request.l0Compaction:
            return CompactionOptions(l0=True)
        if request.majorCompaction:
            return CompactionOptions()
        options = CompactionOptions(segment_ids=tuple(dict.fromkeys(request.segment_ids)),
                                    partition_id=max(0, request.partition_id), channel=request.channel)
        if options.segment_ids:
            segments = {s["segment_id"]: s for s in self.r.datanode.segment_list(info)}
            for sid in options.segment_ids:
                seg = segments.get(sid)
                if (seg is None or seg["level"] == segment_listing.L2
                        or (options.partition_id and seg["partition_id"] != options.partition_id)
                        or (options.channel and seg["channel"] != options.channel)):
                    raise errors.InternalError("not all segment ids provided could be compacted")
        elif ((options.partition_id and options.partition_id not in {p.id for p in info.partitions})
              or (options.channel and options.channel not in info.channels)):
            return None
        return options

    @rpc(milvus_pb2.GetCompactionStateResponse)
    def GetCompactionState(self, request, context):
        state, executing, completed, failed, _ = _summary(_one(self.r.datanode.compaction(request.compactionID)))
        return milvus_pb2.GetCompactionStateResponse(status=status.success(), state=state, executingPlanNo=executing,
                                                     completedPlanNo=completed, failedPlanNo=failed, timeoutPlanNo=0)

    @rpc(milvus_pb2.GetCompactionPlansResponse)
    def GetCompactionStateWithPlans(self, request, context):
        """By id (``get_compaction_plans``), or with id 0 by collection (``list_compaction_tasks``):
        every request of it still kept."""
        if request.compactionID == 0 and (request.collection_name or request.collection_id):
            if request.collection_name:
                info = self.collection(db_of(request, context), request.collection_name)
            else:
                info = self.r.catalog.get_by_id(request.collection_id)
            records = self.r.datanode.compactions(info.id)
        else:
            records = _one(self.r.datanode.compaction(request.compactionID))
        state, _, _, _, infos = _summary(records)
        return milvus_pb2.GetCompactionPlansResponse(status=status.success(), state=state, mergeInfos=infos)

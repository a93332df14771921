"""RPCs: ManualCompaction, GetCompactionState, GetCompactionStateWithPlans (``client.compact``,
``get_compaction_state``, ``get_compaction_plans``). ``client.compact(is_clustering=True)``
(``majorCompaction``) asks for a clustering compaction of a collection with a clustering key.

A manual compaction is a request record in the metadata store (``vecdb.datanode.compactor``) with
a state per channel, which the data node owning each channel carries out (standalone: the
in-process one); any proxy answers the state from the record. As in Milvus's data coordinator, a
compaction id that no record has (never made, or dropped with its collection or after
``compaction.keep_requests``) reads as Completed with no plans; until a channel is done it counts
as one executing plan, then its plans count as completed.
"""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb.datanode import segment_listing
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.proxy.quota import admit_database
from vecdb.request_db import db_of


def _summary(records: list[dict]) -> tuple[int, int, int, list]:
    """(state, executing plans, completed plans, merge infos) of request records (none: Completed)."""
    executing = sum(segment_listing.executing(r) for r in records)
    infos = [milvus_pb2.CompactionMergeInfo(**p) for r in records for p in segment_listing.request_plans(r)]
    return (common_pb2.Executing if executing else common_pb2.Completed), executing, len(infos), infos


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
        if request.majorCompaction and info.schema.clustering_key_field is None:
            # client.compact(is_clustering=True) on a collection without a clustering key: Milvus's data
            # coordinator triggers nothing (clusteringCompactionPolicy.triggerOneCollection) and answers
            # success with compaction id -1 and no plan; get_compaction_state(-1) then reads Completed
            return milvus_pb2.ManualCompactionResponse(status=status.success(), compactionID=-1,
                                                       compactionPlanCount=0)
        compaction_id = self.r.datanode.compact(info, clustering=request.majorCompaction)
        return milvus_pb2.ManualCompactionResponse(status=status.success(), compactionID=compaction_id,
                                                   compactionPlanCount=len(info.channels))

    @rpc(milvus_pb2.GetCompactionStateResponse)
    def GetCompactionState(self, request, context):
        state, executing, completed, _ = _summary(_one(self.r.datanode.compaction(request.compactionID)))
        return milvus_pb2.GetCompactionStateResponse(status=status.success(), state=state, executingPlanNo=executing,
                                                     completedPlanNo=completed, failedPlanNo=0, timeoutPlanNo=0)

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
        state, _, _, infos = _summary(records)
        return milvus_pb2.GetCompactionPlansResponse(status=status.success(), state=state, mergeInfos=infos)

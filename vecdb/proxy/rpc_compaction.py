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

from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.proxy.quota import admit_database
from vecdb.request_db import db_of


def _summary(record: dict | None) -> tuple[int, int, int, list]:
    """(state, executing plans, completed plans, merge infos) of a request record."""
    if record is None:
        return common_pb2.Completed, 0, 0, []
    channels = record["channels"].values()
    executing = sum(1 for c in channels if c["state"] != "completed")
    plans = [p for c in channels if c["state"] == "completed" for p in c["plans"]]
    infos = [milvus_pb2.CompactionMergeInfo(sources=p["sources"], target=p["target"]) for p in plans]
    return (common_pb2.Executing if executing else common_pb2.Completed), executing, len(plans), infos


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
        state, executing, completed, _ = _summary(self.r.datanode.compaction(request.compactionID))
        return milvus_pb2.GetCompactionStateResponse(status=status.success(), state=state, executingPlanNo=executing,
                                                     completedPlanNo=completed, failedPlanNo=0, timeoutPlanNo=0)

    @rpc(milvus_pb2.GetCompactionPlansResponse)
    def GetCompactionStateWithPlans(self, request, context):
        state, _, _, infos = _summary(self.r.datanode.compaction(request.compactionID))
        return milvus_pb2.GetCompactionPlansResponse(status=status.success(), state=state, mergeInfos=infos)

"""RPCs: connect, health, version, component states, timestamps, segment info."""

from __future__ import annotations

import time

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb import __version__
from vecdb.coord.resource_groups import DEFAULT_RESOURCE_GROUP
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of

# The Milvus release whose API vecdb speaks; clients use it for feature checks (Dify's Milvus store turns its
# BM25 hybrid search on from 2.5.0): the 2.6 API (README's feature list). Connect's build_tags names vecdb's own.
MILVUS_API_VERSION = "v2.6.0"


def standalone_group(info) -> str:
    """The resource group of a replica placed without the coord (standalone): the catalog's."""
    groups = sorted(info.resource_groups)
    return groups[0] if groups else DEFAULT_RESOURCE_GROUP


class AdminRpcs(ServiceBase):
    started_at = time.time()

    @rpc(milvus_pb2.ConnectResponse)
    def Connect(self, request, context):
        mode = "STANDALONE" if self.r.component == "standalone" else "CLUSTER"
        info = common_pb2.ServerInfo(build_tags=f"vecdb-{__version__}", build_time="", git_commit="",
                                     go_version="python", deploy_mode=mode)
        return milvus_pb2.ConnectResponse(status=status.success(), server_info=info,
                                          identifier=int(time.time() * 1000) & 0x7FFFFFFF)

    @rpc(milvus_pb2.CheckHealthResponse)
    def CheckHealth(self, request, context):
        """Healthy while some query node serves reads (standalone: its own, always)."""
        if self.r.querynode.serving_nodes():
            return milvus_pb2.CheckHealthResponse(status=status.success(), isHealthy=True)
        return milvus_pb2.CheckHealthResponse(status=status.success(), isHealthy=False,
                                              reasons=["no query node is serving (none has a session)"])

    @rpc(milvus_pb2.GetVersionResponse)
    def GetVersion(self, request, context):
        return milvus_pb2.GetVersionResponse(status=status.success(), version=MILVUS_API_VERSION)

    @rpc(milvus_pb2.ComponentStates)
    def GetComponentStates(self, request, context):
        """This server (standalone, or a cluster's proxy) and, in a cluster, the query nodes it reads from."""
        nodes = self.r.querynode.serving_nodes()
        subs = [] if self.r.component == "standalone" else [
            milvus_pb2.ComponentInfo(nodeID=node, role="querynode", state_code=common_pb2.Healthy)
            for node, _ in nodes]
        code = common_pb2.Healthy if nodes else common_pb2.Abnormal
        return milvus_pb2.ComponentStates(
            state=milvus_pb2.ComponentInfo(nodeID=self.r.node_id, role=self.r.component, state_code=code),
            subcomponent_states=subs, status=status.success())

    @rpc(milvus_pb2.AllocTimestampResponse)
    def AllocTimestamp(self, request, context):
        return milvus_pb2.AllocTimestampResponse(status=status.success(), timestamp=self.r.tso.allocate())

    @rpc(milvus_pb2.GetPersistentSegmentInfoResponse)
    def GetPersistentSegmentInfo(self, request, context):
        """``list_persistent_segments`` / ``list_segments(states=...)``: the segments in the states
        asked (none: the live ones), compacted-away ones Dropped until collected
        (``vecdb.datanode.segment_listing``)."""
        info = self.collection(db_of(request, context), request.collectionName)
        infos = [
            milvus_pb2.PersistentSegmentInfo(segmentID=s["segment_id"], collectionID=info.id,
                                             partitionID=s["partition_id"], num_rows=s["num_rows"],
                                             state=s["state"], level=s["level"], insert_channel=s["channel"],
                                             compaction_from=s["compaction_from"])
            for s in self.r.datanode.segment_list(info, list(request.states))
        ]
        return milvus_pb2.GetPersistentSegmentInfoResponse(status=status.success(), infos=infos)

    @rpc(milvus_pb2.GetQuerySegmentInfoResponse)
    def GetQuerySegmentInfo(self, request, context):
        """Each loaded segment with the nodes that hold it (one per replica); a released partition's
        are left out, as Milvus lists them."""
        info = self.collection(db_of(request, context), request.collectionName)
        self.require_loaded(info)
        every = [n for n, _ in self.r.querynode.serving_nodes()]  # standalone: its one node holds all
        loaded = self.partition_ids(info, ())
        infos = []
        for seg in self.r.querynode.segment_infos(info):
            if loaded is not None and seg["partition_id"] not in loaded:
                continue
            nodes = seg.get("node_ids", every)
            infos.append(milvus_pb2.QuerySegmentInfo(
                segmentID=seg.get("segment_id", 0), collectionID=info.id, partitionID=seg["partition_id"],
                num_rows=seg["num_rows"], state=seg["state"], nodeID=nodes[0] if nodes else 0, nodeIds=nodes,
                indexID=seg.get("index_id", 0), index_name=seg.get("index_name", "")))
        return milvus_pb2.GetQuerySegmentInfoResponse(status=status.success(), infos=infos)

    @rpc(milvus_pb2.GetReplicasResponse)
    def GetReplicas(self, request, context):
        """The replicas as placed (a cluster's coord: ``vecdb.coord.assignment``), each shard led
        by the node that serves its channel."""
        if request.collection_name:
            info = self.collection(db_of(request, context), request.collection_name)
        else:
            info = self.r.catalog.get_by_id(request.collectionID)
        self.require_loaded(info)
        parts = [p.id for p in info.partitions if info.partition_loaded(p.id)]
        replicas = [
            milvus_pb2.ReplicaInfo(
                replicaID=r["id"], collectionID=info.id, partition_ids=parts, node_ids=r["nodes"],
                resource_group_name=r.get("resource_group") or standalone_group(info),
                shard_replicas=[milvus_pb2.ShardReplica(leaderID=leader, leader_addr=address, dm_channel_name=ch,
                                                        node_ids=[leader])
                                for ch, (leader, address) in sorted(r["leaders"].items())])
            for r in self.r.querynode.replicas(info.id)
        ]
        return milvus_pb2.GetReplicasResponse(status=status.success(), replicas=replicas)

    @rpc()
    def LoadBalance(self, request, context):
        """Sealed segments moved from one query node to others of its replica (``utility.load_balance``;
        ``vecdb.coord.segment_moves``): answered once the new nodes serve them."""
        info = self.collection(db_of(request, context), request.collectionName)
        self.require_loaded(info)
        self.segment_moves.move_segments(info, request.src_nodeID, list(request.dst_nodeIDs),
                                         list(request.sealed_segmentIDs))
        return status.success()

    @rpc(milvus_pb2.GetMetricsResponse)
    def GetMetrics(self, request, context):
        """``{"metric_type": "system_info"}``: the live nodes of the cluster (every process holding a
        session) with their roles and ids, as Milvus's topology JSON (``vecdb.proxy.system_info``)."""
        import json

        from vecdb import errors, metrics
        from vecdb.proxy.base import parse_json_param
        from vecdb.proxy.system_info import SYSTEM_INFO, system_topology

        asked = parse_json_param(request.request, "GetMetrics request").get("metric_type", "")
        if asked != SYSTEM_INFO:
            raise errors.InvalidParameter(f"unsupported metric type: {asked!r} (vecdb answers {SYSTEM_INFO!r})")
        role = "standalone" if self.r.component == "standalone" else "proxy"
        topology = system_topology(getattr(self.r.datanode, "meta", None), role, self.r.node_id,
                                   metrics.node_label(self.r.node_id, self.r.component))
        return milvus_pb2.GetMetricsResponse(status=status.success(), response=json.dumps(topology),
                                             component_name=f"{role}{self.r.node_id}")

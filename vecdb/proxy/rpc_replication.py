"""RPCs: Milvus 2.6's cross-cluster replication API (``update_replicate_configuration``,
``get_replicate_configuration``, ``get_replicate_info``) over vecdb's CDC (docs/cdc.md, "Milvus 2.6
replication API").

The configuration and its rules: ``vecdb.cdc.replicate_config`` (kept in the metadata store, so
every proxy of a cluster answers the same); the replication of each edge from this cluster:
``vecdb.cdc.replicate_manager`` (in the standalone server, or the cluster's coord); the secondary's
refusal of writes and DDL: ``replicate_config.admit``, called as each guarded call starts
(``vecdb.proxy.base.rpc``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdb import errors
from vecdb.cdc import replicate_config as rc
from vecdb.cdc.replicate_manager import progress_of
from vecdb.proxy.base import ServiceBase, rpc

log = logging.getLogger(__name__)

ASK_SOURCE_SECONDS = 3.0  # a secondary asking its source for the checkpoint (get_replicate_info)


class ReplicationRpcs(ServiceBase):
    def _config(self) -> rc.ReplicateConfig | None:
        """The stored configuration, when it is this cluster's (one kept under another cluster id
        setting is not: as if none)."""
        cfg = rc.load(self.stores()[0])
        return cfg if cfg is not None and cfg.current == self.r.cluster_id else None

    @rpc()
    def UpdateReplicateConfiguration(self, request, context):
        meta = self.stores()[0]
        previous = self._config()
        pb = request.replicate_configuration
        if request.force_promote:
            if len(pb.clusters) or len(pb.cross_cluster_topology):
                raise errors.InvalidParameter(
                    "force promote requires empty clusters and cross_cluster_topology: the standalone primary "
                    "configuration is built from the current one")
            source = None if previous is None else previous.source_of(previous.current)
            if previous is None or source is None:
                raise errors.OperationNotSupported(
                    f"force promote is only allowed on a secondary cluster: cluster '{self.r.cluster_id}' is "
                    "not a secondary in the replicate configuration")
            salvage = self._checkpoint_from(previous, source) or self._cached_checkpoint(source.cluster_id)
            cfg = rc.force_promoted(previous, salvage)
            log.warning("cluster %s force promoted to a standalone primary (its source was %s)",
                        cfg.current, source.cluster_id)
        else:
            cfg = rc.from_proto(pb, self.r.cluster_id)
            if cfg.same(previous):
                return common_pb2.Status()  # the same configuration: nothing to do (Milvus's idempotent answer)
            rc.validate(cfg, previous)
        rc.save(meta, cfg)
        rc.gate_of(self).changed(cfg)
        return common_pb2.Status()

    @rpc(milvus_pb2.GetReplicateConfigurationResponse)
    def GetReplicateConfiguration(self, request, context):
        return milvus_pb2.GetReplicateConfigurationResponse(status=common_pb2.Status(),
                                                            configuration=rc.to_proto(self._config()))

    def GetReplicateInfo(self, request, context):
        # its reply has no status: errors are the call's gRPC status
        try:
            return self._replicate_info(request, context)
        except errors.VecdbError as e:
            code = grpc.StatusCode.INVALID_ARGUMENT if e.input_error else grpc.StatusCode.FAILED_PRECONDITION
            context.abort(code, e.message)
            raise  # (abort raises)

    def _replicate_info(self, request, context) -> milvus_pb2.GetReplicateInfoResponse:
        src, pchannel = request.source_cluster_id, request.target_pchannel
        if not src or not pchannel:
            raise errors.InvalidParameter("source_cluster_id and target_pchannel must be provided")
        cfg = self._config()
        out = milvus_pb2.GetReplicateInfoResponse()
        if cfg is not None and cfg.salvage and cfg.salvage.get("cluster_id") == src:
            out.salvage_checkpoint.CopyFrom(_checkpoint_pb(cfg.salvage, pchannel))
        if cfg is not None and src == cfg.current:  # asked of the source: what its replication applied
            _check_pchannel(cfg, src, pchannel)
            wanted = rc._metadata(context).get(rc.TARGET_HEADER)
            targets = [c.cluster_id for c in cfg.targets_of(cfg.current)]
            if wanted:
                if wanted not in targets:
                    raise errors.OperationNotSupported(f"cluster '{wanted}' is not a target of cluster '{src}'")
                targets = [wanted]
            cp = _lowest([progress_of(self.stores()[0], t) for t in targets], src)
            if cp is not None:
                out.checkpoint.CopyFrom(_checkpoint_pb(cp, pchannel))
            return out
        source = None if cfg is None else cfg.source_of(cfg.current)
        if source is not None and source.cluster_id == src:  # a secondary: its source's answer (cached here)
            assert cfg is not None
            _check_pchannel(cfg, src, pchannel)
            cp = self._checkpoint_from(cfg, source) or self._cached_checkpoint(src)
            if cp is not None:
                out.checkpoint.CopyFrom(_checkpoint_pb(cp, pchannel))
            return out
        if out.HasField("salvage_checkpoint"):
            return out
        raise errors.OperationNotSupported(
            f"cluster '{self.r.cluster_id}' does not replicate from cluster '{src}' (not a secondary of it)")

    def _checkpoint_from(self, cfg: rc.ReplicateConfig, source: rc.Cluster) -> dict[str, Any] | None:
        """The source's checkpoint of its replication into this cluster (asked of it with this cluster's
        id as ``TARGET_HEADER``), kept here for when the source cannot be reached; None if it cannot."""
        try:
            from pymilvus import MilvusClient  # type: ignore[import-untyped]

            client = MilvusClient(uri=source.uri, token=source.token, timeout=ASK_SOURCE_SECONDS, dedicated=True)
            try:
                reply = client._get_connection()._stub.GetReplicateInfo(
                    milvus_pb2.GetReplicateInfoRequest(source_cluster_id=source.cluster_id,
                                                       target_pchannel=source.pchannels[0]),
                    timeout=ASK_SOURCE_SECONDS, metadata=[(rc.TARGET_HEADER, cfg.current)])
            finally:
                client.close()
        except Exception as e:  # noqa: BLE001 (the source is down: the last checkpoint heard of)
            log.info("replication: cannot ask %s for its checkpoint: %s", source.cluster_id, e)
            return None
        if not reply.HasField("checkpoint"):
            return None
        cp = {"cluster_id": source.cluster_id, "time_tick": reply.checkpoint.time_tick,
              "id": reply.checkpoint.message_id.id}
        self.stores()[0].put(rc.CHECKPOINT_PREFIX + source.cluster_id, json.dumps(cp).encode())
        return cp

    def _cached_checkpoint(self, src: str) -> dict[str, Any] | None:
        raw = self.stores()[0].get(rc.CHECKPOINT_PREFIX + src)
        return None if raw is None else json.loads(raw)


def _check_pchannel(cfg: rc.ReplicateConfig, src: str, pchannel: str) -> None:
    cluster = cfg.cluster(src)
    if cluster is None or pchannel not in cluster.pchannels:
        raise errors.InvalidParameter(f"pchannel '{pchannel}' is not a pchannel of cluster '{src}' in the "
                                      f"replicate configuration")


def _lowest(progress: list[dict[str, Any] | None], src: str) -> dict[str, Any] | None:
    """The checkpoint every one of the targets has reached: the lowest time tick (None while a target's
    replication reported nothing yet)."""
    if not progress or any(p is None for p in progress):
        return None
    low = min(progress, key=lambda p: p["time_tick"])  # type: ignore[index]
    assert low is not None
    return {"cluster_id": src, "time_tick": low["time_tick"], "id": json.dumps(low["positions"], sort_keys=True)}


def _checkpoint_pb(cp: dict[str, Any], pchannel: str) -> common_pb2.ReplicateCheckpoint:
    """vecdb's checkpoint in Milvus's shape: the time tick up to which every change is applied, the
    applied log positions of every channel (JSON) as the message id."""
    return common_pb2.ReplicateCheckpoint(cluster_id=cp["cluster_id"], pchannel=pchannel,
                                          message_id=common_pb2.MessageID(id=cp.get("id", ""), WAL_name=0),
                                          time_tick=int(cp["time_tick"]))

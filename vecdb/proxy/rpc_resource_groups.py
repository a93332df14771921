"""RPCs: resource groups (Milvus 2.4's): create, update, describe, list, drop, and moving nodes
and replicas between groups. The data model and its rules: ``vecdb.coord.resource_groups``; the
placement of replicas on a group's nodes: ``vecdb.coord.assignment``."""

from __future__ import annotations

from collections import Counter

from pymilvus.grpc_gen import common_pb2, milvus_pb2, rg_pb2

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.coord.resource_groups import (
    Group,
    GroupConfig,
    ResourceGroups,
    not_found,
    replica_groups_of,
    transfer_replicas,
    validate_name,
)
from vecdb.discovery import node_number
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of


def config_from_pb(cfg: rg_pb2.ResourceGroupConfig, name: str, required: bool) -> GroupConfig:
    """A group's config from its protobuf form; ``required``: requests and limits must be set
    (UpdateResourceGroups), else an unset one is 0."""
    if required and not (cfg.HasField("requests") and cfg.HasField("limits")):
        raise errors.ResourceGroupIllegalConfig(
            f"resource group illegal config[rg={name}]: requests or limits is required")
    return GroupConfig(cfg.requests.node_num, cfg.limits.node_num,
                       [t.resource_group for t in cfg.transfer_from], [t.resource_group for t in cfg.transfer_to])


def config_to_pb(cfg: GroupConfig) -> rg_pb2.ResourceGroupConfig:
    return rg_pb2.ResourceGroupConfig(
        requests=rg_pb2.ResourceGroupLimit(node_num=cfg.requests),
        limits=rg_pb2.ResourceGroupLimit(node_num=cfg.limits),
        transfer_from=[rg_pb2.ResourceGroupTransfer(resource_group=g) for g in cfg.transfer_from],
        transfer_to=[rg_pb2.ResourceGroupTransfer(resource_group=g) for g in cfg.transfer_to])


class ResourceGroupRpcs(ServiceBase):
    def groups(self) -> ResourceGroups:
        rgs = self.r.resource_groups
        if rgs is None:
            raise errors.OperationNotSupported("resource groups are not set up on this server")
        return rgs

    def _loaded(self) -> list[CollectionInfo]:
        out: list[CollectionInfo] = []
        for db in self.r.catalog.list_databases():
            out.extend(c for c in self.r.catalog.list_collections(db) if c.loaded)
        return out

    @rpc()
    def CreateResourceGroup(self, request, context):
        name = request.resource_group
        cfg = config_from_pb(request.config, name, False) if request.HasField("config") else None
        validate_name(name)
        self.ddl.create_resource_group(name, cfg)  # the coord's (vecdb.coord.ddl), as every change here
        return status.success()

    @rpc()
    def UpdateResourceGroups(self, request, context):
        configs = {name: config_from_pb(cfg, name, True) for name, cfg in request.resource_groups.items()}
        if configs:
            for name in configs:
                validate_name(name)
            self.ddl.update_resource_groups(configs)
        return status.success()

    @rpc()
    def DropResourceGroup(self, request, context):
        validate_name(request.resource_group)
        self.ddl.drop_resource_group(request.resource_group)
        return status.success()

    @rpc(milvus_pb2.ListResourceGroupsResponse)
    def ListResourceGroups(self, request, context):
        return milvus_pb2.ListResourceGroupsResponse(status=status.success(),
                                                     resource_groups=sorted(self.groups().snapshot()))

    @rpc(milvus_pb2.DescribeResourceGroupResponse)
    def DescribeResourceGroup(self, request, context):
        name = request.resource_group
        validate_name(name)
        rgs = self.groups()
        group: Group | None = rgs.snapshot().get(name)
        if group is None:
            raise not_found(name)
        addresses = rgs.nodes()
        loaded = Counter({c.name: replica_groups_of(c).count(name) for c in self._loaded()})
        nodes = [common_pb2.NodeInfo(node_id=node_number(n), address=addresses.get(n, ""),
                                     hostname=addresses.get(n, "").rsplit(":", 1)[0])
                 for n in group.nodes]
        info = milvus_pb2.ResourceGroup(
            name=name, capacity=group.capacity, num_available_node=len(nodes),
            num_loaded_replica={k: v for k, v in loaded.items() if v}, num_outgoing_node={}, num_incoming_node={},
            config=config_to_pb(group.config), nodes=nodes)
        return milvus_pb2.DescribeResourceGroupResponse(status=status.success(), resource_group=info)

    @rpc()
    def TransferNode(self, request, context):
        validate_name(request.source_resource_group)
        validate_name(request.target_resource_group)
        self.ddl.transfer_node(request.source_resource_group, request.target_resource_group, request.num_node)
        return status.success()

    @rpc()
    def TransferReplica(self, request, context):
        source, target = request.source_resource_group, request.target_resource_group
        validate_name(source)
        validate_name(target)
        groups = self.groups().snapshot()
        for which, name in (("source", source), ("target", target)):
            if name not in groups:
                raise errors.ResourceGroupNotFound(
                    f"the {which} resource group[{name}] doesn't exist: resource group not found[rg={name}]")
        db = db_of(request, context)
        info = self.collection(db, request.collection_name)
        if not info.loaded:
            raise errors.InvalidParameter(
                f"invalid parameter[expected=Collection not loaded][actual=collectionID {info.id}]")
        transfer_replicas(replica_groups_of(info), source, target, request.num_replica)  # the checks, early
        # the coord changes the catalog, then moves the replica's nodes (vecdb.coord.assignment)
        self.ddl.transfer_replica(db, request.collection_name, source, target, request.num_replica)
        return status.success()

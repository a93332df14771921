"""Privilege groups (Milvus 2.5): named sets of privileges, granted with grant_privilege_v2 as one.

Nine are built in, three per level (Milvus's ``PrivilegeGroups``); custom ones are kept in the
metadata store as ``cred/privgroup/<name>`` (value: JSON list of privilege names) by create,
add/remove and drop (``vecdb.security.rbac.RoleStore``). A grant whose privilege is a group covers
each privilege in it, on the object it was granted on (a collection, or ``*``); the levels do not
cascade (a cluster-level group gives nothing on collections), as in Milvus.
"""

from __future__ import annotations

PRIVGROUP_PREFIX = "cred/privgroup/"

_COLL_RO = ("Query", "Search", "IndexDetail", "GetFlushState", "GetLoadState", "GetLoadingProgress", "HasPartition",
            "ShowPartitions", "ListAliases", "DescribeCollection", "DescribeAlias", "GetStatistics")
_COLL_RW = (*_COLL_RO, "CreateIndex", "DropIndex", "CreatePartition", "DropPartition", "Load", "Release", "Insert",
            "Delete", "Upsert", "Import", "Flush", "Compaction", "LoadBalance")
_COLL_ADMIN = (*_COLL_RW, "CreateAlias", "DropAlias")
_DB_RO = ("ShowCollections", "DescribeDatabase")
_DB_RW = (*_DB_RO, "AlterDatabase")
_DB_ADMIN = (*_DB_RW, "CreateCollection", "DropCollection")
_CLUSTER_RO = ("ListDatabases", "SelectOwnership", "SelectUser", "DescribeResourceGroup", "ListResourceGroups",
               "ListPrivilegeGroups")
_CLUSTER_RW = (*_CLUSTER_RO, "FlushAll", "TransferNode", "TransferReplica", "UpdateResourceGroups")
_CLUSTER_ADMIN = (*_CLUSTER_RW, "BackupRBAC", "RestoreRBAC", "CreateDatabase", "DropDatabase", "CreateOwnership",
                  "DropOwnership", "ManageOwnership", "CreateResourceGroup", "DropResourceGroup", "UpdateUser",
                  "RenameCollection", "CreatePrivilegeGroup", "DropPrivilegeGroup", "OperatePrivilegeGroup")

BUILTIN_GROUPS: dict[str, frozenset[str]] = {
    "CollectionReadOnly": frozenset(_COLL_RO), "CollectionReadWrite": frozenset(_COLL_RW),
    "CollectionAdmin": frozenset(_COLL_ADMIN),
    "DatabaseReadOnly": frozenset(_DB_RO), "DatabaseReadWrite": frozenset(_DB_RW),
    "DatabaseAdmin": frozenset(_DB_ADMIN),
    "ClusterReadOnly": frozenset(_CLUSTER_RO), "ClusterReadWrite": frozenset(_CLUSTER_RW),
    "ClusterAdmin": frozenset(_CLUSTER_ADMIN),
}
# granted on Global (a database, or every one): the database and cluster levels
GLOBAL_LEVEL_GROUPS = frozenset(g for g in BUILTIN_GROUPS if not g.startswith("Collection"))
COLLECTION_LEVEL_GROUPS = frozenset(BUILTIN_GROUPS) - GLOBAL_LEVEL_GROUPS

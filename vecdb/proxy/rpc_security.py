"""RPCs: users (credentials) and RBAC (roles, user-role links, grants). Logic: ``vecdb.security``.

They work with authentication off too (Milvus lets users and roles be managed then); with it on,
the interceptor has checked the caller's privilege for each (``vecdb.security.rbac.REQUIRED``).
"""

from __future__ import annotations

import base64
import binascii

from pymilvus.grpc_gen import milvus_pb2

from vecdb import errors
from vecdb.proxy import status
from vecdb.proxy.auth_interceptor import current_user
from vecdb.proxy.base import ServiceBase, rpc
from vecdb.request_db import db_of
from vecdb.security import Security
from vecdb.security.credentials import record_description
from vecdb.security.privilege_groups import GLOBAL_LEVEL_GROUPS
from vecdb.security.rbac import ANY, COLLECTION, DEFAULT_DB, GLOBAL, GRANTABLE, check_role_name


def _password(encoded: str, what: str = "password") -> str:
    """pymilvus sends passwords base64-encoded in the request."""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise errors.InvalidParameter(f"decode {what} fail") from None


class SecurityRpcs(ServiceBase):
    @property
    def security(self) -> Security:
        if self.r.security is None:
            raise errors.Unimplemented("this server has no credential store")
        return self.r.security

    # --- users ----------------------------------------------------------------------
    @rpc()
    def CreateCredential(self, request, context):
        self.security.users.create(request.username, _password(request.password), request.description)
        return status.success()

    @rpc()
    def UpdateCredential(self, request, context):
        self.security.users.update(request.username, _password(request.oldPassword, "old password"),
                                   _password(request.newPassword),
                                   request.description if request.HasField("description") else None)
        return status.success()

    @rpc()
    def DeleteCredential(self, request, context):
        self.security.users.delete(request.username)
        return status.success()

    @rpc(milvus_pb2.ListCredUsersResponse)
    def ListCredUsers(self, request, context):
        return milvus_pb2.ListCredUsersResponse(status=status.success(), usernames=self.security.users.users())

    # --- roles ----------------------------------------------------------------------
    @rpc()
    def CreateRole(self, request, context):
        self.security.roles.create_role(request.entity.name, request.entity.description)
        return status.success()

    @rpc()
    def AlterRole(self, request, context):
        self.security.roles.alter_role(request.role_name, request.description)
        return status.success()

    @rpc()
    def DropRole(self, request, context):
        self.security.roles.drop_role(request.role_name, request.force_drop)
        return status.success()

    @rpc()
    def OperateUserRole(self, request, context):
        add = request.type == milvus_pb2.OperateUserRoleType.AddUserToRole
        self.security.roles.set_user_role(request.username, request.role_name, add)
        return status.success()

    @rpc(milvus_pb2.SelectRoleResponse)
    def SelectRole(self, request, context):
        roles = self.security.roles
        if request.HasField("role") and request.role.name:
            names = [check_role_name(request.role.name)] if roles.role_exists(request.role.name) else []
        else:
            names = roles.roles()
        results = [milvus_pb2.RoleResult(
            role=milvus_pb2.RoleEntity(name=name, description=roles.description(name)),
            users=[milvus_pb2.UserEntity(name=u) for u in roles.role_users(name)] if request.include_user_info else [])
            for name in names]
        return milvus_pb2.SelectRoleResponse(status=status.success(), results=results)

    @rpc(milvus_pb2.SelectUserResponse)
    def SelectUser(self, request, context):
        users, roles = self.security.users, self.security.roles
        if request.HasField("user") and request.user.name:
            names = [request.user.name] if users.record(request.user.name) is not None else []
        else:
            names = users.users()
        results = [milvus_pb2.UserResult(
            user=milvus_pb2.UserEntity(name=name), description=record_description(users.record(name) or b""),
            roles=[milvus_pb2.RoleEntity(name=r) for r in roles.user_roles(name)] if request.include_role_info else [])
            for name in names]
        return milvus_pb2.SelectUserResponse(status=status.success(), results=results)

    # --- grants ---------------------------------------------------------------------
    @rpc()
    def OperatePrivilege(self, request, context):
        e = request.entity
        self.security.roles.operate(e.role.name, e.db_name, e.object.name, e.object_name, e.grantor.privilege.name,
                                    current_user(context) or "root",
                                    grant=request.type == milvus_pb2.OperatePrivilegeType.Grant)
        return status.success()

    @rpc()
    def OperatePrivilegeV2(self, request, context):
        """grant_privilege_v2: a collection name of ``*`` with a db means every collection there;
        Global privileges are named with collection ``*``."""
        privilege = request.grantor.privilege.name
        if self.security.roles.group_privileges(privilege) is not None:  # a privilege group (vecdb.security)
            object_type = GLOBAL if privilege in GLOBAL_LEVEL_GROUPS else COLLECTION
        else:
            object_type = GLOBAL if privilege in GRANTABLE[GLOBAL] else COLLECTION
        self.security.roles.operate(request.role.name, request.db_name or DEFAULT_DB, object_type,
                                    request.collection_name or ANY, privilege, current_user(context) or "root",
                                    grant=request.type == milvus_pb2.OperatePrivilegeType.Grant)
        return status.success()

    # --- privilege groups (Milvus 2.5) -------------------------------------------------
    @rpc()
    def CreatePrivilegeGroup(self, request, context):
        self.security.roles.create_privilege_group(request.group_name)
        return status.success()

    @rpc()
    def DropPrivilegeGroup(self, request, context):
        self.security.roles.drop_privilege_group(request.group_name)
        return status.success()

    @rpc(milvus_pb2.ListPrivilegeGroupsResponse)
    def ListPrivilegeGroups(self, request, context):
        groups = [milvus_pb2.PrivilegeGroupInfo(group_name=name, privileges=[
            milvus_pb2.PrivilegeEntity(name=p) for p in privileges])
            for name, privileges in sorted(self.security.roles.privilege_groups().items())]
        return milvus_pb2.ListPrivilegeGroupsResponse(status=status.success(), privilege_groups=groups)

    @rpc()
    def OperatePrivilegeGroup(self, request, context):
        add = request.type == milvus_pb2.OperatePrivilegeGroupType.AddPrivilegesToGroup
        self.security.roles.operate_privilege_group(request.group_name, [p.name for p in request.privileges], add)
        return status.success()

    @rpc(milvus_pb2.SelectGrantResponse)
    def SelectGrant(self, request, context):
        e = request.entity
        role = check_role_name(e.role.name)
        if not self.security.roles.role_exists(role):
            raise errors.InvalidParameter(f"role [{role}] not found")
        # the entity's database, else the connection's (Milvus 2.3.5: a client in "dbb" that describes a role
        # sees its grants in "dbb" only; vecdb listed every database's)
        db = db_of(e, context)
        entities = [
            milvus_pb2.GrantEntity(
                role=milvus_pb2.RoleEntity(name=g.role), object=milvus_pb2.ObjectEntity(name=g.object_type),
                object_name=g.object_name, db_name=g.db,
                grantor=milvus_pb2.GrantorEntity(user=milvus_pb2.UserEntity(name=g.grantor),
                                                 privilege=milvus_pb2.PrivilegeEntity(name=g.privilege)))
            for g in self.security.roles.grants(role)
            if (not e.object.name or g.object_type == e.object.name)
            and (not e.object_name or g.object_name == e.object_name)
            and g.db in (db, ANY)
        ]
        return milvus_pb2.SelectGrantResponse(status=status.success(), entities=entities)

"""Roles, user-role links and grants (Milvus's RBAC), and the privilege each RPC needs.

Keys in the metadata store, beside the users (``vecdb.security.credentials``):

- ``cred/role/<role>``: a custom role (``admin`` and ``public`` are built in, never stored);
- ``cred/user-role/<user>/<role>``: the user has the role;
- ``cred/grant/<role>/<db>/<object type>/<object name>/<privilege>``: the role may do that
  (value: JSON with the grantor). Object type is ``Global``, ``Collection`` or ``User``; object
  name and db may be ``*`` (any).

Rules, as Milvus's: ``root`` may do anything; ``admin`` may do anything; every user has
``public``, which starts with DescribeCollection and ShowCollections on Global ``*`` and
IndexDetail on Collection ``*`` (revocable, as in Milvus). A grant of ``All`` on Global covers
every privilege; a grant of privilege ``*`` every privilege of its object type on its object (Milvus
matches the privilege as a glob). A user may always update and describe itself (User object named
after it) and list the grants of its own roles. An RPC whose request message carries no privilege
option needs none (Connect, health, version...).

``REQUIRED`` is Milvus's own table: each request message of the Milvus proto carries a
``common.privilege_ext_obj`` option (object type, privilege, the field number holding the
object name, or of a repeated field of names), read here from pymilvus's descriptors.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from vecdb import errors
from vecdb.security.credentials import USER_ROLE_PREFIX, check_name, user_key
from vecdb.security.privilege_groups import BUILTIN_GROUPS, COLLECTION_LEVEL_GROUPS, PRIVGROUP_PREFIX
from vecdb.security.view import CredentialView
from vecdb.storage.base import MetaStore

ROLE_PREFIX = "cred/role/"
GRANT_PREFIX = "cred/grant/"
PUBLIC_SEEDED = "cred/public-seeded"
ADMIN, PUBLIC = "admin", "public"
BUILTIN_ROLES = (ADMIN, PUBLIC)
ANY = "*"
DEFAULT_DB = "default"
GLOBAL, COLLECTION, USER = "Global", "Collection", "User"

# What may be granted on each object type (Milvus 2.3's ObjectPrivileges, API names)
GRANTABLE: dict[str, frozenset[str]] = {
    COLLECTION: frozenset({
        "Load", "Release", "Compaction", "Insert", "Delete", "Upsert", "GetStatistics", "CreateIndex",
        "IndexDetail", "DropIndex", "Search", "Flush", "Query", "LoadBalance", "Import", "GetLoadingProgress",
        "GetLoadState", "CreatePartition", "DropPartition", "ShowPartitions", "HasPartition", "GetFlushState"}),
    GLOBAL: frozenset({
        "All", "CreateCollection", "DropCollection", "DescribeCollection", "ShowCollections", "RenameCollection",
        "CreateOwnership", "DropOwnership", "SelectOwnership", "ManageOwnership", "CreateResourceGroup",
        "UpdateResourceGroups", "DropResourceGroup", "DescribeResourceGroup", "ListResourceGroups",
        "TransferReplica", "TransferNode", "FlushAll", "CreateDatabase", "DropDatabase", "ListDatabases",
        "AlterDatabase", "DescribeDatabase", "CreateAlias", "DropAlias", "DescribeAlias", "ListAliases"}),
    USER: frozenset({"UpdateUser", "SelectUser"}),
}
ALL_PRIVILEGES = frozenset().union(*GRANTABLE.values(), *BUILTIN_GROUPS.values())
# Granting one grants these too (Milvus's RelatedPrivileges)
RELATED = {"Load": ("GetLoadState", "GetLoadingProgress"), "Flush": ("GetFlushState",)}
PUBLIC_GRANTS = [(GLOBAL, ANY, "DescribeCollection"), (GLOBAL, ANY, "ShowCollections"),
                 (COLLECTION, ANY, "IndexDetail")]
_OBJECT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,254}")


@dataclass(frozen=True)
class Required:
    """The privilege an RPC needs: on which object type, and where its request names the object."""

    object_type: str
    privilege: str  # API name: "Search", not "PrivilegeSearch"
    name_field: str | None  # the request field naming one object
    names_field: str | None  # or a repeated field naming several (Flush)

    def object_names(self, request) -> list[str]:
        if self.names_field:
            return list(getattr(request, self.names_field))
        if not self.name_field:
            return [ANY]
        value = getattr(request, self.name_field)
        if not isinstance(value, str):  # an entity message (SelectUser's user): its name, as Milvus reads it
            value = getattr(value, value.DESCRIPTOR.fields_by_number[1].name) or ANY
        return [value]


def _required_table() -> dict[str, Required]:
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    ext = common_pb2.privilege_ext_obj
    table = {}
    for method in milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"].methods:
        options = method.input_type.GetOptions()
        if not options.HasExtension(ext):
            continue
        e = options.Extensions[ext]
        fields = method.input_type.fields_by_number
        one = fields[e.object_name_index].name if e.object_name_index in fields else None
        many = fields[e.object_name_indexs].name if e.object_name_indexs in fields else None
        privilege = common_pb2.ObjectPrivilege.Name(e.object_privilege).removeprefix("Privilege")
        table[method.name] = Required(common_pb2.ObjectType.Name(e.object_type), privilege, one, many)
    return table


REQUIRED: dict[str, Required] = _required_table()
# The privileges of RPCs newer than the lists above (Milvus 2.5+'s AddCollectionField, 3.0's snapshot and
# schema RPCs...) are grantable on the object type their request declares, as Milvus's proto names them.
for _r in REQUIRED.values():
    if _r.object_type in GRANTABLE and _r.privilege not in ALL_PRIVILEGES:
        GRANTABLE[_r.object_type] = GRANTABLE[_r.object_type] | {_r.privilege}
ALL_PRIVILEGES = frozenset().union(*GRANTABLE.values(), *BUILTIN_GROUPS.values())


def grant_key(role: str, db: str, object_type: str, name: str, privilege: str) -> str:
    return f"{GRANT_PREFIX}{role}/{db}/{object_type}/{name}/{privilege}"


@dataclass(frozen=True)
class Grant:
    role: str
    db: str
    object_type: str
    object_name: str
    privilege: str
    grantor: str

    @classmethod
    def parse(cls, key: str, value: bytes) -> Grant:
        role, db, object_type, name, privilege = key[len(GRANT_PREFIX):].split("/", 4)
        return cls(role, db, object_type, name, privilege, json.loads(value).get("grantor", ""))

    def covers(self, db: str, object_type: str, name: str, privilege: str,
               groups: Mapping[str, frozenset[str]] = BUILTIN_GROUPS) -> bool:
        """Whether this grant allows ``privilege`` on the object; ``groups``: the privilege groups
        (``vecdb.security.privilege_groups``), a grant of one covering each privilege in it."""
        if self.db not in (ANY, db):
            return False
        if self.object_type == GLOBAL and self.privilege == "All":
            return True
        members = groups.get(self.privilege)
        if members is not None:
            return privilege in members and self.object_name in (ANY, name)
        return (self.object_type == object_type and self.object_name in (ANY, name)
                and self.privilege in (privilege, ANY))


def check_role_name(name: str) -> str:
    return check_name(name, "role name")


def check_object_name(name: str, what: str = "object name") -> str:
    if name != ANY and not _OBJECT_NAME.fullmatch(name or ""):
        raise errors.InvalidParameter(f"invalid {what} {name!r}: '*' or a collection/database name")
    return name


class RoleStore:
    """Writes roles, links and grants to ``meta``; reads them from ``view`` (this proxy's copy).

    Checks run on every request, so who has which role and each role's grants are indexed once
    per version of the view (a scan of every ``cred/`` key per request cost ~0.5 ms with 200
    users and 50 grants; the index makes a check a few dict lookups)."""

    def __init__(self, meta: MetaStore, view: CredentialView):
        self.meta, self._view = meta, view
        self._scan, self._get, self._txn = view.scan, view.get, view.txn  # writes: every proxy's copy shows them
        self._index: tuple[int, dict[str, list[str]], dict[str, list[Grant]], dict[str, frozenset[str]]] | None = None

    def _indexed(self) -> tuple[dict[str, list[str]], dict[str, list[Grant]], dict[str, frozenset[str]]]:
        """(user -> roles, role -> grants, privilege group -> privileges) as of the view's current version."""
        version = self._view.version  # read first: a change during the scans makes the next call rebuild
        index = self._index
        if index is None or index[0] != version:
            user_roles: dict[str, list[str]] = defaultdict(list)
            for key, _ in self._scan(USER_ROLE_PREFIX):
                user, _, role = key[len(USER_ROLE_PREFIX):].partition("/")
                user_roles[user].append(role)
            grants: dict[str, list[Grant]] = defaultdict(list)
            for key, value in self._scan(GRANT_PREFIX):
                g = Grant.parse(key, value)
                grants[g.role].append(g)
            groups = dict(BUILTIN_GROUPS)
            for key, value in self._scan(PRIVGROUP_PREFIX):
                groups[key[len(PRIVGROUP_PREFIX):]] = frozenset(json.loads(value))
            index = (version, dict(user_roles), dict(grants), groups)
            self._index = index  # one assignment: readers see the old index or the new one
        return index[1], index[2], index[3]

    def seed_public(self) -> None:
        """Give ``public`` its starting grants, once per store (a revoke stays revoked)."""
        puts = {grant_key(PUBLIC, ANY, t, n, p): b'{"grantor": "root"}' for t, n, p in PUBLIC_GRANTS}
        puts[PUBLIC_SEEDED] = b"1"
        self._txn(puts=puts, expect={PUBLIC_SEEDED: None})

    # --- roles
    def roles(self) -> list[str]:
        """Every role, built-in ones included, by name (as Milvus lists them: its metadata store's key order)."""
        return sorted([*BUILTIN_ROLES, *(k[len(ROLE_PREFIX):] for k, _ in self._scan(ROLE_PREFIX))])

    def role_exists(self, role: str) -> bool:
        return role in BUILTIN_ROLES or self._get(ROLE_PREFIX + role) is not None

    def create_role(self, role: str, description: str = "") -> None:
        role = check_role_name(role)
        value = json.dumps({"description": description}).encode()
        if role in BUILTIN_ROLES or not self._txn(puts={ROLE_PREFIX + role: value}, expect={ROLE_PREFIX + role: None}):
            raise errors.InvalidParameter(f"role [{role}] already exists")

    def description(self, role: str) -> str:
        """A role's description (create_role / alter_role, pymilvus 2.6); "" for a built-in role."""
        raw = None if role in BUILTIN_ROLES else self._get(ROLE_PREFIX + role)
        return json.loads(raw).get("description", "") if raw else ""

    def alter_role(self, role: str, description: str) -> None:
        role = check_role_name(role)
        if role in BUILTIN_ROLES:
            raise errors.NotPermitted(f"the role[{role}] is a default role, which can't be altered")
        key = ROLE_PREFIX + role
        raw = self._get(key)
        if raw is None:
            raise errors.InvalidParameter(f"role [{role}] not found")
        value = json.dumps({**json.loads(raw), "description": description}).encode()
        if not self._txn(puts={key: value}, expect={key: raw}):
            raise errors.CatalogConflict(f"role [{role}] changed concurrently; retry")

    def drop_role(self, role: str, force: bool = False) -> None:
        """Drop the role with its user links; a role holding grants only with ``force`` (pymilvus
        ``force_drop``), its grants then going too (Milvus 2.3.5 refuses it the same way; force: 2.4+)."""
        role = check_role_name(role)
        if role in BUILTIN_ROLES:
            raise errors.NotPermitted(f"the role[{role}] is a default role, which can't be dropped")
        if not self.role_exists(role):
            raise errors.InvalidParameter(f"role [{role}] not found")
        grants = [k for k, _ in self._scan(f"{GRANT_PREFIX}{role}/")]
        if grants and not force:
            raise errors.InvalidParameter("fail to drop the role that it has privileges. Use REVOKE API to revoke "
                                          "privileges")
        gone = [ROLE_PREFIX + role, *grants,
                *(k for k, _ in self._scan(USER_ROLE_PREFIX) if k.endswith(f"/{role}"))]
        self._txn(deletes=gone)

    # --- users' roles
    def user_roles(self, user: str) -> list[str]:
        return list(self._indexed()[0].get(user, ()))

    def role_users(self, role: str) -> list[str]:
        return sorted(k[len(USER_ROLE_PREFIX):].split("/", 1)[0] for k, _ in self._scan(USER_ROLE_PREFIX)
                      if k.endswith(f"/{role}"))

    def set_user_role(self, user: str, role: str, add: bool) -> None:
        check_name(user)
        role = check_role_name(role)
        if self._get(user_key(user)) is None:
            raise errors.InvalidParameter(f"user [{user}] not found")
        if not self.role_exists(role):
            raise errors.InvalidParameter(f"role [{role}] not found")
        key = f"{USER_ROLE_PREFIX}{user}/{role}"
        if add:
            # the user must still exist as the link is written (a concurrent delete would orphan it)
            if not self._txn(puts={key: b"{}"}, expect={user_key(user): self._get(user_key(user))}):
                raise errors.CatalogConflict(f"user [{user}] changed concurrently; retry")
        else:
            self._txn(deletes=[key])

    # --- grants
    def grants(self, role: str) -> list[Grant]:
        return list(self._indexed()[1].get(role, ()))

    def operate(self, role: str, db: str, object_type: str, name: str, privilege: str, grantor: str,
                grant: bool) -> None:
        role = check_role_name(role)
        if not self.role_exists(role):
            raise errors.InvalidParameter(f"role [{role}] not found")
        if object_type not in GRANTABLE:
            raise errors.InvalidParameter(f"invalid object type, object type: {object_type}")
        if privilege not in GRANTABLE[object_type] and privilege != ANY and self.group_privileges(privilege) is None:
            raise errors.InvalidParameter(f"not found the privilege name[{privilege}] in object[{object_type}]")
        # a Global privilege is on no named object: Milvus's rootcoord stores it on "*" whatever was named
        named = name
        name = ANY if object_type == GLOBAL else check_object_name(name)
        db = check_object_name(db or DEFAULT_DB, "database name")
        privileges = [privilege, *RELATED.get(privilege, ())]
        keys = [grant_key(role, db, object_type, name, p) for p in privileges]
        if grant:
            self._txn(puts=dict.fromkeys(keys, json.dumps({"grantor": grantor}).encode()))
            return
        if object_type == GLOBAL and named != ANY and _OBJECT_NAME.fullmatch(named or ""):
            # a vecdb before 06da2ed stored a Global grant on the object named: the same revoke removes it
            # (else it stayed after the upgrade, listed, and drop_role refused the role for it)
            keys += [grant_key(role, db, object_type, named, p) for p in privileges]
        self._txn(deletes=keys)

    def visible_collections(self, user: str, db: str) -> frozenset[str] | None:
        """The collections of ``db`` that ``ShowCollections`` lists to ``user`` (Milvus 2.4+'s
        ``showCollectionTask``); None: all of them. All for ``admin`` and a global ``All`` grant; else
        the collections the user's own roles hold a grant on in ``db``, a Collection privilege or a
        collection-level built-in group (``*``: all)."""
        user_roles, grants, _ = self._indexed()
        roles = user_roles.get(user, ())
        if ADMIN in roles:
            return None
        names: set[str] = set()
        for g in (g for role in roles for g in grants.get(role, ()) if g.db == db):
            if g.object_type == GLOBAL and g.privilege == "All":
                return None
            if g.object_type == COLLECTION or g.privilege in COLLECTION_LEVEL_GROUPS:
                if g.object_name == ANY:
                    return None
                names.add(g.object_name)
        return frozenset(names)

    def visible_databases(self, user: str) -> frozenset[str] | None:
        """The databases ``ListDatabases`` lists to ``user`` (Milvus 2.4+'s rootcoord listDatabaseTask);
        None: all of them. All for ``admin`` and a grant on db ``*``; else the databases its own roles
        (not ``public``) hold a grant in."""
        user_roles, grants, _ = self._indexed()
        roles = user_roles.get(user, ())
        if ADMIN in roles:
            return None
        dbs = {g.db for role in roles for g in grants.get(role, ())}
        return None if ANY in dbs else frozenset(dbs)

    def is_admin(self, user: str) -> bool:
        return ADMIN in self._indexed()[0].get(user, ())

    def allowed(self, user: str, db: str, object_type: str, name: str, privilege: str) -> bool:
        user_roles, grants, groups = self._indexed()
        roles = [*user_roles.get(user, ()), PUBLIC]
        if ADMIN in roles:
            return True
        return any(g.covers(db, object_type, name, privilege, groups) for role in roles for g in grants.get(role, ()))

    # --- privilege groups (vecdb.security.privilege_groups)
    def privilege_groups(self) -> dict[str, list[str]]:
        """The custom groups and their privileges (as Milvus lists them: not the built-in ones)."""
        return {name: sorted(privileges) for name, privileges in self._indexed()[2].items()
                if name not in BUILTIN_GROUPS}

    def group_privileges(self, name: str) -> frozenset[str] | None:
        """A group's privileges (built in or custom); None when there is no such group."""
        return self._indexed()[2].get(name)

    def create_privilege_group(self, name: str) -> None:
        name = check_name(name, "privilege group name")
        if name in BUILTIN_GROUPS or name in ALL_PRIVILEGES:
            raise errors.InvalidParameter(
                f"privilege group name [{name}] is defined by built in privileges or privilege groups in system")
        key = PRIVGROUP_PREFIX + name
        if not self._txn(puts={key: b"[]"}, expect={key: None}):
            raise errors.InvalidParameter(f"privilege group [{name}] already exists")

    def drop_privilege_group(self, name: str) -> None:
        """Refused for a built-in group and for a group some role is granted (revoke it first)."""
        name = check_name(name, "privilege group name")
        if name in BUILTIN_GROUPS:
            raise errors.InvalidParameter(f"privilege group [{name}] is built in, it can't be dropped")
        for role, grants in self._indexed()[1].items():
            if any(g.privilege == name for g in grants):
                raise errors.InvalidParameter(
                    f"privilege group [{name}] is used by role [{role}], Use REVOKE API to revoke it first")
        self._txn(deletes=[PRIVGROUP_PREFIX + name])

    def operate_privilege_group(self, name: str, privileges: list[str], add: bool) -> None:
        name = check_name(name, "privilege group name")
        if name in BUILTIN_GROUPS:
            raise errors.InvalidParameter(f"privilege group [{name}] is built in, it can't be changed")
        for p in privileges:
            if p not in ALL_PRIVILEGES:
                raise errors.InvalidParameter(f"privilege name [{p}] is not valid")
        key = PRIVGROUP_PREFIX + name
        while True:  # compare-and-set: two changes of one group at once both land
            raw = self.meta.get(key)
            if raw is None:
                raise errors.InvalidParameter(f"privilege group [{name}] does not exist")
            now = json.loads(raw)
            new = sorted(set(now) | set(privileges)) if add else [p for p in now if p not in privileges]
            value = json.dumps(new).encode()
            if self._txn(puts={key: value}, expect={key: raw}):
                return

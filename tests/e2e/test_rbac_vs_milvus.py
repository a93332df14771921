"""Authentication and RBAC answered as Milvus 2.3.5 answers them (authorizationEnabled), pinned from a
differential run of the same pymilvus scenario against both servers (no Milvus is started here).

- A grant of privilege ``*`` is every privilege of its object type on its object: ``Collection``/``*``
  allows every collection operation (query, insert, flush, compaction, index, partitions, load...) and
  no Global one; ``Global``/``*`` every Global one (users, roles, databases, aliases, resource groups)
  and no collection read. vecdb refused the grant ("not found the privilege name[*]").
- CreateDatabase and DropDatabase are checked in the connection's database, not in the database the
  request names: a CreateDatabase grant in ``default`` (pymilvus's ``grant_privilege`` default) creates
  any database. vecdb checked them in the new database's name, so the grant never applied.
- Role names may hold dollars and be up to 255 characters (user names: 32, no dollars); roles are
  listed by name, the built-in ones among them.
- A Global privilege granted on a named object is stored and listed on ``*`` and allows the operation
  (vecdb kept the name, and the grant allowed nothing).
- Changing the password of a user that does not exist answers as a wrong old password (1400).
- Pinned as they already matched: a grant in one database does not reach another; a user changes its
  own password and reads itself without a grant, and is refused another's (UpdateUser, SelectUser) and
  the user and role lists (SelectOwnership); root and the built-in roles cannot be dropped (1401); a
  role holding privileges is not dropped; a wrong old password is 1400; revoking what was not granted
  succeeds.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from pymilvus import MilvusClient, MilvusException

from tests.e2e._helpers import float_schema, make_collection, secured_standalone
from tests.e2e.test_rest import post

DIM = 4
PASSWORD = "Password123"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = secured_standalone(tmp_path_factory.mktemp("rbac_vs_milvus"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def root(server):
    c = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user="root", password="Milvus")
    for name in ("c1", "c2"):
        make_collection(c, name, float_schema(DIM))
        c.insert(name, [{"id": i, "vec": [float(i)] * DIM} for i in range(5)])
    c.create_database("dbb")
    yield c
    c.close()


def _user(server, root, *grants: tuple[str, str, str, str]) -> tuple[str, MilvusClient]:
    """A new user with a new role holding ``grants`` (object type, privilege, object name, db), and its client."""
    user, role = "u" + uuid.uuid4().hex[:8], "r" + uuid.uuid4().hex[:8]
    root.create_user(user, PASSWORD)
    root.create_role(role)
    for object_type, privilege, name, db in grants:
        root.grant_privilege(role, object_type, privilege, name, db_name=db)
    root.grant_role(user, role)
    return user, MilvusClient(uri=f"http://127.0.0.1:{server.port}", user=user, password=PASSWORD)


def _denied(call, privilege: str, user: str, db: str = "default") -> None:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value
    assert err.value.details() == f"Privilege{privilege}: permission deny to {user} in the `{db}` database"


def _query(client: MilvusClient, name: str = "c1") -> int:
    return len(client.query(name, filter="id >= 0", limit=10))


def test_privilege_star_is_every_privilege_of_its_object_type(server, root):
    user, coll = _user(server, root, ("Collection", "*", "*", "default"))
    try:
        assert _query(coll) == 5
        assert coll.insert("c1", [{"id": 100, "vec": [1.0] * DIM}])["insert_count"] == 1
        coll.flush("c1")
        assert isinstance(coll.compact("c1"), int)
        coll.create_partition("c1", "star_part")
        assert "star_part" in coll.list_partitions("c1")
        coll.release_collection("c2")
        coll.load_collection("c2")
        _denied(lambda: coll.create_user("nobody_new", PASSWORD), "CreateOwnership", user)
        _denied(lambda: coll.list_users(), "SelectOwnership", user)
        _denied(lambda: coll.create_database("star_db"), "CreateDatabase", user)
    finally:
        coll.close()
    user, glob = _user(server, root, ("Global", "*", "*", "default"))
    try:
        glob.create_user("made_by_star", PASSWORD)
        assert "made_by_star" in glob.list_users()
        assert "admin" in glob.list_roles()
        glob.create_database("star_db")
        glob.drop_database("star_db")
        glob.create_alias("c1", "star_alias")
        glob.drop_alias("star_alias")
        _denied(lambda: _query(glob), "Query", user)
        _denied(lambda: glob.insert("c1", [{"id": 101, "vec": [1.0] * DIM}]), "Insert", user)
    finally:
        glob.close()
    user, one = _user(server, root, ("Collection", "*", "c1", "default"))
    role = root.describe_user(user)["roles"][0]
    assert [(g["object_type"], g["object_name"], g["privilege"]) for g in root.describe_role(role)["privileges"]] == \
        [("Collection", "c1", "*")]
    try:
        assert _query(one) >= 5
        _denied(lambda: _query(one, "c2"), "Query", user)
        # revoked: gone on the next call
        root.revoke_privilege(role, "Collection", "*", "c1")
        _denied(lambda: _query(one), "Query", user)
    finally:
        one.close()
    assert root.describe_role("public")["privileges"]  # untouched


def test_create_and_drop_database_are_checked_in_the_connections_database(server, root):
    user, creator = _user(server, root, ("Global", "CreateDatabase", "*", ""), ("Global", "DropDatabase", "*", ""))
    try:
        creator.create_database("made_by_user")
        assert "made_by_user" in root.list_databases()
        creator.drop_database("made_by_user")
        assert "made_by_user" not in root.list_databases()
        token = f"{user}:{PASSWORD}"  # the REST API checks the same database
        assert post(server.http_port, "databases/create", {"dbName": "made_by_rest"}, token) == (200, {"code": 0,
                                                                                                   "data": {}})
        assert post(server.http_port, "databases/drop", {"dbName": "made_by_rest"}, token) == (200, {"code": 0,
                                                                                                 "data": {}})
        assert "made_by_rest" not in root.list_databases()
    finally:
        creator.close()
    user, admin_here = _user(server, root, ("Global", "All", "*", "default"))
    try:
        admin_here.create_database("made_by_all")
        admin_here.drop_database("made_by_all")
    finally:
        admin_here.close()
    user, elsewhere = _user(server, root, ("Global", "CreateDatabase", "*", "dbb"))  # granted in another database
    try:
        _denied(lambda: elsewhere.create_database("not_made"), "CreateDatabase", user)
        _denied(lambda: elsewhere.drop_database("dbb"), "DropDatabase", user)
    finally:
        elsewhere.close()
    assert "not_made" not in root.list_databases() and "dbb" in root.list_databases()


def test_role_names_take_dollars_and_255_characters(root):
    for name in ("a$b", "_r$", "r" + "x" * 40, "r" * 255):
        root.create_role(name)
        assert name in root.list_roles()
        root.drop_role(name)
    root.create_role("_early")
    assert root.list_roles() == sorted(root.list_roles()) and {"admin", "public", "_early"} <= set(root.list_roles())
    root.drop_role("_early")
    for bad in ("1abc", "a-b", "$a", "r" * 256, "ab c"):
        with pytest.raises(MilvusException) as err:
            root.create_role(bad)
        assert err.value.code == 1100, (bad, err.value)
    for bad in ("a$b", "u" * 33):  # user names stay Milvus's: no dollars, 32 characters
        with pytest.raises(MilvusException) as err:
            root.create_user(bad, PASSWORD)
        assert err.value.code == 1100, (bad, err.value)


def test_a_global_grant_on_a_named_object_is_a_grant_on_every_object(server, root):
    user, creator = _user(server, root, ("Global", "CreateCollection", "named_coll", "default"))
    try:
        role = root.describe_user(user)["roles"][0]
        assert [(g["object_type"], g["object_name"], g["privilege"]) for g in
                root.describe_role(role)["privileges"]] == [("Global", "*", "CreateCollection")]
        creator.create_collection("some_other_name", schema=float_schema(DIM))
        assert root.has_collection("some_other_name")
        root.revoke_privilege(role, "Global", "CreateCollection", "yet_another_name")  # the same grant
        assert root.describe_role(role)["privileges"] == []
        _denied(lambda: creator.create_collection("refused_name", schema=float_schema(DIM)), "CreateCollection", user)
    finally:
        creator.close()
        root.drop_collection("some_other_name")


def test_a_grant_in_one_database_does_not_reach_another(server, root):
    db_root = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user="root", password="Milvus", db_name="dbb")
    make_collection(db_root, "c1", float_schema(DIM))
    db_root.insert("c1", [{"id": 7, "vec": [7.0] * DIM}])
    db_root.close()
    user, here = _user(server, root, ("Collection", "Query", "*", "dbb"))
    there = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user=user, password=PASSWORD, db_name="dbb")
    try:
        assert _query(there) == 1
        _denied(lambda: _query(here), "Query", user)
    finally:
        here.close()
        there.close()


def test_describe_role_lists_the_grants_of_the_connections_database(server, root):
    """As Milvus 2.3.5 answers (differential run, ``MilvusClient`` and the ORM's ``Role``): the grants in the
    database the request names, else in the connection's; vecdb listed every database's."""
    from pymilvus import Role, connections

    role = "r" + uuid.uuid4().hex[:8]
    root.create_role(role)
    root.grant_privilege(role, "Collection", "Query", "*", db_name="default")
    root.grant_privilege(role, "Collection", "Insert", "*", db_name="dbb")
    root.grant_privilege(role, "Global", "CreateCollection", "*", db_name="dbb")
    in_dbb = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user="root", password="Milvus", db_name="dbb")
    alias = "a" + uuid.uuid4().hex[:8]
    connections.connect(alias, uri=f"http://127.0.0.1:{server.port}", user="root", password="Milvus")
    try:
        def grants(client):
            return sorted((g["db_name"], g["object_type"], g["privilege"])
                          for g in client.describe_role(role)["privileges"])

        assert grants(root) == [("default", "Collection", "Query")]
        assert grants(in_dbb) == [("dbb", "Collection", "Insert"), ("dbb", "Global", "CreateCollection")]
        orm = Role(role, using=alias)
        assert sorted((g.db_name, g.privilege) for g in orm.list_grants(db_name="dbb").groups) == \
            [("dbb", "CreateCollection"), ("dbb", "Insert")]
        assert [(g.db_name, g.privilege) for g in orm.list_grant("Collection", "*").groups] == [("default", "Query")]
    finally:
        connections.disconnect(alias)
        in_dbb.close()


def test_users_and_roles_edge_cases(server, root):
    user, me = _user(server, root)
    try:
        assert me.describe_user(user)["user_name"] == user  # itself: no grant needed
        me.update_password(user, PASSWORD, PASSWORD)
        with pytest.raises(MilvusException) as err:
            me.update_password(user, "WrongOld1", "Newpass123")
        assert err.value.code == 1400
        _denied(lambda: me.update_password("root", "Milvus", "Milvus"), "UpdateUser", user)
        _denied(lambda: me.describe_user("root"), "SelectUser", user)
        _denied(lambda: me.list_users(), "SelectOwnership", user)
        _denied(lambda: me.list_roles(), "SelectOwnership", user)
    finally:
        me.close()
    with pytest.raises(MilvusException) as err:
        root.update_password("ghost_user", PASSWORD, "Newpass123")
    assert (err.value.code, err.value.message) == (1400, "old password not correct for ghost_user")
    for call in (lambda: root.drop_user("root"), lambda: root.drop_role("admin"), lambda: root.drop_role("public")):
        with pytest.raises(MilvusException) as err:
            call()
        assert err.value.code == 1401
    root.create_role("holder")
    root.grant_privilege("holder", "Collection", "Query", "c1")
    with pytest.raises(MilvusException, match="fail to drop the role that it has privileges"):
        root.drop_role("holder")
    root.revoke_privilege("holder", "Collection", "Insert", "c1")  # never granted: fine
    root.revoke_role(user, "admin")  # never granted: fine
    root.revoke_privilege("holder", "Collection", "Query", "c1")
    root.drop_role("holder")
    assert "holder" not in root.list_roles()

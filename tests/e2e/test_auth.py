"""Authentication and RBAC through pymilvus, as Milvus behaves with authorizationEnabled.

A server with authentication on (in this process; one through ``vecdb standalone --auth``; two
proxies of a cluster sharing etcd) refuses a missing or wrong credential with gRPC
UNAUTHENTICATED and Milvus's message before any handler runs, so no data leaves; pymilvus's
client then raises "Fail connecting to server". root (default password Milvus) works with
``user``/``password`` and with ``token``; users are created, changed, deleted and listed, each
change taking effect on the next request; a user without a privilege gets PERMISSION_DENIED.
With authentication off nothing is asked.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import uuid

import grpc
import pymilvus
import pytest
from pymilvus import MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from tests.conftest import free_port, server_settings, spawn_vecdb, wait_until
from tests.e2e._helpers import count, float_schema, make_collection

DIM = 4
ROWS = [{"id": i, "vec": [float(i)] * DIM} for i in range(20)]
CLIENT_PYTHON = os.environ.get("VECDB_CLIENT_PYTHON", "")  # the other pymilvus (2.6), see test_compat_newest_client


def _start(data_dir, auth: bool = True):
    from vecdb.standalone import Standalone

    settings = server_settings(data_dir)
    settings.security.authorization_enabled = auth
    return Standalone(settings).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = _start(tmp_path_factory.mktemp("auth"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def uri(server) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def root(uri):
    c = MilvusClient(uri=uri, user="root", password="Milvus")
    name = "auth_books"
    make_collection(c, name, float_schema(DIM))
    c.insert(name, ROWS)
    yield c
    c.close()


def _raw_call(port: int, method: str, request, header: str | None):
    """One RPC on a bare channel, with ``header`` as the authorization metadata (None: none)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        metadata = [("authorization", header)] if header is not None else None
        return getattr(stub, method)(request, metadata=metadata, timeout=10)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _refused(port: int, header: str | None, message: str) -> None:
    for method, request in [("ShowCollections", milvus_pb2.ShowCollectionsRequest()),
                            ("Query", milvus_pb2.QueryRequest(collection_name="auth_books", expr="id >= 0",
                                                              output_fields=["id"])),
                            ("Connect", milvus_pb2.ConnectRequest())]:
        with pytest.raises(grpc.RpcError) as err:
            _raw_call(port, method, request, header)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (method, err.value)
        assert message in err.value.details()


def _cannot_connect(uri: str, **credentials) -> None:
    """A new connection (dedicated: pymilvus would otherwise reuse an open one with the same
    credentials, which asks the server nothing) is refused."""
    with pytest.raises(MilvusException) as err:
        MilvusClient(uri=uri, timeout=10, dedicated=True, **credentials)
    assert "Fail connecting to server" in err.value.message


def test_no_credential_is_refused_and_sees_nothing(server, uri, root):
    _refused(server.port, None, "missing authorization in header")
    _refused(server.port, "%%%", "invalid token format")
    _cannot_connect(uri)


def test_wrong_password_or_unknown_user_is_refused(server, uri, root):
    _refused(server.port, _b64("root:wrong-password"), "auth check failure, please check username and password")
    _refused(server.port, _b64("nobody:Milvus"), "auth check failure, please check username and password")
    _cannot_connect(uri, user="root", password="wrong-password")
    _cannot_connect(uri, token="root:wrong-password")


def test_root_works_with_user_password_and_with_token(uri, root):
    assert count(root, "auth_books") == 20
    by_token = MilvusClient(uri=uri, token="root:Milvus")
    try:
        assert "auth_books" in by_token.list_collections()
        assert sorted(r["id"] for r in by_token.query("auth_books", "id < 3")) == [0, 1, 2]
    finally:
        by_token.close()


def _name() -> str:
    return "u" + uuid.uuid4().hex[:10]


def test_user_lifecycle_create_connect_update_delete_list(uri, root):
    user = _name()
    root.create_user(user, "first-pass")
    assert user in root.list_users() and "root" in root.list_users()
    with pytest.raises(MilvusException, match="user already exists"):
        root.create_user(user, "other-pass")
    with pytest.raises(MilvusException, match="The length of password must be great than 6"):
        root.create_user(_name(), "short")

    me = MilvusClient(uri=uri, token=f"{user}:first-pass")
    try:
        assert me.list_collections() == []  # allowed, and empty: no grant on any collection (Milvus 2.4+)
        with pytest.raises(MilvusException, match="old password not correct"):
            me.update_password(user, "not-the-old-one", "second-pass")
        me.update_password(user, "first-pass", "second-pass", reset_connection=True)  # one's own password
        assert me.list_collections() == []  # the reset connection uses the new one
        _cannot_connect(uri, user=user, password="first-pass")  # the old one is refused at once
        with_new = MilvusClient(uri=uri, user=user, password="second-pass")
        root.drop_user(user)
        with pytest.raises(grpc.RpcError) as err:
            with_new.list_collections()  # an open connection of a deleted user: the next call is refused
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with_new.close()
        _cannot_connect(uri, user=user, password="second-pass")
        assert user not in root.list_users()
    finally:
        me.close()
    with pytest.raises(MilvusException, match="root user cannot be deleted"):
        root.drop_user("root")


def test_user_descriptions_set_at_create_and_by_update_user(uri, root):
    user, other = _name(), _name()
    root.create_user(user, "first-pass", description="ingest job")
    root.create_user(other, "other-pass")
    try:
        assert root.describe_user(user)["description"] == "ingest job"
        assert root.describe_user(other)["description"] == ""
        me = MilvusClient(uri=uri, token=f"{user}:first-pass")
        try:
            me.update_user(user, "nightly ingest job")  # a user may describe itself
            assert me.describe_user(user)["description"] == "nightly ingest job"
            me.update_password(user, "first-pass", "second-pass", reset_connection=True)
            assert me.describe_user(user)["description"] == "nightly ingest job"  # kept by a password change
            with pytest.raises(grpc.RpcError) as err:
                me.update_user(other, "not mine")  # another user's: UpdateUser on that user
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            me.close()
        assert root.describe_user(other)["description"] == ""
    finally:
        root.drop_user(user)
        root.drop_user(other)


def test_rbac_privileges_per_collection_grant_and_revoke(server, uri, root):
    user, role = _name(), "r" + uuid.uuid4().hex[:8]
    root.create_user(user, "reader-pass")
    me = MilvusClient(uri=uri, user=user, password="reader-pass")
    try:
        with pytest.raises(grpc.RpcError) as err:
            me.query("auth_books", "id >= 0")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"PrivilegeQuery: permission deny to {user} in the `default` database" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            me.drop_collection("auth_books")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError):
            me.create_user(_name(), "some-pass")  # CreateOwnership

        root.create_role(role, description="reads the books")
        assert role in root.list_roles() and {"admin", "public"} <= set(root.list_roles())
        assert root.describe_role(role)["description"] == "reads the books"
        root.alter_role(role, "reads the books, sometimes")  # pymilvus 2.6
        assert root.describe_role(role)["description"] == "reads the books, sometimes"
        with pytest.raises(MilvusException, match="default role"):
            root.alter_role("admin", "anything")
        root.grant_role(user, role)
        assert root.describe_user(user)["roles"] == (role,)
        root.grant_privilege(role, "Collection", "Query", "auth_books")
        privileges = root.describe_role(role)["privileges"]
        assert [(p["object_type"], p["object_name"], p["privilege"]) for p in privileges] == \
            [("Collection", "auth_books", "Query")]
        assert count(me, "auth_books") == 20  # now allowed
        with pytest.raises(grpc.RpcError) as err:
            me.insert("auth_books", [{"id": 99, "vec": [0.0] * DIM}])  # Insert was not granted
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        root.revoke_privilege(role, "Collection", "Query", "auth_books")
        with pytest.raises(grpc.RpcError) as err:
            me.query("auth_books", "id >= 0")  # revoked: refused on the next call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        root.grant_privilege_v2(role, "Query", "auth_books", db_name="default")  # 2.5's form of the same
        assert count(me, "auth_books") == 20
        root.revoke_privilege_v2(role, "Query", "auth_books", db_name="default")
        with pytest.raises(grpc.RpcError):
            me.query("auth_books", "id >= 0")

        root.grant_role(user, "admin")
        assert count(me, "auth_books") == 20  # admin may do anything
        root.revoke_role(user, "admin")
        root.grant_privilege(role, "Collection", "Insert", "auth_books")
        with pytest.raises(MilvusException, match="fail to drop the role that it has privileges"):
            root.drop_role(role)  # Milvus 2.4+: revoke first, or force_drop
        assert [p["privilege"] for p in root.describe_role(role)["privileges"]] == ["Insert"]  # still held
        root.drop_role(role, force_drop=True)
        assert role not in root.list_roles()
        root.create_role(role)  # created again: none of the old grants
        assert root.describe_role(role)["privileges"] == []
        root.drop_role(role)
        with pytest.raises(MilvusException, match="default role"):
            root.drop_role("public")
    finally:
        me.close()
        root.drop_user(user)
    assert count(root, "auth_books") == 20  # nothing a refused call asked for happened


def test_privilege_groups_built_in_and_custom(server, uri, root):
    """Milvus 2.5's privilege groups: a built-in group granted on one collection allows what it holds
    there and nothing else; a custom group is created, filled, granted, changed (taking effect on
    the next call), listed, and dropped only once no role holds it."""
    user, role, group = _name(), "r" + uuid.uuid4().hex[:8], "g" + uuid.uuid4().hex[:8]
    root.create_user(user, "group-pass")
    root.create_role(role)
    root.grant_role(user, role)
    me = MilvusClient(uri=uri, user=user, password="group-pass")
    try:
        root.grant_privilege_v2(role, "CollectionReadOnly", "auth_books", db_name="default")
        assert count(me, "auth_books") == 20  # Query is in CollectionReadOnly
        assert me.search("auth_books", [[0.0] * DIM], limit=1)[0][0]["id"] == 0
        with pytest.raises(grpc.RpcError) as err:
            me.insert("auth_books", [{"id": 99, "vec": [0.0] * DIM}])  # Insert is not
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        root.revoke_privilege_v2(role, "CollectionReadOnly", "auth_books", db_name="default")
        with pytest.raises(grpc.RpcError):
            me.query("auth_books", "id >= 0")

        root.create_privilege_group(group)
        with pytest.raises(MilvusException, match="already exists"):
            root.create_privilege_group(group)
        with pytest.raises(MilvusException, match="defined by built in"):
            root.create_privilege_group("CollectionAdmin")
        with pytest.raises(MilvusException, match="is not valid"):
            root.add_privileges_to_group(group, ["Query", "Teleport"])
        root.add_privileges_to_group(group, ["Query", "Insert"])
        listed = {g["privilege_group"]: sorted(g["privileges"]) for g in root.list_privilege_groups()}
        assert listed[group] == ["Insert", "Query"] and "CollectionAdmin" not in listed
        root.grant_privilege_v2(role, group, "auth_books", db_name="default")
        assert count(me, "auth_books") == 20
        with pytest.raises(grpc.RpcError) as err:
            me.upsert("auth_books", [{"id": 0, "vec": [0.0] * DIM}])  # Upsert is not in it
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        root.remove_privileges_from_group(group, ["Query"])
        with pytest.raises(grpc.RpcError):
            me.query("auth_books", "id >= 0")  # removed from the group: refused on the next call
        with pytest.raises(MilvusException, match="Use REVOKE API"):
            root.drop_privilege_group(group)
        root.revoke_privilege_v2(role, group, "auth_books", db_name="default")
        root.drop_privilege_group(group)
        assert group not in {g["privilege_group"] for g in root.list_privilege_groups()}
    finally:
        me.close()
        root.drop_role(role, force_drop=True)
        root.drop_user(user)
    assert count(root, "auth_books") == 20


def test_list_collections_shows_a_user_the_collections_it_holds_a_grant_on(uri, root):
    """Milvus 2.4+'s ShowCollections under RBAC: root, admin and a global All grant see every
    collection; another user sees those its roles hold a Collection privilege or a collection-level
    group on (in that database; '*': all); a database-level group adds none."""
    other = "auth_hidden_" + uuid.uuid4().hex[:6]
    make_collection(root, other, float_schema(DIM))
    user, role, password = _name(), _name(), "some-pass-1"
    root.create_user(user, password)
    root.create_role(role)
    root.grant_role(user, role)
    me = MilvusClient(uri=uri, user=user, password=password)
    try:
        everything = set(root.list_collections())
        assert {other, "auth_books"} <= everything
        assert me.list_collections() == []  # no grant yet
        root.grant_privilege_v2(role, "DatabaseReadOnly", "*", db_name="default")  # ShowCollections itself
        assert me.list_collections() == []
        root.grant_privilege(role, "Collection", "Query", "auth_books")
        assert me.list_collections() == ["auth_books"]
        root.grant_privilege_v2(role, "CollectionReadOnly", other, db_name="default")
        assert sorted(me.list_collections()) == sorted(["auth_books", other])
        root.revoke_privilege_v2(role, "CollectionReadOnly", other, db_name="default")
        root.grant_privilege(role, "Collection", "Search", "*")
        assert set(me.list_collections()) == everything
        root.revoke_privilege(role, "Collection", "Search", "*")
        root.grant_role(user, "admin")
        assert set(me.list_collections()) == everything
        root.revoke_role(user, "admin")
        assert me.list_collections() == ["auth_books"]
        assert root.has_collection(other)
    finally:
        me.close()
        root.drop_role(role, force_drop=True)
        root.drop_user(user)
        root.drop_collection(other)


def test_auth_off_asks_nothing_and_still_manages_users(tmp_path):
    node = _start(tmp_path, auth=False)
    uri = f"http://127.0.0.1:{node.port}"
    try:
        for creds in ({}, {"user": "root", "password": "wrong-password"}, {"token": "nobody:x"}):
            c = MilvusClient(uri=uri, **creds)
            make_collection(c, "open_" + uuid.uuid4().hex[:6], float_schema(DIM), load=False)
            c.close()
        c = MilvusClient(uri=uri)
        c.create_user("someone", "some-pass")
        assert sorted(c.list_users()) == ["root", "someone"]
        c.close()
    finally:
        node.stop()


def test_users_and_grants_survive_a_restart(tmp_path):
    node = _start(tmp_path)
    try:
        c = MilvusClient(uri=f"http://127.0.0.1:{node.port}", token="root:Milvus")
        c.update_password("root", "Milvus", "new-root-pass", reset_connection=True)
        c.create_user("keeper", "keeper-pass")
        c.create_role("keepers")
        c.grant_role("keeper", "keepers")
        c.grant_privilege("keepers", "Global", "CreateCollection", "*")
        c.close()
    finally:
        node.stop()
    node = _start(tmp_path)
    try:
        uri = f"http://127.0.0.1:{node.port}"
        _cannot_connect(uri, user="root", password="Milvus")  # the settings' password only counts at the first start
        c = MilvusClient(uri=uri, token="keeper:keeper-pass", dedicated=True)
        c.create_collection("kept", schema=float_schema(DIM))  # the grant held
        assert c.has_collection("kept")
        c.close()
        root = MilvusClient(uri=uri, token="root:new-root-pass", dedicated=True)
        assert root.describe_user("keeper")["roles"] == ("keepers",)
        root.close()
    finally:
        node.stop()


def test_vecdb_standalone_auth_flag_and_root_password_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VECDB_SECURITY__ROOT_PASSWORD", "from-env-secret")
    port = free_port()
    proc = spawn_vecdb({}, tmp_path, "standalone", "--auth", "--port", str(port), "--http-port", "0")
    try:
        uri = f"http://127.0.0.1:{port}"
        _refused(port, None, "missing authorization in header")
        _cannot_connect(uri, user="root", password="Milvus")
        c = MilvusClient(uri=uri, user="root", password="from-env-secret")
        assert c.list_users() == ["root"]
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_vecdb_cluster_checks_proxies_with_root_when_auth_is_on(server, monkeypatch):
    """`vecdb cluster up/status` ask each proxy for its collections: with authentication on (the
    VECDB_SECURITY__* variables the proxies read) they log in as root, else they would never see
    a proxy answer."""
    from vecdb.localcluster import milvus_answers

    monkeypatch.delenv("VECDB_SECURITY__AUTHORIZATION_ENABLED", raising=False)
    assert "Fail connecting" in (milvus_answers(server.port) or "")
    monkeypatch.setenv("VECDB_SECURITY__AUTHORIZATION_ENABLED", "true")
    assert milvus_answers(server.port) is None


def test_two_proxies_of_a_cluster_agree_on_users(tmp_path, remote_storage):
    from vecdb.coord.server import Coord
    from vecdb.proxy.process import ProxyProcess
    from vecdb.storage.backends import open_meta

    storage = remote_storage()
    settings = server_settings(tmp_path, storage=storage)
    meta = open_meta(settings.storage)
    coord = Coord(meta, session_ttl=2)
    proxies = []
    clients: list[MilvusClient] = []
    try:
        for _ in range(2):
            s = server_settings(tmp_path, storage=storage)
            s.security.authorization_enabled = True
            proxies.append(ProxyProcess(s))
        a, b = (f"http://127.0.0.1:{p.port}" for p in proxies)
        root_a = MilvusClient(uri=a, token="root:Milvus")
        clients.append(root_a)
        root_a.create_user("shared", "shared-pass1")
        took = wait_until(lambda: _connects(b, "shared:shared-pass1"), 5, "the other proxy never accepted the user")
        print(f"a new user was accepted by the other proxy after {took * 1000:.0f} ms")
        root_b = MilvusClient(uri=b, token="root:Milvus")
        clients.append(root_b)
        root_b.update_password("shared", "shared-pass1", "shared-pass2")
        took = wait_until(lambda: not _connects(a, "shared:shared-pass1"), 5, "the old password kept working")
        print(f"an old password was refused by the other proxy after {took * 1000:.0f} ms")
        assert _connects(a, "shared:shared-pass2")
        root_a.drop_user("shared")
        wait_until(lambda: not _connects(b, "shared:shared-pass2"), 5, "the deleted user kept working")
        assert root_b.list_users() == ["root"]
    finally:
        for c in clients:
            c.close()
        for p in proxies:
            p.stop()
        coord.stop()
        meta.close()


def _connects(uri: str, token: str) -> bool:
    try:
        MilvusClient(uri=uri, token=token, timeout=10, dedicated=True).close()
        return True
    except MilvusException:
        return False


NEWEST_CLIENT = r'''
import json, sys
import pymilvus
from pymilvus import MilvusClient, MilvusException

args = json.load(sys.stdin)
uri, user = args["uri"], args["user"]
out = {"version": pymilvus.__version__}


def refused(**kw):
    try:
        MilvusClient(uri=uri, timeout=10, dedicated=True, **kw).close()
        return False
    except MilvusException:
        return True


def call(fn):
    try:
        return ["ok", fn()]
    except Exception as e:  # grpc.RpcError for a refused call on an open connection
        code = e.code() if callable(getattr(e, "code", None)) else getattr(e, "code", None)
        return ["error", str(code)]


out["no_credential_refused"] = refused()
out["wrong_password_refused"] = refused(user="root", password="wrong-password")
root = MilvusClient(uri=uri, token="root:Milvus")
root.create_user(user, "newest-pass")
out["users"] = sorted(root.list_users())
me = MilvusClient(uri=uri, user=user, password="newest-pass", dedicated=True)
out["query_before_grant"] = call(lambda: len(me.query("auth_books", "id >= 0")))
role = user + "_role"
root.create_role(role)
root.grant_role(user, role)
root.grant_privilege(role, "Collection", "Query", "auth_books")
out["query_after_grant"] = call(lambda: len(me.query("auth_books", "id >= 0")))
me.update_password(user, "newest-pass", "newest-pass2")
out["old_password_refused"] = refused(user=user, password="newest-pass")
root.drop_user(user)
root.drop_role(role, force_drop=True)
out["dropped_user_refused"] = refused(user=user, password="newest-pass2")
print("RESULT " + json.dumps(out))
'''


@pytest.mark.skipif(not CLIENT_PYTHON, reason="VECDB_CLIENT_PYTHON is not set: no virtualenv of the other pymilvus "
                                              "(run through `make test`, which creates it)")
def test_newest_pymilvus_client_logs_in_and_is_refused_the_same(uri, root):
    payload = {"uri": uri, "user": _name()}
    proc = subprocess.run([CLIENT_PYTHON, "-c", NEWEST_CLIENT], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    assert out["version"] != pymilvus.__version__, out["version"]  # the other client (Makefile: OTHER_PYMILVUS)
    assert out["no_credential_refused"] and out["wrong_password_refused"]
    assert {"root", payload["user"]} <= set(out["users"])
    assert out["query_before_grant"][0] == "error" and "PERMISSION_DENIED" in out["query_before_grant"][1]
    assert out["query_after_grant"] == ["ok", 20]
    assert out["old_password_refused"] and out["dropped_user_refused"]

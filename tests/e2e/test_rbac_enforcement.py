"""RBAC enforcement on the object a request really reaches (docs/security.md, "Privileges").

A grant counts on the collection a request reads or writes: an alias is checked as the collection it
points at (Milvus 2.6's proxy.resolveAliasForPrivilege), so a grant on an alias name reaches nothing
and a grant on a collection reaches it through any of its aliases, on gRPC and REST alike; a request
naming its collection by id (ManualCompaction's collectionID) is checked in that collection's
database; a rename or a snapshot restore into another database needs the privilege granted on every
database (db "*"), as Milvus's proxy asks. Refusals are gRPC PERMISSION_DENIED (REST 403) with
Milvus's message, and the user holding the grant still succeeds.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from tests.e2e._helpers import float_schema, make_collection, secured_standalone

DIM = 4
PASSWORD = "Password123"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = secured_standalone(tmp_path_factory.mktemp("rbac"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def root(server):
    c = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user="root", password="Milvus")
    for name in ("ra", "rb"):
        make_collection(c, name, float_schema(DIM))
        c.insert(name, [{"id": i, "vec": [float(i)] * DIM} for i in range(5)])
    c.create_alias("rb", "rb_alias")
    c.create_database("rbac_other")
    yield c
    c.close()


def _user(root, *grants) -> str:
    """A new user holding a new role with ``grants``: (privilege, collection, db) for grant_privilege_v2."""
    user, role = "u" + uuid.uuid4().hex[:8], "r" + uuid.uuid4().hex[:8]
    root.create_user(user, PASSWORD)
    root.create_role(role)
    for privilege, collection, db in grants:
        root.grant_privilege_v2(role, privilege, collection, db_name=db)
    root.grant_role(user, role)
    return user


def _call(server, user: str, method: str, request, db: str | None = None):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        metadata = [("authorization", base64.b64encode(f"{user}:{PASSWORD}".encode()).decode())]
        if db:
            metadata.append(("dbname", db))
        return getattr(milvus_pb2_grpc.MilvusServiceStub(channel), method)(request, metadata=metadata, timeout=10)


def _denied(server, user: str, method: str, request, message: str, db: str | None = None) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(server, user, method, request, db)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value
    assert err.value.details() == message


def _rest(server, user: str, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/v2/vectordb/{path}",
                                 data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {user}:{PASSWORD}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as f:
            return f.status, json.loads(f.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _query(name: str, db: str = "") -> milvus_pb2.QueryRequest:
    return milvus_pb2.QueryRequest(collection_name=name, expr="id >= 0", output_fields=["id"], db_name=db)


def test_an_alias_is_checked_as_the_collection_it_points_at(server, root):
    on_alias = _user(root, ("Query", "rb_alias", "default"))  # a grant on the alias name
    on_target = _user(root, ("Query", "rb", "default"))
    message = f"PrivilegeQuery: permission deny to {on_alias} in the `default` database"
    _denied(server, on_alias, "Query", _query("rb_alias"), message)
    status, reply = _rest(server, on_alias, "entities/query", {"collectionName": "rb_alias", "filter": "id >= 0"})
    assert (status, reply) == (403, {"code": 1401, "message": message})
    root.alter_alias("ra", "rb_alias")  # pointed elsewhere: still the target's grants that count
    try:
        _denied(server, on_alias, "Query", _query("rb_alias"), message)
    finally:
        root.alter_alias("rb", "rb_alias")
    # the holder of the collection's grant reaches it by its name and through its alias
    assert len(_call(server, on_target, "Query", _query("rb_alias")).fields_data[0].scalars.long_data.data) == 5
    assert len(_call(server, on_target, "Query", _query("rb")).fields_data[0].scalars.long_data.data) == 5
    status, reply = _rest(server, on_target, "entities/query", {"collectionName": "rb_alias", "filter": "id >= 0"})
    assert status == 200 and reply["code"] == 0 and len(reply["data"]) == 5
    # Flush names several collections: each alias among them is checked as its collection
    flusher = _user(root, ("CollectionReadWrite", "ra", "default"))
    _denied(server, flusher, "Flush", milvus_pb2.FlushRequest(collection_names=["ra", "rb_alias"]),
            f"PrivilegeFlush: permission deny to {flusher} in the `default` database")
    assert _call(server, flusher, "Flush", milvus_pb2.FlushRequest(collection_names=["ra"])).status.code == 0


def test_another_database_is_not_reached_by_header_db_name_collection_id_or_rest(server, root):
    root.use_database("rbac_other")
    try:
        make_collection(root, "ra", float_schema(DIM))
        other_id = root.describe_collection("ra")["collection_id"]
    finally:
        root.use_database("default")
    reader = _user(root, ("Query", "ra", "default"), ("Compaction", "*", "default"))
    message = f"PrivilegeQuery: permission deny to {reader} in the `rbac_other` database"
    _denied(server, reader, "Query", _query("ra"), message, db="rbac_other")  # the connection's database
    _denied(server, reader, "Query", _query("ra", db="rbac_other"), message)  # the request's db_name
    status, reply = _rest(server, reader, "entities/query",
                          {"dbName": "rbac_other", "collectionName": "ra", "filter": "id >= 0"})
    assert (status, reply) == (403, {"code": 1401, "message": message})
    # a collection named by id alone is checked in its own database, not the connection's
    _denied(server, reader, "ManualCompaction", milvus_pb2.ManualCompactionRequest(collectionID=other_id),
            f"PrivilegeCompaction: permission deny to {reader} in the `rbac_other` database")
    own_id = root.describe_collection("ra")["collection_id"]
    reply = _call(server, reader, "ManualCompaction", milvus_pb2.ManualCompactionRequest(collectionID=own_id))
    assert reply.status.code == 0
    assert len(_call(server, reader, "Query", _query("ra")).fields_data[0].scalars.long_data.data) == 5


def test_rename_into_another_database_needs_a_grant_on_every_database(server, root):
    make_collection(root, "to_move", float_schema(DIM), load=False)
    in_default = _user(root, ("RenameCollection", "*", "default"))
    cross_db = milvus_pb2.RenameCollectionRequest(oldName="to_move", newName="moved", newDBName="rbac_other")
    _denied(server, in_default, "RenameCollection", cross_db,
            f"PrivilegeRenameCollection: permission deny to {in_default} in the `*` database")
    assert "to_move" in root.list_collections()
    same_db = milvus_pb2.RenameCollectionRequest(oldName="to_move", newName="renamed")
    assert _call(server, in_default, "RenameCollection", same_db).code == 0  # within its database: allowed
    everywhere = _user(root, ("RenameCollection", "*", "*"))
    cross_db.oldName = "renamed"
    assert _call(server, everywhere, "RenameCollection", cross_db).code == 0
    root.use_database("rbac_other")
    try:
        assert "moved" in root.list_collections()
    finally:
        root.use_database("default")


def test_a_snapshot_restore_into_another_database_needs_a_grant_on_every_database(server, root):
    user = _user(root, ("CreateSnapshot", "ra", "default"), ("RestoreSnapshot", "ra", "default"))
    assert _call(server, user, "CreateSnapshot",
                 milvus_pb2.CreateSnapshotRequest(collection_name="ra", name="snap1")).code == 0
    restore = milvus_pb2.RestoreSnapshotRequest(collection_name="ra", name="snap1", target_db_name="rbac_other",
                                                target_collection_name="restored")
    _denied(server, user, "RestoreSnapshot", restore,
            f"PrivilegeRestoreSnapshot: permission deny to {user} in the `*` database")
    root.use_database("rbac_other")
    try:
        assert "restored" not in root.list_collections()
    finally:
        root.use_database("default")
    restore.target_db_name = ""  # into its own database: the source collection's grant is enough
    assert _call(server, user, "RestoreSnapshot", restore).status.code == 0


def test_a_dropped_user_or_changed_password_is_refused_on_an_open_connection(server, root):
    user = _user(root, ("Query", "ra", "default"))
    me = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user=user, password=PASSWORD)
    try:
        assert len(me.query("ra", filter="id >= 0")) == 5
        root.update_password(user, PASSWORD, "Another-pass1")
        with pytest.raises(grpc.RpcError) as err:
            me.query("ra", filter="id >= 0")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "auth check failure, please check username and password are correct"
        root.drop_user(user)
        status, reply = _rest(server, user, "entities/query", {"collectionName": "ra", "filter": "id >= 0"})
        assert (status, reply["code"]) == (401, 1800)
    finally:
        me.close()

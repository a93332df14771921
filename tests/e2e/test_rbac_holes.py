"""Authorization holes found by probing RBAC as narrow users, each pinned here (docs/security.md).

- An import of absolute local paths (a standalone server on the embedded object store reads them from its
  own file system, docs/import.md) is root's and the admin role's only: the Import privilege on one
  collection must not read the server's files (before: any readable ``.json``/``.parquet``/``.npy`` file of
  the host landed in the user's collection, and the job's failed_reason told which paths exist).
- ``ListDatabases`` lists to a user that is not root or admin only the databases its own roles hold a grant
  in (Milvus 2.4+'s rootcoord listDatabaseTask; before: every database's name).
- ``vecdb standalone --workers N`` without a cluster secret served its metadata store (users, grants) and
  coord on loopback to any local process: one could write ``cred/user-role/<me>/admin``. The primary now
  makes a random cluster secret and hands it to its workers.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from tests.conftest import free_port, start_vecdb, stop_processes, wait_until
from tests.e2e._helpers import float_schema, make_collection, secured_standalone

DIM = 4
PASSWORD = "Password123"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = secured_standalone(tmp_path_factory.mktemp("rbac_holes"))
    root = MilvusClient(uri=f"http://127.0.0.1:{node.port}", user="root", password="Milvus")
    make_collection(root, "target", float_schema(DIM))
    for db in ("hole_db1", "hole_secret"):
        root.create_database(db)
    node.root = root
    yield node
    root.close()
    node.stop()


def _user(root: MilvusClient, name: str, *grants: tuple[str, str, str], roles: tuple[str, ...] = ()) -> str:
    root.create_user(name, PASSWORD)
    if grants:
        root.create_role("r_" + name)
        for privilege, collection, db in grants:
            root.grant_privilege_v2("r_" + name, privilege, collection, db_name=db)
        root.grant_role(name, "r_" + name)
    for role in roles:
        root.grant_role(name, role)
    return name


def _stub(server):
    return milvus_pb2_grpc.MilvusServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def _md(user: str, password: str = PASSWORD):
    return [("authorization", base64.b64encode(f"{user}:{password}".encode()).decode())]


def _rest(server, path: str, body: dict, user: str, password: str = PASSWORD) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {user}:{password}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _ids(server, user: str, password: str = PASSWORD) -> list[int]:
    reply = _stub(server).Query(milvus_pb2.QueryRequest(collection_name="target", expr="id >= 0", output_fields=["id"],
                                                        consistency_level=0), metadata=_md(user, password))
    assert reply.status.code == 0, reply.status
    return sorted(next(f for f in reply.fields_data if f.field_name == "id").scalars.long_data.data)


def test_import_of_local_server_files_needs_root_or_admin(server, tmp_path):
    root = server.root
    _user(root, "importer", ("Import", "target", "default"), ("Query", "target", "default"))
    _user(root, "imp_admin", roles=("admin",))
    outside = tmp_path / "host_file.json"
    outside.write_text(json.dumps({"rows": [{"id": 555, "vec": [5.0] * DIM}]}))
    stub = _stub(server)
    for files in ([str(outside)], ["/etc/nonexistent.json"], ["relative_ok.json", str(outside)]):
        with pytest.raises(grpc.RpcError) as err:
            stub.Import(milvus_pb2.ImportRequest(collection_name="target", files=files), metadata=_md("importer"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details().startswith("PrivilegeImport: permission deny to importer")
    code, reply = _rest(server, "/v2/vectordb/jobs/import/create",
                        {"collectionName": "target", "files": [[str(outside)]]}, "importer")
    assert code == 403 and reply["message"].startswith("PrivilegeImport: permission deny to importer"), reply
    assert _ids(server, "importer") == []  # nothing was read
    # an object store key is still the user's to import (the job runs, and fails: no such object)
    job = stub.Import(milvus_pb2.ImportRequest(collection_name="target", files=["imports/none.json"]),
                      metadata=_md("importer"))
    assert job.status.code == 0 and job.tasks
    # the admin role (and root) may still import a local file
    job = stub.Import(milvus_pb2.ImportRequest(collection_name="target", files=[str(outside)]),
                      metadata=_md("imp_admin"))
    assert job.status.code == 0, job.status
    wait_until(lambda: _ids(server, "importer") == [555], 30, "the admin's local import")


def test_list_databases_shows_only_databases_with_a_grant(server):
    root = server.root
    _user(root, "db_reader", ("CollectionReadOnly", "*", "hole_db1"))
    _user(root, "db_public")
    _user(root, "db_any", ("Query", "*", "*"))
    _user(root, "db_admin", roles=("admin",))
    everything = root.list_databases()
    assert {"default", "hole_db1", "hole_secret"} <= set(everything)
    seen = {}
    for user in ("db_reader", "db_public", "db_any", "db_admin"):
        c = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user=user, password=PASSWORD)
        seen[user] = c.list_databases()
        c.close()
    assert seen == {"db_reader": ["hole_db1"], "db_public": [], "db_any": everything, "db_admin": everything}
    code, reply = _rest(server, "/v2/vectordb/databases/list", {}, "db_reader")
    assert code == 200 and reply["data"] == ["hole_db1"], reply
    # the user still works in its database
    c = MilvusClient(uri=f"http://127.0.0.1:{server.port}", user="db_reader", password=PASSWORD, db_name="hole_db1")
    assert c.list_collections() == []
    c.close()


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (from /proc: its socket inodes in the LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def test_workers_primary_refuses_internal_calls_without_the_secret(tmp_path):
    """Without a configured cluster secret the primary's loopback metadata store and coord take no call from
    a process that is not one of its workers: no reading password hashes, no granting oneself admin."""
    from vecdb.errors import CredentialRefused
    from vecdb.storage.remote import RemoteMetaStore

    port = free_port()
    proc = start_vecdb("standalone", "--port", str(port), "--http-port", "0", "--workers", "2", "--auth",
                       data_dir=tmp_path, timeout=120)
    try:
        root = MilvusClient(uri=f"http://127.0.0.1:{port}", token="root:Milvus")
        root.create_user("mallory", PASSWORD)
        internal = _listening_ports(proc.pid) - {port}
        assert internal, "the primary serves its backends on loopback"
        for p in internal:
            store = RemoteMetaStore(f"vecdb://127.0.0.1:{p}", timeout=5, secret="")
            try:
                with pytest.raises(CredentialRefused):
                    store.txn(puts={"cred/user-role/mallory/admin": b"{}"})
            finally:
                store.close()
        mallory = MilvusClient(uri=f"http://127.0.0.1:{port}", token=f"mallory:{PASSWORD}")
        with pytest.raises(Exception, match="PrivilegeCreateDatabase"):
            mallory.create_database("pwned")
        assert root.describe_user("mallory")["roles"] == ()
        mallory.close()
        root.close()
    finally:
        stop_processes([proc])

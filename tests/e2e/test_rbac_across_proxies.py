"""RBAC changes made through one proxy of a cluster hold on the other proxy as soon as the call returns.

Each proxy checks requests against its own copy of ``cred/`` (users, roles, grants), which follows the
metadata store by watch; an RBAC call returns once every live proxy's copy has applied it
(``vecdb.security.view``), as Milvus's rootcoord refreshes every proxy's credential and policy caches
before it answers. Found by a cluster-vs-standalone sweep, before that wait: right after
``update_password`` the old password was accepted once more by the other proxy, a grant followed at once
by a call through the other proxy was refused 2 times in 30, a revoke let 1 call in 30 through, a
privilege-group change followed by an insert through the other proxy was refused.

Every check here changes through one proxy and looks through the other at once, 30 times or more each,
alternating which proxy changes (raw gRPC calls, so a refusal is the exact gRPC status).
"""

from __future__ import annotations

import base64
import os
import signal
import time

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc, schema_pb2

from tests.conftest import LocalCluster, free_ports, start_vecdb

ROUNDS = 30
ROOT = ("root", "Milvus")
PASSWORD = "Password123"
COLLECTION = "guarded"


@pytest.fixture(scope="module")
def cluster(remote_storage, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VECDB_SECURITY__AUTHORIZATION_ENABLED", "true")
        cluster = LocalCluster(tmp_path_factory.mktemp("rbac-proxies"), remote_storage(), proxies=2, querynodes=1,
                               datanodes=0)
    yield cluster
    cluster.stop(check=False)  # the last test kills a proxy


@pytest.fixture(scope="module")
def roots(cluster):
    """Root's pymilvus clients of proxy 0 and proxy 1, and a collection to guard."""
    clients = [MilvusClient(uri=f"http://127.0.0.1:{port}", user=ROOT[0], password=ROOT[1]) for port in cluster.ports]
    clients[0].create_collection(COLLECTION, dimension=2, auto_id=False, consistency_level="Strong")
    yield clients
    for c in clients:
        c.close()


@pytest.fixture(scope="module")
def stubs(cluster):
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in cluster.ports]
    yield [milvus_pb2_grpc.MilvusServiceStub(ch) for ch in channels]
    for ch in channels:
        ch.close()


def _call(stub, user: str, password: str, method: str, request):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return getattr(stub, method)(request, metadata=[("authorization", token)], timeout=10)


def _refusal(stub, user: str, password: str, method: str, request) -> grpc.StatusCode | None:
    """None when the call was let through (its own answer aside), else the gRPC status it was refused with."""
    try:
        _call(stub, user, password, method, request)
    except grpc.RpcError as e:
        return e.code()
    return None


def _show_partitions(stub, user: str) -> grpc.StatusCode | None:
    return _refusal(stub, user, PASSWORD, "ShowPartitions",
                    milvus_pb2.ShowPartitionsRequest(collection_name=COLLECTION))


def _insert(stub, user: str, i: int) -> grpc.StatusCode | None:
    request = milvus_pb2.InsertRequest(collection_name=COLLECTION, num_rows=1, fields_data=[
        schema_pb2.FieldData(field_name="id", type=schema_pb2.DataType.Int64,
                             scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=[i]))),
        schema_pb2.FieldData(field_name="vector", type=schema_pb2.DataType.FloatVector, vectors=schema_pb2.VectorField(
            dim=2, float_vector=schema_pb2.FloatArray(data=[0.5, float(i)])))])
    try:
        reply = _call(stub, user, PASSWORD, "Insert", request)
    except grpc.RpcError as e:
        return e.code()
    assert reply.status.code == 0, reply.status  # let through: the insert itself succeeds
    return None


def _user_with_role(root: MilvusClient, user: str, role: str) -> None:
    root.create_user(user, PASSWORD)
    root.create_role(role)
    root.grant_role(user, role)


def _grant_and_revoke_rounds(roots: list[MilvusClient], stubs) -> None:
    _user_with_role(roots[0], "granted", "granted_role")
    seen = []
    for i in range(ROUNDS):
        writer, reader = roots[i % 2], stubs[1 - i % 2]
        writer.grant_privilege("granted_role", "Collection", "ShowPartitions", COLLECTION)
        allowed = _show_partitions(reader, "granted")
        writer.revoke_privilege("granted_role", "Collection", "ShowPartitions", COLLECTION)
        denied = _show_partitions(reader, "granted")
        seen.append((allowed, denied))
    assert seen == [(None, grpc.StatusCode.PERMISSION_DENIED)] * ROUNDS


def test_grant_and_revoke_hold_on_the_other_proxy_at_once(roots, stubs):
    _grant_and_revoke_rounds(roots, stubs)


def test_grant_v2_and_user_role_changes_hold_on_the_other_proxy_at_once(roots, stubs):
    roots[0].create_user("linked", PASSWORD)
    roots[0].create_role("linked_role")
    roots[0].grant_privilege_v2("linked_role", "ShowPartitions", COLLECTION)
    seen = []
    for i in range(ROUNDS):
        writer, reader = roots[i % 2], stubs[1 - i % 2]
        writer.grant_role("linked", "linked_role")
        allowed = _show_partitions(reader, "linked")
        writer.revoke_role("linked", "linked_role")
        seen.append((allowed, _show_partitions(reader, "linked")))
    assert seen == [(None, grpc.StatusCode.PERMISSION_DENIED)] * ROUNDS
    roots[1].grant_role("linked", "linked_role")
    roots[1].drop_role("linked_role", force_drop=True)  # its grant and its user link go with it
    assert _show_partitions(stubs[0], "linked") == grpc.StatusCode.PERMISSION_DENIED


def test_privilege_group_changes_hold_on_the_other_proxy_at_once(roots, stubs):
    _user_with_role(roots[0], "grouped", "grouped_role")
    roots[0].create_privilege_group("writers")
    roots[1].grant_privilege_v2("grouped_role", "writers", COLLECTION)
    seen = []
    for i in range(ROUNDS):
        writer, reader = roots[i % 2], stubs[1 - i % 2]
        writer.add_privileges_to_group("writers", ["Insert"])
        allowed = _insert(reader, "grouped", i)
        writer.remove_privileges_from_group("writers", ["Insert"])
        seen.append((allowed, _insert(reader, "grouped", i)))
    assert seen == [(None, grpc.StatusCode.PERMISSION_DENIED)] * ROUNDS


def test_password_update_holds_on_the_other_proxy_at_once(roots, stubs):
    roots[0].create_user("rotating", "rotating-0")
    seen = []
    for i in range(ROUNDS):
        writer, reader = roots[i % 2], stubs[1 - i % 2]
        old, new = f"rotating-{i}", f"rotating-{i + 1}"
        request = milvus_pb2.ListDatabasesRequest()
        first = _refusal(reader, "rotating", old, "ListDatabases", request)  # the reader has the old one cached
        writer.update_password("rotating", old, new)
        seen.append((first, _refusal(reader, "rotating", old, "ListDatabases", request),
                     _refusal(reader, "rotating", new, "ListDatabases", request)))
    assert seen == [(None, grpc.StatusCode.UNAUTHENTICATED, None)] * ROUNDS


def test_dropped_user_is_refused_by_the_other_proxy_at_once(roots, stubs):
    seen = []
    request = milvus_pb2.ListDatabasesRequest()
    for i in range(ROUNDS):
        writer, reader = roots[i % 2], stubs[1 - i % 2]
        user = f"brief{i}"
        writer.create_user(user, PASSWORD)
        known = _refusal(reader, user, PASSWORD, "ListDatabases", request)  # now cached by the reader
        writer.drop_user(user)
        seen.append((known, _refusal(reader, user, PASSWORD, "ListDatabases", request)))
    assert seen == [(None, grpc.StatusCode.UNAUTHENTICATED)] * ROUNDS


def test_a_dead_proxy_is_not_waited_for_beyond_the_bound(cluster, roots, stubs):
    """A proxy killed without a goodbye keeps its session until its lease runs out: an RBAC call waits for
    it at most the bound (5 s), then answers, and the writer's log names the proxy that lagged."""
    if os.environ.get("VECDB_TEST_PROXY_WORKERS", "1") != "1":
        pytest.skip("a proxy of workers: its workers end with their supervisor, and their logs are theirs")
    roots[0].create_role("after_death")
    cluster.procs["proxy1"].send_signal(signal.SIGKILL)
    cluster.procs["proxy1"].wait(10)
    offsets = cluster.log_offsets()
    t0 = time.monotonic()
    roots[0].grant_privilege("after_death", "Collection", "ShowPartitions", COLLECTION)
    took = time.monotonic() - t0
    assert took < 9, took
    assert [g["privilege"] for g in roots[0].describe_role("after_death")["privileges"]] == ["ShowPartitions"]
    output = cluster.new_output({"proxy0": offsets["proxy0"]})
    assert "have not applied" in output and "after" in output, output[-2000:]


def test_the_workers_of_a_standalone_server_agree_at_once(tmp_path):
    """``vecdb standalone --workers 2``: each worker is a proxy with a copy of its own; a change through one
    worker holds on the other when the call returns (each worker on its own port too: ``worker_port``)."""
    base = free_ports(3)
    proc = start_vecdb("standalone", "--port", str(base), "--http-port", "0", "--workers", "2", "--auth",
                       data_dir=tmp_path, env={"VECDB_STORAGE__SESSION_TTL": "4",
                                               "VECDB_PROXY__WORKER_PORT": str(base + 1)}, timeout=120)
    ports = [base + 1, base + 2]
    channels = [grpc.insecure_channel(f"127.0.0.1:{p}") for p in ports]
    roots: list[MilvusClient] = []
    try:
        roots += [MilvusClient(uri=f"http://127.0.0.1:{p}", token=":".join(ROOT), dedicated=True) for p in ports]
        roots[0].create_collection(COLLECTION, dimension=2, auto_id=False)
        _grant_and_revoke_rounds(roots, [milvus_pb2_grpc.MilvusServiceStub(ch) for ch in channels])
        request = milvus_pb2.ListDatabasesRequest()
        stub = milvus_pb2_grpc.MilvusServiceStub(channels[1])
        roots[0].create_user("passing", PASSWORD)
        assert _refusal(stub, "passing", PASSWORD, "ListDatabases", request) is None
        roots[0].drop_user("passing")
        assert _refusal(stub, "passing", PASSWORD, "ListDatabases", request) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for ch in channels:
            ch.close()
        for c in roots:
            c.close()
        assert proc.stop(60) == 0, proc.failure("did not stop cleanly")

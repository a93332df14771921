"""A query node in the cluster's shape: it shares only the backends (JetStream, etcd, S3) with
the server that takes the writes, loads a collection from them, then follows its channels in
the log and answers with every acknowledged write once ``wait_applied`` returned; through its
internal RPC service it answers like the node itself."""

from __future__ import annotations

import contextlib

import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, spawn_vecdb, start_standalone
from tests.e2e._helpers import float_vectors
from vecdb.config import StorageSettings
from vecdb.coord.catalog import Catalog
from vecdb.errors import CollectionNotLoaded, ServiceUnavailable
from vecdb.expr.filter import compile_filter
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.querynode.rpc import RemoteQueryNode, serve_querynode
from vecdb.storage.backends import open_backends

DIM = 8
MAX_TS = (1 << 63) - 1


class Reader:
    """A following QueryNode on its own connections to the writer's backends."""

    def __init__(self, storage: dict, data_dir: str, collection: str):
        self.backends = open_backends(StorageSettings(**storage, data_dir=data_dir))
        self.info = Catalog(self.backends.meta).get("default", collection)
        self.qn = QueryNode(self.backends.log, self.backends.meta, self.backends.objects, tail=True)
        self.qn.load(self.info)

    def log_end(self) -> dict:
        return {ch: self.backends.log.last_position(ch) for ch in self.info.channels}

    def close(self):
        self.qn.close()
        self.backends.close()


@pytest.fixture
def setup(tmp_path, remote_storage):
    """(pymilvus client of the writing server, a function that opens a Reader on its backends)."""
    storage = remote_storage()
    node = start_standalone(tmp_path / "writer", free_port(), storage)
    client = MilvusClient(uri=f"http://127.0.0.1:{node.port}")
    with contextlib.ExitStack() as cleanup:
        def reader(collection: str) -> Reader:
            r = Reader(storage, str(tmp_path / "reader"), collection)
            cleanup.callback(r.close)
            return r

        yield client, reader
    client.close()
    node.stop()


def test_a_following_query_node_sees_sealed_data_and_every_later_write(setup):
    c, reader = setup
    c.create_collection("docs", dimension=DIM, metric_type="L2")
    vecs = float_vectors(300, DIM, seed=1)
    c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(100)])
    c.flush("docs")  # sealed, in S3
    c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(100, 150)])  # growing, in the log
    r = reader("docs")
    info, qn = r.info, r.qn
    assert qn.count(info, MAX_TS, None, None) == 150

    c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(150, 300)])
    c.delete("docs", ids=list(range(0, 20)))
    qn.wait_applied(r.log_end(), timeout=10)
    assert qn.count(info, MAX_TS, None, None) == 280

    spec = SearchSpec(field=info.schema.field("vector"), queries=vecs[[250, 5, 30]], limit=1, offset=0, metric="L2",
                      params={}, ts=MAX_TS)
    hits = qn.search(info, spec, None, [])
    assert hits.topks == [1, 1, 1]
    assert hits.pks[0] == 250 and hits.pks[2] == 30 and hits.pks[1] != 5  # 5 was deleted

    with pytest.raises(ServiceUnavailable):  # a position the log never reaches
        qn.wait_applied({info.channels[0]: 10**9}, timeout=0.3)
    qn.release(info.id)
    with pytest.raises(CollectionNotLoaded):
        qn.wait_applied({info.channels[0]: 1}, timeout=0.1)


def test_the_query_node_service_answers_like_the_node_itself(setup):
    """Search, query and count through RemoteQueryNode (internal RPC) equal the in-process
    node's answers, filters and output columns included, and a read that names log positions
    waits for them."""
    c, reader = setup
    c.create_collection("docs", dimension=DIM, metric_type="L2")  # dynamic fields: "tag", "n" go to $meta
    vecs = float_vectors(200, DIM, seed=2)
    c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"t{i % 3}", "n": i} for i in range(120)])
    c.flush("docs")
    r = reader("docs")
    info, qn = r.info, r.qn
    server, port = serve_querynode(qn)
    remote = RemoteQueryNode(f"127.0.0.1:{port}")
    try:
        c.insert("docs", [{"id": i, "vector": vecs[i], "tag": f"t{i % 3}", "n": i} for i in range(120, 200)])
        flt = compile_filter('tag == "t1" and n > {lo}', info.schema, {"lo": 50})
        assert remote.count(info, MAX_TS, None, None, wait=r.log_end()) == 200  # waited for the last insert
        assert remote.count(info, MAX_TS, flt, None) == qn.count(info, MAX_TS, flt, None) == len(
            [i for i in range(200) if i % 3 == 1 and i > 50])

        meta_field = info.schema.dynamic_field.name
        spec = SearchSpec(field=info.schema.field("vector"), queries=vecs[[7, 190]], limit=5, offset=1,
                          metric="L2", params={}, flt=flt, ts=MAX_TS)
        got, want = remote.search(info, spec, None, ["id", meta_field]), qn.search(info, spec, None, ["id", meta_field])
        assert got.topks == want.topks == [5, 5]
        assert got.pks.tolist() == want.pks.tolist() and got.scores.tolist() == want.scores.tolist()
        assert list(got.columns[meta_field]) == list(want.columns[meta_field])
        assert all(m["tag"] == "t1" and m["n"] > 50 for m in got.columns[meta_field])

        rows = remote.query(info, MAX_TS, flt, None, ["id", meta_field], limit=4, offset=2)
        assert rows["id"].tolist() == qn.query(info, MAX_TS, flt, None, ["id"], 4, 2)["id"].tolist()
        assert len(rows[meta_field]) == 4

        with pytest.raises(CollectionNotLoaded):
            remote.count(info.__class__(**{**info.__dict__, "id": info.id + 1}), MAX_TS, None, None)
    finally:
        remote.close()
        server.stop(0)


def test_querynode_process_loads_follows_and_registers_its_session(tmp_path, remote_storage):
    import json
    import time

    shared = remote_storage()
    storage = dict(shared, session_ttl=2)  # the query node's session: runs out soon after its kill
    # (the writer keeps the default: a 2 s lease of the in-process server ran out under a loaded machine)
    writer = start_standalone(tmp_path / "writer", free_port(), shared)
    c = MilvusClient(uri=f"http://127.0.0.1:{writer.port}")
    port = free_port()
    qn_args = (storage, tmp_path / "qn", "querynode", "--port", str(port), "--node-id", "qn1")
    qn_ready = f"vecdb querynode qn1 ready on 127.0.0.1:{port}"
    proc = spawn_vecdb(*qn_args, ready=qn_ready)
    remote = RemoteQueryNode(f"127.0.0.1:{port}", timeout=20)
    try:
        c.create_collection("docs", dimension=DIM, metric_type="L2")
        vecs = float_vectors(100, DIM, seed=3)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(60)])
        c.flush("docs")
        info = writer.roles.catalog.get("default", "docs")
        remote.load(info)
        assert remote.is_loaded(info.id)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(60, 100)])
        end = {ch: writer.wal.last_position(ch) for ch in info.channels}
        assert remote.count(info, MAX_TS, None, None, wait=end) == 100
        session = json.loads(writer.meta.get("session/querynode/qn1"))
        assert session["address"] == f"127.0.0.1:{port}" and session["role"] == "querynode"

        proc.kill()  # a crash: its session runs out
        proc.wait(5)
        deadline = time.monotonic() + 10
        while writer.meta.get("session/querynode/qn1") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc = spawn_vecdb(*qn_args, ready=qn_ready)  # back: loads again from the backends
        remote.load(info)
        assert remote.count(info, MAX_TS, None, None, wait=end) == 100
        remote.release(info.id)
        assert not remote.is_loaded(info.id)
        assert proc.stop(30) == 0, proc.failure("a clean stop (SIGTERM)")  # a slow one prints its stacks
        assert writer.meta.get("session/querynode/qn1") is None  # a clean stop ends it at once
    finally:
        if proc.poll() is None:
            proc.kill()
        remote.close()
        c.close()
        writer.stop()

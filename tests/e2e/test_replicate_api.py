"""Milvus 2.6's replication API (update_replicate_configuration, get_replicate_configuration,
get_replicate_info) between two vecdb standalones on the embedded backends, through pymilvus: A
(cluster-a) replicates into B (cluster-b, with authentication: the replicator uses B's configured
token); rows written on A before and after the configuration appear on B; B refuses writes and DDL
from ordinary clients and serves reads; force_promote makes B a primary again; a configuration
without the edge stops the replication."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from tests.conftest import server_settings, wait_until
from vecdb import timestamp
from vecdb.cdc.follower import HOLD_ALL, cdc_positions_key
from vecdb.cdc.replicate_manager import task_id
from vecdb.cdc.verify import verify

DIM = 8
TOKEN_B = "root:Milvus"


def _start(data_dir, cluster_id: str, auth: bool = False):
    from vecdb.standalone import Standalone

    settings = server_settings(data_dir)
    settings.replication.cluster_id = cluster_id
    settings.security.authorization_enabled = auth
    return Standalone(settings).start()


def _rows(ids, seed=0) -> list[dict]:
    vecs = np.random.default_rng(seed).random((len(ids), DIM), dtype=np.float32)
    return [{"id": int(i), "vector": vecs[k].tolist(), "tag": f"t{int(i) % 5}"} for k, i in enumerate(ids)]


def _config(uri_a: str, uri_b: str, edge: bool = True) -> dict:
    clusters = [{"cluster_id": "cluster-a", "connection_param": {"uri": uri_a, "token": ""},
                 "pchannels": ["cluster-a-dml_0", "cluster-a-dml_1"]},
                {"cluster_id": "cluster-b", "connection_param": {"uri": uri_b, "token": TOKEN_B},
                 "pchannels": ["cluster-b-dml_0", "cluster-b-dml_1"]}]
    return {"clusters": clusters,
            "cross_cluster_topology": [{"source_cluster_id": "cluster-a", "target_cluster_id": "cluster-b"}]
            if edge else []}


@pytest.fixture
def pair(tmp_path):
    a = _start(tmp_path / "a", "cluster-a")
    try:
        b = _start(tmp_path / "b", "cluster-b", auth=True)
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def _differences(uri_a: str, uri_b: str) -> dict:
    return {k: v for k, v in verify(uri_a, uri_b, None, "", TOKEN_B).items() if v}


def test_replicate_configuration_secondary_and_force_promote(pair):
    a, b = pair
    uri_a, uri_b = f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"
    ca, cb = MilvusClient(uri=uri_a), MilvusClient(uri=uri_b, token=TOKEN_B)
    # data written before replication is configured
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", datatype=5, is_primary=True)
    schema.add_field("vector", datatype=101, dim=DIM)
    schema.add_field("tag", datatype=21, max_length=16)
    ca.create_collection("docs", schema=schema, num_shards=2)
    ca.insert("docs", _rows(range(0, 300)))
    assert ca.get_replicate_configuration().clusters == []  # none yet: empty

    # the same configuration on every cluster (the target first, as Milvus's guide has it)
    cb.update_replicate_configuration(**_config(uri_a, uri_b))
    ca.update_replicate_configuration(**_config(uri_a, uri_b))
    ca.update_replicate_configuration(**_config(uri_a, uri_b))  # again: the same, accepted
    got = ca.get_replicate_configuration()
    assert [(c.cluster_id, c.connection_param.uri, list(c.pchannels), c.connection_param.token)
            for c in got.clusters] == [("cluster-a", uri_a, ["cluster-a-dml_0", "cluster-a-dml_1"], ""),
                                       ("cluster-b", uri_b, ["cluster-b-dml_0", "cluster-b-dml_1"], "")]
    assert [(t.source_cluster_id, t.target_cluster_id) for t in got.cross_cluster_topology] == \
        [("cluster-a", "cluster-b")]

    # DDL and DML on the source arrive on the target
    mark = timestamp.compose(timestamp.now_ms())  # the checkpoint passes it once these are on B
    ca.insert("docs", _rows(range(300, 500), seed=1))
    ca.upsert("docs", _rows(range(0, 50), seed=2))
    ca.delete("docs", ids=list(range(450, 500)))
    ip = ca.prepare_index_params()
    ip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
    ca.create_index("docs", ip)
    ca.load_collection("docs")
    ca.create_database("db2")
    seen: list = []

    def equal() -> bool:
        seen[:] = [_differences(uri_a, uri_b)]
        return not seen[0]

    try:
        wait_until(equal, 60, "B equal to A")
    except AssertionError as e:
        raise AssertionError(f"{e}: {seen}") from None
    assert cb.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 450  # reads on B work
    assert "db2" in cb.list_databases()

    # the secondary refuses writes and DDL from ordinary clients
    for call in (lambda: cb.insert("docs", _rows([1000])), lambda: cb.delete("docs", ids=[1]),
                 lambda: cb.create_collection("other", dimension=DIM), lambda: cb.drop_collection("docs"),
                 lambda: cb.release_collection("docs")):
        with pytest.raises(MilvusException) as e:
            call()
        assert e.value.code == 3000 and "secondary role" in e.value.message, e.value
    # its checkpoint of A's replication (asked of B: B asks A, its source; written there once a second)
    infos: list = []
    wait_until(lambda: infos.append(cb.get_replicate_info(source_cluster_id="cluster-a",
                                                          target_pchannel="cluster-a-dml_0"))
               or (infos[-1]["checkpoint"] or {}).get("time_tick", 0) >= mark, 10, "a checkpoint past the writes")
    info = infos[-1]
    cp = info["checkpoint"]
    assert cp["cluster_id"] == "cluster-a" and cp["pchannel"] == "cluster-a-dml_0" and cp["time_tick"] > 0, info
    assert info["salvage_checkpoint"] is None
    with pytest.raises(grpc.RpcError) as e:  # not a pchannel of cluster-a (the reply has no status: gRPC's)
        cb.get_replicate_info(source_cluster_id="cluster-a", target_pchannel="cluster-b-dml_0")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a pchannel" in e.value.details()
    with pytest.raises(MilvusException):  # a primary cannot be force promoted
        ca.update_replicate_configuration(clusters=[], force_promote=True)
    with pytest.raises(MilvusException) as e:  # force promote takes no configuration
        cb.update_replicate_configuration(**_config(uri_a, uri_b), force_promote=True)
    assert e.value.code == 1100

    # A stops replicating to B (a configuration without the edge); B is promoted
    ca.update_replicate_configuration(clusters=[_config(uri_a, uri_b)["clusters"][0]])
    wait_until(lambda: a.meta.get(cdc_positions_key(task_id("cluster-b"))) is None, 10,
               "the follower floor of the removed edge taken off A")
    cb.update_replicate_configuration(clusters=[], force_promote=True)
    got = cb.get_replicate_configuration()
    assert [c.cluster_id for c in got.clusters] == ["cluster-b"] and not got.cross_cluster_topology
    info = cb.get_replicate_info(source_cluster_id="cluster-a", target_pchannel="cluster-a-dml_0")
    assert info["checkpoint"] is None and info["salvage_checkpoint"]["cluster_id"] == "cluster-a", info
    cb.insert("docs", _rows([1000], seed=3))  # a primary again: writes accepted
    assert cb.query("docs", filter="id == 1000", output_fields=["id"], consistency_level="Strong") == [{"id": 1000}]
    ca.insert("docs", _rows([2000], seed=4))  # no longer replicated
    time.sleep(2)
    assert cb.query("docs", filter="id == 2000", output_fields=["id"], consistency_level="Strong") == []


def test_a_cluster_replicates_from_its_coord(tmp_path, remote_storage):
    """A cluster (NATS/etcd/S3; cluster id by-dev, the default) as the source: its coord runs the
    replication; a flush there (the data node truncates the log) keeps what the task still needs."""
    from tests.conftest import LocalCluster

    cluster = LocalCluster(tmp_path / "cluster", remote_storage(), querynodes=1, proxies=1)
    try:
        b = _start(tmp_path / "b", "cluster-b")
    except BaseException:
        cluster.stop(check=False)
        raise
    try:
        uri_a, uri_b = f"http://127.0.0.1:{cluster.port}", f"http://127.0.0.1:{b.port}"
        cfg = _config(uri_a, uri_b)
        cfg["clusters"][0].update(cluster_id="by-dev", pchannels=["by-dev-rootcoord-dml_0", "by-dev-rootcoord-dml_1"])
        cfg["clusters"][1]["connection_param"]["token"] = ""
        cfg["cross_cluster_topology"][0]["source_cluster_id"] = "by-dev"
        ca, cb = MilvusClient(uri=uri_a), MilvusClient(uri=uri_b)
        cb.update_replicate_configuration(**cfg)
        ca.update_replicate_configuration(**cfg)
        ca.create_collection("docs", dimension=DIM, primary_field_name="id", vector_field_name="vector",
                             auto_id=False)
        ca.insert("docs", _rows(range(0, 400)))
        ca.flush("docs")
        ca.insert("docs", _rows(range(400, 500), seed=1))
        seen: list = []

        def equal() -> bool:
            seen[:] = [{k: v for k, v in verify(uri_a, uri_b).items() if v}]
            return not seen[0]

        try:
            wait_until(equal, 90, "B equal to the cluster")
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        assert cb.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 500
        with pytest.raises(MilvusException, match="secondary role"):
            cb.insert("docs", _rows([9999]))
        infos: list = []
        wait_until(lambda: infos.append(cb.get_replicate_info(source_cluster_id="by-dev",
                                                              target_pchannel="by-dev-rootcoord-dml_1"))
                   or infos[-1]["checkpoint"] is not None, 10, "a checkpoint")
        cp = infos[-1]["checkpoint"]
        assert cp["cluster_id"] == "by-dev" and cp["pchannel"] == "by-dev-rootcoord-dml_1" and cp["time_tick"] > 0
    finally:
        b.stop()
        cluster.stop(check=False)


def test_rows_flushed_before_the_task_takes_their_collection_up_still_reach_the_target(tmp_path, remote_storage):
    """The source's log is held for what the task has not taken up yet: from the moment the edge is
    stored (its task's first pass fails here: the target is down) and, once it runs, for collections
    created since its last catalog pass (one that fails again: the target down once more). Rows
    inserted and flushed meanwhile (a flush cuts the log: JetStream's, exactly) reach the target when it
    is back."""
    from vecdb.standalone import Standalone

    settings_a = server_settings(tmp_path / "a", storage=remote_storage())
    settings_a.replication.cluster_id = "cluster-a"
    a = Standalone(settings_a).start()
    settings_b = server_settings(tmp_path / "b")
    settings_b.replication.cluster_id = "cluster-b"
    b = Standalone(settings_b).start()
    try:
        uri_a, uri_b = f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"
        cfg = _config(uri_a, uri_b)
        cfg["clusters"][1]["connection_param"]["token"] = ""
        ca = MilvusClient(uri=uri_a)
        ca.create_database("db2")  # (a pass asks the target for it first: it fails there while B is down)
        MilvusClient(uri=uri_b).update_replicate_configuration(**cfg)
        b.stop()
        ca.update_replicate_configuration(**cfg)
        assert a.meta.get(cdc_positions_key(task_id("cluster-b"))) == HOLD_ALL  # held whole from now on
        for name, ids, db in (("docs", range(0, 500), "db2"), ("more", range(0, 300), "db3")):
            if db == "db3":  # the task runs now (it published its positions); B down again, a database to make
                b.stop()
                ca.create_database(db)
            ca.create_collection(name, dimension=DIM, primary_field_name="id", vector_field_name="vector",
                                 auto_id=False)
            ca.insert(name, _rows(ids[:-100]))
            ca.flush(name)  # the log cut as far as the hold lets it
            ca.insert(name, _rows(ids[-100:], seed=1))
            b = Standalone(settings_b).start()
            wait_until(lambda: not {k: v for k, v in verify(uri_a, uri_b).items() if v}, 60,
                       f"B equal to A after {name}")
            assert MilvusClient(uri=uri_b).query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == \
                len(ids)
    finally:
        a.stop()
        b.stop()


def test_the_replication_resumes_after_the_source_restarts(tmp_path):
    """The task's positions and follower floor live in the source's store: a flush there keeps what B
    still needs, and a restarted source goes on from where it was (nothing lost, nothing doubled)."""
    a, b = _start(tmp_path / "a", "cluster-a"), _start(tmp_path / "b", "cluster-b")
    try:
        uri_a, uri_b = f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"
        cfg = _config(uri_a, uri_b)
        cfg["clusters"][1]["connection_param"]["token"] = ""
        MilvusClient(uri=uri_b).update_replicate_configuration(**cfg)
        ca = MilvusClient(uri=uri_a)
        ca.update_replicate_configuration(**cfg)
        ca.create_collection("docs", dimension=DIM, primary_field_name="id", vector_field_name="vector",
                             auto_id=False)
        ca.insert("docs", _rows(range(0, 300)))
        ca.flush("docs")
        wait_until(lambda: not {k: v for k, v in verify(uri_a, uri_b).items() if v}, 30, "B equal to A")
        ca.close()
        a.stop()
        a = _start(tmp_path / "a", "cluster-a")
        uri_a = f"http://127.0.0.1:{a.port}"
        ca = MilvusClient(uri=uri_a)
        ca.insert("docs", _rows(range(300, 600), seed=3))
        ca.delete("docs", ids=[1, 2, 3])
        wait_until(lambda: not {k: v for k, v in verify(uri_a, uri_b).items() if v}, 30,
                   "B equal to A after its restart")
        assert MilvusClient(uri=uri_b).query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 597
    finally:
        a.stop()
        b.stop()

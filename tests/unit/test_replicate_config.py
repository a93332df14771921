"""Milvus 2.6's replication configuration (vecdb.cdc.replicate_config): each of Milvus's refusals
with its reason (code 1100), roles from the topology, what get_replicate_configuration shows (no
tokens), force promote, and the secondary's gate (ordinary calls refused, the source's replicator
with the configured token let through)."""

from __future__ import annotations

import pytest
from pymilvus.grpc_gen import common_pb2

from vecdb import errors
from vecdb.cdc import replicate_config as rc
from vecdb.cdc.follower import HOLD_ALL, cdc_positions_key
from vecdb.cdc.replicate_manager import ReplicationManager
from vecdb.storage.memory import MemoryLog, MemoryMetaStore


def _c(cid: str, n: int = 2, uri: str | None = None, token: str = "") -> rc.Cluster:
    return rc.Cluster(cid, f"http://{cid}:19530" if uri is None else uri, token, [f"{cid}-dml_{i}" for i in range(n)])


def _cfg(clusters, topology=(), current="a") -> rc.ReplicateConfig:
    return rc.ReplicateConfig(current, list(clusters), list(topology))


STAR = [("a", "b"), ("a", "c")]


def test_valid_configurations_and_roles():
    cfg = _cfg([_c("a"), _c("b"), _c("c")], STAR)
    rc.validate(cfg)
    assert cfg.role("a") == rc.PRIMARY and cfg.role("b") == rc.SECONDARY and cfg.role("c") == rc.SECONDARY
    assert cfg.source_of("b").cluster_id == "a" and cfg.source_of("a") is None  # type: ignore[union-attr]
    assert [t.cluster_id for t in cfg.targets_of("a")] == ["b", "c"] and cfg.targets_of("b") == []
    rc.validate(_cfg([_c("a")]))  # a lone primary, no edge
    rc.validate(_cfg([_c("a"), _c("b")], [("b", "a")]))  # this cluster a secondary
    assert rc.ReplicateConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("cfg, reason", [
    (_cfg([]), "clusters list cannot be empty"),
    (_cfg([_c("a"), rc.Cluster("", "http://x", "", ["x"])]), "cluster at index 1 has empty clusterID"),
    (_cfg([_c("a"), rc.Cluster("b c", "http://x", "", ["x"])]),
     "cluster at index 1 has clusterID 'b c' containing whitespace characters"),
    (_cfg([_c("a"), _c("b", uri="")], [("a", "b")]), "cluster 'b' has empty URI"),
    (_cfg([_c("a"), _c("b", uri="not a uri")], [("a", "b")]), "cluster 'b' has invalid URI format: 'not a uri'"),
    (_cfg([_c("a", uri="http://same"), _c("b", uri="http://same")], [("a", "b")]),
     "duplicate URI found: 'http://same' is used by both cluster 'a' and cluster 'b'"),
    (_cfg([_c("a"), _c("b", 0)], [("a", "b")]), "cluster 'b' has empty pchannels"),
    (_cfg([_c("a"), rc.Cluster("b", "http://b", "", ["b-0", ""])], [("a", "b")]),
     "cluster 'b' has empty pchannel at index 1"),
    (_cfg([_c("a"), rc.Cluster("b", "http://b", "", ["b-0", "b-0"])], [("a", "b")]),
     "cluster 'b' has duplicate pchannel: 'b-0'"),
    (_cfg([_c("a"), _c("b", 3)], [("a", "b")]), "cluster 'b' has 3 pchannels, but expected 2 (same as cluster 'a')"),
    (_cfg([_c("a"), _c("a", uri="http://other")], [("a", "b")]), "duplicate clusterID found: 'a'"),
    (_cfg([_c("b"), _c("c")], [("b", "c")]), "current Milvus cluster 'a' must be included in the clusters list"),
    (_cfg([_c("a"), _c("b")], [("x", "b")]), "topology at index 0 references non-existent source cluster: 'x'"),
    (_cfg([_c("a"), _c("b")], [("a", "y")]), "topology at index 0 references non-existent target cluster: 'y'"),
    (_cfg([_c("a"), _c("b")], [("a", "b"), ("a", "b")]), "duplicate topology relationship found: 'a->b'"),
    (_cfg([_c("a"), _c("b"), _c("c")], [("a", "b"), ("b", "c")]),
     "no center node found, star topology must have exactly one center node"),
    (_cfg([_c("a"), _c("b")], [("a", "b"), ("b", "a")]),
     "no center node found, star topology must have exactly one center node"),
    (_cfg([_c("a"), _c("b"), _c("c")], [("a", "b"), ("a", "c"), ("c", "b")]),
     "cluster 'b' does not follow star topology pattern (in-degree=2, out-degree=0)"),
    (_cfg([_c("a"), _c("b")]), "primary count is not 1"),
])
def test_refusals(cfg, reason):
    with pytest.raises(errors.InvalidParameter) as e:
        rc.validate(cfg)
    assert e.value.code == 1100 and reason in e.value.message, e.value.message


def test_a_star_with_a_cluster_off_it_is_refused():
    # d has no edge: a's out-degree is 2 of 3 others, so no center; with a->d too it is a star
    with pytest.raises(errors.InvalidParameter, match="no center node found"):
        rc.validate(_cfg([_c("a"), _c("b"), _c("c"), _c("d")], STAR))
    rc.validate(_cfg([_c("a"), _c("b"), _c("c"), _c("d")], [*STAR, ("a", "d")]))


def _decrease(cfg) -> None:
    for c in cfg.clusters:
        c.pchannels = c.pchannels[:1]


@pytest.mark.parametrize("change, reason", [
    (lambda cfg: setattr(cfg.clusters[1], "uri", "http://moved:19530"),
     "cluster 'b' connection_param.uri cannot be changed"),
    (lambda cfg: setattr(cfg.clusters[1], "token", "root:other"),
     "cluster 'b' connection_param.token cannot be changed"),
    (_decrease, "cluster 'a' pchannels cannot decrease: current=2, incoming=1"),
    (lambda cfg: setattr(cfg.clusters[1], "pchannels", ["b-dml_1", "b-dml_0"]),
     "cluster 'b' existing pchannels must be preserved at the same positions"),
])
def test_an_existing_cluster_keeps_its_attributes(change, reason):
    previous = _cfg([_c("a"), _c("b")], [("a", "b")])
    incoming = _cfg([_c("a"), _c("b")], [("a", "b")])
    rc.validate(incoming, previous)  # unchanged
    change(incoming)
    with pytest.raises(errors.InvalidParameter) as e:
        rc.validate(incoming, previous)
    assert reason in e.value.message
    # a new cluster, or pchannels appended, are accepted
    grown = _cfg([_c("a", 3), _c("b", 3), _c("c", 3)], STAR)
    rc.validate(grown, _cfg([_c("a"), _c("b")], [("a", "b")]))


def test_proto_round_trip_redacts_tokens():
    pb = common_pb2.ReplicateConfiguration(
        clusters=[common_pb2.MilvusCluster(cluster_id="a", connection_param=common_pb2.ConnectionParam(
            uri="http://a:19530", token="root:Milvus"), pchannels=["a-0"])],
        cross_cluster_topology=[])
    cfg = rc.from_proto(pb, "a")
    assert cfg.clusters == [rc.Cluster("a", "http://a:19530", "root:Milvus", ["a-0"])]
    out = rc.to_proto(cfg)
    assert out.clusters[0].connection_param.token == "" and out.clusters[0].connection_param.uri == "http://a:19530"
    assert rc.to_proto(None) == common_pb2.ReplicateConfiguration()


def test_force_promoted_keeps_the_current_cluster_alone():
    cfg = _cfg([_c("a"), _c("b")], [("a", "b")], current="b")
    promoted = rc.force_promoted(cfg, {"cluster_id": "a", "time_tick": 5})
    assert promoted.clusters == [_c("b")] and promoted.topology == [] and promoted.force_promoted
    assert promoted.role() == rc.PRIMARY and promoted.salvage == {"cluster_id": "a", "time_tick": 5}
    rc.validate(promoted)


class Context:
    def __init__(self, **md):
        self.md = list(md.items())

    def invocation_metadata(self):
        return self.md


def test_the_secondary_gate():
    meta = MemoryMetaStore()
    gate = rc.ReplicationGate(meta, "b")
    gate.admit("Insert", Context())  # no configuration: a primary
    rc.save(meta, _cfg([_c("a"), _c("b", token="root:Milvus")], [("a", "b")], current="b"))
    gate.changed(rc.load(meta))
    with pytest.raises(rc.SecondaryRefusal) as e:
        gate.admit("Insert", Context())
    assert e.value.code == 3000 and "non-replicate message cannot be received in secondary role" in e.value.message
    good = rc.token_header("root:Milvus")
    gate.admit("Insert", Context(**{rc.HEADER: "a", "authorization": good}))  # the source's replicator
    for md in ({rc.HEADER: "a"}, {rc.HEADER: "a", "authorization": rc.token_header("root:other")},
               {rc.HEADER: "c", "authorization": good}):
        with pytest.raises(rc.SecondaryRefusal):
            gate.admit("CreateCollection", Context(**md))
    with pytest.raises(rc.SecondaryRefusal):  # a REST call's context, without metadata: an ordinary client
        gate.admit("Insert", object())
    rc.ReplicationGate(meta, "a").admit("Insert", Context())  # another deployment's id: not this config's
    # promoted: writes accepted, and the old source's replicator refused (Milvus's primary role)
    gate.changed(rc.force_promoted(rc.load(meta), None))  # type: ignore[arg-type]
    gate.admit("Insert", Context())
    with pytest.raises(rc.SecondaryRefusal, match="replicate message cannot be received in primary role"):
        gate.admit("Insert", Context(**{rc.HEADER: "a", "authorization": good}))
    with pytest.raises(rc.SecondaryRefusal, match="primary role"):  # no configuration at all: the same
        rc.ReplicationGate(MemoryMetaStore(), "b").admit("Delete", Context(**{rc.HEADER: "a"}))


def test_the_cluster_id_flag_sets_the_setting(monkeypatch):
    """``vecdb standalone|proxy|node --cluster-id ID`` (the setting replication.cluster_id otherwise)."""
    import argparse

    from vecdb import cli

    monkeypatch.delenv("VECDB_REPLICATION__CLUSTER_ID", raising=False)
    base = dict(config=None, command="standalone", log_level=None, data_dir=None, host=None, port=None)
    assert cli._settings(argparse.Namespace(**base)).replication.cluster_id == "by-dev"
    assert cli._settings(argparse.Namespace(**base, cluster_id="dc2")).replication.cluster_id == "dc2"


def test_an_edge_holds_the_log_from_the_moment_it_is_stored():
    """The configuration is stored with a hold on the whole log for each edge from this cluster whose
    task has published nothing (a flush before the task starts cuts nothing it needs); a task's own
    positions are never replaced by it; an edge taken away before its task started leaves no hold."""
    meta = MemoryMetaStore()
    key_b, key_c = cdc_positions_key(rc.task_id("b")), cdc_positions_key(rc.task_id("c"))
    meta.put(key_c, b'{"c5-s0": 3}')  # c's task has published its positions already
    rc.save(meta, _cfg([_c("a"), _c("b"), _c("c")], STAR))
    assert rc.load(meta) is not None and meta.get(key_b) == HOLD_ALL and meta.get(key_c) == b'{"c5-s0": 3}'
    rc.save(meta, _cfg([_c("a"), _c("b"), _c("c")]))  # the edges gone before their tasks ran
    ReplicationManager(meta, MemoryLog()).sync()
    assert meta.get(key_b) is None and meta.get(key_c) == b'{"c5-s0": 3}'  # (a task's positions: its own)

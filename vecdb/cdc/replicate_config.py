"""Milvus 2.6's cross-cluster replication configuration (``update_replicate_configuration``), kept
in the deployment's metadata store so that every proxy of a cluster sees the same one, and the gate
that makes a secondary refuse ordinary writes and DDL (docs/cdc.md, "Milvus 2.6 replication API").

The configuration is Milvus's ``ReplicateConfiguration``: clusters (``cluster_id``, ``uri``,
``token``, ``pchannels``) and a topology of ``source -> target`` edges. It is validated with
Milvus's rules (``validate``, the messages of Milvus's ``replicateutil`` validator): cluster ids
non-empty without whitespace and unique, a parseable ``uri`` per cluster and no uri twice,
pchannels non-empty, unique within a cluster and as many in every cluster, the current cluster
(this deployment's ``replication.cluster_id``) among the clusters, edges between known clusters
and each once, a star (one center with an edge to every other cluster, each other cluster the
target of that one edge only) or no edge at all with one cluster, and, against the configuration
kept before, a cluster's uri and token unchanged and its pchannels kept (more may be appended).

Roles follow from the topology: a cluster that is the target of an edge is a **secondary** of its
source; any other one is a **primary**. A secondary refuses the calls in ``GUARDED`` (DML, bulk
import, DDL) from ordinary clients (``admit``); the calls of its source's replicator carry the
``HEADER`` metadata naming that source (and authenticate with the token configured for the
secondary), and are let through.

Layout (the deployment's store)::

    replication/config          {"current", "clusters": [...], "topology": [[src, dst]...], "force_promoted",
                                 "salvage": checkpoint or null}
    replication/checkpoint/<source cluster id>   the last checkpoint a secondary heard of (get_replicate_info)
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from vecdb import errors
from vecdb.cdc.follower import HOLD_ALL, cdc_positions_key
from vecdb.storage.base import MetaStore

CONFIG_KEY = "replication/config"
TASK_PREFIX = "replicate-"  # the CDC task of an edge from this cluster: replicate-<target cluster id>


def task_id(target: str) -> str:
    return TASK_PREFIX + target
CHECKPOINT_PREFIX = "replication/checkpoint/"
HEADER = "vecdb-replicate-source"  # gRPC metadata of a replicator's calls: the source cluster's id
TARGET_HEADER = "vecdb-replicate-target"  # a secondary asking its source for its checkpoint: its own id
DEFAULT_CLUSTER_ID = "by-dev"  # Milvus's default cluster prefix (common.clusterPrefix)
REFRESH_SECONDS = 1.0  # how stale a proxy's view of the configuration may be (another proxy changed it)

PRIMARY, SECONDARY = "primary", "secondary"

# the calls a secondary refuses from ordinary clients: what changes data or the catalog (Milvus's
# secondary refuses every WAL message that does not come from its source). Reads, flushes,
# compactions, users and roles, and resource groups (local to a cluster in Milvus too) stay open.
GUARDED = frozenset((
    "Insert", "Upsert", "Delete", "Import",
    "CreateCollection", "DropCollection", "AlterCollection", "AlterCollectionField", "AlterCollectionSchema",
    "AddCollectionField", "AddCollectionStructField", "RenameCollection", "TruncateCollection",
    "AddCollectionFunction", "AlterCollectionFunction", "DropCollectionFunction",
    "LoadCollection", "ReleaseCollection", "LoadPartitions", "ReleasePartitions",
    "CreatePartition", "DropPartition", "CreateNamespace", "DropNamespace",
    "CreateIndex", "DropIndex", "AlterIndex",
    "CreateAlias", "DropAlias", "AlterAlias",
    "CreateDatabase", "DropDatabase", "AlterDatabase",
    "RestoreSnapshot", "RefreshExternalCollection",
))


class SecondaryRefusal(errors.OperationNotSupported):
    """A write or DDL on a secondary cluster (Milvus: "non-replicate message cannot be received in
    secondary role")."""


@dataclass
class Cluster:
    cluster_id: str
    uri: str
    token: str = ""
    pchannels: list[str] = field(default_factory=list)


@dataclass
class ReplicateConfig:
    """A validated configuration, as this deployment (``current``) keeps it."""

    current: str
    clusters: list[Cluster]
    topology: list[tuple[str, str]] = field(default_factory=list)
    force_promoted: bool = False
    salvage: dict[str, Any] | None = None  # the checkpoint a force_promote left behind (get_replicate_info)

    def cluster(self, cluster_id: str) -> Cluster | None:
        return next((c for c in self.clusters if c.cluster_id == cluster_id), None)

    def source_of(self, cluster_id: str) -> Cluster | None:
        src = next((s for s, t in self.topology if t == cluster_id), None)
        return None if src is None else self.cluster(src)

    def targets_of(self, cluster_id: str) -> list[Cluster]:
        return [c for s, t in self.topology if s == cluster_id for c in [self.cluster(t)] if c is not None]

    def role(self, cluster_id: str | None = None) -> str:
        return SECONDARY if self.source_of(cluster_id or self.current) is not None else PRIMARY

    def same(self, other: ReplicateConfig | None) -> bool:
        """The same clusters and edges (what Milvus compares to answer an update that changes nothing)."""
        return other is not None and self.clusters == other.clusters and \
            sorted(self.topology) == sorted(other.topology)

    def to_json(self) -> bytes:
        d = asdict(self)
        d["topology"] = [list(e) for e in self.topology]
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ReplicateConfig:
        d = json.loads(raw)
        return cls(current=d["current"], clusters=[Cluster(**c) for c in d["clusters"]],
                   topology=[(s, t) for s, t in d.get("topology", [])], force_promoted=d.get("force_promoted", False),
                   salvage=d.get("salvage"))


# --- protobuf -------------------------------------------------------------------------------------

def from_proto(pb, current: str) -> ReplicateConfig:
    """A ``common.ReplicateConfiguration`` as a (not yet validated) configuration of ``current``."""
    return ReplicateConfig(
        current=current,
        clusters=[Cluster(c.cluster_id, c.connection_param.uri, c.connection_param.token, list(c.pchannels))
                  for c in pb.clusters],
        topology=[(t.source_cluster_id, t.target_cluster_id) for t in pb.cross_cluster_topology])


def to_proto(cfg: ReplicateConfig | None):
    """The configuration as ``get_replicate_configuration`` answers it: tokens left out (Milvus
    redacts them); an empty one when none is set."""
    from pymilvus.grpc_gen import common_pb2

    out = common_pb2.ReplicateConfiguration()
    if cfg is None:
        return out
    for c in cfg.clusters:
        out.clusters.append(common_pb2.MilvusCluster(
            cluster_id=c.cluster_id, connection_param=common_pb2.ConnectionParam(uri=c.uri),
            pchannels=c.pchannels))
    for s, t in cfg.topology:
        out.cross_cluster_topology.append(common_pb2.CrossClusterTopology(source_cluster_id=s, target_cluster_id=t))
    return out


# --- validation (Milvus's replicateutil rules and messages) ---------------------------------------

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _uri_ok(uri: str) -> bool:
    """Go's ``url.ParseRequestURI``: an absolute URI (a scheme) or an absolute path."""
    if uri.startswith("/"):
        return " " not in uri
    if not _URI.match(uri) or any(ch in uri for ch in " \t\n\r"):
        return False
    try:
        urlparse(uri)
    except ValueError:
        return False
    return True


def _bad(message: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f"invalid replicate configuration: {message}")


def validate(cfg: ReplicateConfig, previous: ReplicateConfig | None = None) -> None:
    """Raise ``InvalidParameter`` (1100) with Milvus's reason when ``cfg`` may not replace ``previous``."""
    if not cfg.clusters:
        raise _bad("clusters list cannot be empty")
    ids: dict[str, Cluster] = {}
    uris: dict[str, str] = {}
    expected, first = 0, ""
    for i, c in enumerate(cfg.clusters):
        cid = c.cluster_id
        if not cid:
            raise _bad(f"cluster at index {i} has empty clusterID")
        if any(ch in cid for ch in " \t\n\r"):
            raise _bad(f"cluster at index {i} has clusterID '{cid}' containing whitespace characters")
        if not c.uri:
            raise _bad(f"cluster '{cid}' has empty URI")
        if not _uri_ok(c.uri):
            raise _bad(f"cluster '{cid}' has invalid URI format: '{c.uri}'")
        if c.uri in uris:
            raise _bad(f"duplicate URI found: '{c.uri}' is used by both cluster '{uris[c.uri]}' and cluster '{cid}'")
        uris[c.uri] = cid
        if not c.pchannels:
            raise _bad(f"cluster '{cid}' has empty pchannels")
        seen: set[str] = set()
        for j, p in enumerate(c.pchannels):
            if not p:
                raise _bad(f"cluster '{cid}' has empty pchannel at index {j}")
            if p in seen:
                raise _bad(f"cluster '{cid}' has duplicate pchannel: '{p}'")
            seen.add(p)
        if i == 0:
            expected, first = len(c.pchannels), cid
        elif len(c.pchannels) != expected:
            raise _bad(f"cluster '{cid}' has {len(c.pchannels)} pchannels, but expected {expected} "
                       f"(same as cluster '{first}')")
        if cid in ids:
            raise _bad(f"duplicate clusterID found: '{cid}'")
        ids[cid] = c
    if cfg.current not in ids:
        raise _bad(f"current Milvus cluster '{cfg.current}' must be included in the clusters list")
    edges: set[tuple[str, str]] = set()
    for i, (s, t) in enumerate(cfg.topology):
        if s not in ids:
            raise _bad(f"topology at index {i} references non-existent source cluster: '{s}'")
        if t not in ids:
            raise _bad(f"topology at index {i} references non-existent target cluster: '{t}'")
        if (s, t) in edges:
            raise _bad(f"duplicate topology relationship found: '{s}->{t}'")
        edges.add((s, t))
    if cfg.topology:
        _check_star(cfg, ids)
    elif len(ids) != 1:  # Milvus's config helper: exactly one primary
        raise _bad("wrong replicate configuration: primary count is not 1")
    if previous is not None:
        _check_unchanged(cfg, previous)


def _check_star(cfg: ReplicateConfig, ids: dict[str, Cluster]) -> None:
    indeg = dict.fromkeys(ids, 0)
    outdeg = dict.fromkeys(ids, 0)
    for s, t in cfg.topology:
        outdeg[s] += 1
        indeg[t] += 1
    centers = [c for c in ids if outdeg[c] == len(ids) - 1 and indeg[c] == 0]
    if len(centers) > 1:
        raise _bad("multiple center nodes found, only one center node is allowed in star topology")
    if not centers:
        raise _bad("no center node found, star topology must have exactly one center node")
    for c in ids:
        if c != centers[0] and (indeg[c] != 1 or outdeg[c] != 0):
            raise _bad(f"cluster '{c}' does not follow star topology pattern (in-degree={indeg[c]}, "
                       f"out-degree={outdeg[c]})")


def _check_unchanged(cfg: ReplicateConfig, previous: ReplicateConfig) -> None:
    for c in cfg.clusters:
        old = previous.cluster(c.cluster_id)
        if old is None:
            continue
        if len(c.pchannels) < len(old.pchannels):
            raise _bad(f"cluster '{c.cluster_id}' pchannels cannot decrease: current={len(old.pchannels)}, "
                       f"incoming={len(c.pchannels)}")
        if c.pchannels[:len(old.pchannels)] != old.pchannels:
            raise _bad(f"cluster '{c.cluster_id}' existing pchannels must be preserved at the same positions: "
                       f"current={old.pchannels}, incoming={c.pchannels}")
        if c.uri != old.uri:
            raise _bad(f"cluster '{c.cluster_id}' connection_param.uri cannot be changed: current={old.uri}, "
                       f"incoming={c.uri}")
        if c.token != old.token:
            raise _bad(f"cluster '{c.cluster_id}' connection_param.token cannot be changed")


# --- the store ------------------------------------------------------------------------------------

def load(meta: MetaStore) -> ReplicateConfig | None:
    raw = meta.get(CONFIG_KEY)
    return None if raw is None else ReplicateConfig.from_json(raw)


def save(meta: MetaStore, cfg: ReplicateConfig) -> None:
    """The configuration stored, in one step with a hold on the whole log (``vecdb.cdc.follower``,
    ``HOLD_ALL``) for each edge from this cluster whose task has published no positions yet: what is
    written from now on reaches the target however late its task starts (a flush in between cuts
    nothing it needs)."""
    while True:
        keys = [cdc_positions_key(task_id(t.cluster_id)) for t in cfg.targets_of(cfg.current)]
        absent = [k for k in keys if meta.get(k) is None]
        if meta.txn(puts={CONFIG_KEY: cfg.to_json(), **dict.fromkeys(absent, HOLD_ALL)},
                    expect=dict.fromkeys(absent)):
            return


def force_promoted(previous: ReplicateConfig, salvage: dict[str, Any] | None) -> ReplicateConfig:
    """Milvus's force promote: the current cluster alone, no edge, its pchannels kept."""
    me = previous.cluster(previous.current)
    assert me is not None
    return ReplicateConfig(current=previous.current, clusters=[me], topology=[], force_promoted=True,
                           salvage=salvage)


# --- the secondary's gate -------------------------------------------------------------------------

def _metadata(context) -> dict[str, str]:
    md = getattr(context, "invocation_metadata", None)
    if md is None:
        return {}
    try:
        return {k: v if isinstance(v, str) else v.decode(errors="replace") for k, v in md()}
    except Exception:  # noqa: BLE001 (a REST call's stand-in context: no metadata)
        return {}


def token_header(token: str) -> str:
    """What pymilvus sends as ``authorization`` for ``token``."""
    return base64.b64encode(token.encode()).decode()


class ReplicationGate:
    """This proxy's view of the configuration (read again at most every ``REFRESH_SECONDS``, at once
    after a change made here) and the secondary's refusal."""

    def __init__(self, meta: MetaStore | None, cluster_id: str):
        self.meta, self.cluster_id = meta, cluster_id
        self._lock = threading.Lock()
        self._cfg: ReplicateConfig | None = None
        self._read_at = -1e18

    def config(self) -> ReplicateConfig | None:
        if self.meta is None:
            return None
        now = time.monotonic()
        if now - self._read_at >= REFRESH_SECONDS:
            with self._lock:
                if now - self._read_at >= REFRESH_SECONDS:
                    self._cfg = load(self.meta)
                    self._read_at = now
        return self._cfg

    def changed(self, cfg: ReplicateConfig | None) -> None:
        with self._lock:
            self._cfg, self._read_at = cfg, time.monotonic()

    def admit(self, method: str, context) -> None:
        cfg = self.config()
        if cfg is not None and cfg.current != self.cluster_id:
            cfg = None  # kept under another cluster id setting: not this deployment's
        source = None if cfg is None else cfg.source_of(cfg.current)
        md = _metadata(context)
        sender = md.get(HEADER)
        if source is None:
            if sender is not None:  # another cluster's replicator: this one is nobody's secondary (any more)
                raise SecondaryRefusal(
                    f"replicate message cannot be received in primary role: cluster '{self.cluster_id}' is not a "
                    f"secondary of '{sender}' in the replicate configuration")
            return
        assert cfg is not None
        if sender == source.cluster_id:
            me = cfg.cluster(cfg.current)
            if me is None or not me.token or md.get("authorization") == token_header(me.token):
                return
        raise SecondaryRefusal(
            f"non-replicate message cannot be received in secondary role: cluster '{cfg.current}' is a secondary "
            f"of '{source.cluster_id}' in the replicate configuration, {method} is refused (write to the primary, "
            "or force_promote this cluster)")


NO_GATE = ReplicationGate(None, DEFAULT_CLUSTER_ID)


def gate_of(service) -> ReplicationGate:
    """``service``'s (a proxy servicer's) gate, made on first use over its metadata store."""
    gate = service.r.replication
    if gate is None:
        try:
            meta = service.stores()[0]
        except AttributeError:  # a test's stand-in data node without stores: nothing to refuse
            meta = None
        gate = service.r.replication = ReplicationGate(meta, service.r.cluster_id) if meta is not None else NO_GATE
    return gate


def admit(service, method: str, context) -> None:
    """The secondary's refusal of ``method`` (one of ``GUARDED``) through ``service``'s gate."""
    gate_of(service).admit(method, context)

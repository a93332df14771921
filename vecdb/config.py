"""Settings: one pydantic model per role, read from a YAML file, then environment variables.

Environment variables are ``VECDB_<SECTION>__<KEY>``, e.g. ``VECDB_PROXY__PORT=19531``.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError

log = logging.getLogger(__name__)


class SettingError(ValueError):
    """A setting that cannot be used (a missing file, say); ``vecdb`` prints its message and exits 2."""


class ProxySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(19530, ge=0, le=65535)  # (gRPC would take 99999 as 99999 % 65536 and listen there)
    workers: int = Field(0, description="gRPC handler threads; 0 = twice the CPU cores, at least 4 (more "
                         "Python threads than that only add GIL contention: measured ~9% more CPU per nq=1 "
                         "search with 8 than with 4 on 2 cores)")
    processes: int = Field(1, ge=1, description="worker processes of a cluster proxy (``vecdb proxy --workers``), "
                           "each a whole proxy with its own node id, all accepting on ``port`` (SO_REUSEPORT); "
                           "1 = one process (measured on 2 shared cores: 2 workers cost 19% more proxy CPU per "
                           "query at nq=1 for no more QPS, docs/benchmarks.md)")
    worker_port: int = Field(0, ge=0, le=65535, description="with processes > 1: worker i also serves the Milvus "
                             "API on worker_port + i alone (to reach one worker); 0 = off")
    max_request_bytes: int = 64 << 20
    max_query_window: int = Field(16384, description="Largest offset+limit a query may ask for (iterators excepted)")


class StandaloneSettings(BaseModel):
    workers: int = Field(1, ge=1, description="processes serving the Milvus API of ``vecdb standalone`` "
                         "(``--workers``): 1 = today's one process; N > 1 = a primary process (storage, coord, "
                         "data node) and N worker processes (each a proxy and a query node) accepting on "
                         "``proxy.port`` (SO_REUSEPORT), over the same data directory (vecdb.primary)")


class StorageSettings(BaseModel):
    data_dir: str = "./data"
    wal_segment_bytes: int = 64 << 20
    disk_reserve_bytes: int = Field(4 << 20, ge=0, description="the embedded log and object store refuse a write "
                                    "(\"disk full\") that would leave less free on the data directory's disk, so "
                                    "the metadata store always has room: a restart, DDL, a flush's commit "
                                    "(docs/limits.md, \"Disk full\"); 0: write to the last byte")
    log: str = Field("wal", description="'wal' (files under data_dir), nats://host:port[,...] (JetStream) or "
                     "vecdb://host:port (the log a standalone primary serves its workers)")
    meta: str = Field("local", description="'local' (files under data_dir), etcd://host:port or vecdb://host:port "
                      "(the metadata a standalone primary serves its workers)")
    objects: str = Field("local", description="'local' (files under data_dir) or s3://bucket[/prefix]")
    namespace: str = Field("vecdb", description="prefix of stream names, etcd keys and objects on shared servers")
    session_ttl: float = Field(10.0, ge=2, description="seconds a server's session outlives its last renewal; a "
                               "crashed server's successor waits up to about twice this long to start on the same "
                               "namespace")
    log_replicas: int = Field(1, description="JetStream stream replicas (3 on a 3-server NATS cluster)")
    s3_endpoint: str = Field("", description="S3 endpoint URL; empty = AWS (or AWS_ENDPOINT_URL)")
    s3_region: str = ""
    s3_access_key: str = Field("", description="empty = boto3's usual credential chain")
    s3_secret_key: str = ""


class QueryNodeSettings(BaseModel):
    index_threads: int = 1
    spread_min_rows: int = Field(200_000, ge=0, description="sealed rows a shard channel holds before the coord "
                                 "spreads its segments over a replica's query nodes (below it the channel's leader "
                                 "holds them all and no other node follows the channel; 0: always spread)")
    mmap_sealed: bool = Field(False, description="map every sealed segment's columns and index files, whatever "
                              "the collection's mmap.enabled says: the workers of `vecdb standalone --workers N` "
                              "(N > 1) get it, so the files they all read are one copy in the page cache")
    replica_per_node: bool = Field(False, description="read by the coord: every loaded collection gets a replica on "
                                   "each live query node (at least replica_number; in each resource group it has "
                                   "replicas in), so a proxy beside its query node in one process (``vecdb node``) "
                                   "reads from it alone; a node that joins gets one, a gone node's goes with it. "
                                   "Costs each node the memory of every loaded collection. docs/cluster.md")


class DataNodeSettings(BaseModel):
    seal_bytes: int = Field(128 << 20, ge=1, description="bytes of the rows of a channel after its last "
                            "seal record that make the seal policy seal it (the data node following the channel, "
                            "or the proxy where none does), as Milvus sizes segments (dataCoord.segment.maxSize "
                            "x sealProportion); fixed-width fields at their width from the schema, variable-length "
                            "values (VARCHAR, TEXT, JSON, ARRAY, sparse, struct arrays) at their actual size "
                            "(vecdb.datanode.seal)")
    seal_rows: int = Field(1_000_000, ge=1, description="at most this many rows of a channel after its last seal "
                           "record, whatever their size (narrow rows)")


class GcSettings(BaseModel):
    """Garbage collection of the object store (``vecdb.coord.gc``): in the active coord, or a standalone server."""

    interval: float = Field(10.0, gt=0, description="seconds between garbage collection passes over the "
                            "collections whose metadata changed (none changed: no pass)")
    full_interval: float = Field(3600.0, gt=0, description="seconds between passes over every collection and the "
                                 "whole object store (Milvus's dataCoord.gc.interval): the backstop for garbage no "
                                 "metadata change announces, such as files a process wrote before it died")
    grace: float = Field(60.0, ge=0, description="seconds an unreferenced object (an orphan left by a crash, a "
                         "dropped collection's, partition's or index's) is found garbage in every pass before it "
                         "is deleted: readers that still hold it finish first")


class CompactionSettings(BaseModel):
    """Compaction of sealed segments (``vecdb.datanode.compactor``), by the data node that owns a channel."""

    enabled: bool = Field(True, description="compact automatically after persists (client.compact works either way)")
    small_rows: int = Field(50_000, ge=1, description="a segment with fewer live rows is merged with the other small "
                            "segments of its partition (a quarter of the seal size, 200,000 rows)")
    max_rows: int = Field(200_000, ge=1, description="a merge stops adding segments at this many live rows")
    clustering_rows: int = Field(200_000, ge=1, description="rows of each segment a clustering compaction "
                                 "(client.compact(is_clustering=True)) writes, sorted by the clustering key")
    dead_ratio: float = Field(0.2, ge=0, le=1, description="a segment whose deleted or superseded share passes this "
                              "is rewritten without those rows (Milvus's dataCoord.compaction.single.ratio.threshold)")
    interval: float = Field(10.0, ge=0, description="seconds between automatic checks of a channel (a persist "
                            "or client.compact checks at once)")
    gc_grace: float = Field(60.0, ge=0, description="seconds the files of compacted-away segments stay for readers "
                            "that still hold them (the gc/ record's 'after')")
    keep_requests: float = Field(3600.0, ge=0, description="seconds a finished client.compact request's state stays "
                                 "(get_compaction_state)")
    timeout: float = Field(300.0, ge=0, description="seconds a client.compact request's channel waits for a data node "
                           "while none lives (a cluster's); then it counts as a failed plan and the request as "
                           "Completed (Milvus's dataCoord.compaction.timeout)")


class HttpSettings(BaseModel):
    port: int = Field(9091, ge=0, le=65535, description="/healthz and /metrics; 0 disables")


class LogSettings(BaseModel):
    """Log level per role (``vecdb.logs``): ``--log-level`` first, then the role's own key, then ``level``."""

    level: str = Field("", description="every role's level: DEBUG, INFO, WARNING or ERROR (empty = INFO)")
    standalone: str = Field("", description="the standalone server's level (empty = level)")
    coord: str = Field("", description="a coord's level (empty = level)")
    proxy: str = Field("", description="a proxy's level (empty = level)")
    querynode: str = Field("", description="a query node's level (empty = level)")
    datanode: str = Field("", description="a data node's level (empty = level)")


class LimitsSettings(BaseModel):
    """Request and schema limits (``vecdb.limits``), Milvus's defaults."""

    max_nq: int = Field(16384, ge=1, description="query vectors per search (quotaAndLimits.limits.nq)")
    max_topk: int = Field(16384, ge=1, description="limit + offset of a search (quotaAndLimits.limits.topK)")
    max_dim: int = Field(32768, ge=1, description="dimension of a vector field (proxy.maxDimension)")
    max_fields: int = Field(64, ge=2, description="fields of a collection (proxy.maxFieldNum)")
    max_shards: int = Field(16, ge=1, description="shards of a collection (proxy.maxShardNum)")
    max_partitions: int = Field(4096, ge=1, description="partitions of a collection (rootCoord.maxPartitionNum)")
    max_collections: int = Field(65536, ge=1, description="collections in all databases "
                                 "(quotaAndLimits.limits.maxCollectionNum)")


class QuotaSettings(BaseModel):
    """Rate limits and write protection (``vecdb.proxy.quota``), as Milvus's ``quotaAndLimits``. A negative
    rate is no limit (the default, as in Milvus). DML rates are in MB/s of request bytes, search in vectors
    (nq) per second, query and DDL in calls per second; ``_per_collection`` and ``_per_user`` limit each
    collection and each authenticated user on their own."""

    enabled: bool = Field(True, description="check the limits below (Milvus's quotaAndLimits.enabled)")
    insert_rate: float = Field(-1.0, description="MB/s of inserts, the whole server (dml.insertRate.max)")
    insert_rate_per_collection: float = Field(-1.0, description="MB/s per collection (dml.insertRate.collection.max)")
    insert_rate_per_user: float = Field(-1.0, description="MB/s per user")
    upsert_rate: float = Field(-1.0, description="MB/s of upserts (dml.upsertRate.max)")
    upsert_rate_per_collection: float = -1.0
    upsert_rate_per_user: float = -1.0
    delete_rate: float = Field(-1.0, description="MB/s of deletes (dml.deleteRate.max)")
    delete_rate_per_collection: float = -1.0
    delete_rate_per_user: float = -1.0
    search_rate: float = Field(-1.0, description="query vectors per second (dql.searchRate.max)")
    search_rate_per_collection: float = -1.0
    search_rate_per_user: float = -1.0
    query_rate: float = Field(-1.0, description="queries per second (dql.queryRate.max)")
    query_rate_per_collection: float = -1.0
    query_rate_per_user: float = -1.0
    ddl_collection_rate: float = Field(-1.0, description="create/drop/load/release/rename/alter collection "
                                       "calls per second (ddl.collectionRate)")
    ddl_partition_rate: float = Field(-1.0, description="partition DDL calls per second (ddl.partitionRate)")
    ddl_index_rate: float = Field(-1.0, description="create/drop index calls per second (ddl.indexRate)")
    flush_rate: float = Field(-1.0, description="flush calls per second (ddl.flushRate)")
    compaction_rate: float = Field(-1.0, description="manual compaction calls per second (ddl.compactionRate)")
    memory_protection: bool = Field(True, description="refuse inserts and upserts while resident memory is above "
                                    "the high water level (limitWriting.memProtection)")
    memory_high_water_level: float = Field(0.95, gt=0, description="share of memory_limit_bytes")
    memory_limit_bytes: int = Field(0, ge=0, description="0 = the cgroup limit, else the machine's memory")
    disk_quota_mb: float = Field(-1.0, description="refuse inserts and upserts while the data directory holds more "
                                 "(limitWriting.diskProtection.diskQuota); negative = no quota")


class SecuritySettings(BaseModel):
    authorization_enabled: bool = Field(False, description="require a user and password on every Milvus API call "
                                        "(Milvus's common.security.authorizationEnabled); `--auth` turns it on")
    root_password: SecretStr = Field(SecretStr("Milvus"), description="root's password when the metadata store "
                                     "has no root user yet (first start); afterwards it is changed through the API "
                                     "(update_password). Set it from a secret: VECDB_SECURITY__ROOT_PASSWORD (never "
                                     "shown in reprs or logs)")
    cluster_secret: SecretStr = Field(SecretStr(""), description="the secret every process of a cluster sends "
                                      "with its internal RPC calls and requires of the calls it serves (coord, "
                                      "query and data nodes); empty = internal RPC unauthenticated. From "
                                      "VECDB_SECURITY__CLUSTER_SECRET or cluster_secret_file; never logged")
    cluster_secret_file: str = Field("", description="a file holding the cluster secret (a mounted Kubernetes "
                                     "Secret; surrounding whitespace ignored); used when cluster_secret is empty")

    def cluster_secret_value(self) -> str:
        """The cluster secret from ``cluster_secret``, else ``cluster_secret_file``; "" when neither."""
        secret = self.cluster_secret.get_secret_value()
        if not secret and self.cluster_secret_file:
            try:
                secret = Path(self.cluster_secret_file).read_text().strip()
            except OSError as e:
                raise SettingError(f"security.cluster_secret_file: cannot read {self.cluster_secret_file}: "
                                   f"{e.strerror}") from None
            if not secret:
                raise SettingError(f"security.cluster_secret_file: {self.cluster_secret_file} is empty")
        return secret


class TlsSettings(BaseModel):
    """TLS on the Milvus API port and the HTTP port, as Milvus's ``common.security.tlsMode`` and ``tls.*``."""

    mode: int = Field(0, ge=0, le=2, description="0: plain text; 1: one-way TLS (the server's certificate); 2: "
                      "mutual TLS (clients present a certificate signed by ca_pem_path). Milvus's tlsMode")
    server_pem_path: str = Field("", description="the server's certificate chain (PEM); Milvus's tls.serverPemPath")
    server_key_path: str = Field("", description="its private key (PEM); Milvus's tls.serverKeyPath")
    ca_pem_path: str = Field("", description="the CA that signs client certificates (mode 2); tls.caPemPath")
    internal: bool = Field(False, description="mutual TLS on a cluster's internal RPC too (coord, query and data "
                           "nodes), whatever the mode: every role serves and calls with server_pem_path/"
                           "server_key_path and requires its peer's certificate to be signed by ca_pem_path")
    internal_server_name: str = Field("", description="the name internal clients check the servers' certificate "
                                      "against (roles advertise IP addresses); empty = the address's host")


class ReplicationSettings(BaseModel):
    cluster_id: str = Field("by-dev", description="this deployment's id in Milvus 2.6's replication configuration "
                            "(update_replicate_configuration; Milvus's common.clusterPrefix, whose default this is); "
                            "every process of a cluster must use the same one (docs/cdc.md)")


class Settings(BaseModel):
    standalone: StandaloneSettings = StandaloneSettings()
    proxy: ProxySettings = ProxySettings()
    storage: StorageSettings = StorageSettings()
    querynode: QueryNodeSettings = QueryNodeSettings()
    datanode: DataNodeSettings = DataNodeSettings()
    compaction: CompactionSettings = CompactionSettings()
    gc: GcSettings = GcSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    quota: QuotaSettings = QuotaSettings()
    limits: LimitsSettings = LimitsSettings()
    security: SecuritySettings = SecuritySettings()
    tls: TlsSettings = TlsSettings()
    replication: ReplicationSettings = ReplicationSettings()


def load_settings(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The settings of the YAML file ``path`` and the ``VECDB_<SECTION>__<KEY>`` variables. A file that
    cannot be read or parsed, or a value of the wrong type: ``SettingError`` saying which (``vecdb``
    prints it in one line and exits 2)."""
    data: dict = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise SettingError(f"cannot read --config {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise SettingError(f"--config {path} is not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise SettingError(f"--config {path}: expected a mapping of sections (proxy:, storage:, ...), "
                               f"not {type(data).__name__}")
        # a section whose keys are all commented out is YAML's null: its defaults, as an absent one
        data = {key: {} if value is None else value for key, value in data.items()}
    for key, value in (os.environ if env is None else env).items():
        if not key.startswith("VECDB_") or "__" not in key:
            continue
        section, _, name = key[len("VECDB_"):].lower().partition("__")
        values = data.setdefault(section, {})
        if isinstance(values, dict):  # (a section that is no mapping is refused below, naming it)
            values[name] = value
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        wrong = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}{_shown_input(err)}" for err in e.errors())
        raise SettingError(f"invalid settings (--config or VECDB_ variables): {wrong}") from None
    for name, near in _unknown(data, Settings):  # a misspelt one would be silently the default
        log.warning("unknown setting %s%s (--config or VECDB_ variables): ignored", name,
                    f" (did you mean {near}?)" if near else "")
    return settings


def unknown_settings(data: Mapping, model: type[BaseModel] | None = None) -> list[str]:
    """The dotted names (``section.key``) of the keys of ``data`` (a settings file's sections) that the
    settings (``model``, default ``Settings``) have no field for: pydantic ignores them."""
    return [name for name, _ in _unknown(data, model or Settings)]


def _unknown(data: Mapping, model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    """(dotted name, the nearest known name where the key looks misspelt) of each unknown key."""
    out: list[tuple[str, str | None]] = []
    for key, value in data.items():
        info = model.model_fields.get(str(key))
        if info is None:
            near = difflib.get_close_matches(str(key), list(model.model_fields), n=1)
            out.append((f"{prefix}{key}", f"{prefix}{near[0]}" if near else None))
        elif (isinstance(value, Mapping) and isinstance(info.annotation, type)
              and issubclass(info.annotation, BaseModel)):
            out += _unknown(value, info.annotation, f"{prefix}{key}.")
    return out


def _shown_input(err) -> str:
    """The wrong value, unless it may be a secret (a password, a key, a secret)."""
    loc = ".".join(map(str, err["loc"])).lower()
    if any(word in loc for word in ("secret", "password", "key")) or isinstance(err.get("input"), dict):
        return ""
    return f" (got {err.get('input')!r})"

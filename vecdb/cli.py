"""The ``vecdb`` command line."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys


def _settings(args):
    """Settings from --config and the environment, then the command line's storage and
    listening flags."""
    from pydantic import SecretStr

    from vecdb import limits, logs
    from vecdb.config import SettingError, load_settings

    settings = load_settings(args.config)
    level = logs.level_for(args.command, args.log_level, settings.log)  # log.<role>, log.level
    if level not in _LOG_LEVELS:
        raise SettingError(f"unknown log level {level!r} (log.{args.command} or log.level): "
                           "DEBUG, INFO, WARNING or ERROR")
    logs.set_level(level)
    if args.data_dir:
        settings.storage.data_dir = args.data_dir
    if args.host:
        settings.proxy.host = args.host
    if args.port is not None:
        settings.proxy.port = args.port
    for flag, key in (("log_store", "log"), ("meta_store", "meta"), ("object_store", "objects")):
        if getattr(args, flag, None):
            setattr(settings.storage, key, getattr(args, flag))
    if getattr(args, "auth", False):
        settings.security.authorization_enabled = True
    for flag, key in (("tls_mode", "mode"), ("tls_cert", "server_pem_path"), ("tls_key", "server_key_path"),
                      ("tls_ca", "ca_pem_path")):
        if getattr(args, flag, None) is not None:
            setattr(settings.tls, key, getattr(args, flag))
    if getattr(args, "cluster_id", None):
        settings.replication.cluster_id = args.cluster_id
    if getattr(args, "cluster_secret_file", None):  # the flag wins over a secret from the config or environment
        settings.security.cluster_secret_file = args.cluster_secret_file
        settings.security.cluster_secret = SecretStr("")
    limits.configure(settings.limits)  # this process's request and schema limits (vecdb.limits)
    return settings


def port_flag(value: str) -> int:
    """A port flag: 0 to 65535 (gRPC would take 99999 as 99999 % 65536 and listen there; HTTP would
    raise OverflowError), else a usage error."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: a number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: a number from 0 to 65535")
    return port


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL")  # WARN: Python's alias, Milvus's name


def _log_level(value: str) -> str:
    """--log-level: a level's name (any case); anything else is a usage error, not a traceback."""
    if value.upper() not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r}: DEBUG, INFO, WARNING or ERROR")
    return value.upper()


def _role_http_port(args, settings) -> None:
    """A cluster role's /healthz and /metrics port: --http-port, else http.port when the config file
    or VECDB_HTTP__PORT sets it, else off (several roles on one machine cannot share standalone's
    9091 default)."""
    if args.http_port is not None:
        settings.http.port = args.http_port
    elif "port" not in settings.http.model_fields_set:
        settings.http.port = 0


def _run_until_signalled(node, ready: str) -> int:
    from vecdb.process import serve_until_stopped

    return serve_until_stopped(node, ready)


def _coord(args) -> int:
    from vecdb import logs, startup
    from vecdb.coord.server import Coord
    from vecdb.rpc.transport import use_cluster_secret, use_internal_tls
    from vecdb.storage.backends import open_log, open_meta, open_objects

    settings = _settings(args)
    use_cluster_secret(settings.security.cluster_secret_value())  # required of every call it serves
    use_internal_tls(settings.tls)  # served over mutual TLS with tls.internal
    with startup.data_dir(settings.storage.data_dir):  # a 'local' metadata store another process holds
        meta = open_meta(settings.storage)
    http = objects = wal = None
    try:
        if settings.storage.log != "wal":  # the cluster's shared log: flushes write their seal records there
            wal = open_log(settings.storage, meta)  # (a dropped collection's channel is not made again)
        else:  # a log under the coord's own directory is no one else's
            logging.getLogger("vecdb.coord.flush").warning(
                "no shared log (storage.log / --log is 'wal'): flushes through this coord are refused")
        if settings.storage.objects != "local":  # the cluster's objects: its garbage collection's
            objects = open_objects(settings.storage)
        else:  # a local store under the coord's own directory holds nothing of the cluster's
            logging.getLogger("vecdb.coord.gc").warning(
                "no shared object store (storage.objects / --object-store is 'local'): no garbage collection")
        coord = Coord(meta, settings.proxy.host, args.port if args.port is not None else 19540,
                      settings.storage.session_ttl, objects, settings.gc, wal,
                      spread_min_rows=settings.querynode.spread_min_rows,
                      replica_per_node=settings.querynode.replica_per_node)
        _role_http_port(args, settings)
        if settings.http.port:
            from vecdb.http import start_http

            try:
                http = start_http(settings.proxy.host, settings.http.port, coord.health, "coord", coord.address,
                                  settings.tls)
            except BaseException:
                coord.stop()
                raise
        logs.set_node("coord", coord.address)
        # a standby serves too (it refuses calls until it takes over): ready either way, and says which
        return _run_until_signalled(coord, f"vecdb coord ready on {coord.address} "
                                           f"({'active' if coord.active else 'standby'})")
    finally:
        if http is not None:
            http.shutdown()
        if objects is not None:
            objects.close()
        if wal is not None:
            wal.close()
        meta.close()


def _querynode(args) -> int:
    from vecdb.querynode.process import QueryNodeProcess

    settings = _settings(args)
    _role_http_port(args, settings)
    node = QueryNodeProcess(settings, settings.proxy.host, args.port if args.port is not None else 21123, args.node_id)
    return _run_until_signalled(node, f"vecdb querynode {node.node_id} ready on {node.address}")


def _datanode(args) -> int:
    from vecdb.datanode.process import DataNodeProcess

    settings = _settings(args)
    _role_http_port(args, settings)
    node = DataNodeProcess(settings, settings.proxy.host, args.port if args.port is not None else 21124, args.node_id)
    return _run_until_signalled(node, f"vecdb datanode {node.node_id} ready on {node.address}")


def _proxy_start(args, default_workers, supervise):
    """The start `vecdb proxy` and `vecdb node` share. Returns (settings, None) for the one process to
    run (a worker's HTTP port moved to P + its index), or (None, exit code) for a bad --workers or for
    the parent of N > 1 workers, which ``supervise`` runs; ``default_workers(settings)`` is N without
    --workers."""
    settings = _settings(args)
    _role_http_port(args, settings)
    if args.worker_port is not None:
        settings.proxy.worker_port = args.worker_port
    workers = args.workers if args.workers is not None else default_workers(settings)
    if workers < 1:
        print(f"vecdb {args.command}: --workers must be 1 or more, not {workers}", file=sys.stderr)
        return None, 2
    if args.worker_index is None and workers > 1:  # the parent of the workers
        return None, supervise(args.argv, workers, args.node_id, settings.proxy.host, settings.proxy.port)
    if args.worker_index is not None and settings.http.port:  # each worker's own /healthz, /metrics, REST port
        settings.http.port += args.worker_index
    return settings, None


def _ready_line(args, node, ready: str) -> str:
    """``ready`` for a lone process; a worker prints the line its parent waits for instead."""
    if args.worker_index is None:
        return ready
    from vecdb.proxy.workers import WORKER_UP

    return f"{WORKER_UP} {args.worker_index} {node.node_id} {node.address}"


def _proxy(args) -> int:
    from vecdb.proxy.workers import supervise  # vecdb.proxy.workers: the parent of --workers N

    settings, code = _proxy_start(args, lambda s: s.proxy.processes, supervise)
    if settings is None:
        return code
    from vecdb.proxy.process import ProxyProcess

    node = ProxyProcess(settings, args.coord, args.node_id, worker=args.worker_index)
    return _run_until_signalled(node, _ready_line(args, node, f"vecdb proxy {node.node_id} ready on {node.address}"))


def _node(args) -> int:
    from vecdb.node import NodeRoleProcess, supervise  # vecdb.node.supervise: --workers N

    settings, code = _proxy_start(args, lambda s: 1, supervise)
    if settings is None:
        return code
    qn_port = args.querynode_port or 0
    if args.worker_index is not None and qn_port:
        qn_port += args.worker_index
    node = NodeRoleProcess(settings, args.coord, args.node_id, worker=args.worker_index, querynode_port=qn_port)
    # exits 1 if a session of the node is lost (vecdb.node)
    return _run_until_signalled(node, _ready_line(args, node, f"vecdb node {node.node_id} ready on {node.address} "
                                                             f"(query node on {node.querynode_address})"))


def _standalone(args) -> int:
    from vecdb.standalone import Standalone

    settings = _settings(args)
    if args.http_port is not None:
        settings.http.port = args.http_port
    workers = args.workers if args.workers is not None else settings.standalone.workers
    if workers < 1:
        print(f"vecdb standalone: --workers must be 1 or more, not {workers}", file=sys.stderr)
        return 2
    if workers > 1:  # a primary process and its workers (vecdb.primary)
        from vecdb.primary import run_primary, worker_flags

        return run_primary(settings, workers, worker_flags(args), args.log_level)
    from vecdb import native_crashes, signals
    from vecdb.startup import host_port

    node = Standalone(settings)  # holds the data dir: a second server on it stops here, before arm prunes
    native_crashes.arm(settings.storage.data_dir)  # a native crash told from a kill (vecdb.coord.index_builds)
    node.start()
    stopped = signals.stop_event()  # before "ready": a stop sent right after it is handled
    print(f"vecdb standalone ready on {host_port(settings.proxy.host, node.port)} "
          f"(data: {settings.storage.data_dir})", flush=True)
    while not stopped.wait(0.5) and not node.stopped:  # signalled, or it stopped itself (a lost session)
        pass
    from vecdb import logs

    with logs.stacks_if_slow():  # a stop that hangs prints where to the process's log
        node.stop()  # (or waits for the stop under way to end)
    return 1 if node.session_lost else 0


def _cluster(args) -> int:
    from vecdb import localcluster

    try:
        if args.action == "up":
            return localcluster.up(args.data_dir, proxies=args.proxies, querynodes=args.querynodes, port=args.port,
                                   datanodes=args.datanodes, supervise=not args.no_supervise)
        if args.action == "supervise":
            return localcluster.supervise(args.data_dir, out=lambda line: print(line, flush=True))
        if args.action == "status":
            return localcluster.status(args.data_dir)
        if args.action == "restart":
            return localcluster.restart(args.data_dir, args.names)
        return localcluster.down(args.data_dir)
    except localcluster.ClusterError as e:
        print(f"vecdb cluster {args.action}: {e}", file=sys.stderr)
        return 1


def _cluster_command(sub) -> None:
    cl = sub.add_parser(
        "cluster", help="start, inspect or stop a whole cluster on this machine (backends included)",
        description="A local cluster in one command: `up` starts NATS (JetStream), etcd and a SeaweedFS S3 server, "
                    "then a coord, the query nodes and the proxies, all on 127.0.0.1 as background processes with "
                    "their data and logs under --data-dir, and returns once pymilvus gets answers; `status` shows "
                    "each process; a supervisor started by `up` starts a role that exits again; `down` stops "
                    "exactly what `up` started (recorded in DATA_DIR/cluster.json). "
                    "The data stays: `up` again on the same --data-dir finds it. Needs the cluster-dev extra: "
                    "pip install 'vecdb[cluster-dev]'.")
    actions = cl.add_subparsers(dest="action", required=True)
    data_dir = dict(default="./cluster-data", help="where every process keeps its data and logs, and the state "
                                                    "file (default ./cluster-data)")
    upp = actions.add_parser("up", help="start the backends and every role, wait until pymilvus gets answers",
                             description="Start a cluster on 127.0.0.1: NATS, etcd, SeaweedFS (S3), a coord, "
                                         "--querynodes query nodes and --proxies proxies (the first on --port, the "
                                         "next ones on the following ports). Exits non-zero if a cluster already "
                                         "runs from --data-dir. Settings for the vecdb processes can come from "
                                         "VECDB_<SECTION>__<KEY> variables (e.g. VECDB_STORAGE__SESSION_TTL=2).")
    upp.add_argument("--proxies", type=int, default=1, help="proxies, each a Milvus API endpoint (default 1)")
    upp.add_argument("--querynodes", type=int, default=1, help="query nodes (default 1)")
    upp.add_argument("--datanodes", type=int, default=None,
                     help="data nodes, which persist the log into segment files (default 0: the proxies do)")
    upp.add_argument("--no-supervise", action="store_true",
                     help="do not start the supervisor, which starts a vecdb role that exits again")
    upp.add_argument("--data-dir", **data_dir)
    upp.add_argument("--port", type=port_flag, default=19530,
                     help="the first proxy's Milvus API port (default 19530; proxy i gets port+i-1)")
    st = actions.add_parser(
        "status", help="each process of the cluster: alive or dead, each role's /healthz, whether proxies answer",
        description="One line per process `up` started: alive or dead, for a vecdb role its /healthz answer (each "
                    "role gets an HTTP port of its own, also serving /metrics), and for a proxy whether pymilvus "
                    "gets an answer. Exits 0 only when all is well.")
    st.add_argument("--data-dir", **data_dir)
    rs = actions.add_parser(
        "restart", help="stop one or more roles (a query node, a proxy, the coord...) and start them again",
        description="Stop the named vecdb processes (names as `status` shows them: coord, querynode1, proxy2...) "
                    "if they still run, and start each again with the command, ports, data and log `up` gave it, "
                    "the S3 credentials and the cluster secret from DATA_DIR/backends.json; returns once each is "
                    "ready (a proxy: once it answers pymilvus). A crashed role comes back so. The backends (nats, "
                    "etcd, s3) restart with the whole cluster: `down`, then `up`.")
    rs.add_argument("names", nargs="+", metavar="NAME", help="a process name from `vecdb cluster status`")
    rs.add_argument("--data-dir", **data_dir)
    sv = actions.add_parser(
        "supervise", help="(started by `up`) start again each vecdb role of the cluster whose process is gone",
        description="Runs until `down`: every second, a vecdb role (coord, query node, data node, proxy) recorded "
                    "in DATA_DIR/cluster.json whose process is gone is started again as `restart` would, after 1 s, "
                    "then twice as long after each exit within a minute of its start (up to 60 s). `up` starts it "
                    "(unless --no-supervise) and records it as `supervisor`.")
    sv.add_argument("--data-dir", **data_dir)
    dn = actions.add_parser("down", help="stop every process `up` started (the data stays)",
                            description="Stop the processes recorded in DATA_DIR/cluster.json (proxies, query "
                                        "nodes, coord, then S3, etcd, NATS: SIGTERM, SIGKILL after a grace "
                                        "period), each only if its pid still runs the recorded command. The data "
                                        "stays under --data-dir.")
    dn.add_argument("--data-dir", **data_dir)
    cl.set_defaults(func=_cluster)


def _return_freed_memory() -> None:
    """Serve large allocations (columns, index buffers, flush batches) from their own mappings.

    glibc raises its mmap threshold after large frees, so later big arrays land on the heap and
    their memory stays with the process after a flush or an index build (measured: +25 MiB RSS
    kept after flushing 100k x 50 floats). A fixed threshold hands it back to the system."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD (fixing it also stops the dynamic adjustment)
        libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _role_http_flag(p, rest: bool = False) -> None:
    """--http-port; ``rest``: the role serves Milvus's REST API and the web UI there too (a proxy, a node)."""
    serves = "HTTP port: Milvus's REST API, the web UI (/webui/), /metrics and /healthz" if rest else \
        "HTTP port: /healthz and /metrics"
    p.add_argument("--http-port", type=port_flag, default=None,
                   help=f"{serves} (default off; or http.port from --config or VECDB_HTTP__PORT; 0 = off)")


def _command(sub, name: str, func, help: str, description: str, data_dir: str, port: str):
    """A subcommand with the flags every server has: --data-dir, --host, --port."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("--data-dir", default=None, help=data_dir)
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_flag, default=None, help=port)
    p.set_defaults(func=func)
    return p


def _node_role_flags(p, role: str) -> None:
    """The flags of `vecdb querynode` and `vecdb datanode` after the common three."""
    p.add_argument("--node-id", default=None, help=f"this node's id in session/{role}/<id> (default: random)")
    _role_http_flag(p)
    _storage_flags(p)
    _cluster_secret_flag(p)


def _proxy_flags(p, node_id: str, workers: str) -> None:
    """The flags of a command that serves the Milvus API in a cluster (`vecdb proxy`, `vecdb node`), after
    its own: ``node_id`` and ``workers`` are the help of --node-id and --workers."""
    p.add_argument("--coord", default=None, metavar="HOST:PORT",
                   help="the coord's internal RPC address (overrides discovery: default, the one in session/coord)")
    p.add_argument("--node-id", default=None, help=node_id)
    p.add_argument("--workers", type=int, default=None, metavar="N", help=workers)
    p.add_argument("--worker-port", type=port_flag, default=None, metavar="PORT",
                   help="with --workers: worker i also serves the Milvus API on PORT+i alone (proxy.worker_port)")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the parent
    _role_http_flag(p, rest=True)
    _storage_flags(p)
    _auth_flag(p)
    _tls_flags(p)
    _cluster_secret_flag(p)
    _cluster_id_flag(p)


def _storage_flags(p) -> None:
    p.add_argument("--log-store", default=None, metavar="URL",
                   help="the write-ahead log: 'wal' (files in --data-dir, default), nats://host:port (JetStream) "
                        "or vecdb://host:port (a standalone primary's, served to its workers)")
    p.add_argument("--meta-store", default=None, metavar="URL",
                   help="metadata: 'local' (files in --data-dir, default), etcd://host:port or vecdb://host:port "
                        "(a standalone primary's, served to its workers)")
    p.add_argument("--object-store", default=None, metavar="URL",
                   help="segments and indexes: 'local' (files in --data-dir, default) or s3://bucket[/prefix] "
                        "(endpoint and keys: VECDB_STORAGE__S3_ENDPOINT etc. or boto3's AWS_* variables)")
    p.add_argument("--config", default=None, help="YAML settings file (see vecdb/config.py)")


def _auth_flag(p) -> None:
    p.add_argument("--auth", action="store_true",
                   help="require a user and password on every call, as Milvus with authorizationEnabled (or "
                        "security.authorization_enabled in --config, VECDB_SECURITY__AUTHORIZATION_ENABLED=true). "
                        "root's first password: VECDB_SECURITY__ROOT_PASSWORD, default Milvus. See docs/security.md")


def _tls_flags(p) -> None:
    p.add_argument("--tls-mode", type=int, choices=(0, 1, 2), default=None,
                   help="TLS on the Milvus API and HTTP ports, as Milvus's tlsMode: 0 plain text (default), 1 one-way, "
                        "2 mutual (clients need a certificate signed by --tls-ca). Or tls.mode in --config, "
                        "VECDB_TLS__MODE. See docs/security.md")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="the server's certificate (tls.server_pem_path)")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="the server's private key (tls.server_key_path)")
    p.add_argument("--tls-ca", default=None, metavar="PEM",
                   help="the CA that signs client certificates, for --tls-mode 2 (tls.ca_pem_path)")


def _cluster_id_flag(p) -> None:
    p.add_argument("--cluster-id", default=None, metavar="ID",
                   help="this deployment's id in Milvus 2.6's replication configuration (update_replicate_"
                        "configuration; default by-dev; or replication.cluster_id, VECDB_REPLICATION__CLUSTER_ID); "
                        "every proxy of a cluster needs the same one. See docs/cdc.md")


def _cluster_secret_flag(p) -> None:
    p.add_argument("--cluster-secret-file", default=None, metavar="PATH",
                   help="a file holding the cluster secret: internal RPC (coord, query and data nodes) is sent with "
                        "it and refused without it; every process of the cluster needs the same one (or "
                        "VECDB_SECURITY__CLUSTER_SECRET, security.cluster_secret_file). See docs/security.md")


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin between FAISS calls burn the cores gRPC handlers need (measured: server CPU
    # per nq=100 search 19.6 -> 12.1 ms, same throughput). Must be set before FAISS is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Brute-force search calls numpy's BLAS from many handler threads at once; multi-threaded
    # OpenBLAS then spins (measured 6.4 ms vs 0.19 ms CPU per FLAT query). Parallelism comes from
    # the handler threads and FAISS's OpenMP instead.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _return_freed_memory()
    parser = argparse.ArgumentParser(
        prog="vecdb",
        description="vecdb: a vector database that speaks the Milvus API (use pymilvus to talk to it).",
    )
    parser.add_argument("--log-level", default=None, type=_log_level,
                        help="DEBUG, INFO, WARNING or ERROR (default: the config's log.<role>, else log.level, else "
                             "INFO; VECDB_LOG__<ROLE> / VECDB_LOG__LEVEL set them)")
    sub = parser.add_subparsers(dest="command", required=True)
    st = _command(sub, "standalone", _standalone,
                  "run every role in one process with embedded storage (no other servers needed)",
                  "Run vecdb as one process: the Milvus gRPC API on --host:--port, data under --data-dir. "
                  "Connect with pymilvus: MilvusClient('http://127.0.0.1:19530').",
                  data_dir="where the log, metadata and segments live (default ./data)",
                  port="gRPC port for pymilvus (default 19530)")
    st.add_argument("--http-port", type=port_flag, default=None,
                    help="HTTP port: Milvus's REST API, the web UI (/webui/), /metrics and /healthz (default 9091, "
                         "0 = off)")
    st.add_argument("--workers", type=int, default=None, metavar="N",
                    help="serve the Milvus API from N worker processes on --port (SO_REUSEPORT) beside a primary "
                         "process that owns the storage (default 1: one process; or standalone.workers, "
                         "VECDB_STANDALONE__WORKERS). The same --data-dir works with any N. See docs/deploy.md")
    _storage_flags(st)
    _auth_flag(st)
    _tls_flags(st)
    _cluster_id_flag(st)
    co = _command(sub, "coord", _coord, "run the cluster's coordinator (timestamps and ids for proxies and nodes)",
                  "Run the coord of a vecdb cluster: the timestamp oracle and id allocator, over internal gRPC "
                  "on --host:--port, its state in --meta-store (etcd for a cluster). Start a second one on the same "
                  "--meta-store as a standby: it takes over when the active one's session ends.",
                  data_dir="for a 'local' metadata store (default ./data)", port="internal gRPC port (default 19540)")
    co.add_argument("--log-store", default=None, metavar="URL",
                    help="the cluster's log, nats://host:port: the active coord writes a flush's seal records "
                         "there; 'wal' (default): flushes through this coord are refused")
    co.add_argument("--meta-store", default=None, metavar="URL",
                    help="metadata: etcd://host:port (or 'local', files in --data-dir)")
    co.add_argument("--object-store", default=None, metavar="URL",
                    help="the cluster's segments and indexes, s3://bucket[/prefix]: the active coord collects "
                         "their garbage (settings gc.interval, gc.grace); 'local' (default): no garbage collection")
    co.add_argument("--config", default=None, help="YAML settings file (see vecdb/config.py)")
    _role_http_flag(co)
    _cluster_secret_flag(co)
    qn = _command(sub, "querynode", _querynode, "run a query node of a cluster",
                  "Run a query node: it follows the log channels the coord assigns it and "
                  "answers search/query/count over internal gRPC on --host:--port. Storage flags as for standalone "
                  "(a cluster's: nats://, etcd://, s3://).",
                  data_dir="local cache of the segment files it maps (default ./data)",
                  port="internal gRPC port (default 21123)")
    _node_role_flags(qn, "querynode")
    dn = _command(sub, "datanode", _datanode, "run a data node of a cluster",
                  "Run a data node: it persists the log channels the coord assigns it into segment files in the "
                  "object store (at each seal record: a flush, or the seal policy), and moves their checkpoints. "
                  "Storage flags as for standalone (a cluster's: nats://, etcd://, s3://).",
                  data_dir="local cache of the object store (default ./data)",
                  port="internal gRPC port (default 21124)")
    _node_role_flags(dn, "datanode")
    px = _command(sub, "proxy", _proxy, "run a proxy of a cluster (the Milvus API)",
                  "Run a proxy: the Milvus gRPC API for pymilvus on --host:--port, data on the cluster's storage "
                  "(nats://, etcd://, s3://). It finds the active coord and the query nodes from their sessions in "
                  "--meta-store (the coord assigns the query nodes their channels); --coord overrides the coord's.",
                  data_dir="local cache of the segment files (default ./data)",
                  port="gRPC port for pymilvus (default 19530)")
    _proxy_flags(px, node_id="this proxy's id in session/proxy/<id> (default: random; with --workers, worker i's is "
                              "<id>-w<i>)",
                 workers="serve from N processes on --port (SO_REUSEPORT), each a whole proxy; a worker that dies "
                         "is started again; with --http-port P worker i serves HTTP on P+i (default 1, or "
                         "proxy.processes, VECDB_PROXY__PROCESSES). See docs/cluster.md")
    nd = _command(sub, "node", _node, "run a proxy and a query node of a cluster in one process",
                  "Run a proxy and a query node in one process under one node id: the Milvus API on --host:--port "
                  "(as `vecdb proxy`) whose reads go to its own query node in-process (no RPC), and the query node "
                  "of a cluster (as `vecdb querynode`: the channels the coord assigns it, internal gRPC on "
                  "--querynode-port for other proxies). With the coord's querynode.replica_per_node every node holds "
                  "a whole replica of every loaded collection. Storage flags as for standalone (a cluster's: "
                  "nats://, etcd://, s3://). See docs/cluster.md",
                  data_dir="local cache of the segment files (default ./data)",
                  port="gRPC port for pymilvus (default 19530)")
    nd.add_argument("--querynode-port", type=port_flag, default=None, metavar="PORT",
                    help="the query node's internal gRPC port (default: any free port; with --workers, worker i's "
                         "is PORT+i)")
    _proxy_flags(nd, node_id="this node's id, in session/proxy/<id> and session/querynode/<id> (default: random; "
                              "with --workers, worker i's is <id>-w<i>)",
                 workers="serve from N node processes on --port (SO_REUSEPORT), each a whole node (proxy and query "
                         "node); a worker that dies is started again under a new id; with --http-port P worker i "
                         "serves HTTP on P+i (default 1)")
    _cluster_command(sub)
    from vecdb.cdc.cli import add_parser as _cdc_command

    _cdc_command(sub)
    from vecdb.inspect import add_parser as _inspect_command

    _inspect_command(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: a proxy's workers get it (--workers)
    from vecdb import logs

    # one line per event, "[<role> <node id>]" in each; the level is settled once the settings are read
    logs.setup(args.command, logs.level_for(args.command, args.log_level))
    logs.stacks_on_crash()
    from vecdb.config import SettingError
    from vecdb.errors import InvalidParameter
    from vecdb.startup import StartupFailed

    try:
        return args.func(args)
    except SettingError as e:  # a bad TLS file, an unreadable secret file: the message says which
        print(f"vecdb {args.command}: {e}", file=sys.stderr)
        return 2
    except InvalidParameter as e:  # a setting the backends refuse (storage.log 'bogus://x'): its message says which
        print(f"vecdb {args.command}: {e.message}", file=sys.stderr)
        return 2
    except StartupFailed as e:  # a port in use, a data directory held, a refused secret: one line (vecdb.startup)
        print(f"vecdb: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

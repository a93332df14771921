"""The metrics every role exposes on ``/metrics`` (``vecdb.http``), defined in one place.

Names and labels are Milvus's (``pkg/metrics`` of Milvus) where Milvus has the metric, so Milvus
dashboards and alerts work unchanged; what Milvus has no metric for is named ``vecdb_...``. Every
metric carries ``node_id``: the node's id as in its session (``session/<role>/<node id>``, the
``node_id`` of ``vecdb_node_info``), "standalone" in a standalone server.

Milvus's metrics are exposed exactly as Milvus names them: a counter is ``milvus_proxy_req_count``,
not prometheus-client's ``milvus_proxy_req_count_total`` (they live in ``MILVUS``, a registry of
their own that ``exposition`` writes without that renaming). Durations are in milliseconds with
Milvus's buckets, as Milvus's are.

What is a state rather than an event (entities and segments a query node holds, how far it is
behind the log) is read when scraped (``QueryNodeCollector``), so the write and read paths pay
nothing for it. Per-call counters are prometheus-client children looked up once per (node,
function) and cached by the caller (``ProxyCalls``), their values swapped for lock-free per-thread
tallies (``vecdb.metric_tally``): a call costs a few additions to its own thread's cells, no lock
(``bench.handler_cost``: 4-6 us less per nq=1 search than prometheus-client's own increments).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from vecdb.metric_tally import fast_child, fast_counter, fast_histogram
from vecdb.request_db import db_of
from vecdb.timestamp import MAX_TIMESTAMP

if TYPE_CHECKING:
    from vecdb.coord.tso import IdAllocator, TimestampOracle

log = logging.getLogger(__name__)

MILVUS = CollectorRegistry(auto_describe=True)
STANDALONE = "standalone"

# Milvus's buckets: durations in milliseconds, 1 ms .. 131 s doubling; long tasks up to an hour.
BUCKETS_MS = tuple(float(2 ** i) for i in range(18))
LONG_TASK_BUCKETS_MS = (1.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 20000.0, 50000.0, 100000.0, 250000.0,
                        500000.0, 1000000.0, 3600000.0)

# Milvus's status label values: "total" when a call starts, then "success" or "fail".
TOTAL, SUCCESS, FAIL = "total", "success", "fail"

# --- coord -----------------------------------------------------------------------------------------
ROOTCOORD_ID_ALLOC = Counter("milvus_rootcoord_id_alloc_count", "count of ID allocated", ["node_id"],
                             registry=MILVUS)
ROOTCOORD_TIMESTAMP = Gauge("milvus_rootcoord_timestamp", "latest timestamp allocated in memory", ["node_id"],
                            registry=MILVUS)



def watch_allocators(node_id: str, tso: TimestampOracle, ids: IdAllocator) -> None:
    """The coord metrics of a server that allocates in-process (standalone: ``node_id`` "standalone"),
    as a cluster's coord fills them in its RPC handlers (``vecdb.coord.server``): the latest timestamp
    (read from ``tso.last()`` when scraped) and the count of ids handed out (``ids.on_allocate``)."""
    ROOTCOORD_TIMESTAMP.labels(node_id).set_function(tso.last)
    ids.on_allocate = ROOTCOORD_ID_ALLOC.labels(node_id).inc


# --- proxy ---------------------------------------------------------------------------------------
PROXY_REQ_COUNT = Counter("milvus_proxy_req_count", "count of operation executed",
                          ["node_id", "function_name", "status"], registry=MILVUS)
PROXY_REQ_LATENCY = Histogram("milvus_proxy_req_latency", "latency of each request (ms)",
                              ["node_id", "function_name"], buckets=BUCKETS_MS, registry=MILVUS)
PROXY_INSERT_VECTORS = Counter("milvus_proxy_insert_vectors_count", "counter of vectors successfully inserted",
                               ["node_id", "db_name", "collection_name"], registry=MILVUS)
PROXY_UPSERT_VECTORS = Counter("milvus_proxy_upsert_vectors_count", "counter of vectors successfully upserted",
                               ["node_id", "db_name", "collection_name"], registry=MILVUS)
PROXY_DELETE_VECTORS = Counter("milvus_proxy_delete_vectors_count", "counter of vectors successfully deleted",
                               ["node_id", "db_name", "collection_name"], registry=MILVUS)
PROXY_SEARCH_VECTORS = Counter("milvus_proxy_search_vectors_count", "counter of vectors successfully searched",
                               ["node_id", "db_name", "collection_name"], registry=MILVUS)
PROXY_RECEIVED_NQ = Counter("milvus_proxy_received_nq", "counter of nq of received search and query requests",
                            ["node_id", "query_type", "collection_name"], registry=MILVUS)
PROXY_SQ_LATENCY = Histogram("milvus_proxy_sq_latency", "latency of search or query successfully (ms)",
                             ["node_id", "query_type", "db_name", "collection_name"], buckets=BUCKETS_MS,
                             registry=MILVUS)
PROXY_MUTATION_LATENCY = Histogram("milvus_proxy_mutation_latency", "latency of insert or delete successfully (ms)",
                                   ["node_id", "msg_type", "db_name", "collection_name"], buckets=BUCKETS_MS,
                                   registry=MILVUS)

# --- query node ----------------------------------------------------------------------------------
QUERYNODE_SQ_REQ_COUNT = Counter("milvus_querynode_sq_req_count", "count of search / query request",
                                 ["node_id", "query_type", "status"], registry=MILVUS)
QUERYNODE_SQ_REQ_LATENCY = Histogram("milvus_querynode_sq_req_latency", "latency of Search or query requests (ms)",
                                     ["node_id", "query_type"], buckets=BUCKETS_MS, registry=MILVUS)


# --- index builds (a query node's, or a data node's indexer) --------------------------------------
INDEX_BUILD_LATENCY = Histogram("milvus_indexnode_build_index_latency", "latency of building the index (ms)",
                                ["node_id"], buckets=BUCKETS_MS, registry=MILVUS)
INDEX_TASK_COUNT = Counter("milvus_indexnode_index_task_count", "number of index builds, by outcome",
                           ["node_id", "status"], registry=MILVUS)

# --- flushes (a data node's) --------------------------------------------------------------------
FLUSH_LATENCY = Histogram("milvus_datanode_save_latency", "latency of a flush: segment files saved and committed (ms)",
                          ["node_id", "segment_level"], buckets=LONG_TASK_BUCKETS_MS, registry=MILVUS)
FLUSH_COUNT = Counter("milvus_datanode_flush_buffer_op_count", "count of flushes, by outcome",
                      ["node_id", "status"], registry=MILVUS)


# --- the log's tailers (a query node's, a data node's: vecdb.storage.stall) ---------------------------
LOG_FOLLOWER_STALLS = Counter("vecdb_log_follower_stall_count", "a channel's follower found silent while the log was "
                              "ahead of it: followed again (stuck), or records cut below it (cut)",
                              ["node_id", "channel_name", "outcome"], registry=MILVUS)
STALL_STUCK, STALL_CUT = "stuck", "cut"


def count_stall(node_id: str, channel: str, cut: bool) -> None:
    """One stall of ``channel``'s follower: records cut below it (``cut``), or a stuck follower."""
    LOG_FOLLOWER_STALLS.labels(node_id, channel, STALL_CUT if cut else STALL_STUCK).inc()


# --- garbage collection (the active coord's, or a standalone server's: vecdb.coord.gc) -----------
GC_RUN_COUNT = Counter("milvus_datacoord_gc_run_count", "garbage collection running count", ["node_id"],
                       registry=MILVUS)
GC_OBJECT_COUNT = Counter("milvus_datacoord_gc_object_count", "objects deleted by garbage collection, by what made "
                          "them garbage (compacted, orphan_segment, orphan_delta, dropped_collection, "
                          "dropped_partition, dropped_index)", ["node_id", "kind"], registry=MILVUS)


def elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


@contextmanager
def timed(histogram: Histogram, counter: Counter | None, node_id: str, *labels: str):
    """Observe how long the block took (ms) in ``histogram{node_id, *labels}``; count it in
    ``counter{node_id, status}`` as success or fail."""
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        if counter is not None:
            counter.labels(node_id, FAIL).inc()
        raise
    histogram.labels(node_id, *labels).observe(elapsed_ms(start))
    if counter is not None:
        counter.labels(node_id, SUCCESS).inc()


# --- node ids --------------------------------------------------------------------------------------
# The number a Milvus client sees for a node (vecdb.discovery.node_number) -> the node's own id, so a
# proxy's metrics, labelled from the number its handlers know, carry the id of its session.
_NODE_NAMES: dict[int, str] = {}


def name_node(number: int, node_id: str) -> None:
    _NODE_NAMES[number] = node_id


def node_label(number: int, component: str) -> str:
    if component == STANDALONE:
        return STANDALONE
    return _NODE_NAMES.get(number, str(number))


class ProxyCalls:
    """The children of the proxy's per-call metrics for one function, per node (a process may serve
    several proxies, in tests): looked up once, then a dict hit per call."""

    __slots__ = ("function", "_by_node")

    def __init__(self, function: str):
        self.function = function
        self._by_node: dict[int, tuple[Any, Any, Any, Any, str]] = {}

    def children(self, number: int, component: str):
        """(total, success, fail counters, latency histogram, node label) of node ``number``."""
        got = self._by_node.get(number)
        if got is None:
            node = node_label(number, component)
            got = self._by_node[number] = (
                fast_counter(PROXY_REQ_COUNT.labels(node, self.function, TOTAL)),
                fast_counter(PROXY_REQ_COUNT.labels(node, self.function, SUCCESS)),
                fast_counter(PROXY_REQ_COUNT.labels(node, self.function, FAIL)),
                fast_histogram(PROXY_REQ_LATENCY.labels(node, self.function)),
                node,
            )
        return got


_FORGET_LOCK = threading.Lock()  # a cache miss of _Children against forget_collection
# (database, collection name) -> time.perf_counter() when forget_collection removed its series (kept FORGOTTEN_S)
_FORGOTTEN: dict[tuple[str, str], float] = {}
FORGOTTEN_S = 600.0


class _Children:
    """Labelled children of several metrics, looked up once per label tuple (prometheus-client's
    ``labels`` takes a lock and builds its key on every call; a dict hit is what a request pays), as
    lock-free tallies (``vecdb.metric_tally``). Children are removed only by ``forget_collection``,
    which forgets the cached ones with them (under the lock a miss takes), so a cached child stays
    the exported one."""

    __slots__ = ("_make", "_cache")

    def __init__(self, make):
        self._make = make
        self._cache: dict[tuple, Any] = {}

    def get(self, *key, since: float | None = None):
        """The children of ``key`` (its last labels the database and collection names), or None for a request that
        started (``since``, ``time.perf_counter()``) before its collection's series were removed: a
        call finishing just after the drop does not bring them back. ``since`` None: not keyed by a
        collection."""
        got = self._cache.get(key)
        if got is None:
            with _FORGET_LOCK:
                if since is not None and _FORGOTTEN.get(key[-2:], -1.0) >= since:
                    return None
                got = self._cache[key] = tuple(fast_child(c) for c in self._make(*key))
        return got

    def forget(self, collection: str) -> None:
        """Drop the cached children whose last label (the collection's name) is ``collection``."""
        for key in [k for k in list(self._cache) if k[-1] == collection]:
            self._cache.pop(key, None)


_INSERTED = _Children(lambda node, db, coll: (PROXY_INSERT_VECTORS.labels(node, db, coll),
                                              PROXY_MUTATION_LATENCY.labels(node, "insert", db, coll)))
_UPSERTED = _Children(lambda node, db, coll: (PROXY_UPSERT_VECTORS.labels(node, db, coll),
                                              PROXY_MUTATION_LATENCY.labels(node, "upsert", db, coll)))
_DELETED = _Children(lambda node, db, coll: (PROXY_DELETE_VECTORS.labels(node, db, coll),
                                             PROXY_MUTATION_LATENCY.labels(node, "delete", db, coll)))
# (vectors searched, received nq, latency) of a search ("search" or "hybrid_search"); query: (received, latency)
_SEARCHED = _Children(lambda node, kind, db, coll: (PROXY_SEARCH_VECTORS.labels(node, db, coll),
                                                    PROXY_RECEIVED_NQ.labels(node, kind, coll),
                                                    PROXY_SQ_LATENCY.labels(node, kind, db, coll)))
_QUERIED = _Children(lambda node, db, coll: (PROXY_RECEIVED_NQ.labels(node, "query", coll),
                                             PROXY_SQ_LATENCY.labels(node, "query", db, coll)))


_PER_COLLECTION = (PROXY_INSERT_VECTORS, PROXY_UPSERT_VECTORS, PROXY_DELETE_VECTORS, PROXY_SEARCH_VECTORS,
                   PROXY_RECEIVED_NQ, PROXY_SQ_LATENCY, PROXY_MUTATION_LATENCY)


def forget_collection(db: str, name: str, channels: Iterable[str] = ()) -> None:
    """Remove the proxy metrics of collection (or alias) ``name`` of database ``db`` and the stall
    counts of its ``channels``: what Milvus's proxies do when a collection is dropped
    (``CleanupProxyCollectionMetrics``; ``milvus_proxy_received_nq`` has no database label and goes by
    name, as there). Without it every collection ever created and dropped kept ~100 series (and
    ~100 KiB) per proxy for the life of the process. Called by every catalog cache
    (``vecdb.coord.catalog_state``) as it drops the collection or alias."""
    with _FORGET_LOCK:
        now = time.perf_counter()
        for old in [k for k, t in _FORGOTTEN.items() if now - t > FORGOTTEN_S]:
            del _FORGOTTEN[old]
        _FORGOTTEN[(db, name)] = now
        for children in (_INSERTED, _UPSERTED, _DELETED, _SEARCHED, _QUERIED):
            children.forget(name)
        for metric in _PER_COLLECTION:
            _remove_children(metric, {"db_name": db, "collection_name": name})
        for channel in channels:
            _remove_children(LOG_FOLLOWER_STALLS, {"channel_name": channel})


def _remove_children(metric, match: dict[str, str]) -> None:
    """Remove ``metric``'s children whose labels hold ``match`` (labels it lacks are not compared)."""
    names = list(metric._labelnames)
    wanted = [(names.index(label), value) for label, value in match.items() if label in names]
    with metric._lock:
        keys = [key for key in metric._metrics if all(key[i] == v for i, v in wanted)]
    for key in keys:
        metric.remove(*key)


def _mutated(children: _Children, count: int, node, request, context, ms) -> None:
    got = children.get(node, db_of(request, context), request.collection_name, since=_started(ms))
    if got is not None:
        vectors, latency = got
        vectors.inc(count)
        latency.observe(ms)


def _started(ms: float) -> float:
    return time.perf_counter() - ms / 1000.0


def _after_insert(node, request, context, reply, ms) -> None:
    _mutated(_INSERTED, reply.insert_cnt, node, request, context, ms)


def _after_upsert(node, request, context, reply, ms) -> None:
    _mutated(_UPSERTED, reply.upsert_cnt, node, request, context, ms)


def _after_delete(node, request, context, reply, ms) -> None:
    _mutated(_DELETED, reply.delete_cnt, node, request, context, ms)


def _searched(kind: str, nq: int, node, request, context, ms) -> None:
    got = _SEARCHED.get(node, kind, db_of(request, context), request.collection_name, since=_started(ms))
    if got is not None:
        vectors, received, latency = got
        vectors.inc(nq)
        received.inc(nq)
        latency.observe(ms)


def _after_search(node, request, context, reply, ms) -> None:
    _searched("search", reply.results.num_queries or request.nq, node, request, context, ms)


def _after_hybrid_search(node, request, context, reply, ms) -> None:
    _searched("hybrid_search", reply.results.num_queries, node, request, context, ms)


def _after_query(node, request, context, reply, ms) -> None:
    got = _QUERIED.get(node, db_of(request, context), request.collection_name, since=_started(ms))
    if got is not None:
        received, latency = got
        received.inc()
        latency.observe(ms)


# After a successful call of these functions (one whose reply's status is success), what else is
# counted: vectors written or searched, search/query and mutation latencies.
PROXY_AFTER = {
    "Insert": _after_insert, "Upsert": _after_upsert, "Delete": _after_delete,
    "Search": _after_search, "HybridSearch": _after_hybrid_search, "Query": _after_query,
}


def reply_failed(reply) -> bool:
    """A reply that carries a failed status (a handler may answer an error without raising)."""
    st = getattr(reply, "status", reply)
    return bool(getattr(st, "code", 0) or getattr(st, "error_code", 0))


# --- query nodes: what they hold, read when scraped ------------------------------------------------
_QUERYNODES: weakref.WeakSet = weakref.WeakSet()
_QN_LOCK = threading.Lock()


def track_querynode(node) -> None:
    """Report ``node`` (a ``QueryNode``: ``metrics_node_id``, ``collections``, ``log``) on /metrics."""
    with _QN_LOCK:
        _QUERYNODES.add(node)


def untrack_querynode(node) -> None:
    with _QN_LOCK:
        _QUERYNODES.discard(node)


def querynode_read(query_type: str):
    """Count and time a query node's read (``milvus_querynode_sq_req_count`` / ``_latency``)."""

    def wrap(fn):
        # the "fail" child is made at the first failure, as before: no zero series until one
        children = _Children(lambda node: (QUERYNODE_SQ_REQ_COUNT.labels(node, query_type, TOTAL),
                                           QUERYNODE_SQ_REQ_COUNT.labels(node, query_type, SUCCESS),
                                           QUERYNODE_SQ_REQ_LATENCY.labels(node, query_type)))
        clock = time.perf_counter

        def read(self, *args, **kwargs):
            node = self.metrics_node_id
            total, success, latency = children.get(node)
            total.inc()
            start = clock()
            try:
                out = fn(self, *args, **kwargs)
            except BaseException:
                QUERYNODE_SQ_REQ_COUNT.labels(node, query_type, FAIL).inc()
                raise
            success.inc()
            latency.observe((clock() - start) * 1000.0)
            return out

        read.__name__, read.__doc__, read.__wrapped__ = fn.__name__, fn.__doc__, fn  # type: ignore[attr-defined]
        return read

    return wrap


class QueryNodeCollector(Collector):
    """Entities and segments per collection, channels and collections held, and how far each
    channel's applied position is behind the log's end, for every query node of this process."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        entities = GaugeMetricFamily(
            "milvus_querynode_entity_num",
            "number of entities which can be searched/queried, clustered by collection and state",
            labels=["db_name", "collection_name", "node_id", "collection_id", "segment_state"])
        segments = GaugeMetricFamily(
            "milvus_querynode_segment_num", "number of segments loaded, clustered by its collection and state",
            labels=["node_id", "collection_id", "segment_state", "segment_level"])
        collections = GaugeMetricFamily("milvus_querynode_collection_num", "number of collections loaded",
                                        labels=["node_id"])
        channels = GaugeMetricFamily("milvus_querynode_dml_vchannel_num", "number of dmlChannels watched",
                                     labels=["node_id"])
        lag = GaugeMetricFamily(
            "vecdb_querynode_consume_lag", "records of a channel in the log not applied yet (log end minus "
            "applied position)", labels=["node_id", "collection_id", "channel_name"])
        applied = GaugeMetricFamily("vecdb_querynode_applied_position", "the last log position applied, per channel",
                                    labels=["node_id", "collection_id", "channel_name"])
        with _QN_LOCK:
            nodes = list(_QUERYNODES)
        for node in nodes:
            self._node(node, entities, segments, collections, channels, lag, applied)
        return [entities, segments, collections, channels, lag, applied]

    @staticmethod
    def _node(node, entities, segments, collections, channels, lag, applied) -> None:
        label = node.metrics_node_id
        loaded = list(node.collections.items())
        # a log that is reconnecting (JetStream's NATS connection down) would hold each lookup of a
        # channel's end for its request timeout: no lag is reported meanwhile (/healthz says why)
        nc = getattr(node.log, "_nc", None)
        log_up = nc is None or nc.is_connected
        collections.add_metric([label], len(loaded))
        n_channels = 0
        for cid, coll in loaded:
            info, shards = coll.info, list(coll.shards)
            n_channels += len(shards)
            counts = {"Sealed": [0, 0], "Growing": [0, 0]}  # state -> [entities, segments]
            for shard in shards:
                for seg in list(shard.segments.values()):
                    if not seg.n or seg.stub:  # a stub's rows are served (and counted) by another node
                        continue
                    c = counts["Sealed" if seg.sealed else "Growing"]
                    # no row deleted yet (the common case): no scan of the delete timestamps
                    c[0] += seg.n if seg.min_del_ts == MAX_TIMESTAMP else seg.alive_count()
                    c[1] += 1
                position = shard.applied_position
                applied.add_metric([label, str(cid), shard.channel], position)
                if not log_up:
                    continue
                try:
                    end = node.log.last_position(shard.channel)
                except Exception as e:  # noqa: BLE001 - the log is unreachable: no lag to report
                    log.debug("consume lag of %s: %s", shard.channel, e)
                    continue
                lag.add_metric([label, str(cid), shard.channel], max(end - position, 0))
            for state, (rows, segs) in counts.items():
                entities.add_metric([info.db, info.name, label, str(cid), state], rows)
                segments.add_metric([label, str(cid), state, "L1"], segs)
        channels.add_metric([label], n_channels)


MILVUS.register(QueryNodeCollector())


# --- exposition ------------------------------------------------------------------------------------
def exposition() -> bytes:
    """/metrics: prometheus-client's default registry (process, gc, vecdb_* metrics) in its format, then
    the Milvus-named metrics with Milvus's exact names."""
    return generate_latest(REGISTRY) + _milvus_text(MILVUS)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _milvus_text(registry: CollectorRegistry) -> bytes:
    out: list[str] = []
    for family in registry.collect():
        name, kind = family.name, family.type
        if kind == "unknown":
            kind = "untyped"
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n")
        out.append(f"# TYPE {name} {kind}\n")
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            sample = name if kind == "counter" and s.name == name + "_total" else s.name
            labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(s.labels.items()))
            out.append(f"{sample}{{{labels}}} {floatToGoString(s.value)}\n" if labels
                       else f"{sample} {floatToGoString(s.value)}\n")
    return "".join(out).encode()

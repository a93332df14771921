"""Rate limits and write protection: Milvus's quotaAndLimits, checked as each Milvus API call starts.

Rates (``vecdb.config.QuotaSettings``; a negative rate is no limit, the default, as in Milvus):

- insert, upsert and delete in MB/s of request bytes; search in vectors (nq) per second; query in
  calls per second; each server-wide (Milvus's ``dml.insertRate.max`` ...), per collection
  (``...collection.max``) and per user (vecdb's own: the authenticated user, "" without
  authentication);
- DDL in calls per second, server-wide (Milvus's ``ddl.collectionRate``, ``partitionRate``,
  ``indexRate``, ``flushRate``, ``compactionRate``).

Each limit is a token bucket that holds at most one second of its rate. A call is let through
while its bucket is not in debt and then pays its whole cost, so one request larger than a
second's worth (a big insert batch) still passes, and the calls after it wait until the debt is
paid, as Milvus's limiter does. A refused call gets Milvus's "rate limit exceeded" (code 8,
legacy ``RateLimit``), which pymilvus retries with backoff unless told not to
(``retry_on_rate_limit=False``); a refused call costs nothing.

Write protection (Milvus's ``limitWriting``): inserts and upserts are refused with code 9
(``ForceDeny``) while this process's resident memory is above ``memory_high_water_level`` of the
memory it may use (``memory_limit_bytes``, else the cgroup limit, else the machine's memory), or
while the data directory holds more than ``disk_quota_mb``. Deletes are always let through: they
are how a user makes room. Memory and disk are measured at most once a second and once every ten
seconds, on the call that finds the reading old, so the hot path pays a clock read.

Properties (``admit_collection``, called by the handlers once they know the collection, since this
hook sees no catalog): a database's ``database.force.deny.writing`` / ``.reading`` refuse its writes
(insert, upsert, delete, import) / reads (search, hybrid search, query) with code 9 and Milvus's
words (``vecdb.coord.properties.check_not_denied``, whatever ``enabled`` says: an administrator's switch;
its DDL keys are the coord's, ``database.force.deny.flush`` is ``admit_database``'s); a collection's
``collection.insertRate.max.mb``, ``upsertRate.max.mb``, ``deleteRate.max.mb``, ``queryRate.max.qps``
and ``searchRate.max.vps`` are one more bucket of that collection, checked only while ``enabled``
(Milvus's quotaAndLimits.enabled). A call refused there gives back what this hook charged it.
The catalog is in memory: the check costs a lock and a few dict reads, no store read.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from prometheus_client import Counter
from pymilvus.grpc_gen import common_pb2

from vecdb import errors, metrics
from vecdb.config import QuotaSettings
from vecdb.coord.properties import check_not_denied
from vecdb.proxy.auth_interceptor import current_user
from vecdb.request_db import db_of

if TYPE_CHECKING:
    from vecdb.catalog_model import CollectionInfo
    from vecdb.proxy.base import Roles

MB = 1024.0 * 1024.0
RATE_LIMITED = Counter("milvus_proxy_rate_limit_req_count", "count of operation executed, by rate limit outcome",
                       ["node_id", "msg_type", "status"], registry=metrics.MILVUS)

# Milvus's rate types: the kind of each limited call and the unit its rate is in.
DML = {"Insert": "insert", "Upsert": "upsert", "Delete": "delete"}
DQL = {"Search": "search", "HybridSearch": "search", "Query": "query"}
DDL = {
    **dict.fromkeys(("CreateCollection", "DropCollection", "LoadCollection", "ReleaseCollection",
                     "RenameCollection", "AlterCollection", "AddCollectionField", "AlterCollectionField",
                     "TruncateCollection"), "ddl_collection"),
    **dict.fromkeys(("CreatePartition", "DropPartition", "LoadPartitions", "ReleasePartitions",
                     "CreateNamespace", "DropNamespace"), "ddl_partition"),  # (a namespace: vecdb.namespaces)
    **dict.fromkeys(("CreateIndex", "DropIndex", "AlterIndex"), "ddl_index"),
    "Flush": "flush",
    "ManualCompaction": "compaction",
}
RATE_KINDS = {**DML, **DQL, **DDL}  # each limited call's rate type
UNITS = {"insert": "MB/s", "upsert": "MB/s", "delete": "MB/s", "search": "vectors/s", "query": "qps"}
# a collection's own rate of each kind (Milvus's collection properties, in the units above)
RATE_PROPERTIES = {"insert": "collection.insertRate.max.mb", "upsert": "collection.upsertRate.max.mb",
                   "delete": "collection.deleteRate.max.mb", "search": "collection.searchRate.max.vps",
                   "query": "collection.queryRate.max.qps"}
# refused while memory or disk is over its limit (bulk import too, as Milvus denies bulk loads)
PROTECTED = frozenset(("Insert", "Upsert", "Import"))
MEMORY_EVERY, DISK_EVERY = 1.0, 10.0


_SWEEP_MIN = 1024  # rate buckets held before the first sweep of the full ones


class TokenBucket:
    """``rate`` per second, at most one second of it saved up; a call passes while the bucket is not
    in debt and then pays its whole cost."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, cost: float) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens <= 0:
                return False
            self._tokens -= cost
            return True

    def give_back(self, cost: float) -> None:
        """Undo a ``take`` of a call refused further on (at most a full bucket again)."""
        with self._lock:
            self._tokens = min(self.rate, self._tokens + cost)

    def full(self, now: float) -> bool:
        """Refilled to a whole second's rate by ``now``: as good as a fresh bucket (``Quota`` forgets it)."""
        return self._tokens + (now - self._at) * self.rate >= self.rate


def _cost(kind: str, request) -> float:
    if kind in ("insert", "upsert", "delete"):
        return request.ByteSize() / MB
    if kind == "search":
        subs = getattr(request, "requests", None)  # HybridSearch: the sum of its searches' nq
        if subs:
            return float(sum(_nq(s) for s in subs))
        return float(_nq(request))
    return 1.0


def _nq(request) -> int:
    """A search's query vectors: its ``nq`` (0 from older clients: the placeholder group counted, so a
    batch without it costs what it searches; the search itself refuses a group that does not parse)."""
    nq = getattr(request, "nq", 1)
    if nq == 0 and getattr(request, "placeholder_group", b""):
        try:
            group = common_pb2.PlaceholderGroup.FromString(request.placeholder_group)
        except DecodeError:
            return 1
        nq = sum(len(p.values) for p in group.placeholders)
    return max(1, nq)


def property_rate(properties: Mapping[str, str], kind: str) -> float:
    """A collection's own rate of ``kind`` (``RATE_PROPERTIES``); -1 (none) when unset, negative, or
    not a number (Milvus then keeps its configured rate)."""
    key = RATE_PROPERTIES.get(kind)
    raw = properties.get(key) if key is not None else None
    if raw is None:
        return -1.0
    try:
        rate = float(raw)
    except ValueError:
        return -1.0
    return rate if math.isfinite(rate) and rate >= 0 else -1.0


def memory_limit() -> int:
    """The memory this process may use: the cgroup's limit when there is one, else the machine's."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = open(path).read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def directory_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed meanwhile
    return total


class Quota:
    def __init__(self, settings: QuotaSettings, node_id: str = metrics.STANDALONE, data_dir: str | None = None,
                 memory_used: Callable[[], int] = resident_bytes, clock: Callable[[], float] = time.monotonic):
        self.s = settings
        self.node_id = node_id
        self._clock = clock
        self._memory_used = memory_used
        self._memory_limit = settings.memory_limit_bytes or memory_limit()
        self._data_dir = data_dir
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._sweep_at = _SWEEP_MIN  # buckets held before the next sweep of the full ones (_sweep)
        self._guard = threading.Lock()
        self._memory_at = self._disk_at = -1e18
        self._memory_over = self._disk_over = ""
        self._counters: dict[tuple[str, str], Counter] = {}

    def _rate(self, kind: str, scope: str) -> float:
        name = f"{kind}_rate" if scope == "max" else f"{kind}_rate_per_{scope}"
        return float(getattr(self.s, name, -1.0))

    def _bucket(self, kind: str, scope: str, key: str, rate: float) -> TokenBucket:
        with self._guard:
            bucket = self._buckets.get((kind, scope, key))
            if bucket is None or bucket.rate != rate:
                if bucket is None and len(self._buckets) >= self._sweep_at:
                    self._sweep()
                bucket = self._buckets[(kind, scope, key)] = TokenBucket(rate, self._clock)
            return bucket

    def _sweep(self) -> None:
        """Forget the full buckets (a fresh one is the same): per-collection and per-user keys come from
        requests (names of collections dropped since, or never created), so the buckets would grow
        with every name ever asked for. Next sweep at twice what is left (amortized O(1) a bucket)."""
        now = self._clock()
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._buckets))

    def _count(self, method: str, outcome: str) -> None:
        child = self._counters.get((method, outcome))
        if child is None:
            child = self._counters[(method, outcome)] = RATE_LIMITED.labels(self.node_id, method, outcome)
        child.inc()

    def admit(self, method: str, request, context=None) -> None:
        """Raise ``RateLimited`` or ``ForceDeny`` when ``method`` may not run now; else let it pay its cost.
        ``context`` (the gRPC call's) names the database and the user, looked at only when a
        per-collection or per-user limit is set."""
        if not self.s.enabled:
            return
        if method in PROTECTED:
            self._check_protection(method)
        kind = RATE_KINDS.get(method)
        if kind is None:
            return
        taken: list[TokenBucket] = []
        cost = 0.0
        for scope, key, rate in self._limits(kind, request, context):
            cost = cost or _cost(kind, request)  # the request's size is read only when a limit applies
            bucket = self._bucket(kind, scope, key, rate)
            if not bucket.take(cost):
                for paid in taken:  # a refused call costs nothing
                    paid.give_back(cost)
                self._count(method, "fail")
                where = {"max": "", "collection": f", collection={key.partition('.')[2]}",
                         "user": f", user={key}"}[scope]
                raise errors.RateLimited(f"rate limit exceeded[rate={rate:g} {UNITS.get(kind, 'qps')}, "
                                         f"{method}{where}]")
            taken.append(bucket)
        self._count(method, "success")

    def _limits(self, kind: str, request, context):
        """(scope, bucket key, rate) of each configured limit a call of ``kind`` pays."""
        for scope in ("max", "collection", "user") if kind in UNITS else ("max",):
            rate = self._rate(kind, scope)
            if rate < 0:
                continue
            if scope == "collection":
                key = f"{db_of(request, context)}.{getattr(request, 'collection_name', '')}"
            else:
                key = current_user(context) if scope == "user" and context is not None else ""
            yield scope, key, rate

    def refund(self, method: str, request, context=None) -> None:
        """Give back what ``admit`` charged a call that was refused afterwards."""
        kind = RATE_KINDS.get(method)
        if not self.s.enabled or kind is None:
            return
        cost = 0.0
        for scope, key, rate in self._limits(kind, request, context):
            cost = cost or _cost(kind, request)
            self._bucket(kind, scope, key, rate).give_back(cost)

    def admit_property_rate(self, method: str, request, context, info: CollectionInfo) -> None:
        """The collection's own rate property of ``method``'s kind, one more bucket (per collection
        id, so a rename keeps it); refused calls give back what ``admit`` charged them."""
        kind = DML.get(method) or DQL.get(method)
        if not self.s.enabled or kind is None:
            return
        rate = property_rate(info.properties, kind)
        if rate < 0:
            return
        if not self._bucket(kind, "property", str(info.id), rate).take(_cost(kind, request)):
            self.refund(method, request, context)
            self._count(method, "fail")
            raise errors.RateLimited(f"rate limit exceeded[rate={rate:g} {UNITS[kind]}, {method}, "
                                     f"collection={info.name}]")

    def _check_protection(self, method: str) -> None:
        now = self._clock()
        s = self.s
        if s.memory_protection and now - self._memory_at >= MEMORY_EVERY:
            self._memory_at = now
            used = self._memory_used()
            high = s.memory_high_water_level * self._memory_limit
            self._memory_over = (f"memory quota exceeded, please allocate more resources[used={used / MB:.0f} MB, "
                                 f"high water level {s.memory_high_water_level:g} of {self._memory_limit / MB:.0f} "
                                 "MB]") if used > high else ""
        if s.disk_quota_mb >= 0 and self._data_dir and now - self._disk_at >= DISK_EVERY:
            self._disk_at = now
            used = directory_bytes(self._data_dir)
            self._disk_over = (f"disk quota exceeded, please allocate more resources[used={used / MB:.0f} MB, "
                               f"quota {s.disk_quota_mb:g} MB]") if used > s.disk_quota_mb * MB else ""
        reason = self._memory_over or self._disk_over
        if reason:
            self._count(method, "fail")
            raise errors.ForceDeny(f"deny to write, reason: {reason}")


# what each call that names a collection is, for its database's force-deny properties
_KIND = {**DML, **DQL, "Import": "import"}


def admit_collection(roles: Roles, method: str, request, context, info: CollectionInfo) -> None:
    """The checks of ``method`` on ``info`` that need the catalog, after ``Quota.admit``: its
    database's force-deny property (ForceDeny, 9), then the collection's own rate property. Called
    by the handler once it has the collection (``request`` / ``context`` None: no rate to pay)."""
    _check_not_denied(roles, method, request, context, info.db, _KIND[method])
    if roles.quota is not None and request is not None:
        roles.quota.admit_property_rate(method, request, context, info)


def admit_database(roles: Roles, method: str, request, context, db: str) -> None:
    """``admit_collection`` for a call on a database's collections as a whole (Flush, a manual
    compaction): its database's force-deny property."""
    _check_not_denied(roles, method, request, context, db, DDL[method])


def _check_not_denied(roles: Roles, method: str, request, context, db: str, kind: str) -> None:
    """ForceDeny when ``db``'s properties refuse calls of ``kind``; the call then gets back what
    ``Quota.admit`` charged it."""
    try:
        check_not_denied(roles.catalog.database(db)["properties"], kind)
    except errors.ForceDeny:
        if roles.quota is not None and request is not None:
            roles.quota.refund(method, request, context)
        raise

"""``EtcdMetaStore``: the distributed ``MetaStore`` on etcd v3 (through aetcd's gRPC stubs).

Every key lives under a namespace (``prefix``, default ``vecdb/``), so clusters can share
an etcd. Reads are linearizable (etcd's default); a write returns once etcd committed it.

``txn`` is one etcd transaction, so it is all-or-nothing. etcd refuses a transaction
that both deletes and puts a key, so the deletions are rewritten to skip the keys the
transaction puts: a cleared prefix becomes the ranges between those keys, and a deleted
key that is also put is just put. etcd limits the operations per transaction
(``--max-txn-ops``, 128 by default; the servers vecdb starts allow 4096): a bigger
transaction raises ``InvalidParameter`` instead of being split, since that would not be atomic.

Watches (``watch``) are etcd watch streams on the store's event loop, one per watcher, with
etcd's revisions (``vecdb.storage.etcd_watch``); a txn's deletions are sent in key order so
that its delete events come in key order, as the in-process stores give them.

Why aetcd and not the design card's etcd3: etcd3 0.12 fails to import with protobuf >= 4
unless the whole process switches protobuf to its pure-Python mode, which made pymilvus
message encoding ~20x slower. aetcd is its maintained asyncio fork on current grpcio.
"""

from __future__ import annotations

import math
import threading

from vecdb.errors import InvalidParameter, IoFailed, LeaseExpired
from vecdb.storage.aioloop import LoopThread
from vecdb.storage.base import MetaStoreMethods
from vecdb.storage.keys import check_expect, check_meta_key, check_payload, check_prefix
from vecdb.storage.leases import check_ttl
from vecdb.storage.watch import WATCH_BACKLOG, check_backlog, check_start_revision

_PAGE = 1000  # keys per range request when scanning


def range_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (b"\\0": no bound)."""
    s = bytearray(prefix)
    while s:
        if s[-1] < 0xFF:
            s[-1] += 1
            return bytes(s)
        s.pop()
    return b"\0"


class EtcdMetaStore(MetaStoreMethods):
    """The distributed ``MetaStore`` (see module docstring). Thread-safe."""

    def __init__(self, endpoint: str = "127.0.0.1:2379", *, prefix: str = "vecdb/", timeout: float = 10.0,
                 max_txn_ops: int = 4096, watch_backlog: int = WATCH_BACKLOG):
        import aetcd

        host, port = _host_port(endpoint)
        self._ns = prefix.encode()
        self.timeout, self.max_txn_ops = float(timeout), int(max_txn_ops)
        self.watch_backlog = check_backlog(watch_backlog)  # events a watcher may hold unpolled
        self._watchers: set = set()  # open ones, closed with the store
        self._watchers_lock = threading.Lock()
        self._loop = LoopThread("etcd-meta")
        self._closed = False
        self._client = aetcd.Client(host=host, port=port, timeout=timeout,
                                    options={"grpc.max_receive_message_length": 64 << 20})
        try:
            self._run(self._client.connect(), "connect to etcd")
            self._run(self._range(self._ns + b"\0", None, 1), "connect to etcd")  # a round trip: is it there?
        except BaseException:
            self._loop.stop()
            raise

    def _run(self, coro, what: str):
        if self._closed:
            coro.close()
            raise IoFailed("metadata store is closed")
        from grpc.aio import AioRpcError

        try:
            return self._loop.run(coro, self.timeout + 5, what)
        except AioRpcError as e:
            if "lease not found" in (e.details() or ""):
                raise LeaseExpired(f"{what}: the lease expired or does not exist") from e
            raise IoFailed(f"{what}: etcd {e.code().name}: {e.details()}") from e

    def _k(self, key: str) -> bytes:
        return self._ns + check_meta_key(key).encode()

    async def _range(self, key: bytes, end: bytes | None, limit: int = 0):
        from aetcd import rpc

        req = rpc.RangeRequest(key=key, limit=limit)
        if end is not None:
            req.range_end = end
        return await self._client.kvstub.Range(req, timeout=self.timeout)

    # --- MetaStore -------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        r = self._run(self._range(self._k(key), None), "read metadata")
        return r.kvs[0].value if r.kvs else None

    def scan_revision(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        p = self._ns + check_prefix(prefix).encode()
        return self._run(self._scan(p, range_end(p)), "scan metadata")

    async def _scan(self, start: bytes, end: bytes) -> tuple[list[tuple[str, bytes]], int]:
        """The pairs in [start, end) at one revision (etcd's, when the first page was read), and it."""
        from aetcd import rpc

        out: list[tuple[str, bytes]] = []
        n = len(self._ns)
        revision = 0
        while True:
            req = rpc.RangeRequest(key=start, range_end=end, limit=_PAGE, revision=revision)
            r = await self._client.kvstub.Range(req, timeout=self.timeout)
            revision = revision or r.header.revision  # later pages read the same snapshot
            out.extend((kv.key[n:].decode(), kv.value) for kv in r.kvs)
            if not r.more or not r.kvs:
                return out, revision
            start = r.kvs[-1].key + b"\0"

    def txn(self, puts: dict[str, bytes] | None = None, deletes: list[str] | None = None,
            delete_prefixes: list[str] | None = None, expect: dict[str, bytes | None] | None = None,
            lease: int | None = None) -> bool:
        from aetcd import rpc

        compare = []
        for k, v in check_expect(expect).items():
            if v is None:  # absent: the key has no version
                compare.append(rpc.Compare(key=self._k(k), target=rpc.Compare.VERSION,
                                           result=rpc.Compare.EQUAL, version=0))
            else:
                compare.append(rpc.Compare(key=self._k(k), target=rpc.Compare.VALUE,
                                           result=rpc.Compare.EQUAL, value=v))
        put_keys = {self._k(k): check_payload(v) for k, v in (puts or {}).items()}
        del_keys = {self._k(k) for k in deletes or []}
        prefixes = [self._ns + check_prefix(p).encode() for p in delete_prefixes or []]
        merged = _merge([(p, range_end(p)) for p in prefixes])
        covered = sorted(put_keys)
        dels = [(lo2, hi2) for lo, hi in merged for lo2, hi2 in _holes(lo, hi, [k for k in covered if lo <= k < hi])]
        dels += [(k, b"") for k in del_keys if k not in put_keys and not any(lo <= k < hi for lo, hi in merged)]
        ops: list = [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=lo, range_end=hi))
                     for lo, hi in sorted(dels)]  # disjoint: in key order, so are the delete events
        for key, value in put_keys.items():
            ops.append(rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease or 0)))
        if not ops and not compare:
            return True
        if len(ops) + len(compare) > self.max_txn_ops:
            raise InvalidParameter(f"metadata transaction of {len(ops) + len(compare)} operations exceeds "
                                   f"etcd's limit of {self.max_txn_ops}")
        return self._run(self._txn(rpc.TxnRequest(compare=compare, success=ops)), "write metadata").succeeded

    async def _txn(self, req):
        return await self._client.kvstub.Txn(req, timeout=self.timeout)

    # --- leases ------------------------------------------------------------------------
    def grant_lease(self, ttl: float) -> int:
        from aetcd import rpc

        req = rpc.LeaseGrantRequest(TTL=math.ceil(check_ttl(ttl)))
        return self._run(self._call("LeaseGrant", req), "grant a lease").ID

    def renew_lease(self, lease: int) -> bool:
        return self._run(self._keepalive(lease), "renew a lease") > 0

    async def _keepalive(self, lease: int) -> int:
        from aetcd import rpc

        async for reply in self._client.leasestub.LeaseKeepAlive([rpc.LeaseKeepAliveRequest(ID=lease)],
                                                                timeout=self.timeout):
            return reply.TTL  # <= 0: expired
        return 0

    def revoke_lease(self, lease: int) -> None:
        from aetcd import rpc

        try:
            self._run(self._call("LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease)), "revoke a lease")
        except LeaseExpired:
            pass

    async def _call(self, method: str, req):
        return await getattr(self._client.leasestub, method)(req, timeout=self.timeout)

    # --- watches ----------------------------------------------------------------------
    def watch(self, prefix: str, start_revision: int | None = None):
        from vecdb.storage.etcd_watch import EtcdWatcher

        p = self._ns + check_prefix(prefix).encode()
        w = EtcdWatcher(self, p, range_end(p), check_start_revision(start_revision), self.watch_backlog)
        with self._watchers_lock:
            self._watchers.add(w)
        if self._closed:  # closed meanwhile: it would outlive the loop
            w.close()
            raise IoFailed("metadata store is closed")
        return w

    def _watch_closed(self, w) -> None:
        with self._watchers_lock:
            self._watchers.discard(w)

    def close(self) -> None:
        if self._closed:
            return
        with self._watchers_lock:
            watchers = list(self._watchers)
        for w in watchers:
            w.close()
        try:
            self._loop.run(self._client.close(), 5, "close etcd")
        except IoFailed:
            pass
        self._closed = True
        self._loop.stop()


def _merge(ranges: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Union of half-open key ranges, sorted and disjoint."""
    out: list[list[bytes]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def _holes(lo: bytes, hi: bytes, keep: list[bytes]) -> list[tuple[bytes, bytes]]:
    """[lo, hi) minus the single keys ``keep`` (sorted, inside the range), as ranges."""
    out = []
    start = lo
    for k in keep:
        if start < k:
            out.append((start, k))
        start = k + b"\0"
    if start < hi:
        out.append((start, hi))
    return out


def _host_port(endpoint: str) -> tuple[str, int]:
    e = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = e.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidParameter(f"invalid etcd endpoint {endpoint!r}: expected host:port")
    return host, int(port)

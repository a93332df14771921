"""The embedded backends served to other processes: a ``MetaStore`` and a ``Log`` behind the
internal ``Storage`` service (proto/storage.proto).

The local metadata store and the WAL are one process per directory (a flock each). A primary
process that opens them can serve them to other processes of the same node (the workers of
``vecdb standalone --workers N``), which then open ``storage.meta`` / ``storage.log`` =
``vecdb://host:port`` (``vecdb.storage.remote``) and see one store and one log, with every rule of
``vecdb.storage.base``: compare-and-set txns, revisions and watches, leases (a client that dies
stops renewing; its keys go after the ttl), ``append_batch(expect_last=...)``'s ``LogConflict``.

    server, port = serve_backends(meta, log, "127.0.0.1", 0)   # the primary
    ...
    server.stop()                                               # before closing meta and log

Each RPC is one call of the served store. Watches and followers are long polls held on the
server: ``WatchPoll`` waits on the store's watcher, ``Follow`` on the log's append signal
(``follow.AppendSignal``), each at most ``MAX_WAIT`` seconds per call, so a new record or change
reaches a waiting client in one round trip. Followers are stateless on the server (the client
sends its position); watchers are held by id (a random 62-bit number, so a restarted server
never mistakes an old id for one of its own) and forgotten when nobody polled one for
``idle_watch`` seconds (a client that died); the client then opens a new one from where it was
(``remote.RemoteWatcher``). A long poll holds one of the server's threads while it waits, so the
pool is large (``workers``; Python threads blocked on a condition cost little).

Calls go over the process's internal TLS and cluster secret unless ``secret`` / ``tls`` are given
(``vecdb.rpc.transport``), like the coord's and the query nodes' services.

For debugging, ``python -m vecdb.storage.backend_server --data-dir D --port P`` serves a data
directory's metadata store and log on their own (``main``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vecdb import errors
from vecdb.rpc.gen import common_pb2 as common
from vecdb.rpc.gen import storage_pb2 as pb
from vecdb.rpc.gen.storage_pb2_grpc import StorageServicer
from vecdb.rpc.transport import InternalTls, serve
from vecdb.storage.base import Log, MetaStore
from vecdb.storage.watch import PUT, WatchCompacted

log = logging.getLogger(__name__)

MAX_WAIT = 10.0  # seconds one long poll (WatchPoll, Follow) waits at most; the client polls again
PAGE_BYTES = 16 << 20  # payload bytes per Read / Follow reply (at least one record)
IDLE_WATCH = 300.0  # seconds after which a watcher nobody polled is closed
_PROBE = "\x00vecdb-probe\x00"  # a prefix no key has: scan_revision of it reads just the revision
_EMPTY = common.Empty()
_LEASE_BITS = 32
_LEASE_MASK = (1 << _LEASE_BITS) - 1


class _Held:
    __slots__ = ("watcher", "used", "busy")

    def __init__(self, watcher) -> None:
        self.watcher, self.used, self.busy = watcher, time.monotonic(), 0


class _Waiting:
    """The calls waiting on one channel (under ``_ChannelWaits._lock``)."""

    __slots__ = ("calls", "end", "count", "cond")

    def __init__(self, end: int, lock: threading.Lock) -> None:
        self.calls, self.end, self.count = 0, end, 0
        self.cond = threading.Condition(lock)


class _ChannelWaits:
    """Wakes the ``Follow`` calls waiting on a channel when its end moves, and only those.

    The log's ``AppendSignal`` fires on an append to any channel; if every waiting call woke on it
    to read its channel again, each append would cost a wake-up of every follower of every worker
    (measured: 100 waiting followers made an append 3x slower). One thread waits on the signal
    instead, checks ``last_position`` of the channels that have waiters and, for each whose end
    moved, bumps its count and wakes its waiters. A waiter takes the count before it reads, so an
    append between its read and its wait is never missed."""

    def __init__(self, log_: Log, signal) -> None:
        self._log, self._signal = log_, signal
        self._lock = threading.Lock()
        self._channels: dict[str, _Waiting] = {}
        self._stopped = False
        threading.Thread(target=self._run, name="storage-follow-waits", daemon=True).start()

    @contextmanager
    def waiting(self, channel: str) -> Iterator[_Waiting]:
        """The channel's ``_Waiting``, counted as waited on while in the block."""
        end = self._log.last_position(channel)
        with self._lock:
            w = self._channels.get(channel)
            if w is None:
                w = self._channels[channel] = _Waiting(end, self._lock)
            w.calls += 1
        try:
            yield w
        finally:
            with self._lock:
                w.calls -= 1
                if not w.calls:
                    del self._channels[channel]

    def wait(self, w: _Waiting, seen: int, timeout: float) -> None:
        """Until the channel's end moved past count ``seen``, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while w.count == seen and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                w.cond.wait(left)

    def _run(self) -> None:
        signal = self._signal
        while not self._stopped:
            seen = signal.generation
            with self._lock:
                channels = list(self._channels)
            ends = []
            for ch in channels:
                try:
                    ends.append((ch, self._log.last_position(ch)))
                except errors.VecdbError:  # the log is closed: the waiters find out when they read
                    ends.append((ch, -1))
            with self._lock:
                for ch, end in ends:
                    w = self._channels.get(ch)
                    if w is not None and w.end != end:
                        w.end = end
                        w.count += 1
                        w.cond.notify_all()
            signal.wait(seen, 1.0)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for w in self._channels.values():
                w.cond.notify_all()


class StorageService(StorageServicer):
    """The RPCs of proto/storage.proto, answered by ``meta`` and ``log`` (either may be None: its
    calls are then Unimplemented)."""

    def __init__(self, meta: MetaStore | None, log: Log | None, idle_watch: float = IDLE_WATCH):
        self._meta, self._log, self.idle_watch = meta, log, idle_watch
        self._lock = threading.Lock()
        self._watchers: dict[int, _Held] = {}
        self._swept = time.monotonic()
        self._stopped = False
        self._epoch = secrets.randbits(30) or 1  # see _lease
        self._waits: _ChannelWaits | None = None  # Follow's, started by the first

    @property
    def meta(self) -> MetaStore:
        if self._meta is None:
            raise errors.Unimplemented("this server serves no metadata store")
        return self._meta

    @property
    def log(self) -> Log:
        if self._log is None:
            raise errors.Unimplemented("this server serves no log")
        return self._log

    # --- MetaStore ------------------------------------------------------------------------------

    def Get(self, request: pb.KeyRequest, context) -> pb.ValueReply:
        value = self.meta.get(request.key)
        return pb.ValueReply() if value is None else pb.ValueReply(value=value)

    def Scan(self, request: pb.ScanRequest, context) -> pb.ScanReply:
        pairs, revision = self.meta.scan_revision(request.prefix)
        return pb.ScanReply(keys=[k for k, _ in pairs], values=[v for _, v in pairs], revision=revision)

    def Txn(self, request: pb.TxnRequest, context) -> pb.TxnReply:
        lease = None
        if request.HasField("lease"):
            lease = self._lease(request.lease)
            if lease is None:
                raise errors.LeaseExpired(f"lease {request.lease} expired or does not exist")
        applied = self.meta.txn(
            puts=dict(zip(request.put_keys, request.put_values, strict=True)),
            deletes=list(request.deletes), delete_prefixes=list(request.delete_prefixes),
            expect={e.key: (e.value if e.HasField("value") else None) for e in request.expect}, lease=lease)
        return pb.TxnReply(applied=applied)

    # Lease ids: the served store's (1, 2, ... in each process) under this server's random epoch, so
    # that a client of a restarted server cannot renew, or put with, another client's new lease.
    def _lease(self, lease: int) -> int | None:
        """The store's id of a lease this server granted; None for another server's."""
        return lease & _LEASE_MASK if lease >> _LEASE_BITS == self._epoch else None

    def GrantLease(self, request: pb.GrantLeaseRequest, context) -> pb.LeaseReply:
        lid = self.meta.grant_lease(request.ttl)
        if lid > _LEASE_MASK:
            raise errors.InternalError(f"lease id {lid} does not fit in {_LEASE_BITS} bits")
        return pb.LeaseReply(lease=self._epoch << _LEASE_BITS | lid)

    def RenewLease(self, request: pb.LeaseRequest, context) -> pb.RenewLeaseReply:
        lease = self._lease(request.lease)
        return pb.RenewLeaseReply(alive=lease is not None and self.meta.renew_lease(lease))

    def RevokeLease(self, request: pb.LeaseRequest, context) -> common.Empty:
        lease = self._lease(request.lease)
        if lease is not None:
            self.meta.revoke_lease(lease)
        return _EMPTY

    # --- watches --------------------------------------------------------------------------------

    def WatchOpen(self, request: pb.WatchOpenRequest, context) -> pb.WatchOpenReply:
        self._sweep()
        meta = self.meta
        if request.HasField("start_revision"):
            start = request.start_revision
        else:  # "after this call": from the revision now + 1, which a reopened client resumes from too
            start = meta.scan_revision(_PROBE)[1] + 1
        try:
            watcher = meta.watch(request.prefix, start)
        except WatchCompacted as e:
            return pb.WatchOpenReply(compacted=e.message)
        with self._lock:
            if self._stopped:
                watcher.close()
                raise errors.ServiceUnavailable("the storage server is stopping")
            wid = secrets.randbits(62) or 1
            self._watchers[wid] = _Held(watcher)
        return pb.WatchOpenReply(watch_id=wid, start_revision=start)

    def WatchPoll(self, request: pb.WatchPollRequest, context) -> pb.WatchPollReply:
        self._sweep()
        with self._lock:
            held = self._watchers.get(request.watch_id)
            if held is None:
                return pb.WatchPollReply(gone=True)
            held.busy += 1
        try:
            events = held.watcher.poll(min(max(request.timeout, 0.0), MAX_WAIT), request.max_events or 1024)
        except WatchCompacted as e:
            return pb.WatchPollReply(compacted=e.message)
        except errors.IoFailed:
            if self._stopped:  # closed by stop(): the client opens a new one where the server is back
                return pb.WatchPollReply(gone=True)
            raise
        finally:
            with self._lock:
                held.busy -= 1
                held.used = time.monotonic()
        return pb.WatchPollReply(kinds=[0 if ev.kind == PUT else 1 for ev in events], keys=[ev.key for ev in events],
                                 values=[ev.value or b"" for ev in events], revisions=[ev.revision for ev in events])

    def WatchClose(self, request: pb.WatchCloseRequest, context) -> common.Empty:
        with self._lock:
            held = self._watchers.pop(request.watch_id, None)
        if held is not None:
            held.watcher.close()
        return _EMPTY

    def _sweep(self) -> None:
        """Close the watchers nobody polled for ``idle_watch`` seconds (checked every few seconds)."""
        now = time.monotonic()
        if now - self._swept < min(self.idle_watch / 2, 5.0):
            return
        with self._lock:
            self._swept = now
            idle = [wid for wid, h in self._watchers.items() if not h.busy and now - h.used > self.idle_watch]
            doomed = [self._watchers.pop(wid) for wid in idle]
        for h in doomed:
            log.info("closing a metadata watcher nobody polled for %.0f s", self.idle_watch)
            h.watcher.close()

    def watchers(self) -> int:
        """How many watchers the server holds."""
        with self._lock:
            return len(self._watchers)

    def stop(self) -> None:
        """Close every watcher (a blocked poll wakes up) and refuse new ones."""
        with self._lock:
            self._stopped = True
            doomed, self._watchers = list(self._watchers.values()), {}
            waits = self._waits
        for h in doomed:
            h.watcher.close()
        if waits is not None:
            waits.stop()

    # --- Log ------------------------------------------------------------------------------------

    def Append(self, request: pb.AppendRequest, context) -> pb.AppendReply:
        positions = self.log.append_batch(request.channel, list(request.payloads),
                                          expect_last=request.expect_last if request.HasField("expect_last") else None)
        return pb.AppendReply(first=positions[0] if positions else 0, count=len(positions))

    def _page(self, channel: str, start: int, end: int | None, max_records: int, max_bytes: int) -> pb.Records:
        positions: list[int] = []
        payloads: list[bytes] = []
        size = 0
        for pos, payload in self.log.read(channel, start, end):
            positions.append(pos)
            payloads.append(payload)
            size += len(payload)
            if len(positions) >= max_records or size >= max_bytes:
                break
        return pb.Records(positions=positions, payloads=payloads)

    def Read(self, request: pb.ReadRequest, context) -> pb.Records:
        log_ = self.log
        limit = log_.last_position(request.channel)  # the snapshot: what is acknowledged now
        if request.HasField("end"):
            limit = min(limit, request.end)
        page = self._page(request.channel, request.start, limit, 1 << 62, request.max_bytes or PAGE_BYTES)
        page.limit = limit
        return page

    def Follow(self, request: pb.FollowRequest, context) -> pb.Records:
        log_ = self.log
        timeout = min(max(request.timeout, 0.0), MAX_WAIT)
        max_records, max_bytes = request.max_records or 1024, request.max_bytes or PAGE_BYTES
        signal = getattr(log_, "appended", None)
        if signal is None:  # a log without an append signal: its own follower
            follower = log_.follow(request.channel, request.after + 1)
            try:
                records = follower.poll(timeout, max_records)
            finally:
                follower.close()
            return pb.Records(positions=[p for p, _ in records], payloads=[v for _, v in records])
        deadline = time.monotonic() + timeout
        waits = self._channel_waits(log_, signal)
        with waits.waiting(request.channel) as w:
            while True:
                seen = w.count
                page = self._page(request.channel, request.after + 1, None, max_records, max_bytes)
                if page.positions:
                    return page
                left = deadline - time.monotonic()
                if left <= 0 or not context.is_active():
                    return page
                waits.wait(w, seen, min(left, 1.0))

    def _channel_waits(self, log_: Log, signal) -> _ChannelWaits:
        with self._lock:
            if self._waits is None:
                self._waits = _ChannelWaits(log_, signal)
            return self._waits

    def LastPosition(self, request: pb.ChannelRequest, context) -> pb.PositionReply:
        return pb.PositionReply(position=self.log.last_position(request.channel))

    def LastPositions(self, request: common.ChannelList, context) -> pb.PositionsReply:
        log_ = self.log
        return pb.PositionsReply(positions=[log_.last_position(ch) for ch in request.names])

    def TruncateBefore(self, request: pb.TruncateRequest, context) -> common.Empty:
        self.log.truncate_before(request.channel, request.position)
        return _EMPTY

    def Channels(self, request: common.Empty, context) -> common.ChannelList:
        return common.ChannelList(names=self.log.channels())

    def DropChannel(self, request: pb.ChannelRequest, context) -> common.Empty:
        self.log.drop_channel(request.channel)
        return _EMPTY


class BackendServer:
    """A running ``Storage`` service (``serve_backends``): ``port``, ``service`` and ``stop()``."""

    def __init__(self, service: StorageService, server, port: int):
        self.service, self.server, self.port = service, server, port

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (calls in flight get ``grace`` seconds) and close the watchers. The stores
        stay open: their owner closes them after this."""
        self.service.stop()
        self.server.stop(grace).wait()


def serve_backends(meta: MetaStore | None, log: Log | None, host: str = "127.0.0.1", port: int = 0, *,
                   secret: str | None = None, tls: InternalTls | None = None, workers: int = 512,
                   idle_watch: float = IDLE_WATCH) -> tuple[BackendServer, int]:
    """Serve ``meta`` and ``log`` (either may be None) on ``host:port`` (0: a free port) to
    ``vecdb://host:port`` clients; returns the server and its port. ``secret`` / ``tls``: the cluster
    secret and internal TLS (None: the process's, ``transport.use_cluster_secret`` /
    ``use_internal_tls``). ``workers``: the most calls served at once, long polls included."""
    service = StorageService(meta, log, idle_watch)
    server, bound = serve("storage", service, host, port, workers=workers, secret=secret, tls=tls)
    return BackendServer(service, server, bound), bound


def main(argv: list[str] | None = None) -> int:
    """``python -m vecdb.storage.backend_server --data-dir D [--host H] [--port P]``: serve the
    embedded metadata store and log of data directory D (``D/meta``, ``D/wal``, as
    ``storage.meta = local`` and ``storage.log = wal`` open them) until SIGINT/SIGTERM: for
    debugging (no cluster secret or TLS; the directory must not be open in another process)."""
    import argparse
    import os

    from vecdb import signals
    from vecdb.storage.local_meta import LocalMetaStore
    from vecdb.storage.wal import WalLog

    ap = argparse.ArgumentParser(prog="python -m vecdb.storage.backend_server", description=main.__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    from vecdb.cli import port_flag  # 0-65535, else a usage error

    ap.add_argument("--port", type=port_flag, default=0)
    args = ap.parse_args(argv)
    root = os.path.abspath(args.data_dir)
    meta = LocalMetaStore(os.path.join(root, "meta"))
    wal = WalLog(os.path.join(root, "wal"))
    stop = signals.stop_event()
    server, port = serve_backends(meta, wal, args.host, args.port, secret="", tls=None)
    print(f"serving {root} on vecdb://{args.host}:{port}", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
        meta.close()
        wal.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

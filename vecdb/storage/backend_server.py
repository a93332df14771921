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
server: ``WatchPoll`` waits on the store's watcher, ``Follow`` (one channel) and ``FollowMany``
(every follower of a client's ``RemoteLog`` in one call) on the log's append signal
(``follow.AppendSignal``, through ``_ChannelWaits``), each at most ``MAX_WAIT`` seconds per call, so
a new record or change reaches a waiting client in one round trip. ``Follow`` stays for clients
older than ``FollowMany``. Followers are stateless on the server (the client sends its positions);
watchers are held by id (a random 62-bit number, so a restarted server never mistakes an old id
for one of its own) and forgotten when nobody polled one for ``idle_watch`` seconds (a client that
died); the client then opens a new one from where it was (``remote.RemoteWatcher``). A long poll
holds one of the server's threads while it waits, so the pool is large (``workers``; Python threads
blocked on a condition cost little). (With a ``Follow`` per follower, a worker's 1,000 tailers
filled the 512 threads: other calls queued behind them, 15 appends in 10 s.)

Calls go over the process's internal TLS and cluster secret unless ``secret`` / ``tls`` are given
(``vecdb.rpc.transport``), like the coord's and the query nodes' services.

For debugging, ``python -m vecdb.storage.backend_server --data-dir D --port P`` serves a data
directory's metadata store and log on their own (``main``).
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
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
PAGE_BYTES = 16 << 20  # payload bytes per Read / Follow / FollowMany reply (at least one record)
_LOOK = 0.1  # seconds between looks of a FollowMany call on a log without an append signal
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
    """The calls waiting on one channel (under ``_ChannelWaits._lock``): ``calls`` ``Follow`` calls
    on ``cond``, the ``FollowMany`` calls in ``many``. ``end``: a past reading of the channel's end
    (None: not read yet, so the next look counts as a move)."""

    __slots__ = ("calls", "many", "end", "count", "cond", "used")

    def __init__(self, end: int | None, lock: threading.Lock) -> None:
        self.calls, self.end, self.count = 0, end, 0
        self.many: set[_Many] = set()
        self.cond = threading.Condition(lock)
        self.used = time.monotonic()


class _Many:
    """One ``FollowMany`` call's wait (under ``_ChannelWaits._lock``): the channels whose end moved
    since it last looked, and whether the call ended (its client cancelled it)."""

    __slots__ = ("cond", "moved", "ended")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.moved: set[str] = set()
        self.ended = False


class _ChannelWaits:
    """Wakes the ``Follow`` / ``FollowMany`` calls waiting on a channel when its end moves, and only
    those.

    The log's ``AppendSignal`` fires on an append to any channel; if every waiting call woke on it
    to read its channel again, each append would cost a wake-up of every follower of every worker
    (measured: 100 waiting followers made an append 3x slower). One thread waits on the signal
    instead, checks ``last_position`` of the channels that have (or lately had) waiters and, for
    each whose end moved, bumps its count and wakes its waiters (a ``FollowMany`` call is told which channels
    moved). A waiter registers before it reads, so an append after its read is never missed.

    A channel's entry, and the end the thread last read, outlive its calls by ``_KEEP`` seconds: a
    ``FollowMany`` call of a thousand channels follows the previous one at once, and takes their ends
    from their entries instead of reading each (that was half of its time). An end read before the
    call registered is safe to trust: an append after that read moves the end the thread reads next,
    and wakes the call then."""

    _KEEP = 60.0

    def __init__(self, log_: Log, signal) -> None:
        self._log, self._signal = log_, signal
        self._lock = threading.Lock()
        self._channels: dict[str, _Waiting] = {}
        self.stopped = False
        self._swept = time.monotonic()
        threading.Thread(target=self._run, name="storage-follow-waits", daemon=True).start()

    def _entry(self, channel: str, end: int | None) -> _Waiting:
        """Under the lock: the channel's entry, made with ``end`` when it has none."""
        w = self._channels.get(channel)
        if w is None:
            w = self._channels[channel] = _Waiting(end, self._lock)
        return w

    @contextmanager
    def waiting(self, channel: str) -> Iterator[_Waiting]:
        """The channel's ``_Waiting``, counted as waited on while in the block."""
        end = self._log.last_position(channel)
        with self._lock:
            w = self._entry(channel, end)
            if w.end is None:
                w.end = end
            w.calls += 1
        try:
            yield w
        finally:
            with self._lock:
                w.calls -= 1
                w.used = time.monotonic()

    def wait(self, w: _Waiting, seen: int, timeout: float) -> None:
        """Until the channel's end moved past count ``seen``, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while w.count == seen and not self.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                w.cond.wait(left)

    @contextmanager
    def waiting_many(self, channels: Iterable[str]) -> Iterator[tuple[_Many, dict[str, int | None]]]:
        """A ``_Many`` told of every move of these channels' ends while in the block, and their ends
        as last read (None: never read)."""
        m = _Many(self._lock)
        ends: dict[str, int | None] = {}
        with self._lock:
            entries = []
            for ch in channels:
                w = self._entry(ch, None)
                w.many.add(m)
                entries.append(w)
                ends[ch] = w.end
        try:
            yield m, ends
        finally:
            now = time.monotonic()
            with self._lock:
                for w in entries:
                    w.many.discard(m)
                    w.used = now

    def seen_ends(self, ends: dict[str, int]) -> None:
        """Ends a caller read after it registered: they stand for the entries never read yet (so
        the next look does not take them for moves)."""
        with self._lock:
            for ch, end in ends.items():
                w = self._channels.get(ch)
                if w is not None and w.end is None:
                    w.end = end

    def wait_many(self, m: _Many, timeout: float) -> set[str]:
        """The channels that moved since the last call, waiting up to ``timeout`` seconds for one
        (or for the call's end)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not m.moved and not m.ended and not self.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                m.cond.wait(left)
            moved, m.moved = m.moved, set()
            return moved

    def end_call(self, m: _Many) -> None:
        """The call is over (answered, or cancelled by its client): stop waiting."""
        with self._lock:
            m.ended = True
            m.cond.notify()

    def _run(self) -> None:
        """Reads the ends of the channels appended to (``AppendSignal.take_moved``), and every waited
        channel's each second (a drop, say, moves an end without an append)."""
        signal = self._signal
        every_due = 0.0
        while not self.stopped:
            seen = signal.generation
            moved = signal.take_moved()
            now = time.monotonic()
            with self._lock:
                if moved is None or now >= every_due:
                    channels = list(self._channels)  # (each end stays current while its entry is kept)
                    every_due = now + 1.0
                else:  # one append among 1,000 waited channels read all 1,000 ends
                    channels = [ch for ch in moved if ch in self._channels]
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
                        for m in w.many:
                            m.moved.add(ch)
                            m.cond.notify()
                self._sweep()
            signal.wait(seen, 1.0)

    def _sweep(self) -> None:
        """Under the lock: forget the entries nobody waited on for ``_KEEP`` seconds."""
        now = time.monotonic()
        if now - self._swept < self._KEEP / 4:
            return
        self._swept = now
        for ch in [ch for ch, w in self._channels.items()
                   if not w.calls and not w.many and now - w.used > self._KEEP]:
            del self._channels[ch]

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for w in self._channels.values():
                w.cond.notify_all()
                for m in w.many:
                    m.cond.notify()


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
        self.long_polls: collections.Counter[str] = collections.Counter()  # Follow / FollowMany calls served

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
        self._count("Follow")
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
                if left <= 0 or not context.is_active() or waits.stopped:
                    return page
                waits.wait(w, seen, min(left, 1.0))

    def FollowMany(self, request: pb.FollowManyRequest, context) -> pb.FollowManyReply:
        """Several channels' ``Follow`` in one call (one per ``RemoteLog``, for all its followers):
        the first look reads every channel's end, and each later one only the channels whose end
        moved (``_ChannelWaits``); a channel whose end is not past its position is not read."""
        log_ = self.log
        channels, after = list(request.channels), list(request.after)
        self._count("FollowMany", len(channels))
        if len(after) != len(channels):
            raise errors.InvalidParameter(f"FollowMany: {len(channels)} channels and {len(after)} positions")
        timeout = min(max(request.timeout, 0.0), MAX_WAIT)
        deadline = time.monotonic() + timeout
        max_records, max_bytes = request.max_records or 1024, request.max_bytes or PAGE_BYTES
        entries: dict[str, list[int]] = {}  # channel -> its indexes in the request
        for i, ch in enumerate(channels):
            entries.setdefault(ch, []).append(i)
        signal = getattr(log_, "appended", None)
        if signal is None:  # a log without an append signal: looked at every _LOOK seconds
            while True:
                reply, _ = self._many_pages(log_, entries, after, max_records, max_bytes)
                left = deadline - time.monotonic()
                if reply.indexes or left <= 0 or not context.is_active():
                    return reply
                time.sleep(min(left, _LOOK))
        waits = self._channel_waits(log_, signal)
        if waits.stopped:  # (else the client's next call would come back at once, for the whole grace period)
            raise errors.ServiceUnavailable("the storage server is stopping")
        with waits.waiting_many(entries) as (m, known):
            if not context.add_callback(lambda: waits.end_call(m)):
                return pb.FollowManyReply()  # (the call ended already)
            reply, ends = self._many_pages(log_, entries, after, max_records, max_bytes, known)
            waits.seen_ends({ch: end for ch, end in ends.items() if known[ch] is None})
            while True:
                left = deadline - time.monotonic()
                if reply.indexes or left <= 0 or m.ended or waits.stopped:
                    return reply
                moved = waits.wait_many(m, left)
                reply, _ = self._many_pages(log_, {ch: entries[ch] for ch in moved}, after, max_records, max_bytes)

    def _many_pages(self, log_: Log, entries: dict[str, list[int]], after: list[int], max_records: int,
                    max_bytes: int, known: dict[str, int | None] | None = None
                    ) -> tuple[pb.FollowManyReply, dict[str, int]]:
        """The records of ``entries`` (channel -> request indexes) past their positions, in request
        order, about ``max_bytes`` in all; and the channels' ends (from ``known`` where it has one)."""
        ends = {}
        for ch in entries:
            end = None if known is None else known[ch]
            ends[ch] = log_.last_position(ch) if end is None else end
        due = sorted((i, ch) for ch, idx in entries.items() for i in idx if ends[ch] > after[i])
        reply = pb.FollowManyReply()
        size = 0
        for i, ch in due:
            if size >= max_bytes:
                break
            page = self._page(ch, after[i] + 1, None, max_records, max_bytes - size)
            if page.positions:
                reply.indexes.append(i)
                reply.pages.append(page)
                size += sum(len(p) for p in page.payloads)
        return reply, ends

    def _count(self, method: str, channels: int = 0) -> None:
        with self._lock:
            self.long_polls[method] += 1
            if channels:
                self.long_polls[f"{method} channels"] += channels

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

"""``RemoteMetaStore`` and ``RemoteLog``: the metadata store and the log of another process of the
node, served by ``vecdb.storage.backend_server`` (``storage.meta`` / ``storage.log`` =
``vecdb://host:port``).

Each call is one RPC to the served store, with the same rules (``vecdb.storage.base``) and the
same errors (``InvalidParameter``, ``LeaseExpired``, ``LogConflict``, ``IoFailed``: arguments are
checked here too, as the embedded stores check them). A server that cannot be reached, or
stopped during a call, is ``IoFailed`` (a failure of the medium); a write that failed that way
may or may not have been applied, as with etcd.

Payloads cross as bytes, batched: ``read`` fetches pages of about 16 MB (its snapshot is taken by
the first page, fetched in the call). The followers of one ``RemoteLog`` share two long polls
(``_SharedPoll``): two threads, started with the first follower and ended with the last, keep a
``FollowMany`` call outstanding for the open followers' channels from what each has buffered (one
call for those that got records lately, one for the others), and hand each page to its follower's
buffer; ``poll`` takes from the buffer and waits on it (so
``poll(timeout=0)`` asks the server nothing). A follower opened or closed, or one whose full buffer
was drained, cancels the outstanding call and the thread asks again at once. So a worker's idle
followers cost one call per ``MAX_WAIT`` seconds, not one per ``poll`` each: 1,000 idle followers
polled every 0.5 s were 700 calls a second (the server's thread pool was their limit) and 36% of a
core in the client, 48% in the server (``.dev/remotefollow/probe.py``).

Watches (``RemoteWatcher``) are long polls on a watcher the server holds. Like etcd's they resume
on their own when the server is gone (restarted, or it forgot a watcher not polled for a while):
the next poll opens a new one from the last revision handed out + 1 (meanwhile polls return
nothing); if the served store no longer keeps that revision (a restarted local store keeps none
before it), the watcher raises ``WatchCompacted`` and stays dropped, and the caller scans again
(``watch.PrefixWatch`` does). Leases live in the served store: a client that stops renewing
(or dies) loses its keys after the ttl, as with etcd.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator

from vecdb import errors
from vecdb.errors import InvalidParameter, IoFailed
from vecdb.rpc.gen import common_pb2 as common
from vecdb.rpc.gen import storage_pb2 as pb
from vecdb.rpc.transport import Client, PendingCall
from vecdb.storage.base import MetaStoreMethods
from vecdb.storage.keys import (
    check_channel,
    check_expect,
    check_meta_key,
    check_payload,
    check_position,
    check_prefix,
    check_read,
)
from vecdb.storage.leases import check_ttl
from vecdb.storage.stall import Heard
from vecdb.storage.watch import DELETE, PUT, WatchCompacted, WatchEvent, check_start_revision

log = logging.getLogger(__name__)

MAX_WAIT = 10.0  # seconds one long-poll RPC waits at most (the server's cap too)
PAGE_BYTES = 16 << 20
_PAGE_RECORDS = 1024  # records per channel in one FollowMany reply
_BUFFER_RECORDS = 4096  # a follower holding this many records (or PAGE_BYTES) is not asked for more
_BUFFER_PAGES = 4  # all the followers of a log hold at most about this many PAGE_BYTES
_RESTART = 0.02  # seconds at least between two FollowMany calls when followers come and go
_HOT = 5.0  # seconds a follower that got records stays in the hot call (_SharedPoll)
_SLACK = 10.0  # seconds an RPC may take beyond the time it asks the server to wait
_RETRY = 0.2  # seconds between attempts to reopen a watch while the server is away
_EMPTY = common.Empty()


def parse_address(url: str) -> str:
    """``vecdb://host:port`` -> ``host:port``."""
    address = url[len("vecdb://"):] if url.startswith("vecdb://") else url
    host, _, port = address.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise InvalidParameter(f"invalid backend address {url!r}: vecdb://host:port")
    return f"{host}:{port}"


class Unreachable(IoFailed):
    """The storage server could not be reached, or stopped during the call."""


class _Remote:
    """One connection to a storage server; ``_call`` turns every failure into the store's errors."""

    _what = "storage"

    def __init__(self, url: str, timeout: float = 30.0, secret: str | None = None, tls=None):
        self.address = parse_address(url)
        self.timeout = timeout
        self._secret, self._tls = secret, tls
        self._client_: Client | None = None
        self._client_lock = threading.Lock()
        self._closed = False

    @property
    def _client(self) -> Client:
        """The connection, made at the first call: with the process's cluster secret and internal TLS
        as they are then (``transport.use_cluster_secret`` / ``use_internal_tls``, which a process may
        set after opening its storage) unless the constructor was given them."""
        client = self._client_
        if client is None:
            with self._client_lock:
                if self._closed:
                    raise IoFailed(f"{self._what} is closed")
                if self._client_ is None:
                    self._client_ = Client(self.address, "storage", timeout=self.timeout, secret=self._secret,
                                           tls=self._tls)
                client = self._client_
        return client

    def _call(self, method: str, request, timeout: float | None = None):
        if self._closed:
            raise IoFailed(f"{self._what} is closed")
        try:
            return self._client.invoke(method, request, timeout)
        except errors.VecdbError as e:
            raise self._failure(e) from None
        except ValueError as e:  # grpc: the channel was closed during the call
            raise IoFailed(f"{self._what} is closed ({e})") from None

    def _start(self, method: str, request, timeout: float) -> PendingCall:
        """``method`` called without waiting (``PendingCall``; its errors go through ``_failure``)."""
        if self._closed:
            raise IoFailed(f"{self._what} is closed")
        try:
            return self._client.start(method, request, timeout)
        except errors.VecdbError as e:
            raise self._failure(e) from None
        except ValueError as e:
            raise IoFailed(f"{self._what} is closed ({e})") from None

    def _failure(self, e: errors.VecdbError) -> errors.VecdbError:
        """The store's error for a call's ``e``: the server away is ``Unreachable``."""
        if isinstance(e, errors.ServiceUnavailable):
            if self._closed:
                return IoFailed(f"{self._what} is closed")
            return Unreachable(f"{self._what} at {self.address}: {e.message}")
        if isinstance(e, errors.Unimplemented):
            return IoFailed(f"{self._what} at {self.address}: {e.message}")
        return e

    def close(self) -> None:
        with self._client_lock:
            self._closed = True
            client = self._client_
        if client is not None:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RemoteMetaStore(_Remote, MetaStoreMethods):
    """The ``MetaStore`` served at ``vecdb://host:port`` (see module docstring). Thread-safe."""

    _what = "metadata store"

    def __init__(self, url: str, timeout: float = 30.0, secret: str | None = None, tls=None):
        super().__init__(url, timeout, secret, tls)
        self._watchers: set[RemoteWatcher] = set()
        self._watchers_lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        reply = self._call("Get", pb.KeyRequest(key=check_meta_key(key)))
        return reply.value if reply.HasField("value") else None

    def scan_revision(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        reply = self._call("Scan", pb.ScanRequest(prefix=check_prefix(prefix)))
        return list(zip(reply.keys, reply.values, strict=True)), reply.revision

    def txn(self, puts: dict[str, bytes] | None = None, deletes: list[str] | None = None,
            delete_prefixes: list[str] | None = None, expect: dict[str, bytes | None] | None = None,
            lease: int | None = None) -> bool:
        puts = {check_meta_key(k): check_payload(v) for k, v in (puts or {}).items()}
        request = pb.TxnRequest(
            put_keys=list(puts), put_values=list(puts.values()),
            deletes=[check_meta_key(k) for k in deletes or []],
            delete_prefixes=[check_prefix(p) for p in delete_prefixes or []],
            expect=[pb.Expected(key=k) if v is None else pb.Expected(key=k, value=v)
                    for k, v in check_expect(expect).items()])
        if lease is not None:
            request.lease = _lease_id(lease)
        return self._call("Txn", request).applied

    def grant_lease(self, ttl: float) -> int:
        return self._call("GrantLease", pb.GrantLeaseRequest(ttl=check_ttl(ttl))).lease

    def renew_lease(self, lease: int) -> bool:
        return self._call("RenewLease", pb.LeaseRequest(lease=_lease_id(lease))).alive

    def revoke_lease(self, lease: int) -> None:
        self._call("RevokeLease", pb.LeaseRequest(lease=_lease_id(lease)))

    def watch(self, prefix: str, start_revision: int | None = None) -> RemoteWatcher:
        w = RemoteWatcher(self, check_prefix(prefix), check_start_revision(start_revision))
        with self._watchers_lock:
            if self._closed:
                w.close()
                raise IoFailed("metadata store is closed")
            self._watchers.add(w)
        return w

    def _open_watch(self, prefix: str, start: int | None) -> tuple[int, int]:
        """A watcher on the server: (its id, the revision it starts from); WatchCompacted."""
        request = pb.WatchOpenRequest(prefix=prefix)
        if start is not None:
            request.start_revision = start
        reply = self._call("WatchOpen", request)
        if reply.compacted:
            raise WatchCompacted(reply.compacted)
        return reply.watch_id, reply.start_revision

    def _watch_closed(self, w: RemoteWatcher) -> None:
        with self._watchers_lock:
            self._watchers.discard(w)

    def close(self) -> None:
        if self._closed:
            return
        with self._watchers_lock:
            watchers = list(self._watchers)
        for w in watchers:
            w.close()
        super().close()


def _lease_id(lease: int) -> int:
    if isinstance(lease, bool) or not isinstance(lease, int):
        raise InvalidParameter(f"invalid lease {lease!r}: must be an int")
    return lease


class RemoteWatcher:
    """``Watcher`` of a ``RemoteMetaStore`` (see the module docstring: long polls, resumed)."""

    def __init__(self, store: RemoteMetaStore, prefix: str, start: int | None):
        self._store, self._prefix = store, prefix
        self._id: int | None
        self._id, self._next = store._open_watch(prefix, start)
        self._error: WatchCompacted | None = None
        self._closed = False
        self._lock = threading.Lock()  # one poll at a time

    def poll(self, timeout: float = 1.0, max_events: int = 1024) -> list[WatchEvent]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            while True:
                if self._closed:
                    raise IoFailed("watcher is closed")
                if self._error is not None:
                    raise self._error
                left = deadline - time.monotonic()
                try:
                    if self._id is None:
                        self._id, self._next = self._store._open_watch(self._prefix, self._next)
                    wait = min(max(left, 0.0), MAX_WAIT)
                    reply = self._store._call("WatchPoll", pb.WatchPollRequest(
                        watch_id=self._id, timeout=wait, max_events=max_events), wait + _SLACK)
                except WatchCompacted as e:
                    self._error = e
                    raise
                except Unreachable:
                    if self._closed or self._store._closed:
                        raise IoFailed("watcher is closed") from None
                    self._id = None  # the server is away: reopen from self._next once it is back
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return []
                    time.sleep(min(left, _RETRY))
                    continue
                if reply.gone:
                    self._id = None
                    continue
                if reply.compacted:
                    self._error = WatchCompacted(reply.compacted)
                    raise self._error
                if reply.revisions:
                    self._next = reply.revisions[-1] + 1
                    return [WatchEvent(PUT, k, v, r) if kind == 0 else WatchEvent(DELETE, k, None, r)
                            for kind, k, v, r in zip(reply.kinds, reply.keys, reply.values, reply.revisions,
                                                     strict=True)]
                if deadline - time.monotonic() <= 0:
                    return []

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        wid, self._id = self._id, None
        self._store._watch_closed(self)
        if wid is not None and not self._store._closed:
            try:
                self._store._call("WatchClose", pb.WatchCloseRequest(watch_id=wid), 5.0)
            except IoFailed:  # the server is away: it forgets the watcher on its own
                pass


class _Round:
    """One ``LastPositions`` call and the ``last_position`` calls it answers."""

    __slots__ = ("channels", "started", "done", "positions", "error")

    def __init__(self) -> None:
        self.channels: dict[str, int] = {}  # channel -> its index in the request
        self.started = self.done = False
        self.positions: list[int] = []
        self.error: errors.VecdbError | None = None


class _Ends:
    """``last_position`` calls of many threads, batched: a call joins the round that has not started
    yet (never one already sent, which might have read the end before a write acknowledged before
    the call); the first of a round's callers sends it once no round is in flight, for every
    channel its callers asked. One caller: one RPC, as before; N concurrent callers: about one RPC
    per round trip instead of N."""

    def __init__(self, log: RemoteLog):
        self._log = log
        self._cond = threading.Condition()
        self._next: _Round | None = None  # the round calls join
        self._running = False  # a round is in flight

    def last_position(self, channel: str) -> int:
        with self._cond:
            r = self._next
            if r is None:
                r = self._next = _Round()
            index = r.channels.setdefault(channel, len(r.channels))
            while not r.done:
                if not r.started and not self._running:  # this caller sends the round
                    r.started, self._running, self._next = True, True, None
                    break
                self._cond.wait()
        if not r.done:
            error: errors.VecdbError | None = None
            positions: list[int] = []
            try:
                positions = list(self._log._call("LastPositions", common.ChannelList(names=list(r.channels)))
                                 .positions)
            except errors.VecdbError as e:
                error = e
            finally:
                with self._cond:
                    r.positions, r.error, r.done = positions, error, True
                    if error is None and len(positions) != len(r.channels):
                        r.error = errors.InternalError(f"LastPositions answered {len(positions)} positions for "
                                                       f"{len(r.channels)} channels")
                    self._running = False
                    self._cond.notify_all()
        if r.error is not None:
            raise type(r.error)(r.error.message)
        return r.positions[index]


class RemoteLog(_Remote):
    """The ``Log`` served at ``vecdb://host:port`` (see module docstring). Thread-safe."""

    _what = "log"

    def __init__(self, url: str, timeout: float = 30.0, secret: str | None = None, tls=None):
        super().__init__(url, timeout, secret, tls)
        self._ends = _Ends(self)
        self._shared = _SharedPoll(self)

    def append(self, channel: str, payload: bytes) -> int:
        return self.append_batch(channel, [payload])[0]

    def append_batch(self, channel: str, payloads: list[bytes], expect_last: int | None = None) -> list[int]:
        request = pb.AppendRequest(channel=check_channel(channel), payloads=[check_payload(p) for p in payloads])
        if expect_last is not None:
            request.expect_last = check_position(expect_last, "expect_last")
        reply = self._call("Append", request)
        return list(range(reply.first, reply.first + reply.count))

    def read(self, channel: str, start: int = 1, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        check_read(channel, start, end)
        request = pb.ReadRequest(channel=channel, start=start, max_bytes=PAGE_BYTES)
        if end is not None:
            request.end = end
        first = self._call("Read", request)  # the snapshot is taken now, not when iterated
        return self._pages(request, first)

    def _pages(self, request: pb.ReadRequest, page: pb.Records) -> Iterator[tuple[int, bytes]]:
        while True:
            yield from zip(page.positions, page.payloads, strict=True)
            if not page.positions or page.positions[-1] >= page.limit:
                return
            request.start = page.positions[-1] + 1
            request.end = page.limit
            page = self._call("Read", request)

    def follow(self, channel: str, start: int = 1) -> RemoteFollower:
        check_channel(channel)
        check_position(start, "start")
        if self._closed:
            raise IoFailed("log is closed")
        return RemoteFollower(self, channel, start)

    def close(self) -> None:
        self._shared.close()
        super().close()

    def heard_last(self, channel: str) -> Heard | None:
        """The last position the shared poll handed to the channel's followers (``vecdb.storage.stall``:
        a tailer's stall check asks the server only when that is past what it applied, or each minute)."""
        return self._shared.heard(check_channel(channel))

    def last_position(self, channel: str) -> int:
        """Concurrent calls share RPCs (``_Ends``): a Strong read asks for its channels' ends, and
        every search in flight in a worker would otherwise be one call to the server each."""
        return self._ends.last_position(check_channel(channel))

    def truncate_before(self, channel: str, position: int) -> None:
        self._call("TruncateBefore", pb.TruncateRequest(channel=check_channel(channel),
                                                        position=check_position(position)))

    def channels(self) -> list[str]:
        return list(self._call("Channels", _EMPTY).names)

    def drop_channel(self, channel: str) -> None:
        self._call("DropChannel", pb.ChannelRequest(channel=check_channel(channel)))


class _Lane:
    """One of a ``_SharedPoll``'s two calls: its thread, its outstanding call and what wakes it."""

    def __init__(self, name: str, lock: threading.Lock):
        self.name = name
        self.cond = threading.Condition(lock)  # the thread's: its followers came, went or drained
        self.changed = 0  # bumped when what to ask for changed
        self.call: PendingCall | None = None  # the outstanding call
        self.thread: threading.Thread | None = None
        self.turn = 0  # where the next call's channels begin (each gets to be first, in turn)


class _SharedPoll:
    """The long polls of all the followers of a ``RemoteLog`` (module docstring). Its lock is theirs
    too: a follower's buffer and condition are under it.

    Two calls, each kept outstanding by a thread of its own: the *hot* one for the followers that got
    records in the last ``_HOT`` seconds (and new ones), the *cold* one for the others. A delivery
    re-sends only its own call, so a channel written a hundred times a second beside 999 idle ones
    costs calls of one channel, not of 1,000 (the call's cost is its channels'); a cold follower that
    gets records turns hot, a hot one quiet for ``_HOT`` seconds turns cold (each a new cold call)."""

    def __init__(self, log: RemoteLog):
        self._log = log
        self.lock = threading.Lock()
        self.hot, self.cold = _Lane("hot", self.lock), _Lane("cold", self.lock)
        self._followers: dict[RemoteFollower, None] = {}  # the open ones, in the order they came
        self.buffered = 0  # payload bytes in the followers' buffers
        self.error: errors.VecdbError | None = None  # why the last call failed (None once another is sent)
        self.closed = False
        self.epoch = 0  # grows at each failed call (what the server had meanwhile was not heard)
        self._heard: dict[str, int] = {}  # channel -> the last position handed to its followers in this epoch

    def add(self, f: RemoteFollower) -> None:
        with self.lock:
            if self.closed:
                raise IoFailed("log is closed")
            self._followers[f] = None
            f._lane, f._hot_until = self.hot, time.monotonic() + _HOT  # (it may have records to catch up on)
            self.changed(self.hot)
            for lane in (self.hot, self.cold):
                if lane.thread is None:
                    lane.thread = threading.Thread(target=self._run, args=(lane,), name=f"remote-log-{lane.name}",
                                                   daemon=True)
                    lane.thread.start()

    def remove(self, f: RemoteFollower) -> None:
        """Under the lock: ``f`` closed."""
        if f in self._followers:
            del self._followers[f]
            if all(other._channel != f._channel for other in self._followers):
                self._heard.pop(f._channel, None)
            self.changed(f._lane)

    def heard(self, channel: str) -> Heard | None:
        """``RemoteLog.heard_last``: None while no call runs (no follower, or none yet)."""
        with self.lock:
            if self.hot.thread is None or self.closed:
                return None
            return Heard(self.epoch, self._heard.get(channel, 0))

    def changed(self, lane: _Lane) -> None:
        """Under the lock: what ``lane`` asks for changed; its outstanding call is given up."""
        lane.changed += 1
        if lane.call is not None:
            lane.call.cancel()
        lane.cond.notify()

    def wants(self, f: RemoteFollower) -> bool:
        """Under the lock: whether ``f``'s channel is asked for (its buffer has room)."""
        return len(f._buffer) < _BUFFER_RECORDS and f._bytes < PAGE_BYTES

    def room(self) -> bool:
        return self.buffered < _BUFFER_PAGES * PAGE_BYTES

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            followers = list(self._followers)
            threads = [lane.thread for lane in (self.hot, self.cold)]
            for lane in (self.hot, self.cold):
                self.changed(lane)
            for f in followers:
                f._cond.notify_all()
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(5.0)

    def _asked(self, lane: _Lane) -> tuple[list[RemoteFollower], list[int], int] | None:
        """The followers ``lane`` asks for, their positions and its change count; None: stop (waits
        meanwhile). The hot lane first hands the followers quiet for ``_HOT`` seconds to the cold one."""
        with self.lock:
            while True:
                if self.closed or not self._followers:
                    lane.thread = None
                    return None
                if lane is self.hot:
                    now = time.monotonic()
                    cooled = [f for f in self._followers if f._lane is self.hot and f._hot_until <= now]
                    for f in cooled:
                        f._lane = self.cold
                    if cooled:
                        self.changed(self.cold)
                asked = [f for f in self._followers if f._lane is lane and self.wants(f)] if self.room() else []
                if asked:
                    break
                lane.cond.wait(MAX_WAIT if lane is self.hot else None)  # (hot: its followers cool meanwhile)
            turn = lane.turn % len(asked)
            lane.turn += 1
            asked = asked[turn:] + asked[:turn]
            return asked, [f._last() for f in asked], lane.changed

    def _run(self, lane: _Lane) -> None:
        started, cancelled = 0.0, False
        while True:
            asked = self._asked(lane)
            if asked is None:
                return
            followers, after, changed = asked
            wait = started + _RESTART - time.monotonic()
            if cancelled and wait > 0:  # followers come and go in bursts (a node loading its collections)
                time.sleep(wait)
                cancelled = False
                continue
            started, cancelled = time.monotonic(), False
            request = pb.FollowManyRequest(channels=[f._channel for f in followers], after=after, timeout=MAX_WAIT,
                                           max_records=_PAGE_RECORDS, max_bytes=PAGE_BYTES)
            try:
                call = self._log._start("FollowMany", request, MAX_WAIT + _SLACK)
                with self.lock:
                    self.error = None
                    lane.call = call
                    if lane.changed != changed or self.closed:
                        call.cancel()
                try:
                    reply = call.result()
                except errors.VecdbError as e:
                    raise self._log._failure(e) from None
                with self.lock:
                    lane.call = None
                    cancelled = reply is None
                    if reply is not None:
                        self._deliver(lane, followers, reply)
            except Exception as e:  # noqa: BLE001 (the server away, or a bug: the followers' polls raise it)
                if not isinstance(e, errors.VecdbError):
                    log.exception("following the log at %s", self._log.address)
                    e = IoFailed(f"following the log at {self._log.address}: {e!r}")
                self._failed(lane, e)

    def _deliver(self, lane: _Lane, followers: list[RemoteFollower], reply: pb.FollowManyReply) -> None:
        """Under the lock: the reply's pages into their followers' buffers; those that got records are
        hot for ``_HOT`` seconds more (a cold one moves to the hot call)."""
        hot_until = time.monotonic() + _HOT
        warmed = False
        for index, page in zip(reply.indexes, reply.pages, strict=True):
            f = followers[index]
            if f not in self._followers:
                continue
            f._add(page)
            if page.positions:
                ch = f._channel
                self._heard[ch] = max(self._heard.get(ch, 0), page.positions[-1])
                f._hot_until = hot_until
                if f._lane is not self.hot:
                    f._lane, warmed = self.hot, True
        if warmed:
            self.changed(self.hot)

    def _failed(self, lane: _Lane, e: errors.VecdbError) -> None:
        """The polls waiting raise ``e`` (a poll raises it until another call is sent, ``_RETRY``
        seconds later, as each poll raised while the server was away when it was a call of its own)."""
        with self.lock:
            lane.call = None
            if self.closed:
                return
            self.error = e
            self.epoch += 1
            self._heard.clear()
            for f in self._followers:
                f._cond.notify_all()
            lane.cond.wait(_RETRY)


class RemoteFollower:
    """``Follower`` of a ``RemoteLog``: hands out what the log's shared poll (``_SharedPoll``)
    buffered for it; a ``poll`` waits for the buffer, so it asks the server nothing itself."""

    def __init__(self, log: RemoteLog, channel: str, start: int):
        self._channel = channel
        self.position = max(int(start), 1) - 1  # last position handed out
        self._shared = log._shared
        self._cond = threading.Condition(self._shared.lock)
        self._buffer: collections.deque[tuple[int, bytes]] = collections.deque()
        self._bytes = 0
        self._closed = False
        self._lane: _Lane = log._shared.hot  # which of the shared poll's calls asks for it (set by ``add``)
        self._hot_until = 0.0
        self._shared.add(self)

    def _last(self) -> int:
        return self._buffer[-1][0] if self._buffer else self.position

    def _add(self, page: pb.Records) -> None:
        """Under the lock: a page of the shared poll (records past what this follower has)."""
        last = self._last()
        size = 0
        for pos, payload in zip(page.positions, page.payloads, strict=True):
            if pos > last:
                self._buffer.append((pos, payload))
                size += len(payload)
                last = pos
        self._bytes += size
        self._shared.buffered += size
        self._cond.notify_all()

    def poll(self, timeout: float = 1.0, max_records: int = 1024) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + max(timeout, 0.0)
        shared = self._shared
        with self._cond:
            while True:
                if self._closed:
                    raise IoFailed("follower is closed")
                if self._buffer:
                    return self._take(max(max_records, 1))
                if shared.closed:
                    raise IoFailed("log is closed")
                error = shared.error
                if error is not None:
                    raise type(error)(error.message)
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)

    def _take(self, max_records: int) -> list[tuple[int, bytes]]:
        """Under the lock: up to ``max_records`` buffered records, about a page at most."""
        shared = self._shared
        wanted, room = shared.wants(self), shared.room()
        out: list[tuple[int, bytes]] = []
        size = 0
        while self._buffer and len(out) < max_records and size < PAGE_BYTES:
            record = self._buffer.popleft()
            out.append(record)
            size += len(record[1])
        self.position = out[-1][0]
        self._bytes -= size
        shared.buffered -= size
        if not room and shared.room():
            shared.changed(shared.hot)  # every channel is asked for again
            shared.changed(shared.cold)
        elif not wanted and shared.wants(self):
            shared.changed(self._lane)  # its channel is asked for again
        return out

    def close(self) -> None:
        """Ends the follower; a ``poll`` waiting in another thread raises ``IoFailed`` at once."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._shared.buffered -= self._bytes
            self._buffer.clear()
            self._bytes = 0
            self._shared.remove(self)
            self._cond.notify_all()

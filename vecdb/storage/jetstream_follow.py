"""Following a JetStream channel without a cost per idle channel.

A ``JetStreamFollower`` tails one stream through an ephemeral pull consumer. Pull requests long-poll
on the server for ``_EXPIRES`` seconds; one that ends with nothing new leaves the follower *quiet*:
it asks the server nothing more until the channel's tip moves past what it handed out. Tips come
from the writers: every append (``JetStreamLog._append``) publishes, after its acknowledgement, the
channel's last position on ``_VECDB_TIP.<prefix>.<encoded channel>`` (core NATS, not stored), and
one subscription per ``JetStreamLog`` (``Tips``) hears them all and wakes the channel's followers.
So 1,000 idle channels cost no request at all, where each used to be one pull request every 5 s,
and a written channel is pulled at once. A tip can be lost (a tip is at most once: a reconnect,
a slow subscriber): a quiet follower pulls anyway after ``_RECHECK`` seconds, and a reconnect
makes every follower pull again with a fresh consumer.

``Tips.heard(stream)`` is the highest position heard for a stream since the subscription's current
epoch began (a reconnect starts the next): ``vecdb.storage.stall`` looks at the log itself only when
that is past what its tailer applied, or after ``stall.QUIET_LOOK_SECONDS``.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from typing import TYPE_CHECKING

from vecdb.errors import IoFailed
from vecdb.storage.stall import Heard

if TYPE_CHECKING:
    from vecdb.storage.jetstream_log import JetStreamLog

TIP_ROOT = "_VECDB_TIP"  # (3 tokens: never a stream's own 2-token subject, whatever its prefix)


def tip_subject(prefix: str, encoded_channel: str) -> str:
    return f"{TIP_ROOT}.{prefix}.{encoded_channel}"


class NoStream(IoFailed):
    """No stream holds the channel (not made yet, or deleted)."""


class Tips:
    """The tips of a log's channels, heard on one subscription made with the first follower."""

    _MAX = 100_000  # streams remembered; past it, forgotten at once (a new epoch: stall checks look)

    def __init__(self, log: JetStreamLog):
        self._log = log
        self._lock = threading.Lock()  # (never held across a call into the loop: its callbacks take it)
        self._start_lock = threading.Lock()
        self._started = False
        self.epoch = 0
        self._last: dict[str, int] = {}  # stream -> highest position heard in this epoch
        self._followers: dict[str, set[JetStreamFollower]] = {}

    def start(self) -> None:
        """Subscribe (once); returns when the server has the subscription, so every append
        acknowledged after this call is heard."""
        with self._start_lock:
            if self._started:
                return
            self._log._run(self._subscribe(), "follow the log")
            with self._lock:
                self._started = True

    async def _subscribe(self) -> None:
        nc = self._log._nc
        await nc.subscribe(f"{TIP_ROOT}.{self._log.prefix}.*", cb=self._on_tip)
        await nc.flush()

    def heard(self, stream: str) -> Heard | None:
        """None until the subscription is made."""
        with self._lock:
            return Heard(self.epoch, self._last.get(stream, 0)) if self._started else None

    def add(self, follower: JetStreamFollower) -> None:
        with self._lock:
            self._followers.setdefault(follower.stream, set()).add(follower)

    def remove(self, follower: JetStreamFollower) -> None:
        with self._lock:
            group = self._followers.get(follower.stream)
            if group is not None:
                group.discard(follower)
                if not group:
                    del self._followers[follower.stream]

    async def _on_tip(self, msg) -> None:
        try:
            position = int(msg.data)
        except ValueError:
            return
        stream = f"{self._log.prefix}_{msg.subject.rsplit('.', 1)[-1]}"
        with self._lock:
            if position <= self._last.get(stream, 0):
                return
            if len(self._last) >= self._MAX and stream not in self._last:  # (the dropped channels' too)
                self._last.clear()
                self.epoch += 1
            self._last[stream] = position
            followers = list(self._followers.get(stream, ()))
        for f in followers:
            f.heard(position)

    async def on_reconnect(self) -> None:
        """Tips sent while disconnected are lost, and so are pull requests if the server restarted:
        a new epoch, and every follower pulls again on a new consumer."""
        with self._lock:
            self.epoch += 1
            self._last.clear()
            followers = [f for group in self._followers.values() for f in group]
        for f in followers:
            f.restart()


class JetStreamFollower:
    """``Follower`` on an ephemeral pull consumer (acks off, memory state). Pull requests
    long-poll on the server; what they deliver lands in a buffer through a subscription callback
    on the loop thread, so a ``poll`` that times out loses nothing: the next one returns it. When
    the server drops the consumer (idle, or the stream was deleted) it is made again from the
    last position handed out. Quiet between tips (module docstring)."""

    _EXPIRES = 5.0  # seconds a pull request waits on the server
    _RECHECK = 60.0  # seconds a quiet follower waits for a tip before it pulls anyway

    def __init__(self, log: JetStreamLog, channel: str, start: int):
        self._log, self._channel = log, channel
        self.stream = log._stream(channel)
        self.position = start - 1  # last position handed out
        self._cond = threading.Condition()
        self._buffer: collections.deque[tuple[int, bytes]] = collections.deque()
        self._pending = 0  # records the outstanding pull request may still deliver (0: none)
        self._consumer: str | None = None
        self._quiet_since: float | None = None  # a pull ended with nothing past the tip: none until the next
        self._tip = 0  # the highest position a tip told of
        self._closed = False
        log._tips.start()
        log._tips.add(self)
        self._inbox = log._nc.new_inbox()
        try:
            self._sub = log._run(log._nc.subscribe(self._inbox, cb=self._on_msg), "follow the log")
        except BaseException:
            log._tips.remove(self)
            raise

    def _last(self) -> int:
        return self._buffer[-1][0] if self._buffer else self.position

    async def _on_msg(self, msg) -> None:
        with self._cond:
            if msg.reply and msg.reply.startswith("$JS.ACK."):
                seq = stream_seq(msg.reply)
                if seq > self._last():
                    self._buffer.append((seq, msg.data))
                self._pending = max(self._pending - 1, 0)
                self._quiet_since = None
            else:  # a status: the request expired (408), nothing there (404), or the consumer is gone (409)
                status = (msg.headers or {}).get("Status", "")
                if status == "100":
                    return  # heartbeat
                self._pending = 0
                if status == "409" or status == "503":
                    self._consumer = None
                elif status in ("404", "408") and self._tip <= self._last():
                    self._quiet_since = time.monotonic()  # (a tip after this one's wakes it)
            self._cond.notify_all()

    def heard(self, position: int) -> None:
        """A tip: the channel's records reach ``position`` (from ``Tips``, on the loop thread)."""
        with self._cond:
            self._tip = max(self._tip, position)
            if position > self._last():
                self._quiet_since = None
                self._cond.notify_all()

    def restart(self) -> None:
        """After a reconnect: pull again, on a new consumer from the last position handed out."""
        with self._cond:
            self._pending, self._consumer, self._quiet_since = 0, None, None
            self._cond.notify_all()

    def _request(self, max_records: int) -> None:
        """Under ``_cond``: make sure a pull request is outstanding, unless quiet. The lock is let go
        while talking to the server (the loop thread's message callback needs it)."""
        if self._pending:
            return
        if self._quiet_since is not None:
            if time.monotonic() - self._quiet_since < self._RECHECK:
                return
            self._quiet_since = None
        self._pending = max_records  # claimed: no second request from another poller
        consumer = self._consumer
        start = self._last() + 1
        self._cond.release()
        ok = missing = False
        try:
            if consumer is None:
                try:
                    consumer = self._log._run(self._log._open_consumer(self.stream, start, idle=300), "follow the log")
                except NoStream:
                    missing = True  # not made yet (its first append makes it, and tips)
                except IoFailed:
                    consumer = None  # the server is away: poll again shortly
            if consumer is not None:
                body = json.dumps({"batch": max_records, "expires": int(self._EXPIRES * 1e9)}).encode()
                subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}"
                self._log._run(self._log._nc.publish(subject, body, reply=self._inbox), "follow the log")
            ok = True
        finally:
            self._cond.acquire()
            self._consumer = consumer
            if consumer is None or not ok:
                self._pending = 0
            if missing and self._tip <= self._last():
                self._quiet_since = time.monotonic()

    def poll(self, timeout: float = 1.0, max_records: int = 1024) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                if self._closed:
                    raise IoFailed("follower is closed")
                if self._buffer:
                    out: list[tuple[int, bytes]] = []
                    while self._buffer and len(out) < max_records:
                        pos, payload = self._buffer.popleft()
                        if pos > self.position:
                            out.append((pos, payload))
                            self.position = pos
                    if out:
                        return out
                self._request(max_records)  # (a poll with no time to wait still leaves a request out)
                if self._buffer or self._closed:
                    continue  # delivered while the request went out (``_request`` lets the lock go)
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                if self._quiet_since is not None:
                    left = min(left, max(self._quiet_since + self._RECHECK - time.monotonic(), 0.01))
                elif self._consumer is None:  # (the server is away: asked again soon)
                    left = min(left, 0.5)
                self._cond.wait(left)

    def close(self) -> None:
        """Ends the follower; a ``poll`` waiting in another thread raises ``IoFailed`` at once."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            consumer = self._consumer
            self._cond.notify_all()
        self._log._tips.remove(self)
        if not self._log._closed:  # (not waited for: a node stopping closes a thousand followers)
            self._log._loop.spawn(self._release(consumer))

    async def _release(self, consumer: str | None) -> None:
        try:
            await self._sub.unsubscribe()
            if consumer:
                await self._log._api(f"CONSUMER.DELETE.{self.stream}.{consumer}")
        except Exception:  # noqa: BLE001 (the connection closed meanwhile: the server drops both)
            pass


def stream_seq(reply: str) -> int:
    """The stream sequence in a delivered message's ack subject: v1
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` or v2
    ``$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>....``."""
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])

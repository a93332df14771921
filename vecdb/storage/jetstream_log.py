"""``JetStreamLog``: the distributed ``Log`` on NATS JetStream (nats-py).

Each channel is one stream, ``<prefix>_<encoded channel>``, with one subject
``<prefix>.<encoded channel>``; a record's position is its stream sequence, so
positions start at 1, grow by one per record and survive restarts, and
``truncate_before`` is a purge up to a sequence (which keeps the last sequence).

- ``append_batch`` is one JetStream *atomic batch* (nats-server 2.12+, the stream
  has ``allow_atomic``): the records are stored together, consecutively, or not at
  all. Batches larger than ``MAX_BATCH`` records go in several atomic pieces.
- Durability: "acknowledged" means the stream's leader stored it (and, with
  ``replicas`` > 1, a quorum did). A single server keeps the guarantee against
  its own crash only with ``sync_interval: always`` in its configuration (the test
  and local-cluster servers run that way; ``vecdb.storage.servers``).
- ``read`` takes the channel's last sequence when called and pages through an
  ephemeral pull consumer up to it. ``follow`` tails a channel on one that waits for the
  channel's tip when idle (``vecdb.storage.jetstream_follow``): each append publishes it.
- A record larger than the server's ``max_payload`` (the servers vecdb starts allow 64 MiB) or than
  ``STORE_MAX_RECORD`` is refused with ``InvalidParameter``: a file-backed stream stores no message of
  32 MiB or more (nats-server's ``rlBadThresh``, not a setting), which it answered "atomic publish batch
  is incomplete" (the proxy splits larger inserts into several records, ``vecdb.proxy.rpc_dml``).
- Streams are made by appends (a stream missing after a NATS server lost its store is made
  again by the next append), but never a dropped collection's (given ``channel_dropped``;
  ``vecdb.storage.dropped_channels``): the catalog is read before the stream is made and again
  after, and the stream deleted when the collection went meanwhile (a drop deletes the catalog
  record before the streams, so the drop or the append deletes it).

The asyncio client runs on its own loop thread (``aioloop.LoopThread``); every
method is a synchronous, thread-safe call into it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

from vecdb.errors import InvalidParameter, IoFailed, LogConflict
from vecdb.storage.aioloop import LoopThread
from vecdb.storage.dropped_channels import DroppedCheck, is_dropped, refused
from vecdb.storage.jetstream_follow import JetStreamFollower, NoStream, Tips, stream_seq, tip_subject
from vecdb.storage.keys import check_channel, check_payload, check_position, check_read, decode_channel, encode_channel
from vecdb.storage.stall import Heard

MAX_BATCH = 1000  # the server's limit on messages per atomic batch
# the largest record a file-backed stream stores: nats-server's file store refuses a message record (its
# subject, headers and payload, 30 bytes of framing) of 32 MiB or more; 64 KiB left for the rest
STORE_MAX_RECORD = (32 << 20) - (64 << 10)
_FETCH = 256  # records per pull request when reading
_FETCH_BYTES = 16 << 20  # bytes per pull request when reading (a larger record comes alone)
_NOT_FOUND = 10059  # JetStream "stream not found"
_WRONG_LAST_SEQUENCE = 10071  # JetStream "wrong last sequence: N"

log = logging.getLogger(__name__)


# streams an instance remembers as existing (it creates one it does not know, which is a no-op for one that
# exists): emptied once full, since the streams of channels another process dropped (a collection dropped through
# another proxy) are never forgotten one by one
_KNOWN_MAX = 10_000


class JetStreamLog:
    """The distributed ``Log`` (see module docstring). Thread-safe."""

    def __init__(self, servers: str | list[str], *, prefix: str = "VECDB", replicas: int = 1,
                 timeout: float = 10.0, connect_timeout: float = 5.0,
                 channel_dropped: DroppedCheck | None = None):
        """``channel_dropped(channel)``: whether the channel's collection was dropped (its stream is then
        never made again; ``vecdb.storage.dropped_channels``). None: any channel's stream is made."""
        if not prefix or any(c in prefix for c in " .*>/\\"):
            raise InvalidParameter(f"invalid stream prefix {prefix!r}")
        self.prefix, self.replicas, self.timeout = prefix, int(replicas), float(timeout)
        self._channel_dropped = channel_dropped
        self._loop = LoopThread("jetstream-log")
        self._known: set[str] = set()  # streams this instance created or saw
        self._tips = Tips(self)  # the channels' tips, for this instance's followers
        self._closed = False
        try:
            self._nc = self._run(self._connect(servers, connect_timeout), "connect to NATS", connect_timeout + 5)
        except BaseException:
            self._loop.stop()
            raise

    async def _connect(self, servers, connect_timeout):
        import nats

        return await nats.connect(servers, connect_timeout=connect_timeout, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.5, allow_reconnect=True, name="vecdb-log",
                                  reconnected_cb=self._tips.on_reconnect)

    # --- names -----------------------------------------------------------------
    def _stream(self, channel: str) -> str:
        return f"{self.prefix}_{encode_channel(channel)}"

    def _subject(self, channel: str) -> str:
        return f"{self.prefix}.{encode_channel(channel)}"

    def _run(self, coro, what: str, timeout: float | None = None):
        import nats.errors

        if self._closed:
            coro.close()
            raise IoFailed("log is closed")
        try:
            return self._loop.run(coro, timeout or self.timeout + 5, what)
        except nats.errors.Error as e:  # disconnected, draining, closed...
            raise IoFailed(f"{what}: NATS {type(e).__name__}: {e}") from e

    # --- JetStream API helpers ---------------------------------------------------
    async def _api(self, verb: str, body: dict | None = None) -> dict:
        """One request to the JetStream API; returns the decoded reply (``error`` included)."""
        import nats.errors

        try:
            msg = await self._nc.request(f"$JS.API.{verb}", json.dumps(body or {}).encode(), timeout=self.timeout)
        except nats.errors.NoRespondersError:
            raise IoFailed("JetStream is not enabled on the NATS server") from None
        except nats.errors.TimeoutError:
            raise IoFailed(f"JetStream API {verb.split('.')[0]}: no answer within {self.timeout} s") from None
        return json.loads(msg.data)

    async def _info(self, stream: str) -> dict | None:
        r = await self._api(f"STREAM.INFO.{stream}")
        err = r.get("error")
        if err:
            if err.get("err_code") == _NOT_FOUND:
                return None
            raise IoFailed(f"stream info {stream}: {err.get('description')}")
        return r

    def _ensure(self, channel: str) -> None:
        """The channel's stream exists (made unless this instance knows it), or ``CollectionNotFound``
        when its collection was dropped: checked before making it and again after, since the drop may
        delete the catalog record and the stream between the two (see the module docstring)."""
        stream = self._stream(channel)
        if stream in self._known:
            return
        if is_dropped(self._channel_dropped, channel):
            raise refused(channel)
        self._run(self._create(channel), "create a log channel")
        if is_dropped(self._channel_dropped, channel):
            r = self._run(self._api(f"STREAM.DELETE.{stream}"), "drop a log channel")
            if (err := r.get("error")) and err.get("err_code") != _NOT_FOUND:
                log.warning("stream %s of a dropped collection, made by a late append, stays: %s", stream,
                            err.get("description"))
            raise refused(channel)
        if len(self._known) >= _KNOWN_MAX:  # a cache: dropped channels' streams go with the rest
            self._known.clear()
        self._known.add(stream)

    async def _create(self, channel: str) -> None:
        stream = self._stream(channel)
        cfg = {"name": stream, "subjects": [self._subject(channel)], "storage": "file", "retention": "limits",
               "num_replicas": self.replicas, "allow_atomic": True, "allow_direct": True, "discard": "old",
               "max_msgs": -1, "max_bytes": -1, "max_age": 0, "duplicate_window": 0}
        r = await self._api(f"STREAM.CREATE.{stream}", cfg)
        err = r.get("error")
        if err and "already in use" not in err.get("description", "") and err.get("err_code") != 10058:
            raise IoFailed(f"cannot create stream {stream}: {err.get('description')}")

    # --- Log ---------------------------------------------------------------------
    def append(self, channel: str, payload: bytes) -> int:
        return self.append_batch(channel, [payload])[0]

    def append_batch(self, channel: str, payloads: list[bytes], expect_last: int | None = None) -> list[int]:
        check_channel(channel)
        data = [check_payload(p) for p in payloads]
        if not data:
            if self._closed:
                raise IoFailed("log is closed")
            return []
        limit = min(self._nc.max_payload - 512, STORE_MAX_RECORD)
        for p in data:
            if len(p) > limit:
                raise InvalidParameter(f"log record of {len(p):,} bytes exceeds the largest the NATS server "
                                       f"stores ({limit:,} bytes: its max_payload, a file store's 32 MiB); "
                                       "split the request")
        for again in (False, True):
            self._ensure(channel)
            try:
                return self._run(self._append(channel, data, expect_last), "append to the log")
            except NoStream:  # deleted since this instance made or saw it: made again, once, unless dropped
                self._known.discard(self._stream(channel))
                if again:
                    raise IoFailed(f"append to {channel!r}: its stream was deleted again as it was made") from None
        raise AssertionError("unreachable")

    async def _append(self, channel: str, data: list[bytes], expect_last: int | None) -> list[int]:
        """``NoStream`` when the stream is missing: a stream deleted during a batch of several pieces
        took the earlier pieces with it, so the caller appends the whole batch again."""
        positions: list[int] = []
        for i in range(0, len(data), MAX_BATCH):
            piece = data[i:i + MAX_BATCH]
            expect = expect_last if i == 0 else positions[-1]  # later pieces follow the first
            ack = await self._publish_batch(channel, piece, expect)
            last, count = int(ack["seq"]), int(ack.get("count", 1))
            if count != len(piece):
                raise IoFailed(f"log batch stored {count} of {len(piece)} records")
            positions.extend(range(last - count + 1, last + 1))
        # the channel's tip, for the followers of every process (not stored; vecdb.storage.jetstream_follow)
        await self._nc.publish(tip_subject(self.prefix, encode_channel(channel)), str(positions[-1]).encode())
        return positions

    async def _publish_batch(self, channel: str, piece: list[bytes], expect_last: int | None) -> dict:
        """One atomic batch: all but the last record fire-and-forget, the last commits and is
        acknowledged. ``expect_last`` becomes the first record's Nats-Expected-Last-Sequence."""
        import nats.errors

        subject = self._subject(channel)
        batch = uuid.uuid4().hex
        headers = [{"Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(n)} for n in range(1, len(piece) + 1)]
        headers[-1]["Nats-Batch-Commit"] = "1"
        if expect_last is not None:
            headers[0]["Nats-Expected-Last-Sequence"] = str(expect_last)
        for payload, h in zip(piece[:-1], headers):
            await self._nc.publish(subject, payload, headers=h)
        try:
            msg = await self._nc.request(subject, piece[-1], timeout=self.timeout, headers=headers[-1])
        except nats.errors.NoRespondersError:
            raise NoStream() from None
        except nats.errors.TimeoutError:
            raise IoFailed(f"append to {channel!r}: no acknowledgement within {self.timeout} s") from None
        ack = json.loads(msg.data) if msg.data else {}
        if "error" in ack:
            if ack["error"].get("err_code") == _WRONG_LAST_SEQUENCE:
                raise LogConflict(f"channel {channel!r}: {ack['error'].get('description')}, expected {expect_last}")
            raise IoFailed(f"append to {channel!r}: {ack['error'].get('description')}")
        if "seq" not in ack:
            raise IoFailed(f"append to {channel!r}: unexpected reply {msg.data[:200]!r}")
        return ack

    def read(self, channel: str, start: int = 1, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        check_read(channel, start, end)
        info = self._run(self._info(self._stream(channel)), "read the log")
        if info is None:
            return iter(())
        state = info["state"]
        lo = max(start, int(state.get("first_seq", 1)), 1)
        hi = int(state.get("last_seq", 0))
        if end is not None:
            hi = min(hi, end)
        if lo > hi:
            return iter(())
        return self._pages(channel, lo, hi)

    def _pages(self, channel: str, lo: int, hi: int) -> Iterator[tuple[int, bytes]]:
        stream = self._stream(channel)
        consumer = self._run(self._open_consumer(stream, lo), "read the log")
        try:
            pos = lo
            while pos <= hi:
                page = self._run(self._fetch(stream, consumer, min(_FETCH, hi - pos + 1)), "read the log")
                if not page:
                    return  # the rest was purged or the stream dropped meanwhile
                for seq, payload in page:
                    if seq > hi:
                        return
                    yield seq, payload
                    pos = seq + 1
        finally:
            if not self._closed:
                try:
                    self._run(self._api(f"CONSUMER.DELETE.{stream}.{consumer}"), "close a log reader")
                except IoFailed:
                    pass

    async def _open_consumer(self, stream: str, start: int, idle: float = 60) -> str:
        cfg = {"stream_name": stream, "config": {
            "deliver_policy": "by_start_sequence", "opt_start_seq": start, "ack_policy": "none",
            "replay_policy": "instant", "inactive_threshold": int(idle * 1e9), "mem_storage": True,
            "num_replicas": 1}}
        r = await self._api(f"CONSUMER.CREATE.{stream}", cfg)
        if r.get("error", {}).get("err_code") == _NOT_FOUND:
            raise NoStream(f"cannot read stream {stream}: {r['error'].get('description')}")
        if "error" in r:
            raise IoFailed(f"cannot read stream {stream}: {r['error'].get('description')}")
        return r["name"]

    async def _fetch(self, stream: str, consumer: str, n: int, max_bytes: int | None = _FETCH_BYTES
                     ) -> list[tuple[int, bytes]]:
        """Up to ``n`` records from a pull consumer (fewer when the stream has no more), at most
        ``max_bytes`` of them: a page of large records (a bulk import's, a 64 MB insert's) would
        overrun the subscription's pending limit and the server's per-client buffer, which cuts the
        slow consumer off (nats: unexpected EOF) and the read times out, again and again. A record
        larger than ``max_bytes`` alone is fetched by itself."""

        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        out: list[tuple[int, bytes]] = []
        too_big = False
        try:
            req: dict = {"batch": n, "no_wait": True}
            if max_bytes is not None:
                req["max_bytes"] = max_bytes
            await self._nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", json.dumps(req).encode(),
                                   reply=inbox)
            while len(out) < n:
                try:
                    msg = await sub.next_msg(timeout=self.timeout)
                except TimeoutError:
                    raise IoFailed(f"read {stream}: no records within {self.timeout} s") from None
                if msg.reply and msg.reply.startswith("$JS.ACK."):
                    out.append((stream_seq(msg.reply), msg.data))
                    continue
                # a status message (404 no messages, 408, 409): the page ends here
                too_big = "MaxBytes" in ((msg.headers or {}).get("Description") or "")
                break
        finally:
            await sub.unsubscribe()
        if not out and too_big:  # the next record alone is larger than max_bytes
            return await self._fetch(stream, consumer, 1, None)
        return out

    def follow(self, channel: str, start: int = 1) -> JetStreamFollower:
        check_channel(channel)
        check_position(start, "start")
        return JetStreamFollower(self, channel, max(start, 1))

    def heard_last(self, channel: str) -> Heard | None:
        """The channel's last position as the tips this instance heard tell it, without asking the
        server (``vecdb.storage.jetstream_follow``); None before its first follower."""
        return self._tips.heard(self._stream(check_channel(channel)))

    def last_position(self, channel: str) -> int:
        check_channel(channel)
        info = self._run(self._info(self._stream(channel)), "read the log position")
        return 0 if info is None else int(info["state"].get("last_seq", 0))

    def truncate_before(self, channel: str, position: int) -> None:
        check_channel(channel)
        check_position(position)
        self._run(self._purge(self._stream(channel), position), "truncate the log")

    async def _purge(self, stream: str, position: int) -> None:
        info = await self._info(stream)
        if info is None:
            return
        cut = min(position, int(info["state"].get("last_seq", 0)) + 1)
        if cut <= int(info["state"].get("first_seq", 1)):
            return
        r = await self._api(f"STREAM.PURGE.{stream}", {"seq": cut})
        if "error" in r:
            raise IoFailed(f"cannot truncate {stream}: {r['error'].get('description')}")

    def channels(self) -> list[str]:
        return sorted(self._run(self._list(), "list the log's channels"))

    async def _list(self) -> list[str]:
        names: list[str] = []
        offset = 0
        head = self.prefix + "_"
        while True:
            r = await self._api("STREAM.NAMES", {"offset": offset, "subject": f"{self.prefix}.>"})
            if "error" in r:
                raise IoFailed(f"cannot list streams: {r['error'].get('description')}")
            page = r.get("streams") or []
            for s in page:
                ch = decode_channel(s[len(head):]) if s.startswith(head) else None
                if ch is not None:
                    names.append(ch)
            offset += len(page)
            if not page or offset >= int(r.get("total", 0)):
                return names

    def drop_channel(self, channel: str) -> None:
        check_channel(channel)
        stream = self._stream(channel)
        r = self._run(self._api(f"STREAM.DELETE.{stream}"), "drop a log channel")
        self._known.discard(stream)
        err = r.get("error")
        if err and err.get("err_code") != _NOT_FOUND:
            raise IoFailed(f"cannot drop {stream}: {err.get('description')}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._nc.close(), 5, "close NATS")
        except IoFailed:
            pass
        self._loop.stop()

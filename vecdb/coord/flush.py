"""The coord's flush manager: a collection's flush is decided and written here, not by the proxy.

``FlushManager.flush(collection id, channels)`` writes one seal record into each channel under
one timestamp from the coord's own TSO, then waits until the data node that owns each channel
(``vecdb.coord.datanode_assignment``) moved the channel's checkpoint to its seal record
(``vecdb.datanode.flusher``), and returns the segments written at those records and the seal
timestamp. The records go through a ``ShardWriter`` (``vecdb.proxy.writer``): each append
expects the channel to end where the writer last saw it, so the coord's seal records and the
proxies' writes keep every channel in timestamp order (one that lost the race re-reads the end,
takes a newer timestamp and appends again). The coord's writer reads the ends before each flush
(``refresh_ends``: the proxies appended since), and the result names every seal position, which
the calling proxy's writer takes as the channels' ends (``ShardWriter.saw``), so neither side's
next append fails on the other's records.

Where the fallback lives: with the caller. A channel whose checkpoint no data node process moves
(none has a session: standalone, a cluster without data nodes, or the last one died during the
wait) comes back in ``FlushResult.unpersisted`` with its seal position, and the caller persists it
in-process (the proxy's ``DataNodeRole.persist``: standalone's ``DataNode``, a cluster proxy's
``ClusterDataNode``, which also builds the indexes then). So the coord writes no segment files
and needs no object store for a flush, and standalone keeps persisting in its own process, as it
always did.

Deployments. Standalone wires a ``FlushManager`` in-process over the proxy's own writer (which
hands the seal record to its query node); a cluster's active coord runs one per term over a
writer of its own on the shared log (``vecdb.coord.server``: the ``Flush`` RPC of
``proto/coord.proto``, a standby answers not ready), and a cluster proxy calls it through
``RemoteFlush``. The contract is ``vecdb.roles.FlushRole``; the proxy's Flush and its automatic
seal both call it through ``vecdb.coord.sealer.Sealer``.

Retries. A flush may be repeated (``CoordClient`` retries through a failover or a lost reply):
seal records are markers, not data. A data node persists the records between the checkpoint and a
seal record (``DataNode.persist``); a second seal record right after the first persists nothing
more (an empty range only moves the checkpoint), and rows between the two are persisted once, at
the second. So a repeat neither loses nor duplicates a row; it answers the segments written at
its own seal records (those of an earlier try are persisted and listed all the same).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vecdb import errors
from vecdb.coord.datanode_assignment import DATANODE_SESSIONS
from vecdb.log_records import Record, SealRecord
from vecdb.rpc.gen import coord_pb2 as pb
from vecdb.storage import segments as sf

if TYPE_CHECKING:
    from vecdb.coord.client import CoordClient
    from vecdb.proxy.writer import ShardWriter
    from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

PERSIST_WAIT = 120.0  # seconds a flush waits for the data nodes before it fails (retriable)
REPLY_MARGIN = 10.0  # seconds a caller waits for the coord's reply beyond the coord's own wait
LONG_ATTEMPT = 5.0  # seconds: an attempt that failed after so long was a wait cut short, not a refusal
SESSION_CHECK = 1.0  # seconds between looks at the coord's session during a flush call
CALLER_MARGIN = 1.0  # seconds a flush gives up before its client's deadline, so the client hears why
MAX_CONCURRENT = 16  # flushes one coord waits on at once; more are refused (retriable), leaving RPC workers free

# the monotonic time by which the client of the flush in progress (in this thread) gives up; None: no limit
_CALLER_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("flush_caller_deadline",
                                                                               default=None)


@contextmanager
def caller_deadline(seconds_left: float | None) -> Iterator[None]:
    """Flushes inside give up (ServiceUnavailable) ``CALLER_MARGIN`` s before ``seconds_left`` pass (a
    gRPC handler's ``context.time_remaining()``): a client that set a timeout hears why, not a deadline
    of its own."""
    token = _CALLER_DEADLINE.set(None if seconds_left is None else time.monotonic() + seconds_left - CALLER_MARGIN)
    try:
        yield
    finally:
        _CALLER_DEADLINE.reset(token)


@dataclass
class FlushResult:
    segment_ids: list[int]
    ts: int  # the seal records' timestamp (the largest, if an append had to take a newer one)
    # channel -> seal position, for the channels no data node process persisted: the caller's to persist
    unpersisted: dict[str, int] = field(default_factory=dict)
    # channel -> seal position, for every channel (a caller's writer expects its next append there)
    positions: dict[str, int] = field(default_factory=dict)


class FlushManager:
    """``writer``: appends the seal records (the coord's own, or standalone's proxy writer).
    ``meta``: where checkpoints, segments and data node sessions are read; None: no data node
    processes can exist (every channel is the caller's to persist)."""

    def __init__(self, writer: ShardWriter, meta: MetaStore | None, wait: float = PERSIST_WAIT):
        self.writer, self.meta, self.wait = writer, meta, wait

    def flush(self, collection_id: int, channels: Sequence[str]) -> FlushResult:
        def seal(ts: int) -> list[Record]:
            return [SealRecord(collection_id, ts)]

        ts, positions = self.writer.write({ch: seal for ch in channels})
        deadline = time.monotonic() + self.wait
        seg_ids: list[int] = []
        unpersisted: dict[str, int] = {}
        for ch, pos in positions.items():
            segments = self._persisted(collection_id, ch, pos, deadline)
            if segments is None:
                unpersisted[ch] = pos
            else:
                seg_ids += [s["segment_id"] for s in segments]
        return FlushResult(seg_ids, ts, unpersisted, positions)

    def _datanodes(self) -> bool:
        return self.meta is not None and any(True for _ in self.meta.scan(DATANODE_SESSIONS))

    def _persisted(self, collection_id: int, channel: str, upto: int, deadline: float) -> list[dict[str, Any]] | None:
        """The segments written at ``upto`` once the channel's checkpoint reached it; None when no
        data node process lives (now, or any more) to move it."""
        if self.meta is None:
            return None
        pause = 0.005
        while True:
            if sf.checkpoint(self.meta, collection_id, channel) >= upto:
                return [s for s in sf.list_segments(self.meta, collection_id, channel) if s.get("position") == upto]
            if not self._datanodes():
                return None
            if time.monotonic() > deadline:
                raise errors.ServiceUnavailable(f"channel {channel}: no data node persisted it up to {upto} "
                                                f"within {self.wait:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def flush_reply(result: FlushResult) -> pb.FlushReply:
    return pb.FlushReply(segment_ids=result.segment_ids, ts=result.ts, unpersisted=result.unpersisted,
                         positions=result.positions)


class FlushSlots:
    """At most ``limit`` flushes wait at once on one coord (each holds an RPC worker while it waits
    for the data nodes); one more is refused with ServiceUnavailable, which the caller retries."""

    def __init__(self, limit: int = MAX_CONCURRENT):
        self._slots, self.limit = threading.BoundedSemaphore(limit), limit

    def __enter__(self) -> FlushSlots:
        if not self._slots.acquire(blocking=False):
            raise errors.ServiceUnavailable(f"the coord is waiting on {self.limit} flushes already; try again")
        return self

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


class _CallerGaveUp(errors.VecdbError):
    """Raised inside a flush attempt past the caller's deadline (not retried: not a refusal)."""


class RemoteFlush:
    """``FlushRole`` of a cluster proxy: the active coord's ``Flush``. The call may outlast the
    coord's usual timeout (the coord waits up to ``wait`` seconds for the data nodes); a failover
    during it is retried (``CoordClient``), a repeat being safe (see the module doc). A coord that
    hangs (SIGSTOP, cut off) is left once its session ends (``Client.invoke``'s ``alive``), and a flush
    inside ``caller_deadline`` (the proxy's Flush RPC) fails before its client's deadline: either way
    with a retriable not-ready/unavailable error, not after the whole wait.

    ``fallback``: a manager over the proxy's own writer, for a coord that does not flush (one
    without the shared log, ``Unimplemented``; or an older coord without the RPC, during a rolling
    upgrade): the proxy then writes the seal records itself, as before the coord flushed."""

    def __init__(self, coord: CoordClient, wait: float = PERSIST_WAIT, fallback: FlushManager | None = None):
        self._coord, self.wait, self._fallback = coord, wait, fallback
        self._warned = False

    def flush(self, collection_id: int, channels: Sequence[str]) -> FlushResult:
        try:
            return self._remote(collection_id, channels)
        except errors.Unimplemented as e:
            if self._fallback is None:
                raise
            if not self._warned:
                self._warned = True
                log.warning("the coord does not flush (%s): this proxy writes the seal records itself", e.message)
            return self._fallback.flush(collection_id, channels)

    def _remote(self, collection_id: int, channels: Sequence[str]) -> FlushResult:
        request = pb.FlushRequest(collection_id=collection_id, channels=list(channels))
        deadline = time.monotonic() + self.wait + REPLY_MARGIN + self._coord.timeout
        caller = _CALLER_DEADLINE.get()
        if caller is not None:
            deadline = min(deadline, caller)

        spans: list[float] = []  # how long each attempt of the current round lasted

        def attempt(client: Any, timeout: float) -> pb.FlushReply:
            began = time.monotonic()
            left = deadline - began if caller is not None else max(deadline - began, timeout)
            if left <= 0:
                raise _CallerGaveUp(f"flush of collection {collection_id}: the coord did not answer within the "
                                    "call's timeout")
            try:
                # given up once the coord's session ends (a hung coord holds the call otherwise: its whole
                # wait, 130 s, before the client heard anything)
                return client.invoke("Flush", request, min(self.wait + REPLY_MARGIN, left),
                                     lambda: self._coord.holds_session(client.address), SESSION_CHECK)
            finally:
                spans.append(time.monotonic() - began)

        while True:
            spans.clear()
            try:
                out: pb.FlushReply = self._coord.retrying(
                    attempt, min(deadline, time.monotonic() + self._coord.timeout) if caller is not None else None)
                break
            except _CallerGaveUp as e:
                raise errors.ServiceUnavailable(e.message) from None
            except (errors.ServiceNotReady, errors.ServiceUnavailable):
                # retrying's deadline counts from its start: an attempt of this round cut short after a long
                # wait for the data nodes (the coord stopped meanwhile) gets a fresh round, within the
                # flush's deadline; refusals only (no coord) fail as any coord call does
                if max(spans, default=0.0) < LONG_ATTEMPT or time.monotonic() >= deadline:
                    raise
                log.info("flush of collection %d: the coord stopped answering during it; trying again",
                         collection_id)
        return FlushResult(list(out.segment_ids), out.ts, dict(out.unpersisted), dict(out.positions))

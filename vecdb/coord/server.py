"""The coord process: the cluster's timestamp oracle and id allocator behind internal RPC.

Proxies and nodes of a cluster call ``AllocTimestamp`` and ``AllocID`` instead of owning a
TSO: one allocator per cluster keeps timestamps strictly increasing across every process.
The active coord also assigns the loaded collections' channels to the query nodes
(``vecdb.coord.assignment``) and every collection's channels to the data nodes
(``vecdb.coord.datanode_assignment``), and it owns DDL: the DDL RPCs change the catalog through
its ``DdlManager`` (``vecdb.coord.ddl``, one per term, over a catalog of its own that follows the
store) and answer once every live proxy applied the change. It runs flushes too: ``Flush`` writes
the seal records into the shared log through its ``FlushManager`` (``vecdb.coord.flush``, one per
term, its writer timestamping from the term's TSO) and answers once the data nodes persisted them.

Active-standby. Any number of coords may run on one metadata store; the one holding
``session/coord`` (exclusive, its value naming the coord's address) is active, the others are
standbys: they serve their RPC port but answer ``ServiceNotReady`` (retriable) to every call,
and try to take the session every ``_CAMPAIGN_PAUSE`` seconds. ``CoordClient`` finds the
active one from the session. The rules that keep timestamps and ids from ever going back or
repeating across a failover:

- A coord becomes active by taking the session first, then reading the reserved windows and
  starting above them; each of its reservations is a compare-and-set on the window and on its
  own session value (``vecdb.coord.tso``), so once its session is gone it cannot reserve. The
  value is new at every activation (its ``term``): a coord that stood down and became active
  again never passes the fence with its old allocators.
- It answers only while its lease surely lives (``Session.held_until``, with a margin): by the
  time the store expires the lease and a standby can take the session, the old coord has
  stopped handing out the rest of its window, even if it cannot reach the store to learn it.
- A coord that loses its session (``on_lost``) or finds its reservation fenced off stops
  answering at once and goes back to standby (same process, same port): it may become active
  again later, above whatever its successors reserved. It does not exit, so a stalled process
  rejoins as a standby without a supervisor.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import SimpleNamespace

# the remote allocators live beside CoordClient; imported from here too
from vecdb import metrics
from vecdb.config import GcSettings
from vecdb.coord.assignment import AssignmentManager
from vecdb.coord.client import SESSION_KEY, RemoteIdAllocator, RemoteTimestampOracle  # noqa: F401
from vecdb.coord.datanode_assignment import DataNodeAssigner
from vecdb.coord.ddl_rpc import ddl_handlers, open_ddl
from vecdb.coord.flush import FlushManager, FlushSlots, flush_reply
from vecdb.coord.gc import GarbageCollector
from vecdb.coord.segment_moves import MOVE_WAIT, CoordSegmentMoves
from vecdb.coord.session import Session, describe_process
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.errors import InvalidParameter, IoFailed, ServiceNotReady, ServiceUnavailable, Unimplemented
from vecdb.process import advertised_address
from vecdb.proxy.writer import ShardWriter
from vecdb.rpc import serve, set_fields
from vecdb.rpc.gen.coord_pb2 import (
    AllocIDReply,
    AllocTimestampReply,
    FlushReply,
    FlushRequest,
    MoveSegmentsReply,
    MoveSegmentsRequest,
)
from vecdb.storage.base import Log, MetaStore, ObjectStore
from vecdb.timestamp import LOGICAL_MASK

log = logging.getLogger(__name__)

MAX_IDS_PER_CALL = 1 << 24
# Answer only within this share of the lease's ttl after its last renewal was sent: the rest covers
# a clock that runs a little fast next to the store's, and the time a reply takes to leave.
_LEASE_SHARE = 0.8
_CAMPAIGN_PAUSE = 0.25  # seconds between a standby's tries (a takeover waits out the old lease anyway)
# RPC workers: flushes hold one each while they wait for the data nodes (at most FlushSlots' limit)
_WORKERS = 32


def _count(meta: dict, limit: int) -> int:
    count = meta.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise InvalidParameter(f"invalid count {count!r}: 1 to {limit}")
    return count


def _no_delivery(channel: str, position: int, record: object) -> None:
    """The coord's writer hands its seal records to nobody: the nodes follow the log."""


class _Term:
    """One period as the active coord: the session taken, the allocators and the assignment of
    channels to query nodes, all fenced by it."""

    def __init__(self, session: Session, tso: TimestampOracle, ids: IdAllocator, assigners: list,
                 wal: Log | None = None):
        self.session, self.tso, self.ids, self.assigners = session, tso, ids, assigners
        # its own writer: it reads each channel's end afresh, and timestamps from this term's TSO
        writer = None if wal is None else ShardWriter(wal, tso, _no_delivery, refresh_ends=True)
        self.flush = None if writer is None else FlushManager(writer, session.meta)
        try:
            # a dropped collection's channels: the seal writer's state of them goes
            self.ddl = open_ddl(session.meta, tso, ids, session.ttl,
                                on_drop=None if writer is None else lambda info: writer.forget(info.channels))
        except BaseException:
            for assigner in assigners:
                assigner.close()
            raise

    def end(self) -> None:
        self.ddl.close()
        for assigner in self.assigners:
            assigner.close()
        self.session.close()

    def live(self) -> bool:
        s = self.session
        return time.monotonic() < s.renewed_at + _LEASE_SHARE * s.ttl


class Coord:
    """Serves at once; active when the constructor returns if no other coord holds the session,
    else a standby that takes over on its own (``active``, ``wait_active``)."""

    def __init__(self, meta: MetaStore, host: str = "127.0.0.1", port: int = 0, session_ttl: float = 10.0,
                 objects: ObjectStore | None = None, gc: GcSettings | None = None, wal: Log | None = None,
                 spread_min_rows: int = 0, replica_per_node: bool = False):
        """``objects``: the object store, for its garbage collection while active (``vecdb.coord.gc``, with
        ``gc``'s intervals and grace); None: no garbage collection. ``wal``: the cluster's shared log,
        where ``Flush`` writes seal records; None: ``Flush`` answers Unimplemented. ``spread_min_rows``:
        the placement's (``vecdb.coord.assignment``); ``replica_per_node``: a replica of every
        loaded collection on each live query node (``querynode.replica_per_node``)."""
        self.spread_min_rows, self.replica_per_node = spread_min_rows, replica_per_node
        self.meta, self.ttl, self.wal = meta, float(session_ttl), wal
        self._flush_slots = FlushSlots()
        self.objects, self.gc = objects, gc or GcSettings()
        self._term: _Term | None = None
        self._changed = threading.Condition()
        self._stopped = False
        self._campaigner: threading.Thread | None = None
        self._campaign_error: str | None = None  # why the standby's last try to take over failed
        # the RPCs of proto/coord.proto; set_fields(request) is {} or {"count": n}
        self.server, self.port = serve("coord", SimpleNamespace(
            AllocTimestamp=lambda r, ctx: AllocTimestampReply(ts=self._alloc_ts(_count(set_fields(r), LOGICAL_MASK))),
            AllocID=lambda r, ctx: AllocIDReply(id=self._alloc_ids(_count(set_fields(r), MAX_IDS_PER_CALL))),
            **ddl_handlers(self._serve_ddl),
            Flush=lambda r, ctx: self._flush(r),
            MoveSegments=lambda r, ctx: self._move_segments(r),
        ), host, port, workers=_WORKERS)
        self.address = advertised_address(host, self.port)
        try:
            if not self._try_to_take_over():  # a first try here: a lone coord is active on return
                self._campaign_in_background()
        except BaseException:
            self.server.stop(0)
            raise

    @property
    def active(self) -> bool:
        """Whether it answers calls now."""
        term = self._term
        return term is not None and term.live()

    @property
    def session(self) -> Session | None:
        """The session held while active."""
        term = self._term
        return term.session if term is not None else None

    def health(self) -> tuple[bool, str]:
        """For /healthz: 200 "OK active" while it answers calls, "OK standby" while it stands by and
        can reach the store (it takes over on its own); else (False, why): stopping, a standby whose
        last try to take over failed, or an active one between losing its lease and stepping down."""
        if self._stopped:
            return False, "stopping"
        if self.active:
            return True, "OK active"
        if self._term is not None:
            return False, "active, but its session's lease was not renewed in time (the metadata store does not answer)"
        if self._campaign_error is not None:
            return False, f"standby, cannot take over: {self._campaign_error}"
        return True, "OK standby"

    def wait_active(self, timeout: float | None = None) -> bool:
        """Wait until it answers calls (False once ``timeout`` passed, or it was stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            # woken on every change of term; the lease's margin runs out without one, hence the slices
            while not self.active and not self._stopped:
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._changed.wait(left)
        return self.active

    # --- serving

    def _alloc_ts(self, count: int) -> int:
        first = self._serve(lambda t: t.tso.allocate(count))
        metrics.ROOTCOORD_TIMESTAMP.labels(self.address).set(first + count - 1)
        return first

    def _alloc_ids(self, count: int) -> int:
        first = self._serve(lambda t: t.ids.allocate(count))
        metrics.ROOTCOORD_ID_ALLOC.labels(self.address).inc(count)
        return first

    def _active_term(self) -> _Term:
        """This coord's term, while it is the active coord; else ServiceNotReady (the client finds the other)."""
        term = self._term
        if term is None or not term.live():
            raise ServiceNotReady(f"coord at {self.address} is not the active coord (standby, or its session is "
                                  f"ending): the active one is named in {SESSION_KEY}")
        return term

    def _serve(self, allocate):
        term = self._active_term()
        try:
            return allocate(term)
        except ServiceNotReady as e:  # fenced off: another coord took over
            self._step_down(term, str(e))
            raise
        except IoFailed as e:  # the store did not answer a reservation: worth retrying, here or elsewhere
            raise ServiceUnavailable(f"coord at {self.address} cannot reserve in the metadata store: "
                                     f"{e.message}") from e

    def _serve_ddl(self, change):
        """``change(manager)`` on the active term's DDL manager (``vecdb.coord.ddl_rpc``)."""
        term = self._active_term()
        try:
            return change(term.ddl)
        except IoFailed as e:
            raise ServiceUnavailable(f"coord at {self.address} cannot reach the metadata store: {e.message}") from e

    def _flush(self, request: FlushRequest) -> FlushReply:
        """``Flush`` (``vecdb.coord.flush``): checked against this term's catalog, then run by its manager."""
        term = self._active_term()
        if term.flush is None:
            raise Unimplemented(f"coord at {self.address} has no shared log (storage.log): it cannot flush")
        try:
            info = term.ddl.catalog.get_by_id(request.collection_id)  # CollectionNotFound
            channels = list(request.channels) or list(info.channels)
            strange = sorted(set(channels) - set(info.channels))
            if strange:
                raise InvalidParameter(f"channels {strange} are not collection {info.name}'s ({info.channels})")
            with self._flush_slots:
                return flush_reply(term.flush.flush(info.id, channels))
        except ServiceNotReady as e:  # the seal's timestamp was fenced off: another coord took over
            self._step_down(term, str(e))
            raise
        except IoFailed as e:  # the log or the store did not answer: worth retrying, here or elsewhere
            raise ServiceUnavailable(f"coord at {self.address} could not flush: {e.message}") from e

    def _move_segments(self, request: MoveSegmentsRequest) -> MoveSegmentsReply:
        """``MoveSegments`` (``vecdb.coord.segment_moves``): pinned by this term's assignment manager."""
        term = self._active_term()
        manager = next(a for a in term.assigners if isinstance(a, AssignmentManager))
        moved = CoordSegmentMoves(manager).move(request.collection_id, request.source, list(request.targets),
                                                list(request.segment_ids), request.wait_seconds or MOVE_WAIT)
        return MoveSegmentsReply(moved=moved)

    # --- becoming active and stepping down

    def _try_to_take_over(self) -> bool:
        """Take the session and start the allocators above every earlier reservation. False while
        another coord holds it; True once done (active, or stopped meanwhile)."""
        if self.meta.get(SESSION_KEY) is not None:  # one read while the active coord lives (a lease costs more)
            return False
        value = describe_process(role="coord", address=self.address, term=uuid.uuid4().hex)
        try:
            session = Session(self.meta, SESSION_KEY, value, ttl=self.ttl, wait=0,
                              on_lost=lambda: self._session_lost(value))
        except ServiceUnavailable:  # held by the active coord
            return False
        try:
            fence = {SESSION_KEY: value}
            tso, ids = TimestampOracle(self.meta, fence=fence), IdAllocator(self.meta, fence=fence)
            assigners: list = []
            try:
                assigners.append(AssignmentManager(self.meta, fence, self.spread_min_rows, self.replica_per_node))
                assigners.append(DataNodeAssigner(self.meta, fence))
                if self.objects is not None:
                    assigners.append(GarbageCollector(self.meta, self.objects, self.gc.interval, self.gc.grace,
                                                      fence=fence, node_id=self.address,
                                                      full_interval=self.gc.full_interval, wal=self.wal).start())
                if self.wal is not None:  # Milvus 2.6's replication: this cluster's edges to its targets
                    from vecdb.cdc.replicate_manager import ReplicationManager

                    assigners.append(ReplicationManager(self.meta, self.wal).start())
            except BaseException:
                for a in assigners:
                    a.close()
                raise
            term = _Term(session, tso, ids, assigners, self.wal)
        except BaseException:
            session.close()
            raise
        with self._changed:
            won = not self._stopped
            if won:
                self._term = term
                self._changed.notify_all()
        if not won:
            term.end()
        else:
            log.info("coord at %s is now the active coord", self.address)
        return True

    def _campaign_in_background(self, ended: _Term | None = None) -> None:
        """Stand by: end the ``ended`` term's session, then try to take over until active or stopped."""
        self._campaigner = threading.Thread(target=self._campaign, args=(ended,), name="coord-standby", daemon=True)
        self._campaigner.start()

    def _campaign(self, ended: _Term | None) -> None:
        if ended is not None:
            ended.end()
        while not self._stopped:
            try:
                taken = self._try_to_take_over()
                self._campaign_error = None
                if taken:
                    return
            except Exception as e:  # noqa: BLE001 (store unreachable, fenced off while starting: keep trying)
                self._campaign_error = f"{type(e).__name__}: {e}"
                log.warning("coord at %s could not take over (tries again): %s", self.address, e)
            with self._changed:
                self._changed.wait_for(lambda: self._stopped, _CAMPAIGN_PAUSE)

    def _session_lost(self, value: bytes) -> None:
        term = self._term
        if term is not None and term.session.value == value:
            self._step_down(term, "its session was lost")

    def _step_down(self, term: _Term, why: str) -> None:
        """Stop answering now, then stand by (in a thread: ``on_lost`` runs in the session's own
        renewing thread, which ``Session.close`` joins)."""
        with self._changed:
            if self._term is not term or self._stopped:
                return
            self._term = None
            self._changed.notify_all()
            log.error("coord at %s stops answering (%s); it goes back to standby", self.address, why)
            self._campaign_in_background(ended=term)

    def stop(self, grace: float = 1.0) -> None:
        """Stop answering, end the session (a standby takes over at once, not when the lease would
        run out), then stop the server."""
        with self._changed:
            self._stopped = True
            term, self._term = self._term, None
            campaigner = self._campaigner
            self._changed.notify_all()
        if term is not None:
            term.end()
        if campaigner is not None:
            campaigner.join(10)
        self.server.stop(grace).wait()

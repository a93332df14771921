"""A data node process persists the channels the coord assigned it (``vecdb.coord.datanode_assignment``).

``ChannelFlusher`` mirrors ``dnassign/`` and follows each channel assigned to its node in the log,
from the channel's checkpoint: at every seal record (written by a proxy's flush or its seal
policy) it persists the channel up to that record (``DataNode.persist``: segment files, delta
file, then segments and checkpoint in one compare-and-set). A proxy's flush returns once the
checkpoint reached its seal record (``vecdb.datanode.remote``). A channel no longer assigned (moved
to another data node, collection dropped) stops being followed; the compare-and-set on the
checkpoint keeps two data nodes from persisting one record twice during a move.

The seal policy is the channel's data node's too (given ``seal``): counting the rows inserted
after the last seal record and their bytes (``vecdb.datanode.seal.batch_bytes``: variable-length
values at their actual size) as it follows the channel, it appends a seal record (``seal(collection
id, channel)``) once they reach ``seal_bytes`` or ``seal_rows`` (``seal.is_full``), and persists at
that record like at a flush's. So a
proxy's write does not ask a query node how many rows are growing (``DataNodeRole.seals_itself``);
two data nodes following one channel during a move may both seal (one more small segment, nothing
lost or repeated). A seal that fails is tried again at the next insert.

The log is bounded: after each persist, and every ``TRUNCATE_SECONDS`` while idle, the owner
truncates the channel below the lowest of its checkpoint and the positions the query nodes
holding the channel applied (``qnpos/``, ``vecdb.querynode.positions``) and the CDC tasks following
it applied (``cdcpos/``, ``vecdb.cdc.follower``: within their retention limit). A query node more than
``MAX_FOLLOWER_LAG`` records behind the checkpoint does not hold the log back: it is named in the
log, the cut passes it, and it reloads the channel from the segments when it meets the gap.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from vecdb import errors, metrics
from vecdb.catalog_model import coll_key, read_collection
from vecdb.cdc.follower import cdc_floor
from vecdb.config import DataNodeSettings
from vecdb.coord.assignment import Assignment, assign_key
from vecdb.coord.datanode_assignment import DN_ASSIGN_PREFIX
from vecdb.datanode.node import DataNode
from vecdb.datanode.seal import batch_bytes, is_full
from vecdb.log_records import InsertRecord, SealRecord, decode
from vecdb.querynode.positions import QN_POS_PREFIX
from vecdb.storage import segments as sf
from vecdb.storage import stall
from vecdb.storage.base import Follower, Log, MetaStore
from vecdb.storage.follow import POLL_SECONDS, TailStop
from vecdb.storage.watch import Mirror

log = logging.getLogger(__name__)

TRUNCATE_SECONDS = 5.0
MAX_FOLLOWER_LAG = 1_000_000  # records behind the checkpoint a query node may hold the log back
# rows after a channel's last seal record that make the seal policy seal it (the setting's default)
SEAL_ROWS: int = DataNodeSettings.model_fields["seal_rows"].default
SEAL_BYTES: int = DataNodeSettings.model_fields["seal_bytes"].default


class ChannelFlusher:
    def __init__(self, node: DataNode, wal: Log, meta: MetaStore, node_id: str,
                 seal: Callable[[int, str], None] | None = None, seal_rows: int = SEAL_ROWS,
                 seal_bytes: int = SEAL_BYTES, forget: Callable[[str], None] | None = None):
        """``forget(channel)``: a dropped collection's channel is done with on this node (its follower
        ended): what the caller keeps of it goes (the seal policy's writer)."""
        self.node, self.log, self.meta, self.node_id = node, wal, meta, node_id
        self.seal, self.seal_rows, self.seal_bytes = seal, seal_rows, seal_bytes
        self._forget = forget
        self._lock = threading.Lock()
        self._followers: dict[str, TailStop] = {}  # channel -> stop flag of its thread
        self._threads: list[threading.Thread] = []  # every follower thread started (close waits for them)
        self._truncated: dict[str, int] = {}  # channel -> position the log was last truncated below
        self._closed = False
        self._mirror = Mirror(meta, DN_ASSIGN_PREFIX, self._reconcile)
        self._reconcile()

    def channels(self) -> list[str]:
        """The channels this node follows now."""
        with self._lock:
            return sorted(self._followers)

    def assigned(self) -> dict[str, int]:
        """channel -> collection id of the channels assigned to this node (it persists and compacts them)."""
        return self._wanted()

    def _wanted(self) -> dict[str, int]:
        out = {}
        for key, raw in self._mirror.items().items():
            for ch, node in json.loads(raw).items():
                if node == self.node_id:
                    out[ch] = int(key)
        return out

    def _reconcile(self) -> None:
        if not hasattr(self, "_mirror"):
            return  # the mirror's first scan, inside its constructor: the constructor reconciles next
        wanted = self._wanted()
        with self._lock:
            if self._closed:
                return
            for ch in [ch for ch in self._followers if ch not in wanted]:
                self._followers.pop(ch).set()
                log.info("data node %s stops persisting %s", self.node_id, ch)
            for ch, cid in wanted.items():
                if ch not in self._followers:
                    stop = self._followers[ch] = TailStop()
                    thread = threading.Thread(target=self._follow, args=(cid, ch, stop), name=f"flush-{ch}",
                                              daemon=True)
                    self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                    thread.start()
                    log.info("data node %s persists %s", self.node_id, ch)

    def _follow(self, cid: int, channel: str, stop: TailStop) -> None:
        try:
            self._follow_channel(cid, channel, stop)
        finally:
            self._ended(cid, channel)

    def _ended(self, cid: int, channel: str) -> None:
        """A follower ended: when its collection was dropped, this node's state of the channel goes (a
        channel's name is never used again: it names its collection's id), and so does the channel in the
        log: the drop deletes it after the catalog record, in the proxy that handled it, and a proxy that
        died between the two left it for good (no append makes it again: ``vecdb.storage.dropped_channels``).
        A channel moved to another data node keeps it (it may come back)."""
        if not self._dropped(cid):
            return
        try:
            self.log.drop_channel(channel)  # (deleted already, mostly: no error then)
        except Exception as e:  # noqa: BLE001 (log trouble: the stream stays)
            log.warning("data node %s: cannot drop %s of a dropped collection: %s", self.node_id, channel, e)
        with self._lock:
            self._truncated.pop(channel, None)
        self.node.forget_channel(channel)
        if self._forget is not None:
            self._forget(channel)

    def _dropped(self, cid: int) -> bool:
        """Whether the collection is gone from the catalog (False when the store cannot tell)."""
        try:
            return self.meta.get(coll_key(cid)) is None
        except Exception:  # noqa: BLE001 (store trouble)
            return False

    def _follow_channel(self, cid: int, channel: str, stop: TailStop) -> None:
        """Persist at each seal record after the checkpoint, until told to stop; starts over from
        the checkpoint after a failure."""
        while not stop.is_set():
            follower = None
            try:
                seen = sf.checkpoint(self.meta, cid, channel)  # the last position handled
                persisted = seen  # the checkpoint as this follower knows it (it moves by its persists)
                follower = stop.watch(self.log.follow(channel, seen + 1))
                watch = stall.StallWatch(self.log, channel)
                schema = read_collection(self.meta, cid).schema
                due = time.monotonic() + TRUNCATE_SECONDS
                growing = grown = 0  # rows inserted after the last seal record (from the checkpoint on), bytes
                while not stop.is_set():
                    records = follower.poll(timeout=POLL_SECONDS)
                    if records:
                        watch.heard()
                    elif (first := watch.check(seen)) is not None:
                        again = self._follow_again(channel, seen, first)
                        follower.close()
                        follower, seen = stop.watch(again), first - 1
                    for pos, payload in records:
                        seen = pos
                        record = decode(payload)
                        if isinstance(record, SealRecord):
                            growing = grown = 0
                            if pos > sf.checkpoint(self.meta, cid, channel):
                                self._persist(cid, channel, pos)
                                due = 0.0
                            persisted = max(persisted, pos)
                        elif isinstance(record, InsertRecord):
                            growing += record.num_rows
                            grown += batch_bytes(schema, record.columns, record.num_rows)
                            if (is_full(growing, grown, self.seal_rows, self.seal_bytes)
                                    and self._seal(cid, channel, growing, grown)):
                                growing = grown = 0  # its seal record comes back here, and is persisted
                    if time.monotonic() >= due:
                        # nothing is cut past the checkpoint: a channel cut up to it is not looked at again
                        # until a persist (each look reads the checkpoint, every query node's positions and
                        # the assignment: 300 idle channels made 240 etcd reads a second)
                        if self._truncated.get(channel, 1) <= persisted:
                            self.truncate(cid, channel)
                        due = time.monotonic() + TRUNCATE_SECONDS
            except errors.CollectionNotFound:
                return  # dropped: its assignment goes next
            except Exception:  # noqa: BLE001 (store or log trouble: start over from the checkpoint)
                if stop.is_set():
                    return  # (its follower closed by the stop)
                if self._dropped(cid):  # its stream deleted under a persist, say: not a failure
                    log.info("data node %s: %s was dropped while it was persisted", self.node_id, channel)
                    return
                log.exception("data node %s: persisting %s failed; starting over", self.node_id, channel)
                stop.wait(1.0)
            finally:
                if follower is not None:
                    follower.close()

    def _follow_again(self, channel: str, seen: int, first: int) -> Follower:
        """A follower from ``first`` on, for one that stalled (``vecdb.storage.stall``) after ``seen``."""
        cut = first > seen + 1  # only this node cuts below its checkpoint: something else purged the log
        metrics.count_stall(self.node_id, channel, cut)
        if cut:
            log.error("data node %s: records %d..%d of %s were cut from the log before they were persisted",
                      self.node_id, seen + 1, first - 1, channel)
        else:
            log.warning("data node %s: no record of %s from the log for %.0f s while %d is there to persist "
                        "next; following it again", self.node_id, channel, stall.STALL_SECONDS, first)
        return self.log.follow(channel, first)

    def _seal(self, cid: int, channel: str, rows: int, nbytes: int) -> bool:
        """Whether the seal record was appended (the next insert tries again when not); raises only
        ``CollectionNotFound``: the collection was dropped meanwhile (the log makes no stream for its
        channel again), which ends the follower."""
        if self.seal is None:
            return False
        try:
            self.seal(cid, channel)
        except errors.CollectionNotFound:
            log.info("data node %s: %s was dropped before its seal record was appended", self.node_id, channel)
            raise
        except Exception as e:  # noqa: BLE001 (coord or log trouble)
            log.warning("data node %s: sealing %s failed (tried again at the next insert): %s", self.node_id,
                        channel, e)
            return False
        log.info("data node %s sealed %s (seal policy: %d rows, %d bytes)", self.node_id, channel, rows, nbytes)
        return True

    def _persist(self, cid: int, channel: str, upto: int) -> None:
        info = read_collection(self.meta, cid)
        with metrics.timed(metrics.FLUSH_LATENCY, metrics.FLUSH_COUNT, self.node_id, "L1"):
            segments = self.node.persist(info, channel, upto)
        log.info("data node %s persisted %s up to %d: %d segments", self.node_id, channel, upto, len(segments))

    def truncate(self, cid: int, channel: str) -> int:
        """Cut the channel below the lowest of its checkpoint and the applied positions of the query
        nodes holding it; returns the position it is now cut below. Not at all while a node assigned
        the channel (to lead it, or some of its sealed segments) has not published a position for it
        yet (it may have just loaded it: were the records it still needs cut, no later record might
        come to show it the gap)."""
        ckpt = sf.checkpoint(self.meta, cid, channel)
        low = ckpt
        published = {key[len(QN_POS_PREFIX):]: json.loads(raw) for key, raw in self.meta.scan(QN_POS_PREFIX)}
        raw_assignment = self.meta.get(assign_key(cid))
        if raw_assignment is not None:
            a = Assignment.from_json(raw_assignment)
            # its leaders, and the nodes it is spread over (they hold its other rows as stubs)
            holders = {n for r in a.replicas for n in (r.channels.get(channel), r.moving.get(channel)) if n}
            holders |= {n for r in a.replicas for n in r.segments.get(channel, {}).values()}
            if any(channel not in published.get(n, {}) for n in holders):
                return self._truncated.get(channel, 1)
        for key, positions in published.items():
            applied = positions.get(channel)
            if applied is None:
                continue
            if applied < ckpt - MAX_FOLLOWER_LAG:
                log.error("query node %s applied %s only up to %d, %d records behind the checkpoint: the log is "
                          "cut past it, and it reloads the channel from the segments", key, channel, applied,
                          ckpt - applied)
                continue
            low = min(low, applied)
        floor = cdc_floor(self.meta, channel, ckpt, cid)  # CDC tasks following the channel (vecdb.cdc.follower)
        if floor is not None:
            low = min(low, floor)
        if low + 1 > self._truncated.get(channel, 1):
            self.log.truncate_before(channel, low + 1)
            self._truncated[channel] = low + 1
        return self._truncated.get(channel, 1)

    def close(self, timeout: float = 10.0) -> None:
        """Stop following; waits up to ``timeout`` s for the follower threads (a persist under way ends
        first), so that none reads the log after its owner closed it."""
        with self._lock:
            self._closed = True
            for stop in self._followers.values():
                stop.set()
            self._followers.clear()
            threads = list(self._threads)
        self._mirror.close()
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

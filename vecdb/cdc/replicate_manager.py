"""The source side of Milvus 2.6's replication API: for each edge ``this cluster -> target`` of the
replication configuration (``vecdb.cdc.replicate_config``), one CDC task (``vecdb.cdc.replicator``)
that replays every collection of every database of this deployment into the target's uri, with the
target's token, its calls marked with ``HEADER`` (this cluster's id) so that the secondary takes them.

It runs in the process that owns the deployment's log and catalog: a standalone server (its
embedded log and metadata store, shared in-process: the replicator's followers are more readers
of the same log), or a cluster's active coord. It polls the configuration (``POLL_SECONDS``);
an edge that appears starts a task, one that goes away (a new configuration without it, a
force_promote elsewhere) stops it and forgets it: its positions and its follower floor
(``cdcpos/<task>``) are deleted, so the log is free to be truncated again.

A task starts from the oldest record the log still holds (``start: earliest``), so a target
configured before the source's first writes gets everything; rows the source had already
persisted and cut from its log before the edge existed are not copied (docs/cdc.md).

Its progress (``replication/progress/<target id>``: the applied positions, the time tick up to
which the target has every change, lag, state and last error) is written to the store every
``PROGRESS_SECONDS``, where any proxy of this cluster reads it to answer ``get_replicate_info``.

Layout (the deployment's store): the task store's keys (``vecdb.cdc.task``: ``cdc/tasks/replicate-<target>``,
``cdc/pos/...``, ``cdc/colls/...``, ``cdc/dbs/...``), ``cdcpos/replicate-<target>`` and
``replication/progress/<target>``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from vecdb import timestamp
from vecdb.cdc import replicate_config as rc
from vecdb.cdc.follower import HOLD_ALL, cdc_positions_key, hold_new
from vecdb.cdc.replicate_config import TASK_PREFIX, task_id
from vecdb.cdc.replicator import REPORT_SECONDS, Replicator
from vecdb.cdc.task import FAILED, Task, TaskSpec, TaskStore
from vecdb.storage.base import Log, MetaStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
PROGRESS_SECONDS = 1.0
PROGRESS_PREFIX = "replication/progress/"


def progress_of(meta: MetaStore, target: str) -> dict[str, Any] | None:
    raw = meta.get(PROGRESS_PREFIX + target)
    return None if raw is None else json.loads(raw)


class ReplicationManager:
    """One ``Replicator`` per edge from this cluster, kept in step with the stored configuration."""

    def __init__(self, meta: MetaStore, wal: Log):
        self.meta, self.wal = meta, wal
        self.store = TaskStore(meta)
        self._running: dict[str, Replicator] = {}  # target cluster id -> its replicator
        self._specs: dict[str, TaskSpec] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress_at = 0.0

    def start(self) -> ReplicationManager:
        self._thread = threading.Thread(target=self._loop, name="replication", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for rep in self._running.values():
            rep.stop()
        self._running.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # noqa: BLE001 (the store is unreachable a moment: tried again)
                log.exception("replication: cannot follow the replicate configuration")
            self._stop.wait(POLL_SECONDS)

    def wanted(self) -> dict[str, TaskSpec]:
        """The task of each edge from this cluster in the stored configuration."""
        cfg = rc.load(self.meta)
        if cfg is None:
            return {}
        out = {}
        for target in cfg.targets_of(cfg.current):
            out[target.cluster_id] = TaskSpec(
                source={"cluster_id": cfg.current},  # (the log and catalog are this process's own)
                target={"uri": target.uri, "token": target.token, "headers": {rc.HEADER: cfg.current}},
                collections=["*"], start="earliest")
        return out

    def sync(self) -> None:
        # read before the configuration: a hold stored with it (replicate_config.save) is seen with its edge
        holds = [k for k, raw in self.meta.scan(cdc_positions_key(TASK_PREFIX)) if raw == HOLD_ALL]
        wanted = self.wanted()
        for target in [t for t in self._running if t not in wanted or self._specs[t] != wanted[t]]:
            self._remove(target)
        for target, spec in wanted.items():
            if target not in self._running:
                self._add(target, spec)
        for key in holds:  # an edge configured and taken away before its task published anything
            if key[len(cdc_positions_key(TASK_PREFIX)):] not in wanted:
                self.meta.txn(deletes=[key], expect={key: HOLD_ALL})
        if time.monotonic() - self._progress_at >= PROGRESS_SECONDS:
            self._progress_at = time.monotonic()
            for target, rep in self._running.items():
                self._write_progress(target, rep)

    def _add(self, target: str, spec: TaskSpec) -> None:
        tid = task_id(target)
        task = self.store.get(tid)
        if task is None or task.spec != spec:
            if task is not None:  # another uri or token for that cluster id: a new task from the start
                self._forget(target)
            task = Task(tid, spec)
            self.store.put(task)
        rep = Replicator(task, self.store, source=(self.meta, self.wal))
        if task.state != FAILED:
            hold_new(self.meta, tid)  # (what the configuration's own hold did, for a task forgotten since)
            rep.start()
        self._running[target], self._specs[target] = rep, spec
        log.info("replication to %s (%s) started", target, spec.target["uri"])

    def _remove(self, target: str) -> None:
        rep = self._running.pop(target)
        self._specs.pop(target, None)
        rep.stop()
        self._forget(target)
        log.info("replication to %s stopped (no longer in the replicate configuration)", target)

    def _forget(self, target: str) -> None:
        tid = task_id(target)
        self.store.delete(tid)
        self.meta.txn(deletes=[cdc_positions_key(tid), PROGRESS_PREFIX + target])

    def _write_progress(self, target: str, rep: Replicator) -> None:
        p = rep.progress
        if not p.reported_at:
            return  # nothing measured yet
        # every change older than this is on the target: as of the last measure, less the age of the oldest
        # change not applied then (or less the time between two measures when none was behind)
        behind_ms = p.lag_seconds * 1000 if p.lag_records else REPORT_SECONDS * 1000
        positions = {ch: c["applied"] for ch, c in sorted(p.channels.items())}
        state = rep.task.state if rep.task.state == FAILED else p.state
        tick = timestamp.compose(max(0, int(p.reported_at * 1000 - behind_ms)))
        raw = json.dumps({"time_tick": tick, "positions": positions,
                          "lag_records": p.lag_records, "state": state, "reason": rep.task.reason or p.reason,
                          "last_error": p.last_error, "at": time.time()}).encode()
        self.meta.put(PROGRESS_PREFIX + target, raw)

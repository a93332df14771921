"""``EtcdWatcher``: a ``MetaStore`` watch on one etcd watch stream (rules: ``base.MetaStore``).

The stream runs as a task on the store's event loop (``LoopThread``), so it never blocks the
store's other calls; its events wait in a queue for ``poll``. When the stream breaks (etcd
restarted, the connection dropped) the task opens a new one from the last revision it
received + 1, retrying with a backoff up to 2 s, for as long as the watcher is open: ``poll``
meanwhile just returns nothing. Progress notifications (``progress_notify``) move that resume
point on while the prefix is quiet. If etcd compacted the revisions it needs, or ``poll``
fell more than ``backlog`` events behind the stream, the watcher stops and ``poll`` raises
``WatchCompacted`` once it has handed out the events it had.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

from vecdb.errors import IoFailed
from vecdb.storage.watch import DELETE, PUT, WatchCompacted, WatchEvent, take_revisions

log = logging.getLogger(__name__)

_DELETE_EVENT = 1  # mvccpb.Event.EventType.DELETE


class EtcdWatcher:
    """``Watcher`` of the keys in [``key``, ``end``) of an ``EtcdMetaStore`` (namespaced bytes), from
    ``start`` (None: changes after the watch was created). The constructor returns once etcd
    created the watch, raising ``WatchCompacted`` or ``IoFailed``."""

    def __init__(self, store, key: bytes, end: bytes, start: int | None, backlog: int):
        self._store, self._key, self._end, self._backlog = store, key, end, backlog
        self._next = start or 0  # the revision a new stream starts from; 0: now
        self._cond = threading.Condition()
        self._pending: deque[WatchEvent] = deque()
        self._error: Exception | None = None
        self._closed = False
        self._task: asyncio.Task | None = None
        store._run(self._start(), "watch metadata")

    # --- on the store's event loop ------------------------------------------------------
    async def _start(self) -> None:
        if self._next:
            await self._check_kept(self._next)
        call = await self._open()
        self._task = asyncio.get_running_loop().create_task(self._pump(call))

    async def _check_kept(self, start: int) -> None:
        """etcd creates a watch below its compacted revision and cancels it only afterwards: ask first,
        by reading at ``start`` (refused the same way), so that ``watch`` itself raises."""
        from aetcd import rpc
        from grpc.aio import AioRpcError

        try:
            await self._store._client.kvstub.Range(rpc.RangeRequest(key=self._key, limit=1, revision=start),
                                                   timeout=self._store.timeout)
        except AioRpcError as e:
            details = e.details() or ""
            if "compacted" in details:
                raise WatchCompacted(f"etcd compacted revision {start} ({details}): "
                                     "scan again and watch from the scan's revision + 1") from None
            if "future revision" not in details:  # a start ahead of etcd is fine: it waits for it
                raise

    async def _open(self):
        """A watch stream from ``_next``, once etcd answered that it created the watch."""
        from aetcd import rpc
        from grpc.aio import EOF

        req = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=self._key, range_end=self._end, start_revision=self._next, progress_notify=True))

        async def requests():
            yield req
            await asyncio.Event().wait()  # keep our side open: the stream lives until cancelled

        call = rpc.WatchStub(self._store._client.channel).Watch(requests())
        try:
            resp = await asyncio.wait_for(call.read(), self._store.timeout)
            if resp is EOF:
                raise IoFailed("etcd closed the watch stream")
            if resp.compact_revision:
                raise _compacted(self._next, resp.compact_revision)
            if not resp.created or resp.canceled:
                raise IoFailed(f"etcd refused the watch: {resp.cancel_reason or resp}")
        except BaseException:
            call.cancel()
            raise
        if not self._next:
            self._next = resp.header.revision + 1
        return call

    async def _pump(self, call) -> None:
        from grpc.aio import EOF

        delay = 0.1
        while True:
            try:
                while (resp := await call.read()) is not EOF:
                    self._take(resp)
                    delay = 0.1
                raise IoFailed("etcd closed the watch stream")
            except asyncio.CancelledError:
                call.cancel()
                raise
            except WatchCompacted as e:
                call.cancel()
                return self._fail(e)
            except Exception as e:  # the stream broke: a new one from where this one stopped
                call.cancel()
                log.info("etcd watch of %r broke (%s); resuming from revision %d", self._key, e, self._next)
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                try:
                    call = await self._open()
                    break
                except WatchCompacted as e:
                    return self._fail(e)
                except Exception as e:
                    log.debug("etcd watch of %r: cannot resume yet: %s", self._key, e)

    def _take(self, resp) -> None:
        if resp.compact_revision:
            raise _compacted(self._next, resp.compact_revision)
        if resp.canceled:
            raise IoFailed(f"etcd cancelled the watch: {resp.cancel_reason}")
        if not resp.events:
            if not resp.created:  # progress: nothing up to this revision is left to come
                self._next = max(self._next, resp.header.revision + 1)
            return
        n = len(self._store._ns)
        events = [WatchEvent(DELETE, ev.kv.key[n:].decode(), None, ev.kv.mod_revision) if ev.type == _DELETE_EVENT
                  else WatchEvent(PUT, ev.kv.key[n:].decode(), ev.kv.value, ev.kv.mod_revision)
                  for ev in resp.events]
        with self._cond:
            if len(self._pending) + len(events) > self._backlog:
                raise WatchCompacted(f"the watcher fell more than {self._backlog} events behind: "
                                     "scan again and watch from the scan's revision + 1")
            self._pending.extend(events)
            self._cond.notify_all()
        self._next = events[-1].revision + 1  # etcd sends a revision's events in one response

    def _fail(self, error: Exception) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # --- Watcher ----------------------------------------------------------------------
    def poll(self, timeout: float = 1.0, max_events: int = 1024) -> list[WatchEvent]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                if self._closed:
                    raise IoFailed("watcher is closed")
                if self._pending:
                    pending = self._pending
                    return [pending.popleft() for _ in range(take_revisions(pending, max_events))]
                if self._error is not None:
                    raise self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._store._watch_closed(self)
        if self._task is not None:
            try:
                self._store._loop.run(self._stop(), 5, "stop a metadata watch")
            except IoFailed:  # the loop is already stopped: so is the task
                pass

    async def _stop(self) -> None:
        assert self._task is not None, "stopped only once started"
        self._task.cancel()
        await asyncio.wait([self._task])


def _compacted(start: int, compact_revision: int) -> WatchCompacted:
    return WatchCompacted(f"etcd compacted the revisions below {compact_revision} (the watch needs {start}): "
                          "scan again and watch from the scan's revision + 1")

"""Query micro-batching for the GPU indexes (GpuIndex.search, gpu_base.py).

Many concurrent small searches (one nq=1 request per gRPC handler thread)
each pay a device call's launch and transfer latency for one query. The
batcher coalesces them into one device call:

- Requests are grouped by a **key** (k, the validated search params, the
  mask length for an all-valid mask); only requests with the same key share
  a search. The index decides what may be batched (no real filter mask, fewer
  than ``BATCH_MAX_NQ`` queries) and passes the rest around the batcher.
- **No waiting without concurrency.** A request whose key has no search in
  flight runs at once, alone (a lock, a dict update). Otherwise the first
  request opens a batch and becomes its **leader**: it takes companions while
  the key's other searches are still running (at least ``BATCH_WAIT_S``, at most
  ``MAX_LEAD_WAIT_S``, or until ``MAX_BATCH_QUERIES`` queries have joined), closes the batch,
  runs one search over the stacked queries and publishes the result; the
  **followers** block on the batch's event and take their own rows (or
  re-raise the leader's exception).
- No thread is started: the leader is one of the callers.

``batches_run`` / ``queries_batched`` count the searches that served more
than one request and the queries they served (tests and benchmarks read them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

BATCH_WAIT_S = 0.0002  # how long a leader waits for companions at least (only when its key is already busy)
MAX_LEAD_WAIT_S = 0.02  # ... and at most, while the key's other searches are still running
MAX_BATCH_QUERIES = 256  # a batch closes early at this many queries
BATCH_MAX_NQ = 64  # requests with this many queries or more bypass the batcher

Result = tuple[np.ndarray, np.ndarray]


class _Batch:
    __slots__ = ("parts", "nq", "full", "done", "result", "error")

    def __init__(self, q: np.ndarray) -> None:
        self.parts = [q]
        self.nq = len(q)
        self.full = threading.Event()  # set when the batch reached MAX_BATCH_QUERIES
        self.done = threading.Event()  # set when result or error is there
        self.result: Result | None = None
        self.error: BaseException | None = None


class QueryBatcher:
    """Coalesces concurrent same-key searches into one call of ``fn`` over the stacked queries."""

    def __init__(self, wait_s: float | None = None, max_queries: int | None = None) -> None:
        self.wait_s = BATCH_WAIT_S if wait_s is None else float(wait_s)
        self.max_queries = MAX_BATCH_QUERIES if max_queries is None else int(max_queries)
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch] = {}  # the batch still taking requests, per key
        self._busy: dict[Hashable, int] = {}  # searches (solo or leader) in flight, per key
        self.batches_run = 0
        self.queries_batched = 0

    def run(self, key: Hashable, q: np.ndarray, fn: Callable[..., Result], *args: Any) -> Result:
        """``fn(q, *args)``, possibly computed as part of ``fn`` over more stacked queries.

        ``q`` is (nq, dim) with nq >= 1; ``fn`` returns host (distances,
        offsets), one row per query. Requests sharing ``key`` must pass the same ``args``.
        """
        nq = len(q)
        joined: _Batch | None = None
        led: _Batch | None = None
        with self._lock:
            b = self._open.get(key)
            if b is not None and b.nq + nq <= self.max_queries:
                joined, lo = b, b.nq
                b.parts.append(q)
                b.nq += nq
                if b.nq >= self.max_queries:
                    del self._open[key]
                    b.full.set()
            else:
                if b is not None:  # no room: that one runs now, this request starts the next
                    del self._open[key]
                    b.full.set()
                busy = self._busy.get(key, 0)
                self._busy[key] = busy + 1
                if busy:
                    led = self._open[key] = _Batch(q)
        if joined is not None:  # follower
            joined.done.wait()
            if joined.error is not None:
                raise joined.error
            d, i = joined.result  # type: ignore[misc]
            return d[lo:lo + nq], i[lo:lo + nq]
        if led is not None:
            return self._lead(key, led, fn, args)
        try:  # nothing else in flight for this key: no wait
            return fn(q, *args)
        finally:
            self._release(key, None)

    def _lead(self, key: Hashable, b: _Batch, fn: Callable[..., Result], args: tuple) -> Result:
        try:
            self._gather(key, b)
            self._close(key, b)
            qs = b.parts[0] if len(b.parts) == 1 else np.concatenate(b.parts)
            b.result = fn(qs, *args)
        except BaseException as e:
            b.error = e
            raise
        finally:
            self._release(key, b)
            b.done.set()
        d, i = b.result
        n = len(b.parts[0])
        return d[:n], i[:n]

    def _gather(self, key: Hashable, b: _Batch) -> None:
        """Take companions while the key's other searches run: the device runs one search after another
        anyway, so the requests that arrive meanwhile go as one batch when the device is free (seen on an
        H200: 32 callers of 3 ms searches made batches of ~5 with a fixed 0.2 ms wait, and 32 searches in
        flight waited on each other's kernels). At least ``wait_s``, at most ``MAX_LEAD_WAIT_S``."""
        deadline = time.monotonic() + MAX_LEAD_WAIT_S
        while not b.full.wait(self.wait_s):
            with self._lock:
                others = self._busy.get(key, 0) - 1  # solo searches and leaders in flight, this one aside
            if others <= 0 or time.monotonic() >= deadline:
                return

    def _close(self, key: Hashable, b: _Batch) -> None:
        """No more joins; count the batch if it serves more than one request."""
        with self._lock:
            if self._open.get(key) is b:
                del self._open[key]
            if len(b.parts) > 1:
                self.batches_run += 1
                self.queries_batched += b.nq

    def _release(self, key: Hashable, b: _Batch | None) -> None:
        with self._lock:
            if b is not None and self._open.get(key) is b:  # failed before closing
                del self._open[key]
            left = self._busy[key] - 1
            if left:
                self._busy[key] = left
            else:
                del self._busy[key]
